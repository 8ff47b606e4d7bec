"""The user-level benchmark (:func:`run_user_benchmark`, ``cellsynth bench-users``): user generators on one
set of held-out users, one budget rule, several seeds; MSTDiff's Table I (traffic) and Table II
(trajectories) with the data's own noise level beside every score.

    rows = read_suite("suite.yaml")            # or ["mstdiff (recommended)", "mstdiff (paper)", "markov"]
    result = run_user_benchmark(city.users, rows, seeds=3, out="bench-users/",
                                knowledge_graph=city.knowledge_graph)
    print(result.table)                        # also in bench-users/table.md; numbers in results.json

Protocol:

1. **Held-out users.** Either a seeded split of one dataset (:func:`cellsynth.data.split.split_users`,
   ``test_fraction``, ``split_seed``), or a separate dataset of held-out users (``test``: MoveSim's GeoLife
   ``real.data`` to train, ``test.data`` to score), both put on one stations table
   (:func:`cellsynth.data.locations.share_stations`). ``train_users`` / ``test_users`` cap either side by a
   seeded draw (``split_seed``); ``locations`` keeps that many of the training users' most visited locations
   and maps every other one to the nearest kept one (:func:`~cellsynth.data.locations.keep_top_locations`:
   GeoLife has ~18,000). Whatever was done is stated in the table.
2. **One budget rule** (``budget``): ``"preset"`` (each row's config as given) or a number of epochs for every
   model with an ``epochs`` option (passes over the training users).
3. **Per row and seed** ``s`` (a *cell*): the row's generator is built with ``seed = s`` (the row's preset and
   overrides, :mod:`cellsynth.benchmark.users_suite`), fitted on the training users (with the knowledge graph when
   it takes one), and generates as many users as are held out with ``seed = s``; the scores are
   :func:`cellsynth.evaluate.evaluate_users` (held-out users, generated users, ``train=`` the training users:
   the memorisation check).
4. **Noise level**, per seed ``s``, scored exactly like a generator's output:
   ``real: training users`` — as many training users as are held out, drawn with ``s``, scored against the
   held-out users (the memorisation check against the other training users: what users that copy nobody
   read); it is what two real samples of this size differ by, plus any difference between the training and
   the held-out population. ``real: held-out halves`` — half of the held-out users against the other half
   (half the size, so noisier). A model whose score is at or under the noise level has matched the data on
   that statistic; differences among such models mean nothing.
5. **Tables** (``table.md``): rows = the noise rows, then the suite's rows; mean ± standard deviation over
   seeds; the best model mean of each column **bold**, the second <u>underlined</u> (noise rows are not
   ranked); ``≈`` marks a model cell within the noise level. Then memorisation (near-copy share, runs
   flagged, the verdict), fit and sampling time.

**Resumable.** Each cell's result is written atomically to ``out/results/<row>__seed<s>.json`` when it is
complete, its model and checkpoints to ``out/runs/<row>/seed<s>/``. Rerunning reuses finished cells, loads
trained models instead of training them again and resumes interrupted training from its last checkpoint;
rows can be added to a finished benchmark. Other data, split or budget are refused (``bench.json``), as is a
stored cell whose row now resolves to another config. ``jobs`` > 1 runs cells in that many processes, one
torch thread each.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

import numpy as np

import cellsynth
from cellsynth.benchmark.cells import write_json
from cellsynth.benchmark.code import code_note, code_stamp, warn_other_code
from cellsynth.benchmark.run import _run_config, _seeds
from cellsynth.benchmark.users_suite import Row, parse_row
from cellsynth.benchmark.users_table import NOISE_HALVES, NOISE_TRAIN, render_user_table, summarise_users
from cellsynth.data.io import write_text_atomic
from cellsynth.data.locations import keep_top_locations, share_stations
from cellsynth.data.model import UserMobility
from cellsynth.data.split import split_users
from cellsynth.errors import ConfigError, DataError
from cellsynth.outputs import BENCH, claim_output_dir

__all__ = ["UserBenchmarkResult", "prepare_users", "run_user_benchmark"]

_RESULT_VERSION = 1
LEVEL = "users"


@dataclass(frozen=True, eq=False)
class UserBenchmarkResult:
    """What :func:`run_user_benchmark` produced: ``runs`` (one record per cell and per noise row and seed),
    ``summary[label]`` (mean, std over seeds per metric; memorisation; cost), ``table`` (``table.md``),
    ``reused`` (the (label, seed) cells found finished in ``out``), ``computed`` (the cells run now)."""

    runs: list[dict[str, Any]]
    summary: dict[str, Any]
    table: str
    budget_rule: str
    out: Path
    reused: list[tuple[str, int]] = field(default_factory=list)
    computed: list[tuple[str, int]] = field(default_factory=list)

    @property
    def table_path(self) -> Path:
        return self.out / "table.md"

    @property
    def results_path(self) -> Path:
        return self.out / "results.json"

    def __str__(self) -> str:
        return self.table


def run_user_benchmark(
    users: UserMobility,
    rows: Sequence[Row | str],
    *,
    out: str | os.PathLike,
    test: UserMobility | None = None,
    seeds: int | Sequence[int] = 3,
    budget: Literal["preset"] | int = "preset",
    test_fraction: float = 0.2,
    split_seed: int = 0,
    train_users: int | None = None,
    test_users: int | None = None,
    locations: int | None = None,
    knowledge_graph=None,
    jobs: int = 1,
    progress: bool = True,
    echo: Callable[[str], Any] | None = print,
) -> UserBenchmarkResult:
    """Fit, generate and score every row on one set of held-out users (module docstring).

    ``users``: the training users, or all users when ``test`` is None (then split by ``test_fraction``,
    ``split_seed``). ``rows``: :class:`Row` objects or one-line rows (``"mstdiff (paper)"``). ``seeds``: a
    number ``n`` (0..n-1) or the seeds. ``knowledge_graph``: passed to generators that take one.
    Writes ``out/table.md``, ``out/results.json``, ``out/bench.json``, ``out/results/`` and ``out/runs/``.
    """
    from cellsynth.generators import get_class

    rows = [r if isinstance(r, Row) else parse_row(r, where=f"row {r!r}") for r in rows]
    if not rows:
        raise ConfigError("no rows to benchmark: give at least one generator")
    labels = [r.label for r in rows]
    for key in ("label", "slug"):
        values = [getattr(r, key) for r in rows]
        if len(set(values)) != len(values):
            raise ConfigError(f"two rows share a {key}: {labels}; give each row its own label")
    for row in rows:
        if get_class(row.model).kind != "users":
            raise ConfigError(
                f"row {row.label!r}: {row.model} generates station traffic, not users; benchmark it with "
                "`cellsynth bench`"
            )
    for role, data in (("users", users), ("test", test)):
        if data is not None and not isinstance(data, UserMobility):
            raise DataError(f"the user benchmark needs user mobility as {role}; got {type(data).__name__}")
    seed_list = _seeds(seeds)
    budget_rule = _budget_rule(budget)
    _check_count(jobs, "jobs")
    for name, value in (("train_users", train_users), ("test_users", test_users), ("locations", locations)):
        if value is not None:
            _check_count(value, name)
    if knowledge_graph is not None and locations is not None:
        raise ConfigError(
            "a knowledge graph names the original stations, and locations= maps them onto fewer: use one of "
            "the two"
        )
    say = echo if (echo is not None and progress) else (lambda _msg: None)
    # Every cell's config validated and resolved before anything is written (a misspelt option fails now).
    configs = {
        (row.label, seed): _run_config(row.model, seed, budget, row.overrides, row.preset)
        for row in rows
        for seed in seed_list
    }

    train, held_out, data_notes = prepare_users(
        users,
        test,
        test_fraction=test_fraction,
        split_seed=split_seed,
        train_users=train_users,
        test_users=test_users,
        locations=locations,
    )
    settings = {
        "level": LEVEL,
        "train": _users_digest(train),
        "held_out": _users_digest(held_out),
        "knowledge_graph": None if knowledge_graph is None else _graph_digest(knowledge_graph),
        "train_users": train.n_users,
        "held_out_users": held_out.n_users,
        "steps": train.n_steps,
        "stations": len(train.stations),
        "held_out_from": "a separate dataset" if test is not None else "a split of the data",
        "test_fraction": None if test is not None else test_fraction,
        "split_seed": split_seed,
        "budget": budget if budget == "preset" else int(budget),
        "data_notes": data_notes,
    }
    out = Path(out)
    claim_output_dir(out, BENCH)  # a new or empty directory, or a benchmark to resume: cellsynth.outputs
    (out / "results").mkdir(exist_ok=True)
    _check_settings(out / "bench.json", settings)

    noise = _noise_runs(train, held_out, seed_list)
    runs: list[dict[str, Any]] = []
    reused: list[tuple[str, int]] = []
    tasks: list[dict[str, Any]] = []
    # Seed by seed, so that a bench stopped part-way has every row's first seed before any row's second.
    for seed in seed_list:
        for row in rows:
            config = configs[(row.label, seed)]
            path = out / "results" / f"{row.slug}__seed{seed}.json"
            record = _load_cell(path, row, config)
            if record is not None:
                say(f"{row.label}, seed {seed}: done before, reusing {path}")
                runs.append(record)
                reused.append((row.label, seed))
                continue
            tasks.append(
                {
                    "row": row,
                    "seed": seed,
                    "config": config,
                    "run_dir": str(out / "runs" / row.slug / f"seed{seed}"),
                    "path": str(path),
                    "budget_rule": budget_rule,
                    "progress": progress and jobs == 1,
                }
            )
    computed = _run_cells(tasks, (train, held_out, knowledge_graph), jobs, say)
    runs += computed
    order = {label: i for i, label in enumerate(labels)}
    runs.sort(key=lambda r: (order[r["label"]], r["seed"]))

    named = [(f"{r['label']}, seed {r['seed']}", r) for r in runs]
    reused_cells = set(reused)
    warn_other_code([(n, r) for n, r in named if (r["label"], r["seed"]) in reused_cells], out)
    summary = summarise_users(noise + runs, [NOISE_TRAIN, NOISE_HALVES, *labels])
    table = render_user_table(summary, labels, settings, seed_list, budget_rule)
    table = f"{table.rstrip()}\n\n{code_note(named)}\n"
    write_text_atomic(out / "table.md", table)
    write_json(
        out / "results.json",
        {
            "cellsynth_version": cellsynth.__version__,
            "code": code_stamp(),
            "settings": settings,
            "budget_rule": budget_rule,
            "rows": [r.describe() for r in rows],
            "seeds": seed_list,
            "held_out_ids": list(held_out.user_ids),
            "summary": summary,
            "noise": noise,
            "runs": runs,
        },
    )
    if echo is not None:
        echo(table)
    return UserBenchmarkResult(
        runs, summary, table, budget_rule, out, reused, [(r["label"], r["seed"]) for r in computed]
    )


def _check_count(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a positive whole number, got {value!r}")


def _budget_rule(budget) -> str:
    if budget == "preset":
        return (
            "each row trains for the epochs of its config (its preset with the row's overrides); fit times are "
            "measured and reported"
        )
    if isinstance(budget, int | np.integer) and not isinstance(budget, bool) and budget >= 1:
        return (
            f"every model with an epochs option gets the same {int(budget)} epochs (passes over the training "
            "users); fit times are measured and reported"
        )
    raise ConfigError(f"budget must be 'preset' or a positive number of epochs, got {budget!r}")


def prepare_users(
    users: UserMobility,
    test: UserMobility | None = None,
    *,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    train_users: int | None = None,
    test_users: int | None = None,
    locations: int | None = None,
) -> tuple[UserMobility, UserMobility, list[str]]:
    """``(train, held_out, notes)`` as :func:`run_user_benchmark` scores them: the split of ``users`` (or
    ``users`` against the separate ``test`` set), the caps, the location mapping. What a script that scores
    a bench's saved model again calls to get the same users (``benchmarks/mstdiff_steps.py``)."""
    notes = []
    if test is None:
        train, held_out = split_users(users, test_fraction, split_seed)
    else:
        train, held_out = share_stations(users, test)
        if train.step != held_out.step or train.n_steps != held_out.n_steps:
            raise DataError(
                f"the held-out users have {held_out.n_steps} steps of {held_out.step}, the training users "
                f"{train.n_steps} of {train.step}; give both sets the same time axis",
                source=held_out.source,
            )
        shared = set(train.user_ids) & set(held_out.user_ids)
        if shared:
            raise DataError(
                f"{len(shared)} held-out user id(s) are also training users (e.g. {sorted(shared)[0]!r}); "
                "held-out users must be other users",
                source=held_out.source,
            )
    rng = np.random.default_rng(split_seed)

    def capped(data: UserMobility, cap: int | None, role: str) -> UserMobility:
        if cap is None or cap >= data.n_users:
            return data
        notes.append(f"{cap} of the {data.n_users} {role} users drawn (seed {split_seed})")
        return data.select_users(np.sort(rng.choice(data.n_users, cap, replace=False)))

    train, held_out = capped(train, train_users, "training"), capped(held_out, test_users, "held-out")
    if locations is not None:
        (train, held_out), report = keep_top_locations([train, held_out], locations)
        notes.append(str(report))
    return train, held_out, notes


