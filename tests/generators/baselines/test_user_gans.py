"""MSTDiff's GAN traffic baselines, adaptive and msh-gan (the conformance suite runs them too): their users
move exactly as the Markov floor's, ADAPTIVE's knowledge-graph embeddings and transfer step, and the errors
a user can cause."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellsynth.data.knowledge import KnowledgeGraph
from cellsynth.data.model import Stations, UserMobility
from cellsynth.errors import DataError
from cellsynth.generators import get, get_class, load
from cellsynth.generators.baselines.users._trajectory import week_positions
from cellsynth.generators.floors.markov import MarkovGenerator
from cellsynth.testing import tiny_users

GANS = ("adaptive", "msh-gan")


def _smoke(name: str, **overrides):
    return get(name, {**get_class(name).smoke_config(), **overrides})


def _graph(stations: Stations, regions: int = 3, leave_out: int = 0) -> KnowledgeGraph:
    """Every station (but the last ``leave_out``) in a region, neighbours bordering each other."""
    ids = [str(s) for s in stations.ids][: len(stations) - leave_out]
    heads = [f"station:{s}" for s in ids] + [f"station:{a}" for a in ids[:-1]]
    relations = ["BaseLocateAt"] * len(ids) + ["BaseBorderBy"] * (len(ids) - 1)
    tails = [f"region:{i % regions}" for i in range(len(ids))] + [f"station:{b}" for b in ids[1:]]
    return KnowledgeGraph(
        np.array(heads, dtype=object), np.array(relations, dtype=object), np.array(tails, dtype=object)
    )


def _other_city(users: UserMobility, prefix: str = "t") -> UserMobility:
    stations = Stations(
        ids=[f"{prefix}{i}" for i in range(len(users.stations))],
        lat=users.stations.lat + 1.0,
        lon=users.stations.lon,
        features=users.stations.features,
        feature_names=users.stations.feature_names,
    )
    return UserMobility(users.locations[:, ::-1].copy(), users.start, users.step, stations)


@pytest.mark.parametrize("name", GANS)
def test_users_move_exactly_as_the_markov_floors(name):
    data = tiny_users()
    gen = _smoke(name).fit(data, progress=False)
    floor = MarkovGenerator().fit(data, progress=False)
    out = gen.generate(7, seed=3)
    np.testing.assert_array_equal(out.locations, floor.generate(7, seed=3).locations)
    assert out.traffic.shape == (7, 336) and (out.traffic >= 0).all()


@pytest.mark.parametrize("name", GANS)
def test_users_without_traffic_are_refused(name):
    users = tiny_users()
    bare = UserMobility(users.locations, users.start, users.step, users.stations)
    with pytest.raises(DataError, match=rf"{name} generates traffic.*no traffic column.*markov or mstdiff"):
        _smoke(name).fit(bare, progress=False)


def test_a_step_that_does_not_divide_a_week_is_refused():
    users = tiny_users()
    odd = UserMobility(users.locations, users.start, "25min", users.stations, traffic=users.traffic)
    with pytest.raises(DataError, match="step 0 days 00:25:00 of this data does not divide 7 days; resample"):
        _smoke("msh-gan").fit(odd, progress=False)


def test_week_positions_count_steps_from_monday_midnight():
    wednesday_noon = pd.Timestamp("2026-01-07 12:00", tz="Europe/Rome")
    positions = week_positions(wednesday_noon, pd.Timedelta("30min"), 340)
    assert positions[0] == 2 * 48 + 24
    assert positions[336 - 120] == 0 and positions[339] == (120 + 339) % 336


def test_adaptive_conditions_on_knowledge_graph_embeddings_and_round_trips(tmp_path):
    data = tiny_users()
    gen = _smoke("adaptive").fit(data, progress=False, knowledge_graph=_graph(data.stations))
    table = gen.net_.context.station_table
    assert table.shape == (6, 4)  # TuckER's station rows, standardised
    np.testing.assert_allclose(table.mean(0).numpy(), 0, atol=1e-5)
    out = gen.generate(4, seed=0)
    gen.save(tmp_path / "model")
    assert load(tmp_path / "model").generate(4, seed=0).equals(out)


def test_a_knowledge_graph_missing_a_station_is_refused():
    data = tiny_users()
    with pytest.raises(
        DataError, match=r"1 station\(s\) have no entity in knowledge_graph \(bs05\).*every station"
    ):
        _smoke("adaptive").fit(data, progress=False, knowledge_graph=_graph(data.stations, leave_out=1))


def test_transfer_trains_on_the_source_and_generates_the_targets_users():
    source = tiny_users(seed=0)
    target = _other_city(tiny_users(seed=1))
    gen = _smoke("adaptive").fit(
        target,
        progress=False,
        knowledge_graph=_graph(target.stations),
        source=source,
        source_knowledge_graph=_graph(source.stations, regions=2),
    )
    out = gen.generate(5, seed=2)
    assert out.stations.equals(target.stations) and out.traffic.shape == (5, 336)
    np.testing.assert_array_equal(
        out.locations, MarkovGenerator().fit(target, progress=False).generate(5, seed=2).locations
    )
    # the network generates with the target's embeddings, standardised
    np.testing.assert_allclose(gen.net_.context.station_table.mean(0).numpy(), 0, atol=1e-5)


def test_transfer_errors_name_what_to_give():
    source, target = tiny_users(seed=0), _other_city(tiny_users(seed=1))
    gen = _smoke("adaptive")
    with pytest.raises(DataError, match="give both knowledge_graph .* and source_knowledge_graph"):
        gen.fit(target, progress=False, source=source)
    with pytest.raises(DataError, match="source_knowledge_graph is given without source users"):
        gen.fit(source, progress=False, source_knowledge_graph=_graph(source.stations))
    shifted = UserMobility(
        source.locations,
        source.start + pd.Timedelta("1D"),
        source.step,
        source.stations,
        traffic=source.traffic,
    )
    with pytest.raises(DataError, match="must cover the same steps of the week; crop or resample"):
        gen.fit(
            target,
            progress=False,
            knowledge_graph=_graph(target.stations),
            source=shifted,
            source_knowledge_graph=_graph(source.stations),
        )
