"""MSTDiff's nested config: the old flat names of saved models and files are read as the nested fields, the
paper preset is the published method and the recommended one the paper's model with extensions."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import cellsynth
from cellsynth.errors import ConfigError
from cellsynth.generators import get
from cellsynth.generators.mstdiff.components import gaussian_diffusion
from cellsynth.generators.mstdiff.config import MSTDiffConfig
from cellsynth.generators.mstdiff.sampler import TrajectoryOptions
from cellsynth.generators.presets import preset
from tests.conftest import REPO_ROOT, assert_config_holds
from tests.generators.mstdiff.test_generator import SMOKE, users

SECTIONS = ("sampling", "extensions", "calibration")
#: Sections added after the sections replaced the flat config (no flat names: no model was saved flat with them).
ADDED_SECTIONS = ("sampler_selection",)


#: Section fields added after the sections replaced the flat config: no model was saved with a flat name for them.
ADDED_SINCE = {"sampling.precision", "sampling.step_spacing"}


def flat(config: dict) -> dict:
    """A nested config dump written the old way: each section's fields at the top level, by their old names."""
    old_name = {new: old for old, new in MSTDiffConfig.moved_fields.items()}
    out = {k: v for k, v in config.items() if k not in SECTIONS + ADDED_SECTIONS}
    for section in SECTIONS:
        for field, value in config[section].items():
            if f"{section}.{field}" not in ADDED_SINCE:  # a flat-config model never had these
                out[old_name[f"{section}.{field}"]] = value
    return out


def test_every_section_field_has_its_old_flat_name():
    moved = set(MSTDiffConfig.moved_fields.values())
    for section in SECTIONS:
        fields = type(getattr(MSTDiffConfig(), section)).model_fields
        assert {f"{section}.{name}" for name in fields} - ADDED_SINCE <= moved, section


def test_a_model_saved_with_the_flat_config_loads_and_generates_unchanged(tmp_path):
    """A model saved before the sections existed: its generator.json holds every field flat (``temperature``,
    ``anchors``, ``calibration: quantiles``, ...). It loads to the same nested config and the same users."""
    nested = {
        "sampling": {"temperature": 0.7, "trajectory_coupling": 0.5, "steps": 4},
        "extensions": {"anchors": 2, "clip_x0": False},
        "calibration": {"mode": "quantiles", "users": 16},
        "sampler_selection": {},  # a section added since: a flat-config model has its defaults
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


def test_the_paper_preset_is_the_published_method():
    cfg = get("mstdiff", preset="paper").config
    assert cfg.extensions == type(cfg.extensions)(
        clip_x0=False, self_condition=False, anchors=0, oscillation_neighbours=0, own_chain=0.0
    )
    assert cfg.calibration.mode == "none"
    sampler, steps = cfg.resolve_sampler()
    assert sampler == "ddpm"
    timesteps = gaussian_diffusion(cfg).scheduler(sampler, steps).timesteps
    assert list(timesteps) == list(range(cfg.gaussian_steps - 1, -1, -1))  # Algorithm 2: every step
    assert TrajectoryOptions.resolve(cfg.sampling) == TrajectoryOptions()


def test_recommended_is_the_papers_model_at_cpu_size_with_extensions():
    """configs/cpu/mstdiff-paper.yaml on top of the paper preset and the recommended preset differ only in
    the sections: the same model, trained the same way."""
    overrides = yaml.safe_load((REPO_ROOT / "configs" / "cpu" / "mstdiff-paper.yaml").read_text())
    paper_cpu = get("mstdiff", overrides, preset="paper").config
    assert_config_holds(paper_cpu, preset("mstdiff", "paper") | overrides)
    recommended = get("mstdiff", preset="recommended").config
    sections = set(SECTIONS + ADDED_SECTIONS)
    assert paper_cpu.model_dump(exclude=sections) == recommended.model_dump(exclude=sections)
    assert recommended.calibration.mode == "moments"
    sampler, steps = recommended.resolve_sampler()
    # DDIM-25 with the steps spaced toward the data end (docs/notebook/2026-12-07-mstdiff-selection-noise.md)
    assert (sampler, len(gaussian_diffusion(recommended).scheduler(sampler, steps).timesteps)) == ("ddim", 25)
    assert recommended.sampling.step_spacing == 2 and recommended.sampling.batch_size == 64
    ext = recommended.extensions
    assert ext.clip_x0 and ext.self_condition and ext.anchors == 3 and ext.oscillation_neighbours == 3
    assert np.isclose(recommended.sampling.trajectory_coupling, 0.995)


def test_mstdiff_sampling_precision_is_float32_unless_asked():
    """The denoiser may run in bfloat16 (the chains stay float32, :class:`~.sampler.Denoiser`); float32 is
    the default and anything else is refused."""
    assert get("mstdiff").config.sampling.precision == "float32"
    assert get("mstdiff", {"sampling": {"precision": "bfloat16"}}).config.sampling.precision == "bfloat16"
    with pytest.raises(ConfigError, match="precision"):
        get("mstdiff", {"sampling": {"precision": "float16"}})
