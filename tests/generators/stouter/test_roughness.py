"""extensions.timestep_power "auto": the hour-to-hour spread (analytic cases), the ratio of a model's
weeks to its training weeks, and the fit that trains STUNet again at low noise exactly when its weeks are
too smooth, as a fit with that power would."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cellsynth
from cellsynth.errors import ConfigError
from cellsynth.generators import get
from cellsynth.generators.stouter import generator as stouter_generator
from cellsynth.generators.stouter.config import StouterConfig
from cellsynth.generators.stouter.roughness import AUTO_POWER, auto_note, hour_to_hour_spread, roughness_ratio
from cellsynth.transforms.scaling import LogScaler
from tests.generators.stouter.test_generator import TINY, tiny_traffic


def test_spread_of_a_ramp_is_zero_and_of_a_zigzag_is_its_step():
    hours = np.arange(168, dtype=float)
    ramp = 0.5 * hours
    zigzag = np.where(hours % 2 == 0, 1.0, -1.0)  # 167 changes: 84 of -2, 83 of +2
    z = np.stack([ramp, zigzag], axis=-1)[None]  # [1, 168, 2]
    mean = -2.0 / 167
    np.testing.assert_allclose(hour_to_hour_spread(z), [0.0, np.sqrt(4.0 - mean**2)], atol=1e-12)


def test_spread_never_crosses_from_one_week_to_the_next():
    weeks = np.zeros((1, 2, 168, 1))
    weeks[0, 1] = 10.0  # each week flat, a jump between them that no hour-to-hour change sees
    np.testing.assert_allclose(hour_to_hour_spread(weeks), [0.0])


@settings(max_examples=25, deadline=None)
@given(
    st.floats(0.1, 10.0),
    st.floats(-5.0, 5.0),
    st.integers(0, 2**31 - 1),
)
def test_spread_scales_with_the_series_and_ignores_a_shift(scale, shift, seed):
    z = np.random.default_rng(seed).normal(size=(3, 2, 24, 2))
    np.testing.assert_allclose(
        hour_to_hour_spread(scale * z + shift), scale * hour_to_hour_spread(z), rtol=1e-9
    )


def test_spread_needs_hours_to_compare():
    with pytest.raises(ValueError, match="at least 2 steps"):
        hour_to_hour_spread(np.zeros((4, 1, 3)))


class _Replay:
    """A stand-in for a fitted STOUTER that returns each station's first training week, smoothed by a moving
    average of ``width`` hours (1: the real week itself)."""

    def __init__(self, data, width: int):
        self.data, self.width = data, width
        self.scaler_ = LogScaler().fit(data.values)

    def generate(self, stations, *, samples, seed):
        chosen = self.data.select_stations(self.data.stations.index_of(stations.ids))
        week = chosen.values[:, :168]
        kernel = np.ones(self.width) / self.width
        smooth = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), 1, week)
        ids = [f"{i}#{k}" for i in chosen.stations.ids for k in range(samples)]
        stations = chosen.stations.take(np.repeat(np.arange(len(ids) // samples), samples), ids)
        return type(chosen)(
            np.repeat(smooth, samples, 0), chosen.start, chosen.step, chosen.channels, stations
        )


@pytest.fixture(scope="module")
def data():
    return tiny_traffic(n=12, weeks=1)


def _real_z(model, data):
    return model.scaler_.transform(data.values).reshape(data.n_stations, 1, 168, -1)


def test_a_model_that_replays_its_training_weeks_has_ratio_one(data):
    model = _Replay(data, width=1)
    assert roughness_ratio(model, data, _real_z(model, data), seed=0) == pytest.approx(1.0)


def test_a_smoothed_replay_has_ratio_below_one(data):
    model = _Replay(data, width=5)
    assert roughness_ratio(model, data, _real_z(model, data), seed=0) < 0.8


def _auto(data, monkeypatch, threshold: float):
    monkeypatch.setattr(stouter_generator, "SMOOTH_RATIO", threshold)
    return get("stouter", TINY | {"epochs": 2, "extensions": {"timestep_power": "auto"}}).fit(
        data, progress=False
    )


def test_auto_keeps_the_uniform_steps_when_the_weeks_are_rough_enough(data, monkeypatch):
    gen = _auto(data, monkeypatch, threshold=0.0)
    assert gen.timestep_power_ == 1.0 and gen.roughness_ > 0
    assert gen.fit_notes()[-1] == auto_note(gen.roughness_, 1.0)
    assert "stunet-low-noise" not in gen.history_
    plain = get("stouter", TINY | {"epochs": 2}).fit(data, progress=False)
    for a, b in zip(gen.stunet_.state_dict().values(), plain.stunet_.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_auto_trains_again_at_low_noise_when_the_weeks_are_too_smooth(data, monkeypatch, tmp_path):
    gen = _auto(data, monkeypatch, threshold=np.inf)
    assert gen.timestep_power_ == AUTO_POWER and "stunet-low-noise" in gen.history_
    assert gen.fit_notes()[-1] == auto_note(gen.roughness_, AUTO_POWER)
    # The second fit is the fit with that power, weight for weight.
    low = get("stouter", TINY | {"epochs": 2, "extensions": {"timestep_power": AUTO_POWER}}).fit(
        data, progress=False
    )
    for a, b in zip(gen.stunet_.state_dict().values(), low.stunet_.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    gen.save(tmp_path / "model")
    loaded = cellsynth.load(tmp_path / "model")
    assert (loaded.timestep_power_, loaded.roughness_) == (AUTO_POWER, gen.roughness_)
    np.testing.assert_array_equal(loaded.generate(data, seed=3).values, gen.generate(data, seed=3).values)


def test_auto_is_refused_under_privacy_and_the_private_settings_fix_it():
    with pytest.raises(ConfigError, match="timestep_power 'auto'"):
        get("stouter", {"extensions": {"level_model": "none", "known_level": "all", "timestep_power": "auto"},
                        "privacy": {"epsilon": 4.0}})  # fmt: skip
    assert StouterConfig.private_settings["extensions"]["timestep_power"] == 1.0


def test_the_note_says_what_auto_found_and_chose():
    assert auto_note(0.95, 1.0) == (
        "stouter: its weeks for its training stations have 0.95 of the real hour-to-hour spread (at least 0.9): "
        "trained with uniform steps (timestep_power auto -> 1)"
    )
    assert auto_note(0.8, 2.0).endswith(
        "0.80 of the real hour-to-hour spread (below 0.9): STUNet trained again with the low-noise steps drawn "
        "more often (timestep_power auto -> 2)"
    )


def test_auto_resumes_both_stunet_stages_as_an_uninterrupted_run(data, monkeypatch, tmp_path):
    monkeypatch.setattr(stouter_generator, "SMOOTH_RATIO", np.inf)  # always train again
    config = TINY | {"extensions": {"timestep_power": "auto"}}
    get("stouter", config | {"epochs": 1}).fit(data, progress=False, checkpoint_dir=tmp_path)
    assert (tmp_path / "checkpoints" / "stunet-low-noise" / "last.ckpt").exists()
    resumed = get("stouter", config | {"epochs": 2}).fit(data, progress=False, checkpoint_dir=tmp_path)
    fresh = get("stouter", config | {"epochs": 2}).fit(data, progress=False)
    assert {k: len(v) for k, v in resumed.history_.items()} == {k: len(v) for k, v in fresh.history_.items()}
    for a, b in zip(resumed.stunet_.state_dict().values(), fresh.stunet_.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
