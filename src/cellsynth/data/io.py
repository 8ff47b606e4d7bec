"""cellsynth's own on-disk format: a directory of Parquet tables in long format.

A traffic dataset ``DIR/`` holds

- ``traffic.parquet``: ``station_id, timestamp, <channel>...`` one row per station and step; a boolean
  ``<channel>__repaired`` column per channel only where a loader repaired values;
- ``stations.parquet``: ``station_id``, optional ``lat, lon``, one column per feature.

A mobility dataset holds ``mobility.parquet`` (``user_id, timestamp, station_id[, traffic]``) and
``stations.parquet``. The step and the kind of dataset travel in the Parquet schema metadata, so a
one-step dataset round-trips too. Reads validate everything (unknown stations, missing or duplicated
rows, irregular time) and round trips are exact (float32 values, order of stations, users, channels).

Writes follow :mod:`cellsynth.outputs`: atomic (the dataset is written to a temporary sibling directory and
swapped in with renames, so a crash never leaves a half-written dataset where a good one was), and only where
cellsynth may write a dataset: a new or empty directory, or an earlier dataset, never a directory holding
other files. Every dataset directory holds the marker ``.cellsynth-output.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cellsynth.data.model import Stations, StationTraffic, UserMobility, regular_timeline
from cellsynth.errors import DataError
from cellsynth.outputs import DATASET, STATIONS_TABLE, atomic_directory, atomic_file

__all__ = [
    "atomic_directory",
    "atomic_file",
    "is_stations_table",
    "read",
    "read_stations",
    "write",
    "write_stations",
    "write_text_atomic",
]

FORMAT_VERSION = 1
_META_KEY = b"cellsynth"
_REPAIRED_SUFFIX = "__repaired"


def _write_table(frame: pd.DataFrame, path: Path, meta: dict) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[_META_KEY] = json.dumps(meta).encode()
    pq.write_table(table.replace_schema_metadata(schema_meta), path, compression="zstd")


def _read_table(path: Path) -> tuple[pd.DataFrame, dict]:
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise DataError(f"cannot read Parquet file: {err}", source=str(path)) from err
    raw = (table.schema.metadata or {}).get(_META_KEY)
    meta = json.loads(raw) if raw else {}
    return table.to_pandas(), meta


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through :func:`atomic_file`."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_stations(stations: Stations, path: str | os.PathLike) -> None:
    """Write a stations table to one Parquet file (atomically, :func:`atomic_file`). An existing file at
    ``path`` is replaced only if it is a stations table written by cellsynth (:func:`is_stations_table`)."""
    with atomic_file(path, kind=STATIONS_TABLE) as tmp:
        _write_table(stations.to_frame(), tmp, {"kind": "stations", "version": FORMAT_VERSION})


def is_stations_table(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a Parquet file that :func:`write_stations` wrote (by its cellsynth metadata)."""
    try:
        raw = (pq.read_schema(path).metadata or {}).get(_META_KEY)
        return raw is not None and json.loads(raw).get("kind") == "stations"
    except (OSError, pa.ArrowInvalid, ValueError, AttributeError):
        return False


def read_stations(path: str | os.PathLike) -> Stations:
    """Read a stations table from Parquet (as written by :func:`write_stations`) or CSV."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", source=str(path))
    if path.suffix.lower() == ".csv":
        try:
            frame = pd.read_csv(path, dtype={"station_id": str})
        except (pd.errors.ParserError, UnicodeDecodeError) as err:
            raise DataError(f"cannot parse CSV: {err}", source=str(path)) from err
    else:
        frame, _ = _read_table(path)
    return Stations.from_frame(frame, source=str(path))


def write(data: StationTraffic | UserMobility, path: str | os.PathLike) -> Path:
    """Write a dataset directory atomically; returns its path. ``path`` must be new, empty, or an earlier
    dataset (see :mod:`cellsynth.outputs`); anything else raises :class:`~cellsynth.errors.OutputError`."""
    path = Path(path)
    with atomic_directory(path, DATASET) as tmp:
        write_stations(data.stations, tmp / "stations.parquet")
        if isinstance(data, StationTraffic):
            _write_traffic(data, tmp / "traffic.parquet")
        elif isinstance(data, UserMobility):
            _write_mobility(data, tmp / "mobility.parquet")
        else:
            raise TypeError(f"cannot write {type(data).__name__}; expected StationTraffic or UserMobility")
    return path


def read(path: str | os.PathLike) -> StationTraffic | UserMobility:
    """Read a dataset directory written by :func:`write` (traffic or mobility, whichever it holds)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(
            "not a cellsynth dataset directory (expected a folder with traffic.parquet or mobility.parquet "
            "and stations.parquet; to bring your own CSV use `cellsynth data import csv`)",
            source=str(path),
        )
    stations_file = path / "stations.parquet"
    if not stations_file.exists():
        raise DataError("missing stations.parquet", source=str(path))
    stations = read_stations(stations_file)
    if (path / "traffic.parquet").exists():
        return _read_traffic(path / "traffic.parquet", stations)
    if (path / "mobility.parquet").exists():
        return _read_mobility(path / "mobility.parquet", stations)
    raise DataError("holds neither traffic.parquet nor mobility.parquet", source=str(path))


