"""Every error a user can cause on the command line ends in exactly one line on stderr, ``error: ...`` naming
the file or value and the fix, with exit code 2 and no traceback; genuine bugs keep their traceback."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from cellsynth.cli import main
from cellsynth.cli.scoring import _evaluation_data
from cellsynth.data import StationTraffic, UserMobility, read
from cellsynth.data.synthetic import CityConfig, synthesize_city
from cellsynth.errors import CellsynthError
from cellsynth.generators.baselines.vae import VAEGenerator
from cellsynth.generators.floors.stations import SeasonalMeanGenerator

REFIT = "refit it with `cellsynth fit"


def one_line_error(result, *fragments: str) -> str:
    """The single ``error:`` line of a run that exited with 2; each fragment must be in it."""
    code, _, err = result
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def city(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("errors") / "city"
    synthesize_city(CityConfig(seed=2).replace(n_stations=10, n_users=6, weeks=1)).write(out)
    return out


@pytest.fixture(scope="module")
def model(city, tmp_path_factory) -> Path:
    """A saved seasonal-mean model: copies of it are damaged below."""
    out = tmp_path_factory.mktemp("model") / "model"
    SeasonalMeanGenerator().fit(read(city / "traffic")).save(out)
    return out


@pytest.fixture(scope="module")
def vae_run(city, tmp_path_factory) -> tuple[Path, list]:
    """A VAE fitted through the CLI (Lightning checkpoints in its run directory), and the fit command."""
    run = tmp_path_factory.mktemp("vae") / "run"
    config = run.parent / "vae.yaml"
    config.write_text(yaml.safe_dump(VAEGenerator.smoke_config() | {"epochs": 1}))
    command = ["fit", "vae", "--data", city, "--out", run, "--config", config, "--no-progress"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", ["cellsynth", *map(str, command)])
        with pytest.raises(SystemExit) as exit_:
            main()
    assert exit_.value.code == 0
    return run, command


# -- 1. messages are plain text ---------------------------------------------------------------------------
def test_brackets_in_values_and_paths_are_printed_as_they_are(cli, city, tmp_path):
    line = one_line_error(
        cli("fit", "seasonal-mean", "--data", city, "--out", tmp_path / "r", "--set", "x[/y]=1")
    )
    assert "x[/y]" in line  # rich markup would have crashed on "[/y]"
    one_line_error(cli("data", "info", tmp_path / "traffic[red].csv"), "traffic[red].csv", "no dataset here")
    out = tmp_path / "run[red][/x]"
    code, stdout, err = cli("fit", "seasonal-mean", "--data", city, "--out", out, "--no-progress")
    assert code == 0, err
    assert "run[red][/x]" in " ".join(stdout.split())
    assert (out / "generator.json").exists()


# -- 2a. time steps --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "command",
    [
        ["data", "import", "csv", "t.csv", "--stations", "s.csv"],
        ["data", "import", "mobility-csv", "t.csv", "--stations", "s.csv"],
        ["data", "import", "location-sequences", "seq.txt", "--gps", "gps.txt"],
        ["data", "import", "telecom-italia", "day.txt", "--grid", "grid.geojson"],
    ],
    ids=lambda c: c[2],
)
@pytest.mark.parametrize("step", ["7parsecs", "0min", "-1h"])
def test_an_unparsable_step_is_one_line(cli, tmp_path, command, step):
    line = one_line_error(cli(*command, "--out", tmp_path / "o", "--step", step), "--step", repr(step))
    assert "is not a duration" in line or "positive duration" in line
    assert not (tmp_path / "o").exists()


# -- 2b. configs -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        ("neighbours: [1\n", ["not valid YAML", "line 2", "fix its syntax"]),
        ("neighbours: 3\n  seed: 1\n", ["not valid YAML", "line 2"]),
        ("- neighbours\n- 3\n", ["expected a mapping of option: value", "got a list"]),
        ("bogus: 1\n", ["bogus", "Extra inputs are not permitted"]),
        ("neighbours: many\n", ["neighbours", "valid integer"]),
        (b"\xff\xfe neighbours", ["not UTF-8"]),
        ('"bo\\x1egus": 1\n', ["'bo\\x1egus': Extra inputs are not permitted"]),
    ],
    ids=["syntax", "indentation", "list", "unknown-key", "wrong-type", "binary", "unprintable-key"],
)
def test_a_bad_config_file_is_one_line(cli, city, tmp_path, text, fragments):
    config = tmp_path / "bad.yaml"
    config.write_bytes(text if isinstance(text, bytes) else text.encode())
    line = one_line_error(
        cli("fit", "seasonal-mean", "--data", city, "--out", tmp_path / "r", "--config", config), *fragments
    )
    if "Extra inputs" not in line and "integer" not in line:
        assert str(config) in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("item", "fragments"),
    [
        ("neighbours=[1", ["--set 'neighbours=[1'", "not valid YAML", "quote the value"]),
        ("neighbours", ["--set expects key=value", "'neighbours'"]),
        ("=3", ["--set expects key=value", "'=3'"]),
        ("neighbours=many", ["neighbours", "valid integer"]),
        ("bo\ngus=1", ["'bo\\ngus': Extra inputs are not permitted"]),  # a line break in a key is shown
    ],
)
def test_a_bad_set_is_one_line(cli, city, tmp_path, item, fragments):
    one_line_error(
        cli("fit", "seasonal-mean", "--data", city, "--out", tmp_path / "r", "--set", item), *fragments
    )


def test_a_bad_bench_preset_is_one_line(cli, city, tmp_path):
    (tmp_path / "seasonal-mean.yaml").write_text("neighbours: [1\n")
    args = ["bench", "--data", city, "--out", tmp_path / "b", "--models", "seasonal-mean"]
    one_line_error(cli(*args, "--configs-dir", tmp_path), "seasonal-mean.yaml", "not valid YAML")


def test_an_unknown_bench_preset_is_one_line(cli, city, tmp_path):
    args = ["bench", "--data", city, "--out", tmp_path / "b", "--models", "seasonal-mean,vae"]
    one_line_error(cli(*args, "--preset", "newest"), "vae has no preset 'newest'", "paper, recommended")


def test_a_config_that_is_a_directory_is_one_line(cli, city, tmp_path):
    one_line_error(
        cli("fit", "seasonal-mean", "--data", city, "--out", tmp_path / "r", "--config", tmp_path),
        str(tmp_path),
        "Is a directory",
    )


# -- 2c. seeds ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", ["-1", "99999999999999999999", str(2**32)])
@pytest.mark.parametrize("command", ["synth", "fit", "generate", "demo"])
def test_a_seed_out_of_range_is_one_line(cli, city, model, tmp_path, command, seed):
    args = {
        "synth": ["data", "synth"],
        "fit": ["fit", "seasonal-mean", "--data", city],
        "generate": ["generate", "--model", model, "--n", "2"],
        "demo": ["demo"],
    }[command]
    one_line_error(
        cli(*args, "--out", tmp_path / "o", "--seed", seed),
        f"--seed {seed}",
        "an integer from 0 to 4294967295",
    )
    assert not (tmp_path / "o").exists()


def test_a_precision_the_model_cannot_sample_in_is_one_line(cli, model, tmp_path):
    one_line_error(
        cli("generate", "--model", model, "--n", "2", "--out", tmp_path / "o", "--precision", "bfloat16"),
        "seasonal-mean",
        "precision",
    )
    assert not (tmp_path / "o").exists()


def test_the_largest_seed_is_accepted(cli, model, tmp_path):
    code, _, err = cli("generate", "--model", model, "--n", "2", "--out", tmp_path / "o", "--seed", 2**32 - 1)
    assert code == 0, err


# -- 2d. damaged model directories ---------------------------------------------------------------------------
def _edit_record(change):
    def damage(model: Path) -> None:
        record = json.loads((model / "generator.json").read_text())
        change(record)
        (model / "generator.json").write_text(json.dumps(record))

    return damage


def _edit_weights(change):
    def damage(model: Path) -> None:
        tensors = load_file(model / "weights.safetensors")
        change(tensors)
        save_file({k: v.contiguous() for k, v in tensors.items()}, model / "weights.safetensors")

    return damage


def _truncate(name: str, keep: float):
    def damage(model: Path) -> None:
        data = (model / name).read_bytes()
        (model / name).write_bytes(data[: int(len(data) * keep)])

    return damage


DAMAGE = {
    # name: (how to damage a copy, the file the message names, what it says)
    "weights-missing": (lambda m: (m / "weights.safetensors").unlink(), "weights.safetensors", "is missing"),
    "weights-empty": (
        _truncate("weights.safetensors", 0),
        "weights.safetensors",
        "not a complete safetensors",
    ),
    "weights-truncated": (
        _truncate("weights.safetensors", 0.5),
        "weights.safetensors",
        "not a complete safetensors",
    ),
    "weights-pickle": (  # a pickle is never unpickled: it is simply not safetensors
        lambda m: torch.save({"weeks": torch.zeros(2)}, m / "weights.safetensors"),
        "weights.safetensors",
        "not a complete safetensors",
    ),
    "json-missing": (lambda m: (m / "generator.json").unlink(), "generator.json", "is missing"),
    "json-truncated": (_truncate("generator.json", 0.5), "generator.json", "is not valid JSON"),
    "json-binary": (lambda m: (m / "generator.json").write_bytes(b"\xff\xfe\x00"), "generator.json", "UTF-8"),
    "json-list": (lambda m: (m / "generator.json").write_text("[1, 2]"), "generator.json", "JSON list"),
    "json-no-state": (_edit_record(lambda r: r.pop("state")), "generator.json", "no 'state' entry"),
    "json-config-text": (
        _edit_record(lambda r: r.update(config="neighbours")),
        "generator.json",
        "'config' should be a JSON object",
    ),
    "json-version-text": (
        _edit_record(lambda r: r.update(format_version="1")),
        "generator.json",
        "'format_version' should be a JSON integer",
    ),
    "json-unknown-generator": (
        _edit_record(lambda r: r.update(generator="nonesuch")),
        "generator.json",
        "'nonesuch', which is not registered",
    ),
    "json-invalid-config": (
        _edit_record(lambda r: r["config"].update(neighbours="many")),
        "generator.json",
        "its config is invalid",
    ),
    "json-state-entry-missing": (_edit_record(lambda r: r["state"].pop("time")), "model", "KeyError: 'time'"),
    "json-state-entry-wrong-type": (
        _edit_record(lambda r: r["state"].update(time=[1])),
        "model",
        "do not make a seasonal-mean model",
    ),
    "json-fewer-ids": (
        _edit_record(lambda r: r["state"].update({"stations.ids": r["state"]["stations.ids"][:-1]})),
        "model",
        "expected (9,) for 9 stations",
    ),
    "weights-array-missing": (
        _edit_weights(lambda t: t.pop("stations.features")),
        "model",
        "KeyError: 'stations.features'",
    ),
    "weights-fewer-stations": (
        _edit_weights(lambda t: t.update(weeks=t["weeks"][:-2])),
        "model",
        "weeks has shape (8, 1, 168, 3), expected (10, weeks, 168, 3)",
    ),
    "weights-fewer-channels": (
        _edit_weights(lambda t: t.update(weeks=t["weeks"][..., :2])),
        "model",
        "expected (10, weeks, 168, 3)",
    ),
    "weights-wrong-rank": (
        _edit_weights(lambda t: t.update(weeks=t["weeks"][0])),
        "model",
        "weeks has shape (1, 168, 3)",
    ),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_model_directory_is_one_line(cli, model, tmp_path, case):
    damage, named, says = DAMAGE[case]
    copy = tmp_path / "model"
    shutil.copytree(model, copy)
    damage(copy)
    line = one_line_error(cli("generate", "--model", copy, "--n", "2", "--out", tmp_path / "g"), says)
    assert line.startswith(f"error: {copy}") and named in line
    assert REFIT in line and "restore it from a backup" in line
    if case.startswith("weights") or case.startswith("json-state") or case == "json-fewer-ids":
        assert "`cellsynth fit seasonal-mean --data DATA" in line  # the generator is known by then
    assert not (tmp_path / "g").exists()


def test_a_directory_that_is_no_model_is_one_line(cli, tmp_path):
    one_line_error(
        cli("generate", "--model", tmp_path, "--n", "2", "--out", tmp_path / "g"),
        str(tmp_path),
        "not a saved cellsynth model",
        "cellsynth fit",
    )


def test_network_weights_of_another_config_are_one_line(cli, vae_run, tmp_path):
    run, _ = vae_run
    copy = tmp_path / "model"
    shutil.copytree(run, copy)
    _edit_record(lambda r: r["config"].update(hidden=r["config"]["hidden"] * 2))(copy)
    line = one_line_error(
        cli("generate", "--model", copy, "--n", "2", "--out", tmp_path / "g"),
        "do not make a vae model",
        REFIT,
    )
    assert "size mismatch" in line


# -- 2e. damaged resume checkpoints ----------------------------------------------------------------------------
def test_a_damaged_checkpoint_is_set_aside_and_the_fit_goes_on(cli, vae_run, tmp_path):
    """Rerunning `fit` over a run whose checkpoints a kill left truncated: a warning names each checkpoint set
    aside (renamed, kept), training starts afresh and the model is saved."""
    run, command = vae_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    stage = next((copy / "checkpoints").glob("*/last.ckpt")).parent
    for checkpoint in stage.glob("*.ckpt"):
        _truncate(checkpoint.name, 0.5)(stage)
    (copy / "generator.json").unlink()
    with pytest.warns(UserWarning, match="damaged checkpoint") as caught:
        code, _, err = cli(*[copy if part == run else part for part in command])
    assert code == 0, err
    warning = next(str(w.message) for w in caught if "damaged checkpoint" in str(w.message))
    assert f"{stage / 'last.ckpt'}" in warning and "renamed last.ckpt.damaged" in warning
    assert "training this stage from the start" in warning
    assert (stage / "last.ckpt.damaged").exists() and (stage / "last.ckpt").exists()
    assert (copy / "generator.json").exists()


def test_a_damaged_resume_record_is_one_line(cli, city, vae_run, tmp_path):
    run, command = vae_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    record = copy / "checkpoints" / "vae-fit.json"
    record.write_text('{"config": ')
    command = [copy if part == run else part for part in command]
    one_line_error(cli(*command), str(record), "is damaged", "delete", "fresh output directory")


# -- the generic guard -------------------------------------------------------------------------------------
def test_an_os_error_names_the_path(cli, city, tmp_path):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "run"
    one_line_error(
        cli("fit", "seasonal-mean", "--data", city, "--out", out, "--no-progress"),
        str(out),
        "Not a directory",
    )


@pytest.fixture
def gz_tables(tmp_path) -> dict[str, Path]:
    """A stations CSV, a truncated traffic .csv.gz and a .csv.gz that is not gzip."""
    pd.DataFrame({"station_id": ["a"], "lat": [45.0], "lon": [9.0]}).to_csv(tmp_path / "s.csv", index=False)
    n = 3000
    table = pd.DataFrame(
        {
            "station_id": ["a"] * n,
            "timestamp": pd.date_range("2020-01-01", periods=n, freq="h", tz="UTC").astype(str),
            "x": np.arange(n),
        }
    )
    whole = gzip.compress(table.to_csv(index=False).encode())
    (tmp_path / "truncated.csv.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "plain.csv.gz").write_text(table.to_csv(index=False))
    return {
        "stations": tmp_path / "s.csv",
        "truncated": tmp_path / "truncated.csv.gz",
        "plain": tmp_path / "plain.csv.gz",
    }


@pytest.mark.parametrize("table", ["truncated", "plain"])
def test_a_damaged_compressed_table_is_one_line_not_aborted(cli, gz_tables, tmp_path, table):
    args = [
        "data",
        "import",
        "csv",
        gz_tables[table],
        "--stations",
        gz_tables["stations"],
        "--out",
        tmp_path / "o",
    ]
    line = one_line_error(cli(*args), str(gz_tables[table]))
    assert "Aborted" not in line


def test_the_installed_entry_point_prints_one_line_and_debug_adds_the_traceback(gz_tables, tmp_path):
    args = ["data", "import", "csv", gz_tables["truncated"], "--stations", gz_tables["stations"]]
    args += ["--out", tmp_path / "o"]
    command = [sys.executable, "-m", "cellsynth.cli", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Aborted" not in done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and done.stderr.startswith("error: ")
    debug = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=os.environ | {"CELLSYNTH_DEBUG": "1"}
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "EOFError" in debug.stderr


def test_a_bug_keeps_its_traceback(cli, city, monkeypatch):
    def broken(data):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("cellsynth.data.summary.describe", broken)
    with pytest.raises(ZeroDivisionError):
        cli("data", "info", city)


def test_debug_raises_the_error(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["cellsynth", "data", "info", str(tmp_path / "nothing")])
    monkeypatch.setenv("CELLSYNTH_DEBUG", "1")
    with pytest.raises(CellsynthError, match="no dataset here"):
        main()


# -- 3. evaluate takes a city directory ----------------------------------------------------------------------
def test_evaluate_takes_a_city_directory(cli, city, model, tmp_path):
    code, _, err = cli("generate", "--model", model, "--data", city, "--out", tmp_path / "g")
    assert code == 0, err
    code, _, err = cli(
        "evaluate", "--real", city, "--synthetic", tmp_path / "g", "--train", city, "--out", tmp_path / "e"
    )
    assert code == 0, err
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics  # scored the station traffic of the city


def test_a_city_directory_gives_the_dataset_of_the_other_sides_kind(city):
    users = _evaluation_data({"--real": city / "users", "--synthetic": city, "--train": city})
    assert isinstance(users["--synthetic"], UserMobility) and isinstance(users["--train"], UserMobility)
    traffic = _evaluation_data({"--real": city, "--synthetic": city / "traffic", "--train": None})
    assert isinstance(traffic["--real"], StationTraffic) and traffic["--train"] is None


def test_evaluate_with_two_city_directories_is_one_line(cli, city, tmp_path):
    one_line_error(
        cli("evaluate", "--real", city, "--synthetic", city, "--out", tmp_path / "e"),
        "--real, --synthetic",
        f"--real {city}/traffic",
    )


def test_evaluate_without_a_dataset_is_one_line(cli, city, tmp_path):
    (tmp_path / "empty").mkdir()
    one_line_error(
        cli("evaluate", "--real", city, "--synthetic", tmp_path / "empty", "--out", tmp_path / "e"),
        str(tmp_path / "empty"),
        "no dataset here",
    )


def test_warnings_are_one_line_unless_debugging(tmp_path, monkeypatch):
    import warnings

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    monkeypatch.setattr(sys, "argv", ["cellsynth", "data", "info", str(tmp_path / "nothing")])
    with pytest.raises(SystemExit):
        main()
    shown = warnings.formatwarning("2 reused cell(s)", UserWarning, "/site/cellsynth/x.py", 118, "code()")
    assert shown == "UserWarning: 2 reused cell(s)\n"
