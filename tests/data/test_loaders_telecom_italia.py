"""The Telecom Italia day-file reader, on small files written here in exactly the raw format.

The files: tab-separated, no header, ``square, interval (epoch ms UTC), country, sms-in, sms-out, call-in,
call-out, internet``, empty fields meaning zero, several country codes per square and interval.
"""

from __future__ import annotations

import gzip
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from cellsynth.data.loaders import DataRepairWarning, load_grid, load_telecom_italia
from cellsynth.errors import DataError

TZ = "Europe/Rome"
DAY = "2013-11-04"  # a Monday; Rome is at UTC+01:00 then, so local midnight is 23:00 UTC the day before
MISSING = (0, 50, 100, 101, 143)  # intervals of the day with no row for any cell


def square(cell: int, lon: float, lat: float, size: float = 0.01) -> dict:
    ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"cellId": cell},
    }


@pytest.fixture
def grid(tmp_path):
    """Three cells near Milan; cell 7 never appears in the day files."""
    path = tmp_path / "grid.geojson"
    features = [square(1, 9.10, 45.40), square(2, 9.11, 45.40), square(7, 9.10, 45.41)]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def midnight_ms(day: str) -> int:
    return pd.Timestamp(day, tz=TZ).value // 1_000_000


def day_rows(day: str, n_intervals: int = 144, missing=MISSING) -> list[str]:
    """Rows of one day. Cell 1: country 39 with sms-in 1, sms-out empty, call-in k % 5, call-out 0.5,
    internet k, and country 0 with only internet 0.25. Cell 2: even intervals only, country 33, sms-out 3,
    internet 10. Cell 7: no rows."""
    t0 = midnight_ms(day)
    rows = []
    for k in range(n_intervals):
        if k in missing:
            continue
        t = t0 + k * 600_000
        rows.append(f"1\t{t}\t39\t1\t\t{k % 5}\t0.5\t{k}")
        rows.append(f"1\t{t}\t0\t\t\t\t\t0.25")
        if k % 2 == 0:
            rows.append(f"2\t{t}\t33\t\t3\t\t\t10")
    return rows


def write(path, rows) -> str:
    path.write_text("\n".join(rows) + "\n")
    return path


def expected_10min() -> np.ndarray:
    """Hand-computed [3 cells, 144, (internet, call, sms)] for :func:`day_rows`, the gaps filled linearly."""
    k = np.arange(144.0)
    out = np.zeros((3, 144, 3))
    out[0, :, 0] = k + 0.25  # 10 + 0.25... summed over the two country codes
    out[0, :, 1] = k % 5 + 0.5  # call-in + call-out
    out[0, :, 2] = 1.0  # sms-in + (empty) sms-out
    even = k % 2 == 0
    out[1, even, 0] = 10.0
    out[1, even, 2] = 3.0
    # Gaps: linear interpolation between the present neighbours, the nearest one at the day's edges.
    for c in range(3):
        for cell in range(2):
            v = out[cell, :, c]
            v[0] = v[1]
            v[50] = (v[49] + v[51]) / 2
            v[100] = v[99] + (v[102] - v[99]) / 3
            v[101] = v[99] + 2 * (v[102] - v[99]) / 3
            v[143] = v[142]
    return out


def test_sums_countries_channels_and_centroids(grid, tmp_path):
    f = write(tmp_path / "sms-call-internet-mi-2013-11-04.txt", day_rows(DAY))
    with pytest.warns(DataRepairWarning, match="5 missing 10-minute interval"):
        data = load_telecom_italia(f, grid, step="10min")
    assert data.channels == ("internet", "call", "sms")
    assert list(data.stations.ids) == ["1", "2", "7"]
    np.testing.assert_allclose(data.stations.lon, [9.105, 9.115, 9.105])
    np.testing.assert_allclose(data.stations.lat, [45.405, 45.405, 45.415])
    assert data.start == pd.Timestamp("2013-11-04 00:00", tz=TZ) and str(data.start.tz) == TZ
    assert data.step == pd.Timedelta("10min") and data.n_steps == 144
    np.testing.assert_allclose(data.values, expected_10min(), rtol=1e-6)
    # A few values by hand: 08:10 (k=49) cell 1 = 49 + 0.25 internet, 4 + 0.5 call, 1 sms; cell 2 odd k = 0.
    np.testing.assert_allclose(data.values[0, 49], [49.25, 4.5, 1.0])
    np.testing.assert_allclose(data.values[1, 48], [10.0, 0.0, 3.0])
    np.testing.assert_allclose(data.values[1, 49], [0.0, 0.0, 0.0])
    assert not data.values[2].any()  # cell 7: no rows at all, all zero


