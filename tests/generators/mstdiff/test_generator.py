"""MSTDiff end to end on tiny data: the joint clock of the two diffusions, the strided discrete chain, the
three loss terms, the modes (knowledge graph, geography, uniform, traffic only, trajectory only), seeds,
save/load, and the points where the authors' code departs from the paper."""

from __future__ import annotations

import copy
import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import cellsynth
from cellsynth.data import Stations, UserMobility
from cellsynth.data.knowledge import KnowledgeGraph
from cellsynth.diffusion import gaussian
from cellsynth.diffusion.discrete import GraphDiffusion
from cellsynth.diffusion.gaussian import clip_predicted_x0
from cellsynth.errors import ConfigError, DataError
from cellsynth.generators import get
from cellsynth.generators.mstdiff.anchors import top_locations
from cellsynth.generators.mstdiff.calibration import zero_threshold
from cellsynth.generators.mstdiff.generator import MSTDiffGenerator
from cellsynth.generators.mstdiff.sampler import (
    TrajectoryOptions,
    discrete_step,
    gaussian_steps_of,
    spaced_steps,
    strided_chain,
    trajectory_substeps_grid,
)
from cellsynth.generators.presets import PRESET_DIR
from cellsynth.graphs.transitions import geographic_knn_graph
from tests.conftest import REPO_ROOT, assert_config_holds

START = pd.Timestamp("2026-01-05", tz="Europe/Rome")
SMOKE = MSTDiffGenerator.smoke_config()
#: a small fit that learns a two-station week (about a second a fit): short chains, 100 epochs, uniform transitions
SMALL_FIT = SMOKE | {"gaussian_steps": 12, "discrete_steps": 6, "epochs": 100, "lr": 3e-3, "kg": False}
#: most tests here sample with other samplers than the calibration's on purpose (the chain's mechanics);
#: test_the_calibration_belongs_to_its_sampler checks that warning
pytestmark = pytest.mark.filterwarnings("ignore:mstdiff. the traffic calibration:UserWarning")


def with_section(config, section: str, **values):
    """``config`` with ``values`` set in its section ``section`` (a test's change to a fitted model)."""
    return config.model_copy(update={section: getattr(config, section).model_copy(update=values)})


def stations(n: int = 6) -> Stations:
    rng = np.random.default_rng(0)
    return Stations(
        [f"bs{i:02d}" for i in range(n)], 45.46 + rng.normal(0, 0.01, n), 9.19 + rng.normal(0, 0.01, n)
    )


def users(n_users: int = 12, steps: int = 48, traffic: bool = True) -> UserMobility:
    rng = np.random.default_rng(0)
    home, work = rng.integers(0, 6, n_users), rng.integers(0, 6, n_users)
    at_work = (np.arange(steps) % 48 >= 18) & (np.arange(steps) % 48 < 34)
    loc = np.where(at_work[None, :], work[:, None], home[:, None])
    x = rng.lognormal(0, 1, (n_users, steps)) * (rng.random((n_users, steps)) < 0.4) if traffic else None
    return UserMobility(loc, START, "30min", stations(), traffic=x)


def knowledge_graph() -> KnowledgeGraph:
    heads, rels, tails = [], [], []
    for i in range(6):
        heads += [f"station:bs{i:02d}", f"station:bs{i:02d}", f"station:bs{i:02d}"]
        rels += ["BaseLocateAt", "BaseBelongTo", "BaseBorderBy"]
        tails += [f"region:{i // 2}", f"area:{i // 3}", f"station:bs{(i + 1) % 6:02d}"]
    return KnowledgeGraph(
        np.array(heads, dtype=object), np.array(rels, dtype=object), np.array(tails, dtype=object)
    )


def test_discrete_step_is_the_same_fraction_of_the_chain():
    t = torch.arange(200)
    s = discrete_step(t, 100, 200)
    assert int(s.min()) == 1 and int(s.max()) == 100 and (torch.diff(s) >= 0).all()
    assert torch.equal(torch.bincount(s)[1:], torch.full((100,), 2))  # uniform on 1..S when S divides T_g
    assert discrete_step(torch.tensor([0, 6]), 3, 7).tolist() == [1, 3]


@settings(max_examples=40)
@given(gaussian=st.integers(1, 300), ratio=st.floats(0.01, 1.0))
def test_gaussian_steps_of_is_the_exact_range_of_each_discrete_step(gaussian, ratio):
    discrete = max(1, int(gaussian * ratio))
    t = torch.arange(gaussian)
    s_of_t = discrete_step(t, discrete, gaussian)
    first, last = gaussian_steps_of(torch.arange(1, discrete + 1), discrete, gaussian)
    for s in range(1, discrete + 1):
        mapped = t[s_of_t == s]
        assert int(mapped.min()) == int(first[s - 1]) and int(mapped.max()) == int(last[s - 1])


