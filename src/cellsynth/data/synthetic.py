"""The synthetic city: cellsynth's embedded default dataset.

A seeded generative model of a city, its base stations, their hourly traffic, users moving between them
and the urban knowledge graph, calibrated against the real data in ``../shared/data`` (see
docs/synthetic-city.md for the equations and the measured comparison). In short:

1. **Space.** A square city of ``size_km`` around several centres, each of one kind (business,
   residential, nightlife, university, transport hub), a compact mixed-use city around the middle and a
   residential periphery. Activity density
   ``rho(x) = sum_j w_j exp(-|x - c_j| / s_j) + w_c / (1 + (r / R)^p) + floor``. Stations are drawn with
   intensity ``rho^beta`` (beta < 1: more, smaller cells downtown), points of interest (POIs) with
   intensity ``rho``, each POI's category from the mix of the kind that produced it;
   a POI is served by its nearest station, whose features are its POI counts per category.
2. **Traffic.** Station load ``L_i`` = POI-weighted served demand x lognormal (heavy tail); the hourly
   profile is the station's land-use mix of per-kind activity profiles (Mon-Thu, Fri, Sat, Sun) times a
   channel propensity profile (calls by day, internet in the evening, sms flatter); multiplied by weekly,
   daily (AR(1)) and city-wide factors, hourly log-AR(1) noise, spikes, local events (bursts spreading
   to neighbours) and rare outages (zeros).
3. **Users** at 30-minute steps: home and work (or university) anchors drawn by population and a gravity
   law, weekday schedules, excursions whose destinations follow the exploration and preferential return
   (EPR) model with truncated power-law jump lengths and stay durations, occasional handovers to a
   neighbouring cell; per-step traffic = zero-inflated lognormal bursts x hour profile x location factor.
4. **Knowledge graph** (:mod:`cellsynth.data.knowledge`): BaseLocateAt (station -> square region),
   BaseBelongTo (station -> business area = its dominant centre), BaseBorderBy (Delaunay neighbours),
   ServedBy (POI -> nearest station).

Layout, traffic and users draw from independent streams of one seed: the same seed gives identical
arrays, and e.g. changing ``n_users`` does not change the stations or their traffic.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import lfilter
from scipy.spatial import Delaunay, QhullError, cKDTree

from cellsynth.data.io import write
from cellsynth.data.knowledge import KnowledgeGraph, station_entity, write_knowledge_graph
from cellsynth.data.model import Stations, StationTraffic, UserMobility
from cellsynth.errors import ConfigError
from cellsynth.outputs import SYNTHETIC_CITY, atomic_directory

__all__ = [
    "CHANNELS",
    "LAND_USES",
    "POI_CATEGORIES",
    "CityConfig",
    "CityLayout",
    "SyntheticCity",
    "build_layout",
    "synthesize_city",
    "synthesize_traffic",
    "synthesize_users",
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
_B, _R, _N, _U, _T = range(5)

# The compact city around the middle, a plateau w / (1 + (r / R)^p) with R = _SPRAWL_SCALE x size_km, and a
# uniform floor (periphery, hinterland). Calibrated on the radial profile of Milan's real internet load
# (docs/synthetic-city.md): 16 % of it within 2 km of the Duomo, 50 % within 5 km, 67 % within 8 km.
_SPRAWL_WEIGHT, _SPRAWL_SCALE, _SPRAWL_POWER, _FLOOR = 5.4, 0.15, 6.0, 0.36
# Land use of the compact city (mixed: homes, offices, shops and bars) and of the periphery (homes).
_SPRAWL_MIX = np.array([0.3, 0.6, 0.1, 0.0, 0.0])
_FLOOR_MIX = np.array([0.0, 1.0, 0.0, 0.0, 0.0])
# Characteristic radius of each kind of centre (km for a 10 km city, x (size_km / 10)^0.75), the extra weight
# of the first centre (the historic core, at the middle), where the others go, and their peak weights.
_CENTRE_SCALE = np.array([0.7, 0.9, 0.5, 0.45, 0.4])
_CENTRE_SCALE_POWER = 0.75
_CORE_BOOST = 6.0
_CENTRE_RADIUS = (0.10, 0.45)  # distance of the other centres from the middle, fraction of size_km
_CENTRE_WEIGHT = np.array([1.5, 0.8, 1.5, 1.2, 1.2])
_CAPACITY = 30.0
_DEMAND_BASE = 1.0  # demand of a station without POIs (passers-by, residents not in the POI data)
_HOTSPOT_P, _HOTSPOT_SCALE = 0.07, 1.1

# Category mix of the POIs that each kind of place produces (rows: LAND_USES, columns: POI_CATEGORIES).
_POI_MIX = np.array(
    [
        # office resid shop  rest  bar   edu   trans health leis  hotel
        [0.34, 0.05, 0.15, 0.14, 0.05, 0.03, 0.05, 0.05, 0.04, 0.10],  # business
        [0.03, 0.46, 0.15, 0.07, 0.03, 0.10, 0.04, 0.08, 0.03, 0.01],  # residential
        [0.02, 0.07, 0.10, 0.25, 0.28, 0.01, 0.03, 0.02, 0.15, 0.07],  # nightlife
        [0.05, 0.16, 0.08, 0.10, 0.09, 0.35, 0.05, 0.05, 0.06, 0.01],  # university
        [0.12, 0.05, 0.15, 0.12, 0.06, 0.01, 0.30, 0.03, 0.04, 0.12],  # transport hub
    ]
)
# Traffic weight of one POI of each category (demand it brings to its serving station).
_POI_DEMAND = np.array([1.3, 1.0, 1.1, 1.0, 1.1, 1.2, 2.2, 0.9, 1.0, 1.4])
# Channel level multiplier by land use (rows LAND_USES, columns CHANNELS).
_CHANNEL_MIX = np.array(
    [
        [0.95, 1.35, 1.00],
        [1.10, 0.90, 1.05],
        [1.10, 0.80, 1.10],
        [1.25, 0.75, 1.00],
        [1.00, 1.10, 0.90],
    ]
)
# City-wide mean per station-hour of each channel, in the activity units of the Telecom Italia Milan data
# (the real Milan per-cell mean of internet is about 380 per hour).
_CHANNEL_SCALE = np.array([380.0, 45.0, 35.0])
_USER_MAX_MB = 8000.0

DEFAULT_START = pd.Timestamp("2026-01-05 00:00", tz="Europe/Rome")
"""Monday 5 January 2026, midnight in Milan: the default start of the synthetic city's time axis."""


