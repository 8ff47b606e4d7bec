r"""MSTDiff's joint reverse sampler (the paper's Algorithm 2, and our options on it), as a scheduler in the
manner of diffusers: :class:`JointSampler` owns the clock that ties the two chains, the strided discrete
chain, the trajectory's sub-steps, corrector rounds and coupled draws, and the clipping of the traffic's
predicted ``x_0``; :meth:`MSTDiffGenerator.generate` gives it the denoiser and asks it for the steps.

**Two schedules, one clock.** Traffic has a Gaussian step ``t in 0..T_g-1`` (``gaussian_steps``, diffusers'
convention), the trajectory a discrete step ``s in 1..S`` (``discrete_steps``), each with its own schedule.
Training draws ``t ~ U{0..T_g-1}`` and sets

.. math::  s(t) = \lceil (t + 1)\, S / T_g \rceil \in \{1..S\}

(:func:`discrete_step`; uniform on ``1..S`` when ``S`` divides ``T_g``): both modalities sit at the same
fraction of their chains, so the pairs ``(t, s)`` seen in training are exactly those that the joint reverse
chain visits.

**Algorithm 2.** ``x ~ N(0, I)``, ``l`` uniform over the stations; for each timestep ``t_i`` of the Gaussian
sampler (``"ddpm"``: all ``T_g``, the paper's; ``"ddim"``: a trailing subsequence), the denoiser sees ``(x, l,
t_i, s(t_i))``; the Gaussian scheduler steps ``x``; the trajectory steps from ``s(t_i)`` to ``s(t_{i+1})`` (0
after the last) when they differ, by :meth:`GraphDiffusion.sample_step` on the *strided* chain whose
schedule is ``alpha-bar`` at the visited ``s`` values only (:func:`strided_chain`). Its step from ``s_a`` to
``s_b < s_a`` uses ``Q_{s_b -> s_a} = exp((alpha-bar_{s_a} - alpha-bar_{s_b}) R)`` and ``Q-bar_{s_b}``, so it is
the exact multi-step posterior ``q(l_{s_b} | l_{s_a}, l_0)`` marginalised over ``p_theta(l_0 | ...)``: DDIM's
subsequence for traffic runs the discrete chain on the matching subsequence, and full DDPM with ``T_g > S``
moves the discrete chain every ``T_g / S`` Gaussian steps.

**Options beyond the paper** (:class:`TrajectoryOptions`, the config's ``sampling`` section; each is
Algorithm 2 at its neutral value, measured in BENCHMARKS.md):

- ``temperature``: ``p_theta(l_0 | ...)`` is ``softmax(logits / temperature)`` in every reverse step; below
  1 sharpens each step's prediction of ``l_0``, which an undertrained denoiser needs, at the cost of
  diversity.
- ``corrector_rounds``: after each reverse step ``s -> s'``, this many rounds of one forward step ``s' -> s``
  (``GraphDiffusion.q_step_sample``) and the same reverse step again, given the same traffic state. With
  an exact denoiser a round leaves the marginal ``q(l_{s'})`` unchanged (tested); with a trained one it
  lets positions that one factorised reverse step drew independently be redrawn given each other.
- ``trajectory_substeps``: each reverse step ``s -> s'`` is split into this many equal steps at real-valued
  ``s`` (:func:`trajectory_substeps_grid`; ``alpha-bar`` from :meth:`GraphDiffusion.abar_at`, the denoiser's
  step embedding at the same ``s``; traffic still steps once, on the first). The error of the factorised
  step grows with how many positions one step decides at once and vanishes as the steps shrink.
- ``step_spacing`` ``p`` (the config's ``sampling.step_spacing``): the ``n`` steps visit the discrete steps
  ``s_i = ceil(S ((n - i) / n)^p)`` (:func:`spaced_steps`) instead of an even stride, each with the last
  Gaussian step of its ``s``; ``p > 1`` spends more of a short chain near the data end, where each reverse
  step decides a user's final places, and fewer where the chain is near its prior.
- ``trajectory_coupling`` ``rho``: each reverse step draws a user's time steps with noise correlated along
  the week (lag-``d`` correlation ``rho^d``; :func:`~cellsynth.diffusion.categorical.coupled_categorical});
  every token's marginal is still the step's ``p(l_{s-1} | l_s)``.

In a model fitted with ``extensions.self_condition`` every denoiser call (steps, sub-steps and corrector
rounds alike) gets the previous call's ``p_theta(l_0 | ...)``, before the temperature; the first call of the
chain gets none, as half of the training batches did (:class:`Denoiser`). Such a model's chain is best with
one sub-step and no corrector rounds: more calls sharpen the prediction until users barely move.

``extensions.clip_x0`` (not in the paper) clips the traffic's predicted ``x_0`` to the training range of
its band at every step (:func:`clip_predicted_x0`, DDPM's ``clip_sample`` per band).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np
import torch
from tqdm.auto import tqdm

from cellsynth.diffusion.categorical import check_coupling
from cellsynth.diffusion.discrete import GraphDiffusion
from cellsynth.diffusion.gaussian import (
    GaussianDiffusion,
    clip_predicted_x0,
    network_precision,
)
from cellsynth.errors import ConfigError

__all__ = [
    "Denoiser",
    "JointSampler",
    "TrajectoryOptions",
    "TrajectoryStepCallback",
    "discrete_step",
    "gaussian_steps_of",
    "spaced_steps",
    "strided_chain",
    "trajectory_substeps_grid",
]

#: ``(s, s_next, l_{s_next} [b, T], logits of p_theta(l_0 | l_s) [b, T, N]) -> None``, see ``generate``;
#: ``s`` and ``s_next`` are ints, or floats at the sub-steps of ``trajectory_substeps > 1``.
TrajectoryStepCallback = Callable[[float, float, torch.Tensor, torch.Tensor], None]


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


def spaced_steps(n: int, discrete_steps: int, power: float) -> list[int]:
    r"""The discrete steps ``s_0 > s_1 > ... > s_{n-1} >= 1`` that ``n`` joint reverse steps start from, spaced
    by the power ``p``:

    .. math::  s_i = \lceil S ((n - i) / n)^p \rceil,

    each raised where needed to ``n - i`` so that every step moves the chain (the smallest ones become single
    steps). ``p = 1`` is DDIM's trailing stride, ``s_i = S - i S / n`` when ``n`` divides ``S``; ``p > 1``
    spends more of the ``n`` steps near the data end, where the chain's last positions are decided. Needs
    ``1 <= n <= S``."""
    if not 1 <= n <= discrete_steps:
        raise ConfigError(
            f"spaced steps need 1 <= steps <= discrete_steps ({discrete_steps}), got {n}: lower steps or "
            "set sampling.step_spacing to 1"
        )
    fraction = (n - np.arange(n)) / n
    s = np.ceil(discrete_steps * fraction**power - 1e-9).astype(np.int64)  # 1e-9: 0.56 * 100 is 56
    s = np.maximum(s, n - np.arange(n))
    for i in range(1, n):
        s[i] = min(s[i], s[i - 1] - 1)
    return [int(v) for v in s]


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


@dataclass(frozen=True)
class TrajectoryOptions:
    """The trajectory's sampler options of one draw (module docstring); the defaults are Algorithm 2."""

    temperature: float = 1.0
    corrector_rounds: int = 0
    trajectory_substeps: int = 1
    trajectory_coupling: float = 0.0

    @classmethod
    def resolve(cls, defaults, **given) -> TrajectoryOptions:
        """The options given (None: ``defaults``' field of the same name, the config's ``sampling``), checked:
        ConfigError naming the option."""
        values = {
            f.name: getattr(defaults, f.name) if given.get(f.name) is None else given[f.name]
            for f in fields(cls)
        }
        temperature = values["temperature"]
        if not (isinstance(temperature, (int, float)) and temperature > 0 and np.isfinite(temperature)):
            raise ConfigError(f"temperature must be a positive number, got {temperature!r}")
        _require_count("corrector_rounds", values["corrector_rounds"], 0)
        _require_count("trajectory_substeps", values["trajectory_substeps"], 1)
        values["trajectory_coupling"] = check_coupling(values["trajectory_coupling"], "trajectory_coupling")
        return cls(**values)


