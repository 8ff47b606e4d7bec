"""seasonal-mean and copy-train do what their docstrings say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellsynth.data import StationTraffic
from cellsynth.data.samples import split_samples
from cellsynth.generators import get
from cellsynth.generators.floors.stations import nearest_training_stations
from tests.generators.test_conformance import START, described_by, tiny_stations, tiny_traffic


def test_seasonal_mean_is_unbiased_around_the_weekly_profile():
    data = tiny_traffic(n=4, weeks=3)
    gen = get("seasonal-mean").fit(data, progress=False)
    _, samples = split_samples(gen.generate(data, samples=400, seed=0))
    profile = data.values.reshape(4, 3, 168, 2).mean(1)
    # The log-normal noise has mean one: the sample mean converges to the profile.
    rel = np.abs(samples.mean(1) - profile) / profile
    assert np.median(rel) < 0.05


def test_seasonal_mean_with_one_week_averages_days_not_the_week_itself():
    values = np.zeros((1, 168, 1))
    values[0, 24 * 2 + 10, 0] = 70.0  # a single burst on Wednesday 10:00
    data = StationTraffic(values + 1, START, "1h", ("internet",), tiny_stations(1))
    gen = get("seasonal-mean").fit(data, progress=False)
    # The burst is spread over every day's 10:00 (mean of 7 days), never copied.
    np.testing.assert_allclose(gen.profile_[0, 10::24, 0], 11.0)
    np.testing.assert_allclose(gen.profile_[0, 11::24, 0], 1.0)


def test_copy_train_returns_training_weeks_verbatim():
    data = tiny_traffic(n=3, weeks=2)
    out = get("copy-train").fit(data, progress=False).generate(data, samples=4, seed=1)
    _, samples = split_samples(out)
    weeks = data.values.reshape(3, 2, 168, 2)
    for i in range(3):
        for k in range(4):
            assert any(np.array_equal(samples[i, k], weeks[i, w]) for w in range(2))


def test_training_stations_described_by_nothing_get_their_own_weeks():
    # "More weeks of my cells" needs no features or coordinates: a training station is found by its id.
    data = described_by(tiny_traffic(n=4, weeks=3), features=False, coordinates=False)
    weeks = data.values.reshape(4, 3, 168, 2)
    _, copies = split_samples(get("copy-train").fit(data, progress=False).generate(data.stations, samples=6))
    for i in range(4):  # the memorisation extreme: each sample is one of the station's own weeks
        assert all(any(np.array_equal(copies[i, k], weeks[i, w]) for w in range(3)) for k in range(6))
    seasonal = get("seasonal-mean").fit(data, progress=False)
    _, samples = split_samples(seasonal.generate(data.stations.subset([2, 0]), samples=400, seed=0))
    own = weeks[[2, 0]].mean(1)  # each station's own mean week, not a neighbour's
    assert np.median(np.abs(samples.mean(1) - own) / own) < 0.05


def test_new_station_takes_its_neighbours():
    train = tiny_stations(5)
    query = train.subset([3])
    assert nearest_training_stations(train, query, 2)[0, 0] == 3
    moved = type(query)(["planned"], query.lat + 1e-5, query.lon, query.features, query.feature_names)
    assert nearest_training_stations(train, moved, 1)[0, 0] == 3


def test_time_axis_follows_training_data():
    data = tiny_traffic(n=2, weeks=1)
    shifted = StationTraffic(data.values, START + pd.Timedelta("3D"), "1h", data.channels, data.stations)
    out = get("seasonal-mean").fit(shifted, progress=False).generate(2, seed=0)
    assert out.start == shifted.start


def test_idle_hours_of_a_busy_station_do_not_blow_up_the_noise():
    # Regression: with an absolute log offset, a station at ~1e7 with a few zero hours got sigma ~ 9 and
    # generated values thousands of times its maximum.
    rng = np.random.default_rng(0)
    t = np.arange(168)
    values = 1e7 * (1.5 + np.sin(2 * np.pi * t / 24))[None, :, None] * rng.lognormal(0, 0.1, (1, 168, 1))
    values[0, [3, 50, 100], 0] = 0.0
    data = StationTraffic(values, START, "1h", ("internet",), tiny_stations(1))
    gen = get("seasonal-mean").fit(data, progress=False)
    assert gen.sigma_[0, 0] < 0.5
    _, samples = split_samples(gen.generate(data, samples=50, seed=0))
    assert samples.max() < 3 * values.max()


def test_nearest_station_gives_a_planned_site_the_closest_stations_week_exactly():
    data = tiny_traffic(n=5, weeks=1)
    gen = get("nearest-station").fit(data, progress=False)
    s = data.stations
    # A planned site next to bs03 (features equal, a few metres away): bs03's one week, verbatim, every sample.
    planned = type(s)(["planned"], s.lat[[3]] + 1e-5, s.lon[[3]], s.features[[3]], s.feature_names)
    _, samples = split_samples(gen.generate(planned, samples=3, seed=4))
    for k in range(3):
        np.testing.assert_array_equal(samples[0, k], data.values[3])


def test_nearest_station_deals_each_week_once_before_repeating():
    data = tiny_traffic(n=2, weeks=3)
    weeks = data.values.reshape(2, 3, 168, 2)
    _, samples = split_samples(
        get("nearest-station").fit(data, progress=False).generate(data, samples=6, seed=0)
    )
    for i in range(2):
        drawn = [next(w for w in range(3) if np.array_equal(samples[i, k], weeks[i, w])) for k in range(6)]
        assert sorted(drawn[:3]) == [0, 1, 2] and drawn[3:] == drawn[:3]


def level_doubled(n: int = 3, weeks: int = 6, doubled_from: int = 4) -> StationTraffic:
    """Stations whose load doubles from week ``doubled_from`` on (the real LTE cells of issue 23)."""
    data = tiny_traffic(n=n, weeks=weeks)
    factor = np.where(np.arange(data.n_steps) >= 168 * doubled_from, 2.0, 1.0)
    return StationTraffic(data.values * factor[None, :, None], START, "1h", data.channels, data.stations)


def test_recent_weeks_of_a_station_whose_load_doubled_carry_the_recent_level():
    data = level_doubled()
    weeks = data.values.reshape(3, 6, 168, 2)
    recent = get("recent-weeks", weeks=2).fit(data, progress=False)
    _, samples = split_samples(recent.generate(data.stations, samples=4, seed=1))
    for i in range(3):  # each sample is one of the two doubled weeks, each of them twice
        drawn = [next(w for w in range(6) if np.array_equal(samples[i, k], weeks[i, w])) for k in range(4)]
        assert sorted(drawn) == [4, 4, 5, 5]
    # The whole-history floors draw the average level, about 2/3 of the recent one.
    _, mean = split_samples(get("seasonal-mean").fit(data, progress=False).generate(data, samples=50, seed=0))
    ratio = mean.mean() / weeks[:, 4:].mean()
    assert 0.6 < ratio < 0.75 and samples.mean() == pytest.approx(weeks[:, 4:].mean(), rel=1e-6)


def test_recent_weeks_of_a_planned_site_are_its_nearest_stations_recent_weeks():
    data = level_doubled()
    gen = get("recent-weeks", weeks=1).fit(data, progress=False)
    s = data.stations
    planned = type(s)(["planned"], s.lat[[1]], s.lon[[1]] + 1e-5, s.features[[1]], s.feature_names)
    _, samples = split_samples(gen.generate(planned, samples=2, seed=0))
    np.testing.assert_array_equal(samples[0, 1], data.values[1, 5 * 168 :])
    # More weeks asked for than the data has: all of them.
    assert get("recent-weeks", weeks=50).fit(data, progress=False)._replayed_weeks() == 6
