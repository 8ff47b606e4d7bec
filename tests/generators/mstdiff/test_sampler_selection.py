"""MSTDiff's sampler selection: the rule that picks a candidate, the fit that runs it on the training users, the
chosen options as the model's sampling defaults, and its persistence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cellsynth
from cellsynth.data import Stations
from cellsynth.errors import ConfigError
from cellsynth.generators import get
from cellsynth.generators.mstdiff.sampler import TrajectoryOptions
from cellsynth.generators.mstdiff.sampler_selection import (
    COORDINATE_FREE,
    choose_candidate,
    clearly_better,
    resampled_scores,
    score_candidate,
    selection_note,
    with_candidate,
)
from cellsynth.metrics.mobility import TRAJECTORY_STATISTICS
from tests.generators.mstdiff.test_generator import SMALL_FIT, users

pytestmark = pytest.mark.filterwarnings("ignore:mstdiff. the traffic calibration:UserWarning")

#: a sensible candidate and one whose l_0 predictions are all but uniform (users hop at random every step)
CANDIDATES = [{"temperature": 1.0}, {"temperature": 1000.0}]


def scores(*rows):
    return [dict(zip(TRAJECTORY_STATISTICS, row)) for row in rows]


def noise(*rows, spread):
    """[3, C, J] resamples of a table whose every candidate moves by +-``spread`` against the others."""
    table = np.array(rows, dtype=np.float64)
    signs = np.array([[1.0], [-1.0]] * len(rows))[: len(rows)]  # candidates alternate against each other
    return np.stack([table + spread * signs, table, table - spread * signs])


def test_a_large_loss_is_not_outvoted_by_wins_the_size_of_the_noise():
    # the demo city's one-head model: lower on four statistics by far less than the draw moves them, its
    # stays twice too short-lived and its I-rank twice as far (the old mean rank chose it: 2.5 against 2.67)
    coupled = [0.0401, 0.201, 0.0771, 0.0171, 0.0011, 0.0051]
    uncoupled = [0.0400, 0.200, 0.0770, 0.0360, 0.0010, 0.0093]
    resampled = noise(coupled, uncoupled, spread=0.0005)
    chosen, mean_ranks = choose_candidate(scores(coupled, uncoupled), resampled, margin=1.5)
    assert chosen == 0 and mean_ranks == pytest.approx([1.0, 8 / 6])
    # where every difference counts (the rule until 2026-12-07), four small wins outvote two large losses
    assert choose_candidate(scores(coupled, uncoupled), None) == (1, pytest.approx([10 / 6, 8 / 6]))


def test_differences_within_the_noise_keep_the_earlier_candidate():
    first, second = [0.0100] * 6, [0.0099] * 6
    resampled = noise(first, second, spread=0.001)  # the difference moves by 0.002 each way
    assert choose_candidate(scores(first, second), resampled, margin=2.0) == (0, [1.0, 1.0])
    assert choose_candidate(scores(first, second), resampled, margin=0.0) == (1, [2.0, 1.0])
    assert choose_candidate(scores(second, first), resampled, margin=2.0) == (0, [1.0, 1.0])


def test_users_that_never_move_lose_to_every_candidate_that_does():
    still = dict.fromkeys(TRAJECTORY_STATISTICS, float("inf"))
    moving = scores([0.5] * 6)
    resampled = np.stack([np.array([[np.inf] * 6, [0.5] * 6])] * 3)
    assert choose_candidate([still, *moving], resampled) == (1, [2.0, 1.0])
    assert choose_candidate([still, still, *moving], None) == (2, [2.0, 2.0, 1.0])


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.floats(0, 1, allow_nan=False), min_size=6, max_size=6), min_size=2, max_size=5),
    st.floats(0, 3),
    st.integers(0, 2**32 - 1),
)
def test_clearly_better_is_never_both_ways_and_grows_as_the_margin_shrinks(rows, margin, seed):
    table = np.array(rows)
    resampled = table + np.random.default_rng(seed).normal(0, 0.05, (8, *table.shape))
    better = clearly_better(table, resampled, margin)
    assert not (better & better.transpose(1, 0, 2)).any()
    assert (better <= clearly_better(table, resampled, margin / 2)).all()
    assert (clearly_better(table, None, 0.0) == (table[:, None, :] < table[None, :, :])).all()


def test_resamples_are_paired_across_candidates():
    locations = np.random.default_rng(0).integers(0, 3, (20, 8))
    stations = Stations(["a", "b", "c"], [45.0, 45.01, 45.02], [9.0, 9.01, 9.0])
    resampled = resampled_scores(
        locations, [locations, locations.copy()], stations, 5, np.random.default_rng(1)
    )
    assert resampled.shape == (5, 2, 6)
    np.testing.assert_array_equal(resampled[:, 0], resampled[:, 1])  # the same users in every resample
    assert np.ptp(resampled[:, 0], axis=0).max() > 0  # and other users from one resample to the next
    none = resampled_scores(locations, [locations, locations[::-1]], stations, 0, np.random.default_rng(1))
    assert none.shape == (0, 2, 6)
    assert clearly_better(np.eye(2, 6), none, 1.5).sum() == clearly_better(np.eye(2, 6), None, 1.5).sum() > 0
    with pytest.raises(ValueError, match="same number of users"):
        resampled_scores(locations, [locations, locations[:10]], stations, 2, np.random.default_rng(1))


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.floats(0, 1, allow_nan=False), min_size=6, max_size=6), min_size=2, max_size=6),
    st.randoms(use_true_random=False),
)
def test_a_candidate_lowest_on_every_statistic_is_chosen_wherever_it_stands(rows, random):
    best = [min(column) / 2 for column in zip(*rows)]
    position = random.randrange(len(rows) + 1)
    table = scores(*rows[:position], best, *rows[position:])
    assert choose_candidate(table, None)[0] == position


def test_without_coordinates_only_the_four_coordinate_free_statistics_are_scored():
    locations = np.array([[0, 0, 1, 1], [1, 2, 2, 0]])
    with_coordinates = Stations(["a", "b", "c"], [45.0, 45.01, 45.02], [9.0, 9.01, 9.0])
    assert list(score_candidate(locations, locations[::-1], with_coordinates)) == list(TRAJECTORY_STATISTICS)
    scored = score_candidate(locations, locations[::-1], Stations(["a", "b", "c"]))
    assert list(scored) == list(COORDINATE_FREE) and all(v == 0.0 for v in scored.values())


def test_the_fit_note_names_the_rule_of_the_record_old_or_new():
    chosen = {"temperature": 0.7, "trajectory_coupling": 0.995}
    old = {"users": 256, "reference_users": 320, "candidates": [{"mean_rank": 2.0}] * 6, "chosen": chosen}
    assert "lowest mean rank" in selection_note(old)
    new = old | {"margin": 1.5, "resamples": 50}
    note = selection_note(new)
    assert "beyond 1.5 bootstrap sd" in note and "temperature 0.7, trajectory_coupling 0.995" in note


def test_a_candidate_sets_only_the_options_it_names():
    defaults = TrajectoryOptions(temperature=0.7, trajectory_coupling=0.995)
    assert with_candidate(defaults, {"temperature": 1.0, "trajectory_coupling": None}) == TrajectoryOptions(
        temperature=1.0, trajectory_coupling=0.995
    )


def fitted(candidates=CANDIDATES, **overrides):
    config = SMALL_FIT | {"sampler_selection": {"candidates": candidates, "users": 24}} | overrides
    return get("mstdiff", config).fit(users(12, traffic=False), progress=False)


@pytest.mark.parametrize("order", [1, -1])
def test_fit_chooses_the_sensible_candidate_on_the_training_users(order):
    model = fitted(CANDIDATES[::order])
    selection = model.sampler_selection_
    assert selection["chosen"]["temperature"] == 1.0
    assert selection["users"] == 24 and selection["reference_users"] == 12
    assert selection["resamples"] == 50 and selection["margin"] == 1.5
    assert all(set(c) == {"options", "jsd", "jsd_sd", "mean_rank"} for c in selection["candidates"])
    by_temperature = {c["options"]["temperature"]: c for c in selection["candidates"]}
    # the training users stay put for hours: random hops lose on stay durations and distinct places
    for name in ("duration", "distinct_loc"):
        assert by_temperature[1.0]["jsd"][name] < by_temperature[1000.0]["jsd"][name]
    assert any("chosen among 2 candidates" in note for note in model.fit_notes())


def test_the_chosen_options_are_the_defaults_and_given_ones_still_win(tmp_path):
    model = fitted(CANDIDATES[::-1])  # the config's own temperature, 1.0, is not the first candidate
    assert model.sampling_defaults().temperature == 1.0
    chosen = model.generate(6, seed=3).locations
    np.testing.assert_array_equal(chosen, model.generate(6, seed=3, temperature=1.0).locations)
    hot = model.generate(6, seed=3, temperature=1000.0).locations
    assert not np.array_equal(chosen, hot)
    model.save(tmp_path / "m")
    loaded = cellsynth.load(tmp_path / "m")
    assert loaded.sampler_selection_ == model.sampler_selection_
    np.testing.assert_array_equal(loaded.generate(6, seed=3).locations, chosen)


def test_without_resamples_every_difference_counts_and_the_record_still_round_trips(tmp_path):
    selection = {"candidates": CANDIDATES, "users": 24, "resamples": 0}
    model = fitted(sampler_selection=selection)
    record = model.sampler_selection_
    assert record["resamples"] == 0 and record["chosen"]["temperature"] == 1.0
    assert all(sd is None for c in record["candidates"] for sd in c["jsd_sd"].values())
    assert record["candidates"][0]["mean_rank"] < record["candidates"][1]["mean_rank"]
    model.save(tmp_path / "m")
    assert cellsynth.load(tmp_path / "m").sampler_selection_ == record


def test_the_selection_is_drawn_from_the_config_defaults_not_an_earlier_choice():
    model = fitted([{"temperature": 1000.0}])
    assert model.sampling_defaults().temperature == 1000.0
    first = model.sampler_selection_
    model.select_sampling(users(12, traffic=False))
    assert model.sampler_selection_ == first


def test_without_candidates_the_sampling_section_is_the_default():
    model = get("mstdiff", SMALL_FIT).fit(users(12, traffic=False), progress=False)
    assert model.sampler_selection_ is None
    assert model.sampling_defaults() == TrajectoryOptions.resolve(model.config.sampling)
    with pytest.raises(ConfigError, match="sampler_selection.candidates"):
        model.select_sampling(users(12, traffic=False))


@pytest.mark.parametrize(
    "selection, message",
    [
        ({"candidates": [{"coupling": 0.9}]}, "coupling"),
        ({"candidates": [{"trajectory_coupling": 1.5}]}, "trajectory_coupling"),
        ({"candidates": [{"temperature": 0}]}, "temperature"),
        ({"users": 1}, "users"),
        ({"resamples": -1}, "resamples"),
        ({"margin": -0.5}, "margin"),
    ],
)
def test_bad_candidates_are_config_errors_naming_the_field(selection, message):
    with pytest.raises(ConfigError, match=message):
        get("mstdiff", {"sampler_selection": selection})


def test_the_recommended_preset_offers_its_own_sampling_among_the_candidates():
    config = get("mstdiff", preset="recommended").config
    own = {
        "temperature": config.sampling.temperature,
        "trajectory_coupling": config.sampling.trajectory_coupling,
    }
    offered = [c.model_dump(exclude_none=True) for c in config.sampler_selection.candidates]
    assert own in offered and len(offered) > 1
    assert get("mstdiff", preset="paper").config.sampler_selection.candidates == ()
