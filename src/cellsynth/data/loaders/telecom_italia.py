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

- the key of every row of the file being read (square, interval, country code packed in 8 bytes; 16 while
  they are sorted at the end of the file), to find repeated lines: ~50 MB for a 6-million-row day file.

So a month of Milan files is read in about the memory of its result; ``cells=`` and ``channels=`` shrink it.
A single file spanning many days (not how the data is published) would hold all its days at 10 minutes.

Counting once. A line repeating the (square, interval, country code) of an earlier line of its file would be
counted twice: it is an error naming both lines, unless ``duplicates="sum"`` (explicit) adds them up, counted
in the report. Two files holding the same interval (a day given twice: ``day.txt`` and ``day.txt.gz``, a copy
under another name) are always an error naming both files.

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

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from cellsynth.data.loaders._common import (
    FLOAT32_MAX,
    check_tz,
    existing_file,
    float32_overflow,
    is_gzip_name,
    source_name,
)
from cellsynth.data.loaders._telecom_lines import INTERVAL_MS, DayFileReader, repeated_lines
from cellsynth.data.loaders.grid import cell_positions, load_grid
from cellsynth.data.model import Stations, StationTraffic
from cellsynth.data.repair import gap_neighbours
from cellsynth.errors import DataError, DataRepairWarning

__all__ = ["CHANNELS", "TelecomItaliaReport", "load_telecom_italia"]

# Each output channel is the sum of these raw columns (indices into the 8 fields of a line).
CHANNELS: dict[str, tuple[int, ...]] = {"internet": (7,), "call": (5, 6), "sms": (3, 4)}
INTERVAL = pd.Timedelta("10min")
_DAY = 144  # 10-minute intervals per 24 h: the width of an accumulator block
_MIN_CHUNK = 1024  # pyarrow needs every row to fit in one block; real rows are < 100 bytes
DUPLICATES = ("error", "sum")


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
    duplicate_rows_summed: int = 0  # lines repeating an earlier line's key, added up (duplicates="sum")

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
        if self.duplicate_rows_summed:
            lines.append(
                f"{self.duplicate_rows_summed:,} repeated line(s) (same square, interval and country code as an "
                "earlier line) added up, as duplicates='sum' asked"
            )
        return "\n".join(lines)


def _file_list(files) -> list[Path]:
    """The day files to read, each once: the same file twice, or a day file and its ``.gz``, is an error."""
    paths = _gather(files)
    by_file: dict[Path, Path] = {}
    by_day: dict[str, Path] = {}
    for path in paths:
        same = by_file.get(path.resolve())
        if same is not None:
            raise DataError(
                f"is given twice (also as {same}); give each day file once", source=source_name(path)
            )
        by_file[path.resolve()] = path
        day = path.name[:-3] if is_gzip_name(path) else path.name
        same = by_day.get(day)
        if same is not None:
            raise DataError(
                f"holds the same day as {same} (the same file name{', once gzip-compressed' if same.name != path.name else ''}); "
                "every value would count twice: give each day once",
                source=source_name(path),
            )
        by_day[day] = path
    return paths


def _gather(files) -> list[Path]:
    if isinstance(files, (str, os.PathLike)):
        path = Path(files)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.name.endswith((".txt", ".txt.gz")))
            if not found:
                raise DataError("the directory holds no .txt or .txt.gz day files", source=source_name(path))
            return found
        return [existing_file(path)]
    paths = [p for item in files for p in _gather(item)]  # a list may mix files and folders
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


def _local_midnight(k: int, tz: str, days: int = 0) -> int:
    """The 10-minute index of local midnight of the day containing interval ``k`` (plus ``days``)."""
    local = pd.Timestamp(k * INTERVAL_MS, unit="ms", tz="UTC").tz_convert(tz)
    midnight = pd.Timestamp(local.date() + timedelta(days=days)).tz_localize(tz, nonexistent="shift_forward")
    ns = midnight.value
    if ns % (INTERVAL_MS * 1_000_000):
        raise DataError(f"local midnight in {tz} ({midnight}) is not on a 10-minute boundary of the data")
    return ns // (INTERVAL_MS * 1_000_000)


def _day_twice(path: Path, other: Path, k: int, tz: str) -> DataError:
    when = pd.Timestamp(k * INTERVAL_MS, unit="ms", tz="UTC").tz_convert(tz)
    return DataError(
        f"holds intervals that {source_name(other)} holds too (first: {when}): the same day given twice (a day "
        "file and its .gz, or a copy under another name)? Every value would count twice: give each day once",
        source=source_name(path),
    )


