"""The report's figures: one function per figure, each returning a matplotlib ``Figure``.

Figures are built on ``matplotlib.figure.Figure`` directly (the Agg renderer, no pyplot), so drawing them
neither needs a display nor touches global state, and they are embedded in the page as base64 PNG
(:func:`to_data_uri`). Every figure uses the same colours (real blue, generated orange), axis labels that
say the unit, and legends "real" / "generated".
"""

from __future__ import annotations

import base64
import functools
import io
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cellsynth import metrics
from cellsynth.data.model import Stations
from cellsynth.errors import DataError
from cellsynth.geo import local_km

if TYPE_CHECKING:
    from cellsynth.evaluate import Evaluation

__all__ = [
    "GENERATED",
    "PRIVACY_PANELS",
    "REAL",
    "REFERENCE",
    "channel_mean",
    "distributions",
    "example_series",
    "mean_load_scatter",
    "memorisation",
    "privacy_tradeoff",
    "station_map",
    "to_data_uri",
    "trajectories_map",
    "trajectory_distributions",
    "weekly_profile",
]

REAL = "#2b6cb0"
GENERATED = "#dd6b20"
REFERENCE = "#718096"
WIDTH = 9.6  # inches; at DPI this fills the page's 1000-pixel column
DPI = 110

_STYLE = {
    "font.size": 9.5,
    "axes.titlesize": 10.5,
    "axes.labelsize": 9.5,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e2e8f0",
    "grid.linewidth": 0.7,
    "axes.axisbelow": True,
    "figure.facecolor": "white",
}


