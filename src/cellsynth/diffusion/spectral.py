r"""Rows and products of ``exp(t R)`` for a symmetric ``R = V diag(lambda) V^T``, on one device: the linear
algebra behind :class:`cellsynth.diffusion.discrete.GraphDiffusion`.

Two ways to get ``exp(t R)[idx, :]`` for ``M`` tokens, with the same value to rounding:

- per token, ``(V[idx] * e^{t lambda}) @ V^T``: ``O(M N r)`` (``r`` modes kept), any ``t`` per token;
- when every token has the same ``t`` and there are at least ``N`` of them, the dense matrix
  ``exp(t R) = (V * e^{t lambda}) @ V^T`` once (``O(N^2 r)``), then a gather of its rows (``O(M N)``).
  The dense matrices are kept (least recently used first out, up to :data:`CACHE_BYTES`), so a sampler that
  runs the same steps for batch after batch builds each step's matrices once. The cache is shared by the
  threads that sample chunks of one model at once (:mod:`cellsynth.generation.chunks`) under a lock.

The second is what sampling hits: one reverse step moves every token of a batch from the same ``s``. It
turns three of the reverse step's four ``[M, N] x [N, r]`` products into gathers, and the fourth,
``w @ exp(t R)``, into one ``[M, N] x [N, N]`` product instead of two. Training draws one step per sequence,
so its tokens take the per-token way, exactly as before.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["CACHE_BYTES", "SpectralBasis"]

#: Memory kept for dense ``exp(t R)`` matrices per basis (float64, ``8 N^2`` bytes each): every step of a
#: 150-station chain; about four 4,000-station matrices, enough for one step's three and the next step's reuse.
CACHE_BYTES = 512 * 2**20


class SpectralBasis:
    """The eigenbasis ``V`` (columns, slowest mode first), ``lambda`` and a schedule as float64 tensors on one
    device, with a cache of dense ``exp(t R)`` (see the module docstring)."""

    def __init__(self, vectors: np.ndarray, values: np.ndarray, abar: np.ndarray, device: torch.device):
        self.V = torch.as_tensor(vectors, dtype=torch.float64, device=device)
        self.lam = torch.as_tensor(values, dtype=torch.float64, device=device)
        self.abar = torch.as_tensor(abar, dtype=torch.float64, device=device)
        # alpha_0 = 0, alpha_s = abar_s - abar_{s-1}
        self.alpha = torch.as_tensor(np.diff(abar, prepend=0.0), dtype=torch.float64, device=device)
        self.n = self.V.shape[0]
        self._dense: OrderedDict[tuple[float, int], torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:  # a lock cannot be pickled or copied: a copy gets its own
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def matrix(self, t: float, rank: int) -> torch.Tensor:
        """``exp(t R)`` with the ``rank`` slowest modes, dense ``float64 [N, N]``, unclipped (cached)."""
        key = (float(t), int(rank))
        with self._lock:
            if key in self._dense:
                self._dense.move_to_end(key)
                return self._dense[key]
        v = self.V[:, :rank]
        dense = (v * torch.exp(t * self.lam[:rank])) @ v.T
        with self._lock:
            self._dense[key] = dense
            while len(self._dense) > 1 and len(self._dense) * dense.numel() * 8 > CACHE_BYTES:
                self._dense.popitem(last=False)
        return dense

    def _shared_time(self, t: torch.Tensor) -> float | None:
        """The one time of every token, when there are at least ``N`` tokens that all share it, else None."""
        if t.numel() < self.n:
            return None
        first = t[0]
        return float(first) if bool((t == first).all()) else None

    def rows(self, idx: torch.Tensor, t: torch.Tensor, rank: int) -> torch.Tensor:
        """Rows ``exp(t R)[idx, :]`` for flat ``idx [M]``, times ``t [M]``, ``float64 [M, N]``.

        Rows at ``t = 0`` are exact one-hots (the identity), so ``s = 1`` is exact. Tiny negatives from
        rounding are clipped to 0.
        """
        if idx.numel() == 0:
            return torch.zeros(0, self.n, dtype=torch.float64, device=idx.device)
        shared = self._shared_time(t)
        if shared is not None:
            if shared == 0:
                return F.one_hot(idx, self.n).to(torch.float64)
            return self.matrix(shared, rank)[idx].clamp_min(0.0)
        v = self.V[:, :rank]
        rows = (v[idx] * torch.exp(t[:, None] * self.lam[:rank])) @ v.T
        eye = F.one_hot(idx, self.n).to(torch.float64)
        return torch.where(t[:, None] == 0, eye, rows.clamp_min(0.0))

    def times(self, w: torch.Tensor, t: torch.Tensor, rank: int) -> torch.Tensor:
        """``w @ exp(t R)`` row by row for ``w [M, N]``, ``t [M]``: ``((w @ V) * e^{t lambda}) @ V^T``, or
        ``w @ exp(t R)`` with the dense matrix when every row shares ``t``."""
        if w.shape[0] == 0:
            return w
        shared = self._shared_time(t)
        if shared is not None:
            return w if shared == 0 else w @ self.matrix(shared, rank)
        v = self.V[:, :rank]
        out = ((w @ v) * torch.exp(t[:, None] * self.lam[:rank])) @ v.T
        return torch.where(t[:, None] == 0, w, out)
