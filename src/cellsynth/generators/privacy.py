r"""Differentially private training (DP-SGD through Opacus), shared by every generator that offers it.

**The guarantee.** A generator trained with a ``privacy`` section is (epsilon, delta)-differentially private
with respect to **one station's traffic, all its weeks together**: adding or removing every week of one
station changes the distribution of the trained weights by at most ``e^epsilon`` (plus ``delta``). The
list of stations and their metadata (coordinates, feature columns) are treated as public: the model is
conditioned on them, and they are what a caller generates for.

**How.** DP-SGD (Abadi et al., CCS 2016) with the privacy unit a station: each training example is one
station with all its ``W`` weeks, drawn by Poisson sampling (each station independently with probability
``q = batch_size / N`` per step). The network still sees weeks; the per-week gradients that Opacus computes
are summed per station before clipping, so a station's gradient is

.. math::  g_n = \sum_{w=1}^{W} \nabla_\theta \ell(x_{n,w}), \qquad
           \tilde g = \frac{1}{q N}\Big(\sum_{n \in B} g_n \min\big(1, C / \lVert g_n \rVert\big)
           + \mathcal N(0, \sigma^2 C^2 I)\Big)

with ``C = max_grad_norm`` and ``sigma = noise_multiplier`` (given, or found by Opacus' accountant from the
target epsilon, delta, sampling rate and number of steps). The spent epsilon is the accountant's (RDP or
PRV) for ``(sigma, q, steps)`` at ``delta``. The noise and the sampling draw from a generator seeded by the
operating system, not by the config's seed (a seed saved with the model would let anyone replay the noise),
so a private fit is not reproducible run to run.

Networks go through Opacus' ``ModuleValidator.fix`` (``nn.MultiheadAttention`` becomes its
``DPMultiheadAttention``); :func:`plain_weights` maps the trained weights back onto the plain network, so a
saved private model loads as any other.
"""

from __future__ import annotations

import copy
import math
import secrets
import warnings
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import pydantic
import torch

from cellsynth.errors import ConfigError
from cellsynth.generators.base import ConfigSection

__all__ = [
    "PrivacyConfig",
    "PrivacyPlan",
    "default_delta",
    "noisy_mean_gradient",
    "plain_weights",
    "plan_privacy",
    "poisson_stations",
    "spent_epsilon",
    "station_weeks",
    "train_private",
]


class PrivacyConfig(ConfigSection):
    """DP-SGD with one station (all its weeks) as the privacy unit (module docstring). Give a target
    ``epsilon`` (the noise is then set by the accountant) or a ``noise_multiplier`` (the spent epsilon is
    then reported), not both."""

    epsilon: float | None = pydantic.Field(
        None, description="Target epsilon of the whole training (> 0); the accountant sets the noise."
    )
    delta: float | None = pydantic.Field(
        None,
        description="delta of the guarantee, below 1 / number of training stations; None: 1 / (10 N).",
    )
    noise_multiplier: float | None = pydantic.Field(
        None, description="sigma of DP-SGD, instead of a target epsilon (> 0)."
    )
    max_grad_norm: float = pydantic.Field(
        1.0, gt=0, description="C: each station's summed gradient is clipped to this L2 norm."
    )
    accountant: Literal["rdp", "prv"] = pydantic.Field(
        "rdp", description="Opacus accountant that converts (sigma, sampling rate, steps) to epsilon."
    )

    @pydantic.field_validator("epsilon", "noise_multiplier", "delta")
    @classmethod
    def _positive(cls, value: float | None, info) -> float | None:
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise ValueError(f"{info.field_name} must be a finite number > 0, got {value}")
        return value

    @pydantic.model_validator(mode="after")
    def _one_target(self) -> PrivacyConfig:
        if (self.epsilon is None) == (self.noise_multiplier is None):
            raise ValueError(
                "give either privacy.epsilon (a target; the accountant sets the noise) or "
                "privacy.noise_multiplier, exactly one of them"
            )
        return self


