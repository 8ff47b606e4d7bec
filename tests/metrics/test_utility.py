"""Utility metrics: the day-ahead forecaster, train-on-synthetic test-on-real, busy-hour dimensioning."""

import numpy as np
import pytest

from cellsynth.errors import DataError
from cellsynth.metrics import busy_hour_dimensioning, fit_day_ahead, forecast_mae, tstr_forecast_utility

HOURS = np.arange(24)
PROFILE = 1.0 + np.sin(2 * np.pi * HOURS / 24) ** 2 + 0.5 * (HOURS >= 18)


def _weeks(n, seed, noise=0.1):
    """n stations x one hourly week: a daily profile times a station level, with multiplicative noise."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.5, 2.0, (n, 1))
    week = np.tile(PROFILE, 7)[None, :] * level
    return week * rng.lognormal(0.0, noise, week.shape)


def test_forecaster_is_exact_on_a_daily_periodic_series():
    series = np.tile(PROFILE, 7)[None, :].repeat(3, axis=0)
    forecaster = fit_day_ahead(series)
    assert forecast_mae(forecaster, series) == pytest.approx(0.0, abs=1e-12)


def test_forecaster_is_nearly_exact_on_periodic_series_of_different_levels():
    levels = np.linspace(0.5, 2.0, 20)[:, None]
    series = np.tile(PROFILE, 7)[None, :] * levels
    forecaster = fit_day_ahead(series, penalty=1e-6)
    assert forecast_mae(forecaster, series) < 1e-3 * series.mean()


def test_generated_equal_to_real_training_weeks_gives_utility_one():
    train, held_out = _weeks(30, 0), _weeks(10, 1)
    result = tstr_forecast_utility(train, train[:, None, :], held_out)
    assert result["utility"] == 1.0
    assert result["mae_generated"] == result["mae_real"]


def test_generated_like_the_real_data_is_about_as_useful():
    train, held_out = _weeks(30, 0), _weeks(10, 1)
    generated = _weeks(40, 2).reshape(10, 4, -1)
    assert tstr_forecast_utility(train, generated, held_out)["utility"] == pytest.approx(1.0, abs=0.1)


def test_pure_noise_is_far_less_useful():
    train, held_out = _weeks(30, 0), _weeks(10, 1)
    noise = np.random.default_rng(3).uniform(0.0, 3.0, (10, 4, 168))
    result = tstr_forecast_utility(train, noise, held_out)
    assert result["utility"] < 0.5
    assert result["mae_real"] < result["mae_previous_day"]  # the forecaster beats repeating yesterday


def test_utility_does_not_depend_on_units():
    train, held_out = _weeks(20, 0), _weeks(8, 1)
    generated = _weeks(16, 2, noise=0.3).reshape(8, 2, -1)
    base = tstr_forecast_utility(train, generated, held_out)
    scaled = tstr_forecast_utility(1000 * train, 1000 * generated, 1000 * held_out)
    assert scaled["utility"] == pytest.approx(base["utility"], rel=1e-9)
    assert scaled["mae_real"] == pytest.approx(1000 * base["mae_real"], rel=1e-9)


def test_less_than_two_days_is_refused_with_the_fix():
    with pytest.raises(DataError, match=r"tstr_forecast_utility\(real_held_out\).*at least 2 days.*168"):
        tstr_forecast_utility(_weeks(5, 0), _weeks(5, 1), np.ones((3, 24)))
    with pytest.raises(DataError, match=r"tstr_forecast_utility\(generated\).*whole number"):
        tstr_forecast_utility(_weeks(5, 0), np.ones((3, 50)), _weeks(5, 1))
    with pytest.raises(DataError, match=r"real_train.*2-D or 3-D"):
        tstr_forecast_utility(np.ones(168), _weeks(5, 1), _weeks(5, 1))


def test_p95_error_is_zero_when_samples_equal_the_real_series():
    real = _weeks(6, 0)
    result = busy_hour_dimensioning(real, np.repeat(real[:, None, :], 3, axis=1))
    assert result["p95_error"] == pytest.approx(0.0, abs=1e-12)
    assert result["busy_hour_coverage"] == 1.0
    assert result["busy_hour_coverage_expected"] == pytest.approx(0.5)


def test_p95_error_is_relative_to_the_total_real_load():
    real = _weeks(6, 0)
    result = busy_hour_dimensioning(real, 1.2 * real[:, None, :])
    assert result["p95_error"] == pytest.approx(0.2)
    assert "busy_hour_coverage" not in result  # one sample has no range


def test_coverage_counts_stations_whose_busy_hour_the_samples_bracket():
    real = _weeks(4, 0)
    generated = np.stack([0.9 * real, 1.1 * real], axis=1)  # brackets every station's busy hour
    generated[3] = 2.0 * real[3]  # station 3: both samples too busy
    result = busy_hour_dimensioning(real, generated)
    assert result["busy_hour_coverage"] == 0.75
    np.testing.assert_allclose(result["busy_hour_real"], real.max(axis=1))


def test_busy_hour_bad_shapes_are_refused():
    real = _weeks(4, 0)
    with pytest.raises(DataError, match=r"busy_hour_dimensioning\(generated\).*does not pair"):
        busy_hour_dimensioning(real, np.ones((3, 2, 168)))
    with pytest.raises(DataError, match=r"busy_hour_dimensioning\(real\).*2-D"):
        busy_hour_dimensioning(real[0], real[0])
    with pytest.raises(DataError, match="positive real load"):
        busy_hour_dimensioning(np.zeros((2, 168)), np.ones((2, 2, 168)))


def _whole_array_fit(series, steps_per_day=24, penalty=0.01):
    """fit_day_ahead's formula on all day pairs at once (its docstring), for comparison."""
    scale = np.median(np.abs(series[series != 0]))
    days = series.reshape(len(series), -1, steps_per_day)
    log = np.sign(days) * np.log1p(np.abs(days) / scale)
    previous, following = log[:, :-1].reshape(-1, steps_per_day), log[:, 1:].reshape(-1, steps_per_day)
    mu, nu = previous.mean(axis=0), following.mean(axis=0)
    sigma = previous.std(axis=0)
    sigma = np.where(sigma > 0, sigma, 1.0)
    z = (previous - mu) / sigma
    gram = z.T @ z + len(z) * penalty * np.eye(steps_per_day)
    return mu, sigma, nu, np.linalg.solve(gram, z.T @ (following - nu))


