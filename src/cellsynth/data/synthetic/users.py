"""Users moving between the city's stations, with their traffic (:func:`synthesize_users`; step 3 of
:mod:`cellsynth.data.synthetic`)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from cellsynth.data.model import UserMobility
from cellsynth.data.synthetic.config import POI_CATEGORIES, UNIVERSITY
from cellsynth.data.synthetic.layout import CityLayout, sample_categorical
from cellsynth.data.synthetic.profiles import bump, calendar, station_profiles

__all__ = ["synthesize_users"]

_USER_MAX_MB = 8000.0


def _gravity_choice(
    rng, origin_xy, dest_xy, attract, d0: float, power: float, chunk: int = 512
) -> np.ndarray:
    """For each origin, a destination drawn with probability ~ attract_j * (d_ij + d0)^-power."""
    out = np.empty(len(origin_xy), dtype=np.int64)
    for a in range(0, len(origin_xy), chunk):
        o = origin_xy[a : a + chunk]
        d = np.sqrt(((o[:, None, :] - dest_xy[None, :, :]) ** 2).sum(axis=2))
        w = attract[None, :] * (d + d0) ** -power
        out[a : a + chunk] = sample_categorical(rng, w)
    return out


def synthesize_users(
    layout: CityLayout, *, n_users: int | None = None, seed: int | None = None
) -> UserMobility:
    """Users at 30-minute steps over ``config.user_weeks`` weeks: locations and per-step traffic (MB)."""
    cfg = layout.config
    u = cfg.n_users if n_users is None else n_users
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed if seed is None else seed, 3]))
    t = 336 * cfg.user_weeks
    hour, daytype, _ = calendar(cfg.start, t, "30min")
    feats = layout.stations.features.astype(np.float64)
    col = {c: j for j, c in enumerate(POI_CATEGORIES)}
    xy = np.stack([layout.x_km, layout.y_km], axis=1)
    n = len(xy)
    tree = cKDTree(xy)

    # Anchors: home by residents, work/study by jobs/places with a gravity law on distance.
    residents = feats[:, col["residential"]] + 0.2 * feats.sum(axis=1) + 0.5
    home = rng.choice(n, size=u, p=residents / residents.sum())
    jobs = (
        feats[:, col["office"]] * 3
        + feats[:, col["shop"]]
        + feats[:, col["restaurant"]]
        + feats[:, col["health"]]
        + feats[:, col["hotel"]]
        + feats[:, col["transport"]]
        + feats[:, col["education"]] * 0.5
        + 0.1
    )
    schools = feats[:, col["education"]] * (0.2 + layout.land_use[:, UNIVERSITY]) + 0.01
    role = rng.choice(3, size=u, p=[0.62, 0.13, 0.25])  # worker, student, neither
    work = np.full(u, -1, dtype=np.int64)
    for r, attract in ((0, jobs), (1, schools)):
        sel = np.flatnonzero(role == r)
        if len(sel):
            work[sel] = _gravity_choice(rng, xy[home[sel]], xy, attract, d0=1.0, power=1.3)
    has_work = work >= 0
    attract_all = feats.sum(axis=1) + 1.0

    # Personal schedule (in half-hour steps of the day).
    depart = np.clip(np.round(rng.normal(np.where(role == 1, 17.5, 16.0), 1.5)), 10, 22).astype(int)
    dur = np.clip(np.round(rng.normal(np.where(role == 1, 13, 17), 2.0)), 6, 22).astype(int)
    sleep = np.clip(np.round(rng.normal(46, 2.0, u)), 40, 52).astype(int)  # 52 = 02:00 next day
    wake = np.clip(np.round(rng.normal(14, 1.5, u)), 10, 20).astype(int)
    works_saturday = rng.random(u) < 0.1
    rho = 0.6 * np.exp(rng.normal(0, 0.3, u))  # EPR exploration propensity
    gamma = 0.21
    out_rate = 0.06 * np.exp(rng.normal(0, 0.5, u))  # excursions per free step at home

    m = 64
    mem_loc = np.full((u, m), -1, dtype=np.int64)
    mem_cnt = np.zeros((u, m))
    mem_loc[:, 0] = home
    mem_cnt[:, 0] = 1.0
    mem_loc[has_work, 1] = work[has_work]
    mem_cnt[has_work, 1] = 1.0
    n_mem = np.where(has_work, 2, 1)

    loc = np.empty((u, t), dtype=np.int64)
    cur = home.copy()
    stay = np.zeros(u, dtype=np.int64)  # steps left on the current excursion (0 = at an anchor)
    users = np.arange(u)
    for s in range(t):
        slot = round(hour[s] * 2)
        dt = daytype[s]
        workday = (dt <= 1) | (works_saturday & (dt == 2))
        at_work_time = has_work & workday & (slot >= depart) & (slot < depart + dur)
        # Night at home: from `sleep` (later on Friday and Saturday nights) to `wake` (later at weekends).
        bed = sleep + (3 if dt in (1, 2) else 0)
        prev_bed = sleep + (3 if dt in (2, 3) else 0) - 48  # > 0: still out after midnight
        up = wake + (3 if dt >= 2 else 0)
        night = ((slot < up) & (slot >= prev_bed)) | (slot >= bed)
        anchor = np.where(at_work_time, work, home)
        # Excursions in progress tick down; the anchor pulls the user back when they end or at night.
        on_trip = stay > 0
        stay = np.maximum(stay - 1, 0)
        back = on_trip & ((stay == 0) | (night & (rng.random(u) < 0.5)))
        chain = back & ~night & (rng.random(u) < 0.25)
        nxt = np.where(on_trip & ~back, cur, anchor)
        # New excursions from the anchor.
        hr = hour[s]
        free = out_rate * (1.6 if dt >= 2 else 1.0) * (0.25 if hr < 7 else 0.6 if hr >= 22 else 1.0)
        lunch = 0.025 + 0.12 * (12 <= hr < 14)
        p_out = np.where(night, 0.002, np.where(at_work_time, lunch, free))
        start = ((~on_trip | back) & (rng.random(u) < p_out)) | chain
        if start.any():
            who = users[start]
            origin = np.where(chain[who], cur[who], nxt[who])
            dest = _epr_destination(
                rng, who, origin, xy, tree, attract_all, mem_loc, mem_cnt, n_mem, rho, gamma
            )
            nxt[who] = dest
            # Stay durations (steps): truncated power law (Song et al.: P(dt) ~ dt^-1.8), 1 to 16 steps.
            stay[who] = np.minimum(np.ceil(rng.random(len(who)) ** (-1 / 0.8)), 16).astype(np.int64)
            stay[who] = np.where(at_work_time[who], np.minimum(stay[who], 3), stay[who])
        # Commutes: a long home<->work move passes through a station on the way for one step, sometimes.
        moving = (nxt != cur) & (nxt == anchor) & ~on_trip & has_work
        if moving.any():
            dist = np.sqrt(((xy[nxt] - xy[cur]) ** 2).sum(axis=1))
            via = moving & (dist > 4.0) & (rng.random(u) < 0.5)
            if via.any():
                f = rng.uniform(0.3, 0.7, int(via.sum()))[:, None]
                mid = xy[cur[via]] * (1 - f) + xy[nxt[via]] * f
                nxt_via = tree.query(mid)[1]
                nxt[via] = nxt_via
                stay[via] = 1
        cur = nxt
        loc[:, s] = cur

    # Observation: occasionally served by a neighbouring cell (handover, load balancing).
    obs = loc.copy()
    if cfg.handover > 0 and n > 3:
        nb = tree.query(xy, k=4)[1][:, 1:]
        ho = rng.random((u, t)) < cfg.handover
        obs[ho] = nb[loc[ho], rng.integers(0, 3, int(ho.sum()))]

    traffic = _user_traffic(rng, layout, obs, hour, daytype, u, t)
    width = max(4, len(str(u)))
    return UserMobility(
        locations=obs,
        start=cfg.start,
        step=pd.Timedelta("30min"),
        stations=layout.stations,
        traffic=traffic,
        user_ids=tuple(f"U{i + 1:0{width}d}" for i in range(u)),
        source="synthetic city",
    )


def _epr_destination(rng, who, origin, xy, tree, attract, mem_loc, mem_cnt, n_mem, rho, gamma) -> np.ndarray:
    """Exploration and preferential return (Song et al. 2010): explore a new place with probability
    rho * S^-gamma (S = distinct places visited), at a truncated power-law distance (P(r) ~ (r + r0)^-1.75,
    r0 = 0.6 km) from the origin, choosing among the 6 stations nearest the target by attractiveness; else
    return to a known place (not the current one) with probability proportional to past visits."""
    k = len(who)
    explore = rng.random(k) < rho[who] * n_mem[who].astype(float) ** -gamma
    dest = np.empty(k, dtype=np.int64)
    ex = np.flatnonzero(explore)
    if len(ex):
        r = 0.6 * (rng.random(len(ex)) ** (-1 / 0.75) - 1.0)
        r = np.minimum(r, 30.0)
        a = rng.uniform(0, 2 * math.pi, len(ex))
        target = xy[origin[ex]] + np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
        kk = min(6, len(xy))
        cand = tree.query(target, k=kk)[1].reshape(len(ex), kk)
        pick = sample_categorical(rng, attract[cand])
        dest[ex] = cand[np.arange(len(ex)), pick]
    ret = np.flatnonzero(~explore)
    if len(ret):
        rows = who[ret]
        w = mem_cnt[rows] * (mem_loc[rows] != origin[ret][:, None]) * (mem_loc[rows] >= 0)
        none = w.sum(axis=1) <= 0
        w[none, 0] = 1.0  # nowhere else known: go home
        j = sample_categorical(rng, w)
        dest[ret] = np.where(none, mem_loc[rows, 0], mem_loc[rows, j])
    # Update the visit memory (new places take a free slot; a full memory forgets its rarest place).
    for i, d in zip(who, dest, strict=True):
        hit = np.flatnonzero(mem_loc[i, : n_mem[i]] == d)
        if len(hit):
            mem_cnt[i, hit[0]] += 1.0
        else:
            slot = n_mem[i] if n_mem[i] < mem_loc.shape[1] else 2 + int(np.argmin(mem_cnt[i, 2:]))
            mem_loc[i, slot] = d
            mem_cnt[i, slot] = 1.0
            n_mem[i] = min(n_mem[i] + 1, mem_loc.shape[1])
    return dest


def _user_traffic(rng, layout: CityLayout, loc, hour, daytype, u: int, t: int) -> np.ndarray:
    """Per-step traffic (MB per 30 min): active (zero-inflated by hour) x user intensity x hour profile x
    location factor x lognormal burst, plus rare heavy (Pareto) sessions."""
    n = len(layout.load)
    prof = station_profiles(layout, hour, daytype, np.zeros(n), channels=(0,))[:, :, 0]  # internet
    hour_act = 0.08 + 0.62 * (0.35 * bump(hour, 13.0, 3.0) + bump(hour, 21.0, 2.8)).clip(0, 1)
    active = rng.random((u, t)) < hour_act[None, :]
    intensity = rng.lognormal(math.log(4.0), 0.9, u)
    where = prof[loc, np.arange(t)[None, :]] ** 0.5
    burst = rng.lognormal(0.0, 1.1, (u, t))
    heavy = rng.random((u, t)) < 0.02
    burst[heavy] += 10.0 * (np.minimum(rng.pareto(1.3, int(heavy.sum())), 50.0) + 1.0)
    traffic = active * intensity[:, None] * where * burst
    # A radio link carries at most about _USER_MAX_MB in 30 minutes (about 35 Mbit/s sustained).
    return np.minimum(traffic, _USER_MAX_MB).astype(np.float32)
