"""Evaluation of generated station traffic (:func:`evaluate`; the protocol is described in
:mod:`cellsynth.evaluate`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from cellsynth import metrics
from cellsynth.data.model import StationTraffic, UserMobility
from cellsynth.data.samples import sample_index
from cellsynth.errors import DataError
from cellsynth.evaluate.alignment import (
    align_time,
    check_bins,
    check_step,
    expect_kind,
    format_step,
    span_in_words,
)
from cellsynth.evaluate.memorisation import memorisation_summary, run_memorisation
from cellsynth.evaluate.result import Evaluation, StationComparison, normalise
from cellsynth.evaluate.scores import forecast_utility_scores, note_outsized, traffic_scores
from cellsynth.evaluate.users import evaluate_users

__all__ = ["evaluate"]


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
    check_bins(bins)
    if isinstance(real, UserMobility):
        if channels is not None:
            raise DataError("channels= selects station traffic channels; user mobility has no channels")
        return evaluate_users(real, synthetic, train=train, bins=bins, compat=compat)
    real = expect_kind(real, StationTraffic, "real")
    synthetic = expect_kind(synthetic, StationTraffic, "synthetic")
    if train is not None:
        train = expect_kind(train, StationTraffic, "training")
    notes: list[str] = []
    chosen = _resolve_channels(real, synthetic, train, channels)
    check_step(real, synthetic, train)
    period, weeks, steps_per_day = align_time(real, synthetic, train, notes)

    # Memory: the aligned arrays are the data as loaded (views when the stations line up in order), and the
    # metrics get one channel at a time in float64 (docs/scale.md, "Evaluating at Milan size").
    generated_ids, positions = sample_index(synthetic.stations.ids)
    generated_values = _take_rows(_channel_values(synthetic, chosen), positions)  # [M, K, T, C]
    generated_stations = synthetic.stations.take(positions[:, 0], generated_ids)
    real_index, paired = _pair_stations(real, generated_ids, notes)
    real_values = _take_rows(_channel_values(real, chosen), real_index)[:, : weeks * period]
    real_values = real_values.reshape(len(real_index), weeks, period, len(chosen))

    reference = train if train is not None else real
    scale = _channel_maxima(reference, chosen, "training" if train is not None else "real")
    aligned = StationComparison(
        channels=chosen,
        scale=scale,
        real_values=real_values,
        generated_values=generated_values,
        real_stations=real.stations.subset(real_index),
        generated_stations=generated_stations,
        paired=paired,
        steps_per_day=steps_per_day,
        step=real.step,
        start=real.start,
    )

    if train is not None:
        # Real data the generator was not trained on: the stations it was not trained on, or, when the real
        # data starts after the training data ends (future weeks of known stations), all of it.
        train_weeks = train.n_steps // period
        # [S stations, whole weeks, C]
        train_values = _channel_values(train, chosen)[:, : train_weeks * period]
        later = real.start >= train.end
        held_out = ~np.isin(real.stations.ids.astype(str), train.stations.ids.astype(str)) | later
        held_out_values = _take_rows(_channel_values(real, chosen), np.flatnonzero(held_out))
        held_out_values = held_out_values[:, : weeks * period]
    table = {}
    # The warnings about outsized values concern every metric of their channel, so they lead the notes.
    outsized_notes: list[str] = []
    metric_notes: list[str] = []
    for c, channel in enumerate(chosen):
        real_channel = aligned.real_channel(c)  # [N, W, T]: each real week against the station's samples
        generated_channel = aligned.generated_channel(c)  # [M, K, T]
        note_outsized(channel, generated_channel, real_channel, outsized_notes)
        table[channel] = traffic_scores(
            real_channel,
            generated_channel,
            unit=float(scale[c]),
            steps_per_day=steps_per_day,
            paired=paired,
            bins=bins,
            compat=compat,
            notes=metric_notes,
            group=channel,
        )
        if train is not None:
            # A station's consecutive weeks form one series, so day pairs also span week boundaries.
            table[channel] |= forecast_utility_scores(
                normalise(train_values[..., c], scale[c]),
                generated_channel,
                normalise(held_out_values[..., c], scale[c]),
                unit=float(scale[c]),
                steps_per_day=steps_per_day,
                notes=metric_notes,
                group=channel,
            )
        del real_channel, generated_channel  # before the next channel's are made
    notes += outsized_notes + metric_notes

    memorisation = None
    if train is not None:
        memorisation = run_memorisation(
            train_values.reshape(-1, period, len(chosen)),
            held_out_values.reshape(-1, period, len(chosen)),
            generated_values.reshape(-1, period, len(chosen)),
            scale=scale,
            series=f"{span_in_words(period, real.step)} per series ({_join(chosen)}), normalised, flattened",
            held_out_what="real weeks after the training data"
            if later
            else "real stations that are not training stations",
            notes=notes,
        )
        aligned = dataclasses.replace(aligned, memorisation=memorisation)

    scale_source = "training" if train is not None else "real"
    k = generated_values.shape[1]
    n_real = len(real_index)
    comparison = {
        "real": _describe_traffic(real),
        "synthetic": _describe_traffic(synthetic)
        | {"stations": len(generated_ids), "samples_per_station": k},
        "train": None if train is None else _describe_traffic(train),
        "channels": list(chosen),
        "period_steps": period,
        "period": span_in_words(period, real.step),
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
    return Evaluation(
        kind="station_traffic",
        metrics=table,
        comparison=comparison,
        memorisation=memorisation_summary(memorisation),
        notes=tuple(notes),
        aligned=aligned,
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


def _channel_values(data: StationTraffic, chosen: tuple[str, ...]) -> np.ndarray:
    """``data``'s values [S, T, C] of the ``chosen`` channels in their order: the loaded array itself when
    those are all its channels in its order, a copy of the chosen ones otherwise."""
    return data.values if tuple(chosen) == tuple(data.channels) else data.select_channels(chosen).values


def _take_rows(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[index]`` for an array ``index`` of row positions (any shape): a view when the positions are
    consecutive rows in order (the same stations in the same order, the usual case), else a copy."""
    flat = np.asarray(index).ravel()
    if flat.size and np.array_equal(flat, np.arange(flat[0], flat[0] + flat.size)):
        return values[flat[0] : flat[0] + flat.size].reshape(np.shape(index) + values.shape[1:])
    return values[index]


