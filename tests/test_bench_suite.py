"""The whole station-level benchmark in one call: suites, both protocols, the leaderboard, resume, --jobs, and
one-line errors for a bad suite (issue 23)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from cellsynth.benchmark import make_suite, read_suite, run_benchmark, run_suite
from cellsynth.benchmark.table import format_cell
from cellsynth.data import Stations, StationTraffic, write
from cellsynth.data import read as read_data
from cellsynth.errors import CellsynthError, ConfigError, DataError
from cellsynth.generators import get
from cellsynth.testing import START, tiny_traffic
from tests.conftest import REPO_ROOT, shared_file
from tests.test_cli_errors import one_line_error

SUITES = REPO_ROOT / "benchmarks" / "suites"
FLOORS = ["seasonal-mean", "nearest-station", "recent-weeks"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The shipped smoke suite, every model at its smoke size."""
    out = tmp_path_factory.mktemp("smoke") / "bench"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CELLSYNTH_SMOKE", "1")
        with pytest.warns(UserWarning, match="smoke size"):
            result = run_suite(read_suite(SUITES / "smoke.yaml"), out=out, progress=False, echo=None)
    return out, result


def test_one_leaderboard_for_every_dataset_protocol_and_channel(smoke):
    out, result = smoke
    board = (out / "leaderboard.md").read_text()
    assert board == result.leaderboard
    sections = [line[3:] for line in board.splitlines() if line.startswith("## ")]
    assert sections == [
        "small-city — stations — internet",
        "small-city — stations — sms",
        "small-city — time — internet",
        "small-city — time — sms",
        "other-city — stations — internet",
        "other-city — stations — call",
        "other-city — stations — sms",
    ]
    assert sorted(result.benchmarks) == [
        ("other-city", "stations"),
        ("small-city", "stations"),
        ("small-city", "time"),
    ]
    for dataset, protocol in result.benchmarks:
        results = sorted(p.name for p in (out / dataset / protocol / "results").iterdir())
        assert results == sorted(f"{m}__seed{s}.json" for m in [*FLOORS, "vae"] for s in (0, 1))
    # A cell of the board is the mean ± std over seeds of the stored results.
    maes = [
        json.loads((out / "small-city" / "time" / "results" / f"vae__seed{s}.json").read_text())["scores"][
            "held_out"
        ]["metrics"]["sms"]["mae"]["value"]
        for s in (0, 1)
    ]
    section = board.split("## small-city — time — sms")[1].split("## ")[0]
    vae_row = next(line for line in section.splitlines() if line.startswith("| vae |"))
    assert format_cell(np.mean(maes), np.std(maes, ddof=1)) in vae_row
    header = next(line for line in section.splitlines() if line.startswith("| Model"))
    for column in ("MAE", "RMSE", "JSD", "Log JSD", "Diff. JSD", "Daily RMSE", "Weekly profile err."):
        assert f"| {column} |" in header
    assert "Memorisation" in header and "Fit (s)" in header and "Station-weeks/s" in header
    assert section.count("**") >= 2 * 7  # a best per metric column
    # The floors replay training weeks: the memorisation check says so, in both protocols.
    assert "**copying** (2/2 runs)" in next(
        line for line in section.splitlines() if "| nearest-station" in line
    )
    saved = json.loads((out / "leaderboard.json").read_text())
    assert [(b["dataset"], b["protocol"], b["directory"]) for b in saved["benchmarks"]] == [
        ("small-city", "stations", "small-city/stations"),
        ("small-city", "time", "small-city/time"),
        ("other-city", "stations", "other-city/stations"),
    ]


def test_the_time_protocol_scores_the_last_weeks_of_the_same_stations(smoke):
    out, _ = smoke
    saved = json.loads((out / "small-city" / "time" / "results.json").read_text())
    assert saved["protocol"] == "time" and saved["split"]["held_out_ids"] == []
    assert saved["split"]["train_stations"] == saved["split"]["held_out_stations"] == 12
    assert saved["split"]["train_span"][1] == saved["split"]["held_out_span"][0]  # 2 weeks, then the third
    run = next(r for r in saved["runs"] if r["model"] == "recent-weeks")
    memo = run["scores"]["held_out"]["memorisation"]
    assert memo["held_out_series_are"] == "real weeks after the training data" and memo["flagged"]
    assert "train" not in run["scores"]  # train_stations: 0


