"""STOUTER end to end on a tiny synthetic city: it learns the daily cycle (beats a flat / noise floor),
never generates negative traffic, is seeded, round-trips through save/load, embeds new stations
inductively, runs every sampler, resumes from checkpoints, and fails clearly on bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import cellsynth
from cellsynth.data.model import Stations, StationTraffic, UserMobility
from cellsynth.data.samples import split_samples
from cellsynth.diffusion import gaussian
from cellsynth.errors import ConfigError, DataError
from cellsynth.generators import get
from cellsynth.generators.presets import PRESET_DIR
from cellsynth.generators.stouter import StouterConfig, StouterGenerator
from tests.conftest import REPO_ROOT

START = pd.Timestamp("2026-01-05", tz="Europe/Rome")  # a Monday
CHANNELS = ("internet", "sms")

# Small enough to fit in seconds, big enough to learn a daily cycle.
TINY = {
    "temporal_hidden_dim": 16,
    "temporal_embed_dim": 8,
    "station_hidden_dim": 16,
    "station_embed_dim": 8,
    "pretrain_epochs": 3,
    "pretrain_steps_per_epoch": 10,
    "channels": 16,
    "channel_mults": (1, 2, 2),
    "context_dim": 16,
    "epochs": 15,
    "batch_size": 4,
    "lr": 2e-3,
    "num_train_timesteps": 100,
    "beta_schedule": "squaredcos_cap_v2",  # DDPM's linear betas need T ~ 1000 to reach pure noise
    "extensions": {"ema_decay": 0.99},
    "sampling": {"steps": 20},
}


def tiny_stations(n: int, seed: int = 0, prefix: str = "bs") -> Stations:
    rng = np.random.default_rng(seed)
    return Stations(
        ids=[f"{prefix}{i:02d}" for i in range(n)],
        lat=45.46 + rng.normal(0, 0.005, n),
        lon=9.19 + rng.normal(0, 0.005, n),
        features=rng.poisson(5, (n, 3)),
        feature_names=("poi_office", "poi_home", "poi_bar"),
    )


def tiny_traffic(
    n: int = 12, weeks: int = 2, seed: int = 0, step: str = "1h", stations=None
) -> StationTraffic:
    """A daily cycle (trough at 02:00, peak at 14:00) times a station level times log-normal noise."""
    rng = np.random.default_rng(seed)
    per_hour = pd.Timedelta("1h") / pd.Timedelta(step)
    hours = np.arange(int(168 * weeks * per_hour)) / per_hour
    daily = 1.5 + np.sin(2 * np.pi * (hours % 24 - 8) / 24)
    level = rng.lognormal(0, 0.3, (n, 1, 1))
    values = level * daily[None, :, None] * np.array([10.0, 2.0]) * rng.lognormal(0, 0.15, (n, len(hours), 2))
    stations = tiny_stations(n, seed) if stations is None else stations
    return StationTraffic(values, START, step, CHANNELS, stations)


@pytest.fixture(scope="module")
def data() -> StationTraffic:
    return tiny_traffic()


@pytest.fixture(scope="module")
def fitted(data, tmp_path_factory) -> StouterGenerator:
    gen = get("stouter", TINY)
    assert gen.fit(data, progress=False, checkpoint_dir=tmp_path_factory.mktemp("run")) is gen
    return gen


def daily_profile(values: np.ndarray) -> np.ndarray:
    """Mean over everything but the hour of day, channel 0; ``values`` [..., T, C]."""
    return values[..., 0].reshape(-1, values.shape[-2] // 24, 24).mean(axis=(0, 1))


def test_learns_the_daily_cycle_and_beats_the_floor(fitted, data):
    assert_learns_the_daily_cycle(fitted, data)


def test_a_velocity_predicting_stunet_learns_the_daily_cycle_too(data, tmp_path):
    """``extensions.prediction: velocity``: trained on v and sampled through its implied noise. Read as a
    noise instead, the same network's weeks are nothing like the data (the conversion is what samples)."""
    gen = get("stouter", TINY | {"extensions": TINY["extensions"] | {"prediction": "velocity"}})
    gen.fit(data, progress=False, checkpoint_dir=tmp_path)
    assert_learns_the_daily_cycle(gen, data)
    misread = gen.config.model_copy(
        update={"extensions": gen.config.extensions.model_copy(update={"prediction": "noise"})}
    )
    gen.config = misread
    real, wrong = daily_profile(data.values), daily_profile(gen.generate(data, samples=2, seed=0).values)
    assert wrong.max() / wrong.min() > 1.5 * real.max() / real.min()  # measured: 11.8 against 5.1


