"""The Markov floor: transition estimates, smoothing over observed successors, empirical traffic."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cellsynth
from cellsynth.data import Stations, UserMobility
from cellsynth.errors import DataError
from cellsynth.generators import get
from cellsynth.generators.floors.markov import MarkovChain, hour_keys

START = pd.Timestamp("2026-01-05", tz="Europe/Rome")  # a Monday


def stations(n: int) -> Stations:
    return Stations([f"s{i}" for i in range(n)], 45 + 0.01 * np.arange(n), 9 + 0.01 * np.arange(n))


def users(locations, traffic=None, step="1h") -> UserMobility:
    locations = np.asarray(locations)
    n = int(locations.max()) + 2  # one station never visited
    return UserMobility(locations, START, step, stations(n), traffic=traffic)


def test_hour_keys_day_and_week():
    h = hour_keys(START, pd.Timedelta("30min"), 96, weekly=False)
    assert h[:4].tolist() == [0, 0, 1, 1] and h[48:50].tolist() == [0, 0]
    w = hour_keys(START, pd.Timedelta("30min"), 96, weekly=True)
    assert w[48:50].tolist() == [24, 24]  # Tuesday 0h


def test_transition_rows_smoothed_over_observed_successors_only():
    # Station 0 -> 1 always at every hour, 1 -> {1, 2}, 2 -> 0; station 3 never visited.
    loc = np.array([[0, 1, 1, 2, 0, 1], [0, 1, 2, 0, 1, 2]])
    hours = np.zeros(6, dtype=np.int64)  # one hour key for every step
    chain = MarkovChain.fit(loc, hours, 4, 1, smoothing=1.0)
    p = chain.transition_matrix(0)
    np.testing.assert_allclose(p.sum(1), 1.0)
    # Row 0: N(0) = {1}: 4 moves 0->1, so P = 1 (no smoothing mass elsewhere).
    np.testing.assert_allclose(p[0], [0, 1, 0, 0])
    # Row 1: moves 1->1 (1), 1->2 (3); N(1) = {1, 2}: (1+1)/(4+2), (3+1)/(4+2).
    np.testing.assert_allclose(p[1], [0, 2 / 6, 4 / 6, 0])
    # Row 3 (never seen): stays put.
    np.testing.assert_allclose(p[3], [0, 0, 0, 1])
    np.testing.assert_allclose(chain.a["start"], [1, 0, 0, 0])


def test_unseen_hour_is_uniform_over_successors_and_chain_is_followed():
    loc = np.tile(np.array([0, 1, 2] * 8), (3, 1))  # a deterministic cycle, 24 hourly steps
    data = users(loc)
    gen = get("markov", smoothing=0.0).fit(data, progress=False)
    out = gen.generate(10, seed=0)
    assert (out.locations[:, 0] == 0).all()
    assert ((out.locations[:, 1:] - out.locations[:, :-1]) % 3 == 1).all()  # only the observed moves
    assert out.traffic is None
    smoothed = get("markov", smoothing=1.0).fit(data, progress=False)
    p = smoothed.chain_.transition_matrix(23)  # hour 23 is the last step: never left at that hour
    np.testing.assert_allclose(p[2], [1, 0, 0, 0])  # N(2) = {0}: all mass there even unseen


def test_traffic_drawn_from_the_cell_else_the_hour():
    loc = np.array([[0] * 24, [1] * 12 + [0] * 12])
    traffic = np.zeros((2, 24), dtype=np.float32)
    traffic[0] = 5.0
    traffic[1, :12] = 7.0
    data = users(loc, traffic)
    gen = get("markov").fit(data, progress=False)
    chain = gen.chain_
    hours = np.arange(24)
    at0 = chain.sample_traffic(np.zeros((50, 24), dtype=np.int64), hours, np.random.default_rng(0))
    assert set(np.unique(at0[:, :12])) == {5.0} and set(np.unique(at0[:, 12:])) <= {0.0, 5.0}
    assert 0.0 in at0[:, 12:]  # zero inflation: user 1's zeros at station 0 in the afternoon
    # Station 1 in the afternoon was never seen: the hour's global pool (5 and 0).
    at1 = chain.sample_traffic(np.ones((50, 24), dtype=np.int64), hours, np.random.default_rng(0))
    assert set(np.unique(at1[:, :12])) == {7.0}
    assert set(np.unique(at1[:, 12:])) == {0.0, 5.0}


def test_seeded_save_load_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    loc = rng.integers(0, 5, (8, 48))
    data = users(loc, rng.random((8, 48)), step="30min")
    gen = get("markov", weekly=True).fit(data, progress=False)
    a, b = gen.generate(4, seed=1), gen.generate(4, seed=1)
    assert a.equals(b) and (a.traffic >= 0).all()
    gen.save(tmp_path / "m")
    assert cellsynth.load(tmp_path / "m").generate(4, seed=1).equals(a)
    with pytest.raises(DataError, match="no sampler options"):
        gen.generate(4, sampler="ddim")
    with pytest.raises(DataError, match="at least 2 time steps"):
        get("markov").fit(users(loc[:, :1]), progress=False)
