"""MSTDiff's user-traffic baselines (csdi, dit): learning beyond a trivial floor, the Markov floor's
trajectories, the week folded into days, CSDI's optimiser, sampler options and the errors of a fit that
cannot work. The contract itself is in test_conformance.py."""

from __future__ import annotations

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch

from cellsynth.data import UserMobility
from cellsynth.errors import CellsynthError, ConfigError, DataError
from cellsynth.generators import get, get_class
from cellsynth.generators.floors.markov import hour_keys, trajectory_model
from cellsynth.metrics.traffic import log_value_jsd, value_jsd
from cellsynth.testing import tiny_stations, tiny_users

START = pd.Timestamp("2026-01-05", tz="Europe/Rome")
USER_BASELINES = ("csdi", "dit")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks train faster on one thread on a shared machine; the previous setting is restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def daily_users(n: int = 192, seed: int = 0) -> UserMobility:
    """A week at 30 minutes: a daily cycle peaking at 20:00, log-normal user levels and noise; users at home."""
    rng = np.random.default_rng(seed)
    hour = (np.arange(336) / 2) % 24
    daily = 1.1 + np.cos(2 * np.pi * (hour - 20) / 24)
    traffic = rng.lognormal(0, 0.5, (n, 1)) * daily[None] * rng.lognormal(0, 0.2, (n, 336))
    locations = np.repeat(rng.integers(0, 6, n)[:, None], 336, axis=1)
    return UserMobility(locations, START, "30min", tiny_stations(6), traffic=traffic)


def daily_profile(traffic: np.ndarray) -> np.ndarray:
    """The mean day ``[48]`` of ``[users, 336]``."""
    return traffic.reshape(-1, 7, 48).mean((0, 1))


# Enough training for each model to learn the distribution of values and the daily cycle, in seconds.
LEARNS = {
    "csdi": {"epochs": 4, "lr": 3e-3, "extensions": {"ema_decay": 0.9}},
    "dit": {
        "epochs": 8,
        "lr": 3e-3,
        "num_train_timesteps": 100,
        "beta_end": 0.1,
        "extensions": {"ema_decay": 0.9},
        "sampling": {"steps": 20},
    },
}


@pytest.mark.parametrize("name", USER_BASELINES)
def test_tiny_fit_beats_a_trivial_floor(name):
    """Generated values are distributed closer to the real ones than Gaussian noise of the same mean and
    standard deviation (cut at 0), and the mean day follows the real one."""
    data = daily_users()
    gen = get(name, {**get_class(name).smoke_config(), **LEARNS[name]}).fit(data, progress=False)
    real, generated = data.traffic, gen.generate(data.n_users, seed=0).traffic
    noise = np.maximum(np.random.default_rng(0).normal(real.mean(), real.std(), real.shape), 0.0)
    assert value_jsd(real, generated) < 0.8 * value_jsd(real, noise)
    assert log_value_jsd(real, generated) < 0.8 * log_value_jsd(real, noise)
    assert np.corrcoef(daily_profile(real), daily_profile(generated))[0, 1] > 0.7
    assert 0.5 < generated.mean() / real.mean() < 2.5


@pytest.fixture(scope="module", params=USER_BASELINES)
def smoke_fitted(request):
    data = tiny_users()
    return get(request.param, get_class(request.param).smoke_config()).fit(data, progress=False), data


def test_trajectories_are_the_markov_floors(smoke_fitted):
    """The locations are the Markov floor's trajectory model, fitted on the same users, drawn with the seed."""
    gen, data = smoke_fitted
    out = gen.generate(7, seed=3)
    hours = hour_keys(data.start, data.step, data.n_steps, weekly=False)
    expected = trajectory_model(data).sample(7, hours, np.random.default_rng(3))
    np.testing.assert_array_equal(out.locations, expected)
    assert out.traffic.shape == (7, 336) and (out.traffic >= 0).all()


