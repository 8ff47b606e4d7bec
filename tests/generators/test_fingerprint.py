"""Resume guards compare data fingerprints across processes: they must depend on values, not on where
Python put the objects."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from cellsynth.generators.state import fingerprint

_SCRIPT = """
import numpy as np, pandas as pd
from cellsynth.data.model import Stations, StationTraffic
from cellsynth.generators.state import station_fingerprint
stations = Stations([f"bs{i}" for i in range(3)], features=np.eye(3), feature_names=("a", "b", "c"))
data = StationTraffic(np.ones((3, 168, 1)), pd.Timestamp("2026-01-05", tz="UTC"), "1h", ("x",), stations)
print(station_fingerprint(data))
"""


def test_station_fingerprint_is_the_same_in_another_process():
    runs = [
        subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, check=True)
        for _ in "ab"
    ]
    assert runs[0].stdout.strip() and runs[0].stdout == runs[1].stdout


def test_object_arrays_are_hashed_by_value():
    built = np.array(["".join(["s", str(i)]) for i in range(3)], dtype=object)  # new string objects
    assert fingerprint(np.array(["s0", "s1", "s2"], dtype=object)) == fingerprint(built)
    assert fingerprint(built) == fingerprint(["s0", "s1", "s2"])
    assert fingerprint(built) != fingerprint(np.array(["s0", "s1", "s3"], dtype=object))


def test_parts_shapes_and_dtypes_are_told_apart():
    assert fingerprint(["ab"], ["c"]) != fingerprint(["a"], ["bc"])
    x = np.arange(6, dtype=np.float32)
    assert fingerprint(x) != fingerprint(x.reshape(2, 3)) != fingerprint(x.astype(np.float64))
    assert fingerprint(x, None) == fingerprint(x)
