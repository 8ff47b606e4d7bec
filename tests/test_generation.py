"""Generation in chunks (cellsynth.generation) and multi-part datasets (cellsynth.data.io): each chunk's seed,
one chunk = the plain generate call, chunk-size invariance of the plumbing, multi-part round trips, atomicity,
and the command line's errors. The Ray engine is tested in test_generation_ray.py."""

from __future__ import annotations

import builtins
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import cellsynth.generation.chunks as chunks_module
from cellsynth.cli import app
from cellsynth.data import Stations, StationTraffic, UserMobility, read, write
from cellsynth.data.io import write_part
from cellsynth.data.samples import stack_samples
from cellsynth.data.synthetic import CityConfig, synthesize_city
from cellsynth.errors import CellsynthError, ConfigError, DataError, OutputError
from cellsynth.generation import ChunkPlan, chunk_seed, generate_chunk, generate_dataset
from cellsynth.generators import get, get_class
from cellsynth.seeds import MAX_SEED

runner = CliRunner()


@pytest.fixture(scope="module")
def city():
    return synthesize_city(CityConfig(n_stations=12, n_users=8, weeks=2))


@pytest.fixture(scope="module")
def station_model(city):
    return get("vae", get_class("vae").smoke_config()).fit(city.traffic, progress=False)


@pytest.fixture(scope="module")
def user_model(city):
    return get("markov").fit(city.users, progress=False)


def _tables(directory: Path) -> dict[str, bytes]:
    """Every file of a dataset directory (parts included), by relative path: the bytes written."""
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_chunk_seeds_start_at_the_seed_and_differ_per_chunk():
    assert chunk_seed(7, 0) == 7
    seeds = [chunk_seed(7, i) for i in range(50)]
    assert len(set(seeds)) == 50 and all(0 <= s <= MAX_SEED for s in seeds)
    assert seeds == [chunk_seed(7, i) for i in range(50)]  # a function of (seed, chunk) only
    assert chunk_seed(8, 1) != chunk_seed(7, 1)


def test_one_chunk_is_the_plain_generate_call(city, station_model, tmp_path):
    target = city.traffic.stations
    plan = ChunkPlan("stations", target, batch=len(target), samples=2, seed=3)
    generate_dataset(station_model, plan, tmp_path / "g")
    assert (tmp_path / "g" / "traffic.parquet").is_file()  # the single-file layout
    assert read(tmp_path / "g").equals(station_model.generate(target, samples=2, seed=3))


def test_many_chunks_are_the_chunks_generate_calls_in_parts(city, station_model, tmp_path):
    target = city.traffic.stations
    plan = ChunkPlan("stations", target, batch=5, samples=2, seed=3)
    assert plan.chunks == 3 and plan.bounds(2) == (10, 12)
    generate_dataset(station_model, plan, tmp_path / "g")
    parts = sorted(p.name for p in (tmp_path / "g" / "traffic.parquet").iterdir())
    assert parts == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    got = read(tmp_path / "g")
    expected = [
        station_model.generate(target.subset(np.arange(*plan.bounds(i))), samples=2, seed=chunk_seed(3, i))
        for i in range(3)
    ]
    assert got.stations.ids.tolist() == [f"{sid}#{k}" for sid in target.ids for k in range(2)]
    np.testing.assert_array_equal(got.values, np.concatenate([e.values for e in expected]))
    # the same plan again: the same bytes
    generate_dataset(station_model, plan, tmp_path / "again")
    assert _tables(tmp_path / "g") == _tables(tmp_path / "again")


class _StationFunction:
    """A stand-in generator whose weeks are a function of the station alone (it ignores the seed): chunked
    output must then be the same whatever the chunk size, which checks the parts' order, ids and layout."""

    kind = "stations"

    def generate(self, target: Stations, *, samples=1, seed=0):
        codes = np.array([float(sum(map(ord, sid))) for sid in target.ids], dtype=np.float32)
        values = codes[:, None, None, None] * np.arange(1, samples + 1)[None, :, None, None]
        values = np.broadcast_to(values, (len(target), samples, 24, 2)) + np.arange(24)[None, None, :, None]
        start = pd.Timestamp("2026-01-05", tz="UTC")
        return stack_samples(target, values, start=start, step=pd.Timedelta("1h"), channels=("a", "b"))


@pytest.mark.parametrize("batch", [1, 4, 5, 12, 100])
def test_chunk_size_changes_nothing_but_the_seeds(city, tmp_path, batch):
    target = city.traffic.stations
    generate_dataset(_StationFunction(), ChunkPlan("stations", target, batch=12, samples=3), tmp_path / "one")
    generate_dataset(
        _StationFunction(), ChunkPlan("stations", target, batch=batch, samples=3), tmp_path / "many"
    )
    assert read(tmp_path / "many").equals(read(tmp_path / "one"))


