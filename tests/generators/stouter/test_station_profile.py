"""STOUTER conditioned on a known station's own mean training week (``extensions.station_profile``): the
leave-one-out reference weeks against their definition, STUNet's profile input, a fit whose stations differ
only in a shape that nothing but their past weeks tells, new sites without a profile, one-week data, the
saved model and the privacy refusal."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellsynth.data.model import StationTraffic
from cellsynth.data.samples import split_samples
from cellsynth.errors import ConfigError
from cellsynth.generators import get, load
from cellsynth.generators.stouter import StouterConfig
from cellsynth.generators.stouter.profiles import week_profiles
from cellsynth.nn.stunet import STUNet
from tests.generators.stouter.test_generator import CHANNELS, START, TINY, tiny_stations, tiny_traffic

PROFILE = TINY | {"use_spatial": False, "extensions": TINY["extensions"] | {"station_profile": True}}


def test_reference_weeks_are_the_mean_of_the_other_weeks():
    rng = np.random.default_rng(0)
    weeks = rng.normal(size=(3, 4, 6, 2))  # [N, W, L, C]
    profiles, references = week_profiles(weeks)
    np.testing.assert_allclose(profiles, weeks.mean(1).transpose(0, 2, 1), rtol=1e-6)
    references = references.reshape(3, 4, 3, 6)
    for n in range(3):
        for j in range(4):
            others = np.delete(weeks[n], j, axis=0).mean(0).T  # [C, L]
            np.testing.assert_allclose(references[n, j, :2], others, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(references[:, :, 2], 1.0)  # the mask: a reference is given
    # One week per station: nothing to leave one out of.
    profiles, references = week_profiles(weeks[:, :1])
    assert profiles is None and references.shape == (3, 3, 6) and not references.any()


def test_stunet_reads_the_profile_and_checks_its_shape():
    torch.manual_seed(0)
    net = STUNet(2, channels=8, channel_mults=(1, 2), context_dim=8, temporal_dim=4, spatial_dim=4,
                 attention_heads=0, profile_channels=3).eval()  # fmt: skip
    x, t = torch.randn(2, 2, 168), torch.tensor([5, 5])
    fs, ft = torch.randn(2, 4), torch.randn(168, 4)
    one, other = torch.randn(2, 3, 168), torch.randn(2, 3, 168)
    with torch.no_grad():
        assert not torch.allclose(net(x, t, fs, ft, one), net(x, t, fs, ft, other))
    with pytest.raises(ValueError, match=r"expects a profile \[2, 3, 168\], got None"):
        net(x, t, fs, ft)
    with pytest.raises(ValueError, match=r"expects a profile \[2, 3, 168\], got \(2, 2, 168\)"):
        net(x, t, fs, ft, one[:, :2])


def shifted_traffic(n: int = 12, weeks: int = 3, seed: int = 0) -> StationTraffic:
    """Stations whose daily peak is at 14:00 or, for a random half, at 02:00: nothing but their own weeks
    says which (no F_s, and the features are drawn apart from it)."""
    rng = np.random.default_rng(seed)
    late = rng.permutation(np.arange(n) % 2).astype(bool)
    hours = np.arange(168 * weeks)
    phase = np.where(late, 12.0, 0.0)[:, None]
    daily = 1.5 + np.sin(2 * np.pi * (hours[None] % 24 - 8 - phase) / 24)  # [N, T]
    values = daily[..., None] * np.array([10.0, 2.0]) * rng.lognormal(0, 0.1, (n, len(hours), 2))
    return StationTraffic(values, START, "1h", CHANNELS, tiny_stations(n, seed))


def mean_day(values: np.ndarray) -> np.ndarray:
    """``[..., T, C]`` -> the mean day of channel 0 ``[24]``."""
    return values[..., 0].reshape(-1, 24).mean(0)


def test_known_stations_keep_a_shape_only_their_past_weeks_tell(tmp_path):
    torch.set_num_threads(1)
    data = shifted_traffic()
    gen = get("stouter", PROFILE).fit(data, progress=False)
    assert gen.station_profiles_.shape == (12, 2, 168)
    _, values = split_samples(gen.generate(data, samples=3, seed=0))  # [N, K, T, C]
    own = [np.corrcoef(mean_day(values[n]), mean_day(data.values[n]))[0, 1] for n in range(12)]
    # Without the profile nothing tells a station's phase apart: about half would come out the wrong way.
    assert sum(r > 0.5 for r in own) >= 11, own
    # The saved model keeps the profiles.
    gen.save(tmp_path / "model")
    again = load(tmp_path / "model")
    np.testing.assert_array_equal(again.station_profiles_, gen.station_profiles_)
    np.testing.assert_array_equal(
        again.generate(data, samples=2, seed=1).values, gen.generate(data, samples=2, seed=1).values
    )
    # A new site has no profile: the mask is 0, and it is still generated.
    new = StationTraffic(data.values[:2, :168], START, "1h", CHANNELS, tiny_stations(2, 7, prefix="new"))
    target = gen._resolve_target(new.stations, 0, gen.stations_)
    assert not gen._target_profiles(target, 2, 168).any()
    out = gen.generate(new.stations, samples=2, seed=0)
    assert out.values.shape == (4, 168, 2) and np.isfinite(out.values).all()


def test_one_training_week_warns_and_gives_no_profile():
    torch.set_num_threads(1)
    config = PROFILE | {"epochs": 1}
    with pytest.warns(UserWarning, match="station_profile needs at least two training weeks"):
        gen = get("stouter", config).fit(tiny_traffic(weeks=1), progress=False)
    assert gen.station_profiles_ is None
    target = gen._resolve_target(gen.stations_, 0, gen.stations_)
    assert not gen._target_profiles(target, 2, 168).any()  # known, but nothing to give: the mask is 0


def test_auto_is_the_plain_model_on_one_week_and_the_profile_on_several(tmp_path):
    """``station_profile: "auto"`` (the recommended preset's): with one training week per station the network,
    the saved model and every draw are those of ``false``, without a warning; with two or more it is ``true``."""
    import warnings

    torch.set_num_threads(1)
    auto = PROFILE | {"epochs": 2, "extensions": PROFILE["extensions"] | {"station_profile": "auto"}}
    off = auto | {"extensions": auto["extensions"] | {"station_profile": False}}
    one_week = tiny_traffic(weeks=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        plain = get("stouter", auto).fit(one_week, progress=False)
    assert not plain.profile_ and plain.stunet_.profile_channels == 0
    reference = get("stouter", off).fit(one_week, progress=False)
    np.testing.assert_array_equal(
        plain.generate(one_week, samples=2, seed=3).values,
        reference.generate(one_week, samples=2, seed=3).values,
    )
    plain.save(tmp_path / "plain")
    assert not load(tmp_path / "plain").profile_
    several = get("stouter", auto).fit(shifted_traffic(weeks=2), progress=False)
    assert several.profile_ and several.stunet_.profile_channels == 3
    assert several.station_profiles_.shape == (12, 2, 168)
    several.save(tmp_path / "several")
    again = load(tmp_path / "several")
    assert again.profile_ and again.stunet_.profile_channels == 3
    assert get("stouter", TINY, preset="recommended").config.extensions.station_profile == "auto"


def test_a_private_model_keeps_no_profile():
    with pytest.raises(ConfigError, match="station_profile keeps each station's mean real week"):
        get(
            "stouter",
            {"privacy": {"epsilon": 5.0}, "extensions": {"level_model": "none", "station_profile": True}},
        )
    # What `cellsynth fit stouter --epsilon` sets leaves it off.
    assert StouterConfig.private_settings["extensions"]["station_profile"] is False


def test_the_profile_widens_only_stunets_input():
    gen = get("stouter", PROFILE)
    on, off = gen._stunet(2, profile=True), gen._stunet(2, profile=False)
    assert on.profile_channels == 3 and off.profile_channels == 0
    assert on.input.in_channels == off.input.in_channels + 3  # the reference week of both channels, its mask
    assert get("stouter", TINY, preset="paper").config.extensions.station_profile is False