def test_a_killed_suite_recomputes_only_the_cell_it_lost(smoke):
    out, first = smoke
    lost = out / "small-city" / "time" / "results" / "vae__seed1.json"
    before = json.loads(lost.read_text())
    lost.unlink()
    kept = {p: p.stat().st_mtime_ns for p in out.glob("*/*/results/*.json")}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CELLSYNTH_SMOKE", "1")
        with pytest.warns(UserWarning, match="smoke size"):
            again = run_suite(read_suite(SUITES / "smoke.yaml"), out=out, progress=False, echo=None)
    assert first.reused == [] and len(again.reused) == 3 * 4 * 2 - 1
    assert ("small-city", "time", "vae", 1) not in again.reused
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())  # nothing else was run again
    assert json.loads(lost.read_text())["scores"] == before["scores"]  # the saved model, the same numbers


def _floors_suite(tmp_path: Path) -> Path:
    city = tmp_path / "data"
    write(tiny_traffic(n=8, weeks=3), city)
    (tmp_path / "s.yaml").write_text(
        yaml.safe_dump(
            {
                "models": FLOORS,
                "seeds": 2,
                "protocol": "both",
                "samples": 3,
                "datasets": {"tiny": {"path": "data"}},
            }
        )
    )
    return tmp_path / "s.yaml"


def test_jobs_in_parallel_processes_give_the_numbers_of_one_process(tmp_path):
    suite = read_suite(_floors_suite(tmp_path))
    run_suite(suite, out=tmp_path / "one", jobs=1, progress=False, echo=None)
    run_suite(suite, out=tmp_path / "two", jobs=2, progress=False, echo=None)
    files = sorted((tmp_path / "one").glob("tiny/*/results/*.json"))
    assert len(files) == 2 * 3 * 2
    for path in files:
        twin = tmp_path / "two" / path.relative_to(tmp_path / "one")
        assert json.loads(path.read_text())["scores"] == json.loads(twin.read_text())["scores"]


def test_recent_weeks_carries_the_level_of_stations_whose_load_doubled(tmp_path):
    """The issue's LTE cells: load doubled in the last weeks; the recent-weeks floor draws the recent level,
    the whole-history floor the average one (future-weeks protocol)."""
    data = tiny_traffic(n=6, weeks=6)
    factor = np.where(np.arange(data.n_steps) >= 168 * 3, 2.0, 1.0)
    doubled = StationTraffic(data.values * factor[None, :, None], START, "1h", data.channels, data.stations)
    result = run_benchmark(
        doubled,
        ["seasonal-mean", "recent-weeks"],
        out=tmp_path,
        protocol="time",
        test_fraction=1 / 6,
        seeds=1,
        samples=2,
        configs={"recent-weeks": {"weeks": 2}},
        echo=None,
    )
    scores = {m: result.summary[m]["held_out"]["internet"] for m in ("seasonal-mean", "recent-weeks")}
    for metric in ("mae", "value_jsd", "log_value_jsd"):
        assert scores["recent-weeks"][metric]["mean"] < 0.7 * scores["seasonal-mean"][metric]["mean"], metric
    assert "later weeks of the same stations" in result.table