# ------------------------------------------------------------------------------------------------------------
# Configuration


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


# ------------------------------------------------------------------------------------------------------------
# Layout: centres, stations, POIs, land use, knowledge graph


@dataclass(frozen=True, eq=False)
class CityLayout:
    """The spatial part of a city: everything but traffic and users.

    Coordinates ``x_km, y_km`` are east/north of the city centre; ``land_use[i]`` is the station's mix of
    :data:`LAND_USES` (rows sum to 1); ``kind[i]`` its dominant land use; ``area[i]`` its business area
    (index of its dominant centre) and ``region[i]`` its square region of ``region_km``.
    """

    config: CityConfig
    stations: Stations
    x_km: np.ndarray
    y_km: np.ndarray
    land_use: np.ndarray
    kind: np.ndarray
    area: np.ndarray
    region: np.ndarray
    load: np.ndarray
    centre_kind: tuple[str, ...]
    centre_xy_km: np.ndarray
    centre_scale_km: np.ndarray
    poi_station: np.ndarray
    poi_category: np.ndarray
    neighbours: np.ndarray
    knowledge_graph: KnowledgeGraph


def _km_to_latlon(x_km, y_km, lat0: float, lon0: float) -> tuple[np.ndarray, np.ndarray]:
    lat = lat0 + np.asarray(y_km) / 111.32
    lon = lon0 + np.asarray(x_km) / (111.32 * math.cos(math.radians(lat0)))
    return lat, lon


