"""The command line: every command documents itself, the data and model commands work end to end, and
user errors end in one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import cellsynth
from cellsynth.cli import app
from cellsynth.data import read
from cellsynth.errors import ConfigError
from cellsynth.generators import get_class
from cellsynth.generators.stouter import StouterGenerator

runner = CliRunner()


def invoke(*args: str):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["data"],
        ["data", "synth"],
        ["data", "info"],
        ["data", "import"],
        *[
            ["data", "import", f]
            for f in (
                "telecom-italia",
                "stkdiff",
                "mobifm",
                "csv",
                "mobility-csv",
                "location-sequences",
                "grid",
                "milan-totals",
            )
        ],
        ["data", "split"],
        ["data", "resample"],
        ["models"],
        ["fit"],
        ["generate"],
        ["demo"],
        ["bench"],
        ["evaluate"],
    ],
)
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output and len(result.output.splitlines()) > 5


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "city"
    invoke("data", "synth", "--out", out, "--stations", 30, "--users", 20, "--weeks", 1, "--seed", 3)
    return out


def test_synth_writes_a_city_that_info_describes(city):
    traffic = read(city / "traffic")
    assert traffic.n_stations == 30 and traffic.channels == ("internet", "call", "sms")
    assert read(city / "users").n_users == 20
    output = invoke("data", "info", city)
    assert "internet" in output and "station_traffic" in output and "user_mobility" in output


def test_info_json_is_machine_readable(city):
    import json

    output = invoke("data", "info", city / "traffic", "--json")
    info = json.loads(output)
    assert info[str(city / "traffic")]["shape"] == [30, 168, 3]


def test_fit_then_generate_for_planned_sites(city, tmp_path):
    run = tmp_path / "run"
    invoke("fit", "seasonal-mean", "--data", city, "--out", run, "--set", "neighbours=3", "--no-progress")
    assert cellsynth.load(run).config.neighbours == 3
    stations = read(city / "traffic").stations.to_frame().iloc[:2].assign(station_id=["p1", "p2"])
    stations.to_csv(tmp_path / "planned.csv", index=False)
    invoke(
        "generate",
        "--model",
        run,
        "--stations",
        tmp_path / "planned.csv",
        "--samples",
        3,
        "--out",
        tmp_path / "g",
    )
    generated = read(tmp_path / "g")
    assert generated.n_stations == 6 and generated.n_steps == 168
    assert sorted(generated.stations.ids)[:2] == ["p1#0", "p1#1"]
    invoke("generate", "--model", run, "--n", 4, "--seed", 2, "--out", tmp_path / "h")
    again = tmp_path / "h2"
    invoke("generate", "--model", run, "--n", 4, "--seed", 2, "--out", again)
    np.testing.assert_array_equal(read(tmp_path / "h").values, read(again).values)


def test_fit_stouter_says_how_much_of_the_station_levels_it_can_predict(city, tmp_path):
    smoke = tmp_path / "smoke.yaml"  # JSON is YAML; tuples become lists
    smoke.write_text(json.dumps(StouterGenerator.smoke_config()))
    output = invoke(
        "fit", "stouter", "--data", city, "--out", tmp_path / "r", "--config", smoke, "--no-progress"
    )
    line = " ".join(output.split())
    assert "station levels: the station descriptors explain internet" in line and "leave-one-out" in line


def test_fit_stouter_refuses_a_knowledge_graph_it_does_not_declare(city, tmp_path):
    """Side inputs are what a generator declares (``side_inputs``), not guessed from its fit's signature."""
    args = [
        "fit",
        "stouter",
        "--data",
        city,
        "--out",
        tmp_path / "r",
        "--knowledge-graph",
        tmp_path / "kg.csv",
    ]
    result = runner.invoke(app, [str(a) for a in args])
    assert isinstance(result.exception, ConfigError)
    assert "stouter does not use a knowledge graph; leave out --knowledge-graph" in str(result.exception)


