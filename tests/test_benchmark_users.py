"""The user benchmark: rows and suite files, the tables' marks and noise rows, resume, a separate held-out set,
the stations-table helpers it uses, and the errors a user can cause."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cellsynth.benchmark.users import run_user_benchmark
from cellsynth.benchmark.users_suite import Row, parse_row, parse_rows, read_suite
from cellsynth.benchmark.users_table import (
    NOISE_HALVES,
    NOISE_MARK,
    NOISE_TRAIN,
    render_user_table,
    summarise_users,
)
from cellsynth.cli import app
from cellsynth.data import Stations, UserMobility
from cellsynth.data.loaders import load_location_sequences
from cellsynth.data.locations import keep_top_locations, share_stations
from cellsynth.data.synthetic import synthesize_city
from cellsynth.errors import ConfigError, DataError
from tests.conftest import REPO_ROOT, shared_file

MARKOVS = ["markov", "markov smoothing=1.0"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def city():
    return synthesize_city(n_stations=10, n_users=16, weeks=1, seed=0)


@pytest.fixture(scope="module")
def bench(city, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-users") / "b"
    result = run_user_benchmark(city.users, MARKOVS, out=out, seeds=2, test_fraction=0.25, echo=None)
    return out, result


# -- rows and suites ------------------------------------------------------------------------------------------
def test_parse_row_reads_model_preset_and_nested_overrides():
    row = parse_row("mstdiff (paper) trajectory=false sampling.temperature=0.7")
    assert row == Row(
        "mstdiff (paper) trajectory=false sampling.temperature=0.7",
        "mstdiff",
        "paper",
        {"trajectory": False, "sampling": {"temperature": 0.7}},
    )
    assert parse_row("mstdiff").preset == "recommended"  # the default preset of a model that ships presets
    assert parse_row("mstdiff (none)").preset is None
    assert parse_row("markov").preset is None  # the floors ship none
    assert parse_row("mstdiff (paper)").slug == "mstdiff-paper"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("nosuchmodel", "unknown generator 'nosuchmodel'; available: .*markov"),
        ("markov (paper)", "markov has no preset 'paper'; it ships none"),
        ("mstdiff (fast)", "mstdiff has no preset 'fast'; it ships paper, recommended"),
        ("mstdiff epochs", "'epochs' is not KEY=VALUE"),
        ("(paper)", "is not a row; write MODEL"),
    ],
)
def test_bad_rows_are_config_errors_naming_the_row(line, message):
    with pytest.raises(ConfigError, match=message):
        parse_rows([line])


def test_duplicate_labels_are_refused():
    with pytest.raises(ConfigError, match="two rows are labelled 'markov'"):
        parse_rows(["markov", "markov"])


def test_suite_file_reads_lines_and_mappings_with_config_files(tmp_path):
    (tmp_path / "small.yaml").write_text("epochs: 2\nd_model: 16\n")
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "preset: paper\n"
        "rows:\n"
        "  - mstdiff\n"
        "  - label: mstdiff traffic-only\n"
        "    model: mstdiff\n"
        "    config: small.yaml\n"
        "    set: {trajectory: false, epochs: 3}\n"
        "  - markov\n"
    )
    rows = read_suite(suite)
    assert [(r.label, r.model, r.preset) for r in rows] == [
        ("mstdiff", "mstdiff", "paper"),
        ("mstdiff traffic-only", "mstdiff", "paper"),
        ("markov", "markov", None),
    ]
    assert rows[1].overrides == {"epochs": 3, "d_model": 16, "trajectory": False}  # set wins over the file


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rows:\n  - nosuchmodel\n", r"suite.yaml, row 1: unknown generator 'nosuchmodel'"),
        ("rows:\n  - model: markov\n    epoch: 3\n", r"row 1: unknown key\(s\) \['epoch'\]"),
        ("rows:\n  - label: x\n", r"row 1: a row needs 'model: NAME'"),
        ("rows:\n  - model: mstdiff\n    config: missing.yaml\n", "config file .*missing.yaml not found"),
        ("models: [markov]\n", "a suite is a mapping with a 'rows:' list"),
        ("rows: []\n", "no rows; name at least one generator"),
        ("rows: [markov\n", "not valid YAML"),
    ],
)
def test_bad_suites_are_config_errors_naming_the_file(tmp_path, text, message):
    suite = tmp_path / "suite.yaml"
    suite.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_suite(suite)


@pytest.mark.parametrize("name", ["users-city", "users-geolife", "users-city-cpu", "users-geolife-cpu"])
def test_shipped_suites_read(name):
    rows = read_suite(REPO_ROOT / "benchmarks" / "suites" / f"{name}.yaml")
    from cellsynth.benchmark.run import _run_config

    for row in rows:  # every row's options are valid for its model (a misspelt key in a config file fails)
        _run_config(row.model, 0, 20, row.overrides, row.preset)
    assert Row("markov", "markov", None, {}) in rows
    # every user generator of the registry has its row (the suites are the benchmark's whole field)
    from cellsynth.generators import available, get_class

    expected = {n for n in available() if get_class(n).kind == "users"}
    if name.startswith("users-geolife"):  # no traffic: the traffic-only baselines have nothing to learn
        expected -= {"csdi", "dit", "adaptive", "msh-gan"}
    assert {r.model for r in rows} == expected
    if name.startswith("users-city"):
        assert rows[2].overrides == {"trajectory": False} and rows[2].preset == "recommended"
    else:
        assert all(r.overrides.get("level") == 3 for r in rows[:2])  # configs/geolife/mstdiff.yaml
    if name.endswith("-cpu"):  # DiffTraj at its CPU size (configs/cpu/difftraj.yaml), as published and ours
        difftraj = [r for r in rows if r.model == "difftraj"]
        assert all(r.overrides == {"ch": 32, "batch_size": 64} for r in difftraj)
        assert [r.preset for r in difftraj] == ["paper", "recommended"]


@given(
    st.one_of(
        st.binary(max_size=60),
        st.lists(
            st.one_of(
                st.sampled_from(["markov", "mstdiff (paper)", "mstdiff x=1", "model: markov", "set: {a: 1}"]),
                st.text(max_size=20),
            ),
            max_size=4,
        ).map(lambda items: ("rows:\n" + "".join(f"  - {i}\n" for i in items)).encode()),
    )
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_suite_file_gives_rows_or_one_config_error(tmp_path, content):
    suite = tmp_path / "suite.yaml"
    suite.write_bytes(content)
    try:
        rows = read_suite(suite)
    except ConfigError as err:
        assert str(suite) in str(err) and "\n" not in str(err)
    else:
        assert rows and all(isinstance(r, Row) for r in rows)


# -- the table ------------------------------------------------------------------------------------------------
def _run(label, kind, seed, **values):
    metrics = {"trajectory": {m: {"value": v} for m, v in values.items()}}
    record = {
        "label": label,
        "kind": kind,
        "seed": seed,
        "scores": {"metrics": metrics, "memorisation": None},
    }
    if kind == "model":
        record |= {"fit_seconds": 1.0, "sample_seconds": 0.5, "users_per_second": 8.0, "epochs": None}
        record |= {"fit_resumed": False}
    return record


def test_table_marks_best_bold_second_underlined_and_cells_within_noise():
    runs = []
    for seed, shift in ((0, 0.0), (1, 0.02)):
        runs += [
            _run(NOISE_TRAIN, "noise", seed, distance=0.10 + shift, radius=0.01),
            _run("a", "model", seed, distance=0.30 + shift, radius=0.50),
            _run("b", "model", seed, distance=0.20 + shift, radius=0.30),
            _run("c", "model", seed, distance=0.11 + shift, radius=0.40),
        ]
    summary = summarise_users(runs, [NOISE_TRAIN, NOISE_HALVES, "a", "b", "c"])
    assert NOISE_HALVES not in summary  # no runs, no row
    assert summary["c"]["trajectory"]["distance"]["mean"] == pytest.approx(0.12)
    assert summary["c"]["trajectory"]["distance"]["std"] == pytest.approx(0.02 / np.sqrt(2))
    settings = {
        "train_users": 8,
        "held_out_users": 2,
        "steps": 336,
        "stations": 5,
        "split_seed": 0,
        "test_fraction": 0.2,
        "data_notes": [],
    }
    table = render_user_table(summary, ["a", "b", "c"], settings, [0, 1], "a rule")
    table_two = table.split("## Table II")[1].split("## Memorisation")[0]
    lines = {line.split(" | ")[0]: line for line in table_two.splitlines() if line.startswith("| ")}
    assert lines["| *real: training users*"].count("**") == 0  # the noise row is shown, not ranked
    # distance: c best (and within noise: 0.12 <= 0.11 + 2 * 0.014), b second, a neither
    assert f"**0.1200 ± 0.0141 {NOISE_MARK}**" in lines["| c"]
    assert "<u>0.2100 ± 0.0141</u>" in lines["| b"]
    assert "<u>" not in lines["| a"].split(" | ")[1] and "**" not in lines["| a"].split(" | ")[1]
    # radius: b best, c second; nothing is within the noise level of 0.01
    assert "**0.3000 ± 0.0000**" in lines["| b"] and "<u>0.4000 ± 0.0000</u>" in lines["| c"]
    assert NOISE_MARK not in lines["| b"]
    assert "The users carry no traffic" in table  # no traffic metrics: Table I says so


# -- end to end -----------------------------------------------------------------------------------------------
def test_end_to_end_writes_cells_tables_and_noise_rows(bench):
    out, result = bench
    assert sorted(p.name for p in (out / "results").iterdir()) == [
        "markov-smoothing-1.0__seed0.json",
        "markov-smoothing-1.0__seed1.json",
        "markov__seed0.json",
        "markov__seed1.json",
    ]
    assert "## Table I — traffic" in result.table and "## Table II — trajectories" in result.table
    assert "| JSD volume | JSD 1st diff. | RMSE daily | JSD log volume |" in result.table
    assert "| Distance | Radius | DistinctLoc | Duration | G-rank | I-rank |" in result.table
    stored = json.loads((out / "results.json").read_text())
    assert stored["settings"]["held_out_users"] == 4 and stored["settings"]["train_users"] == 12
    for label in (NOISE_TRAIN, NOISE_HALVES, *MARKOVS):
        assert result.summary[label]["trajectory"]["duration"]["n"] == 2, label
    halves = [r for r in stored["noise"] if r["label"] == NOISE_HALVES]
    assert [r["compared_users"] for r in halves] == [2, 2]
    smoothed = json.loads((out / "results" / "markov-smoothing-1.0__seed0.json").read_text())
    assert smoothed["config"]["smoothing"] == 1.0 and smoothed["generated_users"] == 4


def test_resume_recomputes_only_a_deleted_cell_and_adds_new_rows(bench, city):
    out, _ = bench
    deleted = out / "results" / "markov__seed1.json"
    before = json.loads(deleted.read_text())
    deleted.unlink()
    again = run_user_benchmark(city.users, MARKOVS, out=out, seeds=2, test_fraction=0.25, echo=None)
    assert again.computed == [("markov", 1)]
    assert sorted(again.reused) == [("markov", 0), ("markov smoothing=1.0", 0), ("markov smoothing=1.0", 1)]
    assert json.loads(deleted.read_text())["scores"] == before["scores"]  # the same seed, the same numbers
    more = run_user_benchmark(
        city.users, [*MARKOVS, "markov weekly=true"], out=out, seeds=2, test_fraction=0.25, echo=None
    )
    assert more.computed == [("markov weekly=true", 0), ("markov weekly=true", 1)]


def test_resume_refuses_other_settings_and_other_configs(bench, city):
    out, _ = bench
    with pytest.raises(ConfigError, match=r"different settings \(.*split_seed"):
        run_user_benchmark(city.users, MARKOVS, out=out, seeds=2, test_fraction=0.25, split_seed=1, echo=None)
    (out / "results" / "markov__seed0.json").write_text(
        json.dumps(
            json.loads((out / "results" / "markov__seed0.json").read_text()) | {"config": {"smoothing": 9}}
        )
    )
    with pytest.raises(
        ConfigError, match="markov__seed0.json was computed with another config for row 'markov'"
    ):
        run_user_benchmark(city.users, MARKOVS, out=out, seeds=2, test_fraction=0.25, echo=None)


def test_noise_rows_of_identical_users_are_zero(tmp_path, city):
    one = city.users.select_users([0])
    users = UserMobility(
        np.repeat(one.locations, 12, axis=0),
        one.start,
        one.step,
        one.stations,
        traffic=np.repeat(one.traffic, 12, axis=0),
        user_ids=[f"u{i}" for i in range(12)],
    )
    result = run_user_benchmark(users, ["markov"], out=tmp_path / "b", seeds=1, test_fraction=0.5, echo=None)
    for label in (NOISE_TRAIN, NOISE_HALVES):
        for group in ("trajectory", "traffic"):
            means = {m: s["mean"] for m, s in result.summary[label][group].items() if s["n"]}
            assert means and all(v == pytest.approx(0, abs=1e-12) for v in means.values()), (label, means)


def test_separate_held_out_set_on_another_stations_table(tmp_path, city):
    train, test = city.users.select_users(range(12)), city.users.select_users(range(12, 16))
    order = np.arange(len(test.stations))[::-1]  # the held-out file lists the stations the other way round
    test = replace(test, stations=test.stations.subset(order), locations=np.argsort(order)[test.locations])
    result = run_user_benchmark(train, ["markov"], test=test, out=tmp_path / "b", seeds=1, echo=None)
    assert "4 held-out users from a separate dataset" in result.table
    assert result.runs[0]["generated_users"] == 4
    with pytest.raises(DataError, match="held-out user id"):
        run_user_benchmark(train, ["markov"], test=train, out=tmp_path / "c", seeds=1, echo=None)


def test_smoke_fit_of_mstdiff_with_the_knowledge_graph(tmp_path, city, monkeypatch):
    monkeypatch.setenv("CELLSYNTH_SMOKE", "1")
    with pytest.warns(UserWarning, match="smoke size"):
        result = run_user_benchmark(
            city.users,
            ["mstdiff (paper)", "mstdiff (recommended) trajectory=false"],
            out=tmp_path / "b",
            seeds=1,
            test_fraction=0.25,
            knowledge_graph=city.knowledge_graph,
            echo=None,
        )
    assert [r["config"]["trajectory"] for r in result.runs] == [True, False]
    assert all(result.summary[label]["traffic"]["value_jsd"]["n"] == 1 for label in ("mstdiff (paper)",))
    assert (tmp_path / "b" / "runs" / "mstdiff-paper" / "seed0" / "generator.json").exists()


def test_errors_for_station_generators_and_station_benches(tmp_path, city):
    with pytest.raises(ConfigError, match="seasonal-mean generates station traffic.*`cellsynth bench`"):
        run_user_benchmark(city.users, ["seasonal-mean"], out=tmp_path / "a", echo=None)
    station_bench = tmp_path / "station"
    station_bench.mkdir()
    (station_bench / "bench.json").write_text('{"shape": [10, 168, 1]}')
    with pytest.raises(ConfigError, match="holds a station-level benchmark"):
        run_user_benchmark(city.users, ["markov"], out=station_bench, seeds=1, echo=None)
    with pytest.raises(ConfigError, match="smoothin"):  # a misspelt option, refused before any cell runs
        run_user_benchmark(city.users, ["markov smoothin=1"], out=tmp_path / "c", seeds=1, echo=None)
    assert not (tmp_path / "c").exists()
    with pytest.raises(ConfigError, match="jobs must be a positive whole number"):
        run_user_benchmark(city.users, ["markov"], out=tmp_path / "b", jobs=0, echo=None)


def test_cli_runs_a_city_and_refuses_models_with_suite(tmp_path, city):
    city.write(tmp_path / "city")
    result = CliRunner().invoke(
        app,
        [
            "bench-users",
            "--data",
            str(tmp_path / "city"),
            "--models",
            "markov",
            "--seeds",
            "1",
            "--out",
            str(tmp_path / "b"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "using the knowledge graph" in result.output and "| *real: training users* |" in result.output
    with pytest.raises(ConfigError, match="either with --models or with --suite"):
        CliRunner().invoke(
            app,
            [
                "bench-users",
                "--data",
                str(tmp_path / "city"),
                "--models",
                "markov",
                "--suite",
                "s.yaml",
                "--out",
                str(tmp_path / "c"),
            ],
            catch_exceptions=False,
        )


def test_cli_first_seed_runs_the_seeds_after_it_and_a_zero_count_is_an_error(tmp_path, city):
    city.write(tmp_path / "city")
    args = [
        "bench-users",
        "--data",
        str(tmp_path / "city"),
        "--models",
        "markov",
        "--out",
        str(tmp_path / "b"),
    ]
    result = CliRunner().invoke(app, [*args, "--seeds", "2", "--first-seed", "3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "b" / "results").iterdir()) == [
        "markov__seed3.json",
        "markov__seed4.json",
    ]
    with pytest.raises(ConfigError, match="--seeds must be at least 1, got 0"):
        CliRunner().invoke(app, [*args[:-1], str(tmp_path / "c"), "--seeds", "0"], catch_exceptions=False)


# -- the stations-table helpers -------------------------------------------------------------------------------
def _users(ids, lat, lon, locations, prefix):
    stations = Stations(np.array(ids, dtype=object), np.array(lat, float), np.array(lon, float))
    return UserMobility(
        np.array(locations),
        pd.Timestamp("2026-01-05", tz="UTC"),
        "30min",
        stations,
        user_ids=[f"{prefix}{i}" for i in range(len(locations))],
    )


def test_share_stations_keeps_every_visit_at_its_station():
    a = _users(["x", "y"], [0, 0], [0, 1], [[0, 1], [1, 1]], "a")
    b = _users(["z", "x"], [0, 0], [2, 0], [[0, 1]], "b")
    a2, b2 = share_stations(a, b)
    assert list(a2.stations.ids) == ["x", "y", "z"] and b2.stations is a2.stations
    for before, after in ((a, a2), (b, b2)):
        assert (before.stations.ids[before.locations] == after.stations.ids[after.locations]).all()
        assert (before.stations.lon[before.locations] == after.stations.lon[after.locations]).all()
    moved = _users(["x"], [0], [5], [[0, 0]], "c")
    with pytest.raises(DataError, match="station 'x' has other coordinates"):
        share_stations(a, moved)


def test_keep_top_locations_maps_the_rest_to_the_nearest_kept():
    # three stations on the equator at 0, 1 and 3 degrees; visits 4, 1, 3: keep 2 -> 0 and 3 degrees
    users = _users(["p", "q", "r"], [0, 0, 0], [0, 1, 3], [[0, 0, 1, 2], [0, 0, 2, 2]], "u")
    (kept,), report = keep_top_locations([users], 2)
    assert list(kept.stations.ids) == ["p", "r"]
    assert kept.locations.tolist() == [[0, 0, 0, 1], [0, 0, 1, 1]]  # q (1 degree) is nearer p than r
    assert (report.kept, report.visited, report.share) == (2, 3, pytest.approx(7 / 8))
    with pytest.raises(DataError, match="keep must be a whole number of locations >= 2"):
        keep_top_locations([users], 1)


def test_jobs_run_cells_in_processes_with_the_same_numbers(bench, city, tmp_path):
    _, one_process = bench
    result = run_user_benchmark(
        city.users, MARKOVS, out=tmp_path / "b", seeds=2, test_fraction=0.25, jobs=2, echo=None
    )
    assert sorted(result.computed) == sorted((r["label"], r["seed"]) for r in one_process.runs)
    for mine, theirs in zip(result.runs, one_process.runs, strict=True):
        assert (mine["label"], mine["seed"]) == (theirs["label"], theirs["seed"])
        assert mine["scores"]["metrics"] == theirs["scores"]["metrics"]
        assert mine["machine"]["torch_threads"] == 1


def test_geolife_train_and_test_files(shared_data, tmp_path):
    root = shared_data / "geolife-movesim"
    gps = shared_file(shared_data, "geolife-movesim/gps")
    train = load_location_sequences(shared_file(shared_data, "geolife-movesim/real.data"), gps)
    test = load_location_sequences(root / "test.data", gps)
    result = run_user_benchmark(
        train,
        ["markov"],
        test=test,
        train_users=200,
        test_users=40,
        locations=30,
        out=tmp_path / "b",
        seeds=1,
        echo=None,
    )
    assert (
        "200 of the 7000 training users drawn" in result.table
        and "kept the 30 most visited" in result.table.lower()
    )
    assert "The users carry no traffic" in result.table
    assert result.summary["markov"]["trajectory"]["radius"]["n"] == 1
