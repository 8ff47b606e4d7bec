"""Filling gaps in regular time series: the one implementation the loaders share when a user asks for repairs.

A loader fills only on request (or, for the Telecom Italia intervals that no cell reports, as documented) and
marks every filled value in ``StationTraffic.repaired``. Two ways to fill a missing step ``m``:

- ``"zero"``: the value is 0 (the source writes no row when nothing happened);
- ``"interpolate"``: linear in time between the nearest recorded steps ``a < m < b`` of the same station and
  channel, ``v[m] = v[a] + (m - a) / (b - a) * (v[b] - v[a])``; before the first and after the last recorded
  step the nearest recorded value is held.
"""

from __future__ import annotations

import numpy as np

from cellsynth.errors import DataError

__all__ = ["FILL_METHODS", "check_fill", "fill_gaps", "gap_neighbours"]

FILL_METHODS = ("none", "interpolate", "zero")


def check_fill(method: str, *, source: str | None = None) -> str:
    if method not in FILL_METHODS:
        raise DataError(
            f"fill must be one of {', '.join(FILL_METHODS)}, got {method!r} (none: missing rows are an error)",
            source=source,
        )
    return method


def gap_neighbours(recorded: np.ndarray, missing: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each missing position, its interpolation neighbours among the recorded ones.

    ``recorded``: sorted positions with a value (at least one); ``missing``: positions without one. Returns
    ``(left, right, weight)``, indices into ``recorded`` and the weight of the right neighbour, so that the
    filled value is ``v[recorded[left]] + weight * (v[recorded[right]] - v[recorded[left]])`` with
    ``weight = (m - a) / (b - a)``. Before the first (after the last) recorded position both neighbours are
    that position and the weight is 0: the edge value is held.
    """
    recorded = np.asarray(recorded)
    missing = np.asarray(missing)
    right = np.searchsorted(recorded, missing)
    left = np.clip(right - 1, 0, len(recorded) - 1)
    right = np.clip(right, 0, len(recorded) - 1)
    before, after = recorded[left], recorded[right]
    span = after - before
    weight = np.where(span > 0, (missing - before) / np.where(span > 0, span, 1), 0.0)
    return left, right, weight


def fill_gaps(values: np.ndarray, recorded: np.ndarray, method: str) -> np.ndarray:
    """``values[N, T, C]`` with every step where ``recorded[N, T]`` is False filled by ``method``.

    Recorded values are returned unchanged. ``"interpolate"`` needs at least one recorded step per station
    with gaps (the caller checks and names the station).
    """
    out = np.array(values, dtype=np.float64)
    if method == "zero":
        out[~recorded] = 0.0
        return out
    if method != "interpolate":
        raise ValueError(f"unknown fill method {method!r}")
    for i in np.flatnonzero(~recorded.all(axis=1)):
        kept = np.flatnonzero(recorded[i])
        gone = np.flatnonzero(~recorded[i])
        left, right, weight = gap_neighbours(kept, gone)
        a, b = out[i, kept[left]], out[i, kept[right]]  # [gaps, C]
        out[i, gone] = a + weight[:, None] * (b - a)
    return out
