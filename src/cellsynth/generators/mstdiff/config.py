"""MSTDiff's configuration: the paper's model at the top level, everything else in sections.

- top level: the published method (Liu et al.): wavelets, VQ-VAEs, knowledge graph and transitions, the two
  diffusions, the denoiser, the loss and training, and the paper's two ablations (``kg``, ``trajectory``);
- ``extensions`` (:class:`MSTDiffExtensions`): options beyond the paper, each off at its neutral value
  except ``clip_x0``;
- ``sampling`` (:class:`MSTDiffSampling`): the defaults of ``generate`` (and of the calibration's draws):
  the Gaussian sampler and the trajectory's sampler options, Algorithm 2 at their neutral values;
- ``calibration`` (:class:`MSTDiffCalibration`): the post-processing of generated traffic (not in the paper);
- ``sampler_selection`` (:class:`MSTDiffSamplerSelection`): candidate trajectory sampler options, one of which
  each fitted model picks on its training users (not in the paper).

Models and config files written before the sections existed are read through :attr:`MSTDiffConfig.moved_fields`
(``temperature`` -> ``sampling.temperature``, ``calibration`` -> ``calibration.mode``, ...). Every field, its
section and whether it is in the paper: docs/mstdiff-config.md.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pydantic

from cellsynth.diffusion.gaussian import Precision, step_count
from cellsynth.generators.base import ConfigSection, TrainingConfig
from cellsynth.generators.mstdiff.calibration import CalibrationMode
from cellsynth.generators.sampling import GaussianSampling, SamplingConfig

__all__ = [
    "MSTDiffCalibration",
    "MSTDiffConfig",
    "MSTDiffExtensions",
    "MSTDiffSamplerSelection",
    "MSTDiffSampling",
    "SamplerCandidate",
]


class MSTDiffSampling(GaussianSampling):
    """How ``generate`` samples by default, and how the calibration's users are drawn: a model carries the
    sampling it was measured with. The traffic's Gaussian sampler ('ddpm': the paper's full chain; 'ddim':
    the fast option, measured as good or better at 3x the speed, BENCHMARKS.md), on whose steps the discrete
    chain runs, and the trajectory's options (:mod:`cellsynth.generators.mstdiff.sampler`), each at
    Algorithm 2's value by default; any of them can be given to ``generate`` instead."""

    sampler: Literal["ddpm", "ddim"] = pydantic.Field("ddim", description="Default sampler.")
    steps: int | None = pydantic.Field(
        None, ge=1, description="Steps of the default sampler (None: all T_g for ddpm, 50 for ddim)."
    )
    precision: Precision = pydantic.Field(
        "float32",
        description="Precision of the denoiser's products while sampling: 'bfloat16' (torch.autocast; on a "
        "device without native bfloat16 kernels it warns and runs float32). Both chains stay float32: the "
        "eps and logits are cast back before the Gaussian step and the discrete one.",
    )
    step_spacing: float = pydantic.Field(
        1.0,
        ge=1,
        le=4,
        allow_inf_nan=False,
        description="Power p of the spacing of the discrete steps the sampler visits, s_i = ceil(S ((n - i) / "
        "n)^p) for its n steps (1: the sampler's even stride, Algorithm 2's; above 1: more of the steps near "
        "the data end). Needs steps <= discrete_steps.",
    )
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


class MSTDiffExtensions(ConfigSection):
    """Options beyond the paper (docs/discrete-diffusion.md §8-12; measured in BENCHMARKS.md)."""

    clip_x0: bool = pydantic.Field(
        True,
        description="Clip each sampling step's predicted x_0 to its band's training range (DDPM's "
        "clip_sample, per band; not in the paper, whose Algorithm 2 has no clipping). Measured: without it an "
        "undertrained model's rare extreme coefficients became traffic 10^5 times the real mean.",
    )
    self_condition: bool = pydantic.Field(
        False,
        description="Self-conditioning of the trajectory (Chen et al. 2022): the denoiser also sees its "
        "previous prediction of l_0, trained on half the batches (cellsynth.nn.mstdiff).",
    )
    anchors: int = pydantic.Field(
        0,
        ge=0,
        le=8,
        description="Condition the trajectory on each user's this many most-visited stations, drawn for new "
        "users by a small model fitted on the training users' (cellsynth.generators.mstdiff.anchors). 0: off.",
    )
    oscillation_neighbours: int = pydantic.Field(
        0,
        ge=0,
        le=16,
        description="Cell oscillations: one-step visits to one of the k nearest stations between two steps "
        "at the same one are removed from the training weeks and drawn again after generation at the "
        "training rate (cellsynth.generators.mstdiff.oscillations; needs station coordinates). 0: off.",
    )
    own_chain: float = pydantic.Field(
        0.0,
        ge=0,
        le=1,
        description="Share of training batches whose noisy trajectory l_s comes from the network's own reverse "
        "step instead of the forward process: l_{s+j} ~ q(. | l_0), then one jump of the current network to "
        "s, j ~ U{1..own_chain_span} (docs/discrete-diffusion.md §10). 0: off.",
    )
    own_chain_span: int = pydantic.Field(
        20, ge=1, description="Largest number of discrete steps j that an own_chain jump covers."
    )


