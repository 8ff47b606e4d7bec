"""STOUTER's level stage (``extensions.level_model``, ``extensions.level_condition``), as a part of
:class:`~cellsynth.generators.stouter.StouterGenerator`: it takes each station's level out of the training
weeks, fits the level prior (a ridge regression or the k nearest training stations:
:mod:`cellsynth.generators.stouter.levels`), draws a level per generated week, and builds STUNet's station
condition (F_s, and with ``level_condition`` the standardised level).

Why the level may condition STUNet: the prior draws a new site's level apart from its week, but in log space
a quiet site's week is not a busy site's week shifted down (near zero traffic, ``log1p`` flattens the daily
swing; a busy cell's night is a smaller share of its day). With ``level_condition`` the diffusion learns
``p(u | F_t, F_s, ell)`` on each station's own level and samples each week on the level drawn for it.
"""

from __future__ import annotations

import numpy as np
import torch

from cellsynth.data.model import Stations
from cellsynth.errors import ConfigError
from cellsynth.generators.base import TargetStations
from cellsynth.generators.floors.stations import nearest_training_stations
from cellsynth.generators.stouter.levels import (
    LevelRegression,
    NeighbourLevels,
    at_level,
    daily_part,
    fit_channel_shape_scales,
    fit_shape_scale,
    recent_level_shift,
    station_levels,
)
from cellsynth.generators.stouter.private import privacy_notes
from cellsynth.transforms.scaling import widened_range

__all__: list[str] = []


