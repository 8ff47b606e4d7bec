r"""MSTDiff (Liu, Long, Xue, Wang, Li): users' traffic and trajectories, generated jointly by a Gaussian
diffusion in the wavelet domain and a discrete diffusion over base stations, with one multi-scale
Transformer denoising both. We implement the paper (not the authors' code; the differences are listed at
the end).

Pipeline of :meth:`MSTDiffGenerator.fit` (``UserMobility`` with ``T`` steps, ``N`` stations):

1. **Traffic** (:class:`cellsynth.transforms.wavelets.TrafficWavelets`): ``z = (log1p(x / s) - mu) / sigma``, a
   ``J = 3``-level db1 DWT ``[cA3, cD3, cD2, cD1]`` (lengths ``[42, 42, 84, 168]`` for ``T = 336``), each band
   standardised. ``T`` must be divisible by ``2^J``.
2. **VQ-VAEs** (stage ``"vqvae"``, :mod:`cellsynth.nn.vqvae`): one per band, ``K = 128`` codes of dimension
   32, ``beta = 0.25``, dead-code restarts; frozen, then gated into the denoiser's coarsest scale.
3. **Transitions** (:mod:`cellsynth.graphs.transitions`): with a knowledge graph, TuckER (stage
   ``"tucker"``, :mod:`cellsynth.nn.tucker`) embeds it; the station rows give the top-``K`` neighbour graph
   ``A``, ``B = (A + A^T) / 2K``, rate matrix ``R``. Without one: the ``K`` nearest stations by great-circle
   distance (coordinates), else by standardised station features; ``kg=False`` (ablation): uniform
   transitions ``R = 11^T / N - I``. Then :class:`cellsynth.diffusion.discrete.GraphDiffusion`:
   ``Q-bar_s = exp(alpha-bar_s R)``, with ``alpha-bar_S`` set so that every row of ``Q-bar_S`` is within TV
   ``discrete_tol`` of uniform (the prior).
4. **Denoiser** (stage ``"denoiser"``, :class:`cellsynth.nn.mstdiff.MSTDiffNet`), trained on

   .. math::  L = \lambda_1 \|\varepsilon - \varepsilon_\theta\|^2
              + \lambda_2\, \mathrm{KL}\big(q(l_{s-1} \mid l_s, l_0) \,\|\, p_\theta(l_{s-1} \mid l_s)\big)
              + \lambda_3\, \mathrm{CE}\big(l_0, \mathrm{logits}\big)

   (the authors' code drops the CE term; we keep it), with ``p_theta(l_{s-1} | l_s)`` the posterior
   marginalised exactly over the predicted ``l_0`` (:meth:`GraphDiffusion.reverse_probs`). An EMA of the
   weights is what generates.

**Two schedules, one clock.** Traffic has a Gaussian step ``t in 0..T_g-1`` (``gaussian_steps``, diffusers'
convention), the trajectory a discrete step ``s in 1..S`` (``discrete_steps``), each with its own schedule.
They are sampled jointly by drawing ``t ~ U{0..T_g-1}`` and setting

.. math::  s(t) = \lceil (t + 1)\, S / T_g \rceil \in \{1..S\}

(uniform on ``1..S`` when ``S`` divides ``T_g``): both modalities sit at the same fraction of their chains,
so the pairs ``(t, s)`` seen in training are exactly those that the joint reverse chain visits.

**Generation** (the paper's Algorithm 2), :meth:`MSTDiffGenerator.generate`: ``x ~ N(0, I)``, ``l`` uniform
over the stations; for each timestep ``t_i`` of the Gaussian sampler (config ``sampler``: ``"ddpm"``, all
``T_g``; ``"ddim"``, the default, a trailing subsequence of 50 steps), the denoiser sees ``(x, l, t_i,
s(t_i))``; the Gaussian scheduler steps ``x``; the trajectory steps from ``s(t_i)`` to ``s(t_{i+1})`` (0 after
the last) when they differ, by :meth:`GraphDiffusion.sample_step` on the *strided* chain whose schedule is
``alpha-bar`` at the visited ``s`` values only. Its step from ``s_a`` to ``s_b < s_a`` uses ``Q_{s_b -> s_a} =
exp((alpha-bar_{s_a} - alpha-bar_{s_b}) R)`` and ``Q-bar_{s_b}``, so it is the exact multi-step posterior
``q(l_{s_b} | l_{s_a}, l_0)`` marginalised over ``p_theta(l_0 | ...)``: DDIM's subsequence for traffic runs
the discrete chain on the matching subsequence, and full DDPM with ``T_g > S`` moves the discrete chain every
``T_g / S`` Gaussian steps. At every step the traffic's predicted ``x_0`` is clipped to the training range of
its band (``clip_x0``, DDPM's ``clip_sample`` per band; measured: without it, an undertrained model's rare
extreme coefficients became traffic 10^5 times the real mean after ``expm1``). Then the inverse DWT and
normalisation (never negative), and the calibration (``calibration``,
:mod:`cellsynth.generators.mstdiff.calibration`): after training, ``calibration_users`` users drawn with the config's
sampler fit a monotone map of generated traffic onto the training values' distribution (``"quantiles"``), the
same after setting each wavelet coefficient's mean and spread over users to the training ones (``"moments"``,
default), or only a threshold that restores the training share of exact zeros (``"zeros"``). Measured: the raw
traffic-only model generates far too few exact zeros (27 % vs 67 %), see "Known limits"; and the model's weeks
are too smooth (too much energy in the coarsest wavelet band, too little in the finest), which only
``"moments"`` corrects (docs/notebook/2026-11-22-mstdiff-oscillations-moments.md).

**Modes.** Data without traffic (GeoLife): trajectory only. ``trajectory=False`` (the paper's ablation):
traffic only; the locations of generated users then come from the :mod:`~cellsynth.generators.floors.markov`
floor fitted on the same data, independent of the traffic (the output needs locations; their metrics
measure that chain, not MSTDiff).

**Anchors** (``anchors = k``; not in the paper; :mod:`cellsynth.generators.mstdiff.anchors`, docs/discrete-diffusion.md
§9): the denoiser also gets each user's ``k`` most-visited stations (:class:`~cellsynth.nn.mstdiff.MSTDiffNet`'s
``anchors``). In training they are the user's own; in generation they are drawn first, per user, by an
:class:`~cellsynth.generators.mstdiff.anchors.AnchorModel` fitted on the training users, or given
(``generate(anchors=...)``). Where a user spends the day is then decided before the chain starts.

**Own-chain training** (``own_chain = p``; not in the paper; docs/discrete-diffusion.md §10): a share ``p`` of
the training batches see ``l_s`` drawn by one jump of the current network from a noisier forward state
``l_{s+j}`` (:meth:`_DenoiserModule.own_chain_state`), not by the forward process: the denoiser learns to
undo the plausible-but-wrong stations that the reverse chain draws where it is unsure. The loss is the same.

**Cell oscillations** (``oscillation_neighbours = k``; not in the paper; :mod:`cellsynth.generators.mstdiff.oscillations`,
docs/discrete-diffusion.md §12): one-step visits to one of the ``k`` nearest stations between two steps at
the same one (a user served for one record by a neighbouring cell) are observation noise that the
forward process imitates, so the denoiser removes them. They are taken out of the training weeks, and
drawn again into the generated ones at the training rate after the reverse chain.

**Where the authors' public code departs from the paper, and what this module does** (each tested):
CE term dropped -> kept (``lambda_ce``); "posterior" ignoring ``l_s`` -> the true posterior and exact
marginalisation (``GraphDiffusion``); unlearned random CLS tokens -> ``nn.Parameter`` s; logits in
wavelet-band order -> time order; schedule ending at ``alpha-bar = 1.97`` -> ``alpha-bar_S`` from the
spectral mixing bound; first-difference JSD across users and per-set histogram ranges -> the metrics in
:mod:`cellsynth.metrics` (along time, shared bins).

**Known limits** (BENCHMARKS.md, "User level", and the notebook it lists; synthetic city, 150 stations,
320 training users, ``configs/mstdiff-cpu.yaml``: d_model 32, 4,000 steps):
- Raw generated traffic has too few exact zeros (traffic-only model: 27 % of steps vs 67 % real): a continuous
  diffusion puts about half of the zero mass just above the image of zero. Hence the calibration.
- The trajectory branch needs many optimisation steps. Its users flicker: 144 stays a week against 48
  real, and 34 distinct stations against 11.5. ``temperature < 1`` or ``corrector_rounds`` in
  :meth:`MSTDiffGenerator.generate` bring these counts near the real ones, not the JSDs below the floor.
  Much of the flicker is the factorised reverse chain's, not the denoiser's: ``trajectory_substeps=10``
  on the 8,000-step models takes the uniform-transition users from 89 to 57 stays and from 20 to 14
  stations, with no retraining. The share of one-step stays stays near 0.5 (real: 0.28). A model fitted
  with ``self_condition`` gets the real counts with the plain chain (uniform transitions: 46 stays, 11.4
  stations) but the same share of one-step stays, and still wins 3 of the 6 JSDs against the floor.
  Its users stay at home (their most-visited station) through 76 % of 10:00-16:00, against 39 % real
  (:func:`cellsynth.metrics.time_at_top_location`): at high noise the denoiser's best guess for a daytime
  step is home, and the chain keeps it. ``anchors = 3`` fixes that (0.40 of the working day at home, the
  real share; I-rank 0.011-0.013) and still wins 3 of 6: its users make 3-4x the real number of one-step
  detours, with drawn anchors or the held-out users' own. ``own_chain = 0.5`` (span 20) does not change
  that: the detours arrive later in the chain, but arrive (span 100 is worse on all JSDs but G-rank).
  ``generate(trajectory_coupling=0.995, temperature=0.7)`` (or the same config fields: the model's
  default) does, on that city: coupled draws along the week give the real number of stays and detours and the best duration JSD (0.023 against 400 fresh
  users), still above the floor's 0.019, so still 3 of 6; on GeoLife days the same setting is worse.
  What was left was the city's cell oscillations (one-step visits to a nearest station, 8 a week): the
  denoiser removes them as noise and makes longer detours instead. With ``oscillation_neighbours = 3``
  and that sampler the model beats the floor on 4 of 6 (radius, distinct locations, duration 0.0154
  against 0.0185, I-rank; 400 fresh users, three draws; a second training seed, one draw, wins the same
  four); distance is four times the floor's, G-rank at the noise level.
- Against 400 fresh users of the city (not the 80 held out, where every traffic JSD is at the noise level)
  the floor beats the ``quantiles``-calibrated traffic measurably: first-difference JSD about five times
  the floor's, daily RMSE twice. The generated weeks are too smooth, under DDIM and the full chain alike;
  ``calibration = "moments"`` fixes most of it (daily RMSE level with the floor's, diff JSD 0.0005
  against 0.0003). Against 2,000 fresh users, where the noise level is 0.00004, the KG model beats the
  floor on the volume (value) JSD (0.00012 with ``moments``, 0.00010 with ``quantiles``, against
  0.00016); the floor stays ahead on the log-value and first-difference JSDs (0.00029 and 0.00015
  against 0.00045 and 0.00033).
- At that budget, knowledge-graph transitions were worse than uniform ones on all six trajectory JSDs.

Save/load keeps the network weights (EMA), the normalisation constants, ``R`` (its non-zeros) and the
schedule ``alpha-bar``; ``GraphDiffusion`` is rebuilt from them (the eigendecomposition is deterministic).
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import pydantic
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from cellsynth.data.knowledge import KnowledgeGraph
from cellsynth.data.model import UserMobility
from cellsynth.diffusion.discrete import GraphDiffusion, check_coupling, uniform_rate
from cellsynth.diffusion.gaussian import GaussianDiffusion
from cellsynth.errors import ConfigError, DataError
from cellsynth.generators.base import (
    UserGenerator,
    expect,
    fingerprint,
    guard_resume,
    restore_stations,
    restore_time_axis,
    stations_state,
    time_axis_state,
)
from cellsynth.generators.floors.markov import DEFAULT_SMOOTHING, MarkovChain, hour_keys
from cellsynth.generators.mstdiff.anchors import AnchorModel, top_locations
from cellsynth.generators.mstdiff.calibration import (
    CALIBRATION_MODES,
    CalibrationMode,
    MomentMap,
    QuantileMap,
    zero_threshold,
)
from cellsynth.generators.mstdiff.oscillations import CellOscillations
from cellsynth.generators.sampling import GaussianSampling, SamplingConfig
from cellsynth.graphs.transitions import (
    geographic_knn_graph,
    knn_graph,
    nearest_stations,
    station_embeddings,
)
from cellsynth.nn.mstdiff import MSTDiffNet
from cellsynth.nn.tucker import fit_tucker
from cellsynth.nn.vqvae import BandVQVAE, fit_vqvaes
from cellsynth.training import TrainingModule, loader, seed_everything, train
from cellsynth.transforms.wavelets import TrafficWavelets, band_names, band_slices

__all__ = [
    "MSTDiffConfig",
    "MSTDiffGenerator",
    "TrajectoryStepCallback",
    "clip_predicted_x0",
    "discrete_step",
    "gaussian_steps_of",
    "strided_chain",
    "trajectory_substeps_grid",
]

#: ``(s, s_next, l_{s_next} [b, T], logits of p_theta(l_0 | l_s) [b, T, N]) -> None``, see ``generate``;
#: ``s`` and ``s_next`` are ints, or floats at the sub-steps of ``trajectory_substeps > 1``.
TrajectoryStepCallback = Callable[[float, float, torch.Tensor, torch.Tensor], None]


#: The fitted maps of ``calibration_`` and the prefix of their tensors in a saved model ("calibration." is
#: the quantile map's, as in models saved before the other two existed).
_CALIBRATION_MAPS = {
    "quantile_map": ("calibration.", QuantileMap),
    "moment_map": ("calibration_moments.", MomentMap),
    "moment_quantile_map": ("calibration_moments_quantiles.", QuantileMap),
}


def discrete_step(t: torch.Tensor, discrete_steps: int, gaussian_steps: int) -> torch.Tensor:
    """``s(t) = ceil((t + 1) S / T_g)``: the discrete step at the same fraction of its chain as Gaussian step
    ``t in 0..T_g-1`` (see the module docstring). ``long``, in ``1..S``."""
    t = torch.as_tensor(t).long()
    return ((t + 1) * discrete_steps + gaussian_steps - 1) // gaussian_steps


def gaussian_steps_of(s, discrete_steps: int, gaussian_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`discrete_step`: the first and last Gaussian steps ``t`` with ``s(t) = s``,
    ``floor((s - 1) T_g / S)`` and ``floor(s T_g / S) - 1`` (``long``; never empty, since ``S <= T_g``)."""
    s = torch.as_tensor(s).long()
    return ((s - 1) * gaussian_steps) // discrete_steps, (s * gaussian_steps) // discrete_steps - 1


