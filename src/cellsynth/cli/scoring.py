"""``cellsynth evaluate`` and ``bench``: score generated data against real data, and run the benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cellsynth.cli._common import (
    FirstSeed,
    Progress,
    app,
    bold,
    check_out,
    console,
    datasets_in,
    say,
    seed_range,
)
from cellsynth.errors import ConfigError, DataError

__all__ = []


@app.command("evaluate")
def evaluate_command(
    real: Annotated[
        Path,
        typer.Option(
            help="Real dataset (usually the held-out stations or users), or a synthetic city directory."
        ),
    ],
    synthetic: Annotated[Path, typer.Option(help="Generated dataset to score (or a city directory).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory for metrics.json and report.html.")],
    train: Annotated[
        Path | None,
        typer.Option(
            help="Training data: normalisation scale, the memorisation check and the forecast utility "
            "(or a city directory)."
        ),
    ] = None,
    channels: Annotated[str | None, typer.Option(help="Comma-separated channels (default: all).")] = None,
    compat: Annotated[
        bool, typer.Option("--compat", help="Add the published code's metric variants, labelled as such.")
    ] = False,
    model: Annotated[
        Path | None,
        typer.Option(
            help="Run directory of the model that generated --synthetic: the report states its privacy."
        ),
    ] = None,
) -> None:
    """Score synthetic data against real data: metrics.json and a self-contained report.html. A city
    directory (traffic/ and users/) gives the dataset of the kind the other options' datasets have."""
    from cellsynth.evaluate import evaluate
    from cellsynth.report import write_report

    check_out(out, "evaluation", real, synthetic, train)
    sides = _evaluation_data({"--real": real, "--synthetic": synthetic, "--train": train})
    evaluation = evaluate(
        sides["--real"],
        sides["--synthetic"],
        train=sides["--train"],
        channels=[c.strip() for c in channels.split(",")] if channels else None,
        compat=compat,
    )
    if model is not None:
        import dataclasses

        from cellsynth.generators.privacy import saved_guarantee

        evaluation = dataclasses.replace(evaluation, privacy=saved_guarantee(model))
    report = write_report(evaluation, out)
    if evaluation.memorisation is not None:
        from cellsynth.evaluate import memorisation_verdict

        say(memorisation_verdict(evaluation.memorisation))
    console.print(f"metrics: {bold(out / 'metrics.json')}\nreport:  {bold(report)}")


def _evaluation_data(paths: dict[str, Path | None]) -> dict[str, Any]:
    """The dataset behind each option (``None`` stays ``None``). A city directory holds station traffic and
    users: it gives the dataset of the kind that the options naming a single dataset have."""
    found = {flag: datasets_in(path) if path is not None else None for flag, path in paths.items()}
    single = [type(next(iter(d.values()))) for d in found.values() if d is not None and len(d) == 1]
    if not single:
        given = ", ".join(flag for flag, d in found.items() if d is not None)
        raise ConfigError(
            f"{given}: each is a city directory (station traffic and users), so the kind to score is "
            f"ambiguous; name one dataset, e.g. --real {paths['--real']}/traffic or --real {paths['--real']}/users"
        )
    kind = single[0]  # a mismatch among the single datasets is evaluate's to report, naming both kinds
    chosen: dict[str, Any] = {}
    for flag, datasets in found.items():
        if datasets is None or len(datasets) == 1:
            chosen[flag] = None if datasets is None else next(iter(datasets.values()))
            continue
        matching = [d for d in datasets.values() if isinstance(d, kind)]
        if not matching:
            raise DataError(
                f"{flag}: holds no {kind.__name__} to compare with the other datasets; give a dataset "
                f"directory of {kind.__name__}",
                source=str(paths[flag]),
            )
        chosen[flag] = matching[0]
    return chosen