def test_missing_intervals_are_filled_marked_and_reported(grid, tmp_path):
    f = write(tmp_path / "day.txt", day_rows(DAY))
    with pytest.warns(DataRepairWarning):
        data, report = load_telecom_italia(f, grid, step="10min", return_report=True)
    assert list(np.flatnonzero(data.repaired[0, :, 0])) == list(MISSING)
    assert data.repaired.all(axis=(0, 2)).sum() == len(MISSING)  # whole steps: every cell and channel
    assert list(report.missing_intervals) == [
        pd.Timestamp(DAY, tz=TZ) + pd.Timedelta(minutes=10 * k) for k in MISSING
    ]
    assert report.repaired_steps == 5
    assert report.cells_without_rows == ("7",)
    assert "5 missing 10-minute interval(s)" in str(report) and "1 cell(s) without any row" in str(report)
    # 08:20 (k=50) cell 1 call: halfway between 4.5 (k=49) and 1.5 (k=51); 16:40-16:50 a third and two
    # thirds of the way from 4.5 (k=99) to 2.5 (k=102); 00:00 copies 00:10.
    np.testing.assert_allclose(data.values[0, 50, 1], 3.0)
    np.testing.assert_allclose(data.values[0, [100, 101], 1], [4.5 - 2 / 3, 4.5 - 4 / 3], rtol=1e-6)
    np.testing.assert_allclose(data.values[0, 0], data.values[0, 1])
    # Cell 2 has rows only in even intervals: its odd intervals are zeros, not repairs.
    assert not data.repaired[1, 51].any() and data.values[1, 51, 0] == 0


def test_hourly_is_the_sum_of_six_intervals(grid, tmp_path):
    f = write(tmp_path / "day.txt", day_rows(DAY))
    with pytest.warns(DataRepairWarning):
        hourly = load_telecom_italia(f, grid)  # step="1h" is the default
    assert hourly.step == pd.Timedelta("1h") and hourly.n_steps == 24
    expected = expected_10min().reshape(3, 24, 6, 3).sum(axis=2)
    np.testing.assert_allclose(hourly.values, expected, rtol=1e-6)
    # 08:00-09:00, cell 1 internet: sum of k + 0.25 for k = 48..53 (k=50 interpolated on the line) = 304.5.
    np.testing.assert_allclose(hourly.values[0, 8, 0], 304.5)
    # Cell 2, same hour: rows at k=48, 52; k=50 is missing and interpolated between zeros -> 20.
    np.testing.assert_allclose(hourly.values[1, 8, 0], 20.0)
    assert list(np.flatnonzero(hourly.repaired[0, :, 0])) == [0, 8, 16, 23]


def test_streaming_in_small_chunks_gives_the_same_result(grid, tmp_path):
    f = write(tmp_path / "day.txt", day_rows(DAY))
    assert f.stat().st_size > 8 * 1024
    with pytest.warns(DataRepairWarning):
        whole, r1 = load_telecom_italia(f, grid, step="10min", return_report=True)
        chunked, r2 = load_telecom_italia(f, grid, step="10min", chunk_bytes=1024, return_report=True)
    assert r1.batches == 1 and r2.batches >= 8  # the reader really went block by block
    assert r1.rows == r2.rows == 2 * 139 + 69
    assert chunked.equals(whole)


