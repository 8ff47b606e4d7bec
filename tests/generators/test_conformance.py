"""The conformance suite: every registered generator passes the same checks, as scikit-learn's
``check_estimator`` does — tiny fit, shapes, non-negativity, seeds, save/load round trip, new stations,
more weeks of the training stations (however they are described, nothing at all included), clear errors
on bad input, and input a fit cannot use refused before any training. A new generator is picked up from
the registry automatically."""

from __future__ import annotations

import lightning as L
import numpy as np
import pandas as pd
import pytest

import cellsynth
from cellsynth.data import Stations, StationTraffic, UserMobility
from cellsynth.data.knowledge import KnowledgeGraph
from cellsynth.data.samples import split_samples
from cellsynth.errors import CellsynthError, ConfigError, DataError, NotFittedError
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
    ("mstdiff", {"self_condition": True}),
    ("mstdiff", {"anchors": 2}),
    ("mstdiff", {"own_chain": 1.0, "own_chain_span": 2}),
]


#: What a station generator needs to fit on stations described by nothing (no features, no coordinates):
#: STOUTER's station graph has nothing to be built from, so only its ablation without F_s can.
WITHOUT_DESCRIPTORS = {"stouter": {"use_spatial": False}}


def described_by(data: StationTraffic, *, features: bool, coordinates: bool) -> StationTraffic:
    """``data`` with its stations' feature columns and / or coordinates left out."""
    s = data.stations
    stations = Stations(
        s.ids,
        s.lat if coordinates else None,
        s.lon if coordinates else None,
        s.features if features else None,
        s.feature_names if features else (),
    )
    return StationTraffic(data.values, data.start, data.step, data.channels, stations)


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
    assert {p.name for p in (tmp_path / "model").iterdir()} >= {"generator.json", "weights.safetensors"}
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


def test_station_generates_more_weeks_of_its_training_stations(fitted_station, station_data):
    # A training station is itself however it is given: with its features and coordinates, without its
    # coordinates, or by id alone; the same seed then gives the very same weeks.
    full = fitted_station.generate(station_data.stations, samples=2, seed=5)
    s = station_data.stations
    for given in (
        Stations(s.ids, features=s.features, feature_names=s.feature_names),
        Stations(s.ids),
        Stations(s.ids[[3]]),
    ):
        out = fitted_station.generate(given, samples=2, seed=5)
        ids, values = split_samples(out)
        assert ids == list(given.ids) and values.shape == (len(given), 2, 168, 2)
        assert np.isfinite(values).all() and (values >= 0).all()
        if len(given) == len(s):
            np.testing.assert_array_equal(out.values, full.values)
    # A new station given by id alone has nothing to condition it on: one line naming what to give.
    with pytest.raises(DataError, match=r"new0\) are new .* needs the feature columns .*poi_office") as err:
        fitted_station.generate(Stations(["new0"]))
    assert "\n" not in str(err.value)


@pytest.fixture(scope="module", params=STATION_GENERATORS)
def fitted_without_descriptors(request, station_data):
    """Each station generator fitted on stations with neither features nor coordinates."""
    name = request.param
    data = described_by(station_data, features=False, coordinates=False)
    config = get_class(name).smoke_config() | WITHOUT_DESCRIPTORS.get(name, {})
    return get(name, config).fit(data, progress=False), data


def test_station_generates_for_its_training_stations_described_by_nothing(fitted_without_descriptors):
    gen, data = fitted_without_descriptors
    out = gen.generate(data.stations, samples=3, seed=0)
    ids, values = split_samples(out)
    assert ids == list(data.stations.ids) and values.shape == (data.n_stations, 3, 168, 2)
    assert np.isfinite(values).all() and (values >= 0).all()
    assert gen.generate(data.stations.subset([1, 4]), seed=0).n_stations == 2
    assert gen.generate(4, seed=0).n_stations == 4
    with pytest.raises(
        DataError, match=r"neither feature columns nor coordinates.*refit on stations with"
    ) as err:
        gen.generate(Stations(["planned"], [45.46], [9.19]))
    assert "planned" in str(err.value) and "\n" not in str(err.value)


def test_station_generates_for_its_training_stations_without_coordinates(station_data):
    for name in STATION_GENERATORS:
        data = described_by(station_data, features=True, coordinates=False)
        gen = get(name, get_class(name).smoke_config()).fit(data, progress=False)
        ids, values = split_samples(gen.generate(data.stations, samples=2, seed=0))
        assert ids == list(data.stations.ids) and values.shape == (data.n_stations, 2, 168, 2), name
        assert np.isfinite(values).all() and (values >= 0).all(), name