def test_drawn_stations_are_numbered_across_chunks(station_model, tmp_path):
    plan = ChunkPlan("stations", 7, batch=3, samples=2, seed=1)
    generate_dataset(station_model, plan, tmp_path / "g")
    ids = read(tmp_path / "g").stations.ids
    assert [sid.rpartition("@")[2] for sid in ids] == [f"{j}#{k}" for j in range(7) for k in range(2)]
    first_chunk = station_model.generate(3, samples=2, seed=1)
    assert ids[:6].tolist() == first_chunk.stations.ids.tolist()
    last = generate_chunk(station_model, plan, 2)
    assert last.stations.ids.tolist() == [
        f"{ids[12].rpartition('@')[0]}@6#0",
        f"{ids[13].rpartition('@')[0]}@6#1",
    ]


def test_users_in_chunks(user_model, tmp_path):
    plan = ChunkPlan("users", 10, batch=4, seed=2)
    generate_dataset(user_model, plan, tmp_path / "u")
    assert (tmp_path / "u" / "stations.parquet").is_file()
    assert len(list((tmp_path / "u" / "mobility.parquet").iterdir())) == 3
    users = read(tmp_path / "u")
    assert users.user_ids == tuple(f"u{j}" for j in range(10))
    np.testing.assert_array_equal(users.locations[:4], user_model.generate(4, seed=2).locations)
    np.testing.assert_array_equal(
        users.locations[8:], user_model.generate(2, seed=chunk_seed(2, 2)).locations
    )


def _traffic(ids, repaired_at=None) -> StationTraffic:
    rng = np.random.default_rng(0)
    values = rng.gamma(2.0, size=(len(ids), 30, 2)).astype(np.float32)
    repaired = None
    if repaired_at is not None:
        repaired = np.zeros(values.shape, bool)
        repaired[repaired_at] = True
    stations = Stations(np.array(ids, dtype=object), features=rng.normal(size=(len(ids), 2)))
    return StationTraffic(
        values, pd.Timestamp("2026-03-01", tz="Europe/Rome"), "10min", ("x", "y"), stations, repaired=repaired
    )


def test_multi_part_round_trip(tmp_path):
    whole = _traffic([f"s{i}" for i in range(7)], repaired_at=(5, 3, 1))
    bounds = [(0, 3), (3, 6), (6, 7)]
    for part, (a, b) in enumerate(bounds):
        index = np.arange(a, b)
        piece = StationTraffic(
            whole.values[index],
            whole.start,
            whole.step,
            whole.channels,
            whole.stations.subset(index),
            repaired=whole.repaired[index],
        )
        write_part(piece, tmp_path, part=part, parts=3)
    got = read(tmp_path)
    assert got.equals(whole) and np.array_equal(got.repaired, whole.repaired)

    mobility = UserMobility(
        np.arange(5 * 6).reshape(5, 6) % 7,
        whole.start,
        whole.step,
        whole.stations,
        np.ones((5, 6)),
        ("a", "b", "c", "d", "e"),
    )
    for part, (a, b) in enumerate([(0, 2), (2, 5)]):
        index = np.arange(a, b)
        write_part(mobility.select_users(index), tmp_path / "m", part=part, parts=2)
    assert read(tmp_path / "m").equals(mobility)


def test_parts_on_different_time_axes_are_an_error_naming_the_part(tmp_path):
    whole = _traffic(["a", "b"])
    write_part(whole.select_stations(np.array([0])), tmp_path, part=0, parts=2)
    later = whole.select_stations(np.array([1]))
    shifted = StationTraffic(
        later.values, later.start + pd.Timedelta("1h"), later.step, later.channels, later.stations
    )
    write_part(shifted, tmp_path, part=1, parts=2)
    with pytest.raises(
        DataError, match=r"part-00001.parquet: its time axis or channels .* differ from part-00000"
    ):
        read(tmp_path)

    mobility = UserMobility(
        np.zeros((2, 6), int), whole.start, whole.step, whole.stations, np.ones((2, 6)), ("u", "v")
    )
    write_part(mobility.select_users(np.array([0])), tmp_path / "m", part=0, parts=2)
    second = mobility.select_users(np.array([1]))
    without_traffic = UserMobility(second.locations, second.start, second.step, second.stations, None, ("v",))
    write_part(without_traffic, tmp_path / "m", part=1, parts=2)
    with pytest.raises(DataError, match=r"its time axis or has_traffic .* differ from part-00000"):
        read(tmp_path / "m")