def _sample_categorical(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One draw per row of a non-negative ``weights[n, k]`` matrix."""
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(weights)) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), weights.shape[1] - 1)


def _components(xy: np.ndarray, cxy: np.ndarray, scale: np.ndarray, weight: np.ndarray, half: float):
    """Density contribution of every component at points ``xy[n, 2]``: ``[n, K + 2]``.

    Columns: the K centres (exponential bumps), the compact city around the middle (a plateau that falls
    off steeply, ``1 / (1 + (r / R)^p)``), a uniform floor (the residential periphery and hinterland).
    """
    d = np.sqrt(((xy[:, None, :] - cxy[None, :, :]) ** 2).sum(axis=2))
    comps = weight[None, :] * np.exp(-d / scale[None, :])
    r0 = np.sqrt((xy**2).sum(axis=1))
    sprawl = _SPRAWL_WEIGHT / (1.0 + (r0 / (_SPRAWL_SCALE * 2 * half)) ** _SPRAWL_POWER)
    floor = np.full(len(xy), _FLOOR)
    return np.concatenate([comps, sprawl[:, None], floor[:, None]], axis=1)


def _place_centres(cfg: CityConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = cfg.size_km
    k = len(cfg.centres)
    kinds = np.array([LAND_USES.index(c) for c in cfg.centres])
    xy = np.zeros((k, 2))
    for j in range(1, k):
        for _ in range(200):
            r = rng.uniform(*_CENTRE_RADIUS) * size
            a = rng.uniform(0, 2 * math.pi)
            cand = np.array([r * math.cos(a), r * math.sin(a)])
            if np.sqrt(((xy[:j] - cand) ** 2).sum(axis=1)).min() >= 0.10 * size:
                break
        xy[j] = cand
    scale = _CENTRE_SCALE[kinds] * (size / 10.0) ** _CENTRE_SCALE_POWER * np.exp(rng.normal(0, 0.2, k))
    weight = _CENTRE_WEIGHT[kinds] * np.exp(rng.normal(0, 0.25, k))
    scale[0] *= 1.2  # the historic core: the first centre, at the middle, is the largest
    weight[0] *= _CORE_BOOST
    return xy, scale, weight


def _sample_points(rng, n: int, intensity: np.ndarray, size: float) -> np.ndarray:
    """``n`` points in the city with a density proportional to ``intensity`` on a regular grid."""
    g = intensity.shape[0]
    cell = size / g
    p = intensity.ravel() / intensity.sum()
    idx = rng.choice(p.size, size=n, p=p)
    row, col = np.divmod(idx, g)
    x = -size / 2 + (col + rng.random(n)) * cell
    y = -size / 2 + (row + rng.random(n)) * cell
    return np.stack([x, y], axis=1)


def _border_edges(xy: np.ndarray) -> np.ndarray:
    """Undirected edges ``[E, 2]`` (i < j) between stations whose cells border: Delaunay neighbours, less
    the long edges of the convex hull (longer than 3x the larger of their nearest-neighbour distances)."""
    n = len(xy)
    try:
        tri = Delaunay(xy)
        s = tri.simplices
        e = np.concatenate([s[:, [0, 1]], s[:, [1, 2]], s[:, [0, 2]]])
    except QhullError:  # degenerate (collinear) layouts: fall back on the 4 nearest neighbours
        _, nn = cKDTree(xy).query(xy, k=min(5, n))
        e = np.stack([np.repeat(np.arange(n), nn.shape[1] - 1), nn[:, 1:].ravel()], axis=1)
    e = np.unique(np.sort(e, axis=1), axis=0)
    e = e[e[:, 0] != e[:, 1]]
    dnn = cKDTree(xy).query(xy, k=2)[0][:, 1]
    length = np.sqrt(((xy[e[:, 0]] - xy[e[:, 1]]) ** 2).sum(axis=1))
    keep = length <= 3.0 * np.maximum(dnn[e[:, 0]], dnn[e[:, 1]])
    return e[keep]


def build_layout(config: CityConfig | None = None, **overrides) -> CityLayout:
    """Centres, stations, POIs, land use, station load levels and the knowledge graph of a city."""
    cfg = config or CityConfig()
    if overrides:
        cfg = cfg.replace(**overrides)
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    size, half, n = cfg.size_km, cfg.size_km / 2, cfg.n_stations
    cxy, cscale, cweight = _place_centres(cfg, rng)
    kinds = np.array([LAND_USES.index(c) for c in cfg.centres])
    comp_mix = np.concatenate([np.eye(len(LAND_USES))[kinds], [_SPRAWL_MIX, _FLOOR_MIX]])  # [K + 2, kinds]

    # Density on a grid, stations with intensity rho^beta, POIs with intensity rho.
    g = 200
    centres_1d = -half + (np.arange(g) + 0.5) * size / g
    gx, gy = np.meshgrid(centres_1d, centres_1d)
    grid = np.stack([gx.ravel(), gy.ravel()], axis=1)
    rho = _components(grid, cxy, cscale, cweight, half).sum(axis=1).reshape(g, g)
    xy = _sample_points(rng, n, rho**cfg.station_density_exponent, size)
    comps = _components(xy, cxy, cscale, cweight, half)
    land_use = comps @ comp_mix
    land_use /= land_use.sum(axis=1, keepdims=True)
    area = np.argmax(comps[:, : len(kinds)], axis=1)

    n_poi = max(n, round(cfg.pois_per_station * n))
    pxy = _sample_points(rng, n_poi, rho, size)
    pcomp = _sample_categorical(rng, _components(pxy, cxy, cscale, cweight, half))
    poi_category = _sample_categorical(rng, comp_mix[pcomp] @ _POI_MIX)
    tree = cKDTree(xy)
    poi_station = tree.query(pxy)[1]
    counts = np.zeros((n, len(POI_CATEGORIES)), dtype=np.float32)
    np.add.at(counts, (poi_station, poi_category), 1.0)

    # Load level: POI-weighted served demand (plus residents) times a lognormal heavy tail.
    demand = counts @ _POI_DEMAND + _DEMAND_BASE
    hotspot = (rng.random(n) < _HOTSPOT_P) * rng.exponential(_HOTSPOT_SCALE, n)
    load = demand * np.exp(rng.normal(0.0, cfg.load_sigma, n) + hotspot)
    # Capacity: a site carries at most about _CAPACITY x the median load (busier sites get split or
    # saturate); a soft limit, so the order of stations is kept.
    cap = _CAPACITY * np.median(load)
    load = load / np.sqrt(1.0 + (load / cap) ** 2)
    load /= load.mean()

    width = max(4, len(str(n)))
    ids = np.array([f"S{i + 1:0{width}d}" for i in range(n)], dtype=object)
    lat, lon = _km_to_latlon(xy[:, 0], xy[:, 1], cfg.centre_lat, cfg.centre_lon)
    stations = Stations(
        ids=ids,
        lat=lat,
        lon=lon,
        features=counts,
        feature_names=tuple(f"poi_{c}" for c in POI_CATEGORIES),
        source="synthetic city",
    )
    # Regions: squares of region_km that hold stations, numbered row by row from the south-west.
    nr = max(1, math.ceil(size / cfg.region_km))
    cell = np.clip(((xy + half) / cfg.region_km).astype(np.int64), 0, nr - 1)
    _, region = np.unique(cell[:, 1] * nr + cell[:, 0], return_inverse=True)
    edges = _border_edges(xy)
    kg = _knowledge_graph(ids, region, area, edges, poi_station)
    return CityLayout(
        config=cfg,
        stations=stations,
        x_km=xy[:, 0],
        y_km=xy[:, 1],
        land_use=land_use,
        kind=np.array(LAND_USES, dtype=object)[np.argmax(land_use, axis=1)],
        area=area,
        region=region.astype(np.int64),
        load=load,
        centre_kind=cfg.centres,
        centre_xy_km=cxy,
        centre_scale_km=cscale,
        poi_station=poi_station.astype(np.int64),
        poi_category=poi_category.astype(np.int64),
        neighbours=edges,
        knowledge_graph=kg,
    )


def _knowledge_graph(ids, region, area, edges, poi_station) -> KnowledgeGraph:
    st = np.array([station_entity(s) for s in ids], dtype=object)
    n_poi = len(poi_station)
    heads = np.concatenate(
        [st, st, st[edges[:, 0]], st[edges[:, 1]], np.array([f"poi:{k}" for k in range(n_poi)])]
    )
    rels = np.concatenate(
        [
            np.full(len(st), "BaseLocateAt", dtype=object),
            np.full(len(st), "BaseBelongTo", dtype=object),
            np.full(2 * len(edges), "BaseBorderBy", dtype=object),
            np.full(n_poi, "ServedBy", dtype=object),
        ]
    )
    tails = np.concatenate(
        [
            np.array([f"region:{r}" for r in region], dtype=object),
            np.array([f"area:{a}" for a in area], dtype=object),
            st[edges[:, 1]],
            st[edges[:, 0]],
            st[poi_station],
        ]
    )
    return KnowledgeGraph(heads.astype(object), rels, tails, source="synthetic city")


# ------------------------------------------------------------------------------------------------------------
# Temporal profiles


def _bump(h: np.ndarray, mu: float, width: float) -> np.ndarray:
    d = (h - mu + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / width) ** 2)


# (base, [(amplitude, hour, width)...]) per land use and day type (0 Mon-Thu, 1 Fri, 2 Sat, 3 Sun).
_WEEKDAY_B = (0.05, [(1.0, 10.5, 2.0), (0.95, 15.5, 2.2), (0.35, 19.5, 1.6)])
_WEEKDAY_R = (0.06, [(0.45, 8.0, 1.3), (0.45, 13.0, 2.8), (1.0, 21.5, 2.5)])
_ACTIVITY = {
    _B: [_WEEKDAY_B, _WEEKDAY_B, (0.05, [(0.45, 12.5, 3.0), (0.25, 20.0, 2.5)]), (0.05, [(0.3, 13.0, 3.0)])],
    _R: [
        _WEEKDAY_R,
        _WEEKDAY_R,
        (0.07, [(0.75, 12.0, 3.0), (1.0, 21.0, 2.6)]),
        (0.07, [(0.7, 12.5, 3.2), (1.05, 20.5, 2.6)]),
    ],
    _N: [
        (0.06, [(0.35, 13.0, 2.0), (0.9, 21.5, 2.2)]),
        (0.07, [(0.35, 13.0, 2.0), (1.2, 22.5, 2.4)]),
        (0.08, [(0.5, 14.0, 3.0), (1.5, 23.0, 2.6)]),
        (0.08, [(0.6, 14.0, 3.0), (0.7, 21.0, 2.5)]),
    ],
    _U: [
        (0.04, [(1.0, 11.0, 2.2), (0.75, 15.0, 2.0), (0.35, 20.5, 2.0)]),
        (0.04, [(0.9, 11.0, 2.2), (0.5, 15.0, 2.0), (0.3, 21.0, 2.0)]),
        (0.04, [(0.25, 14.0, 3.0), (0.25, 21.0, 2.0)]),
        (0.04, [(0.2, 14.0, 3.0), (0.25, 21.0, 2.0)]),
    ],
    _T: [
        (0.04, [(1.0, 8.0, 1.1), (0.5, 13.0, 3.0), (1.0, 18.0, 1.4)]),
        (0.04, [(0.9, 8.0, 1.1), (0.55, 13.0, 3.0), (1.05, 18.0, 1.6)]),
        (0.04, [(0.6, 12.0, 3.5), (0.55, 18.5, 2.5)]),
        (0.04, [(0.5, 12.5, 3.5), (0.6, 18.5, 2.5)]),
    ],
}
# Channel propensity by hour (per active person), day types as above: (base, bumps), weekend factor.
_PROPENSITY = {
    0: (0.60, [(0.15, 13.0, 3.0), (0.55, 21.5, 2.6)]),  # internet: evening peak
    1: (0.20, [(1.0, 11.0, 2.2), (0.9, 17.5, 2.4)]),  # call: working hours
    2: (0.60, [(0.35, 12.0, 4.0), (0.30, 20.0, 3.0)]),  # sms: flatter
}
_PROPENSITY_WEEKEND = np.array([1.1, 0.75, 0.95])

_PROFILE_RES = 10  # profile grid points per hour


def _profile_table() -> np.ndarray:
    """Activity x propensity on a fine grid: ``[kind, channel, day type, 24 * res]``, mean 1 over a week."""
    h = (np.arange(24 * _PROFILE_RES) + 0.5) / _PROFILE_RES
    out = np.zeros((len(LAND_USES), len(CHANNELS), 4, len(h)))
    days_per_type = np.array([4, 1, 1, 1])
    for k, per_day in _ACTIVITY.items():
        for c, (pbase, pbumps) in _PROPENSITY.items():
            for dt, (base, bumps) in enumerate(per_day):
                act = base + sum(a * _bump(h, mu, w) for a, mu, w in bumps)
                prop = pbase + sum(a * _bump(h, mu, w) for a, mu, w in pbumps)
                if dt >= 2:
                    prop = prop * _PROPENSITY_WEEKEND[c]
                out[k, c, dt] = act * prop
            weekly = (out[k, c].mean(axis=1) * days_per_type).sum() / 7
            out[k, c] /= weekly
    return out


_PROFILES = _profile_table()


def _calendar(start: pd.Timestamp, periods: int, step: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local hour (float), day type (0 Mon-Thu, 1 Fri, 2 Sat, 3 Sun) and day index of each step."""
    ts = pd.date_range(start, periods=periods, freq=step)
    hour = np.asarray(ts.hour + ts.minute / 60.0, dtype=np.float64)
    dow = np.asarray(ts.day_of_week)
    daytype = np.select([dow <= 3, dow == 4, dow == 5], [0, 1, 2], 3)
    day = np.asarray((ts.normalize() - ts[0].normalize()).days)
    return hour, daytype, day


def _station_profiles(layout: CityLayout, hour, daytype, shift: np.ndarray, channels=(0, 1, 2)) -> np.ndarray:
    """Expected profile ``[N, T, len(channels)]`` (mean about 1 over a week) from the land-use mix, each
    station's hours shifted by ``shift`` (hours)."""
    res = 24 * _PROFILE_RES
    h = (hour[None, :] + 0.5 - shift[:, None]) % 24.0
    flat = daytype[None, :] * res + np.minimum((h * _PROFILE_RES).astype(np.int64), res - 1)
    out = np.zeros((len(channels), *flat.shape))
    for k in range(len(LAND_USES)):
        w = layout.land_use[:, k]
        if not (w > 1e-6).any():
            continue
        table = _PROFILES[k][list(channels)].reshape(len(channels), 4 * res)
        for j in range(len(channels)):
            out[j] += w[:, None] * table[j][flat]
    return out.transpose(1, 2, 0)


# ------------------------------------------------------------------------------------------------------------
# Traffic


def _ar1(rng, shape, phi: float) -> np.ndarray:
    """Unit-variance Gaussian AR(1) along the last axis (stationary from the first step)."""
    white = rng.standard_normal(shape)
    white[..., 1:] *= math.sqrt(1 - phi**2)
    return lfilter([1.0], [1.0, -phi], white, axis=-1)


def synthesize_traffic(
    layout: CityLayout, *, seed: int | None = None, weeks: int | None = None
) -> StationTraffic:
    """Hourly traffic ``[N, weeks * 168, 3]`` of the layout's stations (see the module docstring)."""
    cfg = layout.config
    weeks = cfg.weeks if weeks is None else weeks
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed if seed is None else seed, 2]))
    n, c = len(layout.load), len(CHANNELS)
    t = 168 * weeks
    hour, daytype, day = _calendar(cfg.start, t, "1h")
    n_days = int(day.max()) + 1
    lu = layout.land_use

    shift = rng.normal(0.0, 0.35, n)
    profile = _station_profiles(layout, hour, daytype, shift)
    # Station-specific night floor (machine traffic, always-on devices): varies the peak/trough ratio.
    floor = np.exp(rng.normal(math.log(0.05), 0.8, (n, 1, 1)))
    profile = (profile + floor) / (1.0 + floor)

    level = layout.load[:, None] * (lu @ _CHANNEL_MIX) * np.exp(rng.normal(0, 0.2, (n, c)))
    level *= _CHANNEL_SCALE / level.mean(axis=0)
    log_x = np.log(level)[:, None, :] + np.log(profile)

    # Slow variation: weekly per station, daily AR(1) per station, city-wide daily factor.
    week = np.minimum(np.arange(t) // 168, weeks - 1)
    log_x += 0.06 * rng.standard_normal((n, weeks, 1))[:, week]
    daily = 0.08 * _ar1(rng, (n, n_days), 0.6) + 0.04 * rng.standard_normal(n_days)[None, :]
    log_x += daily[:, day][:, :, None]
    # Hourly noise: log-AR(1), partly shared across channels, larger at quieter stations.
    sigma = cfg.noise * np.exp(rng.normal(0, 0.3, n)) * np.clip(layout.load, 0.05, None) ** -0.12
    common = _ar1(rng, (n, t), 0.5)
    own = _ar1(rng, (n, c, t), 0.5).transpose(0, 2, 1)
    log_x += sigma[:, None, None] * (0.7 * common[:, :, None] + 0.714 * own)
    # Spikes: isolated heavy-tailed single-hour bursts.
    spikes = rng.random((n, t, c)) < 0.002
    log_x[spikes] += np.log1p(np.minimum(rng.lognormal(0.0, 0.6, int(spikes.sum())), 20.0))
    log_x += np.minimum(_events(rng, layout, t, cfg.burst_rate * weeks), math.log(30.0))

    x = np.exp(log_x)
    # Outages: whole station silent for 1-24 hours.
    n_out = rng.poisson(cfg.outage_rate * weeks * n)
    if n_out:
        st = rng.integers(0, n, n_out)
        t0 = rng.integers(0, t, n_out)
        dur = np.minimum(rng.geometric(0.25, n_out), 24)
        for i, a, d in zip(st, t0, dur, strict=True):
            x[i, a : a + d] = 0.0
    return StationTraffic(
        values=x.astype(np.float32),
        start=cfg.start,
        step=pd.Timedelta("1h"),
        channels=CHANNELS,
        stations=layout.stations,
        source="synthetic city",
    )


def _events(rng, layout: CityLayout, t: int, rate_per_station: float) -> np.ndarray:
    """Log-multipliers ``[N, T, C]`` of local events (concerts, fairs, incidents): a burst of 1-12 hours
    at a station, half as strong (in log) at its two nearest neighbours. Nightlife and transport stations
    host more of them."""
    n = len(layout.load)
    out = np.zeros((n, t, len(CHANNELS)))
    lu = layout.land_use
    rate = 0.4 + 2.0 * lu[:, _N] + 1.5 * lu[:, _T] + 0.8 * lu[:, _U]
    rate = rate / rate.mean() * rate_per_station
    count = rng.poisson(rate)
    m = int(count.sum())
    if m == 0:
        return out
    st = np.repeat(np.arange(n), count)
    t0 = rng.integers(0, t, m)
    dur = np.minimum(rng.geometric(0.35, m), 12)
    amp = np.log1p(np.minimum(0.6 * (rng.pareto(1.8, m) + 0.3), 20.0))
    chan = np.array([1.0, 0.6, 0.8])
    xy = np.stack([layout.x_km, layout.y_km], axis=1)
    k = min(3, n)
    nb = cKDTree(xy).query(xy[st], k=k)[1]
    for j, scale in enumerate((1.0, 0.5, 0.5)[:k]):
        rows = np.repeat(nb[:, j], dur)
        starts = np.repeat(t0, dur)
        offs = np.arange(int(dur.sum())) - np.repeat(np.cumsum(dur) - dur, dur)
        cols = np.minimum(starts + offs, t - 1)
        vals = np.repeat(amp * scale, dur)
        np.add.at(out, (rows, cols), vals[:, None] * chan[None, :])
    return out


# ------------------------------------------------------------------------------------------------------------
# Users


def _gravity_choice(
    rng, origin_xy, dest_xy, attract, d0: float, power: float, chunk: int = 512
) -> np.ndarray:
    """For each origin, a destination drawn with probability ~ attract_j * (d_ij + d0)^-power."""
    out = np.empty(len(origin_xy), dtype=np.int64)
    for a in range(0, len(origin_xy), chunk):
        o = origin_xy[a : a + chunk]
        d = np.sqrt(((o[:, None, :] - dest_xy[None, :, :]) ** 2).sum(axis=2))
        w = attract[None, :] * (d + d0) ** -power
        out[a : a + chunk] = _sample_categorical(rng, w)
    return out


def synthesize_users(
    layout: CityLayout, *, n_users: int | None = None, seed: int | None = None
) -> UserMobility:
    """Users at 30-minute steps over ``config.user_weeks`` weeks: locations and per-step traffic (MB)."""
    cfg = layout.config
    u = cfg.n_users if n_users is None else n_users
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed if seed is None else seed, 3]))
    t = 336 * cfg.user_weeks
    hour, daytype, _ = _calendar(cfg.start, t, "30min")
    feats = layout.stations.features.astype(np.float64)
    col = {c: j for j, c in enumerate(POI_CATEGORIES)}
    xy = np.stack([layout.x_km, layout.y_km], axis=1)
    n = len(xy)
    tree = cKDTree(xy)

    # Anchors: home by residents, work/study by jobs/places with a gravity law on distance.
    residents = feats[:, col["residential"]] + 0.2 * feats.sum(axis=1) + 0.5
    home = rng.choice(n, size=u, p=residents / residents.sum())
    jobs = (
        feats[:, col["office"]] * 3
        + feats[:, col["shop"]]
        + feats[:, col["restaurant"]]
        + feats[:, col["health"]]
        + feats[:, col["hotel"]]
        + feats[:, col["transport"]]
        + feats[:, col["education"]] * 0.5
        + 0.1
    )
    schools = feats[:, col["education"]] * (0.2 + layout.land_use[:, _U]) + 0.01
    role = rng.choice(3, size=u, p=[0.62, 0.13, 0.25])  # worker, student, neither
    work = np.full(u, -1, dtype=np.int64)
    for r, attract in ((0, jobs), (1, schools)):
        sel = np.flatnonzero(role == r)
        if len(sel):
            work[sel] = _gravity_choice(rng, xy[home[sel]], xy, attract, d0=1.0, power=1.3)
    has_work = work >= 0
    attract_all = feats.sum(axis=1) + 1.0

    # Personal schedule (in half-hour steps of the day).
    depart = np.clip(np.round(rng.normal(np.where(role == 1, 17.5, 16.0), 1.5)), 10, 22).astype(int)
    dur = np.clip(np.round(rng.normal(np.where(role == 1, 13, 17), 2.0)), 6, 22).astype(int)
    sleep = np.clip(np.round(rng.normal(46, 2.0, u)), 40, 52).astype(int)  # 52 = 02:00 next day
    wake = np.clip(np.round(rng.normal(14, 1.5, u)), 10, 20).astype(int)
    works_saturday = rng.random(u) < 0.1
    rho = 0.6 * np.exp(rng.normal(0, 0.3, u))  # EPR exploration propensity
    gamma = 0.21
    out_rate = 0.06 * np.exp(rng.normal(0, 0.5, u))  # excursions per free step at home

    m = 64
    mem_loc = np.full((u, m), -1, dtype=np.int64)
    mem_cnt = np.zeros((u, m))
    mem_loc[:, 0] = home
    mem_cnt[:, 0] = 1.0
    mem_loc[has_work, 1] = work[has_work]
    mem_cnt[has_work, 1] = 1.0
    n_mem = np.where(has_work, 2, 1)

    loc = np.empty((u, t), dtype=np.int64)
    cur = home.copy()
    stay = np.zeros(u, dtype=np.int64)  # steps left on the current excursion (0 = at an anchor)
    users = np.arange(u)
    for s in range(t):
        slot = round(hour[s] * 2)
        dt = daytype[s]
        workday = (dt <= 1) | (works_saturday & (dt == 2))
        at_work_time = has_work & workday & (slot >= depart) & (slot < depart + dur)
        # Night at home: from `sleep` (later on Friday and Saturday nights) to `wake` (later at weekends).
        bed = sleep + (3 if dt in (1, 2) else 0)
        prev_bed = sleep + (3 if dt in (2, 3) else 0) - 48  # > 0: still out after midnight
        up = wake + (3 if dt >= 2 else 0)
        night = ((slot < up) & (slot >= prev_bed)) | (slot >= bed)
        anchor = np.where(at_work_time, work, home)
        # Excursions in progress tick down; the anchor pulls the user back when they end or at night.
        on_trip = stay > 0
        stay = np.maximum(stay - 1, 0)
        back = on_trip & ((stay == 0) | (night & (rng.random(u) < 0.5)))
        chain = back & ~night & (rng.random(u) < 0.25)
        nxt = np.where(on_trip & ~back, cur, anchor)
        # New excursions from the anchor.
        hr = hour[s]
        free = out_rate * (1.6 if dt >= 2 else 1.0) * (0.25 if hr < 7 else 0.6 if hr >= 22 else 1.0)
        lunch = 0.025 + 0.12 * (12 <= hr < 14)
        p_out = np.where(night, 0.002, np.where(at_work_time, lunch, free))
        start = ((~on_trip | back) & (rng.random(u) < p_out)) | chain
        if start.any():
            who = users[start]
            origin = np.where(chain[who], cur[who], nxt[who])
            dest = _epr_destination(
                rng, who, origin, xy, tree, attract_all, mem_loc, mem_cnt, n_mem, rho, gamma
            )
            nxt[who] = dest
            # Stay durations (steps): truncated power law (Song et al.: P(dt) ~ dt^-1.8), 1 to 16 steps.
            stay[who] = np.minimum(np.ceil(rng.random(len(who)) ** (-1 / 0.8)), 16).astype(np.int64)
            stay[who] = np.where(at_work_time[who], np.minimum(stay[who], 3), stay[who])
        # Commutes: a long home<->work move passes through a station on the way for one step, sometimes.
        moving = (nxt != cur) & (nxt == anchor) & ~on_trip & has_work
        if moving.any():
            dist = np.sqrt(((xy[nxt] - xy[cur]) ** 2).sum(axis=1))
            via = moving & (dist > 4.0) & (rng.random(u) < 0.5)
            if via.any():
                f = rng.uniform(0.3, 0.7, int(via.sum()))[:, None]
                mid = xy[cur[via]] * (1 - f) + xy[nxt[via]] * f
                nxt_via = tree.query(mid)[1]
                nxt[via] = nxt_via
                stay[via] = 1
        cur = nxt
        loc[:, s] = cur

    # Observation: occasionally served by a neighbouring cell (handover, load balancing).
    obs = loc.copy()
    if cfg.handover > 0 and n > 3:
        nb = tree.query(xy, k=4)[1][:, 1:]
        ho = rng.random((u, t)) < cfg.handover
        obs[ho] = nb[loc[ho], rng.integers(0, 3, int(ho.sum()))]

    traffic = _user_traffic(rng, layout, obs, hour, daytype, u, t)
    width = max(4, len(str(u)))
    return UserMobility(
        locations=obs,
        start=cfg.start,
        step=pd.Timedelta("30min"),
        stations=layout.stations,
        traffic=traffic,
        user_ids=tuple(f"U{i + 1:0{width}d}" for i in range(u)),
        source="synthetic city",
    )


