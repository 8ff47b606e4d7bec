"""Descriptive statistics: analytic cases, edge cases, and the real Beijing week."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cellsynth.data.model import Stations, StationTraffic, UserMobility
from cellsynth.data.summary import (
    autocorrelation,
    describe,
    haversine_km,
    load_distribution,
    top_share,
    traffic_statistics,
    trajectory_statistics,
)
from tests.conftest import shared_file

MONDAY = pd.Timestamp("2026-01-05", tz="Europe/Rome")


def traffic(values, start=MONDAY, step="1h", repaired=None) -> StationTraffic:
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 2:
        values = values[:, :, None]
    ids = np.array([f"s{i}" for i in range(values.shape[0])], dtype=object)
    channels = tuple(f"c{j}" for j in range(values.shape[2]))
    return StationTraffic(values, start, pd.Timedelta(step), channels, Stations(ids=ids), repaired=repaired)


def test_sine_profile_peak_trough():
    hours = np.arange(2 * 168)
    x = 2.0 + np.sin(2 * np.pi * hours / 24)  # max 3 at hour 6, min 1 at hour 18
    s = traffic_statistics(traffic(np.tile(x, (3, 1))))
    assert s["peak_trough_ratio"] == pytest.approx(3.0, rel=1e-6)
    assert (s["peak_hour"], s["trough_hour"]) == (6, 18)
    assert s["station_peak_trough"]["median"] == pytest.approx(3.0, rel=1e-6)
    assert s["acf_lag24"] == pytest.approx(1.0, abs=1e-6)
    assert s["acf_lag168"] == pytest.approx(1.0, abs=1e-6)
    assert s["weekday_weekend_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert s["top10_share"] == pytest.approx(1 / 3)


def test_profile_uses_local_time():
    """The same series starting at midnight UTC peaks an hour later in Rome's local time."""
    x = 2.0 + np.sin(2 * np.pi * np.arange(168) / 24)
    s = traffic_statistics(
        traffic(x[None], start=pd.Timestamp("2026-01-05", tz="UTC").tz_convert("Europe/Rome"))
    )
    assert s["peak_hour"] == 7


def test_constant_series():
    s = traffic_statistics(traffic(np.full((4, 2 * 168), 5.0)))
    assert s["peak_trough_ratio"] == pytest.approx(1.0)
    assert s["acf_lag24"] is None and s["acf_lag168"] is None
    assert s["station_acf_lag24"] is None
    assert s["station_load"]["cv"] == pytest.approx(0.0, abs=1e-9)
    assert s["station_load"]["gini"] == pytest.approx(0.0, abs=1e-9)
    json.dumps(s)  # JSON-ready


def test_zero_hour_gives_infinite_station_ratio_not_a_crash():
    x = np.ones((1, 168))
    x[0, 3::24] = 0.0
    s = traffic_statistics(traffic(x))
    assert s["peak_trough_ratio"] is None  # max / 0
    assert s["station_peak_trough"]["median"] is None


def test_weekday_weekend_ratio_and_short_series():
    days = np.repeat(np.arange(7), 24)
    x = np.where(days >= 5, 1.0, 2.0)  # Saturday and Sunday at half the weekday level
    s = traffic_statistics(traffic(np.tile(x, (2, 1))))
    assert s["weekday_weekend_ratio"] == pytest.approx(2.0)
    assert s["station_weekday_weekend"]["median"] == pytest.approx(2.0)
    assert s["acf_lag168"] is None  # one week only
    # Three weekdays only: no weekend, no ratio.
    s = traffic_statistics(traffic(np.ones((2, 72))))
    assert s["weekday_weekend_ratio"] is None


def test_needs_a_channel_when_several():
    data = traffic(np.ones((2, 48, 2)))
    with pytest.raises(ValueError, match="give a channel"):
        traffic_statistics(data)
    assert traffic_statistics(data, "c1")["channel"] == "c1"


