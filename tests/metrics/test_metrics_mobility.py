"""Trajectory statistics and their JSDs: analytic cases, properties, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cellsynth.errors import DataError
from cellsynth.metrics import (
    EARTH_RADIUS_KM,
    distinct_location_share,
    global_rank_frequency,
    haversine_km,
    individual_rank_frequency,
    js_divergence,
    jump_distances,
    one_step_stays,
    radius_of_gyration,
    stay_durations,
    summarize_trajectories,
    time_at_top_location,
    trajectory_jsds,
)

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)
NEW_YORK = (40.7128, -74.0060)

# Five stations: 0 and 1 about 1.1 km apart in Milan, 2 and 3 about 1000 km apart, 4 in Milan again.
LAT = np.array([45.4642, 45.4742, 40.0, 49.0, 45.4642])
LON = np.array([9.1900, 9.1900, 0.0, 0.0, 9.2000])


def test_haversine_known_distances():
    # Great-circle distances between city centres as usually quoted: Paris-London 344 km, NY-London 5570 km.
    assert haversine_km(*PARIS, *LONDON) == pytest.approx(344.0, abs=1.0)
    assert haversine_km(*NEW_YORK, *LONDON) == pytest.approx(5570.0, abs=1.0)
    # One degree of longitude on the equator is 1/360 of the circumference, exactly.
    assert haversine_km(0.0, 0.0, 0.0, 1.0) == pytest.approx(2 * np.pi * EARTH_RADIUS_KM / 360, rel=1e-12)
    assert haversine_km(*PARIS, *PARIS) == 0.0
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(np.pi * EARTH_RADIUS_KM)


def test_haversine_broadcasts_and_is_symmetric():
    lat = np.array([PARIS[0], LONDON[0], NEW_YORK[0]])
    lon = np.array([PARIS[1], LONDON[1], NEW_YORK[1]])
    matrix = haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    assert matrix.shape == (3, 3)
    np.testing.assert_allclose(matrix, matrix.T)
    np.testing.assert_array_equal(np.diag(matrix), 0.0)


def test_jump_distances_skip_stays():
    locations = np.array([[0, 0, 1, 1, 0], [4, 4, 4, 4, 4]])
    jumps = jump_distances(locations, LAT, LON)
    one_km = haversine_km(LAT[0], LON[0], LAT[1], LON[1])
    np.testing.assert_allclose(jumps, [one_km, one_km])
    assert one_km == pytest.approx(1.112, abs=0.001)


def test_radius_of_gyration_known_values():
    # Half the time at each of two points: the centre is their midpoint, each point D/2 from it.
    locations = np.array([[2, 3, 2, 3], [2, 2, 3, 3], [4, 4, 4, 4]])
    radius = radius_of_gyration(locations, LAT, LON)
    half = haversine_km(LAT[2], LON[2], LAT[3], LON[3]) / 2
    np.testing.assert_allclose(radius[:2], [half, half], rtol=1e-9)
    assert radius[2] == 0.0  # never moves: exactly 0, not centroid rounding


def test_radius_of_gyration_across_the_antimeridian():
    lat, lon = np.array([0.0, 0.0]), np.array([179.5, -179.5])
    # Two points 1 degree apart across the date line: radius 1/2 degree, not half the planet.
    assert radius_of_gyration(np.array([[0, 1]]), lat, lon)[0] == pytest.approx(
        haversine_km(0.0, 0.0, 0.0, 0.5), rel=1e-9
    )


def test_distinct_locations_and_stays():
    locations = np.array([[1, 1, 2, 2, 2, 1], [3, 3, 3, 3, 3, 3]])
    np.testing.assert_allclose(distinct_location_share(locations), [2 / 6, 1 / 6])
    np.testing.assert_array_equal(stay_durations(locations), [2, 3, 1, 6])
    # Every user's stays add up to T, the last run included.
    durations = stay_durations(np.array([[0, 1, 2, 2]]))
    assert durations.sum() == 4


def test_one_step_stays_are_returns_or_pass_throughs():
    locations = np.array([[1, 2, 1, 3, 4, 4, 5], [0, 0, 0, 0, 0, 0, 7], [6, 1, 1, 2, 1, 1, 9]])
    returns, through = one_step_stays(locations)
    # user 0: 2 (1 2 1) return, 1 (2 1 3) and 3 (1 3 4) pass-throughs; the first and last steps are not
    # between two stays; user 2: 2 (1 2 1) return
    np.testing.assert_array_equal(returns, [1, 0, 1])
    np.testing.assert_array_equal(through, [2, 0, 0])


@given(arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(3, 12)), elements=st.integers(0, 3)))
def test_one_step_stays_count_the_interior_stays_of_length_one(locations):
    returns, through = one_step_stays(locations)
    interior = 0
    for row in locations:
        lengths = stay_durations(row[None])
        interior += int((lengths[1:-1] == 1).sum())
    assert returns.sum() + through.sum() == interior and (returns >= 0).all() and (through >= 0).all()


def test_time_at_top_location():
    # user 0 is most at 1 (4 of 7 steps), user 1 at 0 and 7 equally (ties: the lowest id)
    locations = np.array([[1, 2, 1, 3, 1, 1, 5], [0, 0, 7, 7, 0, 7, 9]])
    np.testing.assert_allclose(time_at_top_location(locations), [4 / 7, 3 / 7])
    day = np.array([False, True, True, True, False, False, False])
    np.testing.assert_allclose(time_at_top_location(locations, day), [1 / 3, 1 / 3])  # 7 would give 2 / 3
    with pytest.raises(DataError, match="bool mask of the 7 steps"):
        time_at_top_location(locations, day[:-1])
    with pytest.raises(DataError, match="at least one True"):
        time_at_top_location(locations, np.zeros(7, dtype=bool))


@given(arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 12)), elements=st.integers(0, 3)))
def test_time_at_top_location_is_the_largest_share_over_all_steps(locations):
    shares = time_at_top_location(locations)
    for row, share in zip(locations, shares, strict=True):
        assert share == np.bincount(row).max() / len(row)


def test_rank_frequencies():
    locations = np.array([[1, 1, 2, 2, 2, 1, 5, 1], [3, 3, 3, 3, 3, 3, 3, 3]])
    individual = individual_rank_frequency(locations)
    np.testing.assert_allclose(individual[0], [4 / 8, 3 / 8, 1 / 8, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(individual[1], [1, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(individual.sum(axis=1), 1.0)
    # 16 visits: location 3 eight, 1 four, 2 three, 5 one; top 30 % of 10 stations = 3 ranks.
    np.testing.assert_allclose(global_rank_frequency(locations, 10, top_share=0.3), [8 / 16, 4 / 16, 3 / 16])
    assert global_rank_frequency(locations, 10).size == 1


def test_trajectory_jsds_identical_is_zero():
    rng = np.random.default_rng(0)
    locations = rng.integers(0, 5, size=(20, 12))
    assert trajectory_jsds(locations, locations, LAT, LON) == {
        "distance": 0.0,
        "radius": 0.0,
        "distinct_loc": 0.0,
        "duration": 0.0,
        "g_rank": 0.0,
        "i_rank": 0.0,
    }


def test_trajectory_jsds_disjoint_is_one():
    near = np.array([[0, 1, 0, 1, 0, 1]] * 4)  # 1 km hops every step between two stations
    far = np.array([[2, 2, 3, 3, 2, 2]] * 4)  # 1000 km jumps, stays of 2
    jsds = trajectory_jsds(near, far, LAT, LON)
    assert jsds["distance"] == pytest.approx(1.0)
    assert jsds["radius"] == pytest.approx(1.0)
    assert jsds["duration"] == pytest.approx(1.0)
    assert jsds["distinct_loc"] == 0.0  # two distinct stations each
    # G-rank keeps the top ceil(0.1 * 5) = 1 rank: a single-rank distribution is the same for both.
    assert jsds["g_rank"] == pytest.approx(0.0)
    # I-rank: each near user splits 3/6 + 3/6 between their two stations, each far user 4/6 + 2/6.
    assert jsds["i_rank"] == pytest.approx(js_divergence([3, 3], [4, 2]))
    spread = np.array([[0, 1, 2, 3, 4, 0]] * 4)
    assert trajectory_jsds(near, spread, LAT, LON)["distinct_loc"] == pytest.approx(1.0)


trajectories = arrays(np.int64, st.tuples(st.integers(1, 8), st.just(6)), elements=st.integers(0, 4))


@given(trajectories, trajectories)
def test_trajectory_jsds_symmetric_and_bounded(real, generated):
    moves = [bool((t[:, 1:] != t[:, :-1]).any()) for t in (real, generated)]
    if not all(moves):
        with pytest.raises(DataError, match="no user ever changes location"):
            trajectory_jsds(real, generated, LAT, LON)
        return
    forward = trajectory_jsds(real, generated, LAT, LON)
    backward = trajectory_jsds(generated, real, LAT, LON)
    for key, value in forward.items():
        assert 0.0 <= value <= 1.0, key
        assert value == pytest.approx(backward[key], abs=1e-12), key


@given(trajectories, trajectories)
def test_a_summarised_set_compares_as_its_trajectories_do(real, generated):
    if not all(bool((t[:, 1:] != t[:, :-1]).any()) for t in (real, generated)):
        with pytest.raises(DataError, match="no user ever changes location"):
            for t in (real, generated):
                summarize_trajectories(t, LAT, LON)
        return
    direct = trajectory_jsds(real, generated, LAT, LON)
    real_summary = summarize_trajectories(real, LAT, LON)
    assert trajectory_jsds(real_summary, generated, LAT, LON) == direct
    assert trajectory_jsds(real_summary, summarize_trajectories(generated, LAT, LON), LAT, LON) == direct


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: jump_distances(np.array([[0, 5]]), LAT, LON),
            r"jump_distances\(locations\).*not in \[0, 5\)",
        ),
        (lambda: jump_distances(np.array([[0, -1]]), LAT, LON), r"the first is -1 at index \(0, 1\)"),
        (lambda: stay_durations(np.array([[0, -1]])), "not non-negative"),
        (lambda: jump_distances(np.array([[0.0, 1.0]]), LAT, LON), "expected integer location indices"),
        (lambda: jump_distances(np.array([0, 1]), LAT, LON), r"expected a 2-D array \[U users, T steps\]"),
        (lambda: stay_durations(np.zeros((0, 3), dtype=int)), "is empty"),
        (lambda: jump_distances(np.array([[0, 1]]), LAT, LON[:4]), "lat has 5 stations but lon has 4"),
        (lambda: jump_distances(np.array([[0, 1]]), LON * 0 + 95.0, LON), r"jump_distances\(lat\).*swapped"),
        (lambda: radius_of_gyration(np.array([[0, 1]]), np.array([np.nan, 1.0]), LON[:2]), "NaN at index"),
        (
            lambda: global_rank_frequency(np.array([[0, 1]]), 5, top_share=0.0),
            r"top_share must be in \(0, 1\]",
        ),
        (
            lambda: trajectory_jsds(np.array([[0, 1, 0]]), np.array([[0, 1]]), LAT, LON),
            r"trajectory_jsds\(generated\): generated has T = 2 steps but real has T = 3",
        ),
        (
            lambda: trajectory_jsds(
                summarize_trajectories(np.array([[0, 1, 0]]), LAT, LON), np.array([[0, 1]]), LAT, LON
            ),
            r"trajectory_jsds\(generated\): generated has T = 2 steps but real has T = 3",
        ),
        (
            lambda: summarize_trajectories(np.array([[2, 2]]), LAT, LON, name="candidate"),
            r"summarize_trajectories\(candidate\): no user ever changes location",
        ),
    ],
)
def test_bad_input_raises_data_error(call, message):
    with pytest.raises(DataError, match=message):
        call()