def _epr_destination(rng, who, origin, xy, tree, attract, mem_loc, mem_cnt, n_mem, rho, gamma) -> np.ndarray:
    """Exploration and preferential return (Song et al. 2010): explore a new place with probability
    rho * S^-gamma (S = distinct places visited), at a truncated power-law distance (P(r) ~ (r + r0)^-1.75,
    r0 = 0.6 km) from the origin, choosing among the 6 stations nearest the target by attractiveness; else
    return to a known place (not the current one) with probability proportional to past visits."""
    k = len(who)
    explore = rng.random(k) < rho[who] * n_mem[who].astype(float) ** -gamma
    dest = np.empty(k, dtype=np.int64)
    ex = np.flatnonzero(explore)
    if len(ex):
        r = 0.6 * (rng.random(len(ex)) ** (-1 / 0.75) - 1.0)
        r = np.minimum(r, 30.0)
        a = rng.uniform(0, 2 * math.pi, len(ex))
        target = xy[origin[ex]] + np.stack([r * np.cos(a), r * np.sin(a)], axis=1)
        kk = min(6, len(xy))
        cand = tree.query(target, k=kk)[1].reshape(len(ex), kk)
        pick = _sample_categorical(rng, attract[cand])
        dest[ex] = cand[np.arange(len(ex)), pick]
    ret = np.flatnonzero(~explore)
    if len(ret):
        rows = who[ret]
        w = mem_cnt[rows] * (mem_loc[rows] != origin[ret][:, None]) * (mem_loc[rows] >= 0)
        none = w.sum(axis=1) <= 0
        w[none, 0] = 1.0  # nowhere else known: go home
        j = _sample_categorical(rng, w)
        dest[ret] = np.where(none, mem_loc[rows, 0], mem_loc[rows, j])
    # Update the visit memory (new places take a free slot; a full memory forgets its rarest place).
    for i, d in zip(who, dest, strict=True):
        hit = np.flatnonzero(mem_loc[i, : n_mem[i]] == d)
        if len(hit):
            mem_cnt[i, hit[0]] += 1.0
        else:
            slot = n_mem[i] if n_mem[i] < mem_loc.shape[1] else 2 + int(np.argmin(mem_cnt[i, 2:]))
            mem_loc[i, slot] = d
            mem_cnt[i, slot] = 1.0
            n_mem[i] = min(n_mem[i] + 1, mem_loc.shape[1])
    return dest


