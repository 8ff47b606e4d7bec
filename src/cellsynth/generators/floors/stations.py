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

Both are conditional the simple way: a station seen in training uses its own history; a new station (a
planned site) uses its ``k`` nearest training stations in standardised feature space (plus coordinates
where both have them) — the mean of their profiles for seasonal-mean, the nearest one's week for copy-train.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pydantic
import torch

from cellsynth.data.model import Stations, StationTraffic
from cellsynth.data.samples import stack_samples
from cellsynth.errors import DataError
from cellsynth.generators.base import (
    GeneratorConfig,
    StationGenerator,
    expect,
    restore_stations,
    restore_time_axis,
    stations_state,
    time_axis_state,
)

__all__ = ["CopyTrainGenerator", "SeasonalMeanGenerator", "nearest_training_stations"]

_RELATIVE_OFFSET = 0.05  # δ as a share of the station's mean level (see module docstring)
_MAD_TO_SD = 1.4826


def nearest_training_stations(train: Stations, query: Stations, k: int) -> np.ndarray:
    """``[Q, k]`` indices of each query station's nearest training stations.

    A query whose id, coordinates and features all equal a training station's maps to that station first.
    Distances are Euclidean over features standardised by the training statistics, plus local-metric km
    coordinates scaled to the same spread when both tables have coordinates.
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
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    # A seen station matches itself even if another station shares its features.
    train_pos = {sid: i for i, sid in enumerate(train.ids)}
    for q, sid in enumerate(query.ids):
        i = train_pos.get(str(sid).split("@")[0])
        if i is not None and dist[q, i] == 0:
            order[q] = np.concatenate([[i], order[q][order[q] != i]])[:k]
    return order


class SeasonalMeanConfig(GeneratorConfig):
    neighbours: int = pydantic.Field(5, ge=1, description="Training stations averaged for a new station.")


class _ReferenceGenerator(StationGenerator):
    """Shared fit/state of the reference generators: they keep the training weeks of every station."""

    def fit(self, data, *, progress: bool = True, checkpoint_dir=None):
        data = expect(data, StationTraffic, self.name)
        self.period_ = data.steps_per("7D") if data.n_steps >= data.steps_per("7D") else data.n_steps
        n_weeks = data.n_steps // self.period_
        if n_weeks == 0:
            raise DataError(f"{self.name} needs at least one whole week of data; got {data.n_steps} steps")
        self.weeks_ = data.values[:, : n_weeks * self.period_].reshape(
            data.n_stations, n_weeks, self.period_, data.n_channels
        )
        self.stations_ = data.stations
        self.time_ = time_axis_state(data)
        self.fitted_ = True
        return self

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = stations_state(self.stations_)
        tensors["weeks"] = torch.from_numpy(np.array(self.weeks_))
        return tensors, meta | {"time": self.time_, "period": self.period_}

    def _restore(self, tensors, meta) -> None:
        self.stations_ = restore_stations(tensors, meta)
        self.weeks_ = tensors["weeks"].numpy()
        self.time_, self.period_ = meta["time"], meta["period"]

    def _output(self, stations: Stations, values: np.ndarray) -> StationTraffic:
        start, step = restore_time_axis(self.time_)
        return stack_samples(stations, values, start=start, step=step, channels=tuple(self.time_["channels"]))


class SeasonalMeanGenerator(_ReferenceGenerator):
    """Mean seasonal profile x log-normal noise of the station's own spread (see module docstring)."""

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
        self.check_fitted()
        if options:
            raise DataError(f"{self.name} takes no sampler options; got {sorted(options)}")
        samples = self._check_samples(samples)
        stations = self._resolve_target(target, seed, self.stations_)
        near = nearest_training_stations(self.stations_, stations, self.config.neighbours)
        own = np.array(
            [self.stations_.ids[row[0]] == str(sid).split("@")[0] for sid, row in zip(stations.ids, near)]
        )
        profile = np.where(own[:, None, None], self.profile_[near[:, 0]], self.profile_[near].mean(1))
        sigma = np.where(own[:, None], self.sigma_[near[:, 0]], self.sigma_[near].mean(1))
        rng = np.random.default_rng(seed)
        eps = rng.standard_normal((len(stations), samples, *profile.shape[1:]))
        noise = np.exp(sigma[:, None, None, :] * eps - sigma[:, None, None, :] ** 2 / 2)
        return self._output(stations, profile[:, None] * noise)


class CopyTrainGenerator(_ReferenceGenerator):
    """Returns training weeks verbatim (the memorisation extreme)."""

    name = "copy-train"
    Config = GeneratorConfig

    def generate(self, target, *, samples: int = 1, seed: int = 0, **options: Any) -> StationTraffic:
        self.check_fitted()
        if options:
            raise DataError(f"{self.name} takes no sampler options; got {sorted(options)}")
        samples = self._check_samples(samples)
        stations = self._resolve_target(target, seed, self.stations_)
        nearest = nearest_training_stations(self.stations_, stations, 1)[:, 0]
        rng = np.random.default_rng(seed)
        week = rng.integers(0, self.weeks_.shape[1], size=(len(stations), samples))
        return self._output(stations, self.weeks_[nearest[:, None], week])
