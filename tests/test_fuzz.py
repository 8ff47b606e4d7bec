"""The command line's promise, fuzzed: whatever file a user hands a command, it ends in exit code 0 with an
output that reads back, or in exit code 2 with exactly one ``error: ...`` line on stderr and no traceback;
never anything else, and never a changed file outside its ``--out``, which after an error is as it was (absent,
or an earlier output of the same kind, unchanged).

Hypothesis mutates small valid inputs of every reading command (long traffic and mobility tables, stations
CSVs, STK-Diff and MobiFM archives, GeoJSON grids, Milan totals, Telecom Italia day files, ``fit`` configs and
``--set`` values, saved models); some mutations leave an input valid, which must then import. Runs are
derandomized (the same examples every time) and small enough for the whole file to take about a minute.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import string
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import cellsynth
from cellsynth.data import read, read_stations, write, write_stations
from cellsynth.data.loaders import load_grid, load_traffic_table
from cellsynth.generators import get_class
from tests.test_cli_errors import city, model, one_line_error  # noqa: F401  (fixtures reused)
from tests.test_outputs import _write_inputs, cli, snapshot, temporaries

# CELLSYNTH_FUZZ_SCALE=20: twenty times the examples, new ones on every run (a deeper search, by hand).
SCALE = int(os.environ.get("CELLSYNTH_FUZZ_SCALE", "1"))


def fuzz(examples: int):
    """Hypothesis settings of these tests: ``examples`` fixed examples per test, no example database, no
    deadline (a run reads and writes files). ``capsys``/``monkeypatch`` are shared by the examples of a test,
    which is what they are for here (each run reads its own output; patches are the same for all)."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        derandomize=SCALE == 1,
        database=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


