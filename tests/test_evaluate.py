"""cellsynth.evaluate: alignment, normalisation, pairing, memorisation and errors of the evaluation protocol."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from cellsynth import metrics
from cellsynth.data import Stations, StationTraffic, UserMobility
from cellsynth.data.samples import stack_samples
from cellsynth.data.split import split_stations, split_users, split_weeks
from cellsynth.data.synthetic import synthesize_city
from cellsynth.errors import DataError
from cellsynth.evaluate import METRICS, evaluate, evaluate_users
from cellsynth.generators import get

START = pd.Timestamp("2026-01-05", tz="Europe/Rome")  # a Monday
WEEK = 168
JSDS = ("value_jsd", "diff_jsd", "peak_hour_jsd")


def tiny_stations(n: int, *, prefix: str = "bs", coordinates: bool = True, seed: int = 0) -> Stations:
    rng = np.random.default_rng(seed)
    return Stations(
        ids=[f"{prefix}{i:02d}" for i in range(n)],
        lat=45.46 + rng.normal(0, 0.01, n) if coordinates else None,
        lon=9.19 + rng.normal(0, 0.01, n) if coordinates else None,
        features=rng.poisson(5, (n, 2)),
        feature_names=("poi_office", "poi_home"),
    )


def tiny_traffic(
    n: int = 8, weeks: int = 1, *, channels=("internet", "sms"), seed: int = 0, **station_options
) -> StationTraffic:
    """Hourly traffic with a daily cycle, a level per station and noise: [n, weeks * 168, len(channels)]."""
    rng = np.random.default_rng(seed)
    t = np.arange(WEEK * weeks)
    daily = 1.5 + np.sin(2 * np.pi * (t % 24 - 8) / 24)
    level = rng.lognormal(0, 0.5, (n, 1, 1))
    values = level * daily[None, :, None] * rng.lognormal(0, 0.2, (n, len(t), len(channels)))
    return StationTraffic(
        values, START, "1h", tuple(channels), tiny_stations(n, seed=seed, **station_options)
    )


def tiny_users(
    n_users: int = 16, *, traffic: bool = True, coordinates: bool = True, seed: int = 0
) -> UserMobility:
    """A week of 30-minute steps: each user at home, at work from 9 to 17, sometimes at a third station."""
    rng = np.random.default_rng(seed)
    stations = tiny_stations(8, coordinates=coordinates, seed=seed)
    hour = (np.arange(336) // 2) % 24
    home, work, other = rng.integers(0, 8, (3, n_users))
    locations = np.where(((hour >= 9) & (hour < 17))[None, :], work[:, None], home[:, None])
    evening = ((hour >= 18) & (hour < 20))[None, :] & (rng.random((n_users, 1)) < 0.5)
    locations = np.where(evening, other[:, None], locations)
    values = rng.lognormal(0, 1, (n_users, 336)) * (rng.random((n_users, 336)) < 0.4) if traffic else None
    ids = tuple(f"user{seed}-{i}" for i in range(n_users))
    return UserMobility(locations, START, "30min", stations, traffic=values, user_ids=ids)


@pytest.fixture(scope="module")
def city_split():
    city = synthesize_city(n_stations=60, seed=0)
    train, held_out = split_stations(city.traffic, 0.2, seed=0)
    return train, held_out


@pytest.fixture(scope="module")
def seasonal_mean_evaluation(city_split):
    train, held_out = city_split
    generated = get("seasonal-mean").fit(train, progress=False).generate(held_out.stations, samples=5, seed=0)
    return evaluate(held_out, generated, train=train)


# -- identical data ------------------------------------------------------------------------------------------


def test_identical_station_traffic_scores_zero_everywhere():
    real = tiny_traffic()
    evaluation = evaluate(real, real)
    assert evaluation.paired
    for channel in real.channels:
        scores = evaluation.metrics[channel]
        for name in (*JSDS, "mae", "rmse", "mae_of_mean", "rmse_of_mean", "daily_periodic_rmse"):
            assert scores[name]["value"] == pytest.approx(0.0, abs=1e-12), (channel, name)
        assert scores["weekly_profile_error"]["value"] == pytest.approx(0.0, abs=1e-12)
        assert scores["acf_distance"]["value"] == pytest.approx(0.0, abs=1e-12)
        assert scores["mae"]["original"] == 0.0
    assert evaluation.memorisation is None


def test_identical_users_score_zero_everywhere():
    users = tiny_users()
    evaluation = evaluate(users, users)
    assert evaluation.kind == "user_mobility"
    assert set(evaluation.metrics["trajectory"]) == {
        "distance",
        "radius",
        "distinct_loc",
        "duration",
        "g_rank",
        "i_rank",
    }
    for group in ("trajectory", "traffic"):
        for name, entry in evaluation.metrics[group].items():
            assert entry["value"] == pytest.approx(0.0, abs=1e-12), (group, name)


# -- the station protocol --------------------------------------------------------------------------------------


def test_seasonal_mean_on_held_out_stations_gives_sensible_paired_scores(
    seasonal_mean_evaluation, city_split
):
    train, held_out = city_split
    evaluation = seasonal_mean_evaluation
    comparison = evaluation.comparison
    assert evaluation.paired and comparison["stations_compared"] == {"real": 12, "generated": 12}
    assert comparison["synthetic"]["samples_per_station"] == 5
    assert comparison["real_periods"] == 2  # two real weeks against one generated week
    assert comparison["normalisation"]["by"] == "maximum of each channel over the training data"
    for channel in held_out.channels:
        scores = evaluation.metrics[channel]
        assert set(scores) >= {"mae", "rmse", "mae_of_mean", "rmse_of_mean", "coverage", *JSDS}
        for name, entry in scores.items():
            assert math.isfinite(entry["value"]), (channel, name)
            if name in JSDS or name == "coverage":
                assert 0.0 <= entry["value"] <= 1.0
            assert ("original" in entry) == METRICS[name].has_units
        maximum = float(train.channel(channel).max())
        assert comparison["normalisation"]["maximum"][channel] == pytest.approx(maximum)
        assert scores["mae"]["original"] == pytest.approx(scores["mae"]["value"] * maximum, rel=1e-6)
        # The sample mean is a better point forecast than one sample.
        assert scores["mae_of_mean"]["value"] <= scores["mae"]["value"]


def test_without_training_data_the_real_maximum_normalises_and_says_so():
    real = tiny_traffic()
    evaluation = evaluate(real, real.select_stations([0, 1, 2]))
    assert evaluation.comparison["normalisation"]["by"] == "maximum of each channel over the real data"
    assert evaluation.comparison["normalisation"]["maximum"]["sms"] == pytest.approx(
        float(real.channel("sms").max())
    )
    assert "left out" in " ".join(evaluation.notes)  # five real stations have no generated series
    assert evaluation.comparison["stations_compared"] == {"real": 3, "generated": 3}


def test_multi_week_real_pairs_every_week_with_the_samples():
    real = tiny_traffic(n=5, weeks=3, channels=("internet",))
    rng = np.random.default_rng(1)
    samples = real.values[:, :WEEK][:, None] * rng.lognormal(0, 0.3, (5, 4, WEEK, 1))
    generated = stack_samples(real.stations, samples, start=START, step=real.step, channels=real.channels)
    evaluation = evaluate(real, generated)
    assert evaluation.comparison["real_periods"] == 3
    assert evaluation.comparison["period"] == "one week"
    scale = real.values.max()
    weeks = real.values[..., 0].reshape(5, 3, WEEK) / scale
    per_week = [metrics.paired_errors(weeks[:, w], samples[..., 0] / scale)["mae"] for w in range(3)]
    # Weeks are equally long, so the MAE over all (week, sample) pairs is the mean of the weekly MAEs.
    assert evaluation.value("internet", "mae") == pytest.approx(np.mean(per_week))
    assert evaluation.aligned.real.shape == (5, 3, WEEK, 1)


def _scores(evaluation) -> dict:
    """Every number of an evaluation's metric table and memorisation summary, by (group, metric, key)."""
    numbers = {
        (group, name, key): value
        for group, entries in evaluation.metrics.items()
        for name, entry in entries.items()
        for key, value in entry.items()
        if isinstance(value, float)
    }
    numbers |= {
        ("memorisation", key, ""): value
        for key, value in (evaluation.memorisation or {}).items()
        if isinstance(value, float)
    }
    return numbers


