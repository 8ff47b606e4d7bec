r"""The trajectory's sampler options chosen on the training users after fitting (not in the paper).

The sampler options of :mod:`.sampler` trade one statistic against another, and which trade is right
depends on the data: on the synthetic city, coupled draws (``trajectory_coupling`` 0.995) at temperature 0.7
gave the best trajectories, while on GeoLife's half-hour days the same coupling turns one-step
pass-throughs (``a b c``, a place on the way) into two-step stays and doubles the stay-duration JSD, and
weaker coupling halves it at some cost in individual rank frequency
(docs/notebook/2026-12-05-mstdiff-sampler-selection.md). A fixed default is tuned to the data it was measured
on; the config's ``sampler_selection`` instead names candidates and lets each fitted model pick one on its
own training users, touching no held-out data.

**Rule** (:func:`choose_candidate`). Each candidate ``c = 1..C`` draws ``N = sampler_selection.users`` users
with the config's seed (the same seed for all: common random numbers, so the candidates differ by their
options and not by their draws), and its users are scored against the training users with the Table II
JSDs ``J_{c,j}`` (:func:`cellsynth.metrics.trajectory_jsds`; the four that need no coordinates when the
stations have none). How far a JSD moves with the draw is measured by a paired bootstrap: ``B =
sampler_selection.resamples`` resamples of the user indices ``1..N`` with replacement, the same indices for
every candidate (user ``n`` of each candidate comes from the same noise), give ``J^b_{c,j}``. Candidate
``c`` is *clearly better* than ``c'`` on statistic ``j`` when::

    J_{c',j} - J_{c,j}  >  m * sd_b( J^b_{c',j} - J^b_{c,j} )          (m = sampler_selection.margin)

A candidate's rank on a statistic counts only the candidates clearly better than it there, and the lowest
mean rank over the ``J`` statistics wins::

    r_{c,j} = 1 + #{c' : c' clearly better than c on j},     c* = argmin_c (1/J) sum_j r_{c,j}

ties to the earlier candidate. Without the margin (``m = 0``, or no resamples) this is the plain mean rank
over the statistics (equal JSDs sharing the better rank), the rule until 2026-12-07, which counts a G-rank
difference the size of the draw's noise like a stay-duration JSD twice another's; the candidates are often
near-equal by that count, so which one won was decided by the draw: the demo city's model with one
attention head chose uncoupled draws on mean ranks 2.5 against 2.67, which doubled its held-out duration and
I-rank JSDs. With ``m = 1.5``, eight replayed selections of that model and of the shipped one all keep the
coupled draws, and on GeoLife the choice settles on one candidate in 13 and 15 of 16 selections of two
models (the plain mean rank: 9 and 6), among the same good candidates
(docs/notebook/2026-12-07-mstdiff-selection-margin.md). A candidate whose
users never move (no jump to score) is clearly worse than every other on every statistic.

The chosen options become the model's sampling defaults (:meth:`MSTDiffGenerator.generate` with options
left at None, and the calibration's draws); each given to ``generate`` still wins.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from cellsynth import metrics
from cellsynth.errors import DataError
from cellsynth.generators.mstdiff.sampler import TrajectoryOptions
from cellsynth.metrics.mobility import COORDINATE_FREE, TRAJECTORY_STATISTICS

__all__ = [
    "COORDINATE_FREE",
    "choose_candidate",
    "clearly_better",
    "resampled_scores",
    "run_selection",
    "score_candidate",
    "selection_note",
    "with_candidate",
]


def with_candidate(defaults: TrajectoryOptions, candidate: dict[str, Any]) -> TrajectoryOptions:
    """``defaults`` with the options the candidate sets (its None fields keep the default)."""
    return replace(defaults, **{k: v for k, v in candidate.items() if v is not None})


def _statistics(stations) -> tuple[str, ...]:
    return TRAJECTORY_STATISTICS if stations.has_coordinates else COORDINATE_FREE


def score_candidate(
    real: np.ndarray | metrics.TrajectorySummary, generated_locations: np.ndarray, stations
) -> dict[str, float]:
    """The JSDs of generated users against the training users (their locations, or their
    :func:`~cellsynth.metrics.summarize_trajectories` computed once for many candidates),
    ``{statistic: value}``: the six of :data:`~cellsynth.metrics.mobility.TRAJECTORY_STATISTICS` when
    ``stations`` have coordinates, else the four of :data:`COORDINATE_FREE`. Users that never move score
    ``inf`` on every statistic (their jump distances are empty)."""
    names = _statistics(stations)
    lat, lon = stations.trajectory_coordinates()
    try:
        jsds = metrics.trajectory_jsds(real, generated_locations, lat, lon)
    except DataError:
        return dict.fromkeys(names, float("inf"))
    return {name: float(jsds[name]) for name in names}


def resampled_scores(
    real: np.ndarray | metrics.TrajectorySummary,
    generated: list[np.ndarray],
    stations,
    resamples: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``[resamples, C, J]``: :func:`score_candidate` of each candidate's users ``generated[c]`` (``[N, T]``
    each, the same ``N``) resampled with replacement, the same user indices for every candidate within a
    resample (the paired bootstrap of the module docstring)."""
    users = {len(locations) for locations in generated}
    if len(users) != 1:
        raise ValueError(f"every candidate must draw the same number of users, got {sorted(users)}")
    (n,) = users
    out = np.empty((resamples, len(generated), len(_statistics(stations))), dtype=np.float64)
    for b in range(resamples):
        index = rng.integers(0, n, n)
        for c, locations in enumerate(generated):
            out[b, c] = list(score_candidate(real, locations[index], stations).values())
    return out


