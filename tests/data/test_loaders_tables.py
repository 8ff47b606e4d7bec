"""Generic long tables (CSV and Parquet) for traffic and mobility, with a stations table."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cellsynth.data.io import write_stations
from cellsynth.data.loaders import DataRepairWarning, load_mobility_table, load_traffic_table
from cellsynth.data.model import Stations
from cellsynth.errors import DataError

HEADER = "station_id,timestamp,internet,sms\n"
ROWS = [
    "a,2013-11-04T00:00:00+01:00,1.5,2",
    "b,2013-11-04T00:00:00+01:00,0,3",
    "a,2013-11-04T01:00:00+01:00,2.5,4",
    "b,2013-11-04T01:00:00+01:00,1,5",
]
STATIONS = "station_id,lat,lon,poi_shops\na,45.46,9.19,12\nb,45.47,9.20,3\nc,45.48,9.21,0\n"


def write(path, text):
    path.write_text(text)
    return path


@pytest.fixture
def stations(tmp_path):
    return write(tmp_path / "stations.csv", STATIONS)


def test_traffic_csv_with_stations(tmp_path, stations):
    rows = [*ROWS, "c,2013-11-04T00:00:00+01:00,0,0", "c,2013-11-04T01:00:00+01:00,7,0"]
    table = write(tmp_path / "t.csv", HEADER + "\n".join(rows[::-1]) + "\n")  # any row order
    data = load_traffic_table(table, stations)
    assert data.channels == ("internet", "sms") and list(data.stations.ids) == ["a", "b", "c"]
    np.testing.assert_allclose(data.values[:, :, 0], [[1.5, 2.5], [0, 1], [0, 7]])
    np.testing.assert_allclose(data.values[:, :, 1], [[2, 4], [3, 5], [0, 0]])
    assert data.start == pd.Timestamp("2013-11-04 00:00", tz="Europe/Rome") and data.step == pd.Timedelta(
        "1h"
    )
    assert data.stations.feature_names == ("poi_shops",)
    np.testing.assert_allclose(data.stations.lat, [45.46, 45.47, 45.48])
    # Explicit channels pick and order columns; tz converts offset timestamps.
    sms = load_traffic_table(table, stations, channels=["sms"], tz="UTC")
    assert sms.channels == ("sms",) and str(sms.start.tz) == "UTC" and sms.start.hour == 23


def test_traffic_without_stations_and_naive_timestamps(tmp_path):
    naive = [r.replace("+01:00", "") for r in ROWS]
    table = write(tmp_path / "t.csv", HEADER + "\n".join(naive) + "\n")
    data = load_traffic_table(table, tz="Europe/Rome")
    assert list(data.stations.ids) == ["a", "b"] and not data.stations.has_coordinates
    assert data.start == pd.Timestamp("2013-11-04 00:00", tz="Europe/Rome")
    with pytest.raises(DataError, match=r"no timezone offset.*--tz") as err:
        load_traffic_table(table)
    assert str(err.value).startswith(str(table))
    # Bare dates (daily data): the "-04" of 2013-11-04 is a day, not an offset.
    daily = write(tmp_path / "d.csv", "station_id,timestamp,x\na,2013-11-04,1\na,2013-11-05,2\n")
    days = load_traffic_table(daily, tz="Asia/Shanghai")
    assert days.step == pd.Timedelta("1D") and days.start == pd.Timestamp("2013-11-04", tz="Asia/Shanghai")


def test_traffic_parquet_round_trip(tmp_path, stations):
    frame = pd.DataFrame(
        {
            "station_id": ["a", "b", "a", "b"],
            "timestamp": pd.to_datetime(
                ["2013-11-04 00:00", "2013-11-04 00:00", "2013-11-04 00:10", "2013-11-04 00:10"]
            ).tz_localize("Europe/Rome"),
            "internet": [1.0, 2.0, 3.0, 4.0],
        }
    )
    frame.to_parquet(tmp_path / "t.parquet")
    st = Stations.from_frame(pd.read_csv(stations, dtype={"station_id": str}))
    write_stations(st, tmp_path / "st.parquet")
    # Station c of the stations table has no rows at all: missing rows are an error, never zeros.
    with pytest.raises(DataError, match="station_id 'c' has no row"):
        load_traffic_table(tmp_path / "t.parquet", tmp_path / "st.parquet")
    data = load_traffic_table(tmp_path / "t.parquet", st.subset([0, 1]))
    assert data.step == pd.Timedelta("10min") and data.channels == ("internet",)
    assert str(data.start.tz) == "Europe/Rome"
    np.testing.assert_allclose(data.values[:, :, 0], [[1, 3], [2, 4]])


def test_dst_offsets_without_tz_become_utc(tmp_path):
    rows = ["a,2013-10-27T01:00:00+02:00,1", "a,2013-10-27T02:00:00+02:00,2", "a,2013-10-27T02:00:00+01:00,3"]
    table = write(tmp_path / "t.csv", "station_id,timestamp,internet\n" + "\n".join(rows) + "\n")
    data = load_traffic_table(table)
    assert str(data.start.tz) == "UTC" and data.n_steps == 3
    rome = load_traffic_table(table, tz="Europe/Rome")
    assert rome.start == pd.Timestamp("2013-10-27 01:00", tz="Europe/Rome")


@pytest.mark.parametrize(
    ("header", "rows", "message"),
    [
        ("station_id,time,internet,sms", ROWS, r"missing column\(s\) \['timestamp'\]"),
        ("station_id,timestamp", [r.rsplit(",", 2)[0] for r in ROWS], "no channel columns"),
        (
            HEADER.strip(),
            [*ROWS[:3], "b,2013-11-04T01:00:00+01:00,abc,5"],
            r"row 3 \(line 5\), column 'internet': 'abc' is not a number.*channels=",
        ),
        (
            HEADER.strip(),
            [*ROWS[:3], "b,2013-11-04T01:00:00+01:00,,5"],
            r"row 3 \(line 5\), column 'internet': the value is empty",
        ),
        (
            HEADER.strip(),
            [*ROWS[:3], "b,2013-11-04T01:00:00+01:00,nan,5"],
            r"row 3 \(line 5\), column 'internet': the value is empty, NaN",
        ),
        (
            HEADER.strip(),
            [*ROWS[:3], "b,2013-11-04T01:00:00+01:00,-1,5"],
            r"row 3 \(line 5\), column 'internet': -1.0 is negative",
        ),
        (
            HEADER.strip(),
            [*ROWS[:3], "z,2013-11-04T01:00:00+01:00,1,5"],
            r"row 3 \(line 5\): station_id 'z' is not in the stations table",
        ),
        (HEADER.strip(), [*ROWS, ROWS[3]], "appears 2 times"),
        (HEADER.strip(), ROWS[:3], "has no row"),
        (
            HEADER.strip(),
            [*ROWS, "a,2013-11-04T03:00:00+01:00,1,1", "b,2013-11-04T03:00:00+01:00,1,1"],
            r"station_id 'a' has no row at 2013-11-04 02:00:00\+01:00.*--fill interpolate\|zero",
        ),
        (
            HEADER.strip(),
            [*ROWS, "a,2013-11-04T02:30:00+01:00,1,1", "b,2013-11-04T02:30:00+01:00,1,1"],
            "irregular time steps",
        ),
        (
            HEADER.strip(),
            [*ROWS[:3], "b,yesterday,1,5"],
            r"row 3 \(line 5\), column 'timestamp': 'yesterday' is not an ISO 8601",
        ),
        (HEADER.strip(), [*ROWS[:3], "b,2013-11-04T01:00:00,1,5"], r"row 3 \(line 5\).*mixes"),
        (HEADER.strip(), [], "no rows"),
    ],
)
def test_bad_traffic_tables(tmp_path, stations, header, rows, message):
    table = write(tmp_path / "t.csv", header + "\n" + "\n".join(rows) + ("\n" if rows else ""))
    with pytest.raises(DataError, match=message) as err:
        load_traffic_table(table, stations)
    assert str(err.value).startswith(str(table))


def test_unparsable_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_traffic_table(tmp_path / "nope.csv")
    empty = write(tmp_path / "e.csv", "")
    with pytest.raises(DataError, match="empty"):
        load_traffic_table(empty)
    ragged = write(tmp_path / "r.csv", HEADER + ROWS[0] + ",9,9\n")
    with pytest.raises(DataError, match="line 2 has 6 fields but the header has 4"):
        load_traffic_table(ragged)
    with pytest.raises(DataError, match="unknown timezone"):
        load_traffic_table(write(tmp_path / "ok.csv", HEADER + "\n".join(ROWS)), tz="Europe/Milano")


def test_a_damaged_parquet_file_is_one_line(tmp_path):
    """pyarrow's message for a damaged page spans lines; the error quotes it on one (the CLI prints one)."""
    valid = tmp_path / "valid.parquet"
    pd.DataFrame(
        {"station_id": ["a", "b"], "timestamp": ["2013-11-04T00:00:00+01:00"] * 2, "x": [1, 2]}
    ).to_parquet(valid)
    damaged = tmp_path / "t.parquet"
    damaged.write_bytes(b"\x00" + valid.read_bytes())  # every offset in the footer is now one byte off
    with pytest.raises(DataError, match="cannot read Parquet file: Couldn't deserialize thrift") as err:
        load_traffic_table(damaged)
    assert str(err.value).startswith(str(damaged)) and len(str(err.value).splitlines()) == 1


