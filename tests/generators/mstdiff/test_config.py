"""MSTDiff's nested config: the old flat names of saved models and files are read as the nested fields, the
paper preset is the published method and the recommended one the paper's model with extensions."""

from __future__ import annotations

import json

import pytest

import cellsynth
from cellsynth.errors import ConfigError
from cellsynth.generators import get
from cellsynth.generators.mstdiff.config import MSTDiffConfig
from tests.conftest import assert_config_holds
from tests.generators.mstdiff.test_generator import SMOKE, users

SECTIONS = ("sampling", "extensions", "calibration")


def flat(config: dict) -> dict:
    """A nested config dump written the old way: each section's fields at the top level, by their old names."""
    old_name = {new: old for old, new in MSTDiffConfig.moved_fields.items()}
    out = {k: v for k, v in config.items() if k not in SECTIONS}
    for section in SECTIONS:
        for field, value in config[section].items():
            out[old_name[f"{section}.{field}"]] = value
    return out


def test_every_section_field_has_its_old_flat_name():
    moved = set(MSTDiffConfig.moved_fields.values())
    for section in SECTIONS:
        fields = type(getattr(MSTDiffConfig(), section)).model_fields
        assert {f"{section}.{name}" for name in fields} <= moved, section


def test_a_model_saved_with_the_flat_config_loads_and_generates_unchanged(tmp_path):
    """A model saved before the sections existed: its generator.json holds every field flat (``temperature``,
    ``anchors``, ``calibration: quantiles``, ...). It loads to the same nested config and the same users."""
    nested = {
        "sampling": {"temperature": 0.7, "trajectory_coupling": 0.5, "steps": 4},
        "extensions": {"anchors": 2, "clip_x0": False},
        "calibration": {"mode": "quantiles", "users": 16},
    }
    gen = get("mstdiff", SMOKE | nested).fit(users(), progress=False)
    gen.save(tmp_path / "new")
    record = json.loads((tmp_path / "new" / "generator.json").read_text())
    record["config"] = flat(record["config"])
    assert {"sampling", "extensions"}.isdisjoint(record["config"]) and record["config"][
        "calibration"
    ] == "quantiles"
    old = tmp_path / "old"
    old.mkdir()
    (old / "weights.safetensors").write_bytes((tmp_path / "new" / "weights.safetensors").read_bytes())
    (old / "generator.json").write_text(json.dumps(record))
    loaded = cellsynth.load(old)
    assert loaded.config == gen.config
    assert loaded.generate(5, seed=3).equals(gen.generate(5, seed=3))


def test_old_and_new_names_validate_alike_and_not_together():
    nested = {"sampling": {"temperature": 0.5}, "extensions": {"self_condition": True}}
    old = {"temperature": 0.5, "self_condition": True, "calibration": "zeros", "calibration_users": 9}
    config = get("mstdiff", old).config
    assert config == get("mstdiff", nested | {"calibration": {"mode": "zeros", "users": 9}}).config
    assert_config_holds(config, old)
    with pytest.raises(ConfigError, match="'temperature' is the old name of 'sampling.temperature'"):
        get("mstdiff", nested | {"temperature": 0.7})


def test_a_users_old_name_replaces_the_presets_nested_value():
    gen = get("mstdiff", {"temperature": 0.5, "calibration": "quantiles"}, preset="recommended")
    sampling = gen.config.sampling
    assert (sampling.temperature, sampling.trajectory_coupling) == (
        0.5,
        0.995,
    )  # the rest of the section kept
    assert (gen.config.calibration.mode, gen.config.calibration.users) == ("quantiles", 128)
