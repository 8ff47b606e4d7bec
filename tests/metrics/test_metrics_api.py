"""The public surface of cellsynth.metrics: what it exports and what it depends on."""

from __future__ import annotations

import subprocess
import sys

import cellsynth.metrics as metrics


def test_all_lists_exactly_the_public_names():
    public = {name for name in vars(metrics) if not name.startswith("_")} - {
        "catalog",
        "histogram",
        "mobility",
        "privacy",
        "traffic",
        "utility",
    }
    assert set(metrics.__all__) == public
    assert len(metrics.__all__) == len(set(metrics.__all__))


def test_depends_only_on_numpy_and_scipy():
    # A fresh interpreter: other tests may already have imported torch or pandas into this one.
    code = (
        "import sys, cellsynth.metrics; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'pandas', 'matplotlib'} "
        "or m.startswith('cellsynth.data')); print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
