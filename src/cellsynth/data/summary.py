"""Descriptive statistics of traffic and mobility data: what ``cellsynth data info`` prints, and the numbers
that compare the synthetic city with real data (docs/synthetic-city.md).

Pure numpy (and pandas for the calendar). Every function returns plain Python numbers (``float``, ``int``,
``None``, lists and dicts of them), so the result can be printed or written as JSON directly.

Definitions (all on one channel of a :class:`~cellsynth.data.StationTraffic` ``x[n, t]``):

- *daily profile*: mean of the city-wide mean load ``mean_n x[n, t]`` by local hour of day (the hour of
  each step in the start timestamp's timezone). ``peak_trough_ratio`` = max / min of that profile;
  ``station_peak_trough`` = P10, median and P90 over stations of the same ratio of each station's own
  profile (a station with a zero hour has an infinite ratio). All ``station_*`` entries are such
  ``{"q10", "median", "q90"}`` spreads over stations (nearest-rank quantiles; ``None`` where infinite).
- *weekday/weekend ratio*: mean load over steps on Monday..Friday / mean load over Saturday and Sunday
  (local calendar). ``None`` when the data has no weekend step or no weekday step.
- *top-10 % share*: share of the total load carried by the ``ceil(N / 10)`` busiest stations (by total).
- *station load*: each station's mean load per step; its quantiles divided by the median, coefficient of
  variation (std / mean), standard deviation of its natural logarithm (over stations with positive load),
  Gini coefficient and a Hill estimate of the tail index on the top 10 %.
- *lag-L autocorrelation*: per station the Pearson correlation of ``x[t]`` with ``x[t + L]`` over the
  ``T - L`` pairs, then the mean over stations; constant stations (zero variance) are left out, and the
  value is ``None`` when every station is constant. Lag 24 h always (when a day is a whole number of
  steps and T > 24 h); lag 168 h only when T >= 2 x 168 h.

Mobility (:func:`mobility_statistics`, :func:`trajectory_statistics`): distances are great-circle
(haversine, :mod:`cellsynth.geo`) between station coordinates; a *jump* is a change of location between
consecutive steps; the *radius of gyration* of a user over a period is the root mean square distance of
its positions (one per step) from their centre of mass; a *stay* is a maximal run of consecutive steps at
one location; statistics are per user-day (``steps_per_day`` steps) so that a week of users compares with
day-long real trajectories such as GeoLife's.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cellsynth.data.model import StationTraffic, UserMobility
from cellsynth.errors import DataError
from cellsynth.geo import haversine_km, local_km  # haversine_km: part of this module's API

__all__ = [
    "autocorrelation",
    "daily_profile",
    "describe",
    "haversine_km",
    "load_distribution",
    "mobility_statistics",
    "top_share",
    "traffic_statistics",
    "trajectory_statistics",
]

_QUANTILES = (0.01, 0.10, 0.25, 0.50, 0.75, 0.90, 0.99)


def _q_name(q: float) -> str:
    return "median" if q == 0.5 else f"q{round(q * 100):02d}"


def _f(x) -> float | None:
    """A finite float, or ``None`` (NaN, inf, None)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


# ------------------------------------------------------------------------------------------------------------
# Building blocks on arrays