def test_incomplete_or_foreign_parts_are_errors(tmp_path):
    whole = _traffic(["a", "b", "c"])
    for part in (0, 2):  # part 1 of 3 never written
        index = np.array([part])
        write_part(whole.select_stations(index), tmp_path, part=part, parts=3)
    with pytest.raises(
        DataError, match=r"2 parts where .* counts 3 \(missing: part-00001.parquet\).*incomplete"
    ):
        read(tmp_path)
    write_part(whole.select_stations(np.array([1])), tmp_path, part=1, parts=3)
    assert read(tmp_path).equals(whole)
    (tmp_path / "traffic.parquet" / ".part-00001.parquet.tmp-1-0123abcd").write_bytes(b"half")
    with pytest.raises(
        DataError, match=r"traffic.parquet: .*only part-NNNNN.parquet files, not \.part-00001"
    ):
        read(tmp_path)


def test_a_failed_chunk_leaves_the_output_and_its_neighbours_as_they_were(
    city, station_model, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    write(city.traffic, out)  # an earlier dataset, replaced only by a complete one
    before = _tables(out)
    (tmp_path / "notes.txt").write_text("mine")
    written = []

    def failing_write_part(data, directory, *, part, parts):
        if part == 2:
            raise OSError(28, "No space left on device")
        write_part(data, directory, part=part, parts=parts)
        written.append(part)

    monkeypatch.setattr(chunks_module, "write_part", failing_write_part)
    with pytest.raises(OutputError, match="No space left on device.*unchanged"):
        generate_dataset(station_model, ChunkPlan("stations", city.traffic.stations, batch=4), out)
    assert written == [0, 1]
    assert _tables(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt", "out"]  # no staging directory left
    assert (tmp_path / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("workers", [2, 3, 10])
def test_local_workers_write_the_bytes_of_one_worker(city, station_model, user_model, tmp_path, workers):
    target = city.traffic.stations
    plan = ChunkPlan("stations", target, batch=4, samples=2, seed=5)
    threads = torch.get_num_threads()
    generate_dataset(station_model, plan, tmp_path / "one")
    generate_dataset(station_model, plan, tmp_path / "many", workers=workers)
    assert _tables(tmp_path / "many") == _tables(tmp_path / "one")
    users = ChunkPlan("users", 9, batch=2, seed=5)
    generate_dataset(user_model, users, tmp_path / "u1")
    generate_dataset(user_model, users, tmp_path / "u2", workers=workers)
    assert _tables(tmp_path / "u2") == _tables(tmp_path / "u1")
    assert torch.get_num_threads() == threads  # shared out during the run, given back after


def test_local_workers_share_out_torch_threads(city, tmp_path, monkeypatch):
    seen = []

    class Recorder(_StationFunction):
        def generate(self, target, **kwargs):
            seen.append(torch.get_num_threads())
            return super().generate(target, **kwargs)

    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    set_to = []
    monkeypatch.setattr(torch, "set_num_threads", set_to.append)
    generate_dataset(
        Recorder(), ChunkPlan("stations", city.traffic.stations, batch=3), tmp_path / "g", workers=2
    )
    assert set_to == [2, 4]  # two threads each for the run, then the four given back
    assert len(seen) == 4


def test_overlapping_runs_give_back_the_thread_count_from_before_the_first(monkeypatch):
    """Two runs at once in one program (A starts, B starts, A ends, B ends) leave torch's thread count as it
    was before A, not at the count A had set when B began."""
    count = [4]
    monkeypatch.setattr(torch, "get_num_threads", lambda: count[0])
    monkeypatch.setattr(torch, "set_num_threads", lambda n: count.__setitem__(0, n))
    a, b = chunks_module.shared_torch_threads(2), chunks_module.shared_torch_threads(4)
    a.__enter__()
    assert count[0] == 2
    b.__enter__()
    assert count[0] == 1  # the latest share of the 4 from before
    a.__exit__(None, None, None)
    assert count[0] == 1  # B still runs
    b.__exit__(None, None, None)
    assert count[0] == 4


def test_a_failed_chunk_among_local_workers_leaves_the_output_as_it_was(
    city, station_model, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    write(city.traffic, out)
    before = _tables(out)
    threads = torch.get_num_threads()

    def failing_write_part(data, directory, *, part, parts):
        if part == 1:
            raise OSError(28, "No space left on device")
        write_part(data, directory, part=part, parts=parts)

    monkeypatch.setattr(chunks_module, "write_part", failing_write_part)
    plan = ChunkPlan("stations", city.traffic.stations, batch=2)
    with pytest.raises(OutputError, match="No space left on device.*unchanged"):
        generate_dataset(station_model, plan, out, workers=2)
    assert _tables(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert torch.get_num_threads() == threads


def test_local_workers_refuse_a_model_that_samples_on_a_gpu(city, station_model, tmp_path, monkeypatch):
    import cellsynth.placement

    monkeypatch.setattr(cellsynth.placement, "resolve_device", lambda accelerator: torch.device("cuda"))
    plan = ChunkPlan("stations", city.traffic.stations, batch=4)
    with pytest.raises(ConfigError, match="samples on the GPU: give --workers 1"):
        generate_dataset(station_model, plan, tmp_path / "g", workers=2)
    assert not (tmp_path / "g").exists()
    generate_dataset(station_model, plan, tmp_path / "g", workers=1)  # one worker: the device is the model's


def test_plan_errors():
    with pytest.raises(
        ConfigError, match=r"--batch-stations 0: give a positive number of stations per chunk"
    ):
        ChunkPlan("stations", 5, batch=0)
    with pytest.raises(ConfigError, match=r"--batch-users -3"):
        ChunkPlan("users", 5, batch=-3)
    with pytest.raises(ConfigError, match="seed"):
        ChunkPlan("users", 5, seed=-1)


@pytest.fixture(scope="module")
def saved_model(city, station_model, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    station_model.save(root / "run")
    write(city.traffic, root / "real")
    return root


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def _cli_error(*args) -> str:
    """The one-line message of the user error (a CellsynthError: `cellsynth` prints it and exits 2) that
    the command ends with."""
    result = _cli(*args)
    assert isinstance(result.exception, CellsynthError), result.output
    message = str(result.exception)
    assert "\n" not in message
    return message


def test_cli_generates_in_parts_and_evaluates_them(saved_model, tmp_path):
    run, real = saved_model / "run", saved_model / "real"
    in_parts = ["generate", "--model", run, "--data", real, "--samples", 2, "--batch-stations", 5]
    result = _cli(*in_parts, "--out", tmp_path / "g")
    assert result.exit_code == 0, result.output
    assert "12 stations in 3 chunks of up to 5" in result.output
    single = _cli("generate", "--model", run, "--data", real, "--samples", 2, "--out", tmp_path / "one")
    assert single.exit_code == 0, single.output
    threaded = _cli(*in_parts, "--workers", 2, "--out", tmp_path / "threads")
    assert threaded.exit_code == 0, threaded.output
    assert _tables(tmp_path / "threads") == _tables(tmp_path / "g")
    assert read(tmp_path / "one").equals(cellsynth_load(run).generate(read(real), samples=2, seed=0))
    result = _cli("evaluate", "--real", real, "--synthetic", tmp_path / "g", "--out", tmp_path / "e")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "e" / "metrics.json").exists()


def cellsynth_load(path):
    import cellsynth

    return cellsynth.load(path)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--batch-stations", 0], "--batch-stations 0: give a positive number of stations per chunk"),
        (["--engine", "spark"], "--engine 'spark': give 'local' or 'ray'"),
        (["--address", "127.0.0.1:1"], "--address is for --engine ray"),
        (["--workers", 0], "--workers 0: give a positive number of workers"),
        (["--engine", "ray", "--workers", 0], "--workers 0: give a positive number of workers"),
        (
            ["--engine", "ray", "--address", "nowhere"],
            "--address 'nowhere': give the cluster's head as HOST:PORT",
        ),
    ],
)
def test_cli_errors(saved_model, tmp_path, options, message):
    assert message in _cli_error(
        "generate", "--model", saved_model / "run", "--n", 3, *options, "--out", tmp_path / "g"
    )
    assert not (tmp_path / "g").exists()


def test_cli_unreachable_cluster_fails_fast_with_exit_code_2(saved_model, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed: the unreachable-address check needs it")
    ray_options = ["--engine", "ray", "--address", "127.0.0.1:1", "--out", tmp_path / "g"]
    began = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cellsynth.cli",
            "generate",
            "--model",
            saved_model / "run",
            "--n",
            "3",
            *ray_options,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "--address 127.0.0.1:1: no Ray cluster answers there" in result.stderr
    assert "ray start --head" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert time.monotonic() - began < 60  # refused at once, not after Ray's minute of retries
    assert not (tmp_path / "g").exists()


def test_cli_without_ray_says_how_to_install_it(saved_model, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    message = _cli_error(
        "generate", "--model", saved_model / "run", "--n", 3, "--engine", "ray", "--out", tmp_path / "g"
    )
    assert message.startswith("--engine ray needs Ray, which is not installed")
    assert 'pip install "cellsynth[ray]"' in message


def test_cli_help_names_the_ray_extra():
    result = _cli("generate", "--help")
    assert result.exit_code == 0, result.output
    assert 'pip install "cellsynth[ray]"' in " ".join(result.output.replace("│", " ").split())
