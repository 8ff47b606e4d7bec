r"""Cell oscillations: one-step visits to a neighbouring cell, removed before training and drawn again after.

A cellular record places a user at the cell that serves them, and a user who does not move is now and
then served for one record by a neighbouring cell (handover ping-pong, load balancing). In the synthetic
city that is 8 such visits a week per user, a third of all jumps between stations. They are observation
noise: nothing else in the week predicts when they happen. To a discrete diffusion whose forward noise
also moves tokens to nearby stations they look like its own noise, and MSTDiff's denoiser removes them:
its users make 2-3 jumps a week to a nearest station against 17.5 real, and about as many extra jumps
to stations farther away (docs/notebook/2026-11-22-mstdiff-oscillations-moments.md). With
``oscillation_neighbours = k`` (not in the paper) MSTDiff models them apart, as an observation layer over
the movement it learns. Measured there: its users then oscillate at the real rate, and the distance JSD
falls from 0.144 to 0.055.

**Oscillation** (:func:`find_oscillations`): a position ``t``, ``0 < t < T - 1``, with::

    l_{t-1} = l_{t+1} = a,    l_t = b != a,    b in nb_k(a)

``nb_k(a)``: the ``k`` stations nearest ``a``, nearest first
(:func:`~cellsynth.graphs.transitions.nearest_stations`).

**Filter** (:meth:`CellOscillations.remove`): ``l_t <- a`` at every oscillation. MSTDiff trains on the
filtered weeks ``l'`` (and takes each user's anchors from them).

**Model** (:meth:`CellOscillations.fit`): one rate and a distribution over the neighbours' ranks::

    q     = #oscillations / #{t : l'_{t-2} = ... = l'_{t+2}}     (positions well inside a stay of l')
    rho   = q / (1 - 2 q)
    pi_r  = share of the oscillations whose b is the r-th nearest station of a,   r = 1..k

**Draw** (:meth:`CellOscillations.add`): in a generated week every position well inside a stay (two steps
at the same station on each side) becomes an oscillation with probability ``rho``, to ``nb_k(l_t)[r]``,
``r ~ pi``, unless one of the two positions before it did. Each one is then ``a a b a a``, which
:func:`find_oscillations` finds again and :meth:`~CellOscillations.remove` undoes exactly; with only one
step on a side, ``c a b a`` with ``c = b`` would be two oscillations. Along a long stay each oscillation
uses up three positions, so a share ``rho / (1 + 2 rho) = q`` of them oscillate: filtering and drawing
again keeps the number of oscillations in expectation (up to the stays' ends).

One rate for all stations and users: the kernel is by rank, not by station pair, so nothing of a
particular user or cell is kept.
"""

from __future__ import annotations

import numpy as np
import torch

from cellsynth.errors import DataError

__all__ = ["CellOscillations", "find_oscillations"]


def _check(locations, neighbours: np.ndarray) -> np.ndarray:
    loc = np.asarray(locations)
    if loc.ndim != 2 or not np.issubdtype(loc.dtype, np.integer):
        raise DataError(f"locations must be a [users, steps] integer array, got {loc.dtype} {loc.shape}")
    if loc.size and (loc.min() < 0 or loc.max() >= len(neighbours)):
        raise DataError(
            f"locations must be station indices in 0..{len(neighbours) - 1}, got {loc.min()}..{loc.max()}"
        )
    return loc.astype(np.int64, copy=False)


def find_oscillations(locations, neighbours: np.ndarray) -> np.ndarray:
    """``bool [U, T]``: the oscillations of each week (module docstring); ``neighbours int [N, k]`` are
    each station's nearest stations, nearest first."""
    loc = _check(locations, neighbours)
    out = np.zeros(loc.shape, dtype=bool)
    if loc.shape[1] < 3:
        return out
    before, here, after = loc[:, :-2], loc[:, 1:-1], loc[:, 2:]
    out[:, 1:-1] = (before == after) & (here != before) & (neighbours[before] == here[..., None]).any(-1)
    return out


