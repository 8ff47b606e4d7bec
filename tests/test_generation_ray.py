"""The Ray engine of ``cellsynth generate`` on a local two-CPU cluster: the same bytes as the local engine,
a worker's error surfacing as itself with the output untouched. One cluster for the module (it takes seconds to
start); skipped where Ray is not installed."""

from __future__ import annotations

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
