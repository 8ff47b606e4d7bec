"""The evaluation protocol's split: stations by station (new sites) and users by user, seeded, default 80/20
(docs/report.md)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cellsynth.data.model import StationTraffic, UserMobility
from cellsynth.errors import DataError

__all__ = ["split_stations", "split_users", "write_split"]


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


def write_split(
    data: StationTraffic | UserMobility, path: str | os.PathLike, test_fraction: float = 0.2, seed: int = 0
) -> tuple[Path, Path]:
    """Split ``data`` (station traffic by station, :func:`split_stations`; users by user,
    :func:`split_users`) and write ``path/train`` and ``path/held-out`` (two datasets) atomically; ``path``
    must be new, empty, or an earlier split (:mod:`cellsynth.outputs`). Returns the two directories."""
    from cellsynth.data.io import write
    from cellsynth.outputs import SPLIT, atomic_directory

    if isinstance(data, StationTraffic):
        train, held_out = split_stations(data, test_fraction, seed)
    elif isinstance(data, UserMobility):
        train, held_out = split_users(data, test_fraction, seed)
    else:
        raise DataError(f"cannot split a {type(data).__name__}; give StationTraffic or UserMobility")
    path = Path(path)
    with atomic_directory(path, SPLIT) as tmp:
        write(train, tmp / "train")
        write(held_out, tmp / "held-out")
    return path / "train", path / "held-out"
