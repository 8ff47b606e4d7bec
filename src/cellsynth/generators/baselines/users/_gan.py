"""The GAN user-traffic baselines (``adaptive``, ``msh-gan``): a generator of users' normalised traffic series
given their locations and the hour of the week, and its critic, trained by WGAN-GP
(:class:`~cellsynth.generators.gan.WGANGPModule`; batches ``(z [B, 1, T], locations [B, T])``).

The condition of every step is ``tau [D_t, T]``, the hour-of-week sinusoids of the training time axis
(:func:`cellsynth.nn.adaptive.step_features`: ``weekly_harmonics`` cycles per week, ``daily_harmonics`` per
day), so the step of the data must divide a week. A network that conditions on where the user is (ADAPTIVE)
gets a station table ``[N, d]``: the training one is that of the stations whose traffic trains the GAN, the
generating one that of the stations of the generated users (they differ in a transfer,
:mod:`.adaptive`). At generation the users' trajectories are drawn first and their traffic is generated
given them (:mod:`._trajectory`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import pydantic
import torch

from cellsynth.data.model import UserMobility
from cellsynth.errors import DataError
from cellsynth.generators.baselines.users._trajectory import (
    UserTrafficConfig,
    UserTrafficGenerator,
    week_positions,
)
from cellsynth.generators.gan import WGANGPModule
from cellsynth.generators.state import restore_time_axis
from cellsynth.nn.adaptive import step_features

__all__ = ["UserGANConfig", "UserGANGenerator"]


class UserGANConfig(UserTrafficConfig):
    """What the user-level GAN baselines share: the hour-of-week features, WGAN-GP's published settings and
    the training loop; cellsynth's normalisation and clipping in ``extensions``."""

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

    @pydantic.model_validator(mode="after")
    def _some_time_features(self) -> UserGANConfig:
        if self.weekly_harmonics + self.daily_harmonics == 0:
            raise ValueError("weekly_harmonics + daily_harmonics must be >= 1 (the hour-of-week condition)")
        return self


def _to(noise, device):
    """A network's noise (a tensor or a tuple of them) on ``device``."""
    return tuple(n.to(device) for n in noise) if isinstance(noise, tuple) else noise.to(device)


def _set_table(net: torch.nn.Module, table: np.ndarray | None) -> None:
    """Put ``table`` into the station table buffer of ``net``'s context (nothing for None)."""
    if table is not None:
        with torch.no_grad():
            net.context.station_table.copy_(torch.as_tensor(table, dtype=torch.float32))


class UserGANGenerator(UserTrafficGenerator):
    """Users who move by the Markov floor and make the traffic of a WGAN-GP given their locations (module
    docstring).

    A model implements :meth:`_generator` and :meth:`_critic`; one that conditions on stations overrides
    :meth:`_station_tables`. ``generate(n_users, seed=s, batch_size=None)``; after ``fit``,
    ``history_[name]`` holds the critic's mean Wasserstein estimate per epoch.
    """

    Config: ClassVar[type[UserGANConfig]] = UserGANConfig
    gradient_clip_val: ClassVar[float | None] = None  # manual optimisation: Lightning cannot clip

    # -- hooks -------------------------------------------------------------------------------------------
    @abstractmethod
    def _generator(self, tau: torch.Tensor, table: torch.Tensor | None) -> torch.nn.Module:
        """The generator for the hour-of-week features ``tau [D_t, T]`` and the station ``table`` ``[N, d]``
        (None for a generator that does not condition on stations)."""

    @abstractmethod
    def _critic(self, tau: torch.Tensor, table: torch.Tensor | None) -> torch.nn.Module:
        """The critic, as :meth:`_generator`."""

    def _station_tables(self, data: UserMobility, source: UserMobility, **side) -> tuple:
        """``(training table, generating table)`` ``[N, d]`` of the stations of ``source`` (whose traffic trains
        the GAN) and of ``data`` (where the users are generated); ``(None, None)`` by default."""
        return None, None

    # -- what the networks are built from ------------------------------------------------------------------
    def _check_series(self, data: UserMobility, what: str) -> None:
        try:
            data.steps_per("7D")
        except DataError:
            raise DataError(
                f"{self.name} conditions on the hour of the week, but the step {data.step} of {what} does not "
                "divide 7 days; resample to 30-minute or hourly steps",
                source=data.source,
            ) from None

    def _fit_conditioning(self, data, source, **side) -> None:
        self.week_ = data.steps_per("7D")
        # The tables live only during fit: the generating one is saved with the generator's weights.
        self._fit_tables = self._station_tables(data, source, **side)
        generating = self._fit_tables[1]
        self.table_shape_ = None if generating is None else list(np.shape(generating))

    def _conditioning_state(self) -> dict[str, Any]:
        return {"steps_per_week": self.week_, "table_shape": self.table_shape_}

    def _restore_conditioning(self, meta: dict[str, Any]) -> None:
        self.week_, self.table_shape_ = meta["steps_per_week"], meta["table_shape"]

    def _tau(self) -> torch.Tensor:
        start, step = restore_time_axis(self.time_)
        positions = week_positions(start, step, self.n_steps_)
        cfg = self.config
        return step_features(positions, self.week_, cfg.weekly_harmonics, cfg.daily_harmonics)

    def _table(self) -> torch.Tensor | None:
        """A placeholder station table of the fitted shape (its values are set by :meth:`_module` and
        :meth:`_trained`, or loaded with the weights)."""
        return None if self.table_shape_ is None else torch.zeros(self.table_shape_)

    # -- training ----------------------------------------------------------------------------------------
    def _network(self, length: int) -> torch.nn.Module:
        return self._generator(self._tau(), self._table())

    def _module(self, network: torch.nn.Module) -> WGANGPModule:
        training_table = self._fit_tables[0]
        _set_table(network, training_table)
        cfg = self.config
        critic_table = (
            None if training_table is None else torch.as_tensor(training_table, dtype=torch.float32)
        )
        return WGANGPModule(
            network,
            self._critic(self._tau(), critic_table),
            n_critic=cfg.n_critic,
            gp_weight=cfg.gp_weight,
            lr=cfg.lr,
            betas=tuple(cfg.betas),
        )

    def _examples(self, z: np.ndarray, source: UserMobility) -> tuple[torch.Tensor, ...]:
        """``(z [U, 1, T], locations [U, T])``: every user's series with its own locations as the condition."""
        return torch.from_numpy(z[:, None, :]), torch.from_numpy(np.array(source.locations, dtype=np.int64))

    def _trained(self, module: WGANGPModule) -> torch.nn.Module:
        net = module.generator
        _set_table(net, self._fit_tables[1])
        del self._fit_tables
        return net

    # -- generation --------------------------------------------------------------------------------------
    def _draw(self, net, locations, *, generator, device, progress, **options) -> torch.Tensor:
        noise = _to(net.noise(len(locations), generator=generator), device)
        return net(noise, locations)[:, 0]
