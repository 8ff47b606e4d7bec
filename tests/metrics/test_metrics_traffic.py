"""Station traffic metrics: analytic cases, the published (compat) variants, bad input."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import jensenshannon

import cellsynth.metrics._chunks as chunks
from cellsynth.errors import DataError
from cellsynth.metrics import (
    acf_distance,
    autocorrelation,
    band_coverage,
    busy_hour_dimensioning,
    coverage,
    daily_periodic_rmse,
    daily_share,
    diff_jsd,
    ensemble_crps,
    histogram_jsd,
    log_value_jsd,
    paired_errors,
    peak_hour_jsd,
    peak_hours,
    traffic_metrics,
    value_jsd,
    weekly_profile,
    weekly_profile_error,
)

HOURS = np.arange(168)


@contextlib.contextmanager
def rows_per_chunk(rows: int):
    """Metrics work ``rows`` series at a time inside the block (hypothesis tests cannot take monkeypatch)."""
    saved = chunks.CHUNK_ROWS
    chunks.CHUNK_ROWS = rows
    try:
        yield
    finally:
        chunks.CHUNK_ROWS = saved


def week_of_traffic(stations: int, seed: int) -> np.ndarray:
    """[stations, 168] hourly weeks: a daily cycle with a station-specific level and peak, plus noise."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.5, 1.0, (stations, 1))
    peak = rng.uniform(17, 22, (stations, 1))
    cycle = level * (1.0 + 0.6 * np.cos(2 * np.pi * (HOURS - peak) / 24))
    return cycle + rng.normal(scale=0.05, size=cycle.shape)


# --- paired errors ---------------------------------------------------------------------------------------


def test_paired_errors_zero_for_identical():
    real = week_of_traffic(5, 0)
    assert paired_errors(real, real) == {
        "mae": 0.0,
        "rmse": 0.0,
        "mae_of_mean": 0.0,
        "rmse_of_mean": 0.0,
        "crps": 0.0,
    }


def test_paired_errors_known_values():
    real = np.zeros((3, 4))
    # Two samples at +1 and -1: every sample is 1 off, their mean is exact.
    generated = np.stack([np.ones((3, 4)), -np.ones((3, 4))], axis=1)
    # Fair CRPS: 1 - |1 - (-1)| * 2 / (2 * 2 * 1) = 0, the two samples span the truth symmetrically.
    assert paired_errors(real, generated) == pytest.approx(
        {"mae": 1.0, "rmse": 1.0, "mae_of_mean": 0.0, "rmse_of_mean": 0.0, "crps": 0.0}
    )
    # RMSE is per sample, then averaged: samples off by 1 and by 3 give (1 + 3) / 2, not sqrt((1 + 9) / 2).
    generated = np.stack([np.ones((3, 4)), np.full((3, 4), 3.0)], axis=1)
    errors = paired_errors(real, generated)
    assert errors["rmse"] == pytest.approx(2.0)
    assert errors["rmse_of_mean"] == pytest.approx(2.0)
    assert errors["mae"] == pytest.approx(2.0)


def test_paired_errors_two_dimensional_generated_is_one_sample():
    real, generated = week_of_traffic(4, 1), week_of_traffic(4, 2)
    assert paired_errors(real, generated) == paired_errors(real, generated[:, np.newaxis, :])


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(0, 10_000), st.booleans())
def test_crps_equals_its_pairwise_definition(k, seed, fair):
    rng = np.random.default_rng(seed)
    draws, truth = rng.normal(size=(4, k, 3)), rng.normal(size=(4, 3))
    pair_sum = np.abs(draws[:, :, None] - draws[:, None]).sum(axis=(1, 2))
    pairs = k * (k - 1) if fair else k * k
    expected = np.abs(draws - truth[:, None]).mean(1) - (pair_sum / (2 * pairs) if pairs else 0.0)
    np.testing.assert_allclose(ensemble_crps(draws, truth, fair=fair), expected, atol=1e-12)
    # a point mass on the truth scores 0; with one draw the CRPS is the absolute error
    np.testing.assert_allclose(
        ensemble_crps(np.repeat(truth[:, None], k, 1), truth, fair=fair), 0, atol=1e-12
    )
    np.testing.assert_allclose(ensemble_crps(draws[:, :1], truth, fair=fair), np.abs(draws[:, 0] - truth))


