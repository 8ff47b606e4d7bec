r"""``markov``: the floor for user-level generators — a first-order Markov chain over stations by hour,
with traffic drawn from what was seen at that place and hour.

**Trajectories.** With ``h(t)`` the hour of the day of step ``t`` (or the hour of the week, ``weekly=True``)
and ``c[h, i, j]`` the number of training moves ``l_t = i -> l_{t+1} = j`` with ``h(t) = h``::

    N(i)              = { j : sum_h c[h, i, j] > 0 }      (i's observed successors at any hour; {i} if none)
    P(j | i, h)       = (c[h, i, j] + a) / (sum_j' c[h, i, j'] + a |N(i)|)     for j in N(i), else 0
    P(l_0 = i)        = share of training users starting at i

``a`` (``smoothing``) is a Laplace pseudo-count spread over ``N(i)`` only, so the chain never makes a move
that was never seen from ``i`` (it would be a teleport across the city), while an hour at which ``i`` was
never left still has a row: uniform over ``i``'s observed successors. A station only ever seen at the
last step has no successor; it stays put (``N(i) = {i}``).

The default ``a = 0.01`` is small on purpose: a busy station has tens of observed successors, and ``a = 1``
moves that many whole pseudo-moves of mass away from staying put at every step. On the default synthetic
city (320 training users) the generated users visit 96 distinct stations a week with ``a = 1``, 37 with
``a = 0.01`` and 35 with ``a = 0``; the real ones visit 11. The remaining gap is the chain's: it has no
memory of a user's home, which is what this floor is there to show.

**Traffic** (when the training data has it). At each generated step, a value drawn uniformly from the
training values observed at the same ``(station, h)`` — the empirical distribution, zeros included, so
zero inflation comes for free. Where that cell has fewer than ``min_count`` observations, from all
training values at hour ``h`` instead (the per-hour global distribution). Data without traffic
(GeoLife) gives trajectories only.

Everything is stored sparsely (the counts only where moves were seen, the traffic values grouped by
cell), so thousands of locations are fine. Sampling is vectorised over users, sequential over time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pydantic
import torch

from cellsynth.data.model import UserMobility
from cellsynth.errors import DataError
from cellsynth.generators.base import GeneratorConfig, UserGenerator, expect
from cellsynth.generators.state import restore_stations, restore_time_axis, stations_state, time_axis_state

__all__ = [
    "DEFAULT_SMOOTHING",
    "MarkovChain",
    "MarkovConfig",
    "MarkovGenerator",
    "fit_location_hour_traffic",
    "hour_keys",
    "sample_location_hour_traffic",
]

DEFAULT_SMOOTHING = 0.01
"""The default Laplace pseudo-count (see the module docstring for why it is small)."""


class MarkovConfig(GeneratorConfig):
    smoothing: float = pydantic.Field(
        DEFAULT_SMOOTHING,
        ge=0.0,
        description="Laplace pseudo-count added to every observed successor of a station.",
    )
    weekly: bool = pydantic.Field(
        False, description="Key transitions and traffic by hour of the week (168) instead of the day (24)."
    )
    min_count: int = pydantic.Field(
        1, ge=1, description="Fewest traffic observations at a (station, hour) to draw from them."
    )


def hour_keys(data_start, step, n_steps: int, weekly: bool) -> np.ndarray:
    """The hour of the day (0..23) or of the week (0..167, Monday 0h = 0) of each step, in local time."""
    import pandas as pd

    ts = pd.date_range(data_start, periods=n_steps, freq=step)
    hour = np.asarray(ts.hour, dtype=np.int64)
    return hour + 24 * np.asarray(ts.day_of_week, dtype=np.int64) if weekly else hour


def fit_location_hour_traffic(
    locations: np.ndarray, hours: np.ndarray, n_stations: int, n_hours: int, traffic: np.ndarray
) -> dict[str, np.ndarray]:
    """The location-hour traffic model (module docstring, **Traffic**) of ``traffic [U, T]`` observed at
    ``locations [U, T]``, keyed by ``hours [T]``: ``values`` grouped by cell ``key = h * N + station`` with
    ``cell_ptr [H*N + 1]``, and ``hour_values`` grouped by hour with ``hour_ptr [H + 1]``. Shared by the
    trajectory models that have no traffic of their own (TimeGEO, DiffTraj)."""
    loc = np.asarray(locations, dtype=np.int64)
    u, t = loc.shape
    n = int(n_stations)
    x = np.asarray(traffic, dtype=np.float32)
    keys = (np.broadcast_to(hours, (u, t)) * n + loc).ravel()
    order = np.argsort(keys, kind="stable")
    hkeys = np.broadcast_to(hours, (u, t)).ravel()
    horder = np.argsort(hkeys, kind="stable")
    return {
        "values": x.ravel()[order],
        "cell_ptr": np.searchsorted(keys[order], np.arange(n_hours * n + 1)).astype(np.int64),
        "hour_values": x.ravel()[horder],
        "hour_ptr": np.searchsorted(hkeys[horder], np.arange(n_hours + 1)).astype(np.int64),
    }


def sample_location_hour_traffic(
    arrays: dict[str, np.ndarray],
    n_stations: int,
    min_count: int,
    locations: np.ndarray,
    hours: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Traffic ``float32`` of ``locations``' shape, each value drawn uniformly from the training values of its
    (station, hour) cell, or of its hour where the cell has fewer than ``min_count`` (``arrays`` from
    :func:`fit_location_hour_traffic`)."""
    cell_ptr, hour_ptr = arrays["cell_ptr"], arrays["hour_ptr"]
    keys = hours[None, :] * int(n_stations) + locations
    h = np.broadcast_to(hours[None, :], locations.shape)
    seen = (cell_ptr[keys + 1] - cell_ptr[keys]) >= min_count
    # One pool: the cell-grouped values, then the hour-grouped ones.
    pool = np.concatenate([arrays["values"], arrays["hour_values"]])
    offset = len(arrays["values"])
    lo = np.where(seen, cell_ptr[keys], offset + hour_ptr[h])
    hi = np.where(seen, cell_ptr[keys + 1], offset + hour_ptr[h + 1])
    size = hi - lo
    pick = lo + np.minimum((rng.random(locations.shape) * size).astype(np.int64), np.maximum(size - 1, 0))
    # An hour never seen in training (training data shorter than a day/week) has no values: zero traffic.
    return np.where(size > 0, pool[np.minimum(pick, len(pool) - 1)], 0.0).astype(np.float32)


