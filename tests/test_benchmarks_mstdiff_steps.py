"""benchmarks/mstdiff_steps.py on the shipped model at tiny step counts: one row per count and spacing,
every draw scored, CPU time measured; never its numbers."""

from __future__ import annotations

import json

import pytest

from cellsynth.demo import PRETRAINED_USER_MODEL
from tests.conftest import benchmark_script


@pytest.mark.skipif(
    not PRETRAINED_USER_MODEL.joinpath("generator.json").is_file(),
    reason="the pretrained MSTDiff is not in this checkout (benchmarks/pretrain_demo.py trains it)",
)
def test_each_step_count_is_recalibrated_drawn_and_scored(tmp_path, capsys):
    module = benchmark_script("mstdiff_steps")
    module.main(
        ["--steps", "3", "2", "--spacing", "1", "2", "--draws", "2", "--out", str(tmp_path / "r.json")]
    )
    rows = json.loads((tmp_path / "r.json").read_text())
    assert list(rows) == ["3", "3, spaced 2", "2", "2, spaced 2"]
    assert all(len(draws) == 2 for draws in rows.values())
    for draws in rows.values():
        for draw in draws:
            assert draw["cpu_seconds"] > 0
            assert set(module.TRAFFIC + module.TRAJECTORY) <= set(draw)
            assert all(0 <= draw[name] <= 1 for name in module.TRAFFIC + module.TRAJECTORY)
            assert 0 <= draw["near_copy_share"] <= 1
    # two draws of one step count are different users
    assert rows["2"][0] != rows["2"][1]
    table = capsys.readouterr().out
    assert "| 3 |" in table and "| 2 |" in table and "| 3, spaced 2 |" in table
