"""The real long tables in ../shared/data read through the generic `csv` path, and resample to hourly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cellsynth.cli import app
from cellsynth.data import read, resample
from cellsynth.data.loaders import load_traffic_table
from cellsynth.errors import DataError
from tests.conftest import shared_file

pytestmark = pytest.mark.realdata


def test_nanchang_with_its_poi_stations(shared_data):
    traffic = load_traffic_table(
        shared_file(shared_data, "uomo-nanchang/traffic.csv.gz"),
        shared_file(shared_data, "uomo-nanchang/stations.csv"),
    )
    assert traffic.values.shape == (413, 399, 2) and traffic.channels == ("traffic", "users")
    assert traffic.step == pd.Timedelta("30min")
    assert traffic.start == pd.Timestamp("2026-01-05 00:00", tz="Asia/Shanghai")  # the placeholder Monday
    assert traffic.stations.feature_names == tuple(f"poi_{j:02d}" for j in range(23))
    assert not traffic.stations.has_coordinates
    # 399 half-hours are 199.5 hours: to hourly only by dropping the last half-hour, explicitly.
    with pytest.raises(DataError, match=r"the last 1 step\(s\), from 2026-01-13 07:00:00\+08:00"):
        resample(traffic, "1h")
    hourly = resample(traffic, "1h", drop_partial=True)
    assert hourly.values.shape == (413, 199, 2)
    np.testing.assert_allclose(
        hourly.values.sum(axis=1, dtype=np.float64),
        traffic.values[:, :398].sum(axis=1, dtype=np.float64),
        rtol=1e-5,
    )


def test_milan_25_squares_without_a_stations_file(shared_data, tmp_path):
    table = shared_file(shared_data, "milan/milan_25_squares.csv.gz")
    out = tmp_path / "milan"
    result = CliRunner().invoke(app, ["data", "import", "csv", str(table), "--out", str(out)])
    assert result.exit_code == 0, result.output
    traffic = read(out)
    assert traffic.values.shape == (25, 4320, 1) and traffic.channels == ("internet",)
    assert traffic.step == pd.Timedelta("10min")
    assert traffic.start == pd.Timestamp("2013-11-01 00:00", tz="Europe/Rome")
    assert traffic.end == pd.Timestamp("2013-12-01 00:00", tz="Europe/Rome")
    ids = [f"r{r}c{c}" for r in range(41, 46) for c in range(41, 46)]
    assert list(traffic.stations.ids) == ids and not traffic.stations.has_coordinates
    hourly = resample(traffic, "1h")
    assert hourly.values.shape == (25, 720, 1)
    np.testing.assert_allclose(
        hourly.values.sum(axis=1, dtype=np.float64), traffic.values.sum(axis=1, dtype=np.float64), rtol=1e-5
    )
