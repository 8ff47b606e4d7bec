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
    score_candidate,
    with_candidate,
)
from cellsynth.metrics.mobility import TRAJECTORY_STATISTICS
from tests.generators.mstdiff.test_generator import SMALL_FIT, users

pytestmark = pytest.mark.filterwarnings("ignore:mstdiff. the traffic calibration:UserWarning")

#: a sensible candidate and one whose l_0 predictions are all but uniform (users hop at random every step)
CANDIDATES = [{"temperature": 1.0}, {"temperature": 1000.0}]


def scores(*rows):
    return [dict(zip(TRAJECTORY_STATISTICS, row)) for row in rows]


def test_the_candidate_lowest_on_most_statistics_wins_over_the_lowest_sum():
    # the first is lowest on five of six but far behind on one; the second has the lower sum
    table = scores([0.01, 0.01, 0.01, 0.01, 0.01, 0.9], [0.02, 0.02, 0.02, 0.02, 0.02, 0.02])
    chosen, mean_ranks = choose_candidate(table)
    assert chosen == 0 and mean_ranks == pytest.approx([7 / 6, 11 / 6])


def test_equal_mean_ranks_go_to_the_lower_sum_then_the_first():
    table = scores([0.1, 0.1, 0.1, 0.2, 0.2, 0.2], [0.2, 0.2, 0.2, 0.05, 0.05, 0.05])
    assert choose_candidate(table) == (1, [1.5, 1.5])
    assert choose_candidate(scores([0.1] * 6, [0.1] * 6))[0] == 0


def test_users_that_never_move_rank_last():
    still = dict.fromkeys(TRAJECTORY_STATISTICS, float("inf"))
    chosen, mean_ranks = choose_candidate([still, *scores([0.5] * 6)])
    assert chosen == 1 and mean_ranks == [2.0, 1.0]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.lists(st.floats(0, 1, allow_nan=False), min_size=6, max_size=6), min_size=2, max_size=6),
    st.randoms(use_true_random=False),
)
def test_a_candidate_lowest_on_every_statistic_is_chosen_wherever_it_stands(rows, random):
    best = [min(column) / 2 for column in zip(*rows)]
    position = random.randrange(len(rows) + 1)
    table = scores(*rows[:position], best, *rows[position:])
    assert choose_candidate(table)[0] == position


def test_without_coordinates_only_the_four_coordinate_free_statistics_are_scored():
    locations = np.array([[0, 0, 1, 1], [1, 2, 2, 0]])
    with_coordinates = Stations(["a", "b", "c"], [45.0, 45.01, 45.02], [9.0, 9.01, 9.0])
    assert list(score_candidate(locations, locations[::-1], with_coordinates)) == list(TRAJECTORY_STATISTICS)
    scored = score_candidate(locations, locations[::-1], Stations(["a", "b", "c"]))
    assert list(scored) == list(COORDINATE_FREE) and all(v == 0.0 for v in scored.values())


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
