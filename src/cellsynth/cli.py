"""The ``cellsynth`` command line. Thin by design: it parses, calls the Python API, prints.

Every error a user can cause ends in one readable line (what, where, how to fix) and exit code 2, never a
traceback; ``CELLSYNTH_DEBUG=1`` shows the traceback too.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from cellsynth.cli_errors import CommandGroup, seed_option, step_option, yaml_mapping, yaml_value
from cellsynth.data.loaders._common import PLACEHOLDER_MONDAY
from cellsynth.errors import CellsynthError, ConfigError, DataError

app = typer.Typer(
    name="cellsynth",
    help="Learn from real cellular-network data and generate realistic synthetic traffic and mobility.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=CommandGroup,
)
data_app = typer.Typer(help="Build, import and inspect datasets.", no_args_is_help=True)
import_app = typer.Typer(
    help="Import a real data format into cellsynth's Parquet dataset format.", no_args_is_help=True
)
app.add_typer(data_app, name="data")
data_app.add_typer(import_app, name="import")

console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def _say(message: str) -> None:
    """Print a plain message: brackets in it (paths, values, "[4/5]") are shown, never read as markup."""
    console.print(message, markup=False)


def _bold(value) -> str:
    """``value`` (a path, say) as bold markup, its own brackets escaped."""
    return f"[bold]{escape(str(value))}[/]"


Out = Annotated[Path, typer.Option("--out", "-o", help="Output path (a dataset directory).")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]


# -- data ------------------------------------------------------------------------------------------------
@data_app.command("synth")
def data_synth(
    out: Out,
    stations: Annotated[int, typer.Option(help="Number of base stations.")] = 150,
    users: Annotated[int, typer.Option(help="Number of users (30-minute trajectories with traffic).")] = 400,
    weeks: Annotated[int, typer.Option(help="Weeks of hourly station traffic.")] = 2,
    size_km: Annotated[float, typer.Option(help="Side of the square city, km.")] = 10.0,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same city.", callback=seed_option)] = 0,
    milan: Annotated[
        bool, typer.Option("--milan", help="Milan-scale preset (10,000 stations, 24 km).")
    ] = False,
) -> None:
    """Build the synthetic city: stations with POIs, hourly internet/call/sms traffic, users and the urban
    knowledge graph. Writes OUT/traffic, OUT/users, OUT/knowledge_graph.parquet, labels and config."""
    from cellsynth.data.synthetic import CityConfig, synthesize_city

    _check_out(out, "synthetic city")
    config = CityConfig.milan(seed=seed) if milan else CityConfig(seed=seed)
    if not milan:
        config = config.replace(n_stations=stations, n_users=users, weeks=weeks, size_km=size_km)
    city = synthesize_city(config)
    city.write(out)
    console.print(
        f"synthetic city written to {_bold(out)}: {city.traffic.n_stations} stations x "
        f"{city.traffic.n_steps} h x {city.traffic.n_channels} channels, {city.users.n_users} users x "
        f"{city.users.n_steps} steps, {len(city.knowledge_graph.heads)} knowledge-graph triplets"
    )


def _check_out(out: Path, kind: str, *inputs: Path | None) -> None:
    """Refuse ``--out`` before any work: the rule every writer applies (:mod:`cellsynth.outputs`; ``kind`` is
    one of its kinds), and never one of the command's ``inputs`` nor a directory holding one."""
    from cellsynth.outputs import check_output

    check_output(out, kind, inputs=[p for p in inputs if p is not None])


def _stations_file(out: Path) -> Path:
    return out if out.suffix == ".parquet" else out.with_suffix(".parquet")


def _write_dataset(result, out: Path) -> None:
    from cellsynth.data import Stations, write, write_stations

    if isinstance(result, Stations):
        out = _stations_file(out)
        write_stations(result, out)
        console.print(f"{len(result)} stations written to {_bold(out)}")
        return
    write(result, out)
    console.print(f"written to {_bold(out)}; inspect with `cellsynth data info {escape(str(out))}`")


