"""The urban knowledge graph: validation, encoding, Parquet round trip, and the synthetic city's graph."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellsynth.data.knowledge import (
    RELATIONS,
    KnowledgeGraph,
    read_knowledge_graph,
    station_entity,
    write_knowledge_graph,
)
from cellsynth.data.synthetic import build_layout
from cellsynth.errors import DataError


def small() -> KnowledgeGraph:
    return KnowledgeGraph(
        heads=np.array(["station:A", "station:A", "station:A", "station:B", "poi:0"], dtype=object),
        relations=np.array(
            ["BaseLocateAt", "BaseBelongTo", "BaseBorderBy", "BaseBorderBy", "ServedBy"], dtype=object
        ),
        tails=np.array(["region:0", "area:1", "station:B", "station:A", "station:B"], dtype=object),
    )


@pytest.fixture(scope="module")
def layout():
    return build_layout(n_stations=30, n_users=5, weeks=1, seed=11)


def test_properties():
    kg = small()
    assert len(kg) == 5
    assert list(kg.entities) == ["area:1", "poi:0", "region:0", "station:A", "station:B"]
    assert kg.relation_names == RELATIONS  # all four occur, canonical order
    assert list(kg.station_ids()) == ["A", "B"]
    assert kg.count("BaseBorderBy") == 2
    assert station_entity("S0001") == "station:S0001"


def test_encode_maps_back_to_names():
    kg = small()
    triplets, entities, relations = kg.encode()
    assert triplets.shape == (5, 3) and triplets.dtype == np.int64
    assert list(entities) == list(kg.entities)
    assert relations == RELATIONS
    assert list(entities[triplets[:, 0]]) == list(kg.heads)
    assert [relations[i] for i in triplets[:, 1]] == list(kg.relations)
    assert list(entities[triplets[:, 2]]) == list(kg.tails)


@pytest.mark.parametrize(
    ("heads", "relations", "tails", "match"),
    [
        ([], [], [], "empty"),
        (["station:A"], ["BaseLocateAt", "BaseLocateAt"], ["region:0"], "differ in length"),
        (["station:A"], ["LocatedIn"], ["region:0"], "unknown relation"),
        (["station:A"], ["BaseLocateAt"], ["area:0"], "links a station to a region"),
        (["poi:1"], ["BaseBorderBy"], ["station:A"], "links a station to a station"),
        (["A"], ["BaseLocateAt"], ["region:0"], "links a station"),
        (["station:A"], ["BaseLocateAt"], [""], "non-empty strings"),
        (["station:A"], ["BaseLocateAt"], [3], "non-empty strings"),
    ],
)
def test_validation(heads, relations, tails, match):
    with pytest.raises(DataError, match=match):
        KnowledgeGraph(
            np.array(heads, dtype=object), np.array(relations, dtype=object), np.array(tails, dtype=object)
        )


def test_frame_and_parquet_round_trip(tmp_path):
    kg = small()
    assert KnowledgeGraph.from_frame(kg.to_frame()).equals(kg)
    path = write_knowledge_graph(kg, tmp_path / "sub" / "kg.parquet")
    assert read_knowledge_graph(path).equals(kg)
    assert sorted(p.name for p in path.parent.iterdir()) == ["kg.parquet"]  # no temp file left behind
    # Overwriting replaces the file.
    bigger = KnowledgeGraph.from_frame(pd.concat([kg.to_frame()] * 2, ignore_index=True))
    write_knowledge_graph(bigger, path)
    assert len(read_knowledge_graph(path)) == 10


def test_read_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_knowledge_graph(tmp_path / "missing.parquet")
    bad = tmp_path / "bad.csv"
    bad.write_text("head,relation\nstation:A,BaseLocateAt\n")
    with pytest.raises(DataError, match="lacks column"):
        read_knowledge_graph(bad)
    good = tmp_path / "good.csv"
    small().to_frame().to_csv(good, index=False)
    assert read_knowledge_graph(good).equals(small())


def test_synthetic_city_graph(layout):
    kg = layout.knowledge_graph
    ids = list(layout.stations.ids)
    assert kg.relation_names == RELATIONS
    frame = kg.to_frame()
    for rel in ("BaseLocateAt", "BaseBelongTo"):
        heads = frame.loc[frame.relation == rel, "head"]
        assert sorted(heads) == sorted(station_entity(s) for s in ids)  # exactly one per station
    assert sorted(kg.station_ids()) == sorted(ids)
    border = frame[frame.relation == "BaseBorderBy"]
    pairs = set(zip(border["head"], border["tail"], strict=True))
    assert all((t, h) in pairs for h, t in pairs)  # symmetric
    assert border["head"].nunique() == len(ids)  # every station borders another
    served = frame[frame.relation == "ServedBy"]
    assert len(served) == int(layout.stations.features.sum())  # one triplet per POI
    per_station = served["tail"].value_counts()
    counts = dict(zip(map(station_entity, ids), layout.stations.features.sum(axis=1), strict=True))
    assert all(counts[s] == c for s, c in per_station.items())
