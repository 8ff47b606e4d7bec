"""Memorisation check: copiers are flagged, a station's mean profile plus fresh noise is not."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from cellsynth.errors import DataError
from cellsynth.metrics import membership_inference_auc, memorisation_check, nearest_neighbour_distances

DAYS = 7
HOUR_OF_WEEK = np.arange(24 * DAYS)


def synthetic_city(seed: int, stations: int = 200) -> tuple[np.ndarray, np.random.Generator]:
    """[stations, 168] weeks: each station its own level, daily amplitude, peak hour and weekend dip, plus
    noise of about a quarter of its level (the Beijing stations' residual around their mean day is 0.26)."""
    rng = np.random.default_rng(seed)
    hour, weekend = HOUR_OF_WEEK % 24, HOUR_OF_WEEK // 24 >= 5
    level = rng.uniform(0.2, 1.0, (stations, 1))
    amplitude = rng.uniform(0.3, 1.0, (stations, 1)) * level
    peak = rng.uniform(17, 22, (stations, 1))
    weekend_factor = rng.uniform(0.6, 1.0, (stations, 1))
    profile = (level + amplitude * np.cos(2 * np.pi * (hour - peak) / 24)) * np.where(
        weekend, weekend_factor, 1.0
    )
    return profile + rng.normal(scale=0.25, size=profile.shape) * level, rng


def split(seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    weeks, rng = synthetic_city(seed)
    return weeks[:160], weeks[160:], rng


def mean_day_plus_noise(train: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A generator that learned each training station's mean day and its residual spread, nothing more."""
    mean_week = np.tile(train.reshape(len(train), DAYS, 24).mean(axis=1), DAYS)
    spread = (train - mean_week).std(axis=1, keepdims=True)
    return mean_week + rng.normal(size=train.shape) * spread


def test_nearest_neighbour_distances_match_brute_force():
    rng = np.random.default_rng(0)
    queries, references = rng.normal(size=(50, 30)), rng.normal(size=(70, 30))
    distance, index = nearest_neighbour_distances(queries, references)
    full = cdist(queries, references)
    np.testing.assert_array_equal(index, full.argmin(axis=1))
    np.testing.assert_allclose(distance, full.min(axis=1), rtol=1e-12)
    # An exact copy reads exactly 0 (recomputed directly, not through ||a||^2 + ||b||^2 - 2ab).
    copies = references[[3, 9]] * 1000.0
    distance, index = nearest_neighbour_distances(copies, references * 1000.0)
    np.testing.assert_array_equal(distance, 0.0)
    np.testing.assert_array_equal(index, [3, 9])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_copying_generators_are_flagged(seed):
    train, holdout, rng = split(seed)
    verbatim = memorisation_check(train, holdout, train[rng.permutation(len(train))])
    assert verbatim["flagged"]
    assert verbatim["near_copy_share"] == 1.0
    np.testing.assert_array_equal(verbatim["dcr_train"], 0.0)
    assert verbatim["dcr_ratio"] == 0.0
    assert verbatim["membership_auc"] == 1.0

    tiny_noise = train + rng.normal(scale=0.01 * train.std(), size=train.shape)
    noisy = memorisation_check(train, holdout, tiny_noise)
    assert noisy["flagged"]
    assert noisy["near_copy_share"] == 1.0
    assert noisy["dcr_ratio"] < 0.1
    assert noisy["membership_auc"] > 0.95

    # Half the output copied, half mean day plus noise: still a copier.
    half = np.concatenate([train[:80], mean_day_plus_noise(train[80:], rng)])
    assert memorisation_check(train, holdout, half)["flagged"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mean_day_plus_fresh_noise_is_not_flagged(seed):
    train, holdout, rng = split(seed)
    result = memorisation_check(train, holdout, mean_day_plus_noise(train, rng))
    assert not result["flagged"]
    assert result["near_copy_share"] < 0.15  # 3-9 % over 60 seeds of this fixture
    assert 0.6 < result["dcr_ratio"] < 1.2


def test_new_stations_from_the_same_city_are_not_flagged():
    train, holdout, _ = split(3)
    new_stations, _ = synthetic_city(4, stations=120)
    result = memorisation_check(train, holdout, new_stations)
    assert not result["flagged"]
    assert result["near_copy_share"] < 0.2  # 0-16 % over 60 seeds of this fixture, 5.5 % on average
    assert result["membership_auc"] == pytest.approx(0.5, abs=0.12)
    assert result["dcr_ratio"] == pytest.approx(1.0, abs=0.2)


def test_result_layout_and_multichannel_series():
    rng = np.random.default_rng(5)
    train, holdout, generated = rng.random((30, 24, 3)), rng.random((10, 24, 3)), rng.random((12, 24, 3))
    result = memorisation_check(train, holdout, generated)
    assert result["dcr_train"].shape == (12,)
    assert result["dcr_holdout"].shape == (12,)
    assert result["holdout_to_train"].shape == (10,)
    flat = generated.reshape(12, -1)
    np.testing.assert_allclose(result["dcr_train"], cdist(flat, train.reshape(30, -1)).min(axis=1))
    assert result["train_to_train"].shape == (30,)
    within_train = cdist(train.reshape(30, -1), train.reshape(30, -1))
    np.fill_diagonal(within_train, np.inf)
    np.testing.assert_allclose(result["train_to_train"], within_train.min(axis=1))
    pooled = np.concatenate([result["holdout_to_train"], result["train_to_train"]])
    assert result["near_copy_threshold"] == pytest.approx(np.quantile(pooled, 0.05))
    assert isinstance(result["flagged"], bool)


def test_blocks_of_queries_and_references_find_the_nearest_of_all(monkeypatch):
    """The search runs over blocks of references, keeping each query's best so far: any block sizes give
    the one-pass argmin, ties to the first reference included (duplicated rows), and leave-one-out skips
    exactly the query's own row wherever its block falls."""
    import cellsynth.metrics.privacy as privacy

    rng = np.random.default_rng(8)
    references = np.round(rng.normal(size=(23, 5)), 1)
    references[[4, 17]] = references[9]  # three equal rows: a tie goes to row 4
    queries = np.concatenate([references[[9, 17]], np.round(rng.normal(size=(11, 5)), 1)])
    expected = cdist(queries, references)
    within = cdist(references, references)
    np.fill_diagonal(within, np.inf)
    monkeypatch.setattr(privacy, "_REFERENCE_ROWS", 4)
    monkeypatch.setattr(privacy, "_BLOCK_ENTRIES", 12)  # 3 queries a block
    distance, index = nearest_neighbour_distances(queries, references)
    np.testing.assert_array_equal(index, expected.argmin(axis=1))
    np.testing.assert_allclose(distance, expected.min(axis=1), rtol=1e-12)
    assert list(index[:2]) == [4, 4]
    distance, index = privacy._nearest(references, references, leave_one_out=True)
    np.testing.assert_array_equal(index, within.argmin(axis=1))
    np.testing.assert_allclose(distance, within.min(axis=1), rtol=1e-12)


def test_scale_divides_float32_series_as_a_float64_copy_would(monkeypatch):
    """``scale=`` on float32 series in their own units: the check on ``float64(series) / scale``, whatever
    the block sizes."""
    import cellsynth.metrics.privacy as privacy

    rng = np.random.default_rng(9)
    scale = np.array([2.0, 50.0, 0.3])
    train, holdout, generated = ((rng.random((n, 24, 3)) * scale).astype(np.float32) for n in (30, 10, 12))
    generated[:3] = train[:3]  # exact copies read 0
    expected = memorisation_check(
        *(values.astype(np.float64) / scale for values in (train, holdout, generated))
    )
    for reference_rows, entries in ((2048, 1 << 22), (7, 20)):
        monkeypatch.setattr(privacy, "_REFERENCE_ROWS", reference_rows)
        monkeypatch.setattr(privacy, "_BLOCK_ENTRIES", entries)
        result = memorisation_check(train, holdout, generated, scale=scale)
        assert result.keys() == expected.keys()
        for key, value in expected.items():
            np.testing.assert_allclose(result[key], value, rtol=1e-12, atol=1e-15, err_msg=key)
        np.testing.assert_array_equal(result["dcr_train"][:3], 0.0)


def test_membership_auc_known_values():
    train = np.array([[0.0], [10.0]])
    holdout = np.array([[5.0]])
    # Members sit 0 and 10 from the one generated point, the non-member 5: one pair of two ordered right.
    assert membership_inference_auc(train, holdout, np.array([[0.0]])) == pytest.approx(0.5)
    assert membership_inference_auc(train, holdout, np.array([[0.0], [10.0]])) == pytest.approx(1.0)
    assert membership_inference_auc(train, holdout, np.array([[5.0]])) == pytest.approx(0.0)
    # A tie counts one half.
    assert membership_inference_auc(np.array([[1.0]]), np.array([[-1.0]]), np.array([[0.0]])) == 0.5


def test_membership_auc_matches_pairwise_definition():
    rng = np.random.default_rng(6)
    train, holdout, generated = rng.normal(size=(40, 8)), rng.normal(size=(25, 8)), rng.normal(size=(30, 8))
    member = cdist(train, generated).min(axis=1)
    non_member = cdist(holdout, generated).min(axis=1)
    pairs = (member[:, None] < non_member[None, :]) + 0.5 * (member[:, None] == non_member[None, :])
    assert membership_inference_auc(train, holdout, generated) == pytest.approx(pairs.mean())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: memorisation_check(np.ones((4, 24)), np.ones((2, 24)), np.ones((3, 25))),
            r"memorisation_check\(generated\): each series has shape \(25,\) but training series have \(24,\)",
        ),
        (
            lambda: memorisation_check(np.ones(24), np.ones((2, 24)), np.ones((3, 24))),
            r"\(train\): expected an array with at least 2 dimension",
        ),
        (
            lambda: memorisation_check(np.ones((4, 24)), np.full((2, 24), np.nan), np.ones((3, 24))),
            r"memorisation_check\(holdout\): contains 48 non-finite",
        ),
        (lambda: memorisation_check(np.ones((4, 24)), np.ones((0, 24)), np.ones((3, 24))), "is empty"),
        (
            lambda: memorisation_check(
                np.ones((4, 2)), np.ones((2, 2)), np.ones((3, 2)), near_copy_quantile=2.0
            ),
            "near_copy_quantile",
        ),
        (lambda: nearest_neighbour_distances(np.ones((2, 3)), np.ones((2, 4))), "D = 3 features"),
        (
            lambda: memorisation_check(np.ones((1, 2)), np.ones((2, 2)), np.ones((3, 2))),
            r"memorisation_check\(train\): needs at least 2 training series",
        ),
        (
            lambda: memorisation_check(np.ones((4, 2)), np.ones((2, 2)), np.ones((3, 2)), scale=[1.0, 0.0]),
            r"memorisation_check\(scale\): must be positive",
        ),
        (
            lambda: memorisation_check(np.ones((4, 2)), np.ones((2, 2)), np.ones((3, 2)), scale=[1.0, 2, 3]),
            r"memorisation_check\(scale\): shape \(3,\) does not broadcast",
        ),
    ],
)
def test_bad_input_raises_data_error(call, message):
    with pytest.raises(DataError, match=message):
        call()