@import_app.command("telecom-italia")
def import_telecom_italia(
    files: Annotated[
        list[Path], typer.Argument(help="Day files sms-call-internet-mi-YYYY-MM-DD.txt (any number).")
    ],
    grid: Annotated[Path, typer.Option(help="Grid GeoJSON (milano-grid.geojson or trentino-grid.geojson).")],
    out: Out,
    step: Annotated[
        str, typer.Option(help="10min (as recorded) or 1h (summed).", callback=step_option)
    ] = "1h",
    tz: Annotated[str, typer.Option(help="Time zone of the output timestamps.")] = "Europe/Rome",
    duplicates: Annotated[
        str,
        typer.Option(
            help="A line repeating the square, interval and country code of an earlier line: error (naming "
            "both lines) or sum (add them up, counted in the report). A day given twice is always an error."
        ),
    ] = "error",
    progress: Progress = True,
) -> None:
    """Telecom Italia Big Data Challenge day files + grid -> internet, call (in+out), sms (in+out) per cell.
    Streams each file with bounded memory; missing intervals are repaired, counted and flagged."""
    from cellsynth.data.loaders import load_telecom_italia

    _check_out(out, "dataset", *files, grid)
    traffic, report = load_telecom_italia(
        files, grid, step=step, tz=tz, duplicates=duplicates, progress=progress, return_report=True
    )
    _say(str(report))
    _write_dataset(traffic, out)


@import_app.command("stkdiff")
def import_stkdiff(
    path: Annotated[Path, typer.Argument(help="The STK-Diff .npz (bs_record, bs_kge).")],
    out: Out,
    start: Annotated[
        str, typer.Option(help="Start of the week (undocumented in the source).")
    ] = PLACEHOLDER_MONDAY,
    tz: Annotated[str, typer.Option(help="Time zone.")] = "Asia/Shanghai",
    channel: Annotated[str, typer.Option(help="Name of the single traffic channel.")] = "traffic",
) -> None:
    """STK-Diff Beijing npz: hourly traffic of base stations, bs_kge embeddings as station features."""
    from cellsynth.data.loaders import load_stkdiff

    _check_out(out, "dataset", path)
    _write_dataset(load_stkdiff(path, start=start, tz=tz, channel=channel), out)


@import_app.command("mobifm")
def import_mobifm(
    path: Annotated[
        Path, typer.Argument(help="The MobiFM .npz (data [N, T], time [N, T, 2]: day of week, hour).")
    ],
    out: Out,
    embeddings: Annotated[
        Path | None,
        typer.Option(help="kg_embeddings_<NAME>.npy: one embedding per station, the station features."),
    ] = None,
    channel: Annotated[
        str | None, typer.Option(help="Channel name (default from the set name: NJTCH traffic, NJUCH users).")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="Timestamp of the first step (default: day 0 of the time array on a placeholder Monday)."
        ),
    ] = None,
    tz: Annotated[str, typer.Option(help="Time zone.")] = "Asia/Shanghai",
    step: Annotated[
        str | None, typer.Option(help="Time step (default: read from the time array; needed below an hour).")
    ] = None,
) -> None:
    """MobiFM npz (Nanjing NJTCH traffic, NJUCH users): one series per station, its knowledge-graph embedding
    as station features."""
    from cellsynth.data.loaders import load_mobifm

    _check_out(out, "dataset", path, embeddings)
    _write_dataset(load_mobifm(path, embeddings, channel=channel, start=start, tz=tz, step=step), out)


@import_app.command("csv")
def import_csv(
    table: Annotated[
        Path, typer.Argument(help="Long table (CSV or Parquet): station_id, timestamp, channels...")
    ],
    out: Out,
    stations: Annotated[
        Path | None,
        typer.Option(
            help="Stations CSV: station_id, optional lat, lon, numeric features (default: ids only)."
        ),
    ] = None,
    channels: Annotated[
        str | None, typer.Option(help="Comma-separated channel columns (default: all).")
    ] = None,
    tz: Annotated[str | None, typer.Option(help="Time zone of naive timestamps.")] = None,
    step: Annotated[
        str | None,
        typer.Option(
            help="Time step, if the table has a single timestamp, or of the grid its gaps lie on.",
            callback=step_option,
        ),
    ] = None,
    fill: Annotated[
        str,
        typer.Option(
            help="Missing (station, timestamp) rows: none (an error), interpolate (linear in time between the "
            "station's nearest rows) or zero. Filled values are counted and marked repaired."
        ),
    ] = "none",
    encoding: Annotated[
        str, typer.Option(help="Text encoding of the CSV files (utf-16, latin-1...).")
    ] = "utf-8",
) -> None:
    """Your own network's traffic: a long CSV/Parquet table plus a stations CSV."""
    import warnings

    from cellsynth.data.loaders import DataRepairWarning, load_traffic_table

    _check_out(out, "dataset", table, stations)
    names = [c.strip() for c in channels.split(",")] if channels else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataRepairWarning)
        data = load_traffic_table(
            table, stations, channels=names, tz=tz, step=step, fill=fill, encoding=encoding
        )
    for warning in caught:  # the repair count as a printed line; any other warning as it came
        if issubclass(warning.category, DataRepairWarning):
            console.print(str(warning.message), highlight=False, soft_wrap=True)
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    _write_dataset(data, out)


