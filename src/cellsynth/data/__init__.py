"""The data model, its on-disk format, loaders of public formats and the synthetic city."""

from cellsynth.data.io import read, read_stations, write, write_stations
from cellsynth.data.model import Stations, StationTraffic, UserMobility, regular_timeline
from cellsynth.data.resample import resample

__all__ = [
    "StationTraffic",
    "Stations",
    "UserMobility",
    "read",
    "read_stations",
    "regular_timeline",
    "resample",
    "write",
    "write_stations",
]
