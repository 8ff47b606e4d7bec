"""Old flat field names (``GeneratorConfig.moved_fields``) are read as the nested fields they moved to, also
where a field became a section of the same name."""

from __future__ import annotations

from typing import ClassVar

import pytest

from cellsynth.errors import ConfigError
from cellsynth.generators.base import ConfigSection, GeneratorConfig, _validate_config


class _Calibration(ConfigSection):
    mode: str = "a"
    users: int = 1


class _Config(GeneratorConfig):
    moved_fields: ClassVar[dict[str, str]] = {
        "calibration_users": "calibration.users",
        "calibration": "calibration.mode",
    }
    calibration: _Calibration = _Calibration()


@pytest.mark.parametrize(
    "old",
    [
        {"calibration": "b", "calibration_users": 5},
        {"calibration_users": 5, "calibration": "b"},  # the section's own old name first or last
    ],
)
def test_old_names_nest_in_any_order(old):
    assert _Config.nest_moved(old) == {"calibration": {"mode": "b", "users": 5}}
    assert _validate_config(_Config, old, {}).calibration == _Calibration(mode="b", users=5)


def test_a_section_given_nested_is_left_alone_and_old_names_join_it():
    nested = {"calibration": {"mode": "b"}}
    assert _Config.nest_moved(nested) == nested
    assert _Config.nest_moved(nested | {"calibration_users": 5}) == {"calibration": {"mode": "b", "users": 5}}


def test_old_and_new_name_in_one_mapping_is_an_error_naming_both():
    with pytest.raises(ConfigError, match="'calibration_users' is the old name of 'calibration.users'"):
        _validate_config(_Config, {"calibration": {"users": 2}, "calibration_users": 5}, {})


def test_an_override_by_its_old_name_replaces_the_nested_value():
    """Overrides (and a user's values on top of a preset) are nested before the merge, so they win."""
    config = _validate_config(_Config, {"calibration": {"mode": "b", "users": 2}}, {"calibration_users": 5})
    assert config.calibration == _Calibration(mode="b", users=5)
