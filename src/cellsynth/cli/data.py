"""``cellsynth data``: build the synthetic city, import real data formats (``data import ...``), inspect and
resample datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cellsynth.cli._common import (
    Out,
    Progress,
    bold,
    check_out,
    console,
    data_app,
    datasets_in,
    import_app,
    say,
    stations_file,
    write_dataset,
)
from cellsynth.cli.errors import seed_option, step_option
from cellsynth.data.loaders._common import PLACEHOLDER_MONDAY
from cellsynth.errors import ConfigError

__all__ = []


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

    check_out(out, "synthetic city")
    config = CityConfig.milan(seed=seed) if milan else CityConfig(seed=seed)
    if not milan:
        config = config.replace(n_stations=stations, n_users=users, weeks=weeks, size_km=size_km)
    city = synthesize_city(config)
    city.write(out)
    console.print(
        f"synthetic city written to {bold(out)}: {city.traffic.n_stations} stations x "
        f"{city.traffic.n_steps} h x {city.traffic.n_channels} channels, {city.users.n_users} users x "
        f"{city.users.n_steps} steps, {len(city.knowledge_graph.heads)} knowledge-graph triplets"
    )


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

    check_out(out, "dataset", *files, grid)
    traffic, report = load_telecom_italia(
        files, grid, step=step, tz=tz, duplicates=duplicates, progress=progress, return_report=True
    )
    say(str(report))
    write_dataset(traffic, out)


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

    check_out(out, "dataset", path)
    write_dataset(load_stkdiff(path, start=start, tz=tz, channel=channel), out)


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

    check_out(out, "dataset", path, embeddings)
    write_dataset(load_mobifm(path, embeddings, channel=channel, start=start, tz=tz, step=step), out)


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

    check_out(out, "dataset", table, stations)
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
    write_dataset(data, out)


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

    check_out(out, "dataset", table, stations)
    write_dataset(load_mobility_table(table, stations, tz=tz, step=step, encoding=encoding), out)


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

    check_out(out, "dataset", path, gps)
    data = load_location_sequences(path, gps, start=start, tz=tz, step=step, only_visited=not all_locations)
    write_dataset(data, out)


@import_app.command("grid")
def import_grid(
    geojson: Annotated[Path, typer.Argument(help="GeoJSON grid of cell polygons with a cellId property.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output stations table (.parquet).")],
) -> None:
    """A grid of cells -> stations at the cell centroids."""
    from cellsynth.data.loaders import load_grid

    check_out(stations_file(out), "stations table", geojson)
    write_dataset(load_grid(geojson), out)


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

    check_out(stations_file(out), "stations table", totals, grid)
    write_dataset(load_milan_totals(totals, grid, missing=missing), out)


@data_app.command("info")
def data_info(
    path: Annotated[Path, typer.Argument(help="A dataset directory, or a synthetic city directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Shape, time span, step, channels, per-channel statistics, share of zeros and of repaired values."""
    from cellsynth.data.summary import describe

    datasets = datasets_in(path)
    report = {name: describe(data) for name, data in datasets.items()}
    if as_json:
        console.print_json(json.dumps(report, default=str))
        return
    for name, info in report.items():
        _print_description(name, info)


@data_app.command("split")
def data_split(
    dataset: Annotated[Path, typer.Argument(help="A station traffic or user mobility dataset directory.")],
    out: Out,
    test_fraction: Annotated[
        float, typer.Option(help="Share of stations (or users) held out, in (0, 1).")
    ] = 0.2,
    seed: Annotated[int, typer.Option(help="Seed: same seed, same split.", callback=seed_option)] = 0,
) -> None:
    """Split a dataset for a fair evaluation: station traffic by station (the held-out stations play new
    sites), users by user. Writes OUT/train and OUT/held-out, two datasets."""
    from cellsynth.data.split import write_split

    check_out(out, "split", dataset)
    datasets = datasets_in(dataset)
    if len(datasets) != 1:
        raise ConfigError(
            f"{dataset} holds {', '.join(datasets)}: split one of them, e.g. {dataset / next(iter(datasets))}"
        )
    (data,) = datasets.values()
    train, held_out = write_split(data, out, test_fraction, seed)
    what = "stations" if hasattr(data, "n_stations") else "users"
    console.print(
        f"split {what} {1 - test_fraction:.0%}/{test_fraction:.0%} (seed {seed}): {bold(train)} and {bold(held_out)}"
    )


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

    check_out(out, "dataset", dataset)
    datasets = datasets_in(dataset)
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
    write_dataset(result, out)


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
