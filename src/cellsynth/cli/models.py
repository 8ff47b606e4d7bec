"""``cellsynth models``, ``fit`` and ``generate``: list the generators, train one, generate from a trained
one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cellsynth.cli._common import (
    Out,
    Progress,
    app,
    bold,
    check_out,
    console,
    say,
    training_data,
    training_stations,
)
from cellsynth.cli.errors import seed_option, yaml_mapping, yaml_value
from cellsynth.errors import ConfigError, DataError
from cellsynth.generation.chunks import DEFAULT_BATCH

__all__ = []


@app.command("models")
def models() -> None:
    """List the generators that `fit` accepts, with what they generate."""
    from cellsynth.generators import available, available_presets, get_class

    table = Table("name", "generates", "presets", "description")
    for name in available():
        cls = get_class(name)
        # the docstring's first paragraph: a summary wrapped over several lines is shown whole
        doc = " ".join(line.strip() for line in (cls.__doc__ or "").strip().split("\n\n")[0].splitlines())
        kind = "station traffic" if cls.kind == "stations" else "user mobility"
        table.add_row(name, kind, ", ".join(available_presets(name)) or "-", escape(doc))
    console.print(table)


def _read_config(config: Path | None, overrides: list[str]) -> dict:
    values: dict[str, Any] = {}
    if config is not None:
        if not config.exists():
            raise ConfigError(f"config file {config} not found")
        values.update(yaml_mapping(config))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value (e.g. --set epochs=5), got {item!r}")
        value = yaml_value(raw, f"--set {item!r}", "quote the value or fix its syntax")
        *sections, field = key.strip().split(".")  # sampling.temperature=0.7: a field of a section
        target = values
        for section in sections:
            if not isinstance(target.get(section, {}), dict):
                raise ConfigError(f"--set {item!r}: {section} is a value, not a section of the config")
            target = target.setdefault(section, {})
        target[field] = value
    return values


@app.command("fit")
def fit(
    model: Annotated[str, typer.Argument(help="Generator name (see `cellsynth models`).")],
    data: Annotated[Path, typer.Option(help="Training dataset directory (or a synthetic city directory).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory: checkpoints and the saved model.")],
    preset: Annotated[
        str,
        typer.Option(
            help="Starting configuration shipped with the model: 'recommended' (best measured), 'paper' (exactly "
            "the published method) or 'none' (the config class's defaults); --config and --set go on top."
        ),
    ] = "recommended",
    config: Annotated[Path | None, typer.Option(help="YAML file of config options (see configs/).")] = None,
    set_: Annotated[
        list[str],
        typer.Option(
            "--set",
            help="Override one option: key=value, section.key=value for a field of a section "
            "(e.g. sampling.temperature=0.7; repeatable).",
        ),
    ] = [],  # noqa: B006
    seed: Annotated[
        int | None, typer.Option(help="Seed (overrides the config's).", callback=seed_option)
    ] = None,
    knowledge_graph: Annotated[
        Path | None,
        typer.Option(
            help="Urban knowledge graph (Parquet/CSV triplets) for generators that use one (mstdiff); "
            "default: DATA/knowledge_graph.parquet when the data is a synthetic city."
        ),
    ] = None,
    devices: Annotated[
        int | None,
        typer.Option(
            help="Devices per node to train on: GPUs (at most this machine's), or CPU processes (at most its "
            "cores); more than 1 trains data-parallel (docs/scale.md). Overrides the config's."
        ),
    ] = None,
    num_nodes: Annotated[
        int | None,
        typer.Option(
            help="Machines to train on, started by srun or torchrun (docs/scale.md). Overrides the config's."
        ),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            help="Lightning strategy: auto, ddp or ddp_find_unused_parameters_true. Overrides the config's."
        ),
    ] = None,
    epsilon: Annotated[
        float | None,
        typer.Option(
            help="Train with differential privacy at this epsilon, one station the unit (docs/privacy.md); "
            "also turns off the model's parts that would learn from the traffic outside DP-SGD."
        ),
    ] = None,
    delta: Annotated[
        float | None, typer.Option(help="delta of --epsilon (default 1 / (10 x training stations)).")
    ] = None,
    progress: Progress = True,
) -> None:
    """Train a generator; rerunning the same command resumes from the run directory's checkpoints."""
    from cellsynth.generators import TrainingConfig, available_presets, get, get_class
    from cellsynth.placement import is_rank_zero

    check_out(out, "model run", data, config, knowledge_graph)
    values = _read_config(config, set_)
    if seed is not None:
        values["seed"] = seed
    placement = {"devices": devices, "num_nodes": num_nodes, "strategy": strategy}
    values |= {key: value for key, value in placement.items() if value is not None}
    if epsilon is not None or delta is not None:
        if epsilon is None:
            raise ConfigError("--delta is the delta of --epsilon; give --epsilon too")
        from cellsynth.generators.privacy import private_config

        values = private_config(get_class(model).Config, model, values, epsilon, delta)
    chosen_preset = None if preset == "none" or not available_presets(model) else preset
    gen = get(model, values, preset=chosen_preset)
    if isinstance(gen.config, TrainingConfig):
        gen.config.placement()  # before reading the data: can this machine train so?
    train = training_data(data, get_class(model).kind)
    extra: dict[str, Any] = {}
    if "knowledge_graph" in type(gen).side_inputs:
        from cellsynth.data.knowledge import read_knowledge_graph

        city_graph = data / "knowledge_graph.parquet"
        if knowledge_graph is None and city_graph.exists():
            knowledge_graph = city_graph
        if knowledge_graph is not None:
            extra["knowledge_graph"] = read_knowledge_graph(knowledge_graph)
            say(f"using the knowledge graph {knowledge_graph}")
    elif knowledge_graph is not None:
        raise ConfigError(f"{model} does not use a knowledge graph; leave out --knowledge-graph")
    gen.fit(train, progress=progress, checkpoint_dir=out, **extra)
    gen.save(out)
    if not is_rank_zero():
        return  # another process of a data-parallel fit: rank 0 saved the model and reports
    for note in gen.fit_notes():
        say(note)
    console.print(
        f"{escape(model)} trained; model saved in {bold(out)} (load with {escape(f'cellsynth.load({str(out)!r})')})"
    )


