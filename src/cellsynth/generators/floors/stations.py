"""Two honest reference generators that give every model a floor and the privacy check a target.

``seasonal-mean``
    Each station's mean seasonal profile times multiplicative log-normal noise of that station's own spread:

    .. math::  \\hat x_{n,t,c} = m_{n,\\,t \\bmod P,\\,c} \\cdot \\exp(\\sigma_{n,c}\\,\\varepsilon - \\sigma_{n,c}^2/2),
               \\quad \\varepsilon \\sim \\mathcal N(0, 1)

    with P one week when the training data spans at least two weeks (m = mean over weeks of each hour of
    the week) and one day otherwise (m = mean over the days of each hour of the day, repeated to a week),
    and sigma a robust spread of the log ratios ``r = log((x + δ) / (m + δ))`` over the station's steps:
    ``σ = 1.4826 · median(|r - median(r)|)`` (the MAD, scaled to equal the standard deviation for Gaussian
    r), with ``δ = 0.05 · mean(m)`` per station and channel. The offset is relative to the station's level
    so that idle hours of a busy station (x = 0 next to m ≈ 1e7) do not blow the spread up, and the MAD
    keeps a few such hours from dominating it. The noise has mean one, so the expected value is the
    profile, and the output is never negative.

``copy-train``
    Returns training weeks verbatim: the memorisation extreme the privacy check must flag.

``nearest-station``
    What a planner does by hand today: the traffic of a new site is taken to be that of the existing station
    closest to it in feature space (plus coordinates where both have them). Replays that station's training
    weeks, each once before any repeats.

``recent-weeks``
    The future weeks of a known station are taken to be its most recent ``weeks`` training weeks, replayed:
    they carry the station's current level, which a model of the average station, or of the whole history,
    misses when the load has grown (on real LTE cells over a year, this floor beat STOUTER twice over on
    value JSD where the load had doubled). A new station replays its nearest training station's recent weeks.

All four are conditional the simple way. A training station (same id; features and coordinates, where given,
equal to its training ones: :class:`~cellsynth.generators.base.StationGenerator`) uses its own history —
whatever the stations are described by, nothing at all included. A new station (a planned site) uses its
``k`` nearest training stations in standardised feature space (plus coordinates where both have them) — the
mean of their profiles for seasonal-mean, the nearest one's weeks for the other three — and so needs feature
columns or coordinates.

The weeks kept are the whole weeks counted from the start of the training data (the generated weeks start
there too); steps after the last whole week are not used.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pydantic
import torch

from cellsynth.data.model import Stations, StationTraffic
from cellsynth.data.samples import stack_samples
from cellsynth.errors import DataError
from cellsynth.generators.base import GeneratorConfig, StationGenerator, TargetStations, steps_per_week
from cellsynth.generators.state import restore_stations, restore_time_axis, stations_state, time_axis_state

__all__ = [
    "CopyTrainGenerator",
    "NearestStationGenerator",
    "RecentWeeksGenerator",
    "SeasonalMeanGenerator",
    "nearest_training_stations",
]

_RELATIVE_OFFSET = 0.05  # δ as a share of the station's mean level (see module docstring)
_MAD_TO_SD = 1.4826


def nearest_training_stations(train: Stations, query: Stations, k: int) -> np.ndarray:
    """``[Q, k]`` indices of each query station's nearest training stations, nearest first (ties: the lower
    index).

    Distances are Euclidean over features standardised by the training statistics, plus local-metric km
    coordinates scaled to the same spread when both tables have coordinates. The generators ask it for new
    stations only: a training station is resolved to itself before (``StationGenerator._resolve_target``).
    """
    if train.feature_names != query.feature_names:
        raise DataError(
            f"new stations have features {query.feature_names}, the model was trained with {train.feature_names}"
        )
    mu, sd = train.features.mean(0), train.features.std(0) + 1e-9
    parts_train, parts_query = [(train.features - mu) / sd], [(query.features - mu) / sd]
    if train.has_coordinates and query.has_coordinates:
        lat0 = np.deg2rad(train.lat.mean())
        xy_train = np.stack([train.lat * 111.2, train.lon * 111.2 * np.cos(lat0)], 1)
        xy_query = np.stack([query.lat * 111.2, query.lon * 111.2 * np.cos(lat0)], 1)
        xy_mu, xy_sd = xy_train.mean(0), xy_train.std(0) + 1e-9
        parts_train.append((xy_train - xy_mu) / xy_sd)
        parts_query.append((xy_query - xy_mu) / xy_sd)
    a, b = np.concatenate(parts_train, 1), np.concatenate(parts_query, 1)
    if a.shape[1] == 0:
        raise DataError("stations have neither features nor coordinates: nothing to match new stations by")
    dist = ((b[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    k = min(k, len(train))
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


class SeasonalMeanConfig(GeneratorConfig):
    neighbours: int = pydantic.Field(5, ge=1, description="Training stations averaged for a new station.")


class _ReferenceGenerator(StationGenerator):
    """Shared fit/state of the reference generators: they keep the training weeks of every station."""

    def _check_fit_inputs(self, data):
        data = super()._check_fit_inputs(data)
        steps_per_week(data, self.name)
        return data

    def fit(self, data, *, progress: bool = True, checkpoint_dir=None):
        data = self._check_fit_inputs(data)
        week = steps_per_week(data, self.name)
        # Less than a week of data: the whole span is the period (its days give the profile).
        self.period_ = week if data.n_steps >= week else data.n_steps
        n_weeks = data.n_steps // self.period_
        self.weeks_ = data.values[:, : n_weeks * self.period_].reshape(
            data.n_stations, n_weeks, self.period_, data.n_channels
        )
        self.stations_ = data.stations
        self.time_ = time_axis_state(data)
        self.fitted_ = True
        return self

    def _prepare(self, target, samples, seed: int, options: dict) -> tuple[TargetStations, int]:
        """What every floor's ``generate`` checks first: fitted, no sampler options, ``samples``, and the
        stations resolved against the training ones."""
        self.check_fitted()
        if options:
            raise DataError(f"{self.name} takes no sampler options; got {sorted(options)}")
        return self._resolve_target(target, seed, self.stations_), self._check_samples(samples)

    def _source_stations(self, target: TargetStations) -> np.ndarray:
        """``[M]`` the training station whose weeks each target station gets: itself when it is a training
        station, else its nearest training station (:func:`nearest_training_stations`)."""
        nearest = None
        if target.new is not None:
            nearest = nearest_training_stations(self.stations_, target.new, 1)[:, 0]
        return target.combine(np.arange(len(self.stations_)), nearest)

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = stations_state(self.stations_)
        tensors["weeks"] = torch.from_numpy(np.array(self.weeks_))
        return tensors, meta | {"time": self.time_, "period": self.period_}

    def _restore(self, tensors, meta) -> None:
        self.stations_ = restore_stations(tensors, meta)
        self.weeks_ = tensors["weeks"].numpy()
        self.time_, self.period_ = meta["time"], meta["period"]
        # A damaged file fails here, where load names it, rather than in generate.
        restore_time_axis(self.time_)
        n, steps, channels = len(self.stations_), self.period_, len(self.time_["channels"])
        shape = self.weeks_.shape
        if len(shape) != 4 or (shape[0], shape[2], shape[3]) != (n, steps, channels):
            raise ValueError(f"weeks has shape {tuple(shape)}, expected ({n}, weeks, {steps}, {channels})")

    def _output(self, stations: Stations, values: np.ndarray) -> StationTraffic:
        start, step = restore_time_axis(self.time_)
        return stack_samples(stations, values, start=start, step=step, channels=tuple(self.time_["channels"]))


class SeasonalMeanGenerator(_ReferenceGenerator):
    """Mean seasonal profile x log-normal noise of the station's own spread (see module docstring).

    A training station gets its own mean week ``m_n`` and its own spread ``sigma_n``: the floor's definition
    of "more weeks of this station" (its average week, varied as much as its weeks varied), with no other
    station's traffic in it. A new station gets the mean profile and mean spread of its ``neighbours``
    nearest training stations, so it needs feature columns or coordinates.
    """

    name = "seasonal-mean"
    Config = SeasonalMeanConfig

    def fit(self, data, *, progress: bool = True, checkpoint_dir=None):
        super().fit(data, progress=progress, checkpoint_dir=checkpoint_dir)
        self._estimate()
        return self

    def _restore(self, tensors, meta) -> None:
        super()._restore(tensors, meta)
        self._estimate()

    def _estimate(self) -> None:
        weeks = self.weeks_.astype(np.float64)  # [N, W, P, C]
        n, w, p, c = weeks.shape
        steps_per_day = p // 7 if p % 7 == 0 else p
        if w >= 2:
            profile = weeks.mean(1)
        else:  # One week: the weekly profile would be the data itself; average the days instead.
            days = weeks[:, 0].reshape(n, p // steps_per_day, steps_per_day, c)
            profile = np.tile(days.mean(1), (1, p // steps_per_day, 1))
        delta = _RELATIVE_OFFSET * profile.mean(1, keepdims=True) + 1e-12  # [N, 1, C]
        log_ratio = (np.log(weeks + delta[:, None]) - np.log(profile[:, None] + delta[:, None])).reshape(
            n, w * p, c
        )
        deviation = np.abs(log_ratio - np.median(log_ratio, axis=1, keepdims=True))
        self.profile_ = profile
        self.sigma_ = _MAD_TO_SD * np.median(deviation, axis=1)

    def generate(self, target, *, samples: int = 1, seed: int = 0, **options: Any) -> StationTraffic:
        target, samples = self._prepare(target, samples, seed, options)
        new_profile = new_sigma = None
        if target.new is not None:
            near = nearest_training_stations(self.stations_, target.new, self.config.neighbours)
            new_profile, new_sigma = self.profile_[near].mean(1), self.sigma_[near].mean(1)
        profile = target.combine(self.profile_, new_profile)
        sigma = target.combine(self.sigma_, new_sigma)
        rng = np.random.default_rng(seed)
        eps = rng.standard_normal((len(profile), samples, *profile.shape[1:]))
        noise = np.exp(sigma[:, None, None, :] * eps - sigma[:, None, None, :] ** 2 / 2)
        return self._output(target.stations, profile[:, None] * noise)


class CopyTrainGenerator(_ReferenceGenerator):
    """Returns training weeks verbatim (the memorisation extreme).

    Each sample is one of the station's training weeks drawn uniformly (with replacement). A training station
    gets its *own* training weeks — the extreme the privacy check must flag, also for "more weeks of my
    existing cells". A new station gets the weeks of its nearest training station, so it needs feature
    columns or coordinates.
    """

    name = "copy-train"
    Config = GeneratorConfig

    def generate(self, target, *, samples: int = 1, seed: int = 0, **options: Any) -> StationTraffic:
        target, samples = self._prepare(target, samples, seed, options)
        source = self._source_stations(target)
        rng = np.random.default_rng(seed)
        week = rng.integers(0, self.weeks_.shape[1], size=(len(source), samples))
        return self._output(target.stations, self.weeks_[source[:, None], week])


class NearestStationGenerator(_ReferenceGenerator):
    """The planner's floor: every station gets the training weeks of the nearest training station.

    A new station (a planned site) gets the weeks of the training station closest to it in standardised
    feature space, plus coordinates where both have them (:func:`nearest_training_stations`), so it needs
    feature columns or coordinates; a training station is its own nearest station and gets its own weeks.
    The station's ``n`` replayed weeks are dealt out without replacement: sample ``j`` is week
    ``order[j mod n]``, ``order`` a seeded permutation, so ``n`` samples hold each week exactly once (with
    one training week, every sample is that week). The weeks are copied verbatim: the memorisation check
    flags this floor, as it flags copy-train, which draws the same weeks with replacement.
    """

    name = "nearest-station"
    Config = GeneratorConfig

    def _replayed_weeks(self) -> int:
        """How many of each station's training weeks are replayed: the last ones (here all of them)."""
        return self.weeks_.shape[1]

    def generate(self, target, *, samples: int = 1, seed: int = 0, **options: Any) -> StationTraffic:
        target, samples = self._prepare(target, samples, seed, options)
        source = self._source_stations(target)
        total, replayed = self.weeks_.shape[1], self._replayed_weeks()
        rng = np.random.default_rng(seed)
        order = np.argsort(rng.random((len(source), replayed)), axis=1)  # a permutation per station
        week = total - replayed + order[:, np.arange(samples) % replayed]
        return self._output(target.stations, self.weeks_[source[:, None], week])


class RecentWeeksConfig(GeneratorConfig):
    weeks: int = pydantic.Field(
        4,
        ge=1,
        description="Replay each station's most recent this many training weeks (all of them when it has "
        "fewer); 4: about the month a planner asking for next month's weeks would look at.",
    )


class RecentWeeksGenerator(NearestStationGenerator):
    """The future weeks of known stations: each station's most recent ``weeks`` training weeks, replayed.

    As nearest-station (same stations, same dealing of weeks), but only the last ``min(weeks, W)`` of the
    ``W`` whole training weeks are replayed, so the output carries the station's recent level rather than
    its average over the whole history. A new station gets its nearest training station's recent weeks.
    """

    name = "recent-weeks"
    Config = RecentWeeksConfig

    def _replayed_weeks(self) -> int:
        return min(self.config.weeks, self.weeks_.shape[1])
