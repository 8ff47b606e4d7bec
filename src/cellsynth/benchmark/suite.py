"""A benchmark suite: several datasets, the models, the seeds, the protocols and one budget rule, from a YAML
file (:func:`read_suite`) or built in code (:class:`Suite`); :func:`load_datasets` reads and checks its data.

A suite file (``benchmarks/suites/stations-real.yaml`` is the real one, ``smoke.yaml`` a seconds-long one)::

    models: [stouter, tcn-gan, vae, diffwave, seasonal-mean, nearest-station, recent-weeks]
    seeds: 3                  # or a list of seeds
    protocol: both            # stations (new sites), time (future weeks) or both; a dataset may narrow it
    budget: 30                # epochs for every trained model, or "preset"
    min_steps: 600            # and at least this many optimiser steps (more epochs on a small training set)
    samples: 2                # weeks generated per station
    test_fraction: 0.2        # of the stations (protocol stations) or of the whole weeks (protocol time)
    split_seed: 0
    train_stations: 0         # also score this many training stations (null: all; 0: none)
    preset: recommended       # or paper, or null (the config classes' defaults)
    configs:                  # per-model config values on top of the preset
      vae: {epochs: 50}
    variants:                 # rows that run a model with other settings (an ablation), listed in models:
      stouter-no-stffm: {model: stouter, set: {use_stffm: false}}
    datasets:
      beijing:                # the name: [A-Za-z0-9_.-], the leaderboard's and the directory's
        path: beijing         # a cellsynth dataset, a synthetic city directory, or a file to import
        protocols: [stations] # one week only: no time split
        configs_dir: ../../configs/beijing   # <model>.yaml files on top of the suite's configs
      nanjing-traffic:
        path: ../shared/data/mobifm-nanjing/NJTCH.npz
        import: {format: mobifm, embeddings: ../shared/data/mobifm-nanjing/kg_embeddings_NJTCH.npy}
      milan:
        path: milan.csv.gz
        import: {format: csv}
        resample: 1h          # sums steps into hourly ones; drop_partial: true drops a partial last step
        protocols: [time]
      city:
        synthetic: {seed: 0, weeks: 4}   # a synthetic city built on the fly (cellsynth.data.synthetic)
        channels: [internet, sms]        # only these channels (default: all)

Relative paths are taken from the suite file's directory. ``import`` names a format of
``cellsynth data import`` (a traffic one) and its loader's options; options that are paths are relative to
the suite file too. Every key is checked before anything runs: an unknown key, model, format or protocol, a
missing path, a resample step that does not fit the data, a dataset without the station features the station
protocol needs, all end in one :class:`~cellsynth.errors.ConfigError` (or ``DataError``) line naming the file
and the key.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pydantic

from cellsynth.data.model import StationTraffic
from cellsynth.errors import CellsynthError, ConfigError, DataError

__all__ = ["DatasetSpec", "Suite", "VariantSpec", "load_datasets", "read_suite"]

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
ProtocolName = Literal["stations", "time"]


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DatasetSpec(_Strict):
    """One dataset of a suite: where its data comes from and how it is prepared (module docstring)."""

    path: str | None = None
    import_: dict[str, Any] | None = pydantic.Field(None, alias="import")
    synthetic: dict[str, Any] | None = None
    channels: list[str] | None = None
    resample: str | None = None
    drop_partial: bool = False
    protocols: list[ProtocolName] | None = None
    configs: dict[str, dict[str, Any]] = {}
    configs_dir: str | None = None

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        if (self.path is None) == (self.synthetic is None):
            raise ValueError("give exactly one of path (a dataset, city directory or file) and synthetic")
        if self.import_ is not None and self.path is None:
            raise ValueError("import needs the path of the file to import")
        return self


class VariantSpec(_Strict):
    """A row that runs a registered generator with other settings (an ablation): ``model`` and the config
    values ``set`` on top of that model's configs in the suite."""

    model: str
    set: dict[str, Any] = {}


