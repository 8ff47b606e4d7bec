"""The user benchmark's numbers over seeds (:func:`summarise_users`) and its markdown (:func:`render_user_table`):
MSTDiff's Table I (traffic) and Table II (trajectories), with the noise rows on top."""

from __future__ import annotations

from typing import Any

from cellsynth.benchmark.table import _stats, format_cell, markdown_table

__all__ = [
    "NOISE_HALVES",
    "NOISE_MARK",
    "NOISE_TRAIN",
    "TRAFFIC_COLUMNS",
    "TRAJECTORY_COLUMNS",
    "render_user_table",
    "summarise_users",
]

#: The noise rows (cellsynth.benchmark.users, protocol item 4).
NOISE_TRAIN = "real: training users"
NOISE_HALVES = "real: held-out halves"
#: Table I (MSTDiff's traffic table) and our log-value JSD.
TRAFFIC_COLUMNS: tuple[tuple[str, str], ...] = (
    ("value_jsd", "JSD volume"),
    ("diff_jsd", "JSD 1st diff."),
    ("daily_periodic_rmse", "RMSE daily"),
    ("log_value_jsd", "JSD log volume"),
)
#: Table II (MoveSim's six, as MSTDiff reports them).
TRAJECTORY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("distance", "Distance"),
    ("radius", "Radius"),
    ("distinct_loc", "DistinctLoc"),
    ("duration", "Duration"),
    ("g_rank", "G-rank"),
    ("i_rank", "I-rank"),
)
#: Marks a model's cell whose mean is within the noise level (see :func:`within_noise`).
NOISE_MARK = "≈"
_GROUPS = (("traffic", TRAFFIC_COLUMNS), ("trajectory", TRAJECTORY_COLUMNS))


def summarise_users(runs: list[dict], labels: list[str]) -> dict[str, Any]:
    """``summary[label][group][metric]`` = ``{"mean", "std", "n"}`` over seeds (``group``: ``"traffic"``,
    ``"trajectory"``), plus ``["memorisation"]`` and, for model rows, ``["cost"]``. Labels without runs are
    left out."""
    summary: dict[str, Any] = {}
    for label in labels:
        mine = [r for r in runs if r["label"] == label]
        if not mine:
            continue
        entry: dict[str, Any] = {"kind": mine[0]["kind"], "seeds": [r["seed"] for r in mine]}
        for group, columns in _GROUPS:
            entry[group] = {
                metric: _stats(
                    [r["scores"]["metrics"].get(group, {}).get(metric, {}).get("value") for r in mine]
                )
                for metric, _ in columns
            }
        memo = [r["scores"]["memorisation"] for r in mine if r["scores"]["memorisation"]]
        entry["memorisation"] = {
            "near_copy_share": _stats([m["near_copy_share"] for m in memo]),
            "flagged_runs": sum(bool(m["flagged"]) for m in memo),
            "runs_checked": len(memo),
        }
        if entry["kind"] == "model":
            entry["cost"] = {
                "fit_seconds": _stats([r["fit_seconds"] for r in mine]),
                "sample_seconds": _stats([r["sample_seconds"] for r in mine]),
                "users_per_second": _stats([r["users_per_second"] for r in mine]),
                "epochs": mine[0]["epochs"],
                "any_resumed": any(r["fit_resumed"] for r in mine),
            }
        summary[label] = entry
    return summary


def within_noise(stats: dict[str, Any], noise: dict[str, Any] | None) -> bool:
    """Whether a model's mean is at or under the noise row's ``mean + 2 sd`` (its mean alone with one
    seed): no better than two real samples of this size, so not told apart from the data by this metric."""
    if not noise or noise.get("mean") is None or stats.get("mean") is None:
        return False
    return stats["mean"] <= noise["mean"] + 2 * (noise.get("std") or 0.0)


def _metric_table(summary: dict, labels: list[str], group: str, columns) -> str:
    noise_rows = [n for n in (NOISE_TRAIN, NOISE_HALVES) if n in summary]
    header = ["Model"] + [label for _, label in columns]
    rows, means = [], []
    for name in noise_rows:
        stats = [summary[name][group][metric] for metric, _ in columns]
        rows.append([f"*{name}*"] + [f"*{format_cell(s['mean'], s['std'])}*" for s in stats])
        means.append([None] * len(columns))  # the noise rows are shown, not ranked
    reference = summary.get(NOISE_TRAIN, {}).get(group, {})
    for name in labels:
        stats = [summary[name][group][metric] for metric, _ in columns]
        cells = []
        for (metric, _), s in zip(columns, stats, strict=True):
            mark = f" {NOISE_MARK}" if within_noise(s, reference.get(metric)) else ""
            cells.append(format_cell(s["mean"], s["std"]) + mark)
        rows.append([name, *cells])
        means.append([s["mean"] for s in stats])
    return markdown_table(header, rows, means, [None] * len(columns))


