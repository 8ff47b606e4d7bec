"""The evaluation protocol's split: by station, seeded, default 80/20 (DESIGN.md, Evaluation protocol)."""

from __future__ import annotations

import numpy as np

from cellsynth.data.model import StationTraffic, UserMobility
from cellsynth.errors import DataError

__all__ = ["split_stations", "split_users"]


def _split_index(n: int, test_fraction: float, seed: int, what: str) -> tuple[np.ndarray, np.ndarray]:
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    n_test = round(n * test_fraction)
    if n_test < 1 or n_test >= n:
        raise DataError(
            f"cannot split {n} {what} {1 - test_fraction:.0%}/{test_fraction:.0%}: need at least 2"
        )
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def split_stations(
    traffic: StationTraffic, test_fraction: float = 0.2, seed: int = 0
) -> tuple[StationTraffic, StationTraffic]:
    """``(train, held_out)``: disjoint station sets, original order kept within each."""
    train, test = _split_index(traffic.n_stations, test_fraction, seed, "stations")
    return traffic.select_stations(train), traffic.select_stations(test)


def split_users(
    users: UserMobility, test_fraction: float = 0.2, seed: int = 0
) -> tuple[UserMobility, UserMobility]:
    """``(train, held_out)``: disjoint user sets over the same stations."""
    train, test = _split_index(users.n_users, test_fraction, seed, "users")
    return users.select_users(train), users.select_users(test)
