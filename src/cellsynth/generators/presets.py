"""Named configurations shipped inside the package, two per model:

- ``paper``: exactly the published method (its architecture, hyperparameters, loss and sampler; none of
  cellsynth's extensions);
- ``recommended``: the configuration that measured best in BENCHMARKS.md at the budget stated in its
  file (usually 2 CPU cores).

A preset is a YAML mapping of config fields at ``cellsynth/configs/<model>/<preset>.yaml``; fields it does
not name keep the config class's defaults. User values go on top of a preset, nested sections merged key
by key (:func:`merge_config`)::

    gen = cellsynth.generators.get("mstdiff", {"epochs": 50}, preset="recommended")
    # CLI: cellsynth fit mstdiff --preset recommended --set epochs=50 ...
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cellsynth.errors import ConfigError

__all__ = ["PRESET_DIR", "available_presets", "merge_config", "preset"]

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs"


def available_presets(model: str) -> list[str]:
    """The preset names shipped for ``model`` (sorted; empty for a model without presets)."""
    directory = PRESET_DIR / model
    return sorted(p.stem for p in directory.glob("*.yaml")) if directory.is_dir() else []


def preset(model: str, name: str) -> dict[str, Any]:
    """The config values of preset ``name`` of ``model``; ConfigError naming the choices if there is none."""
    path = PRESET_DIR / model / f"{name}.yaml"
    if not path.is_file():
        names = available_presets(model)
        choices = f"choose one of {', '.join(names)}" if names else "this model has no presets"
        raise ConfigError(f"{model} has no preset {name!r}: {choices}")
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(values, dict):  # a shipped file: a bug, not a user error, but say where
        raise ConfigError(f"{path}: a preset must be a mapping of option: value")
    return values


def merge_config(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``: keys of ``top`` win; where both hold a mapping, they are merged the same way
    (so ``{"sampling": {"temperature": 0.7}}`` changes one sampling field and keeps the others)."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = value
    return merged
