"""The glue MSTDiff's user-traffic baselines share (users/_trajectory.py), across its two families: both
draw the same Markov-floor trajectories (hour-of-day keys), and only the GANs' traffic depends on them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellsynth.generators import get, get_class
from cellsynth.generators.baselines.users._trajectory import UserTrafficGenerator
from cellsynth.testing import tiny_users


@pytest.fixture(scope="module")
def fitted():
    """``adaptive`` (the GAN family) and ``dit`` (the diffusion family), smoke-fitted on the same users."""
    data = tiny_users()
    return {
        name: get(name, get_class(name).smoke_config()).fit(data, progress=False)
        for name in ("adaptive", "dit")
    }


def test_both_families_draw_the_same_hour_of_day_trajectories(fitted):
    gan, diffusion = fitted["adaptive"], fitted["dit"]
    assert isinstance(gan, UserTrafficGenerator) and isinstance(diffusion, UserTrafficGenerator)
    assert gan.trajectories_.n_hours == diffusion.trajectories_.n_hours == 24
    np.testing.assert_array_equal(gan.generate(5, seed=4).locations, diffusion.generate(5, seed=4).locations)


@pytest.mark.parametrize(("name", "conditions_on_locations"), [("adaptive", True), ("dit", False)])
def test_only_the_gans_traffic_depends_on_the_locations(fitted, name, conditions_on_locations):
    gen = fitted[name]
    locations = torch.from_numpy(tiny_users().locations[:4].astype(np.int64))
    others = locations.flip(0)  # the same users' traffic drawn with other users' trajectories
    options = gen._options({})

    def draw(where: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(0)
        return gen._draw(
            gen.net_, where, generator=generator, device=torch.device("cpu"), progress=False, **options
        )

    assert not torch.equal(locations, others)
    assert torch.equal(draw(locations), draw(others)) is not conditions_on_locations