#: Samples of a private model are clipped to ``[-R, R]`` in standardised units (z has mean 0 and standard
#: deviation 1 over all training values), a range chosen without looking at the data.
PUBLIC_Z_RANGE = 4.0


def public_range(scaler):
    """``scaler`` (a fitted :class:`~cellsynth.transforms.scaling.LogScaler`) with its range of the training
    data (what samples are clipped to) replaced by ``[-PUBLIC_Z_RANGE, PUBLIC_Z_RANGE]`` per channel."""
    scaler.z_min_ = np.full_like(scaler.z_min_, -PUBLIC_Z_RANGE)
    scaler.z_max_ = np.full_like(scaler.z_max_, PUBLIC_Z_RANGE)
    return scaler


def default_delta(n_stations: int) -> float:
    """``1 / (10 N)``: well below ``1 / N``, the delta at which releasing one whole station is allowed."""
    return 1.0 / (10 * n_stations)


@dataclass(frozen=True)
class PrivacyPlan:
    """What DP-SGD will run with, settled before training: ``sample_rate`` q = 1 / batches per epoch."""

    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    delta: float
    accountant: str
    n_stations: int

    def spent(self, steps: int | None = None) -> dict:
        """The guarantee after ``steps`` (default: the planned ones), as saved with the model."""
        steps = self.steps if steps is None else steps
        return asdict(self) | {
            "steps": steps,
            "epsilon": spent_epsilon(
                self.noise_multiplier, self.sample_rate, steps, self.delta, self.accountant
            ),
            "unit": "station (all its weeks)",
        }


