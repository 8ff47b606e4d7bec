"""extensions.timestep_power "auto": the inner split (by week with several weeks per station, else by
station), the score of a model's weeks against the held-out ones, and the fit that uses the power the
inner validation chose, as a fit with that power would."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import cellsynth
from cellsynth.errors import ConfigError
from cellsynth.generators import get
from cellsynth.generators.base import training_weeks
from cellsynth.generators.stouter import validation
from cellsynth.generators.stouter.config import StouterConfig
from cellsynth.generators.stouter.validation import AUTO_POWER, auto_note, inner_split
from tests.generators.stouter.test_generator import TINY, tiny_traffic

AUTO = TINY | {"epochs": 2, "extensions": {"timestep_power": "auto"}}


@pytest.fixture(scope="module")
def data():
    return tiny_traffic(n=12, weeks=1)


def test_one_week_per_station_holds_out_a_fifth_of_the_stations(data):
    train, held_out, how = inner_split(data, weeks=1, seed=4)
    assert held_out.n_stations == 2 and train.n_stations == 10  # round(12 * 0.2)
    assert set(train.stations.ids).isdisjoint(held_out.stations.ids)
    assert set(train.stations.ids) | set(held_out.stations.ids) == set(data.stations.ids)
    assert how == "2 of 12 stations held out"
    again, _, _ = inner_split(data, weeks=1, seed=4)
    assert list(again.stations.ids) == list(train.stations.ids)  # the fit's seed decides


def test_several_weeks_per_station_hold_out_every_stations_last_week():
    data = tiny_traffic(n=5, weeks=3)
    train, held_out, how = inner_split(data, weeks=3, seed=0)
    assert list(train.stations.ids) == list(held_out.stations.ids) == list(data.stations.ids)
    assert (train.n_steps, held_out.n_steps) == (2 * 168, 168)
    np.testing.assert_array_equal(held_out.values, data.values[:, 2 * 168 :])
    assert how == "every station's last week held out"


class _Replay:
    """A stand-in for a fitted STOUTER that returns each station's first real week, smoothed by a moving
    average of ``width`` hours (1: the real week itself)."""

    def __init__(self, data, width: int):
        self.data, self.width = data, width

    def generate(self, target, *, samples, seed):
        chosen = self.data.select_stations(self.data.stations.index_of(target.stations.ids))
        kernel = np.ones(self.width) / self.width
        week = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), 1, chosen.values[:, :168])
        ids = [f"{i}#{k}" for i in chosen.stations.ids for k in range(samples)]
        stations = chosen.stations.take(np.repeat(np.arange(len(ids) // samples), samples), ids)
        return type(chosen)(np.repeat(week, samples, 0), chosen.start, chosen.step, chosen.channels, stations)


def test_a_model_that_replays_the_held_out_weeks_scores_zero_and_a_smoothed_one_more(data):
    real = training_weeks(data, "stouter", 4)
    exact = validation._first_difference_jsd(_Replay(data, width=1), data, real, seed=0)
    smooth = validation._first_difference_jsd(_Replay(data, width=5), data, real, seed=0)
    assert exact == pytest.approx(0.0, abs=1e-12)
    assert smooth > 0.1


@pytest.mark.parametrize("favoured", [1.0, AUTO_POWER])
def test_auto_fits_with_the_power_the_validation_favours_as_a_fit_with_it_would(data, favoured, monkeypatch):
    # The score of each inner fit: 0 for the favoured power, 1 for the other.
    monkeypatch.setattr(
        validation, "_first_difference_jsd", lambda model, *args: float(model.timestep_power_ != favoured)
    )
    gen = get("stouter", AUTO).fit(data, progress=False)
    assert gen.timestep_power_ == favoured
    assert gen.validation_ == {
        "power": favoured,
        "split": "2 of 12 stations held out",
        "diff_jsd": {"1": float(favoured != 1.0), "2": float(favoured != AUTO_POWER)},
    }
    # The inner fits leave no trace in the final one: it is the plain fit with that power, weight for weight.
    plain = get("stouter", TINY | {"epochs": 2, "extensions": {"timestep_power": favoured}}).fit(
        data, progress=False
    )
    for a, b in zip(gen.stunet_.state_dict().values(), plain.stunet_.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_tie_keeps_the_papers_uniform_steps(data, monkeypatch):
    monkeypatch.setattr(validation, "_first_difference_jsd", lambda *args: 0.5)
    assert get("stouter", AUTO).fit(data, progress=False).timestep_power_ == 1.0


def test_auto_chooses_the_lower_score_and_keeps_its_reasons_through_save_and_load(data, tmp_path):
    gen = get("stouter", AUTO).fit(data, progress=False)
    scores = gen.validation_["diff_jsd"]
    assert set(scores) == {"1", "2"} and all(0.0 <= v <= 1.0 for v in scores.values())
    assert gen.timestep_power_ == (AUTO_POWER if scores["2"] < scores["1"] else 1.0)
    assert gen.fit_notes()[-1] == auto_note(gen.validation_)
    gen.save(tmp_path / "model")
    loaded = cellsynth.load(tmp_path / "model")
    assert (loaded.timestep_power_, loaded.validation_) == (gen.timestep_power_, gen.validation_)
    np.testing.assert_array_equal(loaded.generate(data, seed=3).values, gen.generate(data, seed=3).values)


def test_too_few_stations_to_split_keep_uniform_steps_and_say_why():
    data = tiny_traffic(n=3, weeks=1)  # the levels need 3 stations; the inner training part has 2
    gen = get("stouter", AUTO).fit(data, progress=False)
    assert gen.timestep_power_ == 1.0 and gen.validation_["split"] is None
    assert "at least 3 training stations, got 2" in gen.validation_["reason"]
    assert gen.fit_notes()[-1].startswith(
        "stouter: timestep_power auto -> 1 (uniform steps) without a validation"
    )


def test_auto_is_refused_under_privacy_and_the_private_settings_fix_it():
    with pytest.raises(ConfigError, match="timestep_power 'auto'"):
        get("stouter", {"extensions": {"level_model": "none", "known_level": "all", "timestep_power": "auto"},
                        "privacy": {"epsilon": 4.0}})  # fmt: skip
    assert StouterConfig.private_settings["extensions"]["timestep_power"] == 1.0


def test_the_note_says_what_auto_found_and_chose():
    choice = {"power": 2.0, "split": "2 of 12 stations held out", "diff_jsd": {"1": 0.0183, "2": 0.0142}}
    assert auto_note(choice) == (
        "stouter: on a validation split of its training data (2 of 12 stations held out), first-difference JSD "
        "0.0183 with uniform training steps, 0.0142 with the low-noise steps drawn more often: "
        "timestep_power auto -> 2"
    )


def test_auto_resumes_its_inner_fits_and_the_final_one_as_an_uninterrupted_run(data, tmp_path):
    get("stouter", AUTO | {"epochs": 1}).fit(data, progress=False, checkpoint_dir=tmp_path)
    for power in ("p1", "p2"):
        assert (
            tmp_path / "checkpoints" / "validation" / power / "checkpoints" / "stunet" / "last.ckpt"
        ).exists()
    resumed = get("stouter", AUTO).fit(data, progress=False, checkpoint_dir=tmp_path)
    fresh = get("stouter", AUTO).fit(data, progress=False)
    assert resumed.validation_ == fresh.validation_
    for a, b in zip(resumed.stunet_.state_dict().values(), fresh.stunet_.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_with_progress_each_inner_fit_is_announced(data, monkeypatch, capsys):
    monkeypatch.setattr(validation, "_first_difference_jsd", lambda *args: 0.5)
    get("stouter", AUTO | {"epochs": 1}).fit(data, progress=True)
    lines = [line for line in capsys.readouterr().err.splitlines() if "inner fit" in line]
    assert lines == [
        f"stouter: timestep_power auto, inner fit with p = {p} on the training data less the validation part "
        "(2 of 12 stations held out)"
        for p in (1, 2)
    ]


def test_ten_weeks_per_station_hold_out_the_last_two():
    data = tiny_traffic(n=3, weeks=10)
    train, held_out, how = inner_split(data, weeks=10, seed=0)
    assert (train.n_steps, held_out.n_steps) == (8 * 168, 2 * 168)
    assert how == "every station's last 2 weeks held out"