def _styled(draw):
    """Run a figure function under the report's style (rcParams apply when artists are created)."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(_STYLE):
            return draw(*args, **kwargs)

    return wrapper


def to_data_uri(figure: Figure) -> str:
    """The figure as a ``data:image/png;base64,...`` URI, to embed in a self-contained page."""
    buffer = io.BytesIO()
    # The constrained layout already fits labels in the canvas; bbox_inches="tight" would draw twice.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _figure(height: float, nrows: int = 1, ncols: int = 1, **kwargs) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(WIDTH, height), layout="constrained")
    axes = figure.subplots(nrows, ncols, squeeze=False, **kwargs)
    return figure, axes


def _shared_edges(a: np.ndarray, b: np.ndarray, bins: int) -> np.ndarray:
    lo = min(a.min(), b.min())
    hi = max(a.max(), b.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def _overlaid_histograms(ax, real: np.ndarray, generated: np.ndarray, *, bins: int = 60) -> None:
    """Real filled, generated as an outline, on shared bins; y is the share of values in each bin.

    When generated values run far beyond the real range (more than the real range again on either side), the
    bins cover the real range (plus a margin) and the panel says how many generated values lie outside:
    otherwise a few wild values would squeeze every real value into the first bin.
    """
    low, high = min(real.min(), generated.min()), max(real.max(), generated.max())
    span = max(real.max() - real.min(), 1e-12)
    outside = 0
    if generated.max() > real.max() + span or generated.min() < real.min() - span:
        low, high = real.min() - 0.1 * span, real.max() + 0.1 * span
        outside = int(np.sum((generated < low) | (generated > high)))
    edges = np.linspace(low, high, bins + 1) if high > low else np.linspace(low - 0.5, low + 0.5, bins + 1)
    for values, colour, label, fill in (
        (real, REAL, "real", True),
        (generated, GENERATED, "generated", False),
    ):
        counts, _ = np.histogram(values, edges)
        share = counts / max(values.size, 1)
        if fill:
            ax.stairs(share, edges, fill=True, color=colour, alpha=0.35, label=label)
        else:
            ax.stairs(share, edges, color=colour, linewidth=1.6, label=label)
    if outside:
        above, below = generated.max() > high, generated.min() < low
        reach = (
            f"from {generated.min():.3g} to {generated.max():.3g}"
            if above and below
            else f"up to {generated.max():.3g}"
            if above
            else f"down to {generated.min():.3g}"
        )
        ax.text(
            0.5,
            1.0,
            f"{outside} generated values ({outside / generated.size:.1%}) lie beyond this range, {reach}",
            transform=ax.transAxes,
            ha="center",
            va="bottom",
            fontsize=8.5,
            color=GENERATED,
        )
    ax.set_yscale("log")
    ax.legend()


@_styled
def distributions(
    real: np.ndarray, generated: np.ndarray, *, value_label: str, step_word: str = "hour"
) -> Figure:
    """Histograms of all values and of step-to-step changes, real [R, T] vs generated [..., T]."""
    figure, axes = _figure(3.0, 1, 2)
    _overlaid_histograms(axes[0, 0], real.ravel(), generated.ravel())
    axes[0, 0].set(xlabel=value_label, ylabel="share of values (log scale)")
    axes[0, 0].set_title("Values", pad=16)
    _overlaid_histograms(axes[0, 1], np.diff(real, axis=-1).ravel(), np.diff(generated, axis=-1).ravel())
    axes[0, 1].set(
        xlabel=f"change from one {step_word} to the next (same scale)", ylabel="share of changes (log scale)"
    )
    axes[0, 1].set_title("First differences", pad=16)
    return figure


def _week_axis(
    ax, n_steps: int, step_hours: float, start: pd.Timestamp, *, weekdays: bool = True
) -> np.ndarray:
    """Hours of the week on x: the hour at each day boundary, the weekday's name between two boundaries
    (``weekdays=False`` for narrow panels). Returns the x position (hours) of each step."""
    days = int(np.ceil(n_steps * step_hours / 24))
    boundaries = np.arange(days + 1) * 24
    ax.set_xticks(boundaries, [f"{h:g}" for h in boundaries])
    names = [(start + pd.Timedelta(days=d)).strftime("%a") for d in range(days)] if weekdays else []
    ax.set_xticks(boundaries[:-1] + 12 if weekdays else [], names, minor=True)
    ax.tick_params(axis="x", which="minor", length=0, labelcolor="#4a5568")
    ax.grid(False, axis="x", which="minor")
    ax.set_xlim(0, days * 24)
    ax.set_xlabel(f"hour of the week (0 = {start.strftime('%a %H:%M')})")
    return np.arange(n_steps) * step_hours


@_styled
def weekly_profile(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    step_hours: float,
    start: pd.Timestamp,
    value_label: str,
    centre: str = "median",
) -> Figure:
    """The typical series (``centre``: "median" or "mean" across series) at each step of the week, with the
    10-90 % band across series: real [R, T] shaded, generated [G, T] as thin lines."""
    figure, axes = _figure(3.2)
    ax = axes[0, 0]
    hours = _week_axis(ax, real.shape[-1], step_hours, start)
    for values, colour, label in ((real, REAL, "real"), (generated, GENERATED, "generated")):
        low, high = np.quantile(values, [0.1, 0.9], axis=0)
        middle = np.median(values, axis=0) if centre == "median" else values.mean(axis=0)
        if label == "real":
            ax.fill_between(
                hours,
                low,
                high,
                color=colour,
                alpha=0.2,
                linewidth=0,
                step="post",
                label="real: 10-90 % of series",
            )
        else:
            ax.step(
                hours,
                low,
                where="post",
                color=colour,
                linewidth=0.7,
                alpha=0.8,
                label="generated: 10-90 % of series",
            )
            ax.step(hours, high, where="post", color=colour, linewidth=0.7, alpha=0.8)
        ax.step(hours, middle, where="post", color=colour, linewidth=1.8, label=f"{label}: {centre}")
    ax.set_ylabel(value_label)
    ax.set_ylim(bottom=0)
    handles, labels = ax.get_legend_handles_labels()
    order = [
        labels.index(name)
        for name in (
            f"real: {centre}",
            "real: 10-90 % of series",
            f"generated: {centre}",
            "generated: 10-90 % of series",
        )
    ]
    figure.legend(
        [handles[i] for i in order], [labels[i] for i in order], loc="outside upper center", ncols=4
    )
    return figure


def _representatives(loads: np.ndarray, count: int) -> list[int]:
    """Positions of the series at evenly spread quantiles of load (quiet, typical, busy)."""
    order = np.argsort(loads, kind="stable")
    picks = np.quantile(np.arange(len(order)), np.linspace(0.1, 0.9, count)).round().astype(int)
    return [int(order[p]) for p in dict.fromkeys(picks)]


_LOAD_WORDS = {0: "quiet", 1: "typical", 2: "busy"}


@_styled
def example_series(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    real_ids: Sequence[str],
    generated_ids: Sequence[str],
    paired: bool,
    step_hours: float,
    start: pd.Timestamp,
    value_label: str,
    count: int = 3,
) -> Figure:
    """A quiet, a typical and a busy station: real [N, W, T] beside generated [M, K, T].

    Paired: one panel per station, its first real week over its generated samples (one sample drawn, the
    5-95 % band of all samples shaded). Unpaired: real stations on the left, generated stations of the same
    load rank on the right. Each row has its own y scale, so quiet stations stay readable.
    """
    real_picks = _representatives(real.mean(axis=(1, 2)), count)
    generated_picks = real_picks if paired else _representatives(generated.mean(axis=(1, 2)), count)
    rows = min(len(real_picks), len(generated_picks))
    figure, axes = _figure(1.8 * rows + 0.6, rows, 1 if paired else 2, sharex=True, sharey="row")
    hours = np.arange(real.shape[-1]) * step_hours
    for row, (r, g) in enumerate(zip(real_picks, generated_picks)):
        word = _LOAD_WORDS[row] + " " if rows == 3 else ""
        real_ax, generated_ax = (axes[row, 0], axes[row, 0]) if paired else (axes[row, 0], axes[row, 1])
        samples = generated[g]
        if samples.shape[0] >= 2:
            low, high = np.quantile(samples, [0.05, 0.95], axis=0)
            generated_ax.fill_between(
                hours,
                low,
                high,
                color=GENERATED,
                alpha=0.22,
                linewidth=0,
                step="post",
                label="generated: 5-95 % of samples",
            )
        generated_ax.step(
            hours, samples[0], where="post", color=GENERATED, linewidth=1.0, label="generated: one sample"
        )
        real_ax.step(hours, real[r, 0], where="post", color=REAL, linewidth=1.2, label="real")
        if paired:
            real_ax.set_title(f"{word}station {real_ids[r]}", loc="left")
        else:
            real_ax.set_title(f"real: {word}station {real_ids[r]}", loc="left")
            generated_ax.set_title(f"generated: {word}station {generated_ids[g]}", loc="left")
        real_ax.set_ylim(bottom=0)
    for ax in axes[-1]:
        _week_axis(ax, real.shape[-1], step_hours, start, weekdays=paired)
    handles = {}
    for ax in axes.ravel():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    order = [
        label
        for label in ("real", "generated: one sample", "generated: 5-95 % of samples")
        if label in handles
    ]
    figure.legend([handles[label] for label in order], order, loc="outside upper center", ncols=len(order))
    figure.supylabel(value_label, fontsize=9.5)
    return figure


@_styled
def mean_load_scatter(real_mean: np.ndarray, generated_mean: np.ndarray, *, value_label: str) -> Figure:
    """Each station's mean load, real (x) vs generated (y), with the y = x line (paired case)."""
    figure, axes = _figure(4.2)
    ax = axes[0, 0]
    figure.set_size_inches(5.2, 4.6)
    ax.scatter(real_mean, generated_mean, s=14, color=GENERATED, alpha=0.7, edgecolor="none", label="station")
    both = np.concatenate([real_mean, generated_mean])
    positive = both[both > 0]
    lo, hi = (positive.min(), positive.max()) if positive.size else (0.0, 1.0)
    logarithmic = positive.size == both.size and hi / lo > 20
    if logarithmic:
        ax.set(xscale="log", yscale="log")
        lo, hi = lo / 1.3, hi * 1.3
    else:
        lo, hi = 0.0, max(hi, 1e-12) * 1.08
    ax.plot([lo, hi], [lo, hi], color=REFERENCE, linestyle="--", linewidth=1, label="y = x (perfect)")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), aspect="equal")
    ax.set_xlabel(f"real mean load ({value_label})")
    ax.set_ylabel("generated mean load (same scale)")
    ax.legend(loc="upper left")
    return figure


