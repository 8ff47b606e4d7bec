"""Helpers shared by the loaders: timestamps, reading (compressed) text files, messages about bad values."""

from __future__ import annotations

import codecs
import csv
import gzip
import os
import re
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cellsynth.errors import DataError

# A placeholder Monday for data whose real dates are not documented (STK-Diff Beijing, GeoLife-MoveSim).
# Obviously not the true date: it only gives the time axis a weekday and a timezone. Not a public holiday.
PLACEHOLDER_MONDAY = "2026-01-05 00:00"


def source_name(path: str | os.PathLike) -> str:
    """How a file is named in error messages: the path as the user gave it."""
    return str(path)


def existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", source=source_name(path))
    if not path.is_file():
        raise DataError("is not a file", source=source_name(path))
    return path


def as_start(start, tz: str | None, *, source: str | None = None) -> pd.Timestamp:
    """``start`` as a timezone-aware timestamp: a naive value is read as local time in ``tz``."""
    try:
        ts = pd.Timestamp(start)
    except (ValueError, TypeError) as err:
        raise DataError(f"start {start!r} is not a timestamp: {err}", source=source) from err
    if ts.tzinfo is not None:
        return ts.tz_convert(tz) if tz else ts
    if not tz:
        raise DataError(f"start {ts} has no timezone; pass tz= (e.g. 'Europe/Rome')", source=source)
    try:
        return ts.tz_localize(tz)
    except Exception as err:  # unknown zone names, or a local time that DST makes ambiguous/nonexistent
        raise DataError(f"cannot place start {ts} in timezone {tz!r}: {err}", source=source) from err


def check_tz(tz: str | None, *, source: str | None = None) -> str | None:
    """Fail early, with the loader's source, on a misspelt timezone name."""
    if tz is None:
        return None
    try:
        pd.Timestamp("2000-01-01").tz_localize(tz)
    except Exception as err:
        raise DataError(
            f"unknown timezone {tz!r} (use an IANA name such as 'Europe/Rome')", source=source
        ) from err
    return tz


# An ISO 8601 offset (Z, +01, +0100, +01:00) right after a time of day: the time is required so that the
# "-04" of a bare date 2013-11-04 is not taken for an offset.
_OFFSET = re.compile(r"\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")


def row_label(k: int, csv: bool) -> str:
    """How data row ``k`` (from 0) is named in messages; a CSV's header is line 1, so row k is line k + 2."""
    return f"row {k} (line {k + 2})" if csv else f"row {k}"


def parse_timestamps(
    values: pd.Series, tz: str | None, *, column: str, source: str | None, csv: bool = False
) -> pd.DatetimeIndex:
    """Parse a timestamp column into a timezone-aware index.

    Accepted: ISO 8601 strings that all carry an offset (converted to ``tz`` when given; otherwise kept in
    their offset if it is the same everywhere, else UTC), naive ISO strings together with ``tz`` (read as local
    time there), or an already parsed datetime column (Parquet). Rows are counted from 0 after the header.
    """
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        index = pd.DatetimeIndex(values)
        return index.tz_convert(tz) if tz else index
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return _localize(pd.DatetimeIndex(values), tz, column=column, source=source)

    raw = values.astype(object).to_numpy()
    empty = pd.isna(raw) | (values.astype(str).str.strip() == "").to_numpy()
    if empty.any():
        k = int(empty.argmax())
        raise DataError(f"{row_label(k, csv)}, column {column!r}: the timestamp is empty", source=source)
    text = values.astype(str).str.strip()
    # utc=True parses both kinds at once, so that garbage is reported as such before any mixing of kinds.
    bad = pd.isna(pd.to_datetime(text, format="ISO8601", errors="coerce", utc=True)).to_numpy()
    if bad.any():
        k = int(bad.argmax())
        raise DataError(
            f"{row_label(k, csv)}, column {column!r}: {text.iloc[k]!r} is not an ISO 8601 timestamp "
            "(e.g. 2013-11-04T00:00:00+01:00)",
            source=source,
        )
    has_offset = text.str.contains(_OFFSET).to_numpy()
    if has_offset.any() and not has_offset.all():
        k = int((~has_offset).argmax()) if has_offset[0] else int(has_offset.argmax())
        raise DataError(
            f"{row_label(k, csv)}, column {column!r}: {text.iloc[k]!r} mixes with timestamps of the other kind; "
            "write every timestamp with an offset (e.g. 2013-11-04T00:00:00+01:00), or none and pass tz (--tz)",
            source=source,
        )
    parsed = pd.to_datetime(text, format="ISO8601", utc=bool(has_offset[0]))
    index = pd.DatetimeIndex(parsed)
    if not has_offset[0]:
        return _localize(index, tz, column=column, source=source)
    if tz:
        return index.tz_convert(tz)
    try:
        # One offset everywhere: keep it (as a fixed-offset zone), so that local hours stay local hours.
        return index.tz_convert(pd.DatetimeIndex(pd.to_datetime(text, format="ISO8601")).tz)
    except ValueError:
        pass
    return index  # several offsets (a DST change) and no zone name given: UTC is the only honest choice