def test_fair_crps_is_unbiased_for_the_distribution_and_ranks_an_honest_spread_first():
    """For y ~ N(0, 1) the CRPS of N(0, 1) itself is 1/sqrt(pi) and that of a point mass at the median
    E|y| = sqrt(2/pi): the proper score prefers the honest spread, which the single-sample MAE does not (its
    expectation is E|X - y| = 2/sqrt(pi) for independent X, y ~ N(0, 1))."""
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(200_000,))
    honest = rng.normal(size=(200_000, 2))  # K = 2 samples of the right distribution
    collapsed = np.zeros((200_000, 2))
    assert ensemble_crps(honest, truth, fair=True).mean() == pytest.approx(1 / np.sqrt(np.pi), rel=0.01)
    # the plain estimator with K = 2 is biased upward by (1 / K) * E|X - X'| / 2
    assert ensemble_crps(honest, truth).mean() == pytest.approx(1.5 / np.sqrt(np.pi), rel=0.01)
    assert ensemble_crps(collapsed, truth, fair=True).mean() == pytest.approx(np.sqrt(2 / np.pi), rel=0.01)
    errors = paired_errors(truth[:, None], honest[:, :, None])
    assert errors["mae"] == pytest.approx(2 / np.sqrt(np.pi), rel=0.01)
    assert errors["crps"] < paired_errors(truth[:, None], collapsed[:, :, None])["crps"]
    assert errors["mae"] > paired_errors(truth[:, None], collapsed[:, :, None])["mae"]


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 9), st.integers(1, 4), st.integers(0, 10_000))
def test_metrics_scored_a_chunk_of_series_at_a_time_equal_the_whole(chunk, k, seed):
    """The metrics that sum over series work a chunk of series at a time (bounded memory at Milan size);
    any chunk size gives the numbers of one pass over all series."""

    rng = np.random.default_rng(seed)
    real = week_of_traffic(7, seed)
    generated = real[:, None, :] + rng.normal(scale=0.2, size=(7, k + 1, 168))

    def scores():
        return {
            **paired_errors(real, generated),
            "coverage": coverage(real, generated),
            "band_coverage": band_coverage(real, generated),
            "acf_distance": acf_distance(real, generated),
        }

    whole = scores()
    with rows_per_chunk(chunk):
        chunked = scores()
    assert chunked == pytest.approx(whole, rel=1e-12, abs=1e-15)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 3), st.integers(0, 10_000), st.booleans())
def test_traffic_jsds_counted_a_chunk_of_series_at_a_time_equal_the_whole_arrays(chunk, k, seed, flat_real):
    """The value, log-value and difference JSDs histogram one chunk of series at a time on the edges of the
    whole real range: exactly the JSDs of the whole arrays, with generated values beyond the real range on
    both sides (zeros, spikes) and with constant real data."""
    rng = np.random.default_rng(seed)
    real = np.full((7, 168), 0.4) if flat_real else week_of_traffic(7, seed)
    generated = week_of_traffic(7, seed + 1)[:, None, :] * rng.lognormal(0.0, 0.5, (7, k, 168))
    generated[rng.random(generated.shape) < 0.05] = 0.0
    generated[rng.random(generated.shape) < 0.01] *= 50.0
    scale = np.median(real[real > 0])
    whole = {
        "value": histogram_jsd(real, generated, reference=True),
        "log": histogram_jsd(np.log1p(real / scale), np.log1p(generated / scale), reference=True),
        "diff": histogram_jsd(np.diff(real), np.diff(generated), reference=True),
    }
    with rows_per_chunk(chunk):
        chunked = {
            "value": value_jsd(real, generated),
            "log": log_value_jsd(real, generated),
            "diff": diff_jsd(real, generated),
        }
    assert chunked == whole


