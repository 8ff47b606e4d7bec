"""Utility of generated station traffic for two downstream planning jobs (docs/metrics.md, "Utility").

* **Train on synthetic, test on real** (:func:`tstr_forecast_utility`): one fixed, deterministic day-ahead
  forecaster (:func:`fit_day_ahead`, closed-form ridge regression) is fitted once on the generated weeks and
  once on the real training weeks; both forecast the real held-out days, and the utility is the ratio of
  their errors.
* **Busy-hour dimensioning** (:func:`busy_hour_dimensioning`): capacity is planned on peaks, not means, so
  each station's P95 hourly load and its busy-hour (maximum) load are compared between real and generated.

Pure functions on numpy arrays; bad input raises :class:`cellsynth.errors.DataError`. Both work a chunk of
series at a time (:mod:`cellsynth.metrics._chunks`): the forecaster's fit sums over day pairs chunk by chunk,
so the temporaries are bounded by the chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from cellsynth.metrics._chunks import map_series, row_chunks
from cellsynth.metrics._validation import float_array, paired_generated, require

__all__ = [
    "BUSY_HOUR_QUANTILE",
    "DEFAULT_RIDGE_PENALTY",
    "DayAheadForecaster",
    "busy_hour_dimensioning",
    "day_pairs",
    "fit_day_ahead",
    "forecast_mae",
    "log_scale",
    "tstr_forecast_utility",
]

#: Ridge penalty per day pair (the penalty on the weights is ``pairs * DEFAULT_RIDGE_PENALTY``), so the
#: shrinkage does not depend on how many days a training set has: generated sets are often larger than real.
DEFAULT_RIDGE_PENALTY = 0.01
#: The load quantile capacity is dimensioned on.
BUSY_HOUR_QUANTILE = 0.95

_SERIES_LAYOUT = "[S series, T steps]"
_SETS_LAYOUT = "[M series, T steps] or [M series, K samples, T steps]"


def _series(values: ArrayLike, function: str, name: str) -> np.ndarray:
    """A set of series as [S, T]: [M, K, T] sets are flattened to M K series."""
    array = float_array(values, function=function, name=name, ndims=(2, 3), layout=_SETS_LAYOUT)
    return array.reshape(-1, array.shape[-1])


def day_pairs(series: np.ndarray, steps_per_day: int, *, function: str, name: str) -> tuple[np.ndarray, ...]:
    """Every (day d, day d + 1) pair within each series: ``(previous, following)``, each [P, steps_per_day]
    with ``P = S (T / steps_per_day - 1)``. Pairs never span two series. T must be a whole number of days,
    at least 2."""
    _check_days(series, steps_per_day, function=function, name=name)
    days = series.reshape(series.shape[0], series.shape[-1] // steps_per_day, steps_per_day)
    return days[:, :-1].reshape(-1, steps_per_day), days[:, 1:].reshape(-1, steps_per_day)


def _day_pair_chunks(series: np.ndarray, steps_per_day: int, *, function: str, name: str):
    """:func:`day_pairs` of a chunk of series at a time, in order: ``(previous, following)`` per chunk."""
    _check_days(series, steps_per_day, function=function, name=name)
    for rows in row_chunks(len(series)):
        yield day_pairs(series[rows], steps_per_day, function=function, name=name)


def _check_days(series: np.ndarray, steps_per_day: int, *, function: str, name: str) -> None:
    """T must be a whole number of at least 2 days of ``steps_per_day`` steps."""
    require(
        isinstance(steps_per_day, int | np.integer) and steps_per_day >= 1,
        f"steps_per_day must be a positive integer, got {steps_per_day!r}",
        function=function,
        name="steps_per_day",
    )
    steps = series.shape[-1]
    require(
        steps % steps_per_day == 0 and steps // steps_per_day >= 2,
        f"T = {steps} steps is not a whole number of at least 2 days of {steps_per_day} steps: a day-ahead "
        "forecast needs a day to forecast from and a day to forecast; pass whole days (e.g. one week, 168 "
        "hourly steps) and the right steps_per_day",
        function=function,
        name=name,
    )


def log_scale(reference: np.ndarray) -> float:
    """The unit ``s`` of the forecaster's log transform: the median of the strictly positive absolute values
    of ``reference`` (1 if there are none), so the transform does not depend on the data's units."""
    positive = np.abs(reference[reference != 0])  # the median needs them: one copy, partitioned in place
    return float(np.median(positive, overwrite_input=True)) if positive.size else 1.0