def _channel_maxima(reference: StationTraffic, chosen: tuple[str, ...], role: str) -> np.ndarray:
    maxima = _channel_values(reference, chosen).max(axis=(0, 1)).astype(np.float64)
    for channel, maximum in zip(chosen, maxima):
        if maximum <= 0:
            raise DataError(
                f"channel {channel!r} is zero everywhere in the {role} data, so there is no maximum to "
                "normalise by; leave the channel out (channels=...)",
                source=reference.source,
            )
    return maxima


def _station_protocol(chosen, period, weeks, step, paired, scale_source, k, n_real, train) -> list[str]:
    span = span_in_words(period, step)
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
            + "the paired daily-cycle RMSE, the busy-hour dimensioning error"
            + ("" if k == 1 else " and coverage")
            + ", and the distribution metrics."
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
        lines.append(
            "Forecast utility (train on synthetic, test on real): one fixed day-ahead forecaster is fitted on "
            "the generated series and on the real training series, and both forecast the held-out real days."
        )
    else:
        lines.append(
            "No training data given: no memorisation check and no forecast utility (pass the training data "
            "to run them)."
        )
    return lines


def _describe_traffic(data: StationTraffic) -> dict[str, Any]:
    return {
        "shape": list(data.values.shape),
        "stations": data.n_stations,
        "steps": data.n_steps,
        "channels": list(data.channels),
        "step": format_step(data.step),
        "start": data.start.isoformat(),
        "coordinates": data.stations.has_coordinates,
        "source": data.source,
    }


def _join(names: Sequence[str]) -> str:
    return ", ".join(names)