def _two_weeks_with_samples(seed: int):
    """Two real weeks of 12 stations, the first 6 the training stations, and 3 samples of a week per
    station: paired scoring over two weeks, forecast utility and the memorisation check all run."""
    real = tiny_traffic(n=12, weeks=2, channels=("internet", "sms", "call"), seed=seed)
    rng = np.random.default_rng(seed)
    samples = real.values[:, :WEEK][:, None] * rng.lognormal(0, 0.3, (12, 3, WEEK, 3))
    generated = stack_samples(real.stations, samples, start=START, step=real.step, channels=real.channels)
    return real, real.select_stations(np.arange(6)), generated


def test_metrics_do_not_depend_on_the_chunk_size(monkeypatch):
    """Every metric works a chunk of series at a time, and the memorisation check a block of them: chunks of
    3 series and blocks of 4 reference rows give the numbers of the default sizes."""
    import cellsynth.metrics._chunks as chunks
    import cellsynth.metrics.privacy as privacy

    real, train, generated = _two_weeks_with_samples(seed=4)
    default = evaluate(real, generated, train=train, compat=True)
    assert default.memorisation is not None and "tstr_utility" in default.metrics["sms"]
    monkeypatch.setattr(chunks, "CHUNK_ROWS", 3)
    monkeypatch.setattr(privacy, "_REFERENCE_ROWS", 4)
    monkeypatch.setattr(privacy, "_BLOCK_ENTRIES", 20)
    chunked = evaluate(real, generated, train=train, compat=True)
    assert _scores(chunked) == pytest.approx(_scores(default), rel=1e-12, abs=1e-15)
    assert chunked.notes == default.notes