def _to_log(values: np.ndarray, scale: float) -> np.ndarray:
    """``u = sign(x) log(1 + |x| / s)``: log1p for loads, defined (not clipped) for negative generated values."""
    return np.sign(values) * np.log1p(np.abs(values) / scale)


def _from_log(transformed: np.ndarray, scale: float) -> np.ndarray:
    """The inverse of :func:`_to_log`: ``x = sign(u) s (exp(|u|) - 1)``."""
    return np.sign(transformed) * scale * np.expm1(np.abs(transformed))


@dataclass(frozen=True)
class DayAheadForecaster:
    """A fitted day-ahead forecaster (see :func:`fit_day_ahead`): predicts a day from the day before."""

    scale: float
    feature_mean: np.ndarray
    feature_std: np.ndarray
    target_mean: np.ndarray
    weights: np.ndarray

    def predict(self, previous: np.ndarray) -> np.ndarray:
        """The next day [P, steps_per_day] for each previous day [P, steps_per_day], in the data's units."""
        features = (_to_log(previous, self.scale) - self.feature_mean) / self.feature_std
        return _from_log(features @ self.weights + self.target_mean, self.scale)


def fit_day_ahead(
    series: ArrayLike,
    steps_per_day: int = 24,
    *,
    scale: float | None = None,
    penalty: float = DEFAULT_RIDGE_PENALTY,
) -> DayAheadForecaster:
    """Fit the fixed day-ahead forecaster on every pair of consecutive days of ``series``.

    ``series`` [S, T] or [M, K, T] (flattened to series), T a whole number of >= 2 days. With ``s = scale``
    (default :func:`log_scale` of ``series``), each day is transformed to ``u = sign(x) log(1 + |x| / s)``.
    Over the P day pairs ``(u_prev, u_next)``, features are standardised, ``z = (u_prev - mu) / sigma`` (mean
    and standard deviation per step of the day over the pairs; sigma = 1 where it is 0), the targets centred,
    ``c = u_next - nu``, and the weights are ridge regression in closed form,

        W = (Z^T Z + P penalty I)^-1 Z^T C,

    so a forecast is ``x_hat = sign(v) s (exp(|v|) - 1)`` with ``v = z W + nu``. Deterministic: no random
    state, no iterations. The sums behind mu, sigma, nu, ``Z^T Z`` and ``Z^T C`` run over a chunk of series
    at a time (three passes: means, deviations, products), so no array of all day pairs is made.
    """
    function = "fit_day_ahead"
    data = _series(series, function, "series")
    require(
        np.isfinite(penalty) and penalty > 0,
        f"penalty must be a positive number, got {penalty!r}",
        function=function,
        name="penalty",
    )
    unit = log_scale(data) if scale is None else float(scale)
    require(
        unit > 0 and np.isfinite(unit),
        f"scale must be positive, got {scale!r}",
        function=function,
        name="scale",
    )

    def log_pairs():
        for previous, following in _day_pair_chunks(data, steps_per_day, function=function, name="series"):
            yield _to_log(previous, unit), _to_log(following, unit)

    pairs, feature_sum, target_sum = 0, 0.0, 0.0
    for features, targets in log_pairs():
        pairs += len(features)
        feature_sum, target_sum = feature_sum + features.sum(axis=0), target_sum + targets.sum(axis=0)
    feature_mean, target_mean = feature_sum / pairs, target_sum / pairs
    squared_deviation = sum(((features - feature_mean) ** 2).sum(axis=0) for features, _ in log_pairs())
    feature_std = np.sqrt(squared_deviation / pairs)
    feature_std = np.where(feature_std > 0, feature_std, 1.0)
    gram = pairs * penalty * np.eye(steps_per_day)
    moment = np.zeros((steps_per_day, steps_per_day))
    for features, targets in log_pairs():
        standardised = (features - feature_mean) / feature_std
        gram += standardised.T @ standardised
        moment += standardised.T @ (targets - target_mean)
    weights = np.linalg.solve(gram, moment)
    return DayAheadForecaster(unit, feature_mean, feature_std, target_mean, weights)


