"""The train-on-synthetic forecast utility on the real Beijing week (skipped where the shared data is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cellsynth.metrics import tstr_forecast_utility

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def beijing(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 960 Beijing stations' week, split 80/20 by station and divided by the training maximum."""
    path = shared_data / "beijing-stkdiff/beijing.npz"
    if not path.exists():
        pytest.skip(f"{path} is missing from the shared data")
    weeks = np.load(path)["bs_record"]
    order = np.random.default_rng(0).permutation(len(weeks))
    train, held_out = weeks[order[:768]], weeks[order[768:]]
    return train / train.max(), held_out / train.max()


def test_real_weeks_of_other_stations_are_as_useful_and_shuffled_hours_are_not(beijing):
    train, held_out = beijing
    # Half of the real training stations stand in for generated weeks: about as useful as all of them.
    alike = tstr_forecast_utility(train, train[::2], held_out)
    assert alike["mae_real"] < 0.95 * alike["mae_previous_day"]  # measured 13 % better than yesterday
    assert alike["utility"] > 0.97  # measured 0.99
    # The same weeks with each station's hours shuffled: the same values, no daily rhythm to learn.
    rng = np.random.default_rng(0)
    shuffled = np.stack([rng.permutation(week) for week in train[::2]])
    assert tstr_forecast_utility(train, shuffled, held_out)["utility"] < 0.8  # measured 0.42
