"""Compare generated data with real data by the evaluation protocol (DESIGN.md, "Evaluation protocol").

    evaluation = evaluate(real_held_out, generated, train=train)   # StationTraffic or UserMobility
    evaluation.to_json("metrics.json")                               # the numbers alone
    cellsynth.report.write_report(evaluation, "eval/")               # eval/metrics.json + eval/report.html

Every number comes from :mod:`cellsynth.metrics` (definitions in docs/metrics.md); this module only lines
the data up and says what it compared. Station traffic, step by step:

1. **Agreement.** Real, synthetic (and training) data must be station traffic with the same time step and
   the same channels (``channels=`` picks a subset); otherwise :class:`~cellsynth.errors.DataError` says
   what differs.
2. **Time.** Generated series are usually one week; real data may span several. The real series are cut
   into consecutive periods of the generated length ("weeks") and every real week is compared with the
   generated series; steps after the last whole week are left out, and the output says so.
3. **Scale.** Each channel is divided by its maximum over the training data (without training data: over
   the real data; the output says which). Every metric is scored on that normalised scale; the metrics that
   have units (the paired errors) are also reported in the data's original units.
4. **Pairing.** When every generated station id (``"<id>#<k>"`` with the sample suffix stripped) is a
   real station id, the data are aligned by id and each real week of a station is paired with all of that
   station's samples: MAE, RMSE (per sample and of the sample mean), coverage and the paired daily-cycle
   RMSE, plus every distribution metric. Otherwise only distributions are compared (quantile-matched
   daily-cycle RMSE).
5. **Memorisation.** With training data, :func:`cellsynth.metrics.memorisation_check` compares each
   generated series (one week, all channels, normalised, flattened) with the training weeks and with the
   held-out real weeks (real stations that are not training stations).

User mobility (:func:`evaluate_users`): the six trajectory JSDs on the real stations table's coordinates
(without coordinates the four that need none), the traffic JSDs of values and first differences and the
daily-cycle RMSE when both sides have traffic (30-minute steps: 48 steps a day), and a memorisation check
on trajectories as sequences of station positions (km) when training users are given. Real users spanning
several weeks are cut into user-weeks as station traffic is.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import cellsynth
from cellsynth import metrics
from cellsynth.data.io import write_text_atomic
from cellsynth.data.model import Stations, StationTraffic, UserMobility
from cellsynth.data.samples import sample_index
from cellsynth.errors import DataError
from cellsynth.geo import local_km

__all__ = [
    "METRICS",
    "Evaluation",
    "MetricInfo",
    "StationComparison",
    "UserComparison",
    "evaluate",
    "evaluate_users",
    "memorisation_verdict",
]

# ------------------------------------------------------------------------------------------------------------
# What each metric means, for the JSON file and the report's table


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is presented: a short name, what it measures in plain words, and which way is better."""

    label: str
    description: str
    better: str
    has_units: bool = False  # True: reported in original units too (scale-free metrics are the same on both)


_LOWER = "lower is better"
_JSD = "lower is better (0 = same distribution, 1 = no overlap)"