def test_generated_rows_in_any_order_score_the_same():
    """Samples gathered from wherever their rows are (a copy of them), or a view of the loaded rows when
    they come station by station in the real data's order: the same numbers (the stations in another order,
    so the sums add up in another order)."""
    real, train, generated = _two_weeks_with_samples(seed=5)
    stations = np.random.default_rng(0).permutation(12)
    shuffled = generated.select_stations(
        (3 * stations[:, None] + np.arange(3)).ravel()
    )  # samples kept in order
    in_order, any_order = evaluate(real, generated, train=train), evaluate(real, shuffled, train=train)
    assert _scores(any_order) == pytest.approx(_scores(in_order), rel=1e-12, abs=1e-15)
    order = [
        in_order.aligned.generated_stations.ids.tolist().index(i)
        for i in any_order.aligned.generated_stations.ids
    ]
    for c in range(3):
        np.testing.assert_array_equal(
            any_order.aligned.generated_channel(c), in_order.aligned.generated_channel(c)[order]
        )


def test_the_aligned_channels_are_the_data_divided_by_the_scale():
    real, train, generated = _two_weeks_with_samples(seed=6)
    aligned = evaluate(real, generated, train=train).aligned
    scale = train.values.max(axis=(0, 1)).astype(np.float64)
    np.testing.assert_array_equal(aligned.scale, scale)
    for c in range(3):
        expected = real.values[..., c].astype(np.float64).reshape(12, 2, WEEK) / scale[c]
        np.testing.assert_array_equal(aligned.real_channel(c), expected)
        np.testing.assert_array_equal(aligned.real[..., c], expected)
        np.testing.assert_array_equal(aligned.generated[..., c], aligned.generated_channel(c))


def test_real_steps_beyond_the_last_whole_week_are_left_out_and_said():
    real = tiny_traffic(n=4, weeks=2)
    longer = StationTraffic(
        np.concatenate([real.values, real.values[:, :5]], axis=1), START, "1h", real.channels, real.stations
    )
    evaluation = evaluate(longer, real.slice_steps(0, WEEK))
    assert evaluation.comparison["real_periods"] == 2
    assert any("last 5 step(s)" in note for note in evaluation.notes)


def test_unpaired_generation_gives_distribution_metrics_only():
    real = tiny_traffic(n=8)
    generated = tiny_traffic(n=6, seed=3, prefix="planned")
    evaluation = evaluate(real, generated)
    assert not evaluation.paired
    scores = evaluation.metrics["internet"]
    assert not set(scores) & {"mae", "rmse", "mae_of_mean", "rmse_of_mean", "coverage"}
    assert set(scores) >= {"daily_periodic_rmse", *JSDS}
    # The unpaired daily-cycle RMSE is the quantile-matched one.
    expected = metrics.daily_periodic_rmse(
        real.channel("internet") / real.channel("internet").max(),
        generated.channel("internet") / real.channel("internet").max(),
        paired=False,
    )
    assert scores["daily_periodic_rmse"]["value"] == pytest.approx(expected)