def spent_epsilon(
    noise_multiplier: float, sample_rate: float, steps: int, delta: float, accountant: str
) -> float:
    """Epsilon of ``steps`` Poisson-subsampled Gaussian steps (rate ``sample_rate``, noise ``sigma``) at
    ``delta``, by Opacus' accountant; ``0`` when no step ran."""
    from opacus.accountants import create_accountant

    if steps == 0:
        return 0.0
    acc = create_accountant(mechanism=accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    with warnings.catch_warnings():  # RDP notes when its best order is its largest (very large sigma)
        warnings.filterwarnings("ignore", message=r".*Optimal order is the (largest|smallest) alpha.*")
        return float(acc.get_epsilon(delta=delta))


def plan_privacy(
    privacy: PrivacyConfig, *, model: str, n_stations: int, batch_size: int, epochs: int
) -> PrivacyPlan:
    """Check the budget and settle the noise before any training (raises :class:`ConfigError`).

    ``q = 1 / ceil(N / batch_size)`` (Opacus' Poisson loader: expected batch ``q N``), ``steps = epochs / q``.
    A target epsilon cannot be met when the accountant finds no noise multiplier for it, or when the one it
    finds exceeds the expected batch ``q N``: the noise on the averaged gradient, of standard deviation
    ``sigma C / (q N)`` per coordinate, would then exceed the largest averaged gradient ``C``. (A
    ``noise_multiplier`` given directly is the caller's choice and is not checked so.)
    """
    from opacus.accountants.utils import get_noise_multiplier

    delta = default_delta(n_stations) if privacy.delta is None else privacy.delta
    if delta >= 1.0 / n_stations:
        raise ConfigError(
            f"{model}: privacy.delta = {delta:g} is not below 1 / {n_stations} training stations = "
            f"{1 / n_stations:g}, which would allow releasing a whole station; set privacy.delta below that "
            "(e.g. 1 / (10 N)) or leave it unset"
        )
    batches = math.ceil(n_stations / batch_size)
    sample_rate, steps = 1.0 / batches, epochs * batches
    sigma = privacy.noise_multiplier
    if sigma is None:
        try:
            with warnings.catch_warnings():  # the accountant warns about its own numerics near the limit
                warnings.simplefilter("ignore")
                sigma = get_noise_multiplier(
                    target_epsilon=privacy.epsilon,
                    target_delta=delta,
                    sample_rate=sample_rate,
                    steps=steps,
                    accountant=privacy.accountant,
                )
        except ValueError:
            raise ConfigError(
                f"{model}: the {privacy.accountant} accountant finds no noise multiplier that keeps "
                f"{steps} steps ({epochs} epochs at sampling rate {sample_rate:.3g}) within epsilon = "
                f"{privacy.epsilon:g}, delta = {delta:g}; raise privacy.epsilon, or lower epochs or batch_size"
            ) from None
        expected_batch = sample_rate * n_stations
        if sigma > expected_batch:
            raise ConfigError(
                f"{model}: epsilon = {privacy.epsilon:g} over {steps} steps ({epochs} epochs at sampling rate "
                f"{sample_rate:.3g}) needs noise multiplier {sigma:.3g}, more than the {expected_batch:.3g} "
                "stations of an average batch: the noise on each averaged gradient would be larger than any "
                "averaged gradient, and training would learn nothing; raise privacy.epsilon, or lower epochs "
                "or raise batch_size"
            )
    return PrivacyPlan(
        noise_multiplier=float(sigma),
        max_grad_norm=privacy.max_grad_norm,
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        accountant=privacy.accountant,
        n_stations=n_stations,
    )


def dp_compatible(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with the layers Opacus cannot compute per-sample gradients for replaced by its equivalents
    (``ModuleValidator.fix``: ``nn.MultiheadAttention`` -> ``DPMultiheadAttention``, BatchNorm ->
    GroupNorm); refuses a network that still has unsupported layers after that."""
    from opacus.validators import ModuleValidator

    fixed = ModuleValidator.fix(net)
    problems = ModuleValidator.validate(fixed, strict=False)
    if problems:
        raise ConfigError(f"this network cannot be trained with DP-SGD: {problems[0]}")
    return fixed


def plain_weights(dp_net: torch.nn.Module, plain: torch.nn.Module) -> torch.nn.Module:
    """Load the weights of ``dp_net`` (a :func:`dp_compatible` network) into ``plain`` (the same network as
    built, with ``nn.MultiheadAttention``) and return ``plain``: ``DPMultiheadAttention.state_dict`` names
    its weights as ``nn.MultiheadAttention`` does (``in_proj_weight`` = q, k, v stacked)."""
    from opacus.layers import DPMultiheadAttention

    weights = dp_net.state_dict()
    for name, module in dp_net.named_modules():
        if isinstance(module, DPMultiheadAttention):
            weights.update(module.state_dict(prefix=f"{name}."))
    plain.load_state_dict({key: weights[key] for key in plain.state_dict()})
    return plain


def _sum_weeks_per_station(net: torch.nn.Module, weeks: int) -> None:
    """Per-sample gradients ``[S * W, ...]`` (one per week, station-major) -> ``[S, ...]`` (one per station,
    the sum of its weeks'), so Opacus clips and counts stations, not weeks. An empty Poisson batch (no
    forward pass, no per-sample gradients) gets ``[0, ...]`` ones: Opacus then adds noise to a zero sum."""
    rows = {}
    for name, p in net.named_parameters():
        grad_sample = getattr(p, "grad_sample", None) if p.requires_grad else None
        if grad_sample is not None:
            rows[name] = grad_sample.shape[0]
    if len(set(rows.values())) > 1 or any(n % weeks for n in rows.values()):
        # A layer applied to an input shared by the batch gets one "per-sample" gradient for all: not DP.
        raise RuntimeError(
            f"per-sample gradients of different batch sizes ({rows}); every layer must see the batch"
        )
    for p in net.parameters():
        if not p.requires_grad:
            continue
        grad_sample = getattr(p, "grad_sample", None)
        if grad_sample is None:
            p.grad_sample = p.new_zeros((0, *p.shape))
        else:
            p.grad_sample = grad_sample.reshape(-1, weeks, *p.shape).sum(1)


def station_weeks(x: torch.Tensor, condition):
    """A DP-SGD batch of stations ``x`` ``[S, W, C, L]`` as the weeks the network sees, ``[S * W, C, L]``
    station-major, with each row of ``condition`` (a tensor, a tuple of tensors, or ``None``) repeated for its
    station's ``W`` weeks; any other batch (``[B, C, L]`` weeks) unchanged."""
    if x.dim() != 4:
        return x, condition
    return x.flatten(0, 1), _repeat_rows(condition, x.shape[1])


def _repeat_rows(condition, times: int):
    """Each row of ``condition`` (a tensor, a tuple of tensors, or ``None``) repeated ``times`` times in place."""
    if condition is None:
        return None
    if isinstance(condition, (tuple, list)):
        return type(condition)(_repeat_rows(part, times) for part in condition)
    return condition.repeat_interleave(times, dim=0)


class _PerStation:
    """Lightning callback: :func:`_sum_weeks_per_station` before each optimiser step (built lazily so that
    importing this module does not import Lightning)."""

    @staticmethod
    def callback(weeks: int):
        from lightning.pytorch.callbacks import Callback

        class PerStation(Callback):
            def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
                _sum_weeks_per_station(pl_module.net, weeks)

        return PerStation()


def poisson_stations(dataset: torch.utils.data.Dataset, *, batch_size: int, seed: int):
    """``(loader, noise)``: Opacus' Poisson loader over ``dataset`` (one station per item; each station drawn
    independently with probability ``q = 1 / ceil(N / batch_size)`` per batch, a batch of none still yields
    an empty batch) and the generator it samples with, which also draws DP-SGD's noise: seeded by the
    operating system, never by ``seed`` (module docstring)."""
    from opacus.data_loader import DPDataLoader

    from cellsynth.training import loader

    noise = torch.Generator().manual_seed(secrets.randbits(63))
    poisson = DPDataLoader.from_data_loader(
        loader(dataset, batch_size=batch_size, seed=seed), generator=noise
    )
    return poisson, noise


def noisy_mean_gradient(
    per_station: list[torch.Tensor], plan: PrivacyPlan, noise: torch.Generator
) -> list[torch.Tensor]:
    r"""DP-SGD's gradient from per-station gradients (one tensor ``[S, ...]`` per parameter, row ``n`` the
    gradient of station ``n``'s loss, the sum over its weeks), the formula of the module docstring:

    .. math::  \tilde g = \frac{1}{q N}\Big(\sum_{n} g_n \min\big(1, C / \lVert g_n \rVert\big)
               + \mathcal N(0, \sigma^2 C^2 I)\Big)

    with ``||g_n||`` the norm over all parameters together (as Opacus' flat clipping), ``q N`` the expected
    number of stations in a batch (``int(q N)``, at least 1, as Opacus divides) and the noise drawn from
    ``noise`` (a CPU generator). For a path that computes per-station gradients itself instead of through
    Opacus' hooks (TCN-GAN's critic, :mod:`cellsynth.generators.gan`); an empty batch (``S = 0``) gives the
    noise alone."""
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in per_station]).norm(dim=0)  # [S]
    scale = (plan.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)  # Opacus' factor, 1e-6 against 0 / 0
    expected_stations = max(1, int(plan.sample_rate * plan.n_stations))
    out = []
    for g in per_station:
        clipped = torch.einsum("n,n...->...", scale, g)
        gauss = torch.normal(0.0, plan.noise_multiplier * plan.max_grad_norm, g.shape[1:], generator=noise)
        out.append((clipped + gauss.to(g.device, g.dtype)) / expected_stations)
    return out


