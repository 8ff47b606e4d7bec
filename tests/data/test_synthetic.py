"""The synthetic city: seeded, valid, and showing the patterns of real cellular data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellsynth.data import io
from cellsynth.data.knowledge import read_knowledge_graph
from cellsynth.data.model import StationTraffic, UserMobility
from cellsynth.data.summary import haversine_km, mobility_statistics, traffic_statistics
from cellsynth.data.synthetic import (
    CHANNELS,
    LAND_USES,
    CityConfig,
    build_layout,
    synthesize_city,
    synthesize_traffic,
    synthesize_users,
)
from cellsynth.errors import ConfigError

SMALL = {"n_stations": 40, "n_users": 50, "weeks": 2}


@pytest.fixture(scope="module")
def city():
    return synthesize_city(**SMALL, seed=7)


def test_shapes_and_types(city):
    cfg = city.config
    assert isinstance(city.traffic, StationTraffic)
    assert isinstance(city.users, UserMobility)
    assert city.traffic.values.shape == (40, 2 * 168, 3)
    assert city.traffic.values.dtype == np.float32
    assert city.traffic.channels == CHANNELS
    assert city.traffic.step == pd.Timedelta("1h")
    assert city.traffic.start == cfg.start and city.traffic.start.day_of_week == 0  # a Monday
    assert str(city.traffic.start.tz) == "Europe/Rome"
    assert city.users.locations.shape == (50, 336)
    assert city.users.step == pd.Timedelta("30min")
    assert city.users.traffic is not None and city.users.traffic.shape == (50, 336)
    assert city.users.stations is city.stations is city.traffic.stations
    assert city.stations.ids[0] == "S0001" and len(set(city.stations.ids)) == 40


def test_stations_have_coordinates_and_poi_features(city):
    st = city.stations
    poi = [f for f in st.feature_names if f.startswith("poi_")]
    assert len(poi) >= 8 and len(poi) == len(st.feature_names)
    assert (st.features >= 0).all() and st.features.sum() > 0
    d = haversine_km(st.lat, st.lon, city.config.centre_lat, city.config.centre_lon)
    assert d.max() <= city.config.size_km / 2 * np.sqrt(2) + 0.1
    # Station density is higher downtown: more stations within a quarter of the size than area suggests.
    inner = d < city.config.size_km / 4
    assert inner.mean() > (np.pi / 16) * 1.2


def test_values_are_non_negative_and_finite(city):
    assert np.isfinite(city.traffic.values).all() and (city.traffic.values >= 0).all()
    assert (city.users.traffic >= 0).all()
    assert (city.traffic.values > 0).mean() > 0.98


def test_same_seed_same_city_different_seed_different_city(city):
    again = synthesize_city(**SMALL, seed=7)
    assert again.traffic.equals(city.traffic)
    assert again.users.equals(city.users)
    assert again.knowledge_graph.equals(city.knowledge_graph)
    other = synthesize_city(**SMALL, seed=8)
    assert not np.array_equal(other.stations.lat, city.stations.lat)
    assert not np.array_equal(other.traffic.values, city.traffic.values)
    assert not np.array_equal(other.users.locations, city.users.locations)


def test_streams_are_independent(city):
    """More users do not change the stations or their traffic."""
    more = synthesize_city(**(SMALL | {"n_users": 20}), seed=7)
    assert more.traffic.equals(city.traffic)
    assert more.users.n_users == 20


def test_parts_compose():
    layout = build_layout(n_stations=20, n_users=5, weeks=1, seed=3)
    traffic = synthesize_traffic(layout)
    users = synthesize_users(layout)
    assert traffic.values.shape == (20, 168, 3)
    assert users.locations.shape == (5, 336)
    assert np.allclose(layout.land_use.sum(axis=1), 1.0)
    assert set(layout.kind) <= set(LAND_USES)


def test_round_trip_on_disk(city, tmp_path):
    path = city.write(tmp_path / "city")
    assert io.read(path / "traffic").equals(city.traffic)
    assert io.read(path / "users").equals(city.users)
    assert read_knowledge_graph(path / "knowledge_graph.parquet").equals(city.knowledge_graph)
    labels = pd.read_parquet(path / "labels.parquet")
    assert list(labels["station_id"]) == list(city.stations.ids)
    assert CityConfig.from_dict(__import__("json").loads((path / "config.json").read_text())) == city.config


# --- the three patterns STOUTER names -------------------------------------------------------------------


def test_temporal_periodicity(city):
    s = traffic_statistics(city.traffic, "internet")
    assert s["peak_trough_ratio"] > 2
    assert s["acf_lag24"] > 0.6 and s["acf_lag168"] > 0.6
    assert 17 <= s["peak_hour"] <= 22 and 2 <= s["trough_hour"] <= 6
    call = traffic_statistics(city.traffic, "call")
    assert 9 <= call["peak_hour"] <= 18  # calls by day, internet in the evening
    assert call["weekday_weekend_ratio"] > 1.15  # fewer calls at weekends


def test_weekday_weekend_depends_on_land_use(city):
    kind = city.station_kind
    weekend = city.traffic.timestamps.day_of_week >= 5
    x = city.traffic.channel("internet")
    ratio = x[:, ~weekend].mean(axis=1) / x[:, weekend].mean(axis=1)
    business = kind == "business"
    residential = kind == "residential"
    assert business.any() and residential.any()
    assert np.median(ratio[business]) > np.median(ratio[residential]) + 0.1


def test_spatial_heterogeneity(city):
    s = traffic_statistics(city.traffic, "internet")
    assert s["top10_share"] > 0.25  # 10 % of stations carry far more than 10 % of the load
    assert s["station_load"]["log_std"] > 0.7
    # Load follows land use: it rises with the station's POIs (Spearman, on a larger layout for power).
    layout = build_layout(n_stations=400, seed=7)
    pois = layout.stations.features.sum(axis=1)
    rank = np.corrcoef(np.argsort(np.argsort(layout.load)), np.argsort(np.argsort(pois)))[0, 1]
    assert rank > 0.4


def test_uncertainty_no_two_weeks_alike(city):
    x = city.traffic.channel("internet")
    w1, w2 = x[:, :168], x[:, 168:]
    assert not np.allclose(w1, w2)
    change = np.abs(np.log(w2.sum(axis=1) / w1.sum(axis=1)))
    assert (change > 1e-3).mean() > 0.9
    assert np.corrcoef(w1.mean(axis=0), w2.mean(axis=0))[0, 1] > 0.9  # ...yet the same kind of week
    # Noise: hour to hour, a station's load is not its smooth profile.
    ratio = x[:, 1:] / np.maximum(x[:, :-1], 1e-6)
    assert np.std(np.log(ratio[(x[:, 1:] > 0) & (x[:, :-1] > 0)])) > 0.1


# --- users -------------------------------------------------------------------------------------------------


def test_users_return_to_anchors(city):
    loc = city.users.locations
    srt = np.sort(loc, axis=1)
    distinct = 1 + (srt[:, 1:] != srt[:, :-1]).sum(axis=1)
    assert distinct.max() < loc.shape[1] / 4  # returns, not a random walk
    top = np.array([np.bincount(r).max() for r in loc]) / loc.shape[1]
    assert np.median(top) > 0.4  # most of the week at home
    stats = mobility_statistics(city.users)
    assert stats["jump_km"]["median"] < 3.0  # jumps mostly short...
    assert stats["jump_km"]["q90"] > 2 * stats["jump_km"]["median"]  # ...with a long tail
    assert stats["stay_hours"]["q90"] >= 4


def test_user_traffic_is_bursty_and_hourly(city):
    tr = city.users.traffic
    assert 0.3 < (tr == 0).mean() < 0.9  # zero-inflated
    nz = tr[tr > 0]
    assert np.quantile(nz, 0.99) > 10 * np.median(nz)  # heavy-tailed bursts
    slot = np.arange(tr.shape[1]) % 48
    night, evening = tr[:, (slot >= 6) & (slot < 10)].mean(), tr[:, (slot >= 40) & (slot < 44)].mean()
    assert evening > 3 * night


# --- configuration ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"n_stations": 3},
        {"weeks": 0},
        {"n_users": 0},
        {"size_km": -1.0},
        {"centres": ("business", "casino")},
        {"centres": ()},
        {"start": pd.Timestamp("2026-01-05")},
        {"seed": -1},
        {"n_stations": 10.5},
    ],
)
def test_bad_config_raises(bad):
    with pytest.raises(ConfigError):
        CityConfig(**bad)


def test_unknown_override_raises():
    with pytest.raises(ConfigError, match="unknown CityConfig option"):
        synthesize_city(n_station=10)


def test_config_aliases_and_round_trip():
    cfg = CityConfig(centres=("Business", "leisure", "transport_hub"))
    assert cfg.centres == ("business", "nightlife", "transport")
    assert CityConfig.from_dict(cfg.to_dict()) == cfg
    milan = CityConfig.milan()
    assert milan.n_stations == 10_000 and len(set(milan.centres)) == len(LAND_USES)