class Suite(_Strict):
    """The whole benchmark: datasets by name, models, seeds, protocols, the budget rule and the options of
    :func:`cellsynth.benchmark.run_benchmark` shared by every dataset."""

    datasets: dict[str, DatasetSpec]
    models: list[str] = ["stouter", "tcn-gan", "vae", "diffwave", "seasonal-mean", "nearest-station"]
    seeds: int | list[int] = 3
    protocol: Literal["stations", "time", "both"] = "stations"
    budget: Literal["preset"] | int = "preset"
    min_steps: int | None = None
    samples: int = 10
    test_fraction: float = 0.2
    split_seed: int = 0
    train_stations: int | None = None
    preset: str | None = "recommended"
    configs: dict[str, dict[str, Any]] = {}
    configs_dir: str | None = None
    variants: dict[str, VariantSpec] = {}
    #: Where relative paths start (the suite file's directory); not a key of the file.
    base: Path = pydantic.Field(default_factory=Path, exclude=True)
    #: What to name in errors (the suite file); not a key of the file.
    where: str = pydantic.Field("suite", exclude=True)

    def protocols_of(self, name: str) -> list[str]:
        """The protocols dataset ``name`` is scored under: its own ``protocols``, else the suite's."""
        own = self.datasets[name].protocols
        if own:
            return list(dict.fromkeys(own))
        return ["stations", "time"] if self.protocol == "both" else [self.protocol]

    @property
    def generators(self) -> dict[str, str]:
        """The registered generator of every model row: a variant's ``model``, else the row's own name."""
        return {m: self.variants[m].model if m in self.variants else m for m in self.models}

    def resolve(self, path: str) -> Path:
        return Path(path) if Path(path).is_absolute() else self.base / path


def read_suite(path: str | os.PathLike) -> Suite:
    """The suite in the YAML file ``path``, every key and every model checked (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"{path}: no such suite file; give the path of a YAML suite (see benchmarks/suites/)"
        )
    return make_suite(_yaml_mapping(path, "datasets:, models:, ..."), base=path.parent, where=str(path))


def _yaml_mapping(path: Path, expected: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` (empty file: ``{}``); a one-line ConfigError naming it else."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML text file (not UTF-8)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ConfigError(f"{path}: not valid YAML{at} ({problem}); fix its syntax") from None
    loaded = {} if loaded is None else loaded
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping ({expected}), got a {type(loaded).__name__}")
    return loaded


def make_suite(values: dict[str, Any], *, base: Path = Path(), where: str = "suite") -> Suite:
    """``values`` (the mapping of a suite file) checked as a :class:`Suite`; errors name ``where`` and the key."""
    for key in ("base", "where"):
        if key in values:
            raise ConfigError(f"{where}: {key}: not a suite key")
    try:
        suite = Suite.model_validate({**values, "base": base, "where": where})
    except pydantic.ValidationError as err:
        first = err.errors(include_url=False)[0]
        key = ".".join(str(p) for p in first["loc"] if not str(p).startswith("function-after")) or "(suite)"
        more = f" (and {err.error_count() - 1} more problem(s))" if err.error_count() > 1 else ""
        raise ConfigError(f"{where}: {key}: {first['msg']}{more}") from None
    _check_names(suite)
    return suite


def _check_names(suite: Suite) -> None:
    from cellsynth.benchmark.run import variant_problem
    from cellsynth.generators import available, get_class

    where = suite.where
    if not suite.datasets:
        raise ConfigError(f"{where}: datasets: no datasets; name at least one")
    for name in suite.datasets:
        if not _NAME.match(name):
            raise ConfigError(
                f"{where}: datasets.{name}: a dataset name names a directory: use letters, digits, '.', '_', '-'"
            )
    for name, variant in suite.variants.items():
        key = f"{where}: variants.{name}"
        if not _NAME.match(name):
            raise ConfigError(f"{key}: a variant name names a directory: use letters, digits, '.', '_', '-'")
        if name not in suite.models:
            raise ConfigError(f"{key}: not one of the models {suite.models}; list it there to run it")
        problem = variant_problem(name, variant.model)
        if problem:
            raise ConfigError(f"{key}: {problem}")
    for i, (row, model) in enumerate(suite.generators.items()):
        if model not in available():
            raise ConfigError(
                f"{where}: models[{i}]: unknown generator {model!r}; available: {', '.join(available())} "
                "(or a name under variants:)"
            )
        if get_class(model).kind != "stations":
            raise ConfigError(f"{where}: models[{i}]: {row} generates users, not station traffic")
    named = list(dict.fromkeys([*suite.models, *suite.generators.values()]))
    scopes = [("configs", suite.configs)] + [
        (f"datasets.{n}.configs", d.configs) for n, d in suite.datasets.items()
    ]
    for scope, configs in scopes:
        for model in configs:
            if model not in named:
                raise ConfigError(f"{where}: {scope}.{model}: {model} is not one of the models {named}")


@dataclass(frozen=True, eq=False)
class LoadedDataset:
    """A suite dataset read, prepared and ready to split: its traffic and its per-model config values."""

    name: str
    traffic: StationTraffic
    #: Config values by model row; a variant's are its model's, then its ``set``, then its own.
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_datasets(suite: Suite) -> list[LoadedDataset]:
    """Read every dataset of ``suite`` (imported, resampled, channels chosen) and its model configs; an
    error names the suite file and the dataset's key."""
    from cellsynth.generators.presets import merge_config

    shared = merge_config(_configs_dir(suite, suite.configs_dir, "configs_dir"), suite.configs)
    loaded = []
    for name, spec in suite.datasets.items():
        key = f"datasets.{name}"
        try:
            traffic = _prepare(_read(suite, spec, key), spec, key)
            own = merge_config(_configs_dir(suite, spec.configs_dir, f"{key}.configs_dir"), spec.configs)
        except CellsynthError as err:
            raise type(err)(_located(suite.where, key, err)) from None
        loaded.append(LoadedDataset(name, traffic, _row_configs(suite, merge_config(shared, own))))
    return loaded