def _present(summary: dict, group: str, columns) -> list[tuple[str, str]]:
    return [c for c in columns if any(entry[group][c[0]]["n"] for entry in summary.values())]


def render_user_table(
    summary: dict, labels: list[str], settings: dict, seeds: list[int], budget_rule: str
) -> str:
    held_from = (
        f"a seeded split of the data (seed {settings['split_seed']}, {settings['test_fraction']:.0%} held out)"
        if settings["test_fraction"] is not None
        else "a separate dataset of held-out users"
    )
    parts = [
        "# User benchmark",
        "",
        f"- Data: {settings['train_users']} training users, {settings['held_out_users']} held-out users from "
        f"{held_from}; {settings['steps']} steps per user, {settings['stations']} stations.",
        *[f"- {note[0].upper()}{note[1:]}." for note in settings["data_notes"]],
        f"- Budget: {budget_rule}.",
        f"- Seeds: {', '.join(map(str, seeds))}; each model generates as many users as are held out; every cell "
        "is the mean ± standard deviation over seeds (ddof 1).",
        "- Scores from cellsynth.evaluate.evaluate_users (docs/metrics.md): JSDs base 2, traffic on bins of the "
        "held-out users' range (and one above it), traffic divided by the training users' maximum; lower is "
        "better. Best model of each column in **bold**, second "
        "<u>underlined</u>.",
        f"- Noise level (italic rows, not ranked): *{NOISE_TRAIN}* is as many training users as are held out, "
        f"scored like a model's output; *{NOISE_HALVES}* is half of the held-out users against the other half "
        f"(half the size: noisier). {NOISE_MARK} marks a model at or under the first row's mean + 2 sd: there it "
        "cannot be told from real data, and differences between such models mean nothing.",
        "",
    ]
    traffic = _present(summary, "traffic", TRAFFIC_COLUMNS)
    parts += ["## Table I — traffic", ""]
    if traffic:
        parts += [_metric_table(summary, labels, "traffic", traffic), ""]
    else:
        parts += ["The users carry no traffic: no traffic metrics.", ""]
    trajectory = _present(summary, "trajectory", TRAJECTORY_COLUMNS)
    parts += ["## Table II — trajectories", "", _metric_table(summary, labels, "trajectory", trajectory), ""]
    parts += _cost_table(summary, labels)
    return "\n".join(parts)


def _verdict(memo: dict) -> str:
    if not memo["runs_checked"]:
        return "not checked"
    if memo["flagged_runs"]:
        return f"**likely copying** ({memo['flagged_runs']} of {memo['runs_checked']} runs flagged)"
    return f"no sign of copying (0 of {memo['runs_checked']} runs flagged)"


def _cost_table(summary: dict, labels: list[str]) -> list[str]:
    header = ["Model", "Near-copy share", "Memorisation", "Epochs", "Fit (s)", "Sampling (s)", "Users / s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    if NOISE_TRAIN in summary:
        memo = summary[NOISE_TRAIN]["memorisation"]
        share = memo["near_copy_share"]
        lines.append(
            f"| *{NOISE_TRAIN}* | *{format_cell(share['mean'], share['std'], 3)}* | real users who copy nobody "
            "| – | – | – | – |"
        )
    for name in labels:
        memo, cost = summary[name]["memorisation"], summary[name]["cost"]
        share = memo["near_copy_share"]
        cells = [
            name,
            format_cell(share["mean"], share["std"], 3),
            _verdict(memo),
            "–" if cost["epochs"] is None else str(cost["epochs"]),
            format_cell(cost["fit_seconds"]["mean"], cost["fit_seconds"]["std"], 1)
            + (" (resumed)" if cost["any_resumed"] else ""),
            format_cell(cost["sample_seconds"]["mean"], cost["sample_seconds"]["std"], 2),
            format_cell(cost["users_per_second"]["mean"], cost["users_per_second"]["std"], 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [
        "## Memorisation and cost",
        "",
        *lines,
        "",
        "Near-copy share: generated users (one generated period each) closer to a training user than 95 % of "
        "real held-out users come (about 0.05 for new users; a run is flagged above 0.25). Fit: wall time of the last fit call "
        '("resumed": part of it ran before an interruption and is not counted). Sampling: wall time to generate '
        "the held-out number of users.",
        "",
    ]
