"""DiT for a week of user traffic — a baseline of MSTDiff's user traffic.

Source: Peebles & Xie, "Scalable Diffusion Models with Transformers", ICCV 2023 (arXiv:2212.09748). A
Transformer denoiser over patches: the series is cut into patches of ``patch_size`` steps, each a token;
Transformer blocks conditioned by adaLN-Zero on the diffusion step; a linear decoder puts the patches back
(:class:`cellsynth.nn.dit.DiT1d`).

The paper's method, kept: patchify / adaLN-Zero blocks (identity at initialisation) / adaLN final layer and
unpatchify, fixed sine-cosine position embeddings, the 256-d sinusoidal step features and their MLP, DiT's
initialisation; DDPM with 1000 linear steps (1e-4..0.02) and the epsilon objective; AdamW at lr 1e-4
without weight decay; an EMA of the weights (0.9999) generates; DDPM sampling in 250 steps.

Where and why ours differs (docs/baselines.md):

- **1-D patches of a week**, not 2-D patches of a latent image: ``patch_size = 4`` steps (2 hours at 30
  minutes), so ``T = 336`` gives 84 tokens (DiT's best models have 256 tokens of a 32 x 32 latent).
- **Scaled to the data**: hidden 128, depth 6, 4 heads (DiT-S is 384 / 12 / 6 for ImageNet's 1.28 M images;
  a city has hundreds to thousands of users), batch 32 (DiT's 256 is most of an epoch here) for 400 epochs.
- **Unconditional**: DiT adds a class embedding to the step embedding (classifier-free guidance); users have
  no class, so the blocks are conditioned on the step alone, as the issue asks.
- **Fixed variance**: DiT also predicts the variance (``learn_sigma``, trained with the hybrid loss of Nichol
  & Dhariwal); ours predicts the noise only, with DDPM's fixed posterior variance, like every other diffusion
  model of cellsynth, so the samplers are shared.

cellsynth's additions (``extensions``): the clipping of the predicted ``z_0``; the ``recommended`` preset
also averages with 0.999 and samples with DDIM in 50 steps. Trajectories: :mod:`._trajectory`.
"""

from __future__ import annotations

from typing import Any

import pydantic

from cellsynth.errors import DataError
from cellsynth.generators.baselines.users._diffusion import DiffusionUserConfig, DiffusionUserGenerator
from cellsynth.nn.dit import DiT1d

__all__ = ["DiTConfig", "DiTGenerator"]


class DiTConfig(DiffusionUserConfig):
    """DiT's architecture scaled to users' weeks, and its training and diffusion settings."""

    patch_size: int = pydantic.Field(4, ge=1, description="Steps per patch (token); T must be a multiple.")
    hidden: int = pydantic.Field(128, ge=2, description="Token width (even, divisible by heads).")
    depth: int = pydantic.Field(6, ge=1, description="adaLN-Zero Transformer blocks.")
    heads: int = pydantic.Field(4, ge=1, description="Attention heads.")
    mlp_ratio: float = pydantic.Field(4.0, gt=0, description="MLP width / hidden.")
    step_dim: int = pydantic.Field(
        256, ge=2, description="Sinusoidal features of the diffusion step (DiT: 256)."
    )
    epochs: int = pydantic.Field(400, ge=1, description="Passes over all training users.")
    batch_size: int = pydantic.Field(32, ge=1, description="Users per training batch.")
    lr: float = pydantic.Field(1e-4, gt=0, description="AdamW learning rate (DiT's, constant).")

    @pydantic.model_validator(mode="after")
    def _consistent(self):
        if self.hidden % self.heads or self.hidden % 2:
            raise ValueError(f"hidden ({self.hidden}) must be even and divisible by heads ({self.heads})")
        return self


class DiTGenerator(DiffusionUserGenerator):
    """DiT (Peebles & Xie, ICCV 2023) over patches of a user's week: adaLN-Zero Transformer diffusion of users'
    traffic; Markov-floor trajectories.

    Details and departures from the paper: the module docstring."""

    name = "dit"
    Config = DiTConfig

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {
            "patch_size": 8,
            "hidden": 16,
            "depth": 1,
            "heads": 2,
            "mlp_ratio": 2.0,
            "step_dim": 8,
            "num_train_timesteps": 50,
            "beta_end": 0.2,  # about 10 / T, so that x_T is pure noise with so few steps
            "epochs": 2,
            "batch_size": 8,
            "sampling": {"steps": 5},
            "accelerator": "cpu",
        }

    def _check_series(self, data, what: str) -> None:
        p = self.config.patch_size
        if data.n_steps % p:
            divisors = [d for d in range(2, 13) if data.n_steps % d == 0]
            raise DataError(
                f"{self.name} cuts each series into patches of patch_size = {p} steps, but the series have "
                f"{data.n_steps} steps; set patch_size to a divisor of {data.n_steps} (e.g. one of {divisors})",
                source=data.source,
            )

    def _series_shape(self, length: int) -> tuple[int, int]:
        return (1, length)

    def _network(self, length: int) -> DiT1d:
        cfg = self.config
        return DiT1d(
            1,
            length,
            patch_size=cfg.patch_size,
            hidden=cfg.hidden,
            depth=cfg.depth,
            heads=cfg.heads,
            mlp_ratio=cfg.mlp_ratio,
            step_dim=cfg.step_dim,
        )