@_styled
def station_map(
    real_stations: Stations,
    real_load: np.ndarray,
    generated_stations: Stations | None,
    generated_load: np.ndarray | None,
    *,
    value_label: str,
) -> Figure:
    """Stations on a km map coloured by mean load: real on the left, generated on the right, one colour scale."""
    panels = [("real", real_stations, real_load)]
    if generated_stations is not None and generated_stations.has_coordinates:
        panels.append(("generated", generated_stations, generated_load))
    figure, axes = _figure(4.4, 1, len(panels), sharex=True, sharey=True)
    loads = np.concatenate([p[2] for p in panels])
    positive = loads[loads > 0]
    if positive.size == loads.size and positive.max() / positive.min() > 20:
        norm = LogNorm(positive.min(), positive.max())
    else:
        norm = Normalize(0, loads.max() if loads.max() > 0 else 1)
    lat0, lon0 = float(real_stations.lat.mean()), float(real_stations.lon.mean())
    for ax, (title, stations, load) in zip(axes[0], panels):
        x, y = local_km(stations.lat, stations.lon, lat0, lon0)
        order = np.argsort(load)  # busy stations drawn last, on top
        points = ax.scatter(
            x[order],
            y[order],
            c=load[order],
            s=30,
            cmap="viridis",
            norm=norm,
            edgecolor="#2d3748",
            linewidth=0.3,
        )
        ax.set(title=title, xlabel="km east of the centre", aspect="equal")
    axes[0, 0].set_ylabel("km north of the centre")
    figure.colorbar(points, ax=axes[0].tolist(), label=f"mean load ({value_label})", shrink=0.9)
    return figure