@settings(max_examples=15, deadline=None)
@given(st.integers(1, 7), st.integers(1, 3), st.integers(1, 4), st.integers(0, 10_000))
def test_each_real_period_of_a_station_pairs_with_its_samples(chunk, weeks, k, seed):
    """real [N, W, T] scores each of a station's W periods against the station's samples: the numbers of
    the periods as N W rows against the samples repeated W times, for any chunk size."""
    rng = np.random.default_rng(seed)
    real = week_of_traffic(5 * weeks, seed).reshape(5, weeks, 168)
    generated = real[:, 0, None, :] + rng.normal(scale=0.2, size=(5, k, 168))

    def scores(real_series, samples):
        busy = busy_hour_dimensioning(real_series, samples)
        return {
            **paired_errors(real_series, samples),
            "daily_periodic_rmse": daily_periodic_rmse(real_series, samples),
            "p95_error": busy["p95_error"],
            **(
                {
                    "coverage": coverage(real_series, samples),
                    "band_coverage": band_coverage(real_series, samples),
                    "busy_hour_coverage": busy["busy_hour_coverage"],
                }
                if k >= 2
                else {}
            ),
        }

    repeated = scores(real.reshape(-1, 168), np.repeat(generated, weeks, axis=0))
    with rows_per_chunk(chunk):
        by_station = scores(real, generated)
    assert by_station == pytest.approx(repeated, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("chunk", [1, 2, 5])
def test_per_series_results_computed_a_chunk_at_a_time_equal_the_whole(chunk):
    rng = np.random.default_rng(11)
    series = week_of_traffic(12, 3).reshape(4, 3, 168) + rng.normal(scale=0.1, size=(4, 3, 168))
    series[1, 2] = 0.5  # a flat series: no peak hours, share 0
    whole = (
        daily_share(series),
        daily_share(series, compat=True),
        autocorrelation(series, 30),
        peak_hours(series),
    )
    with rows_per_chunk(chunk):
        chunked = (
            daily_share(series),
            daily_share(series, compat=True),
            autocorrelation(series, 30),
            peak_hours(series),
        )
    for a, b in zip(chunked, whole):
        np.testing.assert_array_equal(a, b)


# --- value and first-difference JSD ------------------------------------------------------------------------


def test_value_and_diff_jsd_zero_for_identical_and_one_for_disjoint():
    real = week_of_traffic(6, 3)
    assert value_jsd(real, real) == 0.0
    assert diff_jsd(real, real) == 0.0
    assert value_jsd(real, real + 10.0) == pytest.approx(1.0)
    # Steeper series: every difference 10x larger, so the difference ranges no longer overlap.
    ramp = np.tile(np.arange(24.0), (3, 1))
    assert diff_jsd(ramp, 10 * ramp) == pytest.approx(1.0)


def test_diff_jsd_differences_along_time_not_across_stations():
    real = week_of_traffic(30, 4)
    shuffled_stations = real[np.random.default_rng(5).permutation(30)]
    # Reordering stations changes no series, so no temporal difference changes...
    assert diff_jsd(real, shuffled_stations) == 0.0
    # ... but the published code differences neighbouring stations, which this reordering does change.
    assert diff_jsd(real, shuffled_stations, compat=True) > 0.05


def test_compat_value_and_diff_jsd_reproduce_published_variant():
    rng = np.random.default_rng(6)
    real = week_of_traffic(12, 7)
    generated = week_of_traffic(12, 8) + rng.normal(scale=0.3, size=(12, 168))  # some values < 0

    def published(real_values: np.ndarray, generated_values: np.ndarray) -> float:
        # Own-range histograms of 100 bins each, base-2 JS distance.
        real_counts, _ = np.histogram(real_values.ravel(), bins=100)
        generated_counts, _ = np.histogram(generated_values.ravel(), bins=100)
        return float(jensenshannon(real_counts, generated_counts, base=2.0))

    clipped = np.clip(generated, 0, None)
    assert (generated < 0).any()
    assert value_jsd(real, generated, compat=True) == pytest.approx(published(real, clipped), abs=1e-12)
    across_stations = published(real[1:] - real[:-1], clipped[1:] - clipped[:-1])
    assert diff_jsd(real, generated, compat=True) == pytest.approx(across_stations, abs=1e-12)


# --- daily periodic component ------------------------------------------------------------------------------


def test_daily_share_analytic():
    daily = 1.0 + np.cos(2 * np.pi * HOURS / 24)
    # Only f = 0 and the daily frequency d = 7 carry energy: |X[0]| = 168, |X[7]| = 84.
    assert daily_share(daily) == pytest.approx(1.0)
    assert daily_share(daily, compat=True) == pytest.approx(84 / (168 + 84))
    weekly = 1.0 + np.cos(2 * np.pi * HOURS / 168)
    assert daily_share(weekly) == pytest.approx(0.0, abs=1e-12)
    assert daily_share(np.full(168, 0.3)) == 0.0
    assert daily_share(np.zeros(168), compat=True) == 0.0


def test_daily_share_uses_steps_per_day():
    half_hourly = 1.0 + np.cos(2 * np.pi * np.arange(336) / 48)
    assert daily_share(half_hourly, steps_per_day=48) == pytest.approx(1.0)
    assert daily_share(half_hourly, steps_per_day=24) < 0.01


def test_daily_periodic_rmse_paired_and_quantile_matched():
    real = np.stack([1.0 + a * np.cos(2 * np.pi * HOURS / 24) for a in (0.2, 0.5, 0.9)])
    weekly = np.tile(1.0 + np.cos(2 * np.pi * HOURS / 168), (3, 1))
    assert daily_periodic_rmse(real, real) == 0.0
    assert daily_periodic_rmse(real, weekly) == pytest.approx(1.0)  # shares 1 vs 0
    mixed = np.stack([real[0] + weekly[0] - 1.0, real[1], real[2]])
    shuffled = mixed[[2, 0, 1]]
    # Paired: each station against its own; unpaired: only the set of shares matters.
    assert daily_periodic_rmse(real, shuffled) > 0.1
    assert daily_periodic_rmse(real, shuffled, paired=False) == pytest.approx(
        daily_periodic_rmse(real, mixed, paired=False)
    )
    assert daily_periodic_rmse(real, real[[2, 0, 1]], paired=False) == pytest.approx(0.0, abs=1e-12)


def test_quantile_matching_with_unequal_set_sizes():
    real = np.tile(1.0 + np.cos(2 * np.pi * HOURS / 24), (4, 1))
    generated = np.tile(1.0 + np.cos(2 * np.pi * HOURS / 24), (9, 1))
    assert daily_periodic_rmse(real, generated, paired=False) == pytest.approx(0.0, abs=1e-12)


def test_daily_periodic_rmse_paired_averages_over_samples():
    real = np.tile(1.0 + np.cos(2 * np.pi * HOURS / 24), (2, 1))
    flat_week = np.tile(1.0 + np.cos(2 * np.pi * HOURS / 168), (2, 1))
    generated = np.stack([real, flat_week], axis=1)  # sample 0 exact, sample 1 off by 1
    assert daily_periodic_rmse(real, generated) == pytest.approx(0.5)


def test_compat_daily_rmse_reproduces_published_variant():
    rng = np.random.default_rng(9)
    steps = np.arange(336)
    real = 1.0 + np.cos(2 * np.pi * steps / 48) + rng.normal(scale=0.3, size=(8, 336))
    generated = 1.0 + 0.5 * np.cos(2 * np.pi * steps / 48) + rng.normal(scale=0.5, size=(8, 336))

    def published_share(values: np.ndarray) -> np.ndarray:
        spectrum = np.abs(np.fft.rfft(values, axis=1))
        return spectrum[:, 7] / spectrum.sum(axis=1)  # index 7 and the mean included, as published

    expected = np.sqrt(np.mean((published_share(real) - published_share(np.clip(generated, 0, None))) ** 2))
    assert daily_periodic_rmse(real, generated, steps_per_day=48, compat=True) == pytest.approx(expected)
    # With an all-zero generated series the published code stops normalising the generated shares.
    generated[0] = 0.0
    unnormalised = np.abs(np.fft.rfft(np.clip(generated, 0, None), axis=1))[:, 7]
    expected = np.sqrt(np.mean((published_share(real) - unnormalised) ** 2))
    assert daily_periodic_rmse(real, generated, steps_per_day=48, compat=True) == pytest.approx(expected)


# --- autocorrelation, weekly profile, peak hour, coverage ------------------------------------------------


# Values on a 0.1 grid: tiny magnitudes (1e-200) would underflow the variance in the direct sum too.
@given(arrays(np.float64, st.integers(3, 40), elements=st.integers(-1000, 1000).map(lambda v: v / 10)))
def test_autocorrelation_matches_direct_sum(values):
    max_lag = values.size - 1
    centred = values - values.mean()
    denominator = np.sum(centred**2)
    result = autocorrelation(values, max_lag)
    if np.ptp(values) == 0:
        np.testing.assert_array_equal(result, 0.0)
        return
    expected = [np.sum(centred[:-lag] * centred[lag:]) / denominator for lag in range(1, max_lag + 1)]
    np.testing.assert_allclose(result, expected, atol=1e-9)
    assert np.all(np.abs(result) <= 1 + 1e-9)


def test_acf_distance():
    real = week_of_traffic(10, 10)
    assert acf_distance(real, real) == 0.0
    # Alternating sign: acf = -1, +1, ... against a smooth daily cycle.
    alternating = np.tile(np.where(HOURS % 2 == 0, 1.0, -1.0), (4, 1))
    assert acf_distance(real, alternating) > 0.5
    # Default max lag is one week, capped at T - 1.
    lags = 167
    expected = np.abs(autocorrelation(real, lags).mean(0) - autocorrelation(alternating, lags).mean(0)).mean()
    assert acf_distance(real, alternating) == pytest.approx(expected)
    assert acf_distance(real, alternating, max_lag=24) == pytest.approx(
        np.abs(autocorrelation(real, 24).mean(0) - autocorrelation(alternating, 24).mean(0)).mean()
    )


def test_weekly_profile_error():
    real = week_of_traffic(5, 11)
    assert weekly_profile_error(real, real) == 0.0
    assert weekly_profile_error(real, np.zeros_like(real)) == pytest.approx(1.0)
    assert weekly_profile_error(real, 2 * real) == pytest.approx(1.0)
    two_weeks = np.concatenate([real, real], axis=1)
    np.testing.assert_allclose(weekly_profile(two_weeks), real.mean(axis=0))
    assert weekly_profile_error(two_weeks, real) == pytest.approx(0.0, abs=1e-12)


def test_peak_hours_and_jsd():
    day = np.zeros(24)
    day[20] = 5.0
    series = np.concatenate([day, np.full(24, 2.0), np.roll(day, -12)])  # peaks at 20, flat, 8
    np.testing.assert_array_equal(peak_hours(series), [20, 8])
    half_hourly = np.zeros(48)
    half_hourly[41] = 1.0  # 20:30
    np.testing.assert_array_equal(peak_hours(half_hourly, steps_per_day=48), [20])
    evening = np.tile(np.roll(np.arange(24.0), -4), (3, 7))  # every day peaks at 19h
    morning = np.tile(np.roll(np.arange(24.0), 8), (3, 7))  # every day peaks at 7h
    assert peak_hour_jsd(evening, evening) == 0.0
    assert peak_hour_jsd(evening, morning) == pytest.approx(1.0)


def test_coverage():
    rng = np.random.default_rng(12)
    real = rng.normal(size=(20, 50))
    samples = rng.normal(size=(20, 199, 50))
    # A new draw falls inside the 5-95 % band of 199 draws of its own distribution about 90 % of the time.
    assert coverage(real, samples) == pytest.approx(0.9, abs=0.03)
    assert coverage(real, samples + 100.0) == 0.0
    assert coverage(real, np.stack([real - 1, real + 1], axis=1)) == 1.0


@pytest.mark.parametrize("k", [2, 4, 20])
def test_band_coverage_of_samples_from_the_true_distribution_is_the_band_width(k):
    # Real and generated drawn from one distribution: the calibrated coverage is 0.9 whatever K, while the
    # band read off the K samples' quantiles covers only about 0.9 (K - 1) / (K + 1) (0.3, 0.54, 0.81).
    rng = np.random.default_rng(k)
    real = rng.lognormal(size=(200, 168))
    samples = rng.lognormal(size=(200, k, 168))
    assert band_coverage(real, samples) == pytest.approx(0.9, abs=0.01)
    assert coverage(real, samples) == pytest.approx(0.9 * (k - 1) / (k + 1), abs=0.03)
    assert band_coverage(real, samples, lower=0.25, upper=0.75) == pytest.approx(0.5, abs=0.01)


def test_band_coverage_flags_narrow_wide_and_biased_samples():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(100, 168))
    noise = rng.normal(size=(100, 20, 168))
    assert band_coverage(real, 0.5 * noise) < 0.65  # too narrow
    assert band_coverage(real, 2.0 * noise) > 0.99  # too wide
    assert band_coverage(real, noise + 100.0) == 0.0  # every real value below every sample


