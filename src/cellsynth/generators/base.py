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

import json
import os
import shutil
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pydantic
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from cellsynth.data.model import Stations, StationTraffic, UserMobility
from cellsynth.errors import ConfigError, DataError, NotFittedError
from cellsynth.outputs import MODEL_RUN, atomic_file, claim_output_dir
from cellsynth.placement import STRATEGIES, Placement, is_rank_zero
from cellsynth.seeds import MAX_SEED

__all__ = [
    "ConfigSection",
    "Generator",
    "GeneratorConfig",
    "StationGenerator",
    "TargetStations",
    "TrainingConfig",
    "UserGenerator",
    "load",
]

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

    seed: int = pydantic.Field(
        0, ge=0, le=MAX_SEED, description="Seed for initialisation and training order (0 to 2**32 - 1)."
    )

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
            nested = values.get(section) or {}
            if not isinstance(nested, (dict, pydantic.BaseModel)):
                raise ConfigError(
                    f"{cls.__name__}: {section!r} is {nested!r:.40}, expected a mapping of its options "
                    f"({section}: {{{field}: ...}})"
                )
            nested = dict(nested)
            if field in nested:
                raise ConfigError(f"{cls.__name__}: {old!r} is the old name of {new!r}: give only {new!r}")
            nested[field] = value
            values[section] = nested
        return values

    @pydantic.model_validator(mode="before")
    @classmethod
    def _nest_moved_fields(cls, values: Any) -> Any:
        return cls.nest_moved(values)


class TrainingConfig(GeneratorConfig):
    """Base of the configs of generators that train networks through Lightning (:mod:`cellsynth.training`):
    where they train, on how many devices and nodes. Changing these never blocks resuming a fit
    (:func:`~cellsynth.generators.state.guard_resume` leaves them out)."""

    #: The fields that say where training runs, not what is trained.
    placement_fields: ClassVar[tuple[str, ...]] = ("accelerator", "devices", "num_nodes", "strategy")

    accelerator: Literal["auto", "cpu", "gpu"] = pydantic.Field(
        "auto", description="Where to train and sample: 'auto' uses a GPU when there is one."
    )
    devices: int = pydantic.Field(
        1,
        ge=1,
        description="Devices per node to train on (GPUs, or CPU processes); more than 1 trains data-parallel.",
    )
    num_nodes: int = pydantic.Field(
        1,
        ge=1,
        description="Machines to train on, each with `devices` devices (launched by srun or torchrun).",
    )
    strategy: Literal[STRATEGIES] = pydantic.Field(  # type: ignore[valid-type]
        "auto",
        description="Lightning's strategy: 'auto' (DDP when several devices), 'ddp', or "
        "'ddp_find_unused_parameters_true' for networks with parameters that a step may leave unused.",
    )

    @pydantic.model_validator(mode="after")
    def _private_training_in_one_process(self):
        # Opacus' DP-SGD draws the Poisson batches and adds the noise in one process; data-parallel processes
        # would each add their own (Opacus' DPDDP is not wired in), so the stated guarantee would not hold.
        if getattr(self, "privacy", None) is not None and self.devices * self.num_nodes > 1:
            raise ValueError(
                f"differentially private training runs in one process, but devices x num_nodes = "
                f"{self.devices * self.num_nodes}; set devices=1 and num_nodes=1 (leave out --devices/--num-nodes)"
            )
        return self

    def placement(self) -> Placement:
        """Where :func:`cellsynth.training.train` trains, checked against this machine (a ConfigError if it
        cannot: more devices than it has...)."""
        return Placement(self.accelerator, self.devices, self.num_nodes, self.strategy).check()


def _validate_config(config_cls: type[GeneratorConfig], config, overrides: dict) -> GeneratorConfig:
    from cellsynth.generators.presets import merge_config

    if isinstance(config, GeneratorConfig):
        config = config.model_dump()
    merged = merge_config(config_cls.nest_moved(config or {}), config_cls.nest_moved(overrides))
    asked = sorted(set(TrainingConfig.placement_fields) & set(merged))
    if asked and not issubclass(config_cls, TrainingConfig):
        raise ConfigError(
            f"{config_cls.__name__} has no {', '.join(asked)}: this model trains no network, in this one "
            "process, on the CPU; leave out " + ", ".join(asked)
        )
    try:
        return config_cls.model_validate(merged)
    except pydantic.ValidationError as err:
        problems = "; ".join(f"{_config_path(e['loc'])}: {e['msg']}" for e in err.errors(include_url=False))
        raise ConfigError(f"invalid {config_cls.__name__}: {problems}") from None