@_styled
def memorisation(result: dict, *, distance_label: str) -> Figure:
    """Distances of generated series to their closest training and held-out series, with the yardstick.

    Distances span decades (quiet and busy series), so x is logarithmic; distances below the lowest bin,
    exact copies (0) included, are counted in that bin.
    """
    figure, axes = _figure(3.3)
    ax = axes[0, 0]
    groups = [
        (result["dcr_train"], GENERATED, "generated → closest training series", True),
        (result["dcr_holdout"], REAL, "generated → closest held-out real series", False),
        (result["holdout_to_train"], REFERENCE, "held-out real → closest training series (yardstick)", False),
    ]
    everything = np.concatenate([g[0] for g in groups] + [[result["near_copy_threshold"]]])
    positive = everything[everything > 0]
    low = np.quantile(positive, 0.01) / 3 if positive.size else 1e-3
    high = max(everything.max(), low * 10) * 1.05
    edges = np.geomspace(low, high, 41)
    for values, colour, label, fill in groups:
        counts, _ = np.histogram(np.clip(values, low, high), edges)
        share = counts / max(counts.sum(), 1)
        if fill:
            ax.stairs(share, edges, fill=True, color=colour, alpha=0.35, label=label)
        else:
            ax.stairs(share, edges, color=colour, linewidth=1.6, label=label)
    exact = int(np.sum(result["dcr_train"] == 0))
    if exact:
        ax.annotate(
            f"{exact} exact copies (distance 0)",
            xy=(low, 0.9),
            xycoords=("data", "axes fraction"),
            xytext=(8, 0),
            textcoords="offset points",
            color=GENERATED,
            fontsize=8.5,
            fontweight="bold",
        )
    ax.axvline(result["near_copy_threshold"], color="#c53030", linestyle="--", linewidth=1.2)
    ax.text(
        result["near_copy_threshold"],
        0.99,
        " near-copy threshold",
        transform=ax.get_xaxis_transform(),
        color="#c53030",
        va="top",
        fontsize=8.5,
    )
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.set(xlabel=distance_label + ", log scale", ylabel="share of series")
    figure.legend(*ax.get_legend_handles_labels(), loc="outside upper center", ncols=3)
    return figure


