"""Glue for user-level baselines that generate traffic only: their users move by the Markov floor's
trajectory model, so every output is a valid :class:`~cellsynth.data.model.UserMobility`.

**Trajectories** are those of the ``markov`` floor (:mod:`cellsynth.generators.floors.markov`) with its
defaults: a first-order chain over stations keyed by the hour of the day, fitted on the training users'
locations (:func:`markov_trajectories`), ``P(l_0)`` the share of users starting at each station. Their
scores measure that chain, not the baseline.

**Traffic** comes from a GAN trained by WGAN-GP (:class:`~cellsynth.generators.gan.WGANGPModule`) on the
users' weeks: every user's series ``[T]`` is one training example, with its own locations as a condition
(a network may ignore them), normalised by :class:`~cellsynth.transforms.scaling.LogScaler` as every
baseline (``z = (log1p(x / s) - mu) / sigma``). At generation the users' trajectories are drawn first and
their traffic is generated given them; generated ``z`` is clipped to the training range widened by
``extensions.clip_margin`` (None: no clipping) and mapped back (never negative).

:class:`MarkovTrafficGenerator` is the fit / generate / save of such a generator; a subclass supplies its
networks (:meth:`~MarkovTrafficGenerator._networks`) and, where it conditions on stations, their table.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import pydantic
import torch

from cellsynth.data.model import UserMobility
from cellsynth.errors import DataError
from cellsynth.generators.base import GeneratorConfig, UserGenerator
from cellsynth.generators.conditioning import BaselineExtensions
from cellsynth.generators.floors.markov import DEFAULT_SMOOTHING, MarkovChain, hour_keys
from cellsynth.generators.gan import WGANGPModule
from cellsynth.generators.sampling import Sampling
from cellsynth.generators.state import (
    compose_state,
    fingerprint,
    guard_resume,
    restore_stations,
    restore_time_axis,
    split_state,
    stations_state,
    time_axis_state,
)
from cellsynth.nn.adaptive import step_features
from cellsynth.training import loader, resolve_device, seed_everything, train
from cellsynth.transforms.scaling import LogScaler, widened_range

__all__ = [
    "MarkovTrafficGenerator",
    "UserGANConfig",
    "markov_trajectories",
    "week_positions",
]


def markov_trajectories(data: UserMobility) -> MarkovChain:
    """The Markov floor's trajectory model fitted on ``data``'s locations: hour-of-day keys, the floor's
    default smoothing (:data:`~cellsynth.generators.floors.markov.DEFAULT_SMOOTHING`)."""
    hours = hour_keys(data.start, data.step, data.n_steps, weekly=False)
    return MarkovChain.fit(data.locations, hours, len(data.stations), 24, smoothing=DEFAULT_SMOOTHING)


def week_positions(start: pd.Timestamp, step: pd.Timedelta, n_steps: int) -> np.ndarray:
    """``int64 [T]``: each step's index within its week (Monday 00:00 local time = 0), in steps."""
    stamps = pd.date_range(start, periods=n_steps, freq=step)
    monday = stamps.normalize() - pd.to_timedelta(stamps.day_of_week, unit="D")
    return np.asarray((stamps - monday) // step, dtype=np.int64)


class UserGANConfig(GeneratorConfig):
    """What the user-level GAN baselines share: the hour-of-week features, WGAN-GP's published settings,
    the training loop, and cellsynth's normalisation and clipping (``extensions``)."""

    weekly_harmonics: int = pydantic.Field(
        3, ge=0, description="Hour-of-week sinusoids: cycles per week 1..K."
    )
    daily_harmonics: int = pydantic.Field(4, ge=0, description="Hour-of-week sinusoids: cycles per day 1..K.")
    n_critic: int = pydantic.Field(5, ge=1, description="Critic updates per generator update (WGAN-GP: 5).")
    gp_weight: float = pydantic.Field(10.0, ge=0, description="Gradient-penalty weight lambda (WGAN-GP: 10).")
    lr: float = pydantic.Field(1e-4, gt=0, description="Adam learning rate of both networks (WGAN-GP: 1e-4).")
    betas: tuple[float, float] = pydantic.Field((0.0, 0.9), description="Adam betas (WGAN-GP: 0, 0.9).")
    epochs: int = pydantic.Field(
        400, ge=1, description="Passes over the training users (one critic update a batch)."
    )
    batch_size: int = pydantic.Field(32, ge=1, description="Users per training batch.")
    accelerator: Literal["auto", "cpu", "gpu"] = pydantic.Field(
        "auto", description="Where to train and sample: 'auto' uses a GPU when there is one."
    )
    sampling: Sampling = pydantic.Field(default_factory=lambda: Sampling(batch_size=256))
    extensions: BaselineExtensions = pydantic.Field(default_factory=BaselineExtensions)

    @pydantic.model_validator(mode="after")
    def _some_time_features(self) -> UserGANConfig:
        if self.weekly_harmonics + self.daily_harmonics == 0:
            raise ValueError("weekly_harmonics + daily_harmonics must be >= 1 (the hour-of-week condition)")
        return self


def _to(noise, device):
    """A network's noise (a tensor or a tuple of them) on ``device``."""
    return tuple(n.to(device) for n in noise) if isinstance(noise, tuple) else noise.to(device)


class MarkovTrafficGenerator(UserGenerator):
    """Users who move by the Markov floor and make the traffic of a GAN (module docstring).

    Subclasses implement :meth:`_networks`; one that conditions on stations overrides :meth:`_station_tables`.
    ``generate(n_users, seed=s, batch_size=None)``; after ``fit``, ``history_`` holds the critic's mean
    Wasserstein estimate per epoch.
    """

    Config: ClassVar[type[UserGANConfig]] = UserGANConfig

    # -- hooks -------------------------------------------------------------------------------------------
    @abstractmethod
    def _networks(
        self, tau: torch.Tensor, table: torch.Tensor | None
    ) -> tuple[torch.nn.Module, torch.nn.Module]:
        """``(generator, critic)`` for the hour-of-week features ``tau [D_t, T]`` and the station ``table``
        ``[N, d]`` (None for a generator that does not condition on stations)."""

    def _station_tables(self, data: UserMobility, source: UserMobility, **side) -> tuple:
        """``(training table, generating table)`` ``[N, d]`` of the stations of ``source`` (whose traffic trains
        the GAN) and of ``data`` (where the users are generated); ``(None, None)`` by default."""
        return None, None

    # -- fit ---------------------------------------------------------------------------------------------
    def _check_fit_inputs(self, data):
        data = super()._check_fit_inputs(data)
        return self._check_user_data(data, traffic=True)

    def _check_user_data(self, data: UserMobility, *, traffic: bool, what: str = "this data") -> UserMobility:
        """``data`` if it has traffic (when ``traffic``), 2 steps or more and a step that divides a week."""
        if traffic and not data.has_traffic:
            raise DataError(
                f"{self.name} generates traffic (its users move by the Markov floor), but {what} has no "
                "traffic column; give users with traffic, or use markov or mstdiff for trajectories only",
                source=data.source,
            )
        if data.n_steps < 2:
            raise DataError(
                f"{self.name} needs at least 2 time steps per user, got {data.n_steps}", source=data.source
            )
        try:
            data.steps_per("7D")
        except DataError:
            raise DataError(
                f"{self.name} conditions on the hour of the week, but the step {data.step} of {what} does not "
                "divide 7 days; resample to 30-minute or hourly steps",
                source=data.source,
            ) from None
        return data

    def _fit(
        self,
        data: UserMobility,
        source: UserMobility,
        *,
        progress: bool,
        checkpoint_dir: str | os.PathLike | None,
        extra_fingerprint: tuple = (),
        **side,
    ):
        """Fit on ``data`` (stations, trajectories, time axis of the generated users) with the GAN trained on
        ``source``'s traffic (``data`` itself, or another city's users with the same time axis)."""
        cfg = self.config
        guard_resume(
            checkpoint_dir,
            self.name,
            {
                "config": cfg.model_dump(mode="json"),
                "data": fingerprint(data.locations, data.traffic, data.stations.ids, *extra_fingerprint),
            },
            what_else="training data or side inputs",
        )
        week = data.steps_per("7D")
        self.trajectories_ = markov_trajectories(data)
        self.scaler_ = LogScaler(cfg.extensions.normalisation).fit(source.traffic[..., None])
        z = self.scaler_.transform(source.traffic[..., None])[..., 0].astype(np.float32)
        train_table, table = self._station_tables(
            data, source, progress=progress, checkpoint_dir=checkpoint_dir, **side
        )
        self.stations_, self.time_, self.n_steps_, self.week_ = (
            data.stations,
            time_axis_state(data),
            data.n_steps,
            week,
        )
        tau = self._tau()
        dataset = torch.utils.data.TensorDataset(
            torch.from_numpy(z[:, None, :]), torch.from_numpy(np.array(source.locations, dtype=np.int64))
        )
        seed_everything(cfg.seed)  # before building: initial weights are seeded
        generator, critic = self._networks(tau, train_table)
        module = WGANGPModule(
            generator,
            critic,
            n_critic=cfg.n_critic,
            gp_weight=cfg.gp_weight,
            lr=cfg.lr,
            betas=tuple(cfg.betas),
        )
        train(
            module,
            loader(dataset, batch_size=cfg.batch_size, seed=cfg.seed),
            max_epochs=cfg.epochs,
            stage=self.name,
            seed=cfg.seed,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            accelerator=cfg.accelerator,
            gradient_clip_val=None,  # manual optimisation: Lightning cannot clip
        )
        self.history_ = list(module.history)
        net = module.generator.cpu().eval().requires_grad_(False)
        if table is not None:
            net.context.station_table.copy_(torch.as_tensor(table, dtype=torch.float32))
        self.table_shape_ = None if table is None else list(np.shape(table))
        self.net_ = net
        self.fitted_ = True
        return self

    def _tau(self) -> torch.Tensor:
        start, step = restore_time_axis(self.time_)
        positions = week_positions(start, step, self.n_steps_)
        cfg = self.config
        return step_features(positions, self.week_, cfg.weekly_harmonics, cfg.daily_harmonics)

    # -- generate ----------------------------------------------------------------------------------------
    def generate(
        self,
        target,
        *,
        samples: int = 1,
        seed: int = 0,
        batch_size: int | None = None,
        progress: bool = False,
        **options: Any,
    ) -> UserMobility:
        """``target`` users: trajectories from the Markov floor's chain, then their traffic from the GAN given
        them (module docstring). Same seed, same machine, same users."""
        self.check_fitted()
        if options:
            raise DataError(
                f"{self.name}.generate got unknown option(s) {sorted(options)}; it takes batch_size"
            )
        n_users = self._check_users(target)
        if samples != 1:
            raise DataError(
                f"{self.name} generates users: give their number, not samples (got samples={samples})"
            )
        batch_size = self.config.sampling.batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        start, step = restore_time_axis(self.time_)
        hours = hour_keys(start, step, self.n_steps_, weekly=False)
        locations = self.trajectories_.sample(n_users, hours, np.random.default_rng(seed))
        noise_source = torch.Generator().manual_seed(seed)
        device = resolve_device(self.config.accelerator)
        low, high = self._z_range()
        net, out = self.net_.to(device), []
        try:
            with torch.no_grad():
                for first in range(0, n_users, batch_size):
                    rows = torch.from_numpy(locations[first : first + batch_size]).to(device)
                    noise = _to(net.noise(len(rows), generator=noise_source), device)
                    z = net(noise, rows)[:, 0].float().cpu()
                    out.append(z if low is None else z.clamp(low, high))
        finally:
            self.net_ = net.cpu()
        z = torch.cat(out).double().numpy()
        traffic = self.scaler_.inverse(z[..., None])[..., 0].astype(np.float32)
        return UserMobility(locations, start, step, self.stations_, traffic=traffic)

    def _z_range(self) -> tuple[float | None, float | None]:
        margin = self.config.extensions.clip_margin
        if margin is None:
            return None, None
        low, high = widened_range(self.scaler_.z_min_, self.scaler_.z_max_, margin)
        return float(low[0]), float(high[0])

    # -- persistence -------------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = stations_state(self.stations_)
        tensors |= self.trajectories_.state()
        tensors |= compose_state({"scaler": self.scaler_.state(), "net": self.net_.state_dict()})
        return tensors, meta | {
            "time": self.time_,
            "n_steps": self.n_steps_,
            "steps_per_week": self.week_,
            "table_shape": self.table_shape_,
            "history": self.history_,
        }

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        parts = split_state(tensors, ("scaler", "net"))
        self.stations_ = restore_stations(tensors, meta)
        self.time_, self.n_steps_, self.week_ = meta["time"], meta["n_steps"], meta["steps_per_week"]
        self.table_shape_, self.history_ = meta["table_shape"], meta.get("history", [])
        self.trajectories_ = MarkovChain.from_state(tensors, 24, DEFAULT_SMOOTHING, 1)
        self.scaler_ = LogScaler.from_state(parts["scaler"], self.config.extensions.normalisation)
        table = None if self.table_shape_ is None else torch.zeros(self.table_shape_)
        net, _ = self._networks(self._tau(), table)
        net.load_state_dict(parts["net"])
        self.net_ = net.eval().requires_grad_(False)
