"""`cellsynth.data.resample` and `cellsynth data resample`: sums into a coarser step, repair marks carried."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from typer.testing import CliRunner

from cellsynth.cli import app
from cellsynth.data import Stations, StationTraffic, UserMobility, read, resample, write
from cellsynth.errors import ConfigError, DataError

START = pd.Timestamp("2026-01-05 00:00", tz="Europe/Rome")


def traffic_of(values, step="30min", repaired=None) -> StationTraffic:
    values = np.asarray(values, dtype=np.float32)
    n = values.shape[0]
    return StationTraffic(
        values=values,
        start=START,
        step=pd.Timedelta(step),
        channels=tuple(f"c{j}" for j in range(values.shape[2])),
        stations=Stations(
            ids=[f"s{i}" for i in range(n)], features=np.arange(n)[:, None], feature_names=("f",)
        ),
        repaired=repaired,
        source="test.parquet",
    )


@st.composite
def traffic_and_factor(draw):
    factor = draw(st.integers(1, 6))
    shape = (draw(st.integers(1, 4)), factor * draw(st.integers(1, 8)), draw(st.integers(1, 3)))
    values = draw(arrays(np.float32, shape, elements=st.floats(0, 1e6, width=32)))
    repaired = draw(arrays(np.bool_, shape))
    return traffic_of(values, "10min", repaired), factor


@given(traffic_and_factor())
def test_total_volume_is_conserved_per_station_and_channel(case):
    traffic, factor = case
    coarse = resample(traffic, traffic.step * factor)
    assert coarse.n_steps * factor == traffic.n_steps and coarse.step == traffic.step * factor
    np.testing.assert_allclose(
        coarse.values.sum(axis=1, dtype=np.float64), traffic.values.sum(axis=1, dtype=np.float64), rtol=1e-6
    )
    assert coarse.start == traffic.start and coarse.channels == traffic.channels
    assert coarse.stations.equals(traffic.stations)
    # A coarse step is repaired exactly where one of its fine steps was.
    fine = traffic.repaired if traffic.repaired is not None else np.zeros(traffic.values.shape, bool)
    marks = coarse.repaired if coarse.repaired is not None else np.zeros(coarse.values.shape, bool)
    n, t, c = traffic.values.shape
    np.testing.assert_array_equal(marks, fine.reshape(n, t // factor, factor, c).any(axis=2))


@given(traffic_and_factor())
def test_the_same_step_is_the_identity(case):
    traffic, _ = case
    assert resample(traffic, traffic.step).equals(traffic)


def test_half_hours_to_hours_analytically():
    values = np.array(
        [[[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]]]
    )  # 1 station, 4 half-hours, 2 channels
    repaired = np.zeros_like(values, dtype=bool)
    repaired[0, 3, 1] = True
    hourly = resample(traffic_of(values, repaired=repaired), "1h")
    np.testing.assert_array_equal(hourly.values, [[[3.0, 30.0], [7.0, 70.0]]])  # sums, never means
    np.testing.assert_array_equal(hourly.repaired, [[[False, False], [False, True]]])
    assert hourly.timestamps.equals(pd.DatetimeIndex([START, START + pd.Timedelta("1h")]))


def test_partial_trailing_steps_need_drop_partial():
    traffic = traffic_of(np.arange(7, dtype=np.float32).reshape(1, 7, 1))
    with pytest.raises(
        DataError, match=r"test.parquet: 7 steps of 30min are not a whole number of 1h steps"
    ) as err:
        resample(traffic, "1h")
    assert "the last 1 step(s), from 2026-01-05 03:00:00+01:00" in str(err.value)
    assert "--drop-partial" in str(err.value)
    hourly = resample(traffic, "1h", drop_partial=True)
    np.testing.assert_array_equal(hourly.values[0, :, 0], [1.0, 5.0, 9.0])
    assert (traffic.end - hourly.end) / traffic.step == 1
    with pytest.raises(DataError, match=r"has 7 step\(s\) of 30min, less than one step of 1D"):
        resample(traffic, "1D", drop_partial=True)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("15min", r"cannot resample data at a 30min step to 15min: resampling only aggregates"),
        (
            "45min",
            r"to 45min: that is not a whole multiple of it; choose a multiple of 30min, such as 1h or 3h",
        ),
        ("soon", r"step 'soon' is not a duration"),
        ("-1h", r"must be a positive duration"),
    ],
)
def test_bad_steps(step, message):
    with pytest.raises(ConfigError, match=message):
        resample(traffic_of(np.ones((1, 4, 1))), step)


def users_of(steps: int) -> UserMobility:
    return UserMobility(
        locations=np.zeros((2, steps), np.int64),
        start=START,
        step=pd.Timedelta("30min"),
        stations=Stations(["a"]),
    )


def test_user_mobility_is_refused():
    with pytest.raises(ConfigError, match="resample aggregates station traffic only; this is user mobility"):
        resample(users_of(4), "1h")


def test_cli_resample(tmp_path):
    runner = CliRunner()
    values = np.arange(2 * 5 * 1, dtype=np.float32).reshape(2, 5, 1)
    write(traffic_of(values), tmp_path / "half")
    result = runner.invoke(
        app, ["data", "resample", str(tmp_path / "half"), "--step", "1h", "--out", str(tmp_path / "h")]
    )
    assert isinstance(result.exception, DataError) and "--drop-partial" in str(result.exception)
    assert not (tmp_path / "h").exists()
    result = runner.invoke(
        app,
        [
            "data",
            "resample",
            str(tmp_path / "half"),
            "--step",
            "1h",
            "--drop-partial",
            "--out",
            str(tmp_path / "h"),
        ],
    )
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "5 steps of 30min -> 2 steps of 1h (sums); dropped the last 1 step(s)" in said
    hourly = read(tmp_path / "h")
    np.testing.assert_array_equal(hourly.values[:, :, 0], [[1.0, 5.0], [11.0, 15.0]])
    assert hourly.step == pd.Timedelta("1h") and hourly.start == START


def test_cli_resample_refuses_users_only(tmp_path):
    write(users_of(4), tmp_path / "users")
    result = CliRunner().invoke(
        app, ["data", "resample", str(tmp_path / "users"), "--step", "1h", "--out", str(tmp_path / "o")]
    )
    assert isinstance(result.exception, ConfigError)
    assert "holds user mobility only; resample aggregates station traffic" in str(result.exception)