def _time_meta(data) -> dict:
    # Parquet keeps the timezone in the column type; the step must travel separately for one-step data.
    return {"version": FORMAT_VERSION, "step": data.step.isoformat()}


def _write_traffic(data: StationTraffic, path: Path) -> None:
    n, t, _ = data.values.shape
    cols: dict[str, object] = {
        "station_id": pd.Categorical(
            np.repeat(data.stations.ids.astype(str), t), categories=data.stations.ids
        ),
        "timestamp": data.timestamps[np.tile(np.arange(t), n)],
    }
    for j, name in enumerate(data.channels):
        cols[name] = data.values[:, :, j].reshape(-1)
    if data.repaired is not None:
        for j, name in enumerate(data.channels):
            cols[name + _REPAIRED_SUFFIX] = data.repaired[:, :, j].reshape(-1)
    meta = _time_meta(data) | {"kind": "station_traffic", "channels": list(data.channels)}
    _write_table(pd.DataFrame(cols), path, meta)


def _grid_positions(frame: pd.DataFrame, key: str, keys: list[str], step, source):
    """Map long rows onto a dense ``[len(keys), T]`` grid: returns ``(start, step, T, row, col)``.

    Shared by traffic (key = station) and mobility (key = user). Checks that timestamps form a regular grid
    and that every key has exactly one row per timestamp, naming the first missing or duplicated row.
    """
    if frame.empty:
        raise DataError("no rows: the table is empty", source=source)
    times = pd.DatetimeIndex(frame["timestamp"])
    uniq_times = times.unique().sort_values()
    start, found_step, n_steps = regular_timeline(uniq_times, source=source)
    step = found_step if found_step is not None else step
    if step is None:
        raise DataError("a single timestamp: cannot infer the step; pass step=...", source=source)
    position = {k: i for i, k in enumerate(keys)}
    row = frame[key].astype(str).map(position).to_numpy()
    col = ((times - start) // step).to_numpy().astype(np.int64)
    n = len(keys)
    counts = np.bincount(row * n_steps + col, minlength=n * n_steps).reshape(n, n_steps)
    if (counts != 1).any():
        bad = int((counts != 1).sum())
        i, t = np.argwhere(counts != 1)[0]
        what = f"appears {counts[i, t]} times" if counts[i, t] > 1 else "has no row"
        raise DataError(
            f"{bad} missing or duplicated ({key}, timestamp) cell(s); first: {key} {keys[i]!r} {what} at "
            f"{uniq_times[t]}. Every {key.removesuffix('_id')} needs exactly one row per timestamp.",
            source=source,
        )
    return start, step, n_steps, row, col


def _numeric_column(frame: pd.DataFrame, name: str, source) -> np.ndarray:
    raw = frame[name].to_numpy()
    column = pd.to_numeric(frame[name], errors="coerce").to_numpy(np.float64)
    unparsable = np.isnan(column) & pd.notna(raw)
    if unparsable.any():
        k = int(np.argmax(unparsable))
        raise DataError(f"column {name!r} row {k}: {raw[k]!r} is not a number", source=source)
    return column


def _require_columns(frame: pd.DataFrame, columns, source) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"missing column(s) {missing} (columns: {list(frame.columns)})", source=source)