def _localize(
    index: pd.DatetimeIndex, tz: str | None, *, column: str, source: str | None
) -> pd.DatetimeIndex:
    if not tz:
        raise DataError(
            f"column {column!r}: timestamps have no timezone offset (first: {index[0]}); pass the timezone they "
            "are in (tz='Europe/Rome', or --tz Europe/Rome on the command line), or write them with an offset "
            "(2013-11-04T00:00:00+01:00)",
            source=source,
        )
    try:
        return index.tz_localize(tz, ambiguous="raise", nonexistent="raise")
    except Exception as err:  # a local time that a DST change makes ambiguous or nonexistent, or a bad zone
        raise DataError(
            f"column {column!r}: cannot read the timestamps as local time in {tz!r}: {err}. Around a DST change "
            "local times are ambiguous: write the timestamps with their offset instead",
            source=source,
        ) from err


# -- Reading files: compression, text encoding, numbers ----------------------------------------------------

GZIP_SIGNATURE = b"\x1f\x8b"
# What decompressing a damaged gzip stream raises: Python's gzip/zlib, and pyarrow (a plain OSError).
GZIP_ERRORS = (EOFError, gzip.BadGzipFile, zlib.error)
FLOAT32_MAX = float(np.finfo(np.float32).max)
_DECIMAL_COMMA = re.compile(r"[+-]?\d+,\d+")


