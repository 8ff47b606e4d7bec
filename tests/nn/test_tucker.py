"""TuckER on a tiny city knowledge graph with clear structure: stations in regions, regions in areas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellsynth.data.knowledge import RELATIONS, KnowledgeGraph, station_entity
from cellsynth.errors import DataError
from cellsynth.graphs.transitions import knn_graph, station_embeddings
from cellsynth.nn.tucker import (
    OneToNDataset,
    TuckER,
    add_reciprocals,
    fit_tucker,
    link_prediction_metrics,
)

N_REGIONS, PER_REGION = 8, 5
NO_DROPOUT = {"input_dropout": 0.0, "hidden_dropout1": 0.0, "hidden_dropout2": 0.0}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """These tensors are tiny: on a shared 2-core machine a second intra-op thread only adds contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_city() -> tuple[KnowledgeGraph, np.ndarray]:
    """Five stations per region on a ring of borders, region g in area g // 2, two POIs per station.
    Returns the graph and each station's region, in the order of ``kg.station_ids()``."""
    heads, rels, tails, region = [], [], [], {}

    def add(h, r, t):
        heads.append(h), rels.append(r), tails.append(t)

    for g in range(N_REGIONS):
        for j in range(PER_REGION):
            sid = f"S{g}_{j}"
            region[sid] = g
            add(station_entity(sid), "BaseLocateAt", f"region:{g}")
            add(station_entity(sid), "BaseBelongTo", f"area:{g // 2}")
            for nb in ((j + 1) % PER_REGION, (j - 1) % PER_REGION):
                add(station_entity(sid), "BaseBorderBy", station_entity(f"S{g}_{nb}"))
            for p in range(2):
                add(f"poi:{sid}_{p}", "ServedBy", station_entity(sid))
    kg = KnowledgeGraph(
        np.array(heads, dtype=object), np.array(rels, dtype=object), np.array(tails, dtype=object)
    )
    return kg, np.array([region[s] for s in kg.station_ids()])


@pytest.fixture(scope="module")
def trained():
    """Hold out a quarter of the BaseBelongTo triplets (each inferable from the station's region), train.
    Dropout off: on 132 entities it only slows convergence (test MRR 0.56-0.90 over seeds 0-3 without)."""
    kg, region = tiny_city()
    triplets, entities, relations = kg.encode()
    belong = np.flatnonzero(triplets[:, 1] == relations.index("BaseBelongTo"))
    held = np.random.default_rng(0).choice(belong, size=len(belong) // 4, replace=False)
    train, test = np.delete(triplets, held, axis=0), triplets[held]
    model = fit_tucker(train, len(entities), len(relations), epochs=30, batch_size=64, seed=0, **NO_DROPOUT)
    return kg, region, model, train, test, triplets, entities


def test_training_beats_random_embeddings_on_held_out_triplets(trained):
    _, _, model, train, test, known, entities = trained
    torch.manual_seed(0)
    baseline = TuckER(len(entities), len(RELATIONS))
    ours = link_prediction_metrics(model, test, known)
    rand = link_prediction_metrics(baseline, test, known)
    assert ours["mrr"] > 0.4 and ours["mrr"] > 5 * rand["mrr"], (ours, rand)
    assert ours["hits@10"] > rand["hits@10"]
    assert link_prediction_metrics(model, train, known)["mrr"] > 0.9  # the training triplets are learned


def test_loss_decreases(trained):
    losses = trained[2].epoch_losses
    assert len(losses) == 30
    assert losses[-1] < 0.25 * losses[0]
    assert np.mean(losses[-5:]) < np.mean(losses[5:10])


def test_station_embeddings_give_a_transition_graph_within_regions(trained):
    """End to end: KG -> TuckER -> station rows -> kNN graph; stations of a region play the same role, so
    their embeddings are each other's neighbours."""
    kg, region, model, *_, entities = trained
    emb = station_embeddings(model.entity_embeddings(), entities, kg.station_ids())
    assert emb.shape == (N_REGIONS * PER_REGION, 32)
    graph = knn_graph(emb, 3)
    rows, cols = graph.adjacency.nonzero()
    same = region[rows] == region[cols]
    assert same.mean() > 0.8
    assert graph.n_components >= 1 and np.allclose(graph.rate.sum(1), 0)


def test_seeded_and_resumable(tmp_path):
    kg, _ = tiny_city()
    triplets, entities, relations = kg.encode()
    args = (triplets, len(entities), len(relations))
    a = fit_tucker(*args, dim=8, epochs=3, seed=1).entity_embeddings()
    b = fit_tucker(*args, dim=8, epochs=3, seed=1).entity_embeddings()
    np.testing.assert_array_equal(a, b)
    c = fit_tucker(*args, dim=8, epochs=3, seed=2).entity_embeddings()
    assert not np.array_equal(a, c)
    # interrupted after 2 epochs, then resumed to 3: the same weights as the uninterrupted run
    fit_tucker(*args, dim=8, epochs=2, seed=1, checkpoint_dir=tmp_path)
    resumed = fit_tucker(*args, dim=8, epochs=3, seed=1, checkpoint_dir=tmp_path)
    assert len(resumed.epoch_losses) == 1  # only the third epoch ran
    np.testing.assert_allclose(resumed.entity_embeddings(), a, atol=1e-6)


def test_scoring_shapes_reciprocals_and_batch_of_one():
    model = TuckER(10, 2, dim=4, relation_dim=3)
    assert model.R.weight.shape == (4, 3) and model.W.shape == (3, 4, 4)
    model.train()
    assert model(torch.tensor([1]), torch.tensor([0])).shape == (1, 10)  # no batch-norm error on one row
    model.eval()
    t = np.array([[1, 0, 2], [3, 1, 4]])
    full = model(torch.tensor([1, 3]), torch.tensor([0, 1]))
    torch.testing.assert_close(model.score(t), full[[0, 1], [2, 4]])
    np.testing.assert_array_equal(add_reciprocals(t, 2), [[1, 0, 2], [3, 1, 4], [2, 2, 1], [4, 3, 3]])


def test_one_to_n_targets():
    t = np.array([[0, 0, 1], [0, 0, 2], [1, 0, 2], [0, 1, 3]])
    data = OneToNDataset(t, 4)
    assert len(data) == 3
    items = {tuple(data[i][0].tolist()): data[i][1].tolist() for i in range(len(data))}
    assert items == {(0, 0): [0, 1, 1, 0], (0, 1): [0, 0, 0, 1], (1, 0): [0, 0, 1, 0]}


def test_bad_triplets_are_rejected():
    with pytest.raises(DataError, match="relation code 5"):
        fit_tucker(np.array([[0, 5, 1]]), 3, 2, epochs=1)
    with pytest.raises(DataError, match=r"\[M, 3\]"):
        fit_tucker(np.zeros((2, 2), dtype=int), 3, 2, epochs=1)
    with pytest.raises(DataError, match="have no entity"):
        station_embeddings(np.zeros((2, 3)), ["station:a", "region:1"], ["a", "b"])