def _users_digest(data: UserMobility) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(data.locations).tobytes())
    if data.traffic is not None:
        digest.update(np.ascontiguousarray(data.traffic).tobytes())
    digest.update("\0".join(map(str, data.stations.ids)).encode())
    digest.update("\0".join(data.user_ids).encode())
    digest.update(f"{data.start.isoformat()}|{data.step}".encode())
    return digest.hexdigest()


def _graph_digest(graph) -> str:
    digest = hashlib.sha256()
    for part in (graph.heads, graph.relations, graph.tails):
        digest.update("\0".join(map(str, np.asarray(part).tolist())).encode())
    return digest.hexdigest()


def _check_settings(path: Path, settings: dict) -> None:
    if not path.exists():
        write_json(path, settings)
        return
    theirs = json.loads(path.read_text())
    if theirs.get("level") != LEVEL:
        raise ConfigError(
            f"{path.parent} holds a station-level benchmark (`cellsynth bench`); give the user benchmark its "
            "own output directory"
        )
    if theirs != settings:
        differ = sorted(k for k in settings if theirs.get(k) != settings[k])
        raise ConfigError(
            f"{path.parent} holds a user benchmark with different settings ({', '.join(differ)}); its results "
            "would not be comparable: use a fresh output directory, or the same data, split and budget to resume"
        )