def test_partly_matching_ids_are_compared_as_distributions_with_a_note():
    real = tiny_traffic(n=4)
    mixed = Stations(ids=["bs00", "bs01", "new0", "new1"], features=real.stations.features)
    generated = StationTraffic(real.values, START, "1h", real.channels, mixed)
    evaluation = evaluate(real, generated)
    assert not evaluation.paired
    assert any("Only 2 of the 4 generated station ids" in note for note in evaluation.notes)


def test_channels_may_be_reordered_or_selected():
    real = tiny_traffic()
    swapped = real.select_channels(["sms", "internet"])
    evaluation = evaluate(real, swapped)
    assert evaluation.value("sms", "mae") == 0.0
    only = evaluate(real, real, channels=["sms"])
    assert list(only.metrics) == ["sms"]


def test_compat_adds_the_published_variants_beside_the_default():
    real = tiny_traffic(n=4, channels=("internet",))
    generated = tiny_traffic(n=4, seed=5, channels=("internet",))
    evaluation = evaluate(real, generated, compat=True)
    scores = evaluation.metrics["internet"]
    assert {"value_jsd", "value_jsd_published", "diff_jsd_published", "daily_periodic_rmse_published"} <= set(
        scores
    )
    scale = real.values.max()
    expected = metrics.value_jsd(real.values[..., 0] / scale, generated.values[..., 0] / scale, compat=True)
    assert scores["value_jsd_published"]["value"] == pytest.approx(expected)


def test_an_undefined_metric_is_reported_missing_not_fatal():
    real = tiny_traffic(n=3, channels=("internet",))
    flat = StationTraffic(np.ones_like(real.values), START, "1h", real.channels, real.stations)
    evaluation = evaluate(real, flat)
    entry = evaluation.metrics["internet"]["peak_hour_jsd"]
    assert entry["value"] is None and "flat" in entry["reason"]
    assert any("Peak-hour JSD not computed" in note for note in evaluation.notes)
    assert evaluation.metrics["internet"]["value_jsd"]["value"] is not None


def test_wild_generated_values_are_pointed_out():
    real = tiny_traffic(n=3, channels=("internet",))
    wild = real.values.copy()
    wild[0, 0, 0] = 100 * real.values.max()
    evaluation = evaluate(real, StationTraffic(wild, START, "1h", real.channels, real.stations))
    assert any("one bin above the real range" in note for note in evaluation.notes)


def test_exploded_user_traffic_is_pointed_out_and_cannot_score_a_near_zero_jsd():
    """Two absurd values among otherwise wrong traffic: before the bins' reach was cut, they widened every
    bin until both sets shared the first one and the value JSD read about 0."""
    users = tiny_users(40)
    train, held_out = split_users(users, 0.25, seed=0)
    wrong = np.full_like(held_out.traffic, float(np.median(held_out.traffic[held_out.traffic > 0])))
    exploded = wrong.copy()
    exploded[0, :2] = 1e30
    scores = {}
    for name, traffic in (("wrong", wrong), ("exploded", exploded)):
        generated = UserMobility(held_out.locations, START, "30min", held_out.stations, traffic=traffic)
        evaluation = evaluate(held_out, generated, train=train)
        scores[name] = evaluation.metrics["traffic"]["value_jsd"]["value"]
        assert any("times the largest real value" in n for n in evaluation.notes) == (name == "exploded")
    assert scores["wrong"] > 0.5 and scores["exploded"] > 0.5


def test_a_shifted_generated_week_is_noted():
    real = tiny_traffic(n=3)
    shifted = StationTraffic(real.values, START + pd.Timedelta("2D"), "1h", real.channels, real.stations)
    assert any("shift of 48 h" in note for note in evaluate(real, shifted).notes)


# -- memorisation --------------------------------------------------------------------------------------------


