"""Scoring one group of traffic series (a channel, or users' traffic) metric by metric, each metric that is
undefined for the data reported as missing with its reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cellsynth import metrics
from cellsynth.errors import DataError
from cellsynth.metrics.catalog import METRICS

__all__ = ["PAIRED_ERRORS", "attempt", "traffic_scores"]

PAIRED_ERRORS = ("mae", "rmse", "mae_of_mean", "rmse_of_mean")


def traffic_scores(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    unit: float,
    steps_per_day: int,
    paired: bool,
    bins: int,
    compat: bool,
    notes: list[str],
    group: str,
) -> dict[str, dict[str, Any]]:
    """One channel's metric entries. ``real`` [R, T]; ``generated`` [R, K, T] when paired, else [M, K, T].

    Each metric is computed on its own (rather than through :func:`metrics.traffic_metrics`) so that one
    metric undefined for these data (e.g. no peak hour in an all-flat generated set) is reported as missing,
    with its reason, instead of failing the whole evaluation.
    """
    scores: dict[str, dict[str, Any]] = {}

    def score(name: str, compute: Callable[[], float]) -> None:
        value, reason = attempt(compute)
        scores[name] = {"value": value} if reason is None else {"value": None, "reason": reason}
        if reason is not None:
            notes.append(f"{group}: {METRICS[name].label} not computed: {reason}")

    if paired:
        errors, reason = attempt(lambda: metrics.paired_errors(real, generated))
        original, _ = attempt(lambda: metrics.paired_errors(real * unit, generated * unit))
        for name in PAIRED_ERRORS:
            scores[name] = (
                {"value": errors[name], "original": original[name]}
                if reason is None
                else {"value": None, "original": None, "reason": reason}
            )
        if generated.shape[1] >= 2:
            score("coverage", lambda: metrics.coverage(real, generated))
            score("band_coverage", lambda: metrics.band_coverage(real, generated))
    score("value_jsd", lambda: metrics.value_jsd(real, generated, bins))
    score("log_value_jsd", lambda: metrics.log_value_jsd(real, generated, bins))
    score("diff_jsd", lambda: metrics.diff_jsd(real, generated, bins))
    score(
        "daily_periodic_rmse",
        lambda: metrics.daily_periodic_rmse(real, generated, steps_per_day, paired=paired),
    )
    score("acf_distance", lambda: metrics.acf_distance(real, generated, steps_per_day=steps_per_day))
    if real.shape[-1] % (7 * steps_per_day) == 0:
        score("weekly_profile_error", lambda: metrics.weekly_profile_error(real, generated, steps_per_day))
    score("peak_hour_jsd", lambda: metrics.peak_hour_jsd(real, generated, steps_per_day))
    if compat:
        # The published code scores one sample per station (docs/metrics.md, "Compatibility").
        first = generated[:, 0]
        score("value_jsd_published", lambda: metrics.value_jsd(real, first, bins, compat=True))
        score("diff_jsd_published", lambda: metrics.diff_jsd(real, first, bins, compat=True))
        score(
            "daily_periodic_rmse_published",
            lambda: metrics.daily_periodic_rmse(real, first, steps_per_day, paired=paired, compat=True),
        )
    return scores


def attempt(compute: Callable[[], Any]) -> tuple[Any, str | None]:
    """``(result, None)``, or ``(None, reason)`` when the metric is undefined for these data."""
    try:
        return compute(), None
    except DataError as err:
        return None, str(err)
