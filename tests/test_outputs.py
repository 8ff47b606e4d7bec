"""Where cellsynth writes (:mod:`cellsynth.outputs`): every command and every Python writer uses a path only
when it is new, empty or a cellsynth output of the same kind; never a user's files, an input, a model
directory or a parent of one. A killed write's temporaries are cleaned by the next write of the same target; a
full disk or a denied permission ends in one line and leaves the earlier output as it was."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import cellsynth
from cellsynth.cli import app, main
from cellsynth.data import read, read_stations, write, write_stations
from cellsynth.data.synthetic import CityConfig, synthesize_city
from cellsynth.errors import OutputError
from cellsynth.evaluate import evaluate
from cellsynth.outputs import MARKER, atomic_directory, atomic_file, check_output
from cellsynth.report import write_report

CITY = ["--stations", 12, "--users", 6, "--weeks", 1]


class DemoStarted(Exception):
    """Raised by the stubbed demo right after its output check: the rest of the demo is tested in test_demo."""


@pytest.fixture(autouse=True)
def _no_report_figures(monkeypatch):
    """Draw no figures: the report pages are tested in tests/report; here only where they go matters."""
    monkeypatch.setattr("cellsynth.report.render_html", lambda evaluation: "<html>report</html>")


def cli(capsys, *args) -> tuple[int, str]:
    """Run the ``cellsynth`` entry point in this process; returns (exit code, stderr)."""
    capsys.readouterr()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["cellsynth", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    return code, capsys.readouterr().err


def snapshot(path: Path) -> dict[str, bytes]:
    """Every file at or under ``path`` with its bytes, symbolic links as their targets."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {
        str(p.relative_to(path)): (str(p.readlink()).encode() if p.is_symlink() else p.read_bytes())
        for p in sorted(path.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if ".tmp-" in p.name or ".old-" in p.name)


# -- the world: inputs of every command, and one earlier output of every kind ------------------------------------
@dataclass
class World:
    root: Path
    inputs: Path  # the import commands' input files
    city: Path
    run: Path  # a saved seasonal-mean model
    generated: Path  # a dataset it generated
    earlier: dict[str, Path]  # one output of each kind, written by cellsynth


def _square(cell: int) -> dict:
    x, y = 9.1 + cell / 100, 45.4
    ring = [[x, y], [x + 0.01, y], [x + 0.01, y + 0.01], [x, y + 0.01], [x, y]]
    return {
        "type": "Feature",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "properties": {"cellId": cell},
    }