def autocorrelation(x: np.ndarray, lag: int) -> np.ndarray:
    """Lag-``lag`` autocorrelation of each row of ``x[n, t]``: the Pearson correlation of ``x[:, :-lag]``
    with ``x[:, lag:]``; NaN for rows where either part is constant.

    Unlike the biased textbook estimator (shrunk by ``(t - lag) / t``), this does not depend on the length
    of the series, so one week of real data and two weeks of synthetic data compare directly.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if not 0 < lag < x.shape[1] - 1:
        raise ValueError(f"lag {lag} must be in [1, {x.shape[1] - 2}] for series of length {x.shape[1]}")
    a = x[:, :-lag] - x[:, :-lag].mean(axis=1, keepdims=True)
    b = x[:, lag:] - x[:, lag:].mean(axis=1, keepdims=True)
    va, vb = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)
    num = np.einsum("ij,ij->i", a, b)
    scale = np.maximum(1.0, np.abs(x).max(axis=1)) ** 2 * x.shape[1] * 1e-12
    ok = (va > scale) & (vb > scale)
    out = np.full(x.shape[0], np.nan)
    out[ok] = num[ok] / np.sqrt(va[ok] * vb[ok])
    return out


def top_share(loads: np.ndarray, fraction: float = 0.10) -> float:
    """Share of ``sum(loads)`` carried by the ``ceil(fraction * n)`` largest entries."""
    loads = np.sort(np.asarray(loads, dtype=np.float64).ravel())[::-1]
    total = loads.sum()
    if total <= 0:
        return float("nan")
    k = max(1, math.ceil(fraction * len(loads)))
    return float(loads[:k].sum() / total)


def load_distribution(loads: np.ndarray) -> dict:
    """Shape of a distribution of (station) loads: quantiles / median, CV, log-std, Gini, tail index."""
    x = np.asarray(loads, dtype=np.float64).ravel()
    med = float(np.median(x))
    pos = x[x > 0]
    srt = np.sort(x)
    n = len(srt)
    gini = float((2 * np.arange(1, n + 1) - n - 1) @ srt / (n * srt.sum())) if srt.sum() > 0 else float("nan")
    # Hill estimator of the Pareto tail index on the top 10 % (at least 5 points).
    k = max(5, n // 10)
    tail = None
    if len(pos) > k + 1:
        top = np.sort(pos)[::-1]
        logs = np.log(top[:k]) - np.log(top[k])
        tail = 1.0 / logs.mean() if logs.mean() > 0 else None
    out = {
        "mean_over_median": _f(x.mean() / med) if med > 0 else None,
        "cv": _f(x.std() / x.mean()) if x.mean() > 0 else None,
        "log_std": _f(np.log(pos).std()) if len(pos) > 1 else None,
        "gini": _f(gini),
        "tail_index": _f(tail),
        "top10_share": _f(top_share(x)),
    }
    for q in _QUANTILES:
        out[f"{_q_name(q)}_over_median"] = _f(np.quantile(x, q) / med) if med > 0 else None
    return out


def _local_calendar(timestamps: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Local hour of day (float, e.g. 13.5) and day of week (0 = Monday) of each timestamp."""
    hour = np.asarray(timestamps.hour + timestamps.minute / 60.0, dtype=np.float64)
    dow = np.asarray(timestamps.day_of_week, dtype=np.int64)
    return hour, dow