def strided_chain(graph: GraphDiffusion, s_values: list[float]) -> GraphDiffusion:
    """The discrete chain restricted to the visited steps ``s_values`` (ascending, in ``(0, S]``): a
    :class:`GraphDiffusion` with ``alpha-bar`` at those steps, whose step ``j`` goes from ``s_values[j-1]`` to
    ``s_values[j-2]`` (0 for ``j = 1``) through ``exp((alpha-bar_{s_a} - alpha-bar_{s_b}) R)``: the exact
    multi-step posterior (module docstring). Steps need not be integers: ``alpha-bar`` between two steps is
    :meth:`GraphDiffusion.abar_at` (a chain finer than the trained one, ``trajectory_substeps``). The whole
    chain ``1..S`` is returned as is."""
    if list(s_values) == list(range(1, graph.steps + 1)):
        return graph
    return graph.with_schedule(graph.abar_at(s_values))


def trajectory_substeps_grid(s_now: list[int], substeps: int) -> list[list[float]]:
    """Per Gaussian step ``i``, the discrete steps the trajectory's reverse steps start from: none where
    ``s_now[i]`` equals the next visited step ``s_next`` (0 after the last), else ``substeps`` equal parts of
    ``s_now[i] -> s_next``: ``s_now[i] - k (s_now[i] - s_next) / substeps`` for ``k = 0..substeps-1``
    (integers stay ``int``)."""
    grid = []
    for a, b in zip(s_now, [*s_now[1:], 0]):
        starts = [a - k * (a - b) / substeps for k in range(substeps)] if b < a else []
        grid.append([int(v) if float(v).is_integer() else float(v) for v in starts])
    return grid