def test_a_variant_row_is_its_model_with_its_settings(tmp_path):
    """An ablation in the suite: the variant row trains its model with the model's configs and its own ``set``
    on top, scores exactly as the model run with those settings, and keeps the model's row beside it."""
    write(tiny_traffic(n=10, weeks=1), tmp_path / "data")
    suite = make_suite(
        {
            "models": ["seasonal-mean", "seasonal-mean-1nn"],
            "variants": {"seasonal-mean-1nn": {"model": "seasonal-mean", "set": {"neighbours": 1}}},
            "configs": {"seasonal-mean": {"neighbours": 3}},
            "seeds": 1,
            "samples": 2,
            "datasets": {"tiny": {"path": "data"}},
        },
        base=tmp_path,
    )
    result = run_suite(suite, out=tmp_path / "suite", progress=False, echo=None)
    records = {
        row: json.loads((tmp_path / "suite" / "results" / f"{row}__seed0.json").read_text())
        for row in suite.models
    }
    assert records["seasonal-mean"]["config"]["neighbours"] == 3
    assert records["seasonal-mean-1nn"]["config"]["neighbours"] == 1
    assert {r["generator"] for r in records.values()} == {"seasonal-mean"}
    direct = run_benchmark(
        read_data(tmp_path / "data"),
        ["seasonal-mean"],
        out=tmp_path / "direct",
        seeds=1,
        samples=2,
        configs={"seasonal-mean": {"neighbours": 1}},
        echo=None,
    )
    assert records["seasonal-mean-1nn"]["scores"] == direct.runs[0]["scores"]
    assert records["seasonal-mean-1nn"]["scores"] != records["seasonal-mean"]["scores"]
    assert '- Variant seasonal-mean-1nn: seasonal-mean with {"neighbours": 1}.' in result.leaderboard
    assert "| seasonal-mean-1nn |" in result.leaderboard


@pytest.mark.parametrize(
    ("models", "generators", "fragment"),
    [
        (["vae"], {"vae": "seasonal-mean"}, "variant 'vae': vae is a registered generator"),
        (["x"], {"x": "nope"}, "variant 'x': unknown generator 'nope'"),
        (
            ["seasonal-mean"],
            {"x": "seasonal-mean"},
            "generators given for rows that are not benchmarked: ['x']",
        ),
    ],
)
def test_run_benchmark_refuses_a_bad_variant_before_writing(tmp_path, models, generators, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        run_benchmark(
            tiny_traffic(n=6, weeks=1), models, out=tmp_path / "b", generators=generators, echo=None
        )
    assert not (tmp_path / "b").exists()


# -- a bad suite: one line naming the file and the key, before anything is written -----------------------------
def _one_week(path: Path, *, features: bool = True) -> None:
    data = tiny_traffic(n=6, weeks=1)
    if not features:
        data = StationTraffic(data.values, data.start, data.step, data.channels, Stations(data.stations.ids))
    write(data, path)


BAD_SUITES = [
    (
        "unknown-model",
        {"models": ["seasonal-mean", "nope"]},
        ConfigError,
        ["models[1]", "unknown generator 'nope'"],
    ),
    ("unknown-key", {"sedes": 3}, ConfigError, ["sedes", "Extra inputs"]),
    ("dataset-key", {"datasets": {"a": {"pth": "week"}}}, ConfigError, ["datasets.a.pth", "Extra inputs"]),
    (
        "no-path",
        {"datasets": {"a": {"path": "nowhere"}}},
        ConfigError,
        ["datasets.a: path:", "does not exist"],
    ),
    (
        "format",
        {"datasets": {"a": {"path": "week", "import": {"format": "grid"}}}},
        ConfigError,
        ["datasets.a: import.format: 'grid' is not a station-traffic format"],
    ),
    (
        "import-option",
        {"datasets": {"a": {"path": "week", "import": {"format": "stkdiff", "colour": 1}}}},
        ConfigError,
        ["datasets.a: import.colour: stkdiff takes no option 'colour'"],
    ),
    (
        "resample",
        {"datasets": {"a": {"path": "week", "resample": "90min"}}},
        ConfigError,
        ["datasets.a: resample: cannot resample data at a 1h step to 90min", "not a whole multiple"],
    ),
    (
        "channel",
        {"datasets": {"a": {"path": "week", "channels": ["call"]}}},
        ConfigError,
        ["datasets.a: channels: ['call'] are not channels"],
    ),
    (
        "no-features",
        {"datasets": {"a": {"path": "bare"}}},
        DataError,
        ["datasets.a (protocol stations)", "neither feature columns nor coordinates", "protocol 'time'"],
    ),
    (
        "one-week-by-time",
        {"datasets": {"a": {"path": "week", "protocols": ["time"]}}},
        DataError,
        ["datasets.a (protocol time)", "at least 2 whole weeks", "split by station instead"],
    ),
    (
        "configs",
        {"configs": {"vae": {"epochs": 1}}},
        ConfigError,
        ["configs.vae: vae is not one of the models"],
    ),
    ("protocol", {"protocol": "future"}, ConfigError, ["protocol:", "'stations', 'time' or 'both'"]),
    (
        "variant-named-as-a-model",
        {"models": ["vae"], "variants": {"vae": {"model": "seasonal-mean"}}},
        ConfigError,
        ["variants.vae: vae is a registered generator", "a name of its own"],
    ),
    (
        "variant-of-nothing",
        {"models": ["x"], "variants": {"x": {"model": "nope"}}},
        ConfigError,
        ["variants.x: unknown generator 'nope'"],
    ),
    (
        "variant-not-listed",
        {"variants": {"x": {"model": "vae", "set": {"epochs": 1}}}},
        ConfigError,
        ["variants.x: not one of the models", "list it there"],
    ),
    (
        "variant-key",
        {"models": ["x"], "variants": {"x": {"model": "vae", "sets": {}}}},
        ConfigError,
        ["variants.x.sets", "Extra inputs"],
    ),
]


@pytest.mark.parametrize(
    ("change", "error", "fragments"), [c[1:] for c in BAD_SUITES], ids=[c[0] for c in BAD_SUITES]
)
def test_a_bad_suite_is_one_line_naming_the_file_and_key(tmp_path, change, error, fragments):
    _one_week(tmp_path / "week")
    _one_week(tmp_path / "bare", features=False)
    values = {"models": ["seasonal-mean"], "seeds": 1, "datasets": {"a": {"path": "week"}}} | change
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(values))
    with pytest.raises(error) as raised:
        run_suite(read_suite(tmp_path / "suite.yaml"), out=tmp_path / "out", echo=None)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'suite.yaml'}: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert not (tmp_path / "out").exists()


