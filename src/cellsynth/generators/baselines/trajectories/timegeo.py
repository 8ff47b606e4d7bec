r"""``timegeo``: TimeGEO (Jiang, Yang, Gupta, Veneziano, Athavale & González, "The TimeGeo modeling framework
for urban mobility without travel surveys", PNAS 113(37), 2016, doi:10.1073/pnas.1524261113), one of
MSTDiff's trajectory baselines.

**Fit** (:mod:`.timegeo_fit` has the formulas). From the training weeks: each user's home (most night steps)
and, for commuters, work (most weekdays present in work hours, at least 500 m from home, on at least 3
days) and observed work windows; the population's weekly rhythm ``P(t)``; each user's weekly home-based tour
number ``n_w``, dwell rate ``beta1`` and burst rate ``beta2`` (maximum likelihood of the temporal model on
the user's steps); the r-EPR parameters ``rho``, ``gamma`` (``P_new = rho S^-gamma``) and the rank exponent
``alpha`` (maximum likelihood over all users' trips); each user's visits to "other" places (the memory of
preferential return). Nothing is hard-coded: every number the simulation uses comes from the data. Data
shorter than a week (user-days, such as MoveSim's GeoLife split) gets the rhythm of a day instead, and its
``n_w`` counts tours per day; one day holds too few weekdays for the work rule, so its users have no work.

**Generate.** Each synthetic user takes the profile of a training user drawn uniformly (with replacement,
seeded): home, work, rates, work windows and visit memory, as TimeGEO simulates each individual from their
own inferred parameters. On every weekday a commuter's work window is one of their observed windows, drawn
uniformly; inside it the anchor is work. Starting at the anchor, step by step: the temporal model decides
whether the user stays, leaves the anchor, returns to it or moves between "other" places; a move to
"other" explores (``rho S^-gamma``) the unvisited station of distance rank ``k`` with weight ``k^-alpha``,
or returns to a visited "other" place in proportion to its visits (exploring when there is none, returning
when every station is visited, staying put when neither is possible). Entering and leaving a work window
is the commute, a move to the new anchor.

**Traffic**: TimeGEO has none; where the training data has traffic it comes from the Markov floor's
location-hour model (:mod:`._traffic`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pydantic
import torch

from cellsynth.data.model import UserMobility
from cellsynth.errors import DataError
from cellsynth.generators.base import GeneratorConfig, UserGenerator
from cellsynth.generators.baselines.trajectories._traffic import LocationHourTraffic
from cellsynth.generators.baselines.trajectories.timegeo_fit import (
    anchor_steps,
    day_positions,
    distance_ranks,
    exploration_events,
    fit_exploration,
    fit_rank_exponent,
    fit_rates,
    infer_anchors,
    transitions,
)
from cellsynth.generators.state import restore_stations, restore_time_axis, stations_state, time_axis_state
from cellsynth.geo import haversine_km

__all__ = ["TimeGeoConfig", "TimeGeoGenerator", "week_timeline"]

_WEEK = pd.Timedelta("7D")
_DAY = pd.Timedelta("1D")


class TimeGeoConfig(GeneratorConfig):
    """TimeGEO's rules for home and work (the paper's values by default); the rates are fitted."""

    night_start_hour: int = pydantic.Field(19, ge=0, le=23, description="Home: nights from this hour ...")
    night_end_hour: int = pydantic.Field(8, ge=0, le=23, description="... to this hour (exclusive).")
    work_start_hour: int = pydantic.Field(8, ge=0, le=23, description="Work hours on weekdays from ...")
    work_end_hour: int = pydantic.Field(19, ge=1, le=24, description="... to this hour (exclusive).")
    work_min_days: int = pydantic.Field(3, ge=1, description="Fewest weekdays at work to be a commuter.")
    work_min_distance_km: float = pydantic.Field(
        0.5, ge=0, description="Work is at least this far from home."
    )

    @pydantic.model_validator(mode="after")
    def _work_hours(self) -> TimeGeoConfig:
        if self.work_start_hour >= self.work_end_hour:
            raise ValueError(
                f"work_start_hour ({self.work_start_hour}) must be < work_end_hour ({self.work_end_hour})"
            )
        return self


def week_timeline(start, step, n_steps: int) -> dict[str, np.ndarray]:
    """Per step of the axis, in local time: ``hour``, ``weekday`` (Monday..Friday), ``day`` (days since the
    first) and ``slot``, the step of the week (Monday 0h = 0; ``7 days / step`` slots)."""
    ts = pd.date_range(start, periods=n_steps, freq=step)
    naive = ts.tz_localize(None)
    seconds = (
        np.asarray(ts.day_of_week) * 86400
        + np.asarray(ts.hour) * 3600
        + np.asarray(ts.minute) * 60
        + np.asarray(ts.second)
    )
    return {
        "hour": np.asarray(ts.hour, dtype=np.int64),
        "weekday": np.asarray(ts.day_of_week < 5),
        "day": np.asarray((naive.normalize() - naive[0].normalize()).days, dtype=np.int64),
        "slot": (seconds // int(pd.Timedelta(step).total_seconds())).astype(np.int64),
    }


class TimeGeoGenerator(UserGenerator):
    """TimeGEO (Jiang et al., PNAS 2016): home/work inference, the (n_w, beta1, beta2) temporal model
    and rank-based exploration with preferential return, all fitted; traffic from the Markov floor.

    Details: the module docstring. After ``fit``, :attr:`parameters_` holds what was fitted."""

    name = "timegeo"
    Config = TimeGeoConfig

    def _check_fit_inputs(self, data):
        data = super()._check_fit_inputs(data)
        if not data.stations.has_coordinates:
            raise DataError(
                f"{self.name} ranks stations by distance and needs their lat/lon; give stations with coordinates",
                source=data.source,
            )
        if _DAY % data.step != pd.Timedelta(0) or data.n_steps < _DAY // data.step:
            raise DataError(
                f"{self.name} fits the rhythm of a week (or of a day, for data shorter than a week): the step "
                f"({data.step}) must divide a day and the data must cover at least one day (it has "
                f"{data.n_steps} steps); resample, or give whole days",
                source=data.source,
            )
        return data

    @staticmethod
    def _rhythm_period(data) -> pd.Timedelta:
        """The period of ``P(t)``: a week, as the paper, where the data covers one; else a day (user-days such
        as MoveSim's GeoLife split, where a weekly rhythm cannot be estimated)."""
        return _WEEK if data.n_steps >= _WEEK // data.step else _DAY

    def _distances(self):
        lat, lon = self.stations_.lat, self.stations_.lon
        return lambda i: haversine_km(lat[i], lon[i], lat, lon)

    def fit(self, data, *, progress: bool = True, checkpoint_dir=None) -> TimeGeoGenerator:
        data = self._check_fit_inputs(data)
        cfg = self.config
        self.stations_, self.time_, self.n_steps_ = data.stations, time_axis_state(data), data.n_steps
        line = week_timeline(data.start, data.step, data.n_steps)
        distance_from = self._distances()
        loc = data.locations
        anchors = infer_anchors(
            loc,
            line["hour"],
            line["day"],
            line["weekday"],
            distance_from,
            night=(cfg.night_start_hour, cfg.night_end_hour),
            work_hours=(cfg.work_start_hour, cfg.work_end_hour),
            work_min_days=cfg.work_min_days,
            work_min_km=cfg.work_min_distance_km,
        )
        trips = transitions(loc, anchor_steps(anchors, line["day"]))
        n_slots = self._rhythm_period(data) // data.step
        rhythm, rates = fit_rates(trips, line["slot"] % n_slots, n_slots, data.n_users)
        upper = 1.0 / rhythm.max()
        self.rates_, self.filled_ = _fill_rates(rates, upper)
        visited, new, _, _ = exploration_events(loc, trips)
        self.rho_, self.gamma_ = fit_exploration(visited, new)
        self.alpha_ = fit_rank_exponent(loc, trips, new, distance_from)
        self.rhythm_, self.home_, self.work_ = rhythm, anchors.home, anchors.work
        self.windows_ = np.stack([anchors.window_user, anchors.window_first, anchors.window_last], axis=1)
        self.memory_ = _visit_memory(loc, anchors.home, anchors.work)
        self.traffic_ = LocationHourTraffic.fit(data)
        self.fitted_ = True
        return self

    @property
    def parameters_(self) -> dict[str, Any]:
        """The fitted parameters: per user ``n_w``, ``beta1``, ``beta2`` (NaN where ``n_w = 0``), ``home``,
        ``work`` (-1: not a commuter); the population's ``rhythm`` ``P(t)``, ``rho``, ``gamma``, ``alpha``."""
        self.check_fitted()
        a, b, c = self.rates_.T
        with np.errstate(divide="ignore", invalid="ignore"):
            beta1, beta2 = np.where(a > 0, b / a, np.nan), np.where(a > 0, c / a, np.nan)
        return {
            "n_w": a,
            "beta1": beta1,
            "beta2": beta2,
            "home": self.home_,
            "work": self.work_,
            "rhythm": self.rhythm_,
            "rho": self.rho_,
            "gamma": self.gamma_,
            "alpha": self.alpha_,
        }

    def fit_notes(self) -> list[str]:
        notes = [
            f"{self.name}: {int((self.work_ >= 0).sum())} of {len(self.work_)} users are commuters; "
            f"P_new = {self.rho_:.3f} S^-{self.gamma_:.3f}, rank exponent alpha = {self.alpha_:.3f}"
        ]
        if self.filled_:
            notes.append(
                f"{self.name}: {self.filled_} user(s) never took a trip from an 'other' place in training; their "
                "dwell or burst rate is the population's median"
            )
        return notes

    # -- generation ----------------------------------------------------------------------------------------
    def generate(self, target, *, samples: int = 1, seed: int = 0, **options: Any) -> UserMobility:
        self.check_fitted()
        if options:
            raise DataError(f"{self.name} takes no sampler options; got {sorted(options)}")
        n_users = self._check_users(target)
        if samples != 1:
            raise DataError(
                f"{self.name} generates users: give their number, not samples (got samples={samples})"
            )
        start, step = restore_time_axis(self.time_)
        line = week_timeline(start, step, self.n_steps_)
        rng = np.random.default_rng(seed)
        profile = rng.integers(0, len(self.home_), n_users)
        anchor = self._anchors(profile, line, rng)
        loc = self._simulate(profile, anchor, line["slot"] % len(self.rhythm_), rng)
        traffic = None if self.traffic_ is None else self.traffic_.sample(loc, start, step, rng)
        return UserMobility(loc, start, step, self.stations_, traffic=traffic)

    def _anchors(self, profile: np.ndarray, line: dict[str, np.ndarray], rng) -> np.ndarray:
        """``[U, T]``: home, or work inside each weekday's work window (one of the profile's, drawn)."""
        day_index, step_of_day = day_positions(line["day"])
        anchor = np.repeat(self.home_[profile][:, None], self.n_steps_, axis=1)
        weekdays = np.unique(day_index[line["weekday"]])
        for i, u in enumerate(profile):
            windows = self.windows_[self.windows_[:, 0] == u]
            if self.work_[u] < 0 or len(windows) == 0:
                continue
            for d, w in zip(weekdays, rng.integers(0, len(windows), len(weekdays)), strict=True):
                first, last = windows[w, 1], windows[w, 2]
                anchor[i, (day_index == d) & (step_of_day >= first) & (step_of_day <= last)] = self.work_[u]
        return anchor

    def _simulate(self, profile: np.ndarray, anchor: np.ndarray, slot: np.ndarray, rng) -> np.ndarray:
        n, t = anchor.shape
        a, b, c = (self.rates_[profile, j] for j in range(3))
        memory = [self._memory_of(u) for u in profile]
        chooser = _Destinations(self._distances(), len(self.stations_), self.rho_, self.gamma_, self.alpha_)
        loc = np.empty((n, t), dtype=np.int64)
        loc[:, 0] = anchor[:, 0]
        for k in range(t - 1):
            p = self.rhythm_[slot[k]]
            here = loc[:, k]
            at_anchor = here == anchor[:, k]
            draw, burst = rng.random(n), rng.random(n)
            leave = at_anchor & (draw < a * p)
            trip = ~at_anchor & (draw < b * p)
            hop = trip & (burst < c * p)
            nxt = here.copy()
            nxt[trip & ~hop] = anchor[trip & ~hop, k + 1]
            commute = anchor[:, k + 1] != anchor[:, k]
            nxt[commute] = anchor[commute, k + 1]
            for i in np.flatnonzero((leave | hop) & ~commute):
                nxt[i] = chooser.choose(int(here[i]), memory[i], rng)
            loc[:, k + 1] = nxt
        return loc

    def _memory_of(self, user: int) -> dict[int, int]:
        """Visits per station of a training user ("other" places; home and work with 0: visited, never a
        destination of preferential return)."""
        ptr, stations, counts = self.memory_
        memory = dict(
            zip(stations[ptr[user] : ptr[user + 1]].tolist(), counts[ptr[user] : ptr[user + 1]].tolist())
        )
        for anchor in (self.home_[user], self.work_[user]):
            if anchor >= 0:
                memory[int(anchor)] = 0
        return memory

    # -- persistence ---------------------------------------------------------------------------------------
    def _state(self):
        tensors, meta = stations_state(self.stations_)
        ptr, stations, counts = self.memory_
        arrays = {
            "rates": self.rates_,
            "rhythm": self.rhythm_,
            "home": self.home_,
            "work": self.work_,
            "windows": self.windows_,
            "memory_ptr": ptr,
            "memory_stations": stations,
            "memory_counts": counts,
        }
        tensors |= {f"timegeo.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
        if self.traffic_ is not None:
            tensors |= self.traffic_.state()
        meta |= {
            "time": self.time_,
            "n_steps": self.n_steps_,
            "rho": self.rho_,
            "gamma": self.gamma_,
            "alpha": self.alpha_,
            "filled": self.filled_,
        }
        return tensors, meta

    def _restore(self, tensors, meta) -> None:
        self.stations_ = restore_stations(tensors, meta)
        self.time_, self.n_steps_ = meta["time"], meta["n_steps"]
        self.rho_, self.gamma_, self.alpha_, self.filled_ = (
            meta["rho"],
            meta["gamma"],
            meta["alpha"],
            meta["filled"],
        )
        get = lambda k: tensors[f"timegeo.{k}"].numpy()  # noqa: E731
        self.rates_, self.rhythm_, self.home_, self.work_ = (
            get("rates"),
            get("rhythm"),
            get("home"),
            get("work"),
        )
        self.windows_ = get("windows")
        self.memory_ = (get("memory_ptr"), get("memory_stations"), get("memory_counts"))
        self.traffic_ = LocationHourTraffic.from_state(tensors, len(self.stations_))


def _fill_rates(rates: np.ndarray, upper: float) -> tuple[np.ndarray, int]:
    """Rates with the undefined ones filled: ``n_w`` as 0 (never at its anchor between commutes), ``beta1``
    and ``beta2`` of users who never were at, or never left, an "other" place as the population's median
    (1 where no user has one); each rate at most ``upper`` (``x P(t) <= 1``)."""
    rates = rates.copy()
    rates[np.isnan(rates[:, 0]), 0] = 0.0
    a = rates[:, 0]
    missing = np.isnan(rates[:, 1]) | np.isnan(rates[:, 2])
    for j in (1, 2):
        known = ~np.isnan(rates[:, j]) & (a > 0)
        median = float(np.median(rates[known, j] / a[known])) if known.any() else 1.0
        gap = np.isnan(rates[:, j])
        rates[gap, j] = np.minimum(median * a[gap], upper)
    return rates, int(missing.sum())


def _visit_memory(locations: np.ndarray, home: np.ndarray, work: np.ndarray):
    """CSR ``(ptr [U+1], stations, visits)`` of each user's visits (stays, i.e. arrivals) to places other than
    home and work."""
    ptr, stations, counts = [0], [], []
    for i, path in enumerate(np.asarray(locations)):
        starts = np.concatenate([[True], path[1:] != path[:-1]])
        places, visits = np.unique(path[starts], return_counts=True)
        keep = (places != home[i]) & (places != work[i])
        stations.append(places[keep])
        counts.append(visits[keep])
        ptr.append(ptr[-1] + int(keep.sum()))
    return (
        np.asarray(ptr, dtype=np.int64),
        np.concatenate(stations).astype(np.int64),
        np.concatenate(counts).astype(np.int64),
    )


class _Destinations:
    """r-EPR's choice of an "other" destination (module docstring), with each station's distance ranks cached."""

    def __init__(self, distance_from, n_stations: int, rho: float, gamma: float, alpha: float) -> None:
        self.distance_from, self.n = distance_from, n_stations
        self.rho, self.gamma, self.alpha = rho, gamma, alpha
        self._weights: dict[int, np.ndarray] = {}

    def _rank_weights(self, origin: int) -> np.ndarray:
        if origin not in self._weights:
            ranks = distance_ranks(self.distance_from, origin).astype(np.float64)
            self._weights[origin] = np.where(ranks > 0, ranks, np.inf) ** -self.alpha
        return self._weights[origin]

    def choose(self, origin: int, memory: dict[int, int], rng: np.random.Generator) -> int:
        returns = [(s, v) for s, v in memory.items() if v > 0 and s != origin]
        can_explore = len(memory) + (origin not in memory) < self.n
        explore = rng.random() < self.rho * max(len(memory), 1) ** -self.gamma
        if can_explore and (explore or not returns):
            weights = self._rank_weights(origin).copy()
            weights[list(memory)] = 0.0
            weights[origin] = 0.0
            dest = int(rng.choice(self.n, p=weights / weights.sum()))
        elif returns:
            places, visits = zip(*returns, strict=True)
            visits = np.asarray(visits, dtype=np.float64)
            dest = int(places[rng.choice(len(places), p=visits / visits.sum())])
        else:
            return origin
        memory[dest] = memory.get(dest, 0) + 1
        return dest
