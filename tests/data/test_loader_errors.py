"""Every loader's answer to a bad file: one DataError naming the file (and the line where there is one) and
saying how to fix it. Damaged gzip, wrong text encodings, decimal commas, lines longer than the header,
values too large for float32, empty station tables."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cellsynth.cli import app
from cellsynth.data import read_stations
from cellsynth.data.loaders import (
    load_grid,
    load_location_sequences,
    load_milan_totals,
    load_mobility_table,
    load_telecom_italia,
    load_traffic_table,
)
from cellsynth.errors import DataError

TRAFFIC = "station_id,timestamp,internet\n" + "".join(
    f"a,2013-11-04T{h:02d}:00:00+01:00,{h}.5\n" for h in range(24)
)
MOBILITY = "user_id,timestamp,station_id\nu,2013-11-04T00:00:00+01:00,a\nu,2013-11-04T01:00:00+01:00,a\n"
TOTALS = "square_id,internet\n1,10.5\n2,20\n"
SEQUENCES = "0 1 1\n1 0 0\n"
GPS = "45.0 9.0\n45.1 9.1\n"


def grid_doc() -> str:
    def square(cell, lon):
        ring = [[lon, 45.0], [lon + 0.01, 45.0], [lon + 0.01, 45.01], [lon, 45.01], [lon, 45.0]]
        return {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"cellId": cell},
        }

    return json.dumps({"type": "FeatureCollection", "features": [square(1, 9.0), square(2, 9.01)]})


def telecom_day() -> str:
    t0 = pd.Timestamp("2013-11-04", tz="Europe/Rome").value // 1_000_000
    return "".join(f"{cell}\t{t0 + k * 600_000}\t39\t1\t\t\t\t{k}\n" for k in range(144) for cell in (1, 2))


@pytest.fixture
def grid(tmp_path):
    path = tmp_path / "grid.geojson"
    path.write_text(grid_doc())
    return path


# Each loader that reads a text file (compressed or not), the text it accepts, and how to call it.
LOADERS = {
    "traffic table": (".csv", TRAFFIC, lambda p, g: load_traffic_table(p)),
    "mobility table": (".csv", MOBILITY, lambda p, g: load_mobility_table(p)),
    "stations table": (".csv", "station_id,lat,lon\na,45,9\n", lambda p, g: read_stations(p)),
    "milan totals": (".csv", TOTALS, lambda p, g: load_milan_totals(p, g)),
    "location sequences": (".data", SEQUENCES, lambda p, g: load_location_sequences(p, g.parent / "gps")),
    "grid": (".geojson", grid_doc(), lambda p, g: load_grid(p)),
    "telecom italia": (".txt", telecom_day(), lambda p, g: load_telecom_italia(p, g)),
}


@pytest.fixture
def setup(tmp_path, grid):
    (tmp_path / "gps").write_text(GPS)
    return tmp_path, grid


@pytest.mark.parametrize("loader", list(LOADERS))
def test_every_loader_reads_gzip_and_names_a_truncated_one(setup, loader):
    tmp_path, grid = setup
    suffix, text, load = LOADERS[loader]
    good = tmp_path / f"good{suffix}.gz"
    good.write_bytes(gzip.compress(text.encode() * (20 if loader == "traffic table" else 1)))
    if loader != "traffic table":  # repeated rows would be duplicates; the point here is that .gz reads
        load(good, grid)
    cut = tmp_path / f"cut{suffix}.gz"
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(DataError) as err:
        load(cut, grid)
    message = str(err.value)
    assert message.startswith(f"{cut}: is not a complete gzip file (") and "\n" not in message
    assert "Download it again, or decompress what there is (gunzip)" in message


@pytest.mark.parametrize("loader", list(LOADERS))
def test_every_loader_names_a_text_file_called_gz_and_a_gzip_file_not_called_gz(setup, loader):
    tmp_path, grid = setup
    suffix, text, load = LOADERS[loader]
    fake = tmp_path / f"fake{suffix}.gz"
    fake.write_text(text)
    with pytest.raises(DataError) as err:
        load(fake, grid)
    assert str(err.value) == (
        f"{fake}: is not a complete gzip file: it does not start with the gzip signature 1f 8b (a text file named "
        ".gz?); if it is text, drop the .gz from its name, else download it again"
    )
    hidden = tmp_path / f"hidden{suffix}"
    hidden.write_bytes(gzip.compress(text.encode()))
    with pytest.raises(DataError) as err:
        load(hidden, grid)
    assert (
        str(err.value)
        == f"{hidden}: is gzip-compressed but its name does not end in .gz; rename it to {hidden.name}.gz"
    )


@pytest.mark.parametrize(
    ("loader", "option"),
    [
        ("traffic table", True),
        ("mobility table", True),
        ("milan totals", False),
        ("location sequences", False),
        ("grid", False),
    ],
)
@pytest.mark.parametrize(("encoding", "guess", "line"), [("utf-16", "utf-16", 1), ("latin-1", "latin-1", 3)])
def test_a_wrong_encoding_names_the_line_and_says_save_as_utf8(setup, loader, option, encoding, guess, line):
    tmp_path, grid = setup
    suffix, text, load = LOADERS[loader]
    lines = text.splitlines(keepends=True)
    if loader == "grid":
        lines = [text[:20] + "\n", text[20:40] + "\n", text[40:].replace('"Feature"', '"Featur\u00e9"', 1)]
    elif loader == "location sequences":
        lines.insert(2, "\u00e9\n")
    else:
        lines[2] = lines[2].replace(lines[2].split(",")[0], lines[2].split(",")[0] + "\u00e9", 1)
    path = tmp_path / f"t{suffix}"
    path.write_bytes("".join(lines).encode(encoding))
    with pytest.raises(DataError) as err:
        load(path, grid)
    message = str(err.value)
    assert message.startswith(f"{path}: line {line}: the file is not UTF-8 text (byte ")
    assert "save it as UTF-8" in message
    assert (f"--encoding {guess}" in message) == option


def test_the_encoding_option_reads_utf16_and_latin1(tmp_path):
    for encoding in ("utf-16", "latin-1"):
        path = tmp_path / f"{encoding}.csv"
        path.write_bytes(TRAFFIC.replace("a,", "\u00e9,").encode(encoding))
        stations = tmp_path / f"{encoding}-stations.csv"
        stations.write_bytes("station_id,lat,lon\n\u00e9,45,9\n".encode(encoding))
        data = load_traffic_table(path, stations, encoding=encoding)
        assert list(data.stations.ids) == ["\u00e9"] and data.values[0, 3, 0] == 3.5
        mobility = tmp_path / f"{encoding}-m.csv"
        mobility.write_bytes(MOBILITY.replace(",a", ",\u00e9").encode(encoding))
        assert load_mobility_table(mobility, stations, encoding=encoding).n_users == 1
    with pytest.raises(DataError, match="unknown text encoding 'utf-42'"):
        load_traffic_table(path, encoding="utf-42")


@pytest.mark.parametrize(
    ("edit", "name", "message"),
    [
        # Unquoted, the comma splits the number: the line is longer than the header.
        (
            lambda t: t.replace(",2.5\n", ",2,5\n"),
            "t.csv",
            r"line 4 has 4 fields but the header has 3 \(station_id, timestamp, internet\): column 'internet' "
            r"reads '2,5', a decimal comma\? write numbers with a dot \(2.5\), or quote the field",
        ),
        # Quoted (or tab-separated), it is text in a numeric column.
        (
            lambda t: t.replace(",2.5\n", ',"2,5"\n'),
            "t.csv",
            r"row 2 \(line 4\), column 'internet': '2,5' is not a number \(a decimal comma\? write 2.5 with a dot\)",
        ),
        (
            lambda t: t.replace(",", "\t").replace("\t2.5\n", "\t2,5\n"),
            "t.tsv",
            r"row 2 \(line 4\), column 'internet': '2,5' is not a number \(a decimal comma\? write 2.5 with a dot\)",
        ),
        (
            lambda t: t.replace("5.5\n", "5.5,x,y\n"),
            "t.csv",
            r"line 7 has 5 fields but the header has 3 \(station_id, timestamp, internet\): the extra field 'x' "
            r"follows column 'internet'; remove it, or quote a field that contains the separator",
        ),
        (
            lambda t: t.replace("0.5\n", "0.5,x\n"),  # the first data line: pandas would make it an index
            "t.csv",
            r"line 2 has 4 fields but the header has 3 .*the extra field 'x' follows column 'internet'",
        ),
    ],
)
def test_decimal_commas_and_long_lines_name_line_and_column(tmp_path, edit, name, message):
    path = tmp_path / name
    path.write_text(edit(TRAFFIC))
    with pytest.raises(DataError, match=message) as err:
        load_traffic_table(path)
    assert str(err.value).startswith(f"{path}: ")


def test_milan_totals_decimal_comma_huge_value_and_the_missing_option(tmp_path, grid):
    totals = tmp_path / "totals.csv"
    totals.write_text('square_id,internet\n1,"10,5"\n2,20\n')
    with pytest.raises(
        DataError, match=r"line 2: internet '10,5' is not a non-negative number \(a decimal comma"
    ):
        load_milan_totals(totals, grid)
    totals.write_text("square_id,internet\n1,10\n2,1e39\n")
    with pytest.raises(DataError, match=r"line 3: internet 1e\+39 is too large: it overflows float32"):
        load_milan_totals(totals, grid)
    totals.write_text("square_id,internet\n1,1e38\n")  # huge but finite in float32: kept
    with pytest.raises(
        DataError, match=r"1 grid cell\(s\) have no total: 2; .*--missing drop on the command line"
    ):
        load_milan_totals(totals, grid)
    assert load_milan_totals(totals, grid, missing="drop").features[0, 0] == np.float32(1e38)
    out = tmp_path / "cells.parquet"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "import",
            "milan-totals",
            str(totals),
            "--grid",
            str(grid),
            "--out",
            str(out),
            "--missing",
            "drop",
        ],
    )
    assert result.exit_code == 0, result.output
    assert list(read_stations(out).ids) == ["1"]


@pytest.mark.parametrize(
    ("value", "kept"),
    [("1e308", None), ("-1e39", None), ("1e30", 1e30), ("3.4e38", 3.4e38)],
)
def test_huge_values_are_kept_if_float32_holds_them_else_named(tmp_path, value, kept):
    path = tmp_path / "t.csv"
    path.write_text(TRAFFIC.replace(",3.5\n", f",{value}\n"))
    if kept is not None:
        assert load_traffic_table(path).values[0, 3, 0] == np.float32(kept)
        return
    with pytest.raises(DataError) as err:
        load_traffic_table(path)
    assert str(err.value) == (
        f"{path}: row 3 (line 5), column 'internet': {float(value):g} is too large: it overflows float32 (largest "
        "3.403e+38), in which cellsynth stores traffic and features; rescale the column (e.g. bytes to MB)"
    )


def test_stations_tables_without_rows_or_with_bad_numbers(tmp_path):
    traffic = tmp_path / "t.csv"
    traffic.write_text(TRAFFIC)
    for header in ("station_id,lat,lon", "station_id,lat,lon,poi_shops"):
        stations = tmp_path / "s.csv"
        stations.write_text(header + "\n")
        with pytest.raises(DataError) as err:
            load_traffic_table(traffic, stations)
        assert str(err.value) == (
            f"{stations}: no rows: the stations table has a header ({header.replace(',', ', ')}) but no station"
        )
    stations.write_text('station_id,lat,lon,poi_shops\na,45,9,"1,5"\n')
    with pytest.raises(
        DataError, match=r"s.csv: row 0 \(line 2\), column 'poi_shops': '1,5' is not a number \(a decimal"
    ):
        read_stations(stations)
    stations.write_text("station_id,lat,lon,embedding\na,45,9,-1e300\n")
    with pytest.raises(
        DataError, match=r"row 0 \(line 2\), column 'embedding': -1e\+300 is too large: it overflows"
    ):
        load_traffic_table(traffic, stations)


def test_the_command_line_prints_one_line_for_a_truncated_gzip(tmp_path):
    good = gzip.compress(TRAFFIC.encode() * 50)
    (tmp_path / "cut.csv.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "s.csv").write_text("station_id\na\n")
    result = subprocess.run(
        [sys.executable, "-m", "cellsynth.cli", "data", "import", "csv", str(tmp_path / "cut.csv.gz"),
         "--stations", str(tmp_path / "s.csv"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: {tmp_path / 'cut.csv.gz'}: is not a complete gzip file"
    )


def test_the_command_line_fills_gaps_on_request_and_prints_the_count(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("".join(line for line in TRAFFIC.splitlines(keepends=True) if "T05:" not in line))
    (tmp_path / "s.csv").write_text("station_id\na\n")
    args = [
        "data",
        "import",
        "csv",
        str(table),
        "--stations",
        str(tmp_path / "s.csv"),
        "--out",
        str(tmp_path / "o"),
    ]
    refused = CliRunner().invoke(app, args)
    assert isinstance(refused.exception, DataError) and "--fill interpolate|zero" in str(refused.exception)
    result = CliRunner().invoke(app, [*args, "--fill", "interpolate"])
    assert result.exit_code == 0, result.output
    assert "1 missing (station_id, timestamp) row(s) of 24 filled with linear interpolation" in result.output
    from cellsynth.data import read

    data = read(tmp_path / "o")
    assert (
        data.values[0, 5, 0] == 5.5 and data.repaired[0, 5, 0]
    )  # halfway between 4.5 and 6.5 and data.repaired.sum() == 1


def test_the_command_line_sums_repeated_telecom_lines_on_request(tmp_path, grid):
    day = tmp_path / "day.txt"
    lines = telecom_day().splitlines(keepends=True)
    day.write_text("".join([*lines, lines[0]]))
    args = [
        "data",
        "import",
        "telecom-italia",
        str(day),
        "--grid",
        str(grid),
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
    ]
    refused = CliRunner().invoke(app, args)
    assert isinstance(refused.exception, DataError) and "line 1 and line 289" in str(refused.exception)
    result = CliRunner().invoke(app, [*args, "--duplicates", "sum"])
    assert result.exit_code == 0, result.output
    assert "1 repeated line(s)" in result.output
