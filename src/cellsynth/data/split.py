"""The evaluation protocol's splits: stations by station (new sites) and users by user, seeded, default 80/20
(docs/report.md); and station traffic by time (future weeks of known stations, :func:`split_weeks`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cellsynth.data.model import StationTraffic, UserMobility
from cellsynth.errors import DataError

__all__ = ["split_stations", "split_users", "split_weeks", "write_split"]


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


def split_weeks(traffic: StationTraffic, test_fraction: float = 0.2) -> tuple[StationTraffic, StationTraffic]:
    """``(train, held_out)``: every station's earlier whole weeks and its later ones (future weeks of known
    stations).

    The data is cut into ``W = floor(T / L)`` whole weeks of ``L`` steps counted back from its end, so the most
    recent data is kept; the ``T - W L`` steps before the first whole week are left out. The last
    ``round(W * test_fraction)`` weeks (at least one) are held out, the earlier ones (at least one) train.
    Both keep every station; the held-out part starts a whole number of weeks after the training part, so
    weeks generated on the training time axis line up with it hour for hour.
    """
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction}")
    try:
        week = traffic.steps_per("7D")
    except DataError:
        raise DataError(
            f"a time split cuts whole weeks, but the step {traffic.step} does not divide 7 days; resample the "
            "data to hourly (or 30-minute) steps",
            source=traffic.source,
        ) from None
    weeks = traffic.n_steps // week
    if weeks < 2:
        raise DataError(
            f"a time split needs at least 2 whole weeks (one to train on, one to score), but the data has "
            f"{traffic.n_steps} steps of {traffic.step} ({traffic.n_steps / week:.2g} weeks); split by station "
            "instead, or give more weeks",
            source=traffic.source,
        )
    held_out_weeks = min(max(round(weeks * test_fraction), 1), weeks - 1)
    first = traffic.n_steps - weeks * week
    boundary = traffic.n_steps - held_out_weeks * week
    return traffic.slice_steps(first, boundary), traffic.slice_steps(boundary, traffic.n_steps)


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
