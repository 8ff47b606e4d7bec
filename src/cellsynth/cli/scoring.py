"""``cellsynth evaluate`` and ``bench``: score generated data against real data, and run the benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cellsynth.cli._common import Progress, app, bold, check_out, console, datasets_in, say, training_data
from cellsynth.cli.errors import yaml_mapping
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
            help="Training data: normalisation scale and the memorisation check (or a city directory)."
        ),
    ] = None,
    channels: Annotated[str | None, typer.Option(help="Comma-separated channels (default: all).")] = None,
    compat: Annotated[
        bool, typer.Option("--compat", help="Add the published code's metric variants, labelled as such.")
    ] = False,
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
    data: Annotated[Path, typer.Option(help="Station traffic dataset (or a synthetic city directory).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bench directory: results, runs, table.md.")],
    models: Annotated[
        str, typer.Option(help="Comma-separated generators.")
    ] = "stouter,tcn-gan,vae,diffwave,seasonal-mean",
    seeds: Annotated[int, typer.Option(help="Seeds per model (0..n-1); tables show mean ± std.")] = 3,
    epochs: Annotated[
        int | None, typer.Option(help="Budget: this many epochs for every model (default: each preset's).")
    ] = None,
    samples: Annotated[int, typer.Option(help="Weeks generated per station.")] = 10,
    test_fraction: Annotated[float, typer.Option(help="Share of stations held out.")] = 0.2,
    train_stations: Annotated[
        int | None,
        typer.Option(
            help="Score the training split on a seeded subset of this many stations (default: all)."
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
    progress: Progress = True,
) -> None:
    """Train and score several generators on one split, every channel, held-out and training stations;
    prints and writes a table laid out like STOUTER's Table 1. Rerun the same command to resume."""
    from cellsynth.benchmark import run_benchmark

    check_out(out, "bench", data, configs_dir)
    names = [m.strip() for m in models.split(",") if m.strip()]
    overrides = {}
    for name in names:
        path = configs_dir / f"{name}.yaml" if configs_dir is not None else None
        if path is not None and path.exists():
            overrides[name] = yaml_mapping(path)
    result = run_benchmark(
        training_data(data, "stations"),
        names,
        out=out,
        seeds=seeds,
        budget=epochs if epochs is not None else "preset",
        test_fraction=test_fraction,
        samples=samples,
        train_stations=train_stations,
        configs=overrides,
        preset=None if preset == "none" else preset,
        progress=progress,
        echo=say,
    )
    if result.reused:
        say(f"reused {len(result.reused)} finished (model, seed) result(s) from {out}")
    console.print(f"table: {bold(result.table_path)}; results: {bold(result.results_path)}")
