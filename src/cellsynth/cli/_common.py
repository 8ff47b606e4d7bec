"""What every command module shares: the typer apps, the consoles, the common options, the output check and
reading datasets given on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from cellsynth.cli.errors import CommandGroup, seed_option
from cellsynth.errors import ConfigError

__all__ = [
    "Out",
    "Progress",
    "app",
    "bold",
    "check_out",
    "console",
    "data_app",
    "datasets_in",
    "import_app",
    "say",
    "stations_file",
    "training_data",
    "training_stations",
    "write_dataset",
]

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

console = Console()  # what a command prints; errors go to cellsynth.cli.errors.err_console


def say(message: str) -> None:
    """Print a plain message: brackets in it (paths, values, "[4/5]") are shown, never read as markup."""
    console.print(message, markup=False)


def bold(value) -> str:
    """``value`` (a path, say) as bold markup, its own brackets escaped."""
    return f"[bold]{escape(str(value))}[/]"


Out = Annotated[Path, typer.Option("--out", "-o", help="Output path (a dataset directory).")]
Progress = Annotated[bool, typer.Option("--progress/--no-progress", help="Show progress bars.")]
#: ``--first-seed`` of the benchmarks, with ``--seeds N`` (:func:`seed_range`).
FirstSeed = Annotated[
    int,
    typer.Option(
        help="First seed: the seeds are FIRST..FIRST+N-1 (to add seeds to a benchmark that ran others).",
        callback=seed_option,
    ),
]


def check_out(out: Path, kind: str, *inputs: Path | None) -> None:
    """Refuse ``--out`` before any work: the rule every writer applies (:mod:`cellsynth.outputs`; ``kind`` is
    one of its kinds), and never one of the command's ``inputs`` nor a directory holding one."""
    from cellsynth.outputs import check_output

    check_output(out, kind, inputs=[p for p in inputs if p is not None])


def stations_file(out: Path) -> Path:
    """Where a stations table given as ``--out`` is written: ``out`` with the ``.parquet`` suffix."""
    return out if out.suffix == ".parquet" else out.with_suffix(".parquet")


def write_dataset(result, out: Path) -> None:
    """Write a command's result (a dataset, or a stations table) to ``out`` and say where it went."""
    from cellsynth.data import Stations, write, write_stations

    if isinstance(result, Stations):
        out = stations_file(out)
        write_stations(result, out)
        console.print(f"{len(result)} stations written to {bold(out)}")
        return
    write(result, out)
    console.print(f"written to {bold(out)}; inspect with `cellsynth data info {escape(str(out))}`")


def datasets_in(path: Path) -> dict[str, Any]:
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


def training_data(path: Path, kind: str):
    """The dataset at ``path`` that a ``kind`` (``"stations"`` or ``"users"``) generator takes."""
    from cellsynth.data import StationTraffic, UserMobility

    wanted = StationTraffic if kind == "stations" else UserMobility
    for data in datasets_in(path).values():
        if isinstance(data, wanted):
            return data
    from cellsynth.errors import DataError

    raise DataError(f"holds no {wanted.__name__} for a {kind} generator", source=str(path))


def training_stations(path: Path):
    """The stations of the station traffic dataset at ``path`` (as :func:`training_data`), read without its
    traffic: ``generate --data`` needs only them."""
    from cellsynth.data import read_stations
    from cellsynth.errors import DataError

    for directory in (path, path / "traffic"):
        if (directory / "traffic.parquet").exists() and (directory / "stations.parquet").exists():
            return read_stations(directory / "stations.parquet")
    datasets_in(path)  # no dataset at all: its error says what a dataset directory holds
    raise DataError("holds no StationTraffic for a stations generator", source=str(path))


def seed_range(seeds: int, first_seed: int) -> int | list[int]:
    """``--seeds N --first-seed K`` as the benchmarks take them: ``N`` (the seeds 0..N-1) when ``K`` is 0,
    else the list ``K..K+N-1``."""
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    return seeds if first_seed == 0 else list(range(first_seed, first_seed + seeds))
