"""benchmarks/week_shape.py: the step, swing and rest of a week on analytic weeks, terciles by the week's own
level, and the script end to end on a small city with a saved model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellsynth.data import write
from cellsynth.data.synthetic import synthesize_city
from cellsynth.generators import get
from cellsynth.generators.stouter import StouterGenerator
from tests.conftest import benchmark_script


@pytest.fixture(scope="module")
def week_shape():
    return benchmark_script("week_shape")


def test_a_week_that_repeats_its_day_has_no_rest(week_shape):
    day = np.r_[np.zeros(12), np.ones(12)]  # swing: sd of half zeros, half ones = 0.5
    shape = week_shape.week_shape(np.tile(day, 7)[None])
    np.testing.assert_allclose(shape["swing"], 0.5)
    np.testing.assert_allclose(shape["rest"], 0.0, atol=1e-12)
    np.testing.assert_allclose(shape["step"], 13 / 167)  # a jump of 1 at every 12th step but the last
    # +-a alternating days stray a from the mean day at every hour; the mean day is unchanged
    sign = np.repeat([1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 0.0], 24)
    shape = week_shape.week_shape(np.tile(day, 7)[None] + 0.3 * sign)
    np.testing.assert_allclose(
        shape["rest"], 0.3 * np.sqrt(6 / 7), rtol=1e-2
    )  # 6 of 7 days off by 0.3 (mean day shifts 0.3/7)
    with pytest.raises(ValueError, match="not 7 whole days"):
        week_shape.week_shape(np.zeros((1, 24)))


def test_terciles_rank_weeks_by_their_own_level(week_shape):
    rng = np.random.default_rng(0)
    levels = rng.permutation(np.arange(9.0))
    rows = week_shape.by_tercile(levels[:, None] + 0.1 * rng.normal(size=(9, 168)))
    assert [round(r["level"]) for r in rows] == [1, 4, 7]
    lines = week_shape.table({"real": rows}).splitlines()  # header, separator, one row: 12 cells and a name
    assert len(lines) == 3 and all(line.count("|") == 14 for line in lines)


def test_the_script_compares_real_and_generated_weeks(week_shape, tmp_path, capsys):
    torch.set_num_threads(1)
    data = synthesize_city(n_stations=30, seed=0).traffic
    write(data, tmp_path / "city")
    model = get("stouter", StouterGenerator.smoke_config() | {"epochs": 1}).fit(data, progress=False)
    model.save(tmp_path / "model")
    rows = week_shape.main(
        ["--data", str(tmp_path / "city"), "--runs", str(tmp_path / "model"), "--samples", "2"]
    )
    assert list(rows) == ["real", str(tmp_path / "model")]
    for terciles in rows.values():
        assert len(terciles) == 3 and terciles[0]["level"] <= terciles[1]["level"] <= terciles[2]["level"]
        assert all(t[k] >= 0 for t in terciles for k in ("step", "swing", "rest"))
    assert rows["real"] != rows[str(tmp_path / "model")]
    assert capsys.readouterr().out.count("\n| ") == 3  # the separator row and one row per week source
    with pytest.raises(SystemExit):  # argparse's one-line error
        week_shape.main(["--data", str(tmp_path / "city"), "--channel", "voice"])
    assert "--channel 'voice': " in capsys.readouterr().err