class MarkovChain:
    """The fitted chain (see the module docstring). Arrays only, so it is saved as tensors.

    ``indptr [N+1], successors [nnz]``: ``N(i)`` as CSR rows; ``counts [H, nnz]``: ``c[h, i, j]`` aligned
    with them; ``start [N]``: the start distribution. Traffic: ``values`` grouped by cell
    ``key = h * N + station`` with ``cell_ptr [H*N + 1]``; ``hour_values`` grouped by hour with
    ``hour_ptr [H + 1]``.
    """

    def __init__(self, arrays: dict[str, np.ndarray], n_hours: int, smoothing: float, min_count: int) -> None:
        self.a = arrays
        self.n_hours, self.smoothing, self.min_count = int(n_hours), float(smoothing), int(min_count)
        self.n = len(arrays["indptr"]) - 1
        self._cdf = self._cumulative()

    @classmethod
    def fit(
        cls,
        locations: np.ndarray,
        hours: np.ndarray,
        n_stations: int,
        n_hours: int,
        *,
        traffic: np.ndarray | None = None,
        smoothing: float = DEFAULT_SMOOTHING,
        min_count: int = 1,
    ) -> MarkovChain:
        """Count moves of ``locations [U, T]`` keyed by ``hours [T]`` (values in ``0..n_hours-1``)."""
        loc = np.asarray(locations, dtype=np.int64)
        u, t = loc.shape
        n = int(n_stations)
        src, dst = loc[:, :-1].ravel(), loc[:, 1:].ravel()
        hrs = np.broadcast_to(hours[:-1], (u, t - 1)).ravel()
        # N(i): unique (i, j) pairs seen at any hour; stations without a successor get a self-loop.
        pairs = np.unique(src * n + dst)
        have = np.zeros(n, dtype=bool)
        have[pairs // n] = True
        pairs = np.union1d(pairs, np.flatnonzero(~have) * n + np.flatnonzero(~have))
        rows, cols = pairs // n, pairs % n
        indptr = np.searchsorted(rows, np.arange(n + 1)).astype(np.int64)
        # c[h, pair]: position of each observed move in the sorted pair list.
        pos = np.searchsorted(pairs, src * n + dst)
        counts = np.zeros((n_hours, len(pairs)), dtype=np.float64)
        np.add.at(counts, (hrs, pos), 1.0)
        start = np.bincount(loc[:, 0], minlength=n).astype(np.float64)
        arrays = {
            "indptr": indptr,
            "successors": cols.astype(np.int64),
            "counts": counts,
            "start": start / start.sum(),
        }
        if traffic is not None:
            arrays |= fit_location_hour_traffic(loc, hours, n, n_hours, traffic)
        return cls(arrays, n_hours, smoothing, min_count)

    @property
    def has_traffic(self) -> bool:
        return "values" in self.a

    def _cumulative(self) -> np.ndarray:
        """``[H, nnz]``: ``i + CDF`` of ``P(. | i, h)`` within row ``i``'s segment, so one ``searchsorted`` over
        the whole array, with ``i + u`` (``u`` in (0, 1]), lands inside row ``i`` (see :meth:`step`)."""
        indptr, counts = self.a["indptr"], self.a["counts"]
        row = np.repeat(np.arange(self.n), np.diff(indptr))
        w = counts + self.smoothing
        totals = np.add.reduceat(w, indptr[:-1], axis=1)  # every row has >= 1 successor
        zero = totals <= 0  # smoothing 0 and an hour at which i was never left: uniform over N(i)
        w = np.where(zero[:, row], 1.0, w)
        totals = np.where(zero, np.diff(indptr)[None, :].astype(np.float64), totals)
        cum = np.cumsum(w, axis=1)
        before = np.concatenate([np.zeros((self.n_hours, 1)), cum], axis=1)[:, indptr[:-1]]
        cdf = (cum - before[:, row]) / totals[:, row]
        cdf[:, indptr[1:] - 1] = 1.0  # exact end of each row
        return row[None, :] + cdf

    def transition_matrix(self, hour: int) -> np.ndarray:
        """Dense ``P(j | i, hour)`` ``[N, N]`` (for small N and tests)."""
        indptr = self.a["indptr"]
        rows = np.repeat(np.arange(self.n), np.diff(indptr))
        cdf = self._cdf[hour] - rows
        prev = np.concatenate([[0.0], cdf[:-1]])
        prev[indptr[:-1]] = 0.0
        out = np.zeros((self.n, self.n))
        out[rows, self.a["successors"]] = cdf - prev
        return out

    def sample(self, n_users: int, hours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Trajectories ``int64 [n_users, len(hours)]``: ``l_0`` from the start distribution, then the chain."""
        t = len(hours)
        out = np.empty((n_users, t), dtype=np.int64)
        start_cdf = np.cumsum(self.a["start"])
        out[:, 0] = np.minimum(
            np.searchsorted(start_cdf, rng.random(n_users) * start_cdf[-1], side="right"), self.n - 1
        )
        for k in range(1, t):
            u = 1.0 - rng.random(n_users)  # (0, 1]: a zero-probability successor is never drawn
            pos = np.searchsorted(self._cdf[hours[k - 1]], out[:, k - 1] + u, side="left")
            out[:, k] = self.a["successors"][pos]
        return out

    def sample_traffic(
        self, locations: np.ndarray, hours: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Traffic ``float32`` of ``locations``' shape drawn from the empirical (station, hour) distributions."""
        return sample_location_hour_traffic(self.a, self.n, self.min_count, locations, hours, rng)

    def state(self, prefix: str = "markov") -> dict[str, torch.Tensor]:
        return {f"{prefix}.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.a.items()}

    @classmethod
    def from_state(
        cls,
        tensors: dict[str, torch.Tensor],
        n_hours: int,
        smoothing: float,
        min_count: int,
        prefix: str = "markov",
    ) -> MarkovChain:
        arrays = {k[len(prefix) + 1 :]: v.numpy() for k, v in tensors.items() if k.startswith(prefix + ".")}
        return cls(arrays, n_hours, smoothing, min_count)


class MarkovGenerator(UserGenerator):
    """First-order Markov chain over stations by hour, with empirical traffic (see the module docstring)."""

    name = "markov"
    Config = MarkovConfig

    def fit(self, data, *, progress: bool = True, checkpoint_dir=None) -> MarkovGenerator:
        data = expect(data, UserMobility, self.name)
        if data.n_steps < 2:
            raise DataError(f"{self.name} needs at least 2 time steps per user, got {data.n_steps}")
        cfg = self.config
        self.n_hours_ = 168 if cfg.weekly else 24
        hours = hour_keys(data.start, data.step, data.n_steps, cfg.weekly)
        self.chain_ = MarkovChain.fit(
            data.locations,
            hours,
            len(data.stations),
            self.n_hours_,
            traffic=data.traffic,
            smoothing=cfg.smoothing,
            min_count=cfg.min_count,
        )
        self.stations_, self.time_, self.n_steps_ = data.stations, time_axis_state(data), data.n_steps
        self.fitted_ = True
        return self

    def generate(self, target, *, samples: int = 1, seed: int = 0, **options: Any) -> UserMobility:
        self.check_fitted()
        if options:
            raise DataError(f"{self.name} takes no sampler options; got {sorted(options)}")
        n_users = self._check_users(target)
        if samples != 1:
            raise DataError(
                f"{self.name} generates users: give their number, not samples (got samples={samples})"
            )
        start, step = restore_time_axis(self.time_)
        hours = hour_keys(start, step, self.n_steps_, self.config.weekly)
        rng = np.random.default_rng(seed)
        loc = self.chain_.sample(n_users, hours, rng)
        traffic = self.chain_.sample_traffic(loc, hours, rng) if self.chain_.has_traffic else None
        return UserMobility(loc, start, step, self.stations_, traffic=traffic)

    def _state(self):
        tensors, meta = stations_state(self.stations_)
        tensors |= self.chain_.state()
        return tensors, meta | {"time": self.time_, "n_steps": self.n_steps_, "n_hours": self.n_hours_}

    def _restore(self, tensors, meta) -> None:
        self.stations_ = restore_stations(tensors, meta)
        self.time_, self.n_steps_, self.n_hours_ = meta["time"], meta["n_steps"], meta["n_hours"]
        cfg = self.config
        self.chain_ = MarkovChain.from_state(tensors, self.n_hours_, cfg.smoothing, cfg.min_count)
