"""Generators by name. Entries are imported lazily so that listing them never loads every network.

``CELLSYNTH_SMOKE=1`` in the environment makes :func:`get` build every generator at its smoke size
(:meth:`~cellsynth.generators.base.Generator.smoke_config`: seconds to train, learns little), to check a
pipeline of commands end to end before spending hours on it. It warns each time; saved models keep the
config they were fitted with.
"""

from __future__ import annotations

import importlib
import os
import warnings

import pydantic

from cellsynth.errors import ConfigError

__all__ = ["SMOKE_VARIABLE", "available", "get", "get_class", "register"]

SMOKE_VARIABLE = "CELLSYNTH_SMOKE"

# name -> "module:Class"; a module that defines a generator registers itself here.
_REGISTRY: dict[str, str] = {
    "seasonal-mean": "cellsynth.generators.floors.stations:SeasonalMeanGenerator",
    "copy-train": "cellsynth.generators.floors.stations:CopyTrainGenerator",
    "nearest-station": "cellsynth.generators.floors.stations:NearestStationGenerator",
    "recent-weeks": "cellsynth.generators.floors.stations:RecentWeeksGenerator",
    "stouter": "cellsynth.generators.stouter.generator:StouterGenerator",
    "markov": "cellsynth.generators.floors.markov:MarkovGenerator",
    "mstdiff": "cellsynth.generators.mstdiff.generator:MSTDiffGenerator",
    "tcn-gan": "cellsynth.generators.baselines.tcn_gan:TCNGANGenerator",
    "vae": "cellsynth.generators.baselines.vae:VAEGenerator",
    "diffwave": "cellsynth.generators.baselines.diffwave:DiffWaveGenerator",
    "adaptive": "cellsynth.generators.baselines.users.adaptive:AdaptiveUserGenerator",
    "msh-gan": "cellsynth.generators.baselines.users.msh_gan:MSHGANGenerator",
    "pategail": "cellsynth.generators.baselines.trajectories.pategail:PateGailGenerator",
    "volunteer": "cellsynth.generators.baselines.trajectories.volunteer:VolunteerGenerator",
    "csdi": "cellsynth.generators.baselines.users.csdi:CSDIGenerator",
    "dit": "cellsynth.generators.baselines.users.dit:DiTGenerator",
    "timegeo": "cellsynth.generators.baselines.trajectories.timegeo:TimeGeoGenerator",
    "difftraj": "cellsynth.generators.baselines.trajectories.difftraj:DiffTrajGenerator",
}


def register(name: str, target: str) -> None:
    """Register ``target`` ("package.module:Class") under ``name`` (for plug-ins outside cellsynth)."""
    if name in _REGISTRY and _REGISTRY[name] != target:
        raise ConfigError(f"generator name {name!r} is already registered for {_REGISTRY[name]}")
    _REGISTRY[name] = target


def available() -> list[str]:
    """Names of every registered generator."""
    return sorted(_REGISTRY)


def get_class(name: str):
    """The generator class registered under ``name``."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown generator {name!r}; available: {', '.join(available())}")
    module, _, attr = _REGISTRY[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def get(name: str, config=None, *, preset: str | None = None, **overrides):
    """An unfitted generator ``name`` with ``config`` (dict, pydantic model or None) and overrides; with
    ``preset`` (``"paper"`` or ``"recommended"``, :mod:`cellsynth.generators.presets`), ``config`` and the
    overrides go on top of that preset's values."""
    cls = get_class(name)
    if preset is not None:
        from cellsynth.generators.presets import merge_config
        from cellsynth.generators.presets import preset as preset_values

        if isinstance(config, pydantic.BaseModel):
            config = config.model_dump(exclude_unset=True)
        # old flat names on either side are nested first, so that a user's value replaces the preset's
        config = merge_config(
            cls.Config.nest_moved(preset_values(name, preset)), cls.Config.nest_moved(config or {})
        )
    if os.environ.get(SMOKE_VARIABLE, "").strip() not in ("", "0"):
        from cellsynth.generators.presets import merge_config

        if isinstance(config, pydantic.BaseModel):
            config = config.model_dump(exclude_unset=True)
        config = merge_config(
            cls.Config.nest_moved(merge_config(config or {}, overrides)),
            cls.Config.nest_moved(cls.smoke_config()),
        )
        overrides = {}
        warnings.warn(
            f"{SMOKE_VARIABLE} is set: {name} is built at its smoke size (seconds to train, learns little); "
            f"unset {SMOKE_VARIABLE} for a real model",
            stacklevel=2,
        )
    return cls(config, **overrides)
