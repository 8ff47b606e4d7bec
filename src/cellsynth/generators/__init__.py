"""Generators: one module per model, composing networks (``cellsynth.nn``) and noise processes
(``cellsynth.diffusion``) behind one contract (see :mod:`cellsynth.generators.base`)."""

from cellsynth.generators.base import (
    Generator,
    GeneratorConfig,
    StationGenerator,
    TrainingConfig,
    UserGenerator,
    load,
)
from cellsynth.generators.presets import available_presets, preset
from cellsynth.generators.registry import available, get, get_class, register

__all__ = [
    "Generator",
    "GeneratorConfig",
    "StationGenerator",
    "TrainingConfig",
    "UserGenerator",
    "available",
    "available_presets",
    "get",
    "get_class",
    "load",
    "preset",
    "register",
]
