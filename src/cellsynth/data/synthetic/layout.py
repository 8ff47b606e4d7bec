"""The city in space: centres, the activity density, stations, points of interest (POIs), land use,
station load levels and the knowledge graph (:func:`build_layout`; steps 1 and 4 of
:mod:`cellsynth.data.synthetic`)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import Delaunay, QhullError, cKDTree

from cellsynth.data.knowledge import KnowledgeGraph
from cellsynth.data.model import Stations
from cellsynth.data.synthetic.config import LAND_USES, POI_CATEGORIES, CityConfig
from cellsynth.data.synthetic.knowledge_graph import city_knowledge_graph

__all__ = ["CityLayout", "build_layout", "sample_categorical"]

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


def sample_categorical(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
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
    pcomp = sample_categorical(rng, _components(pxy, cxy, cscale, cweight, half))
    poi_category = sample_categorical(rng, comp_mix[pcomp] @ _POI_MIX)
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
    kg = city_knowledge_graph(ids, region, area, edges, poi_station)
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