def _load_cell(path: Path, row: Row, config: dict) -> dict | None:
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    if record.get("config") != config or record.get("model") != row.model:
        raise ConfigError(
            f"{path} was computed with another config for row {row.label!r}; use a fresh output directory, "
            "give the row another label, or the same config to reuse it"
        )
    return record


# -- the noise level ------------------------------------------------------------------------------------------
def _noise_runs(train: UserMobility, held_out: UserMobility, seeds: list[int]) -> list[dict[str, Any]]:
    """Per seed, real users scored like generated ones (module docstring, item 4)."""
    from cellsynth.evaluate import evaluate_users

    runs = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        n = min(held_out.n_users, train.n_users - 2)  # two left for the memorisation check's reference
        if n >= 1:
            drawn = np.sort(rng.choice(train.n_users, n, replace=False))
            rest = np.setdiff1d(np.arange(train.n_users), drawn)
            evaluation = evaluate_users(held_out, train.select_users(drawn), train=train.select_users(rest))
            runs.append(_noise_record(NOISE_TRAIN, seed, evaluation, n, n))
        half = held_out.n_users // 2
        if half >= 2:
            order = rng.permutation(held_out.n_users)
            first, second = np.sort(order[:half]), np.sort(order[half : 2 * half])
            evaluation = evaluate_users(held_out.select_users(first), held_out.select_users(second))
            runs.append(_noise_record(NOISE_HALVES, seed, evaluation, half, half))
    return runs


