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

__all__ = [
    "CHUNK_ENTRIES",
    "ar1_process",
    "check_coupling",
    "coupled_categorical",
    "inverse_cdf_draw",
    "sequence_chunks",
]


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
    never drawn (``log 0 = -inf``).

    Precision: float32 weights stay float32 (anything else is taken in float64), and so do ``z`` and the
    bounds of :func:`~cellsynth.diffusion.gumbel.gumbel_argmax`; the winners' scores are float64. The
    innovations ``e`` are float32 normals whatever the dtype, so both dtypes use the generator alike: the
    float32 generator is 5 times faster than the float64 one, which was half of the draw's time. On the
    CPU its normals stop at ``|e| = 5.77`` (Box-Muller on 24-bit uniforms), a bound a standard normal
    exceeds with probability ``8e-9``: each ``p_t`` is drawn to within that, far below float32's rounding
    of the weights."""
    rho = check_coupling(coupling)
    if probs.dim() < 2:
        raise ValueError(f"probs must have shape [..., T, N], got {tuple(probs.shape)}")
    dtype = torch.float32 if probs.dtype == torch.float32 else torch.float64
    steps, n = probs.shape[-2:]
    rows = probs.reshape(-1, steps, n)  # the leading dimensions as one: independent sequences
    draws = [
        _coupled_chunk(rows[chunk], rho, dtype, generator) for chunk in sequence_chunks(len(rows), steps, n)
    ]
    return (
        torch.cat(draws).view(probs.shape[:-1])
        if draws
        else rows.new_zeros(probs.shape[:-1], dtype=torch.long)
    )


# Weights per chunk of a draw: about 2^19 entries (2 MiB in float32), so that the half-dozen temporaries
# of a step stay in cache and under the allocator's threshold for fresh pages. Whole batches (64 users of a
# 150-station week: 3.2 million weights) cost a page fault per 4 KiB of every temporary at every step,
# measured at a quarter of the sampling time (docs/notebook/2026-12-07-coupled-draw-speed.md).
CHUNK_ENTRIES = 2**19


def sequence_chunks(count: int, length: int, n: int) -> list[slice]:
    """Slices over ``count`` sequences of ``length`` tokens with ``n`` states each: whole sequences, about
    :data:`CHUNK_ENTRIES` weights a chunk (at least one sequence)."""
    per_chunk = max(1, CHUNK_ENTRIES // max(1, length * n))
    return [slice(i, i + per_chunk) for i in range(0, count, per_chunk)]


def _coupled_chunk(probs: torch.Tensor, rho: float, dtype: torch.dtype, generator) -> torch.Tensor:
    """:func:`coupled_categorical` for ``probs [B, T, N]``: ``long [B, T]``."""
    time_first = probs.movedim(1, 0)  # time first: the recursion walks contiguous slices
    # to time-first order and dtype, clamped (rows computed in the eigenbasis can be -1e-17 where they are 0;
    # a log of that would be NaN)
    p = torch.empty(time_first.shape, dtype=dtype, device=probs.device).copy_(time_first).clamp_min_(0.0)
    z = torch.randn(p.shape, generator=generator, dtype=torch.float32, device=p.device).to(dtype)
    _ar1_in_place(z.view(len(z), -1), rho)
    # G(z) only where it can decide the argmax (cellsynth.diffusion.gumbel): the same draw, a fraction of the work
    return gumbel_argmax(p, z).movedim(0, 1)


_BLOCK = 32  # time steps per block of ar1_process: a [32, 32] product per block, T / 32 sequential carries


def ar1_process(innovations: torch.Tensor, rho: float) -> torch.Tensor:
    r"""The stationary AR(1) process along dim 0 of ``innovations`` ``e [T, ...]``, a new tensor::

        z_0 = e_0,   z_t = rho z_{t-1} + sqrt(1 - rho^2) e_t

    computed in blocks of ``L = 32`` steps instead of ``T`` sequential updates: within a block starting
    at ``s``, ``z_{s+i} = sum_{j <= i} rho^{i-j} w_{s+j} + rho^{i+1} z_{s-1}`` (``w`` the scaled innovations),
    a ``[L, L]`` lower-triangular matrix product plus the carry from the block before. Equal to the
    recursion up to rounding (every coefficient is at most 1), with ``T / L`` Python-level steps instead
    of ``T``."""
    z = innovations.clone(memory_format=torch.contiguous_format)
    _ar1_in_place(z.view(len(z), -1) if z.dim() else z, check_coupling(rho, "rho"))
    return z


def _ar1_in_place(w: torch.Tensor, rho: float) -> None:
    """:func:`ar1_process` on a 2-d ``[T, X]`` view, in place (one block-sized buffer)."""
    steps = w.shape[0] if w.dim() else 0
    if steps < 2 or rho == 0.0:
        return
    first = w[0].clone()
    w.mul_(math.sqrt(1.0 - rho**2))
    w[0] = first
    length = min(_BLOCK, steps)
    index = torch.arange(length, dtype=torch.float64, device=w.device)
    lag = index[:, None] - index[None, :]
    within = torch.where(lag >= 0, rho ** lag.clamp_min(0.0), 0.0).to(w.dtype)
    carry = (rho ** (index + 1.0)).to(w.dtype)
    buffer = torch.empty((length, w.shape[1]), dtype=w.dtype, device=w.device)
    for start in range(0, steps, length):
        n = min(length, steps - start)
        block, out = w[start : start + n], buffer[:n]
        torch.mm(within[:n, :n], block, out=out)
        if start:
            out.addr_(carry[:n], w[start - 1])
        block.copy_(out)
