"""Anchors: each user's most-visited stations, and the model that draws them for new users (marginals,
padding, distances to home)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cellsynth.errors import DataError
from cellsynth.generators.mstdiff.anchors import AnchorModel, top_locations
from cellsynth.graphs.stations import haversine_km


def test_top_locations_ranks_by_visits_breaks_ties_by_index_and_pads():
    loc = np.array(
        [
            [3, 3, 3, 1, 1, 2],  # 3 x3, 1 x2, 2 x1
            [5, 4, 5, 4, 0, 0],  # a three-way tie: lowest index first
            [2, 2, 2, 2, 2, 2],  # one station: padded with it
        ]
    )
    np.testing.assert_array_equal(top_locations(loc, 3), [[3, 1, 2], [0, 4, 5], [2, 2, 2]])
    np.testing.assert_array_equal(top_locations(loc, 1), [[3], [0], [2]])


@pytest.mark.parametrize(
    ("locations", "k", "match"),
    [
        (np.zeros((2, 3), dtype=float), 2, "station indices"),
        (np.array([[0, -1]]), 2, "station indices"),
        (np.zeros(4, dtype=int), 2, "station indices"),
        (np.zeros((2, 3), dtype=int), 0, "k must be >= 1"),
    ],
)
def test_top_locations_refuses_bad_input(locations, k, match):
    with pytest.raises(DataError, match=match):
        top_locations(locations, k)


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.int64, st.tuples(st.integers(1, 6), st.integers(1, 30)), elements=st.integers(0, 9)),
    st.integers(1, 5),
)
def test_top_locations_property(loc, k):
    top = top_locations(loc, k)
    for row, anchors in zip(loc, top):
        counts = np.bincount(row, minlength=10)
        assert anchors[0] == counts.argmax()  # argmax: ties to the lowest index, as in the rule
        distinct = min(k, len(np.unique(row)))
        assert len(set(anchors[:distinct].tolist())) == distinct
        assert (np.diff(counts[anchors[:distinct]]) <= 0).all()
        assert (anchors[distinct:] == anchors[0]).all()


def _grid(n_side: int = 8):
    """Stations on a regular grid about 1.1 km apart."""
    i, j = np.divmod(np.arange(n_side * n_side), n_side)
    return 45.0 + 0.01 * i, 9.0 + 0.014 * j


def _commuters(rng, lat, lon, users: int, padded_share: float):
    """Homes in the left half; the second anchor is always a station 2-3 km from home (or padded)."""
    n = len(lat)
    homes = rng.choice(np.flatnonzero(lon < lon.mean()), users)
    second = np.empty(users, dtype=np.int64)
    for u, h in enumerate(homes):
        d = haversine_km(lat[h], lon[h], lat, lon)
        second[u] = rng.choice(np.flatnonzero((d > 2) & (d < 3)))
    pad = rng.random(users) < padded_share
    second[pad] = homes[pad]
    assert n > 1
    return np.stack([homes, second], axis=1)


def test_anchor_model_keeps_marginals_padding_and_distances_to_home():
    rng = np.random.default_rng(0)
    lat, lon = _grid()
    train = _commuters(rng, lat, lon, 2000, padded_share=0.2)
    model = AnchorModel.fit(train, len(lat), lat, lon)
    drawn = model.sample(4000, np.random.default_rng(1))

    # Homes only where training users live; the padded share as in training.
    assert np.isin(drawn[:, 0], np.unique(train[:, 0])).all()
    padded = drawn[:, 1] == drawn[:, 0]
    assert abs(padded.mean() - 0.2) < 0.03
    # The second anchors' distances to home follow the training ones (2-3 km), where drawing home and second
    # anchor independently from the same marginals would not.
    d = haversine_km(
        lat[drawn[~padded, 0]], lon[drawn[~padded, 0]], lat[drawn[~padded, 1]], lon[drawn[~padded, 1]]
    )
    assert ((d > 1.5) & (d < 3.5)).mean() > 0.9
    m = model.a["marginals"]
    indep_h = rng.choice(len(lat), 4000, p=m[0])
    indep_w = rng.choice(len(lat), 4000, p=m[1])
    d_indep = haversine_km(lat[indep_h], lon[indep_h], lat[indep_w], lon[indep_w])
    assert ((d_indep > 1.5) & (d_indep < 3.5)).mean() < 0.6


def test_anchor_model_without_coordinates_draws_distinct_anchors_from_the_marginals():
    rng = np.random.default_rng(0)
    train = np.stack([rng.choice(3, 500), rng.choice(np.arange(3, 8), 500), rng.choice(10, 500)], axis=1)
    train = top_locations(np.repeat(train, [5, 3, 1], axis=1), 3)  # rank order = the columns, ties aside
    model = AnchorModel.fit(train, 10)
    drawn = model.sample(3000, np.random.default_rng(1))
    assert drawn.shape == (3000, 3) and (drawn[:, 0] < 3).all()
    not_padded = drawn[:, 1] != drawn[:, 0]
    assert (drawn[not_padded, 1] >= 3).all() and (drawn[not_padded, 1] < 8).all()
    for row in drawn:  # distinct anchors, then (once padded) the first one repeated, as top_locations pads
        first_repeat = next((r for r in range(1, 3) if row[r] in row[:r]), 3)
        assert len(set(row[:first_repeat].tolist())) == first_repeat
        assert (row[first_repeat:] == row[0]).all()
    # The marginal of the first rank is kept.
    np.testing.assert_allclose(
        np.bincount(drawn[:, 0], minlength=3) / 3000, np.bincount(train[:, 0]) / 500, atol=0.04
    )


def test_anchor_model_state_round_trip_draws_the_same():
    rng = np.random.default_rng(0)
    lat, lon = _grid()
    model = AnchorModel.fit(_commuters(rng, lat, lon, 200, 0.1), len(lat), lat, lon)
    again = AnchorModel.from_state(model.state(), lat, lon)
    np.testing.assert_array_equal(
        model.sample(50, np.random.default_rng(3)), again.sample(50, np.random.default_rng(3))
    )
    with pytest.raises(DataError, match="at least one user"):
        AnchorModel.fit(np.zeros((0, 2), dtype=int), 4)


def test_anchor_model_keeps_the_padded_share_of_every_rank():
    """Padding is monotone, so the rank-3 share must come out as in training, not compounded with rank 2's."""
    rng = np.random.default_rng(0)
    distinct = rng.choice([1, 2, 3], size=3000, p=[0.15, 0.25, 0.6])  # stations each user visits
    loc = np.stack([np.resize(rng.choice(20, d, replace=False), 12) for d in distinct])
    train = top_locations(loc, 3)
    model = AnchorModel.fit(train, 20)
    drawn = model.sample(20000, np.random.default_rng(1))
    for r in (1, 2):
        assert abs((drawn[:, r] == drawn[:, 0]).mean() - (train[:, r] == train[:, 0]).mean()) < 0.02
