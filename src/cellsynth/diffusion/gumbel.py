r"""Gumbel-max with Gaussian noise, ``argmax_k (log p_k + G(z_k))``, ``G(z) = -log(-log Phi(z))``, computing
``G`` only where it can decide the winner: the draw of
:func:`cellsynth.diffusion.categorical.coupled_categorical`.

``G`` maps a standard normal ``z`` to a standard Gumbel; it costs a ``log_ndtr`` and a ``log`` per entry,
and a reverse step of a 150-station chain has ``B T N`` entries (most of its time, measured:
docs/notebook/2026-12-04-sampling-speed.md). ``G`` is increasing, so on a fixed grid ``z_0 < z_1 < ...``
(``z_0 = -16``, spacing 1/16, 513 points; beyond its ends the bounds are ``-inf`` and ``+inf``)::

    z in [z_i, z_{i+1})  =>  G(z_i) <= G(z) <= G(z_{i+1})

gives each score ``log p_k + G(z_k)`` a lower and an upper bound from a table lookup (compared as
``p_k e^{G(z_k)}``, in the same order, so that no ``log p`` is taken outside the candidates). The winner's upper
bound is at least the largest lower bound of its row, so only the entries whose upper bound reaches it
(a few per row) can win; ``G`` is computed exactly (in float64) for those and the argmax taken over them.
The result is the full computation's argmax (the same ``G`` on the same ``z``): the bounds only skip entries
that cannot win.

The bounds are computed in the inputs' dtype: float32 halves the memory traffic of the ``B T N`` passes.
Why that stays exact: every cell index is exact (``floor(16 z)``, a power-of-two scaling), the float32
tables are rounded outwards (lower bounds down, upper bounds up, an upper bound beyond float32's range is
``inf``), and a relative margin (``1e-9`` in float64, ``1e-5`` in float32) absorbs the rounding of each
product, which is relative as long as the products are normal numbers. A row whose largest lower bound is
below twice the dtype's smallest normal number (weights all near 0, or none) makes every entry a candidate,
so its argmax is the full computation's too. Products that overflow to ``inf`` only add candidates.
"""

from __future__ import annotations

import torch

__all__ = ["gaussian_gumbel", "gumbel_argmax"]

_Z0, _SCALE, _POINTS = -16.0, 16.0, 513  # the grid z_i = -16 + i / 16, i = 0..512 (up to +16)
_MARGIN = {torch.float64: 1e-9, torch.float32: 1e-5}
_TABLES: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def gaussian_gumbel(z: torch.Tensor) -> torch.Tensor:
    """``G(z) = -log(-log Phi(z))``: a standard Gumbel from a standard normal (``log_ndtr`` keeps it finite for
    every ``z`` a float64 draw reaches)."""
    return -torch.log(-torch.special.log_ndtr(z))


def _tables(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lower, upper)``, ``dtype [514]`` on ``device``: for cell ``c`` (``z`` in ``[z_{c-1}, z_c)``), bounds
    on ``e^{G(z)}``: ``lower[c] = e^{G(z_{c-1})}`` (0 below the grid), ``upper[c] = e^{G(z_c)}`` (inf above),
    computed in float64 and rounded outwards to ``dtype``."""
    key = (torch.device(device), dtype)
    if key not in _TABLES:
        grid = _Z0 + torch.arange(_POINTS, dtype=torch.float64, device=device) / _SCALE
        values = torch.exp(gaussian_gumbel(grid))
        zero = torch.zeros(1, dtype=torch.float64, device=device)
        lower, upper = torch.cat([zero, values]), torch.cat([values, zero + torch.inf])
        if dtype != torch.float64:
            lower, upper = _round_outwards(lower, upper, dtype)
        _TABLES[key] = lower, upper
    return _TABLES[key]


def _round_outwards(lower: torch.Tensor, upper: torch.Tensor, dtype: torch.dtype):
    """float64 bounds as ``dtype``, each rounded away from the value it bounds: ``lower`` down (and to the
    dtype's largest number where it is beyond), ``upper`` up (``inf`` where it is beyond the range)."""
    low, high = lower.clamp_max(torch.finfo(dtype).max).to(dtype), upper.to(dtype)
    low = torch.where(low.double() > lower, torch.nextafter(low, torch.zeros_like(low)), low)
    high = torch.where(high.double() < upper, torch.nextafter(high, torch.full_like(high, torch.inf)), high)
    return low, high


def _grid_cell(z: torch.Tensor) -> torch.Tensor:
    """The table cell of each ``z`` (``int32``, ``0..513``): ``floor(16 z) + 257``, clamped. ``16 z`` and its
    floor are exact in float32 and float64 alike, so no ``z`` lands in a neighbouring cell by rounding."""
    low = _Z0 * _SCALE - 1.0  # below the grid: cell 0
    return (z * _SCALE).clamp_(low, -_Z0 * _SCALE).floor_().to(torch.int32).add_(int(-low))


def gumbel_argmax(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``argmax_k (log p[..., k] + G(z[..., k]))`` (``long [...]``) for ``p >= 0`` and ``z`` of one shape and
    one dtype (float32 or float64), both contiguous; ``p = 0`` never wins. See the module docstring.

    The bounds compare ``p e^{G(z)}`` (the same order as ``log p + G(z)``, without a log of every ``p``); the
    candidates' scores are ``log p + G(z)`` in float64, exactly as the full computation has them."""
    if p.dtype not in _MARGIN or z.dtype != p.dtype:
        raise TypeError(f"p and z must both be float32 or both float64, got {p.dtype} and {z.dtype}")
    lower, upper = _tables(z.device, p.dtype)
    cell = _grid_cell(z).view(-1)
    bound = lower.index_select(0, cell).view(p.shape).mul_(p)
    best_lower = bound.amax(-1, keepdim=True)
    # rows whose bounds would be subnormal products: every entry a candidate (see the module docstring)
    best_lower = torch.where(best_lower < 2 * torch.finfo(p.dtype).tiny, 0.0, best_lower)
    bound = torch.index_select(upper, 0, cell, out=bound.view(-1)).view(p.shape).mul_(p)
    candidates = (bound >= best_lower * (1.0 - _MARGIN[p.dtype])).view(-1).nonzero().squeeze(1)
    return _argmax_among(candidates, p, z)


def _argmax_among(candidates: torch.Tensor, p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The argmax of each row of ``log p + G(z)`` over the ``candidates`` (flat indices, ascending), which
    hold every entry that can win: scores in float64 for the candidates only (a few per row), then a
    per-row maximum by ``scatter_reduce``. Ties go to the lowest index and a row whose scores are all
    ``-inf`` (no weight) gives 0, as ``argmax`` over the full row does."""
    n = p.shape[-1]
    rows = p.numel() // n
    score = p.reshape(-1)[candidates].double().log() + gaussian_gumbel(z.reshape(-1)[candidates].double())
    row = candidates // n
    best = torch.full((rows,), -torch.inf, dtype=torch.float64, device=p.device)
    best.scatter_reduce_(0, row, score, "amax")
    at_best = score == best[row]
    first = torch.full((rows,), p.numel(), dtype=torch.long, device=p.device)
    first.scatter_reduce_(0, row[at_best], candidates[at_best], "amin")
    choice = torch.where(torch.isfinite(best), first - torch.arange(rows, device=p.device) * n, 0)
    return choice.view(p.shape[:-1])