class _LevelStage:
    """The level methods of StouterGenerator (uses its ``config``, ``stations_``, ``levels_``, ``builder_``,
    ``station_embeddings_``, ``weekly_levels_`` and ``time_``)."""

    def fit_notes(self) -> list[str]:
        self.check_fitted()
        notes = privacy_notes(getattr(self, "privacy_", None))
        if self.levels_ is None:
            return notes
        channels, prior = self.time_["channels"], self._level_prior()
        shares = ", ".join(f"{ch} {max(e, 0.0):.0%}" for ch, e in zip(channels, prior.explained, strict=True))
        if not isinstance(prior, NeighbourLevels):
            how = "drawn around its prediction with the rest as spread"
        elif prior.k < len(prior.levels_) - 1:
            how = f"drawn from the levels of its {prior.k} nearest training stations"
        else:  # the leave-one-out CRPS found no use for the features: the marginal
            how = "drawn from the levels of all training stations (the features do not narrow it down)"
        return [
            *notes,
            f"station levels: the station descriptors explain {shares} of the variance of the training "
            f"stations' levels (leave-one-out); a new site's level is {how}, so its samples differ in level "
            "as much as the data says sites like it do",
        ]

    def _level_prior(self) -> LevelRegression | NeighbourLevels:
        return self.levels_["neighbours" if "neighbours" in self.levels_ else "regression"]

    # -- station levels ------------------------------------------------------------------------------
    def _fit_levels(self, z: np.ndarray) -> np.ndarray:
        """Fit the level regression on the training stations; return the level-free weeks ``u`` (float32).

        ``u = (z - ell_n) / sigma_shape`` per channel, so that ``u`` has unit variance for DDPM's prior;
        with ``extensions.shape_scale: level`` the scale is ``sigma(ell_n)`` (:func:`fit_shape_scale`), and with
        a scale per channel each channel's own (:func:`fit_channel_shape_scales`).
        """
        train = station_levels(z)  # [N, C]
        centred = z - train[:, None, None, :]
        sd = centred.reshape(-1, z.shape[-1]).std(0)
        sd = np.where(sd > 1e-12, sd, 1.0)  # a constant channel: u = z - ell
        self.levels_ = {"train": train, "shape_sd": sd, "log_columns": (self.stations_.features >= 0).all(0)}
        modes = self.config.extensions.shape_scales(self.time_["channels"])
        fitted = {}
        if len(set(modes)) > 1:  # a scale per channel (a mapping in the config)
            fitted = fit_channel_shape_scales(train, centred, modes, sd)
        elif modes[0] != "pooled":
            mode = modes[0]  # "daily": the level-daily split in one bin, the same scales at every level
            fitted = fit_shape_scale(
                train, centred, daily=mode != "level", bins=1 if mode == "daily" else None
            )
        self.levels_ |= {f"shape_{k}": v for k, v in fitted.items()}
        u = self._level_free(train[:, None, :], centred)
        flat = u.reshape(-1, z.shape[-1])
        self.levels_ |= {"shape_min": flat.min(0), "shape_max": flat.max(0)}
        if self.config.extensions.level_model == "knn":
            n = len(train)  # each station's nearest other stations (itself, at distance 0, dropped)
            order = self._neighbour_order(self.stations_, n)
            order = order[order != np.arange(n)[:, None]].reshape(n, n - 1)
            whole = None if self.config.use_spatial else (n - 1,)  # no station information: the marginal
            self.levels_["neighbours"] = NeighbourLevels().fit(train, order, whole)
        else:
            descriptors = self._level_descriptors(self.stations_, self.station_embeddings_)
            self.levels_["regression"] = LevelRegression().fit(descriptors, train)
        return u.astype(np.float32)

    def _shape_scale(self, level: np.ndarray) -> np.ndarray:
        """``sigma`` of the level-free week for levels ``[..., C]``: the fitted ``sigma(ell)`` with
        ``extensions.shape_scale: level``, else (and in models saved before it) the pooled ``shape_sd``."""
        if "shape_knots" in self.levels_:
            return at_level(level, self.levels_["shape_knots"], self.levels_["shape_scales"])
        return np.broadcast_to(self.levels_["shape_sd"], np.shape(level))

    def _residual_scale(self, level: np.ndarray) -> np.ndarray | None:
        """``sigma_r(ell)`` of the week off its mean day (``shape_scale: level-daily``), else None."""
        if "shape_residual_scales" not in self.levels_:
            return None
        return at_level(level, self.levels_["shape_knots"], self.levels_["shape_residual_scales"])

    def _level_free(self, level: np.ndarray, deviation: np.ndarray) -> np.ndarray:
        """``u`` from deviations ``z - ell`` ``[M, K, L, C]`` at levels ``[M, K, C]``: ``d / sigma(ell)``, or
        with ``level-daily`` ``P(d) / sigma(ell) + (d - P(d)) / sigma_r(ell)`` (``P``: :func:`daily_part`)."""
        scale, residual = self._shape_scale(level)[:, :, None, :], self._residual_scale(level)
        if residual is None:
            return deviation / scale
        profile = daily_part(deviation)
        return profile / scale + (deviation - profile) / residual[:, :, None, :]

    def _weeks_at_levels(self, level: np.ndarray, u: np.ndarray) -> np.ndarray:
        """``z = ell + sigma(ell) u`` for levels ``[M, K, C]`` and level-free weeks ``u`` ``[M, K, T, C]``
        (with ``level-daily``: ``ell + sigma(ell) P(u) + sigma_r(ell) (u - P(u))``, the inverse of
        :meth:`_level_free`, ``P`` being a projection); with a level scale the deviation is clipped to the
        range the training stations at that level deviated in, widened by ``clip_margin``
        (:func:`fit_shape_scale`)."""
        scale, residual = self._shape_scale(level)[:, :, None, :], self._residual_scale(level)
        if residual is None:
            deviation = scale * u
        else:
            profile = daily_part(u)
            deviation = scale * profile + residual[:, :, None, :] * (u - profile)
        margin = self.config.extensions.clip_margin
        if "shape_low" in self.levels_ and margin is not None:
            low, high = (
                at_level(level, self.levels_["shape_knots"], self.levels_[f"shape_{k}"])
                for k in ("low", "high")
            )
            low, high = widened_range(low, high, margin)
            clipped = np.clip(deviation, low[:, :, None, :], high[:, :, None, :])
            by_level = self.levels_.get("shape_clipped")  # [C]; a pooled channel of a mixed model is not
            deviation = clipped if by_level is None else np.where(by_level, clipped, deviation)
        return level[:, :, None, :] + deviation

    def _neighbour_order(self, stations: Stations, k: int) -> np.ndarray:
        """``[M, k]`` training stations nearest to ``stations`` in standardised feature space (the
        nearest-station floor's metric); in index order for all without ``use_spatial`` (the marginal)."""
        if not self.config.use_spatial:
            return np.tile(np.arange(len(self.stations_)), (len(stations), 1))[:, :k]
        return nearest_training_stations(self.stations_, stations, k)

    def _condition(self, spatial: torch.Tensor | None, level: np.ndarray | None) -> torch.Tensor | None:
        """STUNet's station condition ``[B, d]``: F_s and, with ``extensions.level_condition``, the level
        ``[B, C]`` standardised by the training levels' mean and standard deviation."""
        if not self.config.extensions.level_condition:
            return spatial
        train = self.levels_["train"]
        sd = train.std(0)
        standard = torch.as_tensor(
            (level - train.mean(0)) / np.where(sd > 1e-12, sd, 1.0), dtype=torch.float32
        )
        return standard if spatial is None else torch.cat([spatial.float(), standard], 1)

    def _level_descriptors(self, stations: Stations, spatial: torch.Tensor | None) -> np.ndarray:
        """``[M, D]``: F_s, the standardised station features, and ``log1p`` of the features that are never
        negative in training (counts such as POIs act multiplicatively on load). Width 0 without the spatial
        embedding: the ablation then has no station information at all, levels included."""
        if spatial is None:
            return np.zeros((len(stations), 0))
        raw = np.asarray(stations.features, dtype=np.float64)[:, self.levels_["log_columns"]]
        parts = [spatial.double().numpy(), self.builder_.features(stations), np.log1p(np.maximum(raw, 0.0))]
        return np.concatenate(parts, axis=1)

    def _sample_levels(
        self, target: TargetStations, spatial, samples: int, generator: torch.Generator
    ) -> np.ndarray:
        """``[M, samples, C]``: a training station's own level; a new one's drawn from the regression (drawn
        for every station, then replaced for the training ones, so the random stream is the same for any
        mix)."""
        prior, known, seen = self._level_prior(), target.known, target.training_index
        if isinstance(prior, NeighbourLevels):
            order = np.zeros((len(known), prior.k), dtype=np.int64)
            if target.new is not None:
                order[~known] = self._neighbour_order(target.new, prior.k)
            level = prior.sample(order, samples, generator)
        else:
            new = None
            if target.new is not None:
                new_spatial = None if spatial is None else spatial[torch.from_numpy(~known)]
                new = self._level_descriptors(target.new, new_spatial)
            train = self._level_descriptors(self.stations_, self.station_embeddings_)
            level = prior.sample(target.combine(train, new), samples, generator)
        level[known] = self.levels_["train"][seen[known]][:, None, :]
        return level

    def _recent_shift(self) -> np.ndarray:
        if self.weekly_levels_ is None:
            raise ConfigError(
                f"{self.name}: extensions.known_level 'recent' needs the levels of the training weeks, which "
                "models saved before it existed do not keep; refit, or set extensions.known_level: all"
            )
        return recent_level_shift(self.weekly_levels_, self.config.extensions.recent_weeks)
