"""What the user-traffic baselines share: a model of each user's traffic series, and the Markov floor's
trajectory model for where the generated users are.

**Traffic.** Each training user's traffic ``x [T]`` (the whole series of the data, a week of 30-minute steps,
``T = 336``, in the benchmark) is one training example, normalised as every traffic model of cellsynth by
:class:`~cellsynth.transforms.scaling.LogScaler` (``z = (log1p(x / s) - mu) / sigma``, ``s`` the median of the
positive values); generated ``z`` is clipped to the training range of ``z`` widened by
``extensions.clip_margin`` of it on each side (None: no clipping) and mapped back by the inverse, which is
never negative. The model (a subclass) learns the distribution of ``z [T]`` unconditionally: users are
exchangeable, and every generated series lies on the training time axis, so position ``t`` is the same
time of the week for all of them.

**Trajectories.** These baselines generate traffic only. The locations of a generated user come from the
Markov floor's trajectory model (:func:`cellsynth.generators.floors.markov.trajectory_model`: a first-order
chain over stations by hour of the day, fitted on the same training users), drawn independently of the
user's traffic. So every output is a valid :class:`~cellsynth.data.model.UserMobility`, and its mobility
metrics measure that chain, not the baseline; metrics that couple traffic to place measure the
independence.

Training goes through :func:`cellsynth.training.train` (one stage named after the model): a checkpoint
every epoch under ``checkpoint_dir/checkpoints/<name>/``, exact resume; a rerun with another config or other
data is refused.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from typing import Any, ClassVar, Literal

import lightning as L
import numpy as np
import pydantic
import torch

from cellsynth.data.model import UserMobility
from cellsynth.errors import DataError
from cellsynth.generators.base import ConfigSection, GeneratorConfig, UserGenerator
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
from cellsynth.training import loader, resolve_device, seed_everything, train
from cellsynth.transforms.scaling import LogScaler, widened_range

__all__ = ["UserTrafficConfig", "UserTrafficExtensions", "UserTrafficGenerator"]


class UserTrafficExtensions(ConfigSection):
    """cellsynth's additions to the published models: the normalisation and the clipping of generated values
    (the ``paper`` presets switch the clipping off)."""

    normalisation: Literal["standard", "unit"] = pydantic.Field(
        "standard",
        description="The papers give none for traffic. LogScaler mode: 'standard' (z-score) or 'unit' ([-1, 1]).",
    )
    clip_margin: float | None = pydantic.Field(
        0.1,
        ge=0,
        description="Clip generated series to the range of the normalised training traffic, widened by this "
        "share of the range on each side; None: no clipping, as the papers.",
    )


class UserTrafficConfig(GeneratorConfig):
    """Options every user-traffic baseline has (a model redeclares the defaults of its paper)."""

    epochs: int = pydantic.Field(200, ge=1, description="Passes over all training users.")
    batch_size: int = pydantic.Field(32, ge=1, description="Users per training batch.")
    lr: float = pydantic.Field(1e-3, gt=0, description="Learning rate.")
    accelerator: Literal["auto", "cpu", "gpu"] = pydantic.Field(
        "auto", description="Where to train and sample: 'auto' uses a GPU when there is one."
    )
    sampling: Sampling = pydantic.Field(default_factory=Sampling)
    extensions: UserTrafficExtensions = pydantic.Field(default_factory=UserTrafficExtensions)


class UserTrafficGenerator(UserGenerator):
    """Fit / generate / save of a user-traffic model with Markov trajectories (module docstring).

    A subclass supplies :meth:`_network` (what generates), :meth:`_module` (the Lightning module that trains
    it on batches ``(z [B, T],)``), :meth:`_trained` (the network kept after training) and :meth:`_draw`
    (normalised series); it may override :meth:`_check_length` (series lengths its network cannot take) and
    :meth:`_options` (``generate``'s sampling options).
    """

    Config: ClassVar[type[UserTrafficConfig]] = UserTrafficConfig
    #: Gradient-norm clipping of the training loop (``None`` for manual optimisation).
    gradient_clip_val: ClassVar[float | None] = 1.0

    # -- hooks -------------------------------------------------------------------------------------------
    @abstractmethod
    def _network(self, length: int) -> torch.nn.Module:
        """The (untrained) network for series of ``length`` steps."""

    @abstractmethod
    def _module(self, network: torch.nn.Module) -> L.LightningModule:
        """The Lightning module that trains ``network``; batches are ``(z [B, T],)``."""

    @abstractmethod
    def _trained(self, module: L.LightningModule) -> torch.nn.Module:
        """The network to generate with, taken from the trained ``module``."""

    @abstractmethod
    def _draw(
        self,
        net: torch.nn.Module,
        n: int,
        *,
        generator: torch.Generator,
        device: torch.device,
        progress: bool,
        **options: Any,
    ) -> torch.Tensor:
        """``[n, T]`` normalised series; all randomness from ``generator`` (on the CPU)."""

    def _check_length(self, data: UserMobility) -> None:
        """Raise a :class:`DataError` when the network cannot model series of ``data.n_steps`` steps."""

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validate ``generate``'s extra options; the default takes none."""
        if options:
            raise DataError(
                f"{self.name}.generate got unknown option(s) {sorted(options)}; it takes progress and batch_size"
            )
        return {}

    # -- fit ---------------------------------------------------------------------------------------------
    def _check_fit_inputs(self, data):
        data = super()._check_fit_inputs(data)
        if not data.has_traffic:
            raise DataError(
                f"{self.name} generates users' traffic, but this data has locations only; fit markov or mstdiff "
                "for trajectories, or give data with a traffic column",
                source=data.source,
            )
        if data.n_steps < 2:
            raise DataError(
                f"{self.name} needs at least 2 time steps per user, got {data.n_steps}", source=data.source
            )
        self._check_length(data)
        return data

    def fit(self, data, *, progress: bool = True, checkpoint_dir: str | os.PathLike | None = None):
        data = self._check_fit_inputs(data)
        cfg = self.config
        guard_resume(
            checkpoint_dir,
            self.name,
            {
                "config": cfg.model_dump(mode="json"),
                "data": fingerprint(data.locations, data.traffic, data.stations.ids),
            },
        )
        self.scaler_ = LogScaler(cfg.extensions.normalisation).fit(data.traffic[..., None])
        z = self.scaler_.transform(data.traffic[..., None])[..., 0].astype(np.float32)  # [U, T]
        self.markov_ = trajectory_model(data)
        self.stations_, self.time_, self.n_steps_ = data.stations, time_axis_state(data), data.n_steps

        seed_everything(cfg.seed)  # before building: initial weights are seeded
        module = self._module(self._network(data.n_steps))
        train(
            module,
            loader(
                torch.utils.data.TensorDataset(torch.from_numpy(z)), batch_size=cfg.batch_size, seed=cfg.seed
            ),
            max_epochs=cfg.epochs,
            stage=self.name,
            seed=cfg.seed,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            accelerator=cfg.accelerator,
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
        """``target`` users: traffic from the model, ``batch_size`` users at a time (default
        ``sampling.batch_size``), locations from the Markov trajectory model. Same seed, same users."""
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
        device = resolve_device(self.config.accelerator)
        x_range = self._z_range(device)
        net = self.net_.to(device)
        generator = torch.Generator().manual_seed(int(seed))
        out = []
        try:
            with torch.no_grad():
                for first in range(0, n_users, batch_size):
                    n = min(batch_size, n_users - first)
                    z = self._draw(net, n, generator=generator, device=device, progress=progress, **options)
                    if x_range is not None:
                        z = torch.maximum(torch.minimum(z, x_range[1]), x_range[0])
                    out.append(z.float().cpu())
        finally:
            self.net_ = net.cpu()
        z = torch.cat(out).double().numpy()[..., None]
        traffic = self.scaler_.inverse(z)[..., 0].astype(np.float32)
        start, step = restore_time_axis(self.time_)
        hours = hour_keys(start, step, self.n_steps_, weekly=self.markov_.n_hours == 168)
        locations = self.markov_.sample(n_users, hours, np.random.default_rng(seed))
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
        m = self.markov_
        tensors |= m.state("markov")
        meta |= {
            "time": self.time_,
            "n_steps": self.n_steps_,
            "markov": {"n_hours": m.n_hours, "smoothing": m.smoothing, "min_count": m.min_count},
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
        self.markov_ = MarkovChain.from_state(
            tensors, chain["n_hours"], chain["smoothing"], chain["min_count"], "markov"
        )
        net = self._network(self.n_steps_)
        net.load_state_dict(parts["net"])
        self.net_ = net.eval().requires_grad_(False)
