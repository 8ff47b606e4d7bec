r"""TimeGEO's parameters estimated from training trajectories (Jiang et al., PNAS 2016); numpy and scipy only.

Every user's trajectory is a station per step. On the training axis, with ``P(t)`` the population's weekly
rhythm per step (``sum_t P(t) = 1`` over the steps of a week), a user with anchor ``A_t`` (home; work during
a commuter's work window) moves from step ``t`` to ``t + 1`` by TimeGEO's temporal model:

.. code-block:: text

    at the anchor:   leave for an "other" place      with  n_w P(t)
    at "other":      take a trip                     with  beta1 n_w P(t)
                     ... to another "other" place    with  beta1 n_w P(t) * beta2 n_w P(t)
                     ... back to the anchor          with  beta1 n_w P(t) * (1 - beta2 n_w P(t))

Each user's ``n_w`` (weekly home-based tour number), ``beta1`` (dwell rate) and ``beta2`` (burst rate) are
the maximum-likelihood values of this model on the user's own steps (:func:`rate_mle`); the commute moves
(into and out of the work window) are not part of it and are left out. The spatial model (r-EPR): a trip to
"other" explores a new place with ``P_new = rho S^-gamma`` (``S`` places visited so far), choosing the
unvisited station of distance rank ``k`` from the current one with weight ``k^-alpha``; else it returns to
a visited place with probability proportional to its visits. ``rho``, ``gamma`` and ``alpha`` are
maximum-likelihood values over all users' trips (:func:`fit_exploration`, :func:`fit_rank_exponent`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize, minimize_scalar

__all__ = [
    "Anchors",
    "Transitions",
    "anchor_steps",
    "day_positions",
    "distance_ranks",
    "exploration_events",
    "fit_exploration",
    "fit_rank_exponent",
    "fit_rates",
    "infer_anchors",
    "rate_mle",
    "transitions",
    "weekly_rhythm",
]


@dataclass(frozen=True)
class Anchors:
    """Per user: ``home [U]``, ``work [U]`` (-1: not a commuter) and the observed work windows, one row per
    (user, day at work): ``window_user [K]``, ``window_day [K]`` (index among the data's days),
    ``window_first [K]``, ``window_last [K]`` (steps of the day, inclusive)."""

    home: np.ndarray
    work: np.ndarray
    window_user: np.ndarray
    window_day: np.ndarray
    window_first: np.ndarray
    window_last: np.ndarray


def day_positions(day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(day_index [T], step_of_day [T])``: each step's day among the data's days, and its step in that day."""
    _, day_index = np.unique(day, return_inverse=True)
    first_of_day = np.searchsorted(day_index, np.arange(day_index.max() + 1))
    return day_index, np.arange(len(day)) - first_of_day[day_index]


def infer_anchors(
    locations: np.ndarray,
    hour: np.ndarray,
    day: np.ndarray,
    weekday: np.ndarray,
    distance_from: Callable[[int], np.ndarray],
    *,
    night: tuple[int, int],
    work_hours: tuple[int, int],
    work_min_days: int,
    work_min_km: float,
) -> Anchors:
    """Home: the station where the user spends most steps at night (``hour >= night[0]`` or ``< night[1]``;
    all steps if the data has no night). Work: of the stations at least ``work_min_km`` from home, the one
    the user is at during ``work_hours`` on the most distinct weekdays, if at least ``work_min_days``.
    A commuter's work window on a day (a day at work in work hours) runs from the first step at work to the
    step before the user is next home after the last one (the day's last step if not home again that day).
    Ties go to the lower station index."""
    loc = np.asarray(locations, dtype=np.int64)
    u, t = loc.shape
    n = len(distance_from(0))
    at_night = (hour >= night[0]) | (hour < night[1])
    mask = at_night if at_night.any() else np.ones(t, dtype=bool)
    counts = np.zeros((u, n), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(u), mask.sum()), loc[:, mask].ravel()), 1)
    home = counts.argmax(axis=1)

    in_work_hours = weekday & (hour >= work_hours[0]) & (hour < work_hours[1])
    day_index, step_of_day = day_positions(day)
    n_days = int(day_index.max()) + 1
    work = np.full(u, -1, dtype=np.int64)
    rows: list[tuple[int, int, int, int]] = []
    for i in range(u):
        present = np.zeros((n, n_days), dtype=bool)
        present[loc[i, in_work_hours], day_index[in_work_hours]] = True
        days_at = present.sum(axis=1)
        days_at[distance_from(int(home[i])) < work_min_km] = 0  # too close to home (home itself included)
        best = int(days_at.argmax())
        if days_at[best] < work_min_days:
            continue
        work[i] = best
        for d in np.flatnonzero(present[best]):
            today = np.flatnonzero(day_index == d)
            at_work = today[loc[i, today] == best]
            # The window lasts until the user is next home that day (or to the day's end): in the model a
            # work-based tour still under way when the window closes ends with the commute home, so the
            # "other" places between the last step at work and home belong to the window.
            after = today[(today > at_work[-1]) & (loc[i, today] == home[i])]
            last = after[0] - 1 if len(after) else today[-1]
            rows.append((i, int(d), int(step_of_day[at_work[0]]), int(step_of_day[last])))
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 4)
    return Anchors(home, work, *table.T)


