"""What the trajectory baselines share: per-step traffic for the station sequences they generate.

PateGail and VOLUNTEER model where users are, not how much traffic they make. When the training data has
traffic, each generated step's traffic is drawn from the Markov floor's location-hour model
(:func:`cellsynth.generators.floors.markov.location_hour_traffic`): a value drawn uniformly from the
training values seen at the same (station, hour), or at that hour anywhere where the cell has fewer than
``min_count`` values. This is the floor's traffic model, not the papers'; it is stated as such in
docs/baselines.md. Data without traffic (GeoLife) gives trajectories only.
"""

from __future__ import annotations

import numpy as np
import pydantic
import torch

from cellsynth.data.model import UserMobility
from cellsynth.generators.base import ConfigSection
from cellsynth.generators.floors.markov import hour_keys, location_hour_traffic, sample_location_hour_traffic

__all__ = ["LocationHourTraffic", "TrafficSection", "generated_mobility"]


class TrafficSection(ConfigSection):
    """The ``traffic`` section: the Markov floor's location-hour traffic model (not the paper's)."""

    weekly: bool = pydantic.Field(
        False, description="Key traffic by hour of the week (168) instead of the hour of the day (24)."
    )
    min_count: int = pydantic.Field(
        1, ge=1, description="Fewest traffic observations at a (station, hour) to draw from them."
    )


class LocationHourTraffic:
    """The fitted location-hour traffic model (arrays only, saved as tensors)."""

    def __init__(
        self, arrays: dict[str, np.ndarray], n_stations: int, config: TrafficSection | None = None
    ) -> None:
        self.arrays, self.n_stations = arrays, int(n_stations)
        self.config = TrafficSection() if config is None else config

    @classmethod
    def fit(cls, data: UserMobility, config: TrafficSection | None = None) -> LocationHourTraffic | None:
        """The model of ``data``'s traffic (``config`` None: the floor's defaults, hour of the day and
        ``min_count`` 1); None when the data has none."""
        config = TrafficSection() if config is None else config
        if data.traffic is None:
            return None
        n_hours = 168 if config.weekly else 24
        hours = hour_keys(data.start, data.step, data.n_steps, config.weekly)
        arrays = location_hour_traffic(data.locations, hours, len(data.stations), n_hours, data.traffic)
        return cls(arrays, len(data.stations), config)

    def sample(self, locations: np.ndarray, start, step, rng: np.random.Generator) -> np.ndarray:
        """``float32`` traffic of ``locations [U, T]`` on the time axis ``(start, step)``."""
        hours = hour_keys(start, step, locations.shape[1], self.config.weekly)
        return sample_location_hour_traffic(
            self.arrays, self.n_stations, self.config.min_count, locations, hours, rng
        )

    def state(self, prefix: str = "traffic") -> dict[str, torch.Tensor]:
        return {f"{prefix}.{k}": torch.from_numpy(np.ascontiguousarray(v)) for k, v in self.arrays.items()}

    @classmethod
    def from_state(
        cls,
        tensors: dict[str, torch.Tensor],
        n_stations: int,
        config: TrafficSection | None = None,
        prefix: str = "traffic",
    ) -> LocationHourTraffic | None:
        """Inverse of :meth:`state`; None when no traffic model was saved."""
        arrays = {k[len(prefix) + 1 :]: v.numpy() for k, v in tensors.items() if k.startswith(prefix + ".")}
        return cls(arrays, n_stations, config) if arrays else None


def generated_mobility(
    locations: np.ndarray, traffic_model: LocationHourTraffic | None, start, step, stations, seed: int
) -> UserMobility:
    """``UserMobility`` of generated ``locations [U, T]``, with traffic from ``traffic_model`` when there is
    one (drawn with its own generator seeded by ``seed``, so the trajectories do not depend on it)."""
    traffic = None
    if traffic_model is not None:
        traffic = traffic_model.sample(locations, start, step, np.random.default_rng([seed, 1]))
    return UserMobility(locations, start, step, stations, traffic=traffic)
