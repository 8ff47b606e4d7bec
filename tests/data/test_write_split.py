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