MOBILITY = "user_id,timestamp,station_id,traffic\n" + "\n".join(
    [
        "u1,2013-11-04T00:00:00+01:00,a,0.5",
        "u1,2013-11-04T00:30:00+01:00,b,1",
        "u2,2013-11-04T00:00:00+01:00,b,0",
        "u2,2013-11-04T00:30:00+01:00,b,2",
    ]
)


def test_mobility_csv(tmp_path, stations):
    table = write(tmp_path / "m.csv", MOBILITY + "\n")
    data = load_mobility_table(table, stations)
    assert data.user_ids == ("u1", "u2") and data.step == pd.Timedelta("30min")
    np.testing.assert_array_equal(data.locations, [[0, 1], [1, 1]])
    np.testing.assert_allclose(data.traffic, [[0.5, 1], [0, 2]])
    assert len(data.stations) == 3
    own = load_mobility_table(table)  # the visited station ids, in order of appearance
    assert list(own.stations.ids) == ["a", "b"]
    no_traffic = write(
        tmp_path / "n.csv", "\n".join(line.rsplit(",", 1)[0] for line in MOBILITY.splitlines())
    )
    assert not load_mobility_table(no_traffic, stations).has_traffic


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda t: t.replace(",b,2", ",zz,2"),
            r"row 3 \(line 5\): station_id 'zz' is not in the stations table",
        ),
        (lambda t: t.replace(",b,2", ",b,-2"), r"row 3 \(line 5\), column 'traffic': -2.0 is negative"),
        (
            lambda t: "\n".join(
                line + (",extra" if i == 0 else ",1") for i, line in enumerate(t.splitlines())
            ),
            r"unexpected column\(s\) \['extra'\]",
        ),
        (lambda t: t.replace("user_id,", "user,"), r"missing column\(s\) \['user_id'\]"),
        (lambda t: t.replace("u2,2013-11-04T00:30", "u2,2013-11-04T00:00"), "appears 2 times"),
        (lambda t: t.replace("+01:00", ""), "--tz"),
    ],
)
def test_bad_mobility(tmp_path, stations, edit, message):
    table = write(tmp_path / "m.csv", edit(MOBILITY) + "\n")
    with pytest.raises(DataError, match=message) as err:
        load_mobility_table(table, stations)
    assert str(err.value).startswith(str(table))