class Denoiser:
    """The denoiser's calls for one batch of users: ``(eps, logits) = denoiser(x_in, l, t, s)``, with the
    users' ``anchors`` (a model fitted with anchors) and, when ``self_condition``, the previous call's
    ``p_theta(l_0 | ...)`` (None at the first call; each call keeps its own for the next).

    ``precision``: the network's products in ``"float32"`` or ``"bfloat16"``
    (:func:`~cellsynth.diffusion.gaussian.network_precision`); ``eps`` and ``logits`` come back float32
    either way, so both chains step in float32."""

    def __init__(
        self,
        net,
        *,
        self_condition: bool = False,
        anchors: torch.Tensor | None = None,
        precision: str = "float32",
        device: torch.device | str = "cpu",
    ) -> None:
        self.net, self.self_condition = net, self_condition
        self.extra = {} if anchors is None else {"anchors": anchors}
        self.previous: torch.Tensor | None = None
        # decided once per batch (a device without native bfloat16 warns here, not at every call)
        self.network_context = network_precision(precision, device)

    def __call__(self, x_in, loc, t_in, s_in) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        extra = self.extra if not self.self_condition else self.extra | {"l0_probs": self.previous}
        with self.network_context:
            eps, logits = self.net(x_in, loc, t_in, s_in, **extra)
        eps = None if eps is None else eps.float()
        logits = None if logits is None else logits.float()
        if self.self_condition:
            self.previous = logits.softmax(-1)
        return eps, logits


