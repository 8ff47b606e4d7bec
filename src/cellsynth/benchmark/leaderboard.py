"""The whole station-level benchmark in one call (:func:`run_suite`): every dataset of a suite under each of
its protocols, every (dataset, protocol, model, seed) cell run once (in ``jobs`` processes) and kept, and one
leaderboard (``leaderboard.md``): a compact table per dataset, protocol and channel, mean ± std over seeds,
best in bold.

Layout of ``out``: with one dataset under one protocol, ``out`` is that benchmark's directory
(:func:`cellsynth.benchmark.run_benchmark`'s layout: ``table.md``, ``results/``, ``runs/``); with more,
each has its own ``out/<dataset>/<protocol>/``. ``leaderboard.md`` and ``leaderboard.json`` sit at the top.
Every cell writes its result as soon as it is complete; running the same suite again reuses them, so a killed
benchmark loses at most the cells that were running (and those resume from their last training checkpoint).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cellsynth
from cellsynth.benchmark.cells import run_cells, write_json
from cellsynth.benchmark.code import code_note, code_stamp
from cellsynth.benchmark.run import PROTOCOLS, BenchmarkPlan, BenchmarkResult, plan_benchmark
from cellsynth.benchmark.suite import Suite, load_datasets
from cellsynth.benchmark.table import format_cell, markdown_table
from cellsynth.data.io import write_text_atomic
from cellsynth.errors import CellsynthError
from cellsynth.outputs import BENCH, check_output, claim_output_dir

__all__ = ["LEADERBOARD_METRICS", "SuiteResult", "render_leaderboard", "run_suite"]

#: The leaderboard's metric columns, per channel (metric key, column label); lower is better for each.
LEADERBOARD_METRICS: tuple[tuple[str, str], ...] = (
    ("mae", "MAE"),
    ("rmse", "RMSE"),
    ("crps", "CRPS"),
    ("value_jsd", "JSD"),
    ("log_value_jsd", "Log JSD"),
    ("diff_jsd", "Diff. JSD"),
    ("daily_periodic_rmse", "Daily RMSE"),
    ("weekly_profile_error", "Weekly profile err."),
)


@dataclass(frozen=True, eq=False)
class SuiteResult:
    """What :func:`run_suite` produced: one :class:`BenchmarkResult` per (dataset, protocol), the
    leaderboard's markdown, and the (dataset, protocol, model, seed) cells reused from an earlier run."""

    benchmarks: dict[tuple[str, str], BenchmarkResult]
    leaderboard: str
    out: Path
    reused: list[tuple[str, str, str, int]]

    @property
    def leaderboard_path(self) -> Path:
        return self.out / "leaderboard.md"

    def __str__(self) -> str:
        return self.leaderboard


def run_suite(
    suite: Suite,
    *,
    out: str | os.PathLike,
    jobs: int = 1,
    progress: bool = True,
    echo: Callable[[str], Any] | None = print,
) -> SuiteResult:
    """Run ``suite`` into ``out`` (module docstring). Every dataset is read and every (dataset, protocol)
    checked and split before anything is written or trained; ``jobs`` cells run at a time, each in its own
    process. ``echo`` prints progress lines (with ``progress``) and the leaderboard (None: silent)."""
    out = Path(out)
    check_output(out, BENCH)
    datasets = load_datasets(suite)
    pairs = [(d, p) for d in datasets for p in suite.protocols_of(d.name)]
    nested = len(pairs) > 1
    plans: dict[tuple[str, str], BenchmarkPlan] = {}
    for dataset, protocol in pairs:
        try:
            plans[dataset.name, protocol] = plan_benchmark(
                dataset.traffic,
                suite.models,
                out=out / dataset.name / protocol if nested else out,
                seeds=suite.seeds,
                budget=suite.budget,
                min_steps=suite.min_steps,
                protocol=protocol,
                test_fraction=suite.test_fraction,
                split_seed=suite.split_seed,
                samples=suite.samples,
                train_stations=suite.train_stations,
                configs=dataset.configs,
                preset=suite.preset,
                generators=suite.generators,
                progress=progress,
                label=f"{dataset.name}/{protocol}",
            )
        except CellsynthError as err:
            where = f"{suite.where}: datasets.{dataset.name} (protocol {protocol})"
            raise type(err)(f"{where}: {err}") from None

    say = echo if (echo is not None and progress) else (lambda _msg: None)
    claim_output_dir(out, BENCH)
    for plan in plans.values():
        plan.claim()
    pending = {key: plan.pending() for key, plan in plans.items()}
    to_run = {(*key, c.model, c.seed) for key, cells in pending.items() for c in cells}
    reused = [
        (*key, *cell) for key, plan in plans.items() for cell in plan.cells() if (*key, *cell) not in to_run
    ]
    if reused:
        say(f"{len(reused)} cell(s) done before: reusing their results")
    run_cells([cell for cells in pending.values() for cell in cells], jobs, say)
    results = {
        key: plan.finish([(m, s) for d, p, m, s in reused if (d, p) == key]) for key, plan in plans.items()
    }
    leaderboard = render_leaderboard(suite, plans, results)
    write_text_atomic(out / "leaderboard.md", leaderboard)
    write_json(
        out / "leaderboard.json",
        {
            "cellsynth_version": cellsynth.__version__,
            "code": code_stamp(),
            "suite": suite.model_dump(mode="json", by_alias=True),
            "benchmarks": [
                {
                    "dataset": dataset,
                    "protocol": protocol,
                    "directory": str(plans[dataset, protocol].out.relative_to(out)),
                    "settings": plans[dataset, protocol].settings,
                    "summary": result.summary,
                }
                for (dataset, protocol), result in results.items()
            ],
        },
    )
    if echo is not None:
        echo(leaderboard)
    return SuiteResult(results, leaderboard, out, reused)