def test_several_days_any_order_gzip_and_a_missing_day(grid, tmp_path):
    d4 = write(tmp_path / "d4.txt", day_rows("2013-11-04", missing=()))
    d5 = tmp_path / "d5.txt.gz"
    with gzip.open(d5, "wt") as f:
        f.write("\n".join(day_rows("2013-11-05", missing=())) + "\n")
    two = load_telecom_italia([d5, d4], grid, step="10min")  # no gap: no warning (filterwarnings=error below)
    assert two.n_steps == 288 and two.repaired is None
    np.testing.assert_allclose(two.values[0, 144:, 0], np.arange(144) + 0.25)

    folder = tmp_path / "month"  # Nov 4 and Nov 6 only: Nov 5 is a whole missing day
    folder.mkdir()
    write(folder / "sms-call-internet-mi-2013-11-06.txt", day_rows("2013-11-06", missing=()))
    d4.rename(folder / "sms-call-internet-mi-2013-11-04.txt")
    with pytest.warns(DataRepairWarning, match="144 missing"):
        gap, report = load_telecom_italia([folder], grid, step="1h", return_report=True)  # a directory
    assert len(report.files) == 2
    assert gap.n_steps == 72 and report.repaired_steps == 24
    assert gap.repaired[:, 24:48].all() and not gap.repaired[:, :24].any()
    # Cell 1 internet across the missing day: from 143.25 (Nov 4 23:50) to 0.25 (Nov 6 00:00) in 145 steps.
    fill = 143.25 + (0.25 - 143.25) * np.arange(1, 145) / 145
    np.testing.assert_allclose(gap.values[0, 24:48, 0], fill.reshape(24, 6).sum(axis=1), rtol=1e-5)


def test_dst_day_has_25_hours(grid, tmp_path):
    # 2013-10-27: Rome goes back from UTC+2 to UTC+1, the local day lasts 25 hours = 150 intervals.
    f = write(tmp_path / "dst.txt", day_rows("2013-10-27", n_intervals=150, missing=()))
    data = load_telecom_italia(f, grid)
    assert data.n_steps == 25 and data.repaired is None
    assert data.start == pd.Timestamp("2013-10-27 00:00", tz=TZ)


def test_cells_subset_equals_selection_of_the_full_load(grid, tmp_path):
    f = write(tmp_path / "day.txt", day_rows(DAY))
    with pytest.warns(DataRepairWarning):
        full = load_telecom_italia(f, grid, step="10min")
        part, report = load_telecom_italia(
            f, grid, step="10min", cells=[2, 1], chunk_bytes=2048, return_report=True
        )
        only_internet = load_telecom_italia(f, grid, step="10min", channels=["internet"])
    assert part.equals(full.select_stations(["2", "1"]))
    assert report.rows_outside_cells == 0  # cell 7 has no rows
    assert only_internet.equals(full.select_channels(["internet"]))
    with pytest.warns(DataRepairWarning):
        part7, report7 = load_telecom_italia(f, grid, cells=["7"], return_report=True)
    assert report7.rows_outside_cells == report7.rows and not part7.values.any()
    with pytest.raises(DataError, match="unknown station id"):
        load_telecom_italia(f, grid, cells=[3])