def _shipped_with_one_dataset(file: str, dataset: str):
    """The shipped suite ``file`` with its ``datasets:`` cut to ``dataset``."""
    values = yaml.safe_load((SUITES / file).read_text())
    return make_suite({**values, "datasets": {dataset: values["datasets"][dataset]}}, base=SUITES, where=file)


def test_the_shipped_real_suite_is_valid(shared_data):
    """benchmarks/suites/stations-real.yaml names real models and keys; with the real data beside the repo, every
    dataset reads and splits under its protocols (nothing is trained)."""
    suite = read_suite(SUITES / "stations-real.yaml")
    assert "nearest-station" in suite.models and "recent-weeks" in suite.models
    assert suite.protocols_of("milan") == ["time"] and suite.protocols_of("beijing") == ["stations"]
    shared_file(shared_data, "beijing-stkdiff/beijing.npz")
    from cellsynth.benchmark.suite import load_datasets

    (loaded,) = load_datasets(_shipped_with_one_dataset("stations-real.yaml", "beijing"))
    assert (
        loaded.traffic.values.shape == (960, 168, 1)
        and loaded.configs["stouter"]["extensions"]["level_model"] == "none"
    )
    # Nanchang's user counts at the level-daily scale, its traffic pooled (configs/user-counts)
    shared_file(shared_data, "uomo-nanchang/traffic.csv.gz")
    (loaded,) = load_datasets(_shipped_with_one_dataset("stations-real.yaml", "nanchang"))
    config = get("stouter", loaded.configs["stouter"], preset="recommended").config
    assert config.extensions.shape_scales(loaded.traffic.channels) == ["pooled", "level-daily"]


