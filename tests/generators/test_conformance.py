"""The conformance suite: every registered generator passes the checks of :mod:`cellsynth.testing`, as
scikit-learn's ``check_estimator`` — tiny fit, shapes, non-negativity, seeds, save/load round trip, new
stations, and clear errors on bad input. A new generator is picked up from the registry automatically; a
plug-in runs the same checks with ``cellsynth.testing.check_generator``."""

from __future__ import annotations

import threading
import time
from typing import Any, ClassVar

import lightning as L
import numpy as np
import pydantic
import pytest
import torch

from cellsynth import testing
from cellsynth.data import Stations, StationTraffic, UserMobility
from cellsynth.data.knowledge import KnowledgeGraph
from cellsynth.data.samples import split_samples, stack_samples
from cellsynth.errors import CellsynthError, ConfigError, DataError
from cellsynth.generators import available, get, get_class, register, registry
from cellsynth.generators.base import GeneratorConfig, StationGenerator, expect, training_weeks
from cellsynth.generators.state import (
    compose_state,
    restore_stations,
    restore_time_axis,
    split_state,
    stations_state,
    time_axis_state,
)
from cellsynth.testing import START, tiny_stations, tiny_traffic, tiny_users

STATION_GENERATORS = [n for n in available() if get_class(n).kind == "stations"]
USER_GENERATORS = [n for n in available() if get_class(n).kind == "users"]
# Options that change what a user generator's network is made of get the contract run on them too.
USER_VARIANTS = [(n, {}) for n in USER_GENERATORS] + [
    ("mstdiff", {"extensions": {"self_condition": True}}),
    ("mstdiff", {"extensions": {"anchors": 2}}),
    ("mstdiff", {"extensions": {"own_chain": 1.0, "own_chain_span": 2}}),
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


@pytest.mark.parametrize("name", available())
def test_declarations(name):
    testing.check_declaration(get_class(name))


def test_side_inputs_are_declared_not_guessed():
    assert get_class("mstdiff").side_inputs == ("knowledge_graph",)
    assert all(get_class(n).side_inputs == () for n in STATION_GENERATORS)


def test_station_output_shape_axis_and_sample_ids(fitted_station, station_data):
    testing.check_station_output(fitted_station, station_data)


def test_station_seeds(fitted_station, station_data):
    testing.check_station_seeds(fitted_station, station_data)


def test_station_concurrent_generation(fitted_station, station_data):
    testing.check_concurrent_generation(fitted_station, station_data)


def test_station_save_load_round_trip(fitted_station, station_data, tmp_path):
    testing.check_station_save_load(fitted_station, station_data, tmp_path)


def test_station_generates_for_new_and_drawn_stations(fitted_station):
    testing.check_station_targets(fitted_station)


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
    testing.check_station_errors(fitted_station, station_data)


@pytest.mark.parametrize("section", [[None], 3, "ddim"])
def test_a_section_that_is_not_a_mapping_is_a_config_error(section):
    """Beside an old flat name (the shipped presets use them), such a section once ended in a TypeError
    (found by tests/test_fuzz.py: `sampling: [null]` in a config for stouter)."""
    with pytest.raises(ConfigError, match="'sampling' is .*, expected a mapping of its options"):
        get("stouter", {"sampling": section, "sampler": "ddim"})


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
    testing.check_user_generator(name, get_class(name).smoke_config() | options, tmp_path)


# -- a plug-in, as a user outside cellsynth would write one ---------------------------------------------------
class MeanWeekConfig(GeneratorConfig):
    spread: float = pydantic.Field(0.1, ge=0, description="Log-normal noise on the mean week.")


class MeanWeekGenerator(StationGenerator):
    """Every station gets the training stations' mean week times log-normal noise (the tiniest model)."""

    name = "test-mean-week"
    Config = MeanWeekConfig
    #: Set by a test to break the contract on purpose.
    broken: ClassVar[str] = ""

    def fit(self, data, *, progress=True, checkpoint_dir=None):
        data = expect(data, StationTraffic, self.name)
        self.mean_ = training_weeks(data, self.name).mean(axis=(0, 1))  # [L, C]
        self.stations_, self.time_ = data.stations, time_axis_state(data)
        if self.broken == "moved":
            self.net_ = torch.nn.GRU(1, 1)  # a network it would sample with
        if self.broken == "shared":
            self.scratch_ = {}
        self.fitted_ = True
        return self

    def generate(self, target, *, samples=1, seed=0, **options: Any):
        self.check_fitted()
        if self.broken == "moved":  # "to the sampling device" in place, under another thread's forward pass
            self.net_.to("cpu")
        if self.broken == "main-thread-only" and threading.current_thread() is not threading.main_thread():
            raise RuntimeError("not in the main thread")
        samples = self._check_samples(samples)
        stations = self._resolve_target(target, seed, self.stations_).stations
        rng = np.random.default_rng(0 if self.broken == "seed" else seed)
        if self.broken == "kept":  # the generator kept on the model: a second call at once draws from it
            self.rng_ = rng
            time.sleep(0.05)
            rng = self.rng_
        if self.broken == "shared":  # the same, in a scratch dict the model already had: seen only by timing
            self.scratch_["rng"] = rng
            time.sleep(0.05)
            rng = self.scratch_["rng"]
        noise = rng.lognormal(0, self.config.spread, (len(stations), samples, *self.mean_.shape))
        values = self.mean_ * noise
        start, step = restore_time_axis(self.time_)
        start += step * int(self.broken == "start")
        return stack_samples(stations, values, start=start, step=step, channels=tuple(self.time_["channels"]))

    def _state(self):
        tensors, meta = stations_state(self.stations_)
        return tensors | compose_state({"mean_week": {"values": self.mean_}}), meta | {"time": self.time_}

    def _restore(self, tensors, meta):
        self.mean_ = split_state(tensors, ("mean_week",))["mean_week"]["values"].numpy()
        self.stations_, self.time_ = restore_stations(tensors, meta), meta["time"]


@pytest.fixture
def plug_in(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # registered for this test only
    register(MeanWeekGenerator.name, f"{__name__}:MeanWeekGenerator")
    return MeanWeekGenerator


def test_a_registered_plug_in_passes_check_generator(plug_in, tmp_path):
    assert plug_in.name in available()
    testing.check_generator(plug_in.name, directory=tmp_path)
    testing.check_generator(plug_in)  # the class itself, in a temporary directory


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("seed", "test-mean-week: seeds: another seed gave the same output"),
        ("start", "output: not on the training axis"),
        ("kept", r"concurrent generate: generate changed itself or its networks in place: \['rng_'\]"),
        ("shared", "concurrent generate: two threads at once generated other values"),
        (
            "main-thread-only",
            r"a thread failed: RuntimeError\('not in the main thread'\), at test_conformance\.py:\d+ \(generate\)",
        ),
        (
            "moved",
            r"concurrent generate: generate changed itself or its networks in place: \['net_\.\._flat_weight_refs'",
        ),
    ],
)
def test_check_generator_names_what_a_broken_generator_gets_wrong(plug_in, monkeypatch, broken, message):
    monkeypatch.setattr(plug_in, "broken", broken)
    with pytest.raises(AssertionError, match=message):
        testing.check_generator(plug_in)


def test_check_generator_refuses_what_is_not_a_generator():
    with pytest.raises(TypeError, match="Generator subclass or a registered name"):
        testing.check_generator(torch.nn.Linear)
    with pytest.raises(ConfigError, match="unknown generator"):
        testing.check_generator("nope")
