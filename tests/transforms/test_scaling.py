"""LogScaler: exact inverse on real-valued traffic, non-negative inverse of anything, robust scale."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cellsynth.errors import DataError, NotFittedError
from cellsynth.transforms.scaling import LogScaler, output_range, widened_range

traffic = hnp.arrays(
    np.float64,
    hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=6),
    elements=st.one_of(st.just(0.0), st.floats(0, 3e38, allow_nan=False, allow_infinity=False)),
)


@pytest.mark.parametrize("mode", ["standard", "unit"])
@given(x=traffic)
def test_inverse_of_transform_is_exact(mode, x):
    scaler = LogScaler(mode).fit(x)
    back = scaler.inverse(scaler.transform(x))
    np.testing.assert_allclose(back, x, rtol=1e-9, atol=1e-9 * (1 + np.abs(x).max()))
    assert (back >= 0).all()


@given(z=hnp.arrays(np.float64, (5, 2), elements=st.floats(-1e6, 1e6, allow_nan=False)))
def test_inverse_of_anything_is_finite_and_non_negative(z):
    scaler = LogScaler().fit(np.array([[0.0, 5.0], [10.0, 7.0], [3.0, 0.0]]))
    x = scaler.inverse(z)
    assert np.isfinite(x).all() and (x >= 0).all()
    assert np.isfinite(x.astype(np.float32)).all()


def test_formula_and_robust_scale():
    x = np.array([[0.0, 1.0], [2.0, 2.0], [4.0, 3.0], [1e9, 0.0]])  # an outlier in channel 0
    scaler = LogScaler("standard").fit(x)
    # s_c = median of positive values: channel 0 -> median(2, 4, 1e9) = 4; channel 1 -> median(1, 2, 3) = 2.
    np.testing.assert_array_equal(scaler.scale_, [4.0, 2.0])
    y = np.log1p(x / scaler.scale_)
    np.testing.assert_allclose(scaler.transform(x), (y - y.mean(0)) / y.std(0))
    z = scaler.transform(x)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(0), 1)
    unit = LogScaler("unit").fit(x).transform(x)
    np.testing.assert_allclose(unit.min(0), -1)
    np.testing.assert_allclose(unit.max(0), 1)


def test_below_zero_maps_to_zero_and_state_round_trip():
    scaler = LogScaler().fit(np.array([[1.0], [2.0], [4.0]]))
    zero_z = scaler.transform(np.zeros((1, 1)))
    assert scaler.inverse(zero_z - 5.0)[0, 0] == 0.0
    again = LogScaler.from_state(scaler.state())
    np.testing.assert_array_equal(again.transform(np.array([[3.0]])), scaler.transform(np.array([[3.0]])))
    z = scaler.transform(np.array([[1.0], [2.0], [4.0]]))
    assert again.z_min_[0] == z.min() and again.z_max_[0] == z.max()


def test_all_zero_channel_and_errors():
    scaler = LogScaler().fit(np.zeros((4, 1)))
    assert scaler.scale_[0] == 1.0 and scaler.spread_[0] == 1.0
    np.testing.assert_array_equal(scaler.inverse(scaler.transform(np.zeros((4, 1)))), 0)
    with pytest.raises(NotFittedError):
        LogScaler().transform(np.ones((2, 1)))
    with pytest.raises(DataError, match="negative"):
        LogScaler().fit(np.array([[-1.0]]))
    with pytest.raises(DataError, match="NaN"):
        LogScaler().fit(np.array([[np.nan]]))
    with pytest.raises(DataError, match="channels"):
        scaler.transform(np.ones((2, 3)))
    with pytest.raises(DataError, match="mode"):
        LogScaler("minmax")


def test_widened_range_adds_the_share_of_the_width_on_each_side():
    low, high = widened_range(np.array([0.0, -2.0]), np.array([10.0, 2.0]), 0.1)
    np.testing.assert_allclose(low, [-1.0, -2.4])
    np.testing.assert_allclose(high, [11.0, 2.4])
    low, high = widened_range(np.array([1.0]), np.array([3.0]), 0.0)
    np.testing.assert_array_equal(low, [1.0])
    np.testing.assert_array_equal(high, [3.0])


def test_output_range_widens_by_the_margin_and_the_floor_keeps_the_minimum():
    low, high = np.array([-1.0, 0.0]), np.array([3.0, 2.0])
    lo, hi = output_range(low, high, 0.1, floor=False)
    np.testing.assert_allclose(lo, [-1.4, -0.2])
    np.testing.assert_allclose(hi, [3.4, 2.2])
    lo, hi = output_range(low, high, 0.1, floor=True)
    np.testing.assert_array_equal(lo, low)
    np.testing.assert_allclose(hi, [3.4, 2.2])
    lo, hi = output_range(low, high, None, floor=True)
    np.testing.assert_array_equal(lo, low)
    assert np.isposinf(hi).all()
    lo, hi = output_range(low, high, None, floor=False)
    assert np.isneginf(lo).all() and np.isposinf(hi).all()