def test_clipping_the_predicted_x0():
    x0 = torch.tensor([0.5, 3.0, -4.0])
    eps = torch.tensor([0.1, -0.2, 0.3])
    abar = 0.3
    x_t = abar**0.5 * x0 + (1 - abar) ** 0.5 * eps
    clipped = clip_predicted_x0(x_t, eps, abar, torch.tensor(-1.0), torch.tensor(2.0))
    implied = (x_t - (1 - abar) ** 0.5 * clipped) / abar**0.5
    assert torch.allclose(implied, torch.tensor([0.5, 2.0, -1.0]), atol=1e-6)
    assert torch.isclose(clipped[0], eps[0], atol=1e-6)  # inside the range: unchanged


def test_strided_chain_is_the_exact_multi_step_posterior():
    rate = geographic_knn_graph(stations().lat, stations().lon, 3).rate
    g = GraphDiffusion(rate, steps=6)
    sub = strided_chain(g, [2, 5, 6])
    assert strided_chain(g, list(range(1, 7))) is g
    # Step 2 of the strided chain goes from s = 5 to s = 2: q(l_2 | l_5, l_0) ∝ Q_{2->5}[l_2, l_5] Q-bar_2[l_0, l_2].
    q_25 = scipy.linalg.expm((g.abar[5] - g.abar[2]) * rate)
    qbar_2 = scipy.linalg.expm(g.abar[2] * rate)
    l0, l5 = torch.tensor([1]), torch.tensor([4])
    expected = q_25[:, 4] * qbar_2[1]
    expected /= expected.sum()
    np.testing.assert_allclose(sub.posterior_probs(l5, l0, 2)[0].numpy(), expected, atol=1e-10)
    # With p_theta certain of l_0 the model's step is that posterior (Algorithm 2's marginalisation).
    logits = torch.full((1, 6), -1e4, dtype=torch.float64)
    logits[0, 1] = 0.0
    np.testing.assert_allclose(sub.reverse_probs(l5, logits, 2)[0].numpy(), expected, atol=1e-8)


def test_posterior_depends_on_l_s_and_schedule_reaches_uniform():
    """Two of the authors' departures: their "posterior" ignored l_s, and their schedule stopped at
    alpha-bar = 1.97, far from the uniform prior on a sparse graph."""
    rate = geographic_knn_graph(stations().lat, stations().lon, 2).rate
    g = GraphDiffusion(rate, steps=10, tol=0.05)
    l0 = torch.tensor([0, 0])
    post = g.posterior_probs(torch.tensor([0, 3]), l0, 5)
    assert not torch.allclose(post[0], post[1])
    assert g.tv_from_uniform() <= 0.05
    authors = GraphDiffusion(rate, abar=np.linspace(0.0197, 1.97, 10))
    assert authors.tv_from_uniform() > 0.2


def test_joint_fit_with_knowledge_graph_generate_and_save_load(tmp_path):
    data = users()
    gen = get("mstdiff", SMOKE).fit(
        data, progress=False, checkpoint_dir=tmp_path / "run", knowledge_graph=knowledge_graph()
    )
    assert gen.graph_source_ == "knowledge_graph"
    assert {"vqvae", "tucker", "denoiser"} <= {p.name for p in (tmp_path / "run" / "checkpoints").iterdir()}
    assert set(gen.history_[0]) == {"mse", "kl", "ce"}
    for sampler, steps in (("ddpm", None), ("ddim", 2)):
        out = gen.generate(7, seed=3, sampler=sampler, steps=steps)
        assert out.n_users == 7 and out.n_steps == 48 and (out.traffic >= 0).all()
        assert out.equals(gen.generate(7, seed=3, sampler=sampler, steps=steps))
    small_batches = get("mstdiff", SMOKE | {"sampling": {"batch_size": 3}})
    small_batches.fit(
        data, progress=False, checkpoint_dir=tmp_path / "run2", knowledge_graph=knowledge_graph()
    )
    assert small_batches.generate(7, seed=0).n_users == 7
    gen.save(tmp_path / "m")
    assert (
        cellsynth.load(tmp_path / "m")
        .generate(5, seed=1, sampler="ddim", steps=3)
        .equals(gen.generate(5, seed=1, sampler="ddim", steps=3))
    )
    with pytest.raises(ConfigError, match="different config"):
        get("mstdiff", SMOKE | {"seed": 1}).fit(
            data, progress=False, checkpoint_dir=tmp_path / "run", knowledge_graph=knowledge_graph()
        )
    with pytest.raises(ConfigError, match="choose one of ddpm, ddim"):
        gen.generate(3, sampler="dpm-solver")


