"""cellsynth's own on-disk format: a directory of Parquet tables in long format.

A traffic dataset ``DIR/`` holds

- ``traffic.parquet``: ``station_id, timestamp, <channel>...`` one row per station and step; a boolean
  ``<channel>__repaired`` column per channel only where a loader repaired values;
- ``stations.parquet``: ``station_id``, optional ``lat, lon``, one column per feature.

A mobility dataset holds ``mobility.parquet`` (``user_id, timestamp, station_id[, traffic]``) and
``stations.parquet``. The step and the kind of dataset travel in the Parquet schema metadata, so a
one-step dataset round-trips too. Reads validate everything (unknown stations, missing or duplicated
rows, irregular time) and round trips are exact (float32 values, order of stations, users, channels).

**Parts.** A dataset generated in chunks (``cellsynth generate --batch-stations``, :mod:`cellsynth.generation`)
stores each table as a directory of the same name holding ``part-00000.parquet``, ``part-00001.parquet``, ...
(:func:`write_part`): the stations and traffic of chunk ``i`` in part ``i`` of ``stations.parquet/`` and
``traffic.parquet/``; a mobility dataset's users in the parts of ``mobility.parquet/`` beside one
``stations.parquet`` file. Every part names its number and the number of parts in its metadata, so a missing
part is an error, not a smaller dataset. Tables stay in order: part by part, rows in each part's order.
:func:`read` reads either layout. It reads parted traffic one part at a time into arrays allocated once:
besides the dataset's own arrays (``4 N T C`` bytes of values) it holds one part's long rows, not the whole
long table. Parted mobility is read part by part and then joined (its ``[U, T]`` arrays twice, briefly).

Writes follow :mod:`cellsynth.outputs`: atomic (the dataset is written to a temporary sibling directory and
swapped in with renames, so a crash never leaves a half-written dataset where a good one was), and only where
cellsynth may write a dataset: a new or empty directory, or an earlier dataset, never a directory holding
other files. Every dataset directory holds the marker ``.cellsynth-output.json``.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from cellsynth.data.model import Stations, StationTraffic, UserMobility, regular_timeline
from cellsynth.data.repair import check_fill, fill_gaps
from cellsynth.errors import DataError, DataRepairWarning, one_line

# is_stations_table: re-exported, part of this module's API (it lives with the rule that needs it).
from cellsynth.outputs import (
    DATASET,
    PARQUET_METADATA_KEY,
    STATIONS_TABLE,
    atomic_directory,
    atomic_file,
    is_stations_table,
)

__all__ = [
    "atomic_directory",
    "atomic_file",
    "is_stations_table",
    "read",
    "read_stations",
    "write",
    "write_part",
    "write_stations",
    "write_text_atomic",
]

FORMAT_VERSION = 1
_META_KEY = PARQUET_METADATA_KEY
_REPAIRED_SUFFIX = "__repaired"
_PART = re.compile(r"^part-(?P<index>\d{5})\.parquet$")


def _write_table(frame: pd.DataFrame, path: Path, meta: dict) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    schema_meta = dict(table.schema.metadata or {})
    schema_meta[_META_KEY] = json.dumps(meta).encode()
    pq.write_table(table.replace_schema_metadata(schema_meta), path, compression="zstd")


def read_parquet(path: str | os.PathLike, source: str | None = None) -> pa.Table:
    """The table of a Parquet file; a file that is not one (truncated, damaged, another format) is a
    :class:`DataError` naming ``source`` (default: the path), in one line (pyarrow's messages span several)."""
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as err:
        raise DataError(f"cannot read Parquet file: {one_line(err)}", source=source or str(path)) from err


def _read_table(path: Path) -> tuple[pd.DataFrame, dict]:
    table = read_parquet(path)
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


def read_stations(path: str | os.PathLike) -> Stations:
    """Read a stations table from Parquet (as written by :func:`write_stations`) or CSV (``.csv``, ``.csv.gz``,
    ``.tsv``; see :func:`cellsynth.data.loaders.tables.read_stations_table`)."""
    path = Path(path)
    if not path.exists():
        raise DataError("file not found", source=str(path))
    if path.name.lower().endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
        # Imported here: the loaders import this module.
        from cellsynth.data.loaders.tables import read_stations_table

        return read_stations_table(path)
    frames = [_read_table(part)[0] for part in _part_files(path)]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if frame.empty:
        raise DataError("no rows: the stations table has columns but no station", source=str(path))
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


# -- parts -----------------------------------------------------------------------------------------------------
def part_file(table: str | os.PathLike, index: int) -> Path:
    """The path of part ``index`` of the parted table ``table`` (a directory such as ``traffic.parquet/``)."""
    return Path(table) / f"part-{index:05d}.parquet"


def write_part(
    data: StationTraffic | UserMobility, directory: str | os.PathLike, *, part: int, parts: int
) -> None:
    """Write chunk ``part`` (0-based) of a dataset of ``parts`` chunks into ``directory``, the staging
    directory of the dataset (see the module docstring for the layout); with ``parts == 1``, the ordinary
    single-file dataset. Each file is written to a temporary name and renamed (:func:`atomic_file`), so a part
    is there whole or not at all. A mobility dataset's stations are written with part 0 (every part has the
    same stations)."""
    if not 0 <= part < parts:
        raise ValueError(f"part {part} of {parts}")
    directory = Path(directory)
    table = "traffic.parquet" if isinstance(data, StationTraffic) else "mobility.parquet"
    if parts == 1:
        paths = {"stations.parquet": directory / "stations.parquet", table: directory / table}
    else:
        paths = {"stations.parquet": part_file(directory / "stations.parquet", part)}
        paths[table] = part_file(directory / table, part)
        if isinstance(data, UserMobility):
            paths["stations.parquet"] = directory / "stations.parquet" if part == 0 else None
    numbering = {"part": part, "parts": parts}
    if paths["stations.parquet"] is not None:
        with atomic_file(paths["stations.parquet"]) as tmp:
            _write_table(
                data.stations.to_frame(), tmp, {"kind": "stations", "version": FORMAT_VERSION} | numbering
            )
    with atomic_file(paths[table]) as tmp:
        if isinstance(data, StationTraffic):
            _write_traffic(data, tmp, numbering)
        else:
            _write_mobility(data, tmp, numbering)


def _part_files(path: Path) -> list[Path]:
    """The files of a table: ``[path]`` for a file; for a parted table, its parts in order, checked complete
    (every part the parts' metadata counts, nothing else)."""
    if not path.is_dir():
        return [path]
    entries = sorted(path.iterdir())
    stray = [p.name for p in entries if not _PART.match(p.name)]
    if stray:
        raise DataError(
            f"a parted table holds only part-NNNNN.parquet files, not {', '.join(stray[:3])}: move them out "
            "(a leftover of an interrupted write is not part of the dataset)",
            source=str(path),
        )
    if not entries:
        raise DataError(
            "a parted table without parts: the dataset is incomplete; generate it again", source=str(path)
        )
    counts = {_part_meta(p).get("parts") for p in (entries[0], entries[-1])}
    expected = counts.pop() if len(counts) == 1 else None
    found = [int(_PART.match(p.name)["index"]) for p in entries]
    if not isinstance(expected, int) or found != list(range(expected)):
        missing = sorted(set(range(expected)) - set(found))[:3] if isinstance(expected, int) else []
        raise DataError(
            f"{len(found)} parts where the parts' metadata counts {expected}"
            + (f" (missing: {', '.join(part_file(path, i).name for i in missing)})" if missing else "")
            + ": the dataset is incomplete; generate it again",
            source=str(path),
        )
    return entries


def _part_meta(path: Path) -> dict:
    try:
        raw = (pq.read_schema(path).metadata or {}).get(_META_KEY)
    except (OSError, pa.ArrowInvalid) as err:
        raise DataError(f"cannot read Parquet file: {one_line(err)}", source=str(path)) from err
    return json.loads(raw) if raw else {}


def _time_meta(data) -> dict:
    # Parquet keeps the timezone in the column type; the step must travel separately for one-step data.
    return {"version": FORMAT_VERSION, "step": data.step.isoformat()}


def _write_traffic(data: StationTraffic, path: Path, numbering: dict | None = None) -> None:
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
    meta = _time_meta(data) | {"kind": "station_traffic", "channels": list(data.channels)} | (numbering or {})
    _write_table(pd.DataFrame(cols), path, meta)


def _time_grid(times: pd.DatetimeIndex, step, source) -> tuple[pd.Timestamp, pd.Timedelta | None, int]:
    """``(start, step, count)`` of the regular grid that sorted unique ``times`` lie on, gaps allowed.

    The grid's step is ``step`` when given; else the axis's own step when it is regular, and otherwise the most
    common interval between timestamps (the smallest on a tie). Timestamps off the grid are irregular (the
    error of :func:`regular_timeline` when the step was inferred). The caller reports each grid step without a
    row as a missing row. One timestamp: ``step`` may be None (the caller needs one then).
    """
    if step is None or len(times) < 2 or times.tz is None:
        try:
            start, found, n_steps = regular_timeline(times, source=source)
            return start, found if found is not None else step, n_steps
        except DataError as err:
            if times.tz is None:
                raise
            irregular = err
    else:
        irregular = None
    offsets = (times - times[0]).to_numpy("timedelta64[ns]").astype(np.int64)
    if step is None:
        deltas, counts = np.unique(np.diff(offsets), return_counts=True)
        step = pd.Timedelta(int(deltas[counts.argmax()]))
    step = pd.Timedelta(step)
    off_grid = offsets % step.value != 0
    if off_grid.any():
        if irregular is not None:
            raise irregular
        raise DataError(
            f"timestamp {times[int(off_grid.argmax())]} is not on the grid of step {step} from {times[0]} (the "
            "step given); pass the table's real step",
            source=source,
        )
    n_steps = int(offsets[-1] // step.value) + 1
    if n_steps > 2 * len(times):
        raise DataError(
            f"the {len(times)} timestamps cover less than half of the {n_steps} steps of {step} from {times[0]} "
            f"to {times[-1]}: too sparse to be a series with a few gaps; resample to a regular step (or pass "
            "the right step)",
            source=source,
        )
    return times[0], step, n_steps


def _grid_positions(
    frame: pd.DataFrame, key: str, keys: list[str], step, source, *, missing_hint: str | None = ""
):
    """Map long rows onto a dense ``[len(keys), T]`` grid: returns ``(start, step, T, row, col)``.

    Shared by traffic (key = station) and mobility (key = user). Checks that timestamps lie on a regular grid
    and that every key has exactly one row per timestamp, naming the first duplicated and the first missing
    row. ``missing_hint`` is appended to the missing-row error (how the caller can fill them); None: missing
    rows are allowed (the caller fills them).
    """
    if frame.empty:
        raise DataError("no rows: the table is empty", source=source)
    times = pd.DatetimeIndex(frame["timestamp"])
    uniq_times = times.unique().sort_values()
    start, step, n_steps = _time_grid(uniq_times, step, source)
    if step is None:
        raise DataError("a single timestamp: cannot infer the step; pass step=...", source=source)
    position = {k: i for i, k in enumerate(keys)}
    row = frame[key].astype(str).map(position).to_numpy()
    col = ((times - start) // step).to_numpy().astype(np.int64)
    n = len(keys)
    counts = np.bincount(row * n_steps + col, minlength=n * n_steps).reshape(n, n_steps)
    grid_times = pd.date_range(start, periods=n_steps, freq=step)
    who = key.removesuffix("_id")

    def first(bad: np.ndarray) -> str:
        i, t = np.argwhere(bad)[0]
        found = f"appears {counts[i, t]} times" if counts[i, t] > 1 else "has no row"
        return f"first: {key} {keys[i]!r} {found} at {grid_times[t]}"

    duplicated = counts > 1
    if duplicated.any():
        raise DataError(
            f"{int(duplicated.sum())} duplicated ({key}, timestamp) row(s); {first(duplicated)}. Every {who} "
            "needs exactly one row per timestamp.",
            source=source,
        )
    missing = counts == 0
    if missing_hint is not None and missing.any():
        raise DataError(
            f"{int(missing.sum())} missing ({key}, timestamp) row(s); {first(missing)}. Every {who} needs one "
            f"row per timestamp{missing_hint}.",
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
    fill: str = "none",
    missing_hint: str = "",
) -> StationTraffic:
    """Pivot a long table (``station_id, timestamp, <channels>``) onto a dense ``[N, T, C]`` grid.

    Stations follow ``stations``' order. Every station must have exactly one row per timestamp: duplicated
    rows and ids that are not in ``stations`` raise :class:`DataError` naming them, and so do missing rows
    (with ``missing_hint`` appended) unless ``fill`` is ``"interpolate"`` or ``"zero"``: then they are filled
    (:func:`cellsynth.data.repair.fill_gaps`), marked in ``repaired`` and counted in a
    :class:`DataRepairWarning`. ``repaired_columns`` (one boolean column per channel) become the ``repaired``
    mask.
    """
    check_fill(fill, source=source)
    _require_columns(frame, ["station_id", "timestamp", *channels, *(repaired_columns or [])], source)
    stations.index_of(frame["station_id"].astype(str).unique(), source=source)  # names unknown ids
    ids = list(stations.ids)
    start, step, n_steps, row, col = _grid_positions(
        frame, "station_id", ids, step, source, missing_hint=None if fill != "none" else missing_hint
    )
    values = np.zeros((len(stations), n_steps, len(channels)), dtype=np.float32)
    for j, name in enumerate(channels):
        values[row, col, j] = _numeric_column(frame, name, source)
    repaired = np.zeros(values.shape, dtype=bool)
    if repaired_columns:
        for j, name in enumerate(repaired_columns):
            repaired[row, col, j] = frame[name].to_numpy(bool)
    recorded = np.zeros((len(stations), n_steps), dtype=bool)
    recorded[row, col] = True
    if not recorded.all():  # only with a fill: _grid_positions raised otherwise
        empty = ~recorded.any(axis=1)
        if empty.any():
            raise DataError(
                f"station_id {ids[int(empty.argmax())]!r} has no row at all ({int(empty.sum())} such station(s)); "
                "a fill only fills the gaps between a station's rows: remove it from the stations table",
                source=source,
            )
        values = fill_gaps(values, recorded, fill).astype(np.float32)
        repaired |= ~recorded[:, :, None]
        missing = ~recorded
        i, t = np.argwhere(missing)[0]
        how = "linear interpolation in time" if fill == "interpolate" else "zeros"
        warnings.warn(
            f"{source + ': ' if source else ''}{int(missing.sum())} missing (station_id, timestamp) row(s) of "
            f"{missing.size} filled with {how} ({int(missing.any(axis=1).sum())} station(s); first: "
            f"{ids[i]!r} at {pd.date_range(start, periods=n_steps, freq=step)[t]}); marked in .repaired",
            DataRepairWarning,
            stacklevel=3,
        )
    return StationTraffic(values, start, step, tuple(channels), stations, repaired=repaired, source=source)


def _read_traffic(path: Path, stations: Stations) -> StationTraffic:
    parts = _part_files(path)
    if len(parts) == 1:
        return _read_traffic_part(parts[0], stations)
    # One part at a time into arrays allocated once: the long rows of one part are held at a time.
    values = repaired = first = None
    owner = np.full(len(stations), -1, dtype=np.int64)  # the part each station's rows came from
    for number, part in enumerate(parts):
        ids = pq.read_table(part, columns=["station_id"]).column(0).unique().to_pylist()
        index = stations.index_of(ids, source=str(part))
        data = _read_traffic_part(part, stations.subset(index))
        if first is None:
            first = data
            values = np.empty((len(stations), data.n_steps, data.n_channels), dtype=np.float32)
        else:
            _check_like_first_part(data, first, "channels", part, parts[0])
        twice = owner[index] >= 0
        if twice.any():
            i = int(index[int(twice.argmax())])
            raise DataError(
                f"station_id {stations.ids[i]!r} has rows in {parts[owner[i]].name} and {part.name}; every "
                "station's rows are in one part",
                source=str(path),
            )
        owner[index] = number
        values[index] = data.values
        if data.repaired is not None:
            if repaired is None:
                repaired = np.zeros(values.shape, dtype=bool)
            repaired[index] = data.repaired
    absent = owner < 0
    if absent.any():
        raise DataError(
            f"station_id {stations.ids[int(absent.argmax())]!r} ({int(absent.sum())} station(s)) of "
            "stations.parquet has no rows in any part",
            source=str(path),
        )
    return StationTraffic(
        values, first.start, first.step, first.channels, stations, repaired=repaired, source=str(path)
    )


def _check_like_first_part(data, first, field: str, part: Path, first_part: Path) -> None:
    """Every part of a parted dataset has the first part's time axis and ``field`` (``channels`` of
    traffic, ``has_traffic`` of mobility); a part that does not is a :class:`DataError` naming it."""
    mine = (data.start, data.step, data.n_steps, getattr(data, field))
    theirs = (first.start, first.step, first.n_steps, getattr(first, field))
    if mine != theirs:
        raise DataError(
            f"its time axis or {field} ({mine[0]}, {mine[2]} steps of {mine[1]}, {field} {mine[3]}) differ "
            f"from {first_part.name}'s ({theirs[0]}, {theirs[2]} steps of {theirs[1]}, {field} {theirs[3]}); "
            "every part of a dataset has the same",
            source=str(part),
        )


def _read_traffic_part(path: Path, stations: Stations) -> StationTraffic:
    frame, meta = _read_table(path)
    if meta.get("kind") != "station_traffic":
        raise DataError("not a cellsynth traffic table (no cellsynth metadata)", source=str(path))
    channels = meta["channels"]
    rep_cols = [c + _REPAIRED_SUFFIX for c in channels]
    return long_to_traffic(
        frame,
        stations,
        channels,
        step=pd.Timedelta(meta["step"]),
        source=str(path),
        repaired_columns=rep_cols if rep_cols[0] in frame.columns else None,
    )


def _write_mobility(data: UserMobility, path: Path, numbering: dict | None = None) -> None:
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
    meta = _time_meta(data) | {"kind": "user_mobility", "users": list(data.user_ids)} | (numbering or {})
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
    files = _part_files(path)
    parts = [_read_mobility_part(part, stations) for part in files]
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    for part, data in zip(files, parts, strict=True):
        _check_like_first_part(data, first, "has_traffic", part, files[0])
    locations = np.concatenate([d.locations for d in parts])
    traffic = np.concatenate([d.traffic for d in parts]) if first.has_traffic else None
    users = tuple(u for d in parts for u in d.user_ids)
    return UserMobility(locations, first.start, first.step, stations, traffic, users, str(path))


def _read_mobility_part(path: Path, stations: Stations) -> UserMobility:
    frame, meta = _read_table(path)
    if meta.get("kind") != "user_mobility":
        raise DataError("not a cellsynth mobility table (no cellsynth metadata)", source=str(path))
    return long_to_mobility(
        frame, stations, step=pd.Timedelta(meta["step"]), users=meta.get("users"), source=str(path)
    )