@import_app.command("mobility-csv")
def import_mobility_csv(
    table: Annotated[Path, typer.Argument(help="Long table: user_id, timestamp, station_id[, traffic].")],
    stations: Annotated[Path, typer.Option(help="Stations CSV: station_id, optional lat, lon, features.")],
    out: Out,
    tz: Annotated[str | None, typer.Option(help="Time zone of naive timestamps.")] = None,
    step: Annotated[
        str | None,
        typer.Option(help="Time step, if the table has a single timestamp.", callback=step_option),
    ] = None,
    encoding: Annotated[
        str, typer.Option(help="Text encoding of the CSV files (utf-16, latin-1...).")
    ] = "utf-8",
) -> None:
    """Your own users' trajectories (and traffic): a long CSV/Parquet table plus a stations CSV."""
    from cellsynth.data.loaders import load_mobility_table

    _check_out(out, "dataset", table, stations)
    _write_dataset(load_mobility_table(table, stations, tz=tz, step=step, encoding=encoding), out)


@import_app.command("location-sequences")
def import_location_sequences(
    path: Annotated[Path, typer.Argument(help="Lines of space-separated location ids, one per time slot.")],
    gps: Annotated[Path, typer.Option(help="gps table: line i is 'lat lon' of location id i.")],
    out: Out,
    start: Annotated[str, typer.Option(help="Timestamp of the first slot.")] = PLACEHOLDER_MONDAY,
    tz: Annotated[str, typer.Option(help="Time zone.")] = "Asia/Shanghai",
    step: Annotated[str, typer.Option(help="Slot length.", callback=step_option)] = "30min",
    all_locations: Annotated[
        bool, typer.Option(help="Keep every gps location, not only visited ones.")
    ] = False,
) -> None:
    """Location-id sequences (MoveSim's GeoLife files) -> trajectories without traffic."""
    from cellsynth.data.loaders import load_location_sequences

    _check_out(out, "dataset", path, gps)
    data = load_location_sequences(path, gps, start=start, tz=tz, step=step, only_visited=not all_locations)
    _write_dataset(data, out)


@import_app.command("grid")
def import_grid(
    geojson: Annotated[Path, typer.Argument(help="GeoJSON grid of cell polygons with a cellId property.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output stations table (.parquet).")],
) -> None:
    """A grid of cells -> stations at the cell centroids."""
    from cellsynth.data.loaders import load_grid

    _check_out(_stations_file(out), "stations table", geojson)
    _write_dataset(load_grid(geojson), out)


@import_app.command("milan-totals")
def import_milan_totals(
    totals: Annotated[Path, typer.Argument(help="Per-cell totals CSV: square_id,internet.")],
    grid: Annotated[Path, typer.Option(help="Grid GeoJSON (milano-grid.geojson).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output stations table (.parquet).")],
    missing: Annotated[
        str,
        typer.Option(help="Grid cells without a total: error, or drop (keep only the cells that have one)."),
    ] = "error",
) -> None:
    """The Milan grid with each cell's total internet activity as a station feature (internet_total)."""
    from cellsynth.data.loaders import load_milan_totals

    _check_out(_stations_file(out), "stations table", totals, grid)
    _write_dataset(load_milan_totals(totals, grid, missing=missing), out)