def _require_count(name: str, value, minimum: int) -> None:
    """A sampling option that counts something: an integer (not a bool) ``>= minimum``, else ConfigError."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _sampler_label(sampler: str, steps: int) -> str:
    """``"DDIM-50"``: a sampler and its number of steps, as the fit note and the warnings say it."""
    return f"{sampler.upper()}-{steps}"


def clip_predicted_x0(
    x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: float, low: torch.Tensor, high: torch.Tensor
) -> torch.Tensor:
    """The noise prediction whose implied ``x_0`` is clipped to ``[low, high]`` (DDPM's ``clip_sample``, per
    coefficient): ``x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)``, clamped, then
    ``eps' = (x_t - sqrt(abar) x0) / sqrt(1 - abar)``, so that the DDPM and DDIM updates, which are linear in
    ``(x_t, x0, eps)``, move towards the clipped ``x_0``."""
    a = torch.as_tensor(alpha_bar, dtype=x_t.dtype, device=x_t.device)
    x0 = ((x_t - (1 - a).sqrt() * eps) / a.sqrt()).clamp(low, high)
    return (x_t - a.sqrt() * x0) / (1 - a).sqrt()


class MSTDiffSampling(GaussianSampling):
    """MSTDiff's default sampler of the traffic branch (the discrete chain runs on the matching steps), and
    the one the calibration is fitted with: 'ddpm' is the paper's full chain, 'ddim' the fast option
    (measured as good or better at 3x the speed, BENCHMARKS.md)."""

    sampler: Literal["ddpm", "ddim"] = pydantic.Field("ddim", description="Default sampler.")
    steps: int | None = pydantic.Field(
        None, ge=1, description="Steps of the default sampler (None: all T_g for ddpm, 50 for ddim)."
    )


class MSTDiffConfig(SamplingConfig):
    chain_field: ClassVar[str] = "gaussian_steps"

    # -- ablations --------------------------------------------------------------------------------------
    kg: bool = pydantic.Field(
        True, description="Transitions from the knowledge graph (or geography); False: uniform transitions."
    )
    trajectory: bool = pydantic.Field(
        True, description="Model trajectories jointly; False: traffic only (the paper's ablation)."
    )
    # -- wavelets ---------------------------------------------------------------------------------------
    level: int = pydantic.Field(3, ge=1, le=6, description="DWT levels J (T divisible by 2^J).")
    wavelet: str = pydantic.Field("db1", description="PyWavelets wavelet name.")
    band_standardise: bool = pydantic.Field(True, description="Standardise each coefficient band.")
    # -- VQ-VAE -----------------------------------------------------------------------------------------
    vqvae: bool = pydantic.Field(True, description="Pretrain VQ-VAEs and gate them into the denoiser.")
    vq_codes: int = pydantic.Field(128, ge=2, description="Codebook size K.")
    vq_dim: int = pydantic.Field(32, ge=1, description="Code dimension.")
    vq_beta: float = pydantic.Field(0.25, ge=0, description="Commitment weight beta.")
    vq_hidden: int = pydantic.Field(64, ge=1, description="Channels of the VQ-VAE convolutions.")
    vq_dead_after: int = pydantic.Field(50, ge=1, description="Steps unused before a code is restarted.")
    vq_epochs: int = pydantic.Field(100, ge=1)
    vq_lr: float = pydantic.Field(1e-3, gt=0)
    vq_scales: int = pydantic.Field(1, ge=0, description="Coarsest scales whose tokens get the VQ gate.")
    # -- knowledge graph and transitions ----------------------------------------------------------------
    embedding_dim: int = pydantic.Field(32, ge=1, description="TuckER entity and station embedding size.")
    tucker_epochs: int = pydantic.Field(200, ge=1)
    tucker_batch_size: int = pydantic.Field(128, ge=1)
    knn: int = pydantic.Field(8, ge=1, description="Neighbours K of the transition graph.")
    knn_quantile: float | None = pydantic.Field(
        0.9, gt=0, le=1, description="Drop neighbour links longer than this quantile (None: keep all)."
    )
    # -- diffusions -------------------------------------------------------------------------------------
    gaussian_steps: int = pydantic.Field(200, ge=2, description="T_g, Gaussian diffusion steps.")
    sampling: MSTDiffSampling = pydantic.Field(default_factory=lambda: MSTDiffSampling())
    # the defaults of generate's trajectory options (MSTDiffGenerator.generate), which the calibration's
    # draws use too: a model carries the sampling it was measured with
    temperature: float = pydantic.Field(
        1.0,
        gt=0,
        allow_inf_nan=False,
        description="Temperature of the trajectory's l_0 prediction (1: Algorithm 2).",
    )
    corrector_rounds: int = pydantic.Field(
        0, ge=0, description="Corrector rounds after each reverse step of the trajectory (0: Algorithm 2)."
    )
    trajectory_substeps: int = pydantic.Field(
        1,
        ge=1,
        description="Reverse steps of the trajectory per step of the Gaussian sampler (1: Algorithm 2).",
    )
    trajectory_coupling: float = pydantic.Field(
        0.0,
        ge=0,
        le=1,
        description="Correlation along the week of the noise of each reverse step's draws (0: Algorithm 2).",
    )
    beta_schedule: Literal["linear", "squaredcos_cap_v2"] = "linear"
    beta_start: float = pydantic.Field(1e-4, gt=0, lt=1)
    beta_end: float = pydantic.Field(0.1, gt=0, lt=1)
    clip_x0: bool = pydantic.Field(
        True, description="Clip each step's predicted x_0 to its band's training range (DDPM clip_sample)."
    )
    calibration: CalibrationMode = pydantic.Field(
        "moments",
        description="Post-processing of generated traffic, fitted after training on calibration_users "
        "generated users (cellsynth.generators.mstdiff.calibration): 'quantiles' maps their marginal onto the "
        "training values'; 'moments' first sets each wavelet coefficient's mean and spread over users to the "
        "training ones, then maps the marginal; 'zeros' only sets the training share of zeros; 'none' returns "
        "the raw output.",
    )
    calibration_users: int = pydantic.Field(
        128,
        ge=1,
        description="Users generated (with the default sampler) after training to fit the calibration.",
    )
    discrete_steps: int = pydantic.Field(100, ge=1, description="S, discrete diffusion steps.")
    discrete_tol: float = pydantic.Field(0.05, gt=0, lt=1, description="TV of Q-bar_S from uniform.")
    first_jump: float = pydantic.Field(0.01, gt=0, lt=1, description="About P(move) in the first step.")
    # -- denoiser ---------------------------------------------------------------------------------------
    d_model: int = pydantic.Field(64, ge=2)
    heads: int = pydantic.Field(4, ge=1)
    layers_per_scale: int = pydantic.Field(2, ge=1)
    full_res_layers: int = pydantic.Field(1, ge=0)
    ff_mult: int = pydantic.Field(4, ge=1)
    dropout: float = pydantic.Field(0.1, ge=0, lt=1)
    self_condition: bool = pydantic.Field(
        False,
        description="Self-conditioning of the trajectory (Chen et al. 2022; not in the paper): the denoiser "
        "also sees its previous prediction of l_0, trained on half the batches (cellsynth.nn.mstdiff).",
    )
    anchors: int = pydantic.Field(
        0,
        ge=0,
        le=8,
        description="Condition the trajectory on each user's this many most-visited stations, drawn for new "
        "users by a small model fitted on the training users' (not in the paper; "
        "cellsynth.generators.mstdiff.anchors). 0: off.",
    )
    oscillation_neighbours: int = pydantic.Field(
        0,
        ge=0,
        le=16,
        description="Cell oscillations (not in the paper): one-step visits to one of the k nearest stations "
        "between two steps at the same one are removed from the training weeks and drawn again after "
        "generation at the training rate (cellsynth.generators.mstdiff.oscillations; needs station coordinates). 0: off.",
    )
    own_chain: float = pydantic.Field(
        0.0,
        ge=0,
        le=1,
        description="Share of training batches whose noisy trajectory l_s comes from the network's own reverse "
        "step instead of the forward process (not in the paper): l_{s+j} ~ q(. | l_0), then one jump of the "
        "current network to s, j ~ U{1..own_chain_span}. It shows the denoiser states that carry its own draws "
        "(docs/discrete-diffusion.md §10). 0: off.",
    )
    own_chain_span: int = pydantic.Field(
        20, ge=1, description="Largest number of discrete steps j that an own_chain jump covers."
    )
    # -- loss and training ------------------------------------------------------------------------------
    lambda_mse: float = pydantic.Field(1.0, ge=0, description="lambda_1: weight of MSE(eps).")
    lambda_kl: float = pydantic.Field(1.0, ge=0, description="lambda_2: weight of the KL term.")
    lambda_ce: float = pydantic.Field(0.1, ge=0, description="lambda_3: weight of CE(l_0, logits).")
    epochs: int = pydantic.Field(300, ge=1)
    batch_size: int = pydantic.Field(64, ge=1)
    lr: float = pydantic.Field(5e-4, gt=0)
    weight_decay: float = pydantic.Field(0.0, ge=0)
    ema_decay: float = pydantic.Field(0.999, ge=0, lt=1)
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"

    @pydantic.model_validator(mode="after")
    def _check(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.discrete_steps > self.gaussian_steps:
            raise ValueError("discrete_steps must be <= gaussian_steps (each Gaussian step maps to one s)")
        if self.beta_schedule == "linear" and self.beta_start >= self.beta_end:
            raise ValueError("beta_start must be < beta_end")
        return self


class _DenoiserModule(TrainingModule):
    """Training of the co-denoiser on (coefficients, locations) with the three-term loss; EMA weights."""

    def __init__(self, net: MSTDiffNet, gauss: GaussianDiffusion, graph: GraphDiffusion | None, cfg) -> None:
        super().__init__()
        self.net = net
        self.ema = copy.deepcopy(net).requires_grad_(False)
        self.gauss, self.graph, self.cfg = gauss, graph, cfg
        self.history: list[dict[str, float]] = []
        self._epoch: list[dict[str, float]] = []

    def losses(
        self, coeffs: torch.Tensor, loc: torch.Tensor, anchors: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        cfg, net = self.cfg, self.net
        batch = loc.shape[0]
        t = self.gauss.sample_timesteps(batch, device=loc.device)
        s = discrete_step(t, cfg.discrete_steps, cfg.gaussian_steps)
        x_t = l_s = noise = None
        if net.traffic:
            noise = torch.randn_like(coeffs)
            x_t = self.gauss.add_noise(coeffs, noise, t)
        if net.trajectory:
            l_s = self.graph.q_sample(loc, s)
            if cfg.own_chain > 0 and torch.rand(()) < cfg.own_chain:
                l_s = self.own_chain_state(coeffs, loc, s, l_s, anchors)
        t_in, s_in = (t if net.traffic else None), (s if net.trajectory else None)
        l0_probs = None
        if net.self_condition and torch.rand(()) < 0.5:  # half the batches: condition on a first pass
            with torch.no_grad():
                l0_probs = net(x_t, l_s, t_in, s_in, anchors=anchors)[1].softmax(-1)
        eps, logits = net(x_t, l_s, t_in, s_in, l0_probs=l0_probs, anchors=anchors)
        out = {}
        if net.traffic:
            out["mse"] = F.mse_loss(eps, noise)
        if net.trajectory:
            out["kl"] = self.graph.kl(loc, l_s, logits, s)
            out["ce"] = self.graph.ce(loc, logits)
        return out

    @torch.no_grad()
    def own_chain_state(
        self,
        coeffs: torch.Tensor,
        loc: torch.Tensor,
        s: torch.Tensor,
        l_s: torch.Tensor,
        anchors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""``l_s`` as the network's own chain would bring it (``own_chain``): ``l_{s+j} ~ q(. | l_0)`` with
        ``j ~ U{1..own_chain_span}`` (capped at ``S``), the network's prediction there (traffic at the matching
        Gaussian step, the last whose :func:`discrete_step` is ``s + j``: :func:`gaussian_steps_of`), then
        ``l_s ~ sum_{l_0} p_theta(l_0 | l_{s+j}) q(l_s | l_{s+j}, l_0)`` (:meth:`GraphDiffusion.sample_step` with
        ``s_to``). Sequences already at ``S`` keep the forward draw ``l_s``.

        The forward process never puts a plausible-but-wrong station where the denoiser was unsure; the
        reverse chain does, and later steps take such a draw for a real visit (docs/discrete-diffusion.md
        §10). The loss stays the paper's: ``q(l_{s-1} | l_s, l_0)`` is defined for every ``l_s``.
        """
        cfg, net, graph = self.cfg, self.net, self.graph
        jump = torch.randint(1, cfg.own_chain_span + 1, s.shape, device=s.device)
        s_from = torch.clamp(s + jump, max=graph.steps)
        moved = s_from > s
        x_from = t_from = None
        if net.traffic:
            t_from = gaussian_steps_of(s_from, cfg.discrete_steps, cfg.gaussian_steps)[1]
            x_from = self.gauss.add_noise(coeffs, torch.randn_like(coeffs), t_from)
        l_from = graph.q_sample(loc, s_from)
        logits = net(x_from, l_from, t_from, s_from, anchors=anchors)[1]
        s_to = torch.where(moved, s, s_from - 1)  # rows not moved are discarded below
        drawn = graph.sample_step(l_from, logits, s_from, s_to=s_to)
        return torch.where(moved[:, None], drawn, l_s)

    def training_step(self, batch, batch_idx):
        parts = self.losses(*batch)
        weights = {"mse": self.cfg.lambda_mse, "kl": self.cfg.lambda_kl, "ce": self.cfg.lambda_ce}
        loss = sum(weights[k] * v for k, v in parts.items())
        self._epoch.append({k: float(v.detach()) for k, v in parts.items()})
        return loss

    @torch.no_grad()
    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        n = self.global_step
        decay = min(self.cfg.ema_decay, (1 + n) / (10 + n))  # warm-up: early weights are far from the optimum
        for p_ema, p in zip(self.ema.parameters(), self.net.parameters()):
            p_ema.lerp_(p, 1 - decay)
        for b_ema, b in zip(self.ema.buffers(), self.net.buffers()):
            b_ema.copy_(b)

    def on_train_epoch_end(self) -> None:
        if self._epoch:
            self.history.append({k: float(np.mean([e[k] for e in self._epoch])) for k in self._epoch[0]})
        self._epoch = []

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)


