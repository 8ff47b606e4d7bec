"""Helpers shared by the loaders: timestamps, repair warnings, reading small text files."""

from __future__ import annotations

import os
import re
from pathlib import Path

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
