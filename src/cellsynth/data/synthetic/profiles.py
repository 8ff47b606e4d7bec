"""Hour-of-day activity profiles of each land use and traffic channel by day type (Mon-Thu, Fri, Sat, Sun),
the calendar of a time axis, and each station's expected profile from its land-use mix. Station traffic and
users' traffic are both shaped by them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellsynth.data.synthetic.config import (
    BUSINESS,
    CHANNELS,
    LAND_USES,
    NIGHTLIFE,
    RESIDENTIAL,
    TRANSPORT,
    UNIVERSITY,
)
from cellsynth.data.synthetic.layout import CityLayout

__all__ = ["bump", "calendar", "station_profiles"]


def bump(h: np.ndarray, mu: float, width: float) -> np.ndarray:
    d = (h - mu + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / width) ** 2)


# (base, [(amplitude, hour, width)...]) per land use and day type (0 Mon-Thu, 1 Fri, 2 Sat, 3 Sun).
_WEEKDAY_B = (0.05, [(1.0, 10.5, 2.0), (0.95, 15.5, 2.2), (0.35, 19.5, 1.6)])
_WEEKDAY_R = (0.06, [(0.45, 8.0, 1.3), (0.45, 13.0, 2.8), (1.0, 21.5, 2.5)])
_ACTIVITY = {
    BUSINESS: [
        _WEEKDAY_B,
        _WEEKDAY_B,
        (0.05, [(0.45, 12.5, 3.0), (0.25, 20.0, 2.5)]),
        (0.05, [(0.3, 13.0, 3.0)]),
    ],
    RESIDENTIAL: [
        _WEEKDAY_R,
        _WEEKDAY_R,
        (0.07, [(0.75, 12.0, 3.0), (1.0, 21.0, 2.6)]),
        (0.07, [(0.7, 12.5, 3.2), (1.05, 20.5, 2.6)]),
    ],
    NIGHTLIFE: [
        (0.06, [(0.35, 13.0, 2.0), (0.9, 21.5, 2.2)]),
        (0.07, [(0.35, 13.0, 2.0), (1.2, 22.5, 2.4)]),
        (0.08, [(0.5, 14.0, 3.0), (1.5, 23.0, 2.6)]),
        (0.08, [(0.6, 14.0, 3.0), (0.7, 21.0, 2.5)]),
    ],
    UNIVERSITY: [
        (0.04, [(1.0, 11.0, 2.2), (0.75, 15.0, 2.0), (0.35, 20.5, 2.0)]),
        (0.04, [(0.9, 11.0, 2.2), (0.5, 15.0, 2.0), (0.3, 21.0, 2.0)]),
        (0.04, [(0.25, 14.0, 3.0), (0.25, 21.0, 2.0)]),
        (0.04, [(0.2, 14.0, 3.0), (0.25, 21.0, 2.0)]),
    ],
    TRANSPORT: [
        (0.04, [(1.0, 8.0, 1.1), (0.5, 13.0, 3.0), (1.0, 18.0, 1.4)]),
        (0.04, [(0.9, 8.0, 1.1), (0.55, 13.0, 3.0), (1.05, 18.0, 1.6)]),
        (0.04, [(0.6, 12.0, 3.5), (0.55, 18.5, 2.5)]),
        (0.04, [(0.5, 12.5, 3.5), (0.6, 18.5, 2.5)]),
    ],
}
# Channel propensity by hour (per active person), day types as above: (base, bumps), weekend factor.
_PROPENSITY = {
    0: (0.60, [(0.15, 13.0, 3.0), (0.55, 21.5, 2.6)]),  # internet: evening peak
    1: (0.20, [(1.0, 11.0, 2.2), (0.9, 17.5, 2.4)]),  # call: working hours
    2: (0.60, [(0.35, 12.0, 4.0), (0.30, 20.0, 3.0)]),  # sms: flatter
}
_PROPENSITY_WEEKEND = np.array([1.1, 0.75, 0.95])

_PROFILE_RES = 10  # profile grid points per hour


def _profile_table() -> np.ndarray:
    """Activity x propensity on a fine grid: ``[kind, channel, day type, 24 * res]``, mean 1 over a week."""
    h = (np.arange(24 * _PROFILE_RES) + 0.5) / _PROFILE_RES
    out = np.zeros((len(LAND_USES), len(CHANNELS), 4, len(h)))
    days_per_type = np.array([4, 1, 1, 1])
    for k, per_day in _ACTIVITY.items():
        for c, (pbase, pbumps) in _PROPENSITY.items():
            for dt, (base, bumps) in enumerate(per_day):
                act = base + sum(a * bump(h, mu, w) for a, mu, w in bumps)
                prop = pbase + sum(a * bump(h, mu, w) for a, mu, w in pbumps)
                if dt >= 2:
                    prop = prop * _PROPENSITY_WEEKEND[c]
                out[k, c, dt] = act * prop
            weekly = (out[k, c].mean(axis=1) * days_per_type).sum() / 7
            out[k, c] /= weekly
    return out


_PROFILES = _profile_table()


def calendar(start: pd.Timestamp, periods: int, step: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local hour (float), day type (0 Mon-Thu, 1 Fri, 2 Sat, 3 Sun) and day index of each step."""
    ts = pd.date_range(start, periods=periods, freq=step)
    hour = np.asarray(ts.hour + ts.minute / 60.0, dtype=np.float64)
    dow = np.asarray(ts.day_of_week)
    daytype = np.select([dow <= 3, dow == 4, dow == 5], [0, 1, 2], 3)
    day = np.asarray((ts.normalize() - ts[0].normalize()).days)
    return hour, daytype, day


def station_profiles(layout: CityLayout, hour, daytype, shift: np.ndarray, channels=(0, 1, 2)) -> np.ndarray:
    """Expected profile ``[N, T, len(channels)]`` (mean about 1 over a week) from the land-use mix, each
    station's hours shifted by ``shift`` (hours)."""
    res = 24 * _PROFILE_RES
    h = (hour[None, :] + 0.5 - shift[:, None]) % 24.0
    flat = daytype[None, :] * res + np.minimum((h * _PROFILE_RES).astype(np.int64), res - 1)
    out = np.zeros((len(channels), *flat.shape))
    for k in range(len(LAND_USES)):
        w = layout.land_use[:, k]
        if not (w > 1e-6).any():
            continue
        table = _PROFILES[k][list(channels)].reshape(len(channels), 4 * res)
        for j in range(len(channels)):
            out[j] += w[:, None] * table[j][flat]
    return out.transpose(1, 2, 0)