def _user_traffic(rng, layout: CityLayout, loc, hour, daytype, u: int, t: int) -> np.ndarray:
    """Per-step traffic (MB per 30 min): active (zero-inflated by hour) x user intensity x hour profile x
    location factor x lognormal burst, plus rare heavy (Pareto) sessions."""
    n = len(layout.load)
    prof = _station_profiles(layout, hour, daytype, np.zeros(n), channels=(0,))[:, :, 0]  # internet
    hour_act = 0.08 + 0.62 * (0.35 * _bump(hour, 13.0, 3.0) + _bump(hour, 21.0, 2.8)).clip(0, 1)
    active = rng.random((u, t)) < hour_act[None, :]
    intensity = rng.lognormal(math.log(4.0), 0.9, u)
    where = prof[loc, np.arange(t)[None, :]] ** 0.5
    burst = rng.lognormal(0.0, 1.1, (u, t))
    heavy = rng.random((u, t)) < 0.02
    burst[heavy] += 10.0 * (np.minimum(rng.pareto(1.3, int(heavy.sum())), 50.0) + 1.0)
    traffic = active * intensity[:, None] * where * burst
    # A radio link carries at most about _USER_MAX_MB in 30 minutes (about 35 Mbit/s sustained).
    return np.minimum(traffic, _USER_MAX_MB).astype(np.float32)


