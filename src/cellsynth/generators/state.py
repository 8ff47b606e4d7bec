"""What a generator keeps between runs: its fitted state as named tensors and JSON metadata
(:func:`compose_state` puts named parts under prefixes, :func:`split_state` takes them apart; the stations
and the time axis of the training data), and the fingerprints that keep a resumed fit from mixing configs or
data (:func:`guard_resume`)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cellsynth.data.model import Stations, StationTraffic, UserMobility
from cellsynth.errors import ConfigError, DataError
from cellsynth.generators.base import TrainingConfig
from cellsynth.outputs import atomic_file

__all__ = [
    "compose_state",
    "fingerprint",
    "guard_resume",
    "restore_stations",
    "restore_time_axis",
    "split_state",
    "station_fingerprint",
    "stations_state",
    "time_axis_state",
]


# -- state helpers shared by generators --------------------------------------------------------------------
def compose_state(parts: Mapping[str, Mapping[str, Any] | None]) -> dict[str, Any]:
    """One flat mapping from named parts, for :meth:`Generator._state`: entry ``key`` of part ``name`` is
    stored as ``"name.key"``; a part that is ``None`` (a stage switched off) is left out; numpy arrays become
    tensors, other values (JSON metadata) stay as they are. Inverse: :func:`split_state`.

    A part is what a component's ``state()`` (or a network's ``state_dict()``) returns::

        tensors = compose_state({"scaler": scaler.state(), "net": net.state_dict()})
        parts = split_state(tensors, ("scaler", "net"))
        scaler, net = LogScaler.from_state(parts["scaler"]), net.load_state_dict(parts["net"])
    """
    flat: dict[str, Any] = {}
    for name, part in parts.items():
        for key, value in (part or {}).items():
            flat[f"{name}.{key}"] = torch.from_numpy(value) if isinstance(value, np.ndarray) else value
    return flat


def split_state(flat: Mapping[str, Any], names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per part name, its entries of ``flat`` with ``"name."`` taken off (inverse of :func:`compose_state`).

    A key belongs to the longest name it starts with, so a part and a part inside it (``"levels"`` and
    ``"levels.regression"``) come apart; a name without entries gets ``{}``; keys of no part are left out.
    """
    names = sorted(set(names), key=len, reverse=True)
    parts: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in flat.items():
        for name in names:
            if key.startswith(name + "."):
                parts[name][key[len(name) + 1 :]] = value
                break
    return parts


def stations_state(stations: Stations, prefix: str = "stations") -> tuple[dict[str, torch.Tensor], dict]:
    """Stations as (tensors, JSON metadata) for :meth:`Generator._state`; inverse: :func:`restore_stations`."""
    tensors = {f"{prefix}.features": torch.from_numpy(np.array(stations.features))}
    if stations.has_coordinates:
        tensors[f"{prefix}.lat"] = torch.from_numpy(stations.lat.copy())
        tensors[f"{prefix}.lon"] = torch.from_numpy(stations.lon.copy())
    meta = {
        f"{prefix}.ids": [str(i) for i in stations.ids],
        f"{prefix}.feature_names": list(stations.feature_names),
    }
    return tensors, meta


def restore_stations(tensors: dict[str, torch.Tensor], meta: dict, prefix: str = "stations") -> Stations:
    has_xy = f"{prefix}.lat" in tensors
    return Stations(
        ids=np.array(meta[f"{prefix}.ids"], dtype=object),
        lat=tensors[f"{prefix}.lat"].numpy() if has_xy else None,
        lon=tensors[f"{prefix}.lon"].numpy() if has_xy else None,
        features=tensors[f"{prefix}.features"].numpy(),
        feature_names=tuple(meta[f"{prefix}.feature_names"]),
    )


def time_axis_state(data: StationTraffic | UserMobility) -> dict:
    """The start, step (and channels) of training data, so generated data lands on the same axis."""
    meta = {"start": data.start.isoformat(), "tz": str(data.start.tz), "step": data.step.isoformat()}
    if isinstance(data, StationTraffic):
        meta["channels"] = list(data.channels)
    return meta


def restore_time_axis(meta: dict):
    import pandas as pd

    return pd.Timestamp(meta["start"]).tz_convert(meta["tz"]), pd.Timedelta(meta["step"])


# -- resuming safely -------------------------------------------------------------------------------------
def fingerprint(*parts) -> str:
    """SHA-256 over arrays (dtype, shape and bytes) and sequences of strings, in order; ``None`` parts are
    skipped. Arrays of Python objects (string ids, knowledge-graph triplets) are hashed by their values'
    text: their bytes are memory addresses, which differ between processes and would make every resume in
    a new process look like other data."""
    digest = hashlib.sha256()
    for part in parts:
        if part is None:
            continue
        if isinstance(part, np.ndarray) and part.dtype != object:
            digest.update(f"{part.dtype.str}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            items = part.ravel().tolist() if isinstance(part, np.ndarray) else part
            digest.update("\0".join(map(str, items)).encode())
        digest.update(b"\1")  # part separator: ("ab", "c") and ("a", "bc") differ
    return digest.hexdigest()


def station_fingerprint(data: StationTraffic) -> str:
    """Fingerprint of station traffic and its stations (values, ids, features, coordinates)."""
    stations = data.stations
    return fingerprint(data.values, stations.ids, stations.features, stations.lat, stations.lon)


def guard_resume(checkpoint_dir, name: str, record: dict[str, Any], what_else: str = "training data") -> None:
    """Refuse to resume from checkpoints written for another config or other data: Lightning would load
    them silently. ``record`` is ``{"config": ..., "data": ...}``; it is stored beside the checkpoints on
    the first fit and compared on every later one."""
    if checkpoint_dir is None:
        return
    # Where training runs (accelerator, devices, nodes, strategy) may change between a run and its resume.
    placement = set(TrainingConfig.placement_fields)
    record = {**record, "config": {k: v for k, v in record["config"].items() if k not in placement}}
    path = Path(checkpoint_dir) / "checkpoints" / f"{name}-fit.json"
    if path.exists():
        try:
            theirs = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            theirs = None
        if not isinstance(theirs, dict):
            raise DataError(
                "is damaged (not a JSON object), so the checkpoints beside it cannot be checked against this "
                f"config and data; delete {path.parent} to train afresh, or use a fresh output directory",
                source=str(path),
            )
        if isinstance(theirs.get("config"), dict):  # records written before placement was left out
            theirs["config"] = {k: v for k, v in theirs["config"].items() if k not in placement}
        if theirs != record:
            what = "config" if theirs.get("config") != record["config"] else what_else
            raise ConfigError(
                f"{path.parent} holds checkpoints of a {name} fit with a different {what}; resume with the "
                "same config and data, or use a fresh output directory"
            )
        return
    with atomic_file(path) as tmp:  # the processes of a data-parallel run may all write it at once
        tmp.write_text(json.dumps(record, indent=2))
