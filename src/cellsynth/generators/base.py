"""The generator contract shared by every model, scikit-learn style::

    gen = cellsynth.generators.get("stouter", config)      # or StouterGenerator(config)
    gen.fit(train, progress=True)                          # -> gen
    synth = gen.generate(stations, samples=4, seed=0)      # -> StationTraffic / UserMobility
    gen.save("run/"); gen2 = cellsynth.load("run/")

A saved generator is a directory with ``generator.json`` (name, format version, the validated config and
JSON-able state such as normalisation constants) and ``weights.safetensors`` (tensors). Loading one never
unpickles code.

Station generators return ``k`` samples per station as separate series whose ids are ``"<id>#<j>"``
(``j = 0..k-1``, station-major order); :func:`cellsynth.data.samples.split_samples` recovers the
``[N, K, T, C]`` view. With ``samples=1`` the ids are the stations' own.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pydantic
import torch
from safetensors.torch import load_file, save_file

from cellsynth.data.io import atomic_directory
from cellsynth.data.model import Stations, StationTraffic, UserMobility
from cellsynth.errors import ConfigError, DataError, NotFittedError

__all__ = ["ConfigSection", "Generator", "GeneratorConfig", "StationGenerator", "UserGenerator", "load"]

FORMAT_VERSION = 1
_META_FILE = "generator.json"
_WEIGHTS_FILE = "weights.safetensors"


class ConfigSection(pydantic.BaseModel):
    """A nested section of a generator's config (``sampling``, ``extensions``, ...): unknown keys are
    errors, as at the top level."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class GeneratorConfig(ConfigSection):
    """Base of every generator's configuration: unknown keys are errors, not silently ignored.

    Sections group what is not the paper's model: ``sampling`` (how ``generate`` samples by default),
    ``extensions`` (options beyond the paper), and per model others such as ``calibration``.
    """

    #: Fields that moved into a section, old flat name -> ``"section.field"``: saved models and configs
    #: written before the move are read as the nested field.
    moved_fields: ClassVar[dict[str, str]] = {}

    seed: int = pydantic.Field(0, description="Seed for initialisation and training order.")

    @classmethod
    def nest_moved(cls, values: Any) -> Any:
        """``values`` with each old flat name of :attr:`moved_fields` moved into its section. A field that
        became a section of the same name (``calibration: moments`` -> ``calibration.mode``) is moved only
        when its value is not already the section's mapping, and before the other fields of that section."""
        if not isinstance(values, dict) or not any(old in values for old in cls.moved_fields):
            return values
        values = dict(values)
        renamed_sections = sorted(cls.moved_fields.items(), key=lambda item: item[0] != item[1].split(".")[0])
        for old, new in renamed_sections:
            section, _, field = new.partition(".")
            if old not in values or (old == section and isinstance(values[old], dict)):
                continue
            value = values.pop(old)
            nested = dict(values.get(section) or {})
            if field in nested:
                raise ConfigError(f"{cls.__name__}: {old!r} is the old name of {new!r}: give only {new!r}")
            nested[field] = value
            values[section] = nested
        return values

    @pydantic.model_validator(mode="before")
    @classmethod
    def _nest_moved_fields(cls, values: Any) -> Any:
        return cls.nest_moved(values)


def _validate_config(config_cls: type[GeneratorConfig], config, overrides: dict) -> GeneratorConfig:
    from cellsynth.generators.presets import merge_config

    if isinstance(config, GeneratorConfig):
        config = config.model_dump()
    merged = merge_config(config_cls.nest_moved(config or {}), config_cls.nest_moved(overrides))
    try:
        return config_cls.model_validate(merged)
    except pydantic.ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '(config)'}: {e['msg']}" for e in err.errors(include_url=False)
        )
        raise ConfigError(f"invalid {config_cls.__name__}: {problems}") from None


