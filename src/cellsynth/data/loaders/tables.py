"""Generic long tables, CSV or Parquet: the format a user brings from their own network.

Traffic: ``station_id, timestamp, <channel>...`` (one row per station and time step; every other column is a
channel unless ``channels`` says which). Mobility: ``user_id, timestamp, station_id[, traffic]``. Stations (optional): a
CSV or Parquet with ``station_id``, optional ``lat, lon`` and numeric feature columns (see
:func:`cellsynth.data.read_stations`).

Timestamps are ISO 8601 strings with an offset (``2013-11-04T00:00:00+01:00``), or without one together with
``tz`` (local time there); Parquet datetime columns work too. Nothing is repaired unless asked: a duplicated
row, an irregular time step, an unknown station, a non-numeric, empty, NaN, negative or float32-overflowing
value raises :class:`DataError` naming the file and the row (rows count from 0 after the header; for CSV the
line is given too) or the station and timestamp; so does a missing row, unless ``fill=`` says how to fill it
(marked in ``repaired``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cellsynth.data.io import long_to_mobility, long_to_traffic, read_parquet
from cellsynth.data.loaders._common import (
    FLOAT32_MAX,
    check_tz,
    existing_file,
    float32_overflow,
    number_hint,
    parse_timestamps,
    read_csv,
    row_label,
    source_name,
)
from cellsynth.data.model import Stations, StationTraffic, UserMobility
from cellsynth.data.repair import check_fill
from cellsynth.errors import DataError

__all__ = ["load_mobility_table", "load_traffic_table", "read_stations_table", "read_table"]

_REPAIRED_SUFFIX = "__repaired"  # the boolean repair-mask columns of cellsynth's own long format
_PARQUET = (".parquet", ".pq")


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in _PARQUET


def read_table(
    path: str | os.PathLike,
    *,
    string_columns: Sequence[str] = (),
    encoding: str = "utf-8",
    encoding_option: bool = True,
) -> pd.DataFrame:
    """A CSV (``.csv``, ``.csv.gz``; ``.tsv`` is tab-separated) or Parquet file as a DataFrame.

    ``string_columns`` are read as text when present (ids such as ``007`` keep their leading zeros);
    ``encoding`` is the text encoding of a CSV (``encoding_option``: the caller lets the user set it, so a
    decoding error may suggest it).
    """
    path = existing_file(path)
    src = source_name(path)
    if _is_parquet(path):
        frame = read_parquet(path, src).to_pandas()
        for c in string_columns:
            if c in frame.columns:
                frame[c] = frame[c].astype(str)
        return frame
    sep = "\t" if path.name.lower().endswith((".tsv", ".tsv.gz")) else ","
    return read_csv(
        path, sep=sep, encoding=encoding, string_columns=string_columns, encoding_option=encoding_option
    )


def _require(frame: pd.DataFrame, columns: Sequence[str], src: str, what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"missing column(s) {missing}; a {what} table needs {list(columns)} (columns found: {list(frame.columns)})",
            source=src,
        )


def _numbers(frame: pd.DataFrame, column: str, src: str, csv: bool, hint: str = "") -> np.ndarray:
    """``column`` as float64 (NaN where a cell is empty); text that is not a number raises naming its row."""
    raw = frame[column]
    if pd.api.types.is_numeric_dtype(raw):
        return raw.to_numpy(np.float64)
    values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    unparsable = np.isnan(values) & pd.notna(raw).to_numpy()
    if unparsable.any():
        k = int(unparsable.argmax())
        raise DataError(
            f"{row_label(k, csv)}, column {column!r}: {raw.iloc[k]!r} is not a number"
            f"{number_hint(raw.iloc[k])}{hint}",
            source=src,
        )
    return values


def _check_float32(values: np.ndarray, column: str, src: str, csv: bool) -> None:
    too_large = np.abs(values) > FLOAT32_MAX  # finite in float64, infinite once stored as float32
    if too_large.any():
        k = int(too_large.argmax())
        raise DataError(f"{row_label(k, csv)}, column {column!r}: {float32_overflow(values[k])}", source=src)


def _check_values(frame: pd.DataFrame, column: str, src: str, csv: bool, hint: str = "") -> None:
    """Every value of ``column`` a finite number >= 0 that fits float32, else raise naming the first bad row."""
    values = _numbers(frame, column, src, csv, hint)
    bad = ~np.isfinite(values)
    if bad.any():
        k = int(bad.argmax())
        raise DataError(
            f"{row_label(k, csv)}, column {column!r}: the value is empty, NaN or infinite", source=src
        )
    _check_float32(values, column, src, csv)
    negative = values < 0
    if negative.any():
        k = int(negative.argmax())
        raise DataError(
            f"{row_label(k, csv)}, column {column!r}: {values[k]} is negative; traffic cannot be negative",
            source=src,
        )


def _as_step(step, src: str) -> pd.Timedelta | None:
    if step is None:
        return None
    try:
        value = pd.Timedelta(step)
    except ValueError as err:
        raise DataError(f"step {step!r} is not a duration (e.g. '1h', '10min')", source=src) from err
    if value <= pd.Timedelta(0):
        raise DataError(f"step must be a positive duration, got {step!r}", source=src)
    return value


def read_stations_table(path: str | os.PathLike, *, encoding: str = "utf-8") -> Stations:
    """A stations CSV or Parquet: ``station_id``, optional ``lat, lon``, numeric feature columns.

    Errors name the file and the row: a table without rows, text that is not a number, a feature too large
    for float32 (NaN and out-of-range coordinates are named by :class:`Stations`, by station id).
    """
    src = source_name(path)
    frame = read_table(path, string_columns=("station_id",), encoding=encoding)
    csv = not _is_parquet(Path(path))
    if frame.empty:
        raise DataError(
            f"no rows: the stations table has a header ({', '.join(map(str, frame.columns))}) but no station",
            source=src,
        )
    for column in frame.columns:
        if column == "station_id":
            continue
        values = _numbers(frame, column, src, csv)
        if column not in ("lat", "lon"):
            _check_float32(values, column, src, csv)
        frame[column] = values
    return Stations.from_frame(frame, source=src)


def _stations(stations, ids: pd.Series, src: str, csv: bool, encoding: str) -> Stations:
    """The stations table (path, Stations, or None: the table's own ids) with every id of the table in it."""
    if stations is None:
        # No table given: the stations are the ids seen, in order of first appearance, without coordinates.
        return Stations(ids=pd.unique(ids).astype(str), source=src)
    table = stations if isinstance(stations, Stations) else read_stations_table(stations, encoding=encoding)
    known = set(table.ids.tolist())
    unknown = ~ids.isin(known).to_numpy()
    if unknown.any():
        k = int(unknown.argmax())
        names = pd.unique(ids[unknown])
        raise DataError(
            f"{row_label(k, csv)}: station_id {ids.iloc[k]!r} is not in the stations table"
            + (f" {table.source}" if table.source else "")
            + f" ({len(names)} unknown id(s): {', '.join(map(str, names[:5]))}"
            + (" ..." if len(names) > 5 else "")
            + ")",
            source=src,
        )
    return table


def load_traffic_table(
    path: str | os.PathLike,
    stations: str | os.PathLike | Stations | None = None,
    *,
    channels: Sequence[str] | None = None,
    tz: str | None = None,
    step: str | pd.Timedelta | None = None,
    fill: str = "none",
    encoding: str = "utf-8",
) -> StationTraffic:
    """Read a long traffic table (CSV or Parquet) as :class:`StationTraffic`.

    Parameters
    ----------
    path:
        ``station_id, timestamp, <channel>...``: one row per station and time step.
    stations:
        A stations CSV/Parquet (``station_id``, optional ``lat, lon``, numeric features) or :class:`Stations`;
        the traffic keeps its order. None: the table's station ids in order of appearance, no coordinates.
    channels:
        The channel columns, in this order. Default: every column other than ``station_id`` and ``timestamp``
        (and ``<channel>__repaired`` repair masks, which are honoured when every channel has one).
    tz:
        Timezone of naive timestamps (required then); for timestamps with offsets, the zone to convert to.
    step:
        The time step, needed when the table has a single timestamp. When the timestamps have gaps, the step
        of the grid they lie on (default: the most common interval between consecutive timestamps).
    fill:
        What to do with missing rows (a station without a row at a timestamp of the grid): ``"none"``
        (default) raises naming the first; ``"interpolate"`` fills linearly in time between the station's
        nearest rows before and after, per channel, holding the nearest value at the edges; ``"zero"`` fills
        zeros (:mod:`cellsynth.data.repair`). Filled values are marked in ``repaired``, and a
        :class:`DataRepairWarning` gives their count. A station without any row is an error either way.
    encoding:
        Text encoding of CSV files (this table and the stations CSV), e.g. ``"utf-16"``, ``"latin-1"``.
    """
    src = source_name(path)
    check_tz(tz, source=src)
    check_fill(fill, source=src)
    frame = read_table(path, string_columns=("station_id",), encoding=encoding)
    csv = not _is_parquet(Path(path))
    _require(frame, ["station_id", "timestamp"], src, "traffic")
    if channels is None:
        channels = [
            c
            for c in frame.columns
            if c not in ("station_id", "timestamp") and not str(c).endswith(_REPAIRED_SUFFIX)
        ]
        hint = (
            "; every column other than station_id and timestamp is a channel: pass channels=[...] (--channels) to "
            "choose"
        )
        if not channels:
            raise DataError(
                "no channel columns: expected station_id, timestamp and one column per channel", source=src
            )
    else:
        channels = list(channels)
        hint = ""
        if not channels or len(set(channels)) != len(channels):
            raise DataError(f"channels must be distinct column names, got {channels}", source=src)
        _require(frame, ["station_id", "timestamp", *channels], src, "traffic")
    if frame.empty:
        raise DataError("no rows: the table has a header but no data", source=src)
    if frame["station_id"].isna().any():
        k = int(frame["station_id"].isna().to_numpy().argmax())
        raise DataError(f"{row_label(k, csv)}: station_id is empty", source=src)
    for c in channels:
        _check_values(frame, c, src, csv, hint)
    table = _stations(stations, frame["station_id"].astype(str), src, csv, encoding)
    frame = frame.assign(
        timestamp=parse_timestamps(frame["timestamp"], tz, column="timestamp", source=src, csv=csv)
    )
    repaired = [c + _REPAIRED_SUFFIX for c in channels]
    if not all(c in frame.columns for c in repaired):
        repaired = None
    return long_to_traffic(
        frame,
        table,
        list(channels),
        step=_as_step(step, src),
        source=src,
        repaired_columns=repaired,
        fill=fill,
        missing_hint=(
            "; fill the gaps explicitly with fill='interpolate' or fill='zero' (--fill interpolate|zero), "
            "marked as repaired"
        ),
    )


def load_mobility_table(
    path: str | os.PathLike,
    stations: str | os.PathLike | Stations | None = None,
    *,
    tz: str | None = None,
    step: str | pd.Timedelta | None = None,
    encoding: str = "utf-8",
) -> UserMobility:
    """Read a long user-mobility table ``user_id, timestamp, station_id[, traffic]`` as :class:`UserMobility`.

    Users keep their order of first appearance; every user needs one row per timestamp. ``stations``,
    ``tz``, ``step`` and ``encoding`` are as for :func:`load_traffic_table`. Other columns raise :class:`DataError` (nothing
    is dropped silently).
    """
    src = source_name(path)
    check_tz(tz, source=src)
    frame = read_table(path, string_columns=("user_id", "station_id"), encoding=encoding)
    csv = not _is_parquet(Path(path))
    _require(frame, ["user_id", "timestamp", "station_id"], src, "mobility")
    extra = [c for c in frame.columns if c not in ("user_id", "timestamp", "station_id", "traffic")]
    if extra:
        raise DataError(
            f"unexpected column(s) {extra}; a mobility table has user_id, timestamp, station_id and optionally "
            "traffic",
            source=src,
        )
    if frame.empty:
        raise DataError("no rows: the table has a header but no data", source=src)
    for c in ("user_id", "station_id"):
        if frame[c].isna().any():
            k = int(frame[c].isna().to_numpy().argmax())
            raise DataError(f"{row_label(k, csv)}: {c} is empty", source=src)
    if "traffic" in frame.columns:
        _check_values(frame, "traffic", src, csv)
    table = _stations(stations, frame["station_id"].astype(str), src, csv, encoding)
    frame = frame.assign(
        timestamp=parse_timestamps(frame["timestamp"], tz, column="timestamp", source=src, csv=csv)
    )
    return long_to_mobility(frame, table, step=_as_step(step, src), source=src)
