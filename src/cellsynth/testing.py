"""The contract every generator keeps, as checks a plug-in author can run (scikit-learn's ``check_estimator``)::

    from cellsynth.testing import check_generator
    check_generator(MyGenerator)          # or a registered name: check_generator("stouter")

:func:`check_generator` fits the generator on tiny data with its :meth:`~cellsynth.generators.base.Generator.smoke_config`
(or the ``config`` given) and runs every check of its kind; each check is also a function of its own:

- declaration (:func:`check_declaration`): ``name``, ``kind``, ``Config``, the ``side_inputs`` it declares are
  keyword options of ``fit``, and an unknown config option is a :class:`~cellsynth.errors.ConfigError` naming it;
- station generators, on a fitted generator and its training data: output shape, time axis, sample ids and
  values finite and never negative (:func:`check_station_output`); the same seed gives the same output and
  another seed another (:func:`check_station_seeds`); two threads generating at once give what each call
  gives alone (:func:`check_concurrent_generation`: the local engine's ``workers``); save / load round trip,
  outputs equal (:func:`check_station_save_load`); planned stations and a number of drawn stations
  (:func:`check_station_targets`); clear errors on bad input (:func:`check_station_errors`);
- user generators: all of the above that applies, in :func:`check_user_generator`.

A failed check raises ``AssertionError`` whose message names the generator, the check and what was wrong.
The tiny datasets are :func:`tiny_traffic` (8 stations x 2 weeks, hourly, two channels) and :func:`tiny_users`.
"""

from __future__ import annotations

import inspect
import os
import re
import tempfile
import threading
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cellsynth.data import Stations, StationTraffic, UserMobility
from cellsynth.data.samples import split_samples
from cellsynth.errors import ConfigError, DataError, NotFittedError
from cellsynth.generators.base import Generator, GeneratorConfig

__all__ = [
    "START",
    "check_concurrent_generation",
    "check_declaration",
    "check_generator",
    "check_station_errors",
    "check_station_output",
    "check_station_save_load",
    "check_station_seeds",
    "check_station_targets",
    "check_user_generator",
    "tiny_stations",
    "tiny_traffic",
    "tiny_users",
]

START = pd.Timestamp("2026-01-05", tz="Europe/Rome")  # a Monday


# -- tiny data ------------------------------------------------------------------------------------------------
def tiny_stations(n: int, seed: int = 0) -> Stations:
    """``n`` stations around Milan with three POI counts."""
    rng = np.random.default_rng(seed)
    return Stations(
        ids=[f"bs{i:02d}" for i in range(n)],
        lat=45.46 + rng.normal(0, 0.01, n),
        lon=9.19 + rng.normal(0, 0.01, n),
        features=rng.poisson(5, (n, 3)),
        feature_names=("poi_office", "poi_home", "poi_bar"),
    )