def assert_learns_the_daily_cycle(fitted: StouterGenerator, data: StationTraffic) -> None:
    out = fitted.generate(data, samples=2, seed=0)
    ids, values = split_samples(out)
    assert ids == list(data.stations.ids) and values.shape == (12, 2, 168, 2)
    assert np.isfinite(values).all() and (values >= 0).all()
    real = daily_profile(data.values)
    generated = daily_profile(values)
    noise = daily_profile(np.random.default_rng(0).lognormal(0, 1, values.shape))
    corr = np.corrcoef(real, generated)[0, 1]
    assert corr > 0.8 and corr > np.corrcoef(real, noise)[0, 1] + 0.5  # a flat profile has no correlation
    # the daily swing and the level come out right within a factor 1.5 / 2
    swing_real, swing_gen = real.max() / real.min(), generated.max() / generated.min()
    assert swing_real / 1.5 < swing_gen < swing_real * 1.5
    ratio = values.mean(axis=(0, 1, 2)) / data.values.mean(axis=(0, 1))
    assert ((ratio > 0.5) & (ratio < 2)).all()
    assert fitted.history_["stunet"][-1] < 0.6 * fitted.history_["stunet"][0]
    assert fitted.history_["temporal-encoder"][-1] < fitted.history_["temporal-encoder"][0]


def test_samples_never_fall_below_the_smallest_training_value(fitted, data):
    """``training_floor``: every channel here is positive everywhere, so no sample may be 0 or below the
    training minimum; switched off, the clip range reaches ``clip_margin`` below it."""
    out = fitted.generate(data, samples=4, seed=1)
    floor = data.values.min(axis=(0, 1))
    assert (out.values >= floor * (1 - 1e-6)).all() and (out.values > 0).all()
    lo, hi = fitted._output_range()
    z_min, z_max = fitted.scaler_.z_min_, fitted.scaler_.z_max_
    assert np.array_equal(lo, z_min) and np.allclose(hi, z_max + 0.1 * (z_max - z_min))
    free = get("stouter", {**TINY, "extensions": {**TINY.get("extensions", {}), "training_floor": False}})
    free.scaler_ = fitted.scaler_
    assert np.allclose(free._output_range()[0], z_min - 0.1 * (z_max - z_min))


def test_output_time_axis(fitted, data):
    out = fitted.generate(data.stations.subset([0, 1]), seed=0)
    assert out.start == data.start and out.step == data.step and out.n_steps == 168
    assert out.channels == CHANNELS and list(out.stations.ids) == ["bs00", "bs01"]


def test_same_seed_same_output(fitted, data):
    a = fitted.generate(data, samples=2, seed=5)
    assert np.array_equal(a.values, fitted.generate(data, samples=2, seed=5).values)
    assert not np.array_equal(a.values, fitted.generate(data, samples=2, seed=6).values)
    # batching is an implementation detail for deterministic samplers: same x_T, same result
    small = fitted.generate(data, samples=2, seed=5, batch_size=7)
    np.testing.assert_allclose(small.values, a.values, rtol=1e-4, atol=1e-4 * a.values.max())


def test_save_load_round_trip(fitted, data, tmp_path):
    fitted.save(tmp_path / "model")
    loaded = cellsynth.load(tmp_path / "model")
    assert isinstance(loaded, StouterGenerator) and loaded.config == fitted.config
    for kwargs in ({"sampler": "ddim"}, {"sampler": "ddpm", "steps": 10}):
        np.testing.assert_array_equal(
            loaded.generate(data, samples=2, seed=3, **kwargs).values,
            fitted.generate(data, samples=2, seed=3, **kwargs).values,
        )
    new = tiny_stations(2, seed=7, prefix="planned")
    np.testing.assert_array_equal(loaded.generate(new, seed=1).values, fitted.generate(new, seed=1).values)