class MSTDiffCalibration(ConfigSection):
    """The post-processing of generated traffic, fitted after training on generated users
    (:mod:`cellsynth.generators.mstdiff.calibration`; not in the paper)."""

    mode: CalibrationMode = pydantic.Field(
        "moments",
        description="'quantiles' maps the generated marginal onto the training values'; 'moments' first sets "
        "each wavelet coefficient's mean and spread over users to the training ones, then maps the marginal; "
        "'zeros' only sets the training share of zeros; 'none' returns the raw output.",
    )
    users: int = pydantic.Field(
        128, ge=1, description="Users generated (with the default sampling) after training to fit it."
    )


class SamplerCandidate(ConfigSection):
    """One candidate of ``sampler_selection``: the trajectory sampler options it sets (None: the config's
    ``sampling`` value)."""

    temperature: float | None = pydantic.Field(None, gt=0, allow_inf_nan=False)
    corrector_rounds: int | None = pydantic.Field(None, ge=0)
    trajectory_substeps: int | None = pydantic.Field(None, ge=1)
    trajectory_coupling: float | None = pydantic.Field(None, ge=0, le=1)


class MSTDiffSamplerSelection(ConfigSection):
    """After training, each candidate draws ``users`` users, scored against the training users' trajectory
    statistics; the lowest mean rank over them, counting only differences beyond the draw's noise
    (``resamples``, ``margin``), becomes the model's sampling default
    (:mod:`cellsynth.generators.mstdiff.sampler_selection`; not in the paper). No candidates: off, the
    ``sampling`` section's values are the defaults."""

    candidates: tuple[SamplerCandidate, ...] = pydantic.Field(
        (),
        description="Trajectory sampler options to choose from (empty: no selection).",
    )
    users: int = pydantic.Field(
        256, ge=2, description="Users each candidate draws (the config's seed) to be scored."
    )
    resamples: int = pydantic.Field(
        50,
        ge=0,
        description="Paired bootstrap resamples of the drawn users that measure how far each JSD moves "
        "with the draw (0: every difference counts).",
    )
    margin: float = pydantic.Field(
        1.5,
        ge=0,
        allow_inf_nan=False,
        description="A candidate is better on a statistic only when lower by more than this many "
        "bootstrap standard deviations of the difference.",
    )


class MSTDiffConfig(SamplingConfig, TrainingConfig):
    """MSTDiff's config: the paper's fields, then the ``sampling``, ``extensions`` and ``calibration``
    sections (module docstring)."""

    chain_field: ClassVar[str] = "gaussian_steps"
    moved_fields: ClassVar[dict[str, str]] = SamplingConfig.moved_fields | {
        **{
            name: f"sampling.{name}"
            for name in ("temperature", "corrector_rounds", "trajectory_substeps", "trajectory_coupling")
        },
        **{
            name: f"extensions.{name}"
            for name in (
                "clip_x0",
                "self_condition",
                "anchors",
                "oscillation_neighbours",
                "own_chain",
                "own_chain_span",
            )
        },
        "calibration": "calibration.mode",
        "calibration_users": "calibration.users",
    }

    # -- the paper's ablations --------------------------------------------------------------------------
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
    beta_schedule: Literal["linear", "squaredcos_cap_v2"] = "linear"
    beta_start: float = pydantic.Field(1e-4, gt=0, lt=1)
    beta_end: float = pydantic.Field(0.1, gt=0, lt=1)
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
    # -- loss and training ------------------------------------------------------------------------------
    lambda_mse: float = pydantic.Field(1.0, ge=0, description="lambda_1: weight of MSE(eps).")
    lambda_kl: float = pydantic.Field(1.0, ge=0, description="lambda_2: weight of the KL term.")
    lambda_ce: float = pydantic.Field(0.1, ge=0, description="lambda_3: weight of CE(l_0, logits).")
    epochs: int = pydantic.Field(300, ge=1)
    batch_size: int = pydantic.Field(64, ge=1)
    lr: float = pydantic.Field(5e-4, gt=0)
    weight_decay: float = pydantic.Field(0.0, ge=0)
    ema_decay: float = pydantic.Field(0.999, ge=0, lt=1)
    # -- sections ---------------------------------------------------------------------------------------
    sampling: MSTDiffSampling = pydantic.Field(default_factory=MSTDiffSampling)
    extensions: MSTDiffExtensions = pydantic.Field(default_factory=MSTDiffExtensions)
    calibration: MSTDiffCalibration = pydantic.Field(default_factory=MSTDiffCalibration)
    sampler_selection: MSTDiffSamplerSelection = pydantic.Field(default_factory=MSTDiffSamplerSelection)

    @pydantic.model_validator(mode="after")
    def _check(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by heads ({self.heads})")
        if self.discrete_steps > self.gaussian_steps:
            raise ValueError("discrete_steps must be <= gaussian_steps (each Gaussian step maps to one s)")
        if self.beta_schedule == "linear" and self.beta_start >= self.beta_end:
            raise ValueError("beta_start must be < beta_end")
        if self.sampling.step_spacing != 1:
            steps = step_count(self.sampling.sampler, self.sampling.steps, self.gaussian_steps)
            if steps > self.discrete_steps:
                raise ValueError(
                    f"sampling.step_spacing needs at most discrete_steps ({self.discrete_steps}) sampling steps, "
                    f"got {steps} ({self.sampling.sampler}): set sampling.steps or step_spacing 1"
                )
        return self
