"""DiffTraj: the snap to stations is exact, the U-Net keeps the trajectory's shape for any length, and the trip
attributes are what they say."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import ndtri

from cellsynth.data import Stations, UserMobility
from cellsynth.errors import DataError
from cellsynth.generators import get
from cellsynth.generators.baselines.trajectories.difftraj import (
    gaussianise_stations,
    snap_to_stations,
    trip_attributes,
    ungaussianise,
)
from cellsynth.nn.difftraj import DiffTrajNet, TrajUNet, _Attention
from cellsynth.testing import START, tiny_users


def test_snap_maps_each_position_to_its_nearest_station_exactly():
    rng = np.random.default_rng(0)
    stations = rng.uniform(-10, 10, (57, 2))
    points = rng.uniform(-12, 12, (4, 33, 2))
    brute = np.linalg.norm(points[..., None, :] - stations, axis=-1).argmin(axis=-1)
    np.testing.assert_array_equal(snap_to_stations(points, stations), brute)
    # a position on a station snaps to that station
    np.testing.assert_array_equal(snap_to_stations(stations[None], stations)[0], np.arange(57))


@pytest.mark.parametrize("length", [16, 37, 48, 336])
def test_unet_output_has_the_input_shape(length):
    net = TrajUNet(
        2, ch=8, ch_mult=(1, 2, 2, 2), num_res_blocks=2, attention_lengths=(), dropout=0.0, length=length
    )
    x = torch.randn(3, 2, length)
    assert net(x, torch.tensor([0, 10, 499])).shape == (3, 2, length)


def test_attention_sits_at_the_configured_lengths_and_guidance_keeps_the_shape():
    net = DiffTrajNet(
        64, 5, (16, 16), ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, attention_lengths=(32,), hidden_dim=4
    )
    # lengths 64, 32, 16: attention in the 32-long level, down and up, and always in the middle
    assert sum(isinstance(m, _Attention) for m in net.unet.down_attn) == 1
    assert sum(isinstance(m, _Attention) for m in net.unet.up_attn) == 2
    x, t = torch.randn(5, 2, 64), torch.randint(0, 500, (5,))
    cont, cat = torch.randn(5, 5), torch.randint(0, 16, (5, 2))
    assert net.guided(x, t, cont, cat, 3.0).shape == (5, 2, 64)
    # scale 0 is the conditional prediction
    net.eval()
    torch.testing.assert_close(net.guided(x, t, cont, cat, 0.0), net(x, t, cont, cat))


def test_trip_attributes_of_a_known_trajectory():
    # 0 -> 0 -> 1 -> 1 -> 2 on stations at x = 0, 3, 7 km: two moves, 7 km, 3.5 km a move, 3 places
    station_xy = np.array([[0.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
    loc = np.array([[0, 0, 1, 1, 2]])
    xy = station_xy[loc]
    continuous, cells = trip_attributes(xy, loc, np.array([[0.0, 0.0], [7.0, 7.0]]), cells=7)
    centre = xy[0].mean(axis=0)
    radius = np.sqrt(((xy[0] - centre) ** 2).sum(axis=1).mean())
    np.testing.assert_allclose(continuous[0], [7.0, 2.0, 3.5, radius, 3.0])
    np.testing.assert_array_equal(
        cells[0], [0, 6 * 7]
    )  # first cell (0, 0); last (6, 0): x clipped into the grid


def test_fit_needs_coordinates_and_generate_refuses_unknown_options(monkeypatch):
    data = tiny_users()
    no_coordinates = UserMobility(data.locations, START, "30min", Stations(data.stations.ids))
    gen = get("difftraj", get("difftraj").smoke_config())
    with monkeypatch.context() as patched:  # refused before any training starts
        patched.setattr(L.Trainer, "fit", lambda *a, **k: pytest.fail("training started"))
        with pytest.raises(DataError, match="needs the stations' lat/lon") as err:
            gen.fit(no_coordinates, progress=False)
    assert "\n" not in str(err.value)
    gen.fit(data, progress=False)
    with pytest.raises(DataError, match=r"unknown option\(s\) \['eta'\]"):
        gen.generate(3, eta=0.0)
    out = gen.generate(3, seed=0, sampler="ddpm", steps=None)
    assert out.locations.shape == (3, data.n_steps) and out.traffic is not None


def test_gaussianised_coordinates_are_the_visits_mid_rank_quantiles():
    # x = 0, 0, 5, 9 km visited 1, 3, 0, 4 times (+1 each: 2, 4, 1, 5 of 12); y all distinct
    xy = np.array([[0.0, 1.0], [0.0, 2.0], [5.0, 3.0], [9.0, 4.0]])
    z = gaussianise_stations(xy, np.array([1, 3, 0, 4]))
    # x: the two stations at 0 share a coordinate (mass 6 of 12, mid-rank 3/12), then 5 (7 - 0.5) and 9
    np.testing.assert_allclose(z[:, 0], ndtri(np.array([3, 3, 6.5, 9.5]) / 12))
    np.testing.assert_allclose(z[:, 1], ndtri(np.array([1, 4, 6.5, 9.5]) / 12))


@settings(max_examples=40, deadline=None)
@given(
    coords=st.lists(st.integers(-2000, 2000), min_size=2, max_size=40),
    seed=st.integers(0, 2**16),
)
def test_gaussianising_is_increasing_and_inverted_exactly_at_the_stations(coords, seed):
    rng = np.random.default_rng(seed)
    xy = np.stack([np.array(coords, float), rng.permutation(np.array(coords, float))], axis=1) / 7
    z = gaussianise_stations(xy, rng.integers(0, 50, len(coords)))
    for axis in range(2):  # the same order as the coordinates, strictly between distinct values
        order = np.argsort(xy[:, axis], kind="stable")
        steps = np.diff(z[order, axis])
        distinct = np.diff(xy[order, axis]) > 0
        assert np.all(steps[distinct] > 0) and np.all(steps[~distinct] == 0)
    np.testing.assert_allclose(ungaussianise(z, xy, z), xy, atol=1e-9)
    # beyond the outermost stations' values: clamped to their coordinates
    far = ungaussianise(np.array([[-40.0, 40.0]]), xy, z)
    np.testing.assert_allclose(far[0], [xy[:, 0].min(), xy[:, 1].max()])


def test_quantile_positions_spread_a_city_that_far_off_places_squeeze():
    # 40 stations within 10 km and 2 at 1,000 km: z-scored, the city is under a fifth of a unit wide
    rng = np.random.default_rng(0)
    xy = np.concatenate([rng.uniform(-10, 10, (40, 2)), [[1000.0, 1000.0], [-1000.0, 900.0]]])
    visits = np.r_[np.full(40, 50), [20, 20]]  # 2 % of the visits far off, as in GeoLife
    weighted = np.repeat(xy, visits, axis=0)
    z_scored = (xy - weighted.mean(axis=0)) / weighted.std(axis=0)
    quantile = gaussianise_stations(xy, visits)
    assert np.ptp(z_scored[:40], axis=0).max() < 0.2
    assert np.ptp(quantile[:40], axis=0).min() > 3


def test_quantile_positions_fit_generate_and_reload(tmp_path):
    data = tiny_users()
    gen = get("difftraj", get("difftraj").smoke_config(), preset="recommended")
    assert gen.config.extensions.positions == "quantile"
    assert gen.config.extensions.prediction == "velocity"
    paper = get("difftraj", preset="paper").config.extensions
    assert (paper.positions, paper.prediction) == ("z-score", "noise")
    gen.fit(data, progress=False)
    assert np.ptp(gen.categories_) > 0  # equal-visit regions: the users do not all start in one cell
    out = gen.generate(4, seed=3)
    assert out.locations.shape == (4, data.n_steps)
    assert out.locations.min() >= 0 and out.locations.max() < len(data.stations)
    gen.save(tmp_path / "run")
    again = type(gen).load(tmp_path / "run").generate(4, seed=3)
    np.testing.assert_array_equal(again.locations, out.locations)


class _PredictsZero(torch.nn.Module):
    def guided(self, x, t, continuous, categories, scale):
        return torch.zeros_like(x)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
@pytest.mark.parametrize("prediction", ["noise", "velocity"])
def test_the_training_target_is_the_noise_or_the_velocity(prediction):
    from cellsynth.generators.baselines.trajectories.difftraj import DiffTrajConfig, _DiffTrajModule

    cfg = DiffTrajConfig(extensions={"prediction": prediction})
    gen = get("difftraj", cfg.model_dump())
    module = _DiffTrajModule(_PredictsZero(), gen._diffusion(), cfg)
    x0 = torch.full((4096, 2, 4), 10.0)  # far from 0: the velocity's x_0 term dominates at noisy steps
    torch.manual_seed(0)
    loss = float(module.training_step((x0, None, None), 0))
    # a zero prediction's loss is E[target^2]: 1 for the noise; E[abar + (1 - abar) 100] for v
    abar = gen._diffusion().alphas_cumprod.double().mean()
    expected = 1.0 if prediction == "noise" else float(abar + (1 - abar) * 100)
    assert loss == pytest.approx(expected, rel=0.05)
