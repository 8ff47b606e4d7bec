"""The benchmark's numbers over seeds (:func:`summarise`: mean, standard deviation) and its markdown table
(:func:`render_table`), laid out like STOUTER's Table 1."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "MAIN_METRICS",
    "OTHER_METRICS",
    "PAPER_BASELINES",
    "format_cell",
    "markdown_table",
    "render_table",
    "summarise",
]

#: STOUTER's baselines in its paper; STOUTER's change is measured against the best of these that ran.
PAPER_BASELINES: tuple[str, ...] = ("tcn-gan", "vae", "diffwave")
#: Columns of the main table (STOUTER's Table 1), per channel.
MAIN_METRICS: tuple[tuple[str, str], ...] = (("mae", "MAE"), ("rmse", "RMSE"), ("value_jsd", "JSD"))
#: The other metrics, per channel.
OTHER_METRICS: tuple[tuple[str, str], ...] = (
    ("crps", "CRPS"),
    ("log_value_jsd", "Log-value JSD"),
    ("diff_jsd", "Diff. JSD"),
    ("daily_periodic_rmse", "Daily RMSE"),
    ("band_coverage", "Band coverage 5-95 %"),
    ("acf_distance", "ACF dist."),
    ("weekly_profile_error", "Weekly profile err."),
    ("peak_hour_jsd", "Peak-hour JSD"),
    ("mae_of_mean", "MAE of mean"),
    ("rmse_of_mean", "RMSE of mean"),
    ("busy_hour_p95_error", "Busy-hour P95 err."),
    ("busy_hour_coverage", "Busy-hour coverage"),
    ("tstr_utility", "Forecast utility (TSTR)"),
)
#: Coverage of the 5-95 % band (rank-based, calibrated at any number of samples) is best at 0.9, the forecast
#: utility at its highest (``math.inf``: real-trained / synthetic-trained error); busy-hour coverage is best at
#: (K - 1) / (K + 1) for K samples (:func:`_target`); every other metric here is best at its lowest.
_TARGETS = {"band_coverage": 0.9, "tstr_utility": math.inf}
_SPLITS = (("held_out", "held-out stations (new sites)"), ("train", "training stations"))


def _stats(values: list[float]) -> dict[str, Any]:
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "std": std, "n": len(values)}


def summarise(runs: list[dict], models: list[str], channels: list[str]) -> dict[str, Any]:
    """``summary[model][split][channel][metric]`` = ``{"mean", "std", "n"}`` over the runs' seeds, for each
    split the runs scored (``"held_out"``, and ``"train"`` where the training stations were scored), with
    ``summary[model][split]["memorisation"]`` and ``summary[model]["cost"]``."""
    summary: dict[str, Any] = {}
    for name in models:
        mine = [r for r in runs if r["model"] == name]
        entry: dict[str, Any] = {}
        for split, _ in _SPLITS:
            if not mine or any(split not in r["scores"] for r in mine):
                continue
            per_channel = {}
            for channel in channels:
                names = {m for r in mine for m in r["scores"][split]["metrics"].get(channel, {})}
                per_channel[channel] = {
                    metric: _stats(
                        [r["scores"][split]["metrics"][channel].get(metric, {}).get("value") for r in mine]
                    )
                    for metric in sorted(names)
                }
            memo = [r["scores"][split]["memorisation"] for r in mine if r["scores"][split]["memorisation"]]
            per_channel["memorisation"] = {
                "near_copy_share": _stats([m["near_copy_share"] for m in memo]),
                "flagged_runs": sum(bool(m["flagged"]) for m in memo),
                "runs_checked": len(memo),
            }
            entry[split] = per_channel
        entry["cost"] = {
            "train_seconds": _stats([r["train_seconds"] for r in mine]),
            "station_weeks_per_second": _stats([r["station_weeks_per_second"] for r in mine]),
            "epochs": mine[0]["epochs"] if mine else None,
            "any_resumed": any(r["train_resumed"] for r in mine),
        }
        entry["fit_notes"] = [(r["seed"], note) for r in mine for note in r.get("fit_notes", [])]
        summary[name] = entry
    return summary


def format_cell(mean: float | None, std: float | None, digits: int = 4) -> str:
    """``"mean ± std"`` (``"mean"`` alone without a spread; ``"–"`` without a value)."""
    if mean is None:
        return "–"
    text = f"{mean:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def _target(metric: str, samples: int | None) -> float | None:
    """What ``metric``'s best value is (None: its lowest; ``math.inf``: its highest)."""
    if metric == "busy_hour_coverage" and samples:
        return (samples - 1) / (samples + 1)  # the real busy hour drawn like K samples' lies in their range
    return _TARGETS.get(metric)