def render_leaderboard(
    suite: Suite, plans: dict[tuple[str, str], BenchmarkPlan], results: dict[tuple[str, str], BenchmarkResult]
) -> str:
    """The markdown of ``leaderboard.md``: the rules once, then one table per (dataset, protocol, channel)."""
    any_plan = next(iter(plans.values()))
    seeds = ", ".join(map(str, any_plan.seeds))
    parts = [
        "# Station-level leaderboard",
        "",
        f"- Models: {', '.join(suite.models)}. Seeds {seeds}: every cell is the mean ± standard deviation over "
        f"seeds; {suite.samples} generated weeks per station.",
        *[
            f"- Variant {name}: {spec.model} with {json.dumps(spec.set, sort_keys=True)}."
            for name, spec in suite.variants.items()
        ],
        f"- Budget: {any_plan.budget_rule}.",
        f"- Protocols: **stations** — {PROTOCOLS['stations']}: {suite.test_fraction:.0%} of the stations held "
        f"out (split seed {suite.split_seed}); **time** — {PROTOCOLS['time']}: every station's last "
        f"{suite.test_fraction:.0%} of whole weeks held out, the earlier weeks train.",
        "- Scores on the held-out data, on the normalised scale (each channel divided by its training "
        "maximum), from cellsynth.evaluate (docs/metrics.md); lower is better. Best of each column in "
        "**bold**, second <u>underlined</u>.",
        "- Memorisation: the share of generated weeks closer to a training week than 95 % of real held-out "
        "weeks come (about 0.05 for genuinely new weeks); **copying** when a run is flagged (above 0.25). Fit: "
        "training seconds; generation: station-weeks per second.",
        code_note(
            (f"{dataset}/{protocol}: {run['model']}, seed {run['seed']}", run)
            for (dataset, protocol), result in results.items()
            for run in result.runs
        ),
        "",
    ]
    for (dataset, protocol), plan in plans.items():
        summary = results[dataset, protocol].summary
        for channel in plan.data.channels:
            parts += [
                f"## {dataset} — {protocol} — {channel}",
                "",
                _describe(plan),
                "",
                _channel_table(summary, plan.models, channel),
                "",
            ]
    return "\n".join(parts)


def _describe(plan: BenchmarkPlan) -> str:
    train, held_out = plan.train, plan.held_out
    if plan.protocol == "time":
        return (
            f"{train.n_stations} stations; trained on {train.start:%Y-%m-%d} to {train.end:%Y-%m-%d}, scored on "
            f"{held_out.start:%Y-%m-%d} to {held_out.end:%Y-%m-%d} ({held_out.n_steps // train.steps_per('7D')} "
            "week(s))."
        )
    return f"{train.n_stations + held_out.n_stations} stations: {train.n_stations} train, {held_out.n_stations} held out."


def _channel_table(summary: dict[str, Any], models: list[str], channel: str) -> str:
    header = ["Model"] + [label for _, label in LEADERBOARD_METRICS]
    header += ["Memorisation", "Fit (s)", "Station-weeks/s"]
    rows, means = [], []
    for name in models:
        scores = summary[name]["held_out"].get(channel, {})
        stats = [scores.get(metric, {}) for metric, _ in LEADERBOARD_METRICS]
        cost = summary[name]["cost"]
        rows.append(
            [name]
            + [format_cell(s.get("mean"), s.get("std")) for s in stats]
            + [
                _memorisation(summary[name]["held_out"]["memorisation"]),
                format_cell(cost["train_seconds"]["mean"], cost["train_seconds"]["std"], 1),
                format_cell(cost["station_weeks_per_second"]["mean"], None, 1),
            ]
        )
        means.append([s.get("mean") for s in stats] + [None, None, None])
    return markdown_table(header, rows, means, [None] * len(header[1:]))


def _memorisation(memo: dict[str, Any]) -> str:
    if not memo["runs_checked"]:
        return "not checked"
    share = format_cell(memo["near_copy_share"]["mean"], memo["near_copy_share"]["std"], 2)
    flagged = memo["flagged_runs"]
    verdict = f"**copying** ({flagged}/{memo['runs_checked']} runs)" if flagged else "no copying"
    return f"{share}, {verdict}"
