"""Several generated samples per station, kept in the ordinary data model.

A generator asked for ``K > 1`` samples returns a :class:`StationTraffic` with ``N * K`` series whose ids are
``"<station id>#<j>"``, station-major. These helpers convert between that and a ``[N, K, T, C]`` array.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellsynth.data.model import Stations, StationTraffic
from cellsynth.errors import DataError

__all__ = ["SAMPLE_SEPARATOR", "split_samples", "stack_samples"]

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


def split_samples(traffic: StationTraffic) -> tuple[list[str], np.ndarray]:
    """Inverse of :func:`stack_samples`: ``(station ids, values[N, K, T, C])``.

    Series without a ``#j`` suffix are one sample each. Every station must have the same number of samples.
    """
    base_ids: list[str] = []
    groups: dict[str, list[int]] = {}
    for i, sid in enumerate(traffic.stations.ids):
        head, sep, tail = str(sid).rpartition(SAMPLE_SEPARATOR)
        key = head if sep and tail.isdigit() else str(sid)
        if key not in groups:
            groups[key] = []
            base_ids.append(key)
        groups[key].append(i)
    sizes = {len(v) for v in groups.values()}
    if len(sizes) != 1:
        raise DataError(f"stations have different numbers of samples ({sorted(sizes)}); cannot stack them")
    order = np.array([groups[key] for key in base_ids])
    return base_ids, traffic.values[order]