def anchor_steps(anchors: Anchors, day: np.ndarray) -> np.ndarray:
    """``[U, T]``: each step's anchor on the training axis: work inside an observed work window, else home."""
    day_index, step_of_day = day_positions(day)
    out = np.repeat(anchors.home[:, None], len(day), axis=1)
    for user, d, first, last in zip(
        anchors.window_user, anchors.window_day, anchors.window_first, anchors.window_last, strict=True
    ):
        out[user, (day_index == d) & (step_of_day >= first) & (step_of_day <= last)] = anchors.work[user]
    return out


@dataclass(frozen=True)
class Transitions:
    """The moves of the temporal model, as flat arrays over (user, step ``k``) pairs with the decision at
    ``k``: ``user``, ``step`` and the kind of each: ``0`` stayed at the anchor, ``1`` left the anchor for
    "other", ``2`` stayed at "other", ``3`` "other" -> another "other", ``4`` "other" -> the anchor.
    Commutes (the anchor changes between ``k`` and ``k + 1``) are left out."""

    user: np.ndarray
    step: np.ndarray
    kind: np.ndarray

    def of(self, kinds: tuple[int, ...]) -> np.ndarray:
        return np.isin(self.kind, kinds)


def transitions(locations: np.ndarray, anchor: np.ndarray) -> Transitions:
    """Classify every move ``k -> k + 1`` of ``locations [U, T]`` against the anchors ``[U, T]``."""
    loc = np.asarray(locations, dtype=np.int64)
    here, there = loc[:, :-1], loc[:, 1:]
    same_anchor = anchor[:, :-1] == anchor[:, 1:]
    at_anchor = here == anchor[:, :-1]
    moved = here != there
    kind = np.where(
        at_anchor,
        np.where(moved, 1, 0),
        np.where(~moved, 2, np.where(there == anchor[:, 1:], 4, 3)),
    )
    user, step = np.nonzero(same_anchor)
    return Transitions(user, step, kind[user, step])


def weekly_rhythm(
    trips: Transitions, slot: np.ndarray, n_slots: int, exposure: np.ndarray | None = None
) -> np.ndarray:
    r"""``P(t)`` ``[n_slots]``: the population's trips (kinds 1, 3, 4) at each step of the week per unit of
    exposure there, normalised to sum 1: ``P(t) = r_t / sum_t' r_t'``, ``r_t = trips at t / sum of exposure
    at t`` over every classified move. With ``exposure`` None every move weighs 1 (the trips' share per
    occurrence of ``t``, the paper's empirical rhythm); with each move's rate multiplier (``n_w`` at the
    anchor, ``beta1 n_w`` at "other") it is the maximum-likelihood rhythm given the users' rates (Poisson
    approximation), which does not confuse who is where at ``t`` with when people move."""
    moving = trips.of((1, 3, 4))
    weight = np.ones(len(trips.kind)) if exposure is None else np.asarray(exposure, dtype=np.float64)
    at = slot[trips.step]
    counts = np.bincount(at[moving], minlength=n_slots).astype(np.float64)
    exposed = np.bincount(at, weights=weight, minlength=n_slots)
    rate = np.divide(counts, exposed, out=np.zeros(n_slots), where=exposed > 0)
    total = rate.sum()
    return rate / total if total > 0 else np.full(n_slots, 1.0 / n_slots)