def test_copy_train_is_flagged_and_seasonal_mean_is_not(city_split, seasonal_mean_evaluation):
    train, held_out = city_split
    copies = get("copy-train").fit(train, progress=False).generate(held_out.stations, samples=3, seed=0)
    copied = evaluate(held_out, copies, train=train)
    assert copied.memorisation["flagged"]
    assert copied.memorisation["near_copy_share"] == 1.0
    assert copied.memorisation["verdict"].startswith("Likely copying")
    honest = seasonal_mean_evaluation.memorisation
    assert not honest["flagged"]
    assert honest["verdict"].startswith("No sign of copying")
    # Series are weeks of all channels: 48 training stations x 2 weeks, 12 held-out x 2, 12 x 5 generated.
    assert (honest["train_series"], honest["held_out_series"], honest["generated_series"]) == (96, 24, 60)


def test_memorisation_is_skipped_with_a_reason_when_nothing_is_held_out():
    train = tiny_traffic(n=6)
    evaluation = evaluate(train, train, train=train)  # scored on the training stations themselves
    assert evaluation.memorisation is None
    assert any("no held-out real series" in note for note in evaluation.notes)


# -- users ---------------------------------------------------------------------------------------------------


def test_users_with_traffic_coordinates_and_training_users():
    users = tiny_users(40)
    train, held_out = split_users(users, 0.25, seed=0)
    rng = np.random.default_rng(0)
    moved = held_out.locations.copy()
    moved[rng.random(moved.shape) < 0.2] = 3  # a crowd at one station
    generated = UserMobility(moved, START, "30min", held_out.stations, traffic=held_out.traffic * 2)
    evaluation = evaluate(held_out, generated, train=train)
    assert evaluation.comparison["steps_per_day"] == 48
    assert evaluation.metrics["trajectory"]["distinct_loc"]["value"] > 0
    assert set(evaluation.metrics["traffic"]) >= {"value_jsd", "diff_jsd", "daily_periodic_rmse"}
    assert evaluation.comparison["normalisation"]["by"] == "maximum of the training users' traffic"
    assert evaluation.memorisation is not None and "km" in evaluation.memorisation["series"]


def test_users_without_traffic_have_trajectory_metrics_only():
    users = tiny_users(traffic=False)
    evaluation = evaluate_users(users, tiny_users(traffic=False, seed=1))
    assert list(evaluation.metrics) == ["trajectory"]
    assert len(evaluation.metrics["trajectory"]) == 6
    half = evaluate_users(tiny_users(), users)
    assert "traffic" not in half.metrics
    assert any("Only the real users have traffic" in note for note in half.notes)


def test_users_without_coordinates_skip_the_distance_metrics_and_say_so():
    real = tiny_users(coordinates=False)
    evaluation = evaluate(
        real, tiny_users(coordinates=False, seed=2), train=tiny_users(coordinates=False, seed=3)
    )
    assert set(evaluation.metrics["trajectory"]) == {"distinct_loc", "duration", "g_rank", "i_rank"}
    assert any("no coordinates" in note for note in evaluation.notes)
    # Without positions the memorisation check falls back to the users' traffic.
    assert "traffic" in evaluation.memorisation["series"]


def test_several_real_weeks_of_users_become_user_weeks():
    week = tiny_users(10)
    two_weeks = UserMobility(
        np.concatenate([week.locations, week.locations], axis=1),
        START,
        "30min",
        week.stations,
        traffic=np.concatenate([week.traffic, week.traffic], axis=1),
    )
    evaluation = evaluate(two_weeks, week)
    assert evaluation.comparison["real_periods"] == 2
    assert evaluation.aligned.real_locations.shape == (20, 336)
    assert evaluation.value("trajectory", "i_rank") == pytest.approx(0.0, abs=1e-12)


def test_generated_users_are_matched_to_real_stations_by_id():
    real = tiny_users()
    reordered = real.stations.subset(np.arange(len(real.stations))[::-1])
    flipped = UserMobility(
        len(real.stations) - 1 - real.locations, START, "30min", reordered, traffic=real.traffic
    )
    assert evaluate(real, flipped).value("trajectory", "distance") == pytest.approx(0.0, abs=1e-12)
    strangers = UserMobility(
        real.locations, START, "30min", tiny_stations(8, prefix="x"), traffic=real.traffic
    )
    with pytest.raises(DataError, match="real stations table does not have"):
        evaluate(real, strangers)