def train_private(
    module,
    dataset: torch.utils.data.Dataset,
    plan: PrivacyPlan,
    *,
    weeks: int,
    batch_size: int,
    seed: int,
    **train_options,
) -> dict:
    """Train ``module`` (a training module whose network, ``module.net``, is :func:`dp_compatible`, whose
    loss is a mean of per-week losses, and whose ``training_step`` takes station batches through
    :func:`station_weeks`) with DP-SGD on ``dataset``, whose items are one station each (``[W, C, L]`` weeks,
    its condition), through :func:`cellsynth.training.train` (``train_options``: its ``max_epochs``,
    ``stage``, ``checkpoint_dir``, ``progress``, ``placement``: one process, which the config checks). Returns the spent guarantee
    (:meth:`PrivacyPlan.spent`).

    Lightning runs the loop: the module's optimiser becomes Opacus' ``DPOptimizer`` and the loader its
    Poisson ``DPDataLoader``; a callback regroups per-week gradients per station before each step (Lightning
    calls ``on_before_optimizer_step`` inside the closure that ``DPOptimizer.step`` runs before clipping).
    Lightning's own gradient clipping is off: DP-SGD clips per station.
    """
    from opacus import PrivacyEngine

    from cellsynth.training import train

    poisson, noise = poisson_stations(dataset, batch_size=batch_size, seed=seed)
    if getattr(module, "ema", False) is None:  # the average (of the plain network, kept outside Opacus'
        # wrapper) where the module keeps one: DiffWave and STOUTER do, the VAE does not
        module.ema = copy.deepcopy(module.net).requires_grad_(False)
    with warnings.catch_warnings():
        # Opacus' advice on secure_mode (module docstring), and torch's note that the hooks also fire on
        # frozen inputs: neither is something a user can act on.
        warnings.filterwarnings("ignore", message=r".*(Secure RNG|Full backward hook).*")
        engine = PrivacyEngine(accountant=plan.accountant)
        module.net, dp_optimizer, dp_loader = engine.make_private(
            module=module.net,
            optimizer=module.configure_optimizers(),
            data_loader=poisson,
            noise_multiplier=plan.noise_multiplier,
            max_grad_norm=plan.max_grad_norm,
            poisson_sampling=False,  # the loader above already samples stations by Poisson sampling
            noise_generator=noise,
        )
        module.configure_optimizers = lambda: dp_optimizer
        callbacks = module.configure_callbacks
        module.configure_callbacks = lambda: [*callbacks(), _PerStation.callback(weeks)]
        try:
            train(module, dp_loader, seed=seed, gradient_clip_val=None, **train_options)
        finally:
            module.net = module.net._module  # unwrap Opacus' GradSampleModule
            del module.configure_optimizers, module.configure_callbacks
    # train() runs every planned epoch (a resumed run too: its earlier steps are in the checkpoint), so the
    # steps taken are the planned ones; the accountant of this process saw only those run here.
    taken = sum(n for _, _, n in engine.accountant.history)
    if taken > plan.steps:
        raise RuntimeError(f"DP-SGD ran {taken} steps, more than the {plan.steps} its budget was planned for")
    return plan.spent()


