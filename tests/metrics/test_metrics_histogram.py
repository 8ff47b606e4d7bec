"""Shared bins and the base-2 JSD: analytic cases, properties, the published (compat) variant, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import jensenshannon

from cellsynth.errors import DataError
from cellsynth.metrics import (
    DEFAULT_BINS,
    histogram_jsd,
    integer_bin_edges,
    js_divergence,
    reference_bin_edges,
    shared_bin_edges,
)
from cellsynth.metrics.histogram import chunked_reference_jsd

finite_floats = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
samples = arrays(np.float64, st.integers(1, 60), elements=finite_floats)
weights = st.lists(st.floats(min_value=0.0, max_value=1e3, allow_nan=False), min_size=1, max_size=30)


def test_identical_samples_give_zero():
    values = np.random.default_rng(0).normal(size=500)
    assert histogram_jsd(values, values) == 0.0
    assert histogram_jsd(values, values.copy(), bins=np.linspace(-10, 10, 41)) == 0.0


def test_disjoint_supports_give_one():
    rng = np.random.default_rng(1)
    assert histogram_jsd(rng.uniform(0, 1, 300), rng.uniform(5, 6, 300)) == pytest.approx(1.0)
    assert js_divergence([3, 0, 0], [0, 1, 2]) == pytest.approx(1.0)


def test_known_value_half_overlap():
    # p = (1, 0), q = (1/2, 1/2), m = (3/4, 1/4):
    # JSD = 1/2 log2(4/3) + 1/2 (1/2 log2(2/3) + 1/2 log2(2)) = 0.311278...
    expected = 0.5 * np.log2(4 / 3) + 0.5 * (0.5 * np.log2(2 / 3) + 0.5)
    assert js_divergence([1, 0], [1, 1]) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.3112781244591328)


def test_constant_samples_share_one_widened_bin():
    edges = shared_bin_edges([2.0, 2.0], [2.0], bins=4)
    assert edges[0] == 1.5 and edges[-1] == 2.5 and edges.size == 5
    assert histogram_jsd(np.full(10, 2.0), np.full(3, 2.0)) == 0.0


def test_shared_edges_span_both_samples():
    edges = shared_bin_edges([0.0, 1.0], [3.0, -1.0], bins=DEFAULT_BINS)
    assert edges.size == DEFAULT_BINS + 1
    assert edges[0] == -1.0 and edges[-1] == 3.0


def test_reference_bins_span_the_first_sample_and_count_the_second_outside_it():
    np.testing.assert_array_equal(reference_bin_edges([0.0, 1.0, 0.5], bins=4), [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(reference_bin_edges([3.0, 3.0], bins=2), [2.5, 3.0, 3.5])
    # x = (0, 1) in two bins [0, .5), [.5, 1]; y = (1, 5): one in x's top bin (its maximum included), one
    # above: p = (0, 1/2, 1/2, 0), q = (0, 0, 1/2, 1/2) over (below, bin 1, bin 2, above)
    assert histogram_jsd([0.0, 1.0], [1.0, 5.0], bins=2, reference=True) == pytest.approx(
        js_divergence([0, 1, 1, 0], [0, 0, 1, 1]), abs=1e-12
    )
    # a generated set entirely outside the real range is disjoint from it, however far
    assert histogram_jsd([0.0, 1.0], [-3.0, 1e30], bins=10, reference=True) == pytest.approx(1.0)


def test_reference_bins_do_not_let_a_few_exploded_values_hide_a_mismatch():
    """Shared bins: two values of 1e30 widen every bin until both samples share the first (JSD about 0);
    reference bins score the rest on the real range and the two in the bin above it."""
    rng = np.random.default_rng(3)
    real, generated = rng.uniform(0, 1, 2000), rng.uniform(0.5, 1, 2000)
    exploded = np.append(generated, [1e30, 1e31])
    assert histogram_jsd(real, exploded) < 1e-3  # the loophole
    honest = histogram_jsd(real, generated, reference=True)
    assert honest == pytest.approx(histogram_jsd(real, generated), abs=5e-3) and honest > 0.3
    assert histogram_jsd(real, exploded, reference=True) == pytest.approx(honest, abs=2e-3)


@given(samples, samples)
def test_reference_bins_equal_shared_bins_when_the_second_sample_is_inside_the_first(x, y):
    y = np.clip(y, x.min(), x.max())  # y inside x's range: both bin choices are x's range
    expected = histogram_jsd(x, y)
    assert histogram_jsd(x, y, reference=True) == pytest.approx(expected, abs=1e-12)


def _pieces(values: np.ndarray, size: int) -> list[np.ndarray]:
    return [values[start : start + size] for start in range(0, len(values), size)]


@given(samples, samples, st.integers(1, 7), st.integers(1, 7), st.integers(1, 12))
def test_reference_jsd_counted_chunk_by_chunk_equals_the_whole(x, y, x_size, y_size, bins):
    """The edges come from x's whole range, found over its chunks, and each histogram is the sum of its
    chunks' counts: any chunking gives exactly the whole's JSD, y's values outside x's range included."""
    whole = histogram_jsd(x, y, bins, reference=True)
    assert chunked_reference_jsd(lambda: _pieces(x, x_size), _pieces(y, y_size), bins) == whole


@pytest.mark.parametrize("size", [1, 2, 5, 10])
def test_reference_jsd_of_chunks_of_a_constant_reference(size):
    # x is one value, so its range is widened to [1.5, 2.5], in 4 bins with 2.0 the third's left edge; y has
    # mass in x's bin, in another bin of the range and on both sides of it:
    # (below, [1.5, 1.75), [1.75, 2), [2, 2.25), [2.25, 2.5], above)
    x, y = np.full(10, 2.0), np.array([1.0, 2.0, 2.0, 2.4, 2.6, 9.0])
    whole = histogram_jsd(x, y, 4, reference=True)
    assert chunked_reference_jsd(lambda: _pieces(x, size), _pieces(y, size), 4) == whole
    assert whole == pytest.approx(js_divergence([0, 0, 0, 10, 0, 0], [1, 0, 0, 2, 1, 2]), abs=1e-12)


def test_integer_edges_one_bin_per_value():
    np.testing.assert_array_equal(integer_bin_edges(1, 3), [0.5, 1.5, 2.5, 3.5])
    # Same stay lengths in different proportions: compared value by value.
    assert histogram_jsd([1, 1, 2], [1, 2, 2], integer_bin_edges(1, 3)) == pytest.approx(
        js_divergence([2, 1, 0], [1, 2, 0])
    )


@given(samples, samples)
def test_histogram_jsd_is_symmetric_and_bounded(x, y):
    forward = histogram_jsd(x, y)
    assert 0.0 <= forward <= 1.0
    assert forward == pytest.approx(histogram_jsd(y, x), abs=1e-12)


@given(weights, weights)
def test_js_divergence_matches_scipy_squared_distance(p, q):
    size = min(len(p), len(q))
    p_array, q_array = np.asarray(p[:size]), np.asarray(q[:size])
    if p_array.sum() <= 0 or q_array.sum() <= 0:
        with pytest.raises(DataError):
            js_divergence(p_array, q_array)
        return
    value = js_divergence(p_array, q_array)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(js_divergence(q_array, p_array), abs=1e-12)
    assert value == pytest.approx(jensenshannon(p_array, q_array, base=2.0) ** 2, abs=1e-9)


def test_compat_is_scipy_distance_on_own_range_histograms():
    rng = np.random.default_rng(2)
    real, generated = rng.gamma(2.0, size=(20, 24)), rng.gamma(2.5, size=(20, 24)) + 0.3
    # The published variant: each set histogrammed on its own min..max, then the base-2 JS distance.
    own_real, _ = np.histogram(real.ravel(), bins=100)
    own_generated, _ = np.histogram(generated.ravel(), bins=100)
    expected = jensenshannon(own_real, own_generated, base=2.0)
    assert histogram_jsd(real, generated, 100, compat=True) == pytest.approx(expected, abs=1e-12)
    # ... which differs from the shared-bins divergence, and is its square root on the same histograms.
    assert histogram_jsd(real, generated, 100) != pytest.approx(expected)
    assert expected**2 == pytest.approx(js_divergence(own_real, own_generated), abs=1e-12)


def test_compat_can_call_shifted_copies_identical():
    # Own-range binning maps any shifted copy onto the same histogram: the defect the shared bins fix.
    values = np.random.default_rng(3).normal(size=400)
    assert histogram_jsd(values, values + 100.0, compat=True) == pytest.approx(0.0, abs=1e-7)
    assert histogram_jsd(values, values + 100.0) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("x", "y", "bins", "message"),
    [
        ([1.0, np.nan], [1.0], 10, "NaN at index (1,)"),
        ([1.0, np.inf], [1.0], 10, "infinite"),
        ([], [1.0], 10, "empty"),
        ([1.0], [1.0], 0, "positive integer"),
        ([1.0], [1.0], True, "positive integer"),
        ([1.0], [1.0], 2.5, "positive integer"),
        ([0.5, 3.0], [1.0], np.array([0.0, 1.0, 2.0]), "outside the bin edges"),
        ([0.5], [1.0], np.array([1.0, 0.0]), "strictly increasing"),
    ],
)
def test_bad_input_raises_data_error(x, y, bins, message):
    with pytest.raises(DataError, match="histogram_jsd") as info:
        histogram_jsd(x, y, bins)
    assert message in str(info.value)


def test_reference_refuses_explicit_edges_and_compat():
    with pytest.raises(DataError, match="integer number of bins, not edges"):
        histogram_jsd([0.0, 1.0], [0.5], bins=[0.0, 1.0], reference=True)
    with pytest.raises(DataError, match="exclude each other"):
        histogram_jsd([0.0, 1.0], [0.5], compat=True, reference=True)


def test_compat_refuses_explicit_edges():
    with pytest.raises(DataError, match="own range"):
        histogram_jsd([1.0, 2.0], [1.0], np.array([0.0, 1.0, 2.0]), compat=True)


def test_js_divergence_rejects_bad_weights():
    with pytest.raises(DataError, match="3 bins but q has 2"):
        js_divergence([1, 2, 3], [1, 2])
    with pytest.raises(DataError, match="non-negative"):
        js_divergence([1, -1], [1, 1])
    with pytest.raises(DataError, match="non-negative"):
        js_divergence([0, 0], [1, 1])
