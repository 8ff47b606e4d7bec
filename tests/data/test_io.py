"""cellsynth's Parquet format: exact round trips, validation on read, atomic writes."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cellsynth.data import Stations, StationTraffic, UserMobility, read, read_stations, write
from cellsynth.data.io import atomic_directory, long_to_traffic, write_text_atomic
from cellsynth.errors import DataError, OutputError
from cellsynth.outputs import DATASET, MARKER

from .test_model import START, make_stations, make_traffic


def test_traffic_round_trip_is_exact(tmp_path):
    traffic = make_traffic()
    back = read(write(traffic, tmp_path / "t"))
    assert back.equals(traffic)
    assert back.values.dtype == np.float32
    assert str(back.start.tz) == "Europe/Rome"


def test_repaired_mask_round_trips(tmp_path):
    traffic = make_traffic()
    mask = np.zeros(traffic.values.shape, bool)
    mask[1, 3, 0] = mask[2, 5, 1] = True
    repaired = StationTraffic(traffic.values, START, "1h", traffic.channels, traffic.stations, repaired=mask)
    back = read(write(repaired, tmp_path / "t"))
    np.testing.assert_array_equal(back.repaired, mask)


def test_mobility_round_trip_with_and_without_traffic(tmp_path):
    locations = np.array([[0, 1, 1, 3], [2, 2, 0, 0]])
    with_traffic = UserMobility(locations, START, "30min", make_stations(), traffic=np.ones((2, 4)) * 0.5)
    assert read(write(with_traffic, tmp_path / "a")).equals(with_traffic)
    bare = UserMobility(locations, START, "30min", make_stations(coords=False), user_ids=("z", "y"))
    back = read(write(bare, tmp_path / "b"))
    assert back.equals(bare) and back.traffic is None and back.user_ids == ("z", "y")


def test_single_step_dataset_keeps_its_step(tmp_path):
    traffic = StationTraffic(np.ones((2, 1, 1)), START, "10min", ("internet",), make_stations(2))
    back = read(write(traffic, tmp_path / "one"))
    assert back.step == pd.Timedelta("10min") and back.equals(traffic)


@given(
    values=hnp.arrays(np.float32, (3, 4, 2), elements=st.floats(0, 3e7, width=32)),
    tz=st.sampled_from(["UTC", "Europe/Rome", "Asia/Shanghai", "America/New_York"]),
)
def test_round_trip_property(tmp_path_factory, values, tz):
    traffic = StationTraffic(
        values, pd.Timestamp("2021-03-27 22:00", tz=tz), "1h", ("a", "b"), make_stations(3)
    )
    back = read(write(traffic, tmp_path_factory.mktemp("rt") / "d"))
    assert back.equals(traffic)


def test_failed_write_leaves_the_old_dataset(tmp_path, monkeypatch):
    target = tmp_path / "data"
    good = make_traffic()
    write(good, target)

    import cellsynth.data.io as io

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io, "_write_traffic", crash)
    with pytest.raises(OutputError, match="disk full"):
        write(make_traffic(n=2), target)
    assert read(target).equals(good)
    assert [p.name for p in tmp_path.iterdir()] == ["data"]  # no temporary leftovers


def test_atomic_directory_replaces_whole(tmp_path):
    target = tmp_path / "d"
    write(make_traffic(), target)
    with atomic_directory(target, DATASET) as tmp:
        (tmp / "mobility.parquet").write_text("new")
    assert sorted(os.listdir(target)) == [MARKER, "mobility.parquet"]
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_read_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="not a cellsynth dataset directory"):
        read(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="missing stations.parquet"):
        read(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "stations.parquet").write_text("not parquet")
    with pytest.raises(DataError, match=r"bad/stations.parquet: cannot read Parquet"):
        read(bad)


def long_frame(traffic: StationTraffic) -> pd.DataFrame:
    n, t, _ = traffic.values.shape
    return pd.DataFrame(
        {
            "station_id": np.repeat(traffic.stations.ids, t),
            "timestamp": traffic.timestamps[np.tile(np.arange(t), n)],
            "internet": traffic.values[:, :, 0].reshape(-1),
        }
    )


def test_long_to_traffic_names_missing_and_duplicate_rows():
    traffic = make_traffic(c=1)
    frame = long_frame(traffic)
    assert long_to_traffic(frame, traffic.stations, ["internet"]).equals(traffic)
    with pytest.raises(DataError, match=r"station_id 's1' has no row at 2013-11-04 05:00"):
        long_to_traffic(frame.drop(index=24 + 5), traffic.stations, ["internet"])
    with pytest.raises(DataError, match=r"station_id 's0' appears 2 times"):
        long_to_traffic(pd.concat([frame, frame.iloc[[3]]]), traffic.stations, ["internet"])
    unknown = frame.assign(station_id=frame["station_id"].replace("s3", "s9"))
    with pytest.raises(DataError, match=r"unknown station id\(s\): s9"):
        long_to_traffic(unknown, traffic.stations, ["internet"])
    with pytest.raises(DataError, match=r"missing column\(s\) \['sms'\]"):
        long_to_traffic(frame, traffic.stations, ["internet", "sms"])
    text = frame.astype({"internet": object})
    text.loc[7, "internet"] = "n/a"
    with pytest.raises(DataError, match=r"column 'internet' row 7: 'n/a' is not a number"):
        long_to_traffic(text, traffic.stations, ["internet"])


def test_stations_csv(tmp_path):
    path = tmp_path / "stations.csv"
    pd.DataFrame(
        {"station_id": ["007", "8"], "lat": [45.0, 45.1], "lon": [9.0, 9.1], "poi_bar": [3, 0]}
    ).to_csv(path, index=False)
    stations = read_stations(path)
    assert list(stations.ids) == ["007", "8"]  # ids stay strings: leading zeros kept
    assert stations.feature_names == ("poi_bar",)
    with pytest.raises(DataError, match="file not found"):
        read_stations(tmp_path / "missing.csv")
    assert isinstance(stations, Stations)


def test_atomic_text_write_replaces_whole_or_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "new" / "page.html"
    write_text_atomic(path, "first")
    assert path.read_text() == "first"

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("cellsynth.data.io.os.replace", fail)
    with pytest.raises(OutputError, match="disk full"):
        write_text_atomic(path, "second")
    assert path.read_text() == "first" and sorted(p.name for p in path.parent.iterdir()) == ["page.html"]
