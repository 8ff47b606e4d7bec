"""Reading one Telecom Italia day file: streaming its rows, naming a bad line, finding repeated lines.

The fast path parses blocks with pyarrow (in C) and validates them with numpy; only when a block holds a
problem is the file re-read line by line in Python, to name the first bad line. See
:mod:`cellsynth.data.loaders.telecom_italia` for the format and what the loader makes of the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from cellsynth.data.loaders._common import (
    FLOAT32_MAX,
    GZIP_ERRORS,
    check_compression,
    float32_overflow,
    incomplete_gzip,
    is_gzip_name,
    number_hint,
    open_text,
    source_name,
)
from cellsynth.errors import DataError

COLUMNS = ("square_id", "interval", "country_code", "sms_in", "sms_out", "call_in", "call_out", "internet")
_VALUE_COLUMNS = COLUMNS[3:]
INTERVAL_MS = 600_000  # 10 minutes
_K_BITS = 23  # a row key packs the 10-minute interval since 1970 (< 2**23: until 2129), the cell, the country


class DayFileReader:
    """Streams one file as numpy batches with a packed key per row; on any bad value, finds and names the
    offending line."""

    def __init__(self, path: Path, chunk_bytes: int, sorted_cells: np.ndarray, progress) -> None:
        self.path = path
        # Row key layout, high to low bits: interval (_K_BITS), cell position, country code + 1 (0: empty).
        self.cell_bits = max(1, (len(sorted_cells) - 1).bit_length())
        self.country_bits = 63 - _K_BITS - self.cell_bits
        self.country_max = (1 << self.country_bits) - 2
        self.src = source_name(path)
        self.chunk_bytes = chunk_bytes
        self.sorted_cells = sorted_cells
        self.progress = progress
        self.rows = 0  # rows yielded so far: the bad row of a failing block comes after them
        self.batches = 0

    def _open(self, raw):
        stream = pa.CompressedInputStream(raw, "gzip") if is_gzip_name(self.path) else raw
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

    def batches_of(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Yield ``(sorted-cell position, 10-minute index since the epoch, values[5, rows], row keys)`` per block.

        Every row is validated first; a bad one raises naming its line. A damaged ``.gz`` raises saying so.
        """
        seen = 0  # bytes of the (possibly compressed) file consumed, for the progress bar
        raw = None
        check_compression(self.path)
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
        except OSError as err:  # pyarrow's decompressor reports a damaged stream as a plain OSError
            if is_gzip_name(self.path) and not isinstance(err, (FileNotFoundError, PermissionError)):
                raise incomplete_gzip(self.path, err) from err
            raise
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
        if (ms % INTERVAL_MS).any():
            self.locate("an interval is not on a 10-minute boundary")
        k = ms // INTERVAL_MS
        if (k < 0).any() or (k >= 1 << _K_BITS).any():
            self.locate("an interval outside 1970-2129")
        if not np.isfinite(values).all() or (values < 0).any() or (values > FLOAT32_MAX).any():
            self.locate("a NaN, infinite, negative or too large value")
        at = np.clip(np.searchsorted(self.sorted_cells, squares), 0, len(self.sorted_cells) - 1)
        if (self.sorted_cells[at] != squares).any():
            self.locate("a square id that is not in the grid")
        country = cols[2].fill_null(-1).to_numpy() + 1
        if (country < 0).any() or (country > self.country_max + 1).any():
            self.locate("a country code out of range")
        keys = (k << (self.cell_bits + self.country_bits)) | (at << self.country_bits) | country
        return at, k, values, keys

    def key_fields(self, key: int) -> tuple[int, int, int | None]:
        """``(square id, interval in epoch ms, country code or None)`` of a row key."""
        country = key & ((1 << self.country_bits) - 1)
        at = (key >> self.country_bits) & ((1 << self.cell_bits) - 1)
        k = key >> (self.cell_bits + self.country_bits)
        return int(self.sorted_cells[at]), k * INTERVAL_MS, None if country == 0 else country - 1

    def lines_of(self, fields: tuple[int, int, int | None]) -> list[int]:
        """The numbers of the first two lines holding (square id, interval, country code) ``fields``."""
        found = []
        with self._open_text() as f:
            for number, line in enumerate(f, start=1):
                parts = line.split("\t", 3)
                try:
                    key = (int(parts[0]), int(parts[1]), int(parts[2]) if parts[2].strip() else None)
                except (ValueError, IndexError):
                    continue
                if key == fields:
                    found.append(number)
                    if len(found) == 2:
                        break
        return found

    def _open_text(self):
        return open_text(self.path, errors="replace")

    def locate(self, what: str):
        """Re-read the file from the failing block on, in Python, and raise naming the first bad line.

        Only runs when the fast path found a problem, so its slowness costs nothing on good files.
        """
        cells = set(self.sorted_cells.tolist())
        rows = 0
        try:
            with self._open_text() as f:
                for number, line in enumerate(f, start=1):
                    text = line.rstrip("\r\n")
                    if not text:
                        continue  # pyarrow skips empty lines too, without counting them as rows
                    rows += 1
                    if rows <= self.rows:
                        continue
                    problem = _line_problem(text, cells, self.country_max)
                    if problem:
                        shown = text if len(text) <= 100 else text[:100] + "..."
                        raise DataError(f"line {number}: {problem} (line: {shown!r})", source=self.src)
        except GZIP_ERRORS as err:
            raise incomplete_gzip(self.path, err) from err
        raise DataError(f"{what}; could not pin it to a line (try a larger chunk_bytes)", source=self.src)


