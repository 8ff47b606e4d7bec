"""Scoring one group of traffic series (a channel, or users' traffic) metric by metric, each metric that is
undefined for the data reported as missing with its reason."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from cellsynth import metrics
from cellsynth.errors import DataError
from cellsynth.metrics.catalog import METRICS

__all__ = [
    "FORECAST_UTILITY",
    "PAIRED_ERRORS",
    "attempt",
    "forecast_utility_scores",
    "note_outsized",
    "traffic_scores",
]

PAIRED_ERRORS = ("mae", "rmse", "mae_of_mean", "rmse_of_mean", "crps")
#: Metric names of the train-on-synthetic, test-on-real forecast, and their keys in tstr_forecast_utility.
FORECAST_UTILITY = (
    ("tstr_utility", "utility"),
    ("tstr_mae_generated", "mae_generated"),
    ("tstr_mae_real", "mae_real"),
)


def note_outsized(group: str, generated: np.ndarray, real: np.ndarray, notes: list[str]) -> None:
    """Say so when the generated values of ``group`` (a channel, or users' traffic) go far beyond the real
    ones: the value JSDs count them all in the one bin above the real range, whatever their size, so the JSDs
    see how many there are but not how far out they go (docs/metrics.md)."""
    real_max, generated_max = real.max(), generated.max()
    if generated_max > 2 * real_max:
        beyond = float(np.mean(generated > real_max))
        notes.append(
            f"{group}: generated values reach {generated_max / real_max:.3g} times the largest real value "
            f"({beyond:.2%} of generated values exceed it). The histogram JSDs count them in one bin above "
            "the real range, not by how far out they are; look at the value histograms."
        )


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
    """One channel's metric entries. ``real`` [R, T], or [N, W, T] (W periods of each station); ``generated``
    [N, K, T] when paired (station n's samples, against each of its real periods), else [M, K, T].

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
        for name in PAIRED_ERRORS:
            scores[name] = (
                # each paired error scales with the data: in original units it is `unit` times the normalised
                {"value": errors[name], "original": errors[name] * unit}
                if reason is None
                else {"value": None, "original": None, "reason": reason}
            )
        if generated.shape[1] >= 2:
            score("coverage", lambda: metrics.coverage(real, generated))
            score("band_coverage", lambda: metrics.band_coverage(real, generated))
        score("busy_hour_p95_error", lambda: metrics.busy_hour_dimensioning(real, generated)["p95_error"])
        if generated.shape[1] >= 2:
            score(
                "busy_hour_coverage",
                lambda: metrics.busy_hour_dimensioning(real, generated)["busy_hour_coverage"],
            )
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
        # The published code scores one sample per station (docs/metrics.md, "Compatibility"), paired with
        # every real series of its station row by row: its diff_jsd differences neighbouring rows.
        first, real_rows = generated[:, 0], real.reshape(-1, real.shape[-1])
        if paired and real.ndim == 3:
            first = np.repeat(first, real.shape[1], axis=0)
        score("value_jsd_published", lambda: metrics.value_jsd(real_rows, first, bins, compat=True))
        score("diff_jsd_published", lambda: metrics.diff_jsd(real_rows, first, bins, compat=True))
        score(
            "daily_periodic_rmse_published",
            lambda: metrics.daily_periodic_rmse(real_rows, first, steps_per_day, paired=paired, compat=True),
        )
    return scores


def forecast_utility_scores(
    real_train: np.ndarray,
    generated: np.ndarray,
    real_held_out: np.ndarray,
    *,
    unit: float,
    steps_per_day: int,
    notes: list[str],
    group: str,
) -> dict[str, dict[str, Any]]:
    """The train-on-synthetic, test-on-real entries of one channel (:func:`metrics.tstr_forecast_utility`):
    ``real_train`` [S, T1] training series, ``generated`` [M, K, T], ``real_held_out`` [R, T3] real series
    the generator was not trained on. The MAEs scale with the data (the forecaster's log unit follows the
    data), so their original-unit values are ``unit`` times the normalised ones."""
    if len(real_held_out) == 0:
        result, reason = (
            None,
            "no held-out real series (real data the generator was not trained on) to test on",
        )
    else:
        result, reason = attempt(
            lambda: metrics.tstr_forecast_utility(real_train, generated, real_held_out, steps_per_day)
        )
    if reason is not None:
        notes.append(f"{group}: the train-on-synthetic forecast was not scored: {reason}")
        entries = {name: {"value": None, "reason": reason} for name, _ in FORECAST_UTILITY}
    else:
        entries = {name: {"value": result[key]} for name, key in FORECAST_UTILITY}
    for name in ("tstr_mae_generated", "tstr_mae_real"):
        value = entries[name]["value"]
        entries[name]["original"] = None if value is None else value * unit
    return entries


def attempt(compute: Callable[[], Any]) -> tuple[Any, str | None]:
    """``(result, None)``, or ``(None, reason)`` when the metric is undefined for these data."""
    try:
        return compute(), None
    except DataError as err:
        return None, str(err)
