r"""Anchors: each user's most-visited stations, and a model that draws them for new users.

MSTDiff's reverse chain decides at high noise, position by position, where a user is. Where a user
*works* is one choice among many stations that the whole week must agree on, and a chain that draws
every position on its own does not make it: measured (docs/notebook/2026-11-22-mstdiff-duration-gap.md),
its users stay at home through three quarters of the working day. With ``anchors = k`` (not in the
paper) the denoiser is also given the user's ``k`` most-visited stations, so that choice is made
before the chain starts, by the small model below, and the chain only has to decide *when* the user is
at each anchor and where they go in between.

**Anchors of a trajectory** (:func:`top_locations`): the ``k`` stations with the most steps, most first
(ties: the lowest index). A user with fewer than ``k`` distinct stations is padded with their first one.

**Drawing anchors** (:class:`AnchorModel`). With ``a_1`` the first (about "home") and ``d(i, j)`` the
great-circle distance::

    P(a_1 = i)                          = m_1(i)                     (share of training users)
    P(a_r = a_1 | a_{r-1} not padded)   = pi_r                       (r >= 2; padded stays padded)
    P(a_r = j | a_1 = h, not padded)    ~ m_r(j) w_r(b(d(h, j)))     for j not among a_1..a_{r-1}

``pi_r`` is the share, among the training users with at least ``r - 1`` distinct stations, of those with
no ``r``-th (padding is monotone: a user padded at rank ``r`` is padded at every later one). ``m_r`` is
the distribution of the rank-``r`` anchors of the training users that have one. ``b`` bins distances at
the quantiles of the training pairs' ``d(a_1, a_r)``, with two more bins below their minimum and above
their maximum where ``w = 0`` (no anchor farther from home than any seen). ``w_r(b) = P_train(b) /
P_indep(b)`` re-weights independent draws ``m_1 x m_r`` so that distances to home follow the training
ones (a gravity model's deterrence function, estimated by its histogram). Without coordinates ``w = 1``.

Only these marginals and distance profiles are kept, never a training user's anchor tuple: the pair
of a person's two most-visited places identifies most people (Golle and Partridge, 2009), so copying
the tuples would leak what synthetic data is there to protect. The price: ranks ``r >= 2`` depend on
each other only through ``a_1``.
"""

from __future__ import annotations

import numpy as np
import torch

from cellsynth.errors import ConfigError, DataError
from cellsynth.graphs.stations import haversine_km

__all__ = ["AnchorModel", "check_anchors", "top_locations"]


def top_locations(locations: np.ndarray, k: int) -> np.ndarray:
    """``int64 [U, k]``: each row's ``k`` most frequent values, most first (ties: the lowest), padded with
    the first where a row has fewer than ``k`` distinct values."""
    loc = np.asarray(locations)
    if loc.ndim != 2 or not np.issubdtype(loc.dtype, np.integer) or (loc.size and loc.min() < 0):
        raise DataError(
            f"locations must be a [users, steps] array of station indices, got {loc.dtype} {loc.shape}"
        )
    if k < 1:
        raise DataError(f"k must be >= 1, got {k}")
    out = np.empty((loc.shape[0], k), dtype=np.int64)
    for u, row in enumerate(loc):
        counts = np.bincount(row)
        seen = np.flatnonzero(counts)
        ranked = seen[np.lexsort((seen, -counts[seen]))][:k]
        out[u, : len(ranked)] = ranked
        out[u, len(ranked) :] = ranked[0]
    return out


def _padded(anchors: np.ndarray, r: int) -> np.ndarray:
    """Rows whose rank-``r`` anchor repeats an earlier one (the padding of :func:`top_locations`)."""
    return (anchors[:, r : r + 1] == anchors[:, :r]).any(axis=1)


