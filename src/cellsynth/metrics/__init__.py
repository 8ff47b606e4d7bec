"""Metrics: pure functions on numpy arrays for traffic, mobility and memorisation: numpy and scipy only, with
the Earth's radius and the haversine formula from :mod:`cellsynth.geo` (which imports nothing of cellsynth's).

Every formula, bin choice and logarithm base is written out in docs/metrics.md. Every JSD goes through
:func:`histogram_jsd` / :func:`js_divergence` (base 2, in [0, 1]; the traffic JSDs on bins of the real range); ``compat=True`` on the
traffic JSDs and the daily RMSE reproduces the published MSTDiff code's variants for comparison
with the papers' tables. Bad input raises :class:`cellsynth.errors.DataError`.
"""

from cellsynth.geo import EARTH_RADIUS_KM
from cellsynth.metrics.catalog import METRICS, MetricInfo
from cellsynth.metrics.histogram import (
    DEFAULT_BINS,
    histogram_jsd,
    integer_bin_edges,
    js_divergence,
    reference_bin_edges,
    shared_bin_edges,
)
from cellsynth.metrics.mobility import (
    DEFAULT_TOP_SHARE,
    DISTANCE_FLOOR_KM,
    distinct_location_share,
    global_rank_frequency,
    haversine_km,
    individual_rank_frequency,
    jump_distances,
    one_step_stays,
    radius_of_gyration,
    stay_durations,
    time_at_top_location,
    trajectory_jsds,
)
from cellsynth.metrics.privacy import (
    DEFAULT_MAX_NEAR_COPY_SHARE,
    DEFAULT_NEAR_COPY_QUANTILE,
    membership_inference_auc,
    memorisation_check,
    nearest_neighbour_distances,
)
from cellsynth.metrics.traffic import (
    DEFAULT_STEPS_PER_DAY,
    acf_distance,
    autocorrelation,
    band_coverage,
    coverage,
    daily_periodic_rmse,
    daily_share,
    diff_jsd,
    ensemble_crps,
    log_value_jsd,
    paired_errors,
    peak_hour_jsd,
    peak_hours,
    traffic_metrics,
    value_jsd,
    weekly_profile,
    weekly_profile_error,
)
from cellsynth.metrics.utility import (
    BUSY_HOUR_QUANTILE,
    DEFAULT_RIDGE_PENALTY,
    DayAheadForecaster,
    busy_hour_dimensioning,
    fit_day_ahead,
    forecast_mae,
    tstr_forecast_utility,
)

__all__ = [
    "BUSY_HOUR_QUANTILE",
    "DEFAULT_BINS",
    "DEFAULT_MAX_NEAR_COPY_SHARE",
    "DEFAULT_NEAR_COPY_QUANTILE",
    "DEFAULT_RIDGE_PENALTY",
    "DEFAULT_STEPS_PER_DAY",
    "DEFAULT_TOP_SHARE",
    "DISTANCE_FLOOR_KM",
    "EARTH_RADIUS_KM",
    "METRICS",
    "DayAheadForecaster",
    "MetricInfo",
    "acf_distance",
    "autocorrelation",
    "band_coverage",
    "busy_hour_dimensioning",
    "coverage",
    "daily_periodic_rmse",
    "daily_share",
    "diff_jsd",
    "distinct_location_share",
    "ensemble_crps",
    "fit_day_ahead",
    "forecast_mae",
    "global_rank_frequency",
    "haversine_km",
    "histogram_jsd",
    "individual_rank_frequency",
    "integer_bin_edges",
    "js_divergence",
    "jump_distances",
    "log_value_jsd",
    "membership_inference_auc",
    "memorisation_check",
    "nearest_neighbour_distances",
    "one_step_stays",
    "paired_errors",
    "peak_hour_jsd",
    "peak_hours",
    "radius_of_gyration",
    "reference_bin_edges",
    "shared_bin_edges",
    "stay_durations",
    "time_at_top_location",
    "traffic_metrics",
    "trajectory_jsds",
    "tstr_forecast_utility",
    "value_jsd",
    "weekly_profile",
    "weekly_profile_error",
]
