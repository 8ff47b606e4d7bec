"""The conformance suite: every registered generator passes the same checks, as scikit-learn's
``check_estimator`` does — tiny fit, shapes, non-negativity, seeds, save/load round trip, new stations,
and clear errors on bad input. A new generator is picked up from the registry automatically."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import cellsynth
from cellsynth.data import Stations, StationTraffic, UserMobility
from cellsynth.data.samples import split_samples
from cellsynth.errors import ConfigError, DataError, NotFittedError
from cellsynth.generators import available, get, get_class

START = pd.Timestamp("2026-01-05", tz="Europe/Rome")  # a Monday


def tiny_stations(n: int, seed: int = 0) -> Stations:
    rng = np.random.default_rng(seed)
    return Stations(
        ids=[f"bs{i:02d}" for i in range(n)],
        lat=45.46 + rng.normal(0, 0.01, n),
        lon=9.19 + rng.normal(0, 0.01, n),
        features=rng.poisson(5, (n, 3)),
        feature_names=("poi_office", "poi_home", "poi_bar"),
    )


def tiny_traffic(n: int = 8, weeks: int = 2, seed: int = 0) -> StationTraffic:
    rng = np.random.default_rng(seed)
    t = np.arange(168 * weeks)
    daily = 1.5 + np.sin(2 * np.pi * (t % 24 - 8) / 24)
    level = rng.lognormal(0, 0.5, (n, 1, 1))
    values = level * daily[None, :, None] * rng.lognormal(0, 0.2, (n, len(t), 2))
    return StationTraffic(values, START, "1h", ("internet", "sms"), tiny_stations(n, seed))


def tiny_users(n_users: int = 12, seed: int = 0) -> UserMobility:
    rng = np.random.default_rng(seed)
    stations = tiny_stations(6, seed)
    home, work = rng.integers(0, 6, n_users), rng.integers(0, 6, n_users)
    hour = (np.arange(336) // 2) % 24
    at_work = (hour >= 9) & (hour < 17)
    locations = np.where(at_work[None, :], work[:, None], home[:, None])
    traffic = rng.lognormal(0, 1, (n_users, 336)) * (rng.random((n_users, 336)) < 0.4)
    return UserMobility(locations, START, "30min", stations, traffic=traffic)


STATION_GENERATORS = [n for n in available() if get_class(n).kind == "stations"]
USER_GENERATORS = [n for n in available() if get_class(n).kind == "users"]
# Options that change what a user generator's network is made of get the contract run on them too.
USER_VARIANTS = [(n, {}) for n in USER_GENERATORS] + [
    ("mstdiff", {"extensions": {"self_condition": True}}),
    ("mstdiff", {"extensions": {"anchors": 2}}),
    ("mstdiff", {"extensions": {"own_chain": 1.0, "own_chain_span": 2}}),
]


@pytest.fixture(scope="module")
def station_data() -> StationTraffic:
    return tiny_traffic()


@pytest.fixture(scope="module", params=STATION_GENERATORS)
def fitted_station(request, station_data, tmp_path_factory):
    cls = get_class(request.param)
    gen = get(request.param, cls.smoke_config())
    assert gen.fit(station_data, progress=False, checkpoint_dir=tmp_path_factory.mktemp("ckpt")) is gen
    return gen


def test_registry_lists_the_reference_generators():
    assert {"seasonal-mean", "copy-train"} <= set(available())
    with pytest.raises(ConfigError, match="unknown generator 'nope'; available:"):
        get("nope")


def test_station_output_shape_axis_and_sample_ids(fitted_station, station_data):
    out = fitted_station.generate(station_data, samples=3, seed=0)
    assert isinstance(out, StationTraffic)
    assert out.n_stations == station_data.n_stations * 3
    assert out.n_steps == 168 and out.channels == station_data.channels
    assert out.start == station_data.start and out.step == station_data.step
    ids, values = split_samples(out)
    assert ids == list(station_data.stations.ids)
    assert values.shape == (station_data.n_stations, 3, 168, 2)
    assert np.isfinite(values).all() and (values >= 0).all()


def test_station_seeds(fitted_station, station_data):
    a = fitted_station.generate(station_data, samples=2, seed=7)
    b = fitted_station.generate(station_data, samples=2, seed=7)
    c = fitted_station.generate(station_data, samples=2, seed=8)
    assert np.array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)


def test_station_save_load_round_trip(fitted_station, station_data, tmp_path):
    fitted_station.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) >= ["generator.json", "weights.safetensors"]
    loaded = cellsynth.load(tmp_path / "model")
    assert type(loaded) is type(fitted_station) and loaded.config == fitted_station.config
    np.testing.assert_array_equal(
        loaded.generate(station_data, samples=2, seed=3).values,
        fitted_station.generate(station_data, samples=2, seed=3).values,
    )


def test_station_generates_for_new_and_drawn_stations(fitted_station):
    planned = tiny_stations(3, seed=99)
    planned = Stations(
        [f"new{i}" for i in range(3)], planned.lat, planned.lon, planned.features, planned.feature_names
    )
    out = fitted_station.generate(planned, samples=1, seed=0)
    assert list(out.stations.ids) == ["new0", "new1", "new2"] and out.n_steps == 168
    drawn = fitted_station.generate(5, seed=1)
    assert drawn.n_stations == 5


def test_station_errors(fitted_station, station_data):
    name = fitted_station.name
    with pytest.raises(NotFittedError):
        get(name, get_class(name).smoke_config()).generate(station_data)
    with pytest.raises(NotFittedError):
        get(name, get_class(name).smoke_config()).save("never-written")
    with pytest.raises(DataError, match="trains on StationTraffic"):
        get(name, get_class(name).smoke_config()).fit(tiny_users(), progress=False)
    with pytest.raises(DataError, match="samples must be a positive integer"):
        fitted_station.generate(station_data, samples=0)
    with pytest.raises(DataError):
        fitted_station.generate("stations.csv")
    wrong = Stations(["x"], [45.0], [9.0], [[1.0]], ("poi_other",))
    with pytest.raises(DataError, match="features"):
        fitted_station.generate(wrong)
    with pytest.raises(ConfigError, match="invalid .*Config: not_a_setting"):
        get(name, {"not_a_setting": 1})


@pytest.mark.skipif(not USER_GENERATORS, reason="no user-level generator registered yet")
@pytest.mark.parametrize(
    ("name", "options"),
    USER_VARIANTS,
    # a variant's id: its options' names (those inside a section, for a nested option)
    ids=lambda v: (
        "-".join(n for k, o in v.items() for n in (o if isinstance(o, dict) else [k]))
        if isinstance(v, dict)
        else v
    ),
)
def test_user_generator_contract(name, options, tmp_path):
    data = tiny_users()
    gen = get(name, get_class(name).smoke_config() | options).fit(
        data, progress=False, checkpoint_dir=tmp_path / "ckpt"
    )
    out = gen.generate(5, seed=0)
    assert isinstance(out, UserMobility) and out.n_users == 5 and out.n_steps == data.n_steps
    assert out.stations.equals(data.stations)
    assert out.step == data.step and out.start == data.start
    assert np.array_equal(out.locations, gen.generate(5, seed=0).locations)
    assert not np.array_equal(out.locations, gen.generate(5, seed=1).locations)
    gen.save(tmp_path / "m")
    again = cellsynth.load(tmp_path / "m").generate(5, seed=0)
    assert again.equals(out)
    with pytest.raises(DataError):
        gen.generate(0)
    with pytest.raises(DataError):
        get(name, get_class(name).smoke_config()).fit(tiny_traffic(), progress=False)
