"""Running the benchmark (:func:`run_benchmark`): the split, the budget rule, one (model, seed) run at a time,
the results kept in ``out`` so that a rerun resumes (the protocol is in :mod:`cellsynth.benchmark`)."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

import cellsynth
from cellsynth.benchmark.table import render_table, summarise
from cellsynth.data.io import write_text_atomic
from cellsynth.data.model import StationTraffic
from cellsynth.data.split import split_stations
from cellsynth.errors import ConfigError, DataError
from cellsynth.outputs import BENCH, claim_output_dir

__all__ = ["BenchmarkResult", "run_benchmark"]

_RESULT_VERSION = 1


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
    preset: str | None = "recommended",
    progress: bool = True,
    echo: Callable[[str], Any] | None = print,
) -> BenchmarkResult:
    """Train and score every model in ``models`` on one station split of ``data`` (see module docstring).

    ``seeds``: a number ``n`` (seeds ``0..n-1``) or the seeds themselves. ``budget``: ``"preset"`` or a
    number of epochs for every model. ``samples``: weeks generated per station (>= 2 for the coverage
    metric). ``train_stations``: score the training split on a seeded subset of at most this many training
    stations (None: all; generation dominates the bench's time on CPU). ``preset``: the shipped preset every
    model starts from (``"recommended"``, ``"paper"``; None: the config classes' defaults; a model without
    presets, such as the floors, takes its defaults). ``configs``: per-model config values on top of the
    preset, sections merged key by key (``{"vae": {"epochs": 50}}``). ``progress``: training progress bars
    and a line per run. ``echo`` prints the progress lines and the final table (None: silent).
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
    _check_preset(preset, models)
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
        config = _run_config(name, seed, budget, configs.get(name, {}), preset)
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

    summary = summarise(runs, models, list(data.channels))
    table = render_table(
        summary, models, list(data.channels), budget_rule, settings, train, held_out, seed_list
    )
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
            "each model trains for the epochs of its config (its preset with the benchmark's config "
            "overrides); training times are measured and reported"
        )
    if isinstance(budget, int | np.integer) and not isinstance(budget, bool) and budget >= 1:
        return (
            f"every trained model gets the same {int(budget)} epochs (passes over the training station-weeks; "
            "STOUTER's graph pretraining keeps its preset); training times are measured and reported"
        )
    raise ConfigError(f"budget must be 'preset' or a positive number of epochs, got {budget!r}")


def _check_preset(preset: str | None, models: Sequence[str]) -> None:
    """Before any training: every model that ships presets ships ``preset`` (the floors ship none)."""
    from cellsynth.generators import available_presets

    if preset is None:
        return
    for name in models:
        names = available_presets(name)
        if names and preset not in names:
            raise ConfigError(
                f"{name} has no preset {preset!r}: choose one of {', '.join(names)} (or none for the config's "
                "defaults)"
            )


def _run_config(name: str, seed: int, budget, overrides: dict, preset: str | None) -> dict[str, Any]:
    from cellsynth.generators import available_presets, get, get_class

    config = {**overrides, "seed": seed}
    if budget != "preset" and "epochs" in get_class(name).Config.model_fields:
        config["epochs"] = int(budget)
    chosen = preset if preset in available_presets(name) else None
    # Validated and with every default filled in, so that a stored result records the whole config (the
    # preset's values included: a result is reused only for the same resolved config).
    return get(name, config, preset=chosen).config.model_dump(mode="json")


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


def _write_json(path: Path, value: Any) -> None:
    """Atomic (a killed benchmark never leaves half a file)."""
    write_text_atomic(path, json.dumps(value, indent=2, allow_nan=False) + "\n")