def private_config(config_cls: type, model: str, values: dict, epsilon: float, delta: float | None) -> dict:
    """``values`` (config overrides) for a private fit at ``(epsilon, delta)``, as ``cellsynth fit --epsilon``
    builds them: the ``privacy`` section on top, and below ``values`` the settings the model needs to keep
    every other part off the real traffic (its config's ``private_settings``; an explicit conflicting value
    then fails validation with what to change). A model without a ``privacy`` section is a ConfigError."""
    from cellsynth.generators.presets import merge_config

    if "privacy" not in getattr(config_cls, "model_fields", {}):
        raise ConfigError(
            f"{model} cannot train with differential privacy (its training is not DP-SGD over stations); "
            "leave out --epsilon/--delta, or use a generator with a privacy section (docs/privacy.md)"
        )
    settings = getattr(config_cls, "private_settings", {})
    privacy = {"epsilon": epsilon} | ({} if delta is None else {"delta": delta})
    return merge_config(merge_config(settings, values), {"privacy": privacy})


def saved_guarantee(run_dir) -> dict | None:
    """The spent guarantee a saved model records (``generator.json``, ``state.privacy``); ``None`` for a model
    trained without differential privacy. A directory without a saved model is a :class:`DataError`."""
    from pathlib import Path

    from cellsynth.errors import DataError
    from cellsynth.generators.base import _META_FILE, _read_record

    path = Path(run_dir) / _META_FILE
    if not path.is_file():
        raise DataError(
            f"{run_dir} holds no saved model ({_META_FILE}); give the run directory of `cellsynth fit`",
            source=str(run_dir),
        )
    return _read_record(path)["state"].get("privacy")
