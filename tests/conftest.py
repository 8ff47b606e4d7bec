"""Fixtures shared by the whole suite."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hypothesis import HealthCheck, settings

# CI machines have 2 cores; keep property tests quick and deterministic there.
settings.register_profile(
    "ci", max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=60, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CELLSYNTH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Every test runs torch on one thread: the suite's networks are tiny, gain nothing from intra-op
    threads, and on a 2-core machine running two pytest workers, OpenMP threads wait on each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (real public data); skips the test where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real data not found at {SHARED_DATA} (set CELLSYNTH_SHARED_DATA or put shared/ beside the repo)"
        )
    return SHARED_DATA


def shared_file(shared_data: Path, relative: str) -> Path:
    """A file under ``shared_data``, skipping the test with a reason if that one file is missing."""
    path = shared_data / relative
    if not path.exists():
        pytest.skip(f"{path} is missing from the shared data")
    return path


def assert_config_holds(validated, given: dict) -> None:
    """Every value of ``given`` (a config file's mapping, flat or nested, old field names included) is the
    validated config's value, so a file's settings are neither dropped nor renamed silently."""
    dumped = validated.model_dump()
    for key, value in given.items():
        # an old flat name, unless it names a section that its field moved into (calibration -> calibration.mode)
        path = (key if isinstance(value, dict) else validated.moved_fields.get(key, key)).split(".")
        held = dumped
        for part in path:
            held = held[part]
        if isinstance(value, dict):
            section = getattr(validated, path[0])
            for inner in path[1:]:
                section = getattr(section, inner)
            assert_config_holds(section, value) if hasattr(section, "moved_fields") else _same(held, value)
        else:
            assert held == (tuple(value) if isinstance(value, list) else value), key


def _same(held: dict, value: dict) -> None:
    for k, v in value.items():
        if isinstance(v, dict):
            _same(held[k], v)
        elif isinstance(v, list) and v and all(isinstance(item, dict) for item in v):
            # a list of sub-configs (MSTDiff's sampler candidates): each holds what the file gives it
            assert len(held[k]) == len(v), k
            for held_item, item in zip(held[k], v):
                _same(held_item, item)
        else:
            assert held[k] == (tuple(v) if isinstance(v, list) else v), k


def benchmark_script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported as a module (the scripts are not a package), to call its functions."""
    spec = importlib.util.spec_from_file_location(
        f"benchmarks_{name}", REPO_ROOT / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``cellsynth ARGS`` in this process through the real entry point: ``(exit code, stdout, stderr)``.
    What a subprocess would show, without paying the imports again for every command."""
    from cellsynth.cli import main

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["cellsynth", *map(str, args)])
        monkeypatch.delenv("CELLSYNTH_DEBUG", raising=False)
        with pytest.raises(SystemExit) as exit_:
            main()
        out = capsys.readouterr()
        return exit_.value.code, out.out, out.err

    return run
