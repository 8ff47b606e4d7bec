"""What defines a synthetic city (:class:`CityConfig`), and the names it is built from: the land uses, the
POI categories and the traffic channels."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cellsynth.errors import ConfigError

__all__ = [
    "BUSINESS",
    "CHANNELS",
    "DEFAULT_START",
    "LAND_USES",
    "NIGHTLIFE",
    "POI_CATEGORIES",
    "RESIDENTIAL",
    "TRANSPORT",
    "UNIVERSITY",
    "CityConfig",
]

LAND_USES: tuple[str, ...] = ("business", "residential", "nightlife", "university", "transport")
"""Kinds of centre (and the land-use mix of each station)."""
POI_CATEGORIES: tuple[str, ...] = (
    "office",
    "residential",
    "shop",
    "restaurant",
    "bar",
    "education",
    "transport",
    "health",
    "leisure",
    "hotel",
)
"""POI categories; station features are named ``poi_<category>``."""
CHANNELS: tuple[str, ...] = ("internet", "call", "sms")

_KIND_ALIASES = {
    "leisure": "nightlife",
    "transport_hub": "transport",
    "hub": "transport",
    "campus": "university",
}
# Positions of the land uses in LAND_USES: the rows of the land-use mixes and columns of CityLayout.land_use.
BUSINESS, RESIDENTIAL, NIGHTLIFE, UNIVERSITY, TRANSPORT = range(5)

DEFAULT_START = pd.Timestamp("2026-01-05 00:00", tz="Europe/Rome")
"""Monday 5 January 2026, midnight in Milan: the default start of the synthetic city's time axis."""


@dataclass(frozen=True)
class CityConfig:
    """Everything that defines a synthetic city. All sizes are validated (:class:`ConfigError`).

    The default builds in about a second: 150 stations over 10 km x 10 km, two weeks of hourly traffic,
    400 users over one week. :meth:`milan` is a Milan-scale preset (10,000 stations over 24 km).
    """

    n_stations: int = 150
    n_users: int = 400
    weeks: int = 2
    user_weeks: int = 1
    size_km: float = 10.0
    centres: tuple[str, ...] = (
        "business",
        "residential",
        "residential",
        "nightlife",
        "university",
        "transport",
        "business",
        "residential",
    )
    seed: int = 0
    start: pd.Timestamp = DEFAULT_START
    centre_lat: float = 45.4642
    centre_lon: float = 9.1900
    station_density_exponent: float = 0.55
    pois_per_station: float = 30.0
    load_sigma: float = 0.95
    noise: float = 0.15
    burst_rate: float = 0.6
    outage_rate: float = 0.1
    region_km: float = 2.0
    handover: float = 0.03

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ConfigError(f"CityConfig: {what}")

        for name in ("n_stations", "n_users", "weeks", "user_weeks", "seed"):
            value = getattr(self, name)
            need(
                isinstance(value, (int, np.integer)) and not isinstance(value, bool), f"{name} must be an int"
            )
        need(self.n_stations >= 10, f"n_stations must be >= 10, got {self.n_stations}")
        need(self.n_users >= 1, f"n_users must be >= 1, got {self.n_users}")
        need(self.weeks >= 1, f"weeks must be >= 1, got {self.weeks}")
        need(self.user_weeks >= 1, f"user_weeks must be >= 1, got {self.user_weeks}")
        need(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        need(0.5 <= self.size_km <= 200, f"size_km must be in [0.5, 200], got {self.size_km}")
        kinds = tuple(_KIND_ALIASES.get(str(k).lower(), str(k).lower()) for k in self.centres)
        need(len(kinds) >= 1, "give at least one centre")
        unknown = [k for k in kinds if k not in LAND_USES]
        need(not unknown, f"unknown centre kind(s) {unknown}; kinds are {list(LAND_USES)}")
        object.__setattr__(self, "centres", kinds)
        start = pd.Timestamp(self.start)
        need(start.tzinfo is not None, f"start {start} must be timezone-aware (e.g. tz='Europe/Rome')")
        object.__setattr__(self, "start", start)
        need(abs(self.centre_lat) < 80 and abs(self.centre_lon) <= 180, "centre_lat/centre_lon out of range")
        need(0 < self.station_density_exponent <= 1.5, "station_density_exponent must be in (0, 1.5]")
        need(self.pois_per_station > 0, "pois_per_station must be > 0")
        for name in ("load_sigma", "noise", "burst_rate", "outage_rate", "handover"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0")
        need(self.handover < 1, "handover must be < 1")
        need(self.region_km > 0, "region_km must be > 0")

    @classmethod
    def milan(cls, **overrides) -> CityConfig:
        """Milan scale: 10,000 stations over 24 km x 24 km (the Telecom Italia grid's extent), 16 centres."""
        params = {
            "n_stations": 10_000,
            "n_users": 2_000,
            "size_km": 24.0,
            "centres": (
                "business",
                "business",
                "business",
                "residential",
                "residential",
                "residential",
                "residential",
                "residential",
                "residential",
                "nightlife",
                "nightlife",
                "university",
                "university",
                "transport",
                "transport",
                "transport",
            ),
        }
        return cls(**(params | overrides))

    def replace(self, **overrides) -> CityConfig:
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ConfigError(f"unknown CityConfig option(s) {unknown}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["centres"] = list(self.centres)
        out["start"] = self.start.isoformat()
        out["timezone"] = str(self.start.tz)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> CityConfig:
        data = dict(data)
        tz = data.pop("timezone", None)
        if "start" in data:
            start = pd.Timestamp(data["start"])
            data["start"] = start.tz_convert(tz) if tz and start.tzinfo is not None else start
        if "centres" in data:
            data["centres"] = tuple(data["centres"])
        return cls().replace(**data)
