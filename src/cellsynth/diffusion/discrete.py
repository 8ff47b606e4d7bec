r"""Discrete diffusion over the N states of a graph (MSTDiff's trajectory branch), independent of any network.

A token ``l`` is a state (a base-station index in ``0..N-1``). The forward process is a continuous-time
Markov chain with a **symmetric** rate matrix ``R`` (off-diagonal >= 0, rows summing to 0), run for a time
``alpha_s`` at step ``s`` (paper notation, ``s = 1..S``)::

    Q_s     = exp(alpha_s R)                       q(l_s | l_{s-1}) = Q_s[l_{s-1}, l_s]
    Q-bar_s = exp(alpha-bar_s R),  alpha-bar_s = sum_{i<=s} alpha_i,   q(l_s | l_0) = Q-bar_s[l_0, l_s]

Every matrix here is a function of the one symmetric ``R = V diag(lambda) V^T``, so they all commute,
are symmetric, and ``Q-bar_s = Q-bar_{s-1} Q_s``. Nothing of size ``N x N x S`` is ever built: the class
stores ``V`` and ``lambda`` and computes the rows it needs, e.g. for a batch of tokens
``q(l_s | l_0) = (V[l_0] * exp(alpha-bar_s lambda)) @ V^T``.

The three quantities of the paper's loss and of its Algorithm 2:

- the true posterior ``q(l_{s-1} | l_s, l_0) = Q_s[l_{s-1}, l_s] Q-bar_{s-1}[l_0, l_{s-1}] / Q-bar_s[l_0, l_s]``
  (:meth:`GraphDiffusion.posterior_probs`);
- the model's reverse step, the posterior marginalised exactly over the denoiser's prediction of ``l_0``
  (:meth:`GraphDiffusion.reverse_probs`)::

      p(l_{s-1} | l_s) = sum_{l_0} p_theta(l_0 | l_s) q(l_{s-1} | l_s, l_0)
                       = Q_s[l_s, l_{s-1}] * sum_{l_0} (p_theta(l_0 | l_s) / Q-bar_s[l_0, l_s]) Q-bar_{s-1}[l_0, l_{s-1}]
                       = Q_s[l_s, :] ⊙ (w @ Q-bar_{s-1}),   w = p_theta(. | l_s) / Q-bar_s[:, l_s]

  i.e. three products with the eigenbasis per token, ``O(N rank)`` each;
- ``KL(q(l_{s-1} | l_s, l_0) || p(l_{s-1} | l_s))`` and ``CE(l_0, logits)`` (:meth:`GraphDiffusion.kl`,
  :meth:`GraphDiffusion.ce`).

The schedule (:func:`geometric_schedule`, :func:`mixing_time`): ``alpha-bar_S`` is the smallest time at which
every row of ``Q-bar_S`` is within total variation ``tol`` of uniform (the prior), by the per-row bound
``TV_i <= 0.5 sqrt(N) ||Q-bar_S[i] - 1/N||_2``, computed exactly in the eigenbasis; ``alpha-bar_1`` makes the
first step move a token with probability about ``first_jump``; in between ``alpha-bar_s`` grows
geometrically, so each step destroys the structure of one band of graph frequencies (a mode ``lambda`` dies
when ``alpha-bar_s |lambda| ~ 1``, and the spectrum spans orders of magnitude). See
docs/discrete-diffusion.md for the derivations and the differences from the authors' code.

Shapes: tokens ``l`` are ``long [...]`` (typically ``[B, T]``), logits ``[..., N]``, steps ``s`` an int or a
long tensor that broadcasts against the tokens from the left (``[B]`` is one step per sequence). Matrix work
is in float64 on the tokens' device; the eigenbasis is copied to each device once and cached, and so are
the dense ``exp(t R)`` of the times a sampler visits: a reverse step whose tokens all sit at one step gathers
rows of them instead of multiplying with the eigenbasis per token (:mod:`cellsynth.diffusion.spectral`).
Sampling's own case, every token taking one step ``s -> s'``, draws from float32 weights
(:meth:`GraphDiffusion.sample_step`): the same distribution to float32 rounding, in about a quarter of the time.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from scipy.sparse.csgraph import connected_components

from cellsynth.diffusion.categorical import coupled_categorical, inverse_cdf_draw, sequence_chunks
from cellsynth.diffusion.spectral import SpectralBasis
from cellsynth.errors import ConfigError, DataError

__all__ = [
    "GraphDiffusion",
    "geometric_schedule",
    "mixing_time",
    "tv_bound",
    "uniform_rate",
]

_TINY = 1e-300  # smallest probability we take a log of (float64 underflows near 1e-308)


def uniform_rate(n: int) -> np.ndarray:
    """The uniform-transition rate matrix ``R = (1/N) 1 1^T - I`` (the no-knowledge-graph ablation).

    Its spectrum is ``{0, -1 (N-1 times)}``, so ``Q-bar_s = e^{-alpha-bar_s} I + (1 - e^{-alpha-bar_s}) / N 1 1^T``:
    a token keeps its state with probability ``e^{-alpha-bar_s}`` and is otherwise uniform (D3PM's uniform
    corruption).
    """
    if n < 2:
        raise ConfigError(f"a diffusion needs at least 2 states, got {n}")
    return np.full((n, n), 1.0 / n) - np.eye(n)


def _check_rate(rate) -> np.ndarray:
    rate = np.asarray(rate, dtype=np.float64)
    src = "rate matrix"
    if rate.ndim != 2 or rate.shape[0] != rate.shape[1]:
        raise DataError(f"must be square, got shape {rate.shape}", source=src)
    n = rate.shape[0]
    if n < 2:
        raise DataError(f"needs at least 2 states, got {n}", source=src)
    if not np.isfinite(rate).all():
        raise DataError("has NaN/inf entries", source=src)
    scale = max(float(np.abs(rate).max()), 1e-300)
    asym = float(np.abs(rate - rate.T).max())
    if asym > 1e-10 * scale:
        raise DataError(
            f"must be symmetric (max |R - R^T| = {asym:.3g}); build it as B = (A + A^T) / 2K off the "
            "diagonal (cellsynth.graphs.transitions.rate_matrix)",
            source=src,
        )
    off = rate - np.diag(np.diag(rate))
    if (off < 0).any():
        i, j = np.argwhere(off < 0)[0]
        raise DataError(f"off-diagonal rates must be >= 0; R[{i}, {j}] = {rate[i, j]:.3g}", source=src)
    rows = np.abs(rate.sum(axis=1))
    if rows.max() > 1e-9 * scale:
        i = int(rows.argmax())
        raise DataError(f"rows must sum to 0 (row {i} sums to {rate[i].sum():.3g})", source=src)
    n_comp, labels = connected_components(off > 0, directed=False)
    if n_comp > 1:
        sizes = np.bincount(labels)
        raise DataError(
            f"the graph has {n_comp} connected components (sizes {sorted(sizes.tolist(), reverse=True)[:5]}"
            f"{' ...' if n_comp > 5 else ''}): R's null space has dimension {n_comp}, so Q-bar_s never "
            "reaches the uniform prior. Link the components first "
            "(cellsynth.graphs.transitions.connect_components, done by default by knn_graph)",
            source=src,
        )
    return 0.5 * (rate + rate.T)


def tv_bound(eigenvalues: np.ndarray, eigenvectors: np.ndarray, t: float) -> np.ndarray:
    """Per-row upper bound on ``TV(Q-bar[i], uniform)`` at time ``t`` (alpha-bar): ``float64 [N]``.

    With ``R = V diag(lambda) V^T``, ``lambda_0 = 0``, ``V[:, 0] = 1/sqrt(N)``::

        Q-bar[i] - 1/N = sum_{m>=1} e^{t lambda_m} V[i, m] V[:, m]
        TV_i = 0.5 ||Q-bar[i] - 1/N||_1 <= 0.5 sqrt(N) ||.||_2 = 0.5 sqrt(N) sqrt(sum_{m>=1} e^{2 t lambda_m} V[i, m]^2)

    which is at most ``0.5 sqrt(N) e^{-t gap}`` (gap = the smallest nonzero ``|lambda|``) and usually much
    smaller for the rows that sit away from the slowest modes.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)[1:]
    v = np.asarray(eigenvectors, dtype=np.float64)[:, 1:]
    n = v.shape[0]
    return 0.5 * math.sqrt(n) * np.sqrt(np.maximum((v * v) @ np.exp(2.0 * t * lam), 0.0))