def test_new_stations_are_embedded_inductively(fitted, data):
    train_emb = fitted.station_embeddings(data.stations)
    torch.testing.assert_close(train_emb, fitted.station_embeddings_)  # seen stations: their own embedding
    planned = tiny_stations(3, seed=99, prefix="planned")
    emb = fitted.station_embeddings(planned)
    assert emb.shape == (3, 8) and torch.isfinite(emb).all()
    # one planned site's embedding does not depend on the others generated with it
    torch.testing.assert_close(fitted.station_embeddings(planned.subset([1]))[0], emb[1])
    # a copy of a training station under another id is embedded from its place and features: close to it
    copy = Stations(
        ["twin"],
        data.stations.lat[:1],
        data.stations.lon[:1],
        data.stations.features[:1],
        data.stations.feature_names,
    )
    twin = fitted.station_embeddings(copy)[0]
    assert torch.cosine_similarity(twin, train_emb[0], dim=0) > 0.5
    out = fitted.generate(planned, samples=2, seed=0)
    assert list(out.stations.ids) == [f"planned{i:02d}#{j}" for i in range(3) for j in range(2)]
    assert (out.values >= 0).all() and out.n_steps == 168
    drawn = fitted.generate(4, seed=2)
    assert drawn.n_stations == 4 and all("@" in sid for sid in drawn.stations.ids)


@pytest.mark.parametrize(
    ("sampler", "steps"), [("ddpm", None), ("ddim", 10), ("dpm-solver", 8), ("dpm-solver", None)]
)
def test_every_sampler_runs(fitted, data, sampler, steps):
    out = fitted.generate(data.stations.subset([0, 1, 2]), samples=2, seed=0, sampler=sampler, steps=steps)
    assert out.values.shape == (6, 168, 2) and (out.values >= 0).all() and np.isfinite(out.values).all()
    assert np.corrcoef(daily_profile(data.values), daily_profile(out.values))[0, 1] > 0.5


def test_resume_equals_an_uninterrupted_run_and_refuses_other_configs(data, tmp_path):
    smoke = StouterGenerator.smoke_config()
    get("stouter", smoke | {"epochs": 1}).fit(data, progress=False, checkpoint_dir=tmp_path)
    pretrained = tmp_path / "checkpoints" / "temporal-encoder" / "last.ckpt"
    stamp = pretrained.stat().st_mtime_ns
    resumed = get("stouter", smoke | {"epochs": 2}).fit(data, progress=False, checkpoint_dir=tmp_path)
    assert pretrained.stat().st_mtime_ns == stamp  # the finished pretraining stage did not run again
    fresh = get("stouter", smoke | {"epochs": 2}).fit(data, progress=False)
    # the histories come back from the checkpoints: the resumed run reports every epoch, as the fresh one
    assert {k: len(v) for k, v in resumed.history_.items()} == {k: len(v) for k, v in fresh.history_.items()}
    for key, value in fresh.stunet_.state_dict().items():
        torch.testing.assert_close(resumed.stunet_.state_dict()[key], value, rtol=0, atol=0, msg=key)
    with pytest.raises(ConfigError, match="different config"):
        get("stouter", smoke | {"lr": 1e-2}).fit(data, progress=False, checkpoint_dir=tmp_path)
    with pytest.raises(ConfigError, match="different training data"):
        get("stouter", smoke).fit(tiny_traffic(seed=1), progress=False, checkpoint_dir=tmp_path)


def test_ablation_without_stations_features_at_30_minute_steps(tmp_path):
    # No features and no coordinates: only use_spatial=False can train; 30-minute weeks have 336 steps.
    stations = Stations([f"c{i}" for i in range(6)])
    data = tiny_traffic(n=6, weeks=1, step="30min", stations=stations)
    with pytest.raises(DataError, match="neither feature columns nor coordinates"):
        get("stouter", StouterGenerator.smoke_config()).fit(data, progress=False)
    cfg = StouterGenerator.smoke_config() | {"use_spatial": False, "use_stffm": False}
    gen = get("stouter", cfg).fit(data, progress=False)
    out = gen.generate(stations.subset([2]), samples=2, seed=0)  # more weeks of a training station
    assert out.values.shape == (2, 336, 2) and out.step == pd.Timedelta("30min") and (out.values >= 0).all()
    with pytest.raises(
        DataError, match="nothing to condition a new station on.*refit on stations with features"
    ):
        gen.generate(Stations(["anywhere"]))
    assert gen.station_embeddings(stations) is None and "station_ae.mask_token" not in gen._state()[0]
    # without F_s the level regression has no descriptors: levels are drawn from the training spread
    assert gen.levels_["regression"].beta_.shape == (0, 2)
    gen.save(tmp_path / "m")
    again = cellsynth.load(tmp_path / "m").generate(stations.subset([2]), samples=2, seed=0)
    np.testing.assert_array_equal(again.values, out.values)