@_styled
def trajectory_distributions(
    real: np.ndarray, generated: np.ndarray, stations: Stations, *, step_hours: float
) -> Figure:
    """The statistics behind the six trajectory JSDs (four without coordinates), real vs generated."""
    has_coordinates = stations.has_coordinates
    figure, axes = _figure(5.6, 2, 3) if has_coordinates else _figure(5.6, 2, 2)
    panels = iter(axes.ravel())
    if has_coordinates:
        for extract, title, label, share_of in (
            (metrics.jump_distances, "Jump distance", "km per jump (log scale)", "share of jumps"),
            (metrics.radius_of_gyration, "Radius of gyration", "km per user (log scale)", "share of users"),
        ):
            ax = next(panels)
            r = np.log10(np.maximum(extract(real, stations.lat, stations.lon), metrics.DISTANCE_FLOOR_KM))
            g = np.log10(
                np.maximum(extract(generated, stations.lat, stations.lon), metrics.DISTANCE_FLOOR_KM)
            )
            _overlaid_histograms(ax, r, g, bins=40)
            ax.set_yscale("linear")
            ticks = np.arange(np.floor(min(r.min(), g.min())), np.ceil(max(r.max(), g.max())) + 1)
            ax.set_xticks(ticks, [f"{10**t:g}" for t in ticks])
            ax.set(title=title, xlabel=label, ylabel=share_of)
    ax = next(panels)
    steps = real.shape[1]
    _bars(ax, _distinct(real), _distinct(generated), np.arange(1, steps + 1))
    ax.set(title="Distinct stations", xlabel="stations visited per user", ylabel="share of users")
    ax = next(panels)
    r_stays = metrics.stay_durations(real) * step_hours
    g_stays = metrics.stay_durations(generated) * step_hours
    _overlaid_histograms(ax, r_stays, g_stays, bins=40)
    ax.set(title="Stay duration", xlabel="hours at one station before moving", ylabel="share of stays (log)")
    ax = next(panels)
    n_locations = len(stations)
    ranks_real = metrics.global_rank_frequency(real, n_locations)
    ranks_generated = metrics.global_rank_frequency(generated, n_locations)
    _by_rank(ax, ranks_real, ranks_generated)
    ax.set(title="Global rank", xlabel="station rank (busiest first)", ylabel="share of all visits")
    ax = next(panels)
    individual_real = metrics.individual_rank_frequency(real).mean(axis=0)
    individual_generated = metrics.individual_rank_frequency(generated).mean(axis=0)
    # Ranks beyond the tenth, or where both sets spend under 0.5 % of the time, carry nothing to see.
    used = np.flatnonzero((individual_real > 0.005) | (individual_generated > 0.005))
    shown = int(np.clip(used.max(initial=0) + 1, 2, 10))
    _by_rank(ax, individual_real[:shown], individual_generated[:shown])
    ax.set(
        title="Individual rank", xlabel="rank of the station for its user", ylabel="share of the user's time"
    )
    return figure


def _by_rank(ax, real: np.ndarray, generated: np.ndarray) -> None:
    """Shares by rank 1..R: side-by-side bars for a few ranks, lines for many."""
    ranks = np.arange(1, real.size + 1)
    if real.size <= 30:
        width = 0.4
        ax.bar(ranks - width / 2, real, width, color=REAL, alpha=0.8, label="real")
        ax.bar(ranks + width / 2, generated, width, color=GENERATED, alpha=0.8, label="generated")
        ax.set_xticks(ranks if real.size <= 12 else ranks[::5])
    else:
        ax.plot(ranks, real, color=REAL, label="real")
        ax.plot(ranks, generated, color=GENERATED, label="generated")
        ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.legend()


def _distinct(locations: np.ndarray) -> np.ndarray:
    return np.rint(metrics.distinct_location_share(locations) * locations.shape[1]).astype(int)