def _inside_stays(loc: np.ndarray) -> np.ndarray:
    """``bool [U, T]``: positions with the same station at the two steps before and the two after."""
    out = np.zeros(loc.shape, dtype=bool)
    if loc.shape[1] >= 5:
        here = loc[:, 2:-2]
        out[:, 2:-2] = (
            (loc[:, :-4] == here) & (loc[:, 1:-3] == here) & (loc[:, 3:-1] == here) & (loc[:, 4:] == here)
        )
    return out


class CellOscillations:
    """The rate ``rho`` and rank distribution ``pi`` of one-step visits to a near station (module docstring),
    with the stations' ``neighbours int [N, k]``."""

    def __init__(self, rate: float, ranks: np.ndarray, neighbours: np.ndarray):
        ranks, neighbours = np.asarray(ranks, dtype=np.float64), np.asarray(neighbours, dtype=np.int64)
        if ranks.ndim != 1 or (ranks < 0).any() or not np.isclose(ranks.sum(), 1.0):
            raise DataError(f"ranks must be a distribution over the neighbours' ranks, got {ranks}")
        if neighbours.ndim != 2 or neighbours.shape[1] != len(ranks):
            raise DataError(f"neighbours must be [stations, {len(ranks)}], got {neighbours.shape}")
        if not 0.0 <= rate < 1.0 or not np.isfinite(rate):
            raise DataError(f"the oscillation rate must be in [0, 1), got {rate}")
        self.rate, self.ranks, self.neighbours = float(rate), ranks, neighbours

    @property
    def k(self) -> int:
        return len(self.ranks)

    @classmethod
    def fit(cls, locations, neighbours: np.ndarray) -> CellOscillations:
        """Estimate ``rho`` and ``pi`` from training weeks ``int [U, T]``."""
        neighbours = np.asarray(neighbours, dtype=np.int64)
        loc = _check(locations, neighbours)
        found = find_oscillations(loc, neighbours)
        eligible = _inside_stays(cls._filtered(loc, found)).sum()
        # Capped: a ping-pong a b a b a b ... has more oscillations than positions left inside a stay.
        share = min(found.sum() / eligible, 0.25) if eligible else 0.0
        k = neighbours.shape[1]
        if found.any():
            users, steps = np.nonzero(found)
            rank = (neighbours[loc[users, steps - 1]] == loc[users, steps][:, None]).argmax(axis=1)
            ranks = np.bincount(rank, minlength=k) / len(rank)
        else:
            ranks = np.full(k, 1.0 / k)
        return cls(share / (1 - 2 * share), ranks, neighbours)

    @staticmethod
    def _filtered(loc: np.ndarray, found: np.ndarray) -> np.ndarray:
        out = loc.copy()
        users, steps = np.nonzero(found)
        out[users, steps] = loc[users, steps - 1]
        return out

    def remove(self, locations) -> np.ndarray:
        """``int64 [U, T]``: the weeks with every oscillation replaced by the station around it."""
        loc = _check(locations, self.neighbours)
        return self._filtered(loc, find_oscillations(loc, self.neighbours))

    def add(self, locations, rng: np.random.Generator) -> np.ndarray:
        """``int64 [U, T]``: the weeks with oscillations drawn inside their stays."""
        loc = _check(locations, self.neighbours)
        hit = _inside_stays(loc) & (rng.random(loc.shape) < self.rate)
        # in time order: an oscillation leaves the next two positions no longer well inside a stay
        for t in range(2, loc.shape[1]):
            hit[:, t] &= ~(hit[:, t - 1] | hit[:, t - 2])
        users, steps = np.nonzero(hit)
        rank = rng.choice(self.k, size=len(users), p=self.ranks)
        out = loc.copy()
        out[users, steps] = self.neighbours[loc[users, steps], rank]
        return out

    def state(self) -> dict[str, torch.Tensor]:
        return {
            "oscillations.rate": torch.tensor([self.rate], dtype=torch.float64),
            "oscillations.ranks": torch.from_numpy(self.ranks.copy()),
        }

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], neighbours: np.ndarray) -> CellOscillations:
        return cls(float(tensors["oscillations.rate"][0]), tensors["oscillations.ranks"].numpy(), neighbours)