class _Oracle(torch.nn.Module):
    """A perfect denoiser of one known user: eps from the true x_0, logits certain of the true l_0."""

    def __init__(self, x0: torch.Tensor, l0: torch.Tensor, alphas_cumprod: torch.Tensor, n: int) -> None:
        super().__init__()
        self.x0, self.l0, self.abar, self.n = x0, l0, alphas_cumprod, n

    def forward(self, x_t, l_s, t, s):
        a = self.abar[t].double().unsqueeze(1)
        eps = ((x_t.double() - a.sqrt() * self.x0) / (1 - a).sqrt()).float()
        logits = 60.0 * torch.nn.functional.one_hot(self.l0, self.n).float().expand(len(l_s), -1, -1)
        return eps, logits


def test_fit_calibrates_generated_traffic_onto_the_training_values(tmp_path):
    data = users(n_users=16)
    real = data.traffic
    gen = get("mstdiff", SMOKE | {"calibration": {"users": 32}}).fit(data, progress=False)
    cal = gen.calibration_
    assert cal["zero_share"] == pytest.approx(float((real == 0).mean()))
    assert cal["raw_zero_share"] < cal["zero_share"] and cal["zero_threshold"] > 0  # too few zeros, raw
    # the calibration draw itself, repeated: its calibrated values follow the training distribution
    out = gen.generate(32, seed=0, sampler="ddim")
    raw = gen.calibrated(
        gen._draw(32, seed=0, sampler="ddim", steps=None, options=TrajectoryOptions())[0], "none"
    )
    np.testing.assert_array_equal(gen.calibrated(raw), out.traffic)
    p = [0.5, 0.7, 0.8, 0.9, 0.95]
    np.testing.assert_allclose(np.quantile(out.traffic, p), np.quantile(real, p), rtol=0.05, atol=1e-6)
    zeros = gen.calibrated(raw, "zeros")
    assert abs(float((zeros == 0).mean()) - cal["zero_share"]) < 0.01
    assert ((zeros == raw) | (zeros == 0)).all()  # the threshold only zeroes values
    assert any("quantile mapping" in line for line in gen.fit_notes())
    # moments: the calibration draw's wavelet coefficients get the training means and spreads (up to the
    # clipping of negative traffic), so its mean week is nearer the training one's; the marginal is mapped
    moments = gen.calibrated(raw, "moments")
    quantiles = gen.calibrated(raw, "quantiles")

    def off_mean_week(x):
        return np.abs(np.log1p(x).mean(0) - np.log1p(real).mean(0)).mean()

    assert off_mean_week(moments) < 0.5 * off_mean_week(quantiles)
    np.testing.assert_allclose(np.quantile(moments, p), np.quantile(real, p), rtol=0.05, atol=1e-6)
    gen.save(tmp_path / "m")
    loaded = cellsynth.load(tmp_path / "m")
    assert loaded.generate(5, seed=2).equals(gen.generate(5, seed=2))
    np.testing.assert_array_equal(loaded.calibrated(raw, "moments"), moments)
    older = copy.copy(gen)
    older.calibration_ = {k: v for k, v in cal.items() if not k.startswith("moment")}
    with pytest.raises(ConfigError, match="calibrated before calibration 'moments' existed"):
        older.calibrated(raw, "moments")
    # codebook usage is reported per band, and survives save/load
    usage = next(line for line in gen.fit_notes() if line.startswith("VQ-VAE codebooks"))
    assert (
        all(band in usage for band in ("cA3", "cD3", "cD2", "cD1")) and loaded.fit_notes() == gen.fit_notes()
    )
    off = get("mstdiff", SMOKE | {"calibration": {"mode": "none"}}).fit(data, progress=False)
    assert off.calibration_ is None and not any("exactly 0" in line for line in off.fit_notes())
    with pytest.raises(ConfigError, match="calibration mode must be one of"):
        gen.calibrated(raw, "bogus")
    with pytest.raises(DataError, match="needs a model and data with traffic"):
        gen.calibrate(users(traffic=False))


