"""TimeGEO: its estimators recover known values (analytic cases and data simulated with known homes, work
places and rates), and the fitted exploration probability falls with the number of visited places."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellsynth.data import Stations, UserMobility
from cellsynth.errors import DataError
from cellsynth.generators import get
from cellsynth.generators.baselines.trajectories.timegeo import week_timeline
from cellsynth.generators.baselines.trajectories.timegeo_fit import (
    Transitions,
    fit_exploration,
    fit_rank_exponent,
    rate_mle,
)
from cellsynth.testing import START, tiny_users

N_W, BETA1, BETA2 = 10.0, 3.0, 2.0


def test_rate_mle_is_the_closed_form_when_every_probability_is_equal():
    # n_s / x = n_f p / (1 - x p)  =>  x = n_s / (p (n_s + n_f))
    p = 0.01
    assert rate_mle(np.full(7, p), np.full(93, p), upper=1 / p) == pytest.approx(7 / (p * 100), rel=1e-9)
    assert rate_mle(np.array([]), np.full(5, p), upper=1 / p) == 0.0
    assert (
        rate_mle(np.full(5, p), np.array([]), upper=1 / p) == 1 / p
    )  # never failed: the largest rate allowed
    assert np.isnan(rate_mle(np.array([]), np.array([]), upper=1 / p))


def _grid_stations(n: int) -> Stations:
    """``n`` stations on a line, 2 km apart (every pair far enough to be home and work)."""
    lat = 45.0 + np.arange(n) * 2.0 / 111.195
    return Stations([f"s{i}" for i in range(n)], lat, np.full(n, 9.0))


def _rhythm(slots: int) -> np.ndarray:
    hour = np.arange(slots) % 24
    shape = 0.2 + np.exp(-0.5 * ((hour - 13) / 4.0) ** 2)
    return shape / shape.sum()


def _simulate(n_users: int, weeks: int, seed: int) -> tuple[UserMobility, np.ndarray, np.ndarray, np.ndarray]:
    """Users of TimeGEO's temporal model with the same (N_W, BETA1, BETA2) and known homes; the even users
    commute to a known work place on weekdays 9h-17h. Hourly steps from a Monday."""
    rng = np.random.default_rng(seed)
    n_stations, t = 12, 168 * weeks
    line = week_timeline(START, "1h", t)
    rhythm = _rhythm(168)
    home = rng.integers(0, n_stations, n_users)
    work = np.where(
        np.arange(n_users) % 2 == 0, (home + 1 + rng.integers(0, n_stations - 1, n_users)) % n_stations, -1
    )
    at_work = line["weekday"] & (line["hour"] >= 9) & (line["hour"] < 17)
    anchor = np.where((work[:, None] >= 0) & at_work[None, :], work[:, None], home[:, None])
    loc = np.empty((n_users, t), dtype=np.int64)
    loc[:, 0] = anchor[:, 0]
    a, b, c = N_W, BETA1 * N_W, BETA2 * N_W
    for k in range(t - 1):
        p = rhythm[line["slot"][k]]
        here, nxt = loc[:, k], loc[:, k].copy()
        at_anchor = here == anchor[:, k]
        draw, burst = rng.random(n_users), rng.random(n_users)
        leave = at_anchor & (draw < a * p)
        trip = ~at_anchor & (draw < b * p)
        hop = trip & (burst < c * p)
        nxt[trip & ~hop] = anchor[trip & ~hop, k]
        for i in np.flatnonzero(leave | hop):  # any station but the anchors and the current one
            banned = {int(here[i]), int(home[i]), int(work[i])}
            nxt[i] = rng.choice([s for s in range(n_stations) if s not in banned])
        commute = anchor[:, k + 1] != anchor[:, k]
        nxt[commute] = anchor[commute, k + 1]
        loc[:, k + 1] = nxt
    return UserMobility(loc, START, "1h", _grid_stations(n_stations)), home, work, rhythm


@pytest.fixture(scope="module")
def simulated():
    data, home, work, rhythm = _simulate(n_users=200, weeks=4, seed=0)
    # 15 of the 20 weekdays: a commuter's work, never a place a non-commuter happened to visit on 3 weekdays
    return get("timegeo", work_min_days=15).fit(data, progress=False), home, work, rhythm


def test_home_and_work_are_the_simulated_ones(simulated):
    gen, home, work, _ = simulated
    np.testing.assert_array_equal(gen.parameters_["home"], home)
    np.testing.assert_array_equal(gen.parameters_["work"], work)


def test_rhythm_and_rates_recover_the_simulated_values(simulated):
    gen, work, rhythm = simulated[0], simulated[2], simulated[3]
    params = gen.parameters_
    assert np.corrcoef(params["rhythm"], rhythm)[0, 1] > 0.95
    # Per-user estimates from 4 weeks are noisy; their median is within 15 % of the truth, for the commuters
    # (whose tours from work end with the commute home) and the others alike.
    for users in (work >= 0, work < 0):
        assert np.median(params["n_w"][users]) == pytest.approx(N_W, rel=0.15)
        assert np.nanmedian(params["beta1"][users]) == pytest.approx(BETA1, rel=0.15)
        assert np.nanmedian(params["beta2"][users]) == pytest.approx(BETA2, rel=0.15)


def test_exploration_parameters_are_recovered_and_p_new_decreases_with_visited_places():
    rng = np.random.default_rng(1)
    rho, gamma = 0.6, 0.21
    visited = rng.integers(1, 60, 40_000)
    new = rng.random(len(visited)) < rho * visited**-gamma
    fitted_rho, fitted_gamma = fit_exploration(visited, new)
    assert fitted_rho == pytest.approx(rho, abs=0.05) and fitted_gamma == pytest.approx(gamma, abs=0.03)
    s = np.arange(1, 100)
    p_new = fitted_rho * s**-fitted_gamma
    assert np.all(np.diff(p_new) < 0)


def test_exploration_on_the_synthetic_city_decreases_with_visited_places():
    from cellsynth.data.synthetic import CityConfig, synthesize_city

    city = synthesize_city(CityConfig(n_stations=30, n_users=40, weeks=1))
    gen = get("timegeo").fit(city.users, progress=False)
    assert 0 < gen.rho_ <= 1 and gen.gamma_ > 0
    s = np.arange(1, 30)
    assert np.all(np.diff(gen.rho_ * s**-gen.gamma_) < 0)


def test_rank_exponent_is_recovered_from_explorations_on_a_line():
    # Stations on a line at distance = index from station 0; each user goes from 0 to one new station of rank
    # j = its index, chosen with weight j^-alpha, and back.
    rng = np.random.default_rng(2)
    n, alpha = 40, 0.86
    ranks = np.arange(1, n)
    chosen = rng.choice(ranks, size=5000, p=ranks**-alpha / np.sum(ranks**-alpha))
    loc = np.stack([np.zeros_like(chosen), chosen, np.zeros_like(chosen)], axis=1)
    trips = Transitions(
        np.arange(len(chosen)), np.zeros(len(chosen), dtype=np.int64), np.ones(len(chosen), dtype=np.int64)
    )
    fitted = fit_rank_exponent(
        loc, trips, np.ones(len(chosen), dtype=bool), lambda i: np.abs(np.arange(n) - i) * 1.0
    )
    assert fitted == pytest.approx(alpha, abs=0.05)


def test_generated_users_keep_their_profile_home_at_night():
    gen = get("timegeo").fit(tiny_users(), progress=False)
    out = gen.generate(20, seed=3)
    night = week_timeline(out.start, out.step, out.n_steps)["hour"] < 5
    homes = set(gen.parameters_["home"].tolist())
    assert set(np.unique(out.locations[:, night][:, 0]).tolist()) <= homes
    assert out.has_traffic and (out.traffic >= 0).all()


def test_fit_refuses_data_it_cannot_model():
    data = tiny_users()
    no_coordinates = UserMobility(data.locations, START, "30min", Stations(data.stations.ids))
    with pytest.raises(DataError, match="needs their lat/lon"):
        get("timegeo").fit(no_coordinates, progress=False)
    short = UserMobility(data.locations[:, :40], START, "30min", data.stations)
    with pytest.raises(DataError, match="at least one day .*40 steps"):
        get("timegeo").fit(short, progress=False)
    odd = UserMobility(data.locations, pd.Timestamp(START), "5h", data.stations)
    with pytest.raises(DataError, match="must divide a day"):
        get("timegeo").fit(odd, progress=False)


def test_user_days_get_the_rhythm_of_a_day():
    """Data shorter than a week (MoveSim's GeoLife user-days): P(t) has one value per step of a day, and the
    generated users follow it: more moves at the hours the training users moved."""
    data = tiny_users()
    one_day = UserMobility(data.locations[:, :48], START, "30min", data.stations)
    gen = get("timegeo").fit(one_day, progress=False)
    rhythm = gen.parameters_["rhythm"]
    assert rhythm.shape == (48,) and np.isclose(rhythm.sum(), 1.0)
    assert (gen.parameters_["work"] == -1).all()  # one day holds fewer weekdays than the work rule needs
    out = gen.generate(30, seed=0)
    assert out.locations.shape == (30, 48) and out.n_steps == 48
