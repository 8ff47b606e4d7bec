"""GaussianDiffusion: the closed-form forward process, and every sampler recovering a Gaussian from the
exact (analytic) noise prediction."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from cellsynth.diffusion import gaussian
from cellsynth.diffusion.gaussian import GaussianDiffusion, clip_predicted_x0
from cellsynth.errors import ConfigError

MU, SIGMA = 1.5, 0.5


def oracle(diffusion: GaussianDiffusion):
    """The exact E[eps | x_t] for x_0 ~ N(mu, s^2) elementwise.

    x_t = sqrt(a) x_0 + sqrt(1 - a) eps is Gaussian with mean sqrt(a) mu and variance a s^2 + 1 - a, and
    Cov(eps, x_t) = sqrt(1 - a), so E[eps | x_t] = sqrt(1 - a) (x_t - sqrt(a) mu) / (a s^2 + 1 - a).
    """
    abar = diffusion.alphas_cumprod.double()

    def eps_fn(x, t):
        a = abar[t].view(-1, *([1] * (x.dim() - 1))).to(x)
        return (1 - a).sqrt() * (x - a.sqrt() * MU) / (a * SIGMA**2 + 1 - a)

    return eps_fn


def test_add_noise_matches_closed_form():
    d = GaussianDiffusion(100, "linear", 1e-4, 0.1)
    betas = torch.linspace(1e-4, 0.1, 100, dtype=torch.float64)
    abar = torch.cumprod(1 - betas, 0)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(6, 2, 8, generator=g), torch.randn(6, 2, 8, generator=g)
    t = torch.tensor([0, 1, 17, 50, 98, 99])
    expected = abar[t].sqrt().view(-1, 1, 1) * x0 + (1 - abar[t]).sqrt().view(-1, 1, 1) * eps
    torch.testing.assert_close(d.add_noise(x0, eps, t), expected.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(d.betas.double(), betas, rtol=1e-5, atol=1e-7)


def test_velocity_is_diffusers_v_target_and_gives_back_the_noise_and_x0():
    d = GaussianDiffusion(500, "linear", 1e-4, 0.05)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(5, 2, 12, generator=g), torch.randn(5, 2, 12, generator=g)
    t = torch.tensor([0, 1, 250, 498, 499])
    v = d.velocity(x0, eps, t)
    torch.testing.assert_close(v, d.train_scheduler.get_velocity(x0, eps, t))
    x_t = d.add_noise(x0, eps, t)
    torch.testing.assert_close(d.noise_from_velocity(x_t, v, t), eps, rtol=1e-4, atol=1e-4)
    # the target of each prediction, and the noise it implies back at x_t
    for prediction in ("noise", "velocity"):
        target = d.target(prediction, x0, eps, t)
        torch.testing.assert_close(target, eps if prediction == "noise" else v)
        torch.testing.assert_close(d.implied_noise(prediction, x_t, target, t), eps, rtol=1e-4, atol=1e-4)
    # x_0 from v is as accurate as v at the last step, where x_0 from the noise is 1 / sqrt(abar) worse
    abar = d.alphas_cumprod[t].view(-1, 1, 1)
    error = 0.1 * torch.ones_like(v)
    x0_from_v = abar.sqrt() * x_t - (1 - abar).sqrt() * (v + error)
    x0_from_eps = (x_t - (1 - abar).sqrt() * (eps + error)) / abar.sqrt()
    assert (x0_from_v - x0)[-1].abs().max() <= 0.1 + 1e-5
    assert (x0_from_eps - x0)[-1].abs().min() > 10


def test_a_velocity_network_samples_through_the_noise_samplers():
    d = GaussianDiffusion(1000, "linear")
    eps_oracle, abar = oracle(d), d.alphas_cumprod.double()

    def velocity_oracle(x, t):  # E[v | x_t] = (E[eps | x_t] - sqrt(1 - a) x_t) / sqrt(a)
        a = abar[t].view(-1, *([1] * (x.dim() - 1))).to(x)
        return (eps_oracle(x, t) - (1 - a).sqrt() * x) / a.sqrt()

    x = d.sample(
        lambda x, t: d.noise_from_velocity(x, velocity_oracle(x, t), t),
        (4000, 1),
        sampler="ddim",
        steps=50,
        generator=torch.Generator().manual_seed(0),
    )
    assert abs(x.mean().item() - MU) < 0.03
    assert abs(x.std().item() - SIGMA) / SIGMA < 0.08


def test_sample_timesteps_range_and_seed():
    d = GaussianDiffusion(50, "squaredcos_cap_v2")
    t = d.sample_timesteps(1000, generator=torch.Generator().manual_seed(1))
    assert t.dtype == torch.long and t.min() >= 0 and t.max() <= 49 and len(t.unique()) == 50
    again = d.sample_timesteps(1000, generator=torch.Generator().manual_seed(1))
    assert torch.equal(t, again)


@pytest.mark.parametrize(
    ("schedule", "sampler", "steps", "std_tol"),
    [
        ("linear", "ddpm", None, 0.03),
        ("linear", "ddim", 50, 0.08),  # deterministic few-step solvers shrink the spread slightly
        ("linear", "dpm-solver", 20, 0.08),
        ("squaredcos_cap_v2", "ddpm", 100, 0.05),
        ("squaredcos_cap_v2", "ddim", 50, 0.08),
        ("squaredcos_cap_v2", "dpm-solver", 20, 0.05),
    ],
)
def test_every_sampler_recovers_a_gaussian(schedule, sampler, steps, std_tol):
    d = GaussianDiffusion(1000, schedule)
    x = d.sample(
        oracle(d), (4000, 1), sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0)
    )
    assert abs(x.mean().item() - MU) < 0.03
    assert abs(x.std().item() - SIGMA) / SIGMA < std_tol


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver"])
def test_seeds_reproduce(sampler):
    d = GaussianDiffusion(200, "squaredcos_cap_v2")
    eps_fn = oracle(d)

    def run(seed):
        return d.sample(
            eps_fn, (8, 3), sampler=sampler, steps=10, generator=torch.Generator().manual_seed(seed)
        )

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))
    if sampler != "ddpm":  # deterministic given x_T: passing the same starting noise gives the same samples
        x_T = torch.randn((8, 3), generator=torch.Generator().manual_seed(3))
        given = d.sample(eps_fn, (8, 3), sampler=sampler, steps=10, generator=torch.Generator(), x_T=x_T)
        assert torch.equal(given, run(3))


def test_scheduler_factory():
    d = GaussianDiffusion(1000)
    assert isinstance(d.scheduler("ddpm"), DDPMScheduler) and len(d.scheduler("ddpm").timesteps) == 1000
    ddim = d.scheduler("ddim")
    assert isinstance(ddim, DDIMScheduler) and len(ddim.timesteps) == 50 and ddim.timesteps[0] == 999
    dpm = d.scheduler("dpm-solver", 20)
    assert isinstance(dpm, DPMSolverMultistepScheduler) and dpm.config.algorithm_type == "dpmsolver++"
    assert len(dpm.timesteps) == 20 and dpm.timesteps[0] == 999
    for sched in (d.scheduler(s) for s in ("ddpm", "ddim", "dpm-solver")):
        torch.testing.assert_close(sched.alphas_cumprod, d.alphas_cumprod)
    with pytest.raises(ConfigError, match="unknown sampler"):
        d.scheduler("euler")
    with pytest.raises(ConfigError, match="steps"):
        d.scheduler("ddim", 2000)
    with pytest.raises(ConfigError):
        GaussianDiffusion(10, "sigmoid")


def test_schedules_that_keep_signal_are_reported():
    # DDPM's betas (1e-4..0.02) are tuned for T = 1000: at T = 100 they keep abar_T = 0.37.
    with pytest.warns(UserWarning, match="sqrt\\(alpha-bar_T\\) = 0.6"):
        GaussianDiffusion(100)
    assert GaussianDiffusion(100, "linear", 1e-3, 0.2).alphas_cumprod[-1] < 0.01
    assert GaussianDiffusion(20, "squaredcos_cap_v2").alphas_cumprod[-1] < 0.01


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm-solver"])
def test_x0_clipping(sampler):
    d = GaussianDiffusion(200, "squaredcos_cap_v2")
    eps_fn = oracle(d)
    g = torch.Generator().manual_seed(0)
    free = d.sample(eps_fn, (2000, 1), sampler=sampler, steps=20, generator=torch.Generator().manual_seed(0))
    wide = d.sample(
        eps_fn,
        (2000, 1),
        sampler=sampler,
        steps=20,
        generator=torch.Generator().manual_seed(0),
        x0_range=(MU - 100.0, MU + 100.0),
    )
    torch.testing.assert_close(wide, free)  # a range that never binds changes nothing
    lo, hi = torch.tensor([[1.2]]), torch.tensor([[1.6]])
    tight = d.sample(eps_fn, (2000, 1), sampler=sampler, steps=20, generator=g, x0_range=(lo, hi))
    assert tight.min() >= 1.2 and tight.max() <= 1.6
    assert (tight < 1.3).any() and (tight > 1.5).any()


def test_clip_predicted_x0_formula():
    d = GaussianDiffusion(100, "squaredcos_cap_v2")
    x_t, eps = torch.tensor([[3.0]]), torch.tensor([[0.5]])
    a = d.alphas_cumprod[40]
    x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    for alpha_bar in (float(a), a.view(1, 1)):  # a float, or a tensor broadcasting against x_t
        new = clip_predicted_x0(x_t, eps, alpha_bar, torch.tensor(-1.0), torch.tensor(1.0))
        torch.testing.assert_close((x_t - (1 - a).sqrt() * new) / a.sqrt(), x0.clamp(-1, 1))
        # the other way to write it: the noise that takes x_t to the clipped x_0
        torch.testing.assert_close(new, (x_t - a.sqrt() * x0.clamp(-1, 1)) / (1 - a).sqrt())
        assert torch.equal(clip_predicted_x0(x_t, eps, alpha_bar, -100.0, 100.0), eps)


def test_scaled_linear_is_csdis_quadratic_schedule():
    """CSDI's "quad" schedule, beta_t = (linspace(sqrt(b_0), sqrt(b_1), T))_t^2, is diffusers' scaled_linear."""
    d = GaussianDiffusion(50, "scaled_linear", 1e-4, 0.5)
    expected = torch.linspace(1e-4**0.5, 0.5**0.5, 50, dtype=torch.float64) ** 2
    torch.testing.assert_close(d.betas.double(), expected, rtol=1e-5, atol=1e-7)
    assert d.alphas_cumprod[-1] < 1e-4  # x_T is pure noise
    with pytest.raises(ConfigError, match="0 < beta_start < beta_end < 1"):
        GaussianDiffusion(50, "scaled_linear", 0.5, 1e-4)


def test_bfloat16_precision_runs_the_network_in_bfloat16_and_keeps_the_chain_float32(monkeypatch):
    """The oracle computed through a linear layer: under ``precision="bfloat16"`` the layer's product is
    bfloat16 (autocast), the samples are float32 and recover the same Gaussian, close to the float32 draws
    (bfloat16 keeps about 3 significant digits of the predicted noise). The device is taken as native
    bfloat16, so that the autocast path runs on any test machine."""
    monkeypatch.setattr(gaussian, "native_bfloat16", lambda device: True)
    d = GaussianDiffusion(1000)
    exact = oracle(d)
    identity = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.ones_(identity.weight)
    seen = []

    def eps_fn(x, t):
        through = identity(x)
        seen.append(through.dtype)
        return exact(through.float(), t)

    def draw(precision):
        seen.clear()
        x = d.sample(
            eps_fn, (4000, 1), sampler="ddim", steps=50, precision=precision,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        return x, set(seen)

    full, full_dtypes = draw("float32")
    half, half_dtypes = draw("bfloat16")
    assert full_dtypes == {torch.float32} and half_dtypes == {torch.bfloat16}
    assert half.dtype == torch.float32
    assert abs(half.mean().item() - MU) < 0.03 and abs(half.std().item() - SIGMA) / SIGMA < 0.08
    assert (half - full).abs().mean().item() < 0.02 * full.abs().mean().item()
    with pytest.raises(ConfigError, match="unknown sampling precision 'float16'"):
        d.sample(eps_fn, (4, 1), sampler="ddim", steps=5, precision="float16", generator=torch.Generator())


def test_bfloat16_on_a_device_without_native_kernels_warns_and_samples_in_float32(monkeypatch):
    """Where bfloat16 would only take the slow reference kernels, the network runs in float32 (the same
    draws as asking for float32) and a warning says why and how to silence it."""
    monkeypatch.setattr(gaussian, "native_bfloat16", lambda device: False)
    d = GaussianDiffusion(1000)
    layer = torch.nn.Linear(1, 1)
    seen = []

    def eps_fn(x, t):
        out = layer(x)
        seen.append(out.dtype)
        return out

    def draw(precision):
        return d.sample(
            eps_fn, (8, 1), sampler="ddim", steps=5, precision=precision,
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip

    with pytest.warns(UserWarning, match="no native bfloat16.*float32 instead.*--precision float32"):
        half = draw("bfloat16")
    assert set(seen) == {torch.float32}
    torch.testing.assert_close(half, draw("float32"), rtol=0, atol=0)


def test_native_bfloat16_reads_the_device():
    """CPU: oneDNN's own answer; a CUDA device that is not there has none."""
    assert gaussian.native_bfloat16("cpu") == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if not torch.cuda.is_available():
        assert gaussian.native_bfloat16("cuda") is False


