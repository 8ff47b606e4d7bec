"""What MSTDiff's user-traffic baselines share (``adaptive``, ``msh-gan``, ``csdi``, ``dit``): a model of each
user's traffic series, and the Markov floor's trajectory model for where the generated users are.

**Traffic.** Each training user's traffic ``x [T]`` (the whole series of the data, a week of 30-minute steps,
``T = 336``, in the benchmark) is one training example, normalised as every traffic model of cellsynth by
:class:`~cellsynth.transforms.scaling.LogScaler` (``z = (log1p(x / s) - mu) / sigma``, ``s`` the median of the
positive values). Generated ``z`` is clipped to the training range of ``z`` widened by
``extensions.clip_margin`` of it on each side (None: no clipping) and mapped back by the inverse, which is
never negative. Every generated series lies on the training time axis, so position ``t`` is the same time of
the week for all users.

**Trajectories.** These baselines generate traffic only. The locations of a generated user come from the
Markov floor's trajectory model (:func:`cellsynth.generators.floors.markov.trajectory_model`: a first-order
chain over stations keyed by the hour of the day, fitted on the training users' locations, ``P(l_0)`` the
share of users starting at each station), drawn with ``numpy.random.default_rng(seed)``: the same users'
locations as ``markov``'s with its defaults and the same seed. So every output is a valid
:class:`~cellsynth.data.model.UserMobility`, and its mobility metrics measure that chain, not the baseline.

**Generation.** The locations are drawn first; then the traffic, ``batch_size`` users at a time, by the
family's :meth:`UserTrafficGenerator._draw`, which is given the batch's locations. The GANs
(:mod:`._gan`) condition on them (ADAPTIVE on the station of every step; MSH-GAN's networks take them and
ignore them); the diffusion models (:mod:`._diffusion`) ignore them: their traffic is independent of the
trajectory, so metrics that couple traffic to place measure that independence.

Training goes through :func:`cellsynth.training.train` (one stage named after the model): a checkpoint every
epoch under ``checkpoint_dir/checkpoints/<name>/``, exact resume; a rerun with another config or other data is
refused. After ``fit``, ``history_`` is ``{name: [one number per epoch]}`` (what the training module records).
"""

from __future__ import annotations

import os
from abc import abstractmethod
from typing import Any, ClassVar

import lightning as L
import numpy as np
import pandas as pd
import pydantic
import torch

from cellsynth.data.model import UserMobility
from cellsynth.errors import DataError
from cellsynth.generators.base import TrainingConfig, UserGenerator
from cellsynth.generators.conditioning import BaselineExtensions
from cellsynth.generators.floors.markov import MarkovChain, hour_keys, trajectory_model
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
from cellsynth.training import loader, module_on, resolve_device, seed_everything, train
from cellsynth.transforms.scaling import LogScaler, widened_range

__all__ = ["UserTrafficConfig", "UserTrafficGenerator", "week_positions"]


