"""The STK-Diff .npz loader."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellsynth.data.loaders import load_stkdiff
from cellsynth.errors import DataError
from tests.conftest import shared_file


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def test_huge_finite_values_that_fit_float32_are_kept(tmp_path):
    path = write_npz(tmp_path / "b.npz", bs_record=np.array([[1e30, 3.0e38]]))
    np.testing.assert_allclose(load_stkdiff(path).values[0, :, 0], [1e30, 3.0e38], rtol=1e-6)


def test_small_archive(tmp_path):
    record = np.arange(3 * 168, dtype=np.float64).reshape(3, 168)
    kge = np.random.default_rng(0).normal(size=(3, 4))
    path = write_npz(tmp_path / "b.npz", bs_record=record, bs_kge=kge)
    data = load_stkdiff(path)
    assert data.values.shape == (3, 168, 1) and data.channels == ("traffic",)
    np.testing.assert_array_equal(data.values[:, :, 0], record.astype(np.float32))
    assert list(data.stations.ids) == ["0", "1", "2"] and not data.stations.has_coordinates
    assert data.stations.feature_names == ("kge_0", "kge_1", "kge_2", "kge_3")
    np.testing.assert_allclose(data.stations.features, kge, rtol=1e-6)
    # The documented placeholder: Monday 2026-01-05 00:00 in Beijing, hourly.
    assert (
        data.start == pd.Timestamp("2026-01-05 00:00", tz="Asia/Shanghai")
        and data.start.day_name() == "Monday"
    )
    assert data.step == pd.Timedelta("1h")

    other = load_stkdiff(path, start="2021-03-01 00:00", tz="UTC", channel="volume")
    assert other.start == pd.Timestamp("2021-03-01", tz="UTC") and other.channels == ("volume",)
    no_features = write_npz(tmp_path / "c.npz", bs_record=record)
    assert load_stkdiff(no_features).stations.feature_names == ()


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"other": np.zeros((2, 3))}, r"no array 'bs_record'.*\['other'\]"),
        ({"bs_record": np.zeros(5)}, r"must be \[stations, hours\]"),
        (
            {"bs_record": np.zeros((2, 3)), "bs_kge": np.zeros((3, 4))},
            r"bs_kge has shape \(3, 4\), expected \(2, F\)",
        ),
        ({"bs_record": np.array([[1.0, np.nan]])}, "NaN"),
        ({"bs_record": np.array([[1.0, -1.0]])}, "negative"),
        (
            {"bs_record": np.array([[1.0, 1e308]])},
            r"bs_record\[0, 1\] \(station 0, hour 1\): 1e\+308 is too large: it overflows float32.*rescale",
        ),
        (
            {"bs_record": np.ones((1, 2)), "bs_kge": np.array([[0.0, -1e39]])},
            r"bs_kge\[0, 1\] \(station 0, column 1\): -1e\+39 is too large: it overflows float32",
        ),
    ],
)
def test_bad_archives(tmp_path, arrays, message):
    path = write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message) as err:
        load_stkdiff(path)
    assert str(err.value).startswith(str(path))


def test_not_an_archive(tmp_path):
    path = tmp_path / "x.npz"
    path.write_text("hello")
    with pytest.raises(
        DataError, match=r"is not an \.npz archive.*starts with b'hello'.*download it again"
    ) as err:
        load_stkdiff(path)
    assert str(err.value).startswith(str(path)) and "pickle" not in str(err.value)
    good = write_npz(tmp_path / "good.npz", bs_record=np.ones((2, 3)))
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[:100])
    with pytest.raises(DataError, match=r"is not a complete \.npz archive.*download it again") as err:
        load_stkdiff(cut)
    assert str(err.value).startswith(str(cut))
    objects = write_npz(tmp_path / "objects.npz", bs_record=np.array([[1.0, "x"]], dtype=object))
    with pytest.raises(DataError, match="Python objects, which cellsynth never unpickles.*numeric dtype"):
        load_stkdiff(objects)
    single = tmp_path / "y.npy"
    np.save(single, np.zeros((2, 2)))
    with pytest.raises(DataError, match="not an .npz"):
        load_stkdiff(single)


@pytest.mark.realdata
def test_real_beijing(shared_data):
    data = load_stkdiff(shared_file(shared_data, "beijing-stkdiff/beijing.npz"))
    assert data.values.shape == (960, 168, 1)
    assert data.stations.features.shape == (960, 32)
    assert 0 <= data.values.min() and data.values.max() <= 3.0e7
