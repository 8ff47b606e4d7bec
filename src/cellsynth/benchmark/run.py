"""Running the benchmark on one dataset under one protocol (:func:`run_benchmark`): the checks and the split
(:func:`plan_benchmark`, before anything is written), the budget rule, the (model, seed) cells
(:mod:`cellsynth.benchmark.cells`), the results kept in ``out`` so that a rerun resumes (the protocol is in
:mod:`cellsynth.benchmark`)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

import cellsynth
from cellsynth.benchmark.cells import Cell, run_cells, write_json
from cellsynth.benchmark.code import code_note, code_stamp, warn_other_code
from cellsynth.benchmark.table import render_table, summarise
from cellsynth.data.io import write_text_atomic
from cellsynth.data.model import StationTraffic
from cellsynth.data.split import split_stations, split_weeks
from cellsynth.errors import ConfigError, DataError
from cellsynth.outputs import BENCH, check_output, claim_output_dir

__all__ = ["PROTOCOLS", "BenchmarkPlan", "BenchmarkResult", "plan_benchmark", "run_benchmark"]


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
    min_steps: int | None = None,
    protocol: str = "stations",
    test_fraction: float = 0.2,
    split_seed: int = 0,
    samples: int = 10,
    train_stations: int | None = None,
    configs: dict[str, dict[str, Any]] | None = None,
    preset: str | None = "recommended",
    generators: dict[str, str] | None = None,
    jobs: int = 1,
    progress: bool = True,
    echo: Callable[[str], Any] | None = print,
) -> BenchmarkResult:
    """Train and score every model in ``models`` on one split of ``data`` (see module docstring).

    ``seeds``: a number ``n`` (seeds ``0..n-1``) or the seeds themselves. ``budget``: ``"preset"`` or a number
    of epochs for every model; ``min_steps``: at least this many optimiser steps for every trained model, in
    more epochs where the budget's make fewer (None: the budget alone). ``protocol``: ``"stations"`` (held-out
    stations, the planned-site case; ``test_fraction`` of the stations) or ``"time"`` (the later
    ``test_fraction`` of the whole weeks of every station, the future-weeks case;
    :func:`cellsynth.data.split.split_weeks`). ``samples``: weeks generated per station (>= 2 for the coverage
    metric). ``train_stations``: score the training stations too, on a seeded subset of at most this many
    (None: all; 0: not at all; the time protocol scores only the later weeks). ``preset``: the shipped preset
    every model starts from (``"recommended"``, ``"paper"``; None: the config classes' defaults; a model
    without presets, such as the floors, takes its defaults). ``configs``: per-model config values on top of
    the preset, sections merged key by key (``{"vae": {"epochs": 50}}``). ``generators``: the registered
    generator of each entry of ``models`` that is not one itself, a *variant* (an ablation such as
    ``{"stouter-no-stffm": "stouter"}``, whose settings are in ``configs``; entries that map a generator to
    itself are allowed); a variant is a row of its own, trained and scored like a model. ``jobs``: (model,
    seed) cells run at a time, each in its own process (:func:`~cellsynth.benchmark.cells.run_cells`).
    ``progress``: training progress bars and a line per run. ``echo`` prints the progress lines and the final
    table (None: silent). Writes ``out/table.md``, ``out/results.json``, ``out/results/*.json`` and
    ``out/runs/``.
    """
    plan = plan_benchmark(
        data,
        models,
        out=out,
        seeds=seeds,
        budget=budget,
        min_steps=min_steps,
        protocol=protocol,
        test_fraction=test_fraction,
        split_seed=split_seed,
        samples=samples,
        train_stations=train_stations,
        configs=configs,
        preset=preset,
        generators=generators,
        progress=progress,
    )
    say = echo if (echo is not None and progress) else (lambda _msg: None)
    plan.claim()
    pending = plan.pending()
    to_run = {(c.model, c.seed) for c in pending}
    reused = [cell for cell in plan.cells() if cell not in to_run]
    for name, seed in reused:
        say(f"{name}, seed {seed}: done before, reusing {plan.result_path(name, seed)}")
    run_cells(pending, jobs, say)
    result = plan.finish(reused)
    if echo is not None:
        echo(result.table)
    return result


PROTOCOLS: dict[str, str] = {
    "stations": "held-out stations (new sites)",
    "time": "later weeks of the same stations (future weeks)",
}


@dataclass(eq=False)
class BenchmarkPlan:
    """One dataset under one protocol, checked and split, before anything is written: :func:`plan_benchmark`
    builds it, :meth:`claim` takes its output directory, :meth:`pending` lists the cells still to run and
    :meth:`finish` writes the table and ``results.json`` from the cells' results."""

    out: Path
    label: str
    data: StationTraffic
    protocol: str
    train: StationTraffic
    held_out: StationTraffic
    scored_train: StationTraffic | None
    models: list[str]
    #: The registered generator of each model row (a variant's base model, else the row's own name).
    generators: dict[str, str]
    seeds: list[int]
    configs: dict[tuple[str, int], dict[str, Any]]
    samples: int
    budget_rule: str
    settings: dict[str, Any]
    progress: bool

    def cells(self) -> list[tuple[str, int]]:
        return [(m, s) for m in self.models for s in self.seeds]

    def result_path(self, model: str, seed: int) -> Path:
        return self.out / "results" / f"{model}__seed{seed}.json"

    def claim(self) -> None:
        """Create and mark ``out`` (:mod:`cellsynth.outputs`) and record the settings in ``bench.json``."""
        claim_output_dir(self.out, BENCH)
        (self.out / "results").mkdir(exist_ok=True)
        if not (self.out / "bench.json").exists():
            write_json(self.out / "bench.json", self.settings)

    def pending(self) -> list[Cell]:
        """The cells without a stored result (a stored one computed with another config is an error)."""
        cells = []
        for name, seed in self.cells():
            config = self.configs[name, seed]
            if _load_result(self.result_path(name, seed), name, seed, config) is not None:
                continue
            cells.append(
                Cell(
                    label=self.label,
                    model=name,
                    generator=self.generators[name],
                    seed=seed,
                    config=config,
                    protocol=self.protocol,
                    train=self.train,
                    held_out=self.held_out,
                    scored_train=self.scored_train,
                    data=self.data,
                    samples=self.samples,
                    budget_rule=self.budget_rule,
                    run_dir=self.out / "runs" / name / f"seed{seed}",
                    result_path=self.result_path(name, seed),
                    progress=self.progress,
                )
            )
        return cells

    def finish(self, reused: list[tuple[str, int]]) -> BenchmarkResult:
        """Read every cell's result, write ``table.md`` and ``results.json``."""
        runs = [json.loads(self.result_path(m, s).read_text()) for m, s in self.cells()]
        named = [(f"{r['model']}, seed {r['seed']}", r) for r in runs]
        reused_cells = set(reused)
        warn_other_code([(n, r) for n, r in named if (r["model"], r["seed"]) in reused_cells], self.out)
        channels = list(self.data.channels)
        summary = summarise(runs, self.models, channels)
        table = render_table(
            summary,
            self.models,
            channels,
            self.budget_rule,
            self.settings,
            self.train,
            self.held_out,
            self.seeds,
            PROTOCOLS[self.protocol],
        )
        table = f"{table.rstrip()}\n\n{code_note(named)}\n"
        write_text_atomic(self.out / "table.md", table)
        held_out_ids = [] if self.protocol == "time" else [str(s) for s in self.held_out.stations.ids]
        write_json(
            self.out / "results.json",
            {
                "cellsynth_version": cellsynth.__version__,
                "code": code_stamp(),
                "settings": self.settings,
                "budget_rule": self.budget_rule,
                "protocol": self.protocol,
                "split": {
                    "train_stations": self.train.n_stations,
                    "train_stations_scored": self.settings["train_stations_scored"],
                    "held_out_stations": self.held_out.n_stations,
                    "held_out_ids": held_out_ids,
                    "train_span": [self.train.start.isoformat(), self.train.end.isoformat()],
                    "held_out_span": [self.held_out.start.isoformat(), self.held_out.end.isoformat()],
                },
                "models": self.models,
                "seeds": self.seeds,
                "summary": summary,
                "runs": runs,
            },
        )
        return BenchmarkResult(runs, summary, table, self.budget_rule, self.out, reused)


def plan_benchmark(
    data: StationTraffic,
    models: Sequence[str],
    *,
    out: str | os.PathLike,
    seeds: int | Sequence[int] = 3,
    budget: Literal["preset"] | int = "preset",
    min_steps: int | None = None,
    protocol: str = "stations",
    test_fraction: float = 0.2,
    split_seed: int = 0,
    samples: int = 10,
    train_stations: int | None = None,
    configs: dict[str, dict[str, Any]] | None = None,
    preset: str | None = "recommended",
    generators: dict[str, str] | None = None,
    progress: bool = True,
    label: str | None = None,
) -> BenchmarkPlan:
    """Check every argument of :func:`run_benchmark`, split the data and resolve every config, without
    writing anything: a mistake anywhere fails here, before any model trains."""
    from cellsynth.generators import get_class

    if not isinstance(data, StationTraffic):
        raise DataError(f"the benchmark compares station-traffic generators; got {type(data).__name__}")
    models = list(models)
    if not models:
        raise ConfigError("no models to benchmark: give at least one generator name")
    if len(set(models)) != len(models):
        raise ConfigError(f"models are listed twice: {models}")
    generators = _generators(models, generators or {})
    for name in models:
        if get_class(generators[name]).kind != "stations":
            raise ConfigError(
                f"{generators[name]} generates user mobility, not station traffic; it cannot be benchmarked here"
            )
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    seed_list = _seeds(seeds)
    budget_rule = _budget_rule(budget, min_steps)
    if isinstance(samples, bool) or not isinstance(samples, int | np.integer) or samples < 1:
        raise ConfigError(f"samples must be a positive whole number, got {samples!r}")
    if train_stations is not None and (
        isinstance(train_stations, bool)
        or not isinstance(train_stations, int | np.integer)
        or train_stations < 0
    ):
        raise ConfigError(
            f"train_stations must be a whole number >= 0 (0: do not score the training stations) or None, got "
            f"{train_stations!r}"
        )
    configs = dict(configs or {})
    unknown = sorted(set(configs) - set(models))
    if unknown:
        raise ConfigError(f"configs given for models that are not benchmarked: {unknown}")
    _check_preset(preset, generators)
    out = Path(out)
    check_output(out, BENCH)

    if protocol == "stations":
        _check_descriptors(data)
        train, held_out = split_stations(data, test_fraction, split_seed)
        scored_train = None if train_stations == 0 else train
        if scored_train is not None and train_stations is not None and train_stations < train.n_stations:
            rng = np.random.default_rng(split_seed)
            scored_train = train.select_stations(
                np.sort(rng.choice(train.n_stations, train_stations, replace=False))
            )
    else:
        train, held_out = split_weeks(data, test_fraction)
        scored_train = None
    settings = {
        "data": _data_digest(data),
        "shape": list(data.values.shape),
        "channels": list(data.channels),
        "protocol": protocol,
        "test_fraction": test_fraction,
        "split_seed": split_seed,
        "samples": int(samples),
        "train_stations_scored": 0 if scored_train is None else scored_train.n_stations,
        "budget": budget if budget == "preset" else int(budget),
    }
    if min_steps is not None:  # only when given: benchmarks started before the option still resume
        settings["min_steps"] = int(min_steps)
    _check_settings(out / "bench.json", settings)
    resolved = {
        (name, seed): _run_config(
            generators[name], seed, budget, configs.get(name, {}), preset, min_steps, _station_weeks(train)
        )
        for name in models
        for seed in seed_list
    }
    return BenchmarkPlan(
        out=out,
        label=label or str(out),
        data=data,
        protocol=protocol,
        train=train,
        held_out=held_out,
        scored_train=scored_train,
        models=models,
        generators=generators,
        seeds=seed_list,
        configs=resolved,
        samples=int(samples),
        budget_rule=budget_rule,
        settings=settings,
        progress=progress,
    )


def _check_descriptors(data: StationTraffic) -> None:
    """Held-out stations are new sites: the models need something to know them by."""
    stations = data.stations
    if not stations.feature_names and not stations.has_coordinates:
        raise DataError(
            "its stations have neither feature columns nor coordinates, so held-out stations (new sites) have "
            "nothing a model could condition them on; score it by time (protocol 'time': future weeks of the "
            "same stations), or import it with a stations table of features or lat/lon",
            source=data.source,
        )


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


def _budget_rule(budget, min_steps: int | None = None) -> str:
    if budget == "preset":
        rule = (
            "each model trains for the epochs of its config (its preset with the benchmark's config "
            "overrides)"
        )
    elif isinstance(budget, int | np.integer) and not isinstance(budget, bool) and budget >= 1:
        rule = (
            f"every trained model gets the same {int(budget)} epochs (passes over the training station-weeks; "
            "STOUTER's graph pretraining keeps its preset)"
        )
    else:
        raise ConfigError(f"budget must be 'preset' or a positive number of epochs, got {budget!r}")
    if min_steps is not None:
        if isinstance(min_steps, bool) or not isinstance(min_steps, int | np.integer) or min_steps < 1:
            raise ConfigError(f"min_steps must be a positive number of optimiser steps, got {min_steps!r}")
        rule += (
            f", and at least {int(min_steps)} optimiser steps at its own batch size: more epochs where those "
            "make fewer (a small training set)"
        )
    return rule + "; training times are measured and reported"


def _station_weeks(train: StationTraffic) -> int:
    """The training samples of the week-based models: every training station's whole weeks."""
    try:
        return train.n_stations * max(1, train.n_steps // train.steps_per("7D"))
    except DataError:  # a step that does not divide a week: the models refuse it themselves
        return train.n_stations


def variant_problem(name: str, generator: str) -> str | None:
    """What is wrong with a variant, a row ``name`` that runs the registered generator ``generator``
    with settings of its own (None: nothing)."""
    from cellsynth.generators import available

    if name in available():
        return f"{name} is a registered generator; give the variant a name of its own"
    if generator not in available():
        return f"unknown generator {generator!r}; available: {', '.join(available())}"
    return None


def _generators(models: list[str], variants: dict[str, str]) -> dict[str, str]:
    """The registered generator of every model row: a variant's base model, else the row's own name."""
    unused = sorted(set(variants) - set(models))
    if unused:
        raise ConfigError(f"generators given for rows that are not benchmarked: {unused}")
    resolved = {name: variants.get(name, name) for name in models}
    for name, generator in resolved.items():
        problem = None if generator == name else variant_problem(name, generator)
        if problem:
            raise ConfigError(f"variant {name!r}: {problem}")
    return resolved


def _check_preset(preset: str | None, generators: dict[str, str]) -> None:
    """Before any training: every model that ships presets ships ``preset`` (the floors ship none)."""
    from cellsynth.generators import available_presets

    if preset is None:
        return
    for name in dict.fromkeys(generators.values()):
        names = available_presets(name)
        if names and preset not in names:
            raise ConfigError(
                f"{name} has no preset {preset!r}: choose one of {', '.join(names)} (or none for the config's "
                "defaults)"
            )


def _run_config(
    name: str,
    seed: int,
    budget,
    overrides: dict,
    preset: str | None,
    min_steps: int | None = None,
    train_samples: int = 0,
) -> dict[str, Any]:
    r"""The resolved config of one cell. With ``min_steps``, a model with ``epochs`` and ``batch_size`` trains for

    .. math::  \max\Big(E,\ \Big\lceil \frac{m}{\lceil n / b \rceil} \Big\rceil\Big)

    epochs: ``E`` the budget's (or its config's), ``m`` = ``min_steps``, ``n`` = ``train_samples`` (station-weeks)
    and ``b`` its batch size, so that it takes at least ``m`` optimiser steps (batches are not dropped)."""
    from cellsynth.generators import available_presets, get, get_class

    config = {**overrides, "seed": seed}
    fields = get_class(name).Config.model_fields
    if budget != "preset" and "epochs" in fields:
        config["epochs"] = int(budget)
    chosen = preset if preset in available_presets(name) else None
    resolved = get(name, config, preset=chosen).config
    if min_steps is not None and "epochs" in fields and "batch_size" in fields and train_samples > 0:
        batches = -(-int(train_samples) // int(resolved.batch_size))
        epochs = max(int(resolved.epochs), -(-int(min_steps) // batches))
        if epochs != resolved.epochs:
            resolved = get(name, {**config, "epochs": epochs}, preset=chosen).config
    # Validated and with every default filled in, so that a stored result records the whole config (the
    # preset's values included: a result is reused only for the same resolved config).
    return resolved.model_dump(mode="json")


def _data_digest(data: StationTraffic) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(data.values).tobytes())
    digest.update("\0".join(map(str, data.stations.ids)).encode())
    digest.update(np.ascontiguousarray(data.stations.features).tobytes())
    digest.update(f"{data.start.isoformat()}|{data.step}|{'|'.join(data.channels)}".encode())
    return digest.hexdigest()


def _check_settings(path: Path, settings: dict) -> None:
    """A benchmark directory resumes only with the settings it was started with (read, not written here)."""
    if not path.exists():
        return
    theirs = json.loads(path.read_text())
    theirs.setdefault("protocol", "stations")  # benchmarks before the time protocol split by station
    if theirs != settings:
        differ = sorted(k for k in settings if theirs.get(k) != settings[k])
        raise ConfigError(
            f"{path.parent} holds a benchmark with different settings ({', '.join(differ)}); its results "
            "would not be comparable: use a fresh output directory, or the same settings to resume"
        )


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
