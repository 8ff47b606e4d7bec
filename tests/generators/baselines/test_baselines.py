"""STOUTER's baselines (tcn-gan, vae, diffwave): shared conditioning, learning beyond a trivial floor, exact
resume of the GAN's manual optimisation, sampler options. The contract itself is in test_conformance.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from cellsynth.data import Stations, StationTraffic
from cellsynth.data.samples import split_samples
from cellsynth.errors import ConfigError, DataError
from cellsynth.generators import get, get_class
from cellsynth.generators.conditioning import StationFeatures, training_weeks
from cellsynth.training import loader, seed_everything, train

START = pd.Timestamp("2026-01-05", tz="Europe/Rome")
BASELINES = ("tcn-gan", "vae", "diffwave")


def daily_traffic(n: int = 8, weeks: int = 2, seed: int = 0, features: bool = True) -> StationTraffic:
    """A strong daily cycle (peak at 20:00, as Beijing's), station levels, log-normal noise; 2 channels."""
    rng = np.random.default_rng(seed)
    t = np.arange(168 * weeks)
    daily = 1.2 + np.cos(2 * np.pi * (t % 24 - 20) / 24)
    level = rng.lognormal(0, 0.3, (n, 1, 1))
    values = level * daily[None, :, None] * rng.lognormal(0, 0.15, (n, len(t), 2))
    stations = Stations(
        ids=[f"s{i}" for i in range(n)],
        features=np.log(level[:, :, 0]) + rng.normal(0, 0.01, (n, 1)) if features else None,
        feature_names=("level",) if features else (),
    )
    return StationTraffic(values, START, "1h", ("internet", "sms"), stations)


def daily_profile(values: np.ndarray) -> np.ndarray:
    """Mean over everything but the hour of the day: ``[..., T, C]`` -> ``[24, C]``."""
    return values.reshape(-1, values.shape[-2] // 24, 24, values.shape[-1]).mean((0, 1))


# Enough training for each model to pick up a daily cycle on 8 stations x 2 weeks, in seconds.
LEARNS = {
    "vae": {"epochs": 20, "lr": 3e-3},
    "diffwave": {
        "epochs": 60,
        "residual_channels": 16,
        "lr": 3e-3,
        "num_train_timesteps": 100,
        "beta_end": 0.1,
        "extensions": {"ema_decay": 0.9},
        "sampling": {"steps": 10},
    },
    "tcn-gan": {
        "epochs": 20,
        "lr": 3e-3,
        "hidden": 16,
        "critic_hidden": 16,
        "dilations": (1, 3, 9),
        "batch_size": 2,
        "n_critic": 3,
    },
}


@pytest.mark.parametrize("name", BASELINES)
def test_tiny_fit_beats_a_trivial_floor(name):
    """The generated daily profile follows the real one; unlearned noise does not."""
    data = daily_traffic()
    gen = get(name, {**get_class(name).smoke_config(), **LEARNS[name]}).fit(data, progress=False)
    _, values = split_samples(gen.generate(data, samples=4, seed=0))
    real, generated = daily_profile(data.values), daily_profile(values)
    noise = np.random.default_rng(0).random(real.shape)
    for c in range(2):
        learned = np.corrcoef(real[:, c], generated[:, c])[0, 1]
        floor = np.corrcoef(real[:, c], noise[:, c])[0, 1]
        assert learned > 0.7 and learned > floor + 0.3, (name, c, learned, floor)
    # The level is learned too (generated traffic is within a factor 2 of the real mean).
    assert 0.5 < values.mean() / data.values.mean() < 2.0


def test_gan_resume_after_interruption_is_exact(tmp_path):
    """Manual optimisation with n_critic = 3: a run stopped after epoch 4 (4 critic updates, the next generator
    update due at the 6th) and resumed equals an uninterrupted one (both networks' weights, the rhythm)."""
    gen = get("tcn-gan", {**get_class("tcn-gan").smoke_config(), "n_critic": 3})
    data = daily_traffic(n=5, weeks=1)  # 5 series, batch 8: one batch (one critic update) per epoch
    series = torch.from_numpy(np.ascontiguousarray(data.values.transpose(0, 2, 1))).float()
    dataset = torch.utils.data.TensorDataset(torch.log1p(series), torch.zeros(5, 0))

    def fit(epochs, checkpoint_dir=None):
        seed_everything(0)
        module = gen._module(gen._network(2, 0, 168))
        train(
            module,
            loader(dataset, batch_size=8, seed=0),
            max_epochs=epochs,
            stage="tcn-gan",
            seed=0,
            checkpoint_dir=checkpoint_dir,
            progress=False,
            gradient_clip_val=None,
        )
        return module

    def weights(module):
        return torch.cat([p.detach().flatten() for p in module.parameters()])

    uninterrupted = fit(7)
    fit(4, checkpoint_dir=tmp_path)  # "killed" after epoch 4
    resumed = fit(7, checkpoint_dir=tmp_path)
    assert int(resumed.critic_updates) == int(uninterrupted.critic_updates) == 7
    assert torch.equal(weights(resumed), weights(uninterrupted))
    assert not torch.equal(weights(fit(4)), weights(uninterrupted))


def test_generator_refuses_checkpoints_of_another_config(tmp_path):
    data = daily_traffic(n=4, weeks=1)
    smoke = get_class("vae").smoke_config()
    get("vae", {**smoke, "epochs": 1}).fit(data, progress=False, checkpoint_dir=tmp_path)
    assert (tmp_path / "checkpoints" / "vae" / "last.ckpt").exists()
    with pytest.raises(ConfigError, match="different config"):
        get("vae", {**smoke, "epochs": 1, "latent_dim": 3}).fit(data, progress=False, checkpoint_dir=tmp_path)


def test_diffwave_samplers_and_options():
    data = daily_traffic(n=3, weeks=1)
    gen = get("diffwave", get_class("diffwave").smoke_config()).fit(data, progress=False)
    ddim = gen.generate(data, seed=0)
    assert np.array_equal(ddim.values, gen.generate(data, seed=0, sampler="ddim", steps=5).values)
    for sampler in ("ddpm", "dpm-solver"):
        out = gen.generate(data, seed=0, sampler=sampler, steps=4)
        assert out.values.shape == ddim.values.shape and (out.values >= 0).all()
    with pytest.raises(ConfigError, match="unknown sampler"):
        gen.generate(data, sampler="euler")
    with pytest.raises(DataError, match="unknown option"):
        gen.generate(data, guidance=2.0)
    with pytest.raises(DataError, match="unknown option"):
        get("vae", get_class("vae").smoke_config()).fit(data, progress=False).generate(data, sampler="ddim")


def test_new_stations_are_conditioned_on_their_features():
    """Two planned sites with very different features get different traffic from the same noise."""
    data = daily_traffic()
    gen = get("vae", {**get_class("vae").smoke_config(), **LEARNS["vae"]}).fit(data, progress=False)
    lo, hi = data.stations.features.min(), data.stations.features.max()
    planned = Stations(["quiet", "busy"], features=[[lo], [hi]], feature_names=("level",))
    out = gen.generate(planned, samples=8, seed=0)
    _, values = split_samples(out)
    assert values[1].mean() > values[0].mean()


def test_station_features_standardise_with_training_constants():
    train_st = Stations(
        ["a", "b", "c"],
        lat=[45.0, 45.01, 45.02],
        lon=[9.0, 9.0, 9.01],
        features=[[1.0], [3.0], [5.0]],
        feature_names=("poi",),
    )
    sf = StationFeatures().fit(train_st)
    s = sf.transform(train_st)
    assert s.shape == (3, 3) and s.dtype == np.float32
    np.testing.assert_allclose(s.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(s.std(0), 1, atol=1e-5)
    new = Stations(["n"], lat=[45.0], lon=[9.0], features=[[7.0]], feature_names=("poi",))
    assert sf.transform(new)[0, 0] == pytest.approx((7 - 3) / np.std([1, 3, 5]))
    assert StationFeatures(use_coordinates=False).fit(train_st).dim == 1
    with pytest.raises(DataError, match="features"):
        sf.transform(Stations(["x"], lat=[45.0], lon=[9.0], features=[[1.0]], feature_names=("other",)))
    with pytest.raises(DataError, match="coordinates"):
        sf.transform(Stations(["x"], features=[[1.0]], feature_names=("poi",)))
    # Round trip through the saved state.
    tensors, meta = sf.state()
    np.testing.assert_array_equal(StationFeatures.from_state(tensors, meta).transform(new), sf.transform(new))
    # No features and no coordinates: the hour of the week is the only condition.
    assert StationFeatures().fit(Stations(["a", "b"])).dim == 0


def test_stations_without_features_still_train_and_generate():
    data = daily_traffic(n=4, weeks=1, features=False)
    gen = get("vae", get_class("vae").smoke_config()).fit(data, progress=False)
    assert gen.generate(3, samples=2, seed=0).n_stations == 6


def test_training_weeks():
    data = daily_traffic(n=2, weeks=2)
    assert training_weeks(data, "x").shape == (2, 2, 168, 2)
    with pytest.warns(UserWarning, match="last 24 step"):
        assert training_weeks(data.slice_steps(0, 168 + 24), "x").shape == (2, 1, 168, 2)
    with pytest.raises(DataError, match="less than one week"):
        training_weeks(data.slice_steps(0, 100), "x")
    with pytest.raises(DataError, match="multiple of 16"):
        training_weeks(data, "x", multiple=16)


@pytest.mark.parametrize("name", BASELINES)
def test_generated_weeks_stay_within_the_widened_training_range(name):
    """Above: the training range of z widened by ``clip_margin``; below: the training minimum itself
    (``training_floor``), or the widened range without it. A draw far outside lands on those bounds."""
    data = daily_traffic(n=4, weeks=1)  # positive everywhere: 0 traffic is a value this data never takes
    gen = get(name, get_class(name).smoke_config()).fit(data, progress=False)
    values = gen.generate(data, samples=4, seed=0).values
    lo, hi = gen.scaler_.z_min_, gen.scaler_.z_max_
    top = gen.scaler_.inverse((hi + 0.1 * (hi - lo))[None, :])[0]
    floor = data.values.min(axis=(0, 1))
    assert (values <= top * (1 + 1e-5)).all() and (values >= floor * (1 - 1e-5)).all()

    def far(net, vectors, **_):  # every other step far below, the rest far above the training range
        z = torch.full((len(vectors), data.n_channels, 168), 50.0)
        z[..., ::2] = -50.0
        return z

    bottom = gen.scaler_.inverse((lo - 0.1 * (hi - lo))[None, :])[0]
    gen._draw = far
    clipped = gen.generate(data, samples=2, seed=0).values
    np.testing.assert_allclose(clipped[:, ::2], np.broadcast_to(floor, clipped[:, ::2].shape), rtol=1e-5)
    np.testing.assert_allclose(clipped[:, 1::2], np.broadcast_to(top, clipped[:, 1::2].shape), rtol=1e-5)
    gen.config = get(name, {**get_class(name).smoke_config(), "extensions": {"training_floor": False}}).config
    unfloored = gen.generate(data, samples=2, seed=0).values
    assert (bottom < floor).all()
    np.testing.assert_allclose(unfloored[:, ::2], np.broadcast_to(bottom, unfloored[:, ::2].shape), rtol=1e-5)

    loose = get(name, {**get_class(name).smoke_config(), "extensions": {"clip_margin": None}})
    loose.fit(data, progress=False)
    assert np.isfinite(loose.generate(data, samples=4, seed=0).values).all()


@pytest.mark.parametrize("name", BASELINES)
def test_old_flat_option_names_read_as_the_nested_ones(name):
    """Configs and saved models written before the sections existed still load (moved_fields)."""
    flat = {"normalisation": "unit", "clip_margin": None, "generation_batch_size": 7}
    nested = {"extensions": {"normalisation": "unit", "clip_margin": None}, "sampling": {"batch_size": 7}}
    if name == "diffwave":
        flat |= {"ema_decay": 0.5, "sampler": "ddpm", "sampling_steps": 9}
        nested["extensions"]["ema_decay"] = 0.5
        nested["sampling"] |= {"sampler": "ddpm", "steps": 9}
    assert get(name, flat).config == get(name, nested).config