def week_positions(start: pd.Timestamp, step: pd.Timedelta, n_steps: int) -> np.ndarray:
    """``int64 [T]``: each step's index within its week (Monday 00:00 local time = 0), in steps."""
    stamps = pd.date_range(start, periods=n_steps, freq=step)
    monday = stamps.normalize() - pd.to_timedelta(stamps.day_of_week, unit="D")
    return np.asarray((stamps - monday) // step, dtype=np.int64)


class UserTrafficConfig(TrainingConfig):
    """Options every user-traffic baseline has (a family or a model redeclares its paper's defaults)."""

    epochs: int = pydantic.Field(200, ge=1, description="Passes over all training users.")
    batch_size: int = pydantic.Field(32, ge=1, description="Users per training batch.")
    lr: float = pydantic.Field(1e-3, gt=0, description="Learning rate.")
    sampling: Sampling = pydantic.Field(default_factory=Sampling)
    extensions: BaselineExtensions = pydantic.Field(default_factory=BaselineExtensions)


class UserTrafficGenerator(UserGenerator):
    """Fit / generate / save of a user-traffic model with Markov trajectories (module docstring).

    A family supplies :meth:`_network` (what generates, also rebuilt by ``load``), :meth:`_module` (the
    Lightning module that trains it on the batches of :meth:`_examples`), :meth:`_trained` (the network kept
    after training) and :meth:`_draw` (normalised series given the locations). It may override
    :meth:`_check_series` (series its networks cannot take), :meth:`_fit_conditioning`,
    :meth:`_conditioning_state` and :meth:`_restore_conditioning` (what else it fits, saves and restores before
    the network is built) and :meth:`_options` (``generate``'s sampling options).
    """

    Config: ClassVar[type[UserTrafficConfig]] = UserTrafficConfig
    #: Gradient-norm clipping of the training loop (``None`` for manual optimisation).
    gradient_clip_val: ClassVar[float | None] = 1.0

    # -- hooks -------------------------------------------------------------------------------------------
    @abstractmethod
    def _network(self, length: int) -> torch.nn.Module:
        """The (untrained) generating network for series of ``length`` steps."""

    @abstractmethod
    def _module(self, network: torch.nn.Module) -> L.LightningModule:
        """The Lightning module that trains ``network`` on batches of :meth:`_examples`."""

    @abstractmethod
    def _trained(self, module: L.LightningModule) -> torch.nn.Module:
        """The network to generate with, taken from the trained ``module``."""

    @abstractmethod
    def _draw(
        self,
        net: torch.nn.Module,
        locations: torch.Tensor,
        *,
        generator: torch.Generator,
        device: torch.device,
        progress: bool,
        **options: Any,
    ) -> torch.Tensor:
        """``[B, T]`` normalised series of the users whose locations are ``locations`` ``[B, T]`` (on
        ``device``); all randomness from ``generator`` (on the CPU)."""

    def _examples(self, z: np.ndarray, source: UserMobility) -> tuple[torch.Tensor, ...]:
        """The training tensors of the users ``source`` (normalised traffic ``z [U, T]``): ``(z,)`` by
        default, a batch is then ``(z [B, T],)``."""
        return (torch.from_numpy(z),)

    def _check_series(self, data: UserMobility, what: str) -> None:
        """Raise a :class:`DataError` when the networks cannot take the series of ``data`` (``what`` names it)."""

    def _fit_conditioning(self, data: UserMobility, source: UserMobility, **side: Any) -> None:
        """Fit what the network needs besides the time axis (e.g. station tables), before it is built."""

    def _conditioning_state(self) -> dict[str, Any]:
        """JSON-able metadata of what :meth:`_fit_conditioning` fitted."""
        return {}

    def _restore_conditioning(self, meta: dict[str, Any]) -> None:
        """Restore what :meth:`_conditioning_state` saved, before the network is rebuilt."""

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validate ``generate``'s extra options; the default takes none."""
        if options:
            raise DataError(
                f"{self.name}.generate got unknown option(s) {sorted(options)}; it takes progress and batch_size"
            )
        return {}

    # -- fit ---------------------------------------------------------------------------------------------
    def _check_fit_inputs(self, data, *, traffic: bool = True):
        """``data`` checked as :meth:`_check_user_data` (``traffic=False``: users whose traffic is not
        learned, e.g. the target city of a transfer)."""
        return self._check_user_data(super()._check_fit_inputs(data), traffic=traffic)

    def _check_user_data(self, data: UserMobility, *, traffic: bool, what: str = "this data") -> UserMobility:
        """``data`` if it has traffic (when ``traffic``), 2 steps or more and series the networks can take."""
        if traffic and not data.has_traffic:
            raise DataError(
                f"{self.name} generates traffic only (its users move by the Markov floor) and finds no traffic "
                f"column to learn from: it generates users' traffic, but {what} has locations only; fit markov "
                "or mstdiff for trajectories, or give users with a traffic column",
                source=data.source,
            )
        if data.n_steps < 2:
            raise DataError(
                f"{self.name} needs at least 2 time steps per user, got {data.n_steps}", source=data.source
            )
        self._check_series(data, what)
        return data

    def fit(self, data, *, progress: bool = True, checkpoint_dir: str | os.PathLike | None = None):
        data = self._check_fit_inputs(data)
        return self._fit(data, data, progress=progress, checkpoint_dir=checkpoint_dir)

    def _fit(
        self,
        data: UserMobility,
        source: UserMobility,
        *,
        progress: bool,
        checkpoint_dir: str | os.PathLike | None,
        extra_fingerprint: tuple = (),
        **side: Any,
    ):
        """Fit on ``data`` (stations, trajectories and time axis of the generated users) with the traffic model
        trained on ``source``'s traffic (``data`` itself, or another city's users on the same time axis);
        ``side`` goes to :meth:`_fit_conditioning`, ``extra_fingerprint`` to the resume guard."""
        cfg = self.config
        guard_resume(
            checkpoint_dir,
            self.name,
            {
                "config": cfg.model_dump(mode="json"),
                "data": fingerprint(data.locations, data.traffic, data.stations.ids, *extra_fingerprint),
            },
            what_else="training data or side inputs" if extra_fingerprint else "training data",
        )
        self.scaler_ = LogScaler(cfg.extensions.normalisation).fit(source.traffic[..., None])
        z = self.scaler_.transform(source.traffic[..., None])[..., 0].astype(np.float32)  # [U, T]
        self.trajectories_ = trajectory_model(data)
        self.stations_, self.time_, self.n_steps_ = data.stations, time_axis_state(data), data.n_steps
        self._fit_conditioning(data, source, progress=progress, checkpoint_dir=checkpoint_dir, **side)

        seed_everything(cfg.seed)  # before building: initial weights are seeded
        module = self._module(self._network(data.n_steps))
        train(
            module,
            loader(
                torch.utils.data.TensorDataset(*self._examples(z, source)),
                batch_size=cfg.batch_size,
                seed=cfg.seed,
            ),
            max_epochs=cfg.epochs,
            stage=self.name,
            seed=cfg.seed,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            placement=cfg.placement(),
            gradient_clip_val=self.gradient_clip_val,
        )
        self.history_ = {self.name: list(getattr(module, "history", []))}
        self.net_ = self._trained(module).cpu().eval().requires_grad_(False)
        self.fitted_ = True
        return self

    # -- generate ----------------------------------------------------------------------------------------
    def generate(
        self,
        target,
        *,
        samples: int = 1,
        seed: int = 0,
        progress: bool = False,
        batch_size: int | None = None,
        **options: Any,
    ) -> UserMobility:
        """``target`` users: locations from the Markov trajectory model, then their traffic ``batch_size``
        users at a time (default ``sampling.batch_size``; module docstring). Same seed, same machine, same
        users."""
        self.check_fitted()
        options = self._options(options)
        n_users = self._check_users(target)
        if samples != 1:
            raise DataError(
                f"{self.name} generates users: give their number, not samples (got samples={samples})"
            )
        batch_size = self.config.sampling.batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        start, step = restore_time_axis(self.time_)
        hours = hour_keys(start, step, self.n_steps_, weekly=self.trajectories_.n_hours == 168)
        locations = self.trajectories_.sample(n_users, hours, np.random.default_rng(seed))

        device = resolve_device(self.config.accelerator)
        z_range = self._z_range(device)
        net = module_on(self.net_, device)
        generator = torch.Generator().manual_seed(int(seed))
        out = []
        with torch.no_grad():
            for first in range(0, n_users, batch_size):
                rows = torch.from_numpy(locations[first : first + batch_size]).to(device)
                z = self._draw(net, rows, generator=generator, device=device, progress=progress, **options)
                if z_range is not None:
                    z = torch.maximum(torch.minimum(z, z_range[1]), z_range[0])
                out.append(z.float().cpu())
        z = torch.cat(out).double().numpy()[..., None]
        traffic = self.scaler_.inverse(z)[..., 0].astype(np.float32)
        return UserMobility(locations, start, step, self.stations_, traffic=traffic)

    def _z_range(self, device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(lo, hi)`` scalars: the training range of z widened by ``clip_margin`` of it on each side, or None.
        Why: a value a few units beyond the training range is harmless in z but, through ``expm1``, becomes
        traffic many times the largest ever seen."""
        margin = self.config.extensions.clip_margin
        if margin is None:
            return None
        bounds = widened_range(self.scaler_.z_min_, self.scaler_.z_max_, margin)
        return tuple(torch.as_tensor(float(b[0]), dtype=torch.float32, device=device) for b in bounds)

    # -- persistence -------------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = stations_state(self.stations_)
        tensors |= compose_state({"scaler": self.scaler_.state(), "net": self.net_.state_dict()})
        chain = self.trajectories_
        tensors |= chain.state("markov")
        meta |= {
            "time": self.time_,
            "n_steps": self.n_steps_,
            "markov": {"n_hours": chain.n_hours, "smoothing": chain.smoothing, "min_count": chain.min_count},
            "conditioning": self._conditioning_state(),
            "history": getattr(self, "history_", {}),
        }
        return tensors, meta

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        parts = split_state(tensors, ("scaler", "net"))
        self.stations_ = restore_stations(tensors, meta)
        self.time_, self.n_steps_ = meta["time"], int(meta["n_steps"])
        self.history_ = meta.get("history", {})
        self.scaler_ = LogScaler.from_state(parts["scaler"], self.config.extensions.normalisation)
        chain = meta["markov"]
        self.trajectories_ = MarkovChain.from_state(
            tensors, chain["n_hours"], chain["smoothing"], chain["min_count"], "markov"
        )
        self._restore_conditioning(meta["conditioning"])
        net = self._network(self.n_steps_)
        net.load_state_dict(parts["net"])
        self.net_ = net.eval().requires_grad_(False)
