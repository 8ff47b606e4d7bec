"""The data model validates on construction and names what is wrong and where."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cellsynth.data import Stations, StationTraffic, UserMobility, regular_timeline
from cellsynth.data.samples import split_samples, stack_samples
from cellsynth.data.split import split_stations, split_users
from cellsynth.errors import DataError

START = pd.Timestamp("2013-11-04", tz="Europe/Rome")


def make_stations(n=4, coords=True) -> Stations:
    rng = np.random.default_rng(0)
    return Stations(
        ids=[f"s{i}" for i in range(n)],
        lat=45.4 + rng.random(n) * 0.1 if coords else None,
        lon=9.1 + rng.random(n) * 0.1 if coords else None,
        features=rng.random((n, 2)),
        feature_names=("poi_shop", "poi_bar"),
    )


def make_traffic(n=4, t=24, c=2) -> StationTraffic:
    values = np.random.default_rng(1).gamma(2.0, size=(n, t, c)).astype(np.float32)
    return StationTraffic(values, START, "1h", ("internet", "sms")[:c], make_stations(n))


# -- Stations ----------------------------------------------------------------------------------------------
def test_stations_rejects_duplicate_ids_and_names_them():
    with pytest.raises(DataError, match=r"duplicate station ids: a"):
        Stations(ids=["a", "b", "a"])


def test_stations_rejects_empty_table():
    with pytest.raises(DataError, match="empty"):
        Stations(ids=[])


@pytest.mark.parametrize(
    ("lat", "lon", "message"),
    [
        ([45.0, np.nan], [9.0, 9.1], r"lat has 1 NaN/inf.*station 'b'"),
        ([45.0, 95.0], [9.0, 9.1], r"lat of station 'b' is 95.0, outside"),
        ([45.0, 45.1], [9.0, 200.0], r"lon of station 'b'"),
        ([45.0], [9.0, 9.1], r"lat has shape \(1,\), expected \(2,\)"),
    ],
)
def test_stations_rejects_bad_coordinates(lat, lon, message):
    with pytest.raises(DataError, match=message):
        Stations(ids=["a", "b"], lat=lat, lon=lon)


def test_stations_needs_both_coordinates():
    with pytest.raises(DataError, match="both lat and lon"):
        Stations(ids=["a"], lat=[45.0])


def test_trajectory_coordinates_are_the_stations_own_or_zeros():
    placed = Stations(ids=["a", "b"], lat=[39.9, 40.0], lon=[116.3, 116.4])
    lat, lon = placed.trajectory_coordinates()
    np.testing.assert_array_equal(lat, [39.9, 40.0])
    np.testing.assert_array_equal(lon, [116.3, 116.4])
    lat, lon = Stations(ids=["a", "b", "c"]).trajectory_coordinates()
    assert lat.shape == lon.shape == (3,) and not lat.any() and not lon.any()


def test_stations_feature_errors():
    with pytest.raises(DataError, match="features have shape"):
        Stations(ids=["a", "b"], features=np.zeros((3, 2)))
    with pytest.raises(DataError, match="2 feature names for 3"):
        Stations(ids=["a"], features=np.zeros((1, 3)), feature_names=("x", "y"))
    with pytest.raises(DataError, match=r"features has 1 NaN.*station 'a', feature 'y'"):
        Stations(ids=["a"], features=[[1.0, np.inf]], feature_names=("x", "y"))


def test_index_of_names_unknown_ids():
    with pytest.raises(DataError, match=r"1 unknown station id\(s\): zz"):
        make_stations().index_of(["s1", "zz"])
    assert make_stations().index_of(["s3", "s0"]).tolist() == [3, 0]


def test_stations_frame_round_trip():
    stations = make_stations()
    assert Stations.from_frame(stations.to_frame()).equals(stations)
    no_xy = make_stations(coords=False)
    assert Stations.from_frame(no_xy.to_frame()).equals(no_xy)


def test_stations_frame_rejects_text_features():
    frame = make_stations().to_frame().assign(kind="urban")
    with pytest.raises(DataError, match=r"\['kind'\] are not numeric"):
        Stations.from_frame(frame)


# -- StationTraffic ----------------------------------------------------------------------------------------
def test_traffic_rejects_nan_and_says_where():
    values = np.ones((2, 3, 1), np.float32)
    values[1, 2, 0] = np.nan
    with pytest.raises(DataError, match=r"station 's1', 2013-11-04 02:00:00\+01:00, channel 'internet'"):
        StationTraffic(values, START, "1h", ("internet",), make_stations(2))


def test_traffic_rejects_negative_values():
    values = np.ones((2, 3, 1), np.float32)
    values[0, 1, 0] = -5
    with pytest.raises(DataError, match=r"1 negative value.*station 's0'.*value -5"):
        StationTraffic(values, START, "1h", ("internet",), make_stations(2))


@pytest.mark.parametrize(
    ("shape", "channels", "n_stations", "message"),
    [
        ((2, 3), ("a",), 2, r"must be \[stations, steps, channels\]"),
        ((2, 0, 1), ("a",), 2, "empty"),
        ((2, 3, 2), ("a",), 2, r"1 channel names \('a',\) for 2 channels"),
        ((2, 3, 2), ("a", "a"), 2, "duplicate channel names"),
        ((3, 3, 1), ("a",), 2, "3 station rows in the values but 2 stations"),
    ],
)
def test_traffic_rejects_bad_shapes(shape, channels, n_stations, message):
    with pytest.raises(DataError, match=message):
        StationTraffic(np.ones(shape, np.float32), START, "1h", channels, make_stations(n_stations))


def test_traffic_needs_timezone_and_positive_step():
    values = np.ones((2, 3, 1), np.float32)
    with pytest.raises(DataError, match="no timezone"):
        StationTraffic(values, pd.Timestamp("2013-11-04"), "1h", ("a",), make_stations(2))
    with pytest.raises(DataError, match="positive duration"):
        StationTraffic(values, START, "0h", ("a",), make_stations(2))


def test_traffic_values_are_read_only():
    traffic = make_traffic()
    with pytest.raises(ValueError):
        traffic.values[0, 0, 0] = 1.0


def test_traffic_selections():
    traffic = make_traffic()
    sub = traffic.select_stations(["s2", "s0"])
    assert list(sub.stations.ids) == ["s2", "s0"]
    np.testing.assert_array_equal(sub.values, traffic.values[[2, 0]])
    assert traffic.select_channels(["sms"]).values.shape == (4, 24, 1)
    with pytest.raises(DataError, match="no channel"):
        traffic.select_channels(["call"])
    week = traffic.slice_steps(6, 12)
    assert week.start == START + pd.Timedelta(hours=6) and week.n_steps == 6


def test_steps_per_period():
    traffic = make_traffic()
    assert traffic.steps_per("1D") == 24 and traffic.steps_per("7D") == 168
    with pytest.raises(DataError, match="does not divide"):
        traffic.steps_per("90min")


# -- UserMobility ------------------------------------------------------------------------------------------
def test_mobility_rejects_out_of_range_locations():
    with pytest.raises(DataError, match=r"not station indices in \[0, 4\).*user 'u1'.*has 7"):
        UserMobility(np.array([[0, 1], [2, 7]]), START, "30min", make_stations(4))


def test_mobility_rejects_fractional_locations_and_bad_traffic():
    with pytest.raises(DataError, match="integer station indices"):
        UserMobility(np.array([[0.5, 1.0]]), START, "30min", make_stations(4))
    with pytest.raises(DataError, match=r"user traffic has 1 negative.*user 'u0'"):
        UserMobility(np.array([[0, 1]]), START, "30min", make_stations(4), traffic=np.array([[1.0, -1.0]]))
    with pytest.raises(DataError, match=r"traffic has shape \(1, 3\)"):
        UserMobility(np.array([[0, 1]]), START, "30min", make_stations(4), traffic=np.ones((1, 3)))
    with pytest.raises(DataError, match="duplicate user ids"):
        UserMobility(np.zeros((2, 2), int), START, "30min", make_stations(4), user_ids=("a", "a"))


# -- time axis ---------------------------------------------------------------------------------------------
def test_regular_timeline_errors_name_the_timestamp():
    hours = pd.date_range("2013-11-04", periods=5, freq="1h", tz="UTC")
    assert regular_timeline(hours)[1:] == (pd.Timedelta("1h"), 5)
    with pytest.raises(
        DataError, match=r"irregular time steps: 2013-11-04 02:00:00\+00:00 -> .* is 0 days 02:00"
    ):
        regular_timeline(hours.delete(3))
    with pytest.raises(DataError, match="duplicated"):
        regular_timeline(hours.insert(2, hours[1]))
    with pytest.raises(DataError, match="out of order"):
        regular_timeline(hours[[0, 2, 1, 3]])
    with pytest.raises(DataError, match="no timezone"):
        regular_timeline(hours.tz_localize(None))
    with pytest.raises(DataError, match="empty"):
        regular_timeline([])


# -- samples and splits ------------------------------------------------------------------------------------
@given(k=st.integers(1, 4), n=st.integers(1, 5))
def test_stack_and_split_samples_are_inverse(k, n):
    values = np.random.default_rng(k * 10 + n).random((n, k, 6, 2)).astype(np.float32)
    traffic = stack_samples(
        make_stations(n), values, start=START, step=pd.Timedelta("1h"), channels=("a", "b")
    )
    ids, back = split_samples(traffic)
    assert ids == [f"s{i}" for i in range(n)]
    np.testing.assert_array_equal(back, values)


@given(
    n=st.integers(2, 40),
    fraction=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**16),
)
def test_split_stations_is_a_seeded_partition(n, fraction, seed):
    traffic = make_traffic(n=n, t=2, c=1)
    if not 1 <= round(n * fraction) < n:
        with pytest.raises(DataError):
            split_stations(traffic, fraction, seed)
        return
    train, test = split_stations(traffic, fraction, seed)
    ids_train, ids_test = set(train.stations.ids), set(test.stations.ids)
    assert not ids_train & ids_test and ids_train | ids_test == set(traffic.stations.ids)
    again, _ = split_stations(traffic, fraction, seed)
    assert again.equals(train)


def test_split_users_partitions():
    users = UserMobility(np.zeros((10, 4), int), START, "30min", make_stations(3))
    train, test = split_users(users, 0.3, seed=1)
    assert train.n_users == 7 and test.n_users == 3
    assert not set(train.user_ids) & set(test.user_ids)


@given(hnp.arrays(np.float32, (3, 5, 2), elements=st.floats(0, 1e6, width=32)))
def test_any_finite_nonnegative_array_is_accepted(values):
    traffic = StationTraffic(values, START, "1h", ("a", "b"), make_stations(3))
    np.testing.assert_array_equal(traffic.values, values)