METRICS: dict[str, MetricInfo] = {
    "mae": MetricInfo(
        "MAE",
        "Mean absolute error, hour by hour, between a generated week and the real week of the same station "
        "(each sample scored on its own, then averaged).",
        _LOWER,
        has_units=True,
    ),
    "rmse": MetricInfo(
        "RMSE",
        "Root mean squared error of one generated sample against the real week of its station; big misses "
        "weigh more than in the MAE. Averaged over samples.",
        _LOWER,
        has_units=True,
    ),
    "mae_of_mean": MetricInfo(
        "MAE of the sample mean",
        "MAE of the average of a station's generated samples: how close the generator's expected week is.",
        _LOWER,
        has_units=True,
    ),
    "rmse_of_mean": MetricInfo(
        "RMSE of the sample mean",
        "RMSE of the average of a station's generated samples.",
        _LOWER,
        has_units=True,
    ),
    "coverage": MetricInfo(
        "Coverage of the 5-95 % band",
        "Share of real hours that fall inside the range spanned by the station's generated samples (5th to "
        "95th percentile at each hour).",
        "about 0.9 is best: lower = samples too narrow or biased, higher = too wide",
    ),
    "value_jsd": MetricInfo(
        "JSD of values",
        "Jensen-Shannon divergence (base 2) between the histograms of all traffic values, real vs generated.",
        _JSD,
    ),
    "log_value_jsd": MetricInfo(
        "JSD of log values",
        "The same on a log scale, log(1 + x / median real value): tells zeros, quiet and busy hours apart "
        "where heavy tails crowd the plain histogram's first bin.",
        _JSD,
    ),
    "diff_jsd": MetricInfo(
        "JSD of first differences",
        "Jensen-Shannon divergence between the histograms of step-to-step changes: how jumpy the series are.",
        _JSD,
    ),
    "daily_periodic_rmse": MetricInfo(
        "Daily-cycle RMSE",
        "RMSE between the share of each series' fluctuation that repeats once a day (its spectrum at the "
        "daily frequency); station by station when paired, else between matched quantiles.",
        _LOWER,
    ),
    "acf_distance": MetricInfo(
        "Autocorrelation distance",
        "Mean absolute difference between the average autocorrelation curves (lags up to one week): how "
        "well the generated series remember their own past.",
        "lower is better (0 to 2)",
    ),
    "weekly_profile_error": MetricInfo(
        "Weekly profile error",
        "Total absolute difference between the average real week and the average generated week, "
        "relative to the average real week's total.",
        "lower is better (0 = same average week)",
    ),
    "peak_hour_jsd": MetricInfo(
        "Peak-hour JSD",
        "Jensen-Shannon divergence between the hours of the day at which the daily peaks happen.",
        _JSD,
    ),
    "value_jsd_published": MetricInfo(
        "JSD of values (published variant)",
        "The published MSTDiff code's variant: JS distance, each set binned on its own range, first "
        "sample only. For comparison with the papers' tables only, not with the other rows.",
        _LOWER,
    ),
    "diff_jsd_published": MetricInfo(
        "JSD of first differences (published variant)",
        "The published code's variant (differences across stations, not along time). Papers' tables only.",
        _LOWER,
    ),
    "daily_periodic_rmse_published": MetricInfo(
        "Daily-cycle RMSE (published variant)",
        "The published code's variant (mean included in the spectrum). Papers' tables only.",
        _LOWER,
    ),
    "distance": MetricInfo(
        "Jump distance JSD",
        "How far users move in one jump between stations (km, log scale), real vs generated.",
        _JSD,
    ),
    "radius": MetricInfo(
        "Radius of gyration JSD",
        "How far each user ranges around their own centre over the period (km, log scale).",
        _JSD,
    ),
    "distinct_loc": MetricInfo(
        "Distinct stations JSD",
        "How many different stations each user visits over the period.",
        _JSD,
    ),
    "duration": MetricInfo(
        "Stay duration JSD",
        "How long users stay at one station before moving (consecutive steps).",
        _JSD,
    ),
    "g_rank": MetricInfo(
        "Global rank JSD",
        "How all visits concentrate on the busiest 10 % of stations, rank by rank.",
        _JSD,
    ),
    "i_rank": MetricInfo(
        "Individual rank JSD",
        "How each user's time splits between their most visited station, their second, and so on.",
        _JSD,
    ),
}

_PAIRED_ERRORS = ("mae", "rmse", "mae_of_mean", "rmse_of_mean")
_NEEDS_COORDINATES = ("distance", "radius")


# ------------------------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True, eq=False)
class StationComparison:
    """The aligned, normalised arrays the station metrics were computed on (used by the report's figures).

    ``real[n, w, t, c]``: real station n, week w (``weeks`` of them), step t, channel c, divided by
    ``scale[c]``; ``generated[m, k, t, c]``: generated station m, sample k. When ``paired``, real station n
    and generated station n are the same station (``real_ids == generated_ids``).
    """

    channels: tuple[str, ...]
    scale: np.ndarray
    real: np.ndarray
    generated: np.ndarray
    real_stations: Stations
    generated_stations: Stations
    paired: bool
    steps_per_day: int
    step: pd.Timedelta
    start: pd.Timestamp
    memorisation: dict[str, Any] | None = None