def test_autocorrelation_edge_cases():
    t = np.arange(200)
    r = autocorrelation(np.stack([np.sin(2 * np.pi * t / 24), np.ones(200)]), 12)
    assert r[0] == pytest.approx(-1.0, abs=1e-6) and np.isnan(r[1])
    with pytest.raises(ValueError):
        autocorrelation(np.ones((1, 10)), 10)


def test_top_share_and_distribution():
    loads = np.array([1.0] * 9 + [91.0])
    assert top_share(loads) == pytest.approx(0.91)
    d = load_distribution(loads)
    assert d["median_over_median"] == 1.0 and d["q99_over_median"] > 50
    rng = np.random.default_rng(0)
    d = load_distribution(rng.lognormal(0, 1.2, 20_000))
    assert d["log_std"] == pytest.approx(1.2, abs=0.03)


def test_haversine():
    assert haversine_km(45.0, 9.0, 46.0, 9.0) == pytest.approx(111.19, abs=0.05)
    assert haversine_km(0.0, 0.0, 0.0, 0.0) == 0.0


def test_trajectory_statistics_by_hand():
    lat = np.array([45.0, 45.0 + 1 / 111.19, 45.0])
    lon = np.array([9.0, 9.0, 9.0])
    # One user-day of 4 steps: A A B A -> jumps of 1 km, 3 stays (2, 1, 1 steps), 2 distinct places.
    s = trajectory_statistics(np.array([[0, 0, 1, 0]]), lat, lon, steps_per_day=4, step_hours=6.0)
    assert s["jump_km"]["median"] == pytest.approx(1.0, abs=1e-3)
    assert s["jumps_per_day"] == 2
    assert s["distinct_per_day"]["median"] == 2
    assert sorted([s["stay_hours"]["q10"], s["stay_hours"]["q90"]]) == pytest.approx([6.0, 10.8])
    assert s["radius_of_gyration_km"]["median"] == pytest.approx(np.sqrt(3) / 4, abs=1e-3)
    assert s["top2_location_share"] == 1.0


def test_describe_traffic_and_mobility():
    rep = np.zeros((2, 24, 1), dtype=bool)
    rep[0, 3, 0] = True
    d = describe(traffic(np.arange(48, dtype=float).reshape(2, 24), repaired=rep))
    assert d["kind"] == "station_traffic" and d["shape"] == [2, 24, 1]
    assert d["channels"] == ["c0"] and d["start"].startswith("2026-01-05T00:00:00")
    assert d["statistics"]["c0"]["max"] == 47.0 and d["statistics"]["c0"]["share_zero"] == pytest.approx(
        1 / 48
    )
    assert d["repaired_count"] == 1 and d["statistics"]["c0"]["repaired_count"] == 1
    json.dumps(d)
    stations = Stations(ids=np.array(["a", "b", "c"], dtype=object))
    mob = UserMobility(np.array([[0, 1, 1, 0], [2, 2, 2, 2]]), MONDAY, pd.Timedelta("30min"), stations)
    d = describe(mob)
    assert d["kind"] == "user_mobility" and d["n_users"] == 2 and d["distinct_stations_visited"] == 3
    assert d["distinct_stations_per_user"]["max"] == 2 and d["traffic"] is None
    json.dumps(d)
    with pytest.raises(TypeError):
        describe(np.zeros(3))


@pytest.mark.realdata
def test_real_beijing_week(shared_data):
    x = np.load(shared_file(shared_data, "beijing-stkdiff/beijing.npz"))["bs_record"]
    s = traffic_statistics(traffic(x, start=pd.Timestamp("2026-01-05", tz="Asia/Shanghai")))
    assert 8 < s["peak_trough_ratio"] < 13  # "about 10x its trough" (data README)
    assert 19 <= s["peak_hour"] <= 21 and 3 <= s["trough_hour"] <= 5
    assert s["acf_lag24"] > 0.7 and s["acf_lag168"] is None
    assert s["top10_share"] < 0.15  # rows are rescaled per station: little heterogeneity left
    assert 0.005 < s["share_zero"] < 0.012
