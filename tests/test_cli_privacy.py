"""`cellsynth fit stouter --epsilon`, `cellsynth evaluate --model`: the guarantee in the fit note, the saved
model, metrics.json and the report; bad privacy options are one-line errors (docs/privacy.md)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cellsynth.cli import app
from cellsynth.generators.stouter import StouterGenerator

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli-privacy") / "city"
    invoke("data", "synth", "--out", out, "--stations", 30, "--users", 20, "--weeks", 1, "--seed", 3)
    return out


@pytest.fixture()
def smoke(tmp_path):
    path = tmp_path / "smoke.yaml"  # JSON is YAML
    path.write_text(json.dumps(StouterGenerator.smoke_config()))
    return path


def test_fit_with_epsilon_states_the_spent_budget_everywhere(city, smoke, tmp_path):
    run = tmp_path / "run"
    output = invoke(
        "fit", "stouter", "--data", city, "--out", run, "--config", smoke, "--epsilon", 8, "--delta", 1e-3,
        "--no-progress",
    )  # fmt: skip
    line = " ".join(output.split())
    assert "differential privacy: (" in line and ", 0.001)-DP per station" in line and "NOT covered" in line
    spent = json.loads((run / "generator.json").read_text())["state"]["privacy"]
    assert 7 < spent["epsilon"] <= 8 and spent["delta"] == 1e-3
    invoke("generate", "--model", run, "--n", 5, "--samples", 2, "--seed", 1, "--out", tmp_path / "weeks")
    invoke(
        "evaluate", "--real", city / "traffic", "--synthetic", tmp_path / "weeks", "--model", run,
        "--out", tmp_path / "eval",
    )  # fmt: skip
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["privacy"] == spent
    assert (
        "Differential privacy: the generator was trained with"
        in (tmp_path / "eval" / "report.html").read_text()
    )


@pytest.mark.parametrize("model", ["diffwave", "vae", "tcn-gan"])
def test_baselines_fit_with_epsilon(city, tmp_path, model):
    from cellsynth.generators import get_class

    config = tmp_path / "smoke.yaml"
    config.write_text(json.dumps(get_class(model).smoke_config()))
    run = tmp_path / "run"
    output = invoke(
        "fit", model, "--data", city, "--out", run, "--config", config, "--epsilon", 8, "--no-progress"
    )
    assert "differential privacy: (" in " ".join(output.split())
    saved = json.loads((run / "generator.json").read_text())
    assert 0 < saved["state"]["privacy"]["epsilon"] <= 8 and saved["config"]["privacy"]["epsilon"] == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stouter", "--epsilon", "0"], "privacy.epsilon: Value error, epsilon must be a finite number > 0"),
        (["stouter", "--epsilon", "8", "--delta", "0.5"], "privacy.delta = 0.5 is not below 1 / 30"),
        (["stouter", "--delta", "0.001"], "--delta is the delta of --epsilon; give --epsilon too"),
        (
            ["stouter", "--epsilon", "8", "--devices", "2"],
            "differentially private training runs in one process",
        ),
        (["adaptive", "--epsilon", "8"], "adaptive cannot train with differential privacy"),
        (["nearest-station", "--epsilon", "8"], "nearest-station cannot train with differential privacy"),
    ],
)
def test_bad_privacy_options_are_one_line_errors(cli, city, tmp_path, args, message):
    code, _, err = cli("fit", args[0], "--data", city, "--out", tmp_path / "r", *args[1:], "--no-progress")
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "checkpoints").exists()