def mixing_time(eigenvalues: np.ndarray, eigenvectors: np.ndarray, tol: float) -> float:
    """The smallest ``alpha-bar`` at which :func:`tv_bound` is ``<= tol`` for every row (bisection).

    Eigenvalues sorted in decreasing order (``0`` first). The bound is decreasing in ``t``; the bracket's
    upper end is ``log(0.5 sqrt(N) / tol) / gap``, where the gap bound alone already guarantees ``tol``.
    """
    lam = np.asarray(eigenvalues, dtype=np.float64)
    n = len(lam)
    if not 0.0 < tol < 1.0 - 1.0 / n:
        raise ConfigError(f"tol must be in (0, 1 - 1/N) = (0, {1 - 1 / n:.4g}), got {tol}")
    gap = -float(lam[1])
    hi = max(math.log(0.5 * math.sqrt(n) / tol) / gap, 1e-12)
    lo = 0.0
    for _ in range(100):  # 2^-100 relative: exact to float64
        mid = 0.5 * (lo + hi)
        if tv_bound(lam, eigenvectors, mid).max() <= tol:
            hi = mid
        else:
            lo = mid
    return hi


def geometric_schedule(first: float, last: float, steps: int) -> np.ndarray:
    """``alpha-bar_s`` for ``s = 0..S`` (``float64 [S+1]``, ``alpha-bar_0 = 0``): geometric from ``first`` to
    ``last``, ``alpha-bar_s = first (last / first)^((s-1)/(S-1))``.

    Why geometric: a graph mode with eigenvalue ``lambda`` is damped by ``e^{alpha-bar_s lambda}``, so it dies
    around ``alpha-bar_s ~ 1/|lambda|``. On a sparse graph ``|lambda|`` spans from the spectral gap (city
    scale) to about ``2 max|R_ii|`` (neighbour scale), several orders of magnitude; equal ratios between steps
    spend the same number of steps on each octave of spatial scale. A linear or cosine schedule would spend
    almost all steps near the uniform end and destroy every local structure in the first step.
    """
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if not 0.0 < first <= last:
        raise ConfigError(f"need 0 < first <= last, got first={first}, last={last}")
    if steps == 1:
        return np.array([0.0, last])
    s = np.arange(steps, dtype=np.float64) / (steps - 1)
    abar = first * (last / first) ** s
    abar[-1] = last
    return np.concatenate([[0.0], abar])