class AnchorModel:
    """Draws anchor tuples for new users (module docstring). Arrays only, so it is saved as tensors.

    ``marginals [k, N]``: ``m_r``; ``padded [k]``: ``pi_r``, conditional on the rank before not padded (0 at
    rank 1); ``edges [k, B + 1]``: the distance
    bin edges in km, so ``B + 2`` bins with the two outside them (rank 1: unused); ``weights [k, B + 2]``:
    ``w_r`` (without coordinates: ``edges [k, 0]`` and ``weights`` 1, one bin).
    """

    def __init__(self, arrays: dict[str, np.ndarray], lat: np.ndarray | None, lon: np.ndarray | None):
        self.a = arrays
        self.lat, self.lon = lat, lon
        self.k, self.n = arrays["marginals"].shape

    @classmethod
    def fit(
        cls,
        anchors: np.ndarray,
        n_stations: int,
        lat: np.ndarray | None = None,
        lon: np.ndarray | None = None,
        bins: int = 10,
    ) -> AnchorModel:
        """Fit on training anchors ``[U, k]`` (:func:`top_locations`) over ``n_stations`` stations."""
        anchors = np.asarray(anchors, dtype=np.int64)
        users, k = anchors.shape
        if users == 0:
            raise DataError("need at least one user to fit the anchor model")
        geo = lat is not None and lon is not None
        b = bins + 2 if geo else 1
        marginals = np.zeros((k, n_stations))
        padded = np.zeros(k)
        edges = np.zeros((k, b - 1))
        weights = np.ones((k, b))
        marginals[0] = np.bincount(anchors[:, 0], minlength=n_stations) / users
        homes = np.flatnonzero(marginals[0])
        before = np.zeros(users, dtype=bool)  # padded at an earlier rank
        for r in range(1, k):
            pad = _padded(anchors, r)
            padded[r] = pad[~before].mean() if (~before).any() else 1.0
            before = pad
            own = anchors[~pad]
            if not len(own):
                continue
            marginals[r] = np.bincount(own[:, r], minlength=n_stations) / len(own)
            if not geo:
                continue
            d = haversine_km(lat[own[:, 0]], lon[own[:, 0]], lat[own[:, r]], lon[own[:, r]])
            edges[r] = np.quantile(d, np.linspace(0, 1, bins + 1))
            edges[r, -1] = np.nextafter(edges[r, -1], np.inf)  # the farthest pair is inside
            observed = np.bincount(np.searchsorted(edges[r], d, side="right"), minlength=b) / len(d)
            # P_indep(b) = sum_h m_1(h) sum_{j != h} m_r(j) [b(d(h, j)) = b], normalised; by blocks of
            # homes, so that thousands of stations never make an N x N matrix.
            indep = np.zeros(b)
            for block in np.array_split(homes, max(1, len(homes) // 256)):
                dist = haversine_km(lat[block, None], lon[block, None], lat[None, :], lon[None, :])
                mass = marginals[0][block, None] * marginals[r][None, :]
                mass[np.arange(len(block)), block] = 0.0
                indep += np.bincount(
                    np.searchsorted(edges[r], dist, side="right").ravel(), weights=mass.ravel(), minlength=b
                )
            indep = indep / max(indep.sum(), 1e-300)
            weights[r] = np.where(indep > 0, observed / np.where(indep > 0, indep, 1.0), 0.0)
        arrays = {"marginals": marginals, "padded": padded, "edges": edges, "weights": weights}
        return cls(arrays, lat if geo else None, lon if geo else None)

    def sample(self, n_users: int, rng: np.random.Generator) -> np.ndarray:
        """``int64 [n_users, k]`` anchor tuples."""
        m, pi, edges, w = self.a["marginals"], self.a["padded"], self.a["edges"], self.a["weights"]
        out = np.empty((n_users, self.k), dtype=np.int64)
        out[:, 0] = rng.choice(self.n, size=n_users, p=m[0] / m[0].sum())
        is_padded = np.zeros(n_users, dtype=bool)
        for r in range(1, self.k):
            is_padded |= rng.random(n_users) < pi[r]
            out[:, r] = out[:, 0]
            free = np.flatnonzero(~is_padded)
            if not len(free):
                continue
            p = np.broadcast_to(m[r], (len(free), self.n)).copy()
            if self.lat is not None:
                h = out[free, 0]
                d = haversine_km(self.lat[h, None], self.lon[h, None], self.lat[None, :], self.lon[None, :])
                p *= w[r][np.searchsorted(edges[r], d, side="right")]
            p[np.arange(len(free))[:, None], out[free, :r]] = 0.0
            # A home with no station left at a seen distance: the marginal, then any station not yet taken.
            for fallback in (m[r], np.ones(self.n)):
                empty = p.sum(axis=1) <= 0
                if not empty.any():
                    break
                p[empty] = fallback
                p[np.flatnonzero(empty)[:, None], out[free[empty], :r]] = 0.0
            cdf = np.cumsum(p, axis=1)
            u = 1.0 - rng.random(len(free))  # (0, 1]: never a station of zero probability
            pick = (cdf < u[:, None] * cdf[:, -1:]).sum(axis=1)
            out[free, r] = np.minimum(pick, self.n - 1)
        return out

    def state(self) -> dict[str, torch.Tensor]:
        return {f"anchors.{name}": torch.from_numpy(np.ascontiguousarray(v)) for name, v in self.a.items()}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], lat, lon) -> AnchorModel:
        arrays = {k[len("anchors.") :]: v.numpy() for k, v in tensors.items() if k.startswith("anchors.")}
        geo = arrays["edges"].shape[1] > 0
        return cls(arrays, lat if geo else None, lon if geo else None)


def check_anchors(anchors, n_users: int, k: int, n_stations: int, who: str) -> np.ndarray | None:
    """Anchors given for ``n_users`` new users of a model fitted with ``k`` anchors per user (0: none) over
    ``n_stations`` stations, as ``int64 [n_users, k]`` (None: none given); ConfigError/DataError saying what
    is wrong, naming generator ``who``."""
    if anchors is None:
        return None
    if not k:
        raise ConfigError(
            f"{who}: anchors given, but this model was fitted without them (config extensions.anchors: 0)"
        )
    a = np.asarray(anchors)
    if a.shape != (n_users, k) or not np.issubdtype(a.dtype, np.integer):
        raise DataError(
            f"anchors must be integer station indices of shape (users, anchors) = {(n_users, k)}, "
            f"got {a.dtype} {a.shape}"
        )
    if a.size and (a.min() < 0 or a.max() >= n_stations):
        raise DataError(f"anchors must be station indices in 0..{n_stations - 1}, got {a.min()}..{a.max()}")
    return a.astype(np.int64)
