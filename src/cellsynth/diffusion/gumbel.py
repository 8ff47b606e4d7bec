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
(a few per row) can win; ``G`` is computed exactly for those and the argmax taken over them. The result
is the full computation's argmax (the same ``G`` on the same ``z``): the bounds only skip entries that
cannot win. A relative margin of ``1e-9`` absorbs the rounding of the lookup (about ``1e-13``).
"""

from __future__ import annotations

import torch

__all__ = ["gaussian_gumbel", "gumbel_argmax"]

_Z0, _SCALE, _POINTS = -16.0, 16.0, 513  # the grid z_i = -16 + i / 16, i = 0..512 (up to +16)
_MARGIN = 1e-9
_TABLES: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def gaussian_gumbel(z: torch.Tensor) -> torch.Tensor:
    """``G(z) = -log(-log Phi(z))``: a standard Gumbel from a standard normal (``log_ndtr`` keeps it finite for
    every ``z`` a float64 draw reaches)."""
    return -torch.log(-torch.special.log_ndtr(z))


def _tables(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(lower, upper)``, float64 ``[514]`` on ``device``: for cell ``c`` (``z`` in ``[z_{c-1}, z_c)``), bounds
    on ``e^{G(z)}``: ``lower[c] = e^{G(z_{c-1})}`` (0 below the grid), ``upper[c] = e^{G(z_c)}`` (inf above)."""
    if device not in _TABLES:
        grid = _Z0 + torch.arange(_POINTS, dtype=torch.float64, device=device) / _SCALE
        values = torch.exp(gaussian_gumbel(grid))
        zero = torch.zeros(1, dtype=torch.float64, device=device)
        _TABLES[device] = torch.cat([zero, values]), torch.cat([values, zero + torch.inf])
    return _TABLES[device]


def gumbel_argmax(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``argmax_k (log p[..., k] + G(z[..., k]))`` (``long [...]``) for float64 ``p >= 0`` and ``z`` of one
    shape, both contiguous; ``p = 0`` never wins. See the module docstring.

    The bounds compare ``p e^{G(z)}`` (the same order as ``log p + G(z)``, without a log of every ``p``); the
    candidates' scores are ``log p + G(z)`` exactly as the full computation has them."""
    lower, upper = _tables(z.device)
    # cell c: z in [z_{c-1}, z_c); truncation is floor here, the value being >= 0 after the clamp
    cell = (z * _SCALE + (1.0 - _Z0 * _SCALE)).clamp_(0.0, float(_POINTS)).long()
    best_lower = (p * lower[cell]).amax(-1, keepdim=True)
    candidates = (p * upper[cell] >= best_lower * (1.0 - _MARGIN)).view(-1).nonzero().squeeze(1)
    flat_p, flat_z = p.reshape(-1), z.reshape(-1)
    scores = torch.full((flat_p.numel(),), -torch.inf, dtype=torch.float64, device=p.device)
    scores[candidates] = flat_p[candidates].log() + gaussian_gumbel(flat_z[candidates])
    return scores.view(p.shape).argmax(-1)