@app.command("bench")
def bench(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Bench directory: results, runs, table.md, leaderboard.md.")
    ],
    data: Annotated[
        list[Path] | None,
        typer.Option(
            help="Station traffic dataset (or a synthetic city directory); repeat for several datasets, each "
            "named after its directory."
        ),
    ] = None,
    suite: Annotated[
        Path | None,
        typer.Option(
            help="Suite file (YAML: datasets, models, seeds, protocol, budget; see benchmarks/suites/) instead "
            "of --data and the options below."
        ),
    ] = None,
    models: Annotated[
        str, typer.Option(help="Comma-separated generators.")
    ] = "stouter,tcn-gan,vae,diffwave,seasonal-mean,nearest-station",
    seeds: Annotated[
        int, typer.Option(help="Seeds per model (--first-seed onwards); tables show mean ± std.")
    ] = 3,
    first_seed: FirstSeed = 0,
    epochs: Annotated[
        int | None, typer.Option(help="Budget: this many epochs for every model (default: each preset's).")
    ] = None,
    min_steps: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="And at least this many optimiser steps for every trained model: more epochs where the "
            "budget's make fewer (a small training set).",
        ),
    ] = None,
    samples: Annotated[int, typer.Option(help="Weeks generated per station.")] = 10,
    protocol: Annotated[
        str,
        typer.Option(
            help="'stations' (hold out stations: new sites), 'time' (hold out every station's last weeks: "
            "future weeks of known stations) or 'both'."
        ),
    ] = "stations",
    test_fraction: Annotated[
        float, typer.Option(help="Share of stations (protocol stations) or of whole weeks (time) held out.")
    ] = 0.2,
    train_stations: Annotated[
        int | None,
        typer.Option(
            help="Also score a seeded subset of this many training stations (default: all; 0: none)."
        ),
    ] = None,
    preset: Annotated[
        str,
        typer.Option(
            help="Configuration every model starts from, shipped with it: 'recommended' (best measured), "
            "'paper' (exactly the published method) or 'none' (the config classes' defaults); models without "
            "presets (the floors) take their defaults."
        ),
    ] = "recommended",
    configs_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory of <model>.yaml files (e.g. configs/beijing), each merged on top of that model's "
            "preset; models without one there take the preset as it is."
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option(min=1, help="(model, seed) cells run at a time, each in its own process.")
    ] = 1,
    progress: Progress = True,
) -> None:
    """Train and score several generators on one or more datasets, by station and / or by time, every
    channel; writes a table per dataset and protocol (laid out like STOUTER's Table 1) and leaderboard.md
    across them. Rerun the same command to resume."""
    from cellsynth.benchmark import make_suite, read_suite, run_suite

    check_out(out, "bench", suite, configs_dir, *(data or []))
    if suite is not None:
        given = [
            f"--{name.replace('_', '-')}"
            for name in _SUITE_OPTIONS
            # by name: typer may carry a click of its own, whose enum is not click.core's
            if getattr(ctx.get_parameter_source(name), "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
        ]
        if given:
            raise ConfigError(
                f"{', '.join(given)}: the suite file {suite} sets these; give either --suite or the options"
            )
        chosen = read_suite(suite)
    else:
        chosen = make_suite(
            _suite_of_options(
                data,
                models,
                seed_range(seeds, first_seed),
                epochs,
                min_steps,
                samples,
                protocol,
                test_fraction,
                train_stations,
            )
            | {"preset": None if preset == "none" else preset}
            | ({"configs_dir": str(configs_dir.absolute())} if configs_dir is not None else {}),
            where="bench",
        )
    result = run_suite(chosen, out=out, jobs=jobs, progress=progress, echo=say)
    if result.reused:
        say(f"reused {len(result.reused)} finished (model, seed) result(s) from {out}")
    for (dataset, protocol), benchmark in result.benchmarks.items():
        console.print(f"table ({dataset}, {protocol}): {bold(benchmark.table_path)}")
    console.print(f"leaderboard: {bold(result.leaderboard_path)}")


#: The options of ``bench`` that a suite file sets.
_SUITE_OPTIONS = (
    "data",
    "models",
    "seeds",
    "first_seed",
    "epochs",
    "min_steps",
    "samples",
    "protocol",
    "test_fraction",
    "train_stations",
    "preset",
    "configs_dir",
)


def _suite_of_options(
    data, models, seeds, epochs, min_steps, samples, protocol, test_fraction, train_stations
) -> dict:
    """The suite that ``bench``'s options describe (each --data a dataset named after its directory)."""
    if not data:
        raise ConfigError("bench needs --data (one or more datasets) or --suite (a suite file)")
    datasets: dict[str, dict] = {}
    for path in data:
        name = path.absolute().name
        if name in datasets:
            raise ConfigError(
                f"--data: two datasets are named {name!r} (after their directories); rename one"
            )
        datasets[name] = {"path": str(path.absolute())}
    return {
        "datasets": datasets,
        "models": [m.strip() for m in models.split(",") if m.strip()],
        "seeds": seeds,
        "budget": epochs if epochs is not None else "preset",
        "min_steps": min_steps,
        "samples": samples,
        "protocol": protocol,
        "test_fraction": test_fraction,
        "train_stations": train_stations,
    }
