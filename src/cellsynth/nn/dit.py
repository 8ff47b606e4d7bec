r"""DiT for a 1-D series (Peebles & Xie, *Scalable Diffusion Models with Transformers*, ICCV 2023,
arXiv:2212.09748): the week is cut into patches, a stack of Transformer blocks with adaLN-Zero
conditioning on the diffusion step denoises the patch tokens, and a linear decoder puts them back.

- **Patchify**: ``x`` ``[B, C, L]`` -> ``N = L / p`` tokens, each the ``p * C`` values of one patch, linearly
  embedded to ``hidden`` (a stride-``p`` convolution), plus fixed 1-D sine-cosine position embeddings.
- **Conditioning**: ``c = MLP(PE_256(t))`` (sinusoidal features of the step, ``Linear -> SiLU -> Linear``).
  DiT adds a class embedding to ``c``; generation here is unconditional, so ``c`` is the step alone.
- **adaLN-Zero block**: ``(beta_1, gamma_1, alpha_1, beta_2, gamma_2, alpha_2) = W SiLU(c)`` and

  .. math::

      h &\leftarrow h + \alpha_1 \odot \mathrm{Attn}\big(\mathrm{LN}(h) (1 + \gamma_1) + \beta_1\big) \\
      h &\leftarrow h + \alpha_2 \odot \mathrm{MLP}\big(\mathrm{LN}(h) (1 + \gamma_2) + \beta_2\big)

  with ``LN`` without affine parameters and ``W`` zero-initialised: every block starts as the identity.
- **Final layer**: ``LN(h) (1 + gamma) + beta`` (adaLN, zero-initialised), a linear map to ``p * C`` values per
  token (zero-initialised), unpatchified to ``[B, C, L]``: the predicted noise.
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from cellsynth.nn.csdi import sinusoidal_positions

__all__ = ["DiT1d", "DiTBlock", "modulate"]


def modulate(h: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``h (1 + scale) + shift``, ``h`` ``[B, N, D]``, ``shift`` and ``scale`` ``[B, D]`` (per sample)."""
    return h * (1 + scale[:, None, :]) + shift[:, None, :]


class DiTBlock(nn.Module):
    """One adaLN-Zero Transformer block (module docstring); identity at initialisation."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.attn = nn.MultiheadAttention(hidden, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        width = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, width), nn.GELU(approximate="tanh"), nn.Linear(width, hidden)
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(c).chunk(6, dim=1)
        a = modulate(self.norm1(h), shift1, scale1)
        h = h + gate1[:, None, :] * self.attn(a, a, a, need_weights=False)[0]
        return h + gate2[:, None, :] * self.mlp(modulate(self.norm2(h), shift2, scale2))


class _FinalLayer(nn.Module):
    def __init__(self, hidden: int, out_per_token: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, out_per_token)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))

    def forward(self, h: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm(h), shift, scale))


class DiT1d(nn.Module):
    """DiT's epsilon-predictor ``eps_theta(x_t, t)`` ``[B, C, L]`` for series of ``length`` steps (module
    docstring). ``length`` must be a multiple of ``patch_size``."""

    def __init__(
        self,
        n_channels: int,
        length: int,
        *,
        patch_size: int = 4,
        hidden: int = 128,
        depth: int = 6,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        step_dim: int = 256,
    ) -> None:
        super().__init__()
        if length % patch_size:
            raise ValueError(f"length ({length}) must be a multiple of patch_size ({patch_size})")
        if hidden % heads or hidden % 2:
            raise ValueError(f"hidden ({hidden}) must be even and divisible by heads ({heads})")
        self.n_channels, self.length, self.patch_size = n_channels, length, patch_size
        self.n_tokens = length // patch_size
        self.patch_embed = nn.Conv1d(n_channels, hidden, patch_size, stride=patch_size)
        self.register_buffer("positions", sinusoidal_positions(self.n_tokens, hidden), persistent=False)
        self.step_features = Timesteps(step_dim, flip_sin_to_cos=True, downscale_freq_shift=0)  # [cos, sin]
        self.step_mlp = TimestepEmbedding(step_dim, hidden)  # Linear -> SiLU -> Linear
        self.blocks = nn.ModuleList(DiTBlock(hidden, heads, mlp_ratio) for _ in range(depth))
        self.final = _FinalLayer(hidden, patch_size * n_channels)
        self._initialise()

    def _initialise(self) -> None:
        """DiT's: Xavier-uniform linear layers with zero biases (the patch embedding as a linear map), the step
        MLP ~ N(0, 0.02^2), and zeros in every adaLN modulation and the output layer (adaLN-Zero)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:  # MultiheadAttention's projections are not nn.Linear modules
            nn.init.xavier_uniform_(block.attn.in_proj_weight)
            nn.init.zeros_(block.attn.in_proj_bias)
        weight = self.patch_embed.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.step_mlp.linear_1.weight, std=0.02)
        nn.init.normal_(self.step_mlp.linear_2.weight, std=0.02)
        for layer in [*(b.modulation[-1] for b in self.blocks), self.final.modulation[-1], self.final.linear]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, L]`` -> the embedded tokens ``[B, N, hidden]`` (position embeddings added)."""
        return self.patch_embed(x).transpose(1, 2) + self.positions[None]

    def unpatchify(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[B, N, p * C]`` (each token's values patch-step-major) -> ``[B, C, L]``."""
        b = tokens.shape[0]
        patches = tokens.reshape(b, self.n_tokens, self.patch_size, self.n_channels)
        return patches.permute(0, 3, 1, 2).reshape(b, self.n_channels, self.length)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x`` ``[B, C, L]``, ``t`` int ``[B]`` -> the predicted noise ``[B, C, L]``."""
        if tuple(x.shape[1:]) != (self.n_channels, self.length):
            raise ValueError(
                f"expected x of shape [B, {self.n_channels}, {self.length}], got {tuple(x.shape)}"
            )
        c = self.step_mlp(self.step_features(t).to(x.dtype))
        h = self.patchify(x)
        for block in self.blocks:
            h = block(h, c)
        return self.unpatchify(self.final(h, c))
