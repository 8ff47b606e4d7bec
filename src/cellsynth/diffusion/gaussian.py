"""Gaussian diffusion (DDPM, Ho et al. 2020): the noise process only, independent of any network.

Forward process with a variance schedule ``beta_1..beta_T``, ``alpha_t = 1 - beta_t``,
``alpha-bar_t = prod_{s<=t} alpha_s``:

.. math::

    q(x_t \\mid x_0) = \\mathcal N\\big(x_t;\\ \\sqrt{\\bar\\alpha_t}\\, x_0,\\ (1 - \\bar\\alpha_t) I\\big)
    \\quad\\Longleftrightarrow\\quad
    x_t = \\sqrt{\\bar\\alpha_t}\\, x_0 + \\sqrt{1 - \\bar\\alpha_t}\\, \\varepsilon,\\ \\varepsilon \\sim \\mathcal N(0, I)

A network ``eps_theta(x_t, t)`` is trained with the simplified objective

.. math::  L_{simple} = \\mathbb E_{t, x_0, \\varepsilon}\\ \\lVert \\varepsilon - \\varepsilon_\\theta(x_t, t) \\rVert^2

(``t`` uniform over ``0..T-1`` — diffusers counts timesteps from 0). Sampling runs the learned reverse chain
from ``x_T ~ N(0, I)`` with one of three solvers, all built from the same betas:

- ``"ddpm"`` — ancestral sampling (Ho et al.), stochastic; ``steps=None`` is the full chain of T steps.
- ``"ddim"`` — DDIM with eta = 0 (Song et al. 2021), deterministic given x_T; default 50 steps.
- ``"dpm-solver"`` — DPM-Solver++ (2nd-order multistep, Lu et al. 2022), deterministic; default 20 steps.

The schedulers come from diffusers (:class:`~diffusers.DDPMScheduler`, :class:`~diffusers.DDIMScheduler`,
:class:`~diffusers.DPMSolverMultistepScheduler`); this module fixes their options consistently:
epsilon prediction, no clipping of the predicted x_0 by the scheduler (the data are standardised, not
confined to [-1, 1]; a caller clips to its own range with :func:`clip_predicted_x0`), and strided timesteps that start at the last training timestep (``trailing`` for DDIM,
``linspace`` for DPM-Solver, so the first step sees pure noise, as x_T is).

Callers with their own loop (MSTDiff interleaves a discrete chain) use :meth:`GaussianDiffusion.scheduler`
and step it (clipping with :func:`clip_predicted_x0`); everyone else uses :meth:`GaussianDiffusion.sample`.
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from collections.abc import Callable
from typing import Literal, get_args

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from tqdm.auto import tqdm

from cellsynth.errors import ConfigError

__all__ = [
    "BETA_SCHEDULES",
    "DEFAULT_STEPS",
    "MAX_TERMINAL_ALPHA_BAR",
    "PRECISIONS",
    "PREDICTIONS",
    "SAMPLERS",
    "GaussianDiffusion",
    "Prediction",
    "check_precision",
    "clip_predicted_x0",
    "native_bfloat16",
    "network_precision",
    "step_count",
    "terminal_problem",
]

#: What a denoiser predicts: the noise (DDPM) or the velocity (Salimans & Ho 2022).
Prediction = Literal["noise", "velocity"]
PREDICTIONS: tuple[str, ...] = get_args(Prediction)

Sampler = Literal["ddpm", "ddim", "dpm-solver"]
Precision = Literal["float32", "bfloat16"]
#: Precisions of the denoising network's products while sampling (:func:`network_precision`).
PRECISIONS: tuple[str, ...] = ("float32", "bfloat16")
SAMPLERS: tuple[str, ...] = ("ddpm", "ddim", "dpm-solver")
#: The variance schedules (diffusers' names): see :class:`GaussianDiffusion`.
BETA_SCHEDULES: tuple[str, ...] = ("linear", "scaled_linear", "squaredcos_cap_v2")
#: Largest alpha-bar allowed at the last timestep (signal standard deviation 0.1 left in x_T).
MAX_TERMINAL_ALPHA_BAR = 0.01
#: Steps used when ``steps=None`` (``None`` = every training timestep).
DEFAULT_STEPS: dict[str, int | None] = {"ddpm": None, "ddim": 50, "dpm-solver": 20}


def step_count(sampler: Sampler, steps: int | None, num_train_timesteps: int) -> int:
    """How many steps ``sampler`` takes on a chain of ``num_train_timesteps``: ``steps``, or for None its
    :data:`DEFAULT_STEPS` capped at the chain's length (DDPM's None: all of them)."""
    if steps is not None:
        return int(steps)
    default = DEFAULT_STEPS[sampler]
    return num_train_timesteps if default is None else min(default, num_train_timesteps)


def check_precision(precision: str) -> str:
    """``precision`` if it is one of :data:`PRECISIONS`, else a :class:`ConfigError` that lists them."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown sampling precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    return precision