def fit_rates(
    trips: Transitions, slot: np.ndarray, n_slots: int, n_users: int, iterations: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """``(rhythm [n_slots], rates [U, 3])``, ``rates`` = ``(n_w, beta1 n_w, beta2 n_w)`` per user (NaN where
    a user has no event of a kind), by alternating: the rhythm given the rates (:func:`weekly_rhythm`, the
    first pass with equal weights), then each user's rates given the rhythm (:func:`rate_mle`, bounded by
    ``1 / max P``), ``iterations`` times."""
    rhythm = weekly_rhythm(trips, slot, n_slots)
    order = np.argsort(trips.user, kind="stable")
    bounds = np.searchsorted(trips.user[order], np.arange(n_users + 1))
    rates = np.full((n_users, 3), np.nan)
    for _ in range(iterations):
        p = rhythm[slot[trips.step]]
        upper = 1.0 / rhythm.max()
        for i in range(n_users):
            rows = order[bounds[i] : bounds[i + 1]]
            kind, pi = trips.kind[rows], p[rows]
            rates[i, 0] = rate_mle(pi[kind == 1], pi[kind == 0], upper)
            rates[i, 1] = rate_mle(pi[(kind == 3) | (kind == 4)], pi[kind == 2], upper)
            rates[i, 2] = rate_mle(pi[kind == 3], pi[kind == 4], upper)
        a, b = np.nan_to_num(rates[:, 0]), np.nan_to_num(rates[:, 1])
        exposure = np.where(np.isin(trips.kind, (0, 1)), a[trips.user], b[trips.user])
        rhythm = weekly_rhythm(trips, slot, n_slots, exposure)
    return rhythm, rates


def rate_mle(success: np.ndarray, failure: np.ndarray, upper: float) -> float:
    r"""The maximum-likelihood ``x`` in ``[0, upper]`` of independent events with probability ``x p_i``:

    .. math::  \ell(x) = \sum_{s} \log(x p_s) + \sum_{f} \log(1 - x p_f),\qquad
               \ell'(x) = n_s / x - \sum_f p_f / (1 - x p_f)

    ``success``/``failure``: the ``p`` of each event (``x p`` must stay <= 1, hence ``upper = 1 / max p``).
    ``\ell'`` decreases, so the root is unique: 0 without successes, ``upper`` without failures (or when
    ``\ell'`` is still positive there), else found by Brent's method. NaN with no event at all."""
    n_s = len(success)
    if n_s == 0:
        return 0.0 if len(failure) else float("nan")
    if len(failure) == 0:
        return float(upper)
    fail = np.asarray(failure, dtype=np.float64)

    def slope(x: float) -> float:
        return n_s / x - float(np.sum(fail / (1.0 - x * fail)))

    top = upper * (1 - 1e-9)
    if slope(top) >= 0:
        return float(upper)
    return float(brentq(slope, upper * 1e-12, top, xtol=1e-12 * upper, rtol=1e-10))


def exploration_events(
    locations: np.ndarray, trips: Transitions
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every trip to an "other" place (kinds 1 and 3): ``(visited_before [E], new [E], origin [E],
    destination [E])``, ``visited_before`` = ``S``, the distinct stations of the user up to the trip's step,
    ``new`` whether the destination is not among them."""
    loc = np.asarray(locations, dtype=np.int64)
    to_other = trips.of((1, 3))
    user, step = trips.user[to_other], trips.step[to_other]
    order = np.lexsort((step, user))
    user, step = user[order], step[order]
    visited = np.zeros(len(user), dtype=np.int64)
    new = np.zeros(len(user), dtype=bool)
    for i in np.unique(user):
        rows = np.flatnonzero(user == i)
        path = loc[i]
        first_seen = {}
        for k, station in enumerate(path):
            first_seen.setdefault(int(station), k)
        seen_at = np.array(sorted(first_seen.values()))
        for r in rows:
            k = step[r]
            visited[r] = np.searchsorted(seen_at, k, side="right")
            new[r] = first_seen[int(path[k + 1])] == k + 1
    return visited, new, loc[user, step], loc[user, step + 1]


def fit_exploration(visited: np.ndarray, new: np.ndarray) -> tuple[float, float]:
    r"""``(rho, gamma)`` maximising :math:`\sum_{new} \log(\rho S^{-\gamma}) + \sum_{return}
    \log(1 - \rho S^{-\gamma})` over ``0 < rho <= 1``, ``0 <= gamma <= 5`` (``rho S^-gamma`` <= 1 for every
    ``S >= 1``). Without any return: ``(1, 0)``; without any exploration: ``(0, 0)``."""
    s = np.asarray(visited, dtype=np.float64)
    new = np.asarray(new, dtype=bool)
    if len(s) == 0 or new.all():
        return 1.0, 0.0
    if not new.any():
        return 0.0, 0.0
    log_s = np.log(s)

    def loss(params: np.ndarray) -> float:
        log_rho, gamma = params
        log_p = log_rho - gamma * log_s
        p = np.exp(log_p)
        return -float(np.sum(log_p[new]) + np.sum(np.log1p(-np.minimum(p[~new], 1 - 1e-12))))

    start = np.array([np.log(max(new.mean(), 1e-3)), 0.0])
    best = minimize(loss, start, method="L-BFGS-B", bounds=[(np.log(1e-6), 0.0), (0.0, 5.0)])
    return float(np.exp(best.x[0])), float(best.x[1])


def distance_ranks(distance_from: Callable[[int], np.ndarray], origin: int) -> np.ndarray:
    """``int64 [N]``: each station's rank by distance from ``origin`` (1 = nearest other station; ties by
    index; the origin itself gets 0)."""
    distances = distance_from(origin)
    order = np.argsort(distances, kind="stable")
    order = order[order != origin]
    ranks = np.zeros(len(distances), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks


def fit_rank_exponent(
    locations: np.ndarray, trips: Transitions, new: np.ndarray, distance_from: Callable[[int], np.ndarray]
) -> float:
    r"""``alpha`` in ``[0, 5]`` maximising the likelihood of the explorations' destinations: from ``i`` the
    unvisited station ``j`` is chosen with ``r_j^{-alpha} / sum_{m unvisited} r_m^{-alpha}``, ``r`` the ranks
    of :func:`distance_ranks` (the normaliser is the sum over all ranks less the user's visited stations).
    1.0 when no exploration was seen."""
    loc = np.asarray(locations, dtype=np.int64)
    to_other = trips.of((1, 3))
    user, step = trips.user[to_other], trips.step[to_other]
    order = np.lexsort((step, user))
    user, step = user[order][new], step[order][new]
    if len(user) == 0:
        return 1.0
    n = len(distance_from(0))
    all_ranks = np.log(np.arange(1, n, dtype=np.float64))
    chosen, visited_logs = [], []
    cache: dict[int, np.ndarray] = {}
    for i, k in zip(user, step, strict=True):
        origin = int(loc[i, k])
        if origin not in cache:
            cache[origin] = distance_ranks(distance_from, origin)
        ranks = cache[origin]
        seen = np.unique(loc[i, : k + 1])
        seen = seen[seen != origin]
        chosen.append(np.log(ranks[loc[i, k + 1]]))
        visited_logs.append(np.log(ranks[seen]))
    chosen = np.asarray(chosen)
    width = max(len(v) for v in visited_logs)
    padded = np.zeros((len(visited_logs), max(width, 1)))
    present = np.zeros(padded.shape, dtype=bool)
    for r, v in enumerate(visited_logs):
        padded[r, : len(v)], present[r, : len(v)] = v, True

    def loss(alpha: float) -> float:
        total = np.exp(-alpha * all_ranks).sum()
        norm = total - np.where(present, np.exp(-alpha * padded), 0.0).sum(axis=1)
        return float(np.sum(alpha * chosen + np.log(norm)))

    return float(minimize_scalar(loss, bounds=(0.0, 5.0), method="bounded", options={"xatol": 1e-6}).x)
