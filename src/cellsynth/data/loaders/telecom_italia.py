"""The Telecom Italia Big Data Challenge day files (Milan and Trentino): a streaming reader.

Each day file (``sms-call-internet-mi-2013-11-01.txt``, 100-300 MB) is tab-separated without a header::

    square id <TAB> interval (epoch ms, UTC, 10-min steps) <TAB> country code <TAB> sms-in <TAB> sms-out
    <TAB> call-in <TAB> call-out <TAB> internet

An empty field means zero; there is one row per square, interval and country code. The reader sums the country
codes and forms three channels: ``internet``, ``call`` (in + out) and ``sms`` (in + out).

Memory. Files are streamed in blocks of ``chunk_bytes`` (default 1 MiB) with pyarrow's CSV reader (parsing
in C); the reader's buffers take a few dozen times the block size (measured: ~40 MB at 1 MiB, ~150 MB at
4 MiB, with no gain in speed). Rows are added into dense float64 accumulators, never kept as rows:

- the file being read: ``[channels, cells, 144]`` per day it covers, at 10 minutes (Milan, 3 channels: 35 MB
  per day);
- everything read so far, at the output step (Milan, hourly, one month: 180 MB);
- the 10-minute values of the first and last interval of each run of intervals present in a file (two per
  clean day file), which is what a missing interval's interpolation needs.

So a month of Milan files is read in about the memory of its result; ``cells=`` and ``channels=`` shrink it.
A single file spanning many days (not how the data is published) would hold all its days at 10 minutes.

Repairs. The time axis covers the full local days (``tz``) from the first to the last interval seen. A
10-minute interval in which no cell has any row is *missing*: every cell's value there is filled by linear
interpolation (per cell and channel) between the nearest present intervals before and after it, or copied
from the nearest one at the edges of the span; the output steps that contain it are marked in
``StationTraffic.repaired``, a :class:`DataRepairWarning` says how many, and ``return_report=True`` returns
them. A cell without a row in an interval where other cells have rows is read as no activity: a zero, not a
repair (the files have no row where nothing was recorded, and a whole interval without any row in a city of
thousands of cells is a gap in the data, not a quiet ten minutes).
"""

from __future__ import annotations

import gzip
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

from cellsynth.data.loaders._common import check_tz, existing_file, source_name
from cellsynth.data.loaders.grid import cell_positions, load_grid
from cellsynth.data.model import Stations, StationTraffic
from cellsynth.errors import DataError, DataRepairWarning

__all__ = ["CHANNELS", "TelecomItaliaReport", "load_telecom_italia"]

COLUMNS = ("square_id", "interval", "country_code", "sms_in", "sms_out", "call_in", "call_out", "internet")
_VALUE_COLUMNS = COLUMNS[3:]
# Each output channel is the sum of these raw columns (indices into COLUMNS).
CHANNELS: dict[str, tuple[int, ...]] = {"internet": (7,), "call": (5, 6), "sms": (3, 4)}
INTERVAL = pd.Timedelta("10min")
_INTERVAL_MS = 600_000
_DAY = 144  # 10-minute intervals per 24 h: the width of an accumulator block
_MIN_CHUNK = 1024  # pyarrow needs every row to fit in one block; real rows are < 100 bytes


@dataclass(frozen=True)
class TelecomItaliaReport:
    """What :func:`load_telecom_italia` read and repaired (``return_report=True``)."""

    files: tuple[str, ...]
    rows: int  # data rows read (all cells, all country codes)
    rows_outside_cells: int  # rows of grid cells left out by ``cells=``
    batches: int  # blocks of ``chunk_bytes`` the files were streamed in
    missing_intervals: pd.DatetimeIndex  # 10-minute intervals in which no cell had a row (filled)
    repaired_steps: int  # output steps containing at least one missing interval
    cells_without_rows: tuple[str, ...] = field(default=())  # selected cells with no row at all (all zeros)

    def __str__(self) -> str:
        lines = [
            f"{len(self.files)} file(s), {self.rows:,} rows in {self.batches} block(s)"
            + (f", {self.rows_outside_cells:,} rows of unselected cells" if self.rows_outside_cells else ""),
        ]
        if len(self.missing_intervals):
            shown = ", ".join(str(t) for t in self.missing_intervals[:5])
            more = f" and {len(self.missing_intervals) - 5} more" if len(self.missing_intervals) > 5 else ""
            lines.append(
                f"{len(self.missing_intervals)} missing 10-minute interval(s) filled by linear interpolation "
                f"({shown}{more}); {self.repaired_steps} step(s) marked repaired"
            )
        else:
            lines.append("no missing intervals")
        if self.cells_without_rows:
            lines.append(f"{len(self.cells_without_rows)} cell(s) without any row (all zeros)")
        return "\n".join(lines)