def test_bfloat16_sampling_stays_close_to_float32_and_is_the_configs_default_when_set(
    fitted, data, monkeypatch
):
    """STUNet under autocast draws the same weeks to within bfloat16's rounding (the chain is the same
    float32 DDIM from the same x_T); ``sampling.precision`` makes it the default of ``generate``. The CPU
    is taken as native bfloat16 so that autocast runs on any test machine (else float32, tested apart)."""
    monkeypatch.setattr(gaussian, "native_bfloat16", lambda device: True)
    full = fitted.generate(data, samples=2, seed=3).values
    half = fitted.generate(data, samples=2, seed=3, precision="bfloat16").values
    assert half.dtype == np.float32 and np.isfinite(half).all()
    assert not np.array_equal(full, half)
    assert np.abs(half - full).mean() < 0.05 * np.abs(full).mean()
    saved = fitted.config
    try:
        fitted.config = saved.model_copy(
            update={"sampling": saved.sampling.model_copy(update={"precision": "bfloat16"})}
        )
        assert np.array_equal(fitted.generate(data, samples=2, seed=3).values, half)
    finally:
        fitted.config = saved
    with pytest.raises(ConfigError, match="unknown sampling precision 'float16'"):
        fitted.generate(data, precision="float16")


def test_bad_input(fitted, data):
    smoke = StouterGenerator.smoke_config()
    users = UserMobility(np.zeros((2, 336), int), START, "30min", data.stations)
    with pytest.raises(DataError, match="trains on StationTraffic"):
        get("stouter", smoke).fit(users, progress=False)
    with pytest.raises(DataError, match="less than one week"):
        get("stouter", smoke).fit(data.slice_steps(0, 100), progress=False)
    odd_step = StationTraffic(np.ones((3, 30, 1)), START, "5h", ("x",), tiny_stations(3))
    with pytest.raises(DataError, match="does not divide 7 days"):
        get("stouter", smoke).fit(odd_step, progress=False)
    eight_hours = StationTraffic(
        np.ones((3, 42, 1)), START, "8h", ("x",), tiny_stations(3)
    )  # 21 steps a week
    with pytest.raises(DataError, match="multiple of 2"):
        get("stouter", smoke).fit(eight_hours, progress=False)
    other = Stations(["x"], [45.46], [9.19], [[1.0]], ("poi_other",))
    with pytest.raises(DataError, match="features"):
        fitted.generate(other)
    no_xy = Stations(["x"], features=[[1, 2, 3]], feature_names=data.stations.feature_names)
    with pytest.raises(DataError, match="lat/lon"):
        fitted.generate(no_xy)
    with pytest.raises(DataError, match="unknown option"):
        fitted.generate(data, temperature=2.0)
    with pytest.raises(ConfigError, match="unknown sampler"):
        fitted.generate(data, sampler="euler")
    with pytest.raises(ConfigError, match="not_a_field"):
        get("stouter", {"not_a_field": 1})
    with pytest.raises(ConfigError, match="beta_start"):
        get("stouter", {"beta_start": 0.1, "beta_end": 0.01})
    with pytest.raises(ConfigError, match="alpha-bar_T"):  # linear betas at T = 100 never reach pure noise
        get("stouter", {"num_train_timesteps": 100})


def test_partial_week_is_reported(data):
    cfg = StouterGenerator.smoke_config() | {"epochs": 1, "pretrain_epochs": 1}
    with pytest.warns(UserWarning, match="last 10 step"):
        get("stouter", cfg).fit(data.slice_steps(0, 178), progress=False)