def long_to_traffic(
    frame: pd.DataFrame,
    stations: Stations,
    channels: list[str],
    *,
    step: pd.Timedelta | None = None,
    source: str | None = None,
    repaired_columns: list[str] | None = None,
) -> StationTraffic:
    """Pivot a long table (``station_id, timestamp, <channels>``) onto a dense ``[N, T, C]`` grid.

    Stations follow ``stations``' order. Every station must have exactly one row per timestamp: missing or
    duplicated rows and ids that are not in ``stations`` raise :class:`DataError` naming them.
    ``repaired_columns`` (one boolean column per channel) become the ``repaired`` mask.
    """
    _require_columns(frame, ["station_id", "timestamp", *channels, *(repaired_columns or [])], source)
    stations.index_of(frame["station_id"].astype(str).unique(), source=source)  # names unknown ids
    start, step, n_steps, row, col = _grid_positions(frame, "station_id", list(stations.ids), step, source)
    values = np.empty((len(stations), n_steps, len(channels)), dtype=np.float32)
    for j, name in enumerate(channels):
        values[row, col, j] = _numeric_column(frame, name, source)
    repaired = None
    if repaired_columns:
        repaired = np.zeros(values.shape, dtype=bool)
        for j, name in enumerate(repaired_columns):
            repaired[row, col, j] = frame[name].to_numpy(bool)
    return StationTraffic(values, start, step, tuple(channels), stations, repaired=repaired, source=source)


def _read_traffic(path: Path, stations: Stations) -> StationTraffic:
    frame, meta = _read_table(path)
    if meta.get("kind") != "station_traffic":
        raise DataError("not a cellsynth traffic table (no cellsynth metadata)", source=str(path))
    channels = meta["channels"]
    rep_cols = [c + _REPAIRED_SUFFIX for c in channels]
    data = long_to_traffic(
        frame,
        stations,
        channels,
        step=pd.Timedelta(meta["step"]),
        source=str(path),
        repaired_columns=rep_cols if rep_cols[0] in frame.columns else None,
    )
    return data


def _write_mobility(data: UserMobility, path: Path) -> None:
    u, t = data.locations.shape
    cols: dict[str, object] = {
        "user_id": pd.Categorical(
            np.repeat(np.array(data.user_ids, dtype=object), t), categories=data.user_ids
        ),
        "timestamp": data.timestamps[np.tile(np.arange(t), u)],
        "station_id": pd.Categorical.from_codes(data.locations.reshape(-1), categories=data.stations.ids),
    }
    if data.traffic is not None:
        cols["traffic"] = data.traffic.reshape(-1)
    meta = _time_meta(data) | {"kind": "user_mobility", "users": list(data.user_ids)}
    _write_table(pd.DataFrame(cols), path, meta)


def long_to_mobility(
    frame: pd.DataFrame,
    stations: Stations,
    *,
    step: pd.Timedelta | None = None,
    users: list[str] | None = None,
    source: str | None = None,
) -> UserMobility:
    """Pivot ``user_id, timestamp, station_id[, traffic]`` rows onto ``[U, T]`` arrays (see
    :func:`long_to_traffic` for the checks). Users keep ``users``' order, else order of first appearance."""
    _require_columns(frame, ["user_id", "timestamp", "station_id"], source)
    users = list(users) if users is not None else list(pd.unique(frame["user_id"].astype(str)))
    start, step, n_steps, row, col = _grid_positions(frame, "user_id", users, step, source)
    locations = np.empty((len(users), n_steps), dtype=np.int64)
    locations[row, col] = stations.index_of(frame["station_id"].astype(str).to_numpy(), source=source)
    traffic = None
    if "traffic" in frame.columns:
        traffic = np.empty((len(users), n_steps), dtype=np.float32)
        traffic[row, col] = _numeric_column(frame, "traffic", source)
    return UserMobility(locations, start, step, stations, traffic, tuple(users), source)


def _read_mobility(path: Path, stations: Stations) -> UserMobility:
    frame, meta = _read_table(path)
    if meta.get("kind") != "user_mobility":
        raise DataError("not a cellsynth mobility table (no cellsynth metadata)", source=str(path))
    data = long_to_mobility(
        frame, stations, step=pd.Timedelta(meta["step"]), users=meta.get("users"), source=str(path)
    )
    return data