def tiny_traffic(n: int = 8, weeks: int = 2, seed: int = 0) -> StationTraffic:
    """Hourly traffic of ``n`` stations: a daily cycle times a station level times log-normal noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(168 * weeks)
    daily = 1.5 + np.sin(2 * np.pi * (t % 24 - 8) / 24)
    level = rng.lognormal(0, 0.5, (n, 1, 1))
    values = level * daily[None, :, None] * rng.lognormal(0, 0.2, (n, len(t), 2))
    return StationTraffic(values, START, "1h", ("internet", "sms"), tiny_stations(n, seed))


def tiny_users(n_users: int = 12, seed: int = 0) -> UserMobility:
    """One week at 30-minute steps of users between home and work among 6 stations, with traffic."""
    rng = np.random.default_rng(seed)
    stations = tiny_stations(6, seed)
    home, work = rng.integers(0, 6, n_users), rng.integers(0, 6, n_users)
    hour = (np.arange(336) // 2) % 24
    at_work = (hour >= 9) & (hour < 17)
    locations = np.where(at_work[None, :], work[:, None], home[:, None])
    traffic = rng.lognormal(0, 1, (n_users, 336)) * (rng.random((n_users, 336)) < 0.4)
    return UserMobility(locations, START, "30min", stations, traffic=traffic)


# -- helpers --------------------------------------------------------------------------------------------------
def _expect(condition: bool, generator, check: str, what: str) -> None:
    if not condition:
        raise AssertionError(f"{_name(generator)}: {check}: {what}")


def _name(generator) -> str:
    return getattr(generator, "name", None) or getattr(generator, "__name__", repr(generator))


@contextmanager
def _raises(generator, check: str, error: type[Exception], match: str | None = None, when: str = ""):
    """Like ``pytest.raises``: the block must raise ``error`` whose message matches ``match``."""
    try:
        yield
    except error as err:
        if match is not None and not re.search(match, str(err)):
            raise AssertionError(
                f"{_name(generator)}: {check}: {when} raised {type(err).__name__}({err}), whose message does "
                f"not match {match!r}"
            ) from err
        return
    raise AssertionError(f"{_name(generator)}: {check}: {when} did not raise {error.__name__}")


def _load(generator: Generator, directory: Path) -> Generator:
    """Load through the registry when the class is registered under its name, else through the class."""
    from cellsynth.generators.registry import available, get_class

    if generator.name in available() and get_class(generator.name) is type(generator):
        return Generator.load(directory)
    return type(generator).load(directory)


def _resolve(generator: str | type[Generator]) -> type[Generator]:
    if isinstance(generator, str):
        from cellsynth.generators.registry import get_class

        return get_class(generator)
    if not (isinstance(generator, type) and issubclass(generator, Generator)):
        raise TypeError(f"check_generator takes a Generator subclass or a registered name, got {generator!r}")
    return generator


# -- the checks ---------------------------------------------------------------------------------------------
def check_declaration(cls: type[Generator]) -> None:
    """What a generator class declares: ``name``, ``kind``, ``Config``, ``side_inputs`` (each a keyword option
    of ``fit`` with a default, so that ``fit(data)`` works without it), and unknown options are refused."""
    check = "declaration"
    _expect(
        isinstance(getattr(cls, "name", None), str) and cls.name, cls, check, "needs a class attribute name"
    )
    _expect(
        getattr(cls, "kind", None) in ("stations", "users"), cls, check, "kind must be 'stations' or 'users'"
    )
    _expect(issubclass(cls.Config, GeneratorConfig), cls, check, "Config must subclass GeneratorConfig")
    fit_options = inspect.signature(cls.fit).parameters
    for side_input in cls.side_inputs:
        option = fit_options.get(side_input)
        _expect(
            option is not None
            and option.kind is inspect.Parameter.KEYWORD_ONLY
            and option.default is not inspect.Parameter.empty,
            cls,
            check,
            f"side input {side_input!r} is declared, but fit has no keyword-only option {side_input}=None",
        )
    with _raises(cls, check, ConfigError, r"invalid .*Config: not_a_setting", "an unknown config option"):
        cls({"not_a_setting": 1})


def check_station_output(generator: Generator, data: StationTraffic) -> None:
    """``samples=3`` weeks per training station: ids ``"<id>#<k>"``, one week (``data.steps_per("7D")``
    steps) from the training start at its step, its channels, finite values, never negative."""
    check = "output"
    out = generator.generate(data, samples=3, seed=0)
    _expect(isinstance(out, StationTraffic), generator, check, f"generate returned a {type(out).__name__}")
    _expect(out.n_stations == data.n_stations * 3, generator, check, f"{out.n_stations} series for 3 samples")
    week = data.steps_per("7D")
    _expect(out.n_steps == week, generator, check, f"{out.n_steps} steps, not one week ({week})")
    _expect(out.channels == data.channels, generator, check, f"channels {out.channels}, not {data.channels}")
    _expect(out.start == data.start and out.step == data.step, generator, check, "not on the training axis")
    ids, values = split_samples(out)
    _expect(ids == list(data.stations.ids), generator, check, "sample ids are not '<station id>#<k>'")
    _expect(values.shape[:2] == (data.n_stations, 3), generator, check, f"samples of shape {values.shape}")
    _expect(bool(np.isfinite(values).all()), generator, check, "values that are not finite")
    _expect(bool((values >= 0).all()), generator, check, "negative traffic")


def check_station_seeds(generator: Generator, data: StationTraffic) -> None:
    """The same seed gives the same output; another seed another."""
    a = generator.generate(data, samples=2, seed=7)
    b = generator.generate(data, samples=2, seed=7)
    c = generator.generate(data, samples=2, seed=8)
    _expect(np.array_equal(a.values, b.values), generator, "seeds", "the same seed gave different output")
    _expect(not np.array_equal(a.values, c.values), generator, "seeds", "another seed gave the same output")


def _thread_failure(err: BaseException) -> str:
    """``err`` and where it was raised (its last three frames): a thread's traceback is not the test's."""
    frames = traceback.extract_tb(err.__traceback__)[-3:]
    return f"a thread failed: {err!r}, at " + " <- ".join(
        f"{Path(f.filename).name}:{f.lineno} ({f.name})" for f in reversed(frames)
    )


def _generation_objects(generator: Generator) -> dict[str, Any]:
    """The generator's own attributes, and every attribute of every module of its networks (its
    ``torch.nn.Module`` attributes, also inside dicts, lists and tuples), by ``"<attribute>"`` and
    ``"<attribute>[<key>].<module path>.<name>"``: the objects themselves, so a caller can tell whether one
    was replaced."""
    found: dict[str, Any] = {}

    def walk(name: str, value: Any, depth: int) -> None:
        if isinstance(value, torch.nn.Module):
            for path, module in value.named_modules():
                found.update({f"{name}.{path}.{key}": v for key, v in vars(module).items()})
        elif depth and isinstance(value, dict):
            for key, item in value.items():
                walk(f"{name}[{key!r}]", item, depth - 1)
        elif depth and isinstance(value, (list, tuple)):
            for key, item in enumerate(value):
                walk(f"{name}[{key}]", item, depth - 1)

    for attribute, value in vars(generator).items():
        found[attribute] = value
        walk(attribute, value, depth=3)
    return found


def check_concurrent_generation(generator: Generator, target: StationTraffic | int) -> None:
    """Two threads calling ``generate`` on the one fitted generator at once (seeds 11 and 12) get what each
    call gets alone: the local engine generates chunks this way (``workers``, cellsynth.generation.chunks), so
    ``generate`` must keep what it changes to itself, or behind a lock. ``target``: the training data of a
    station generator, or a number of users.

    Whether two threads collide is a matter of timing, so the check also asks for what makes a collision
    impossible and can be seen in one call: the generator and its networks come out of ``generate`` exactly as
    they went in, no attribute of its own replaced (a random generator or a batch kept on ``self`` would be) and
    none of any module of its networks, also those held in dicts, lists or tuples (``module.to(device)`` or
    ``module.eval()`` in place would; cellsynth.placement.module_on is the way to sample on a device). State
    changed inside an object the generator already holds is left to the two-thread comparison."""
    users = isinstance(target, int)

    def draw(seed: int):
        out = (
            generator.generate(target, seed=seed)
            if users
            else generator.generate(target, samples=2, seed=seed)
        )
        return out.locations if users else out.values

    check = "concurrent generate"
    before = _generation_objects(generator)
    alone = [draw(11), draw(12)]
    changed = sorted(k for k, v in _generation_objects(generator).items() if before.get(k) is not v)
    _expect(not changed, generator, check, f"generate changed itself or its networks in place: {changed[:3]}")
    together: list[Any] = [None, None]
    failed: list[BaseException] = []

    def run(i: int) -> None:
        try:
            together[i] = draw(11 + i)
        except BaseException as err:  # reported below, in the main thread
            failed.append(err)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    _expect(not failed, generator, check, _thread_failure(failed[0]) if failed else "")
    same = all(np.array_equal(a, b) for a, b in zip(alone, together))
    _expect(same, generator, check, "two threads at once generated other values than each call alone")


def check_station_save_load(generator: Generator, data: StationTraffic, directory: str | os.PathLike) -> None:
    """``save`` writes generator.json and weights.safetensors; the loaded generator has the same config and
    generates the same values."""
    check = "save/load"
    model = Path(directory) / "model"
    generator.save(model)
    written = {p.name for p in model.iterdir()}
    _expect(
        {"generator.json", "weights.safetensors"} <= written, generator, check, f"wrote {sorted(written)}"
    )
    loaded = _load(generator, model)
    _expect(type(loaded) is type(generator), generator, check, f"loaded a {type(loaded).__name__}")
    _expect(loaded.config == generator.config, generator, check, "the loaded config differs")
    same = np.array_equal(
        loaded.generate(data, samples=2, seed=3).values, generator.generate(data, samples=2, seed=3).values
    )
    _expect(same, generator, check, "the loaded generator generates other values")


def check_station_targets(generator: Generator) -> None:
    """Planned stations (new ids, places and features) get their own ids and a week; ``generate(n)`` draws
    ``n`` stations."""
    check = "targets"
    planned = tiny_stations(3, seed=99)
    planned = Stations(
        [f"new{i}" for i in range(3)], planned.lat, planned.lon, planned.features, planned.feature_names
    )
    out = generator.generate(planned, samples=1, seed=0)
    _expect(list(out.stations.ids) == ["new0", "new1", "new2"], generator, check, "planned stations' ids")
    week = pd.Timedelta("7D") // out.step
    _expect(out.n_steps == week, generator, check, f"{out.n_steps} steps for planned stations, not {week}")
    _expect(bool((out.values >= 0).all()), generator, check, "negative traffic for planned stations")
    _expect(generator.generate(5, seed=1).n_stations == 5, generator, check, "generate(5) is not 5 stations")


def check_station_errors(generator: Generator, data: StationTraffic) -> None:
    """Clear errors: not fitted, user-level data, bad ``samples``, a target of the wrong type, stations with
    other features."""
    check, cls = "errors", type(generator)

    def fresh() -> Generator:
        return cls(generator.config)

    with _raises(generator, check, NotFittedError, when="generate before fit"):
        fresh().generate(data)
    with _raises(generator, check, NotFittedError, when="save before fit"):
        fresh().save(Path(tempfile.gettempdir()) / "cellsynth-never-written")
    with _raises(generator, check, DataError, "trains on StationTraffic", "fit on UserMobility"):
        fresh().fit(tiny_users(), progress=False)
    with _raises(generator, check, DataError, "samples must be a positive integer", "samples=0"):
        generator.generate(data, samples=0)
    with _raises(generator, check, DataError, when="generate('stations.csv')"):
        generator.generate("stations.csv")
    wrong = Stations(["x"], [45.0], [9.0], [[1.0]], ("poi_other",))
    with _raises(generator, check, DataError, "features", "stations with other feature columns"):
        generator.generate(wrong)


def check_user_generator(
    generator: str | type[Generator], config: dict[str, Any] | None, directory: str | os.PathLike
) -> None:
    """A user generator on :func:`tiny_users`: users on the training stations and time axis, seeds, the
    save / load round trip and clear errors. ``config`` None: the class's smoke config."""
    cls = _resolve(generator)
    config = cls.smoke_config() if config is None else config
    data, directory = tiny_users(), Path(directory)
    gen = cls(config)
    _expect(
        gen.fit(data, progress=False, checkpoint_dir=directory / "ckpt") is gen,
        cls,
        "fit",
        "fit must return self",
    )
    out = gen.generate(5, seed=0)
    check = "output"
    _expect(isinstance(out, UserMobility), cls, check, f"generate returned a {type(out).__name__}")
    _expect(
        out.n_users == 5 and out.n_steps == data.n_steps, cls, check, f"{out.n_users} users x {out.n_steps}"
    )
    _expect(out.stations.equals(data.stations), cls, check, "not the training stations")
    _expect(out.step == data.step and out.start == data.start, cls, check, "not on the training time axis")
    _expect(
        np.array_equal(out.locations, gen.generate(5, seed=0).locations), cls, "seeds", "same seed differs"
    )
    _expect(not np.array_equal(out.locations, gen.generate(5, seed=1).locations), cls, "seeds", "seeds agree")
    check_concurrent_generation(gen, 5)
    gen.save(directory / "model")
    again = _load(gen, directory / "model").generate(5, seed=0)
    _expect(again.equals(out), cls, "save/load", "the loaded generator generates other users")
    with _raises(cls, "errors", DataError, when="generate(0)"):
        gen.generate(0)
    with _raises(cls, "errors", DataError, when="fit on StationTraffic"):
        cls(config).fit(tiny_traffic(), progress=False)