def test_the_shipped_ablation_suite_removes_one_part_of_stouter_per_row(shared_data):
    """benchmarks/suites/stouter-ablation.yaml: each variant is STOUTER with one part removed and otherwise the
    leaderboard's settings, so that its full rows are the real suite's (nothing is trained)."""
    from cellsynth.benchmark.run import plan_benchmark
    from cellsynth.benchmark.suite import load_datasets
    from cellsynth.generators.presets import merge_config

    suite = read_suite(SUITES / "stouter-ablation.yaml")
    real = read_suite(SUITES / "stations-real.yaml")
    assert set(suite.generators.values()) == {"stouter"} and len(suite.models) == 6
    same = (
        "seeds",
        "budget",
        "min_steps",
        "samples",
        "test_fraction",
        "split_seed",
        "train_stations",
        "preset",
        "protocol",
    )
    assert all(getattr(suite, key) == getattr(real, key) for key in same)
    assert all(suite.datasets[name] == real.datasets[name] for name in suite.datasets)
    shared_file(shared_data, "uomo-nanchang/traffic.csv.gz")
    one = _shipped_with_one_dataset("stouter-ablation.yaml", "nanchang")
    (loaded,) = load_datasets(one)
    plan = plan_benchmark(
        loaded.traffic,
        one.models,
        out=Path("unused"),
        seeds=1,
        budget=30,
        configs=loaded.configs,
        generators=one.generators,
    )
    configs = {row: plan.configs[row, 0] for row in one.models}
    removed = {
        "stouter-no-stffm": {"use_stffm": False},
        "stouter-no-ft": {"use_temporal": False},
        "stouter-no-fs": {"use_spatial": False},
        "stouter-no-level": {"extensions": {"level_model": "none", "shape_scale": "pooled"}},
        "stouter-no-floor": {"extensions": {"training_floor": False}},
    }
    assert set(removed) == set(one.models) - {"stouter"}
    for row, change in removed.items():
        assert configs[row] == merge_config(configs["stouter"], change), row


# -- the command line ------------------------------------------------------------------------------------------
def test_bench_takes_several_datasets_and_writes_one_leaderboard(tmp_path):
    from typer.testing import CliRunner

    from cellsynth.cli import app

    write(tiny_traffic(n=6, weeks=2), tmp_path / "north")
    write(tiny_traffic(n=5, weeks=2, seed=3), tmp_path / "south")
    args = ["bench", "--data", tmp_path / "north", "--data", tmp_path / "south", "--out", tmp_path / "b"]
    args += ["--models", "seasonal-mean,nearest-station", "--seeds", 1, "--first-seed", 2, "--samples", 2]
    args += ["--epochs", 3, "--min-steps", 50]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--no-progress"]], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert {p.name for p in (tmp_path / "b").rglob("*seed*.json")} == {
        "nearest-station__seed2.json",
        "seasonal-mean__seed2.json",
    }
    board = (tmp_path / "b" / "leaderboard.md").read_text()
    assert "## north — stations — internet" in board and "## south — stations — sms" in board
    assert "same 3 epochs" in board and "at least 50 optimiser steps" in board
    assert (tmp_path / "b" / "south" / "stations" / "table.md").exists()


def test_bench_refuses_a_suite_and_options_together(cli, tmp_path):
    one_line_error(
        cli("bench", "--suite", SUITES / "smoke.yaml", "--out", tmp_path / "b", "--min-steps", "9"),
        "--min-steps: the suite file",
        "give either --suite or the options",
    )
    one_line_error(
        cli("bench", "--suite", SUITES / "smoke.yaml", "--out", tmp_path / "b", "--models", "vae"),
        "--models: the suite file",
        "give either --suite or the options",
    )
    one_line_error(cli("bench", "--out", tmp_path / "b"), "bench needs --data", "--suite")
    assert not (tmp_path / "b").exists()


def test_a_bad_suite_file_is_one_line_on_the_command_line(cli, tmp_path):
    (tmp_path / "s.yaml").write_text("models: [seasonal-mean\n")
    one_line_error(
        cli("bench", "--suite", tmp_path / "s.yaml", "--out", tmp_path / "b"), "s.yaml", "not valid YAML"
    )
    (tmp_path / "s.yaml").write_text("models: [nope]\ndatasets: {a: {synthetic: {}}}\n")
    one_line_error(
        cli("bench", "--suite", tmp_path / "s.yaml", "--out", tmp_path / "b"), "models[0]", "'nope'"
    )


def test_errors_are_cellsynth_errors():
    with pytest.raises(CellsynthError, match="datasets: no datasets"):
        make_suite({"datasets": {}})