def load_telecom_italia(
    files: str | os.PathLike | Iterable[str | os.PathLike],
    grid: str | os.PathLike | Stations,
    *,
    step: str | pd.Timedelta = "1h",
    tz: str = "Europe/Rome",
    channels: Sequence[str] = ("internet", "call", "sms"),
    cells: Sequence[int | str] | None = None,
    chunk_bytes: int = 1 << 20,
    duplicates: str = "error",
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
    duplicates:
        A line repeating the (square, interval, country code) of an earlier line of its file: ``"error"``
        (default; the error names both lines) or ``"sum"`` (add them up; the report counts them). Two files
        holding the same interval are an error either way.
    progress:
        Show a progress bar over the bytes of all files.
    return_report:
        Also return a :class:`TelecomItaliaReport` (rows, batches, the missing intervals that were filled).

    Raises :class:`DataError` naming the file and line for malformed lines (field count, non-numeric), missing
    square ids or intervals, NaN or negative values, intervals off the 10-minute grid and square ids that are
    not in the grid, for repeated lines and days, and for a damaged ``.gz``.
    """
    if duplicates not in DUPLICATES:
        raise DataError(f"duplicates must be 'error' or 'sum', got {duplicates!r}")
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
    present: dict[int, Path] = {}  # interval -> the file that holds it
    seen_cell = np.zeros(n, dtype=bool)
    rows = outside = batches = summed = 0
    total_bytes = sum(p.stat().st_size for p in paths)
    with tqdm(
        total=total_bytes, unit="B", unit_scale=True, disable=not progress, desc="telecom italia"
    ) as bar:
        for path in paths:
            bar.set_postfix_str(path.name, refresh=False)
            reader = DayFileReader(path, chunk_bytes, sorted_cells, bar)
            day_blocks: dict[int, np.ndarray] = {}  # this file, at 10 minutes
            file_present: set[int] = set()
            file_keys: list[np.ndarray] = []
            for at, k, values, keys in reader.batches_of():
                if len(k) == 0:
                    continue
                if origin is None:
                    origin = _local_midnight(int(k[0]), tz)
                intervals = np.unique(k).tolist()
                twice = [i for i in intervals if i in present]
                if twice:
                    raise _day_twice(path, present[twice[0]], twice[0], tz)
                file_present.update(intervals)
                file_keys.append(keys)
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
            summed += repeated_lines(reader, file_keys, duplicates)
            del file_keys
            # Keep the 10-min values a later interpolation may need: intervals at the edge of a present run.
            for k in file_present:
                if k - 1 not in file_present or k + 1 not in file_present:
                    d, off = divmod(k - origin, _DAY)
                    if d not in day_blocks:  # only cells outside ``cells=`` had rows in this interval
                        continue
                    boundary[k] = day_blocks[d][:, :, off].copy()  # no other file holds k
            for d, block in day_blocks.items():
                folded = block.reshape(n_ch, n, blocks_per_day, r).sum(axis=-1)
                if d in out_blocks:
                    out_blocks[d] += folded
                else:
                    out_blocks[d] = folded
            del day_blocks
            present.update(dict.fromkeys(file_present, path))

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

    # Fill missing intervals (no row for any cell) by linear interpolation between the present neighbours,
    # which are always edges of present runs, kept in ``boundary``.
    everything = np.arange(k_start, k_end)
    recorded = np.array(sorted(present), dtype=np.int64)
    missing = everything[~np.isin(everything, recorded)]
    repaired_bins: set[int] = set()
    nothing = np.zeros((n_ch, n))  # a present interval with rows only for cells outside ``cells=``
    left, right, weight = gap_neighbours(recorded, missing)
    neighbours = zip(missing.tolist(), recorded[left].tolist(), recorded[right].tolist(), weight, strict=True)
    for m, a, b, w in neighbours:
        before, after = boundary.get(a, nothing), boundary.get(b, nothing)
        filled = before + w * (after - before)
        step_bin = (m - origin) // r
        d, off = divmod(step_bin, blocks_per_day)
        if d not in out_blocks:
            out_blocks[d] = np.zeros((n_ch, n, blocks_per_day))
        out_blocks[d][:, :, off] += filled
        repaired_bins.add(step_bin - first_bin)
    boundary.clear()

    values = np.zeros((n, n_steps, n_ch), dtype=np.float32)
    for d in sorted(out_blocks):
        block = out_blocks.pop(d)  # free each block as it is copied: the peak stays near one result's size
        lo = d * blocks_per_day - first_bin
        a, b = max(lo, 0), min(lo + blocks_per_day, n_steps)
        if a < b and block.max(initial=0.0) > FLOAT32_MAX:  # many large lines summed in one step
            c, i, t = np.argwhere(block[:, :, a - lo : b - lo] > FLOAT32_MAX)[0]
            when = pd.Timestamp((k_start + (a + t) * r) * INTERVAL_MS, unit="ms", tz="UTC").tz_convert(tz)
            raise DataError(
                f"cell {stations.ids[i]} at {when}: {channels[c]} sums to "
                f"{float32_overflow(block[c, i, a - lo + t])}",
                source=src,
            )
        if a < b:
            values[:, a:b, :] = block[:, :, a - lo : b - lo].transpose(1, 2, 0)
    repaired = None
    if repaired_bins:
        repaired = np.zeros(values.shape, dtype=bool)
        repaired[:, sorted(repaired_bins), :] = True

    start = pd.Timestamp(k_start * INTERVAL_MS, unit="ms", tz="UTC").tz_convert(tz)
    missing_index = pd.DatetimeIndex(pd.to_datetime(missing * INTERVAL_MS, unit="ms", utc=True)).tz_convert(
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
        duplicate_rows_summed=summed,
    )
    return data, report