def is_gzip_name(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(".gz")


def incomplete_gzip(path: str | os.PathLike, detail: object) -> DataError:
    """The error for a ``.gz`` file that does not decompress to its end."""
    return DataError(
        f"is not a complete gzip file ({detail}): a truncated or damaged download? Download it again, or "
        "decompress what there is (gunzip) and load the text file, which names the bad line",
        source=source_name(path),
    )


def check_compression(path: Path) -> None:
    """A file's name and its first bytes must agree on gzip compression (a two-byte read).

    A text file named ``.gz`` would otherwise fail deep in a decompressor, and a gzip file named ``.csv`` would
    be parsed as garbage.
    """
    with open(path, "rb") as f:
        head = f.read(len(GZIP_SIGNATURE))
    if is_gzip_name(path):
        if not head:
            raise DataError("the file is empty", source=source_name(path))
        if head != GZIP_SIGNATURE:
            raise DataError(
                "is not a complete gzip file: it does not start with the gzip signature 1f 8b (a text file "
                "named .gz?); if it is text, drop the .gz from its name, else download it again",
                source=source_name(path),
            )
    elif head == GZIP_SIGNATURE:
        raise DataError(
            f"is gzip-compressed but its name does not end in .gz; rename it to {path.name}.gz",
            source=source_name(path),
        )


def open_text(path: Path, encoding: str = "utf-8", errors: str = "strict"):
    """``path`` opened as text, decompressing ``.gz`` (after :func:`check_compression`)."""
    check_compression(path)
    if is_gzip_name(path):
        return gzip.open(path, "rt", encoding=encoding, errors=errors, newline="")
    return open(path, encoding=encoding, errors=errors, newline="")


def read_text(path: Path, *, encoding: str = "utf-8") -> str:
    """The whole text of a (possibly gzip-compressed) file; a damaged gzip or a wrong encoding is a
    :class:`DataError` naming the file, the line and the fix."""
    try:
        with open_text(path, encoding) as f:
            return f.read()
    except UnicodeDecodeError as err:
        raise encoding_error(path, encoding, err) from err
    except GZIP_ERRORS as err:
        raise incomplete_gzip(path, err) from err


def check_encoding(encoding: str, *, source: str | None = None) -> str:
    try:
        codecs.lookup(encoding)
    except LookupError as err:
        raise DataError(
            f"unknown text encoding {encoding!r} (use e.g. 'utf-8', 'utf-16', 'latin-1', 'cp1252')",
            source=source,
        ) from err
    return encoding


def _first_undecodable(path: Path) -> tuple[int, int, bytes] | None:
    """``(line, byte offset, bytes)`` of the first bytes of ``path`` (decompressed) that are not UTF-8."""
    opener = gzip.open if is_gzip_name(path) else open
    offset, line, carry = 0, 1, b""
    with opener(path, "rb") as f:
        while True:
            block = f.read(1 << 20)
            data = carry + block
            if not data:
                return None
            try:
                data.decode("utf-8")
                good = len(data)
            except UnicodeDecodeError as err:
                if block and err.reason == "unexpected end of data":
                    good = err.start  # a character split between two blocks: decode it with the next one
                else:
                    return (
                        line + data.count(b"\n", 0, err.start),
                        offset + err.start,
                        data[err.start : err.end],
                    )
            line += data.count(b"\n", 0, good)
            offset += good
            carry = data[good:]
            if not block:
                return None


def encoding_error(path: Path, encoding: str, err: UnicodeDecodeError, *, option: bool = False) -> DataError:
    """A decoding failure as an error naming the line, the encoding the file seems to be in, and the fix.

    ``option``: the loader takes ``encoding=`` (and its command ``--encoding``), so the fix may name it.
    """
    src = source_name(path)
    if codecs.lookup(encoding).name != "utf-8":
        return DataError(
            f"cannot decode the text as {encoding}: {err}; check the file's encoding", source=src
        )
    opener = gzip.open if is_gzip_name(path) else open
    with opener(path, "rb") as f:
        head = f.read(4096)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head:
        guess, looks = "utf-16", "UTF-16 (as Excel's 'Unicode text' saves)"
    else:
        guess, looks = "latin-1", "latin-1 / Windows-1252 (an 8-bit encoding)"
    where = _first_undecodable(path)
    at = f"line {where[0]}: " if where else ""
    byte = f"byte {where[2][:1].hex()} at offset {where[1]}" if where else str(err)
    fix = "save it as UTF-8"
    if option:
        fix += f", or give its encoding (encoding='{guess}'; --encoding {guess} on the command line)"
    return DataError(f"{at}the file is not UTF-8 text ({byte}); it looks {looks}: {fix}", source=src)


def number_hint(value: object) -> str:
    """A hint for a value that is not a number: a decimal comma is the usual cause."""
    text = str(value).strip()
    if _DECIMAL_COMMA.fullmatch(text):
        return f" (a decimal comma? write {text.replace(',', '.')} with a dot)"
    return ""


def float32_overflow(value: float) -> str:
    """What to say about a finite value too large for float32, cellsynth's storage type."""
    return (
        f"{value:g} is too large: it overflows float32 (largest {FLOAT32_MAX:.4g}), in which cellsynth stores "
        "traffic and features; rescale the column (e.g. bytes to MB)"
    )


def read_csv(
    path: Path,
    *,
    sep: str = ",",
    encoding: str = "utf-8",
    string_columns: Sequence[str] = (),
    all_text: bool = False,
    encoding_option: bool = False,
) -> pd.DataFrame:
    """A CSV file (``.gz`` decompressed) as a DataFrame, every failure a one-line :class:`DataError`.

    ``string_columns`` (when present) are read as text, so ids such as ``007`` keep their zeros; ``all_text``
    reads every column as text with empty fields as ``""``. A line with more fields than the header (a decimal
    comma, an unquoted comma) names the line and the column; a wrong encoding, the line and the fix
    (``encoding_option``: the caller takes ``encoding=``); a damaged ``.gz`` says so.
    """
    src = source_name(path)
    check_encoding(encoding, source=src)
    check_compression(path)
    options = {"sep": sep, "encoding": encoding}
    try:
        with warnings.catch_warnings():
            # A first data line longer than the header would silently become an index (or be cut with
            # index_col=False, which only warns): make that an error too.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            if all_text:
                return pd.read_csv(path, dtype=str, keep_default_na=False, index_col=False, **options)
            header = pd.read_csv(path, nrows=0, **options).columns
            dtype = {c: str for c in string_columns if c in header}
            return pd.read_csv(path, dtype=dtype, index_col=False, **options)
    except pd.errors.EmptyDataError as err:
        raise DataError("the file is empty (not even a header line)", source=src) from err
    except UnicodeDecodeError as err:
        raise encoding_error(path, encoding, err, option=encoding_option) from err
    except GZIP_ERRORS as err:
        raise incomplete_gzip(path, err) from err
    except (pd.errors.ParserWarning, pd.errors.ParserError) as err:
        raise _field_count_error(path, sep, encoding, err) from err
    except ValueError as err:
        raise DataError(f"cannot parse the table: {err}", source=src) from err


def _field_count_error(path: Path, sep: str, encoding: str, err: Exception) -> DataError:
    """Find the first line with more fields than the header (Python's csv module, only on this error path)."""
    src = source_name(path)
    with open_text(path, encoding, errors="replace") as f:
        reader = csv.reader(f, delimiter=sep)
        header = next(reader, [])
        for fields in reader:
            if len(fields) <= len(header):
                continue  # a short line has empty values, which the loaders report with their column
            message = (
                f"line {reader.line_num} has {len(fields)} fields but the header has {len(header)} "
                f"({', '.join(header)})"
            )
            for j in range(min(len(header), len(fields) - 1)):
                if re.fullmatch(r"[+-]?\d+", fields[j]) and re.fullmatch(r"\d+", fields[j + 1]):
                    number = f"{fields[j]},{fields[j + 1]}"
                    return DataError(
                        f"{message}: column {header[j]!r} reads {number!r}, a decimal comma? write numbers with "
                        f"a dot ({number.replace(',', '.')}), or quote the field",
                        source=src,
                    )
            extra = fields[len(header)]
            return DataError(
                f"{message}: the extra field {extra[:40]!r} follows column {header[-1]!r}; remove it, or quote "
                "a field that contains the separator",
                source=src,
            )
    return DataError(f"cannot parse the table: {err}", source=src)