def _ranks(values: list[float | None], target: float | None = None) -> list[int | None]:
    """Rank of each value (0 = best, 1 = second, ...; ties share a rank); lower is better, higher when
    ``target`` is ``math.inf``, else closer to ``target`` when given. ``None`` values get no rank."""

    def key(v: float) -> float:
        if target is None:
            return v
        return -v if target == math.inf else abs(v - target)

    keys = [None if v is None else key(v) for v in values]
    distinct = sorted({k for k in keys if k is not None})
    return [None if k is None else distinct.index(k) for k in keys]


def markdown_table(
    header: list[str], rows: list[list[str]], means: list[list[float | None]], targets: list[float | None]
) -> str:
    """A markdown table whose data columns mark the best mean **bold** and the second <u>underlined</u>.

    ``rows[i][0]`` is the row label, ``rows[i][j + 1]`` the text of column j; ``means[i][j]`` the value that
    column j is ranked by (lower is better; higher when ``targets[j]`` is ``math.inf``; else closest to
    ``targets[j]`` when that is not None). A column
    with a single ranked value marks nothing.
    """
    marked = [list(r) for r in rows]
    for j, target in enumerate(targets):
        column = [m[j] for m in means]
        if sum(v is not None for v in column) < 2:
            continue
        for i, rank in enumerate(_ranks(column, target)):
            if rank == 0:
                marked[i][j + 1] = f"**{marked[i][j + 1]}**"
            elif rank == 1:
                marked[i][j + 1] = f"<u>{marked[i][j + 1]}</u>"
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in marked]
    return "\n".join(lines)


def _metric_table(summary, models, split, columns, samples=None) -> tuple[str, list[list[float | None]]]:
    """``columns``: ``[(channel, metric, label)]``, ``samples`` generated per station; returns the table and
    the means (for STOUTER's change)."""
    header = ["Model"] + [label for _, _, label in columns]
    rows, means = [], []
    for name in models:
        stats = [summary[name][split].get(channel, {}).get(metric, {}) for channel, metric, _ in columns]
        rows.append([name] + [format_cell(s.get("mean"), s.get("std")) for s in stats])
        means.append([s.get("mean") for s in stats])
    targets = [_target(metric, samples) for _, metric, _ in columns]
    return markdown_table(header, rows, means, targets), means


def _stouter_change(models, means, columns) -> str | None:
    if "stouter" not in models:
        return None
    baselines = [m for m in models if m in PAPER_BASELINES] or [m for m in models if m != "stouter"]
    if not baselines:
        return None
    row = means[models.index("stouter")]
    cells = []
    for j, (_, metric, _) in enumerate(columns):
        base = [means[models.index(b)][j] for b in baselines if means[models.index(b)][j] is not None]
        if row[j] is None or not base or metric in _TARGETS:
            cells.append("–")
            continue
        best = min(base)
        cells.append("–" if best == 0 else f"{100 * (row[j] - best) / best:+.1f} %")
    return f"| STOUTER vs best of {', '.join(baselines)} | " + " | ".join(cells) + " |"


def _split_in_words(settings, train, held_out) -> str:
    if settings.get("protocol", "stations") == "time":
        return (
            f"split by time: every station's first {train.n_steps} steps ({train.start:%Y-%m-%d} to "
            f"{train.end:%Y-%m-%d}) train, its last {held_out.n_steps} ({held_out.start:%Y-%m-%d} to "
            f"{held_out.end:%Y-%m-%d}) are scored"
        )
    scored = settings["train_stations_scored"]
    return (
        f"one split by station (seed {settings['split_seed']}): {train.n_stations} training, "
        f"{held_out.n_stations} held-out stations; "
        + (
            f"the training split is scored on {scored} of them"
            if scored
            else "the training split is not scored"
        )
    )