# -- the property --------------------------------------------------------------------------------------------
def _files(root: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root``: its bytes and modification time (a rewrite with the same bytes shows too)."""
    return {name: (data, (root / name).lstat().st_mtime_ns) for name, data in snapshot(root).items()}


def _outside(files: dict, out: Path, root: Path) -> dict:
    inside = str(out.relative_to(root))
    return {name: v for name, v in files.items() if name != inside and not name.startswith(inside + "/")}


def keeps_the_promise(
    capsys,
    root: Path,
    args: list,
    out: Path,
    read_back: Callable[[Path], object],
    earlier: Path | None = None,
) -> None:
    """Run ``cellsynth ARGS``, whose inputs are under ``root`` and whose ``out`` is there too: new, or a copy
    of an ``earlier`` output of the same kind. Assert the promise (module docstring)."""
    if earlier is not None:
        (shutil.copytree if earlier.is_dir() else shutil.copy)(earlier, out)
    before = _files(root)
    code, err = cli(capsys, *args)
    note(f"exit {code}: {err.strip()}")
    event(f"exit {code}", err.strip().replace(str(root), "")[:70])
    assert code in (0, 2), err
    assert temporaries(root) == []
    if code == 0:
        assert _outside(_files(root), out, root) == _outside(before, out, root), "an input was changed"
        read_back(out)
    else:
        one_line_error((code, "", err))
        assert _files(root) == before, "a failed command changed a file (an input, or the earlier output)"
        assert out.exists() == (earlier is not None)


@contextmanager
def scratch():
    """A fresh directory per example (``tmp_path`` is one per test, shared by its examples)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as name:
        yield Path(name)


def _saved(save: Callable, *args, **kwargs) -> bytes:
    """The bytes ``save(file, *args, **kwargs)`` writes (``np.save``, ``np.savez``, ``DataFrame.to_parquet``)."""
    buffer = io.BytesIO()
    save(buffer, *args, **kwargs)
    return buffer.getvalue()


# -- bytes: encodings, compression, truncation -------------------------------------------------------------------
@st.composite
def damaged(draw, data: bytes) -> bytes:
    """``data`` as it is (mostly), cut at a random byte, with random bytes spliced in, or replaced by them."""
    how = draw(st.sampled_from(["as is", "as is", "as is", "cut", "splice", "random"]))
    if how == "cut":
        return data[: draw(st.integers(0, max(len(data) - 1, 0)))]
    if how == "splice":
        at = draw(st.integers(0, len(data)))
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if how == "random":
        return draw(st.binary(max_size=64))
    return data


# Mostly UTF-8; with or without a byte-order mark, UTF-16 and 8-bit encodings too.
ENCODINGS = st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"])
MUTATIONS = st.sampled_from([0, 0, 1, 1, 2, 3])  # how many mutations an input gets


def maybe(*values) -> st.SearchStrategy:
    """None (the option left out) half the time, else one of ``values``."""
    return st.one_of(st.none(), st.sampled_from(values))


def _options(**values) -> list[str]:
    return [x for option, value in values.items() if value is not None for x in (f"--{option}", value)]


# -- text tables -------------------------------------------------------------------------------------------------
ODD_VALUES = [
    "", " ", "nan", "NaN", "-1", "-0", "0", "1e39", "1e400", "-1e400", "inf", "1,5", "1.5", "0x10", "9" * 30,
    "1_000", " 3 ", "None", "true", "NA", '"', "\n", "a\nb", "\r", ",", "\t", "é", "\x00", "\ufeff1", "\u2028",
]  # fmt: skip
TIMESTAMPS = [
    "2013-11-04T00:00:00+01:00", "2013-11-04T01:00:00+01:00", "2013-11-04T00:00:00", "2013-11-04",
    "2013-11-04T00:00:00Z", "2013-11-04T00:00:00+25:00", "2013-02-30T00:00:00+01:00", "2013-11-04 00:00",
    "2013-03-31T02:30:00", "2013-10-27T02:30:00", "1383519600000", "not a time", "2013-11-04T00:00:00+01:00[X]",
    "9999-12-31T23:59:59+14:00", "0001-01-01T00:00:00+00:00", "2013-11-04T00:00:00.123456789+01:00",
]  # fmt: skip
CELL = st.one_of(
    st.sampled_from(ODD_VALUES),
    st.sampled_from(TIMESTAMPS),
    st.text(max_size=10),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
)
ROW_MUTATIONS = [
    "drop column", "duplicate column", "shuffle columns", "rename column", "drop row", "duplicate row",
    "shuffle rows", "cell", "cell", "cell", "extra field", "short row",
]  # fmt: skip


@st.composite
def mutated_rows(draw, rows: list[list[str]]) -> list[list[str]]:
    """``rows`` (a header and data rows) after a few mutations of columns, rows or cells."""
    rows = [list(r) for r in rows]
    for _ in range(draw(MUTATIONS)):
        width, height = len(rows[0]), len(rows)
        op = draw(st.sampled_from(ROW_MUTATIONS))
        if op == "drop column" and width > 1:
            j = draw(st.integers(0, width - 1))
            rows = [r[:j] + r[j + 1 :] for r in rows]
        elif op == "duplicate column":
            j = draw(st.integers(0, width - 1))
            rows = [[*r, r[j]] if j < len(r) else r for r in rows]
        elif op == "shuffle columns":
            order = draw(st.permutations(range(width)))
            rows = [[r[j] for j in order if j < len(r)] + r[width:] for r in rows]
        elif op == "rename column":
            rows[0][draw(st.integers(0, width - 1))] = draw(CELL)
        elif op == "drop row" and height > 1:
            del rows[draw(st.integers(0, height - 1))]
        elif op == "duplicate row" and height > 1:
            rows.append(list(rows[draw(st.integers(1, height - 1))]))
        elif op == "shuffle rows" and height > 2:
            rows = [rows[0], *draw(st.permutations(rows[1:]))]
        elif op == "cell" and height > 1:
            row = rows[draw(st.integers(1, height - 1))]
            if row:
                row[draw(st.integers(0, len(row) - 1))] = draw(CELL)
        elif op == "extra field":
            rows[draw(st.integers(0, height - 1))].append(draw(CELL))
        elif op == "short row" and height > 1 and rows[-1]:
            rows[-1].pop()
    return rows


def csv_text(rows: list[list[str]], *, quote_all: bool, crlf: bool) -> str:
    buffer = io.StringIO()
    quoting = csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL
    csv.writer(buffer, quoting=quoting, lineterminator="\r\n" if crlf else "\n").writerows(rows)
    return buffer.getvalue()


def _parquet_bytes(rows: list[list[str]], typed: bool) -> bytes:
    """The rows as a Parquet table: text columns, or (``typed``) numbers and timestamps where they parse."""
    width = len(rows[0])
    header = [name if rows[0].index(name) == j else f"{name}.{j}" for j, name in enumerate(rows[0])]
    body = [(r + [""] * width)[:width] for r in rows[1:]]
    frame = pd.DataFrame(body, columns=header, dtype=object)
    if typed:
        for column in frame.columns:
            try:
                frame[column] = pd.to_numeric(frame[column])
            except (ValueError, TypeError):
                try:
                    frame[column] = pd.to_datetime(frame[column], format="ISO8601", utc=True)
                except (ValueError, TypeError, OverflowError):
                    pass
    return _saved(frame.to_parquet)


@st.composite
def table_file(draw, rows: list[list[str]], suffixes=(".csv", ".csv.gz", ".parquet")) -> tuple[str, bytes]:
    """A file name and its bytes: the rows mutated, written as CSV (any encoding, gzip) or Parquet, and maybe
    damaged."""
    rows = draw(mutated_rows(rows))
    suffix = draw(st.sampled_from(suffixes))
    if suffix == ".parquet":
        data = _parquet_bytes(rows, draw(st.booleans()))
    else:
        text = csv_text(rows, quote_all=draw(st.booleans()), crlf=draw(st.booleans()))
        data = text.encode(draw(ENCODINGS), errors="replace")
        if suffix.endswith(".gz"):
            data = gzip.compress(data, mtime=0)
    return "table" + suffix, draw(damaged(data))


def _rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Valid small inputs of every import command (those of tests/test_outputs.py), a MobiFM set, and an
    earlier output of each kind the imports write (``earlier-dataset``, ``earlier-stations.parquet``)."""
    root = tmp_path_factory.mktemp("fuzz") / "inputs"
    _write_inputs(root)
    time = np.zeros((3, 48, 2), dtype=np.int64)
    time[:, :, 0], time[:, :, 1] = np.arange(48) // 24, np.arange(48) % 24
    np.savez(root / "NJTCH.npz", data=np.ones((3, 48)), time=time)
    np.save(root / "kg_embeddings_NJTCH.npy", np.zeros((3, 1, 4), dtype=np.float32))
    write(load_traffic_table(root / "table.csv", root / "stations.csv"), root.parent / "earlier-dataset")
    write_stations(load_grid(root / "grid.geojson"), root.parent / "earlier-stations.parquet")
    return root


def earlier(inputs: Path, kind: str) -> st.SearchStrategy:
    """No earlier output (a new ``--out``) or an earlier output of ``kind`` ("dataset", "stations.parquet")."""
    return st.sampled_from([None, inputs.parent / f"earlier-{kind}"])


TZ = maybe("Europe/Rome", "UTC", "Mars/Olympus", "+01:00", "")
STEP = maybe("1h", "10min", "7parsecs", "0h", "1D")
ENCODING_OPTION = maybe("utf-8", "utf-16", "latin-1", "no-such-encoding")


# -- long tables -------------------------------------------------------------------------------------------------
@fuzz(60)
@given(data=st.data())
def test_import_csv_keeps_the_promise(capsys, inputs, data):
    table_name, table = data.draw(table_file(_rows(inputs / "table.csv")), label="table")
    stations = data.draw(
        st.none() | table_file(_rows(inputs / "stations.csv"), (".csv", ".parquet")), label="stations"
    )
    options = _options(
        tz=data.draw(TZ, label="tz"),
        step=data.draw(STEP, label="step"),
        fill=data.draw(maybe("interpolate", "zero", "sideways"), label="fill"),
        encoding=data.draw(ENCODING_OPTION, label="encoding"),
        channels=data.draw(maybe("internet", "internet,internet", "x", ""), label="channels"),
    )
    with scratch() as root:
        (root / table_name).write_bytes(table)
        args = ["data", "import", "csv", root / table_name, *options, "--out", root / "out"]
        if stations is not None:
            (root / ("stations-" + stations[0])).write_bytes(stations[1])
            args += ["--stations", root / ("stations-" + stations[0])]
        keeps_the_promise(capsys, root, args, root / "out", read, data.draw(earlier(inputs, "dataset")))


@fuzz(40)
@given(data=st.data())
def test_import_mobility_csv_keeps_the_promise(capsys, inputs, data):
    table_name, table = data.draw(table_file(_rows(inputs / "mobility.csv")), label="table")
    _, stations = data.draw(table_file(_rows(inputs / "stations.csv"), (".csv",)), label="stations")
    options = _options(
        tz=data.draw(TZ, label="tz"),
        step=data.draw(STEP, label="step"),
        encoding=data.draw(ENCODING_OPTION, label="encoding"),
    )
    with scratch() as root:
        (root / table_name).write_bytes(table)
        (root / "stations.csv").write_bytes(stations)
        args = ["data", "import", "mobility-csv", root / table_name, "--stations", root / "stations.csv"]
        args += [*options, "--out", root / "out"]
        keeps_the_promise(capsys, root, args, root / "out", read, data.draw(earlier(inputs, "dataset")))


# -- NumPy archives ----------------------------------------------------------------------------------------------
DTYPES = st.one_of(
    hnp.floating_dtypes(),
    hnp.integer_dtypes(),
    hnp.boolean_dtypes(),
    hnp.complex_number_dtypes(),
    hnp.byte_string_dtypes(max_len=3),
    hnp.unicode_string_dtypes(max_len=3),
    hnp.datetime64_dtypes(),
)
ARRAYS = hnp.arrays(dtype=DTYPES, shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))


@st.composite
def npz_file(draw, valid: Path, keys: list[str]) -> bytes:
    """The valid archive damaged; with one array's values (same shape and dtype: NaN, negative...) or the
    whole array (any shape, dtype, or Python objects) replaced; or an archive of random arrays."""
    with np.load(valid) as archive:
        arrays = dict(archive)
    how = draw(st.sampled_from(["damaged", "values", "values", "array", "random"]))
    if how == "damaged":
        return draw(damaged(valid.read_bytes()))
    if how == "random":
        names = draw(st.lists(st.sampled_from([*keys, "other"]), unique=True, max_size=len(keys) + 1))
        arrays = {name: draw(ARRAYS) for name in names}
    else:
        key = draw(st.sampled_from(sorted(arrays)))
        if how == "values":
            arrays[key] = draw(hnp.arrays(arrays[key].dtype, arrays[key].shape))
        elif draw(st.integers(0, 4)) == 0:
            arrays[key] = np.array([{"a": 1}, None], dtype=object)
        else:
            arrays[key] = draw(ARRAYS)
    return _saved(np.savez, **arrays)  # object arrays are pickled into it


@fuzz(40)
@given(data=st.data())
def test_import_stkdiff_keeps_the_promise(capsys, inputs, data):
    archive = data.draw(npz_file(inputs / "stkdiff.npz", ["bs_record", "bs_kge"]), label="npz")
    start = data.draw(maybe("2020-01-01", "yesterday", "2020-03-29 02:30"), label="start")
    with scratch() as root:
        (root / "beijing.npz").write_bytes(archive)
        args = [
            "data",
            "import",
            "stkdiff",
            root / "beijing.npz",
            *_options(start=start),
            "--out",
            root / "out",
        ]
        keeps_the_promise(capsys, root, args, root / "out", read, data.draw(earlier(inputs, "dataset")))


@fuzz(40)
@given(data=st.data())
def test_import_mobifm_keeps_the_promise(capsys, inputs, data):
    archive = data.draw(npz_file(inputs / "NJTCH.npz", ["data", "time"]), label="npz")
    valid_embeddings = (inputs / "kg_embeddings_NJTCH.npy").read_bytes()
    embeddings = data.draw(
        st.none()
        | damaged(valid_embeddings)
        | ARRAYS.map(lambda array: _saved(np.save, array))
        | st.just(inputs / "NJTCH.npz").map(Path.read_bytes),
        label="embeddings",
    )
    options = _options(
        step=data.draw(maybe("1h", "30min", "-1h", "soon"), label="step"),
        start=data.draw(maybe("2020-01-01 00:00", "2020-01-01 05:00", "x"), label="start"),
    )
    with scratch() as root:
        (root / "NJTCH.npz").write_bytes(archive)
        args = ["data", "import", "mobifm", root / "NJTCH.npz", *options, "--out", root / "out"]
        if embeddings is not None:
            (root / "kg.npy").write_bytes(embeddings)
            args += ["--embeddings", root / "kg.npy"]
        keeps_the_promise(capsys, root, args, root / "out", read, data.draw(earlier(inputs, "dataset")))


# -- GeoJSON grids and Milan totals --------------------------------------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_json(draw, document):
    """``document`` with a few entries anywhere in it removed or replaced by random JSON."""
    document = json.loads(json.dumps(document))
    for _ in range(draw(MUTATIONS)):
        parent, key = None, None
        node = document
        while isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)):
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            parent, key = node, draw(st.sampled_from(keys))
            node = node[key]
        if parent is None:
            document = draw(JSON)
        elif draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw(JSON)
    return document


@st.composite
def geojson_file(draw, valid: Path) -> bytes:
    how = draw(st.sampled_from(["mutated", "mutated", "mutated", "random", "bytes"]))
    if how == "bytes":
        return draw(damaged(valid.read_bytes()))
    document = draw(JSON) if how == "random" else draw(mutated_json(json.loads(valid.read_text())))
    return json.dumps(document, allow_nan=True).encode()  # NaN and Infinity, as Python's json reads them


@fuzz(60)
@given(data=st.data())
def test_import_grid_keeps_the_promise(capsys, inputs, data):
    grid = data.draw(geojson_file(inputs / "grid.geojson"), label="grid")
    with scratch() as root:
        (root / "grid.geojson").write_bytes(grid)
        args = ["data", "import", "grid", root / "grid.geojson", "--out", root / "out.parquet"]
        before = data.draw(earlier(inputs, "stations.parquet"))
        keeps_the_promise(capsys, root, args, root / "out.parquet", read_stations, before)


@fuzz(40)
@given(data=st.data())
def test_import_milan_totals_keeps_the_promise(capsys, inputs, data):
    valid_grid = (inputs / "grid.geojson").read_bytes()
    grid = data.draw(st.just(valid_grid) | geojson_file(inputs / "grid.geojson"), label="grid")
    _, totals = data.draw(table_file(_rows(inputs / "totals.csv"), (".csv",)), label="totals")
    missing = data.draw(maybe("drop", "keep"), label="missing")
    with scratch() as root:
        (root / "grid.geojson").write_bytes(grid)
        (root / "totals.csv").write_bytes(totals)
        args = ["data", "import", "milan-totals", root / "totals.csv", "--grid", root / "grid.geojson"]
        args += [*_options(missing=missing), "--out", root / "out.parquet"]
        before = data.draw(earlier(inputs, "stations.parquet"))
        keeps_the_promise(capsys, root, args, root / "out.parquet", read_stations, before)


# -- Telecom Italia day files --------------------------------------------------------------------------------------
DAY_FIELD = st.one_of(
    st.sampled_from(["", "0", "-1", "1.5", "1e400", "nan", "39", "99999999999999999999", "x", " ", "1,5"]),
    st.integers(-(2**65), 2**65).map(str),
    st.text(alphabet=string.printable, max_size=6),
)
DAY_MUTATIONS = ["field", "field", "drop field", "add field", "drop line", "repeat line", "shuffle"]


@st.composite
def day_file(draw, valid: Path) -> tuple[str, bytes]:
    """A Telecom Italia day file (two cells, a few intervals) with lines mutated, any encoding, maybe gzip,
    maybe damaged."""
    lines = valid.read_text().splitlines()[:40]
    for _ in range(draw(MUTATIONS)):
        k = draw(st.integers(0, len(lines) - 1))
        fields = lines[k].split("\t")
        op = draw(st.sampled_from(DAY_MUTATIONS))
        if op == "field":
            fields[draw(st.integers(0, len(fields) - 1))] = draw(DAY_FIELD)
            lines[k] = "\t".join(fields)
        elif op == "drop field":
            lines[k] = "\t".join(fields[:-1])
        elif op == "add field":
            lines[k] = "\t".join([*fields, draw(DAY_FIELD)])
        elif op == "drop line" and len(lines) > 1:
            del lines[k]
        elif op == "repeat line":
            lines.insert(draw(st.integers(0, len(lines))), lines[k])
        elif op == "shuffle":
            lines = draw(st.permutations(lines))
    text = "\n".join(lines) + draw(st.sampled_from(["\n", "", "\n\n", "\r\n"]))
    data = text.encode(draw(ENCODINGS), errors="replace")
    name = "sms-call-internet-mi-2013-11-04.txt"
    if draw(st.booleans()):
        data, name = gzip.compress(data, mtime=0), name + ".gz"
    return name, draw(damaged(data))


@pytest.mark.filterwarnings("ignore::cellsynth.errors.DataRepairWarning")  # filled intervals: printed too
@fuzz(50)
@given(data=st.data())
def test_import_telecom_italia_keeps_the_promise(capsys, inputs, data):
    name, day = data.draw(day_file(inputs / "day.txt"), label="day file")
    options = _options(
        step=data.draw(maybe("10min", "1h", "3min"), label="step"),
        tz=data.draw(maybe("UTC", "Asia/Kolkata", "Nowhere/Else"), label="tz"),
        duplicates=data.draw(maybe("sum", "twice"), label="duplicates"),
    )
    with scratch() as root:
        (root / name).write_bytes(day)
        shutil.copy(inputs / "grid.geojson", root / "grid.geojson")
        args = ["data", "import", "telecom-italia", root / name, "--grid", root / "grid.geojson", *options]
        args += ["--no-progress", "--out", root / "out"]
        keeps_the_promise(capsys, root, args, root / "out", read, data.draw(earlier(inputs, "dataset")))


# -- fit: configs and --set -----------------------------------------------------------------------------------------
class ConfigAccepted(Exception):
    """Raised by a stubbed fit once ``fit`` validated the config: training itself is not what is fuzzed."""


def _keys(name: str) -> list[str]:
    """Config keys of generator ``name`` (its sections' keys come up as the values of a section key), plus one
    that no generator has."""
    return [*get_class(name).Config.model_fields, "bogus"]


YAML_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8),
    st.sampled_from(["1h", "ddim", "standard", "none", "[1, 2]", "{a: 1}", "~", "yes", "0x10", "1e3"]),
)  # fmt: skip


@st.composite
def config_text(draw, name: str) -> bytes:
    """A YAML config for generator ``name``: known and unknown keys, any values, nested sections, lists and
    scalars at the top, or bytes that are no YAML at all."""
    keys = st.sampled_from(_keys(name)) | st.text(max_size=6)
    value = st.recursive(
        YAML_SCALAR,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=6,
    )
    how = draw(st.sampled_from(["mapping", "mapping", "mapping", "other", "bytes"]))
    if how == "bytes":
        return draw(st.binary(max_size=40))
    document = draw(st.dictionaries(keys, value, max_size=4) if how == "mapping" else value)
    return yaml.safe_dump(document, allow_unicode=draw(st.booleans())).encode()


# What a shell can pass: any text but NUL (and lone surrogates, which only undecodable bytes give).
ARGUMENT = st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=12)


@st.composite
def set_item(draw, name: str) -> str:
    key = draw(st.sampled_from(_keys(name)) | ARGUMENT)
    value = draw(ARGUMENT | YAML_SCALAR.map(lambda v: yaml.safe_dump(v).removesuffix("\n...\n").strip()))
    return draw(st.sampled_from([f"{key}={value}", f"{key}={value}", key, f"={value}"]))


def _fit_args(root: Path, city: Path, name: str, config: bytes | None, sets: list[str]) -> list:  # noqa: F811
    """``fit`` on a copy of ``city`` in ``root`` (so that the promise covers it too), with a config file and
    ``--set`` items."""
    shutil.copytree(city, root / "city")
    args = ["fit", name, "--data", root / "city", "--out", root / "out", "--no-progress"]
    if config is not None:
        (root / "config.yaml").write_bytes(config)
        args += ["--config", root / "config.yaml"]
    return args + [f"--set={item}" for item in sets]


@fuzz(40)
@given(data=st.data())
def test_fit_configs_keep_the_promise(capsys, city, data):  # noqa: F811
    """seasonal-mean fits in a blink: every accepted config is fitted, saved and loaded back."""
    config = data.draw(st.none() | config_text("seasonal-mean"), label="config")
    sets = data.draw(st.lists(set_item("seasonal-mean"), max_size=2), label="--set")
    with scratch() as root:
        args = _fit_args(root, city, "seasonal-mean", config, sets)
        keeps_the_promise(capsys, root, args, root / "out", cellsynth.load)


@pytest.mark.parametrize("name", ["stouter", "mstdiff"])
@fuzz(30)
@given(data=st.data())
def test_nested_configs_keep_the_promise(capsys, monkeypatch, city, name, data):  # noqa: F811
    """Configs with sections (sampling, extensions, calibration...): the fit stops once the config is valid."""

    def accepted(self, *args, **kwargs):
        raise ConfigAccepted

    monkeypatch.setattr(get_class(name), "fit", accepted)
    config = data.draw(st.none() | config_text(name), label="config")
    sets = data.draw(st.lists(set_item(name), max_size=2), label="--set")
    with scratch() as root:
        args = _fit_args(root, city, name, config, sets)
        before = _files(root)
        try:
            keeps_the_promise(capsys, root, args, root / "out", cellsynth.load)
        except ConfigAccepted:
            event("config accepted")
            assert _outside(_files(root), root / "out", root) == _outside(before, root / "out", root)


# -- generate: damaged saved models ---------------------------------------------------------------------------------
@st.composite
def damaged_model(draw, model: Path) -> dict[str, bytes]:  # noqa: F811
    """The files of the saved ``model`` with generator.json's entries removed or replaced by random JSON, or
    weights.safetensors cut at a random byte."""
    files = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    what = draw(st.sampled_from(["record", "record", "record", "weights", "both"]))
    if what in ("record", "both"):
        record = draw(mutated_json(json.loads(files["generator.json"])))
        files["generator.json"] = json.dumps(record, allow_nan=True).encode()
    if what in ("weights", "both"):
        weights = files["weights.safetensors"]
        files["weights.safetensors"] = weights[: draw(st.integers(0, len(weights)))]
    return files


@fuzz(50)
@given(data=st.data())
def test_generate_from_a_damaged_model_keeps_the_promise(capsys, inputs, model, data):  # noqa: F811
    files = data.draw(damaged_model(model), label="model files")
    with scratch() as root:
        (root / "model").mkdir()
        for name, content in files.items():
            (root / "model" / name).write_bytes(content)
        args = ["generate", "--model", root / "model", "--n", 2, "--out", root / "out"]
        keeps_the_promise(capsys, root, args, root / "out", read, data.draw(earlier(inputs, "dataset")))
