"""VOLUNTEER: stay events from station sequences, the geometric travel and dwell laws, their separate
heads, and generated sequences whose stays last exactly the decoded dwell times."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellsynth.generators import get
from cellsynth.generators.baselines.trajectories.volunteer import (
    VolunteerGenerator,
    _station_xy,
    extract_events,
    fill_steps,
)
from cellsynth.nn.volunteer import VolunteerNet, geometric_log_prob, sample_geometric
from cellsynth.testing import tiny_users


def test_events_split_stays_from_travel():
    locations = np.array([[3, 3, 5, 3, 3, 3, 7], [1, 1, 1, 2, 2, 2, 2]])
    events = extract_events(locations, min_stay=2)
    assert events.mask.tolist() == [[True, True], [True, True]]
    assert events.location.tolist() == [[3, 3], [1, 2]]
    assert events.travel.tolist() == [[0, 1], [0, 0]]  # one step at 5 in transit
    assert events.dwell.tolist() == [[2, 3], [3, 4]]
    assert events.arrival.tolist() == [[0, 3], [0, 3]]
    # the first user's last stay ended (7 is a journey without destination); the second's runs to the end
    assert events.censored.tolist() == [[False, False], [False, True]]
    assert events.fallback == 0


def test_a_user_without_a_stay_gets_its_longest_run():
    events = extract_events(np.array([[1, 2, 2, 3]]), min_stay=3)
    assert events.fallback == 1
    assert (events.location[0, 0], events.travel[0, 0], events.dwell[0, 0]) == (2, 1, 2)


def test_fill_steps_places_travel_on_the_line_and_stays_for_their_dwell():
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
    location, travel, dwell = np.array([[2, 4, 1]]), np.array([[0, 2, 0]]), np.array([[3, 2, 10]])
    # travel from x = 2 to x = 4 in 2 steps: points 2.67 and 3.33, both nearest station 3
    assert fill_steps(location, travel, dwell, 10, xy)[0].tolist() == [2, 2, 2, 3, 3, 4, 4, 1, 1, 1]
    assert fill_steps(location, travel, dwell, 10, None)[0].tolist() == [2, 2, 2, 4, 4, 4, 4, 1, 1, 1]
    with pytest.raises(ValueError, match="cover 7 of 10"):
        fill_steps(location[:, :2], travel[:, :2], dwell[:, :2], 10, None)


def test_geometric_law_sums_to_one_and_draws_match_its_mean():
    logit = torch.tensor([np.log(0.3 / 0.7)])
    k = torch.arange(1, 400)
    assert torch.logsumexp(geometric_log_prob(logit.expand(len(k)), k, shift=1), 0).item() == pytest.approx(
        0, abs=1e-9
    )
    censored = geometric_log_prob(logit, torch.tensor([4]), shift=1, censored=torch.tensor([True]))
    assert censored.item() == pytest.approx(3 * np.log(0.7))  # P(D >= 4) = 0.7^3
    draws = sample_geometric(logit.expand(50_000), shift=1, generator=torch.Generator().manual_seed(0))
    assert draws.min().item() == 1
    assert draws.double().mean().item() == pytest.approx(1 / 0.3, rel=0.02)


def _net() -> VolunteerNet:
    torch.manual_seed(0)
    return VolunteerNet(5, 168, location_dim=4, time_dim=4, hidden=8, latent_dim=3, user_latent_dim=3)


def test_travel_and_dwell_heads_are_separate():
    net = _net()
    h = torch.randn(6, 8)
    here, previous = torch.tensor([0, 1, 2, 3, 4, 0]), torch.tensor([1, 1, 0, 2, 2, 4])
    near, far = torch.zeros(6), torch.full((6,), 10.0)
    # travel depends on the distance between the stations, dwell on the hour of arrival; never the other
    assert not torch.allclose(
        net.travel_logit(h, previous, here, near), net.travel_logit(h, previous, here, far)
    )
    hours = torch.arange(6)
    assert not torch.allclose(net.dwell_logit(h, here, hours), net.dwell_logit(h, here, hours + 12))
    travel_nll = -geometric_log_prob(net.travel_logit(h, previous, here, far), torch.arange(6), shift=0).sum()
    grads = torch.autograd.grad(travel_nll, list(net.dwell_head.parameters()), allow_unused=True)
    assert all(g is None for g in grads)
    dwell_nll = -geometric_log_prob(net.dwell_logit(h, here, hours), torch.arange(1, 7), shift=1).sum()
    grads = torch.autograd.grad(dwell_nll, list(net.travel_head.parameters()), allow_unused=True)
    assert all(g is None for g in grads)


@pytest.fixture(scope="module")
def fitted():
    return get("volunteer", VolunteerGenerator.smoke_config()).fit(tiny_users(), progress=False)


def test_generated_stays_last_their_decoded_dwell_times(fitted):
    events = fitted.sample_events(6, seed=3)
    out = fitted.generate(6, seed=3)
    n_steps = out.n_steps
    xy = _station_xy(fitted.stations_)
    assert np.array_equal(
        out.locations, fill_steps(events["location"], events["travel"], events["dwell"], n_steps, xy)
    )
    begin = np.zeros(6, dtype=np.int64)
    checked = 0
    for j in range(events["location"].shape[1]):
        arrival = begin + events["travel"][:, j]
        for i in np.flatnonzero(arrival < n_steps):
            end = min(arrival[i] + events["dwell"][i, j], n_steps)
            assert (out.locations[i, arrival[i] : end] == events["location"][i, j]).all()
            checked += 1
        begin = arrival + events["dwell"][:, j]
    assert checked >= 6 and (begin >= n_steps).all()


def test_dwell_times_are_learned():
    """tiny_users stay 16 or 32 half-hours (22 on average); an untrained decoder draws about 4."""
    data = tiny_users()
    real = extract_events(data.locations, 2)
    config = VolunteerGenerator.smoke_config() | {"epochs": 20, "lr": 1e-2, "batch_size": 12}
    out = get("volunteer", config).fit(data, progress=False).generate(20, seed=0)
    generated = extract_events(out.locations, 2)
    ratio = generated.dwell[generated.mask].mean() / real.dwell[real.mask].mean()
    assert 0.5 < ratio < 2.0


@pytest.mark.parametrize("name", ["volunteer", "pategail"])
def test_stations_without_coordinates_and_users_without_traffic(name):
    from cellsynth.data import Stations, UserMobility
    from cellsynth.generators import get_class

    data = tiny_users()
    bare = UserMobility(data.locations, data.start, data.step, Stations(data.stations.ids))
    out = get(name, get_class(name).smoke_config()).fit(bare, progress=False).generate(4, seed=0)
    assert out.traffic is None and out.locations.shape == (4, data.n_steps)
    assert out.stations.equals(bare.stations)
