r"""Draws from rows of categorical weights, the last step of every discrete reverse step
(:meth:`cellsynth.diffusion.discrete.GraphDiffusion.sample_step`):

- :func:`inverse_cdf_draw`: one independent draw per row by inversion of the CDF (Algorithm 2's draw);
- :func:`coupled_categorical`: one draw per row, each exactly from its row, with the draws of neighbouring
  rows along time coupled through a Gaussian copula (a Gumbel-max whose noise is an AR(1) process;
  :mod:`cellsynth.diffusion.gumbel` computes it without a log of every entry).

Weights need not be normalised: both draws are invariant to a positive factor per row.
"""

from __future__ import annotations

import math

import torch

from cellsynth.diffusion.gumbel import gumbel_argmax
from cellsynth.errors import ConfigError

__all__ = ["check_coupling", "coupled_categorical", "inverse_cdf_draw"]


def inverse_cdf_draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of ``probs [..., N]`` (weights >= 0, not necessarily normalised; float32 stays
    float32, anything else is taken in float64) by inversion of the CDF with ``u`` in ``(0, 1]``, so that a
    zero-probability state is never drawn (``searchsorted`` returns the first ``i`` with ``cdf_i >= u``).
    ``u`` is float64 whatever the dtype, so both dtypes use the generator alike."""
    flat = probs.reshape(-1, probs.shape[-1])
    if flat.dtype != torch.float32:
        flat = flat.to(torch.float64)
    cdf = flat.cumsum(-1)
    u = 1.0 - torch.rand(flat.shape[0], 1, generator=generator, dtype=torch.float64, device=flat.device)
    # u * total, kept in (0, total]: where it underflows to 0 in the row's dtype, searchsorted would return a
    # zero-weight state at the start of the row
    total = cdf[:, -1:]
    target = torch.minimum((u * total).to(cdf.dtype).clamp_min(torch.finfo(cdf.dtype).tiny), total)
    idx = torch.searchsorted(cdf, target).clamp_max(flat.shape[-1] - 1)
    return idx.reshape(probs.shape[:-1])


def check_coupling(coupling, name: str = "coupling") -> float:
    """``coupling`` as a float in ``[0, 1]`` (the ``rho`` of :func:`coupled_categorical`), or ConfigError."""
    if isinstance(coupling, bool) or not (isinstance(coupling, (int, float)) and 0.0 <= coupling <= 1.0):
        raise ConfigError(f"{name} must be a number in [0, 1], got {coupling!r}")
    return float(coupling)


def coupled_categorical(
    probs: torch.Tensor, coupling: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    r"""One draw per row of ``probs [..., T, N]`` (weights >= 0, not necessarily normalised), marginally
    exact, with the draws coupled along ``T``.

    Gumbel-max with noise that is independent across the ``N`` states and correlated along ``T``::

        l_t = argmax_k (log p_{t,k} + g_{t,k}),      g_{t,k} = -log(-log Phi(z_{t,k}))
        z_{0,k} = e_{0,k},   z_{t,k} = rho z_{t-1,k} + sqrt(1 - rho^2) e_{t,k},   e ~ iid N(0, 1)

    ``z_{., k}`` is a stationary AR(1) Gaussian process (unit variance, lag-``d`` correlation ``rho^d``), so
    every ``g_{t,k}`` is a standard Gumbel and, for each ``t``, independent across ``k``: by the Gumbel-max
    theorem each ``l_t`` is drawn exactly from ``p_t`` (a Gaussian copula; only the joint law changes).
    ``rho = 0`` is independent draws; ``rho = 1`` shares one noise vector along the whole axis, so rows
    with the same ``p`` draw the same state. Two rows ``d`` apart agree more often the larger ``rho^d``.

    Why: a factorised reverse step draws each time step on its own. Where the prediction is unsure
    between two places for a stretch of time, independent draws alternate between them (one-step
    "pass-throughs"), a joint the data never has. Coupled noise makes the stretch choose together; it
    is an approximation of the reverse step's joint law of the kind Discrete Copula Diffusion (Liu et al.,
    ICLR 2025) argues for, with a fixed copula instead of a learned one. Zero-probability states are
    never drawn (``log 0 = -inf``)."""
    rho = check_coupling(coupling)
    if probs.dim() < 2:
        raise ValueError(f"probs must have shape [..., T, N], got {tuple(probs.shape)}")
    p = probs.to(torch.float64).movedim(-2, 0)  # time first: the recursion below walks contiguous slices
    z = torch.randn(p.shape, generator=generator, dtype=torch.float64, device=p.device)
    keep = math.sqrt(1.0 - rho**2)
    for t in range(1, len(z)):  # in place: z[t] still holds its own innovation e_t here
        z[t] = rho * z[t - 1] + keep * z[t]
    # clamp: rows computed in the eigenbasis can be -1e-17 where they are 0; log of that would be NaN.
    # G(z) only where it can decide the argmax (cellsynth.diffusion.gumbel): the same draw, a fraction of the work
    p = p.clamp_min(0.0).contiguous()
    return gumbel_argmax(p, z).movedim(0, -1)
