"""The bench table's utility columns: forecast utility ranked highest-first, busy-hour coverage by closeness
to (K - 1) / (K + 1)."""

from __future__ import annotations

import math

import pytest

from cellsynth.benchmark import markdown_table
from cellsynth.benchmark.table import OTHER_METRICS, _target


def test_utility_columns_are_in_the_other_metrics_table():
    names = [name for name, _ in OTHER_METRICS]
    assert {"tstr_utility", "busy_hour_p95_error", "busy_hour_coverage"} <= set(names)


def test_a_math_inf_target_ranks_the_highest_value_best():
    table = markdown_table(
        ["Model", "Utility"],
        [["a", "0.5"], ["b", "0.9"], ["c", "0.7"], ["d", "–"]],
        [[0.5], [0.9], [0.7], [None]],
        [_target("tstr_utility", 4)],
    )
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1] for line in table.splitlines()[2:]}
    assert rows["b"].rstrip(" |") == "**0.9**"
    assert rows["c"].rstrip(" |") == "<u>0.7</u>"
    assert rows["a"].rstrip(" |") == "0.5" and rows["d"].rstrip(" |") == "–"


def test_busy_hour_coverage_target_follows_the_number_of_samples():
    assert _target("busy_hour_coverage", 4) == pytest.approx(0.6)
    assert _target("busy_hour_coverage", 19) == pytest.approx(0.9)
    assert _target("tstr_utility", 4) == math.inf
    assert _target("band_coverage", 4) == 0.9 and _target("mae", 4) is None