# -- Filling missing rows on request (fill=) ---------------------------------------------------------------

T0 = pd.Timestamp("2013-11-04 00:00", tz="Europe/Rome")


def long_csv(path, series: dict[str, dict[int, tuple[float, ...]]], channels=("internet", "sms")):
    """A long CSV with a row for each (station, hour) given: ``{station: {hour: values}}``."""
    lines = ["station_id,timestamp," + ",".join(channels)]
    for station, hours in series.items():
        for hour, values in hours.items():
            stamp = (T0 + pd.Timedelta(hours=hour)).isoformat()
            lines.append(f"{station},{stamp}," + ",".join(repr(float(v)) for v in values))
    return write(path, "\n".join(lines) + "\n")


GAPS = {
    # a: rows at 01 and 04 only; b: every hour but 03, which no station has (a gap in the time axis too).
    "a": {1: (2, 10), 4: (8, 4)},
    "b": {0: (1, 0), 1: (1, 0), 2: (3, 0), 4: (7, 0), 5: (9, 0)},
}


def test_fill_interpolate_is_linear_in_time_and_holds_the_edges(tmp_path):
    table = long_csv(tmp_path / "gaps.csv", GAPS)
    with pytest.warns(DataRepairWarning) as caught:
        data = load_traffic_table(table, fill="interpolate")
    assert data.n_steps == 6 and data.step == pd.Timedelta("1h") and data.start == T0
    # a, internet: 2 held before 01, 2 -> 8 over three hours (4, 6), 8 held after 04; sms 10 -> 4 likewise.
    np.testing.assert_allclose(data.values[0, :, 0], [2, 2, 4, 6, 8, 8])
    np.testing.assert_allclose(data.values[0, :, 1], [10, 10, 8, 6, 4, 4])
    np.testing.assert_allclose(data.values[1, :, 0], [1, 1, 3, 5, 7, 9])  # b at 03: halfway from 3 to 7
    expected_mask = np.array([[1, 0, 1, 1, 0, 1], [0, 0, 0, 1, 0, 0]], dtype=bool)
    np.testing.assert_array_equal(data.repaired, np.repeat(expected_mask[:, :, None], 2, axis=2))
    assert len(caught) == 1
    assert str(caught[0].message) == (
        f"{table}: 5 missing (station_id, timestamp) row(s) of 12 filled with linear interpolation in time "
        "(2 station(s); first: 'a' at 2013-11-04 00:00:00+01:00); marked in .repaired"
    )