def test_the_calibration_belongs_to_its_sampler(tmp_path):
    """The maps are fitted on draws of the config's sampler; another sampler's draws warn until the model is
    calibrated for it. Models saved before the sampler was recorded were calibrated with DDIM-50."""
    data = users(n_users=16)
    gen = get(
        "mstdiff", SMOKE | {"gaussian_steps": 8, "sampling": {"steps": 4}, "calibration": {"users": 16}}
    )
    gen.fit(data, progress=False)
    assert (gen.calibration_["sampler"], gen.calibration_["steps"]) == ("ddim", 4)
    assert "DDIM-4" in next(line for line in gen.fit_notes() if "exactly 0" in line)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        default = gen.generate(4, seed=0)  # the config's sampler: the calibration's
        assert default.equals(gen.generate(4, seed=0, sampler="ddim", steps=4))
    for sampler, steps, label in (("ddim", 2, "DDIM-2"), ("ddpm", None, "DDPM-8")):
        with pytest.warns(UserWarning, match=f"fitted on DDIM-4 draws; these are {label}"):
            gen.generate(4, seed=0, sampler=sampler, steps=steps)
    uncalibrated = copy.copy(gen)
    uncalibrated.config = with_section(gen.config, "calibration", mode="none")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        uncalibrated.generate(4, seed=0, sampler="ddpm")  # raw traffic: nothing to warn about
    gen.calibrate(data, sampler="ddpm")
    assert (gen.calibration_["sampler"], gen.calibration_["steps"]) == ("ddpm", 8)
    gen.save(tmp_path / "m")
    loaded = cellsynth.load(tmp_path / "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded.generate(4, seed=0, sampler="ddpm")
    with pytest.warns(UserWarning, match="fitted on DDPM-8 draws; these are DDIM-4"):
        loaded.generate(4, seed=0)
    older = copy.copy(gen)
    older.calibration_ = {k: v for k, v in gen.calibration_.items() if k not in ("sampler", "steps")}
    with pytest.warns(UserWarning, match="fitted on DDIM-8 draws"):  # DDIM's 50 steps, capped at T_g = 8
        older.generate(4, seed=0, sampler="ddpm")
    with pytest.raises(ConfigError, match="sampling.steps .9. > gaussian_steps .8."):
        get("mstdiff", SMOKE | {"gaussian_steps": 8, "sampling": {"steps": 9}})


def test_strided_chain_at_real_steps_uses_the_interpolated_schedule():
    rate = geographic_knn_graph(stations().lat, stations().lon, 3).rate
    g = GraphDiffusion(rate, steps=6)
    sub = strided_chain(g, [0.5, 2, 3.5, 6])
    np.testing.assert_array_equal(sub.abar, np.concatenate([[0.0], g.abar_at([0.5, 2, 3.5, 6])]))
    assert sub.eigenvectors is g.eigenvectors  # shares the eigendecomposition
    # its step 3 goes from s = 3.5 to s = 2: Q_{2 -> 3.5} = expm((abar(3.5) - abar(2)) R)
    np.testing.assert_allclose(
        sub.transition_matrix(3, cumulative=False),
        scipy.linalg.expm((g.abar_at(3.5) - g.abar[2]) * rate),
        atol=1e-12,
    )


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200), st.data(), st.floats(1.0, 4.0))
def test_spaced_steps_start_at_the_prior_and_move_every_step(discrete_steps, data, power):
    n = data.draw(st.integers(1, discrete_steps))
    s = spaced_steps(n, discrete_steps, power)
    assert len(s) == n and s[0] == discrete_steps and s[-1] >= 1
    assert all(a > b for a, b in itertools.pairwise(s))
    even = spaced_steps(n, discrete_steps, 1.0)
    assert all(a <= b for a, b in zip(s, even))  # a power above 1 only moves steps towards the data


def test_spaced_steps_formula_and_the_even_stride():
    # p = 1 with n dividing S: DDIM's trailing stride of the discrete chain, s_i = S - i S / n
    assert spaced_steps(50, 100, 1.0) == list(range(100, 0, -2))
    assert spaced_steps(4, 8, 1.0) == [8, 6, 4, 2]
    # p = 2: ceil(100 ((5 - i) / 5)^2) = 100, 64, 36, 16, 4
    assert spaced_steps(5, 100, 2.0) == [100, 64, 36, 16, 4]
    # steps that would round onto each other become single steps: ceil(10 (k/4)^3) = 10, 5, 2, 1
    assert spaced_steps(4, 10, 3.0) == [10, 5, 2, 1]
    assert spaced_steps(6, 10, 4.0) == [10, 5, 4, 3, 2, 1]
    with pytest.raises(ConfigError, match="steps <= discrete_steps"):
        spaced_steps(11, 10, 2.0)


