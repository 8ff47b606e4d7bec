"""Post-processing of a generator's output marginal: the zero threshold and quantile mapping."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cellsynth.errors import DataError, NotFittedError
from cellsynth.generators.mstdiff.calibration import MomentMap, QuantileMap, zero_threshold


@given(
    positive=st.lists(st.floats(1e-6, 1e3), min_size=1, max_size=200),
    zeros=st.integers(0, 200),
    zero_share=st.floats(0.0, 1.0),
)
def test_zero_threshold_gives_the_training_share_of_zeros(positive, zeros, zero_share):
    generated = np.array([0.0] * zeros + positive)
    tau = zero_threshold(generated, zero_share)
    share = (np.where(generated > tau, generated, 0.0) == 0).mean()
    if (generated == 0).mean() >= zero_share:
        assert tau == 0.0 and share == (generated == 0).mean()  # already enough zeros: nothing changes
    else:
        # the p0-quantile: at least p0 of the values are at or below it; more only by ties
        assert (generated < tau).mean() <= zero_share + 1e-12 <= share + 1e-9
        assert tau <= generated.max()


def test_zero_threshold_rejects_a_share_outside_0_1():
    with pytest.raises(ValueError, match="zero_share must be in"):
        zero_threshold(np.ones(3), 1.5)


def test_quantile_map_carries_one_distribution_onto_another():
    """Exponential(1) onto lognormal: the mapped sample has the reference's quantiles (analytic:
    x' = exp(Phi^-1(1 - e^-x)) for lognormal(0, 1))."""
    from scipy.stats import norm

    rng = np.random.default_rng(0)
    generated, reference = rng.exponential(1.0, 200_000), rng.lognormal(0.0, 1.0, 200_000)
    qmap = QuantileMap().fit(generated, reference)
    x = np.array([0.1, 0.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(qmap.apply(x), np.exp(norm.ppf(1 - np.exp(-x))), rtol=0.03)
    mapped = qmap.apply(rng.exponential(1.0, 100_000))
    p = [0.05, 0.25, 0.5, 0.75, 0.95]
    np.testing.assert_allclose(np.quantile(mapped, p), np.quantile(reference, p), rtol=0.03)


@given(
    st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=100),
    st.lists(st.floats(0, 1e3), min_size=2, max_size=100),
)
# knots a subnormal step apart: np.interp's slope 1 / step overflowed and broke monotonicity
@example([0.0, 1.0, 2.2250738585072014e-308, 1.1125369292536007e-308], [0.0, 1.0])
# an atom at the top knot: values beyond it belong at the last knot, not at the start of its flat step
@example([0.0] * 16 + [1.0, 1.0], [0.0, 1.0])
def test_quantile_map_is_monotone_and_stays_in_the_reference_range(generated, reference):
    qmap = QuantileMap(knots=33).fit(generated, reference)
    x = np.sort(np.concatenate([generated, np.linspace(-2e3, 2e3, 50)]))
    y = qmap.apply(x)
    assert (np.diff(y) >= -1e-9 * (1 + np.abs(y[:-1]))).all()
    assert y.min() >= min(reference) - 1e-9 and y.max() <= max(reference) + 1e-9


def test_quantile_map_sends_an_atom_to_the_reference_atom():
    """Raw zeros (30 %) and reference zeros (60 %): every raw zero stays 0, and the smallest positive
    generated values join them until 60 % are 0."""
    rng = np.random.default_rng(1)
    generated = np.where(rng.random(100_000) < 0.3, 0.0, rng.exponential(1.0, 100_000))
    reference = np.where(rng.random(100_000) < 0.6, 0.0, rng.lognormal(0, 1, 100_000))
    mapped = QuantileMap().fit(generated, reference).apply(generated)
    assert (mapped[generated == 0] == 0).all()
    assert abs((mapped == 0).mean() - 0.6) < 0.01


def test_quantile_map_state_round_trip_and_errors():
    qmap = QuantileMap(knots=11).fit([0, 1, 2, 3], [0, 10, 20, 30])
    again = QuantileMap.from_state(qmap.state())
    x = np.linspace(-1, 4, 17)
    np.testing.assert_array_equal(again.apply(x), qmap.apply(x))
    np.testing.assert_allclose(qmap.apply([0, 1.5, 3]), [0, 15, 30])
    with pytest.raises(NotFittedError):
        QuantileMap().apply([1.0])
    with pytest.raises(DataError, match="empty"):
        QuantileMap().fit([], [1.0])
    with pytest.raises(DataError, match="NaN"):
        QuantileMap().fit([1.0, np.nan], [1.0])
    with pytest.raises(ValueError, match="knots"):
        QuantileMap(knots=1)


@given(seed=st.integers(0, 2**31), rows=st.integers(2, 40), dims=st.integers(1, 6))
def test_moment_map_gives_the_calibration_draw_the_reference_means_and_spreads(seed, rows, dims):
    rng = np.random.default_rng(seed)
    generated = rng.normal(rng.normal(0, 3, dims), rng.uniform(0.1, 5, dims), (rows, dims))
    reference = rng.normal(rng.normal(0, 3, dims), rng.uniform(0.1, 5, dims), (rows + 3, dims))
    generated[:, 0] = 1.5  # no spread: only shifted
    m = MomentMap().fit(generated, reference)
    mapped = m.apply(generated)
    np.testing.assert_allclose(mapped.mean(0), reference.mean(0), atol=1e-9 * (1 + np.abs(reference).max()))
    np.testing.assert_allclose(mapped[:, 1:].std(0), reference[:, 1:].std(0), rtol=1e-9)
    # affine per coordinate: a state round trip maps the same, and any batch shape works
    again = MomentMap.from_state(m.state())
    np.testing.assert_array_equal(again.apply(generated[None]), mapped[None])


def test_moment_map_refuses_bad_input():
    with pytest.raises(NotFittedError):
        MomentMap().apply(np.zeros((2, 3)))
    with pytest.raises(DataError, match=r"rows >= 2"):
        MomentMap().fit(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(DataError, match="3 coordinates, reference 2"):
        MomentMap().fit(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(DataError, match="NaN/inf"):
        MomentMap().fit(np.full((4, 3), np.nan), np.zeros((4, 3)))
    with pytest.raises(DataError, match="fitted on 3 coordinates, got 2"):
        MomentMap().fit(np.zeros((4, 3)), np.ones((4, 3))).apply(np.zeros(2))