def _write_inputs(inputs: Path) -> None:
    inputs.mkdir()
    grid = json.dumps({"type": "FeatureCollection", "features": [_square(c) for c in (1, 2, 3)]})
    (inputs / "grid.geojson").write_text(grid)
    (inputs / "cells.parquet").write_text(grid)  # a GeoJSON under a .parquet name: an input `--out` may hit
    midnight = pd.Timestamp("2013-11-04", tz="Europe/Rome").value // 1_000_000
    day = [f"{cell}\t{midnight + k * 600_000}\t39\t1\t\t1\t0\t{k}" for k in range(144) for cell in (1, 2)]
    (inputs / "day.txt").write_text("\n".join(day) + "\n")
    (inputs / "totals.csv").write_text("square_id,internet\n1,10\n2,5\n3,0\n")
    (inputs / "stations.csv").write_text("station_id,lat,lon\na,45.46,9.19\nb,45.47,9.20\n")
    hours = ["2013-11-04T00:00:00+01:00", "2013-11-04T01:00:00+01:00"]
    rows = [f"{s},{t},{v}" for s in "ab" for v, t in enumerate(hours)]
    (inputs / "table.csv").write_text("station_id,timestamp,internet\n" + "\n".join(rows) + "\n")
    moves = [f"u{u},{t},{s},1" for u in (1, 2) for t, s in zip(hours, "ab", strict=True)]
    (inputs / "mobility.csv").write_text("user_id,timestamp,station_id,traffic\n" + "\n".join(moves) + "\n")
    (inputs / "sequences.txt").write_text("0 1 1 2\n2 2 1 0\n")
    (inputs / "gps.txt").write_text("39.90 116.40\n39.91 116.41\n39.92 116.42\n")
    np.savez(inputs / "stkdiff.npz", bs_record=np.ones((3, 168)), bs_kge=np.zeros((3, 2)))


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("world")
    _write_inputs(root / "inputs")
    runner = CliRunner()

    def run(*args):
        result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.output

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("cellsynth.report.render_html", lambda evaluation: "<html>report</html>")
        patch.setattr("cellsynth.report.render_combined_html", lambda sections, title: "<html>all</html>")
        run("data", "synth", "--out", root / "city", *CITY)
        run("fit", "seasonal-mean", "--data", root / "city", "--out", root / "run", "--no-progress")
        run("generate", "--model", root / "run", "--data", root / "city", "--out", root / "generated")
        earlier = root / "earlier"
        run(
            "evaluate",
            "--real",
            root / "city" / "traffic",
            "--synthetic",
            root / "generated",
            "--out",
            earlier / "eval",
        )
        bench = ["--models", "seasonal-mean", "--seeds", 1, "--samples", 1, "--no-progress"]
        run("bench", "--data", root / "city", "--out", earlier / "bench", *bench)
        run("data", "import", "grid", root / "inputs" / "grid.geojson", "--out", earlier / "stations.parquet")
        from cellsynth.demo import run_demo

        run_demo(
            earlier / "demo",
            city_config=CityConfig(n_stations=12, n_users=6, weeks=1),
            station_model="seasonal-mean",
            user_model=None,
            progress=False,
            echo=lambda message: None,
        )
    kinds = {
        "dataset": root / "generated",
        "synthetic city": root / "city",
        "model run": root / "run",
        "evaluation": earlier / "eval",
        "bench": earlier / "bench",
        "demo": earlier / "demo",
        "stations table": earlier / "stations.parquet",
    }
    return World(root, root / "inputs", root / "city", root / "run", root / "generated", kinds)


def copy_of(world: World, kind: str, to: Path, *, marked: bool = True) -> Path:
    """A copy of the earlier output of ``kind`` at ``to``; ``marked=False``: as cellsynth wrote it before the
    marker existed."""
    source = world.earlier[kind]
    if source.is_dir():
        shutil.copytree(source, to)
        if not marked:
            (to / MARKER).unlink()
    else:
        shutil.copy(source, to)
    return to


# -- the commands ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    name: str
    kind: str
    args: Callable[[World, Path], list]
    inputs: Callable[[World], list[Path]] = lambda world: []

    @property
    def writes_a_file(self) -> bool:
        return self.kind == "stations table"


def _import(fmt: str, *names: str, extra: tuple = (), **options: str) -> Command:
    kind = "stations table" if fmt in ("grid", "milan-totals") else "dataset"

    def args(world, out):
        flags = [x for option, name in options.items() for x in (f"--{option}", world.inputs / name)]
        return ["data", "import", fmt, *(world.inputs / n for n in names), *flags, *extra, "--out", out]

    return Command(f"import {fmt}", kind, args, lambda w: [w.inputs / n for n in (*names, *options.values())])


COMMANDS = [
    Command("data synth", "synthetic city", lambda w, out: ["data", "synth", "--out", out, *CITY]),
    _import("telecom-italia", "day.txt", grid="grid.geojson", extra=("--no-progress",)),
    _import("stkdiff", "stkdiff.npz"),
    _import("csv", "table.csv", stations="stations.csv"),
    _import("mobility-csv", "mobility.csv", stations="stations.csv"),
    _import("location-sequences", "sequences.txt", gps="gps.txt"),
    _import("grid", "cells.parquet"),
    _import("milan-totals", "totals.csv", grid="grid.geojson"),
    Command(
        "fit",
        "model run",
        lambda w, out: ["fit", "seasonal-mean", "--data", w.city, "--out", out, "--no-progress"],
        lambda w: [w.city],
    ),
    Command(
        "generate",
        "dataset",
        lambda w, out: ["generate", "--model", w.run, "--n", 2, "--out", out],
        lambda w: [w.run],
    ),
    Command(
        "evaluate",
        "evaluation",
        lambda w, out: ["evaluate", "--real", w.city / "traffic", "--synthetic", w.generated, "--out", out],
        lambda w: [w.city / "traffic", w.generated],
    ),
    Command(
        "bench",
        "bench",
        lambda w, out: [
            *("bench", "--data", w.city, "--out", out, "--models", "seasonal-mean"),
            *("--seeds", 1, "--samples", 1, "--no-progress"),
        ],
        lambda w: [w.city],
    ),
    Command("demo", "demo", lambda w, out: ["demo", "--out", out, "--user-model", "none", "--no-progress"]),
]
DIRECTORY_COMMANDS = [c for c in COMMANDS if not c.writes_a_file]
WITH_INPUTS = [c for c in DIRECTORY_COMMANDS if c.inputs is not Command.inputs]
names = pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)