def test_samplers_and_options(smoke_fitted):
    gen, _ = smoke_fitted
    default = gen.generate(4, seed=0)
    sampler, steps = gen.config.resolve_sampler()
    assert default.equals(gen.generate(4, seed=0, sampler=sampler, steps=steps))
    for other in ("ddpm", "ddim", "dpm-solver"):
        out = gen.generate(4, seed=0, sampler=other, steps=4)
        assert out.traffic.shape == (4, 336) and np.isfinite(out.traffic).all()
    with pytest.raises(ConfigError, match="unknown sampler"):
        gen.generate(4, sampler="euler")
    with pytest.raises(DataError, match="unknown option.*guidance"):
        gen.generate(4, guidance=2.0)
    with pytest.raises(DataError, match="give their number, not samples"):
        gen.generate(4, samples=2)


def test_generated_traffic_stays_in_the_widened_training_range(smoke_fitted):
    gen, _ = smoke_fitted
    z = gen.scaler_.transform(gen.generate(20, seed=1).traffic[..., None])
    width = gen.scaler_.z_max_ - gen.scaler_.z_min_
    margin = gen.config.extensions.clip_margin
    assert z.max() <= gen.scaler_.z_max_ + margin * width + 1e-6


def test_csdi_folds_the_week_into_days():
    gen = get("csdi", get_class("csdi").smoke_config()).fit(tiny_users(), progress=False)
    assert (gen.net_.n_features, gen.net_.length) == (7, 48)  # 7 days x 48 half-hours
    flat = get("csdi", get_class("csdi").smoke_config() | {"extensions": {"days_as_features": False}})
    flat.fit(tiny_users(), progress=False)
    assert (flat.net_.n_features, flat.net_.length) == (1, 336)


def test_csdi_learning_rate_falls_at_its_milestones():
    gen = get("csdi", {"epochs": 20})
    gen.time_, gen.n_steps_ = {"step": "PT30M"}, 336
    module = gen._module(gen._network(336))
    config = module.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["weight_decay"] == 1e-6
    lrs = []
    for _ in range(20):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    np.testing.assert_allclose(lrs[:15], 1e-3)
    np.testing.assert_allclose(lrs[15:18], 1e-4)
    np.testing.assert_allclose(lrs[18:], 1e-5)


@pytest.fixture
def training_forbidden(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training started before the input was refused")

    monkeypatch.setattr(L.Trainer, "fit", refuse)


def _without_traffic() -> UserMobility:
    data = tiny_users()
    return UserMobility(data.locations, data.start, data.step, data.stations)


def _odd_length() -> UserMobility:
    data = tiny_users()
    return UserMobility(
        data.locations[:, :330], data.start, data.step, data.stations, traffic=data.traffic[:, :330]
    )


@pytest.mark.parametrize(
    ("name", "overrides", "make_data", "message"),
    [
        ("csdi", {}, _without_traffic, "generates users' traffic, but this data has locations only"),
        ("dit", {}, _without_traffic, "locations only; fit markov or mstdiff"),
        ("dit", {"patch_size": 5}, tiny_users, r"patch_size = 5 .* 336 steps; set patch_size to a divisor"),
        ("csdi", {}, _odd_length, "330 steps of 0 days 00:30:00 are not whole days.*days_as_features: false"),
    ],
)
def test_fit_refuses_unusable_input_before_training(training_forbidden, name, overrides, make_data, message):
    gen = get(name, get_class(name).smoke_config() | overrides)
    with pytest.raises(DataError, match=message) as err:
        gen.fit(make_data(), progress=False)
    assert isinstance(err.value, CellsynthError) and "\n" not in str(err.value)


def test_configs_refuse_inconsistent_sizes():
    with pytest.raises(ConfigError, match="divisible by heads"):
        get("csdi", {"channels": 10, "heads": 4})
    with pytest.raises(ConfigError, match="divisible by heads"):
        get("dit", {"hidden": 30, "heads": 4})
    with pytest.raises(ConfigError, match="beta_start .* must be < beta_end"):
        get("dit", {"beta_start": 0.1, "beta_end": 0.01})
    with pytest.raises(ConfigError, match="lr_milestones"):
        get("csdi", {"lr_milestones": [1.5]})
