"""``msh-gan``: MSH-GAN (Li et al., ACM TKDD 2024) as a user-level traffic baseline of MSTDiff: an individual
generator (BiLSTM + self-attention) on top of a switch-mode generator of group-level behaviour, and its
discriminator (:mod:`cellsynth.nn.msh_gan`), trained by WGAN-GP.

It models individual users' traffic in time: its condition is the hour of the week of every step, not
where the user is, so its traffic does not depend on the trajectory. The trajectories come from the Markov
floor (:mod:`._trajectory`): MSH-GAN generates traffic only. Training and generation: :mod:`._gan`.
"""

from __future__ import annotations

from typing import Any

import pydantic
import torch

from cellsynth.generators.baselines.users._gan import UserGANConfig, UserGANGenerator
from cellsynth.nn.msh_gan import MSHDiscriminator, MSHGenerator

__all__ = ["MSHGANConfig", "MSHGANGenerator"]


class MSHGANConfig(UserGANConfig):
    """MSH-GAN's networks (:mod:`cellsynth.nn.msh_gan`)."""

    modes: int = pydantic.Field(
        4, ge=1, description="Group-level behaviour modes of the switch-mode generator."
    )
    group_dim: int = pydantic.Field(16, ge=1, description="Size of the group noise z_g.")
    mode_dim: int = pydantic.Field(16, ge=1, description="Size of a mode's vector m_k.")
    noise_dim: int = pydantic.Field(8, ge=1, description="Per-step noise of the individual generator.")
    hidden: int = pydantic.Field(
        64, ge=1, description="Hidden size of each direction of the generator's BiLSTM."
    )
    heads: int = pydantic.Field(4, ge=1, description="Self-attention heads (must divide 2 * hidden).")
    critic_hidden: int = pydantic.Field(32, ge=1, description="Hidden size of the discriminator's BiLSTM.")
    critic_heads: int = pydantic.Field(4, ge=1, description="Discriminator self-attention heads.")
    temperature: float = pydantic.Field(
        1.0, gt=0, description="Gumbel-softmax temperature of the mode switch."
    )

    @pydantic.model_validator(mode="after")
    def _heads_divide(self) -> MSHGANConfig:
        for heads, hidden, name in (
            (self.heads, self.hidden, ""),
            (self.critic_heads, self.critic_hidden, "critic_"),
        ):
            if (2 * hidden) % heads:
                raise ValueError(f"{name}heads ({heads}) must divide 2 * {name}hidden ({2 * hidden})")
        return self


class MSHGANGenerator(UserGANGenerator):
    """MSH-GAN: switch-mode + BiLSTM/self-attention WGAN-GP of users' traffic; Markov-floor trajectories."""

    name = "msh-gan"
    Config = MSHGANConfig

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {
            "modes": 2,
            "group_dim": 4,
            "mode_dim": 4,
            "noise_dim": 2,
            "hidden": 4,
            "heads": 2,
            "critic_hidden": 4,
            "critic_heads": 2,
            "epochs": 1,  # a BiLSTM critic over 336 steps, differentiated twice: about 2 s a batch on one core
            "batch_size": 8,
            "n_critic": 2,
            "accelerator": "cpu",
        }

    def _generator(self, tau: torch.Tensor, table: torch.Tensor | None) -> MSHGenerator:
        cfg = self.config
        return MSHGenerator(
            tau,
            noise_dim=cfg.noise_dim,
            group_dim=cfg.group_dim,
            modes=cfg.modes,
            mode_dim=cfg.mode_dim,
            hidden=cfg.hidden,
            heads=cfg.heads,
            temperature=cfg.temperature,
        )

    def _critic(self, tau: torch.Tensor, table: torch.Tensor | None) -> MSHDiscriminator:
        return MSHDiscriminator(tau, hidden=self.config.critic_hidden, heads=self.config.critic_heads)