def forecast_mae(forecaster: DayAheadForecaster, series: ArrayLike, steps_per_day: int = 24) -> float:
    """Mean absolute error of ``forecaster`` over every day pair of ``series`` [S, T] (T whole days >= 2):
    ``mean over pairs p and steps s of |x_hat[p, s] - x_next[p, s]|``, in the units of ``series``."""
    data = _series(series, "forecast_mae", "series")
    return _mean_absolute_error(
        forecaster.predict, data, steps_per_day, function="forecast_mae", name="series"
    )


def _mean_absolute_error(
    forecast, series: np.ndarray, steps_per_day: int, *, function: str, name: str
) -> float:
    """``mean over pairs p and steps s of |forecast(x_prev)[p, s] - x_next[p, s]|`` over every day pair of
    ``series`` [S, T], summed a chunk of series at a time."""
    total, count = 0.0, 0
    for previous, following in _day_pair_chunks(series, steps_per_day, function=function, name=name):
        total += np.abs(forecast(previous) - following).sum()
        count += following.size
    return float(total / count)


def tstr_forecast_utility(
    real_train: ArrayLike,
    generated: ArrayLike,
    real_held_out: ArrayLike,
    steps_per_day: int = 24,
    *,
    penalty: float = DEFAULT_RIDGE_PENALTY,
) -> dict[str, float]:
    """Train on synthetic, test on real: how useful the generated weeks are for training a day-ahead forecaster.

    ``real_train`` [S, T1] (the real weeks a generator was fitted on), ``generated`` [M, T2] or [M, K, T2]
    (every sample is a series), ``real_held_out`` [R, T3] (real weeks neither saw); each T a whole number of
    >= 2 days; the lengths may differ. The same forecaster (:func:`fit_day_ahead`, log unit ``s`` =
    :func:`log_scale` of ``real_train`` for both, so the two fits differ only in their training data) is
    fitted on the generated series and on the real training series, and both forecast every day pair of the
    held-out series:

    * ``mae_generated``: held-out MAE of the forecaster trained on the generated series;
    * ``mae_real``: held-out MAE of the forecaster trained on the real training series (the baseline);
    * ``utility = mae_real / mae_generated``: 1 = generated data train a forecaster as well as real data,
      below 1 = worse (0.5: twice the error), above 1 = better; 1 when both errors are 0, inf when only
      ``mae_generated`` is;
    * ``mae_previous_day``: the held-out MAE of repeating the previous day (seasonal naive), for scale.

    Generated series equal to ``real_train`` give ``utility = 1`` exactly. MAEs are in the units given.
    """
    function = "tstr_forecast_utility"
    train = _series(real_train, function, "real_train")
    synthetic = _series(generated, function, "generated")
    held_out = _series(real_held_out, function, "real_held_out")
    _check_days(synthetic, steps_per_day, function=function, name="generated")
    _check_days(held_out, steps_per_day, function=function, name="real_held_out")
    unit = log_scale(train)

    def held_out_mae(forecast) -> float:
        return _mean_absolute_error(
            forecast, held_out, steps_per_day, function=function, name="real_held_out"
        )

    def trained_on(series: np.ndarray):
        return fit_day_ahead(series, steps_per_day, scale=unit, penalty=penalty).predict

    mae_generated, mae_real = held_out_mae(trained_on(synthetic)), held_out_mae(trained_on(train))
    if mae_generated > 0:
        utility = mae_real / mae_generated
    else:
        utility = 1.0 if mae_real == 0 else float("inf")
    return {
        "utility": float(utility),
        "mae_generated": mae_generated,
        "mae_real": mae_real,
        "mae_previous_day": held_out_mae(lambda previous: previous),
    }