class GraphDiffusion:
    r"""Discrete diffusion over ``N`` states driven by a symmetric rate matrix ``R`` (see the module docstring).

    Parameters
    ----------
    rate:
        ``R``, float ``[N, N]``: symmetric, off-diagonal >= 0, rows summing to 0, and connected (else ``Q-bar``
        would never reach the uniform prior; :class:`~cellsynth.errors.DataError` says so).
        :func:`cellsynth.graphs.transitions.knn_graph` builds one from station embeddings;
        :meth:`uniform` is the no-graph ablation.
    steps:
        ``S``, the number of diffusion steps (ignored when ``abar`` is given).
    tol:
        Total-variation tolerance of the end of the forward process: every row of ``Q-bar_S`` is within
        ``tol`` of uniform (guaranteed by :func:`tv_bound`).
    first_jump:
        About the probability that a token leaves its state in the first step:
        ``alpha-bar_1 = first_jump / max_i |R_ii|`` (capped at ``alpha-bar_S / S``).
    abar:
        A custom schedule instead: ``alpha-bar_1..alpha-bar_S`` (length S) or with a leading 0 (length S+1),
        strictly increasing. Nothing checks that it mixes; see :meth:`tv_from_uniform`.
    floor:
        Candidates ``l_0`` with ``q(l_s | l_0) = Q-bar_s[l_0, l_s] <= floor`` are left out of the reverse step's
        mixture (which is renormalised over the rest): the eigen computation has absolute errors of about
        ``N * 1e-16``, so such entries are noise, and dividing by them would amplify it. These ``l_0`` cannot
        (to within ``floor``) have produced ``l_s``.
    spectral_tol:
        0 (default) uses the whole spectrum. ``> 0`` keeps, per call, only the slowest modes with
        ``e^{t lambda_m} > spectral_tol`` at the smallest time ``t`` the call needs: the dropped part of each
        matrix has spectral norm (and every entry absolute error) ``<= spectral_tol``. It saves time at
        the late (large ``alpha-bar``) steps only; early steps need every mode. Keep ``floor >> spectral_tol``.

    Attributes: ``n`` (N), ``steps`` (S), ``rate``, ``eigenvalues`` (decreasing, ``[0] = 0``),
    ``eigenvectors`` (columns, ``[:, 0] = 1/sqrt(N)``), ``abar`` and ``alpha`` (``float64 [S+1]``, index 0
    is 0), ``spectral_gap``, ``tol`` (the TV bound :meth:`tv_bound_at` certifies at ``alpha-bar_S``: at most
    the requested ``tol``).
    """

    def __init__(
        self,
        rate,
        *,
        steps: int = 100,
        tol: float = 0.05,
        first_jump: float = 0.01,
        abar=None,
        floor: float = 1e-8,
        spectral_tol: float = 0.0,
    ) -> None:
        rate = _check_rate(rate)
        self.rate = rate
        self.n = rate.shape[0]
        # eigh of the symmetric R: lambda ascending; flip so that mode 0 is the stationary (uniform) one and
        # a prefix of the columns is "the slowest modes" (what spectral truncation keeps).
        values, vectors = scipy.linalg.eigh(rate, driver="evd")  # divide and conquer: the fastest
        values, vectors = values[::-1].copy(), vectors[:, ::-1].copy()
        # Connected => lambda_0 = 0 is simple with eigenvector 1/sqrt(N); set both exactly (rows then sum to
        # 1 to rounding) and clip the others to <= 0 (they are <= -gap up to rounding).
        values[0] = 0.0
        vectors[:, 0] = 1.0 / math.sqrt(self.n)
        values[1:] = np.minimum(values[1:], 0.0)
        self.eigenvalues, self.eigenvectors = values, vectors
        self.spectral_gap = -float(values[1])
        if self.spectral_gap <= 0:
            raise DataError("R has no spectral gap (is the graph connected?)", source="rate matrix")
        if not 0 <= floor < 1:
            raise ConfigError(f"floor must be in [0, 1), got {floor}")
        if not 0 <= spectral_tol < 1:
            raise ConfigError(f"spectral_tol must be in [0, 1), got {spectral_tol}")
        self.floor, self.spectral_tol = float(floor), float(spectral_tol)

        if abar is None:
            if not isinstance(steps, (int, np.integer)) or steps < 1:
                raise ConfigError(f"steps must be an int >= 1, got {steps!r}")
            if not 0 < first_jump < 1:
                raise ConfigError(f"first_jump must be in (0, 1), got {first_jump}")
            last = mixing_time(values, vectors, tol)
            first = min(first_jump / float(np.abs(np.diag(rate)).max()), last / steps)
            abar = geometric_schedule(first, last, int(steps))
        self._set_schedule(abar)
        self._bases: dict[torch.device, SpectralBasis] = {}

    @classmethod
    def uniform(cls, n: int, **kwargs) -> GraphDiffusion:
        """The no-knowledge-graph ablation: ``R = (1/N) 1 1^T - I`` (:func:`uniform_rate`) through this class."""
        return cls(uniform_rate(n), **kwargs)

    def with_schedule(self, abar) -> GraphDiffusion:
        """The same graph with another schedule (e.g. a strided sub-chain ``abar[[s_1, s_2, ...]]`` for fewer
        sampling steps), sharing this one's eigendecomposition instead of recomputing it. ``abar`` as in the
        constructor; ``floor`` and ``spectral_tol`` are kept."""
        new = object.__new__(GraphDiffusion)
        new.__dict__.update(self.__dict__)
        new._set_schedule(abar)
        new._bases = {}
        return new

    def abar_at(self, s) -> np.ndarray:
        """``alpha-bar`` at real-valued steps ``s`` in ``[0, S]`` (``float64``, the shape of ``s``): the schedule
        itself at integer ``s``; between two steps ``>= 1``, log-linear (exact for :func:`geometric_schedule`,
        which is geometric in ``s``); on ``[0, 1]``, linear from 0 (``alpha-bar`` is the forward chain's time,
        and its logarithm has no value at 0). What a finer sampling chain than the trained one visits."""
        s = np.asarray(s, dtype=np.float64)
        if not np.isfinite(s).all() or (s < 0).any() or (s > self.steps).any():
            raise ConfigError(f"steps must lie in [0, {self.steps}], got {s.min():.4g} .. {s.max():.4g}")
        whole = np.arange(1, self.steps + 1)
        log_abar = np.interp(np.maximum(s, 1.0), whole, np.log(self.abar[1:]))
        between = np.where(s >= 1.0, np.exp(log_abar), self.abar[1] * s)
        on_step = s == np.round(s)  # the schedule's own value, not exp(log(.)) of it
        return np.where(on_step, self.abar[np.round(s).astype(np.int64)], between)

    def _set_schedule(self, abar) -> None:
        abar = np.asarray(abar, dtype=np.float64).ravel()
        if abar.size == 0 or abar[0] != 0.0:
            abar = np.concatenate([[0.0], abar])
        if len(abar) < 2 or not np.isfinite(abar).all() or (np.diff(abar) <= 0).any():
            raise ConfigError("abar must be finite, positive and strictly increasing")
        self.abar = abar
        self.alpha = np.diff(abar, prepend=0.0)
        self.steps = len(abar) - 1
        self.tol = float(self.tv_bound_at(abar[-1]))

    def __repr__(self) -> str:
        return (
            f"GraphDiffusion(n={self.n}, steps={self.steps}, abar=[{self.abar[1]:.3g} .. {self.abar[-1]:.3g}], "
            f"gap={self.spectral_gap:.3g}, tol={self.tol:.3g})"
        )

    # -- dense views for inspection and tests (N x N; small N only) -----------------------------------------

    def transition_matrix(self, s: int, *, cumulative: bool = True) -> np.ndarray:
        """``Q-bar_s`` (``cumulative``) or ``Q_s`` as a dense ``float64 [N, N]`` (for small N, tests, plots)."""
        t = self.abar[s] if cumulative else self.alpha[s]
        v = self.eigenvectors
        return (v * np.exp(t * self.eigenvalues)) @ v.T

    def tv_bound_at(self, t: float) -> float:
        """``max_i`` of :func:`tv_bound` at time ``t`` (an upper bound on the max row TV from uniform)."""
        return float(tv_bound(self.eigenvalues, self.eigenvectors, t).max())

    def tv_from_uniform(self, s: int | None = None, *, chunk: int = 512) -> float:
        """Exact ``max_i TV(Q-bar_s[i], uniform)`` (default ``s = S``), computed row block by row block:
        ``O(N^3)`` time, ``O(chunk N)`` memory."""
        t = self.abar[self.steps if s is None else s]
        v, scale = self.eigenvectors, np.exp(t * self.eigenvalues)
        worst = 0.0
        for start in range(0, self.n, chunk):
            rows = (v[start : start + chunk] * scale) @ v.T
            worst = max(worst, float(0.5 * np.abs(rows - 1.0 / self.n).sum(axis=1).max()))
        return worst

    # -- internals --------------------------------------------------------------------------------------------

    def _basis(self, device) -> SpectralBasis:
        device = torch.device(device)
        if device not in self._bases:  # two threads may both build it: the first one kept serves both
            self._bases.setdefault(
                device, SpectralBasis(self.eigenvectors, self.eigenvalues, self.abar, device)
            )
        return self._bases[device]

    def _rank(self, t: torch.Tensor) -> int:
        """Number of leading (slowest) modes to keep for the positive times in ``t`` (``t = 0`` is exact
        anyway): those with ``e^{t_min lambda_m} > spectral_tol``."""
        if self.spectral_tol <= 0:
            return self.n
        positive = t[t > 0]
        if positive.numel() == 0:
            return 1
        kept = int(np.count_nonzero(np.exp(float(positive.min()) * self.eigenvalues) > self.spectral_tol))
        return max(kept, 1)

    def _tokens(self, tokens: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(tokens, torch.Tensor) or tokens.dtype.is_floating_point or tokens.dtype.is_complex:
            raise ValueError(f"{name} must be an integer tensor of states, got {type(tokens).__name__}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.n):
            raise ValueError(
                f"{name} has states outside 0..{self.n - 1} (min {int(tokens.min())}, max {int(tokens.max())})"
            )
        return tokens.long()

    def _steps(self, s, shape: torch.Size, device, *, low: int) -> torch.Tensor:
        """``s`` broadcast to the tokens' shape (``[B]`` -> ``[B, 1, ...]``), validated to ``low..S``."""
        s = torch.as_tensor(s, device=device)
        if s.dtype.is_floating_point or s.dtype == torch.bool:
            raise ValueError(f"steps must be integers, got dtype {s.dtype}")
        while s.dim() < len(shape):
            s = s.unsqueeze(-1)
        s = torch.broadcast_to(s.long(), shape)
        if s.numel() and (int(s.min()) < low or int(s.max()) > self.steps):
            raise ValueError(f"steps must be in {low}..{self.steps}, got {int(s.min())}..{int(s.max())}")
        return s

    def _rows(self, idx: torch.Tensor, t: torch.Tensor, basis: SpectralBasis) -> torch.Tensor:
        """Rows ``exp(t R)[idx, :]`` for flat ``idx [M]``, times ``t [M]`` (:meth:`SpectralBasis.rows`)."""
        return basis.rows(idx, t, self._rank(t))

    def _times(self, w: torch.Tensor, t: torch.Tensor, basis: SpectralBasis) -> torch.Tensor:
        """``w @ exp(t R)`` row by row for ``w [M, N]``, ``t [M]`` (:meth:`SpectralBasis.times`)."""
        return basis.times(w, t, self._rank(t))

    # -- forward process -------------------------------------------------------------------------------------

    def q_probs(self, l0: torch.Tensor, s) -> torch.Tensor:
        """``q(l_s | l_0) = Q-bar_s[l_0, :]``: ``float64 [..., N]`` for tokens ``l0 [...]`` (``s`` in ``0..S``)."""
        l0 = self._tokens(l0, "l0")
        basis = self._basis(l0.device)
        s = self._steps(s, l0.shape, l0.device, low=0)
        rows = self._rows(l0.reshape(-1), basis.abar[s.reshape(-1)], basis)
        return (rows / rows.sum(-1, keepdim=True)).reshape(*l0.shape, self.n)

    def q_sample(self, l0: torch.Tensor, s, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``l_s ~ q(l_s | l_0)``: ``long`` of ``l0``'s shape."""
        return inverse_cdf_draw(self.q_probs(l0, s), generator)

    def q_step_sample(
        self, l_prev: torch.Tensor, s, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw one forward step ``l_s ~ q(l_s | l_{s-1}) = Q_s[l_{s-1}, :]`` (``s`` in ``1..S``): ``long`` of
        ``l_prev``'s shape. With :meth:`sample_step` at the same ``s`` it makes a corrector round, which
        leaves the forward marginal ``q(l_{s-1})`` invariant when the denoiser is exact."""
        l_prev = self._tokens(l_prev, "l_prev")
        basis = self._basis(l_prev.device)
        s = self._steps(s, l_prev.shape, l_prev.device, low=1)
        rows = self._rows(l_prev.reshape(-1), basis.alpha[s.reshape(-1)], basis)
        return inverse_cdf_draw(rows.reshape(*l_prev.shape, self.n), generator)

    def prior_sample(self, shape, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """Draw ``l_S`` from the prior, uniform over the ``N`` states: ``long [shape]``."""
        if device is None and generator is not None:
            device = generator.device
        return torch.randint(0, self.n, tuple(shape), generator=generator, device=device)

    def random_steps(self, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        """``n`` training steps drawn uniformly from ``1..S``: ``long [n]``."""
        if device is None and generator is not None:
            device = generator.device
        return torch.randint(1, self.steps + 1, (n,), generator=generator, device=device)

    # -- posteriors ------------------------------------------------------------------------------------------

    def posterior_probs(self, l_s: torch.Tensor, l0: torch.Tensor, s) -> torch.Tensor:
        """The true posterior ``q(l_{s-1} | l_s, l_0) = Q_s[l_{s-1}, l_s] Q-bar_{s-1}[l_0, l_{s-1}] / Q-bar_s[l_0, l_s]``.

        ``float64 [..., N]`` over ``l_{s-1}``; ``s`` in ``1..S``. It is normalised by the sum of its numerators,
        which equals ``Q-bar_s[l_0, l_s]`` (Chapman-Kolmogorov) and keeps it a distribution to rounding. At
        ``s = 1`` it is exactly the one-hot of ``l_0``. Where ``l_s`` is unreachable from ``l_0`` (all
        numerators 0) it returns the one-hot of ``l_s``.
        """
        l_s, l0 = self._tokens(l_s, "l_s"), self._tokens(l0, "l0")
        if l_s.shape != l0.shape:
            raise ValueError(f"l_s and l0 differ in shape: {tuple(l_s.shape)} vs {tuple(l0.shape)}")
        basis = self._basis(l_s.device)
        s = self._steps(s, l_s.shape, l_s.device, low=1).reshape(-1)
        k, i = l_s.reshape(-1), l0.reshape(-1)
        # Q_s[l_{s-1}, l_s] = Q_s[l_s, l_{s-1}] (symmetric): a row of Q_s, not a column.
        num = self._rows(k, basis.alpha[s], basis) * self._rows(i, basis.abar[s - 1], basis)
        total = num.sum(-1, keepdim=True)
        stay = F.one_hot(k, self.n).to(torch.float64)
        post = torch.where(total > 0, num / total.clamp_min(_TINY), stay)
        return post.reshape(*l_s.shape, self.n)

    def reverse_probs(self, l_s: torch.Tensor, logits: torch.Tensor, s, s_to=None) -> torch.Tensor:
        r"""The model's reverse step ``p(l_{s-1} | l_s) = sum_{l_0} p_theta(l_0 | l_s) q(l_{s-1} | l_s, l_0)``.

        ``p_theta = softmax(logits)`` over ``l_0``; the sum over ``l_0`` is exact (no sampling of candidates)::

            p(l_{s-1} | l_s) = Q_s[l_s, l_{s-1}] * sum_{l_0} w(l_0) Q-bar_{s-1}[l_0, l_{s-1}],
            w(l_0) = p_theta(l_0 | l_s) / Q-bar_s[l_0, l_s]

        computed per token as ``Q_s[l_s, :] ⊙ ((w @ V) e^{alpha-bar_{s-1} lambda}) V^T``. It sums to
        ``sum_{l_0} p_theta(l_0)`` = 1 since each ``q(. | l_s, l_0)`` does.

        ``s_to`` (default ``s - 1``; per token like ``s``, in ``0..s-1``) makes it a jump over several
        steps, ``p(l_{s'} | l_s)`` with ``s' = s_to``: ``Q_s`` becomes
        ``Q_{s' -> s} = exp((alpha-bar_s - alpha-bar_{s'}) R)`` and ``Q-bar_{s-1}`` becomes ``Q-bar_{s'}``,
        the exact posterior ``q(l_{s'} | l_s, l_0)`` marginalised the same way (what
        :func:`cellsynth.generators.mstdiff.generator.strided_chain` does for one fixed pair of steps). Candidates with
        ``Q-bar_s[l_0, l_s] <= floor`` are left out and the rest renormalised (see the class docstring); if
        ``p_theta`` puts no mass at all on the others, ``p_theta(l_0) ∝ Q-bar_s[l_0, l_s]`` (the posterior of a
        uniform ``l_0``) is used instead. Differentiable in ``logits``; ``float64 [..., N]``.
        """
        l_s = self._tokens(l_s, "l_s")
        if logits.shape != (*l_s.shape, self.n):
            raise ValueError(f"logits must have shape {(*l_s.shape, self.n)}, got {tuple(logits.shape)}")
        basis = self._basis(l_s.device)
        s = self._steps(s, l_s.shape, l_s.device, low=1).reshape(-1)
        s_to = s - 1 if s_to is None else self._steps(s_to, l_s.shape, l_s.device, low=0).reshape(-1)
        if (s_to >= s).any():
            raise ValueError("s_to must be below s: a reverse step goes from s to an earlier step")
        k = l_s.reshape(-1)
        p0 = torch.softmax(logits.reshape(-1, self.n).to(torch.float64), dim=-1)

        den = self._rows(k, basis.abar[s], basis)  # Q-bar_s[l_s, :] = Q-bar_s[:, l_s]
        valid = den > self.floor
        w = p0.masked_fill(~valid, 0.0)
        empty = w.sum(-1, keepdim=True) <= 0
        w = w / torch.where(valid, den, 1.0)
        if bool(empty.any()):  # rare: only the uniform-l_0 fallback needs the extra pass
            w = torch.where(empty.expand_as(w), valid.to(torch.float64), w)
        mix = self._times(w, basis.abar[s_to], basis).clamp_min(0.0)  # w @ Q-bar_{s'}
        # Q_{s'->s}[l_s, :] ⊙ (w @ Q-bar_{s'}); abar_s - abar_{s-1} is alpha_s bit for bit (np.diff), so the
        # one-step case is unchanged
        num = self._rows(k, basis.abar[s] - basis.abar[s_to], basis) * mix
        probs = num / num.sum(-1, keepdim=True).clamp_min(_TINY)
        return probs.reshape(*l_s.shape, self.n)

    # -- losses and sampling ---------------------------------------------------------------------------------

    def kl(self, l0: torch.Tensor, l_s: torch.Tensor, logits: torch.Tensor, s, *, reduction: str = "mean"):
        """``KL(q(l_{s-1} | l_s, l_0) || p(l_{s-1} | l_s))`` per token (nats), reduced by ``reduction``
        (``"mean"``, ``"sum"`` or ``"none"`` -> shape of ``l0``), in ``logits``' dtype.

        Since ``p`` is a mixture containing ``q(. | l_s, l_0)`` with weight ``p_theta(l_0 | l_s)``, the KL is at
        most ``-log p_theta(l_0 | l_s)``, the CE term; at ``s = 1`` it equals it (up to candidates left out by
        ``floor``).
        """
        q = self.posterior_probs(l_s, l0, s)
        p = self.reverse_probs(l_s, logits, s)
        kl = (torch.xlogy(q, q) - torch.xlogy(q, p.clamp_min(_TINY))).sum(-1).clamp_min(0.0)
        return _reduce(kl.to(logits.dtype), reduction)

    def ce(self, l0: torch.Tensor, logits: torch.Tensor, *, reduction: str = "mean"):
        """``CE(l_0, logits) = -log softmax(logits)[l_0]`` per token (nats): the paper's direct ``l_0`` term."""
        l0 = self._tokens(l0, "l0")
        if logits.shape != (*l0.shape, self.n):
            raise ValueError(f"logits must have shape {(*l0.shape, self.n)}, got {tuple(logits.shape)}")
        ce = F.cross_entropy(logits.reshape(-1, self.n), l0.reshape(-1), reduction="none").reshape(l0.shape)
        return _reduce(ce, reduction)

    @torch.no_grad()
    def sample_step(
        self,
        l_s: torch.Tensor,
        logits: torch.Tensor,
        s,
        generator: torch.Generator | None = None,
        *,
        s_to=None,
        coupling: float = 0.0,
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """One step of the paper's Algorithm 2: draw ``l_{s-1} ~ p(l_{s-1} | l_s)`` (:meth:`reverse_probs`;
        ``s_to``: jump to that earlier step instead). At ``s = 1`` this draws ``l_0`` from ``p_theta(l_0 | l_1)``
        (restricted to reachable states). ``temperature``: the step takes ``p_theta(l_0 | l_s)`` from
        ``logits / temperature`` (the same as passing those logits, without a second ``[..., N]`` tensor).

        When every token takes the same step (``s`` and ``s_to`` plain integers) and there are at least ``N``
        tokens, as in sampling, the step's probabilities come from :meth:`_shared_step_weights` (float32,
        dense per-step matrices: the same distribution to float32 rounding, 3.8 times less CPU on the demo's
        150-station chain); otherwise from :meth:`reverse_probs` (float64).

        ``coupling`` ``rho`` in ``[0, 1]``: 0 draws every token independently, as Algorithm 2 does. Above 0
        the draws along the last token axis (time) share correlated noise (:func:`coupled_categorical`):
        each token's marginal is still exactly ``p(l_{s-1} | l_s)``, but neighbours whose distributions
        agree tend to draw the same state, instead of flickering between two likely ones."""
        if isinstance(temperature, bool) or not (
            isinstance(temperature, (int, float)) and 0 < temperature < float("inf")
        ):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        shared = self._shared_step(l_s, s, s_to)
        if shared is None:
            scaled = logits if temperature == 1 else logits / temperature
            return _draw(self.reverse_probs(l_s, scaled, s, s_to), coupling, generator)
        # in chunks of whole sequences (the coupling runs along the last axis) of about CHUNK_ENTRIES weights:
        # each chunk's weights are drawn from while they are still in cache, and no temporary is large
        # enough to cost fresh pages from the allocator at every step
        if logits.shape != (*l_s.shape, self.n):  # before the reshape, which could hide a wrong shape
            raise ValueError(f"logits must have shape {(*l_s.shape, self.n)}, got {tuple(logits.shape)}")
        length = l_s.shape[-1] if l_s.dim() else 1
        sequences, rows = l_s.reshape(-1, length), logits.reshape(-1, length, self.n)
        draws = []
        for chunk in sequence_chunks(len(sequences), length, self.n):
            scaled = rows[chunk] if temperature == 1 else rows[chunk] / temperature
            weights = self._shared_step_weights(sequences[chunk], scaled, *shared)
            draws.append(_draw(weights, coupling, generator))
        return torch.cat(draws).view(l_s.shape)

    def _shared_step(self, l_s: torch.Tensor, s, s_to) -> tuple[int, int] | None:
        """``(s, s')`` when one step ``s -> s'`` is taken by every token (both plain integers, or 0-d integer
        tensors) and there are at least ``N`` tokens, so that dense ``N x N`` matrices pay off; else None."""

        def integer(v):
            if isinstance(v, torch.Tensor) and v.dim() == 0 and not v.dtype.is_floating_point:
                return int(v)
            if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
                return int(v)
            return None

        step = integer(s)
        target = step - 1 if step is not None and s_to is None else integer(s_to)
        if step is None or target is None or l_s.numel() < self.n:
            return None
        self._steps(step, torch.Size(), l_s.device, low=1)  # the per-token path's range errors
        self._steps(target, torch.Size(), l_s.device, low=0)
        if target >= step:
            raise ValueError("s_to must be below s: a reverse step goes from s to an earlier step")
        return step, target

    def _shared_step_weights(
        self, l_s: torch.Tensor, logits: torch.Tensor, s: int, s_to: int
    ) -> torch.Tensor:
        r"""``p(l_{s'} | l_s)`` up to a factor per token, ``float32 [..., N]``, for tokens that all take the
        step ``s -> s'``: :meth:`reverse_probs`' mixture with the step's matrices dense::

            weight = Q_{s'->s}[l_s, :] ⊙ ((softmax(logits) ⊙ A_s[l_s, :]) @ Q-bar_{s'}),
            A_s[l_s, l_0] = 1 / Q-bar_s[l_s, l_0] where Q-bar_s[l_s, l_0] > floor, else 0

        Why it is faster: the division by ``Q-bar_s`` becomes a gather of the precomputed ``A_s``, no row is
        normalised (the draws take unnormalised weights), and float32 halves the memory traffic and the
        time of the one ``[M, N] x [N, N]`` product, which dominates. Rows whose weights are all 0 or sum to
        less than float32's smallest normal number (every candidate with mass unreachable, or the mass
        underflowing in float32) are redone by :meth:`reverse_probs` in float64, which holds the fallback
        for that case."""
        l_s = self._tokens(l_s, "l_s")
        if logits.shape != (*l_s.shape, self.n):
            raise ValueError(f"logits must have shape {(*l_s.shape, self.n)}, got {tuple(logits.shape)}")
        basis = self._basis(l_s.device)

        def dense(t: torch.Tensor) -> torch.Tensor:  # exp(t R), with the modes reverse_probs keeps at t
            return basis.matrix(float(t), self._rank(t.reshape(1)))

        t_s, t_to = basis.abar[s], basis.abar[s_to]
        den = dense(t_s).clamp_min(0.0)  # symmetric: row l_s is Q-bar_s[:, l_s]
        inverse = torch.where(den > self.floor, 1.0 / den.clamp_min(self.floor), 0.0).float()
        k = l_s.reshape(-1)
        weights = torch.softmax(logits.reshape(-1, self.n), dim=-1, dtype=torch.float32)
        weights.mul_(inverse.index_select(0, k))
        if s_to > 0:  # Q-bar_0 is the identity
            weights = weights @ dense(t_to).float()
        weights.clamp_min_(0.0)
        # abar_s - abar_{s-1} is alpha_s bit for bit (np.diff), as in reverse_probs
        jump = dense(t_s - t_to).clamp_min(0.0).float()
        weights.mul_(jump.index_select(0, k))
        # a total below float32's smallest normal number is as good as none: its draw could not tell the
        # states apart (see inverse_cdf_draw)
        empty = (weights.sum(-1) < torch.finfo(torch.float32).tiny).nonzero().squeeze(1)
        if empty.numel():
            weights[empty] = self.reverse_probs(k[empty], logits.reshape(-1, self.n)[empty], s, s_to).float()
        return weights.reshape(*l_s.shape, self.n)


def _draw(probs: torch.Tensor, coupling: float, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row of ``probs``: by inverse CDF when ``coupling`` is 0, else coupled along time."""
    if coupling == 0:
        return inverse_cdf_draw(probs, generator)
    return coupled_categorical(probs, coupling, generator)


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