def check_generator(
    generator: str | type[Generator],
    config: dict[str, Any] | None = None,
    *,
    directory: str | os.PathLike | None = None,
) -> None:
    """Run every check of the generator's kind (module docstring) on a fit to tiny data.

    ``generator``: a :class:`~cellsynth.generators.base.Generator` subclass or a registered name; ``config``:
    its options (None: its ``smoke_config()``); ``directory``: where checkpoints and the saved model go (None:
    a temporary directory, removed afterwards). Raises ``AssertionError`` naming the failed check.
    """
    cls = _resolve(generator)
    check_declaration(cls)
    config = cls.smoke_config() if config is None else config
    with tempfile.TemporaryDirectory(prefix="cellsynth-check-") as scratch:
        root = Path(directory) if directory is not None else Path(scratch)
        if cls.kind == "users":
            check_user_generator(cls, config, root)
            return
        data = tiny_traffic()
        gen = cls(config)
        _expect(
            gen.fit(data, progress=False, checkpoint_dir=root / "ckpt") is gen,
            cls,
            "fit",
            "fit must return self",
        )
        check_station_output(gen, data)
        check_station_seeds(gen, data)
        check_concurrent_generation(gen, data)
        check_station_save_load(gen, data, root)
        check_station_targets(gen)
        check_station_errors(gen, data)