def test_fit_mstdiff_then_generate_users(city, tmp_path):
    """`cellsynth fit mstdiff --data CITY` (the city's users and knowledge graph), then `generate --users`."""
    import yaml

    from cellsynth.generators.mstdiff import MSTDiffGenerator

    config = tmp_path / "mstdiff.yaml"
    # calibrated with DDIM-2 at an even stride, the sampler the options below ask for (another would warn);
    # the stride said here, not taken from the preset, so that --step-spacing 2 below is a change
    sampling = {"steps": 2, "step_spacing": 1.0}
    config.write_text(
        yaml.safe_dump(MSTDiffGenerator.smoke_config() | {"calibration": {"users": 8}, "sampling": sampling})
    )
    run = tmp_path / "run"
    output = invoke("fit", "mstdiff", "--data", city, "--out", run, "--config", config, "--no-progress")
    line = " ".join(output.split())
    assert "knowledge_graph.parquet" in line and "quantile mapping" in line and "mstdiff trained" in line
    assert cellsynth.load(run).graph_source_ == "knowledge_graph"
    options = ["--users", 5, "--seed", 1, "--sampler", "ddim", "--steps", 2, "--temperature", 0.5]
    options += ["--corrector-rounds", 1]
    for name in ("a", "b"):
        invoke("generate", "--model", run, *options, "--out", tmp_path / name)
    users = read(tmp_path / "a")
    assert users.n_users == 5 and users.n_steps == 336 and (users.traffic >= 0).all()
    assert users.equals(read(tmp_path / "b"))
    invoke("generate", "--model", run, *options[:-2], "--out", tmp_path / "no-corrector")
    assert not users.equals(read(tmp_path / "no-corrector"))  # --corrector-rounds reached the sampler
    invoke("generate", "--model", run, *options, "--trajectory-substeps", 2, "--out", tmp_path / "fine")
    assert not users.equals(read(tmp_path / "fine"))  # --trajectory-substeps reached the sampler
    invoke("generate", "--model", run, *options, "--trajectory-coupling", 0.9, "--out", tmp_path / "coupled")
    assert not users.equals(read(tmp_path / "coupled"))  # --trajectory-coupling reached the sampler
    invoke("generate", "--model", run, *options, "--step-spacing", 2, "--out", tmp_path / "spaced")
    assert not users.equals(read(tmp_path / "spaced"))  # --step-spacing reached the sampler
    result = run_cli("generate", "--model", run, "--n", 3, "--out", tmp_path / "c")
    assert result.returncode == 2 and "give --users N" in result.stderr


def test_config_file(city, tmp_path):
    (tmp_path / "c.yaml").write_text("neighbours: 2\nseed: 5\n")
    invoke("fit", "seasonal-mean", "--data", city, "--out", tmp_path / "r", "--config", tmp_path / "c.yaml")
    assert cellsynth.load(tmp_path / "r").config.seed == 5


def test_set_reaches_a_field_of_a_section(city, tmp_path):
    invoke(
        "fit", "stouter", "--data", city, "--out", tmp_path / "r", "--preset", "none",
        "--set", "extensions.level_model=none", "--set", "sampling.steps=7", "--set", "epochs=1",
        "--set", "pretrain_epochs=1", "--set", "pretrain_steps_per_epoch=1", "--no-progress",
    )  # fmt: skip
    config = cellsynth.load(tmp_path / "r").config
    assert config.extensions.level_model == "none" and config.sampling.steps == 7
    assert config.sampling.sampler == get_class("stouter")().config.sampling.sampler  # the rest kept
    result = run_cli("fit", "stouter", "--data", city, "--out", tmp_path / "s", "--set", "epochs.x=1")
    assert result.returncode == 2 and "epochs: Input should be a valid integer" in result.stderr


@pytest.mark.parametrize("kind", ["traffic", "users"])
def test_data_split_writes_train_and_held_out(city, tmp_path, kind):
    output = invoke(
        "data", "split", city / kind, "--test-fraction", "0.25", "--seed", "3", "--out", tmp_path / "s"
    )
    train, held_out = read(tmp_path / "s" / "train"), read(tmp_path / "s" / "held-out")
    whole = read(city / kind)
    if kind == "traffic":
        assert train.n_stations + held_out.n_stations == whole.n_stations and "split stations" in output
        assert not set(train.stations.ids) & set(held_out.stations.ids)
    else:
        assert train.n_users + held_out.n_users == whole.n_users and "split users" in output
    again = tmp_path / "again"
    invoke("data", "split", city / kind, "--test-fraction", "0.25", "--seed", "3", "--out", again)
    assert list(read(again / "held-out").stations.ids) == list(held_out.stations.ids)


def test_data_split_of_a_city_asks_which_dataset(city, tmp_path):
    result = run_cli("data", "split", city, "--out", tmp_path / "s")
    assert result.returncode == 2 and "split one of them" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "cellsynth.cli", *map(str, args)], capture_output=True, text=True, timeout=120
    )