@dataclass(frozen=True, eq=False)
class UserComparison:
    """The aligned arrays of a user evaluation (used by the report's figures).

    ``real_locations[u, t]`` (real user-weeks) and ``generated_locations[v, t]`` index ``stations`` (the real
    data's table; generated ids were mapped onto it). Traffic, when both sides have it, is divided by
    ``traffic_scale``.
    """

    stations: Stations
    real_locations: np.ndarray
    generated_locations: np.ndarray
    real_traffic: np.ndarray | None
    generated_traffic: np.ndarray | None
    traffic_scale: float | None
    steps_per_day: int
    step: pd.Timedelta
    start: pd.Timestamp
    memorisation: dict[str, Any] | None = None


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The outcome of :func:`evaluate`: the metric table, what was compared, and the memorisation check.

    ``metrics[group][metric]`` is ``{"value": v}`` with ``v`` scored on the normalised scale (``None`` when
    the metric is undefined for these data, with ``"reason"``), plus ``"original"`` (the same metric in the
    data's original units) for the metrics with units. Groups are the channels for station traffic, and
    ``"trajectory"`` / ``"traffic"`` for users. ``comparison`` describes the data, the alignment and the
    protocol in words; ``memorisation`` summarises the copying check (``None`` without training data);
    ``notes`` lists everything left out or worth a warning. ``aligned`` holds the arrays for the figures and
    is not serialised.
    """

    kind: str
    metrics: dict[str, dict[str, dict[str, Any]]]
    comparison: dict[str, Any]
    memorisation: dict[str, Any] | None
    notes: tuple[str, ...]
    aligned: StationComparison | UserComparison = field(repr=False)

    @property
    def paired(self) -> bool:
        return bool(self.comparison.get("paired", False))

    def value(self, group: str, metric: str) -> float | None:
        """The score of ``metric`` in ``group`` (a channel, ``"trajectory"`` or ``"traffic"``)."""
        try:
            return self.metrics[group][metric]["value"]
        except KeyError:
            raise KeyError(
                f"no metric {metric!r} in group {group!r}; groups and metrics: "
                + "; ".join(f"{g}: {', '.join(m)}" for g, m in self.metrics.items())
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """Everything but the arrays, as plain JSON types (non-finite numbers become ``None``)."""
        used = {name for group in self.metrics.values() for name in group}
        return _json_ready(
            {
                "cellsynth_version": cellsynth.__version__,
                "kind": self.kind,
                "comparison": self.comparison,
                "metrics": self.metrics,
                "memorisation": self.memorisation,
                "notes": list(self.notes),
                "metric_definitions": {
                    name: {"label": info.label, "description": info.description, "better": info.better}
                    for name, info in METRICS.items()
                    if name in used
                },
            }
        )

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` atomically (temp file, then rename)."""
        path = Path(path)
        write_text_atomic(path, self.to_json_text())
        return path

    def to_json_text(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


# ------------------------------------------------------------------------------------------------------------
# Station traffic


def evaluate(
    real: StationTraffic | UserMobility,
    synthetic: StationTraffic | UserMobility,
    *,
    train: StationTraffic | UserMobility | None = None,
    channels: Sequence[str] | None = None,
    bins: int = metrics.DEFAULT_BINS,
    compat: bool = False,
) -> Evaluation:
    """Score generated data against real data (see the module docstring for the protocol).

    ``real`` is usually the held-out real data and ``train`` the data the generator was fitted on (for the
    normalisation and the memorisation check). ``channels`` restricts a station evaluation to those channels;
    ``bins`` is the number of histogram bins of the JSDs; ``compat=True`` adds the published code's metric
    variants (labelled "published variant") for comparison with the papers' tables. User mobility is
    handed to :func:`evaluate_users`.
    """
    _check_bins(bins)
    if isinstance(real, UserMobility):
        if channels is not None:
            raise DataError("channels= selects station traffic channels; user mobility has no channels")
        return evaluate_users(real, synthetic, train=train, bins=bins, compat=compat)
    real = _expect(real, StationTraffic, "real")
    synthetic = _expect(synthetic, StationTraffic, "synthetic")
    if train is not None:
        train = _expect(train, StationTraffic, "training")
    notes: list[str] = []
    chosen = _resolve_channels(real, synthetic, train, channels)
    _check_step(real, synthetic, train)
    period, weeks, steps_per_day = _align_time(real, synthetic, train, notes)

    generated_ids, positions = sample_index(synthetic.stations.ids)
    generated_values = synthetic.select_channels(chosen).values[positions]  # [M, K, T, C]
    generated_stations = synthetic.stations.take(positions[:, 0], generated_ids)
    real_index, paired = _pair_stations(real, generated_ids, notes)
    real_values = real.select_channels(chosen).values[real_index, : weeks * period]
    real_values = real_values.reshape(len(real_index), weeks, period, len(chosen))

    reference = train if train is not None else real
    scale = _channel_maxima(reference.select_channels(chosen), "training" if train is not None else "real")
    real_norm = real_values.astype(np.float64) / scale
    generated_norm = generated_values.astype(np.float64) / scale

    _note_outsized(generated_norm, real_norm, chosen, notes)
    table = {}
    n_real = len(real_index)
    for c, channel in enumerate(chosen):
        real_series = real_norm[..., c].reshape(n_real * weeks, period)
        generated_series = generated_norm[..., c]
        if paired:
            # Every real week of station n is paired with all of station n's samples.
            generated_series = np.repeat(generated_series, weeks, axis=0)
        table[channel] = _traffic_scores(
            real_series,
            generated_series,
            unit=float(scale[c]),
            steps_per_day=steps_per_day,
            paired=paired,
            bins=bins,
            compat=compat,
            notes=notes,
            group=channel,
        )

    memorisation = None
    if train is not None:
        train_values = train.select_channels(chosen).values
        train_weeks = train_values.shape[1] // period
        train_series = train_values[:, : train_weeks * period].reshape(-1, period, len(chosen)) / scale
        held_out = ~np.isin(real.stations.ids.astype(str), train.stations.ids.astype(str))
        all_real = real.select_channels(chosen).values[:, : weeks * period]
        held_out_series = all_real[held_out].reshape(-1, period, len(chosen)) / scale
        memorisation = _run_memorisation(
            train_series,
            held_out_series,
            generated_norm.reshape(-1, period, len(chosen)),
            series=f"{_span(period, real.step)} per series ({_join(chosen)}), normalised, flattened",
            held_out_what="real stations that are not training stations",
            notes=notes,
        )

    scale_source = "training" if train is not None else "real"
    k = generated_values.shape[1]
    comparison = {
        "real": _describe_traffic(real),
        "synthetic": _describe_traffic(synthetic)
        | {"stations": len(generated_ids), "samples_per_station": k},
        "train": None if train is None else _describe_traffic(train),
        "channels": list(chosen),
        "period_steps": period,
        "period": _span(period, real.step),
        "real_periods": weeks,
        "steps_per_day": steps_per_day,
        "paired": paired,
        "stations_compared": {"real": n_real, "generated": len(generated_ids)},
        "normalisation": {
            "by": f"maximum of each channel over the {scale_source} data",
            "maximum": {channel: float(scale[c]) for c, channel in enumerate(chosen)},
        },
        "bins": int(bins),
        "compat": bool(compat),
        "protocol": _station_protocol(
            chosen, period, weeks, real.step, paired, scale_source, k, n_real, train
        ),
    }
    aligned = StationComparison(
        channels=chosen,
        scale=scale,
        real=real_norm,
        generated=generated_norm,
        real_stations=real.stations.subset(real_index),
        generated_stations=generated_stations,
        paired=paired,
        steps_per_day=steps_per_day,
        step=real.step,
        start=real.start,
        memorisation=memorisation,
    )
    return Evaluation(
        kind="station_traffic",
        metrics=table,
        comparison=comparison,
        memorisation=_memorisation_summary(memorisation),
        notes=tuple(notes),
        aligned=aligned,
    )


def _traffic_scores(
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
        value, reason = _attempt(compute)
        scores[name] = {"value": value} if reason is None else {"value": None, "reason": reason}
        if reason is not None:
            notes.append(f"{group}: {METRICS[name].label} not computed: {reason}")

    if paired:
        errors, reason = _attempt(lambda: metrics.paired_errors(real, generated))
        original, _ = _attempt(lambda: metrics.paired_errors(real * unit, generated * unit))
        for name in _PAIRED_ERRORS:
            scores[name] = (
                {"value": errors[name], "original": original[name]}
                if reason is None
                else {"value": None, "original": None, "reason": reason}
            )
        if generated.shape[1] >= 2:
            score("coverage", lambda: metrics.coverage(real, generated))
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


def _note_outsized(generated: np.ndarray, real: np.ndarray, channels, notes: list[str]) -> None:
    """Say so when generated values go far beyond the real ones: the histograms' shared bins then span the
    generated range, the real values crowd into the first bins, and the value and difference JSDs can look
    deceptively good (docs/metrics.md)."""
    for c, channel in enumerate(channels):
        real_max, generated_max = real[..., c].max(), generated[..., c].max()
        if generated_max > 2 * real_max:
            beyond = float(np.mean(generated[..., c] > real_max))
            notes.append(
                f"{channel}: generated values reach {generated_max / real_max:.3g} times the largest real value "
                f"({beyond:.2%} of generated values exceed it). The histogram JSDs share bins over the whole "
                "range, so they understate the mismatch; look at the value histograms."
            )


def _pair_stations(
    real: StationTraffic, generated_ids: list[str], notes: list[str]
) -> tuple[np.ndarray, bool]:
    """Positions of the real stations to compare, and whether they pair one-to-one with the generated ones."""
    real_ids = {str(sid): i for i, sid in enumerate(real.stations.ids)}
    matched = [sid for sid in generated_ids if sid in real_ids]
    if len(matched) == len(generated_ids):
        left_out = real.n_stations - len(matched)
        if left_out:
            notes.append(
                f"{left_out} of the {real.n_stations} real stations have no generated series and are left out "
                "of every metric."
            )
        return np.array([real_ids[sid] for sid in generated_ids], dtype=np.int64), True
    if matched:
        notes.append(
            f"Only {len(matched)} of the {len(generated_ids)} generated station ids are real station ids; "
            "pairing needs all of them, so only distributions are compared."
        )
    return np.arange(real.n_stations), False


def _resolve_channels(
    real: StationTraffic, synthetic: StationTraffic, train: StationTraffic | None, channels
) -> tuple[str, ...]:
    if channels is None:
        if set(real.channels) != set(synthetic.channels):
            raise DataError(
                f"the real data has channels {list(real.channels)} but the synthetic data has "
                f"{list(synthetic.channels)}; generate the same channels, or pass channels=[...] "
                "(--channels) to compare only channels both have"
            )
        chosen = real.channels
    else:
        chosen = tuple(str(c) for c in ([channels] if isinstance(channels, str) else channels))
        if not chosen or len(set(chosen)) != len(chosen):
            raise DataError(f"channels must name at least one channel, each once; got {list(chosen)}")
    for role, data in (("real", real), ("synthetic", synthetic), ("training", train)):
        if data is None:
            continue
        missing = [c for c in chosen if c not in data.channels]
        if missing:
            raise DataError(
                f"the {role} data has no channel(s) {missing}; its channels are {list(data.channels)}",
                source=data.source,
            )
    return chosen


def _channel_maxima(reference: StationTraffic, role: str) -> np.ndarray:
    maxima = reference.values.max(axis=(0, 1)).astype(np.float64)
    for channel, maximum in zip(reference.channels, maxima):
        if maximum <= 0:
            raise DataError(
                f"channel {channel!r} is zero everywhere in the {role} data, so there is no maximum to "
                "normalise by; leave the channel out (channels=...)",
                source=reference.source,
            )
    return maxima


def _station_protocol(chosen, period, weeks, step, paired, scale_source, k, n_real, train) -> list[str]:
    span = _span(period, step)
    lines = [
        f"Channels compared: {_join(chosen)}, each on its own."
        if len(chosen) > 1
        else f"Channel compared: {chosen[0]}.",
        f"Each channel is divided by its maximum over the {scale_source} data, so 1.0 is the busiest hour seen "
        "there; every metric is scored on that scale, and the errors with units are also given in the data's "
        "original units.",
    ]
    if weeks > 1:
        lines.append(
            f"Generated series are {span} long; the real series were cut into {weeks} consecutive periods of "
            f"{span} (weeks), and every real week is compared with the generated series."
        )
    else:
        lines.append(f"Generated and real series are both {span} long and are compared step by step.")
    if paired:
        lines.append(
            "Generated series carry real station ids, so each real station is compared with its own "
            + ("generated series" if k == 1 else f"{k} generated samples")
            + f" ({n_real} stations): paired errors (MAE, RMSE), "
            + ("" if k == 1 else "coverage, ")
            + "the paired daily-cycle RMSE, and the distribution metrics."
        )
    else:
        lines.append(
            "Generated stations are not real stations (or not all of them), so only distributions are "
            "compared: histograms, autocorrelation, average week, daily cycle at matched quantiles."
        )
    if train is not None:
        lines.append(
            "Memorisation: each generated series is compared with the closest training series and the closest "
            "held-out real series; a generator that copies its training data shows up as near-copies."
        )
    else:
        lines.append("No training data given: no memorisation check (pass the training data to run it).")
    return lines


def _describe_traffic(data: StationTraffic) -> dict[str, Any]:
    return {
        "shape": list(data.values.shape),
        "stations": data.n_stations,
        "steps": data.n_steps,
        "channels": list(data.channels),
        "step": _format_step(data.step),
        "start": data.start.isoformat(),
        "coordinates": data.stations.has_coordinates,
        "source": data.source,
    }


# ------------------------------------------------------------------------------------------------------------
# User mobility


def evaluate_users(
    real: UserMobility,
    synthetic: UserMobility,
    *,
    train: UserMobility | None = None,
    bins: int = metrics.DEFAULT_BINS,
    compat: bool = False,
) -> Evaluation:
    """Score generated users against real users (see the module docstring).

    Generated users' station ids are mapped onto the real stations table (an id it lacks is an error);
    trajectory metrics use that table's coordinates. ``train`` (the users the generator was fitted on)
    normalises traffic and enables the memorisation check.
    """
    _check_bins(bins)
    real = _expect(real, UserMobility, "real")
    synthetic = _expect(synthetic, UserMobility, "synthetic")
    if train is not None:
        train = _expect(train, UserMobility, "training")
    notes: list[str] = []
    _check_step(real, synthetic, train)
    period, weeks, steps_per_day = _align_time(real, synthetic, train, notes)
    stations = real.stations
    real_locations = real.locations[:, : weeks * period].reshape(-1, period)
    generated_locations = _relabel(synthetic, stations, "synthetic")
    has_coordinates = stations.has_coordinates

    table: dict[str, dict[str, dict[str, Any]]] = {}
    trajectory: dict[str, dict[str, Any]] = {}
    # The four coordinate-free statistics do not read lat/lon: without coordinates, trajectory_jsds runs on
    # placeholder coordinates and the two distance-based JSDs (meaningless there) are left out.
    lat = stations.lat if has_coordinates else np.zeros(len(stations))
    lon = stations.lon if has_coordinates else np.zeros(len(stations))
    jsds, reason = _attempt(
        lambda: metrics.trajectory_jsds(real_locations, generated_locations, lat, lon, bins=bins)
    )
    for name in ("distance", "radius", "distinct_loc", "duration", "g_rank", "i_rank"):
        if name in _NEEDS_COORDINATES and not has_coordinates:
            continue
        trajectory[name] = {"value": jsds[name]} if reason is None else {"value": None, "reason": reason}
    if reason is not None:
        notes.append(f"trajectory metrics not computed: {reason}")
    if not has_coordinates:
        notes.append(
            "The stations table has no coordinates: the jump-distance and radius-of-gyration JSDs, the "
            "trajectory maps and the station map are left out."
        )
    table["trajectory"] = trajectory

    real_traffic = generated_traffic = traffic_scale = None
    if real.has_traffic and synthetic.has_traffic:
        reference = train if train is not None and train.has_traffic else real
        traffic_scale = float(reference.traffic.max())
        if traffic_scale <= 0:
            raise DataError("user traffic is zero everywhere in the reference data; nothing to normalise by")
        real_traffic = (
            real.traffic[:, : weeks * period].reshape(-1, period).astype(np.float64) / traffic_scale
        )
        generated_traffic = synthetic.traffic.astype(np.float64) / traffic_scale
        # MSTDiff's table reports the value and first-difference JSDs and the daily-cycle RMSE; the other
        # distribution metrics of station traffic come along, as users are never paired.
        table["traffic"] = _traffic_scores(
            real_traffic,
            generated_traffic[:, None, :],
            unit=traffic_scale,
            steps_per_day=steps_per_day,
            paired=False,
            bins=bins,
            compat=compat,
            notes=notes,
            group="traffic",
        )
    elif real.has_traffic or synthetic.has_traffic:
        which = "real" if real.has_traffic else "synthetic"
        notes.append(f"Only the {which} users have traffic: the traffic metrics are left out.")

    memorisation = None
    if train is not None:
        memorisation = _user_memorisation(
            real, synthetic, train, stations, period, weeks, traffic_scale, generated_locations, notes
        )

    comparison = {
        "real": _describe_users(real),
        "synthetic": _describe_users(synthetic),
        "train": None if train is None else _describe_users(train),
        "period_steps": period,
        "period": _span(period, real.step),
        "real_periods": weeks,
        "steps_per_day": steps_per_day,
        "paired": False,
        "coordinates": has_coordinates,
        "normalisation": None
        if traffic_scale is None
        else {
            "by": "maximum of the "
            + ("training" if train is not None and train.has_traffic else "real")
            + " users' traffic",
            "maximum": traffic_scale,
        },
        "bins": int(bins),
        "compat": bool(compat),
        "protocol": _user_protocol(real, synthetic, period, weeks, has_coordinates, traffic_scale, train),
    }
    aligned = UserComparison(
        stations=stations,
        real_locations=real_locations,
        generated_locations=generated_locations,
        real_traffic=real_traffic,
        generated_traffic=generated_traffic,
        traffic_scale=traffic_scale,
        steps_per_day=steps_per_day,
        step=real.step,
        start=real.start,
        memorisation=memorisation,
    )
    return Evaluation(
        kind="user_mobility",
        metrics=table,
        comparison=comparison,
        memorisation=_memorisation_summary(memorisation),
        notes=tuple(notes),
        aligned=aligned,
    )


def _relabel(users: UserMobility, stations: Stations, role: str) -> np.ndarray:
    """``users.locations`` as indices into ``stations`` (matched by station id)."""
    visited = np.unique(users.locations)
    try:
        index = stations.index_of(users.stations.ids[visited])
    except DataError as err:
        raise DataError(
            f"the {role} users visit stations that the real stations table does not have ({err}); evaluate "
            "users over the same stations",
            source=users.source,
        ) from None
    lookup = np.zeros(len(users.stations), dtype=np.int64)
    lookup[visited] = index
    return lookup[users.locations]


def _user_memorisation(
    real, synthetic, train, stations, period, weeks, traffic_scale, generated_locations, notes
) -> dict[str, Any] | None:
    """Memorisation on user-weeks: station positions (km) per step, else normalised traffic."""
    held_out = ~np.isin(np.array(real.user_ids), np.array(train.user_ids))
    if stations.has_coordinates:
        # [L, 2] km east and north of the stations' mean position; only differences matter.
        xy = np.stack(local_km(stations.lat, stations.lon, stations.lat.mean(), stations.lon.mean()), axis=1)
        train_weeks = train.n_steps // period
        train_series = xy[
            _relabel(train, stations, "training")[:, : train_weeks * period].reshape(-1, period)
        ]
        held_out_series = xy[real.locations[held_out, : weeks * period].reshape(-1, period)]
        generated_series = xy[generated_locations]
        series = "one user-week as the positions (km) of the stations visited at each step, flattened"
    elif traffic_scale is not None and train.has_traffic:
        train_weeks = train.n_steps // period
        train_series = train.traffic[:, : train_weeks * period].reshape(-1, period) / traffic_scale
        held_out_series = real.traffic[held_out, : weeks * period].reshape(-1, period) / traffic_scale
        generated_series = synthetic.traffic / traffic_scale
        series = "one user-week of traffic, normalised (no station coordinates)"
    else:
        notes.append("Memorisation check skipped: it needs station coordinates or traffic on every side.")
        return None
    return _run_memorisation(
        train_series,
        held_out_series,
        generated_series,
        series=series,
        held_out_what="real users that are not training users (by user id)",
        notes=notes,
    )


def _user_protocol(real, synthetic, period, weeks, has_coordinates, traffic_scale, train) -> list[str]:
    span = _span(period, real.step)
    lines = [
        f"Generated users are {span} long"
        + (
            f"; real users were cut into {weeks} consecutive user-weeks of {span}, each one compared as a user."
            if weeks > 1
            else "; so are the real ones."
        ),
        "Users are not paired: the trajectory statistics of all real users are compared with those of all "
        "generated users, as distributions (JSD, base 2).",
        "Trajectory statistics use the real stations table"
        + ("'s coordinates." if has_coordinates else ", which has no coordinates: distances are left out."),
    ]
    if traffic_scale is not None:
        lines.append(
            "User traffic is divided by the maximum of the "
            + ("training" if train is not None and train.has_traffic else "real")
            + " users' traffic and compared as distributions (values, step-to-step changes, daily cycle)."
        )
    if train is not None:
        lines.append(
            "Memorisation: each generated user-week is compared with the closest training user-week and the "
            "closest held-out real user-week."
        )
    else:
        lines.append("No training users given: no memorisation check.")
    return lines


def _describe_users(data: UserMobility) -> dict[str, Any]:
    return {
        "shape": list(data.locations.shape),
        "users": data.n_users,
        "steps": data.n_steps,
        "stations": len(data.stations),
        "traffic": data.has_traffic,
        "step": _format_step(data.step),
        "start": data.start.isoformat(),
        "coordinates": data.stations.has_coordinates,
        "source": data.source,
    }


# ------------------------------------------------------------------------------------------------------------
# Memorisation


def memorisation_verdict(summary: dict[str, Any]) -> str:
    """The memorisation check's outcome in one plain sentence (``summary`` as in ``Evaluation.memorisation``
    or as returned by :func:`cellsynth.metrics.memorisation_check`)."""
    share = summary["near_copy_share"]
    expected = metrics.DEFAULT_NEAR_COPY_QUANTILE
    limit = metrics.DEFAULT_MAX_NEAR_COPY_SHARE
    if summary["flagged"]:
        return (
            f"Likely copying: {share:.0%} of the generated series are near-copies of a training series (closer "
            f"to it than {1 - expected:.0%} of real series come). Genuinely new series score about "
            f"{expected:.0%}; the check flags anything above {limit:.0%}."
        )
    return (
        f"No sign of copying: {share:.0%} of the generated series are near-copies of a training series; "
        f"genuinely new series score about {expected:.0%}, and the check flags anything above {limit:.0%}."
    )


def _run_memorisation(train, held_out, generated, *, series, held_out_what, notes) -> dict[str, Any] | None:
    if len(held_out) == 0:
        notes.append(
            f"Memorisation check skipped: no held-out real series ({held_out_what}); evaluate on real data "
            "that the generator was not trained on."
        )
        return None
    if len(train) < 2:
        notes.append("Memorisation check skipped: it needs at least 2 whole training weeks.")
        return None
    result = metrics.memorisation_check(train, held_out, generated)
    return result | {
        "series": series,
        "held_out_series_are": held_out_what,
        "n_train": len(train),
        "n_held_out": len(held_out),
        "n_generated": len(generated),
    }


def _memorisation_summary(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "series": result["series"],
        "held_out_series_are": result["held_out_series_are"],
        "train_series": result["n_train"],
        "held_out_series": result["n_held_out"],
        "generated_series": result["n_generated"],
        "median_distance_to_train": float(np.median(result["dcr_train"])),
        "median_distance_to_held_out": float(np.median(result["dcr_holdout"])),
        "dcr_ratio": result["dcr_ratio"],
        "near_copy_threshold": result["near_copy_threshold"],
        "near_copy_share": result["near_copy_share"],
        "membership_auc": result["membership_auc"],
        "flagged": result["flagged"],
        "verdict": memorisation_verdict(result),
    }


# ------------------------------------------------------------------------------------------------------------
# Shared checks and helpers


def _kind_name(data: object) -> str:
    if isinstance(data, StationTraffic):
        return "station traffic"
    if isinstance(data, UserMobility):
        return "user mobility"
    return f"a {type(data).__name__}"


def _expect(data: object, kind: type, role: str):
    if not isinstance(data, kind):
        wanted = "station traffic" if kind is StationTraffic else "user mobility"
        raise DataError(
            f"the {role} data is {_kind_name(data)} but {wanted} was expected: real, synthetic and training "
            "data must be of the same kind (all station traffic, or all user mobility)"
        )
    return data


def _check_bins(bins) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise DataError(f"bins must be a positive whole number of histogram bins, got {bins!r}")


def _check_step(real, synthetic, train) -> None:
    for role, data in (("synthetic", synthetic), ("training", train)):
        if data is not None and data.step != real.step:
            raise DataError(
                f"the {role} data has a time step of {_format_step(data.step)} but the real data has "
                f"{_format_step(real.step)}; resample one of them so that both have the same step",
                source=data.source,
            )


def _align_time(real, synthetic, train, notes: list[str]) -> tuple[int, int, int]:
    """``(period, real periods, steps per day)``: real data is compared in periods of the generated length."""
    period = synthetic.n_steps
    try:
        steps_per_day = real.steps_per("1D")
    except DataError:
        raise DataError(
            f"the time step {_format_step(real.step)} does not divide a day; the daily metrics need a whole "
            "number of steps per day"
        ) from None
    if period % steps_per_day:
        raise DataError(
            f"the synthetic series have {period} steps of {_format_step(real.step)}, not a whole number of "
            "days; the daily metrics need whole days",
            source=synthetic.source,
        )
    if real.n_steps < period:
        raise DataError(
            f"the real data has {real.n_steps} steps but each synthetic series has {period}: real data must "
            "span at least one generated series (generate as many steps as the real data has, or fewer)",
            source=real.source,
        )
    weeks = real.n_steps // period
    left = real.n_steps - weeks * period
    if left:
        notes.append(
            f"The real data's last {left} step(s) do not fill a whole period of {_span(period, real.step)} and "
            "are left out."
        )
    if train is not None:
        if train.n_steps < period:
            raise DataError(
                f"the training data has {train.n_steps} steps, less than one generated series ({period})",
                source=train.source,
            )
        train_left = train.n_steps % period
        if train_left:
            notes.append(
                f"The training data's last {train_left} step(s) do not fill a whole period and are left out of "
                "the memorisation check."
            )
    offset = ((synthetic.start - real.start) / real.step) % period
    if offset:
        notes.append(
            f"The generated series start at {_when(synthetic.start)}, the real periods at {_when(real.start)}: "
            "series are compared step by step, so this shift of "
            f"{_format_step(real.step * int(offset))} counts as error in the profile and paired metrics."
        )
    return period, weeks, steps_per_day


def _attempt(compute: Callable[[], Any]) -> tuple[Any, str | None]:
    """``(result, None)``, or ``(None, reason)`` when the metric is undefined for these data."""
    try:
        return compute(), None
    except DataError as err:
        return None, str(err)


def _format_step(step: pd.Timedelta) -> str:
    minutes = step / pd.Timedelta("1min")
    if minutes == int(minutes) and minutes >= 60 and minutes % 60 == 0:
        return f"{int(minutes // 60)} h"
    if minutes == int(minutes):
        return f"{int(minutes)} min"
    return str(step)


def _span(steps: int, step: pd.Timedelta) -> str:
    """A duration in words: "one week", "2 weeks", "3 days", "36 h"."""
    total = step * steps
    week, day = pd.Timedelta("7D"), pd.Timedelta("1D")
    if total % week == pd.Timedelta(0):
        n = total // week
        return "one week" if n == 1 else f"{n} weeks"
    if total % day == pd.Timedelta(0):
        n = total // day
        return "one day" if n == 1 else f"{n} days"
    return f"{total / pd.Timedelta('1h'):g} h"


def _when(ts: pd.Timestamp) -> str:
    return ts.strftime("%a %Y-%m-%d %H:%M %Z")


def _join(names: Sequence[str]) -> str:
    return ", ".join(names)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    return value
