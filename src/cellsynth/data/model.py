"""The data model: stations, their traffic, and users moving between them.

Three immutable containers, validated on construction so that everything downstream can trust them:

- :class:`Stations` — ids, optional WGS84 coordinates, a named feature matrix (POI counts, embeddings).
- :class:`StationTraffic` — ``values[n, t, c]`` >= 0 for N stations, T regular time steps, C channels.
- :class:`UserMobility` — ``locations[u, t]`` (index into stations) and optional ``traffic[u, t]`` >= 0.

Nothing is silently dropped, clipped or filled. A loader that must repair input (a missing interval, say)
records where in ``repaired`` so that ``cellsynth data info`` can report it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cellsynth.errors import DataError

__all__ = ["StationTraffic", "Stations", "UserMobility", "format_duration", "parse_step", "regular_timeline"]


def _as_timestamp(value, source: str | None) -> pd.Timestamp:
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        raise DataError(
            f"start timestamp {ts} has no timezone; give a timezone-aware timestamp "
            "(e.g. pd.Timestamp('2013-11-04', tz='Europe/Rome'), or '...+00:00' for UTC)",
            source=source,
        )
    return ts


def parse_step(value, source: str | None = None, name: str = "step") -> pd.Timedelta:
    """A time step (``'10min'``, ``'1h'``, ``'1D'``, a ``Timedelta``...) as a positive ``pd.Timedelta``;
    :class:`DataError` naming ``name`` (and ``source``) when it is not a duration or not positive."""
    try:
        step = pd.Timedelta(value)
    except (ValueError, TypeError) as err:
        raise DataError(
            f"{name} {value!r} is not a duration ({err}); give a number and a unit, e.g. 10min, 30min, 1h or 1D",
            source=source,
        ) from None
    if pd.isna(step) or step <= pd.Timedelta(0):
        raise DataError(f"{name} must be a positive duration, got {value!r}", source=source)
    return step


def format_duration(step: pd.Timedelta) -> str:
    """A time step as people write it in messages and options: ``"1h"``, ``"30min"``, ``"1D"``, ``"10s"``."""
    step = pd.Timedelta(step)
    for unit in ("1D", "1h", "1min", "1s"):
        if step >= pd.Timedelta(unit) and step % pd.Timedelta(unit) == pd.Timedelta(0):
            return f"{step // pd.Timedelta(unit)}{unit[1:]}"
    return str(step)


def _check_finite(name: str, array: np.ndarray, source: str | None, where) -> None:
    """Raise naming the first NaN/inf entry; ``where(index_tuple)`` describes an index for the message."""
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{name} has {int(bad.sum())} NaN/inf value(s); first at {where(first)} "
            f"(value {array[first]}). Remove or fill them before loading.",
            source=source,
        )


def _check_nonnegative(name: str, array: np.ndarray, source: str | None, where) -> None:
    bad = array < 0
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{name} has {int(bad.sum())} negative value(s); traffic cannot be negative. "
            f"First at {where(first)} (value {array[first]}).",
            source=source,
        )


def regular_timeline(timestamps, *, source: str | None = None) -> tuple[pd.Timestamp, pd.Timedelta, int]:
    """Check that sorted unique timestamps form a regular grid and return ``(start, step, count)``.

    Raises :class:`DataError` naming the first out-of-order, duplicate or irregular timestamp.
    A single timestamp has no step of its own: the caller must supply one (this returns ``step=None``).
    """
    index = pd.DatetimeIndex(timestamps)
    if len(index) == 0:
        raise DataError("no timestamps: the data is empty", source=source)
    if index.tz is None:
        raise DataError(
            "timestamps have no timezone; write them with an offset (e.g. 2013-11-04T00:00:00+01:00) "
            "or pass the timezone to the loader",
            source=source,
        )
    if len(index) == 1:
        return index[0], None, 1
    deltas = index[1:] - index[:-1]
    if (deltas <= pd.Timedelta(0)).any():
        i = int(np.argmax(deltas <= pd.Timedelta(0)))
        kind = "duplicated" if deltas[i] == pd.Timedelta(0) else "out of order"
        raise DataError(f"timestamp {index[i + 1]} (position {i + 1}) is {kind}; sort by time", source=source)
    step = deltas[0]
    irregular = deltas != step
    if irregular.any():
        i = int(np.argmax(irregular))
        raise DataError(
            f"irregular time steps: {index[i]} -> {index[i + 1]} is {deltas[i]}, but the first step is {step} "
            f"({int(irregular.sum())} irregular gap(s)). Resample to a regular step, or let a loader repair "
            "missing intervals explicitly.",
            source=source,
        )
    return index[0], step, len(index)


@dataclass(frozen=True, eq=False)
class Stations:
    """Base stations (or grid cells): unique string ids, optional lat/lon (WGS84 degrees), named features.

    ``features`` is float32 ``[N, F]`` with ``feature_names`` of length F (F may be 0).
    """

    ids: np.ndarray
    lat: np.ndarray | None = None
    lon: np.ndarray | None = None
    features: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        src = self.source
        ids = np.asarray(self.ids)
        if ids.ndim != 1:
            raise DataError(f"station ids must be 1-D, got shape {ids.shape}", source=src)
        if len(ids) == 0:
            raise DataError("no stations: the station table is empty", source=src)
        ids = np.array([str(i) for i in ids], dtype=object)
        if any(i == "" for i in ids):
            raise DataError(f"station id at row {int(np.flatnonzero(ids == '')[0])} is empty", source=src)
        uniq, counts = np.unique(ids.astype(str), return_counts=True)
        if (counts > 1).any():
            dup = uniq[counts > 1]
            raise DataError(
                f"duplicate station ids: {', '.join(map(str, dup[:5]))}"
                + (f" and {len(dup) - 5} more" if len(dup) > 5 else "")
                + "; each station must appear once",
                source=src,
            )
        object.__setattr__(self, "ids", ids)
        n = len(ids)

        if (self.lat is None) != (self.lon is None):
            raise DataError("give both lat and lon, or neither", source=src)
        if self.lat is not None:
            lat = np.asarray(self.lat, dtype=np.float64)
            lon = np.asarray(self.lon, dtype=np.float64)
            for name, arr in (("lat", lat), ("lon", lon)):
                if arr.shape != (n,):
                    raise DataError(
                        f"{name} has shape {arr.shape}, expected ({n},) for {n} stations", source=src
                    )
                _check_finite(name, arr, src, lambda i: f"station {ids[i[0]]!r}")
            for name, arr, limit in (("lat", lat, 90.0), ("lon", lon, 180.0)):
                bad = np.abs(arr) > limit
                if bad.any():
                    i = int(np.argmax(bad))
                    raise DataError(
                        f"{name} of station {ids[i]!r} is {arr[i]}, outside [-{limit}, {limit}]; "
                        "coordinates must be WGS84 degrees (are lat and lon swapped, or projected?)",
                        source=src,
                    )
            object.__setattr__(self, "lat", lat)
            object.__setattr__(self, "lon", lon)

        names = tuple(str(x) for x in self.feature_names)
        if self.features is None:
            feats = np.zeros((n, len(names)), dtype=np.float32)
            if names:
                raise DataError("feature_names given without a feature matrix", source=src)
        else:
            feats = np.asarray(self.features, dtype=np.float32)
            if feats.ndim != 2 or feats.shape[0] != n:
                raise DataError(f"features have shape {feats.shape}, expected ({n}, F)", source=src)
            if not names:
                names = tuple(f"f{j}" for j in range(feats.shape[1]))
            if len(names) != feats.shape[1]:
                raise DataError(
                    f"{len(names)} feature names for {feats.shape[1]} feature columns", source=src
                )
            if len(set(names)) != len(names):
                raise DataError(f"duplicate feature names in {names}", source=src)
            _check_finite("features", feats, src, lambda i: f"station {ids[i[0]]!r}, feature {names[i[1]]!r}")
        feats.setflags(write=False)
        object.__setattr__(self, "features", feats)
        object.__setattr__(self, "feature_names", names)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def has_coordinates(self) -> bool:
        return self.lat is not None

    def trajectory_coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lat, lon)`` for :func:`~cellsynth.metrics.trajectory_jsds`: the stations' own, or zeros for a
        table without coordinates. Zeros keep the four statistics that read no positions
        (:data:`~cellsynth.metrics.mobility.COORDINATE_FREE`) exact; the distance-based two are then
        meaningless, and callers leave them out."""
        if self.has_coordinates:
            return self.lat, self.lon
        return np.zeros(len(self)), np.zeros(len(self))

    def index_of(self, ids: Sequence[str], *, source: str | None = None) -> np.ndarray:
        """Positions of ``ids`` in this table; raises naming the ids that are not stations here."""
        lookup = {sid: i for i, sid in enumerate(self.ids)}
        wanted = [str(i) for i in ids]
        missing = [i for i in wanted if i not in lookup]
        if missing:
            raise DataError(
                f"{len(missing)} unknown station id(s): {', '.join(missing[:5])}"
                + (" ..." if len(missing) > 5 else "")
                + " (not in the stations table)",
                source=source or self.source,
            )
        return np.array([lookup[i] for i in wanted], dtype=np.int64)

    def subset(self, index) -> Stations:
        """The stations at integer positions (or a boolean mask) ``index``, in that order."""
        return self.take(np.arange(len(self))[index])

    def take(self, index, ids: Sequence[str] | None = None) -> Stations:
        """The stations at positions ``index`` under new ``ids`` (so positions may repeat, as when each
        station has several samples or stations are drawn with replacement); default: their own ids."""
        idx = np.asarray(index, dtype=np.int64)
        return Stations(
            ids=self.ids[idx] if ids is None else np.asarray(ids, dtype=object),
            lat=None if self.lat is None else self.lat[idx],
            lon=None if self.lon is None else self.lon[idx],
            features=self.features[idx],
            feature_names=self.feature_names,
            source=self.source,
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per station: ``station_id``, ``lat``/``lon`` if known, one column per feature."""
        cols: dict[str, object] = {"station_id": pd.array(self.ids.astype(str), dtype="string")}
        if self.has_coordinates:
            cols["lat"] = self.lat
            cols["lon"] = self.lon
        for j, name in enumerate(self.feature_names):
            cols[name] = self.features[:, j]
        return pd.DataFrame(cols)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, *, source: str | None = None) -> Stations:
        """Inverse of :meth:`to_frame`: ``station_id``, optional ``lat``/``lon``, every other column a feature."""
        if "station_id" not in frame.columns:
            raise DataError(
                f"stations table has no 'station_id' column (columns: {list(frame.columns)})", source=source
            )
        feature_cols = [c for c in frame.columns if c not in ("station_id", "lat", "lon")]
        non_numeric = [c for c in feature_cols if not pd.api.types.is_numeric_dtype(frame[c])]
        if non_numeric:
            raise DataError(
                f"stations table column(s) {non_numeric} are not numeric; every column other than "
                "station_id, lat and lon is a station feature and must be a number",
                source=source,
            )
        has_lat, has_lon = "lat" in frame.columns, "lon" in frame.columns
        if has_lat != has_lon:
            raise DataError("stations table has only one of 'lat' and 'lon'", source=source)
        return cls(
            ids=frame["station_id"].astype(str).to_numpy(dtype=object),
            lat=frame["lat"].to_numpy(np.float64) if has_lat else None,
            lon=frame["lon"].to_numpy(np.float64) if has_lon else None,
            features=frame[feature_cols].to_numpy(np.float32) if feature_cols else None,
            feature_names=tuple(feature_cols),
            source=source,
        )

    def equals(self, other: Stations) -> bool:
        """Exact equality of ids, coordinates, features and feature names."""

        def same(a, b):
            return (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))

        return (
            np.array_equal(self.ids.astype(str), other.ids.astype(str))
            and same(self.lat, other.lat)
            and same(self.lon, other.lon)
            and self.feature_names == other.feature_names
            and np.array_equal(self.features, other.features)
        )


class _TimeAxis:
    """Shared by traffic and mobility: a regular time axis ``start + step * arange(n_steps)``."""

    start: pd.Timestamp
    step: pd.Timedelta

    @property
    def n_steps(self) -> int:  # pragma: no cover - overridden by dataclass fields' shapes
        raise NotImplementedError

    @property
    def timestamps(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, periods=self.n_steps, freq=self.step)

    @property
    def end(self) -> pd.Timestamp:
        """The end of the last step (exclusive)."""
        return self.start + self.step * self.n_steps

    def steps_per(self, period: str | pd.Timedelta) -> int:
        """How many steps make ``period`` ("1D", "7D"...); raises if the step does not divide it."""
        period = pd.Timedelta(period)
        ratio = period / self.step
        if ratio != int(ratio):
            raise DataError(f"step {self.step} does not divide {period}")
        return int(ratio)


@dataclass(frozen=True, eq=False)
class StationTraffic(_TimeAxis):
    """Traffic of N stations over T regular steps and C channels: ``values`` float32 ``[N, T, C]``, >= 0.

    ``repaired`` (optional bool ``[N, T, C]``) marks values a loader filled in rather than read.
    """

    values: np.ndarray
    start: pd.Timestamp
    step: pd.Timedelta
    channels: tuple[str, ...]
    stations: Stations
    repaired: np.ndarray | None = None
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        src = self.source
        values = np.asarray(self.values)
        if values.ndim != 3:
            raise DataError(
                f"traffic values must be [stations, steps, channels], got {values.ndim}-D shape {values.shape}",
                source=src,
            )
        if values.size == 0:
            raise DataError(f"traffic is empty (shape {values.shape})", source=src)
        values = values.astype(np.float32, copy=False)
        channels = tuple(str(c) for c in self.channels)
        if len(channels) != values.shape[2]:
            raise DataError(
                f"{len(channels)} channel names {channels} for {values.shape[2]} channels in the values",
                source=src,
            )
        if len(set(channels)) != len(channels):
            raise DataError(f"duplicate channel names in {channels}", source=src)
        if not isinstance(self.stations, Stations):
            raise DataError("stations must be a cellsynth.data.Stations", source=src)
        if len(self.stations) != values.shape[0]:
            raise DataError(
                f"{values.shape[0]} station rows in the values but {len(self.stations)} stations", source=src
            )
        object.__setattr__(self, "start", _as_timestamp(self.start, src))
        object.__setattr__(self, "step", parse_step(self.step, src))
        object.__setattr__(self, "channels", channels)
        ts = self.timestamps
        ids = self.stations.ids

        def where(i):
            return f"station {ids[i[0]]!r}, {ts[i[1]]}, channel {channels[i[2]]!r}"

        _check_finite("traffic", values, src, where)
        _check_nonnegative("traffic", values, src, where)
        values.setflags(write=False)
        object.__setattr__(self, "values", values)
        if self.repaired is not None:
            rep = np.asarray(self.repaired, dtype=bool)
            if rep.shape != values.shape:
                raise DataError(f"repaired mask has shape {rep.shape}, values {values.shape}", source=src)
            object.__setattr__(self, "repaired", rep if rep.any() else None)

    @property
    def n_stations(self) -> int:
        return self.values.shape[0]

    @property
    def n_steps(self) -> int:
        return self.values.shape[1]

    @property
    def n_channels(self) -> int:
        return self.values.shape[2]

    def channel(self, name: str) -> np.ndarray:
        """``[N, T]`` values of one channel."""
        if name not in self.channels:
            raise DataError(f"no channel {name!r}; channels are {self.channels}", source=self.source)
        return self.values[:, :, self.channels.index(name)]

    def select_stations(self, index) -> StationTraffic:
        """Traffic of the stations at positions (or mask) ``index``, or with the given string ids."""
        if len(index) and isinstance(np.asarray(index).flat[0], str):
            index = self.stations.index_of(index)
        idx = np.arange(self.n_stations)[index]
        return StationTraffic(
            values=self.values[idx],
            start=self.start,
            step=self.step,
            channels=self.channels,
            stations=self.stations.subset(idx),
            repaired=None if self.repaired is None else self.repaired[idx],
            source=self.source,
        )

    def select_channels(self, names: Sequence[str]) -> StationTraffic:
        """Only the named channels, in the given order."""
        unknown = [n for n in names if n not in self.channels]
        if unknown:
            raise DataError(f"no channel(s) {unknown}; channels are {self.channels}", source=self.source)
        idx = [self.channels.index(n) for n in names]
        return StationTraffic(
            values=self.values[:, :, idx],
            start=self.start,
            step=self.step,
            channels=tuple(names),
            stations=self.stations,
            repaired=None if self.repaired is None else self.repaired[:, :, idx],
            source=self.source,
        )

    def slice_steps(self, first: int, stop: int) -> StationTraffic:
        """Steps ``first <= t < stop`` (e.g. one week out of several)."""
        if not 0 <= first < stop <= self.n_steps:
            raise DataError(f"step range [{first}, {stop}) is outside [0, {self.n_steps})")
        return StationTraffic(
            values=self.values[:, first:stop],
            start=self.start + self.step * first,
            step=self.step,
            channels=self.channels,
            stations=self.stations,
            repaired=None if self.repaired is None else self.repaired[:, first:stop],
            source=self.source,
        )

    def equals(self, other: StationTraffic) -> bool:
        """Exact equality of values, time axis, channels, stations and repair marks."""
        rep_a = np.zeros(self.values.shape, bool) if self.repaired is None else self.repaired
        rep_b = np.zeros(other.values.shape, bool) if other.repaired is None else other.repaired
        return (
            self.values.shape == other.values.shape
            and np.array_equal(self.values, other.values)
            and self.start == other.start
            and str(self.start.tz) == str(other.start.tz)
            and self.step == other.step
            and self.channels == other.channels
            and self.stations.equals(other.stations)
            and np.array_equal(rep_a, rep_b)
        )


@dataclass(frozen=True, eq=False)
class UserMobility(_TimeAxis):
    """U users over T regular steps: ``locations`` int64 ``[U, T]`` indexing ``stations``, and optional
    ``traffic`` float32 ``[U, T]`` >= 0 (absent for trajectory-only data such as GeoLife)."""

    locations: np.ndarray
    start: pd.Timestamp
    step: pd.Timedelta
    stations: Stations
    traffic: np.ndarray | None = None
    user_ids: tuple[str, ...] = ()
    source: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        src = self.source
        loc = np.asarray(self.locations)
        if loc.ndim != 2:
            raise DataError(f"locations must be [users, steps], got shape {loc.shape}", source=src)
        if loc.size == 0:
            raise DataError(f"mobility is empty (shape {loc.shape})", source=src)
        if not np.issubdtype(loc.dtype, np.integer):
            if (
                np.issubdtype(loc.dtype, np.floating)
                and np.isfinite(loc).all()
                and (loc == np.round(loc)).all()
            ):
                loc = loc.astype(np.int64)
            else:
                raise DataError(
                    f"locations must be integer station indices, got dtype {loc.dtype}", source=src
                )
        loc = loc.astype(np.int64, copy=False)
        if not isinstance(self.stations, Stations):
            raise DataError("stations must be a cellsynth.data.Stations", source=src)
        object.__setattr__(self, "start", _as_timestamp(self.start, src))
        object.__setattr__(self, "step", parse_step(self.step, src))
        users = tuple(str(u) for u in self.user_ids) or tuple(f"u{i}" for i in range(loc.shape[0]))
        if len(users) != loc.shape[0]:
            raise DataError(f"{len(users)} user ids for {loc.shape[0]} users", source=src)
        if len(set(users)) != len(users):
            raise DataError("duplicate user ids", source=src)
        object.__setattr__(self, "user_ids", users)
        ts = self.timestamps
        bad = (loc < 0) | (loc >= len(self.stations))
        if bad.any():
            u, t = np.argwhere(bad)[0]
            raise DataError(
                f"{int(bad.sum())} location(s) are not station indices in [0, {len(self.stations)}); first: "
                f"user {users[u]!r} at {ts[t]} has {loc[u, t]}",
                source=src,
            )
        loc.setflags(write=False)
        object.__setattr__(self, "locations", loc)
        if self.traffic is not None:
            traffic = np.asarray(self.traffic).astype(np.float32, copy=False)
            if traffic.shape != loc.shape:
                raise DataError(f"traffic has shape {traffic.shape}, locations {loc.shape}", source=src)

            def where(i):
                return f"user {users[i[0]]!r} at {ts[i[1]]}"

            _check_finite("user traffic", traffic, src, where)
            _check_nonnegative("user traffic", traffic, src, where)
            traffic.setflags(write=False)
            object.__setattr__(self, "traffic", traffic)

    @property
    def n_users(self) -> int:
        return self.locations.shape[0]

    @property
    def n_steps(self) -> int:
        return self.locations.shape[1]

    @property
    def has_traffic(self) -> bool:
        return self.traffic is not None

    def select_users(self, index) -> UserMobility:
        idx = np.arange(self.n_users)[index]
        return UserMobility(
            locations=self.locations[idx],
            start=self.start,
            step=self.step,
            stations=self.stations,
            traffic=None if self.traffic is None else self.traffic[idx],
            user_ids=tuple(self.user_ids[i] for i in idx),
            source=self.source,
        )

    def equals(self, other: UserMobility) -> bool:
        same_traffic = (self.traffic is None and other.traffic is None) or (
            self.traffic is not None
            and other.traffic is not None
            and np.array_equal(self.traffic, other.traffic)
        )
        return (
            np.array_equal(self.locations, other.locations)
            and same_traffic
            and self.start == other.start
            and str(self.start.tz) == str(other.start.tz)
            and self.step == other.step
            and self.user_ids == other.user_ids
            and self.stations.equals(other.stations)
        )