def test_fill_zero_and_the_default_error(tmp_path):
    table = long_csv(tmp_path / "gaps.csv", GAPS)
    with pytest.warns(DataRepairWarning, match="5 missing .* filled with zeros"):
        data = load_traffic_table(table, fill="zero")
    np.testing.assert_allclose(data.values[0, :, 0], [0, 2, 0, 0, 8, 0])
    np.testing.assert_allclose(data.values[1, :, 0], [1, 1, 3, 0, 7, 9])
    assert data.repaired.sum() == 5 * 2
    with pytest.raises(DataError) as err:
        load_traffic_table(table)  # fill="none"
    assert str(err.value) == (
        f"{table}: 5 missing (station_id, timestamp) row(s); first: station_id 'a' has no row at "
        "2013-11-04 00:00:00+01:00. Every station needs one row per timestamp; fill the gaps explicitly with "
        "fill='interpolate' or fill='zero' (--fill interpolate|zero), marked as repaired."
    )
    with pytest.raises(DataError, match="fill must be one of none, interpolate, zero, got 'linear'"):
        load_traffic_table(table, fill="linear")


def test_fill_never_invents_a_station_or_hides_a_duplicate(tmp_path, stations):
    table = long_csv(tmp_path / "gaps.csv", GAPS)  # stations.csv has a, b and c; c has no row at all
    with pytest.raises(
        DataError, match="station_id 'c' has no row at all.*remove it from the stations table"
    ):
        load_traffic_table(table, stations, fill="zero")
    doubled = long_csv(tmp_path / "dup.csv", {"a": {0: (1, 1), 2: (1, 1)}})
    write(doubled, doubled.read_text() + f"a,{T0.isoformat()},5,5\n")
    with pytest.raises(DataError, match="1 duplicated .* station_id 'a' appears 2 times"):
        load_traffic_table(doubled, fill="interpolate")
    # The step of the grid: the most common interval (here 1 h), or the one given.
    hourly = long_csv(tmp_path / "hourly.csv", {"a": {0: (1, 1), 1: (2, 2), 3: (4, 4), 4: (5, 5)}})
    with pytest.warns(DataRepairWarning, match="1 missing"):
        data = load_traffic_table(hourly, fill="interpolate")
    assert data.step == pd.Timedelta("1h")
    np.testing.assert_allclose(data.values[0, :, 0], [1, 2, 3, 4, 5])
    # Every other hour, then two hours in a row: the most common interval (2 h) is not the grid, 1 h is.
    uneven = long_csv(tmp_path / "uneven.csv", {"a": {0: (0, 0), 2: (2, 2), 4: (4, 4), 5: (5, 5)}})
    with pytest.raises(DataError, match="irregular time steps"):
        load_traffic_table(uneven, fill="interpolate")
    with pytest.warns(DataRepairWarning, match="2 missing"):
        data = load_traffic_table(uneven, fill="interpolate", step="1h")
    np.testing.assert_allclose(data.values[0, :, 0], [0, 1, 2, 3, 4, 5])
    with pytest.raises(
        DataError, match=r"timestamp 2013-11-04 05:00:00\+01:00 is not on the grid of step 0 days 02:00"
    ):
        load_traffic_table(uneven, fill="interpolate", step="2h")
    for step in ("0h", "hourly"):
        with pytest.raises(DataError, match=f"step.*{step}"):
            load_traffic_table(uneven, fill="interpolate", step=step)
    sparse = long_csv(tmp_path / "sparse.csv", {"a": {0: (1, 1), 10: (3, 3)}})
    with pytest.raises(DataError, match="the 2 timestamps cover less than half of the 11 steps"):
        load_traffic_table(sparse, fill="interpolate", step="1h")