@pytest.fixture(autouse=True)
def _demo_stops_after_its_output_check(monkeypatch):
    def started(*args, **kwargs):
        raise DemoStarted

    monkeypatch.setattr("cellsynth.demo.synthesize_city", started)


def succeeds(capsys, command: Command, world: World, out: Path) -> None:
    try:
        code, err = cli(capsys, *command.args(world, out))
    except DemoStarted:
        return
    assert code == 0, err


def refused(capsys, command: Command, world: World, out: Path) -> str:
    """Run ``command`` into ``out``; assert it is refused with one line and exit code 2; return the line."""
    code, err = cli(capsys, *command.args(world, out))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def out_for(command: Command, directory: Path, name: str = "out") -> Path:
    return directory / (f"{name}.parquet" if command.writes_a_file else name)


# -- the cases -------------------------------------------------------------------------------------------------
@names
def test_the_users_own_files_are_refused_and_kept(capsys, world, tmp_path, command):
    out = out_for(command, tmp_path, "mine")
    if command.writes_a_file:
        pd.DataFrame({"x": [1, 2]}).to_parquet(out)  # a Parquet file, but not a cellsynth stations table
        expected = "is not a stations table written by cellsynth"
    else:
        (out / "notes").mkdir(parents=True)
        (out / "thesis.tex").write_text("mine")
        (out / "notes" / "a.txt").write_text("also mine")
        expected = "is not empty and is not"
    before = snapshot(out)
    message = refused(capsys, command, world, out)
    assert str(out) in message and expected in message and "yourself" in message
    assert snapshot(out) == before


@pytest.mark.parametrize("command", WITH_INPUTS, ids=lambda c: c.name)
def test_an_input_or_a_directory_holding_one_is_refused(capsys, world, tmp_path, command):
    inputs = command.inputs(world)
    for given in inputs:
        parent = given.parent
        before = snapshot(parent)
        (tmp_path / "to-input").symlink_to(given)
        (tmp_path / "to-parent").symlink_to(parent)
        for out in (given, tmp_path / "to-input"):
            message = refused(capsys, command, world, out)
            assert f"is also an input of this command ({given})" in message and str(out) in message
        for out in (parent, tmp_path / "to-parent"):
            message = refused(capsys, command, world, out)
            # the parent may hold several inputs: the message names the first
            assert "holds an input of this command" in message and str(out) in message
            assert any(f"({source})" in message for source in inputs)
        assert snapshot(parent) == before
        (tmp_path / "to-input").unlink()
        (tmp_path / "to-parent").unlink()


def test_generate_refuses_its_model_directory(capsys, world):
    generate = next(c for c in COMMANDS if c.name == "generate")
    before = snapshot(world.run)
    assert "is also an input" in refused(capsys, generate, world, world.run)
    assert snapshot(world.run) == before


def test_a_stations_table_never_overwrites_an_input(capsys, world, tmp_path):
    grid = next(c for c in COMMANDS if c.name == "import grid")
    source = world.inputs / "cells.parquet"
    before = snapshot(world.inputs)
    (tmp_path / "link.parquet").symlink_to(source)
    # --out without the suffix names the same file: the command adds .parquet
    for out in (source, world.inputs / "cells", tmp_path / "link.parquet"):
        assert "is also an input" in refused(capsys, grid, world, out)
    assert snapshot(world.inputs) == before


def test_a_stations_table_never_goes_inside_another_output(capsys, world, tmp_path):
    grid = next(c for c in COMMANDS if c.name == "import grid")
    dataset = copy_of(world, "dataset", tmp_path / "dataset")
    before = snapshot(dataset)
    message = refused(capsys, grid, world, dataset / "stations.parquet")
    assert "is inside a cellsynth dataset" in message
    assert snapshot(dataset) == before


