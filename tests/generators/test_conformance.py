"""The conformance suite: every registered generator passes the checks of :mod:`cellsynth.testing`, as
scikit-learn's ``check_estimator`` — tiny fit, shapes, non-negativity, seeds, save/load round trip, new
stations, and clear errors on bad input. A new generator is picked up from the registry automatically; a
plug-in runs the same checks with ``cellsynth.testing.check_generator``."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pydantic
import pytest
import torch

from cellsynth import testing
from cellsynth.data import StationTraffic
from cellsynth.data.samples import stack_samples
from cellsynth.errors import ConfigError, DataError
from cellsynth.generators import available, get, get_class, register, registry
from cellsynth.generators.base import (
    GeneratorConfig,
    StationGenerator,
    compose_state,
    expect,
    restore_stations,
    restore_time_axis,
    split_state,
    stations_state,
    time_axis_state,
    training_weeks,
)
from cellsynth.testing import START, tiny_stations, tiny_traffic, tiny_users  # noqa: F401 - used by other tests

STATION_GENERATORS = [n for n in available() if get_class(n).kind == "stations"]
USER_GENERATORS = [n for n in available() if get_class(n).kind == "users"]
# Options that change what a user generator's network is made of get the contract run on them too.
USER_VARIANTS = [(n, {}) for n in USER_GENERATORS] + [
    ("mstdiff", {"self_condition": True}),
    ("mstdiff", {"anchors": 2}),
    ("mstdiff", {"own_chain": 1.0, "own_chain_span": 2}),
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


def test_station_save_load_round_trip(fitted_station, station_data, tmp_path):
    testing.check_station_save_load(fitted_station, station_data, tmp_path)


def test_station_generates_for_new_and_drawn_stations(fitted_station):
    testing.check_station_targets(fitted_station)


def test_station_errors(fitted_station, station_data):
    testing.check_station_errors(fitted_station, station_data)


@pytest.mark.skipif(not USER_GENERATORS, reason="no user-level generator registered yet")
@pytest.mark.parametrize(
    ("name", "options"), USER_VARIANTS, ids=lambda v: "-".join(v) if isinstance(v, dict) else v
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
        self.fitted_ = True
        return self

    def generate(self, target, *, samples=1, seed=0, **options: Any):
        self.check_fitted()
        samples = self._check_samples(samples)
        stations = self._resolve_target(target, seed, self.stations_)
        if stations.feature_names != self.stations_.feature_names:
            raise DataError(f"stations have features {list(stations.feature_names)}, not the training ones")
        rng = np.random.default_rng(0 if self.broken == "seed" else seed)
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