def test_accepts_a_loaded_grid_and_shows_progress(grid, tmp_path, capsys):
    f = write(tmp_path / "day.txt", day_rows(DAY, missing=()))
    data = load_telecom_italia(f, load_grid(grid), progress=True)
    assert data.n_steps == 24
    assert "telecom italia" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("99\t{t}\t39\t1\t\t\t\t1", "square id 99 is not a cell of the grid"),
        ("1\t{t}\t39\t1\t\t\t1", "expected 8 tab-separated fields"),
        ("1\t{t}\t39\t1\t\t\t\t1\t5", "expected 8 tab-separated fields"),
        ("1\t{t}\t39\tabc\t\t\t\t1", "sms-in 'abc' is not a number"),
        ("1\t{t}\t39\t1\t\t\t\t-2.5", "internet is negative"),
        ("1\t{t}\t39\tnan\t\t\t\t1", "sms-in is 'nan'"),
        ("1\t{t}\tIT\t1\t\t\t\t1", "country code 'IT' is not an integer"),
        ("\t{t}\t39\t1\t\t\t\t1", "square id is empty"),
        ("1\t{t5}\t39\t1\t\t\t\t1", "not on a 10-minute boundary"),
    ],
)
@pytest.mark.parametrize("chunk_bytes", [16 << 20, 1024])
def test_bad_lines_name_file_and_line(grid, tmp_path, bad, message, chunk_bytes):
    t = midnight_ms(DAY) + 60 * 600_000
    rows = day_rows(DAY, missing=())
    rows.insert(300, "")  # an empty line: skipped, but counted in line numbers
    rows.insert(301, bad.format(t=t, t5=t + 5 * 60_000))  # file line 302, past the first 1 KiB chunk
    f = write(tmp_path / "sms-call-internet-mi-2013-11-04.txt", rows)
    with pytest.raises(DataError, match=message) as err:
        load_telecom_italia(f, grid, chunk_bytes=chunk_bytes)
    assert str(err.value).startswith(f"{f}: line 302:")


