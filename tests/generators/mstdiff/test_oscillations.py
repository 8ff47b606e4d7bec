"""Cell oscillations: finding them against the definition, removing them, drawing them again at the
fitted rate and ranks (round trips), errors, and a small MSTDiff fit that learns the week without them."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cellsynth
from cellsynth.errors import ConfigError, DataError
from cellsynth.generators import get
from cellsynth.generators.mstdiff import MSTDiffGenerator
from cellsynth.generators.mstdiff.anchors import top_locations
from cellsynth.generators.mstdiff.oscillations import CellOscillations, find_oscillations
from cellsynth.graphs.stations import haversine_km
from cellsynth.graphs.transitions import nearest_stations
from tests.generators.mstdiff.test_generator import SMALL_FIT, START, users

# station i's neighbours by rank: a ring of 8 stations, nearest first
RING = np.array([[(i + 1) % 8, (i - 1) % 8] for i in range(8)])


def brute_force(loc: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    out = np.zeros(loc.shape, dtype=bool)
    for u, row in enumerate(loc):
        for t in range(1, len(row) - 1):
            a, b = row[t - 1], row[t]
            out[u, t] = row[t + 1] == a and b != a and b in neighbours[a]
    return out


def stays(rng: np.random.Generator, users: int, steps: int, n: int = 8, mean_stay: float = 10) -> np.ndarray:
    """Weeks of stays of at least 3 steps at random stations, each stay at another station than the last."""
    out = np.empty((users, steps), dtype=np.int64)
    for u in range(users):
        t, here = 0, rng.integers(n)
        while t < steps:
            length = 2 + rng.geometric(1 / mean_stay)
            out[u, t : t + length] = here
            here = (here + rng.integers(1, n)) % n
            t += length
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 7), min_size=1, max_size=30), min_size=1, max_size=5))
def test_find_oscillations_is_the_definition(rows):
    width = max(map(len, rows))
    loc = np.array([r + [r[-1]] * (width - len(r)) for r in rows])
    found = find_oscillations(loc, RING)
    np.testing.assert_array_equal(found, brute_force(loc, RING))
    # removing them only touches what was found, and puts back the station before
    cleaned = CellOscillations.fit(loc, RING).remove(loc)
    np.testing.assert_array_equal(cleaned[~found], loc[~found])
    users, steps = np.nonzero(found)
    np.testing.assert_array_equal(cleaned[users, steps], loc[users, steps - 1])


def test_find_oscillations_by_hand():
    loc = np.array([[0, 1, 0, 0, 3, 0, 0, 7, 0, 1, 2, 2], [5, 5, 4, 5, 6, 5, 5, 5, 5, 5, 5, 6]])
    found = find_oscillations(loc, RING)
    # 0 1 0: a neighbour; 0 3 0: not one; 0 7 0: the second nearest; 0 1 2: not back
    assert np.flatnonzero(found[0]).tolist() == [1, 7]
    assert np.flatnonzero(found[1]).tolist() == [2, 4]


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31), st.floats(0.01, 0.2))
def test_drawn_oscillations_are_found_again_and_touch_only_stays(seed, rate):
    rng = np.random.default_rng(seed)
    clean = stays(rng, 6, 60)
    assert not find_oscillations(clean, RING).any()
    model = CellOscillations(rate, np.array([0.7, 0.3]), RING)
    noisy = model.add(clean, rng)
    changed = noisy != clean
    np.testing.assert_array_equal(find_oscillations(noisy, RING), changed)
    np.testing.assert_array_equal(model.remove(noisy), clean)  # the filter undoes the draw exactly


def test_fit_recovers_the_rate_and_ranks_it_was_drawn_with():
    rng = np.random.default_rng(0)
    clean = stays(rng, 400, 336)
    rate, ranks = 0.04, np.array([0.6, 0.4])
    noisy = CellOscillations(rate, ranks, RING).add(clean, rng)
    fitted = CellOscillations.fit(noisy, RING)
    assert fitted.rate == pytest.approx(rate, rel=0.05)
    np.testing.assert_allclose(fitted.ranks, ranks, atol=0.02)
    # ... and drawing from the fit on the filtered weeks gives the same number again
    again = fitted.add(fitted.remove(noisy), np.random.default_rng(1))
    assert find_oscillations(again, RING).sum() == pytest.approx(
        find_oscillations(noisy, RING).sum(), rel=0.05
    )


def test_weeks_without_oscillations_fit_a_zero_rate_and_draw_none():
    clean = stays(np.random.default_rng(0), 5, 50)
    model = CellOscillations.fit(clean, RING)
    assert model.rate == 0.0
    np.testing.assert_allclose(model.ranks, [0.5, 0.5])
    np.testing.assert_array_equal(model.add(clean, np.random.default_rng(0)), clean)


def test_bad_input_is_refused():
    with pytest.raises(DataError, match=r"\[users, steps\] integer"):
        find_oscillations(np.zeros(5, dtype=int), RING)
    with pytest.raises(DataError, match=r"station indices in 0..7"):
        find_oscillations(np.array([[0, 8, 0]]), RING)
    with pytest.raises(DataError, match=r"rate must be in \[0, 1\)"):
        CellOscillations(1.0, np.array([0.5, 0.5]), RING)
    with pytest.raises(DataError, match=r"distribution over the neighbours' ranks"):
        CellOscillations(0.1, np.array([0.5, 0.6]), RING)
    with pytest.raises(DataError, match=r"neighbours must be \[stations, 3\]"):
        CellOscillations(0.1, np.ones(3) / 3, RING)


def test_nearest_stations_are_the_haversine_order():
    rng = np.random.default_rng(0)
    lat, lon = 45 + rng.normal(0, 0.05, 40), 9 + rng.normal(0, 0.05, 40)
    d = haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :]) + np.diag(np.full(40, np.inf))
    np.testing.assert_array_equal(nearest_stations(lat, lon, 5), np.argsort(d, axis=1, kind="stable")[:, :5])
    with pytest.raises(DataError, match=r"k must be in 1..39"):
        nearest_stations(lat, lon, 40)


def with_oscillations(data, rate: float, seed: int = 0):
    """``data`` with one-step visits to a nearest station drawn inside its stays."""
    partners = nearest_stations(data.stations.lat, data.stations.lon, 2)
    noisy = CellOscillations(rate, np.array([0.5, 0.5]), partners).add(
        data.locations, np.random.default_rng(seed)
    )
    return type(data)(noisy, START, "30min", data.stations), partners


def test_mstdiff_learns_the_week_without_oscillations_and_draws_them_at_the_training_rate(tmp_path):
    """A small real fit: 48 users at home by night and at work by day, with oscillations at 0.08 per step
    inside stays. Given each user's anchors, the generated weeks without their oscillations are the users'
    own (a denoiser that had to learn the oscillations could not place them: they are noise); and the
    generated weeks oscillate at the training rate."""
    clean = users(n_users=48, traffic=False)
    data, partners = with_oscillations(clean, 0.08)
    cfg = SMALL_FIT | {"extensions": {"anchors": 2, "oscillation_neighbours": 2}}
    gen = get("mstdiff", cfg).fit(data, progress=False)
    trained = CellOscillations.fit(data.locations, partners)
    assert gen.oscillations_.rate == pytest.approx(trained.rate)
    assert any("Cell oscillations" in note for note in gen.fit_notes())
    out = gen.generate(48, seed=0, anchors=top_locations(clean.locations, 2))
    assert (gen.oscillations_.remove(out.locations) == clean.locations).mean() > 0.9
    drawn = find_oscillations(out.locations, partners).sum() / np.prod(out.locations.shape)
    real = find_oscillations(data.locations, partners).sum() / np.prod(data.locations.shape)
    assert drawn == pytest.approx(real, rel=0.35)
    gen.save(tmp_path / "m")
    again = cellsynth.generators.load(tmp_path / "m")
    np.testing.assert_array_equal(again.generate(5, seed=3).locations, gen.generate(5, seed=3).locations)


def test_mstdiff_oscillations_need_coordinates_and_enough_stations():
    data = users(n_users=4, traffic=False)
    bare = type(data)(data.locations, START, "30min", type(data.stations)(list(data.stations.ids)))
    with pytest.raises(ConfigError, match="needs station coordinates"):
        get("mstdiff", MSTDiffGenerator.smoke_config() | {"extensions": {"oscillation_neighbours": 2}}).fit(
            bare, progress=False
        )
    with pytest.raises(ConfigError, match="needs more than 6 stations"):
        get("mstdiff", MSTDiffGenerator.smoke_config() | {"extensions": {"oscillation_neighbours": 6}}).fit(
            data, progress=False
        )