def test_timesteps_drawn_with_a_power_favour_low_noise_as_the_formula_says():
    d = GaussianDiffusion(1000)
    uniform = d.sample_timesteps(10, generator=torch.Generator().manual_seed(0))
    assert torch.equal(uniform, torch.randint(0, 1000, (10,), generator=torch.Generator().manual_seed(0)))
    assert torch.equal(d.sample_timesteps(10, power=1.0, generator=torch.Generator().manual_seed(0)), uniform)
    t = d.sample_timesteps(200_000, power=2.0, generator=torch.Generator().manual_seed(1))
    assert t.dtype == torch.int64 and int(t.min()) >= 0 and int(t.max()) <= 999
    for k in (10, 100, 500):  # P(t < k) = (k / T)^(1 / p)
        assert float((t < k).double().mean()) == pytest.approx((k / 1000) ** 0.5, abs=0.005)


def _run(scheduler, eps_fn, x):
    for t in scheduler.timesteps:
        x = scheduler.step(eps_fn(x, torch.full((len(x),), int(t))), t, x).prev_sample
    return x


def test_ddim_at_given_timesteps_is_ddim():
    """DDIM's own steps given explicitly (the first-order DPM-Solver++ path) give DDIM's samples."""
    d = GaussianDiffusion(200, "linear", beta_end=0.05)
    ddim = d.scheduler("ddim", 25)
    given = d.scheduler("ddim", timesteps=[int(t) for t in ddim.timesteps])
    assert isinstance(given, DPMSolverMultistepScheduler) and given.config.solver_order == 1
    x_T = torch.randn(500, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, b = _run(ddim, oracle(d), x_T.clone()), _run(given, oracle(d), x_T.clone())
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("sampler", "steps"), [("ddpm", 100), ("ddim", 20), ("dpm-solver", 20)])
def test_every_sampler_recovers_a_gaussian_at_uneven_timesteps(sampler, steps):
    """Steps denser near the data end, as the samplers of ``test_every_sampler_recovers_a_gaussian``."""
    d = GaussianDiffusion(200, "squaredcos_cap_v2")
    timesteps = sorted({int(199 * (k / steps) ** 2) for k in range(1, steps + 1)}, reverse=True)
    sched = d.scheduler(sampler, timesteps=timesteps)
    assert [int(t) for t in sched.timesteps] == timesteps
    x = _run(sched, oracle(d), torch.randn(4000, 1, generator=torch.Generator().manual_seed(1)))
    assert abs(x.mean().item() - MU) < 0.03
    assert abs(x.std().item() - SIGMA) / SIGMA < 0.08


def test_given_timesteps_are_checked():
    d = GaussianDiffusion(200, "linear", beta_end=0.05)
    with pytest.raises(ConfigError, match="strictly decreasing"):
        d.scheduler("ddim", timesteps=[10, 20])
    with pytest.raises(ConfigError, match=r"in \[0, 199\]"):
        d.scheduler("ddim", timesteps=[200, 20])
    with pytest.raises(ConfigError, match="non-empty"):
        d.scheduler("ddim", timesteps=[])
