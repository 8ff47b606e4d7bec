"""Station traffic metrics: one channel at a time, real [N, T] against generated [N, K, T] or [M, T].

Callers pass values on the scale they want scored; the evaluation protocol scores the normalised scale
(each channel divided by its maximum over the *training* data) and reports the original scale too. Every
formula here is written out in docs/metrics.md; the docstrings repeat it.

Shapes: ``real`` is [N series, T steps], or [N stations, W periods, T steps] for several real weeks of each
station (the distribution metrics pool them as N W series; the paired metrics pair every one of them with the
station's generated samples). ``generated`` is either paired with it, [N, K samples, T] or [N, T] (K = 1;
series i was generated for the station of real series i), or, for the distribution metrics, any [M, T] /
[M, K, T] set of generated series.

Memory: every metric works a chunk of series at a time (:mod:`cellsynth.metrics._chunks`), so its temporaries
are bounded by the chunk; only the inputs and per-series results grow with the number of series.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from cellsynth.metrics._chunks import map_series, row_chunks, series_chunks, series_rows
from cellsynth.metrics._validation import float_array, paired_generated, require
from cellsynth.metrics.histogram import DEFAULT_BINS, chunked_reference_jsd, histogram_jsd, integer_bin_edges

#: Default steps per day (hourly data); MSTDiff's 30-minute data uses 48.
DEFAULT_STEPS_PER_DAY = 24

_REAL_LAYOUT = "[N series, T steps] or [N stations, W periods, T steps]"
_GENERATED_LAYOUT = "[M series, T steps] or [N series, K samples, T steps]"


def _real(values: ArrayLike, function: str) -> np.ndarray:
    return float_array(values, function=function, name="real", ndims=(2, 3), layout=_REAL_LAYOUT)


def _generated(values: ArrayLike, function: str) -> np.ndarray:
    return float_array(values, function=function, name="generated", ndims=(2, 3), layout=_GENERATED_LAYOUT)


def _paired_chunks(real: np.ndarray, samples: np.ndarray):
    """``(truth [n, T], draws [n, K, T])``, a chunk of whole stations at a time, for ``real`` [N, T] or
    [N, W, T] and ``samples`` [N, K, T]: real series ``n W + w`` is paired with station n's samples, which are
    repeated over the W periods within the chunk only."""
    periods = real.shape[1] if real.ndim == 3 else 1
    for rows in row_chunks(len(real), periods):
        draws = samples[rows]
        yield series_rows(real[rows]), draws if periods == 1 else np.repeat(draws, periods, axis=0)


def paired_errors(real: ArrayLike, generated: ArrayLike) -> dict[str, float]:
    """Point errors of paired generation: generated series i is scored against real series i.

    ``real`` [N, T] (or [N, W, T]: each of a station's W periods against its samples); ``generated``
    [N, K, T] (K samples per station) or [N, T] (K = 1). With ``g_k`` the k-th sample and ``mean_k g`` the
    sample mean, averages running over all real series n and steps t:

    * ``mae``  = mean over k of ``mean |g_k - real|`` (equal to the MAE over all samples);
    * ``rmse`` = mean over k of ``sqrt(mean (g_k - real)^2)`` (the RMSE of one sample, averaged over samples);
    * ``mae_of_mean``  = ``mean |mean_k g - real|``;
    * ``rmse_of_mean`` = ``sqrt(mean (mean_k g - real)^2)``;
    * ``crps`` = the mean over n, t of the samples' fair CRPS (:func:`ensemble_crps`), which equals ``mae``
      for one sample and is lower the better the samples' spread matches the error: MAE and RMSE of single
      samples are lowest for a generator that draws the median every time, so a generator drawing the
      honest spread of the data pays for it on them; the CRPS is a proper score and does not punish it.
    """
    function = "paired_errors"
    real_array = _real(real, function)
    samples = paired_generated(real_array, _generated(generated, function), function=function)
    sums = {"abs": 0.0, "squared_per_sample": 0.0, "abs_of_mean": 0.0, "squared_of_mean": 0.0, "crps": 0.0}
    for truth, draws in _paired_chunks(real_array, samples):
        error = draws - truth[:, np.newaxis, :]
        mean_error = draws.mean(axis=1) - truth
        sums["abs"] += np.abs(error).sum()
        sums["squared_per_sample"] += (error**2).sum(axis=(0, 2))  # [K]
        sums["abs_of_mean"] += np.abs(mean_error).sum()
        sums["squared_of_mean"] += (mean_error**2).sum()
        sums["crps"] += ensemble_crps(draws, truth, fair=True).sum()
    hours = real_array.size
    return {
        "mae": float(sums["abs"] / (hours * samples.shape[1])),
        "rmse": float(np.sqrt(sums["squared_per_sample"] / hours).mean()),
        "mae_of_mean": float(sums["abs_of_mean"] / hours),
        "rmse_of_mean": float(np.sqrt(sums["squared_of_mean"] / hours)),
        "crps": float(sums["crps"] / hours),
    }


def ensemble_crps(draws: ArrayLike, truth: ArrayLike, *, fair: bool = False) -> np.ndarray:
    r"""CRPS of an ensemble for each observation: ``draws`` ``[N, K, ...]`` (``K`` samples on axis 1),
    ``truth`` ``[N, ...]`` -> ``[N, ...]``.

    .. math::  \mathrm{CRPS}(X_{1..K}, y) = \frac1K \sum_j |X_j - y|
               - \frac{1}{2 K^2} \sum_{j, l} |X_j - X_l|

    the continuous ranked probability score of the ensemble's empirical distribution (Gneiting and Raftery
    2007), 0 only for a point mass on the truth. ``fair=True`` divides the spread term by ``2 K (K - 1)``
    instead (Ferro 2014): the unbiased estimate of the CRPS of the distribution the samples come from, so a
    generator is not scored by how many samples it was asked for (with ``K = 1`` there is no pair and the
    score is the absolute error). The double sum is ``2 sum_j (2j - K - 1) X_(j)`` over the sorted samples.
    """
    x, y = np.asarray(draws, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    k = x.shape[1]
    shape = (1, k) + (1,) * (x.ndim - 2)
    weights = (2.0 * np.arange(1, k + 1) - k - 1).reshape(shape)
    pair_sum = 2.0 * (weights * np.sort(x, axis=1)).sum(1)
    pairs = k * (k - 1) if fair else k**2
    spread = pair_sum / (2 * pairs) if pairs else 0.0
    return np.abs(x - y[:, np.newaxis]).mean(1) - spread


def value_jsd(
    real: ArrayLike, generated: ArrayLike, bins: int = DEFAULT_BINS, *, compat: bool = False
) -> float:
    """JSD (base 2) between the distributions of all values of ``real`` and of ``generated``.

    Histograms of the flattened values over ``bins`` equal-width bins spanning the real values' min..max,
    plus one bin below and one above for generated values outside it (``reference=True`` of
    :func:`cellsynth.metrics.histogram_jsd`): every model is scored on the same bins. Result in [0, 1].

    ``compat=True`` reproduces the published MSTDiff code: negative generated values are set to 0
    first, each set is binned on its own range, and the JS *distance* sqrt(JSD) is returned.
    """
    function = "value_jsd"
    real_array = _real(real, function)
    generated_array = _generated(generated, function)
    if compat:
        generated_array = np.clip(generated_array, 0.0, None)
        return histogram_jsd(real_array, generated_array, bins, compat=True)
    return _reference_jsd(real_array, generated_array, bins, lambda chunk: chunk)


def _reference_jsd(
    real: np.ndarray, generated: np.ndarray, bins: int, transform: Callable[[np.ndarray], np.ndarray]
) -> float:
    """``histogram_jsd(transform(real), transform(generated), bins, reference=True)`` for a ``transform``
    that works series by series, computed a chunk of series at a time (:func:`chunked_reference_jsd`)."""
    return chunked_reference_jsd(
        lambda: map(transform, series_chunks(real)), map(transform, series_chunks(generated)), bins
    )


def log_value_jsd(real: ArrayLike, generated: ArrayLike, bins: int = DEFAULT_BINS) -> float:
    """JSD (base 2) between the distributions of ``log1p(x / s)`` of all values, real vs generated.

    ``s`` is the median of the strictly positive *real* values (1 when there are none), so the metric does
    not depend on the unit: scaling both sets by ``c > 0`` leaves it unchanged. Bins as in
    :func:`value_jsd`, over the transformed values. Why it exists beside ``value_jsd``: heavy-tailed
    traffic (users' bursts, a city's busiest cells) puts almost every value into the first of ``value_jsd``'s
    equal-width bins, which then cannot tell a quiet step from an idle one; on the log scale they land in
    different bins down to about a tenth of ``s`` (exact zeros and values far below ``s`` still share the
    first bin). Values must be non-negative. Result in [0, 1].
    """
    function = "log_value_jsd"
    real_array = _real(real, function)
    generated_array = _generated(generated, function)
    for name, array in (("real", real_array), ("generated", generated_array)):
        smallest = array.min()
        if smallest < 0:  # counting needs a temporary the size of the array: only to say what is wrong
            require(
                False,
                f"traffic must be non-negative for the log scale; {int((array < 0).sum())} value(s) below 0, "
                f"the smallest {smallest:g}",
                function=function,
                name=name,
            )
    # The median needs the positive real values themselves: one copy of them, partitioned in place.
    positive = real_array[real_array > 0]
    scale = float(np.median(positive, overwrite_input=True)) if positive.size else 1.0
    del positive
    return _reference_jsd(real_array, generated_array, bins, lambda chunk: np.log1p(chunk / scale))


def diff_jsd(
    real: ArrayLike, generated: ArrayLike, bins: int = DEFAULT_BINS, *, compat: bool = False
) -> float:
    """JSD (base 2) between the distributions of first differences along time, ``x[..., t+1] - x[..., t]``.

    Differences are taken within each series (axis -1, T - 1 per series), pooled per set and histogrammed
    over the real differences' ``bins`` equal-width bins and one below and one above them, as in
    :func:`value_jsd`. Result in [0, 1].

    ``compat=True`` reproduces the published MSTDiff code instead: negative generated values set to 0, the
    differences taken *across series* (axis 0: ``x[n+1, t] - x[n, t]``, a difference between two stations
    that carries no temporal meaning), each set binned on its own range, and the JS distance sqrt(JSD).
    """
    function = "diff_jsd"
    real_array = series_rows(_real(real, function))
    generated_array = _generated(generated, function)
    axis = 0 if compat else -1
    for name, array in (("real", real_array), ("generated", generated_array)):
        require(
            array.shape[axis] >= 2,
            f"first differences along axis {axis} need at least 2 entries there, got shape {array.shape}",
            function=function,
            name=name,
        )
    if compat:
        generated_array = np.clip(generated_array, 0.0, None)
        return histogram_jsd(np.diff(real_array, axis=0), np.diff(generated_array, axis=0), bins, compat=True)
    return _reference_jsd(real_array, generated_array, bins, lambda chunk: np.diff(chunk, axis=-1))


def daily_share(
    series: ArrayLike, steps_per_day: int = DEFAULT_STEPS_PER_DAY, *, compat: bool = False
) -> np.ndarray:
    """Share of each series' spectrum at the daily frequency, shape ``series.shape[:-1]``.

    With ``X = rfft(x)`` over the T steps of a series and ``d = T / steps_per_day`` (the number of days, the
    index of the once-a-day frequency; T must be a whole number of days)::

        share = |X[d]| / sum_{f=1}^{floor(T/2)} |X[f]|

    The mean (f = 0) is left out so the share measures the daily cycle's part of the *fluctuation*, whatever
    the level. A constant series (all |X[f]| = 0 for f > 0) has share 0.

    ``compat=True``: the published MSTDiff code's share, ``|X[d]| / sum_{f=0}^{floor(T/2)} |X[f]|`` (the
    mean included), 0 where that sum is 0.
    """
    function = "daily_share"
    values = float_array(series, function=function, name="series", ndims=range(1, 8), layout="[..., T steps]")
    day_index = _day_index(values.shape[-1], steps_per_day, function)
    return map_series(lambda chunk: _daily_share(chunk, day_index, compat), values)


def _daily_share(values: np.ndarray, day_index: int, compat: bool) -> np.ndarray:
    spectrum = np.abs(np.fft.rfft(values, axis=-1))
    daily = spectrum[..., day_index]
    if compat:
        total = spectrum.sum(axis=-1)
        return np.divide(daily, total, out=np.zeros_like(daily), where=total > 0)
    # A constant series has no fluctuation; its FFT leaves ~1e-17 rounding noise at f > 0, whose ratio
    # would be arbitrary, so it is decided on the values themselves.
    fluctuates = np.ptp(values, axis=-1) > 0
    total = spectrum[..., 1:].sum(axis=-1)
    return np.divide(daily, total, out=np.zeros_like(daily), where=fluctuates & (total > 0))


def daily_periodic_rmse(
    real: ArrayLike,
    generated: ArrayLike,
    steps_per_day: int = DEFAULT_STEPS_PER_DAY,
    *,
    paired: bool = True,
    compat: bool = False,
) -> float:
    """RMSE between the daily-frequency shares (:func:`daily_share`) of real and generated series.

    * ``paired=True``: ``generated`` is [N, K, T] or [N, T] and sample k of station i is compared with real
      station i: ``mean over k of sqrt(mean over i (s_gen[i, k] - s_real[i])^2)`` (with ``real`` [N, W, T],
      the mean runs over every period w of every station i, each against ``s_gen[i, k]``).
    * ``paired=False``: the two sets are compared at matched quantiles: with Q = max(N, M) series-level
      shares per set (generated samples pooled) and ``p_j = (j + 1/2) / Q``, ``j = 0..Q-1``,
      ``sqrt(mean_j (quantile_gen(p_j) - quantile_real(p_j))^2)`` using the "hazen" quantile (which, for
      N = M, is exactly comparing the sorted shares).

    ``compat=True`` reproduces the published MSTDiff code: negative generated values set to 0 first, the
    mean included in the spectrum total (:func:`daily_share` compat), and, as that code does, the generated
    shares left unnormalised (plain ``|X[d]|``) if any generated series has an all-zero spectrum.
    """
    function = "daily_periodic_rmse"
    real_array = _real(real, function)
    generated_array = _generated(generated, function)
    if paired:
        generated_array = paired_generated(real_array, generated_array, function=function)
    if compat:
        generated_array = np.clip(generated_array, 0.0, None)
    real_share = daily_share(real_array, steps_per_day, compat=compat)
    generated_share = daily_share(generated_array, steps_per_day, compat=compat)
    if compat:
        spectrum = np.abs(np.fft.rfft(generated_array, axis=-1))
        if not np.all(spectrum.sum(axis=-1) > 0):
            generated_share = spectrum[..., _day_index(generated_array.shape[-1], steps_per_day, function)]
    if paired:
        by_station = real_share.reshape(len(real_share), -1, 1)  # [N, W periods, 1]
        squared = (generated_share[:, np.newaxis, :] - by_station) ** 2  # [N, W, K]
        return float(np.sqrt(squared.mean(axis=(0, 1))).mean())
    return _quantile_matched_rmse(real_share.ravel(), generated_share.ravel())


def _quantile_matched_rmse(real_values: np.ndarray, generated_values: np.ndarray) -> float:
    count = max(real_values.size, generated_values.size)
    probabilities = (np.arange(count) + 0.5) / count
    real_quantiles = np.quantile(real_values, probabilities, method="hazen")
    generated_quantiles = np.quantile(generated_values, probabilities, method="hazen")
    return float(np.sqrt(np.mean((generated_quantiles - real_quantiles) ** 2)))


def autocorrelation(series: ArrayLike, max_lag: int) -> np.ndarray:
    """Sample autocorrelation of each series for lags 1..max_lag, shape ``series.shape[:-1] + (max_lag,)``.

    With ``y = x - mean(x)`` over the T steps of a series::

        acf(l) = sum_{t=0}^{T-1-l} y[t] y[t+l] / sum_{t=0}^{T-1} y[t]^2

    (the standard biased estimator; |acf| <= 1). A constant series has acf = 0 at every lag.
    """
    function = "autocorrelation"
    values = float_array(series, function=function, name="series", ndims=range(1, 8), layout="[..., T steps]")
    _check_max_lag(max_lag, values.shape[-1], function)
    return map_series(lambda chunk: _autocorrelation(chunk, max_lag), values)


def _autocorrelation(values: np.ndarray, max_lag: int) -> np.ndarray:
    steps = values.shape[-1]
    centred = values - values.mean(axis=-1, keepdims=True)
    # Zero-padding to >= 2T turns the FFT's circular correlation into the ordinary (linear) one.
    size = 1 << int(np.ceil(np.log2(2 * steps)))
    spectrum = np.fft.rfft(centred, n=size, axis=-1)
    covariance = np.fft.irfft(spectrum * np.conj(spectrum), n=size, axis=-1)[..., : max_lag + 1]
    variance = covariance[..., :1]
    # A constant series is decided on its values: x - mean(x) can be a tiny nonzero constant after
    # rounding, which would give a spurious acf(l) = 1 - l / T.
    fluctuates = np.ptp(values, axis=-1, keepdims=True) > 0
    return np.divide(
        covariance[..., 1:],
        variance,
        out=np.zeros(covariance[..., 1:].shape),
        where=fluctuates & (variance > 0),
    )


def acf_distance(
    real: ArrayLike,
    generated: ArrayLike,
    max_lag: int | None = None,
    steps_per_day: int = DEFAULT_STEPS_PER_DAY,
) -> float:
    """Mean absolute difference between the mean autocorrelation functions of the two sets.

    ``acf_real`` and ``acf_gen`` are the :func:`autocorrelation` averaged over all series (and samples) of
    each set; ``max_lag`` defaults to one week, ``min(7 * steps_per_day, T - 1)`` with T the shorter of the
    two sets' lengths::

        acf_distance = (1 / max_lag) sum_{l=1}^{max_lag} |acf_gen(l) - acf_real(l)|      (in [0, 2])
    """
    function = "acf_distance"
    real_array = _real(real, function)
    generated_array = _generated(generated, function)
    steps = min(real_array.shape[-1], generated_array.shape[-1])
    if max_lag is None:
        _check_steps_per_day(steps_per_day, function)
        max_lag = min(7 * steps_per_day, steps - 1)
    _check_max_lag(max_lag, steps, function)
    real_acf, generated_acf = (_mean_autocorrelation(a, max_lag) for a in (real_array, generated_array))
    return float(np.abs(generated_acf - real_acf).mean())


def _mean_autocorrelation(values: np.ndarray, max_lag: int) -> np.ndarray:
    """:func:`autocorrelation` averaged over all series of ``values`` [..., T], a chunk of series at a time."""
    total = sum(_autocorrelation(chunk, max_lag).sum(axis=0) for chunk in series_chunks(values))
    return total / (values.size // values.shape[-1])


def weekly_profile(series: ArrayLike, steps_per_day: int = DEFAULT_STEPS_PER_DAY) -> np.ndarray:
    """Mean week of a set of series, shape [7 * steps_per_day].

    T must be a whole number W of weeks; with ``S = 7 * steps_per_day``,
    ``profile[s] = mean over series n and weeks w of x[n, w * S + s]``.
    """
    function = "weekly_profile"
    values = float_array(series, function=function, name="series", ndims=range(1, 8), layout="[..., T steps]")
    _check_steps_per_day(steps_per_day, function)
    week = 7 * steps_per_day
    require(
        values.shape[-1] % week == 0,
        f"T = {values.shape[-1]} steps is not a whole number of weeks of {week} steps "
        f"(steps_per_day = {steps_per_day})",
        function=function,
        name="series",
    )
    return values.reshape(-1, week).mean(axis=0)


def weekly_profile_error(
    real: ArrayLike, generated: ArrayLike, steps_per_day: int = DEFAULT_STEPS_PER_DAY
) -> float:
    """Normalised L1 error between the mean weeks of the two sets (:func:`weekly_profile`)::

        weekly_profile_error = sum_s |profile_gen[s] - profile_real[s]| / sum_s |profile_real[s]|

    0 for identical mean weeks; 1 when the generated mean week is all zeros.
    """
    function = "weekly_profile_error"
    real_profile = weekly_profile(_real(real, function), steps_per_day)
    generated_profile = weekly_profile(_generated(generated, function), steps_per_day)
    scale = np.abs(real_profile).sum()
    require(
        scale > 0,
        "the mean real week is all zeros, so a relative error is undefined",
        function=function,
        name="real",
    )
    return float(np.abs(generated_profile - real_profile).sum() / scale)


def peak_hours(series: ArrayLike, steps_per_day: int = DEFAULT_STEPS_PER_DAY) -> np.ndarray:
    """Hour of day (0..23) of the maximum of each series-day, 1-D over all non-flat days.

    T must be a whole number of days. Each series is cut into days of ``steps_per_day`` steps; for each day
    ``hour = floor(24 * argmax_s x[day, s] / steps_per_day)`` (ties go to the earliest step). Flat days
    (maximum = minimum) have no peak and are left out; their number is ``total days - len(result)``.
    """
    function = "peak_hours"
    values = float_array(series, function=function, name="series", ndims=range(1, 8), layout="[..., T steps]")
    _check_whole_days(values.shape[-1], steps_per_day, function, "series")
    return map_series(lambda chunk: _peak_hours(chunk, steps_per_day), values)


def _peak_hours(values: np.ndarray, steps_per_day: int) -> np.ndarray:
    days = values.reshape(-1, steps_per_day)
    has_peak = days.max(axis=1) > days.min(axis=1)
    return (24 * days[has_peak].argmax(axis=1)) // steps_per_day


def peak_hour_jsd(real: ArrayLike, generated: ArrayLike, steps_per_day: int = DEFAULT_STEPS_PER_DAY) -> float:
    """JSD (base 2) between the hour-of-day distributions of daily peaks (:func:`peak_hours`).

    24 bins, one per hour 0..23. Raises if either set has no day with a peak (all days flat).
    """
    function = "peak_hour_jsd"
    real_hours = peak_hours(_real(real, function), steps_per_day)
    generated_hours = peak_hours(_generated(generated, function), steps_per_day)
    for name, hours in (("real", real_hours), ("generated", generated_hours)):
        require(
            hours.size > 0,
            "every day is flat (max = min), so there is no peak hour",
            function=function,
            name=name,
        )
    return histogram_jsd(real_hours, generated_hours, integer_bin_edges(0, 23))


def coverage(real: ArrayLike, generated: ArrayLike, lower: float = 0.05, upper: float = 0.95) -> float:
    """Share of real values inside the generated per-step band across samples.

    ``real`` [N, T] (or [N, W, T], each period against its station's band); ``generated`` [N, K, T] with
    K >= 2 samples per station. For each station i and step t the band is
    ``[quantile_k(g[i, k, t], lower), quantile_k(g[i, k, t], upper)]`` (numpy's default linear quantile) and
    ``coverage = mean over i, t of 1[band_lo <= real[i, t] <= band_hi]``.

    A band estimated from K samples is narrower than the true one: for a calibrated generator (the real value
    drawn like the samples) the expected score is about ``(upper - lower) (K - 1) / (K + 1)``, 0.54 with
    K = 4 and 0.81 with K = 20 for the 5-95 % band, reaching ``upper - lower`` only as K grows. To read it
    against 0.9 at any K use :func:`band_coverage`.
    """
    function = "coverage"
    real_array = _real(real, function)
    generated_array = float_array(
        generated, function=function, name="generated", ndims=(3,), layout="[N series, K samples, T steps]"
    )
    samples = paired_generated(real_array, generated_array, function=function)
    require(
        samples.shape[1] >= 2,
        f"a band across samples needs K >= 2 samples per station, got K = {samples.shape[1]}",
        function=function,
        name="generated",
    )
    require(
        0.0 <= lower < upper <= 1.0,
        f"need 0 <= lower < upper <= 1, got lower={lower}, upper={upper}",
        function=function,
        name="lower, upper",
    )
    inside = 0
    for truth, draws in _paired_chunks(real_array, samples):
        band_low, band_high = np.quantile(draws, [lower, upper], axis=1)
        inside += np.count_nonzero((band_low <= truth) & (truth <= band_high))
    return inside / real_array.size


def band_coverage(real: ArrayLike, generated: ArrayLike, lower: float = 0.05, upper: float = 0.95) -> float:
    """Share of real values inside the per-station, per-step ``lower``-``upper`` band of the generated
    samples, counted so that a calibrated generator scores ``upper - lower`` (0.9) for any K >= 2.

    ``real`` [N, T] (or [N, W, T], each period against its station's samples); ``generated`` [N, K, T]. For
    station i and step t, with samples ``g_1..g_K`` and real value ``y``, let ``r_lo = #{k: g_k < y}`` and ``r_hi = #{k: g_k <= y}``. If ``y`` were drawn like the
    samples (exchangeable with them), its probability integral transform would be uniform on
    ``[a, b] = [r_lo / (K + 1), (r_hi + 1) / (K + 1)]`` (the non-randomised PIT of Czado, Gneiting and Held,
    2009; ties widen the interval), so the hour counts by the share of that interval inside the band:

        band_coverage = mean over i, t of |[a, b] & [lower, upper]| / (b - a)

    Its expectation is exactly ``upper - lower`` for a calibrated generator: lower means samples too narrow
    (or biased), higher too wide. Unlike :func:`coverage`, which reads the band off the K samples' own
    quantiles and so scores a calibrated generator ``(upper - lower) (K - 1) / (K + 1)``, it needs no
    correction for K. With K = 19 and the 5-95 % band it is exactly the share of real values between the
    second smallest and the second largest sample. The PIT is resolved in steps of ``1 / (K + 1)``: use
    K >= 19 for the 5-95 % band to tell its edges apart (20 samples per station).
    """
    function = "band_coverage"
    real_array = _real(real, function)
    generated_array = float_array(
        generated, function=function, name="generated", ndims=(3,), layout="[N series, K samples, T steps]"
    )
    samples = paired_generated(real_array, generated_array, function=function)
    require(
        samples.shape[1] >= 2,
        f"a band across samples needs K >= 2 samples per station (with K = 1 every hour scores "
        f"upper - lower whatever the samples), got K = {samples.shape[1]}",
        function=function,
        name="generated",
    )
    require(
        0.0 <= lower < upper <= 1.0,
        f"need 0 <= lower < upper <= 1, got lower={lower}, upper={upper}",
        function=function,
        name="lower, upper",
    )
    k, inside = samples.shape[1], 0.0
    for real_chunk, draws in _paired_chunks(real_array, samples):
        truth = real_chunk[:, np.newaxis, :]
        below, at_or_below = (draws < truth).sum(axis=1), (draws <= truth).sum(axis=1)
        pit_low, pit_high = below / (k + 1), (at_or_below + 1) / (k + 1)
        share = np.clip(np.minimum(pit_high, upper) - np.maximum(pit_low, lower), 0.0, None)
        inside += (share / (pit_high - pit_low)).sum()
    return float(inside / real_array.size)


def traffic_metrics(
    real: ArrayLike,
    generated: ArrayLike,
    steps_per_day: int = DEFAULT_STEPS_PER_DAY,
    *,
    paired: bool = True,
    bins: int = DEFAULT_BINS,
) -> dict[str, float]:
    """Every traffic metric of one channel, as a dict (keys as the function names below).

    Always: ``value_jsd``, ``log_value_jsd``, ``diff_jsd``, ``daily_periodic_rmse``, ``acf_distance`` and, when T is a whole
    number of days / weeks, ``peak_hour_jsd`` / ``weekly_profile_error``. When ``paired``: also the
    :func:`paired_errors` keys (``mae``, ``rmse``, ``mae_of_mean``, ``rmse_of_mean``, ``crps``) and, with K >= 2
    samples, ``coverage`` and ``band_coverage``.
    """
    function = "traffic_metrics"
    real_array = _real(real, function)
    generated_array = _generated(generated, function)
    results: dict[str, float] = {}
    if paired:
        results.update(paired_errors(real_array, generated_array))
        if generated_array.ndim == 3 and generated_array.shape[1] >= 2:
            results["coverage"] = coverage(real_array, generated_array)
            results["band_coverage"] = band_coverage(real_array, generated_array)
    results["value_jsd"] = value_jsd(real_array, generated_array, bins)
    results["log_value_jsd"] = log_value_jsd(real_array, generated_array, bins)
    results["diff_jsd"] = diff_jsd(real_array, generated_array, bins)
    results["daily_periodic_rmse"] = daily_periodic_rmse(
        real_array, generated_array, steps_per_day, paired=paired
    )
    results["acf_distance"] = acf_distance(real_array, generated_array, steps_per_day=steps_per_day)
    steps = real_array.shape[-1]
    if steps % (7 * steps_per_day) == 0 and generated_array.shape[-1] % (7 * steps_per_day) == 0:
        results["weekly_profile_error"] = weekly_profile_error(real_array, generated_array, steps_per_day)
    results["peak_hour_jsd"] = peak_hour_jsd(real_array, generated_array, steps_per_day)
    return results


def _check_steps_per_day(steps_per_day: int, function: str) -> None:
    require(
        isinstance(steps_per_day, int | np.integer)
        and not isinstance(steps_per_day, bool)
        and steps_per_day >= 2,
        f"steps_per_day must be an integer >= 2, got {steps_per_day!r}",
        function=function,
        name="steps_per_day",
    )


def _check_whole_days(steps: int, steps_per_day: int, function: str, name: str) -> None:
    _check_steps_per_day(steps_per_day, function)
    require(
        steps % steps_per_day == 0,
        f"T = {steps} steps is not a whole number of days of {steps_per_day} steps",
        function=function,
        name=name,
    )


def _day_index(steps: int, steps_per_day: int, function: str) -> int:
    """Index of the once-a-day frequency in ``rfft`` of a T-step series: the number of days T / steps_per_day."""
    _check_whole_days(steps, steps_per_day, function, "series")
    return steps // steps_per_day


def _check_max_lag(max_lag: int, steps: int, function: str) -> None:
    require(
        isinstance(max_lag, int | np.integer) and not isinstance(max_lag, bool) and 1 <= max_lag <= steps - 1,
        f"must be an integer in [1, T - 1] = [1, {steps - 1}] (T = {steps} steps), got {max_lag!r}",
        function=function,
        name="max_lag",
    )
