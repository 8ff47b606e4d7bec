"""The 3-level db1 DWT and the traffic normalisation around it: lengths, exact inverses, non-negativity."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cellsynth.errors import DataError, NotFittedError
from cellsynth.transforms.wavelets import TrafficWavelets, band_lengths, band_names, band_slices, dwt, idwt


def test_band_layout_of_a_week_at_30_minutes():
    assert band_lengths(336) == [42, 42, 84, 168]
    assert band_names() == ["cA3", "cD3", "cD2", "cD1"]
    assert [(s.start, s.stop) for s in band_slices(336)] == [(0, 42), (42, 84), (84, 168), (168, 336)]


def test_haar_coefficients_are_block_means_and_differences():
    x = np.arange(16, dtype=float)
    c = dwt(x)
    # cA3[k] = sum of 8 values / sqrt(8); cD1[k] = (x[2k] - x[2k+1]) / sqrt(2).
    np.testing.assert_allclose(c[:2], [x[:8].sum() / np.sqrt(8), x[8:].sum() / np.sqrt(8)])
    np.testing.assert_allclose(c[8:], np.full(8, -1 / np.sqrt(2)))
    np.testing.assert_allclose(np.sum(c**2), np.sum(x**2))  # orthogonal


@given(
    st.integers(1, 12).flatmap(
        lambda m: arrays(np.float64, (3, 8 * m), elements=st.floats(-1e6, 1e6, allow_nan=False))
    )
)
def test_dwt_round_trip_for_any_length_divisible_by_8(x):
    c = dwt(x)
    assert c.shape == x.shape
    np.testing.assert_allclose(idwt(c), x, rtol=1e-9, atol=1e-9 * (1 + np.abs(x).max()))


def test_lengths_not_divisible_raise():
    with pytest.raises(DataError, match="divisible by 2\\^3 = 8"):
        dwt(np.zeros(50))


@given(
    arrays(
        np.float64,
        (4, 48),
        elements=st.one_of(st.just(0.0), st.floats(1e-3, 1e5, allow_nan=False)),
    )
)
def test_traffic_round_trip_and_never_negative(x):
    tw = TrafficWavelets().fit(x)
    z = tw.transform(x)
    np.testing.assert_allclose(tw.inverse(z), x, rtol=1e-7, atol=1e-7)
    noise = np.random.default_rng(0).normal(0, 3, z.shape)
    assert (tw.inverse(noise) >= 0).all() and np.isfinite(tw.inverse(noise)).all()


def test_bands_are_standardised_and_state_round_trips():
    rng = np.random.default_rng(0)
    x = rng.lognormal(0, 1, (30, 336)) * (rng.random((30, 336)) < 0.5)
    tw = TrafficWavelets().fit(x)
    z = tw.transform(x)
    for s in band_slices(336):
        assert abs(z[:, s].mean()) < 1e-9 and abs(z[:, s].std() - 1) < 1e-9
    again = TrafficWavelets.from_state(tw.state())
    np.testing.assert_array_equal(again.inverse(z), tw.inverse(z))
    raw = TrafficWavelets(band_standardise=False).fit(x)
    assert raw.band_std.tolist() == [1.0] * 4
    with pytest.raises(NotFittedError):
        TrafficWavelets().transform(x)