class Generator(ABC):
    """Base of every generator. Subclasses set ``name``, ``kind`` and ``Config`` and implement
    ``fit``, ``generate``, ``_state`` and ``_restore``."""

    name: ClassVar[str]
    kind: ClassVar[Literal["stations", "users"]]
    Config: ClassVar[type[GeneratorConfig]] = GeneratorConfig

    def __init__(self, config: GeneratorConfig | dict | None = None, **overrides: Any) -> None:
        self.config = _validate_config(self.Config, config, overrides)
        self.fitted_ = False

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        """Overrides for the smallest configuration that still runs every code path in seconds.

        Used by the conformance suite and quick smoke runs; not for quality.
        """
        return {}

    def __repr__(self) -> str:
        state = "fitted" if self.fitted_ else "not fitted"
        return f"{type(self).__name__}({state}, {self.config!r})"

    @abstractmethod
    def fit(
        self, data, *, progress: bool = True, checkpoint_dir: str | os.PathLike | None = None
    ) -> Generator:
        """Train on ``data``. With ``checkpoint_dir``, checkpoints go there and a rerun resumes from them."""

    @abstractmethod
    def generate(self, target, *, samples: int = 1, seed: int = 0, **options: Any):
        """Draw synthetic data; the same ``seed`` gives the same output on the same machine."""

    def fit_notes(self) -> list[str]:
        """Lines a user should read after fitting (what the model learned that limits its use); [] if none."""
        return []

    # -- persistence ---------------------------------------------------------------------------------
    @abstractmethod
    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything a fitted generator needs: (named tensors, JSON-able metadata)."""

    @abstractmethod
    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Inverse of :meth:`_state` on a freshly constructed generator with the saved config."""

    def check_fitted(self) -> None:
        if not self.fitted_:
            raise NotFittedError(f"{self.name}: call fit(...) (or cellsynth.load a saved model) before this")

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``generator.json`` and ``weights.safetensors`` into ``directory`` atomically.

        Other files already in ``directory`` (checkpoints of the run, say) are kept.
        """
        self.check_fitted()
        directory = Path(directory)
        tensors, meta = self._state()
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        record = {
            "generator": self.name,
            "format_version": FORMAT_VERSION,
            "config": self.config.model_dump(mode="json"),
            "state": meta,
        }
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_directory(directory / ".model") as tmp:
            save_file(tensors, tmp / _WEIGHTS_FILE)
            (tmp / _META_FILE).write_text(json.dumps(record, indent=2))
        # Move the two files up next to the run's other contents; os.replace is atomic per file and the
        # weights land first, so generator.json (what load() looks for) only appears once weights exist.
        os.replace(directory / ".model" / _WEIGHTS_FILE, directory / _WEIGHTS_FILE)
        os.replace(directory / ".model" / _META_FILE, directory / _META_FILE)
        (directory / ".model").rmdir()
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Generator:
        """Load a generator saved by :meth:`save` (no code is unpickled)."""
        directory = Path(directory)
        meta_path = directory / _META_FILE
        if not meta_path.exists():
            raise DataError(
                f"no {_META_FILE} here: not a saved cellsynth model (train one with `cellsynth fit`)",
                source=str(directory),
            )
        record = json.loads(meta_path.read_text())
        if record.get("format_version", 0) > FORMAT_VERSION:
            raise DataError(
                f"saved with a newer cellsynth (format {record['format_version']}); upgrade cellsynth",
                source=str(directory),
            )
        if cls is Generator:
            from cellsynth.generators.registry import get_class

            cls = get_class(record["generator"])
        elif record["generator"] != cls.name:
            raise DataError(f"holds a {record['generator']!r} model, not {cls.name!r}", source=str(directory))
        gen = cls(record["config"])
        gen._restore(load_file(directory / _WEIGHTS_FILE), record["state"])
        gen.fitted_ = True
        return gen


def load(directory: str | os.PathLike) -> Generator:
    """Load any saved generator; its class is read from ``generator.json``."""
    return Generator.load(directory)


class StationGenerator(Generator):
    """Generates ``StationTraffic`` for given stations (conditional models) or from the learned
    distribution. ``generate(target)`` accepts:

    - ``Stations``: stations seen in training or new ones (planned sites: coordinates and features);
    - ``StationTraffic``: its stations (convenient for held-out real data);
    - ``int`` n: n stations drawn from the training stations, seeded.
    """

    kind: ClassVar[Literal["stations"]] = "stations"

    def _resolve_target(self, target, seed: int, training_stations: Stations) -> Stations:
        if isinstance(target, StationTraffic):
            return target.stations
        if isinstance(target, Stations):
            return target
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            if target < 1:
                raise DataError(f"number of stations must be >= 1, got {target}")
            rng = np.random.default_rng(seed)
            idx = rng.choice(len(training_stations), size=int(target), replace=True)
            # Drawing with replacement can repeat a station: give each draw its own id.
            return training_stations.take(idx, [f"{training_stations.ids[i]}@{j}" for j, i in enumerate(idx)])
        raise DataError(
            f"cannot generate for a {type(target).__name__}; give Stations, StationTraffic or a number"
        )

    @staticmethod
    def _check_samples(samples: int) -> int:
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise DataError(f"samples must be a positive integer, got {samples!r}")
        return int(samples)


class UserGenerator(Generator):
    """Generates ``UserMobility``: ``generate(n_users, seed=...)``."""

    kind: ClassVar[Literal["users"]] = "users"

    @staticmethod
    def _check_users(n_users) -> int:
        if isinstance(n_users, bool) or not isinstance(n_users, (int, np.integer)) or n_users < 1:
            raise DataError(f"number of users must be a positive integer, got {n_users!r}")
        return int(n_users)


def expect(data, kind: type, generator: str):
    """Raise a clear error when ``fit`` gets the wrong kind of data."""
    if not isinstance(data, kind):
        raise DataError(
            f"{generator} trains on {kind.__name__}, got {type(data).__name__}"
            + (
                " (user-level data: use a user generator such as mstdiff)"
                if isinstance(data, UserMobility)
                else ""
            )
        )
    return data


# -- state helpers shared by generators --------------------------------------------------------------------
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


def training_weeks(data: StationTraffic, name: str, multiple: int = 1) -> np.ndarray:
    """The whole weeks of ``data`` as ``[N, W, L, C]`` (``L = steps_per("7D")``; a warning names steps left
    over). ``multiple``: ``L`` must be divisible by it (a network that halves the week)."""
    try:
        length = data.steps_per("7D")
    except DataError:
        raise DataError(
            f"{name} models whole weeks, but the step {data.step} does not divide 7 days; resample to hourly "
            "(or 30-minute) steps",
            source=data.source,
        ) from None
    if length % multiple:
        raise DataError(
            f"a week at step {data.step} has {length} steps; {name} needs a multiple of {multiple} (lower its "
            "number of levels, or resample to hourly steps)",
            source=data.source,
        )
    n_weeks = data.n_steps // length
    if n_weeks == 0:
        raise DataError(
            f"{name} trains on whole weeks, but the data has {data.n_steps} steps of {data.step}, less than "
            f"one week ({length} steps)",
            source=data.source,
        )
    left = data.n_steps - n_weeks * length
    if left:
        warnings.warn(
            f"{name}: training on the first {n_weeks} whole week(s); the last {left} step(s) "
            f"({left * data.step}) do not make a whole week and are not used",
            stacklevel=3,
        )
    return data.values[:, : n_weeks * length].reshape(data.n_stations, n_weeks, length, data.n_channels)


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
    path = Path(checkpoint_dir) / "checkpoints" / f"{name}-fit.json"
    if path.exists():
        theirs = json.loads(path.read_text())
        if theirs != record:
            what = "config" if theirs.get("config") != record["config"] else what_else
            raise ConfigError(
                f"{path.parent} holds checkpoints of a {name} fit with a different {what}; resume with the "
                "same config and data, or use a fresh output directory"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
