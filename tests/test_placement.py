"""Where a run trains and samples (cellsynth.placement): the writing rank as Lightning reads it, a network on a
device, and the models that train nothing running without Lightning."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from cellsynth.placement import module_on

_RANK_VARIABLES = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")


def _run(code: str, *args: str) -> str:
    """What ``code`` prints in a fresh interpreter with none of the rank variables set."""
    env = {k: v for k, v in os.environ.items() if k not in _RANK_VARIABLES}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


RANK_CASES = [
    ({}, True),
    ({"RANK": "1"}, False),
    ({"LOCAL_RANK": "0"}, True),
    ({"LOCAL_RANK": "1"}, False),
    ({"RANK": "0", "LOCAL_RANK": "1"}, True),  # RANK first, as Lightning reads them
    ({"SLURM_PROCID": "3"}, False),
    ({"LOCAL_RANK": "0", "SLURM_PROCID": "3"}, True),  # SLURM sets its id outside its launches too
]

# each case's is_rank_zero() without Lightning imported, then Lightning's own reading of the same variables
RANKS = """
import json, os, sys
from cellsynth.placement import is_rank_zero
cases, names = json.loads(sys.argv[1]), json.loads(sys.argv[2])

def each(rank_zero):
    out = []
    for variables in cases:
        for name in names:
            os.environ.pop(name, None)
        os.environ.update(variables)
        out.append(rank_zero())
    return out

ours = each(is_rank_zero)
lightning_imported = any(m.startswith("lightning.") for m in sys.modules)
from lightning.fabric.utilities.rank_zero import _get_rank
print(json.dumps([ours, lightning_imported, each(lambda: (_get_rank() or 0) == 0)]))
"""


def test_the_writing_rank_is_lightnings_reading_without_importing_lightning():
    cases = json.dumps([variables for variables, _ in RANK_CASES])
    ours, lightning_imported, lightnings = json.loads(_run(RANKS, cases, json.dumps(_RANK_VARIABLES)))
    assert ours == [zero for _, zero in RANK_CASES]
    assert not lightning_imported
    assert lightnings == ours


UNTRAINED_MODELS = """
from cellsynth.generators import available, get_class
from cellsynth.generators.base import TrainingConfig
print(" ".join(name for name in available() if not issubclass(get_class(name).Config, TrainingConfig)))
"""

# every model that trains no network imported, and a floor fitted, saved, loaded and generating
WITHOUT_LIGHTNING = """
import sys, tempfile
import cellsynth
from cellsynth.data.synthetic import CityConfig, synthesize_city
from cellsynth.generators import get, get_class

for name in sys.argv[1:]:
    get_class(name)
city = synthesize_city(CityConfig(n_stations=10, n_users=2, weeks=1))
model = get("seasonal-mean").fit(city.traffic)
with tempfile.TemporaryDirectory() as tmp:
    model.save(tmp + "/run")
    cellsynth.load(tmp + "/run").generate(city.traffic.stations, samples=1, seed=0)
print(sorted(m for m in sys.modules if m == "lightning" or m.startswith("lightning.")))
"""


def test_the_models_that_train_no_network_run_without_lightning():
    """The models whose config has no training placement (the floors, TimeGeo) leave Lightning unimported,
    saving included, so that their commands start seconds sooner."""
    untrained = _run(UNTRAINED_MODELS).split()
    assert {"seasonal-mean", "markov", "timegeo"} <= set(untrained)
    assert _run(WITHOUT_LIGHTNING, *untrained) == "[]"


def test_module_on_its_own_device_is_the_module_untouched():
    rnn = torch.nn.GRU(2, 3)
    refs = rnn._flat_weight_refs
    assert module_on(rnn, torch.device("cpu")) is rnn
    assert rnn._flat_weight_refs is refs  # no in-place `to`, which would rebuild them


def test_module_on_another_device_is_a_copy_and_leaves_the_module_where_it_was():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    moved = module_on(net, torch.device("meta"))
    assert moved is not net
    assert {t.device.type for t in [*moved.parameters(), *moved.buffers()]} == {"meta"}
    assert {t.device.type for t in [*net.parameters(), *net.buffers()]} == {"cpu"}