class MSTDiffGenerator(UserGenerator):
    """MSTDiff: joint diffusion of users' traffic (wavelets) and trajectories (graph discrete diffusion)."""

    name = "mstdiff"
    Config = MSTDiffConfig
    side_inputs = ("knowledge_graph",)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {
            "vq_codes": 8,
            "vq_dim": 4,
            "vq_hidden": 8,
            "vq_epochs": 1,
            "embedding_dim": 8,
            "tucker_epochs": 1,
            "knn": 3,
            "gaussian_steps": 6,
            "beta_schedule": "squaredcos_cap_v2",  # reaches N(0, I) even in 6 steps
            "discrete_steps": 3,
            "d_model": 16,
            "heads": 2,
            "layers_per_scale": 1,
            "full_res_layers": 0,
            "ff_mult": 1,
            "dropout": 0.0,
            "epochs": 1,
            "batch_size": 16,
            "accelerator": "cpu",
        }

    # -- fit --------------------------------------------------------------------------------------------
    def fit(
        self,
        data,
        *,
        progress: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
        knowledge_graph: KnowledgeGraph | None = None,
    ) -> MSTDiffGenerator:
        """Train on ``data`` (:class:`UserMobility`); ``knowledge_graph`` gives the station transitions
        (without it: geographic or feature neighbours). See the module docstring for the stages."""
        data = self._check_fit_inputs(data, knowledge_graph)
        cfg = self.config
        traffic, trajectory = data.has_traffic, cfg.trajectory
        n = len(data.stations)
        guard_resume(
            checkpoint_dir,
            self.name,
            {
                "config": self.config.model_dump(mode="json"),
                "data": fingerprint(
                    data.locations,
                    data.traffic,
                    data.stations.ids,
                    *(
                        (knowledge_graph.heads, knowledge_graph.relations, knowledge_graph.tails)
                        if knowledge_graph is not None
                        else ()
                    ),
                ),
            },
            what_else="training data or knowledge graph",
        )
        accel = cfg.accelerator

        coeffs = torch.zeros(data.n_users, data.n_steps)
        self.wavelets_ = self.clip_ = self.vq_usage_ = None
        vqvaes = None
        if traffic:
            self.wavelets_ = TrafficWavelets(cfg.level, cfg.wavelet, cfg.band_standardise).fit(data.traffic)
            coeffs = torch.from_numpy(self.wavelets_.transform(data.traffic)).float()
            self.clip_ = self._band_range(coeffs, data.n_steps)
            if cfg.vqvae and cfg.vq_scales > 0:
                vqvaes = fit_vqvaes(
                    coeffs,
                    band_slices(data.n_steps, cfg.level),
                    epochs=cfg.vq_epochs,
                    batch_size=cfg.batch_size,
                    seed=cfg.seed,
                    progress=progress,
                    checkpoint_dir=checkpoint_dir,
                    accelerator=accel,
                    **self._vq_hparams(),
                    lr=cfg.vq_lr,
                )
                self.vq_history_ = vqvaes.history
                # the last epoch's codebook usage per band, in band order (what fit_notes reports)
                self.vq_usage_ = [vqvaes.history[-1][b] for b in sorted(vqvaes.history[-1])]
                # Frozen inside the denoiser and only ever called through quantise() (no restarts, no dropout
                # or normalisation layers), so their mode is irrelevant; train mode keeps Lightning quiet.
                vqvaes.train()

        self.graph_, self.graph_source_, station_init, self.markov_ = None, None, None, None
        self.anchor_model_ = self.oscillations_ = anchors = None
        locations = np.array(data.locations, dtype=np.int64)
        if trajectory:
            rate, self.graph_source_, station_init = self._transitions(
                data, knowledge_graph, progress, checkpoint_dir
            )
            if cfg.oscillation_neighbours:
                self.oscillations_ = CellOscillations.fit(
                    locations, self._oscillation_partners(data.stations)
                )
                locations = self.oscillations_.remove(locations)
            if cfg.anchors:
                anchors = top_locations(locations, cfg.anchors)
                self.anchor_model_ = AnchorModel.fit(anchors, n, data.stations.lat, data.stations.lon)
            self.graph_ = GraphDiffusion(
                rate, steps=cfg.discrete_steps, tol=cfg.discrete_tol, first_jump=cfg.first_jump
            )
        else:
            self.markov_ = self._fit_markov(data)

        self.gauss_ = self._gaussian()
        seed_everything(cfg.seed)
        net = self._build_net(data.n_steps, n if trajectory else None, traffic, vqvaes, station_init)
        module = _DenoiserModule(net, self.gauss_, self.graph_, cfg)
        columns = [coeffs, torch.from_numpy(locations)]
        if anchors is not None:
            columns.append(torch.from_numpy(anchors))
        dataset = torch.utils.data.TensorDataset(*columns)
        module = train(
            module,
            loader(dataset, batch_size=cfg.batch_size, seed=cfg.seed),
            max_epochs=cfg.epochs,
            stage="denoiser",
            seed=cfg.seed,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            accelerator=accel,
        )
        self.net_ = module.ema.eval()
        self.history_ = list(module.history)
        self.stations_, self.time_, self.n_steps_ = data.stations, time_axis_state(data), data.n_steps
        self.traffic_, self.trajectory_ = traffic, trajectory
        self.calibration_ = None
        self.fitted_ = True
        if traffic and cfg.calibration != "none":
            self.calibrate(data, progress=progress)
        return self

    def _check_fit_inputs(self, data, knowledge_graph: KnowledgeGraph | None = None):
        """Everything knowable before the first stage trains: the wavelet length, something to model, stations
        to move between, a knowledge graph naming every station, and what cell oscillations need."""
        data = super()._check_fit_inputs(data)
        cfg = self.config
        if knowledge_graph is not None and not isinstance(knowledge_graph, KnowledgeGraph):
            raise DataError(f"knowledge_graph must be a KnowledgeGraph, got {type(knowledge_graph).__name__}")
        if data.n_steps % (2**cfg.level):
            raise DataError(
                f"{self.name} needs T divisible by 2^level = {2**cfg.level} for the wavelet transform; "
                f"got {data.n_steps} steps (crop the data or set level lower)"
            )
        if not data.has_traffic and not cfg.trajectory:
            raise DataError(
                f"{self.name}: this data has no traffic and trajectory=False leaves nothing to model"
            )
        if not cfg.trajectory:
            return data
        stations = data.stations
        n = len(stations)
        if n < 2:
            raise DataError(f"{self.name} needs at least 2 stations to diffuse trajectories over, got {n}")
        if cfg.kg and knowledge_graph is not None:
            named = set(knowledge_graph.station_ids().astype(str))
            missing = [str(s) for s in stations.ids if str(s) not in named]
            if missing:
                raise DataError(
                    f"{self.name}: {len(missing)} station(s) have no entity in the knowledge graph "
                    f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}), so TuckER cannot embed them; "
                    "give a knowledge graph with a triplet for every station, or set kg: false (uniform "
                    "transitions)"
                )
        k = cfg.oscillation_neighbours
        if k and not stations.has_coordinates:
            raise ConfigError(
                f"{self.name}: oscillation_neighbours = {k} needs station coordinates (lat/lon) to find each "
                "station's nearest ones; give them, or set oscillation_neighbours: 0"
            )
        if k >= n:
            raise ConfigError(
                f"{self.name}: oscillation_neighbours = {k} needs more than {k} stations, got {n}; "
                f"set it to at most {n - 1}"
            )
        return data

    def calibrate(
        self,
        data: UserMobility,
        *,
        seed: int | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        progress: bool = False,
    ) -> MSTDiffGenerator:
        """Fit the post-processing of generated traffic against ``data``'s traffic (``fit`` does it with the
        training data): draw ``calibration_users`` users (seed: the config's) with ``sampler`` and ``steps``
        (default: the config's ``sampler``) and the config's trajectory options, then keep every mode's map (the
        :func:`~cellsynth.generators.mstdiff.calibration.zero_threshold`, the
        :class:`~cellsynth.generators.mstdiff.calibration.QuantileMap` and the
        :class:`~cellsynth.generators.mstdiff.calibration.MomentMap` with its quantile map); ``config.calibration``
        picks which one :meth:`generate` applies. Calling it again with other data, or for another
        sampler, recalibrates a trained model.

        The maps hold for draws of the sampler they were fitted on: the full chain and DDIM-50 of one model
        spread the wavelet bands differently (measured up to 10 %), so :meth:`generate` warns when it
        samples with another one."""
        self.check_fitted()
        data = expect(data, UserMobility, self.name)
        if not self.traffic_ or not data.has_traffic:
            raise DataError(f"{self.name}: calibration needs a model and data with traffic")
        cfg = self.config
        seed = cfg.seed if seed is None else seed
        sampler, steps = cfg.resolve_sampler(sampler, steps)
        raw, _ = self._draw(
            cfg.calibration_users,
            seed=seed,
            sampler=sampler,
            steps=steps,
            **self._trajectory_options(),
            progress=progress,
        )
        real = np.asarray(data.traffic, dtype=np.float64)
        zero_share = float((real == 0).mean())
        moment_map = MomentMap().fit(self.wavelets_.transform(raw), self.wavelets_.transform(real))
        self.calibration_ = {
            "sampler": sampler,
            "steps": self._step_count(sampler, steps),
            "zero_share": zero_share,
            "raw_zero_share": float((raw <= 0).mean()),
            "zero_threshold": zero_threshold(raw, zero_share),
            "quantile_map": QuantileMap().fit(raw, real),
            "moment_map": moment_map,
            "moment_quantile_map": QuantileMap().fit(self._matched_moments(raw, moment_map), real),
        }
        return self

    def _step_count(self, sampler: str, steps: int | None) -> int:
        """How many Gaussian steps ``sampler`` with ``steps`` (None: its default) takes on this model."""
        return len(self.gauss_.scheduler(sampler, steps).timesteps)

    def _calibration_sampler(self) -> tuple[str, int]:
        """``(sampler, steps)`` the calibration's users were drawn with (DDIM-50 before it was recorded)."""
        cal = self.calibration_
        return cal.get("sampler", "ddim"), cal.get("steps") or self._step_count("ddim", None)

    def _matched_moments(self, traffic: np.ndarray, moment_map: MomentMap) -> np.ndarray:
        """``traffic`` with each wavelet coefficient's mean and spread set by ``moment_map``."""
        return self.wavelets_.inverse(moment_map.apply(self.wavelets_.transform(traffic)))

    def calibrated(self, traffic: np.ndarray, mode: str | None = None) -> np.ndarray:
        """Raw generated traffic ``[U, T]`` through the fitted calibration ``mode`` (default: the config's
        ``calibration``; ``"none"`` returns it unchanged, as does a model without a calibration)."""
        mode = self.config.calibration if mode is None else mode
        if mode not in CALIBRATION_MODES:
            raise ConfigError(f"calibration mode must be one of {CALIBRATION_MODES}, got {mode!r}")
        cal = self.calibration_
        if mode == "none" or cal is None:
            return traffic
        if mode == "zeros":
            return np.where(traffic > cal["zero_threshold"], traffic, np.float32(0))
        if mode == "moments":
            if "moment_map" not in cal:
                raise ConfigError(
                    f"{self.name}: this model was calibrated before calibration 'moments' existed; call "
                    "calibrate(training data) once and save it again, or use calibration 'quantiles'"
                )
            traffic = self._matched_moments(traffic, cal["moment_map"])
            return cal["moment_quantile_map"].apply(traffic).astype(np.float32)
        return cal["quantile_map"].apply(traffic).astype(np.float32)

    def fit_notes(self) -> list[str]:
        self.check_fitted()
        notes = []
        if self.vq_usage_:
            bands = band_names(self.config.level)
            usage = ", ".join(
                f"{name} {u['perplexity']:.0f} ({u['used_share']:.0%} used, {u['restarts']} restarts)"
                for name, u in zip(bands, self.vq_usage_)
            )
            notes.append(
                f"VQ-VAE codebooks of {self.config.vq_codes} codes, last epoch, perplexity per band: {usage}."
            )
        osc = self.oscillations_
        if osc is not None:
            notes.append(
                f"Cell oscillations (one-step visits to one of the {osc.k} nearest stations) removed for "
                f"training and drawn again after generation, at {osc.rate:.2%} of the steps well inside a stay; "
                f"by neighbour rank, nearest first: {', '.join(f'{r:.0%}' for r in osc.ranks)}."
            )
        cal = self.calibration_
        if not self.traffic_ or cal is None:
            return notes
        what = {
            "quantiles": "maps generated traffic onto the training values' distribution (quantile mapping)",
            "moments": "sets each wavelet coefficient's mean and spread over users to the training ones, then "
            "maps generated traffic onto the training values' distribution (quantile mapping)",
            "zeros": f"sets generated traffic at or below {cal['zero_threshold']:.4g} to 0",
            "none": "is off (config calibration: none)",
        }[self.config.calibration]
        return [
            *notes,
            f"{cal['zero_share']:.0%} of the training traffic values are exactly 0; uncalibrated, the model "
            f"generated {cal['raw_zero_share']:.0%} ({self.config.calibration_users} users, "
            f"{_sampler_label(*self._calibration_sampler())}). The "
            f"calibration {what}.",
        ]

    def _band_range(self, coeffs: torch.Tensor, n_steps: int) -> torch.Tensor:
        """``[2, T]``: the training minimum and maximum of each coefficient's band, per position."""
        out = torch.empty(2, n_steps)
        for sl in band_slices(n_steps, self.config.level):
            out[0, sl], out[1, sl] = coeffs[:, sl].min(), coeffs[:, sl].max()
        return out

    def _vq_hparams(self) -> dict:
        cfg = self.config
        return {
            "n_codes": cfg.vq_codes,
            "code_dim": cfg.vq_dim,
            "hidden": cfg.vq_hidden,
            "beta": cfg.vq_beta,
            "dead_after": cfg.vq_dead_after,
        }

    def _transitions(self, data: UserMobility, kg, progress, checkpoint_dir):
        """``(R, source, station_init)``: the rate matrix, where it came from, TuckER station rows or None."""
        cfg, stations = self.config, data.stations
        n = len(stations)
        k = min(cfg.knn, n - 1)
        if not cfg.kg:
            return uniform_rate(n), "uniform", None
        if kg is not None:
            triplets, names, relations = kg.encode()
            tucker = fit_tucker(
                triplets,
                len(names),
                len(relations),
                dim=cfg.embedding_dim,
                epochs=cfg.tucker_epochs,
                batch_size=cfg.tucker_batch_size,
                seed=cfg.seed,
                progress=progress,
                checkpoint_dir=checkpoint_dir,
                accelerator=cfg.accelerator,
            )
            emb = station_embeddings(tucker.entity_embeddings(), names, stations.ids)
            graph = knn_graph(emb, k, metric="cosine", quantile=cfg.knn_quantile)
            return graph.rate, "knowledge_graph", torch.from_numpy(np.asarray(emb, dtype=np.float32))
        if stations.has_coordinates:
            graph = geographic_knn_graph(stations.lat, stations.lon, k, quantile=cfg.knn_quantile)
            return graph.rate, "geographic", None
        feats = np.asarray(stations.features, dtype=np.float64)
        if feats.shape[1] and (feats.std(0) > 0).any():
            z = (feats - feats.mean(0)) / np.where(feats.std(0) > 0, feats.std(0), 1.0)
            graph = knn_graph(z, k, metric="euclidean", quantile=cfg.knn_quantile)
            return graph.rate, "features", None
        return uniform_rate(n), "uniform (no knowledge graph, coordinates or features)", None

    def _oscillation_partners(self, stations) -> np.ndarray:
        """``int64 [N, k]``: each station's ``oscillation_neighbours`` nearest stations, nearest first (what
        they need is checked up front, :meth:`_check_fit_inputs`)."""
        return nearest_stations(stations.lat, stations.lon, self.config.oscillation_neighbours)

    def _fit_markov(self, data: UserMobility) -> MarkovChain:
        hours = hour_keys(data.start, data.step, data.n_steps, weekly=False)
        return MarkovChain.fit(data.locations, hours, len(data.stations), 24, smoothing=DEFAULT_SMOOTHING)

    def _gaussian(self) -> GaussianDiffusion:
        cfg = self.config
        return GaussianDiffusion(cfg.gaussian_steps, cfg.beta_schedule, cfg.beta_start, cfg.beta_end)

    def _build_net(self, n_steps, n_stations, traffic, vqvaes, station_init) -> MSTDiffNet:
        cfg = self.config
        return MSTDiffNet(
            n_steps=n_steps,
            level=cfg.level,
            n_stations=n_stations,
            traffic=traffic,
            d_model=cfg.d_model,
            heads=cfg.heads,
            layers_per_scale=cfg.layers_per_scale,
            full_res_layers=cfg.full_res_layers,
            ff_mult=cfg.ff_mult,
            dropout=cfg.dropout,
            station_dim=cfg.embedding_dim,
            station_init=station_init,
            vqvaes=vqvaes,
            vq_scales=cfg.vq_scales,
            self_condition=cfg.self_condition,
            n_anchors=cfg.anchors,  # the network ignores it without a trajectory
        )

    # -- generate ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        target,
        *,
        samples: int = 1,
        seed: int = 0,
        sampler: str | None = None,
        steps: int | None = None,
        temperature: float | None = None,
        corrector_rounds: int | None = None,
        trajectory_substeps: int | None = None,
        trajectory_coupling: float | None = None,
        anchors: np.ndarray | None = None,
        on_trajectory_step: TrajectoryStepCallback | None = None,
        progress: bool = False,
        device: str | torch.device = "cpu",
    ) -> UserMobility:
        """``target`` users, jointly: the paper's Algorithm 2 (module docstring). ``sampler`` ``"ddpm"``
        (``steps=None``: all ``gaussian_steps``) or ``"ddim"`` (default 50 steps); None: the config's
        ``sampling.sampler`` and ``sampling.steps``. The discrete chain runs on the matching steps. Traffic goes
        through the calibration fitted after training (config ``calibration``, :meth:`calibrate`), with a
        warning when it was fitted on another sampler's draws. Same seed, same machine, same users.
        The four trajectory options below default (None) to the config's fields of the same name, which are
        Algorithm 2's values unless the config sets others (as ``configs/mstdiff-cpu-extended.yaml`` does).

        ``temperature``: the trajectory's ``p_theta(l_0 | ...)`` is ``softmax(logits / temperature)`` in every
        reverse step. 1 is Algorithm 2; below 1 sharpens each step's prediction of ``l_0``, which an
        undertrained denoiser needs (measured in docs/notebook/2026-11-21-mstdiff-cpu-budget.md: fewer
        one-step stays, users closer to the real number of distinct stations) at the cost of diversity.

        ``corrector_rounds``: after each reverse step ``s -> s'`` of the trajectory, this many rounds of one
        forward step ``s' -> s`` (``GraphDiffusion.q_step_sample``) followed by the same reverse step
        again, conditioned on the same traffic state. With an exact denoiser a round leaves the
        marginal ``q(l_{s'})`` unchanged (tested); with a trained one it lets the positions that one
        factorised reverse step drew independently be redrawn given each other. 0 is Algorithm 2; each
        round costs one more denoiser call per step.

        ``trajectory_substeps``: each reverse step ``s -> s'`` of the trajectory is split into this many
        equal steps at real-valued ``s`` (``alpha-bar`` from :meth:`GraphDiffusion.abar_at`, the denoiser's
        sinusoidal step embedding at the same ``s``; traffic still steps once, on the first). Each reverse
        step draws every position independently given ``l_s``; the error of that factorisation grows with
        how many positions one step decides at once, and vanishes as the steps shrink (the continuous-time
        limit). 1 is Algorithm 2; ``k`` costs ``k`` denoiser calls per step. Measured in
        docs/notebook/2026-11-22-mstdiff-trajectory-substeps.md.

        In a model fitted with ``self_condition`` every denoiser call (steps, sub-steps and corrector
        rounds alike) gets the previous call's ``p_theta(l_0 | ...)``, before the temperature; the first
        call of the chain gets none, as half of the training batches did. Measured
        (docs/notebook/2026-11-22-mstdiff-self-conditioning.md): such a model's chain is best with
        ``trajectory_substeps=1`` and no corrector rounds; more calls sharpen the prediction until users
        barely move.

        ``trajectory_coupling`` ``rho`` in ``[0, 1]``: each reverse step of the trajectory draws the time
        steps of a user with noise correlated along the week (lag-``d`` correlation ``rho^d``;
        :func:`~cellsynth.diffusion.discrete.coupled_categorical`), not independently. Every token's
        marginal is still the step's ``p(l_{s-1} | l_s)``; neighbouring steps that are unsure between the
        same stations choose together instead of alternating. 0 is Algorithm 2. Not in the paper; measured
        in docs/notebook/2026-11-22-mstdiff-coupled-draws.md.

        ``anchors`` (a model fitted with ``anchors = k``): ``int [target, k]`` station indices, each user's
        most-visited stations, most first, to generate users who live and work there (a planner's "users
        of this site"); None draws them from the fitted :class:`~cellsynth.generators.mstdiff.anchors.AnchorModel`.

        ``on_trajectory_step(s, s_next, l, logits)``, if given, is called after every reverse step of the
        trajectory chain with the step taken (``s -> s_next``, ``s_next = 0`` last), the sampled ``l_{s_next}``
        ``long [b, T]`` and the denoiser's logits of ``p_theta(l_0 | l_s)`` ``[b, T, N]`` (before the
        temperature), for each batch of ``sampling.batch_size`` users: a view of the chain as it denoises
        (``benchmarks/mstdiff_chain.py``). It must not modify them. In a model fitted with
        ``oscillation_neighbours`` the chain it sees has no cell oscillations: they are drawn into the
        returned weeks after it ends (module docstring)."""
        self.check_fitted()
        options = self._trajectory_options(
            temperature, corrector_rounds, trajectory_substeps, trajectory_coupling
        )
        n_users = self._check_users(target)
        if samples != 1:
            raise DataError(
                f"{self.name} generates users: give their number, not samples (got samples={samples})"
            )
        sampler, steps = self.config.resolve_sampler(sampler, steps)
        if self.traffic_:
            self._warn_other_sampler(sampler, steps)
        traffic, locations = self._draw(
            n_users,
            seed=seed,
            sampler=sampler,
            steps=steps,
            **options,
            anchors=self._check_anchors(anchors, n_users),
            on_trajectory_step=on_trajectory_step,
            progress=progress,
            device=device,
        )
        start, step = restore_time_axis(self.time_)
        if self.traffic_:
            traffic = self.calibrated(traffic)
        if self.oscillations_ is not None:
            # its own stream: the anchors use the seed's first
            locations = self.oscillations_.add(locations, np.random.default_rng([seed, 1]))
        if not self.trajectory_:
            hours = hour_keys(start, step, self.n_steps_, weekly=False)
            locations = self.markov_.sample(n_users, hours, np.random.default_rng(seed))
        return UserMobility(locations, start, step, self.stations_, traffic=traffic)

    def _trajectory_options(
        self, temperature=None, corrector_rounds=None, trajectory_substeps=None, trajectory_coupling=None
    ) -> dict[str, Any]:
        """The trajectory options of a draw: those given, checked (ConfigError), the config's for None."""
        cfg = self.config
        temperature = cfg.temperature if temperature is None else temperature
        if not (isinstance(temperature, (int, float)) and temperature > 0 and np.isfinite(temperature)):
            raise ConfigError(f"temperature must be a positive number, got {temperature!r}")
        corrector_rounds = cfg.corrector_rounds if corrector_rounds is None else corrector_rounds
        _require_count("corrector_rounds", corrector_rounds, 0)
        trajectory_substeps = cfg.trajectory_substeps if trajectory_substeps is None else trajectory_substeps
        _require_count("trajectory_substeps", trajectory_substeps, 1)
        coupling = cfg.trajectory_coupling if trajectory_coupling is None else trajectory_coupling
        return {
            "temperature": temperature,
            "corrector_rounds": corrector_rounds,
            "trajectory_substeps": trajectory_substeps,
            "trajectory_coupling": check_coupling(coupling, "trajectory_coupling"),
        }

    def _warn_other_sampler(self, sampler: str, steps: int | None) -> None:
        if self.calibration_ is None or self.config.calibration == "none":
            return
        fitted = self._calibration_sampler()
        drawn = (sampler, self._step_count(sampler, steps))
        if drawn != fitted:
            warnings.warn(
                f"{self.name}: the traffic calibration ({self.config.calibration}) was fitted on "
                f"{_sampler_label(*fitted)} draws; these are {_sampler_label(*drawn)}, whose "
                "wavelet bands are spread differently. Sample with the calibration's sampler, call "
                f"calibrate(training data, sampler={sampler!r}, steps={steps!r}) first, or set config "
                "calibration 'none'.",
                stacklevel=3,
            )

    @property
    def n_anchors(self) -> int:
        """``k``: the anchors per user that :meth:`generate` takes (0: a model fitted without them)."""
        self.check_fitted()
        return 0 if self.anchor_model_ is None else self.anchor_model_.k

    def _check_anchors(self, anchors, n_users: int) -> np.ndarray | None:
        """Given anchors as ``int64 [n_users, k]``, or ConfigError/DataError saying what is wrong."""
        if anchors is None:
            return None
        k = self.n_anchors
        if not k:
            raise ConfigError(
                f"{self.name}: anchors given, but this model was fitted without them (config anchors: 0)"
            )
        a = np.asarray(anchors)
        n = len(self.stations_)
        if a.shape != (n_users, k) or not np.issubdtype(a.dtype, np.integer):
            raise DataError(
                f"anchors must be integer station indices of shape (users, anchors) = {(n_users, k)}, "
                f"got {a.dtype} {a.shape}"
            )
        if a.size and (a.min() < 0 or a.max() >= n):
            raise DataError(f"anchors must be station indices in 0..{n - 1}, got {a.min()}..{a.max()}")
        return a.astype(np.int64)

    def _draw(
        self,
        n_users: int,
        *,
        seed,
        sampler,
        steps,
        temperature=1.0,
        corrector_rounds=0,
        trajectory_substeps=1,
        trajectory_coupling=0.0,
        anchors=None,
        on_trajectory_step=None,
        progress=False,
        device="cpu",
    ):
        """``(traffic [U, T] float32 before the calibration, or None; locations [U, T] int64 or None)``:
        the joint reverse chain (Algorithm 2) for ``n_users`` users (``anchors``: see ``generate``)."""
        cfg = self.config
        device = torch.device(device)
        net = self.net_.to(device).eval()
        gen = torch.Generator(device=device).manual_seed(int(seed))
        draw = {"generator": gen, "coupling": trajectory_coupling}  # every reverse step of the trajectory
        if self.anchor_model_ is not None and anchors is None:
            anchors = self.anchor_model_.sample(n_users, np.random.default_rng(int(seed)))
        if anchors is not None:
            anchors = torch.from_numpy(anchors).to(device)
        timesteps = [int(t) for t in self.gauss_.scheduler(sampler, steps).timesteps]
        s_now = [
            int(v) for v in discrete_step(torch.tensor(timesteps), cfg.discrete_steps, cfg.gaussian_steps)
        ]
        s_next = [*s_now[1:], 0]
        grid = trajectory_substeps_grid(s_now, trajectory_substeps)
        chain = index = None
        if self.trajectory_:
            visited = sorted({s for starts in grid for s in starts})
            chain = strided_chain(self.graph_, visited)
            index = {s: j + 1 for j, s in enumerate(visited)}

        coeff_parts, loc_parts = [], []
        for lo in range(0, n_users, cfg.sampling.batch_size):
            b = min(cfg.sampling.batch_size, n_users - lo)
            sched = self.gauss_.scheduler(sampler, steps)  # stateful: a fresh one per batch
            x = loc = None
            if self.traffic_:
                x = torch.randn(b, self.n_steps_, generator=gen, device=device) * sched.init_noise_sigma
            if self.trajectory_:
                loc = chain.prior_sample((b, self.n_steps_), generator=gen, device=device)
            previous = None  # self-conditioning: the last call's prediction of l_0
            own = anchors[lo : lo + b] if anchors is not None else None
            for i, t in enumerate(tqdm(timesteps, desc="sampling", disable=not progress, leave=False)):
                t_b = torch.full((b,), t, dtype=torch.long, device=device)
                s_b = torch.full((b,), s_now[i], dtype=torch.long, device=device)
                x_in = sched.scale_model_input(x, t) if x is not None else None
                t_in, s_in = (t_b if self.traffic_ else None), (s_b if self.trajectory_ else None)
                eps, logits, previous = self._denoise(net, x_in, loc, t_in, s_in, previous, own)
                if self.traffic_:
                    if cfg.clip_x0:
                        lo_hi = self.clip_.to(device)
                        eps = clip_predicted_x0(
                            x, eps, float(self.gauss_.alphas_cumprod[t]), lo_hi[0], lo_hi[1]
                        )
                    x = sched.step(eps, t, x, generator=gen).prev_sample
                starts = grid[i] if self.trajectory_ else []
                for k, s in enumerate(starts):
                    s_to = starts[k + 1] if k + 1 < len(starts) else s_next[i]
                    if k:  # a sub-step: the same traffic state, the denoiser at the real-valued s
                        s_in = torch.full((b,), s, dtype=torch.float32, device=device)
                        _, logits, previous = self._denoise(net, x_in, loc, t_in, s_in, previous, own)
                    j = index[s]
                    loc = chain.sample_step(loc, logits / temperature, j, **draw)
                    for _ in range(corrector_rounds):  # forward s_to -> s, then the reverse step again
                        noisy = chain.q_step_sample(loc, j, generator=gen)
                        _, logits, previous = self._denoise(net, x_in, noisy, t_in, s_in, previous, own)
                        loc = chain.sample_step(noisy, logits / temperature, j, **draw)
                    if on_trajectory_step is not None:
                        on_trajectory_step(s, s_to, loc, logits)
            coeff_parts.append(x.cpu() if x is not None else None)
            loc_parts.append(loc.cpu() if loc is not None else None)

        traffic = locations = None
        if self.traffic_:
            traffic = self.wavelets_.inverse(torch.cat(coeff_parts).double().numpy()).astype(np.float32)
        if self.trajectory_:
            locations = torch.cat(loc_parts).numpy().astype(np.int64)
        return traffic, locations

    def _denoise(self, net, x_in, loc, t_in, s_in, previous, anchors=None):
        """``(eps, logits, previous')``: one denoiser call. With ``self_condition`` it gets ``previous``, the
        last call's ``p_theta(l_0 | ...)`` (None at the first), and returns its own as ``previous'``."""
        extra = {} if anchors is None else {"anchors": anchors}
        if not (self.trajectory_ and self.config.self_condition):
            return (*net(x_in, loc, t_in, s_in, **extra), None)
        eps, logits = net(x_in, loc, t_in, s_in, l0_probs=previous, **extra)
        return eps, logits, logits.softmax(-1)

    # -- persistence ------------------------------------------------------------------------------------
    def _state(self):
        tensors, meta = stations_state(self.stations_)
        tensors |= {f"net.{k}": v for k, v in self.net_.state_dict().items()}
        if self.wavelets_ is not None:
            tensors |= {
                f"wavelets.{k}": torch.from_numpy(np.asarray(v)) for k, v in self.wavelets_.state().items()
            }
            tensors["clip"] = self.clip_.clone()
        if self.graph_ is not None:
            rate = self.graph_.rate
            nz = np.nonzero(rate)
            tensors["graph.index"] = torch.from_numpy(np.stack(nz).astype(np.int64))
            tensors["graph.values"] = torch.from_numpy(rate[nz].copy())
            tensors["graph.abar"] = torch.from_numpy(self.graph_.abar.copy())
        if self.markov_ is not None:
            tensors |= self.markov_.state()
        if self.anchor_model_ is not None:
            tensors |= self.anchor_model_.state()
        if self.oscillations_ is not None:
            tensors |= self.oscillations_.state()
        meta |= {
            "time": self.time_,
            "n_steps": self.n_steps_,
            "traffic": self.traffic_,
            "trajectory": self.trajectory_,
            "graph_source": self.graph_source_,
            "vqvae": self.net_.vqvaes is not None,
            "history": self.history_,
            "vq_usage": self.vq_usage_,
            "calibration": None
            if self.calibration_ is None
            else {k: v for k, v in self.calibration_.items() if k not in _CALIBRATION_MAPS},
        }
        for key, (prefix, _) in _CALIBRATION_MAPS.items():
            if self.calibration_ is not None and key in self.calibration_:
                tensors |= {
                    f"{prefix}{k}": torch.from_numpy(v) for k, v in self.calibration_[key].state().items()
                }
        return tensors, meta

    def _restore(self, tensors, meta) -> None:
        cfg = self.config
        self.stations_ = restore_stations(tensors, meta)
        self.time_, self.n_steps_ = meta["time"], meta["n_steps"]
        self.traffic_, self.trajectory_ = meta["traffic"], meta["trajectory"]
        self.graph_source_, self.history_ = meta["graph_source"], meta["history"]
        self.vq_usage_ = meta.get("vq_usage")
        self.calibration_ = meta.get("calibration")  # absent in models saved before calibration existed
        for key, (prefix, kind) in _CALIBRATION_MAPS.items():
            state = {k[len(prefix) :]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)}
            if self.calibration_ is not None and state:
                self.calibration_ = self.calibration_ | {key: kind.from_state(state)}
        n = len(self.stations_)
        self.wavelets_ = self.graph_ = self.markov_ = self.clip_ = self.anchor_model_ = self.oscillations_ = (
            None
        )
        if self.traffic_:
            state = {
                k[len("wavelets.") :]: v.numpy() for k, v in tensors.items() if k.startswith("wavelets.")
            }
            self.wavelets_ = TrafficWavelets.from_state(state, cfg.level, cfg.wavelet, cfg.band_standardise)
            self.clip_ = tensors["clip"]
        if self.trajectory_:
            rate = np.zeros((n, n), dtype=np.float64)
            idx = tensors["graph.index"].numpy()
            rate[idx[0], idx[1]] = tensors["graph.values"].numpy()
            self.graph_ = GraphDiffusion(rate, abar=tensors["graph.abar"].numpy())
            if cfg.anchors:
                self.anchor_model_ = AnchorModel.from_state(tensors, self.stations_.lat, self.stations_.lon)
            if cfg.oscillation_neighbours:
                partners = self._oscillation_partners(self.stations_)
                self.oscillations_ = CellOscillations.from_state(tensors, partners)
        else:
            self.markov_ = MarkovChain.from_state(tensors, 24, DEFAULT_SMOOTHING, 1)
        self.gauss_ = self._gaussian()
        vqvaes = None
        if meta["vqvae"]:
            vqvaes = torch.nn.ModuleList(BandVQVAE(**self._vq_hparams()) for _ in range(cfg.level + 1))
        net = self._build_net(self.n_steps_, n if self.trajectory_ else None, self.traffic_, vqvaes, None)
        net.load_state_dict({k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")})
        # As the EMA copy that fit() keeps: CPU kernels for a weight that requires grad can round differently
        # (measured: F.linear, last bit, even under no_grad), and a loaded model must generate identically.
        self.net_ = net.requires_grad_(False).eval()