@data_app.command("info")
def data_info(
    path: Annotated[Path, typer.Argument(help="A dataset directory, or a synthetic city directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Shape, time span, step, channels, per-channel statistics, share of zeros and of repaired values."""
    from cellsynth.data.summary import describe

    datasets = _datasets_in(path)
    report = {name: describe(data) for name, data in datasets.items()}
    if as_json:
        console.print_json(json.dumps(report, default=str))
        return
    for name, info in report.items():
        _print_description(name, info)


@data_app.command("resample")
def data_resample(
    dataset: Annotated[
        Path, typer.Argument(help="A station traffic dataset directory (or a synthetic city).")
    ],
    step: Annotated[str, typer.Option(help="The new step, a whole multiple of the data's: 1h, 1D...")],
    out: Out,
    drop_partial: Annotated[
        bool,
        typer.Option(
            "--drop-partial",
            help="Drop the trailing steps that do not fill a whole new step (reports how many).",
        ),
    ] = False,
) -> None:
    """Sum station traffic into a coarser time step (volumes and counts add up; a new step is marked repaired
    where any of its old steps was). Stations, channels and the start are kept."""
    from cellsynth.data import StationTraffic, resample
    from cellsynth.data.model import format_duration

    _check_out(out, "dataset", dataset)
    datasets = _datasets_in(dataset)
    traffic = [(name, data) for name, data in datasets.items() if isinstance(data, StationTraffic)]
    if not traffic:
        raise ConfigError(
            f"{dataset} holds user mobility only; resample aggregates station traffic (sums per station and "
            "channel), and a user's location per step cannot be summed"
        )
    name, data = traffic[0]
    result = resample(data, step, drop_partial=drop_partial)
    dropped = int((data.end - result.end) / data.step)
    others = [other for other in datasets if other != name]
    console.print(
        f"{name}: {data.n_steps} steps of {format_duration(data.step)} -> {result.n_steps} steps of "
        f"{format_duration(result.step)} (sums)"
        + (f"; dropped the last {dropped} step(s), from {result.end}" if dropped else "")
        + (f"; the user mobility in {', '.join(others)} is not resampled" if others else "")
    )
    _write_dataset(result, out)


def _datasets_in(path: Path) -> dict[str, Any]:
    """The datasets at ``path``: one dataset directory, or a city directory with traffic/ and users/."""
    from cellsynth.data import read
    from cellsynth.errors import DataError

    if (path / "stations.parquet").exists():
        return {str(path): read(path)}
    found = {
        str(sub): read(sub)
        for sub in (path / "traffic", path / "users")
        if (sub / "stations.parquet").exists()
    }
    if not found:
        raise DataError(
            "no dataset here (expected stations.parquet, or traffic/ and users/ subdirectories)",
            source=str(path),
        )
    return found


def _print_description(name: str, info: dict) -> None:
    table = Table(title=escape(name), show_header=False, title_justify="left")
    for key, value in info.items():
        if not isinstance(value, dict):
            table.add_row(escape(str(key)), escape(_fmt(value)))
    console.print(table)
    for key, value in info.items():
        if not isinstance(value, dict):
            continue
        # One column per channel (or a single column), one row per statistic: fits a terminal.
        columns = value if all(isinstance(v, dict) for v in value.values()) else {"": value}
        sub = Table("", *(escape(str(c)) for c in columns), title=escape(str(key)), title_justify="left")
        stats = list(dict.fromkeys(k for col in columns.values() for k in col))
        for stat in stats:
            sub.add_row(escape(str(stat)), *(escape(_fmt(col.get(stat))) for col in columns.values()))
        console.print(sub)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return "" if value is None else str(value)


# -- models ----------------------------------------------------------------------------------------------
@app.command("models")
def models() -> None:
    """List the generators that `fit` accepts, with what they generate."""
    from cellsynth.generators import available, available_presets, get_class

    table = Table("name", "generates", "presets", "description")
    for name in available():
        cls = get_class(name)
        doc = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
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
        values[key.strip()] = yaml_value(raw, f"--set {item!r}", "quote the value or fix its syntax")
    return values


def _training_data(path: Path, kind: str):
    from cellsynth.data import StationTraffic, UserMobility

    wanted = StationTraffic if kind == "stations" else UserMobility
    for data in _datasets_in(path).values():
        if isinstance(data, wanted):
            return data
    from cellsynth.errors import DataError

    raise DataError(f"holds no {wanted.__name__} for a {kind} generator", source=str(path))


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
        list[str], typer.Option("--set", help="Override one option: key=value (repeatable).")
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
    progress: Progress = True,
) -> None:
    """Train a generator; rerunning the same command resumes from the run directory's checkpoints."""
    import inspect

    from cellsynth.generators import available_presets, get, get_class

    _check_out(out, "model run", data, config, knowledge_graph)
    values = _read_config(config, set_)
    if seed is not None:
        values["seed"] = seed
    chosen_preset = None if preset == "none" or not available_presets(model) else preset
    gen = get(model, values, preset=chosen_preset)
    train = _training_data(data, get_class(model).kind)
    extra: dict[str, Any] = {}
    if "knowledge_graph" in inspect.signature(gen.fit).parameters:
        from cellsynth.data.knowledge import read_knowledge_graph

        city_graph = data / "knowledge_graph.parquet"
        if knowledge_graph is None and city_graph.exists():
            knowledge_graph = city_graph
        if knowledge_graph is not None:
            extra["knowledge_graph"] = read_knowledge_graph(knowledge_graph)
            _say(f"using the knowledge graph {knowledge_graph}")
    elif knowledge_graph is not None:
        raise ConfigError(f"{model} does not use a knowledge graph; leave out --knowledge-graph")
    gen.fit(train, progress=progress, checkpoint_dir=out, **extra)
    gen.save(out)
    for note in gen.fit_notes():
        _say(note)
    console.print(
        f"{escape(model)} trained; model saved in {_bold(out)} (load with {escape(f'cellsynth.load({str(out)!r})')})"
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
) -> None:
    """Generate synthetic data from a trained model: traffic for given (or planned) stations, or users."""
    _check_out(out, "dataset", model, stations, data, anchors)
    import cellsynth
    from cellsynth.data import read_stations

    gen = cellsynth.load(model)
    options = {
        k: v
        for k, v in {
            "sampler": sampler,
            "steps": steps,
            "temperature": temperature,
            "corrector_rounds": corrector_rounds,
            "trajectory_substeps": trajectory_substeps,
            "trajectory_coupling": trajectory_coupling,
        }.items()
        if v is not None
    }
    if gen.kind == "users":
        if anchors is not None:
            options["anchors"] = _read_anchors(anchors, gen)
            users = len(options["anchors"]) if users is None else users
        if users is None or any(x is not None for x in (stations, data, n)):
            raise ConfigError(f"{gen.name} generates users: give --users N (and no --stations/--data/--n)")
        result = gen.generate(users, seed=seed, **options)
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
            target = _training_data(data, "stations")
        else:
            target = n
        result = gen.generate(target, samples=samples, seed=seed, **options)
    _write_dataset(result, out)


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

    _check_out(out, "evaluation", real, synthetic, train)
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

        _say(memorisation_verdict(evaluation.memorisation))
    console.print(f"metrics: {_bold(out / 'metrics.json')}\nreport:  {_bold(report)}")


def _evaluation_data(paths: dict[str, Path | None]) -> dict[str, Any]:
    """The dataset behind each option (``None`` stays ``None``). A city directory holds station traffic and
    users: it gives the dataset of the kind that the options naming a single dataset have."""
    found = {flag: _datasets_in(path) if path is not None else None for flag, path in paths.items()}
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
    configs_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory of <model>.yaml presets, e.g. configs/beijing; a model without one there takes "
            "./configs/<model>.yaml, if present."
        ),
    ] = None,
    progress: Progress = True,
) -> None:
    """Train and score several generators on one split, every channel, held-out and training stations;
    prints and writes a table laid out like STOUTER's Table 1. Rerun the same command to resume."""
    from cellsynth.benchmark import run_benchmark

    _check_out(out, "bench", data, configs_dir)
    names = [m.strip() for m in models.split(",") if m.strip()]
    presets = {}
    for name in names:
        for directory in (configs_dir, Path("configs")):
            preset = directory / f"{name}.yaml" if directory is not None else None
            if preset is not None and preset.exists():
                presets[name] = yaml_mapping(preset)
                break
    result = run_benchmark(
        _training_data(data, "stations"),
        names,
        out=out,
        seeds=seeds,
        budget=epochs if epochs is not None else "preset",
        test_fraction=test_fraction,
        samples=samples,
        train_stations=train_stations,
        configs=presets,
        progress=progress,
        echo=_say,
    )
    if result.reused:
        _say(f"reused {len(result.reused)} finished (model, seed) result(s) from {out}")
    console.print(f"table: {_bold(result.table_path)}; results: {_bold(result.results_path)}")