@app.command("generate")
def generate(
    model: Annotated[Path, typer.Option(help="A run directory written by `cellsynth fit`.")],
    out: Out,
    stations: Annotated[
        Path | None, typer.Option(help="CSV of stations to generate for (station_id, lat, lon, features).")
    ] = None,
    data: Annotated[Path | None, typer.Option(help="Generate for the stations of this dataset.")] = None,
    n: Annotated[int | None, typer.Option("--n", help="Generate for N stations drawn from training.")] = None,
    users: Annotated[int | None, typer.Option(help="Number of users (user-level generators).")] = None,
    samples: Annotated[int, typer.Option(help="Samples (plausible weeks) per station.")] = 1,
    sampler: Annotated[
        str | None,
        typer.Option(
            help="ddpm, ddim or dpm-solver (diffusion models; mstdiff: ddpm or ddim). Default: the model's "
            "config sampler (mstdiff: also the one its traffic calibration was fitted with)."
        ),
    ] = None,
    steps: Annotated[
        int | None,
        typer.Option(help="Sampling steps (diffusion models). Default: the config's sampling.steps."),
    ] = None,
    precision: Annotated[
        str | None,
        typer.Option(
            help="float32 or bfloat16: precision of the denoising network while sampling (the diffusion models, "
            "mstdiff included; the chains stay float32; bfloat16 gave STOUTER about 2x the rate on a CPU with "
            "AVX-512 BF16, not measured on a GPU; where the device has no native bfloat16 it warns and runs "
            "float32). Default: the config's sampling.precision."
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            help="mstdiff: temperature of the trajectory's l_0 prediction (1: the paper's sampler). Default: the "
            "model's config (1 unless it says otherwise)."
        ),
    ] = None,
    corrector_rounds: Annotated[
        int | None,
        typer.Option(
            help="mstdiff: corrector rounds (one forward step, then the reverse step again) after each "
            "reverse step of the trajectory (0: the paper's sampler; keep 0 for a model fitted with "
            "self_condition, whose users then move too little; see BENCHMARKS.md). Default: the model's config."
        ),
    ] = None,
    trajectory_substeps: Annotated[
        int | None,
        typer.Option(
            help="mstdiff: split each reverse step of the trajectory into this many smaller ones, one "
            "denoiser call each (1: the paper's sampler; keep 1 for a model fitted with self_condition, "
            "whose users then move too little; see BENCHMARKS.md). Default: the model's config."
        ),
    ] = None,
    step_spacing: Annotated[
        float | None,
        typer.Option(
            help="mstdiff: power p (1-4) of the spacing of the discrete steps the sampler visits, "
            "s_i = ceil(S ((n - i) / n)^p) (1: even steps, the paper's; above 1: more of them near the data "
            "end; docs/mstdiff.md). Default: the model's config."
        ),
    ] = None,
    trajectory_coupling: Annotated[
        float | None,
        typer.Option(
            help="mstdiff: correlation (0-1) of the noise with which each reverse step draws a user's "
            "consecutive time steps; each step's marginal is unchanged (0: the paper's independent draws; "
            "see BENCHMARKS.md). Default: the model's config."
        ),
    ] = None,
    anchors: Annotated[
        Path | None,
        typer.Option(
            help="mstdiff fitted with anchors: CSV with one row per user and columns anchor_1..anchor_k, "
            "the station_id of each user's most-visited stations (most first); generates users who live "
            "and work there. --users defaults to its number of rows. Without it they are drawn."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same output.", callback=seed_option)] = 0,
    batch_stations: Annotated[
        int,
        typer.Option(
            help="Stations per chunk: each chunk is generated on its own (seeded from the seed and its number) "
            "and written as one part of the output, so memory holds one chunk. One chunk: exactly the model's "
            "generate(); the output depends on this number, never on --engine or the workers."
        ),
    ] = DEFAULT_BATCH,
    batch_users: Annotated[
        int, typer.Option(help="Users per chunk (user-level generators), as --batch-stations.")
    ] = DEFAULT_BATCH,
    engine: Annotated[
        str,
        typer.Option(
            help="'local' (this process, --workers chunks at a time) or 'ray' (a pool of Ray workers, each "
            'loading the model once; pip install "cellsynth\\[ray]"); same seed, same bytes.'
        ),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="--engine ray: the cluster's head (HOST:PORT, ray://HOST:PORT or auto); default: a local one."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Chunks generated at once. --engine local: threads of this process sharing torch's CPU threads "
            "(default 1; 2 on 2 cores sampled STOUTER and MSTDiff 1.2-1.4x faster, docs/scale.md; memory holds "
            "that many chunks; CPU only). --engine ray: Ray workers (default: one per CPU, at most one per chunk)."
        ),
    ] = None,
) -> None:
    """Generate synthetic data from a trained model: traffic for given (or planned) stations, or users."""
    check_out(out, "dataset", model, stations, data, anchors)
    import cellsynth
    from cellsynth.data import read_stations
    from cellsynth.generation import ChunkPlan, generate_dataset

    if engine not in ("local", "ray"):
        raise ConfigError(f"--engine {engine!r}: give 'local' or 'ray'")
    if engine == "ray":  # before loading the model: a missing Ray or an unreachable cluster fails at once
        from cellsynth.generation.ray_engine import check_reachable, import_ray

        import_ray()
        check_reachable(address)
    gen = cellsynth.load(model)
    options = {
        k: v
        for k, v in {
            "sampler": sampler,
            "steps": steps,
            "precision": precision,
            "temperature": temperature,
            "corrector_rounds": corrector_rounds,
            "trajectory_substeps": trajectory_substeps,
            "trajectory_coupling": trajectory_coupling,
            "step_spacing": step_spacing,
        }.items()
        if v is not None
    }
    if gen.kind == "users":
        if anchors is not None:
            options["anchors"] = _read_anchors(anchors, gen)
            users = len(options["anchors"]) if users is None else users
        if users is None or any(x is not None for x in (stations, data, n)):
            raise ConfigError(f"{gen.name} generates users: give --users N (and no --stations/--data/--n)")
        plan = ChunkPlan("users", users, batch=batch_users, seed=seed, options=options)
    else:
        if anchors is not None:
            raise ConfigError("--anchors is for user-level generators (mstdiff fitted with anchors)")
        chosen = [x for x in (stations, data, n) if x is not None]
        if len(chosen) != 1 or users is not None:
            raise ConfigError(
                f"{gen.name} generates station traffic: give exactly one of --stations CSV, --data DIR or --n N"
                + (" (--users is for user-level generators)" if users is not None else "")
            )
        if stations is not None:
            target = read_stations(stations)
        elif data is not None:
            target = training_stations(data)
        else:
            target = n
        plan = ChunkPlan(
            "stations", target, batch=batch_stations, samples=samples, seed=seed, options=options
        )
    if plan.chunks > 1:
        say(
            f"generating {plan.size} {plan.kind} in {plan.chunks} chunks of up to {plan.batch} ({engine} engine)"
        )
    generate_dataset(
        model if engine == "ray" else gen, plan, out, engine=engine, address=address, workers=workers
    )
    console.print(f"written to {bold(out)}; inspect with `cellsynth data info {escape(str(out))}`")


def _read_anchors(path: Path, gen):
    """``int64 [users, k]`` station indices of the model from an anchors CSV (``generate --anchors``)."""
    import pandas as pd

    k = getattr(gen, "n_anchors", 0)  # only MSTDiff takes anchors
    if not k:
        raise ConfigError(f"--anchors: this {gen.name} model was fitted without anchors (config anchors: 0)")
    try:
        table = pd.read_csv(path, dtype=str)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot read the anchors CSV: {exc}", source=str(path)) from exc
    columns = [f"anchor_{r}" for r in range(1, k + 1)]
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(
            f"the anchors CSV needs the columns {', '.join(columns)} (this model has {k} anchors); "
            f"missing {', '.join(missing)}",
            source=str(path),
        )
    if table[columns].isna().any().any():
        raise DataError("the anchors CSV has empty cells: every user needs all its anchors", source=str(path))
    ids = table[columns].to_numpy().ravel()
    return gen.stations_.index_of(ids, source=str(path)).reshape(len(table), k)