def _summary_or_locations(real: np.ndarray, stations):
    """The training users summarised once for many comparisons (their locations where they cannot be:
    :func:`score_candidate` then scores every candidate ``inf``)."""
    lat, lon = stations.trajectory_coordinates()
    try:
        return metrics.summarize_trajectories(real, lat, lon, name="training users")
    except DataError:
        return real


def clearly_better(table: np.ndarray, resampled: np.ndarray | None, margin: float) -> np.ndarray:
    """``better[c, c', j]``: candidate ``c`` lower than ``c'`` on statistic ``j`` by more than ``margin``
    paired-bootstrap standard deviations of the difference (module docstring); ``table`` is ``[C, J]``,
    ``resampled`` ``[B, C, J]`` (None or fewer than two resamples: every difference counts). A finite JSD
    is clearly better than an infinite one (users that never move); two infinite ones are level."""
    table = np.asarray(table, dtype=np.float64)
    finite = np.isfinite(table)
    with np.errstate(invalid="ignore"):
        gap = table[None, :, :] - table[:, None, :]  # [c, c', j] = J_{c'} - J_c
        if resampled is None or len(resampled) < 2:
            spread = np.zeros_like(gap)
        else:
            differences = resampled[:, None, :, :] - resampled[:, :, None, :]  # [b, c, c', j]
            # resamples where either candidate's users never moved say nothing about the difference's noise
            usable = np.where(np.isfinite(differences), differences, np.nan)
            count = np.isfinite(usable).sum(axis=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # fewer than two usable: nan, replaced below
                spread = np.nanstd(usable, axis=0, ddof=1)
            # fewer than two usable resamples: the noise is unknown, so no difference between two finite JSDs
            # counts
            spread = np.where(count >= 2, spread, np.inf)
        both = finite[:, None, :] & finite[None, :, :]
        better = both & (gap > margin * spread) & (gap > 0)
    return better | (finite[:, None, :] & ~finite[None, :, :])


def choose_candidate(
    scores: list[dict[str, float]], resampled: np.ndarray | None = None, margin: float = 1.5
) -> tuple[int, list[float]]:
    """``(index of the chosen candidate, each candidate's mean rank)`` by the rule of the module docstring;
    ``scores`` holds one ``{statistic: JSD}`` per candidate, all over the same statistics, ``resampled``
    their :func:`resampled_scores` (None: every difference counts)."""
    if not scores:
        raise ValueError("choose_candidate needs at least one candidate")
    names = list(scores[0])
    table = np.array([[s[name] for name in names] for s in scores], dtype=np.float64)  # [C, J]
    ranks = 1 + clearly_better(table, resampled, margin).sum(axis=0)  # [c', j]: candidates clearly ahead
    mean_rank = ranks.mean(axis=1)
    chosen = int(np.argmin(mean_rank))  # the first of the lowest
    return chosen, [float(r) for r in mean_rank]


def run_selection(
    draw: Callable[[TrajectoryOptions], np.ndarray],
    candidates: list[dict[str, Any]],
    defaults: TrajectoryOptions,
    data,
    *,
    resamples: int,
    margin: float,
    seed: int,
    progress: bool = False,
) -> dict[str, Any]:
    """The selection of the module docstring: ``draw(options)`` gives the ``int [users, T]`` locations of one
    candidate's users (the same seed for every candidate), each scored against ``data``'s users
    (:func:`score_candidate`), with ``resamples`` paired resamples (``seed``) for their noise. Returns the
    record a fitted model keeps: ``users`` (drawn per candidate), ``reference_users``, ``resamples``,
    ``margin``, each candidate's ``options``, ``jsd``, ``jsd_sd`` (its JSDs' spread over the resamples)
    and ``mean_rank``, and the ``chosen`` options. A spread that cannot be measured (fewer than two
    resamples, users that never move) is None."""
    real = _summary_or_locations(np.asarray(data.locations), data.stations)
    drawn = []
    for candidate in tqdm(candidates, desc="sampler selection", unit="candidate", disable=not progress):
        drawn.append(draw(with_candidate(defaults, candidate)))
    rows = [score_candidate(real, locations, data.stations) for locations in drawn]
    resampled = resampled_scores(real, drawn, data.stations, resamples, np.random.default_rng(seed))
    chosen, mean_ranks = choose_candidate(rows, resampled, margin)
    with np.errstate(invalid="ignore"):
        spread = resampled.std(axis=0, ddof=1) if resamples >= 2 else np.full(resampled.shape[1:], np.nan)
    return {
        "users": len(drawn[0]),
        "reference_users": len(data.locations),
        "resamples": resamples,
        "margin": margin,
        "candidates": [
            {"options": c, "jsd": r, "jsd_sd": dict(zip(r, map(_finite_or_none, sd))), "mean_rank": m}
            for c, r, sd, m in zip(candidates, rows, spread, mean_ranks)
        ],
        "chosen": candidates[chosen],
    }


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def selection_note(record: dict[str, Any]) -> str:
    """The fit note that says which options a model chose (``record``: :func:`run_selection`'s, or the
    plain mean-rank record of a model saved before 2026-12-07)."""
    chosen = ", ".join(f"{k} {v}" for k, v in record["chosen"].items() if v is not None)
    rule = (
        "lowest mean rank over the trajectory JSDs"
        if "margin" not in record
        else f"lowest mean rank over the trajectory JSDs, counting differences beyond {record['margin']:g} "
        "bootstrap sd"
    )
    return (
        f"Trajectory sampling chosen among {len(record['candidates'])} candidates on {record['users']} users "
        f"scored against the {record['reference_users']} training users ({rule}): "
        f"{chosen or 'the config sampling section'}."
    )