def _noise_record(label: str, seed: int, evaluation, real_users: int, compared_users: int) -> dict[str, Any]:
    scores = evaluation.to_dict()
    return {
        "version": _RESULT_VERSION,
        "label": label,
        "kind": "noise",
        "seed": seed,
        "real_users": real_users,
        "compared_users": compared_users,
        "scores": {k: scores[k] for k in ("metrics", "memorisation", "notes")},
    }


# -- the cells ------------------------------------------------------------------------------------------------
_WORKER_DATA: tuple | None = None


def _init_worker(data: tuple) -> None:
    """A worker process: one torch thread (``jobs`` processes share the machine's cores), the data once."""
    global _WORKER_DATA
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    _WORKER_DATA = data


def _worker_cell(task: dict[str, Any]) -> dict[str, Any]:
    return _run_cell(task, *_WORKER_DATA)


def _run_cells(tasks, data: tuple, jobs: int, say) -> list[dict[str, Any]]:
    """Run ``tasks`` (here, or in ``jobs`` processes), writing each result as soon as it is complete. A cell
    that fails does not stop the others; the first failure is raised once they are done."""
    done: list[dict[str, Any]] = []
    total = len(tasks)
    if not tasks:
        return done

    def finish(i: int, task: dict[str, Any], record: dict[str, Any]) -> None:
        write_json(Path(task["path"]), record)
        done.append(record)
        say(
            f"[{i}/{total}] {task['row'].label}, seed {task['seed']}: fitted in {record['fit_seconds']:.1f} s, "
            f"sampled in {record['sample_seconds']:.1f} s"
        )

    if jobs == 1 or total == 1:
        for i, task in enumerate(tasks, start=1):
            say(f"[{i}/{total}] {task['row'].label}, seed {task['seed']}: fitting and scoring")
            finish(i, task, _run_cell(task, *data))
        return done
    say(f"running {total} cells in {min(jobs, total)} processes (one torch thread each)")
    failure: BaseException | None = None
    # spawn, not fork: a forked copy of a process that has started torch's thread pools can deadlock.
    with ProcessPoolExecutor(
        max_workers=min(jobs, total),
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(data,),
    ) as pool:
        futures = {pool.submit(_worker_cell, task): task for task in tasks}
        for i, future in enumerate(as_completed(futures), start=1):
            task = futures[future]
            try:
                finish(i, task, future.result())
            except Exception as err:  # the others go on; this cell reruns next time
                say(f"[{i}/{total}] {task['row'].label}, seed {task['seed']}: failed ({err})")
                failure = failure or err
    if failure is not None:
        raise failure
    return done


