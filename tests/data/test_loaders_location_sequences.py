"""Location-id sequences + gps table (MoveSim's GeoLife files)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellsynth.data.loaders import load_location_sequences
from cellsynth.errors import DataError
from tests.conftest import shared_file

GPS = "39.90 116.40\n39.91 116.41\n39.92 116.42\n39.93 116.43\n39.94 116.44\n"


@pytest.fixture
def gps(tmp_path):
    path = tmp_path / "gps"
    path.write_text(GPS)
    return path


def test_sequences(tmp_path, gps):
    seq = tmp_path / "real.data"
    seq.write_text("4 4 1 1\n1 1 1 4\n")
    data = load_location_sequences(seq, gps)
    # Only the visited locations, sorted by id; locations index into them.
    assert list(data.stations.ids) == ["1", "4"]
    np.testing.assert_allclose(data.stations.lat, [39.91, 39.94])
    np.testing.assert_allclose(data.stations.lon, [116.41, 116.44])
    np.testing.assert_array_equal(data.locations, [[1, 1, 0, 0], [0, 0, 0, 1]])
    assert data.user_ids == ("real-0", "real-1")
    assert data.start == pd.Timestamp("2026-01-05 00:00", tz="Asia/Shanghai") and data.step == pd.Timedelta(
        "30min"
    )
    assert not data.has_traffic

    every = load_location_sequences(
        seq, gps, only_visited=False, start="2008-10-23 00:00", tz="UTC", user_prefix="g"
    )
    assert list(every.stations.ids) == ["0", "1", "2", "3", "4"]
    np.testing.assert_array_equal(every.locations, [[4, 4, 1, 1], [1, 1, 1, 4]])
    assert every.user_ids == ("g-0", "g-1") and every.start == pd.Timestamp("2008-10-23", tz="UTC")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1 1 1\n1 1\n", "line 2 has 2 location ids, but line 1 has 3"),
        ("1 1 1\n1 x 1\n", "line 2, slot 2: 'x' is not an integer"),
        ("1 1 1\n1 1 1.5\n", "line 2, slot 3: '1.5'"),
        ("1 1 1\n1 1 5\n", "line 2, slot 3: location id 5 is not in the gps table"),
        ("1 1 1\n-1 1 1\n", "line 2, slot 1: location id -1"),
        ("1 1 1\n\n1 1 1\n", "line 2 has 0 location ids"),
        ("\n\n", "empty"),
    ],
)
def test_bad_sequences(tmp_path, gps, body, message):
    seq = tmp_path / "s.data"
    seq.write_text(body)
    with pytest.raises(DataError, match=message) as err:
        load_location_sequences(seq, gps)
    assert str(err.value).startswith(str(seq))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("39.9 116.4\n39.9\n", "line 2: expected 2 fields"),
        ("39.9 116.4\n39.9 east\n", "line 2"),
        ("1 2\n95 1\n", "lat"),
    ],
)
def test_bad_gps(tmp_path, body, message):
    seq = tmp_path / "s.data"
    seq.write_text("0 1\n")
    gps = tmp_path / "gps"
    gps.write_text(body)
    with pytest.raises(DataError, match=message) as err:
        load_location_sequences(seq, gps, only_visited=False)
    assert str(gps) in str(err.value)


@pytest.mark.realdata
def test_real_geolife(shared_data):
    gps = shared_file(shared_data, "geolife-movesim/gps")
    data = load_location_sequences(shared_file(shared_data, "geolife-movesim/real.data"), gps)
    assert data.locations.shape == (7000, 48)
    assert data.user_ids[0] == "real-0" and data.user_ids[-1] == "real-6999"
    assert len(data.stations) == len(np.unique(data.locations)) < 23_768
    val = load_location_sequences(
        shared_file(shared_data, "geolife-movesim/val.data"), gps, only_visited=False
    )
    assert val.locations.shape == (1000, 48) and len(val.stations) == 23_768
