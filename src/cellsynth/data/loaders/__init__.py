"""Loaders of real data formats into cellsynth's data model (see docs/data-formats.md).

Each loader reads one public or user format and returns a validated :class:`~cellsynth.data.Stations`,
:class:`~cellsynth.data.StationTraffic` or :class:`~cellsynth.data.UserMobility`; bad input raises
:class:`~cellsynth.errors.DataError` naming the file and line/row. ``FORMATS`` lists them by the name the
command line uses (``cellsynth data import FORMAT``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cellsynth.data.loaders._common import PLACEHOLDER_MONDAY
from cellsynth.data.loaders.grid import load_grid, load_milan_totals, polygon_centroid
from cellsynth.data.loaders.location_sequences import load_gps, load_location_sequences
from cellsynth.data.loaders.mobifm import load_mobifm
from cellsynth.data.loaders.stkdiff import load_stkdiff
from cellsynth.data.loaders.tables import load_mobility_table, load_traffic_table, read_table
from cellsynth.data.loaders.telecom_italia import TelecomItaliaReport, load_telecom_italia
from cellsynth.errors import DataRepairWarning

__all__ = [
    "FORMATS",
    "PLACEHOLDER_MONDAY",
    "DataRepairWarning",
    "Format",
    "TelecomItaliaReport",
    "load_gps",
    "load_grid",
    "load_location_sequences",
    "load_milan_totals",
    "load_mobifm",
    "load_mobility_table",
    "load_stkdiff",
    "load_telecom_italia",
    "load_traffic_table",
    "polygon_centroid",
    "read_table",
]


@dataclass(frozen=True)
class Format:
    """One importable format: its loader, what it returns, and a one-line description for ``--help``."""

    loader: Callable
    returns: str  # "traffic" (StationTraffic), "mobility" (UserMobility) or "stations" (Stations)
    description: str


FORMATS: dict[str, Format] = {
    "telecom-italia": Format(
        load_telecom_italia,
        "traffic",
        "Telecom Italia Big Data Challenge day files (Milan/Trentino, tab-separated) + grid GeoJSON -> "
        "internet/call/sms per cell, 10 min or hourly",
    ),
    "stkdiff": Format(
        load_stkdiff,
        "traffic",
        "STK-Diff .npz (bs_record hourly traffic, bs_kge features) -> one-channel traffic",
    ),
    "mobifm": Format(
        load_mobifm,
        "traffic",
        "MobiFM .npz (data, time: day of week + hour) + kg_embeddings .npy -> one-channel traffic or users",
    ),
    "csv": Format(
        load_traffic_table,
        "traffic",
        "your own long table, CSV or Parquet: station_id, timestamp, one column per channel (+ stations CSV)",
    ),
    "mobility-csv": Format(
        load_mobility_table,
        "mobility",
        "your own long mobility table, CSV or Parquet: user_id, timestamp, station_id[, traffic] (+ stations CSV)",
    ),
    "location-sequences": Format(
        load_location_sequences,
        "mobility",
        "lines of location ids per time slot (MoveSim GeoLife real.data) + gps table -> trajectories",
    ),
    "grid": Format(
        load_grid, "stations", "GeoJSON grid of cell polygons (property cellId) -> cells with centroids"
    ),
    "milan-totals": Format(
        load_milan_totals,
        "stations",
        "per-cell totals CSV (square_id,internet) + grid GeoJSON -> cells with an internet_total feature",
    ),
}