def test_band_coverage_exact_ranks_and_ties():
    samples = np.arange(1.0, 20.0)[None, :, None]  # K = 19: PIT intervals of width 1/20
    below_all, second, top = np.array([[0.5]]), np.array([[2.5]]), np.array([[19.5]])
    assert band_coverage(below_all, samples) == 0.0  # PIT in [0, 0.05]: outside the band
    assert band_coverage(second, samples) == 1.0  # PIT in [0.1, 0.15]
    assert band_coverage(top, samples) == 0.0  # PIT in [0.95, 1]
    # Real and every sample 0 (a silent hour): the PIT spans [0, 1], of which 0.9 lies in the band.
    assert band_coverage(np.zeros((3, 5)), np.zeros((3, 4, 5))) == pytest.approx(0.9)
    # Half of the hours on the band's edge (K = 1 is refused: every hour would score the band's width).
    assert band_coverage(np.array([[0.5, 2.5]]), samples[..., [0, 0]]) == pytest.approx(0.5)


def test_traffic_metrics_keys():
    real = week_of_traffic(6, 13)
    generated = np.stack([week_of_traffic(6, 14), week_of_traffic(6, 15)], axis=1)
    paired = traffic_metrics(real, generated)
    assert set(paired) == {
        "mae",
        "rmse",
        "mae_of_mean",
        "rmse_of_mean",
        "crps",
        "coverage",
        "band_coverage",
        "value_jsd",
        "log_value_jsd",
        "diff_jsd",
        "daily_periodic_rmse",
        "acf_distance",
        "weekly_profile_error",
        "peak_hour_jsd",
    }
    unpaired = traffic_metrics(real, week_of_traffic(9, 16), paired=False)
    assert set(unpaired) == {
        "value_jsd",
        "log_value_jsd",
        "diff_jsd",
        "daily_periodic_rmse",
        "acf_distance",
        "weekly_profile_error",
        "peak_hour_jsd",
    }
    assert traffic_metrics(real, real[:, np.newaxis, :])["mae"] == 0.0


