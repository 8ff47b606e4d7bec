"""The utility metrics in the station evaluation: train-on-synthetic forecast and busy-hour dimensioning."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cellsynth import metrics
from cellsynth.data.split import split_stations
from cellsynth.data.synthetic import synthesize_city
from cellsynth.evaluate import METRICS, evaluate
from cellsynth.generators import get

UTILITY = ("tstr_utility", "tstr_mae_generated", "tstr_mae_real")


@pytest.fixture(scope="module")
def city_split():
    city = synthesize_city(n_stations=40, seed=1)
    return split_stations(city.traffic, 0.25, seed=0)


@pytest.fixture(scope="module")
def seasonal_mean(city_split):
    train, held_out = city_split
    generated = get("seasonal-mean").fit(train, progress=False).generate(held_out.stations, samples=4, seed=0)
    return generated, evaluate(held_out, generated, train=train)


def test_forecast_utility_is_the_metric_on_training_generated_and_held_out_series(city_split, seasonal_mean):
    train, held_out = city_split
    generated, evaluation = seasonal_mean
    week = 168
    for c, channel in enumerate(held_out.channels):
        scale = float(train.channel(channel).max())
        train_weeks = train.n_steps // week
        expected = metrics.tstr_forecast_utility(
            train.values[:, : train_weeks * week, c] / scale,
            generated.values[..., c] / scale,
            held_out.values[:, : (held_out.n_steps // week) * week, c] / scale,
        )
        scores = evaluation.metrics[channel]
        assert scores["tstr_utility"]["value"] == pytest.approx(expected["utility"], rel=1e-6)
        assert scores["tstr_mae_real"]["value"] == pytest.approx(expected["mae_real"], rel=1e-6)
        assert scores["tstr_mae_generated"]["original"] == pytest.approx(
            expected["mae_generated"] * scale, rel=1e-6
        )
        for name in UTILITY:
            assert ("original" in scores[name]) == METRICS[name].has_units


def test_the_real_trained_reference_does_not_depend_on_the_generator(city_split, seasonal_mean):
    train, held_out = city_split
    _, honest = seasonal_mean
    noise = get("copy-train").fit(train, progress=False).generate(held_out.stations, samples=2, seed=0)
    other = evaluate(held_out, noise, train=train)
    for channel in held_out.channels:
        assert other.value(channel, "tstr_mae_real") == honest.value(channel, "tstr_mae_real")
        assert other.value(channel, "tstr_utility") != honest.value(channel, "tstr_utility")


def test_busy_hour_metrics_pair_every_real_week_with_its_station_samples(seasonal_mean):
    _, evaluation = seasonal_mean
    aligned = evaluation.aligned
    n, weeks, period, _ = aligned.real.shape
    for c, channel in enumerate(aligned.channels):
        real = aligned.real[..., c].reshape(n * weeks, period)
        generated = np.repeat(aligned.generated[..., c], weeks, axis=0)
        expected = metrics.busy_hour_dimensioning(real, generated)
        scores = evaluation.metrics[channel]
        assert scores["busy_hour_p95_error"]["value"] == pytest.approx(expected["p95_error"])
        assert scores["busy_hour_coverage"]["value"] == expected["busy_hour_coverage"]
        assert 0.0 <= scores["busy_hour_coverage"]["value"] <= 1.0


def test_identical_data_dimension_exactly():
    city = synthesize_city(n_stations=10, seed=2)
    evaluation = evaluate(city.traffic, city.traffic)
    for channel in city.traffic.channels:
        assert evaluation.value(channel, "busy_hour_p95_error") == pytest.approx(0.0, abs=1e-12)
        assert "busy_hour_coverage" not in evaluation.metrics[channel]  # one sample per station: no range


def test_without_training_data_there_is_no_forecast_utility_and_the_protocol_says_so(city_split):
    _, held_out = city_split
    evaluation = evaluate(held_out, held_out)
    for channel in held_out.channels:
        assert not set(UTILITY) & set(evaluation.metrics[channel])
    assert any("no forecast utility" in line for line in evaluation.comparison["protocol"])


def test_forecast_utility_without_held_out_series_is_missing_with_its_reason(city_split):
    train, _ = city_split
    evaluation = evaluate(train, train, train=train)  # scored on the training stations themselves
    for channel in train.channels:
        for name in UTILITY:
            entry = evaluation.metrics[channel][name]
            assert entry["value"] is None and "no held-out real series" in entry["reason"]
    assert any("train-on-synthetic forecast was not scored" in note for note in evaluation.notes)
    assert math.isfinite(evaluation.value(train.channels[0], "busy_hour_p95_error"))