@pytest.mark.parametrize("chunk", [1, 3, 2048])
def test_fit_summed_a_chunk_of_series_at_a_time_is_the_whole_array_formula(monkeypatch, chunk):
    import cellsynth.metrics._chunks as chunks

    monkeypatch.setattr(chunks, "CHUNK_ROWS", chunk)
    series = _weeks(11, 5, noise=0.3)
    series[3, :24] = 0.0  # a quiet day
    forecaster = fit_day_ahead(series)
    for fitted, expected in zip(
        (forecaster.feature_mean, forecaster.feature_std, forecaster.target_mean, forecaster.weights),
        _whole_array_fit(series),
    ):
        np.testing.assert_allclose(fitted, expected, rtol=1e-10, atol=1e-13)


def test_forecast_utility_does_not_depend_on_the_chunk_size(monkeypatch):
    import cellsynth.metrics._chunks as chunks

    train, held_out = _weeks(12, 0), _weeks(7, 1)
    generated = _weeks(12, 2, noise=0.3).reshape(4, 3, 168)
    whole = tstr_forecast_utility(train, generated, held_out)
    monkeypatch.setattr(chunks, "CHUNK_ROWS", 2)
    assert tstr_forecast_utility(train, generated, held_out) == pytest.approx(whole, rel=1e-12)