def test_step_spacing_visits_the_spaced_steps_and_belongs_to_the_calibration(fitted_12_6):
    """The chain visits :func:`spaced_steps` (each Gaussian step the last with that ``s``), the calibration
    records the spacing it was drawn with, and another spacing warns as another sampler does."""
    gen = copy.copy(fitted_12_6)
    gen.config = with_section(gen.config, "sampling", step_spacing=2.0)
    seen = []
    gen.generate(2, seed=0, sampler="ddim", steps=4, on_trajectory_step=lambda a, b, *_: seen.append((a, b)))
    assert seen == [(6, 4), (4, 2), (2, 1), (1, 0)]  # ceil(6 (k/4)^2) = 6, 4 (3.4), 2 (1.5), 1 (0.4)
    data = users()
    gen.calibrate(data, sampler="ddim", steps=4)
    assert gen.calibration_["step_spacing"] == 2.0
    with pytest.warns(
        UserWarning, match=r"calibrate\(training data, sampler='ddim', steps=4, step_spacing=3\)"
    ):
        gen.generate(2, seed=0, sampler="ddim", steps=4, step_spacing=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        gen.generate(2, seed=0, sampler="ddim", steps=4)
    gen.config = with_section(gen.config, "sampling", step_spacing=1.0)
    with pytest.warns(UserWarning, match="fitted on DDIM-4 spaced 2 draws; these are DDIM-4,"):
        gen.generate(2, seed=0, sampler="ddim", steps=4)
    with warnings.catch_warnings():  # given to generate, as the config's
        warnings.simplefilter("error", UserWarning)
        spaced = gen.generate(2, seed=0, sampler="ddim", steps=4, step_spacing=2)
    gen.config = with_section(gen.config, "sampling", step_spacing=2.0)
    assert spaced.equals(gen.generate(2, seed=0, sampler="ddim", steps=4))
    gen.calibrate(data, sampler="ddim", steps=4, step_spacing=1)  # given to calibrate, not the config's
    assert gen.calibration_["step_spacing"] == 1.0
    for bad in (0.5, 5, True, "2"):
        with pytest.raises(ConfigError, match=r"step_spacing must be a number in \[1, 4\]"):
            gen.generate(2, step_spacing=bad)
    with pytest.raises(ConfigError, match="steps <= discrete_steps"):
        gen.generate(2, seed=0, sampler="ddpm")  # 12 Gaussian steps, 6 discrete ones
    with pytest.raises(
        ConfigError, match=r"step_spacing needs at most discrete_steps .6. sampling steps, got 12 .ddim."
    ):
        get("mstdiff", SMOKE | {"gaussian_steps": 12, "discrete_steps": 6, "sampling": {"step_spacing": 2}})


def test_trajectory_substeps_grid():
    assert trajectory_substeps_grid([6, 4, 2], 1) == [[6], [4], [2]]
    assert trajectory_substeps_grid([6, 4, 2], 2) == [[6, 5], [4, 3], [2, 1]]
    assert trajectory_substeps_grid([3, 3, 1], 4) == [[], [3, 2.5, 2, 1.5], [1, 0.75, 0.5, 0.25]]
    grid = trajectory_substeps_grid([4, 2], 3)
    assert grid[0][1] == pytest.approx(4 - 2 / 3) and all(isinstance(v, float) for v in grid[0][1:])


@pytest.fixture(scope="module")
def fitted_12_6():
    return get("mstdiff", SMOKE | {"gaussian_steps": 12, "discrete_steps": 6}).fit(users(), progress=False)


@pytest.mark.parametrize(
    ("sampler", "steps", "substeps", "spacing"),
    [
        ("ddpm", None, 1, 1.0),
        ("ddim", 2, 1, 1.0),
        ("ddim", 4, 1, 1.0),
        ("ddim", 2, 3, 1.0),
        ("ddim", 4, 1, 2.0),
        ("ddim", 3, 2, 3.0),
        ("ddpm", 5, 1, 2.0),
    ],
)
def test_algorithm_2_with_a_perfect_denoiser_returns_its_user(fitted_12_6, sampler, steps, substeps, spacing):
    """The joint reverse chain's bookkeeping (Gaussian timesteps, matching discrete steps, strided chain,
    trajectory sub-steps, spaced steps): with a denoiser that knows the answer, every generated user is that
    user, for every sampler."""
    data = users()
    gen = copy.copy(fitted_12_6)
    gen.config = with_section(gen.config, "sampling", step_spacing=spacing)
    x0 = torch.from_numpy(gen.wavelets_.transform(data.traffic[:1])).double()
    l0 = torch.from_numpy(np.array(data.locations[0]))
    gen.net_ = _Oracle(x0, l0, gen.gauss_.alphas_cumprod, 6)
    gen.calibration_ = None  # fitted for the trained net, not the oracle: it would remap the values
    out = gen.generate(3, seed=0, sampler=sampler, steps=steps, trajectory_substeps=substeps)
    assert (out.locations == data.locations[0]).all()
    np.testing.assert_allclose(out.traffic, np.repeat(data.traffic[:1], 3, 0), rtol=1e-4, atol=1e-4)


def test_corrector_rounds_keep_a_perfect_denoisers_user_and_call_it_once_more_per_round(fitted_12_6):
    data = users()
    gen = copy.copy(fitted_12_6)
    x0 = torch.from_numpy(gen.wavelets_.transform(data.traffic[:1])).double()
    l0 = torch.from_numpy(np.array(data.locations[0]))
    oracle = _Oracle(x0, l0, gen.gauss_.alphas_cumprod, 6)
    calls = []
    oracle.register_forward_hook(lambda *_: calls.append(1))
    gen.net_, gen.calibration_ = oracle, None
    gen.generate(2, seed=0, sampler="ddim", steps=3)
    n_plain = len(calls)
    out = gen.generate(2, seed=0, sampler="ddim", steps=3, corrector_rounds=2)
    assert (out.locations == data.locations[0]).all()
    assert len(calls) - n_plain == 3 * n_plain  # each reverse step is followed by 2 rounds
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="corrector_rounds must be an integer >= 0"):
            gen.generate(2, corrector_rounds=bad)


