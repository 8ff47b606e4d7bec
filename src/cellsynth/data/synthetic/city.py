"""A whole synthetic city (:func:`synthesize_city`) and writing it to disk (:meth:`SyntheticCity.write`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cellsynth.data.io import write
from cellsynth.data.knowledge import KnowledgeGraph, write_knowledge_graph
from cellsynth.data.model import Stations, StationTraffic, UserMobility
from cellsynth.data.synthetic.config import LAND_USES, CityConfig
from cellsynth.data.synthetic.layout import CityLayout, build_layout
from cellsynth.data.synthetic.traffic import synthesize_traffic
from cellsynth.data.synthetic.users import synthesize_users
from cellsynth.outputs import SYNTHETIC_CITY, atomic_directory

__all__ = ["SyntheticCity", "synthesize_city"]


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