# -- the demo ----------------------------------------------------------------------------------------------
@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the demo writes its outputs.")] = Path(
        "demo-output"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the whole pipeline.", callback=seed_option)] = 0,
    user_model: Annotated[
        str,
        typer.Option(
            "--user-model",
            help="User generator trained on the city's users (mstdiff or markov); 'none' skips the user part.",
        ),
    ] = "mstdiff",
    progress: Progress = True,
) -> None:
    """Run the main job on the built-in synthetic city: station traffic for held-out sites (STOUTER), then
    users' trajectories and traffic (MSTDiff); each scored against held-out real data. Writes OUT/report.html
    with both evaluations, and prints where every output is."""
    from cellsynth.demo import run_demo

    result = run_demo(
        out,
        seed=seed,
        progress=progress,
        echo=_say,
        user_model=None if user_model.strip().lower() == "none" else user_model,
    )
    _say(result.summary())
    report = result.outputs["report (all evaluations)"]
    console.print(f"report with every evaluation: {_bold(report)}", soft_wrap=True)  # one line, whole path


def main() -> None:
    """Entry point of the ``cellsynth`` script."""
    try:
        app()
    except CellsynthError as err:
        if os.environ.get("CELLSYNTH_DEBUG"):
            raise
        # A Text, not markup: paths and values may hold brackets ("traffic[red].csv", "[/x]") that rich
        # would interpret or choke on.
        err_console.print(Text.assemble(("error:", "bold red"), " ", str(err)), highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