# --- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: value_jsd(np.ones(5), np.ones((2, 5))), r"value_jsd\(real\): expected a 2-D or 3-D array"),
        (
            lambda: value_jsd(np.ones((2, 5)), np.ones((2, 2, 2, 5))),
            r"value_jsd\(generated\): expected a 2-D or 3-D",
        ),
        (lambda: value_jsd(np.ones((0, 5)), np.ones((2, 5))), r"value_jsd\(real\): is empty"),
        (
            lambda: diff_jsd(np.array([[1.0, np.nan, 2.0]]), np.ones((1, 3))),
            r"diff_jsd\(real\): contains 1 non-finite value\(s\); the first is NaN at index \(0, 1\)",
        ),
        (
            lambda: paired_errors(np.ones((3, 5)), np.ones((4, 5))),
            r"paired_errors\(generated\): shape \(4, 5\)",
        ),
        (lambda: paired_errors(np.ones((3, 5)), np.ones((3, 2, 6))), r"does not pair with real \(3, 5\)"),
        (lambda: diff_jsd(np.ones((2, 1)), np.ones((2, 1))), "at least 2 entries"),
        (lambda: diff_jsd(np.ones((1, 5)), np.ones((2, 5)), compat=True), r"diff_jsd\(real\).*axis 0"),
        (lambda: daily_periodic_rmse(np.ones((2, 30)), np.ones((2, 30))), "not a whole number of days"),
        (lambda: daily_share(np.ones(24), steps_per_day=1), "steps_per_day must be an integer >= 2"),
        (lambda: weekly_profile_error(np.ones((2, 48)), np.ones((2, 48))), "not a whole number of weeks"),
        (lambda: weekly_profile_error(np.zeros((2, 168)), np.ones((2, 168))), "mean real week is all zeros"),
        (
            lambda: acf_distance(np.ones((2, 10)), np.ones((2, 10)), max_lag=10),
            r"acf_distance\(max_lag\): must be an integer in .* = \[1, 9\]",
        ),
        (lambda: peak_hour_jsd(np.ones((2, 24)), np.ones((2, 24))), "every day is flat"),
        (lambda: coverage(np.ones((2, 5)), np.ones((2, 1, 5))), "K >= 2"),
        (lambda: band_coverage(np.ones((2, 5)), np.ones((2, 1, 5))), "K >= 2"),
        (lambda: band_coverage(np.ones((2, 5)), np.ones((2, 3, 5)), lower=0.5, upper=0.5), "lower < upper"),
        (lambda: coverage(np.ones((2, 5)), np.ones((2, 5))), r"coverage\(generated\): expected a 3-D"),
        (lambda: coverage(np.ones((2, 5)), np.ones((2, 3, 5)), lower=0.9, upper=0.1), "lower < upper"),
        (lambda: value_jsd([["a", "b"]], np.ones((1, 2))), "cannot be read as a numeric array"),
    ],
)
def test_bad_input_raises_data_error(call, message):
    with pytest.raises(DataError, match=message):
        call()