def _bars(ax, real: np.ndarray, generated: np.ndarray, support: np.ndarray) -> None:
    """Side-by-side bars of whole-number statistics (share per value), cut to the values that occur."""
    top = int(max(real.max(), generated.max()))
    values = support[support <= top]
    width = 0.4
    for data, colour, label, shift in (
        (real, REAL, "real", -width / 2),
        (generated, GENERATED, "generated", width / 2),
    ):
        share = np.bincount(data, minlength=top + 1)[values] / data.size
        ax.bar(values + shift, share, width, color=colour, alpha=0.8, label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend()


@_styled
def trajectories_map(
    real: np.ndarray, generated: np.ndarray, stations: Stations, *, count: int = 4, seed: int = 0
) -> Figure:
    """A few real and generated user trajectories drawn over the stations (km map)."""
    figure, axes = _figure(4.6, 1, 2, sharex=True, sharey=True)
    lat0, lon0 = float(stations.lat.mean()), float(stations.lon.mean())
    x, y = local_km(stations.lat, stations.lon, lat0, lon0)
    rng = np.random.default_rng(seed)
    palette = ["#2b6cb0", "#dd6b20", "#2f855a", "#b83280", "#6b46c1", "#c05621"]
    for ax, title, locations in (
        (axes[0, 0], "real users", real),
        (axes[0, 1], "generated users", generated),
    ):
        ax.scatter(x, y, s=14, color="#a0aec0", edgecolor="none", label="station")
        movers = np.flatnonzero((np.diff(locations, axis=1) != 0).any(axis=1))
        chosen = rng.choice(movers, size=min(count, movers.size), replace=False) if movers.size else []
        for i, user in enumerate(chosen):
            path = locations[user]
            keep = np.concatenate([[True], path[1:] != path[:-1]])  # one point per stay
            visits = path[keep]
            colour = palette[i % len(palette)]
            ax.plot(x[visits], y[visits], color=colour, linewidth=1.1, alpha=0.85, marker="o", markersize=3.5)
            ax.plot(
                x[visits[0]], y[visits[0]], marker="s", color=colour, markersize=7, markeredgecolor="white"
            )
        ax.set(
            title=f"{title} ({len(chosen)} drawn; square = start)",
            xlabel="km east of the centre",
            aspect="equal",
        )
    axes[0, 0].set_ylabel("km north of the centre")
    return figure


#: The trade-off figure's panels: ``(metric, title)``; ``membership_auc`` is the memorisation attack's AUC,
#: the others are :meth:`Evaluation.value` metrics averaged over channels (:func:`channel_mean`).
PRIVACY_PANELS = (
    ("value_jsd", "value JSD (lower is better)"),
    ("diff_jsd", "first-difference JSD (lower is better)"),
    ("tstr_utility", "TSTR utility (higher is better)"),
    ("membership_auc", "membership-inference AUC (0.5 = no signal)"),
)


def channel_mean(evaluation: Evaluation, metric: str) -> float | None:
    """``metric`` averaged over the channels where it is defined (``None`` where it is nowhere);
    ``membership_auc`` is the memorisation check's AUC (``None`` without training data)."""
    if metric == "membership_auc":
        return (evaluation.memorisation or {}).get("membership_auc")
    values = [evaluation.value(group, metric) for group in evaluation.metrics]
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


@_styled
def privacy_tradeoff(sweep: Sequence[tuple[float, Evaluation]], *, title: str | None = None) -> Figure:
    """Fidelity, utility and membership-inference AUC against epsilon, one panel per :data:`PRIVACY_PANELS`.

    ``sweep`` is ``[(epsilon, evaluation), ...]`` of fits that differ by their privacy budget; ``inf`` (no
    differential privacy) is drawn at the right edge, at ``x = 2 * max finite epsilon`` on the log axis and
    labelled "inf". Points are drawn in increasing epsilon; a metric undefined at a point leaves a gap.
    """
    points = sorted(_checked_sweep(sweep), key=lambda point: point[0])
    finite = [epsilon for epsilon, _ in points if math.isfinite(epsilon)]
    edge = 2 * max(finite) if finite else 1.0
    xs = [epsilon if math.isfinite(epsilon) else edge for epsilon, _ in points]
    ticks = [f"{epsilon:g}" if math.isfinite(epsilon) else "inf" for epsilon, _ in points]
    figure, axes = _figure(5.5, 2, 2)  # two by two: four titles in one row do not fit the page width
    for ax, (metric, label) in zip(axes.flat, PRIVACY_PANELS, strict=True):
        values = [channel_mean(evaluation, metric) for _, evaluation in points]
        ax.plot(xs, [np.nan if v is None else v for v in values], "o-", color=GENERATED)
        ax.set_xscale("log")
        ax.set_xticks(xs, ticks)
        ax.minorticks_off()
        if metric == "membership_auc":
            ax.axhline(0.5, color=REFERENCE, linestyle="--", linewidth=1)
            ax.set_ylim(0.3, 1.0)  # the attack's scale: 0.5 no signal, 1 every member found
        ax.set(xlabel="epsilon (log scale)", title=label)
    if title is not None:
        figure.suptitle(title)
    return figure


def _checked_sweep(sweep) -> list[tuple[float, Evaluation]]:
    points = [(float(epsilon), evaluation) for epsilon, evaluation in sweep]
    if not points:
        raise DataError("the privacy sweep is empty; give at least one (epsilon, evaluation) pair")
    seen = set()
    for epsilon, _ in points:
        if not epsilon > 0:  # NaN fails too
            raise DataError(f"epsilon {epsilon} in the privacy sweep is not positive; use inf for no privacy")
        if epsilon in seen:
            raise DataError(
                f"epsilon {epsilon:g} appears twice in the privacy sweep; give one evaluation per epsilon"
            )
        seen.add(epsilon)
    return points