# -- errors --------------------------------------------------------------------------------------------------


def test_mismatched_channels_name_both_sides():
    real = tiny_traffic()
    with pytest.raises(
        DataError, match=r"channels \['internet', 'sms'\] but the synthetic data has \['internet'\]"
    ):
        evaluate(real, real.select_channels(["internet"]))
    with pytest.raises(DataError, match="no channel"):
        evaluate(real, real, channels=["call"])
    with pytest.raises(DataError, match="training data has no channel"):
        evaluate(real, real, train=real.select_channels(["internet"]))


def test_mismatched_step_is_an_error():
    real = tiny_traffic()
    half_hourly = StationTraffic(
        np.repeat(real.values, 2, axis=1)[:, :WEEK], START, "30min", real.channels, real.stations
    )
    with pytest.raises(DataError, match="time step of 30 min but the real data has 1 h"):
        evaluate(real, half_hourly)


def test_synthetic_of_the_wrong_kind_is_an_error():
    with pytest.raises(DataError, match="synthetic data is user mobility but station traffic was expected"):
        evaluate(tiny_traffic(), tiny_users())
    with pytest.raises(DataError, match="synthetic data is station traffic but user mobility was expected"):
        evaluate(tiny_users(), tiny_traffic())
    with pytest.raises(DataError, match="training data is user mobility"):
        evaluate(tiny_traffic(), tiny_traffic(), train=tiny_users())
    with pytest.raises(DataError, match="synthetic data is a ndarray"):
        evaluate(tiny_traffic(), np.zeros((3, 168, 2)))


def test_bins_must_be_a_positive_whole_number():
    with pytest.raises(DataError, match="bins must be a positive whole number"):
        evaluate(tiny_traffic(n=2), tiny_traffic(n=2), bins=0)


def test_time_lengths_that_cannot_be_aligned_are_errors():
    real = tiny_traffic(n=3)
    with pytest.raises(DataError, match="real data has 168 steps but each synthetic series has 336"):
        evaluate(real, tiny_traffic(n=3, weeks=2))
    with pytest.raises(DataError, match="not a whole number of days"):
        evaluate(real, real.slice_steps(0, 30))


# -- output --------------------------------------------------------------------------------------------------


def test_metrics_json_round_trips(tmp_path, seasonal_mean_evaluation):
    path = seasonal_mean_evaluation.to_json(tmp_path / "metrics.json")
    loaded = json.loads(path.read_text())
    assert loaded == seasonal_mean_evaluation.to_dict()
    assert loaded["kind"] == "station_traffic"
    assert loaded["metrics"]["internet"]["mae"]["original"] > 0
    assert loaded["metric_definitions"]["mae"]["better"] == "lower is better"
    assert isinstance(loaded["memorisation"]["flagged"], bool)
    assert "dcr_train" not in loaded["memorisation"]  # the arrays stay out of the file
    assert not list(tmp_path.glob(".*tmp*"))


def test_non_finite_numbers_become_null_in_json():
    real = tiny_traffic(n=4)
    evaluation = evaluate(real, real, train=tiny_traffic(n=4, seed=9, prefix="t"))
    # Generated = held-out real: its distance to the held-out set is 0, so the ratio is infinite.
    assert evaluation.memorisation["dcr_ratio"] == math.inf
    assert json.loads(evaluation.to_json_text())["memorisation"]["dcr_ratio"] is None


def test_future_weeks_of_known_stations_are_the_held_out_series():
    """Scored on later weeks of the training stations (the time protocol), the memorisation check compares
    with those real future weeks: replaying training weeks is flagged, fresh draws are not."""
    train, future = split_weeks(tiny_traffic(n=6, weeks=4), 0.25)
    copies = get("copy-train").fit(train, progress=False).generate(future.stations, samples=3, seed=0)
    copied = evaluate(future, copies, train=train)
    assert copied.memorisation["flagged"] and copied.memorisation["held_out_series"] == 6
    assert copied.memorisation["held_out_series_are"] == "real weeks after the training data"
    honest = get("seasonal-mean").fit(train, progress=False).generate(future.stations, samples=3, seed=0)
    assert not evaluate(future, honest, train=train).memorisation["flagged"]