@pytest.fixture
def training_forbidden(monkeypatch):
    """Every network in cellsynth trains through Lightning's ``Trainer.fit``: make starting it a failure."""

    def refuse(*args, **kwargs):
        raise AssertionError("training started before the input was refused")

    monkeypatch.setattr(L.Trainer, "fit", refuse)


def _kg_without_station(data: UserMobility) -> KnowledgeGraph:
    ids = [str(i) for i in data.stations.ids[1:]]  # the first station has no triplet
    return KnowledgeGraph(
        np.array([f"station:{i}" for i in ids], dtype=object),
        np.array(["BaseLocateAt"] * len(ids), dtype=object),
        np.array(["region:0"] * len(ids), dtype=object),
    )


def _odd_step() -> StationTraffic:  # 5-hour steps do not divide a week
    return StationTraffic(np.ones((4, 70, 2)), START, "5h", ("internet", "sms"), tiny_stations(4))


def _users_without_coordinates() -> UserMobility:
    data = tiny_users()
    return UserMobility(data.locations, START, "30min", Stations(data.stations.ids), traffic=data.traffic)


def _case(case_id, name, overrides, make_data, error, message, **fit_options):
    return pytest.param(name, overrides, make_data, fit_options, error, message, id=case_id)


#: Input each fit must refuse up front: (generator, config overrides, data, error, what its message says).
UNUSABLE_FITS = [
    *(
        _case(f"{n}-odd-step", n, {}, _odd_step, DataError, "does not divide 7 days")
        for n in STATION_GENERATORS
    ),
    _case(
        "stouter-graph-from-nothing",
        "stouter",
        {},
        lambda: described_by(tiny_traffic(), features=False, coordinates=False),
        DataError,
        "neither feature columns nor coordinates.*use_spatial: false",
    ),
    _case(
        "stouter-knn-above-stations",
        "stouter",
        {"knn": 8},
        lambda: described_by(tiny_traffic(), features=True, coordinates=False),
        ConfigError,
        "only 8 training stations; set knn to at most 7",
    ),
    _case(
        "stouter-levels-from-2-stations",
        "stouter",
        {},
        lambda: tiny_traffic(n=2),
        DataError,
        "at least 3 training stations.*level_model: none",
    ),
    _case(
        "stouter-week-not-halvable",
        "stouter",
        {"channel_mults": (1, 2, 2, 2, 2)},
        tiny_traffic,
        DataError,
        "needs a multiple of 16",
    ),
    _case("vae-week-not-halvable", "vae", {"levels": 4}, tiny_traffic, DataError, "needs a multiple of 16"),
    _case(
        "mstdiff-oscillations-without-coordinates",
        "mstdiff",
        {"oscillation_neighbours": 2},
        _users_without_coordinates,
        ConfigError,
        "needs station coordinates.*oscillation_neighbours: 0",
    ),
    _case(
        "mstdiff-oscillations-above-stations",
        "mstdiff",
        {"oscillation_neighbours": 6},
        tiny_users,
        ConfigError,
        "set it to at most 5",
    ),
    _case(
        "mstdiff-wavelet-length",
        "mstdiff",
        {"level": 5},
        tiny_users,
        DataError,
        "divisible by 2\\^level = 32",
    ),
    _case(
        "mstdiff-station-missing-from-kg",
        "mstdiff",
        {"kg": True},
        tiny_users,
        DataError,
        "1 station.* no entity in the knowledge graph \\(bs00\\).*kg: false",
        knowledge_graph=_kg_without_station(tiny_users()),
    ),
]


@pytest.mark.parametrize(("name", "overrides", "make_data", "fit_options", "error", "message"), UNUSABLE_FITS)
def test_fit_refuses_unusable_input_before_training(
    training_forbidden, name, overrides, make_data, fit_options, error, message
):
    gen = get(name, get_class(name).smoke_config() | overrides)
    with pytest.raises(error, match=message) as err:
        gen.fit(make_data(), progress=False, **fit_options)
    assert isinstance(err.value, CellsynthError) and "\n" not in str(err.value)


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


@pytest.mark.parametrize("section", [[None], 3, "ddim"])
def test_a_section_that_is_not_a_mapping_is_a_config_error(section):
    """Beside an old flat name (the shipped presets use them), such a section once ended in a TypeError
    (found by tests/test_fuzz.py: `sampling: [null]` in a config for stouter)."""
    with pytest.raises(ConfigError, match="'sampling' is .*, expected a mapping of its options"):
        get("stouter", {"sampling": section, "sampler": "ddim"})


@pytest.mark.skipif(not USER_GENERATORS, reason="no user-level generator registered yet")
@pytest.mark.parametrize(
    ("name", "options"), USER_VARIANTS, ids=lambda v: "-".join(v) if isinstance(v, dict) else v
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
