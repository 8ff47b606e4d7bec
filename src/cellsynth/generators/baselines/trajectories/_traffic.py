"""Per-step traffic for trajectory models that have none of their own: the Markov floor's location-hour model.

A trajectory baseline (TimeGEO, DiffTraj) generates station sequences only. Where the training data has user
traffic, each generated step gets a value drawn uniformly from the training values seen at the same
(station, hour of the day), or from all values at that hour where the cell was never seen
(:func:`cellsynth.generators.floors.markov.fit_location_hour_traffic`, the ``markov`` floor's traffic model
with its defaults: hour of the day, ``min_count = 1``). The traffic is therefore the floor's, not the
baseline's: only the places differ.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cellsynth.data.model import UserMobility
from cellsynth.generators.floors.markov import (
    fit_location_hour_traffic,
    hour_keys,
    sample_location_hour_traffic,
)

__all__ = ["LocationHourTraffic"]

_PREFIX = "traffic"


class LocationHourTraffic:
    """The Markov floor's location-hour traffic model, fitted on its own (module docstring)."""

    n_hours = 24
    min_count = 1

    def __init__(self, arrays: dict[str, np.ndarray], n_stations: int) -> None:
        self.arrays, self.n_stations = arrays, int(n_stations)

    @classmethod
    def fit(cls, data: UserMobility) -> LocationHourTraffic | None:
        """The model of ``data``'s traffic, or None for data without traffic (trajectories only)."""
        if not data.has_traffic:
            return None
        hours = hour_keys(data.start, data.step, data.n_steps, weekly=False)
        arrays = fit_location_hour_traffic(
            data.locations, hours, len(data.stations), cls.n_hours, data.traffic
        )
        return cls(arrays, len(data.stations))

    def sample(
        self, locations: np.ndarray, start: pd.Timestamp, step: pd.Timedelta, rng: np.random.Generator
    ) -> np.ndarray:
        """Traffic ``float32 [U, T]`` for the generated ``locations [U, T]`` on the time axis ``start``, ``step``."""
        hours = hour_keys(start, step, locations.shape[1], weekly=False)
        return sample_location_hour_traffic(
            self.arrays, self.n_stations, self.min_count, locations, hours, rng
        )

    def state(self) -> dict[str, torch.Tensor]:
        return {f"{_PREFIX}.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.arrays.items()}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], n_stations: int) -> LocationHourTraffic | None:
        arrays = {k[len(_PREFIX) + 1 :]: v.numpy() for k, v in tensors.items() if k.startswith(_PREFIX + ".")}
        return cls(arrays, n_stations) if arrays else None