def _file_list(files) -> list[Path]:
    if isinstance(files, (str, os.PathLike)):
        path = Path(files)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith((".txt", ".txt.gz")))
            if not found:
                raise DataError("the directory holds no .txt or .txt.gz day files", source=source_name(path))
            return found
        return [existing_file(path)]
    paths = [p for item in files for p in _file_list(item)]  # a list may mix files and folders
    if not paths:
        raise DataError("no files given")
    return paths


def _ratio(step) -> int:
    try:
        step = pd.Timedelta(step)
    except ValueError as err:
        raise DataError(f"step {step!r} is not a duration (use '10min' or '1h')") from err
    ratio = step / INTERVAL
    if step <= pd.Timedelta(0) or ratio != int(ratio) or _DAY % int(ratio):
        raise DataError(
            f"step {step} must be a multiple of 10 minutes that divides a day (e.g. '10min', '1h')"
        )
    return int(ratio)


class _Reader:
    """Streams one file as numpy batches; on any bad value, finds and names the offending line."""

    def __init__(self, path: Path, chunk_bytes: int, sorted_cells: np.ndarray, progress) -> None:
        self.path = path
        self.src = source_name(path)
        self.chunk_bytes = chunk_bytes
        self.sorted_cells = sorted_cells
        self.progress = progress
        self.rows = 0  # rows yielded so far: the bad row of a failing block comes after them
        self.batches = 0

    def _open(self, raw):
        stream = pa.CompressedInputStream(raw, "gzip") if self.path.name.endswith(".gz") else raw
        types = {c: pa.int64() for c in COLUMNS[:3]} | {c: pa.float64() for c in _VALUE_COLUMNS}
        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                column_names=list(COLUMNS), block_size=self.chunk_bytes, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(
                delimiter="\t",
                quote_char=False,
                double_quote=False,
                escape_char=False,
                newlines_in_values=False,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=types, null_values=[""], strings_can_be_null=False
            ),
        )
        return reader

    def batches_of(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(sorted-cell position, 10-minute index since the epoch, values[5, rows])`` per block.

        Every row is validated first; a bad one raises naming its line.
        """
        seen = 0  # bytes of the (possibly compressed) file consumed, for the progress bar
        raw = None
        try:
            raw = pa.OSFile(str(self.path))
            reader = self._open(raw)
            for batch in reader:
                self.batches += 1
                yield self._convert(batch)
                self.rows += batch.num_rows
                self.progress.update(raw.tell() - seen)
                seen = raw.tell()
            self.progress.update(raw.size() - seen)
        except pa.ArrowInvalid as err:
            if "Empty CSV file" in str(err):
                raise DataError("the file is empty", source=self.src) from err
            self.locate(f"cannot parse: {err}")
        finally:
            if raw is not None:
                raw.close()

    def _convert(self, batch: pa.RecordBatch):
        cols = batch.columns
        if cols[0].null_count or cols[1].null_count:
            self.locate("a row has no square id or no interval")
        squares = cols[0].to_numpy()
        ms = cols[1].to_numpy()
        values = np.stack([c.fill_null(0.0).to_numpy() for c in cols[3:]])
        if (ms % _INTERVAL_MS).any():
            self.locate("an interval is not on a 10-minute boundary")
        if not np.isfinite(values).all() or (values < 0).any():
            self.locate("a NaN, infinite or negative value")
        at = np.clip(np.searchsorted(self.sorted_cells, squares), 0, len(self.sorted_cells) - 1)
        if (self.sorted_cells[at] != squares).any():
            self.locate("a square id that is not in the grid")
        return at, ms // _INTERVAL_MS, values

    def _open_text(self):
        if self.path.name.endswith(".gz"):
            return gzip.open(self.path, "rt", encoding="utf-8", errors="replace", newline="")
        return open(self.path, encoding="utf-8", errors="replace", newline="")

    def locate(self, what: str):
        """Re-read the file from the failing block on, in Python, and raise naming the first bad line.

        Only runs when the fast path found a problem, so its slowness costs nothing on good files.
        """
        cells = set(self.sorted_cells.tolist())
        rows = 0
        with self._open_text() as f:
            for number, line in enumerate(f, start=1):
                text = line.rstrip("\r\n")
                if not text:
                    continue  # pyarrow skips empty lines too, without counting them as rows
                rows += 1
                if rows <= self.rows:
                    continue
                problem = _line_problem(text, cells)
                if problem:
                    shown = text if len(text) <= 100 else text[:100] + "..."
                    raise DataError(f"line {number}: {problem} (line: {shown!r})", source=self.src)
        raise DataError(f"{what}; could not pin it to a line (try a larger chunk_bytes)", source=self.src)


def _line_problem(text: str, cells: set[int]) -> str | None:
    """What is wrong with one raw line, or None. Mirrors the checks of the fast path."""
    fields = text.split("\t")
    if len(fields) != len(COLUMNS):
        return (
            f"expected {len(COLUMNS)} tab-separated fields (square id, interval, country code, sms-in, sms-out, "
            f"call-in, call-out, internet), found {len(fields)}"
        )
    for name, value in zip(COLUMNS[:3], fields[:3], strict=True):
        if value == "":
            if name != "country_code":
                return f"the {name.replace('_', ' ')} is empty"
            continue
        try:
            int(value)
        except ValueError:
            return f"{name.replace('_', ' ')} {value!r} is not an integer"
    for name, value in zip(_VALUE_COLUMNS, fields[3:], strict=True):
        if value == "":
            continue
        try:
            number = float(value)
        except ValueError:
            return f"{name.replace('_', '-')} {value!r} is not a number"
        if not np.isfinite(number):
            return f"{name.replace('_', '-')} is {value!r}"
        if number < 0:
            return f"{name.replace('_', '-')} is negative ({value}); activity counts cannot be negative"
    if int(fields[1]) % _INTERVAL_MS:
        return f"interval {fields[1]} (epoch ms) is not on a 10-minute boundary"
    if int(fields[0]) not in cells:
        return f"square id {fields[0]} is not a cell of the grid"
    return None


def _local_midnight(k: int, tz: str, days: int = 0) -> int:
    """The 10-minute index of local midnight of the day containing interval ``k`` (plus ``days``)."""
    local = pd.Timestamp(k * _INTERVAL_MS, unit="ms", tz="UTC").tz_convert(tz)
    midnight = pd.Timestamp(local.date() + timedelta(days=days)).tz_localize(tz, nonexistent="shift_forward")
    ns = midnight.value
    if ns % (_INTERVAL_MS * 1_000_000):
        raise DataError(f"local midnight in {tz} ({midnight}) is not on a 10-minute boundary of the data")
    return ns // (_INTERVAL_MS * 1_000_000)


def _runs(sorted_k: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs ``[first, last]`` of consecutive integers in a sorted array."""
    if len(sorted_k) == 0:
        return []
    breaks = np.flatnonzero(np.diff(sorted_k) != 1)
    firsts = np.concatenate([[0], breaks + 1])
    lasts = np.concatenate([breaks, [len(sorted_k) - 1]])
    return [(int(sorted_k[a]), int(sorted_k[b])) for a, b in zip(firsts, lasts, strict=True)]


def load_telecom_italia(
    files: str | os.PathLike | Iterable[str | os.PathLike],
    grid: str | os.PathLike | Stations,
    *,
    step: str | pd.Timedelta = "1h",
    tz: str = "Europe/Rome",
    channels: Sequence[str] = ("internet", "call", "sms"),
    cells: Sequence[int | str] | None = None,
    chunk_bytes: int = 1 << 20,
    progress: bool = False,
    return_report: bool = False,
) -> StationTraffic | tuple[StationTraffic, TelecomItaliaReport]:
    """Read Telecom Italia day files into :class:`StationTraffic` of grid cells (see the module docstring).

    Parameters
    ----------
    files:
        One day file, several (any order; a month is fine), or a directory of ``*.txt`` / ``*.txt.gz`` files.
    grid:
        The cells' GeoJSON (``milano-grid.geojson``, ``trentino-grid.geojson``) or :func:`load_grid`'s result.
        Station ids are ``str(cellId)``, coordinates the cell centroids.
    step:
        ``"10min"`` (as recorded) or ``"1h"`` (sums of six intervals); any multiple of 10 min dividing a day.
    tz:
        The timezone of the result's time axis; days (the span) are local days there.
    channels:
        Which of ``internet``, ``call``, ``sms`` to keep, in this order.
    cells:
        Only these cell ids, in this order (the rest are still validated but not accumulated).
    chunk_bytes:
        Size of the blocks the files are streamed in; it bounds the memory used per block.
    progress:
        Show a progress bar over the bytes of all files.
    return_report:
        Also return a :class:`TelecomItaliaReport` (rows, batches, the missing intervals that were filled).

    Raises :class:`DataError` naming the file and line for malformed lines (field count, non-numeric), missing
    square ids or intervals, NaN or negative values, intervals off the 10-minute grid and square ids that are
    not in the grid.
    """
    paths = _file_list(files)
    check_tz(tz)
    r = _ratio(step)
    blocks_per_day = _DAY // r
    unknown = [c for c in channels if c not in CHANNELS]
    if unknown or not channels or len(set(channels)) != len(channels):
        raise DataError(f"channels must be distinct names among {list(CHANNELS)}, got {list(channels)}")
    if chunk_bytes < _MIN_CHUNK:
        raise DataError(f"chunk_bytes must be at least {_MIN_CHUNK}, got {chunk_bytes}")
    stations = grid if isinstance(grid, Stations) else load_grid(grid)
    sorted_cells, grid_rows = cell_positions(stations, source=stations.source)
    if cells is not None:
        selected = stations.index_of([str(c) for c in cells], source="cells=")
        out_row = np.full(len(stations), -1, dtype=np.int64)
        out_row[selected] = np.arange(len(selected))
        stations = stations.subset(selected)
    else:
        out_row = np.arange(len(stations), dtype=np.int64)
    row_of = out_row[grid_rows]  # sorted-cell position -> output row (-1: not selected)
    n, n_ch = len(stations), len(channels)
    sums = [np.asarray(CHANNELS[c]) - 3 for c in channels]  # raw value rows summed into each channel

    origin: int | None = None  # 10-min index of a local midnight: block and output-step boundaries hang on it
    out_blocks: dict[int, np.ndarray] = {}  # day block -> [C, n, steps per day] at the output step
    boundary: dict[int, np.ndarray] = {}  # interval -> [C, n] 10-min values at the edges of present runs
    present: set[int] = set()
    seen_cell = np.zeros(n, dtype=bool)
    rows = outside = batches = 0
    total_bytes = sum(p.stat().st_size for p in paths)
    with tqdm(
        total=total_bytes, unit="B", unit_scale=True, disable=not progress, desc="telecom italia"
    ) as bar:
        for path in paths:
            bar.set_postfix_str(path.name, refresh=False)
            reader = _Reader(path, chunk_bytes, sorted_cells, bar)
            day_blocks: dict[int, np.ndarray] = {}  # this file, at 10 minutes
            file_present: set[int] = set()
            for at, k, values in reader.batches_of():
                if len(k) == 0:
                    continue
                if origin is None:
                    origin = _local_midnight(int(k[0]), tz)
                file_present.update(np.unique(k).tolist())
                out = row_of[at]
                keep = out >= 0
                outside += int((~keep).sum())
                out, k, values = out[keep], k[keep], values[:, keep]
                seen_cell[out] = True
                channel_values = [values[s].sum(axis=0) for s in sums]
                rel = k - origin
                day, offset = np.divmod(rel, _DAY)
                for d in np.unique(day).tolist():
                    block = day_blocks.get(d)
                    if block is None:
                        block = day_blocks[d] = np.zeros((n_ch, n, _DAY))
                    sel = day == d
                    flat = out[sel] * _DAY + offset[sel]
                    for c in range(n_ch):
                        np.add.at(block[c].reshape(-1), flat, channel_values[c][sel])
            rows += reader.rows
            batches += reader.batches
            # Keep the 10-min values a later interpolation may need: intervals at the edge of a present run.
            for k in file_present:
                if k - 1 not in file_present or k + 1 not in file_present:
                    d, off = divmod(k - origin, _DAY)
                    if d not in day_blocks:  # only cells outside ``cells=`` had rows in this interval
                        continue
                    edge = day_blocks[d][:, :, off]
                    if k in boundary:
                        boundary[k] += edge
                    else:
                        boundary[k] = edge.copy()
            for d, block in day_blocks.items():
                folded = block.reshape(n_ch, n, blocks_per_day, r).sum(axis=-1)
                if d in out_blocks:
                    out_blocks[d] += folded
                else:
                    out_blocks[d] = folded
            del day_blocks
            present |= file_present

    src = (
        source_name(paths[0])
        if len(paths) == 1
        else f"{source_name(paths[0])} (+{len(paths) - 1} more files)"
    )
    if not present:
        raise DataError("no data rows in the file(s)", source=src)
    assert origin is not None
    k_start = _local_midnight(min(present), tz)
    k_end = _local_midnight(max(present), tz, days=1)
    if (k_start - origin) % r or (k_end - k_start) % r:
        raise DataError(f"local days in {tz} do not split into whole {pd.Timedelta(step)} steps", source=src)
    n_steps = (k_end - k_start) // r
    first_bin = (k_start - origin) // r

    # Fill missing intervals (no row for any cell) by linear interpolation between the present neighbours.
    everything = np.arange(k_start, k_end)
    missing = everything[~np.isin(everything, np.fromiter(present, dtype=np.int64, count=len(present)))]
    repaired_bins: set[int] = set()
    nothing = np.zeros((n_ch, n))  # a present interval with rows only for cells outside ``cells=``
    for first, last in _runs(missing):
        before = boundary.get(first - 1, nothing) if first > k_start else None
        after = boundary.get(last + 1, nothing) if last < k_end - 1 else None
        for m in range(first, last + 1):
            if before is not None and after is not None:
                w = (m - (first - 1)) / (last + 1 - (first - 1))
                filled = before + w * (after - before)
            else:
                filled = before if before is not None else after
            b = (m - origin) // r
            d, off = divmod(b, blocks_per_day)
            if d not in out_blocks:
                out_blocks[d] = np.zeros((n_ch, n, blocks_per_day))
            out_blocks[d][:, :, off] += filled
            repaired_bins.add(b - first_bin)
    boundary.clear()

    values = np.zeros((n, n_steps, n_ch), dtype=np.float32)
    for d in sorted(out_blocks):
        block = out_blocks.pop(d)  # free each block as it is copied: the peak stays near one result's size
        lo = d * blocks_per_day - first_bin
        a, b = max(lo, 0), min(lo + blocks_per_day, n_steps)
        if a < b:
            values[:, a:b, :] = block[:, :, a - lo : b - lo].transpose(1, 2, 0)
    repaired = None
    if repaired_bins:
        repaired = np.zeros(values.shape, dtype=bool)
        repaired[:, sorted(repaired_bins), :] = True

    start = pd.Timestamp(k_start * _INTERVAL_MS, unit="ms", tz="UTC").tz_convert(tz)
    missing_index = pd.DatetimeIndex(pd.to_datetime(missing * _INTERVAL_MS, unit="ms", utc=True)).tz_convert(
        tz
    )
    if len(missing):
        shown = ", ".join(str(t) for t in missing_index[:3]) + (" ..." if len(missing) > 3 else "")
        message = (
            f"{src}: {len(missing)} missing 10-minute interval(s) (no row for any cell: {shown}) filled by linear "
            f"interpolation; {len(repaired_bins)} step(s) marked in .repaired"
        )
        warnings.warn(message, DataRepairWarning, stacklevel=2)
    data = StationTraffic(
        values=values,
        start=start,
        step=INTERVAL * r,
        channels=tuple(channels),
        stations=stations,
        repaired=repaired,
        source=src,
    )
    if not return_report:
        return data
    report = TelecomItaliaReport(
        files=tuple(source_name(p) for p in paths),
        rows=rows,
        rows_outside_cells=outside,
        batches=batches,
        missing_intervals=missing_index,
        repaired_steps=len(repaired_bins),
        cells_without_rows=tuple(stations.ids[~seen_cell]),
    )
    return data, report