def native_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 convolutions and products natively: a CUDA device that supports
    bfloat16, or a CPU whose oneDNN has bfloat16 kernels (AVX-512 BF16 or AMX; AVX-512 core emulates them).
    Elsewhere PyTorch falls back to its reference convolution, measured 13x slower than float32 on an
    AVX2-only CPU (docs/scale.md)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return True  # MPS and others: autocast decides, nothing measured here
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN: only the reference kernels
        return False


def network_precision(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """The context a sampler calls its denoising network in: none for ``"float32"``; for ``"bfloat16"``,
    ``torch.autocast`` on ``device``'s type, which runs convolutions and matrix products in bfloat16 (1.8-2x
    STOUTER's rate on a CPU with AVX-512 BF16, docs/scale.md) while the solver's own arithmetic,
    the predicted noise included (cast back), stays float32.

    On a device without native bfloat16 (:func:`native_bfloat16`) ``"bfloat16"`` would only be slower (13x
    on an AVX2-only CPU), so it runs the network in float32 and warns: a saved model whose config asks for
    bfloat16 then still samples at full speed on such a machine."""
    if check_precision(precision) == "float32":
        return contextlib.nullcontext()
    if not native_bfloat16(device):
        warnings.warn(
            f"precision 'bfloat16' asked for, but this {torch.device(device).type} has no native bfloat16 "
            "kernels (on a CPU: AVX-512 BF16 or AMX), where it runs about 13x slower than float32; sampling "
            "in float32 instead (pass --precision float32 to silence this)",
            UserWarning,
            stacklevel=3,
        )
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def terminal_problem(alphas_cumprod: torch.Tensor, beta_schedule: str, beta_end: float) -> str | None:
    """A message if ``alpha-bar_T`` exceeds :data:`MAX_TERMINAL_ALPHA_BAR` (x_T keeps signal), else None."""
    terminal = float(alphas_cumprod[-1])
    if terminal <= MAX_TERMINAL_ALPHA_BAR:
        return None
    return (
        f"this diffusion schedule keeps sqrt(alpha-bar_T) = {terminal**0.5:.3f} of the signal at its last step "
        f"(T = {len(alphas_cumprod)}, {beta_schedule}, beta_end = {beta_end}), so sampling from N(0, I) is "
        "biased (samples shrink towards 0); raise beta_end (about 10 / T for the linear schedule), use more "
        "timesteps, or beta_schedule='squaredcos_cap_v2'"
    )


class GaussianDiffusion:
    """The DDPM forward process and its samplers (see module docstring for the formulas).

    Parameters mirror diffusers': ``beta_schedule`` is ``"linear"`` (``beta_start..beta_end``, Ho et al.),
    ``"scaled_linear"`` (``beta_t = (linspace(sqrt(beta_start), sqrt(beta_end)))_t^2``, CSDI's "quad"
    schedule) or ``"squaredcos_cap_v2"`` (the cosine schedule of Nichol & Dhariwal 2021, which ignores
    ``beta_start``/``beta_end``). A schedule that leaves ``alpha-bar_T`` above
    :data:`MAX_TERMINAL_ALPHA_BAR` gets a ``UserWarning`` (:func:`terminal_problem`): sampling from
    N(0, I) would be biased.
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "linear",
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
    ) -> None:
        if num_train_timesteps < 2:
            raise ConfigError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}")
        if beta_schedule not in BETA_SCHEDULES:
            raise ConfigError(
                f"beta_schedule must be one of {', '.join(map(repr, BETA_SCHEDULES))}, got {beta_schedule!r}"
            )
        if beta_schedule != "squaredcos_cap_v2" and not 0 < beta_start < beta_end < 1:
            raise ConfigError(f"need 0 < beta_start < beta_end < 1, got {beta_start}, {beta_end}")
        self.num_train_timesteps = int(num_train_timesteps)
        self._common = {
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": beta_schedule,
            "beta_start": float(beta_start),
            "beta_end": float(beta_end),
            "prediction_type": "epsilon",
        }
        self.train_scheduler = DDPMScheduler(**self._common, clip_sample=False)
        #: ``beta_t`` and ``alpha-bar_t`` for t = 0..T-1 (float32, CPU).
        self.betas = self.train_scheduler.betas.clone()
        self.alphas_cumprod = self.train_scheduler.alphas_cumprod.clone()
        # Sampling starts from N(0, I), which is only right if x_T has (almost) no signal left. DDPM's linear
        # betas are tuned for T = 1000; with T = 100 they leave abar_T = 0.37 and every sample comes out
        # shrunk towards 0 — a silent failure, so say so (generators may refuse it: terminal_problem()).
        problem = terminal_problem(self.alphas_cumprod, beta_schedule, beta_end)
        if problem:
            warnings.warn(problem, UserWarning, stacklevel=2)

    # -- training ------------------------------------------------------------------------------------
    def sample_timesteps(
        self,
        batch: int,
        *,
        power: float = 1.0,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """``t ~ U{0..T-1}``, int64 ``[batch]`` on ``device`` (drawn with ``generator``'s device).

        ``power`` p other than 1 draws ``t = floor(T u^p)``, ``u ~ U[0, 1)``, instead: ``P(t < k) = (k / T)^(1/p)``,
        so p > 1 trains the low-noise steps (small t, where the finest detail is made) more often; p = 2 draws
        a third of the steps below ``T / 10`` instead of a tenth."""
        gen_device = generator.device if generator is not None else "cpu"
        if power == 1.0:
            t = torch.randint(0, self.num_train_timesteps, (batch,), generator=generator, device=gen_device)
        else:
            u = torch.rand(batch, generator=generator, device=gen_device, dtype=torch.float64)
            t = (self.num_train_timesteps * u**power).long().clamp(max=self.num_train_timesteps - 1)
        return t.to(device)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``, with ``t`` ``[B]`` broadcast over ``x0[B, ...]``."""
        return self.train_scheduler.add_noise(x0, noise, t.to(x0.device))

    def _signal_and_noise_scales(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(sqrt(abar_t), sqrt(1 - abar_t))`` for ``t [B]``, shaped ``[B, 1, ...]`` against ``x [B, ...]``."""
        abar = self.alphas_cumprod.to(x.device)[t.to(x.device)].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        return abar.sqrt(), (1 - abar).sqrt()

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The v-prediction target (Salimans & Ho 2022): ``v = sqrt(abar_t) noise - sqrt(1 - abar_t) x0``.

        A network that predicts ``v`` instead of the noise recovers
        ``x_0 = sqrt(abar_t) x_t - sqrt(1 - abar_t) v``, whose error is at most the error of ``v`` at every
        ``t``; from a noise prediction, ``x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t)`` multiplies its
        error by ``1 / sqrt(abar_t)``, which is large where ``abar_t`` is small (about 500 at the last step of a
        linear schedule to 0.05 over 500 steps)."""
        signal, noise_scale = self._signal_and_noise_scales(x0, t)
        return signal * noise - noise_scale * x0

    def target(
        self, prediction: Prediction, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """What a network that predicts ``prediction`` learns at ``x_t``: the noise, or :meth:`velocity`."""
        return noise if prediction == "noise" else self.velocity(x0, noise, t)

    def implied_noise(
        self, prediction: Prediction, x_t: torch.Tensor, output: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        """The noise a network's ``output`` at ``x_t`` implies, for the samplers: the output itself for a noise
        prediction, :meth:`noise_from_velocity` for a velocity."""
        return output if prediction == "noise" else self.noise_from_velocity(x_t, output, t)

    def noise_from_velocity(self, x_t: torch.Tensor, v: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise a ``v`` prediction implies at ``x_t``: ``eps = sqrt(abar_t) v + sqrt(1 - abar_t) x_t``, so
        that a ``v`` network samples through the same (noise-predicting) samplers, with the same steps as
        diffusers' own ``prediction_type="v_prediction"``."""
        signal, noise_scale = self._signal_and_noise_scales(x_t, t)
        return signal * v + noise_scale * x_t

    # -- sampling ------------------------------------------------------------------------------------
    def scheduler(
        self, sampler: Sampler = "ddpm", steps: int | None = None, timesteps: list[int] | None = None
    ):
        """A fresh diffusers scheduler for ``sampler``, from this process's betas, ``set_timesteps`` done.

        ``steps=None`` takes :data:`DEFAULT_STEPS` (at most the chain's length). Iterate
        ``scheduler.timesteps`` and call ``scheduler.step(eps, t, x, generator=...)``; the scheduler keeps
        solver state, so use a new one per sampling run.

        ``timesteps``: the steps to visit instead (strictly decreasing, in ``0..T-1``; ``steps`` is then their
        number). DDIM's scheduler only strides evenly, so ``"ddim"`` at given steps is diffusers'
        DPM-Solver++ of order 1, which is DDIM's update ``x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s) eps``
        between any two steps, down to ``x0_hat`` after the last (as DDIM's with ``abar = 1`` there).
        """
        if sampler not in SAMPLERS:
            raise ConfigError(f"unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if timesteps is not None:
            return self._scheduler_at(sampler, [int(t) for t in timesteps])
        steps = step_count(sampler, steps, self.num_train_timesteps)
        if not 1 <= steps <= self.num_train_timesteps:
            raise ConfigError(f"steps must be in [1, {self.num_train_timesteps}], got {steps}")
        if sampler == "ddpm":
            sched = DDPMScheduler(**self._common, clip_sample=False, timestep_spacing="trailing")
        elif sampler == "ddim":
            sched = DDIMScheduler(**self._common, clip_sample=False, timestep_spacing="trailing")
        else:
            if steps < 2:
                raise ConfigError("dpm-solver needs at least 2 steps")
            sched = DPMSolverMultistepScheduler(
                **self._common, algorithm_type="dpmsolver++", solver_order=2, timestep_spacing="linspace"
            )
        sched.set_timesteps(steps)
        return sched

    def _scheduler_at(self, sampler: Sampler, timesteps: list[int]):
        """:meth:`scheduler` at the given ``timesteps``, checked."""
        top = self.num_train_timesteps - 1
        if not timesteps or any(not 0 <= t <= top for t in timesteps):
            raise ConfigError(f"timesteps must be a non-empty list in [0, {top}], got {timesteps}")
        if any(a <= b for a, b in itertools.pairwise(timesteps)):
            raise ConfigError(f"timesteps must be strictly decreasing, got {timesteps}")
        if sampler == "ddpm":
            sched = DDPMScheduler(**self._common, clip_sample=False)
        else:
            if sampler == "dpm-solver" and len(timesteps) < 2:
                raise ConfigError("dpm-solver needs at least 2 steps")
            sched = DPMSolverMultistepScheduler(
                **self._common,
                algorithm_type="dpmsolver++",
                solver_order=1 if sampler == "ddim" else 2,
                final_sigmas_type="zero",
            )
        sched.set_timesteps(timesteps=timesteps)
        return sched

    @torch.no_grad()
    def sample(
        self,
        eps_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        shape: tuple[int, ...],
        *,
        sampler: Sampler = "ddpm",
        steps: int | None = None,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
        progress: bool = False,
        x0_range: tuple[torch.Tensor | float, torch.Tensor | float] | None = None,
        x_T: torch.Tensor | None = None,
        precision: Precision = "float32",
    ) -> torch.Tensor:
        """Draw ``x_0`` of ``shape`` by running the reverse chain from ``x_T ~ N(0, I)``.

        ``eps_fn(x_t, t)`` gets ``x_t`` ``[B, ...]`` and ``t`` int64 ``[B]`` on ``device`` and returns the
        predicted noise. All randomness (x_T and DDPM's per-step noise) comes from ``generator``, so the same
        generator state gives the same samples. ``x0_range=(lo, hi)`` (scalars or tensors broadcasting
        against ``x``) clips the predicted ``x_0`` at every step (:func:`clip_predicted_x0`), as DDPM clips images
        to [-1, 1]; the result then lies in the range too. ``x_T`` (of ``shape``) replaces the initial noise
        draw, e.g. so that a caller batching a large request gets the same samples whatever its batch size
        (exactly so for the deterministic samplers). ``precision``: of the network's products
        (:func:`network_precision`); the chain itself runs in float32 either way.
        """
        sched = self.scheduler(sampler, steps)
        in_precision = network_precision(precision, device)
        if x_T is None:
            x = torch.randn(shape, generator=generator, device=generator.device).to(device)
        elif tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {tuple(shape)}")
        else:
            x = x_T.to(device)
        x = x * sched.init_noise_sigma
        if x0_range is not None:
            lo, hi = (torch.as_tensor(v, dtype=x.dtype, device=device) for v in x0_range)
        for t in tqdm(sched.timesteps, desc=f"sampling ({sampler})", disable=not progress, leave=False):
            t_batch = torch.full((shape[0],), int(t), dtype=torch.long, device=device)
            with in_precision:
                eps = eps_fn(sched.scale_model_input(x, t), t_batch)
            eps = eps.to(x.dtype)
            if x0_range is not None:
                alpha_bar = self.alphas_cumprod.to(device)[t_batch].view(-1, *([1] * (x.dim() - 1)))
                eps = clip_predicted_x0(x, eps, alpha_bar, lo, hi)
            # DDIM (eta = 0) and DPM-Solver++ are deterministic; DDPM draws its per-step noise from
            # `generator` (diffusers draws on the generator's device and moves it to x's).
            x = sched.step(eps, t, x, generator=generator).prev_sample
        if x0_range is not None:
            x = torch.maximum(torch.minimum(x, hi), lo)  # DDPM's last step adds a little noise of its own
        return x


def clip_predicted_x0(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    alpha_bar: float | torch.Tensor,
    low: torch.Tensor | float,
    high: torch.Tensor | float,
) -> torch.Tensor:
    """The noise prediction whose implied ``x_0`` is clipped to ``[low, high]`` (DDPM's ``clip_sample``, with
    any range: per channel, per coefficient).

    With ``a = alpha-bar_t`` (a float, or a tensor broadcasting against ``x_t`` such as ``[B, 1, ..]``):

    .. math::

        \\hat x_0 = (x_t - \\sqrt{1 - a}\\,\\varepsilon) / \\sqrt a, \\qquad
        x_0^c = \\min(\\max(\\hat x_0, low), high), \\qquad
        \\varepsilon' = \\varepsilon + \\sqrt{a / (1 - a)}\\,(\\hat x_0 - x_0^c)

    ``eps'`` is the noise for which the implied ``x_0`` is ``x_0^c`` (equivalently
    ``(x_t - sqrt(a) x_0^c) / sqrt(1 - a)``). DDPM, DDIM and DPM-Solver++ all recover ``x_0`` from the noise by
    the same formula, so returning ``eps'`` clips every sampler's ``x_0`` prediction; where nothing is clipped
    ``eps`` comes back bit for bit.
    """
    a = torch.as_tensor(alpha_bar, dtype=x_t.dtype, device=x_t.device)
    low = torch.as_tensor(low, dtype=x_t.dtype, device=x_t.device)
    high = torch.as_tensor(high, dtype=x_t.dtype, device=x_t.device)
    x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    clipped = torch.maximum(torch.minimum(x0, high), low)
    return eps + (a / (1 - a)).sqrt() * (x0 - clipped)