# ------------------------------------------------------------------------------------------------------------
# The city


@dataclass(frozen=True, eq=False)
class SyntheticCity:
    """A whole synthetic city: stations, traffic, users, knowledge graph, and the layout's labels."""

    config: CityConfig
    layout: CityLayout
    traffic: StationTraffic
    users: UserMobility

    @property
    def stations(self) -> Stations:
        return self.layout.stations

    @property
    def knowledge_graph(self) -> KnowledgeGraph:
        return self.layout.knowledge_graph

    @property
    def station_kind(self) -> np.ndarray:
        """Dominant land use of each station (one of :data:`LAND_USES`)."""
        return self.layout.kind

    @property
    def station_region(self) -> np.ndarray:
        return self.layout.region

    @property
    def station_area(self) -> np.ndarray:
        return self.layout.area

    def labels(self) -> pd.DataFrame:
        """One row per station: id, x/y (km), dominant kind, land-use mix, area, region, load level."""
        lay = self.layout
        frame = pd.DataFrame(
            {
                "station_id": lay.stations.ids.astype(str),
                "x_km": lay.x_km,
                "y_km": lay.y_km,
                "kind": lay.kind.astype(str),
                "area": lay.area,
                "area_kind": np.array(lay.centre_kind)[lay.area],
                "region": lay.region,
                "load": lay.load,
            }
        )
        for j, k in enumerate(LAND_USES):
            frame[f"share_{k}"] = lay.land_use[:, j]
        return frame

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``traffic/``, ``users/`` (cellsynth datasets), ``knowledge_graph.parquet``,
        ``labels.parquet`` and ``config.json`` into directory ``path``, atomically. ``path`` must be new, empty,
        or an earlier synthetic city (see :mod:`cellsynth.outputs`)."""
        path = Path(path)
        with atomic_directory(path, SYNTHETIC_CITY) as tmp:
            write(self.traffic, tmp / "traffic")
            write(self.users, tmp / "users")
            write_knowledge_graph(self.knowledge_graph, tmp / "knowledge_graph.parquet")
            self.labels().to_parquet(tmp / "labels.parquet", index=False)
            (tmp / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        return path


def synthesize_city(config: CityConfig | None = None, **overrides) -> SyntheticCity:
    """Build a synthetic city: ``synthesize_city()`` (defaults), ``synthesize_city(n_stations=40, seed=3)``,
    ``synthesize_city(CityConfig.milan())``."""
    cfg = config or CityConfig()
    if overrides:
        cfg = cfg.replace(**overrides)
    layout = build_layout(cfg)
    traffic = synthesize_traffic(layout)
    users = synthesize_users(layout)
    return SyntheticCity(config=cfg, layout=layout, traffic=traffic, users=users)
