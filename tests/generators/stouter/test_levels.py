"""The station-level regression: closed-form leave-one-out against refitting, recovery of a known linear
law, calibrated draws, the no-descriptor case, state round trip and errors; and STOUTER giving planned
sites the level their features imply."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import cellsynth
from cellsynth.data.model import Stations, StationTraffic
from cellsynth.data.samples import split_samples
from cellsynth.errors import DataError, NotFittedError
from cellsynth.generators import get
from cellsynth.generators.stouter import StouterGenerator
from cellsynth.generators.stouter.levels import (
    LevelRegression,
    at_level,
    daily_part,
    fit_shape_scale,
    recent_level_shift,
    station_levels,
)
from tests.generators.stouter.test_generator import CHANNELS, START, tiny_stations, tiny_traffic


def linear_law(n: int, d: int = 4, c: int = 2, noise: float = 0.3, seed: int = 0, law: int = 0):
    """Levels ``1.5 + (x / scale) @ beta + noise``: the law (scales, beta) from ``law``, the sample from ``seed``."""
    law_rng, rng = np.random.default_rng([law, 1]), np.random.default_rng(seed)
    scale, beta = law_rng.uniform(0.5, 5, d), law_rng.normal(size=(d, c))
    x = rng.normal(size=(n, d)) * scale  # unequal scales: the model standardises
    y = 1.5 + (x / scale) @ beta + rng.normal(0, noise, (n, c))
    return x, y, beta, scale


def test_station_levels_is_the_mean_over_time():
    z = np.arange(24, dtype=float).reshape(2, 3, 2, 2)  # [N, W, L, C]
    np.testing.assert_allclose(station_levels(z), z.reshape(2, 6, 2).mean(1))


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(6, 25))
def test_leave_one_out_residuals_equal_refitting_without_each_station(seed, n):
    x, y, *_ = linear_law(n, d=3, seed=seed)
    model = LevelRegression().fit(x, y)
    # Refit without station i at the chosen penalty (intercept unpenalised, the fit's standardisation),
    # predict station i: the residuals' covariance must be the model's closed-form one.
    xs = (x - x.mean(0)) / x.std(0)
    residuals = np.empty_like(y)
    for i in range(n):
        keep = np.arange(n) != i
        a, b = xs[keep] - xs[keep].mean(0), y[keep]
        beta = np.linalg.solve(a.T @ a + float(model.alpha_) * np.eye(3), a.T @ (b - b.mean(0)))
        residuals[i] = y[i] - (b.mean(0) + (xs[i] - xs[keep].mean(0)) @ beta)
    expected = np.atleast_2d(np.cov(residuals, rowvar=False, bias=True))
    np.testing.assert_allclose(model.covariance_, expected, rtol=1e-7, atol=1e-12)


def test_recovers_a_linear_law_and_its_noise():
    x, y, beta, scale = linear_law(2000, noise=0.3)
    model = LevelRegression().fit(x, y)
    # the model's coefficients are per standardised descriptor: beta * sd(x) / scale
    np.testing.assert_allclose(model.beta_, beta * (x.std(0) / scale)[:, None], atol=0.05)
    np.testing.assert_allclose(np.diag(model.covariance_), 0.09, rtol=0.1)  # the noise variance 0.3^2
    assert (model.explained > 0.9).all()
    fresh, truth, *_ = linear_law(200, noise=0.0, seed=1)  # the same law, other stations, no noise
    np.testing.assert_allclose(model.predict(fresh), truth, atol=0.1)


def test_draws_are_centred_on_the_prediction_with_the_residual_covariance():
    x, y, *_ = linear_law(300, noise=0.5, seed=1)
    y[:, 1] += y[:, 0]  # correlated channels: a busy site is busy in both
    model = LevelRegression().fit(x, y)
    draws = model.sample(x[:2], 20_000, torch.Generator().manual_seed(0))  # [2, K, C]
    assert draws.shape == (2, 20_000, 2)
    np.testing.assert_allclose(draws.mean(1), model.predict(x[:2]), atol=0.03)
    np.testing.assert_allclose(np.cov(draws[0], rowvar=False), model.covariance_, rtol=0.05, atol=0.01)
    again = model.sample(x[:2], 20_000, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(draws, again)


def test_without_descriptors_it_is_the_spread_of_the_training_levels():
    rng = np.random.default_rng(0)
    y = rng.normal(2.0, 0.7, (50, 3))
    model = LevelRegression().fit(np.zeros((50, 0)), y)
    np.testing.assert_allclose(model.predict(np.zeros((4, 0))), np.tile(y.mean(0), (4, 1)))
    # leave-one-out residuals of the mean are (y - mean) * n / (n - 1)
    np.testing.assert_allclose(model.covariance_, np.cov(y, rowvar=False, bias=True) * (50 / 49) ** 2)
    np.testing.assert_allclose(model.explained, 1 - (50 / 49) ** 2)


def test_state_round_trip():
    x, y, *_ = linear_law(40)
    model = LevelRegression().fit(x, y)
    restored = LevelRegression.from_state(model.state())
    np.testing.assert_array_equal(restored.predict(x), model.predict(x))
    np.testing.assert_array_equal(restored.explained, model.explained)


def test_errors():
    with pytest.raises(NotFittedError):
        LevelRegression().predict(np.zeros((1, 2)))
    with pytest.raises(DataError, match="at least 3"):
        LevelRegression().fit(np.zeros((2, 1)), np.zeros((2, 1)))
    with pytest.raises(DataError, match="N = 5"):
        LevelRegression().fit(np.zeros((5, 1)), np.zeros((4, 1)))
    with pytest.raises(DataError, match="NaN"):
        LevelRegression().fit(np.full((5, 1), np.nan), np.zeros((5, 1)))
    model = LevelRegression().fit(*linear_law(10)[:2])
    with pytest.raises(DataError, match="4 columns"):
        model.predict(np.zeros((1, 3)))


# -- STOUTER: a planned site gets the level its features imply -----------------------------------------------
def law_traffic(n: int, seed: int, prefix: str) -> StationTraffic:
    """Load level = exp(0.5 * (offices - 5)): a factor ~50 across stations, set by a feature."""
    rng = np.random.default_rng(seed)
    offices = rng.integers(0, 11, n)
    stations = Stations(
        [f"{prefix}{i:02d}" for i in range(n)],
        45.46 + rng.normal(0, 0.005, n),
        9.19 + rng.normal(0, 0.005, n),
        np.stack([offices, rng.poisson(5, n)], axis=1),
        ("poi_office", "poi_home"),
    )
    hours = np.arange(336)
    daily = 1.5 + np.sin(2 * np.pi * (hours % 24 - 8) / 24)
    level = np.exp(0.5 * (offices - 5.0))[:, None, None]
    values = level * daily[None, :, None] * np.array([10.0, 2.0]) * rng.lognormal(0, 0.15, (n, 336, 2))
    return StationTraffic(values, START, "1h", CHANNELS, stations)


def test_stouter_gives_planned_sites_the_level_their_features_imply():
    torch.set_num_threads(1)
    train = law_traffic(20, seed=0, prefix="bs")
    planned = law_traffic(8, seed=1, prefix="new")
    gen = get("stouter", StouterGenerator.smoke_config() | {"epochs": 4}).fit(train, progress=False)
    _, values = split_samples(gen.generate(planned.stations, samples=3, seed=0))  # [M, K, T, C]
    real = np.log(planned.values.mean(1))  # [M, C]
    generated = np.log(values.mean(axis=(1, 2)))
    for c in range(2):
        assert np.corrcoef(real[:, c], generated[:, c])[0, 1] > 0.9
    # a training station keeps its own level: in every sample, the busiest training station is still far
    # busier than the quietest (a 4-epoch diffusion blurs the quiet one's week, so not by the full factor)
    offices = train.stations.features[:, 0]
    extremes = [int(np.argmin(offices)), int(np.argmax(offices))]
    _, seen = split_samples(gen.generate(train.stations.subset(extremes), samples=3, seed=0))
    means = seen.mean(axis=2)  # [2, K, C]
    assert (train.values[extremes[1]].mean(0) / train.values[extremes[0]].mean(0) > 20).all()
    assert (means[1].min(0) / means[0].max(0) > 5).all()
    # the paper's behaviour is one switch away, and is a different model
    none = get("stouter", StouterGenerator.smoke_config() | {"epochs": 4, "level_model": "none"})
    assert none.fit(train, progress=False).levels_ is None


# -- known stations' recent level (extensions.known_level) ---------------------------------------------------
def test_recent_level_shift_is_the_last_weeks_mean_minus_the_mean():
    weekly = np.array([[[1.0], [2.0], [6.0]], [[4.0], [4.0], [4.0]]])  # [N=2, W=3, C=1]
    np.testing.assert_allclose(recent_level_shift(weekly, 1)[:, 0], [6.0 - 3.0, 0.0])
    np.testing.assert_allclose(recent_level_shift(weekly, 2)[:, 0], [4.0 - 3.0, 0.0])
    np.testing.assert_allclose(recent_level_shift(weekly, 5)[:, 0], [0.0, 0.0])  # more weeks than there are
    with pytest.raises(DataError, match=r"\[N stations, W weeks, C\]"):
        recent_level_shift(np.zeros((2, 3)), 1)
    with pytest.raises(DataError, match="recent_weeks must be >= 1"):
        recent_level_shift(weekly, 0)


@pytest.mark.parametrize("level_model", ["ridge", "knn", "none"])
def test_known_stations_can_take_their_recent_level(level_model, tmp_path):
    torch.set_num_threads(1)
    base = tiny_traffic(n=10, weeks=2)
    values = base.values.copy()
    values[:5, 168:] *= 4.0  # half the stations grow 4x in the second week
    train = StationTraffic(values, base.start, base.step, base.channels, base.stations)
    config = StouterGenerator.smoke_config() | {"epochs": 4}
    extensions = {"level_model": level_model}
    gen = get("stouter", config | {"extensions": extensions}).fit(train, progress=False)
    gen.save(tmp_path)
    recent = cellsynth.load(tmp_path)  # the weekly levels survive the round trip
    np.testing.assert_array_equal(recent.weekly_levels_, gen.weekly_levels_)
    # known_level only acts in generate: the same fitted model, its saved config edited
    record = json.loads((tmp_path / "generator.json").read_text())
    record["config"]["extensions"]["known_level"] = "recent"
    (tmp_path / "generator.json").write_text(json.dumps(record))
    recent = cellsynth.load(tmp_path)
    planned = tiny_stations(3, seed=5, prefix="new")
    target = Stations(
        [*train.stations.ids, *planned.ids],
        np.concatenate([train.stations.lat, planned.lat]),
        np.concatenate([train.stations.lon, planned.lon]),
        np.concatenate([train.stations.features, planned.features]),
        train.stations.feature_names,
    )
    _, old = split_samples(gen.generate(target, samples=2, seed=3))
    _, new = split_samples(recent.generate(target, samples=2, seed=3))
    # In log space every sample of a known station moves by its last week's level minus its mean level
    # (where neither is zero traffic nor at the clip to the training range): up for the grown stations, ~0 for
    # the others.
    shift = recent_level_shift(gen.weekly_levels_, 1)  # [10, C]
    before, after = recent.scaler_.transform(old[:10]), recent.scaler_.transform(new[:10])  # [10, K, T, C]
    low, high = recent._output_range()
    free = (np.minimum(before, after) > low + 1e-3) & (np.maximum(before, after) < high - 1e-3)
    free &= (old[:10] > 0) & (new[:10] > 0)
    expected = np.broadcast_to(shift[:, None, None, :], before.shape)
    assert free.sum() >= 100
    np.testing.assert_allclose((after - before)[free], expected[free], atol=1e-3)
    assert shift[:5].min() > 0.2 and shift[:5].min() > 5 * np.abs(shift[5:]).max()
    np.testing.assert_array_equal(new[10:], old[10:])  # new sites are not affected


def test_shape_scale_with_one_bin_is_the_pooled_scale():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(24, 2, 168, 3)) * rng.uniform(0.5, 2.0, (24, 1, 1, 3)) + rng.normal(
        size=(24, 1, 1, 3)
    )
    ell = station_levels(z)
    centred = z - ell[:, None, None, :]
    fitted = fit_shape_scale(ell, centred)  # 24 stations: fewer than two bins' worth
    knots, scales = fitted["knots"], fitted["scales"]
    assert knots.shape == scales.shape == (1, 3)
    np.testing.assert_allclose(scales[0], centred.reshape(-1, 3).std(0), rtol=1e-12)
    np.testing.assert_array_equal(fitted["low"][0], centred.reshape(-1, 3).min(0))
    np.testing.assert_array_equal(fitted["high"][0], centred.reshape(-1, 3).max(0))
    np.testing.assert_allclose(
        at_level(rng.normal(size=(5, 4, 3)), knots, scales), np.broadcast_to(scales[0], (5, 4, 3))
    )


def test_shape_scale_follows_a_swing_that_grows_with_the_level():
    """Stations whose deviations scale as ``0.1 + 0.4 * ell``: the fitted sigma(ell) recovers the law at the
    knots, interpolates between them and stays constant beyond the first and last."""
    rng = np.random.default_rng(1)
    n = 400
    ell = np.sort(rng.uniform(0.0, 2.0, n))[:, None]  # [N, 1]
    centred = rng.normal(size=(n, 168, 1)) * (0.1 + 0.4 * ell)[:, None, :]
    centred -= centred.mean(1, keepdims=True)  # deviations from each station's own level
    fitted = fit_shape_scale(ell, centred)
    knots, scales = fitted["knots"], fitted["scales"]
    assert knots.shape == (10, 1) and np.all(np.diff(knots[:, 0]) > 0)
    # each bin's RMS of a swing linear in ell: between the law at its ends, close to it at its knot
    np.testing.assert_allclose(scales[:, 0], 0.1 + 0.4 * knots[:, 0], rtol=0.05)
    # each bin's deviations range over its own stations only: the busiest bin's reach beyond the quietest's
    groups = np.array_split(np.arange(n), 10)  # ell is sorted
    np.testing.assert_array_equal(fitted["high"][:, 0], [centred[g].max() for g in groups])
    np.testing.assert_array_equal(fitted["low"][:, 0], [centred[g].min() for g in groups])
    assert fitted["high"][-1, 0] > 3 * fitted["high"][0, 0]
    mid = 0.5 * (knots[3] + knots[4])
    np.testing.assert_allclose(at_level(mid, knots, scales), 0.5 * (scales[3] + scales[4]))
    np.testing.assert_allclose(at_level(np.array([[-5.0], [9.0]]), knots, scales)[:, 0], scales[[0, -1], 0])


def test_daily_part_is_a_projection_onto_the_mean_day():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3, 2, 168, 2))
    p = daily_part(x)
    day = x.reshape(3, 2, 7, 24, 2).mean(2)  # [.., 24, C]
    np.testing.assert_allclose(p, np.tile(day, (1, 1, 7, 1)))
    np.testing.assert_allclose(daily_part(p), p)  # idempotent
    np.testing.assert_allclose(daily_part(x - p), 0.0, atol=1e-12)
    np.testing.assert_allclose(daily_part(2 * x + p), 3 * p)  # linear


def test_level_daily_scales_the_mean_day_and_the_rest_apart():
    """Stations whose daily swing grows with the level while their hour-to-hour noise does not: the two
    scales recover the two laws."""
    rng = np.random.default_rng(3)
    n = 300
    ell = np.sort(rng.uniform(0.0, 2.0, n))
    day = np.sin(2 * np.pi * np.arange(24) / 24)  # RMS 1 / sqrt(2)
    swing = (0.2 + 0.6 * ell)[:, None, None] * np.tile(day, 7)[None, None, :]  # [N, 1, 168]
    noise = 0.1 * rng.normal(size=(n, 2, 168))
    noise -= daily_part(noise[..., None])[..., 0]  # off the mean day, as daily_part splits it
    centred = (swing + noise)[..., None]
    centred -= centred.mean(axis=(1, 2), keepdims=True)
    fitted = fit_shape_scale(ell[:, None], centred, daily=True)
    knots = fitted["knots"][:, 0]
    np.testing.assert_allclose(fitted["scales"][:, 0], (0.2 + 0.6 * knots) / np.sqrt(2), rtol=0.05)
    # the noise without its own mean day keeps 6 / 7 of its variance
    np.testing.assert_allclose(fitted["residual_scales"][:, 0], 0.1 * np.sqrt(6 / 7), rtol=0.05)
    assert "residual_scales" not in fit_shape_scale(ell[:, None], centred)
    # one bin (shape_scale: daily): the pooled RMS of the mean day and of the rest, whatever the level
    pooled = fit_shape_scale(ell[:, None], centred, daily=True, bins=1)
    assert pooled["knots"].shape == (1, 1)
    profile = daily_part(centred)
    np.testing.assert_allclose(pooled["scales"][0, 0], np.sqrt((profile**2).mean()))
    np.testing.assert_allclose(pooled["residual_scales"][0, 0], np.sqrt(((centred - profile) ** 2).mean()))
    with pytest.raises(ValueError, match=r"bins must lie in 1\.\.300"):
        fit_shape_scale(ell[:, None], centred, bins=0)