@st.composite
def gappy_series(draw):
    """Values in quarter units (exact in CSV and float32) and which (station, hour) has a row: at least one per
    station, the first and last hours by some station (the span), and the first half of the hours by station 0
    (a table with fewer than half its hours is refused as too sparse, tested above)."""
    n = draw(st.integers(1, 4))
    t = draw(st.integers(2, 12))
    values = draw(arrays(np.int64, (n, t, 2), elements=st.integers(0, 4000))) / 4.0
    recorded = draw(arrays(np.bool_, (n, t)))
    recorded[np.arange(n), draw(arrays(np.int64, n, elements=st.integers(0, t - 1)))] = True
    recorded[draw(st.integers(0, n - 1)), t - 1] = True
    recorded[0, : (t + 1) // 2] = True
    return values, recorded


@given(case=gappy_series(), method=st.sampled_from(["interpolate", "zero"]))
@settings(max_examples=30, deadline=None)
def test_fill_keeps_recorded_values_and_marks_exactly_the_missing(tmp_path_factory, case, method):
    values, recorded = case
    series = {
        f"s{i}": {h: tuple(values[i, h]) for h in range(values.shape[1]) if recorded[i, h]}
        for i in range(len(values))
    }
    table = long_csv(tmp_path_factory.mktemp("fill") / "t.csv", series)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataRepairWarning)
        data = load_traffic_table(table, fill=method, step="1h")
    assert data.values.shape == values.shape
    np.testing.assert_array_equal(data.values[recorded], values[recorded])
    mask = np.zeros(values.shape, bool) if data.repaired is None else data.repaired
    np.testing.assert_array_equal(mask, np.repeat(~recorded[:, :, None], 2, axis=2))
    for i in range(len(values)):  # an independent oracle: numpy's interp is linear with the edges held
        for c in range(2):
            hours = np.flatnonzero(recorded[i])
            oracle = np.interp(np.arange(values.shape[1]), hours, values[i, hours, c])
            want = oracle if method == "interpolate" else np.where(recorded[i], values[i, :, c], 0.0)
            np.testing.assert_allclose(data.values[i, :, c], want, rtol=1e-6, atol=1e-4)
