"""What each metric of the evaluation means, for ``metrics.json`` and the report's table: a short name,
what it measures in plain words, and which way is better. Keyed by the names :mod:`cellsynth.evaluate`
scores under (definitions in docs/metrics.md)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["METRICS", "MetricInfo"]


@dataclass(frozen=True)
class MetricInfo:
    """How a metric is presented: a short name, what it measures in plain words, and which way is better."""

    label: str
    description: str
    better: str
    has_units: bool = False  # True: reported in original units too (scale-free metrics are the same on both)


_LOWER = "lower is better"
_JSD = "lower is better (0 = same distribution, 1 = no overlap)"

METRICS: dict[str, MetricInfo] = {
    "mae": MetricInfo(
        "MAE",
        "Mean absolute error, hour by hour, between a generated week and the real week of the same station "
        "(each sample scored on its own, then averaged).",
        _LOWER,
        has_units=True,
    ),
    "rmse": MetricInfo(
        "RMSE",
        "Root mean squared error of one generated sample against the real week of its station; big misses "
        "weigh more than in the MAE. Averaged over samples.",
        _LOWER,
        has_units=True,
    ),
    "mae_of_mean": MetricInfo(
        "MAE of the sample mean",
        "MAE of the average of a station's generated samples: how close the generator's expected week is.",
        _LOWER,
        has_units=True,
    ),
    "rmse_of_mean": MetricInfo(
        "RMSE of the sample mean",
        "RMSE of the average of a station's generated samples.",
        _LOWER,
        has_units=True,
    ),
    "crps": MetricInfo(
        "CRPS",
        "Continuous ranked probability score of a station's generated samples for each real hour (fair "
        "estimator): the MAE minus half the samples' mean pairwise spread. A proper score: unlike the MAE of "
        "single samples, it does not reward drawing the typical week every time over drawing the real spread.",
        _LOWER,
        has_units=True,
    ),
    "coverage": MetricInfo(
        "Coverage of the 5-95 % band",
        "Share of real hours that fall inside the range spanned by the station's generated samples (5th to "
        "95th percentile at each hour).",
        "with K samples a calibrated generator scores about 0.9 (K - 1) / (K + 1) (0.54 with 4, 0.81 with 20); "
        "read the calibrated band coverage against 0.9",
    ),
    "band_coverage": MetricInfo(
        "Calibrated coverage of the 5-95 % band",
        "Share of real hours inside the station's 5-95 % band, counted from each real hour's rank among the "
        "generated samples so that samples drawn like the real data score 0.9 whatever their number.",
        "about 0.9 is best: lower = samples too narrow or biased, higher = too wide",
    ),
    "busy_hour_p95_error": MetricInfo(
        "Busy-hour P95 error",
        "Dimensioning error: each station's 95th-percentile hourly load from its generated samples (the mean "
        "of the samples' P95s) against the real one, total absolute difference relative to the total real P95 "
        "load. Capacity is planned on peaks, not means.",
        "lower is better (0 = the same P95 at every station)",
    ),
    "busy_hour_coverage": MetricInfo(
        "Busy-hour coverage",
        "Share of stations whose real busy-hour (maximum) load lies within the range of the busiest hours of "
        "the station's generated samples.",
        "samples drawn like the real data score about (K - 1) / (K + 1) with K samples (0.6 with 4, 0.9 with "
        "19); much lower = peaks too low, too high or too alike",
    ),
    "tstr_utility": MetricInfo(
        "Forecast utility (train on synthetic, test on real)",
        "A fixed day-ahead forecaster (ridge regression from one day's log load to the next day's) trained on "
        "the generated series, against the same forecaster trained on the real training series, both scored "
        "on the held-out real days: real-trained MAE / synthetic-trained MAE.",
        "higher is better: 1 = as useful as real training data, 0.5 = twice the forecast error",
    ),
    "tstr_mae_generated": MetricInfo(
        "Forecast MAE, trained on generated data",
        "Mean absolute error of the day-ahead forecaster trained on the generated series, on the held-out real "
        "days.",
        _LOWER,
        has_units=True,
    ),
    "tstr_mae_real": MetricInfo(
        "Forecast MAE, trained on real data",
        "The same forecaster trained on the real training series: the reference the utility divides by "
        "(it does not depend on the generator).",
        _LOWER,
        has_units=True,
    ),
    "value_jsd": MetricInfo(
        "JSD of values",
        "Jensen-Shannon divergence (base 2) between the histograms of all traffic values, real vs generated.",
        _JSD,
    ),
    "log_value_jsd": MetricInfo(
        "JSD of log values",
        "The same on a log scale, log(1 + x / median real value): tells zeros, quiet and busy hours apart "
        "where heavy tails crowd the plain histogram's first bin.",
        _JSD,
    ),
    "diff_jsd": MetricInfo(
        "JSD of first differences",
        "Jensen-Shannon divergence between the histograms of step-to-step changes: how jumpy the series are.",
        _JSD,
    ),
    "daily_periodic_rmse": MetricInfo(
        "Daily-cycle RMSE",
        "RMSE between the share of each series' fluctuation that repeats once a day (its spectrum at the "
        "daily frequency); station by station when paired, else between matched quantiles.",
        _LOWER,
    ),
    "acf_distance": MetricInfo(
        "Autocorrelation distance",
        "Mean absolute difference between the average autocorrelation curves (lags up to one week): how "
        "well the generated series remember their own past.",
        "lower is better (0 to 2)",
    ),
    "weekly_profile_error": MetricInfo(
        "Weekly profile error",
        "Total absolute difference between the average real week and the average generated week, "
        "relative to the average real week's total.",
        "lower is better (0 = same average week)",
    ),
    "peak_hour_jsd": MetricInfo(
        "Peak-hour JSD",
        "Jensen-Shannon divergence between the hours of the day at which the daily peaks happen.",
        _JSD,
    ),
    "value_jsd_published": MetricInfo(
        "JSD of values (published variant)",
        "The published MSTDiff code's variant: JS distance, each set binned on its own range, first "
        "sample only. For comparison with the papers' tables only, not with the other rows.",
        _LOWER,
    ),
    "diff_jsd_published": MetricInfo(
        "JSD of first differences (published variant)",
        "The published code's variant (differences across stations, not along time). Papers' tables only.",
        _LOWER,
    ),
    "daily_periodic_rmse_published": MetricInfo(
        "Daily-cycle RMSE (published variant)",
        "The published code's variant (mean included in the spectrum). Papers' tables only.",
        _LOWER,
    ),
    "distance": MetricInfo(
        "Jump distance JSD",
        "How far users move in one jump between stations (km, log scale), real vs generated.",
        _JSD,
    ),
    "radius": MetricInfo(
        "Radius of gyration JSD",
        "How far each user ranges around their own centre over the period (km, log scale).",
        _JSD,
    ),
    "distinct_loc": MetricInfo(
        "Distinct stations JSD",
        "How many different stations each user visits over the period.",
        _JSD,
    ),
    "duration": MetricInfo(
        "Stay duration JSD",
        "How long users stay at one station before moving (consecutive steps).",
        _JSD,
    ),
    "g_rank": MetricInfo(
        "Global rank JSD",
        "How all visits concentrate on the busiest 10 % of stations, rank by rank.",
        _JSD,
    ),
    "i_rank": MetricInfo(
        "Individual rank JSD",
        "How each user's time splits between their most visited station, their second, and so on.",
        _JSD,
    ),
}