@pytest.mark.parametrize("command", DIRECTORY_COMMANDS, ids=lambda c: c.name)
def test_a_parent_of_runs_is_refused(capsys, world, tmp_path, command):
    runs = tmp_path / "runs"
    for name in ("a", "b"):
        shutil.copytree(world.run, runs / name)
    before = snapshot(runs)
    message = refused(capsys, command, world, runs)
    assert "is not empty" in message and "a/, b/" in message
    assert snapshot(runs) == before


OTHER_KIND = {
    "dataset": "model run",
    "synthetic city": "dataset",
    "model run": "dataset",
    "evaluation": "dataset",
    "bench": "model run",
    "demo": "evaluation",
}


@pytest.mark.parametrize("marked", [True, False], ids=["marked", "written-before-markers"])
@pytest.mark.parametrize("command", DIRECTORY_COMMANDS, ids=lambda c: c.name)
def test_an_output_of_another_kind_is_refused(capsys, world, tmp_path, command, marked):
    other = copy_of(world, OTHER_KIND[command.kind], tmp_path / "other", marked=marked)
    before = snapshot(other)
    message = refused(capsys, command, world, other)
    assert "not a " in message or "not an " in message
    assert "same kind" in message and snapshot(other) == before


def test_a_file_that_is_another_cellsynth_table_is_refused(capsys, world, tmp_path):
    for fmt in ("import grid", "import milan-totals"):
        command = next(c for c in COMMANDS if c.name == fmt)
        out = tmp_path / "traffic.parquet"
        shutil.copy(world.generated / "traffic.parquet", out)
        assert "is not a stations table written by cellsynth" in refused(capsys, command, world, out)
        assert read_stations(world.generated / "stations.parquet")  # the source is unharmed
        out.unlink()


def _check_written(command: Command, out: Path) -> None:
    if command.writes_a_file:
        assert len(read_stations(out)) == 3
        return
    assert json.loads((out / MARKER).read_text())["kind"] == command.kind
    if command.kind == "dataset":
        read(out)
    elif command.kind == "synthetic city":
        read(out / "traffic")
    elif command.kind == "model run":
        cellsynth.load(out)
    elif command.kind == "evaluation":
        assert json.loads((out / "metrics.json").read_text())["metrics"]
    elif command.kind == "bench":
        assert "seasonal-mean" in (out / "table.md").read_text()


@names
def test_new_empty_and_earlier_outputs_of_the_same_kind_are_used(capsys, world, tmp_path, command):
    outs = [out_for(command, tmp_path, "new")]
    if not command.writes_a_file:
        outs.append(tmp_path / "empty")
        outs[-1].mkdir()
        if command.kind != "demo":  # the stubbed demo stops before writing anything but its marker
            outs.append(copy_of(world, command.kind, tmp_path / "earlier-unmarked", marked=False))
    outs.append(copy_of(world, command.kind, out_for(command, tmp_path, "earlier")))
    for out in outs:
        succeeds(capsys, command, world, out)
        if command.kind == "demo":
            assert json.loads((out / MARKER).read_text())["kind"] == "demo"
        else:
            _check_written(command, out)
    assert temporaries(tmp_path) == []


