"""The main job on the built-in synthetic city, end to end (what ``make demo`` runs):

1. build the synthetic city (stations, hourly traffic, users, knowledge graph);
2. split the stations 80/20 (seeded) — the held-out ones play the planned sites — and fit the station
   generator (STOUTER by default, small enough for minutes on 2 CPU cores);
3. generate several plausible weeks for every held-out station;
4. evaluate them against the real held-out weeks (with the training stations for the memorisation check)
   and write a self-contained report.html;
5. split the city's users 80/20 (seeded); on the default city, generate as many users as were held out with
   the MSTDiff shipped in the package (:data:`PRETRAINED_USER_MODEL`: the recommended preset, trained on
   exactly these training users by ``benchmarks/pretrain_demo.py``, about an hour on one core) and evaluate
   them: MSTDiff at its best within the demo's minutes;
6. fit the user generator from scratch (MSTDiff by default, with the city's knowledge graph; a small
   configuration, 150 optimisation steps: it shows the training pipeline, not the model's quality);
7. generate as many users as were held out, evaluate them against the held-out users (with the training
   users for the memorisation check), write their report, and one page holding every evaluation
   (``out/report.html``).

``user_model=None`` skips steps 5 and 6 (the combined page then holds the stations only). Both models
checkpoint into their run directories, so a rerun into the same ``out`` resumes instead of retraining.

Kept in the library, not the CLI, so that a notebook can run exactly what the command line runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellsynth.data.io import write
from cellsynth.data.split import split_stations, split_users
from cellsynth.data.summary import traffic_statistics
from cellsynth.data.synthetic import CityConfig, synthesize_city
from cellsynth.errors import ConfigError
from cellsynth.evaluate import evaluate, evaluate_users, memorisation_verdict
from cellsynth.generators.registry import get, get_class
from cellsynth.outputs import DEMO, claim_output_dir
from cellsynth.report import write_combined_report, write_report

__all__ = [
    "DEMO_STATION_CONFIGS",
    "DEMO_USER_CONFIGS",
    "PRETRAINED_USER_MODEL",
    "DemoResult",
    "pretrained_user_model",
    "run_demo",
]

#: MSTDiff's recommended preset trained on the 320 training users of the seeded default city (the demo's
#: split), shipped inside the package: trained and scored by benchmarks/pretrain_demo.py.
PRETRAINED_USER_MODEL = Path(__file__).resolve().parent / "pretrained" / "mstdiff-city"

# Configurations that learn the city's weekly shape in a few minutes on 2 CPU cores: STOUTER with 150
# epochs at lr 1e-3 beat seasonal-mean on both JSDs of the default city (see
# docs/notebook/2026-11-21-stouter-synthetic-city.md).
DEMO_STATION_CONFIGS: dict[str, dict[str, Any]] = {
    "stouter": {"epochs": 150, "lr": 1e-3},
    "seasonal-mean": {},
}

# A small MSTDiff for the default city's 320 training users (one week at 30-minute steps), sized to train in
# under 2 minutes on 2 CPU cores: a narrower, shallower denoiser, short VQ-VAE and TuckER pretraining, and 15
# epochs of batches of 32 (150 optimisation steps), then a traffic calibration on 64 generated users. Measured
# in `make demo` on a quiet 2-core machine: fit 103 s including the calibration (72 s on 2026-11-22, calibrating
# on DDIM-20 draws). Held-out scores of that run:
# traffic value JSD 0.000, log-value JSD 0.002 (calibrated; the raw model makes far too few exact zeros);
# trajectory JSDs distance 0.27, distinct_loc 1.00. With the calibration on DDIM-20 draws, as the held-out
# users are drawn (2026-11-22, beside a benchmark, so not timed): log-value JSD 0.001, the rest the same. The
# generated users visit about 110 distinct stations in the week, the real ones 11.5: 150 steps are far too few
# for the trajectory branch (see cellsynth.generators.mstdiff, "Known limits"), so the demo shows the
# pipeline, not MSTDiff's quality.
DEMO_USER_CONFIGS: dict[str, dict[str, Any]] = {
    "mstdiff": {
        "d_model": 32,
        "heads": 2,  # 16 dimensions a head: faster on CPU than 8 (measured)
        "layers_per_scale": 1,
        "full_res_layers": 1,
        "ff_mult": 2,
        "vq_epochs": 10,
        "tucker_epochs": 20,
        "epochs": 15,
        "batch_size": 32,
        "lr": 1e-3,
        "calibration": {"users": 64},
        # a short DDIM chain, for the calibration and the held-out users alike (about 0.9 s of CPU per step
        # for the 80 held-out users, measured as above)
        "sampling": {"sampler": "ddim", "steps": 20},
    },
    "markov": {},
}


@dataclass
class DemoResult:
    """Where the demo wrote its outputs, and what it measured on the way."""

    out: Path
    city: Path
    statistics: dict
    outputs: dict[str, Path] = field(default_factory=dict)
    headline: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        stats = self.statistics
        lines = [
            f"demo finished in {self.seconds:.0f} s; outputs in {self.out}",
            f"  synthetic city: {self.city}",
            f"    internet: daily peak/trough {stats['peak_trough_ratio']:.1f}x, weekday/weekend "
            f"{stats['weekday_weekend_ratio']:.2f}, top 10 % of stations carry {stats['top10_share']:.0%} of load, "
            f"lag-24 autocorrelation {stats['acf_lag24']:.2f}",
            *(f"  {line}" for line in self.headline if line),
        ]
        lines += [f"  {name}: {path}" for name, path in self.outputs.items()]
        return "\n".join(lines)


def pretrained_user_model():
    """The MSTDiff shipped for the demo (:data:`PRETRAINED_USER_MODEL`), loaded like any saved model."""
    from cellsynth.generators import load

    if not (PRETRAINED_USER_MODEL / "generator.json").is_file():
        raise ConfigError(
            f"the demo's pretrained MSTDiff is not in this installation ({PRETRAINED_USER_MODEL}); train it "
            "with `python benchmarks/pretrain_demo.py`, or run the demo with --user-model markov"
        )
    return load(PRETRAINED_USER_MODEL)


def _check_kind(name: str, kind: str, option: str) -> None:
    """Fail before any training when ``name`` is not a generator of ``kind`` ("stations" or "users")."""
    if get_class(name).kind != kind:
        other = "user" if kind == "stations" else "station"
        raise ConfigError(
            f"{option}={name!r} is a {other} generator; the demo needs a "
            f"{'station' if kind == 'stations' else 'user'} generator here"
        )


def _resuming(model_dir: Path) -> str:
    return f" (resuming from the checkpoints in {model_dir})" if (model_dir / "checkpoints").is_dir() else ""


def _scores(entries: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    return [
        f"{name} {entries[name]['value']:.3f}"
        for name in names
        if entries.get(name, {}).get("value") is not None
    ]


def _user_evaluation(label, generator, train_users, held_out_users, where: Path, seed: int):
    """Generate as many users as were held out, score them, write ``where/generated`` and ``where/report``:
    ``(evaluation, headline lines, paths)``."""
    generated = generator.generate(held_out_users.n_users, seed=seed)
    paths = {"generated": write(generated, where / "generated")}
    evaluation = evaluate_users(held_out_users, generated, train=train_users)
    paths["report"] = write_report(evaluation, where / "report")
    traffic_scores = _scores(evaluation.metrics.get("traffic", {}), ("value_jsd", "log_value_jsd"))
    trajectory_scores = _scores(
        evaluation.metrics.get("trajectory", {}), ("distance", "distinct_loc", "duration")
    )
    parts = [f"traffic {s}" for s in traffic_scores]
    if trajectory_scores:
        parts.append("trajectory JSDs: " + ", ".join(trajectory_scores))
    lines = [f"{label}; held-out users: {'; '.join(parts)}"]
    if evaluation.memorisation:
        lines.append(f"  users: {memorisation_verdict(evaluation.memorisation)}")
    return evaluation, lines, paths


def run_demo(
    out: str | Path = "demo-output",
    *,
    seed: int = 0,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    city_config: CityConfig | None = None,
    station_model: str = "stouter",
    station_config: dict[str, Any] | None = None,
    samples: int = 4,
    user_model: str | None = "mstdiff",
    user_config: dict[str, Any] | None = None,
    pretrained: bool | None = None,
) -> DemoResult:
    """Run the pipeline into ``out``: ``city/``, ``stations/{model,generated,report}``,
    ``users/{model,generated,report}`` and ``report.html`` (both evaluations on one page). A rerun resumes
    training from the checkpoints in ``stations/model`` and ``users/model``.

    ``station_config`` and ``user_config`` override :data:`DEMO_STATION_CONFIGS` and
    :data:`DEMO_USER_CONFIGS` (the user generator samples with its config's defaults). ``user_model=None``
    skips the user part. ``pretrained`` (None: when it applies) also scores the MSTDiff shipped with
    cellsynth (:data:`PRETRAINED_USER_MODEL`), which was trained on exactly this split of the default city;
    it applies to ``user_model="mstdiff"`` on the default city with seed 0, and the demo says which users come
    from which model.
    """
    started = time.perf_counter()
    out = Path(out)
    _check_kind(station_model, "stations", "station_model")
    if user_model is not None:
        _check_kind(user_model, "users", "user_model")
    claim_output_dir(out, DEMO)  # a new or empty directory, or a demo to resume: cellsynth.outputs
    city_config = city_config or CityConfig(seed=seed)
    applies = user_model == "mstdiff" and seed == 0 and city_config == CityConfig(seed=0)
    if pretrained and not applies:
        raise ConfigError(
            "the pretrained MSTDiff was trained on the default city's users (seed 0): run the demo with "
            "user_model='mstdiff', seed 0 and the default city, or without pretrained=True"
        )
    use_pretrained = applies if pretrained is None else bool(pretrained)
    if use_pretrained and pretrained is None and not (PRETRAINED_USER_MODEL / "generator.json").is_file():
        echo(f"(the pretrained MSTDiff is not in this installation, {PRETRAINED_USER_MODEL}: fitting only)")
        use_pretrained = False
    total = 4 + (2 if user_model is not None else 0) + (1 if use_pretrained else 0)
    echo(
        f"[1/{total}] building the synthetic city ({city_config.n_stations} stations, "
        f"{city_config.n_users} users)"
    )
    city = synthesize_city(city_config)
    city_dir = city.write(out / "city")
    statistics = traffic_statistics(city.traffic, "internet")
    result = DemoResult(out=out, city=city_dir, statistics=statistics)

    # -- stations ---------------------------------------------------------------------------------------
    train, held_out = split_stations(city.traffic, 0.2, seed=seed)
    config = {**DEMO_STATION_CONFIGS.get(station_model, {}), **(station_config or {}), "seed": seed}
    model_dir = out / "stations" / "model"
    echo(
        f"[2/{total}] fitting {station_model} on {train.n_stations} stations x {train.n_steps // 168} weeks "
        f"(held out: {held_out.n_stations} stations){_resuming(model_dir)}"
    )
    fit_started = time.perf_counter()
    generator = get(station_model, config).fit(train, progress=progress, checkpoint_dir=model_dir)
    generator.save(model_dir)
    fit_seconds = time.perf_counter() - fit_started

    echo(
        f"[3/{total}] generating {samples} plausible weeks for each of the {held_out.n_stations} held-out "
        "stations"
    )
    synthetic = generator.generate(held_out.stations, samples=samples, seed=seed)
    generated_dir = write(synthetic, out / "stations" / "generated")

    echo(f"[4/{total}] evaluating against the real held-out weeks and writing the report")
    evaluation = evaluate(held_out, synthetic, train=train)
    station_report = write_report(evaluation, out / "stations" / "report")
    sections = [("Station traffic: planned sites", evaluation)]

    scores = ", ".join(_scores(evaluation.metrics.get("internet", {}), ("value_jsd", "diff_jsd", "mae")))
    result.headline.append(f"{station_model}: trained in {fit_seconds:.0f} s; held-out internet: {scores}")
    result.headline += [f"  {note}" for note in generator.fit_notes()]
    if evaluation.memorisation:
        result.headline.append(f"  stations: {memorisation_verdict(evaluation.memorisation)}")
    outputs = {
        "station model": model_dir,
        "generated traffic": generated_dir,
        "station report": station_report,
    }

    # -- users ------------------------------------------------------------------------------------------
    if user_model is not None:
        users = city.users
        train_users, held_out_users = split_users(users, 0.2, seed=seed)
        n_users = held_out_users.n_users
        step = 5
        if use_pretrained:
            echo(
                f"[{step}/{total}] generating {n_users} users with the pretrained MSTDiff (recommended preset, "
                f"shipped with cellsynth: trained on these {train_users.n_users} training users by "
                "benchmarks/pretrain_demo.py), evaluating them against the held-out users"
            )
            step += 1
            label = "mstdiff, pretrained (recommended preset)"
            section, lines, paths = _user_evaluation(
                label,
                pretrained_user_model(),
                train_users,
                held_out_users,
                out / "users" / "pretrained",
                seed,
            )
            sections.append(("Users: MSTDiff pretrained, recommended preset", section))
            result.headline += lines
            outputs |= {f"users ({label}): {k}": v for k, v in paths.items()}
        config = {**DEMO_USER_CONFIGS.get(user_model, {}), **(user_config or {}), "seed": seed}
        user_dir = out / "users" / "model"
        step_minutes = users.step.total_seconds() / 60
        short = (
            " a short fit from scratch:" if user_model in DEMO_USER_CONFIGS and user_config is None else ""
        )
        echo(
            f"[{step}/{total}]{short} fitting {user_model} on {train_users.n_users} users x {users.n_steps} steps "
            f"of {step_minutes:.0f} min (held out: {n_users} users){_resuming(user_dir)}"
        )
        user_generator = get(user_model, config)
        extra = {}
        if "knowledge_graph" in type(user_generator).side_inputs:
            extra["knowledge_graph"] = city.knowledge_graph
        fit_started = time.perf_counter()
        user_generator.fit(train_users, progress=progress, checkpoint_dir=user_dir, **extra)
        user_generator.save(user_dir)
        user_fit_seconds = time.perf_counter() - fit_started

        echo(
            f"[{step + 1}/{total}] generating {n_users} users, evaluating them against the held-out users and "
            "writing the reports"
        )
        label = f"{user_model}: trained in {user_fit_seconds:.0f} s" + (
            " (a short fit: the training pipeline, not the model's quality)" if short else ""
        )
        section, lines, paths = _user_evaluation(
            label, user_generator, train_users, held_out_users, out / "users", seed
        )
        sections.append(
            (
                f"Users: {user_model}, a short fit from scratch"
                if short
                else "Users: trajectories and traffic",
                section,
            )
        )
        result.headline += lines
        outputs |= {
            "user model": user_dir,
            "generated users": paths["generated"],
            "user report": paths["report"],
        }

    combined = write_combined_report(
        sections, out / "report.html", title="cellsynth demo: generated vs real data of the synthetic city"
    )
    result.outputs = {"report (all evaluations)": combined, **outputs}
    result.seconds = time.perf_counter() - started
    return result
