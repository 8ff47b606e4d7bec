"""Location-id sequences with a coordinate table (MoveSim's GeoLife files: ``real.data``, ``gps``).

Each line of a sequence file is one user-day: space-separated integer location ids, one per time slot
(48 slots of 30 minutes in MoveSim). Line ``i`` of the gps file is ``lat lon`` of location id ``i``.
The result is a trajectory-only :class:`UserMobility` (no traffic).

The files carry no dates. Every sequence is placed on the same day, by default a placeholder Monday,
2026-01-05 00:00 in Asia/Shanghai (GeoLife was recorded mostly in Beijing); pass ``start`` to change it.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from cellsynth.data.loaders._common import PLACEHOLDER_MONDAY, as_start, existing_file, read_text, source_name
from cellsynth.data.model import Stations, UserMobility
from cellsynth.errors import DataError

__all__ = ["DEFAULT_START", "load_gps", "load_location_sequences"]

DEFAULT_START = pd.Timestamp(PLACEHOLDER_MONDAY, tz="Asia/Shanghai")


def _lines(path) -> tuple[list[str], str]:
    path = existing_file(path)
    src = source_name(path)
    lines = read_text(path).splitlines()  # ``.gz`` too; a damaged gzip or a wrong encoding named here
    while lines and not lines[-1].strip():
        lines.pop()  # trailing blank lines carry nothing; blank lines inside the file are errors
    if not lines:
        raise DataError("the file is empty", source=src)
    return lines, src


def load_gps(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(lat, lon)`` arrays from a gps table: line ``i`` is ``lat lon`` of location id ``i``."""
    lines, src = _lines(path)
    lat = np.empty(len(lines))
    lon = np.empty(len(lines))
    for i, line in enumerate(lines):
        parts = line.split()
        try:
            if len(parts) != 2:
                raise ValueError(f"expected 2 fields 'lat lon', found {len(parts)}")
            lat[i], lon[i] = float(parts[0]), float(parts[1])
            if not (np.isfinite(lat[i]) and np.isfinite(lon[i])):
                raise ValueError("coordinates must be finite")
        except ValueError as err:
            raise DataError(f"line {i + 1}: {err} (line: {line[:80]!r})", source=src) from err
    return lat, lon


def load_location_sequences(
    path: str | os.PathLike,
    gps: str | os.PathLike,
    *,
    start: str | pd.Timestamp = DEFAULT_START,
    tz: str = "Asia/Shanghai",
    step: str | pd.Timedelta = "30min",
    only_visited: bool = True,
    user_prefix: str | None = None,
) -> UserMobility:
    """Read location-id sequences and their gps table as a trajectory-only :class:`UserMobility`.

    Parameters
    ----------
    path:
        One sequence per line, space-separated integer location ids, all lines of the same length.
    gps:
        Line ``i``: ``lat lon`` of location id ``i``.
    start, tz, step:
        The time axis: first slot at ``start`` (naive values are local time in ``tz``), slots of ``step``.
    only_visited:
        Stations are only the locations the sequences visit (sorted by id); False keeps every gps location.
    user_prefix:
        User ids are ``f"{user_prefix}-{line index}"`` from 0; default prefix: the file name up to its first
        dot (``real.data`` -> ``real-0``, ``real-1``...).

    Station ids are ``str(location id)``. Lines of another length, non-integer ids and ids outside the gps
    table raise :class:`DataError` naming the file and line.
    """
    lines, src = _lines(path)
    start = as_start(start, tz, source=src)
    lat, lon = load_gps(gps)
    n_locations = len(lat)
    rows: list[list[int]] = []
    width = None
    for i, line in enumerate(lines):
        parts = line.split()
        if width is None:
            width = len(parts)
        if not parts or len(parts) != width:
            raise DataError(
                f"line {i + 1} has {len(parts)} location ids, but line 1 has {width}; every sequence needs one id "
                "per time slot",
                source=src,
            )
        ids = []
        for j, p in enumerate(parts):
            try:
                ids.append(int(p))
            except ValueError:
                raise DataError(
                    f"line {i + 1}, slot {j + 1}: {p!r} is not an integer location id", source=src
                ) from None
        bad = [j for j, v in enumerate(ids) if not 0 <= v < n_locations]
        if bad:
            raise DataError(
                f"line {i + 1}, slot {bad[0] + 1}: location id {ids[bad[0]]} is not in the gps table "
                f"({gps}: ids 0..{n_locations - 1})",
                source=src,
            )
        rows.append(ids)
    locations = np.asarray(rows, dtype=np.int64)
    if only_visited:
        visited = np.unique(locations)
        locations = np.searchsorted(visited, locations)
    else:
        visited = np.arange(n_locations)
    stations = Stations(ids=visited.astype(str), lat=lat[visited], lon=lon[visited], source=source_name(gps))
    prefix = user_prefix if user_prefix is not None else os.path.basename(src).split(".")[0]
    return UserMobility(
        locations=locations,
        start=start,
        step=pd.Timedelta(step),
        stations=stations,
        user_ids=tuple(f"{prefix}-{i}" for i in range(len(rows))),
        source=src,
    )