@pytest.mark.parametrize(
    "path",
    sorted((REPO_ROOT / "configs").glob("**/stouter*.yaml"))
    + sorted((PRESET_DIR / "stouter").glob("*.yaml")),
    ids=lambda p: p.name if p.is_relative_to(PRESET_DIR) else str(p.relative_to(REPO_ROOT)),
)
def test_config_files_validate(path):
    config = yaml.safe_load(path.read_text()) or {}
    assert isinstance(get("stouter", config).config, StouterConfig)


def test_a_model_saved_with_the_old_flat_config_loads(fitted, data, tmp_path):
    """generator.json written before the config had sections (extensions, sampling) loads as the nested one."""
    fitted.save(tmp_path / "model")
    meta_path = tmp_path / "model" / "generator.json"
    record = json.loads(meta_path.read_text())
    flat = {k: v for k, v in record["config"].items() if k not in ("extensions", "sampling")}
    flat |= record["config"]["extensions"]
    sampling = record["config"]["sampling"]
    flat |= {"sampler": sampling["sampler"], "sampling_steps": sampling["steps"]}
    flat["generation_batch_size"] = sampling["batch_size"]
    assert "clip_margin" in flat and "extensions" not in flat
    meta_path.write_text(json.dumps(record | {"config": flat}))
    loaded = cellsynth.load(tmp_path / "model")
    assert loaded.config == fitted.config
    np.testing.assert_array_equal(
        loaded.generate(data, samples=2, seed=3).values, fitted.generate(data, samples=2, seed=3).values
    )
    with pytest.raises(ConfigError, match="'clip_margin' is the old name of 'extensions.clip_margin'"):
        get("stouter", {"clip_margin": 0.2, "extensions": {"clip_margin": 0.3}})


def test_paper_preset_switches_every_extension_off(data):
    gen = get("stouter", StouterGenerator.smoke_config(), preset="paper")
    assert gen.config.extensions.model_dump() == {
        "normalisation": "standard",
        "level_model": "none",
        "level_condition": False,
        "shape_scale": "pooled",
        "attention_heads": 0,
        "day_attention": 0,
        "norm": "group",
        "ema_decay": 0.0,
        "known_level": "all",
        "recent_weeks": 1,
        "station_profile": False,
        "clip_margin": None,
        "training_floor": False,
        "prediction": "noise",
        "timestep_power": 1.0,
    }
    assert gen.config.sampling.sampler == "ddpm"
    gen.fit(data, progress=False)
    assert gen.levels_ is None and gen.stunet_.mid_attention is None
    out = gen.generate(data, seed=0)
    assert out.values.shape == (12, 168, 2) and np.isfinite(out.values).all() and (out.values >= 0).all()


def test_prediction_is_the_noise_or_the_velocity():
    assert get("stouter", preset="paper").config.extensions.prediction == "noise"
    with pytest.raises(ConfigError, match="prediction"):
        get("stouter", {"extensions": {"prediction": "x0"}})
    from cellsynth.generators.diffusion_training import EpsilonModule

    with pytest.raises(ValueError, match="prediction must be one of"):
        EpsilonModule(torch.nn.Linear(1, 1), gaussian.GaussianDiffusion(10), lr=1e-3, weight_decay=0.0,
                      ema_decay=0.9, prediction="x0")  # fmt: skip


@pytest.mark.parametrize("power", [0.0, -1.0, float("inf")])
def test_timestep_power_must_be_a_positive_number(power):
    with pytest.raises(ConfigError, match="timestep_power"):
        get("stouter", {"extensions": {"timestep_power": power}})


def test_stunet_trains_on_timesteps_drawn_with_the_configs_power(data, monkeypatch):
    powers = []
    draw = gaussian.GaussianDiffusion.sample_timesteps

    def recording(self, batch, **kwargs):
        powers.append(kwargs.get("power", 1.0))
        return draw(self, batch, **kwargs)

    monkeypatch.setattr(gaussian.GaussianDiffusion, "sample_timesteps", recording)
    get("stouter", TINY | {"epochs": 1, "extensions": {"timestep_power": 2.0}}).fit(data, progress=False)
    assert powers and set(powers) == {2.0}
