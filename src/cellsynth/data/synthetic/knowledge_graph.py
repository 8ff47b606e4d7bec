"""The synthetic city's urban knowledge graph (:mod:`cellsynth.data.knowledge`): BaseLocateAt (station ->
square region), BaseBelongTo (station -> business area), BaseBorderBy (neighbouring cells), ServedBy (POI ->
nearest station)."""

from __future__ import annotations

import numpy as np

from cellsynth.data.knowledge import KnowledgeGraph, station_entity

__all__ = ["city_knowledge_graph"]


def city_knowledge_graph(ids, region, area, edges, poi_station) -> KnowledgeGraph:
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
