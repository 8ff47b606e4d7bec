"""The station-traffic benchmark: several generators, one station split, one budget rule, several seeds.

    result = run_benchmark(traffic, ["seasonal-mean", "tcn-gan", "vae", "diffwave", "stouter"], seeds=3,
                           out="bench/")
    print(result.table)            # also in bench/table.md; every number in bench/results.json

Protocol (docs/report.md):

1. **One split.** The stations are split once (:func:`cellsynth.data.split.split_stations`, ``split_seed``,
   ``test_fraction``); every model and seed trains on the same training stations.
2. **One budget rule** for all (``budget``):

   - ``"preset"`` — every model trains for the epochs of its preset config: the generator's defaults
     overridden by ``configs[model]`` (the CLI passes ``configs/<model>.yaml``). The presets differ per model
     (docs/baselines.md says why); the measured training time is reported next to every score.
   - an integer ``n`` — every model with an ``epochs`` option trains for ``n`` epochs (passes over the
     training station-weeks); STOUTER's graph pretraining keeps its ``pretrain_epochs``; models without
     training (the reference generators) are unaffected.

   The rule is stated in the table and in ``results.json``. (A wall-clock budget is not offered: it would
   make a run depend on the machine and on whatever else runs on it, and an interrupted run could not be
   resumed exactly.)
3. **Per seed** ``s``: the model is built with ``seed = s`` and generates ``samples`` weeks per station with
   ``seed = s``, for the held-out stations (the planned-site case) and for the training stations (all of
   them, or a subset of ``train_stations`` drawn with ``split_seed``).
4. **Scores** come from :func:`cellsynth.evaluate.evaluate`, every channel, on the normalised scale
   (divided by the training maximum per channel): held-out = ``evaluate(held_out, generated, train=train)``;
   training stations = ``evaluate(all stations, generated for the training stations, train=train)`` (pairs
   the training stations; its memorisation check compares with the held-out stations' real weeks).
5. **Table** (``table.md``), laid out like STOUTER's Table 1: rows = models, columns = MAE, RMSE and value
   JSD per channel, mean ± standard deviation (``ddof = 1``) over seeds, the best mean of each column in
   bold, the second underlined; then STOUTER's relative change against the best baseline,
   ``(STOUTER - best) / best`` per column (negative = STOUTER lower = better). The baselines are the
   paper's (:data:`PAPER_BASELINES`) that were run, or every other model when none was. Then the other
   metrics, the memorisation check, training time and generation throughput (station-weeks per second).

**Resumable.** Each (model, seed) result is written to ``out/results/<model>__seed<s>.json`` as soon as it
is complete; each run directory ``out/runs/<model>/seed<s>/`` keeps the model's checkpoints and, once
trained, the saved model. Running the same benchmark again reuses finished results, loads trained models
instead of training them again, and resumes interrupted training from its last checkpoint. Settings that
would make old results incomparable (other data, split, samples or budget; another config for a model)
are refused with a :class:`~cellsynth.errors.ConfigError`: use a fresh ``out``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

import cellsynth
from cellsynth.data.io import write_text_atomic
from cellsynth.data.model import StationTraffic
from cellsynth.data.split import split_stations
from cellsynth.errors import ConfigError, DataError
from cellsynth.outputs import BENCH, claim_output_dir

__all__ = ["PAPER_BASELINES", "BenchmarkResult", "format_cell", "markdown_table", "run_benchmark"]

#: STOUTER's baselines in its paper; STOUTER's change is measured against the best of these that ran.
PAPER_BASELINES: tuple[str, ...] = ("tcn-gan", "vae", "diffwave")
#: Columns of the main table (STOUTER's Table 1), per channel.
MAIN_METRICS: tuple[tuple[str, str], ...] = (("mae", "MAE"), ("rmse", "RMSE"), ("value_jsd", "JSD"))
#: The other metrics, per channel.
OTHER_METRICS: tuple[tuple[str, str], ...] = (
    ("log_value_jsd", "Log-value JSD"),
    ("diff_jsd", "Diff. JSD"),
    ("daily_periodic_rmse", "Daily RMSE"),
    ("coverage", "Coverage 5-95 %"),
    ("acf_distance", "ACF dist."),
    ("weekly_profile_error", "Weekly profile err."),
    ("peak_hour_jsd", "Peak-hour JSD"),
    ("mae_of_mean", "MAE of mean"),
    ("rmse_of_mean", "RMSE of mean"),
)
#: Coverage of a 5-95 % band is best at 0.9; every other metric here is best at its lowest.
_TARGETS = {"coverage": 0.9}
_SPLITS = (("held_out", "held-out stations (new sites)"), ("train", "training stations"))
_RESULT_VERSION = 1


# ------------------------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True, eq=False)
class BenchmarkResult:
    """What :func:`run_benchmark` produced.

    ``runs``: one record per (model, seed), as in ``out/results/``; ``summary[model][split][channel][metric]``
    = ``{"mean", "std", "n"}`` over seeds (``split`` is ``"held_out"`` or ``"train"``), plus
    ``summary[model]["cost"]``; ``table``: the markdown of ``table.md``; ``reused``: the (model, seed) pairs
    whose results were already in ``out`` and were not recomputed.
    """

    runs: list[dict[str, Any]]
    summary: dict[str, Any]
    table: str
    budget_rule: str
    out: Path
    reused: list[tuple[str, int]] = field(default_factory=list)

    @property
    def table_path(self) -> Path:
        return self.out / "table.md"

    @property
    def results_path(self) -> Path:
        return self.out / "results.json"

    def __str__(self) -> str:
        return self.table


# ------------------------------------------------------------------------------------------------------------
# The pipeline


def run_benchmark(
    data: StationTraffic,
    models: Sequence[str],
    *,
    out: str | os.PathLike,
    seeds: int | Sequence[int] = 3,
    budget: Literal["preset"] | int = "preset",
    test_fraction: float = 0.2,
    split_seed: int = 0,
    samples: int = 10,
    train_stations: int | None = None,
    configs: dict[str, dict[str, Any]] | None = None,
    progress: bool = True,
    echo: Callable[[str], Any] | None = print,
) -> BenchmarkResult:
    """Train and score every model in ``models`` on one station split of ``data`` (see module docstring).

    ``seeds``: a number ``n`` (seeds ``0..n-1``) or the seeds themselves. ``budget``: ``"preset"`` or a
    number of epochs for every model. ``samples``: weeks generated per station (>= 2 for the coverage
    metric). ``train_stations``: score the training split on a seeded subset of at most this many training
    stations (None: all; generation dominates the bench's time on CPU). ``configs``: per-model config overrides (``{"vae": {"epochs": 50}}``). ``progress``: training
    progress bars and a line per run. ``echo`` prints the progress lines and the final table (None: silent).
    Writes ``out/table.md``, ``out/results.json``, ``out/results/*.json`` and ``out/runs/``.
    """
    from cellsynth.generators import get_class

    if not isinstance(data, StationTraffic):
        raise DataError(f"the benchmark compares station-traffic generators; got {type(data).__name__}")
    models = list(models)
    if not models:
        raise ConfigError("no models to benchmark: give at least one generator name")
    if len(set(models)) != len(models):
        raise ConfigError(f"models are listed twice: {models}")
    for name in models:
        if get_class(name).kind != "stations":
            raise ConfigError(
                f"{name} generates user mobility, not station traffic; it cannot be benchmarked here"
            )
    seed_list = _seeds(seeds)
    budget_rule = _budget_rule(budget)
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
        raise ConfigError(f"samples must be a positive whole number, got {samples!r}")
    if train_stations is not None and (
        isinstance(train_stations, bool)
        or not isinstance(train_stations, int | np.integer)
        or train_stations < 1
    ):
        raise ConfigError(f"train_stations must be a positive whole number or None, got {train_stations!r}")
    configs = dict(configs or {})
    unknown = sorted(set(configs) - set(models))
    if unknown:
        raise ConfigError(f"configs given for models that are not benchmarked: {unknown}")
    say = echo if (echo is not None and progress) else (lambda _msg: None)

    out = Path(out)
    claim_output_dir(out, BENCH)  # a new or empty directory, or a benchmark to resume: cellsynth.outputs
    (out / "results").mkdir(exist_ok=True)
    train, held_out = split_stations(data, test_fraction, split_seed)
    scored_train = train
    if train_stations is not None and train_stations < train.n_stations:
        rng = np.random.default_rng(split_seed)
        scored_train = train.select_stations(
            np.sort(rng.choice(train.n_stations, train_stations, replace=False))
        )
    settings = {
        "data": _data_digest(data),
        "shape": list(data.values.shape),
        "channels": list(data.channels),
        "test_fraction": test_fraction,
        "split_seed": split_seed,
        "samples": int(samples),
        "train_stations_scored": scored_train.n_stations,
        "budget": budget if budget == "preset" else int(budget),
    }
    _check_settings(out / "bench.json", settings)

    runs, reused = [], []
    total = len(models) * len(seed_list)
    for i, (name, seed) in enumerate(((m, s) for m in models for s in seed_list), start=1):
        config = _run_config(name, seed, budget, configs.get(name, {}))
        path = out / "results" / f"{name}__seed{seed}.json"
        record = _load_result(path, name, seed, config)
        if record is not None:
            say(f"[{i}/{total}] {name}, seed {seed}: done before, reusing {path}")
            runs.append(record)
            reused.append((name, seed))
            continue
        say(f"[{i}/{total}] {name}, seed {seed}: training and scoring")
        record = _run_one(
            name, seed, config, train, held_out, scored_train, data, samples, out, progress, budget_rule
        )
        _write_json(path, record)
        runs.append(record)

    summary = _summarise(runs, models, list(data.channels))
    table = _render(summary, models, list(data.channels), budget_rule, settings, train, held_out, seed_list)
    write_text_atomic(out / "table.md", table)
    _write_json(
        out / "results.json",
        {
            "cellsynth_version": cellsynth.__version__,
            "settings": settings,
            "budget_rule": budget_rule,
            "split": {
                "train_stations": train.n_stations,
                "train_stations_scored": scored_train.n_stations,
                "held_out_stations": held_out.n_stations,
                "held_out_ids": [str(s) for s in held_out.stations.ids],
            },
            "models": models,
            "seeds": seed_list,
            "summary": summary,
            "runs": runs,
        },
    )
    if echo is not None:
        echo(table)
    return BenchmarkResult(runs, summary, table, budget_rule, out, reused)


def _seeds(seeds) -> list[int]:
    if isinstance(seeds, bool):
        raise ConfigError(f"seeds must be a number of seeds or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int | np.integer):
        if seeds < 1:
            raise ConfigError(f"need at least one seed, got seeds={seeds}")
        return list(range(int(seeds)))
    out = [int(s) for s in seeds]
    if not out or len(set(out)) != len(out):
        raise ConfigError(f"seeds must be a non-empty list of distinct integers, got {list(seeds)}")
    return out


def _budget_rule(budget) -> str:
    if budget == "preset":
        return (
            "each model trains for the epochs of its preset config (its defaults with the benchmark's config "
            "overrides); training times are measured and reported"
        )
    if isinstance(budget, int | np.integer) and not isinstance(budget, bool) and budget >= 1:
        return (
            f"every trained model gets the same {int(budget)} epochs (passes over the training station-weeks; "
            "STOUTER's graph pretraining keeps its preset); training times are measured and reported"
        )
    raise ConfigError(f"budget must be 'preset' or a positive number of epochs, got {budget!r}")


def _run_config(name: str, seed: int, budget, overrides: dict) -> dict[str, Any]:
    from cellsynth.generators import get_class

    config = {**overrides, "seed": seed}
    if budget != "preset" and "epochs" in get_class(name).Config.model_fields:
        config["epochs"] = int(budget)
    # Validated and with every default filled in, so that a stored result records the whole config.
    return get_class(name)(config).config.model_dump(mode="json")


def _data_digest(data: StationTraffic) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(data.values).tobytes())
    digest.update("\0".join(map(str, data.stations.ids)).encode())
    digest.update(np.ascontiguousarray(data.stations.features).tobytes())
    digest.update(f"{data.start.isoformat()}|{data.step}|{'|'.join(data.channels)}".encode())
    return digest.hexdigest()


def _check_settings(path: Path, settings: dict) -> None:
    if path.exists():
        theirs = json.loads(path.read_text())
        if theirs != settings:
            differ = sorted(k for k in settings if theirs.get(k) != settings[k])
            raise ConfigError(
                f"{path.parent} holds a benchmark with different settings ({', '.join(differ)}); its results "
                "would not be comparable: use a fresh output directory, or the same settings to resume"
            )
        return
    _write_json(path, settings)


def _load_result(path: Path, name: str, seed: int, config: dict) -> dict | None:
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("config") != config:
        raise ConfigError(
            f"{path} was computed with another {name} config; use a fresh output directory, or the same config "
            "to reuse it"
        )
    return record


def _run_one(
    name: str,
    seed: int,
    config: dict,
    train: StationTraffic,
    held_out: StationTraffic,
    scored_train: StationTraffic,
    data: StationTraffic,
    samples: int,
    out: Path,
    progress: bool,
    budget_rule: str,
) -> dict[str, Any]:
    import torch

    from cellsynth.evaluate import evaluate
    from cellsynth.generators import get, load

    run_dir = out / "runs" / name / f"seed{seed}"
    fit_record = run_dir / "fit.json"
    gen = get(name, config)
    if (run_dir / "generator.json").exists() and fit_record.exists():
        # Trained before the benchmark stopped (e.g. killed while scoring): reuse the saved model.
        loaded = load(run_dir)
        if loaded.config != gen.config:
            raise ConfigError(
                f"{run_dir} holds a {name} model with another config; use a fresh output directory"
            )
        gen, fit_info = loaded, json.loads(fit_record.read_text())
    else:
        resumed = (run_dir / "checkpoints").exists()
        start = time.perf_counter()
        gen.fit(train, progress=progress, checkpoint_dir=run_dir)
        fit_info = {"train_seconds": time.perf_counter() - start, "resumed": resumed}
        gen.save(run_dir)
        _write_json(fit_record, fit_info)

    start = time.perf_counter()
    synthetic_held_out = gen.generate(held_out, samples=samples, seed=seed)
    synthetic_train = gen.generate(scored_train, samples=samples, seed=seed)
    generate_seconds = time.perf_counter() - start
    weeks_per_series = synthetic_train.n_steps / train.steps_per("7D")
    station_weeks = (synthetic_held_out.n_stations + synthetic_train.n_stations) * weeks_per_series

    scores = {}
    for split, real, synthetic in (
        ("held_out", held_out, synthetic_held_out),
        ("train", data, synthetic_train),
    ):
        evaluation = evaluate(real, synthetic, train=train).to_dict()
        scores[split] = {
            "metrics": evaluation["metrics"],
            "memorisation": evaluation["memorisation"],
            "notes": evaluation["notes"],
        }
    epochs = config.get("epochs")
    return {
        "version": _RESULT_VERSION,
        "model": name,
        "seed": seed,
        "config": config,
        "budget_rule": budget_rule,
        "epochs": epochs,
        "train_seconds": fit_info["train_seconds"],
        "train_resumed": bool(fit_info.get("resumed", False)),
        "generate_seconds": generate_seconds,
        "station_weeks_generated": station_weeks,
        "station_weeks_per_second": station_weeks / generate_seconds if generate_seconds > 0 else None,
        "samples": samples,
        "machine": {
            "platform": platform.platform(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "torch_threads": torch.get_num_threads(),
        },
        "scores": scores,
    }


# ------------------------------------------------------------------------------------------------------------
# Aggregation


def _stats(values: list[float]) -> dict[str, Any]:
    values = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(values, ddof=1)) if len(values) > 1 else None
    return {"mean": float(np.mean(values)), "std": std, "n": len(values)}


def _summarise(runs: list[dict], models: list[str], channels: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in models:
        mine = [r for r in runs if r["model"] == name]
        entry: dict[str, Any] = {}
        for split, _ in _SPLITS:
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
        summary[name] = entry
    return summary


# ------------------------------------------------------------------------------------------------------------
# Markdown


def format_cell(mean: float | None, std: float | None, digits: int = 4) -> str:
    """``"mean ± std"`` (``"mean"`` alone without a spread; ``"–"`` without a value)."""
    if mean is None:
        return "–"
    text = f"{mean:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def _ranks(values: list[float | None], target: float | None = None) -> list[int | None]:
    """Rank of each value (0 = best, 1 = second, ...; ties share a rank); lower is better, or closer to
    ``target`` when given. ``None`` values get no rank."""
    keys = [None if v is None else (abs(v - target) if target is not None else v) for v in values]
    distinct = sorted({k for k in keys if k is not None})
    return [None if k is None else distinct.index(k) for k in keys]


def markdown_table(
    header: list[str], rows: list[list[str]], means: list[list[float | None]], targets: list[float | None]
) -> str:
    """A markdown table whose data columns mark the best mean **bold** and the second <u>underlined</u>.

    ``rows[i][0]`` is the row label, ``rows[i][j + 1]`` the text of column j; ``means[i][j]`` the value that
    column j is ranked by (lower is better, or closest to ``targets[j]`` when that is not None). A column
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


def _metric_table(summary, models, split, columns) -> tuple[str, list[list[float | None]]]:
    """``columns``: ``[(channel, metric, label)]``; returns the table and the means (for STOUTER's change)."""
    header = ["Model"] + [label for _, _, label in columns]
    rows, means = [], []
    for name in models:
        stats = [summary[name][split].get(channel, {}).get(metric, {}) for channel, metric, _ in columns]
        rows.append([name] + [format_cell(s.get("mean"), s.get("std")) for s in stats])
        means.append([s.get("mean") for s in stats])
    targets = [_TARGETS.get(metric) for _, metric, _ in columns]
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


def _render(summary, models, channels, budget_rule, settings, train, held_out, seeds) -> str:
    multi = len(channels) > 1
    main = [(c, m, f"{c} {label}" if multi else label) for c in channels for m, label in MAIN_METRICS]
    parts = [
        "# Station-traffic benchmark",
        "",
        f"- Data: {settings['shape'][0]} stations x {settings['shape'][1]} steps, channels "
        f"{', '.join(channels)}; one split by station (seed {settings['split_seed']}): {train.n_stations} "
        f"training, {held_out.n_stations} held-out stations; the training split is scored on "
        f"{settings['train_stations_scored']} of them.",
        f"- Budget: {budget_rule}.",
        f"- Seeds: {', '.join(map(str, seeds))}; {settings['samples']} generated weeks per station; every cell "
        "is the mean ± standard deviation over seeds.",
        "- Scores on the normalised scale (each channel divided by its training maximum), from "
        "cellsynth.evaluate; lower is better (coverage: closest to 0.9). Best of each column in **bold**, "
        "second <u>underlined</u>.",
        "",
    ]
    for split, title in _SPLITS:
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
    for split, title in _SPLITS:
        for channel in channels:
            columns = [(channel, m, label) for m, label in OTHER_METRICS]
            present = [col for col in columns if any(summary[n][split][channel].get(col[1]) for n in models)]
            if not present:
                continue
            table, _ = _metric_table(summary, models, split, present)
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
        held, trn, cost = (
            summary[name]["held_out"]["memorisation"],
            summary[name]["train"]["memorisation"],
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
    return "\n".join(parts)


def _write_json(path: Path, value: Any) -> None:
    """Atomic (a killed benchmark never leaves half a file)."""
    write_text_atomic(path, json.dumps(value, indent=2, allow_nan=False) + "\n")