def daily_profile(x: np.ndarray, timestamps: pd.DatetimeIndex) -> np.ndarray:
    """Mean of ``x[n, t]`` by whole local hour of day: ``[n, 24]`` (NaN for hours absent from the data)."""
    x = np.asarray(x, dtype=np.float64)
    hour = np.floor(_local_calendar(timestamps)[0]).astype(np.int64)
    sums = np.zeros((x.shape[0], 24))
    np.add.at(sums.T, hour, x.T)
    counts = np.bincount(hour, minlength=24).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def _spread(values: np.ndarray) -> dict:
    """P10, median and P90 of per-station values; an infinite value sorts above every finite one (a
    quantile that falls on it is reported as ``None``)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    return {_q_name(q): _f(v[min(len(v) - 1, round(q * (len(v) - 1)))]) for q in (0.1, 0.5, 0.9)}


def _ratio(num, den) -> float | None:
    return _f(num / den) if den > 0 else None


def traffic_statistics(traffic: StationTraffic, channel: str | None = None) -> dict:
    """The statistics of the module docstring for one channel (the only one if ``channel`` is omitted)."""
    if channel is None:
        if traffic.n_channels != 1:
            raise DataError(f"give a channel: the data has {traffic.n_channels} channels {traffic.channels}")
        channel = traffic.channels[0]
    x = traffic.channel(channel).astype(np.float64)
    ts = traffic.timestamps
    n, t = x.shape
    out: dict = {"channel": channel, "n_stations": n, "n_steps": t, "step": str(traffic.step)}

    # Daily cycle (only meaningful with at most hourly steps).
    out |= {
        "peak_trough_ratio": None,
        "peak_hour": None,
        "trough_hour": None,
        "station_peak_trough": None,
    }
    if traffic.step <= pd.Timedelta("1h") and traffic.end - traffic.start >= pd.Timedelta("1D"):
        prof = daily_profile(x, ts)
        city = prof.mean(axis=0)
        if np.isfinite(city).all() and city.min() >= 0:
            out["peak_trough_ratio"] = _ratio(city.max(), city.min())
            out["peak_hour"] = int(np.argmax(city))
            out["trough_hour"] = int(np.argmin(city))
        with np.errstate(divide="ignore", invalid="ignore"):
            per = np.where(prof.min(axis=1) > 0, prof.max(axis=1) / prof.min(axis=1), np.inf)
        out["station_peak_trough"] = _spread(per)

    # Weekday vs weekend.
    _, dow = _local_calendar(ts)
    weekend = dow >= 5
    out["weekday_weekend_ratio"] = None
    out["station_weekday_weekend"] = None
    if weekend.any() and (~weekend).any():
        out["weekday_weekend_ratio"] = _ratio(x[:, ~weekend].mean(), x[:, weekend].mean())
        wd, we = x[:, ~weekend].mean(axis=1), x[:, weekend].mean(axis=1)
        ok = we > 0
        if ok.any():
            r = wd[ok] / we[ok]
            out["station_weekday_weekend"] = _spread(r)

    # Spatial heterogeneity.
    loads = x.mean(axis=1)
    out["top10_share"] = _f(top_share(loads))
    out["station_load"] = load_distribution(loads)
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = x.std(axis=1) / x.mean(axis=1)
    out["station_hourly_cv"] = _spread(cv[np.isfinite(cv)]) if np.isfinite(cv).any() else None
    out["share_zero"] = float((x == 0).mean())

    # Periodicity.
    for hours, need in ((24, 24 + 1), (168, 2 * 168)):
        key = f"acf_lag{hours}"
        out[key] = None
        out[f"station_{key}"] = None
        ratio = pd.Timedelta(hours=hours) / traffic.step
        if ratio != int(ratio):
            continue
        lag = int(ratio)
        if traffic.end - traffic.start < pd.Timedelta(hours=need) or lag >= t:
            continue
        r = autocorrelation(x, lag)
        if np.isfinite(r).any():
            out[key] = _f(np.nanmean(r))
            out[f"station_{key}"] = _spread(r[np.isfinite(r)])
    return out


# ------------------------------------------------------------------------------------------------------------
# Mobility


def _runs(row: np.ndarray) -> np.ndarray:
    """Lengths of the maximal runs of equal values in a 1-D array."""
    change = np.flatnonzero(row[1:] != row[:-1]) + 1
    edges = np.concatenate([[0], change, [len(row)]])
    return np.diff(edges)


def trajectory_statistics(
    locations: np.ndarray, lat: np.ndarray, lon: np.ndarray, *, steps_per_day: int, step_hours: float
) -> dict:
    """Mobility statistics of ``locations[u, t]`` (indices into ``lat``/``lon``), computed per user-day.

    Returns quantiles of jump lengths (km, over all jumps), of the daily radius of gyration (km), of the
    number of distinct locations per day, of stay durations (hours), the mean number of jumps per day, the
    share of user-days without a move and the share of steps spent at each user's two most visited
    locations over the whole period (home and work, typically).
    """
    loc = np.asarray(locations, dtype=np.int64)
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    u, t = loc.shape
    days = t // steps_per_day
    if days == 0:
        raise DataError(f"{t} steps is less than one day of {steps_per_day} steps")
    day = loc[:, : days * steps_per_day].reshape(u * days, steps_per_day)
    a, b = day[:, :-1], day[:, 1:]
    moved = a != b
    jumps = haversine_km(lat[a[moved]], lon[a[moved]], lat[b[moved]], lon[b[moved]])
    # Radius of gyration on a local tangent plane (km) around each user-day's centre of mass.
    xk, y = local_km(lat[day], lon[day], lat[day].mean(axis=1, keepdims=True), 0.0)
    rg = np.sqrt(((y - y.mean(1, keepdims=True)) ** 2 + (xk - xk.mean(1, keepdims=True)) ** 2).mean(axis=1))
    srt = np.sort(day, axis=1)
    distinct = 1 + (srt[:, 1:] != srt[:, :-1]).sum(axis=1)
    stays = np.concatenate([_runs(r) for r in day]) * step_hours
    # Share of the time at the two most visited locations of each user over the whole period.
    top2 = []
    for row in loc:
        c = np.sort(np.bincount(np.unique(row, return_inverse=True)[1]))[::-1]
        top2.append(c[:2].sum() / t)

    def qs(v, qq=(0.1, 0.25, 0.5, 0.75, 0.9)):
        return {_q_name(q): _f(np.quantile(v, q)) if len(v) else None for q in qq}

    return {
        "n_user_days": int(u * days),
        "jumps_per_day": _f(moved.sum(axis=1).mean()),
        "share_days_without_move": _f((moved.sum(axis=1) == 0).mean()),
        "jump_km": qs(jumps),
        "radius_of_gyration_km": qs(rg),
        "distinct_per_day": qs(distinct),
        "stay_hours": qs(stays),
        "top2_location_share": _f(np.mean(top2)),
    }


def mobility_statistics(mobility: UserMobility) -> dict:
    """:func:`trajectory_statistics` of a :class:`UserMobility` with station coordinates, per user-day,
    plus the number of distinct stations per user over the whole period."""
    st = mobility.stations
    if not st.has_coordinates:
        raise DataError("mobility statistics need station coordinates (lat/lon)", source=mobility.source)
    out = trajectory_statistics(
        mobility.locations,
        st.lat,
        st.lon,
        steps_per_day=mobility.steps_per("1D"),
        step_hours=mobility.step / pd.Timedelta("1h"),
    )
    srt = np.sort(mobility.locations, axis=1)
    distinct = 1 + (srt[:, 1:] != srt[:, :-1]).sum(axis=1)
    out["distinct_per_user"] = {_q_name(q): _f(np.quantile(distinct, q)) for q in (0.1, 0.5, 0.9)}
    return out


# ------------------------------------------------------------------------------------------------------------
# describe(): what `cellsynth data info` prints


def _value_stats(v: np.ndarray) -> dict:
    v = np.asarray(v, dtype=np.float64).ravel()
    qs = np.quantile(v, [0.01, 0.25, 0.5, 0.75, 0.99])
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "q01": float(qs[0]),
        "q25": float(qs[1]),
        "median": float(qs[2]),
        "q75": float(qs[3]),
        "q99": float(qs[4]),
        "max": float(v.max()),
        "share_zero": float((v == 0).mean()),
    }


def describe(data: StationTraffic | UserMobility) -> dict:
    """A JSON-ready summary of a dataset: shape, time span, step, channels, value statistics, repairs.

    For :class:`StationTraffic`: per-channel mean, std, min, quantiles, max, share of zeros, and the count
    and share of values a loader repaired (``data.repaired``; zero when the mask is ``None``).
    For :class:`UserMobility`: users, steps, distinct stations visited (in all and per user), user traffic
    statistics when present.
    """
    if not isinstance(data, (StationTraffic, UserMobility)):
        raise TypeError(f"cannot describe {type(data).__name__}; expected StationTraffic or UserMobility")
    common = {
        "n_steps": int(data.n_steps),
        "start": data.start.isoformat(),
        "end": data.end.isoformat(),
        "step": str(data.step),
        "n_stations": len(data.stations),
        "has_coordinates": bool(data.stations.has_coordinates),
        "feature_names": list(data.stations.feature_names),
        "source": data.source,
    }
    if isinstance(data, StationTraffic):
        rep = data.repaired
        per_channel = {}
        for j, name in enumerate(data.channels):
            stats = _value_stats(data.values[:, :, j])
            count = 0 if rep is None else int(rep[:, :, j].sum())
            stats["repaired_count"] = count
            stats["repaired_share"] = count / (data.n_stations * data.n_steps)
            per_channel[name] = stats
        total_rep = 0 if rep is None else int(rep.sum())
        return {
            "kind": "station_traffic",
            **common,
            "shape": list(data.values.shape),
            "channels": list(data.channels),
            "statistics": per_channel,
            "repaired_count": total_rep,
            "repaired_share": total_rep / data.values.size,
        }
    if isinstance(data, UserMobility):
        srt = np.sort(data.locations, axis=1)
        distinct = 1 + (srt[:, 1:] != srt[:, :-1]).sum(axis=1)
        return {
            "kind": "user_mobility",
            **common,
            "shape": list(data.locations.shape),
            "n_users": int(data.n_users),
            "distinct_stations_visited": len(np.unique(data.locations)),
            "distinct_stations_per_user": {
                "mean": float(distinct.mean()),
                "min": int(distinct.min()),
                "median": float(np.median(distinct)),
                "max": int(distinct.max()),
            },
            "has_traffic": data.has_traffic,
            "traffic": _value_stats(data.traffic) if data.traffic is not None else None,
        }
    raise TypeError(f"cannot describe {type(data).__name__}; expected StationTraffic or UserMobility")
