"""The rows of a benchmark table: a generator by name, with an optional preset and option overrides
(:class:`Row`), written as one line (:func:`parse_row`) or read from a suite file (:func:`read_suite`).

One line, ``MODEL [(PRESET)] [KEY=VALUE ...]``; the line is the row's label:

    markov
    mstdiff (paper)
    mstdiff (recommended) trajectory=false sampling.temperature=1.0

``PRESET`` is a preset the model ships (``paper``, ``recommended``) or ``none`` (the config class's
defaults); without one, a model that ships presets starts from the suite's default preset
(``recommended``) and one that ships none (the floors) from its defaults. ``KEY=VALUE`` sets one option
(``section.key`` for a field of a section, as ``cellsynth fit --set``); values are YAML (``false``, ``0.7``,
``[1, 2]``).

A suite file (YAML) lists rows, each a line as above or a mapping with a label of its own:

.. code-block:: yaml

    preset: recommended            # default preset of the rows (optional)
    rows:
      - mstdiff (recommended)
      - mstdiff (paper)
      - label: mstdiff traffic-only
        model: mstdiff
        set: {trajectory: false}   # the paper's ablation: traffic only, locations from the Markov floor
      - label: mstdiff (GeoLife size)
        model: mstdiff
        config: ../configs/geolife/mstdiff.yaml   # a YAML of options, relative to the suite file
      - markov

A generator registered under a new name is benchmarked by adding its name as a row: nothing else changes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cellsynth.errors import ConfigError

__all__ = ["DEFAULT_PRESET", "Row", "parse_row", "parse_rows", "read_suite"]

#: The preset a row starts from when it names none and its model ships presets.
DEFAULT_PRESET = "recommended"

_LINE = re.compile(r"^(?P<model>[A-Za-z0-9_.+-]+)\s*(?:\((?P<preset>[^()]*)\))?\s*(?P<sets>.*)$")
_ROW_KEYS = {"label", "model", "preset", "set", "config"}


@dataclass(frozen=True)
class Row:
    """One row of a benchmark table: ``model`` (a registered generator) from ``preset`` (None: the config
    class's defaults) with ``overrides`` on top, shown as ``label``."""

    label: str
    model: str
    preset: str | None
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        """The label as a file name: lower case, runs of other characters than ``a-z0-9._`` as ``-``."""
        return re.sub(r"[^a-z0-9._]+", "-", self.label.lower()).strip("-.") or "row"

    def describe(self) -> dict[str, Any]:
        return {"label": self.label, "model": self.model, "preset": self.preset, "overrides": self.overrides}


def parse_row(text: str, *, default_preset: str | None = DEFAULT_PRESET, where: str = "row") -> Row:
    """The :class:`Row` of one line ``MODEL [(PRESET)] [KEY=VALUE ...]`` (module docstring); ``where`` names
    the line in error messages."""
    line = " ".join(str(text).split())
    match = _LINE.match(line)
    if not line or match is None:
        raise ConfigError(
            f"{where}: {text!r} is not a row; write MODEL, MODEL (PRESET) or MODEL (PRESET) KEY=VALUE ..., "
            "e.g. 'mstdiff (paper) trajectory=false'"
        )
    overrides: dict[str, Any] = {}
    for item in match["sets"].split():
        _set_option(overrides, item, where)
    preset = match["preset"].strip() if match["preset"] is not None else None
    return _row(line, match["model"], preset, overrides, default_preset, where, explicit=preset is not None)


def parse_rows(lines: list[str], *, default_preset: str | None = DEFAULT_PRESET) -> list[Row]:
    """Rows from one line each (the command line's ``--models``); checked as :func:`read_suite` checks."""
    rows = [parse_row(line, default_preset=default_preset, where=f"row {line!r}") for line in lines]
    return _checked(rows, "--models")


def read_suite(path: str | os.PathLike, *, default_preset: str | None = DEFAULT_PRESET) -> list[Row]:
    """The rows of a suite file (module docstring). Unknown keys, unknown generators, presets a model does
    not ship, two rows with one label and an empty suite are :class:`ConfigError` naming the file and row."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"suite file {path} not found; give a YAML file with a 'rows:' list")
    content = _read_yaml(path)
    if not isinstance(content, dict) or not isinstance(content.get("rows"), list):
        raise ConfigError(
            f"{path}: a suite is a mapping with a 'rows:' list (see cellsynth.benchmark.users_suite)"
        )
    unknown = sorted(set(content) - {"rows", "preset"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; a suite has 'rows' and optionally 'preset'")
    default_preset = content.get("preset", default_preset)
    rows = []
    for i, entry in enumerate(content["rows"], start=1):
        where = f"{path}, row {i}"
        if isinstance(entry, str):
            rows.append(parse_row(entry, default_preset=default_preset, where=where))
        elif isinstance(entry, dict):
            rows.append(_mapping_row(entry, default_preset, where, path.parent))
        else:
            raise ConfigError(
                f"{where}: a row is a line 'MODEL (PRESET) KEY=VALUE' or a mapping, got {entry!r}"
            )
    return _checked(rows, str(path))


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; a suite and its configs are YAML") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None


def _mapping_row(entry: dict, default_preset, where: str, base: Path) -> Row:
    unknown = sorted(set(map(str, entry)) - _ROW_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; a row has {sorted(_ROW_KEYS)}")
    if not isinstance(entry.get("model"), str):
        raise ConfigError(f"{where}: a row needs 'model: NAME' (a generator; `cellsynth models` lists them)")
    overrides: dict[str, Any] = {}
    if entry.get("config") is not None:
        config = base / str(entry["config"])
        if not config.is_file():
            raise ConfigError(
                f"{where}: config file {config} not found (paths are relative to the suite file)"
            )
        values = _read_yaml(config) or {}
        if not isinstance(values, dict):
            raise ConfigError(f"{config}: a config file is a mapping of options")
        overrides = values
    given = entry.get("set") or {}
    if not isinstance(given, dict):
        raise ConfigError(f"{where}: 'set' is a mapping of options, e.g. set: {{trajectory: false}}")
    for key, value in given.items():
        _set_option(overrides, f"{key}=", where, value=value)
    explicit = "preset" in entry
    preset = entry.get("preset")
    label = str(entry.get("label") or entry["model"])
    return _row(label, entry["model"], preset, overrides, default_preset, where, explicit=explicit)


def _set_option(values: dict, item: str, where: str, *, value: Any = None) -> None:
    """``section.key=value`` into ``values`` (nested), the value read as YAML unless given."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{where}: {item!r} is not KEY=VALUE (e.g. trajectory=false)")
    if value is None and raw:
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"{where}: the value of {item!r} is not valid YAML; quote it") from None
    *sections, name = key.strip().split(".")
    target = values
    for section in sections:
        if not isinstance(target.get(section, {}), dict):
            raise ConfigError(f"{where}: {key} sets a field of {section}, which is a value, not a section")
        target = target.setdefault(section, {})
    target[name] = value


def _row(label, model, preset, overrides, default_preset, where, *, explicit: bool) -> Row:
    from cellsynth.generators import available, available_presets

    if model not in available():  # by name: checking a suite imports no network
        raise ConfigError(f"{where}: unknown generator {model!r}; available: {', '.join(available())}")
    shipped = available_presets(model)
    if explicit and preset in (None, "none", ""):
        preset = None
    elif explicit:
        if preset not in shipped:
            offered = ", ".join(shipped) if shipped else "none (it ships no presets)"
            raise ConfigError(
                f"{where}: {model} has no preset {preset!r}; it ships {offered} (or write (none))"
            )
    else:
        preset = default_preset if default_preset in shipped else None
    return Row(label=label, model=model, preset=preset, overrides=overrides)


def _checked(rows: list[Row], where: str) -> list[Row]:
    if not rows:
        raise ConfigError(f"{where}: no rows; name at least one generator")
    for seen, attr in ((set(), "label"), (set(), "slug")):
        for row in rows:
            key = getattr(row, attr)
            if key in seen:
                raise ConfigError(
                    f"{where}: two rows are labelled {row.label!r}"
                    + (" (as file names)" if attr == "slug" else "")
                    + "; give each row its own label"
                )
            seen.add(key)
    return rows
