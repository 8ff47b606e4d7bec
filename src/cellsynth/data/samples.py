"""Several generated samples per station, kept in the ordinary data model.

A generator asked for ``K > 1`` samples returns a :class:`StationTraffic` with ``N * K`` series whose ids are
``"<station id>#<j>"``, station-major. These helpers convert between that and a ``[N, K, T, C]`` array.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellsynth.data.model import Stations, StationTraffic
from cellsynth.errors import DataError

__all__ = ["SAMPLE_SEPARATOR", "sample_index", "split_samples", "stack_samples"]

SAMPLE_SEPARATOR = "#"


def stack_samples(
    stations: Stations,
    values: np.ndarray,
    *,
    start: pd.Timestamp,
    step: pd.Timedelta,
    channels: tuple[str, ...],
) -> StationTraffic:
    """``values[n, k, t, c]`` for ``stations`` -> StationTraffic (ids suffixed ``#k`` when K > 1)."""
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 4 or values.shape[0] != len(stations):
        raise DataError(f"values must be [{len(stations)}, K, T, C], got {values.shape}")
    n, k = values.shape[:2]
    if k == 1:
        return StationTraffic(values[:, 0], start, step, channels, stations)
    idx = np.repeat(np.arange(n), k)
    ids = [f"{sid}{SAMPLE_SEPARATOR}{j}" for sid, j in zip(stations.ids[idx], np.tile(np.arange(k), n))]
    expanded = stations.take(idx, ids)
    return StationTraffic(values.reshape(n * k, *values.shape[2:]), start, step, channels, expanded)


def sample_index(ids) -> tuple[list[str], np.ndarray]:
    """Group series ids ``"<id>#<j>"`` by station: ``(station ids, positions[N, K])`` where
    ``positions[n, k]`` is the row of sample k of station n. Ids without a ``#j`` suffix are one sample
    each. Every station must have the same number of samples."""
    base_ids: list[str] = []
    groups: dict[str, list[int]] = {}
    for i, sid in enumerate(ids):
        head, sep, tail = str(sid).rpartition(SAMPLE_SEPARATOR)
        key = head if sep and tail.isdigit() else str(sid)
        if key not in groups:
            groups[key] = []
            base_ids.append(key)
        groups[key].append(i)
    sizes = {len(v) for v in groups.values()}
    if len(sizes) != 1:
        raise DataError(f"stations have different numbers of samples ({sorted(sizes)}); cannot stack them")
    return base_ids, np.array([groups[key] for key in base_ids], dtype=np.int64)


def split_samples(traffic: StationTraffic) -> tuple[list[str], np.ndarray]:
    """Inverse of :func:`stack_samples`: ``(station ids, values[N, K, T, C])`` (see :func:`sample_index`)."""
    base_ids, positions = sample_index(traffic.stations.ids)
    return base_ids, traffic.values[positions]
