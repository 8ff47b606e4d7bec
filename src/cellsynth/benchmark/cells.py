"""One cell of the benchmark — one model, one seed, one dataset under one protocol — and running many of them,
one after another or in parallel processes (:func:`run_cells`).

A cell trains its model (or loads it, when a killed run had saved it), generates for the held-out stations
(and, under the station protocol, for the scored training stations), scores them with
:func:`cellsynth.evaluate.evaluate`, and writes its record atomically to its result file as soon as it is
complete: a benchmark killed at any moment loses at most the cells that were running, and those resume from
their last training checkpoint.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cellsynth.benchmark.code import code_stamp
from cellsynth.data.io import write_text_atomic
from cellsynth.data.model import StationTraffic
from cellsynth.errors import ConfigError

__all__ = ["RESULT_VERSION", "Cell", "run_cells", "write_json"]

RESULT_VERSION = 1


@dataclass(frozen=True, eq=False)
class Cell:
    """Everything one (model, seed) run needs, picklable so that it can run in another process.

    ``scored_train`` is None when the training stations are not scored (the time protocol, or
    ``train_stations=0``); ``data`` is then unused.
    """

    label: str  # "<dataset>/<protocol>" in progress lines
    model: str  # the row: a registered generator's name, or a variant's (an ablation)
    generator: str  # the registered generator that trains
    seed: int
    config: dict[str, Any]
    protocol: str
    train: StationTraffic
    held_out: StationTraffic
    scored_train: StationTraffic | None
    data: StationTraffic
    samples: int
    budget_rule: str
    run_dir: Path
    result_path: Path
    progress: bool


def write_json(path: Path, value: Any) -> None:
    """Atomic (a killed benchmark never leaves half a file)."""
    write_text_atomic(path, json.dumps(value, indent=2, allow_nan=False) + "\n")


def run_cells(
    cells: Sequence[Cell], jobs: int = 1, say: Callable[[str], Any] = lambda _m: None
) -> list[dict[str, Any]]:
    """Run ``cells`` (each writes its own result file) and return their records in the order given.

    ``jobs`` > 1 runs that many cells at a time, each in its own process with one torch thread (cells are
    independent: each trains its own model on its own seed, so the numbers do not depend on ``jobs``; only
    the measured times do). The first failure stops the cells not yet started and is raised once the running
    ones have finished and written their results.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs must be a positive whole number of processes, got {jobs!r}")
    total = len(cells)
    if jobs == 1 or total <= 1:
        records = []
        for i, cell in enumerate(cells, start=1):
            say(f"[{i}/{total}] {cell.label}: {cell.model}, seed {cell.seed}: training and scoring")
            records.append(run_cell(cell))
        return records
    records: dict[int, dict[str, Any]] = {}
    # spawn: a fresh interpreter per worker (forking a process that holds torch's threads can deadlock).
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_one_thread) as pool:
        futures = {}
        for i, cell in enumerate(cells):
            quiet = replace(cell, progress=False)  # the bars of parallel runs would interleave
            futures[pool.submit(run_cell, quiet)] = i
        say(f"running {total} cells in {min(jobs, total)} processes")
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                i = futures[future]
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                records[i] = future.result()
                say(
                    f"[{len(records)}/{total}] {cells[i].label}: {cells[i].model}, seed {cells[i].seed}: done"
                )
    return [records[i] for i in range(total)]


def _one_thread() -> None:
    import torch

    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


def run_cell(cell: Cell) -> dict[str, Any]:
    """Train (or load), generate, score; write the record to ``cell.result_path`` and return it."""
    import torch

    from cellsynth.evaluate import evaluate
    from cellsynth.generators import get, load

    run_dir, name, seed = cell.run_dir, cell.model, cell.seed
    fit_record = run_dir / "fit.json"
    gen = get(cell.generator, cell.config)
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
        gen.fit(cell.train, progress=cell.progress, checkpoint_dir=run_dir)
        fit_info = {"train_seconds": time.perf_counter() - start, "resumed": resumed}
        gen.save(run_dir)
        write_json(fit_record, fit_info)

    start = time.perf_counter()
    generated = {"held_out": gen.generate(cell.held_out, samples=cell.samples, seed=seed)}
    if cell.scored_train is not None:
        generated["train"] = gen.generate(cell.scored_train, samples=cell.samples, seed=seed)
    generate_seconds = time.perf_counter() - start
    week = cell.train.steps_per("7D")
    station_weeks = sum(g.n_stations * g.n_steps / week for g in generated.values())

    # Held-out: the held-out stations (new sites), or the later weeks of every station (future weeks). The
    # training stations are scored against all stations, so that the memorisation check has held-out ones.
    real = {"held_out": cell.held_out, "train": cell.data}
    scores = {}
    for split, synthetic in generated.items():
        evaluation = evaluate(real[split], synthetic, train=cell.train).to_dict()
        scores[split] = {
            "metrics": evaluation["metrics"],
            "memorisation": evaluation["memorisation"],
            "notes": evaluation["notes"],
        }
    record = {
        "version": RESULT_VERSION,
        "code": code_stamp(),
        "model": name,
        "generator": cell.generator,
        "seed": seed,
        "protocol": cell.protocol,
        "config": cell.config,
        "budget_rule": cell.budget_rule,
        "epochs": cell.config.get("epochs"),
        "train_seconds": fit_info["train_seconds"],
        "train_resumed": bool(fit_info.get("resumed", False)),
        "fit_notes": gen.fit_notes(),  # what the fit chose or found (e.g. STOUTER's timestep_power "auto")
        "generate_seconds": generate_seconds,
        "station_weeks_generated": station_weeks,
        "station_weeks_per_second": station_weeks / generate_seconds if generate_seconds > 0 else None,
        "samples": cell.samples,
        "machine": {
            "platform": platform.platform(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "torch_threads": torch.get_num_threads(),
        },
        "scores": scores,
    }
    write_json(cell.result_path, record)
    return record