def render_table(
    summary, models, channels, budget_rule, settings, train, held_out, seeds, held_out_title=None
) -> str:
    """The markdown of ``table.md``; ``held_out_title`` names what the held-out split is (by protocol)."""
    multi = len(channels) > 1
    main = [(c, m, f"{c} {label}" if multi else label) for c in channels for m, label in MAIN_METRICS]
    titles = dict(_SPLITS) | ({"held_out": held_out_title} if held_out_title else {})
    splits = [(split, titles[split]) for split, _ in _SPLITS if all(split in summary[n] for n in models)]
    parts = [
        "# Station-traffic benchmark",
        "",
        f"- Data: {settings['shape'][0]} stations x {settings['shape'][1]} steps, channels "
        f"{', '.join(channels)}; {_split_in_words(settings, train, held_out)}.",
        f"- Budget: {budget_rule}.",
        f"- Seeds: {', '.join(map(str, seeds))}; {settings['samples']} generated weeks per station; every cell "
        "is the mean ± standard deviation over seeds.",
        "- Scores on the normalised scale (each channel divided by its training maximum), from "
        "cellsynth.evaluate; lower is better (band coverage: closest to 0.9; busy-hour coverage: closest to "
        f"(K - 1) / (K + 1) for K = {settings['samples']} samples; forecast utility: highest, 1 = as useful as "
        "real training data). Best of each column in **bold**, second <u>underlined</u>.",
        "",
    ]
    for split, title in splits:
        table, means = _metric_table(summary, models, split, main)
        parts += [f"## Table 1 — {title}", "", table]
        change = _stouter_change(models, means, main)
        if change:
            parts.append(change)
            parts.append("")
            parts.append(
                "(STOUTER vs best baseline: (STOUTER - best) / best; negative = STOUTER lower = better.)"
            )
        parts.append("")
    for split, title in splits:
        for channel in channels:
            columns = [(channel, m, label) for m, label in OTHER_METRICS]
            present = [col for col in columns if any(summary[n][split][channel].get(col[1]) for n in models)]
            if not present:
                continue
            table, _ = _metric_table(summary, models, split, present, settings["samples"])
            suffix = f" — {channel}" if multi else ""
            parts += [f"## Other metrics — {title}{suffix}", "", table, ""]

    header = [
        "Model",
        "Near-copy share (held-out)",
        "Near-copy share (training stations)",
        "Flagged runs",
        "Epochs",
        "Training time (s)",
        "Generation (station-weeks/s)",
    ]
    rows = []
    for name in models:
        none = {"near_copy_share": {"mean": None, "std": None}, "flagged_runs": 0, "runs_checked": 0}
        held, trn, cost = (
            summary[name]["held_out"]["memorisation"],
            summary[name].get("train", {}).get("memorisation", none),
            summary[name]["cost"],
        )
        flagged = held["flagged_runs"] + trn["flagged_runs"]
        checked = held["runs_checked"] + trn["runs_checked"]
        rows.append(
            [
                name,
                format_cell(held["near_copy_share"]["mean"], held["near_copy_share"]["std"], 3),
                format_cell(trn["near_copy_share"]["mean"], trn["near_copy_share"]["std"], 3),
                f"{flagged} / {checked}" + (" **copying**" if flagged else ""),
                "–" if cost["epochs"] is None else str(cost["epochs"]),
                format_cell(cost["train_seconds"]["mean"], cost["train_seconds"]["std"], 1)
                + (" (resumed)" if cost["any_resumed"] else ""),
                format_cell(
                    cost["station_weeks_per_second"]["mean"], cost["station_weeks_per_second"]["std"], 1
                ),
            ]
        )
    parts += [
        "## Memorisation and cost",
        "",
        "\n".join(
            ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
            + ["| " + " | ".join(r) + " |" for r in rows]
        ),
        "",
        "Near-copy share: generated weeks closer to a training week than 95 % of real weeks come (about 0.05 "
        "for genuinely new series; a run is flagged above 0.25). Training time is that of the last fit call "
        '("resumed": part of the training ran before an interruption and is not counted). Throughput: weeks '
        "generated per second of wall time for the held-out and training stations together.",
        "",
    ]
    notes = [f"- {name}, seed {seed}: {note}" for name in models for seed, note in summary[name]["fit_notes"]]
    if notes:
        parts += ["## Fit notes", "", "What each fit reported it found or chose (`Generator.fit_notes`).", ""]
        parts += [*notes, ""]
    return "\n".join(parts)