def test_empty_and_missing_files(grid, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_telecom_italia(empty, grid)
    with pytest.raises(DataError, match="file not found"):
        load_telecom_italia(tmp_path / "nope.txt", grid)
    with pytest.raises(DataError, match="multiple of 10 minutes"):
        load_telecom_italia(empty, grid, step="7min")


@pytest.mark.parametrize("chunk_bytes", [16 << 20, 1024])
def test_a_repeated_line_is_an_error_naming_both_lines(grid, tmp_path, chunk_bytes):
    rows = day_rows(DAY, missing=())
    rows.insert(250, rows[10])  # line 11 again, as line 251, in a later block when chunk_bytes=1024
    f = write(tmp_path / "day.txt", rows)
    with pytest.raises(DataError, match="line 11 and line 251 both hold square") as err:
        load_telecom_italia(f, grid, chunk_bytes=chunk_bytes)
    message = str(err.value)
    assert message.startswith(f"{f}: ") and "counted twice" in message
    assert "duplicates='sum' (--duplicates sum)" in message
    # rows[10]: cell 1, interval k=4, country 39; 00:40 local is 23:40 UTC the day before.
    assert (
        f"square 1, interval {midnight_ms(DAY) + 4 * 600_000} (2013-11-03 23:40 UTC), country code 39"
        in message
    )


def test_repeated_lines_summed_on_request_are_counted(grid, tmp_path):
    rows = day_rows(DAY, missing=())
    once = load_telecom_italia(write(tmp_path / "once.txt", rows), grid, step="10min")
    # rows[10]: cell 1, k=4, country 39 (internet 4, call 4.5, sms 1), twice more; then rows[1] (cell 1, k=0,
    # country 0, internet 0.25) moved to cell 2: a new key, not a repeat.
    rows += [rows[10], rows[10], "2\t" + rows[1].split("\t", 1)[1]]
    (tmp_path / "twice.txt").write_text("\n".join(rows) + "\n")
    summed, report = load_telecom_italia(
        tmp_path / "twice.txt", grid, step="10min", duplicates="sum", return_report=True
    )
    assert report.duplicate_rows_summed == 2
    assert "2 repeated line(s)" in str(report) and "duplicates='sum'" in str(report)
    expected = once.values.copy()
    expected[0, 4] += 2 * np.array([4.0, 4.5, 1.0])
    expected[1, 0, 0] += 0.25
    np.testing.assert_allclose(summed.values, expected, rtol=1e-6)
    with pytest.raises(DataError, match="duplicates must be 'error' or 'sum'"):
        load_telecom_italia(tmp_path / "twice.txt", grid, duplicates="first")


def test_the_same_day_twice_is_always_an_error_naming_both_files(grid, tmp_path):
    text = "\n".join(day_rows(DAY, missing=())) + "\n"
    folder = tmp_path / "month"
    folder.mkdir()
    (folder / "sms-call-internet-mi-2013-11-04.txt").write_text(text)
    with gzip.open(folder / "sms-call-internet-mi-2013-11-04.txt.gz", "wt") as f:
        f.write(text)
    for duplicates in ("error", "sum"):
        with pytest.raises(
            DataError, match="holds the same day as .*2013-11-04.txt .*once gzip-compressed"
        ) as err:
            load_telecom_italia(folder, grid, duplicates=duplicates)
        assert str(err.value).startswith(str(folder / "sms-call-internet-mi-2013-11-04.txt.gz"))
        assert "give each day once" in str(err.value)
    day = folder / "sms-call-internet-mi-2013-11-04.txt"
    with pytest.raises(DataError, match=f"is given twice \\(also as {day}\\)"):
        load_telecom_italia([day, tmp_path / "month" / ".." / "month" / day.name], grid)
    copy = write(tmp_path / "copy-of-the-4th.txt", day_rows(DAY, missing=tuple(range(100))))
    for duplicates in ("error", "sum"):
        with pytest.raises(DataError) as err:
            load_telecom_italia([day, copy], grid, duplicates=duplicates)
        assert str(err.value) == (
            f"{copy}: holds intervals that {day} holds too (first: 2013-11-04 16:40:00+01:00): the same day given "
            "twice (a day file and its .gz, or a copy under another name)? Every value would count twice: give "
            "each day once"
        )


def test_huge_values_fit_float32_or_are_named(grid, tmp_path):
    rows = day_rows(DAY, missing=())
    rows[0] = rows[0].rsplit("\t", 1)[0] + "\t3e38"  # finite and within float32: kept
    data = load_telecom_italia(write(tmp_path / "ok.txt", rows), grid, step="10min")
    assert data.values[0, 0, 0] == np.float32(3e38)
    rows[1] = rows[1].rsplit("\t", 1)[0] + "\t1e308"  # finite in float64, infinite as float32
    f = write(tmp_path / "big.txt", rows)
    with pytest.raises(
        DataError, match=r"line 2: internet 1e\+308 is too large: it overflows float32.*rescale"
    ):
        load_telecom_italia(f, grid)
    rows[1] = rows[1].rsplit("\t", 1)[0] + "\t3e38"  # two lines of 3e38 in one step: the sum overflows
    f = write(tmp_path / "sum.txt", rows)
    with pytest.raises(
        DataError, match=r"cell 1 at 2013-11-04 00:00:00\+01:00: internet sums to 6e\+38 is too large"
    ):
        load_telecom_italia(f, grid, step="10min")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            "1\t{t}\t39\t1,5\t\t\t\t1",
            r"sms-in '1,5' is not a number \(a decimal comma\? write 1.5 with a dot\)",
        ),
        ("1\t{t}\t-39\t1\t\t\t\t1", "country code -39 is not a phone country code"),
        ("1\t-600000\t39\t1\t\t\t\t1", "is not a time between 1970 and 2129"),
        ("1\t{t}\t39\t1\u00e9\t\t\t\t1", "sms-in '1\u00e9' is not a number"),
    ],
)
def test_more_bad_lines_name_file_line_and_fix(grid, tmp_path, bad, message):
    rows = day_rows(DAY, missing=())
    rows.insert(20, bad.format(t=midnight_ms(DAY)))
    f = write(tmp_path / "day.txt", rows)
    with pytest.raises(DataError, match=message) as err:
        load_telecom_italia(f, grid)
    assert str(err.value).startswith(f"{f}: line 21:")


def test_a_utf16_day_file_says_save_as_utf8(grid, tmp_path):
    f = tmp_path / "day.txt"
    f.write_bytes(("\n".join(day_rows(DAY, missing=())) + "\n").encode("utf-16"))
    with pytest.raises(DataError, match=r"line 1: the line is not UTF-8 text.*save it as UTF-8") as err:
        load_telecom_italia(f, grid)
    assert str(err.value).startswith(str(f))


@pytest.fixture(autouse=True)
def _no_unexpected_warnings():
    # A repair must always be announced, and nothing else should warn: turn stray warnings into errors.
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataRepairWarning)
        yield
