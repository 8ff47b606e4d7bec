"""write_split: the two datasets of a split, written atomically under one marked directory."""

from __future__ import annotations

import numpy as np
import pytest

from cellsynth.data import read
from cellsynth.data.split import write_split
from cellsynth.data.synthetic import synthesize_city
from cellsynth.errors import OutputError


@pytest.fixture(scope="module")
def city():
    return synthesize_city(n_stations=20, n_users=10, weeks=1, seed=0)


@pytest.mark.parametrize("kind", ["traffic", "users"])
def test_the_split_is_a_partition_and_reads_back(city, tmp_path, kind):
    data = getattr(city, kind)
    train_dir, held_dir = write_split(data, tmp_path / "split", 0.25, seed=1)
    train, held = read(train_dir), read(held_dir)
    if kind == "traffic":
        ids = [*train.stations.ids, *held.stations.ids]
        assert sorted(ids) == sorted(data.stations.ids)
        assert held.n_stations == 5
    else:
        assert train.n_users + held.n_users == data.n_users and held.n_users == 2
        np.testing.assert_array_equal(
            np.vstack([train.locations, held.locations]).sum(), data.locations.sum()
        )


def test_a_rerun_replaces_an_earlier_split_and_refuses_other_directories(city, tmp_path):
    write_split(city.traffic, tmp_path / "split", seed=0)
    write_split(city.traffic, tmp_path / "split", seed=1)
    assert (tmp_path / "split" / "held-out").is_dir()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError):
        write_split(city.traffic, mine)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_split_weeks_keeps_the_latest_whole_weeks_and_holds_out_the_last():
    import pandas as pd

    from cellsynth.data.split import split_weeks
    from cellsynth.errors import DataError
    from cellsynth.testing import START, tiny_traffic

    data = tiny_traffic(n=3, weeks=5)
    extra = data.slice_steps(30, data.n_steps)  # 4 whole weeks and 138 steps before them
    train, held_out = split_weeks(extra, 0.3)  # round(4 * 0.3) = 1 week held out
    assert (train.n_steps, held_out.n_steps) == (3 * 168, 168)
    assert train.start == START + pd.Timedelta("7D") and held_out.start == train.end == START + pd.Timedelta(
        "28D"
    )
    np.testing.assert_array_equal(held_out.values, data.values[:, -168:])
    assert train.stations.equals(data.stations) and held_out.stations.equals(data.stations)
    assert split_weeks(data, 0.9)[0].n_steps == 168  # at least one training week
    with pytest.raises(DataError, match="at least 2 whole weeks .*split by station instead"):
        split_weeks(data.slice_steps(0, 300), 0.2)
