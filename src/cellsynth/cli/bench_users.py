"""``cellsynth bench-users``: the user-level benchmark (:mod:`cellsynth.benchmark.users`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellsynth.cli._common import (
    FirstSeed,
    Progress,
    app,
    bold,
    check_out,
    console,
    say,
    seed_range,
    training_data,
)
from cellsynth.cli.errors import seed_option
from cellsynth.errors import ConfigError

__all__ = []


@app.command("bench-users")
def bench_users(
    data: Annotated[
        Path,
        typer.Option(
            help="Users dataset (or a synthetic city directory): all users, or the training users with --test."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bench directory: results, runs, table.md.")],
    models: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated rows, each 'MODEL', 'MODEL (PRESET)' or 'MODEL (PRESET) KEY=VALUE ...', e.g. "
            "'mstdiff (paper),mstdiff (recommended) trajectory=false,markov' (default: mstdiff,markov)."
        ),
    ] = None,
    suite: Annotated[
        Path | None,
        typer.Option(
            help="YAML suite file of rows instead of --models (e.g. benchmarks/suites/users-city.yaml)."
        ),
    ] = None,
    test: Annotated[
        Path | None,
        typer.Option(
            help="Held-out users from another dataset (e.g. GeoLife test.data); default: split --data."
        ),
    ] = None,
    seeds: Annotated[
        int, typer.Option(help="Seeds per row (--first-seed onwards); tables show mean ± std.")
    ] = 3,
    first_seed: FirstSeed = 0,
    epochs: Annotated[
        int | None,
        typer.Option(help="Budget: this many epochs for every model (default: each row's config)."),
    ] = None,
    preset: Annotated[
        str,
        typer.Option(
            help="Preset of rows that name none: 'recommended', 'paper' or 'none' (models without presets take "
            "their defaults)."
        ),
    ] = "recommended",
    test_fraction: Annotated[float, typer.Option(help="Share of users held out (without --test).")] = 0.2,
    split_seed: Annotated[
        int, typer.Option(help="Seed of the split and of the --*-users draws.", callback=seed_option)
    ] = 0,
    train_users: Annotated[
        int | None, typer.Option(help="Train on a seeded draw of at most this many training users.")
    ] = None,
    test_users: Annotated[
        int | None, typer.Option(help="Score on a seeded draw of at most this many held-out users.")
    ] = None,
    locations: Annotated[
        int | None,
        typer.Option(
            help="Keep the training users' N most visited locations, every other one mapped to the nearest kept "
            "one (GeoLife has ~18,000; MSTDiff's rate matrix is N x N)."
        ),
    ] = None,
    knowledge_graph: Annotated[
        Path | None,
        typer.Option(
            help="Urban knowledge graph for generators that use one (default: DATA/knowledge_graph.parquet of a "
            "synthetic city)."
        ),
    ] = None,
    jobs: Annotated[int, typer.Option(help="Cells run in this many processes, one torch thread each.")] = 1,
    progress: Progress = True,
) -> None:
    """Train and score user generators on one set of held-out users: MSTDiff's Table I (traffic) and Table
    II (trajectories) with the data's own noise level, memorisation, fit and sampling time. Rerun the same
    command to resume; add rows to a finished bench and only they run."""
    from cellsynth.benchmark.users import run_user_benchmark
    from cellsynth.benchmark.users_suite import parse_rows, read_suite

    check_out(out, "bench", data, test, suite, knowledge_graph)
    default_preset = None if preset == "none" else preset
    if suite is not None and models is not None:
        raise ConfigError("give the rows either with --models or with --suite, not both")
    if suite is not None:
        rows = read_suite(suite, default_preset=default_preset)
    else:
        lines = [m.strip() for m in (models or "mstdiff,markov").split(",") if m.strip()]
        rows = parse_rows(lines, default_preset=default_preset)
    graph = None
    city_graph = data / "knowledge_graph.parquet"
    if knowledge_graph is None and city_graph.exists() and locations is None:
        knowledge_graph = city_graph
    if knowledge_graph is not None:
        from cellsynth.data.knowledge import read_knowledge_graph

        graph = read_knowledge_graph(knowledge_graph)
        say(f"using the knowledge graph {knowledge_graph}")
    result = run_user_benchmark(
        training_data(data, "users"),
        rows,
        out=out,
        test=None if test is None else training_data(test, "users"),
        seeds=seed_range(seeds, first_seed),
        budget=epochs if epochs is not None else "preset",
        test_fraction=test_fraction,
        split_seed=split_seed,
        train_users=train_users,
        test_users=test_users,
        locations=locations,
        knowledge_graph=graph,
        jobs=jobs,
        progress=progress,
        echo=_print_plain,
    )
    if result.reused:
        say(f"reused {len(result.reused)} finished (row, seed) result(s) from {out}")
    console.print(f"table: {bold(result.table_path)}; results: {bold(result.results_path)}")


def _print_plain(message: str) -> None:
    """Progress lines and the table as they are: unwrapped (the table stays markdown), brackets shown."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)