def test_a_link_to_an_earlier_output_replaces_what_it_points_to(capsys, world, tmp_path):
    command = next(c for c in COMMANDS if c.name == "import csv")
    target = copy_of(world, "dataset", tmp_path / "target")
    (tmp_path / "link").symlink_to(target)
    succeeds(capsys, command, world, tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and list(read(target).stations.ids) == ["a", "b"]
    assert temporaries(tmp_path) == []


def test_a_replaced_output_is_never_the_current_directory(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OutputError, match="is the current directory or holds it"):
        write(read(world.generated), tmp_path)
    with pytest.raises(OutputError, match="is the current directory or holds it"):
        write(read(world.generated), ".")
    assert list(tmp_path.iterdir()) == []


def test_an_earlier_output_with_the_users_files_added_is_refused(world, tmp_path):
    out = copy_of(world, "dataset", tmp_path / "d")
    (out / "my-notes.txt").write_text("mine")
    with pytest.raises(OutputError, match=r"holds a cellsynth dataset and also files .* \(my-notes.txt\)"):
        write(read(world.generated), out)
    assert (out / "my-notes.txt").read_text() == "mine"
    # A model run is written into, not replaced: its other files stay and it may be saved again.
    run = copy_of(world, "model run", tmp_path / "run")
    (run / "my-notes.txt").write_text("mine")
    cellsynth.load(run).save(run)
    assert (run / "my-notes.txt").read_text() == "mine"


# -- the Python writers apply the same rule ----------------------------------------------------------------------
def _api_writers(world: World) -> dict[str, tuple[str, Callable[[Path], object]]]:
    from cellsynth.benchmark import run_benchmark
    from cellsynth.demo import run_demo

    data = read(world.generated)
    traffic = read(world.city / "traffic")
    model = cellsynth.load(world.run)
    return {
        "write": ("dataset", lambda out: write(data, out)),
        "write_stations": ("stations table", lambda out: write_stations(data.stations, out)),
        "SyntheticCity.write": (
            "synthetic city",
            lambda out: synthesize_city(CityConfig(n_stations=12, n_users=6, weeks=1)).write(out),
        ),
        "Generator.save": ("model run", lambda out: model.save(out)),
        "write_report": ("evaluation", lambda out: write_report(evaluate(traffic, data), out)),
        "run_benchmark": (
            "bench",
            lambda out: run_benchmark(traffic, ["seasonal-mean"], seeds=1, samples=1, out=out, echo=None),
        ),
        "run_demo": ("demo", lambda out: run_demo(out, station_model="seasonal-mean", echo=lambda m: None)),
    }


@pytest.mark.parametrize(
    "writer",
    [
        "write",
        "write_stations",
        "SyntheticCity.write",
        "Generator.save",
        "write_report",
        "run_benchmark",
        "run_demo",
    ],
)
def test_the_python_writers_refuse_what_the_commands_refuse(world, tmp_path, writer):
    kind, write_to = _api_writers(world)[writer]
    mine = tmp_path / ("mine.parquet" if kind == "stations table" else "mine")
    if kind == "stations table":
        mine.write_text("my own file")
    else:
        mine.mkdir()
        (mine / "thesis.tex").write_text("mine")
    other = copy_of(world, "model run" if kind in ("dataset", "bench") else "dataset", tmp_path / "other")
    if kind == "stations table":
        other = tmp_path / "other.parquet"
        shutil.copy(world.generated / "traffic.parquet", other)
    for out in (mine, other):
        before = snapshot(out)
        with pytest.raises(OutputError, match="yourself"):
            write_to(out)
        assert snapshot(out) == before
    if kind != "demo":  # the stubbed demo stops after its output check
        earlier = copy_of(
            world, kind, tmp_path / ("earlier.parquet" if kind == "stations table" else "earlier")
        )
        write_to(earlier)
        assert temporaries(tmp_path) == []


# -- temporaries of a killed write -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process that has ended."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    pid = int(done.stdout)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    pytest.skip(f"pid {pid} was reused at once")


def _leave_temporaries(target: Path, dead: int) -> tuple[list[Path], list[Path]]:
    """Temporaries beside ``target``: (those of a dead process, which must go; others, which must stay)."""
    stale = [
        target.with_name(f".{target.name}.tmp-{dead}-0123abcd"),
        target.with_name(f".{target.name}.old-{dead}-4567cdef"),
    ]
    kept = [
        target.with_name(f".{target.name}.tmp-{os.getppid()}-89abcdef"),  # a write in progress elsewhere
        target.with_name(f".other.tmp-{dead}-0123abcd"),  # another target's
        target.with_name(f".{target.name}.tmp-0123abcd"),  # not cellsynth's naming
        target.with_name(f"{target.name}.tmp-{dead}-0123abcd"),  # not hidden: not cellsynth's naming
    ]
    target.parent.mkdir(parents=True, exist_ok=True)
    for path in stale[:1] + kept[:2]:
        path.mkdir()
        (path / "half-written.parquet").write_text("...")
    for path in stale[1:] + kept[2:]:
        path.write_text("...")
    return stale, kept


def test_a_write_removes_the_stale_temporaries_of_its_target(world, tmp_path, dead_pid):
    data = read(world.generated)
    copy_of(world, "model run", tmp_path / "c" / "run")  # a save killed while saving this run again
    for target, write_to in [
        (tmp_path / "a" / "dataset", lambda out: write(data, out)),
        (tmp_path / "b" / "stations.parquet", lambda out: write_stations(data.stations, out)),
        (tmp_path / "c" / "run" / "generator.json", lambda out: cellsynth.load(world.run).save(out.parent)),
    ]:
        stale, kept = _leave_temporaries(target, dead_pid)
        write_to(target)
        assert not any(p.exists() for p in stale)
        assert all(p.exists() for p in kept)


def test_a_command_removes_the_stale_temporaries_of_its_out(capsys, world, tmp_path, dead_pid):
    command = next(c for c in COMMANDS if c.name == "import csv")
    stale, kept = _leave_temporaries(tmp_path / "out", dead_pid)
    succeeds(capsys, command, world, tmp_path / "out")
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


# -- a full disk, a denied permission ---------------------------------------------------------------------------
def _raise(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


# Where each kind of output does its low-level writing.
LOW_LEVEL_WRITE = {
    "dataset": "pyarrow.parquet.write_table",
    "synthetic city": "pyarrow.parquet.write_table",
    "stations table": "pyarrow.parquet.write_table",
    "model run": "cellsynth.generators.base.save_file",
    "evaluation": "pathlib.Path.write_text",
    "bench": "pathlib.Path.write_text",
    "demo": "pathlib.Path.write_text",
}


@names
def test_a_full_disk_ends_in_one_line_and_keeps_the_earlier_output(
    capsys, world, tmp_path, monkeypatch, command
):
    # The demo writes nothing but its marker before the stub stops it: a new directory, then.
    out = (
        tmp_path / "new"
        if command.kind == "demo"
        else copy_of(world, command.kind, out_for(command, tmp_path))
    )
    before = snapshot(out) if out.exists() else None
    monkeypatch.setattr(LOW_LEVEL_WRITE[command.kind], _raise(errno.ENOSPC))
    message = refused(capsys, command, world, out)
    assert f"cannot write {out}" in message and "No space left on device" in message
    assert "free some disk space" in message
    if before is not None:
        assert snapshot(out) == before
    assert temporaries(tmp_path) == []


@names
def test_a_denied_permission_ends_in_one_line_and_keeps_the_earlier_output(
    capsys, world, tmp_path, monkeypatch, command
):
    # We run as root, where chmod does not stop a write: the rename that publishes every output is denied.
    out = (
        tmp_path / "new"
        if command.kind == "demo"
        else copy_of(world, command.kind, out_for(command, tmp_path))
    )
    before = snapshot(out) if out.exists() else None

    def denied(source, destination):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(destination))

    monkeypatch.setattr(os, "replace", denied)
    message = refused(capsys, command, world, out)
    assert f"cannot write {out}" in message and "Permission denied" in message
    assert "choose an output directory you can write to" in message
    if before is not None:
        assert snapshot(out) == before
    assert temporaries(tmp_path) == []


def test_a_failure_while_swapping_puts_the_earlier_output_back(world, tmp_path, monkeypatch):
    out = copy_of(world, "dataset", tmp_path / "d")
    before = snapshot(out)
    real_replace = os.replace

    def second_rename_fails(source, destination):
        if Path(source).name.startswith(".d.tmp-"):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", second_rename_fails)
    with pytest.raises(OutputError, match="Input/output error; check the output path"):
        write(read(world.generated), out)
    assert snapshot(out) == before and temporaries(tmp_path) == []


def test_the_atomic_writers_name_their_kind(tmp_path):
    with (
        pytest.raises(ValueError, match="replaced as a whole"),
        atomic_directory(tmp_path / "x", "model run"),
    ):
        pass
    with pytest.raises(ValueError, match="unknown output kind"):
        check_output(tmp_path / "x", "thing")
    with atomic_file(tmp_path / "plain.txt") as tmp:  # inside a checked directory: no kind needed
        tmp.write_text("x")
    assert (tmp_path / "plain.txt").read_text() == "x"