def test_user_errors_are_one_line_with_exit_code_2(city, tmp_path):
    result = run_cli("fit", "seasonal-mean", "--data", tmp_path / "missing", "--out", tmp_path / "r")
    assert result.returncode == 2
    assert "error:" in result.stderr and "no dataset here" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("fit", "seasonal-mean", "--data", city, "--out", tmp_path / "r", "--set", "bogus=1")
    assert result.returncode == 2 and "bogus" in result.stderr


def test_bad_csv_error_names_the_file(tmp_path):
    pd.DataFrame({"station_id": ["a"], "lat": [45.0], "lon": [9.0]}).to_csv(tmp_path / "s.csv", index=False)
    pd.DataFrame(
        {
            "station_id": ["a", "a"],
            "timestamp": ["2020-01-01T00:00+00:00", "2020-01-01T01:00+00:00"],
            "x": [1, -1],
        }
    ).to_csv(tmp_path / "t.csv", index=False)
    result = run_cli(
        "data", "import", "csv", tmp_path / "t.csv", "--stations", tmp_path / "s.csv", "--out", tmp_path / "o"
    )
    assert result.returncode == 2
    assert "t.csv" in result.stderr and "negative" in result.stderr
    assert not (tmp_path / "o").exists()


def test_bench_runs_and_resumes(city, tmp_path):
    args = ["bench", "--data", city, "--out", tmp_path / "b", "--models", "seasonal-mean,copy-train"]
    first = invoke(*args, "--seeds", 1, "--samples", 2, "--no-progress")
    table = (tmp_path / "b" / "table.md").read_text()
    assert "seasonal-mean" in table and "copy-train" in table and "**" in table
    assert "table (city, stations):" in first and "leaderboard:" in first
    second = invoke(*args, "--seeds", 1, "--samples", 2, "--no-progress")
    assert (tmp_path / "b" / "table.md").read_text() == table
    assert "reus" in second.lower()


def test_bench_takes_the_preset_and_configs_dir_on_top(city, tmp_path):
    """--preset paper reaches the model (VAE: no clipping); --configs-dir's vae.yaml goes on top of it."""
    import yaml

    from cellsynth.generators.baselines.vae import VAEGenerator

    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "vae.yaml").write_text(yaml.safe_dump(VAEGenerator.smoke_config() | {"epochs": 1}))
    args = ["bench", "--data", city, "--out", tmp_path / "b", "--models", "vae", "--seeds", 1]
    invoke(*args, "--samples", 2, "--train-stations", 2, "--preset", "paper", "--configs-dir", configs)
    config = json.loads((tmp_path / "b" / "results" / "vae__seed0.json").read_text())["config"]
    assert config["extensions"]["clip_margin"] is None  # the paper preset's; recommended clips at 0.1
    assert config["hidden"] == VAEGenerator.smoke_config()["hidden"] and config["epochs"] == 1


def test_generate_users_at_given_anchors(city, tmp_path):
    """`generate --anchors CSV`: station ids per user for a model fitted with anchors; --users defaults to the
    rows; bad tables end in one line naming what is wrong."""
    import yaml

    from cellsynth.generators.mstdiff import MSTDiffGenerator

    config = tmp_path / "mstdiff.yaml"
    config.write_text(
        yaml.safe_dump(
            MSTDiffGenerator.smoke_config() | {"calibration": {"users": 8}, "extensions": {"anchors": 2}}
        )
    )
    run = tmp_path / "run"
    invoke("fit", "mstdiff", "--data", city, "--out", run, "--config", config, "--no-progress")
    ids = list(read(city / "users").stations.ids)
    table = tmp_path / "anchors.csv"
    pd.DataFrame({"anchor_1": ids[:3], "anchor_2": ids[3:6]}).to_csv(table, index=False)
    invoke("generate", "--model", run, "--anchors", table, "--seed", 1, "--out", tmp_path / "a")
    invoke("generate", "--model", run, "--users", 3, "--seed", 1, "--out", tmp_path / "drawn")
    given, drawn = read(tmp_path / "a"), read(tmp_path / "drawn")
    assert given.n_users == 3 and not given.equals(drawn)
    pd.DataFrame({"anchor_1": ["nowhere"], "anchor_2": ids[:1]}).to_csv(table, index=False)
    result = run_cli("generate", "--model", run, "--anchors", table, "--out", tmp_path / "b")
    assert result.returncode == 2 and "unknown station id(s): nowhere" in result.stderr
    pd.DataFrame({"anchor_1": ids[:1]}).to_csv(table, index=False)
    result = run_cli("generate", "--model", run, "--anchors", table, "--out", tmp_path / "b")
    assert result.returncode == 2 and "missing anchor_2" in result.stderr