def _run_cell(task: dict[str, Any], train: UserMobility, held_out: UserMobility, knowledge_graph) -> dict:
    import torch

    from cellsynth.evaluate import evaluate_users
    from cellsynth.generators import get, load

    row, seed, config = task["row"], task["seed"], task["config"]
    run_dir = Path(task["run_dir"])
    fit_record = run_dir / "fit.json"
    gen = get(row.model, config)
    if (run_dir / "generator.json").exists() and fit_record.exists():
        # Trained before the benchmark stopped (e.g. killed while scoring): reuse the saved model.
        loaded = load(run_dir)
        if loaded.config != gen.config:
            raise ConfigError(
                f"{run_dir} holds a {row.model} model with another config; use a fresh output directory"
            )
        gen, fit_info = loaded, json.loads(fit_record.read_text())
    else:
        side = {"knowledge_graph": knowledge_graph} if knowledge_graph is not None else {}
        side = {k: v for k, v in side.items() if k in type(gen).side_inputs}
        resumed = (run_dir / "checkpoints").exists()
        start = time.perf_counter()
        gen.fit(train, progress=task["progress"], checkpoint_dir=run_dir, **side)
        fit_info = {"fit_seconds": time.perf_counter() - start, "resumed": resumed}
        gen.save(run_dir)
        write_json(fit_record, fit_info)

    start = time.perf_counter()
    generated = gen.generate(held_out.n_users, seed=seed)
    sample_seconds = time.perf_counter() - start
    evaluation = evaluate_users(held_out, generated, train=train).to_dict()
    return {
        "version": _RESULT_VERSION,
        "code": code_stamp(),
        "label": row.label,
        "kind": "model",
        "model": row.model,
        "preset": row.preset,
        "overrides": row.overrides,
        "seed": seed,
        "config": config,
        "budget_rule": task["budget_rule"],
        "epochs": config.get("epochs"),
        "fit_seconds": fit_info["fit_seconds"],
        "fit_resumed": bool(fit_info.get("resumed", False)),
        "sample_seconds": sample_seconds,
        "generated_users": generated.n_users,
        "users_per_second": generated.n_users / sample_seconds if sample_seconds > 0 else None,
        "machine": {
            "platform": platform.platform(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "torch_threads": torch.get_num_threads(),
        },
        "scores": {k: evaluation[k] for k in ("metrics", "memorisation", "notes")},
    }
