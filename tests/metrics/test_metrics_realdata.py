"""A small real check of the metrics on the public data beside the repo (skipped where it is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cellsynth.metrics import memorisation_check, traffic_metrics, trajectory_jsds

pytestmark = pytest.mark.realdata


def _need(shared_data: Path, relative: str) -> Path:
    path = shared_data / relative
    if not path.exists():
        pytest.skip(f"{path} is missing from the shared data")
    return path


@pytest.fixture(scope="module")
def geolife(shared_data: Path) -> dict[str, np.ndarray]:
    """MoveSim's GeoLife split: days of 48 half-hour location ids, and each id's lat/lon."""
    folder = "geolife-movesim"
    sets = {
        name: np.loadtxt(_need(shared_data, f"{folder}/{name}.data"), dtype=np.int64)
        for name in ("real", "test")
    }
    coordinates = np.loadtxt(_need(shared_data, f"{folder}/gps"))
    return {**sets, "lat": coordinates[:, 0], "lon": coordinates[:, 1]}


@pytest.fixture(scope="module")
def beijing(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 960 Beijing stations' week, split 80/20 by station and divided by the training maximum."""
    weeks = np.load(_need(shared_data, "beijing-stkdiff/beijing.npz"))["bs_record"]
    order = np.random.default_rng(0).permutation(len(weeks))
    train, holdout = weeks[order[:768]], weeks[order[768:]]
    scale = train.max()
    return train / scale, holdout / scale


def test_geolife_held_out_days_are_close_and_random_ones_are_not(geolife):
    real, test, lat, lon = geolife["real"], geolife["test"], geolife["lat"], geolife["lon"]
    held_out = trajectory_jsds(real, test, lat, lon)
    random_ids = np.random.default_rng(0).integers(0, lat.size, size=test.shape)
    baseline = trajectory_jsds(real, random_ids, lat, lon)
    for key, value in held_out.items():
        # Real held-out days against real training days: every statistic almost the same (measured < 0.01).
        assert value < 0.05, (key, value)
        assert baseline[key] > max(0.1, 10 * value), (key, value, baseline[key])


def test_beijing_memorisation_check(beijing):
    train, holdout = beijing
    rng = np.random.default_rng(1)
    assert memorisation_check(train, holdout, train)["flagged"]
    assert memorisation_check(train, holdout, train + rng.normal(scale=0.01 * train.std(), size=train.shape))[
        "flagged"
    ]
    mean_week = np.tile(train.reshape(-1, 7, 24).mean(axis=1), 7)
    spread = (train - mean_week).std(axis=1, keepdims=True)
    result = memorisation_check(train, holdout, mean_week + rng.normal(size=train.shape) * spread)
    assert not result["flagged"]
    assert result["near_copy_share"] < 0.1  # measured 0.03


def test_beijing_held_out_stations_score_better_than_noise(beijing):
    train, holdout = beijing
    real_like = traffic_metrics(holdout, train[:192], paired=False)
    noise = traffic_metrics(holdout, np.random.default_rng(2).random(holdout.shape), paired=False)
    for key, value in real_like.items():
        assert value < noise[key], (key, value, noise[key])
