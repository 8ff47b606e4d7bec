"""The MobiFM .npz loader (data, time as [day of week, hour], kg embeddings .npy) and `data import mobifm`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cellsynth.cli import app
from cellsynth.data import read
from cellsynth.data.loaders import FORMATS, load_mobifm
from cellsynth.errors import DataError
from tests.conftest import shared_file


def time_axis(n: int, steps: int, first_hour: int = 0, every: int = 1) -> np.ndarray:
    """``int32 [n, steps, 2]``: [day of week, hour] of a regular axis of ``every`` hours from ``first_hour``."""
    hours = (first_hour + every * np.arange(steps)) % 168
    one = np.stack([hours // 24, hours % 24], axis=-1).astype(np.int32)
    return np.repeat(one[None], n, axis=0)


def write_set(tmp_path, name="NJTCH", n=3, steps=48, first_hour=0, every=1, features=4, **override):
    data = np.arange(n * steps, dtype=np.float64).reshape(n, steps)
    arrays = {"data": data, "time": time_axis(n, steps, first_hour, every), **override}
    path = tmp_path / f"{name}.npz"
    np.savez(path, **arrays)
    emb = np.random.default_rng(0).normal(size=(n, features)).astype(np.float32)
    emb_path = tmp_path / f"kg_embeddings_{name}.npy"
    np.save(emb_path, emb)
    return path, emb_path, data, emb


def test_small_set_with_embeddings(tmp_path):
    path, emb_path, data, emb = write_set(tmp_path)
    traffic = load_mobifm(path, emb_path)
    assert traffic.values.shape == (3, 48, 1) and traffic.channels == ("traffic",)
    np.testing.assert_array_equal(traffic.values[:, :, 0], data.astype(np.float32))
    assert list(traffic.stations.ids) == ["0", "1", "2"] and not traffic.stations.has_coordinates
    assert traffic.stations.feature_names == ("kge_0", "kge_1", "kge_2", "kge_3")
    np.testing.assert_array_equal(traffic.stations.features, emb)
    # Day 0, hour 0 on the documented placeholder Monday; the step read from the time array.
    assert traffic.start == pd.Timestamp("2026-01-05 00:00", tz="Asia/Shanghai")
    assert traffic.step == pd.Timedelta("1h")
    assert load_mobifm(path).stations.feature_names == ()  # no embeddings: no features


def test_time_array_gives_start_and_step(tmp_path):
    # First step: day 2, hour 5; every 2 hours, running over the end of the week back to day 0.
    path, emb_path, _, _ = write_set(tmp_path, first_hour=2 * 24 + 5, steps=90, every=2)
    traffic = load_mobifm(path, emb_path)
    assert traffic.step == pd.Timedelta("2h")
    assert traffic.start == pd.Timestamp("2026-01-07 05:00", tz="Asia/Shanghai")  # Wednesday
    assert traffic.start.day_name() == "Wednesday"
    # A real start must be at the hour the time array gives; its date fixes which weekday day 2 is.
    real = load_mobifm(path, start="2020-06-02 05:00", tz="UTC")
    assert real.start == pd.Timestamp("2020-06-02 05:00", tz="UTC")
    with pytest.raises(
        DataError, match=r"start .* is at hour 6, but time puts the first step at hour 5 \(day 2\)"
    ):
        load_mobifm(path, start="2020-06-02 06:00")


def test_embeddings_in_the_readme_layout_and_channel_names(tmp_path):
    path, _, _, emb = write_set(tmp_path, name="NJUCH")
    np.save(tmp_path / "e.npy", emb[:, None, :])  # [N, 1, F], as the source's README describes it
    users = load_mobifm(path, tmp_path / "e.npy")
    assert users.channels == ("users",)
    np.testing.assert_array_equal(users.stations.features, emb)
    other, _, _, _ = write_set(tmp_path, name="nanjing_week")
    assert load_mobifm(other, channel="volume").channels == ("volume",)
    with pytest.raises(
        DataError, match=r"cannot tell the channel from the file name 'nanjing_week'.*channel="
    ):
        load_mobifm(other)


def test_sub_hour_data_needs_its_step(tmp_path):
    # 30-minute steps: [day, hour] repeats each hour twice, so the step cannot be read from it.
    hours = np.repeat(np.arange(24), 2)
    time = np.stack([np.zeros(48, np.int32), hours], axis=-1)[None].repeat(2, axis=0)
    path, _, _, _ = write_set(tmp_path, n=2, time=time)
    with pytest.raises(DataError, match=r"repeats the hour of step 0 at step 1.*step='30min'"):
        load_mobifm(path)
    traffic = load_mobifm(path, step="30min")
    assert traffic.step == pd.Timedelta("30min") and traffic.n_steps == 48
    # Starting at 00:30, the slots run [0, 0], [0, 1], [0, 1], ..., [0, 23], [1, 0]: that axis does not fit a
    # start at 00:00, and does fit one at 00:30.
    hour_of_week = np.concatenate([[0], np.repeat(np.arange(1, 24), 2), [24]])
    shifted = np.stack([hour_of_week // 24, hour_of_week % 24], axis=-1)[None].repeat(2, axis=0)
    np.savez(path, data=np.ones((2, 48)), time=shifted)
    with pytest.raises(DataError, match=r"not a regular axis of step 30min: step 1 is \[0, 1\]"):
        load_mobifm(path, step="30min")
    assert load_mobifm(path, step="30min", start="2026-01-05 00:30").start.minute == 30


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"data": np.zeros(5)}, r"data must be \[stations, steps\], got shape \(5,\)"),
        ({"time": time_axis(3, 47)}, r"time has shape \(3, 47, 2\), expected \(3, 48, 2\)"),
        ({"time": time_axis(3, 48).astype(np.float64)}, r"time has dtype float64, expected integers"),
        (
            {"time": time_axis(3, 48, first_hour=0)[:, :, :] + np.array([0, 24])},
            r"step 0 has hour 24, outside 0-23",
        ),
        ({"time": time_axis(3, 48) + np.array([7, 0])}, r"step 0 has day of week 7, outside 0-6"),
        ({"data": np.full((3, 48), -1.0)}, r"negative.*station '0'"),
        ({"data": np.full((3, 48), np.nan)}, r"NaN"),
    ],
)
def test_bad_archives(tmp_path, override, message):
    path, emb_path, _, _ = write_set(tmp_path, **override)
    with pytest.raises(DataError, match=message) as err:
        load_mobifm(path, emb_path)
    assert str(err.value).startswith(str(path))


def test_time_axis_errors_name_row_and_step(tmp_path):
    time = time_axis(3, 48)
    time[2, 10] = [0, 23]
    path, _, _, _ = write_set(tmp_path, time=time)
    with pytest.raises(
        DataError, match=r"time of station row 2 differs from row 0 at step 10 \(\[0, 23\] vs \[0, 10\]\)"
    ):
        load_mobifm(path)
    gap = time_axis(3, 48)
    gap[:, 20:] = time_axis(3, 28, first_hour=21)  # hour 20 is missing
    np.savez(path, data=np.ones((3, 48)), time=gap)
    with pytest.raises(
        DataError, match=r"not a regular axis of step 1h: step 20 is \[0, 21\].*is \[0, 20\] \(28 step"
    ):
        load_mobifm(path)
    np.savez(path, data=np.ones((3, 48)))
    with pytest.raises(DataError, match=r"no array 'time' in the archive \(arrays: \['data'\]\)"):
        load_mobifm(path)


def test_bad_embeddings_name_their_file(tmp_path):
    path, emb_path, _, emb = write_set(tmp_path)
    np.save(emb_path, emb[:2])
    with pytest.raises(DataError, match=r"embedding has shape \(2, 4\), expected \(3, F\)") as err:
        load_mobifm(path, emb_path)
    assert str(err.value).startswith(str(emb_path)) and str(path) in str(err.value)
    bad = emb.copy()
    bad[1, 2] = np.nan
    np.save(emb_path, bad)
    with pytest.raises(DataError, match=r"station '1', feature 'kge_2'") as err:
        load_mobifm(path, emb_path)
    assert str(err.value).startswith(str(emb_path))
    with pytest.raises(DataError, match="is an .npz archive, expected a single .npy array"):
        load_mobifm(path, path)
    with pytest.raises(DataError, match="file not found"):
        load_mobifm(path, tmp_path / "missing.npy")


def test_never_unpickles(tmp_path):
    path, _, _, _ = write_set(tmp_path)
    objects = np.empty(3, dtype=object)
    objects[:] = [{"a": 1}, None, "x"]
    np.save(tmp_path / "objects.npy", objects, allow_pickle=True)
    with pytest.raises(DataError, match="cannot read the NumPy file"):
        load_mobifm(path, tmp_path / "objects.npy")


def test_cli_import_mobifm(tmp_path):
    path, emb_path, data, emb = write_set(tmp_path, name="NJUCH")
    out = tmp_path / "nanjing"
    result = CliRunner().invoke(
        app, ["data", "import", "mobifm", str(path), "--embeddings", str(emb_path), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    written = read(out)
    assert written.channels == ("users",) and written.step == pd.Timedelta("1h")
    np.testing.assert_array_equal(written.values[:, :, 0], data.astype(np.float32))
    np.testing.assert_array_equal(written.stations.features, emb)
    assert FORMATS["mobifm"].loader is load_mobifm and FORMATS["mobifm"].returns == "traffic"


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "channel", "top"), [("NJTCH", "traffic", 3.6e8), ("NJUCH", "users", 1135)])
def test_real_nanjing(shared_data, name, channel, top):
    folder = "mobifm-nanjing"
    traffic = load_mobifm(
        shared_file(shared_data, f"{folder}/{name}.npz"),
        shared_file(shared_data, f"{folder}/kg_embeddings_{name}.npy"),
    )
    assert traffic.values.shape == (1000, 168, 1) and traffic.channels == (channel,)
    assert traffic.stations.features.shape == (1000, 256)
    assert traffic.step == pd.Timedelta("1h") and traffic.start == pd.Timestamp(
        "2026-01-05", tz="Asia/Shanghai"
    )
    assert traffic.values.min() == 0 and traffic.values.max() <= top
    # Not rescaled per station, unlike Beijing: weekly totals are heavy-tailed across stations.
    totals = traffic.values.sum(axis=(1, 2))
    assert totals.max() / np.median(totals) > 10
