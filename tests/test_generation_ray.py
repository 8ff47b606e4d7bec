"""The Ray engine of ``cellsynth generate`` on a local two-CPU cluster: the same bytes as the local engine,
a worker's error surfacing as itself with the output untouched. One cluster for the module (it takes seconds to
start); skipped where Ray is not installed."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason='ray is not installed (pip install "cellsynth[ray]")')

from cellsynth.data import read, write  # noqa: E402
from cellsynth.data.synthetic import CityConfig, synthesize_city  # noqa: E402
from cellsynth.errors import DataError, OutputError  # noqa: E402
from cellsynth.generation import ChunkPlan, generate_dataset  # noqa: E402
from cellsynth.generation.ray_engine import _explained  # noqa: E402
from cellsynth.generators import get, get_class  # noqa: E402

pytestmark = pytest.mark.slow  # starts a Ray cluster: seconds, not the suite's usual milliseconds


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    city = synthesize_city(CityConfig(n_stations=12, n_users=8, weeks=2))
    get("vae", get_class("vae").smoke_config()).fit(city.traffic, progress=False).save(root / "stations")
    return root, city


def _tables(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def test_ray_writes_the_bytes_the_local_engine_writes(cluster, model, tmp_path):
    root, city = model
    plan = ChunkPlan("stations", city.traffic.stations, batch=5, samples=2, seed=4)
    generate_dataset(root / "stations", plan, tmp_path / "ray", engine="ray", workers=2)
    generate_dataset(root / "stations", plan, tmp_path / "local")
    ray_files = _tables(tmp_path / "ray")
    assert ray_files == _tables(tmp_path / "local")
    assert sorted(ray_files)[1:4] == [f"stations.parquet/part-0000{i}.parquet" for i in range(3)]
    assert read(tmp_path / "ray").n_stations == 24


def test_a_workers_error_is_the_error_and_the_output_stays(cluster, model, tmp_path):
    root, city = model
    out = tmp_path / "out"
    write(city.traffic, out)
    before = _tables(out)
    plan = ChunkPlan("stations", city.traffic.stations, batch=5, samples=0)  # every worker's generate refuses
    with pytest.raises(DataError, match="samples must be a positive integer, got 0"):
        generate_dataset(root / "stations", plan, out, engine="ray", workers=1)
    assert _tables(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_killed_worker_is_named():
    explained = _explained(ray.exceptions.ActorDiedError())
    message = str(explained)
    assert isinstance(explained, OutputError)
    assert message.startswith("generation on Ray failed (ActorDiedError") and "output is unchanged" in message
    assert "\n" not in message and "starts again from the first chunk" in message


def _our_map_workers() -> list[int]:
    """The pids of this test cluster's Ray Data workers (``ray::MapWorker...``): grandchildren of this process
    (this process started the raylet, the raylet the workers), so another Ray on the machine is left alone."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found = []
    for pid, parent in parents.items():
        if parents.get(parent) != os.getpid():
            continue
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if title.startswith(b"ray::MapWorker"):
            found.append(pid)
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the Ray worker to kill through /proc (Linux)")
def test_a_worker_killed_mid_run_is_restarted_and_the_output_is_whole(cluster, model, tmp_path):
    """SIGKILL the only worker once it has written its first part: the chunks after it can only come from the
    worker Ray restarts, and the output is still the local engine's, with no trace of the killed attempt."""
    root, city = model
    plan = ChunkPlan("stations", city.traffic.stations, batch=1, samples=2, seed=5)  # 12 chunks, one worker
    failure: list[BaseException] = []

    def run():
        try:
            generate_dataset(root / "stations", plan, tmp_path / "ray", engine="ray", workers=1)
        except BaseException as err:
            failure.append(err)

    thread = threading.Thread(target=run)
    thread.start()
    written: list[Path] = []
    # Generous: on a loaded machine the first part took more than 120 s (the loop ends at the first part).
    deadline = time.monotonic() + 600
    while not written and time.monotonic() < deadline:
        written = list(tmp_path.glob(".ray.tmp-*/traffic.parquet/part-*.parquet"))
        time.sleep(0.02)
    workers = _our_map_workers()
    written = list(tmp_path.glob(".ray.tmp-*/traffic.parquet/part-*.parquet"))
    assert len(workers) == 1 and 1 <= len(written) < plan.chunks and thread.is_alive()
    os.kill(workers[0], signal.SIGKILL)
    thread.join(timeout=600)
    assert not thread.is_alive() and not failure, failure
    generate_dataset(root / "stations", plan, tmp_path / "local")
    assert _tables(tmp_path / "ray") == _tables(tmp_path / "local")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local", "ray"]