def test_trajectory_step_callback_sees_the_chain_in_order(fitted_12_6):
    """The callback gets every visited step once per batch, from the prior's end down to 0, with the sampled
    tokens and the unscaled logits; its last tokens are the generated locations."""
    gen = copy.copy(fitted_12_6)
    gen.config = with_section(gen.config, "sampling", batch_size=4)
    gen.net_ = _Prefers()
    seen = []

    def record(s, s_next, loc, logits):
        seen.append((s, s_next, loc.clone(), logits.clone()))

    out = gen.generate(6, seed=0, sampler="ddim", steps=3, temperature=0.5, on_trajectory_step=record)
    batches = [seen[: len(seen) // 2], seen[len(seen) // 2 :]]
    for batch, n_users in zip(batches, (4, 2)):
        steps = [(s, s_next) for s, s_next, _, _ in batch]
        assert steps[-1][1] == 0 and all(a[1] == b[0] for a, b in itertools.pairwise(steps))
        assert all(s > s_next for s, s_next in steps)
        assert all(
            loc.shape == (n_users, 48) and logits.shape == (n_users, 48, 6) for *_, loc, logits in batch
        )
        assert all((logits[..., 0] == 2.0).all() for *_, logits in batch)  # before the temperature
    final = torch.cat([batches[0][-1][2], batches[1][-1][2]]).numpy()
    np.testing.assert_array_equal(final, out.locations)
    assert gen.generate(6, seed=0, sampler="ddim", steps=3, temperature=0.5).equals(out)  # it changes nothing


def test_trajectory_substeps_walk_the_finer_chain_in_order(fitted_12_6):
    """``trajectory_substeps=k``: k reverse steps per step of the plain chain, at the real-valued steps of
    ``trajectory_substeps_grid``, each after a denoiser call at that step; traffic steps as before."""
    gen = copy.copy(fitted_12_6)
    gen.config = with_section(gen.config, "calibration", mode="none")
    seen_s = []
    gen.net_ = _Prefers(record=seen_s)
    plain, fine = [], []
    gen.generate(2, seed=0, sampler="ddim", steps=3, on_trajectory_step=lambda a, b, *_: plain.append((a, b)))
    del seen_s[:]
    out = gen.generate(
        2,
        seed=0,
        sampler="ddim",
        steps=3,
        trajectory_substeps=4,
        on_trajectory_step=lambda a, b, *_: fine.append((a, b)),
    )
    assert len(fine) == 4 * len(plain) and len(seen_s) == len(fine)
    assert fine[0][0] == plain[0][0] and fine[-1][1] == 0 and all(a > b for a, b in fine)
    assert all(x[1] == y[0] for x, y in itertools.pairwise(fine))
    assert seen_s == [a for a, _ in fine]  # the denoiser saw each sub-step's own s
    assert {b for _, b in plain} <= {b for _, b in fine}  # the plain chain's steps are on the finer one
    assert gen.generate(2, seed=0, sampler="ddim", steps=3).traffic.tolist() == out.traffic.tolist()
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="trajectory_substeps must be an integer >= 1"):
            gen.generate(2, trajectory_substeps=bad)


class _Prefers(torch.nn.Module):
    """A denoiser whose l_0 prediction prefers station 0 (logit 2 against 0) everywhere; eps = 0. With
    ``record``, it appends the step ``s`` of every call (one value per batch) to it."""

    def __init__(self, record: list | None = None) -> None:
        super().__init__()
        self.record = record

    def forward(self, x_t, l_s, t, s):
        if self.record is not None:
            self.record.append(float(s[0]))
        logits = torch.zeros(*l_s.shape, 6)
        logits[..., 0] = 2.0
        return torch.zeros_like(x_t), logits


class _SelfConditioned(torch.nn.Module):
    """A self-conditioned denoiser that records the ``l0_probs`` of each call and returns different logits
    every call (so the test can tell which call's prediction came back)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen, self.returned = [], []

    def forward(self, x_t, l_s, t, s, l0_probs=None):
        self.seen.append(None if l0_probs is None else l0_probs.clone())
        logits = torch.randn(*l_s.shape, 6, generator=torch.Generator().manual_seed(len(self.seen)))
        self.returned.append(logits)
        return torch.zeros_like(x_t), logits


@pytest.mark.parametrize(("substeps", "corrector_rounds"), [(1, 0), (3, 0), (1, 2)])
def test_self_conditioning_feeds_each_call_the_previous_calls_prediction(
    fitted_12_6, substeps, corrector_rounds
):
    gen = copy.copy(fitted_12_6)
    gen.config = with_section(
        with_section(gen.config, "extensions", self_condition=True), "sampling", batch_size=2
    )
    gen.net_ = _SelfConditioned()
    gen.generate(
        4, seed=0, sampler="ddim", steps=3, trajectory_substeps=substeps, corrector_rounds=corrector_rounds
    )
    seen, returned = gen.net_.seen, gen.net_.returned
    per_batch = len(seen) // 2
    assert per_batch == 3 * substeps * (1 + corrector_rounds)
    for start in (0, per_batch):  # each batch starts with no previous prediction
        assert seen[start] is None
        for k in range(start + 1, start + per_batch):
            torch.testing.assert_close(seen[k], returned[k - 1].softmax(-1))


def test_bfloat16_runs_the_denoiser_in_bfloat16_and_both_chains_in_float32(fitted_12_6, monkeypatch):
    """``precision="bfloat16"``: the network's products under autocast, its eps and logits handed back
    float32 (the Gaussian and the discrete step see float32), the logits within bfloat16's rounding of
    float32's; ``sampling.precision`` makes it the default; an unknown precision is refused. The CPU is
    taken as native bfloat16 so that autocast runs on any test machine (else float32 and a warning, tested
    in tests/diffusion/test_gaussian.py)."""
    monkeypatch.setattr(gaussian, "native_bfloat16", lambda device: True)
    gen = copy.copy(fitted_12_6)
    data = users()
    x = torch.randn(3, data.n_steps, generator=torch.Generator().manual_seed(0))
    loc = torch.from_numpy(np.asarray(data.locations[:3]))
    t, s = torch.full((3,), 5), torch.full((3,), 3)
    product_dtypes = []
    hook = (
        gen.net_.blocks[0][0]
        .ff_b.net[1]
        .register_forward_hook(lambda _m, _i, out: product_dtypes.append(out.dtype))
    )
    with torch.no_grad():
        _, logits = gen.denoiser(None, precision="float32")(x, loc, t, s)
        eps_half, logits_half = gen.denoiser(None, precision="bfloat16")(x, loc, t, s)
    hook.remove()
    assert product_dtypes == [torch.float32, torch.bfloat16]
    assert eps_half.dtype == logits_half.dtype == torch.float32
    torch.testing.assert_close(logits_half, logits, atol=0.05 * float(logits.abs().max()), rtol=0)
    full = gen.generate(6, seed=1)
    half = gen.generate(6, seed=1, precision="bfloat16")
    assert half.locations.shape == full.locations.shape and np.isfinite(half.traffic).all()
    gen.config = with_section(gen.config, "sampling", precision="bfloat16")
    again = gen.generate(6, seed=1)
    np.testing.assert_array_equal(again.locations, half.locations)
    np.testing.assert_array_equal(again.traffic, half.traffic)
    with pytest.raises(ConfigError, match="unknown sampling precision 'float16'"):
        gen.generate(2, precision="float16")


def test_temperature_sharpens_the_trajectory_prediction(fitted_12_6):
    gen = copy.copy(fitted_12_6)
    gen.net_ = _Prefers()
    share = {t: float((gen.generate(40, seed=0, temperature=t).locations == 0).mean()) for t in (1.0, 0.05)}
    assert share[0.05] > 0.95 > share[1.0]  # softmax([2, 0, ...]) gives station 0 about 0.6 at temperature 1
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="temperature must be a positive number"):
            gen.generate(2, temperature=bad)


def test_trajectory_coupling_makes_consecutive_steps_agree_without_moving_the_marginal(fitted_12_6):
    gen = copy.copy(fitted_12_6)
    gen.net_ = _Prefers()
    out = {rho: gen.generate(200, seed=0, trajectory_coupling=rho).locations for rho in (0.0, 0.95)}

    def agreement(loc):
        return float((loc[:, 1:] == loc[:, :-1]).mean())

    assert agreement(out[0.95]) > agreement(out[0.0]) + 0.1
    share = {rho: float((loc == 0).mean()) for rho, loc in out.items()}
    assert abs(share[0.95] - share[0.0]) < 0.06  # each token's own chain is the same
    assert np.array_equal(gen.generate(200, seed=0, trajectory_coupling=0.95).locations, out[0.95])
    for bad in (-0.5, 2, float("nan"), True):
        with pytest.raises(ConfigError, match="trajectory_coupling must be a number in"):
            gen.generate(2, trajectory_coupling=bad)


def test_the_config_sets_the_trajectory_options_of_generate_and_of_the_calibration():
    """A model fitted with sampling options in its config generates with them unless told otherwise, and
    its calibration's users were drawn with them: the raw calibration draw is a default draw."""
    options = {
        "temperature": 0.5,
        "trajectory_coupling": 0.9,
        "corrector_rounds": 1,
        "trajectory_substeps": 2,
    }
    data = users(n_users=16)
    gen = get("mstdiff", SMOKE | {"sampling": options, "calibration": {"users": 16}}).fit(
        data, progress=False
    )
    assert gen.generate(6, seed=2).equals(gen.generate(6, seed=2, **options))
    paper = {"temperature": 1.0, "trajectory_coupling": 0.0, "corrector_rounds": 0, "trajectory_substeps": 1}
    assert not gen.generate(6, seed=2).equals(gen.generate(6, seed=2, **paper))
    raw = copy.copy(gen)
    raw.config = with_section(gen.config, "calibration", mode="none")
    drawn = raw.generate(16, seed=gen.config.seed).traffic  # the calibration's users, again
    assert gen.calibration_["raw_zero_share"] == float((drawn <= 0).mean())
    assert gen.calibration_["zero_threshold"] == zero_threshold(drawn, gen.calibration_["zero_share"])
    other = raw.generate(16, seed=gen.config.seed, **paper).traffic
    assert not np.array_equal(other, drawn)
    for bad in (
        {"temperature": 0},
        {"trajectory_coupling": 1.5},
        {"corrector_rounds": -1},
        {"trajectory_substeps": 0},
    ):
        with pytest.raises(ConfigError, match=f"sampling.{next(iter(bad))}"):
            get("mstdiff", SMOKE | {"sampling": bad})


def test_modes_trajectory_only_traffic_only_and_uniform():
    no_traffic = get("mstdiff", SMOKE | {"kg": False}).fit(users(traffic=False), progress=False)
    assert no_traffic.graph_source_ == "uniform" and not no_traffic.traffic_
    out = no_traffic.generate(4, seed=0)
    assert out.traffic is None and out.locations.shape == (4, 48)
    traffic_only = get("mstdiff", SMOKE | {"trajectory": False}).fit(users(), progress=False)
    assert traffic_only.net_.trajectory is False and traffic_only.graph_ is None
    out = traffic_only.generate(4, seed=0)
    assert out.traffic.shape == (4, 48) and out.locations.shape == (4, 48)
    with pytest.raises(DataError, match="nothing to model"):
        get("mstdiff", SMOKE | {"trajectory": False}).fit(users(traffic=False), progress=False)
    with pytest.raises(DataError, match="divisible by 2\\^level = 8"):
        get("mstdiff", SMOKE).fit(users(steps=44), progress=False)
    with pytest.raises(ConfigError, match="discrete_steps must be <= gaussian_steps"):
        get("mstdiff", {"discrete_steps": 10, "gaussian_steps": 5})


@pytest.mark.parametrize(
    "path",
    sorted((REPO_ROOT / "configs").glob("**/mstdiff*.yaml"))
    + sorted((PRESET_DIR / "mstdiff").glob("*.yaml")),
    ids=lambda p: p.name if p.is_relative_to(PRESET_DIR) else str(p.relative_to(REPO_ROOT)),
)
def test_config_files_validate(path):
    config = yaml.safe_load(path.read_text()) or {}
    validated = get("mstdiff", config).config
    assert_config_holds(validated, config)


def test_anchors_let_a_small_fit_place_users_where_they_live_and_work():
    """A small real fit: 48 users, each at home at night and at work by day, home and work drawn at random.
    Given each user's two anchors the generated users follow them; the same fit without anchors cannot
    know which stations a user has and stays near the marginal (measured: 0.998 against 0.19 at 100 epochs)."""
    data = users(n_users=48, traffic=False)
    cfg = SMALL_FIT
    accuracy = {}
    for k in (2, 0):
        gen = get("mstdiff", cfg | {"extensions": {"anchors": k}}).fit(data, progress=False)
        given = top_locations(data.locations, 2) if k else None
        accuracy[k] = float((gen.generate(48, seed=0, anchors=given).locations == data.locations).mean())
    assert accuracy[2] > 0.9 and accuracy[0] < 0.5


def test_anchors_are_drawn_for_new_users_saved_with_the_model_and_checked(tmp_path):
    data = users()
    gen = get("mstdiff", SMOKE | {"extensions": {"anchors": 2, "self_condition": True}}).fit(
        data, progress=False, knowledge_graph=knowledge_graph()
    )
    assert gen.n_anchors == 2
    first = gen.generate(5, seed=3)
    gen.save(tmp_path / "m")
    again = cellsynth.generators.load(tmp_path / "m").generate(5, seed=3)
    np.testing.assert_array_equal(first.locations, again.locations)
    np.testing.assert_allclose(first.traffic, again.traffic)
    # Given anchors replace the drawn ones (a different trajectory for the same seed).
    given = np.tile([[0, 5]], (5, 1))
    assert not np.array_equal(gen.generate(5, seed=3, anchors=given).locations, first.locations)
    for bad, match in [
        (given[:4], "shape"),
        (given.astype(float), "integer station indices"),
        (given + 1, "station indices in 0..5"),
    ]:
        with pytest.raises(DataError, match=match):
            gen.generate(5, seed=3, anchors=bad)
    plain = get("mstdiff", SMOKE).fit(data, progress=False)
    assert plain.n_anchors == 0
    with pytest.raises(ConfigError, match="fitted without them"):
        plain.generate(5, anchors=given)
