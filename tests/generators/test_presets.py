"""Presets shipped inside the package: every model with a network has `paper` and `recommended`, each
a valid config, and user values merge on top of them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cellsynth.errors import ConfigError
from cellsynth.generators import available, available_presets, get, get_class, preset
from cellsynth.generators.presets import merge_config
from tests.conftest import assert_config_holds

FLOORS = {"seasonal-mean", "copy-train", "nearest-station", "recent-weeks", "markov"}


@pytest.mark.parametrize("name", sorted(set(available()) - FLOORS))
def test_every_model_ships_paper_and_recommended(name):
    assert {"paper", "recommended"} <= set(available_presets(name))


@pytest.mark.parametrize("name", available())
def test_every_preset_is_a_valid_config(name):
    for preset_name in available_presets(name):
        gen = get(name, preset=preset_name)
        assert isinstance(gen.config, get_class(name).Config)


def test_unknown_preset_names_the_choices():
    with pytest.raises(ConfigError, match="no preset 'fast'.*paper.*recommended"):
        preset("stouter", "fast")
    with pytest.raises(ConfigError, match="no presets"):
        preset("seasonal-mean", "paper")


def test_user_values_go_on_top_of_the_preset():
    base = get("stouter", preset="recommended").config
    gen = get("stouter", {"seed": 7}, preset="recommended")
    assert gen.config.seed == 7
    assert gen.config.model_dump(exclude={"seed"}) == base.model_dump(exclude={"seed"})


leaves = st.one_of(st.integers(), st.text(max_size=3), st.none())
trees = st.recursive(
    leaves, lambda inner: st.dictionaries(st.sampled_from("abcd"), inner, max_size=3), max_leaves=8
)
mappings = st.dictionaries(st.sampled_from("abcd"), trees, max_size=4)


@given(mappings, mappings)
def test_merge_keeps_base_keys_and_lets_top_win(base, top):
    merged = merge_config(base, top)
    assert set(merged) == set(base) | set(top)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            assert merged[key] == merge_config(base[key], value)
        else:
            assert merged[key] == value
    for key in set(base) - set(top):
        assert merged[key] == base[key]


def test_smoke_variable_builds_every_generator_at_its_smoke_size(monkeypatch):
    monkeypatch.setenv("CELLSYNTH_SMOKE", "1")
    for name in available():
        smoke = get_class(name).smoke_config()
        with pytest.warns(UserWarning, match="CELLSYNTH_SMOKE is set"):
            gen = get(name, {"seed": 3}, preset="recommended" if available_presets(name) else None)
        assert gen.config.seed == 3
        assert_config_holds(gen.config, smoke)
    monkeypatch.setenv("CELLSYNTH_SMOKE", "0")
    assert get("stouter").config.epochs == get_class("stouter")().config.epochs