def busy_hour_dimensioning(
    real: ArrayLike, generated: ArrayLike, quantile: float = BUSY_HOUR_QUANTILE
) -> dict[str, float | np.ndarray]:
    """Dimensioning each station from its generated samples: the P95 load and the busy-hour load.

    ``real`` [N, T]; ``generated`` [N, K, T] or [N, T] (K = 1), paired station by station. With
    ``q_i = quantile_t(real[i, t], quantile)`` and ``q_ik`` the same for sample k (numpy's linear quantile),
    the generator's dimensioning load is the mean over its samples, ``q_hat_i = mean_k q_ik``, and

        p95_error = sum_i |q_hat_i - q_i| / sum_i q_i

    ``real`` [N, W, T] (W periods of each station) dimensions every period against its station's samples:
    the sums run over all N W real series, series (i, w) against ``q_hat_i``, as if the samples were repeated
    over the periods; so does the coverage's mean below.

    (relative to the total real P95 load, so busy stations weigh more and an idle station does not divide by
    zero; 0 when every sample's quantile equals the real one). With ``b_i = max_t real[i, t]`` (the busy-hour
    load) and ``b_ik`` the same for each sample, for K >= 2

        busy_hour_coverage = mean_i 1[min_k b_ik <= b_i <= max_k b_ik]

    the share of stations whose real busy hour lies within the samples' range. If the real week were drawn
    like the samples, it would be ``(K - 1) / (K + 1)`` in expectation (0.6 with 4 samples, 0.9 with 19):
    returned as ``busy_hour_coverage_expected``. Per-station arrays: ``p95_real`` [N] (or [N, W]),
    ``p95_generated`` [N, K], ``busy_hour_real`` [N] (or [N, W]), ``busy_hour_generated`` [N, K]. The quantiles
    are taken a chunk of series at a time.
    """
    function = "busy_hour_dimensioning"
    real_array = float_array(
        real,
        function=function,
        name="real",
        ndims=(2, 3),
        layout="[N stations, T steps] or [N stations, W periods, T steps]",
    )
    generated_array = float_array(
        generated,
        function=function,
        name="generated",
        ndims=(2, 3),
        layout="[N stations, K samples, T steps]",
    )
    samples = paired_generated(real_array, generated_array, function=function)
    require(
        0.0 < quantile < 1.0,
        f"quantile must lie in (0, 1), got {quantile!r}",
        function=function,
        name="quantile",
    )

    def load_quantile(values: np.ndarray) -> np.ndarray:
        return map_series(lambda chunk: np.quantile(chunk, quantile, axis=-1), values)

    p95_real, p95_generated = load_quantile(real_array), load_quantile(samples)
    total = p95_real.sum()
    require(
        total > 0,
        f"the real {quantile:g} quantile loads sum to {total:g}; a relative error needs a positive real load",
        function=function,
        name="real",
    )
    busy_real, busy_generated = real_array.max(axis=-1), samples.max(axis=-1)
    n = len(real_array)
    # [N, W]: each station's real periods, each against the station's samples (W = 1 for [N, T])
    p95_by_station, busy_by_station = p95_real.reshape(n, -1), busy_real.reshape(n, -1)
    dimensioned = p95_generated.mean(axis=1)[:, np.newaxis]
    result: dict[str, float | np.ndarray] = {
        "p95_error": float(np.abs(dimensioned - p95_by_station).sum() / total),
        "p95_real": p95_real,
        "p95_generated": p95_generated,
        "busy_hour_real": busy_real,
        "busy_hour_generated": busy_generated,
    }
    k = samples.shape[1]
    if k >= 2:
        lowest, highest = busy_generated.min(axis=1)[:, np.newaxis], busy_generated.max(axis=1)[:, np.newaxis]
        inside = (lowest <= busy_by_station) & (busy_by_station <= highest)
        result["busy_hour_coverage"] = float(inside.mean())
        result["busy_hour_coverage_expected"] = (k - 1) / (k + 1)
    return result
