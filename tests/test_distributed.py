"""Training beyond one process (docs/scale.md): a data-parallel fit through the CLI on two CPU processes
(Lightning's ``ddp``, gloo), its exact resume and its model written once; the one-line errors of asking for
what the machine or the model cannot do."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

import cellsynth
from cellsynth.data.synthetic import CityConfig, synthesize_city
from cellsynth.errors import ConfigError
from cellsynth.generators import get, get_class
from tests.test_cli_errors import one_line_error

REPO_ROOT = Path(__file__).resolve().parents[1]

# Lightning's ddp launcher reruns this script (sys.argv) for rank 1; both processes run all three fits in
# turn, and every fit's stages join the one process group the first stage set up.
DRIVER = textwrap.dedent(
    """
    import sys
    from cellsynth.cli import app

    city, smoke, runs = sys.argv[1:4]

    def fit(out, epochs):
        app(["fit", "stouter", "--data", city, "--out", f"{runs}/{out}", "--config", smoke,
             "--set", f"epochs={epochs}", "--devices", "2", "--strategy", "ddp", "--no-progress"],
            standalone_mode=False)

    fit("resumed", 1)   # "killed" after STUNet's first epoch
    fit("resumed", 3)   # the same command with more epochs resumes from the checkpoint
    fit("whole", 3)     # uninterrupted
    """
)


def test_two_cpu_processes_fit_save_once_and_resume_exactly(tmp_path):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 cores for 2 CPU processes")
    city = tmp_path / "city"
    synthesize_city(CityConfig(seed=4).replace(n_stations=12, n_users=2, weeks=1)).write(city)
    smoke = tmp_path / "stouter.yaml"
    config = get_class("stouter").smoke_config() | {"accelerator": "cpu"}
    smoke.write_text(yaml.safe_dump({**config, "channel_mults": list(config["channel_mults"])}))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, str(driver), str(city / "traffic"), str(smoke), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Rank 1 trains too but writes nothing and says nothing: one report per fit.
    assert done.stdout.count("stouter trained; model saved") == 3, done.stdout

    resumed, whole = cellsynth.load(tmp_path / "resumed"), cellsynth.load(tmp_path / "whole")
    resumed_state, whole_state = resumed._state()[0], whole._state()[0]
    assert resumed_state.keys() == whole_state.keys()
    assert all(torch.equal(resumed_state[k], whole_state[k]) for k in whole_state)
    assert [len(h) for h in resumed.history_.values()] == [2, 2, 3]

    checkpoint = torch.load(tmp_path / "resumed/checkpoints/stunet/last.ckpt", weights_only=True)
    # 12 station-weeks, batches of 8: each of the 2 processes takes 6 a epoch, one step, 3 epochs.
    assert (checkpoint["epoch"], checkpoint["global_step"]) == (2, 3)
    # what generates is the checkpoint's moving average of STUNet (EMA), as rank 0 saved it
    average = {k.removeprefix("ema."): v for k, v in checkpoint["state_dict"].items() if k.startswith("ema.")}
    assert average and all(torch.equal(resumed_state[f"stunet.{k}"], v) for k, v in average.items())
    assert resumed.generate(2, samples=1, seed=0).values.shape[:2] == (2, 168)


# -- errors ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        (["--devices", "100000"], ["devices=100000 CPU processes", "core(s)", "ask for at most"]),
        (["--devices", "0"], ["devices", "greater than or equal to 1"]),
        (["--num-nodes", "0"], ["num_nodes", "greater than or equal to 1"]),
        (["--num-nodes", "2"], ["num_nodes=2", "srun", "torchrun", "docs/scale.md"]),
        (["--strategy", "horovod"], ["strategy", "'ddp'"]),
    ],
)
def test_a_placement_this_machine_cannot_train_is_one_line(cli, tmp_path, monkeypatch, options, fragments):
    for variable in ("SLURM_NTASKS", "SLURM_JOB_NAME", "TORCHELASTIC_RUN_ID", "NODE_RANK", "LSB_JOBID"):
        monkeypatch.delenv(variable, raising=False)
    command = ["fit", "vae", "--data", tmp_path / "absent", "--out", tmp_path / "r", *options]
    # checked before the data is read: the data directory need not even exist
    one_line_error(cli(*command, "--set", "accelerator=cpu"), *fragments)


def test_more_gpus_than_the_machine_has_is_one_line(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    command = ["fit", "vae", "--data", tmp_path, "--out", tmp_path / "r", "--set", "accelerator=gpu"]
    one_line_error(cli(*command, "--devices", "2"), "devices=2", "1 GPU(s)", "at most 1")


def test_a_model_that_trains_no_network_refuses_devices(cli, tmp_path):
    command = ["fit", "seasonal-mean", "--data", tmp_path, "--out", tmp_path / "r", "--devices", "2"]
    one_line_error(cli(*command), "SeasonalMeanConfig has no devices", "leave out devices")
    with pytest.raises(ConfigError, match="TimeGeoConfig has no num_nodes, strategy"):
        get("timegeo", num_nodes=2, strategy="ddp")


def test_placement_is_not_part_of_what_a_resume_checks(tmp_path):
    """A fit may resume on another accelerator or number of devices: the checkpoints hold the same model."""
    from cellsynth.generators.state import guard_resume

    config = get("vae", accelerator="cpu").config.model_dump(mode="json")
    guard_resume(tmp_path, "vae", {"config": config, "data": "d"})
    guard_resume(tmp_path, "vae", {"config": config | {"devices": 4, "strategy": "ddp"}, "data": "d"})
    with pytest.raises(ConfigError, match="different config"):
        guard_resume(tmp_path, "vae", {"config": config | {"lr": 1.0}, "data": "d"})


def test_a_gan_trains_with_ddp_looking_for_unused_parameters():
    """The critic's steps leave the generator's parameters out of the loss (and the other way round), which plain
    DDP refuses: a module that optimises by hand gets unused-parameter detection; others keep their strategy."""
    from cellsynth.training import Placement, _strategy

    def module(name):
        gen = get(name, get_class(name).smoke_config())
        return gen._module(gen._network(2, 0, 168))

    gan, vae = module("tcn-gan"), module("vae")
    two = Placement("cpu", devices=2)
    assert _strategy(two, gan) == "ddp_find_unused_parameters_true"
    assert _strategy(Placement("cpu", devices=2, strategy="ddp"), gan) == "ddp_find_unused_parameters_true"
    assert _strategy(two, vae) == "auto"
    assert _strategy(Placement("cpu"), gan) == "auto"  # one process: no DDP at all