def _row_configs(suite: Suite, configs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    from cellsynth.generators.presets import merge_config

    rows = {}
    for row, model in suite.generators.items():
        values = configs.get(row, {})
        if row in suite.variants:
            values = merge_config(merge_config(configs.get(model, {}), suite.variants[row].set), values)
        if values:
            rows[row] = values
    return rows


def _located(where: str, key: str, err: CellsynthError) -> str:
    text = str(err)
    return text if text.startswith(f"{where}: ") else f"{where}: {key}: {text}"


def _configs_dir(suite: Suite, directory: str | None, key: str) -> dict[str, dict[str, Any]]:
    """``{model: values}`` of the ``<model>.yaml`` files there for the suite's models."""
    if directory is None:
        return {}
    path = suite.resolve(directory)
    if not path.is_dir():
        raise ConfigError(f"{suite.where}: {key}: {path} is not a directory of <model>.yaml files")
    files = {m: path / f"{m}.yaml" for m in dict.fromkeys([*suite.models, *suite.generators.values()])}
    return {m: _yaml_mapping(file, "option: value") for m, file in files.items() if file.exists()}


def _read(suite: Suite, spec: DatasetSpec, key: str) -> StationTraffic:
    if spec.synthetic is not None:
        from cellsynth.data.synthetic import CityConfig, synthesize_city

        try:
            config = CityConfig(**spec.synthetic)
        except TypeError as err:
            raise ConfigError(f"synthetic: {err} (the keys are CityConfig's fields)") from None
        return synthesize_city(config).traffic
    path = suite.resolve(spec.path)
    if not path.exists():
        raise ConfigError(f"path: {path} does not exist")
    if spec.import_ is not None:
        return _import(suite, path, dict(spec.import_))
    from cellsynth.data import read

    # A cellsynth dataset, or a synthetic city directory (its traffic/).
    directory = path if (path / "stations.parquet").exists() else path / "traffic"
    if not (directory / "stations.parquet").exists():
        raise DataError(
            "no cellsynth dataset here (expected stations.parquet, or a city's traffic/); import the data with "
            "`cellsynth data import ...` or give import: {format: ...}",
            source=str(path),
        )
    return read(directory)


def _import(suite: Suite, path: Path, options: dict[str, Any]) -> StationTraffic:
    from cellsynth.data.loaders import FORMATS

    name = options.pop("format", None)
    traffic_formats = [f for f, spec in FORMATS.items() if spec.returns == "traffic"]
    if name not in traffic_formats:
        raise ConfigError(
            f"import.format: {name!r} is not a station-traffic format; one of {traffic_formats}"
        )
    loader = FORMATS[name].loader
    parameters = dict(list(inspect.signature(loader).parameters.items())[1:])
    for option, value in options.items():
        if option not in parameters:
            raise ConfigError(
                f"import.{option}: {name} takes no option {option!r}; it takes {sorted(parameters)}"
            )
        if "PathLike" in str(parameters[option].annotation) and isinstance(value, str):
            options[option] = suite.resolve(value)
    return loader(path, **options)


def _prepare(traffic: StationTraffic, spec: DatasetSpec, key: str) -> StationTraffic:
    if not isinstance(traffic, StationTraffic):
        raise DataError(f"holds {type(traffic).__name__}, not station traffic")
    if spec.resample is not None:
        from cellsynth.data.resample import resample

        try:
            traffic = resample(traffic, spec.resample, drop_partial=spec.drop_partial)
        except CellsynthError as err:
            raise type(err)(f"resample: {err}") from None
    if spec.channels is not None:
        missing = [c for c in spec.channels if c not in traffic.channels]
        if missing:
            raise ConfigError(
                f"channels: {missing} are not channels of the data; it has {list(traffic.channels)}"
            )
        traffic = traffic.select_channels(spec.channels)
    return traffic
