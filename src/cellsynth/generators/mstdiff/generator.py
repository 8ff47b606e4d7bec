r"""MSTDiff (Liu, Long, Xue, Wang, Li): users' traffic and trajectories, generated jointly by a Gaussian
diffusion in the wavelet domain and a discrete diffusion over base stations, with one multi-scale
Transformer denoising both. We implement the paper (not the authors' code; the differences are listed at
the end). The config (:mod:`.config`) keeps the paper's model at its top level and our extensions, the
sampling defaults and the calibration in sections; the ``paper`` preset is the published method.

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
4. **Denoiser** (stage ``"denoiser"``, :class:`cellsynth.nn.mstdiff.MSTDiffNet`), trained on the paper's
   loss ``lambda_1 MSE(eps) + lambda_2 KL + lambda_3 CE`` (:mod:`.training`). An EMA of the weights is
   what generates.
5. **Sampler selection** (config ``sampler_selection``, not in the paper; :mod:`.sampler_selection`): with
   candidates in the config, each draws ``sampler_selection.users`` users, scored against the training users
   by the Table II JSDs; the lowest mean rank, counting only differences beyond the draw's noise, becomes the
   model's trajectory sampling default.
6. **Calibration** (config ``calibration``, not in the paper; :mod:`.calibration`): after training,
   ``calibration.users`` users drawn with the model's sampling fit a monotone map of generated traffic
   onto the training values' distribution (``"quantiles"``), the same after setting each wavelet
   coefficient's mean and spread over users to the training ones (``"moments"``, default), or only a
   threshold that restores the training share of exact zeros (``"zeros"``).

**Generation** (:meth:`MSTDiffGenerator.generate`): the paper's Algorithm 2, the joint reverse chain of
:class:`~.sampler.JointSampler` (which also documents the clock ``s(t)`` that ties the two chains and the
sampler options beyond the paper), then the inverse DWT and normalisation (never negative), and the
calibration.

**Modes.** Data without traffic (GeoLife): trajectory only. ``trajectory=False`` (the paper's ablation):
traffic only; the locations of generated users then come from the :mod:`~cellsynth.generators.floors.markov`
floor fitted on the same data, independent of the traffic (the output needs locations; their metrics
measure that chain, not MSTDiff).

**Extensions** (config ``extensions``; docs/discrete-diffusion.md §8-12): ``clip_x0`` (the sampler clips
the traffic's predicted ``x_0``), ``self_condition`` (the network and :mod:`.training`), ``anchors`` (each
user's most-visited stations condition the denoiser; drawn first for new users, :mod:`.anchors`),
``own_chain`` (:mod:`.training`) and ``oscillation_neighbours`` (one-step visits to a neighbouring cell
are taken out of the training weeks and drawn again after the chain, :mod:`.oscillations`).

**Where the authors' public code departs from the paper, and what this module does** (each tested):
CE term dropped -> kept (``lambda_ce``); "posterior" ignoring ``l_s`` -> the true posterior and exact
marginalisation (``GraphDiffusion``); unlearned random CLS tokens -> ``nn.Parameter`` s; logits in
wavelet-band order -> time order; schedule ending at ``alpha-bar = 1.97`` -> ``alpha-bar_S`` from the
spectral mixing bound; first-difference JSD across users and per-set histogram ranges -> the metrics in
:mod:`cellsynth.metrics` (along time, bins of the real range).

What the model does and does not learn at the budgets measured (the "known limits"): docs/mstdiff.md.

Save/load (:mod:`.persistence`) keeps the network weights (EMA), the normalisation constants, ``R`` (its
non-zeros) and the schedule ``alpha-bar``; ``GraphDiffusion`` is rebuilt from them (the eigendecomposition is
deterministic).
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch

from cellsynth.data.knowledge import KnowledgeGraph
from cellsynth.data.model import UserMobility
from cellsynth.diffusion.discrete import GraphDiffusion
from cellsynth.diffusion.gaussian import step_count
from cellsynth.errors import ConfigError, DataError
from cellsynth.generators.base import UserGenerator, expect
from cellsynth.generators.floors.markov import hour_keys
from cellsynth.generators.mstdiff.anchors import AnchorModel, check_anchors, top_locations
from cellsynth.generators.mstdiff.calibration import (
    calibrate_traffic,
    fit_calibration,
)
from cellsynth.generators.mstdiff.components import (
    band_range,
    build_net,
    check_fit_inputs,
    fit_markov,
    gaussian_diffusion,
    oscillation_partners,
    transitions,
    vq_hparams,
)
from cellsynth.generators.mstdiff.config import MSTDiffConfig
from cellsynth.generators.mstdiff.oscillations import CellOscillations
from cellsynth.generators.mstdiff.persistence import model_state, restore_model
from cellsynth.generators.mstdiff.sampler import (
    Denoiser,
    JointSampler,
    TrajectoryOptions,
    TrajectoryStepCallback,
)
from cellsynth.generators.mstdiff.sampler_selection import run_selection, selection_note, with_candidate
from cellsynth.generators.mstdiff.training import DenoiserModule
from cellsynth.generators.state import (
    fingerprint,
    guard_resume,
    restore_time_axis,
    time_axis_state,
)
from cellsynth.nn.vqvae import fit_vqvaes
from cellsynth.training import loader, module_on, resolve_device, seed_everything, train
from cellsynth.transforms.wavelets import TrafficWavelets, band_names, band_slices

__all__ = ["MSTDiffConfig", "MSTDiffGenerator"]


def _sampler_label(sampler: str, steps: int, step_spacing: float = 1.0) -> str:
    """``"DDIM-50"``: a sampler and its number of steps (and their spacing, if not even), as the fit note and
    the warnings say it."""
    return f"{sampler.upper()}-{steps}" + ("" if step_spacing == 1.0 else f" spaced {step_spacing:g}")


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
            # the post-fit draws at smoke size too (a preset's 6 x 256 users of the selection took a minute)
            "calibration": {"users": 16},
            "sampler_selection": {"users": 16},
            # every step of the 6-step chain, evenly: a preset's step count (recommended: 25, spaced) needs
            # more steps than the smoke chain has
            "sampling": {"steps": None, "step_spacing": 1.0},
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
        kg = knowledge_graph
        kg_parts = () if kg is None else (kg.heads, kg.relations, kg.tails)
        guard_resume(
            checkpoint_dir,
            self.name,
            {
                "config": self.config.model_dump(mode="json"),
                "data": fingerprint(data.locations, data.traffic, data.stations.ids, *kg_parts),
            },
            what_else="training data or knowledge graph",
        )

        coeffs = torch.zeros(data.n_users, data.n_steps)
        self.wavelets_ = self.clip_ = self.vq_usage_ = None
        vqvaes = None
        if traffic:
            coeffs, vqvaes = self._fit_traffic(data, progress, checkpoint_dir)

        self.graph_, self.graph_source_, station_init, self.markov_ = None, None, None, None
        self.anchor_model_ = self.oscillations_ = anchors = None
        locations = np.array(data.locations, dtype=np.int64)
        if trajectory:
            ext = cfg.extensions
            rate, self.graph_source_, station_init = transitions(
                cfg, data.stations, knowledge_graph, progress, checkpoint_dir
            )
            if ext.oscillation_neighbours:
                partners = oscillation_partners(cfg, data.stations, self.name)
                self.oscillations_ = CellOscillations.fit(locations, partners)
                locations = self.oscillations_.remove(locations)
            if ext.anchors:
                anchors = top_locations(locations, ext.anchors)
                self.anchor_model_ = AnchorModel.fit(anchors, n, data.stations.lat, data.stations.lon)
            self.graph_ = GraphDiffusion(
                rate, steps=cfg.discrete_steps, tol=cfg.discrete_tol, first_jump=cfg.first_jump
            )
        else:
            self.markov_ = fit_markov(data)

        self.gauss_ = gaussian_diffusion(cfg)
        seed_everything(cfg.seed)
        net = build_net(cfg, data.n_steps, n if trajectory else None, traffic, vqvaes, station_init)
        module = DenoiserModule(net, self.gauss_, self.graph_, cfg)
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
            placement=cfg.placement(),
        )
        self.net_ = module.ema.eval()
        self.history_ = list(module.history)
        self.stations_, self.time_, self.n_steps_ = data.stations, time_axis_state(data), data.n_steps
        self.traffic_, self.trajectory_ = traffic, trajectory
        self.calibration_ = self.sampler_selection_ = None
        self.fitted_ = True
        if trajectory and cfg.sampler_selection.candidates:
            self.select_sampling(data, progress=progress)
        if traffic and cfg.calibration.mode != "none":
            self.calibrate(data, progress=progress)
        return self

    def _fit_traffic(self, data: UserMobility, progress, checkpoint_dir):
        """Stages 1-2: ``(coefficients [U, T], VQ-VAEs or None)``; sets ``wavelets_``, ``clip_`` (each band's
        training range) and ``vq_usage_``."""
        cfg = self.config
        self.wavelets_ = TrafficWavelets(cfg.level, cfg.wavelet, cfg.band_standardise).fit(data.traffic)
        coeffs = torch.from_numpy(self.wavelets_.transform(data.traffic)).float()
        self.clip_ = band_range(coeffs, data.n_steps, cfg.level)
        if not (cfg.vqvae and cfg.vq_scales > 0):
            return coeffs, None
        vqvaes = fit_vqvaes(
            coeffs,
            band_slices(data.n_steps, cfg.level),
            epochs=cfg.vq_epochs,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            progress=progress,
            checkpoint_dir=checkpoint_dir,
            placement=cfg.placement(),
            **vq_hparams(cfg),
            lr=cfg.vq_lr,
        )
        self.vq_history_ = vqvaes.history
        # the last epoch's codebook usage per band, in band order (what fit_notes reports)
        self.vq_usage_ = [vqvaes.history[-1][b] for b in sorted(vqvaes.history[-1])]
        # Frozen inside the denoiser and only ever called through quantise() (no restarts, no dropout or
        # normalisation layers), so their mode is irrelevant; train mode keeps Lightning quiet.
        vqvaes.train()
        return coeffs, vqvaes

    # -- sampler selection ------------------------------------------------------------------------------
    def sampling_defaults(self) -> TrajectoryOptions:
        """The trajectory sampler options :meth:`generate` and :meth:`calibrate` use where none are given:
        the config's ``sampling`` section, with the options of the candidate that :meth:`select_sampling`
        chose in their place (a model fitted with ``sampler_selection.candidates``)."""
        defaults = TrajectoryOptions.resolve(self.config.sampling)
        chosen = self.sampler_selection_
        return defaults if chosen is None else with_candidate(defaults, chosen["chosen"])

    def select_sampling(self, data: UserMobility, *, progress: bool = False) -> MSTDiffGenerator:
        """Choose the trajectory sampler options among the config's ``sampler_selection.candidates`` on
        ``data``'s users (``fit`` does it with the training users; no held-out data is touched): each draws
        ``sampler_selection.users`` users with the config's seed and sampler, scored against ``data`` by the
        Table II JSDs; the lowest mean rank, counting only differences beyond the draw's noise, wins
        (:mod:`.sampler_selection`). Sets :attr:`sampler_selection_` (each candidate's options, JSDs, their
        spread and its mean rank, and the one chosen), which a saved model keeps."""
        self.check_fitted()
        data = expect(data, UserMobility, self.name)
        cfg = self.config
        selection = cfg.sampler_selection
        if not self.trajectory_ or not selection.candidates:
            raise ConfigError(
                f"{self.name}: sampler selection needs a model with trajectories (trajectory: true) and "
                "sampler_selection.candidates in its config"
            )
        self.sampler_selection_ = None  # the candidates are drawn from the config's own defaults
        sampler, steps = cfg.resolve_sampler(None, None)

        def draw(options: TrajectoryOptions) -> np.ndarray:
            _, locations = self._draw(
                selection.users, seed=cfg.seed, sampler=sampler, steps=steps, options=options
            )
            return self._with_oscillations(locations, cfg.seed)

        candidates = [c.model_dump() for c in selection.candidates]
        self.sampler_selection_ = run_selection(
            draw,
            candidates,
            self.sampling_defaults(),
            data,
            resamples=selection.resamples,
            margin=selection.margin,
            seed=cfg.seed,
            progress=progress,
        )
        return self

    # -- calibration ------------------------------------------------------------------------------------
    def calibrate(
        self,
        data: UserMobility,
        *,
        seed: int | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        step_spacing: float | None = None,
        progress: bool = False,
    ) -> MSTDiffGenerator:
        """Fit the post-processing of generated traffic against ``data``'s traffic (``fit`` does it with the
        training data): draw ``calibration.users`` users (seed: the config's) with ``sampler``, ``steps`` and
        ``step_spacing`` (default: the config's ``sampling``) and the model's trajectory options
        (:meth:`sampling_defaults`), then keep every mode's map
        (:func:`~cellsynth.generators.mstdiff.calibration.fit_calibration`); ``calibration.mode`` picks which
        one :meth:`generate` applies. Calling it again with other data, or for another sampler, recalibrates a
        trained model.

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
        step_spacing = self._step_spacing(step_spacing)
        options = self.sampling_defaults()
        raw, _ = self._draw(
            cfg.calibration.users,
            seed=seed,
            sampler=sampler,
            steps=steps,
            options=options,
            progress=progress,
            step_spacing=step_spacing,
        )
        record = {"sampler": sampler, "steps": self._step_count(sampler, steps), "step_spacing": step_spacing}
        self.calibration_ = record | fit_calibration(raw, data.traffic, self.wavelets_)
        return self

    def _step_spacing(self, given) -> float:
        """``given`` (None: the config's ``sampling.step_spacing``), checked: a number in [1, 4]."""
        value = self.config.sampling.step_spacing if given is None else given
        if isinstance(value, bool) or not (isinstance(value, (int, float)) and 1 <= value <= 4):
            raise ConfigError(f"step_spacing must be a number in [1, 4] (1: even steps), got {value!r}")
        return float(value)

    def _step_count(self, sampler: str, steps: int | None) -> int:
        """How many Gaussian steps ``sampler`` with ``steps`` (None: its default) takes on this model."""
        return step_count(sampler, steps, self.gauss_.num_train_timesteps)

    def _calibration_sampler(self) -> tuple[str, int, float]:
        """``(sampler, steps, step_spacing)`` the calibration's users were drawn with (DDIM-50, even, before
        they were recorded)."""
        cal = self.calibration_
        steps = cal.get("steps") or self._step_count("ddim", None)
        return cal.get("sampler", "ddim"), steps, float(cal.get("step_spacing", 1.0))

    def calibrated(self, traffic: np.ndarray, mode: str | None = None) -> np.ndarray:
        """Raw generated traffic ``[U, T]`` through the fitted calibration ``mode`` (default: the config's
        ``calibration.mode``; ``"none"`` returns it unchanged, as does a model without a calibration)."""
        mode = self.config.calibration.mode if mode is None else mode
        return calibrate_traffic(self.calibration_, traffic, mode, self.wavelets_, self.name)

    def _warn_other_sampler(self, sampler: str, steps: int | None, step_spacing: float) -> None:
        mode = self.config.calibration.mode
        if self.calibration_ is None or mode == "none":
            return
        fitted = self._calibration_sampler()
        drawn = (sampler, self._step_count(sampler, steps), step_spacing)
        if drawn != fitted:
            warnings.warn(
                f"{self.name}: the traffic calibration ({mode}) was fitted on "
                f"{_sampler_label(*fitted)} draws; these are {_sampler_label(*drawn)}, whose "
                "wavelet bands are spread differently. Sample with the calibration's sampler, call "
                f"calibrate(training data, sampler={sampler!r}, steps={steps!r}"
                + ("" if step_spacing == 1.0 else f", step_spacing={step_spacing:g}")
                + ") first, or set config calibration.mode 'none'.",
                stacklevel=3,
            )

    def _check_fit_inputs(self, data, knowledge_graph: KnowledgeGraph | None = None):
        data = super()._check_fit_inputs(data)
        check_fit_inputs(self.config, data, knowledge_graph, self.name)
        return data

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
        if self.sampler_selection_ is not None:
            notes.append(selection_note(self.sampler_selection_))
        cal = self.calibration_
        if not self.traffic_ or cal is None:
            return notes
        mode = self.config.calibration.mode
        what = {
            "quantiles": "maps generated traffic onto the training values' distribution (quantile mapping)",
            "moments": "sets each wavelet coefficient's mean and spread over users to the training ones, then "
            "maps generated traffic onto the training values' distribution (quantile mapping)",
            "zeros": f"sets generated traffic at or below {cal['zero_threshold']:.4g} to 0",
            "none": "is off (config calibration.mode: none)",
        }[mode]
        return [
            *notes,
            f"{cal['zero_share']:.0%} of the training traffic values are exactly 0; uncalibrated, the model "
            f"generated {cal['raw_zero_share']:.0%} ({self.config.calibration.users} users, "
            f"{_sampler_label(*self._calibration_sampler())}). The "
            f"calibration {what}.",
        ]

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
        device: str | torch.device | None = None,
        precision: str | None = None,
        step_spacing: float | None = None,
    ) -> UserMobility:
        """``target`` users, jointly: the paper's Algorithm 2 (:class:`~.sampler.JointSampler`). ``sampler``
        ``"ddpm"`` (``steps=None``: all ``gaussian_steps``) or ``"ddim"`` (default 50 steps); None: the config's
        ``sampling.sampler`` and ``sampling.steps``. The discrete chain runs on the matching steps. Traffic goes
        through the calibration fitted after training (config ``calibration``, :meth:`calibrate`), with a
        warning when it was fitted on another sampler's draws. Same seed, same machine, same users.

        ``temperature``, ``corrector_rounds``, ``trajectory_substeps`` and ``trajectory_coupling``: the
        trajectory's sampler options (:mod:`cellsynth.generators.mstdiff.sampler`, where each is defined and
        its measurements cited); None takes the model's default (:meth:`sampling_defaults`): the option of
        the candidate the sampler selection chose, else the config's ``sampling`` field of the same name,
        which is Algorithm 2's value unless the config sets another.

        ``anchors`` (a model fitted with ``extensions.anchors = k``): ``int [target, k]`` station indices, each
        user's most-visited stations, most first, to generate users who live and work there (a planner's
        "users of this site"); None draws them from the fitted
        :class:`~cellsynth.generators.mstdiff.anchors.AnchorModel`.

        ``on_trajectory_step(s, s_next, l, logits)``, if given, is called after every reverse step of the
        trajectory chain with the step taken (``s -> s_next``, ``s_next = 0`` last), the sampled ``l_{s_next}``
        ``long [b, T]`` and the denoiser's logits of ``p_theta(l_0 | l_s)`` ``[b, T, N]`` (before the
        temperature), for each batch of ``sampling.batch_size`` users: a view of the chain as it denoises
        (``benchmarks/mstdiff_chain.py``). It must not modify them. In a model fitted with
        ``extensions.oscillation_neighbours`` the chain it sees has no cell oscillations: they are drawn
        into the returned weeks after it ends.

        ``device``: where the chain runs (None: the config's ``accelerator``, ``auto`` taking CUDA when there is
        one, as training does). ``precision``: the denoiser's products, ``"float32"`` or ``"bfloat16"`` (None:
        ``sampling.precision``; :class:`~.sampler.Denoiser`). ``step_spacing``: the power of the spacing of the
        visited discrete steps (None: ``sampling.step_spacing``; :func:`~.sampler.spaced_steps`)."""
        self.check_fitted()
        step_spacing = self._step_spacing(step_spacing)
        options = TrajectoryOptions.resolve(
            self.sampling_defaults(),
            temperature=temperature,
            corrector_rounds=corrector_rounds,
            trajectory_substeps=trajectory_substeps,
            trajectory_coupling=trajectory_coupling,
        )
        n_users = self._check_users(target)
        if samples != 1:
            raise DataError(
                f"{self.name} generates users: give their number, not samples (got samples={samples})"
            )
        sampler, steps = self.config.resolve_sampler(sampler, steps)
        if self.traffic_:
            self._warn_other_sampler(sampler, steps, step_spacing)
        traffic, locations = self._draw(
            n_users,
            seed=seed,
            sampler=sampler,
            steps=steps,
            options=options,
            anchors=check_anchors(anchors, n_users, self.n_anchors, len(self.stations_), self.name),
            on_trajectory_step=on_trajectory_step,
            progress=progress,
            device=device,
            precision=precision,
            step_spacing=step_spacing,
        )
        start, step = restore_time_axis(self.time_)
        if self.traffic_:
            traffic = self.calibrated(traffic)
        locations = self._with_oscillations(locations, seed)
        if not self.trajectory_:
            hours = hour_keys(start, step, self.n_steps_, weekly=False)
            locations = self.markov_.sample(n_users, hours, np.random.default_rng(seed))
        return UserMobility(locations, start, step, self.stations_, traffic=traffic)

    def _with_oscillations(self, locations: np.ndarray | None, seed: int) -> np.ndarray | None:
        """The chain's ``locations`` with cell oscillations drawn in (a model fitted with
        ``extensions.oscillation_neighbours``; else as they are), from the seed's own stream ``[seed, 1]``
        (the anchors use the seed's first)."""
        if self.oscillations_ is None or locations is None:
            return locations
        return self.oscillations_.add(locations, np.random.default_rng([seed, 1]))

    @property
    def n_anchors(self) -> int:
        """``k``: the anchors per user that :meth:`generate` takes (0: a model fitted without them)."""
        self.check_fitted()
        return 0 if self.anchor_model_ is None else self.anchor_model_.k

    def denoiser(
        self, anchors: torch.Tensor | None = None, net=None, precision: str = "float32", device="cpu"
    ) -> Denoiser:
        """The denoiser's calls for one batch of users with these ``anchors``, through ``net`` (None: the fitted
        EMA network) in ``precision`` on ``device``; self-conditioned when the model has a trajectory and
        ``extensions.self_condition``."""
        self_condition = bool(self.trajectory_ and self.config.extensions.self_condition)
        net = self.net_ if net is None else net
        return Denoiser(
            net, self_condition=self_condition, anchors=anchors, precision=precision, device=device
        )

    def _draw(
        self,
        n_users: int,
        *,
        seed,
        sampler,
        steps,
        options: TrajectoryOptions,
        anchors=None,
        on_trajectory_step=None,
        progress=False,
        device=None,
        precision=None,
        step_spacing=None,
    ):
        """``(traffic [U, T] float32 before the calibration, or None; locations [U, T] int64 or None)``:
        the joint reverse chain for ``n_users`` users in batches of ``sampling.batch_size`` (``anchors``:
        see ``generate``), all drawn from one generator seeded with ``seed``; the denoiser in ``precision``
        (None: ``sampling.precision``, as the calibration's and the sampler selection's draws are)."""
        cfg = self.config
        precision = cfg.resolve_precision(precision)
        device = resolve_device(cfg.accelerator) if device is None else torch.device(device)
        net = module_on(self.net_, device)
        gen = torch.Generator(device=device).manual_seed(int(seed))
        if self.anchor_model_ is not None and anchors is None:
            anchors = self.anchor_model_.sample(n_users, np.random.default_rng(int(seed)))
        if anchors is not None:
            anchors = torch.from_numpy(anchors).to(device)
        chain = JointSampler(
            self.gauss_,
            self.graph_ if self.trajectory_ else None,
            traffic=self.traffic_,
            sampler=sampler,
            steps=steps,
            discrete_steps=cfg.discrete_steps,
            options=options,
            clip=self.clip_ if self.traffic_ and cfg.extensions.clip_x0 else None,
            step_spacing=self._step_spacing(step_spacing),
        )
        coeff_parts, loc_parts = [], []
        for lo in range(0, n_users, cfg.sampling.batch_size):
            b = min(cfg.sampling.batch_size, n_users - lo)
            own = anchors[lo : lo + b] if anchors is not None else None
            x, loc = chain.sample(
                self.denoiser(own, net, precision, device),
                b,
                self.n_steps_,
                generator=gen,
                device=device,
                on_trajectory_step=on_trajectory_step,
                progress=progress,
            )
            coeff_parts.append(x.cpu() if x is not None else None)
            loc_parts.append(loc.cpu() if loc is not None else None)

        traffic = locations = None
        if self.traffic_:
            traffic = self.wavelets_.inverse(torch.cat(coeff_parts).double().numpy()).astype(np.float32)
        if self.trajectory_:
            locations = torch.cat(loc_parts).numpy().astype(np.int64)
        return traffic, locations

    # -- persistence ------------------------------------------------------------------------------------
    def _state(self):
        return model_state(self)

    def _restore(self, tensors, meta) -> None:
        restore_model(self, tensors, meta)
