"""Hourly traffic of the city's stations (:func:`synthesize_traffic`; step 2 of
:mod:`cellsynth.data.synthetic`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.signal import lfilter
from scipy.spatial import cKDTree

from cellsynth.data.model import StationTraffic
from cellsynth.data.synthetic.config import CHANNELS, NIGHTLIFE, TRANSPORT, UNIVERSITY
from cellsynth.data.synthetic.layout import CityLayout
from cellsynth.data.synthetic.profiles import calendar, station_profiles

__all__ = ["synthesize_traffic"]

# Channel level multiplier by land use (rows LAND_USES, columns CHANNELS).
_CHANNEL_MIX = np.array(
    [
        [0.95, 1.35, 1.00],
        [1.10, 0.90, 1.05],
        [1.10, 0.80, 1.10],
        [1.25, 0.75, 1.00],
        [1.00, 1.10, 0.90],
    ]
)
# City-wide mean per station-hour of each channel, in the activity units of the Telecom Italia Milan data
# (the real Milan per-cell mean of internet is about 380 per hour).
_CHANNEL_SCALE = np.array([380.0, 45.0, 35.0])


def _ar1(rng, shape, phi: float) -> np.ndarray:
    """Unit-variance Gaussian AR(1) along the last axis (stationary from the first step)."""
    white = rng.standard_normal(shape)
    white[..., 1:] *= math.sqrt(1 - phi**2)
    return lfilter([1.0], [1.0, -phi], white, axis=-1)


def synthesize_traffic(
    layout: CityLayout, *, seed: int | None = None, weeks: int | None = None
) -> StationTraffic:
    """Hourly traffic ``[N, weeks * 168, 3]`` of the layout's stations (see the module docstring)."""
    cfg = layout.config
    weeks = cfg.weeks if weeks is None else weeks
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed if seed is None else seed, 2]))
    n, c = len(layout.load), len(CHANNELS)
    t = 168 * weeks
    hour, daytype, day = calendar(cfg.start, t, "1h")
    n_days = int(day.max()) + 1
    lu = layout.land_use

    shift = rng.normal(0.0, 0.35, n)
    profile = station_profiles(layout, hour, daytype, shift)
    # Station-specific night floor (machine traffic, always-on devices): varies the peak/trough ratio.
    floor = np.exp(rng.normal(math.log(0.05), 0.8, (n, 1, 1)))
    profile = (profile + floor) / (1.0 + floor)

    level = layout.load[:, None] * (lu @ _CHANNEL_MIX) * np.exp(rng.normal(0, 0.2, (n, c)))
    level *= _CHANNEL_SCALE / level.mean(axis=0)
    log_x = np.log(level)[:, None, :] + np.log(profile)

    # Slow variation: weekly per station, daily AR(1) per station, city-wide daily factor.
    week = np.minimum(np.arange(t) // 168, weeks - 1)
    log_x += 0.06 * rng.standard_normal((n, weeks, 1))[:, week]
    daily = 0.08 * _ar1(rng, (n, n_days), 0.6) + 0.04 * rng.standard_normal(n_days)[None, :]
    log_x += daily[:, day][:, :, None]
    # Hourly noise: log-AR(1), partly shared across channels, larger at quieter stations.
    sigma = cfg.noise * np.exp(rng.normal(0, 0.3, n)) * np.clip(layout.load, 0.05, None) ** -0.12
    common = _ar1(rng, (n, t), 0.5)
    own = _ar1(rng, (n, c, t), 0.5).transpose(0, 2, 1)
    log_x += sigma[:, None, None] * (0.7 * common[:, :, None] + 0.714 * own)
    # Spikes: isolated heavy-tailed single-hour bursts.
    spikes = rng.random((n, t, c)) < 0.002
    log_x[spikes] += np.log1p(np.minimum(rng.lognormal(0.0, 0.6, int(spikes.sum())), 20.0))
    log_x += np.minimum(_events(rng, layout, t, cfg.burst_rate * weeks), math.log(30.0))

    x = np.exp(log_x)
    # Outages: whole station silent for 1-24 hours.
    n_out = rng.poisson(cfg.outage_rate * weeks * n)
    if n_out:
        st = rng.integers(0, n, n_out)
        t0 = rng.integers(0, t, n_out)
        dur = np.minimum(rng.geometric(0.25, n_out), 24)
        for i, a, d in zip(st, t0, dur, strict=True):
            x[i, a : a + d] = 0.0
    return StationTraffic(
        values=x.astype(np.float32),
        start=cfg.start,
        step=pd.Timedelta("1h"),
        channels=CHANNELS,
        stations=layout.stations,
        source="synthetic city",
    )


def _events(rng, layout: CityLayout, t: int, rate_per_station: float) -> np.ndarray:
    """Log-multipliers ``[N, T, C]`` of local events (concerts, fairs, incidents): a burst of 1-12 hours
    at a station, half as strong (in log) at its two nearest neighbours. Nightlife and transport stations
    host more of them."""
    n = len(layout.load)
    out = np.zeros((n, t, len(CHANNELS)))
    lu = layout.land_use
    rate = 0.4 + 2.0 * lu[:, NIGHTLIFE] + 1.5 * lu[:, TRANSPORT] + 0.8 * lu[:, UNIVERSITY]
    rate = rate / rate.mean() * rate_per_station
    count = rng.poisson(rate)
    m = int(count.sum())
    if m == 0:
        return out
    st = np.repeat(np.arange(n), count)
    t0 = rng.integers(0, t, m)
    dur = np.minimum(rng.geometric(0.35, m), 12)
    amp = np.log1p(np.minimum(0.6 * (rng.pareto(1.8, m) + 0.3), 20.0))
    chan = np.array([1.0, 0.6, 0.8])
    xy = np.stack([layout.x_km, layout.y_km], axis=1)
    k = min(3, n)
    nb = cKDTree(xy).query(xy[st], k=k)[1]
    for j, scale in enumerate((1.0, 0.5, 0.5)[:k]):
        rows = np.repeat(nb[:, j], dur)
        starts = np.repeat(t0, dur)
        offs = np.arange(int(dur.sum())) - np.repeat(np.cumsum(dur) - dur, dur)
        cols = np.minimum(starts + offs, t - 1)
        vals = np.repeat(amp * scale, dur)
        np.add.at(out, (rows, cols), vals[:, None] * chan[None, :])
    return out