def _line_problem(text: str, cells: set[int], country_max: int) -> str | None:
    """What is wrong with one raw line, or None. Mirrors the checks of the fast path."""
    if "\ufffd" in text or "\x00" in text:
        return "the line is not UTF-8 text (is the file UTF-16 or latin-1 encoded?); save it as UTF-8"
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
            return f"{name.replace('_', '-')} {value!r} is not a number{number_hint(value)}"
        if not np.isfinite(number):
            return f"{name.replace('_', '-')} is {value!r}"
        if number < 0:
            return f"{name.replace('_', '-')} is negative ({value}); activity counts cannot be negative"
        if number > FLOAT32_MAX:
            return f"{name.replace('_', '-')} {float32_overflow(number)}"
    if int(fields[1]) % INTERVAL_MS:
        return f"interval {fields[1]} (epoch ms) is not on a 10-minute boundary"
    if not 0 <= int(fields[1]) // INTERVAL_MS < 1 << _K_BITS:
        return f"interval {fields[1]} (epoch ms) is not a time between 1970 and 2129"
    if int(fields[0]) not in cells:
        return f"square id {fields[0]} is not a cell of the grid"
    if fields[2] and not 0 <= int(fields[2]) <= country_max:
        return f"country code {fields[2]} is not a phone country code (0 to {country_max})"
    return None


def repeated_lines(reader: DayFileReader, file_keys: list[np.ndarray], duplicates: str) -> int:
    """How many rows of the file repeat an earlier row's (square, interval, country code): 0, or the count
    with ``duplicates="sum"``; with ``"error"`` raise naming the first two lines of the first repeated key."""
    if not file_keys:
        return 0
    keys = np.concatenate(file_keys)
    ordered = np.sort(keys)
    same = ordered[1:] == ordered[:-1]
    count = int(same.sum())
    if count == 0 or duplicates == "sum":
        return count
    first = int(keys[np.isin(keys, ordered[1:][same])][0])  # in file order
    fields = reader.key_fields(first)
    lines = reader.lines_of(fields)
    at = " and ".join(f"line {x}" for x in lines) or "two lines"
    square, ms, country = fields
    raise DataError(
        f"{at} both hold square {square}, interval {ms} ({pd.Timestamp(ms, unit='ms', tz='UTC'):%Y-%m-%d %H:%M} "
        f"UTC), country code {'(empty)' if country is None else country} "
        f"({count:,} repeated line(s) in the file): a repeated line would be counted twice. Remove the repeats, "
        "or add them up explicitly with duplicates='sum' (--duplicates sum)",
        source=reader.src,
    )
