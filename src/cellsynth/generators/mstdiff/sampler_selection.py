r"""The trajectory's sampler options chosen on the training users after fitting (not in the paper).

The sampler options of :mod:`.sampler` trade one statistic against another, and which trade is right
depends on the data: on the synthetic city, coupled draws (``trajectory_coupling`` 0.995) at temperature 0.7
gave the best trajectories, while on GeoLife's half-hour days the same coupling turns one-step
pass-throughs (``a b c``, a place on the way) into two-step stays and doubles the stay-duration JSD, and
weaker coupling halves it at some cost in individual rank frequency
(docs/notebook/2026-12-05-mstdiff-sampler-selection.md). A fixed default is tuned to the data it was measured
on; the config's ``sampler_selection`` instead names candidates and lets each fitted model pick one on its
own training users, touching no held-out data.

**Rule** (:func:`choose_candidate`). Each candidate ``c = 1..C`` draws ``sampler_selection.users`` users
with the config's seed (the same seed for all: common random numbers, so the candidates differ by their
options and not by their draws), and its users are scored against the training users with the Table II
JSDs (:func:`cellsynth.metrics.trajectory_jsds`; the four that need no coordinates when the stations have
none). With ``r_{c,j}`` the rank of candidate ``c`` on statistic ``j`` (1: lowest JSD; ties share the
mean rank) over the ``J`` statistics::

    c* = argmin_c  (1/J) sum_j r_{c,j},   ties broken by the lowest sum_j JSD_{c,j}, then by order

the candidate lowest on most statistics, as the benchmark tables count them, rather than the lowest sum of
JSDs, which the two or three largest statistics would decide alone. A candidate whose users never move
(no jump to score) ranks last on every statistic.

The chosen options become the model's sampling defaults (:meth:`MSTDiffGenerator.generate` with options
left at None, and the calibration's draws); each given to ``generate`` still wins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from scipy.stats import rankdata
from tqdm.auto import tqdm

from cellsynth import metrics
from cellsynth.errors import DataError
from cellsynth.generators.mstdiff.sampler import TrajectoryOptions
from cellsynth.metrics.mobility import NEEDS_COORDINATES, TRAJECTORY_STATISTICS

__all__ = [
    "COORDINATE_FREE",
    "choose_candidate",
    "run_selection",
    "score_candidate",
    "selection_note",
    "with_candidate",
]

#: The four Table II statistics (:data:`~cellsynth.metrics.mobility.TRAJECTORY_STATISTICS`) that need no
#: coordinates.
COORDINATE_FREE = tuple(name for name in TRAJECTORY_STATISTICS if name not in NEEDS_COORDINATES)


def with_candidate(defaults: TrajectoryOptions, candidate: dict[str, Any]) -> TrajectoryOptions:
    """``defaults`` with the options the candidate sets (its None fields keep the default)."""
    return replace(defaults, **{k: v for k, v in candidate.items() if v is not None})


def score_candidate(
    real_locations: np.ndarray, generated_locations: np.ndarray, stations
) -> dict[str, float]:
    """The JSDs of generated users against the training users, ``{statistic: value}``: the six of
    :data:`~cellsynth.metrics.mobility.TRAJECTORY_STATISTICS` when ``stations`` have coordinates, else the
    four of :data:`COORDINATE_FREE`. Users that never move score ``inf`` on every statistic (their jump
    distances are empty)."""
    names = TRAJECTORY_STATISTICS if stations.has_coordinates else COORDINATE_FREE
    lat = stations.lat if stations.has_coordinates else np.zeros(len(stations))
    lon = stations.lon if stations.has_coordinates else np.zeros(len(stations))
    try:
        jsds = metrics.trajectory_jsds(real_locations, generated_locations, lat, lon)
    except DataError:
        return dict.fromkeys(names, float("inf"))
    return {name: float(jsds[name]) for name in names}


def choose_candidate(scores: list[dict[str, float]]) -> tuple[int, list[float]]:
    """``(index of the chosen candidate, each candidate's mean rank)`` by the rule of the module docstring;
    ``scores`` holds one ``{statistic: JSD}`` per candidate, all over the same statistics."""
    if not scores:
        raise ValueError("choose_candidate needs at least one candidate")
    names = list(scores[0])
    table = np.array([[s[name] for name in names] for s in scores], dtype=np.float64)  # [C, J]
    mean_rank = rankdata(table, axis=0, method="average").mean(axis=1)
    total = np.where(np.isfinite(table), table, np.finfo(np.float64).max / len(names)).sum(axis=1)
    chosen = min(range(len(scores)), key=lambda c: (mean_rank[c], total[c], c))
    return chosen, [float(r) for r in mean_rank]


def run_selection(
    draw: Callable[[TrajectoryOptions], np.ndarray],
    candidates: list[dict[str, Any]],
    defaults: TrajectoryOptions,
    data,
    *,
    progress: bool = False,
) -> dict[str, Any]:
    """The selection of the module docstring: ``draw(options)`` gives the ``int [users, T]`` locations of one
    candidate's users (the same seed for every candidate), each scored against ``data``'s users
    (:func:`score_candidate`). Returns the record a fitted model keeps: ``users`` (drawn per candidate),
    ``reference_users``, each candidate's ``options``, ``jsd`` and ``mean_rank``, and the ``chosen`` options."""
    real = np.asarray(data.locations)
    rows, drawn = [], 0
    for candidate in tqdm(candidates, desc="sampler selection", unit="candidate", disable=not progress):
        locations = draw(with_candidate(defaults, candidate))
        drawn = len(locations)
        rows.append(score_candidate(real, locations, data.stations))
    chosen, mean_ranks = choose_candidate(rows)
    return {
        "users": drawn,
        "reference_users": len(real),
        "candidates": [
            {"options": c, "jsd": r, "mean_rank": m} for c, r, m in zip(candidates, rows, mean_ranks)
        ],
        "chosen": candidates[chosen],
    }


def selection_note(record: dict[str, Any]) -> str:
    """The fit note that says which options a model chose (``record``: :func:`run_selection`'s)."""
    chosen = ", ".join(f"{k} {v}" for k, v in record["chosen"].items() if v is not None)
    return (
        f"Trajectory sampling chosen among {len(record['candidates'])} candidates on {record['users']} users "
        f"scored against the {record['reference_users']} training users (lowest mean rank over the trajectory "
        f"JSDs): {chosen or 'the config sampling section'}."
    )