def _config_path(loc: tuple) -> str:
    """Where in a config pydantic found a problem: ``section.field``; a key with a line break or another
    unprintable character (a user's typo) is quoted as Python would, so the message stays on one line."""
    parts = (str(p) if str(p).isprintable() else repr(p) for p in loc)
    return ".".join(parts) or "(config)"


class Generator(ABC):
    """Base of every generator. Subclasses set ``name``, ``kind`` and ``Config`` and implement
    ``fit``, ``generate``, ``_state`` and ``_restore``."""

    name: ClassVar[str]
    kind: ClassVar[Literal["stations", "users"]]
    Config: ClassVar[type[GeneratorConfig]] = GeneratorConfig
    #: Data besides the training set that ``fit`` takes as keyword options (e.g. ``"knowledge_graph"``): the
    #: CLI reads them for the generators that declare them (``cellsynth fit --knowledge-graph``).
    side_inputs: ClassVar[tuple[str, ...]] = ()

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

    def _check_fit_inputs(self, data):
        """Refuse, before any training, ``data`` this generator cannot be fitted on with its config; returns
        ``data``. Every ``fit`` calls it first. The base checks the kind of data; a subclass extends it (calling
        ``super()``) with everything else knowable up front (sizes, descriptors its options need), so that a
        configuration that cannot work fails in a second, not after an hour of pretraining."""
        return expect(data, StationTraffic if self.kind == "stations" else UserMobility, self.name)

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

        ``directory`` must be new, empty, or a model run (see :mod:`cellsynth.outputs`): an earlier saved
        model, or the checkpoints of this fit. Other files already in a run directory are kept. After a
        data-parallel fit every process holds the same model and only rank 0 writes it; the others return at
        once.
        """
        self.check_fitted()
        directory = Path(directory)
        if not is_rank_zero():
            return directory
        tensors, meta = self._state()
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        record = {
            "generator": self.name,
            "format_version": FORMAT_VERSION,
            "config": self.config.model_dump(mode="json"),
            "state": meta,
        }
        claim_output_dir(directory, MODEL_RUN)
        # Both files are written to temporaries first; the inner block ends first, so the weights replace
        # theirs before generator.json (what load() looks for) does: it only appears once weights exist.
        with atomic_file(directory / _META_FILE) as meta_tmp, atomic_file(directory / _WEIGHTS_FILE) as tmp:
            save_file(tensors, str(tmp))
            meta_tmp.write_text(json.dumps(record, indent=2))
        # Where a save of an earlier cellsynth was killed, its staging directory is left over.
        shutil.rmtree(directory / ".model", ignore_errors=True)
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike) -> Generator:
        """Load a generator saved by :meth:`save` (no code is unpickled).

        A damaged directory (either file missing, truncated, not JSON/safetensors, entries of the wrong type,
        arrays that do not fit the config) raises :class:`DataError` naming the file and the fix.
        """
        directory = Path(directory)
        meta_path = directory / _META_FILE
        if not meta_path.exists() and (directory / _WEIGHTS_FILE).exists():
            raise _damaged(meta_path, "is missing")
        if not meta_path.exists():
            raise DataError(
                f"no {_META_FILE} here: not a saved cellsynth model (train one with `cellsynth fit`)",
                source=str(directory),
            )
        record = _read_record(meta_path)
        if record["format_version"] > FORMAT_VERSION:
            raise DataError(
                f"saved with a newer cellsynth (format {record['format_version']}); upgrade cellsynth",
                source=str(directory),
            )
        if cls is Generator:
            from cellsynth.generators.registry import available, get_class

            if record["generator"] not in available():
                raise _damaged(
                    meta_path,
                    f"names the generator {record['generator']!r}, which is not registered (available: "
                    f"{', '.join(available())}; a plug-in must be registered before loading)",
                )
            cls = get_class(record["generator"])
        elif record["generator"] != cls.name:
            raise DataError(f"holds a {record['generator']!r} model, not {cls.name!r}", source=str(directory))
        try:
            gen = cls(record["config"])
        except ConfigError as err:
            raise _damaged(meta_path, f"its config is invalid ({err})", cls.name) from err
        tensors = _read_weights(directory / _WEIGHTS_FILE, cls.name)
        try:
            gen._restore(tensors, record["state"])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError, RuntimeError) as err:
            # Whatever _restore trips on, its only inputs are these two files: they do not belong together.
            problem = " ".join(f"{type(err).__name__}: {err}".split())  # one line (torch's are several)
            problem = problem if len(problem) <= 300 else problem[:300] + "..."
            raise _damaged(
                directory,
                f"{_META_FILE} and {_WEIGHTS_FILE} do not make a {cls.name} model ({problem})",
                cls.name,
            ) from err
        gen.fitted_ = True
        return gen


def _damaged(path: Path, problem: str, model: str = "MODEL") -> DataError:
    """The error for a damaged saved model: what is wrong with which file, and how to get a good one."""
    run = path if path.is_dir() else path.parent
    return DataError(
        f"{problem}; the model directory is damaged: refit it with `cellsynth fit {model} --data DATA --out {run}` "
        "or restore it from a backup",
        source=str(path),
    )


# The entries of generator.json and their JSON types (bool is not an acceptable int).
_RECORD_ENTRIES: dict[str, type] = {"generator": str, "format_version": int, "config": dict, "state": dict}


def _read_record(path: Path) -> dict[str, Any]:
    """``generator.json`` parsed and checked to have every entry :meth:`Generator.save` writes."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise _damaged(path, "is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise _damaged(
            path, f"is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from None
    if not isinstance(record, dict):
        raise _damaged(path, f"holds a JSON {type(record).__name__}, not an object")
    for key, kind in _RECORD_ENTRIES.items():
        if key not in record:
            raise _damaged(path, f"has no {key!r} entry")
        if not isinstance(record[key], kind) or isinstance(record[key], bool):
            raise _damaged(path, f"{key!r} should be a JSON {_JSON_NAMES[kind]}, got {record[key]!r:.60}")
    return record


_JSON_NAMES = {str: "string", int: "integer", dict: "object"}


def _read_weights(path: Path, model: str) -> dict[str, torch.Tensor]:
    """The tensors of ``weights.safetensors`` (safetensors never runs code)."""
    if not path.exists():
        raise _damaged(path, "is missing", model)
    try:
        return load_file(path)
    except SafetensorError as err:
        raise _damaged(path, f"is not a complete safetensors file ({err})", model) from None


def load(directory: str | os.PathLike) -> Generator:
    """Load any saved generator; its class is read from ``generator.json``."""
    return Generator.load(directory)


class StationGenerator(Generator):
    """Generates ``StationTraffic`` for given stations (conditional models) or from the learned
    distribution. ``generate(target)`` accepts:

    - ``Stations``: stations seen in training or new ones (planned sites: coordinates and features);
    - ``StationTraffic``: its stations (convenient for held-out real data);
    - ``int`` n: n stations drawn from the training stations, seeded.

    Every station generator resolves its target the same way (:meth:`_resolve_target`): a target station
    *is* a training station when it has a training station's id and every descriptor it gives equals that
    station's — its features when it has feature columns, its coordinates when both have them — so the
    training stations themselves, also given by id alone, get more weeks of their own traffic, whatever the
    stations are described by (nothing at all included). Any other station is *new* (a planned site) and
    needs a descriptor the training stations had: their feature columns, or coordinates on both sides.
    """

    kind: ClassVar[Literal["stations"]] = "stations"

    def _resolve_target(self, target, seed: int, training_stations: Stations) -> TargetStations:
        """``target`` as :class:`TargetStations` against ``training_stations`` (class docstring); raises a
        :class:`DataError` for a target it cannot be, and for new stations with nothing to condition on."""
        if isinstance(target, StationTraffic):
            target = target.stations
        if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
            if target < 1:
                raise DataError(f"number of stations must be >= 1, got {target}")
            rng = np.random.default_rng(seed)
            idx = rng.choice(len(training_stations), size=int(target), replace=True)
            # Drawing with replacement can repeat a station: give each draw its own id.
            ids = [f"{training_stations.ids[i]}@{j}" for j, i in enumerate(idx)]
            return TargetStations(training_stations.take(idx, ids), idx.astype(np.int64))
        if not isinstance(target, Stations):
            raise DataError(
                f"cannot generate for a {type(target).__name__}; give Stations, StationTraffic or a number"
            )
        if target.feature_names and target.feature_names != training_stations.feature_names:
            raise DataError(
                f"stations have features {list(target.feature_names)}, but {self.name} was trained on stations "
                f"with features {list(training_stations.feature_names)}; give the same feature columns in the "
                "same order (or only the ids of training stations)"
            )
        resolved = TargetStations(target, training_index(training_stations, target))
        if resolved.new is not None:
            _check_new_stations(self.name, training_stations, resolved.new)
        return resolved

    @staticmethod
    def _check_samples(samples: int) -> int:
        if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
            raise DataError(f"samples must be a positive integer, got {samples!r}")
        return int(samples)


@dataclass(frozen=True)
class TargetStations:
    """The stations to generate for, resolved against the training stations.

    ``training_index [M]``: for each station, the index of the training station it is, or -1 for a new one.
    ``new``: the new stations (in order), or None when every station is a training station.
    """

    stations: Stations
    training_index: np.ndarray

    @property
    def known(self) -> np.ndarray:
        return self.training_index >= 0

    @cached_property
    def new(self) -> Stations | None:
        if self.known.all():
            return None
        return self.stations.subset(np.flatnonzero(~self.known))

    def combine(self, training_rows, new_rows=None):
        """``[M, ...]`` rows per station: a training station's own row of ``training_rows`` ``[N, ...]``, and
        for the new stations (in order) the rows of ``new_rows`` (None when there are none). NumPy arrays
        or torch tensors."""
        known = self.known
        if torch.is_tensor(training_rows):
            index, mask = torch.from_numpy(self.training_index.clip(min=0)), torch.from_numpy(~known)
        else:
            index, mask = self.training_index.clip(min=0), ~known
        out = training_rows[index]  # a copy: the training rows are never written
        if mask.any():
            out[mask] = new_rows
        return out


def training_index(training: Stations, stations: Stations) -> np.ndarray:
    """``int64 [M]``: for each of ``stations``, the index of the training station it is, or -1 (new).

    A station is a training station when it has its id and equal features (when it has feature columns)
    and equal coordinates (when both have coordinates); what a station leaves out is not compared, so the
    training stations given by id alone are found too.
    """
    position = {sid: i for i, sid in enumerate(training.ids)}
    compare_features = bool(stations.feature_names)
    compare_coordinates = training.has_coordinates and stations.has_coordinates
    index = np.full(len(stations), -1, dtype=np.int64)
    for j, sid in enumerate(stations.ids):
        i = position.get(str(sid), -1)
        if i < 0:
            continue
        if compare_features and not np.array_equal(stations.features[j], training.features[i]):
            continue
        if compare_coordinates and (stations.lat[j] != training.lat[i] or stations.lon[j] != training.lon[i]):
            continue
        index[j] = i
    return index


def _check_new_stations(name: str, training: Stations, new: Stations) -> None:
    """Raise a one-line :class:`DataError` when the ``new`` stations share no descriptor with the training
    stations (their feature columns, or coordinates on both sides): nothing to condition them on."""
    if training.feature_names and new.feature_names == training.feature_names:
        return
    if training.has_coordinates and new.has_coordinates:
        return
    shown = ", ".join(map(str, new.ids[:5])) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
    what = (
        f"{name}: {len(new)} station(s) ({shown}) are new (no training station has their id with the same "
        "features and coordinates)"
    )
    instead = "generate for training station ids or for a number of stations drawn from them"
    if training.feature_names:
        problem = (
            f"a new station needs the feature columns the model was trained with, {list(training.feature_names)}; "
            f"give them, or {instead}"
        )
    elif training.has_coordinates:
        problem = f"a new station needs lat/lon (the training stations had no feature columns); give them, or {instead}"
    else:
        problem = (
            "the training stations had neither feature columns nor coordinates, so there is nothing to condition "
            f"a new station on; {instead}, or refit on stations with features or lat/lon"
        )
    raise DataError(f"{what}, but {problem}")


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


def steps_per_week(data: StationTraffic, name: str) -> int:
    """``data.steps_per("7D")``, or a :class:`DataError` saying that ``name`` needs a step dividing a week."""
    try:
        return data.steps_per("7D")
    except DataError:
        raise DataError(
            f"{name} models weeks, but the step {data.step} does not divide 7 days; resample to hourly "
            "(or 30-minute) steps",
            source=data.source,
        ) from None


def week_length(data: StationTraffic, name: str, multiple: int = 1) -> int:
    """``L = steps_per("7D")`` of ``data``, after checking that ``name`` can cut it into whole weeks: the step
    divides a week, ``L`` is divisible by ``multiple`` (a network that halves the week) and there is at least
    one week. A :class:`DataError` otherwise (the up-front check of week-based models)."""
    length = steps_per_week(data, name)
    if length % multiple:
        raise DataError(
            f"a week at step {data.step} has {length} steps; {name} needs a multiple of {multiple} (lower its "
            "number of levels, or resample to hourly steps)",
            source=data.source,
        )
    if data.n_steps < length:
        raise DataError(
            f"{name} trains on whole weeks, but the data has {data.n_steps} steps of {data.step}, less than "
            f"one week ({length} steps)",
            source=data.source,
        )
    return length


def training_weeks(data: StationTraffic, name: str, multiple: int = 1) -> np.ndarray:
    """The whole weeks of ``data`` as ``[N, W, L, C]`` (``L`` from :func:`week_length`, which checks; a warning
    names steps left over)."""
    length = week_length(data, name, multiple)
    n_weeks = data.n_steps // length
    left = data.n_steps - n_weeks * length
    if left:
        warnings.warn(
            f"{name}: training on the first {n_weeks} whole week(s); the last {left} step(s) "
            f"({left * data.step}) do not make a whole week and are not used",
            stacklevel=3,
        )
    return data.values[:, : n_weeks * length].reshape(data.n_stations, n_weeks, length, data.n_channels)