def test_log_value_jsd_sees_quiet_steps_that_heavy_tails_hide_from_value_jsd():
    rng = np.random.default_rng(0)
    shape = (50, 336)
    bursts = rng.lognormal(0, 2.5, shape)  # heavy-tailed, like users' traffic
    real = np.where(rng.random(shape) < 0.66, 0.0, bursts)
    # the same bursts, but the idle steps carry 0.1-0.5 of the typical (median) burst
    generated = np.where(real > 0, real, rng.uniform(0.1, 0.5, shape))
    assert value_jsd(real, generated) < 0.01  # idle and quiet steps share the first equal-width bin
    assert log_value_jsd(real, generated) > 0.3
    assert log_value_jsd(real, real) == 0.0


@given(scale=st.floats(1e-3, 1e6))
def test_log_value_jsd_does_not_depend_on_the_unit(scale):
    rng = np.random.default_rng(1)
    real, generated = rng.lognormal(0, 1, (4, 48)), rng.lognormal(0.3, 1, (4, 48))
    assert log_value_jsd(real * scale, generated * scale) == pytest.approx(
        log_value_jsd(real, generated), abs=1e-9
    )


def test_log_value_jsd_refuses_negative_traffic():
    with pytest.raises(DataError, match="non-negative"):
        log_value_jsd(np.ones((2, 4)), -np.ones((2, 4)))