class JointSampler:
    """The joint reverse chain of traffic (``gauss``, with ``traffic``) and trajectory (``graph``; None:
    traffic only) for Gaussian ``sampler`` with ``steps`` (None: its default), ``discrete_steps`` ``S``,
    the trajectory ``options`` and, for ``clip_x0``, the band ranges ``clip [2, T]`` (None: no clipping).
    ``step_spacing`` other than 1 visits the discrete steps of :func:`spaced_steps` instead of the sampler's
    even stride, each Gaussian step ``t_i`` the last with ``s(t) = s_i`` (the scheduler stepping between them:
    :meth:`GaussianDiffusion.scheduler`'s ``timesteps``).

    ``timesteps[i]`` is the Gaussian step ``t_i``, ``s_now[i]`` its discrete step ``s(t_i)``, ``grid[i]`` the
    discrete steps the trajectory's reverse steps start from at ``i``, and ``chain`` the strided discrete
    chain over every step visited. :meth:`sample` draws one batch; :meth:`step` is one step of it."""

    def __init__(
        self,
        gauss: GaussianDiffusion,
        graph: GraphDiffusion | None,
        *,
        traffic: bool,
        sampler: str,
        steps: int | None,
        discrete_steps: int,
        options: TrajectoryOptions,
        clip: torch.Tensor | None = None,
        step_spacing: float = 1.0,
    ) -> None:
        self.gauss, self.traffic, self.sampler, self.steps = gauss, traffic, sampler, steps
        self.options, self.clip = options, clip
        self.timesteps = [int(t) for t in gauss.scheduler(sampler, steps).timesteps]
        #: the Gaussian steps given to the scheduler (None: its own stride)
        self.spaced: list[int] | None = None
        if step_spacing != 1.0:
            s_visited = spaced_steps(len(self.timesteps), discrete_steps, step_spacing)
            last_t = [
                int(gaussian_steps_of(s, discrete_steps, gauss.num_train_timesteps)[1]) for s in s_visited
            ]
            self.timesteps = self.spaced = last_t
        t = torch.tensor(self.timesteps)
        self.s_now = [int(v) for v in discrete_step(t, discrete_steps, gauss.num_train_timesteps)]
        self.s_next = [*self.s_now[1:], 0]
        self.grid = trajectory_substeps_grid(self.s_now, options.trajectory_substeps)
        self.chain: GraphDiffusion | None = None
        self.index: dict[float, int] = {}
        if graph is not None:
            visited = sorted({s for starts in self.grid for s in starts})
            self.chain = strided_chain(graph, visited)
            self.index = {s: j + 1 for j, s in enumerate(visited)}

    def __len__(self) -> int:
        return len(self.timesteps)

    def sample(
        self,
        denoiser: Denoiser,
        batch: int,
        length: int,
        *,
        generator: torch.Generator,
        device: torch.device,
        on_trajectory_step: TrajectoryStepCallback | None = None,
        progress: bool = False,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(x_0 [batch, length] or None, l_0 [batch, length] or None)``: ``x_T ~ N(0, I)`` and ``l_S`` from
        the prior, then every step. Draws in a fixed order from ``generator``: the same generator state gives
        the same users."""
        scheduler = self.gauss.scheduler(self.sampler, self.steps, self.spaced)  # stateful: one per batch
        x = loc = None
        if self.traffic:
            x = torch.randn(batch, length, generator=generator, device=device) * scheduler.init_noise_sigma
        if self.chain is not None:
            loc = self.chain.prior_sample((batch, length), generator=generator, device=device)
        clip = None if self.clip is None else self.clip.to(device)
        for i in tqdm(range(len(self)), desc="sampling", disable=not progress, leave=False):
            x, loc = self.step(i, scheduler, denoiser, x, loc, generator, clip, on_trajectory_step)
        return x, loc

    def step(self, i, scheduler, denoiser, x, loc, generator, clip=None, on_trajectory_step=None):
        """Step ``i``: one denoiser call at ``(t_i, s(t_i))``, the Gaussian step of ``x`` (its predicted
        ``x_0`` clipped to ``clip``, if given), then the trajectory's reverse steps from ``s(t_i)`` down to
        ``s(t_{i+1})``. Returns ``(x, loc)``."""
        t = self.timesteps[i]
        some = x if x is not None else loc
        b, device = some.shape[0], some.device
        x_in = scheduler.scale_model_input(x, t) if x is not None else None
        t_in = torch.full((b,), t, dtype=torch.long, device=device) if self.traffic else None
        s_in = None
        if self.chain is not None:
            s_in = torch.full((b,), self.s_now[i], dtype=torch.long, device=device)
        eps, logits = denoiser(x_in, loc, t_in, s_in)
        if x is not None:
            if clip is not None:
                eps = clip_predicted_x0(x, eps, float(self.gauss.alphas_cumprod[t]), clip[0], clip[1])
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
        if self.chain is not None:
            loc = self._trajectory_steps(
                i, denoiser, x_in, loc, t_in, s_in, logits, generator, on_trajectory_step
            )
        return x, loc

    def _trajectory_steps(self, i, denoiser, x_in, loc, t_in, s_in, logits, generator, on_trajectory_step):
        """The reverse steps of the trajectory at Gaussian step ``i``: one per start in ``grid[i]`` (the first
        reuses the step's denoiser call), each followed by the corrector rounds."""
        opts, chain = self.options, self.chain
        draw = {"generator": generator, "coupling": opts.trajectory_coupling, "temperature": opts.temperature}
        starts = self.grid[i]
        for k, s in enumerate(starts):
            s_to = starts[k + 1] if k + 1 < len(starts) else self.s_next[i]
            if k:  # a sub-step: the same traffic state, the denoiser at the real-valued s
                s_in = torch.full((loc.shape[0],), s, dtype=torch.float32, device=loc.device)
                _, logits = denoiser(x_in, loc, t_in, s_in)
            j = self.index[s]
            loc = chain.sample_step(loc, logits, j, **draw)
            for _ in range(opts.corrector_rounds):  # forward s_to -> s, then the reverse step again
                noisy = chain.q_step_sample(loc, j, generator=generator)
                _, logits = denoiser(x_in, noisy, t_in, s_in)
                loc = chain.sample_step(noisy, logits, j, **draw)
            if on_trajectory_step is not None:
                on_trajectory_step(s, s_to, loc, logits)
        return loc
