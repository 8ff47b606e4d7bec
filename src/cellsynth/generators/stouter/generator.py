"""STOUTER (Xu, Liu, Liu, Li, Wu; IEEE TMC 2025, MobiCom'25 poster): station-level traffic by a DDPM
conditioned on pretrained spatio-temporal graph embeddings.

Pipeline of :meth:`StouterGenerator.fit`:

1. **Weeks.** The training traffic ``[N, T, C]`` is cut into its whole weeks (``L = steps_per("7D")``, 168
   at hourly steps): ``N * W`` training series ``[C, L]``, each tied to its station. The step must divide a
   week and ``L`` must be divisible by ``2 ** (len(channel_mults) - 1)`` (the U-Net halves the length that
   often): hourly (168) and 30-minute (336) data work with the default three resolutions.
2. **Normalisation** (:class:`~cellsynth.transforms.scaling.LogScaler`): ``z = (log1p(x / s_c) - mu_c) / sigma_c``.
3. **Temporal graph + GIN autoencoder** (stage ``"temporal-encoder"``): 168 hour-of-week nodes, hourly and
   daily edges, node features = statistics of ``z`` at each hour (:mod:`cellsynth.graphs.temporal`),
   GraphMAE pretraining with the SCE loss; frozen; ``F_t`` = encoder output ``[168, d_t]``.
4. **Station graph + GCN autoencoder** (stage ``"station-encoder"``): stations within ``radius_km`` (or the
   ``knn`` nearest in feature space when there are no coordinates), node features = standardised station
   features (:mod:`cellsynth.graphs.stations`); frozen; ``F_s`` = encoder output ``[N, d_s]``.
   Both embeddings are standardised per dimension over their training nodes (constants kept).
5. **Station levels** (``extensions.level_model="ridge"`` or ``"knn"``, :mod:`cellsynth.generators.stouter.levels`
   and :mod:`~cellsynth.generators.stouter.level_stage`; ``knn`` draws a new site's level from its nearest
   training stations' instead of the regression's Gaussian, ``level_condition`` feeds the level to STUNet): each
   station's level ``ell_n`` (its mean ``z`` per channel) is taken out, ``u = (z - ell_n) / sigma_shape``
   (``shape_scale="level"``: ``sigma_shape(ell_n)``, fitted over the training stations' levels;
   ``"level-daily"``: one such scale for the week's mean day, another for the rest), and
   a ridge regression learns ``ell`` from ``[F_s, standardised features, log1p(counts)]`` with its
   leave-one-out error covariance. The diffusion then models the level-free weeks ``u``.
6. **STUNet** (stage ``"stunet"``, :mod:`cellsynth.nn.stunet`) learns ``eps_theta(x_t, t, F_t, F_s)`` with
   the DDPM objective ``|| eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2``
   (:mod:`cellsynth.diffusion.gaussian`), ``x_0 = u``; an exponential moving average of its weights is what
   generates. ``extensions.timestep_power="auto"``: first chosen on a validation split of the training data,
   from two fits of the model on its inner training part (:mod:`~cellsynth.generators.stouter.validation`).

:meth:`StouterGenerator.generate` draws ``k`` weeks per station from ``x_T ~ N(0, I)`` with DDPM, DDIM
(default, 50 steps) or DPM-Solver++, adds a level per week (a training station's own; a new station's
drawn from the regression, ``ell-hat + Sigma^{1/2} xi``), inverts the normalisation (never negative) and
returns them on the training time axis (the first training week). A station seen in training (same id;
features and coordinates, where given, equal to its training ones — its id alone is enough) uses its
training embedding and its own level; any other station is a *new* one (a planned site) and is embedded
inductively: it is added to the training station graph with edges from its training neighbours and the
frozen GCN encoder is run on it (see :mod:`cellsynth.graphs.stations`).

:meth:`StouterGenerator.fit` first checks what it can up front (whole weeks STUNet can halve, something to
build the station graph from, ``knn`` below the number of stations for a feature graph, enough stations for
the level regression), so a configuration that cannot work fails before any pretraining.

Each stage checkpoints under ``checkpoint_dir/checkpoints/<stage>/``; a rerun with the same config and data
skips finished stages and resumes the interrupted one (a different config or data is refused; only
``epochs`` and generation options may change, so a rerun with more epochs continues training).

Where this departs from the paper, and the switch in the config's ``extensions`` section that restores the
paper's choice (the ``paper`` preset, ``cellsynth/configs/stouter/paper.yaml``, sets them all):

- STUNet has self-attention over time at its bottleneck (``attention_heads=0``: none) and no GroupNorm
  (``norm="group"``): both help a station's sampled level stay consistent over its week and across
  stations (measurements in :mod:`cellsynth.nn.stunet`).
- The predicted x_0 is clipped at every sampling step to the training range of the normalised traffic
  widened by ``clip_margin`` (``None``: off) — an x_0 a few units too high in log space would otherwise be
  traffic many times anything seen in training. The generated values are also kept at or above each
  channel's smallest training value (``training_floor=False``: not), so that a channel that is never zero
  does not get zeros.
- An EMA of STUNet's weights generates (``ema_decay=0``: the last weights). F_t and F_s are standardised per
  dimension over their training nodes before they enter the STFFM (no switch).
- The paper does not give its normalisation; ``normalisation`` chooses the mode of
  :class:`~cellsynth.transforms.scaling.LogScaler`.
- With ``station_profile`` (``"auto"`` in ``recommended``: on with two or more training weeks per station)
  STUNet also reads a known station's mean training week beside ``x_t``
  (:func:`~cellsynth.generators.stouter.profiles.week_profiles`): for future weeks of known stations, whose
  own past is the best guide to their shape.
- ``timestep_power="auto"`` (``recommended``) trains STUNet with the low-noise steps drawn more often when
  that lowers the first-difference JSD on a validation split of the training data (``timestep_power=1``: the
  paper's uniform steps; :mod:`~cellsynth.generators.stouter.validation`).
- The station level is predicted by a regression, not left to the diffusion (``level_model="none"``: the
  paper's). Why: without it the sampled level of a new station on the heavy-tailed synthetic city spanned
  two orders of magnitude and did not correlate with the real one
  (docs/notebook/2026-11-21-stouter-synthetic-city.md, "Station levels").
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np
import torch

from cellsynth.data.model import Stations, StationTraffic
from cellsynth.data.samples import stack_samples
from cellsynth.diffusion.gaussian import GaussianDiffusion
from cellsynth.errors import ConfigError, DataError
from cellsynth.generators.base import (
    StationGenerator,
    TargetStations,
    training_weeks,
    week_length,
)
from cellsynth.generators.privacy import dp_compatible, plain_weights, plan_privacy, train_private
from cellsynth.generators.state import (
    compose_state,
    guard_resume,
    restore_stations,
    restore_time_axis,
    split_state,
    station_fingerprint,
    stations_state,
    time_axis_state,
)
from cellsynth.generators.stouter.config import StouterConfig, StouterExtensions
from cellsynth.generators.stouter.level_stage import _LevelStage
from cellsynth.generators.stouter.levels import (
    MIN_STATIONS,
    LevelRegression,
    NeighbourLevels,
)
from cellsynth.generators.stouter.modules import DiffusionModule, GraphMAEModule
from cellsynth.generators.stouter.private import hour_of_week_graph, public_range
from cellsynth.generators.stouter.profiles import PROFILE_DROPOUT, week_profiles
from cellsynth.generators.stouter.validation import auto_note, choose_timestep_power
from cellsynth.graphs.stations import StationGraphBuilder
from cellsynth.graphs.temporal import temporal_graph
from cellsynth.nn.graph_autoencoder import GraphAutoencoder, gcn_autoencoder, gin_autoencoder
from cellsynth.nn.stunet import STUNet
from cellsynth.training import loader, module_on, resolve_device, seed_everything, train
from cellsynth.transforms.scaling import LogScaler, output_range, widened_range

__all__ = ["StouterConfig", "StouterExtensions", "StouterGenerator"]

#: The parts of a saved STOUTER (:func:`~cellsynth.generators.state.compose_state`), besides the stations and
#: the embeddings of the training nodes.
_STATE_PARTS = (
    "scaler",
    "stunet",
    "temporal_ae",
    "station_ae",
    "station_embeddings",
    "station_graph",
    "levels",
    "levels.regression",
    "levels.neighbours",
)


#: Fields that may change between a run and its resume (and where it trains: guard_resume leaves that out):
#: more epochs continue training (nothing depends on the total number of epochs); sampling is generation's.
_RESUMABLE_CHANGES = frozenset({"epochs", "sampling"})


def _standardise(emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation over nodes (sd floored so a dead unit gives zeros)."""
    mean = emb.mean(0)
    std = emb.std(0, unbiased=False)
    return mean, torch.where(std > 1e-6, std, torch.ones_like(std))


class StouterGenerator(_LevelStage, StationGenerator):
    """STOUTER: graph-pretrained spatio-temporal conditioning + a DDPM over weeks (see module docstring).

    ``generate(target, samples=k, seed=s, sampler="ddim"|"ddpm"|"dpm-solver", steps=None, progress=False,
    batch_size=None)``. After ``fit``: ``history_`` holds the mean loss of each epoch run in this process,
    per stage.
    """

    name = "stouter"
    Config = StouterConfig

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        """Tiny networks, a few epochs and a 50-step chain: runs every code path in seconds, learns little."""
        return {
            "temporal_hidden_dim": 8,
            "temporal_embed_dim": 4,
            "station_hidden_dim": 8,
            "station_embed_dim": 4,
            "pretrain_epochs": 2,
            "pretrain_steps_per_epoch": 1,
            "channels": 8,
            "channel_mults": (1, 2),
            "context_dim": 8,
            "knn": 3,  # a feature graph (no coordinates) over a handful of stations
            "epochs": 2,
            "batch_size": 8,
            "num_train_timesteps": 50,
            "beta_schedule": "squaredcos_cap_v2",  # DDPM's linear betas need T ~ 1000 to reach pure noise
            "sampling": {"steps": 5},
        }

    # -- fit -----------------------------------------------------------------------------------------
    @property
    def _length_multiple(self) -> int:
        """STUNet halves the week ``len(channel_mults) - 1`` times: ``L`` must be divisible by this."""
        return 2 ** (len(self.config.channel_mults) - 1)

    def _check_fit_inputs(self, data):
        """Besides whole weeks of a length STUNet can halve: the station graph needs feature columns or
        coordinates (and, as a kNN graph in feature space, more stations than ``knn``), and the level
        regression needs at least :data:`~cellsynth.generators.stouter.levels.MIN_STATIONS` stations."""
        data = super()._check_fit_inputs(data)
        cfg, stations = self.config, data.stations
        week_length(data, self.name, self._length_multiple)
        if cfg.use_spatial:
            if not stations.feature_names and not stations.has_coordinates:
                raise DataError(
                    f"{self.name} builds its station graph from the stations' feature columns or coordinates, "
                    "but these stations have neither feature columns nor coordinates; give a stations table with "
                    "features or lat/lon, or set use_spatial: false (no spatial embedding)",
                    source=data.source,
                )
            n = len(stations)
            if not stations.has_coordinates and n > 1 and cfg.knn > n - 1:
                raise ConfigError(
                    f"{self.name}: without coordinates each station is linked to its knn = {cfg.knn} nearest in "
                    f"feature space, but there are only {n} training stations; set knn to at most {n - 1}"
                )
        cfg.extensions.shape_scales(data.channels)  # a per-channel scale names the data's channels
        if cfg.extensions.level_model != "none" and len(stations) < MIN_STATIONS:
            raise DataError(
                f"{self.name}: level_model '{cfg.extensions.level_model}' learns station levels from at least "
                f"{MIN_STATIONS} training "
                f"stations, got {len(stations)}; give more stations, or set extensions.level_model: none",
                source=data.source,
            )
        return data

    def fit(self, data, *, progress: bool = True, checkpoint_dir: str | os.PathLike | None = None):
        data = self._check_fit_inputs(data)
        cfg = self.config
        private = cfg.privacy is not None
        # A private budget is checked before any training (docs/privacy.md); weeks per batch as without DP.
        stations_per_batch = max(1, round(cfg.batch_size / (data.n_steps // week_length(data, self.name))))
        plan = None
        if private:
            plan = plan_privacy(
                cfg.privacy, model=self.name, n_stations=len(data.stations), batch_size=stations_per_batch,
                epochs=cfg.epochs,
            )  # fmt: skip
        self.fitted_ = False  # a refit that fails half-way must not leave a half-old model usable
        weeks = training_weeks(data, self.name, self._length_multiple)  # [N, W, L, C]
        n, w, length, c = weeks.shape
        # Options that only affect generation may change between a fit and its resume.
        # Not epochs under privacy: the noise was planned for the whole run, and earlier steps cannot be re-noised.
        resumable = _RESUMABLE_CHANGES - {"epochs"} if private else _RESUMABLE_CHANGES
        fields = {k: v for k, v in self.config.model_dump(mode="json").items() if k not in resumable}
        guard_resume(checkpoint_dir, self.name, {"config": fields, "data": station_fingerprint(data)})

        self.scaler_ = LogScaler(cfg.extensions.normalisation).fit(weeks)
        if private:  # clip to a range chosen without the data (stouter.private)
            self.scaler_ = public_range(self.scaler_)
        z = self.scaler_.transform(weeks).astype(np.float32)
        self.stations_, self.time_, self.week_length_ = data.stations, time_axis_state(data), length
        # [N, W, C], for extensions.known_level; a private model keeps no station's own levels.
        self.weekly_levels_ = None if private else z.mean(axis=2).astype(np.float64)
        self.history_ = {}

        # Stage 1: temporal graph -> GIN autoencoder -> F_t.
        self.temporal_ae_ = self.temporal_embeddings_ = None
        if cfg.use_temporal:
            graph = hour_of_week_graph() if private else temporal_graph(z)
            seed_everything(cfg.seed)
            self.temporal_ae_ = self._temporal_ae(graph.num_features)
            module = GraphMAEModule(self.temporal_ae_, graph, cfg.pretrain_lr, cfg.pretrain_weight_decay)
            self._train(module, "temporal-encoder", cfg.pretrain_epochs, None, checkpoint_dir, progress)
            self.temporal_ae_ = self._freeze(module.model)
            with torch.no_grad():
                ft = self.temporal_ae_.encode(graph.x, graph.edge_index)
            mean, std = _standardise(ft)
            self.temporal_embeddings_ = (ft - mean) / std

        # Stage 2: station graph -> GCN autoencoder -> F_s.
        self.builder_ = self.station_ae_ = self.station_embeddings_ = self.station_stats_ = None
        if cfg.use_spatial:
            self.builder_ = StationGraphBuilder(radius_km=cfg.radius_km, k=cfg.knn).fit(data.stations)
            graph = self.builder_.graph()
            seed_everything(cfg.seed)
            self.station_ae_ = self._station_ae(graph.num_features)
            module = GraphMAEModule(self.station_ae_, graph, cfg.pretrain_lr, cfg.pretrain_weight_decay)
            self._train(module, "station-encoder", cfg.pretrain_epochs, None, checkpoint_dir, progress)
            self.station_ae_ = self._freeze(module.model)
            with torch.no_grad():
                fs = self.station_ae_.encode(graph.x, graph.edge_index)
            self.station_stats_ = _standardise(fs)
            self.station_embeddings_ = (fs - self.station_stats_[0]) / self.station_stats_[1]

        # Station levels: the diffusion then learns the level-free weeks (station_levels module docstring).
        self.levels_ = None
        if cfg.extensions.level_model != "none":
            z = self._fit_levels(z)

        # Stage 3: STUNet on the N * W station-weeks.
        series = torch.from_numpy(np.ascontiguousarray(z.reshape(n * w, length, c).transpose(0, 2, 1)))
        condition = torch.arange(n).repeat_interleave(w)  # each week's station
        self.station_profiles_ = references = None
        option = cfg.extensions.station_profile
        self.profile_ = option is True or (option == "auto" and w >= 2)
        if self.profile_:
            self.station_profiles_, references = week_profiles(z)
            references = torch.from_numpy(references)
            condition = torch.stack([condition, torch.arange(n * w)], dim=1)  # (station, week row)
            if self.station_profiles_ is None:
                warnings.warn(
                    f"{self.name}: extensions.station_profile needs at least two training weeks per station, "
                    "and these stations have one: no week has a profile to learn from, and none is given in "
                    "generation",
                    stacklevel=2,
                )
        dataset = torch.utils.data.TensorDataset(series, condition)
        # extensions.timestep_power "auto": chosen on a validation split of this training data (stouter.validation).
        self.timestep_power_, self.validation_ = cfg.extensions.timestep_power, None
        if self.timestep_power_ == "auto":
            self.validation_ = choose_timestep_power(
                self, data, weeks=w, progress=progress, checkpoint_dir=checkpoint_dir
            )
            self.timestep_power_ = self.validation_["power"]
        seed_everything(cfg.seed)
        net = self._stunet(c, self.profile_)
        net = dp_compatible(net) if private else net
        levels = None if self.levels_ is None else self.levels_["train"]
        module = DiffusionModule(
            net, self._diffusion(), self._condition(self.station_embeddings_, levels), self.temporal_embeddings_,
            cfg.lr, cfg.weight_decay, cfg.extensions.ema_decay, profiles=references,
            profile_dropout=PROFILE_DROPOUT, prediction=cfg.extensions.prediction,
            timestep_power=self.timestep_power_,
        )  # fmt: skip
        self.privacy_ = None
        if private:  # DP-SGD: each example is one station with all its weeks
            self.privacy_ = train_private(
                module, torch.utils.data.TensorDataset(series.reshape(n, w, c, length), torch.arange(n)), plan,
                weeks=w, batch_size=stations_per_batch, max_epochs=cfg.epochs, stage="stunet", seed=cfg.seed,
                checkpoint_dir=checkpoint_dir, progress=progress, placement=cfg.placement(),
            )  # fmt: skip
            # no "stunet" loss curve: the losses are statistics of the real traffic outside DP-SGD
            module.ema = plain_weights(module.ema, self._stunet(c, self.profile_))
        else:
            self._train(module, "stunet", cfg.epochs, dataset, checkpoint_dir, progress)
        self.stunet_ = self._freeze(module.ema)
        self.fitted_ = True
        return self

    def fit_notes(self) -> list[str]:
        choice = getattr(self, "validation_", None)  # timestep_power "auto" only
        return super().fit_notes() + ([] if choice is None else [auto_note(choice)])

    # station levels, the level prior and STUNet's station condition: _LevelStage

    def _train(self, module, stage, epochs, dataset, checkpoint_dir, progress):
        cfg = self.config
        if dataset is None:  # graph pretraining: each "sample" is one full-graph step
            dataset = torch.utils.data.TensorDataset(torch.arange(cfg.pretrain_steps_per_epoch))
            batch_size = 1
        else:
            batch_size = cfg.batch_size
        train(
            module,
            loader(dataset, batch_size=batch_size, seed=cfg.seed),
            max_epochs=epochs,
            stage=stage,
            seed=cfg.seed,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            placement=self.config.placement(),
        )
        self.history_[stage] = list(module.history)

    # -- building blocks (same shapes in fit and _restore) -------------------------------------------
    def _temporal_ae(self, in_dim: int) -> GraphAutoencoder:
        cfg = self.config
        return gin_autoencoder(
            in_dim,
            hidden_dim=cfg.temporal_hidden_dim,
            embed_dim=cfg.temporal_embed_dim,
            num_layers=cfg.temporal_layers,
            mask_rate=cfg.mask_rate,
            gamma=cfg.sce_gamma,
        )

    def _station_ae(self, in_dim: int) -> GraphAutoencoder:
        cfg = self.config
        return gcn_autoencoder(
            in_dim,
            hidden_dim=cfg.station_hidden_dim,
            embed_dim=cfg.station_embed_dim,
            num_layers=cfg.station_layers,
            mask_rate=cfg.mask_rate,
            gamma=cfg.sce_gamma,
        )

    def _stunet(self, n_channels: int, profile: bool) -> STUNet:
        """STUNet for ``n_channels``; ``profile``: it also reads a reference week (``station_profile`` resolved)."""
        cfg = self.config
        level_condition = cfg.extensions.level_condition  # the level joins F_s (see _condition)
        return STUNet(
            n_channels,
            channels=cfg.channels,
            channel_mults=tuple(cfg.channel_mults),
            temporal_dim=cfg.temporal_embed_dim,
            spatial_dim=cfg.station_embed_dim * cfg.use_spatial + n_channels * level_condition,
            context_dim=cfg.context_dim,
            blocks_per_level=cfg.blocks_per_level,
            attention_heads=cfg.extensions.attention_heads,
            day_attention=cfg.extensions.day_attention,
            norm=cfg.extensions.norm,
            dropout=cfg.dropout,
            use_temporal=cfg.use_temporal,
            use_spatial=cfg.use_spatial or level_condition,
            use_stffm=cfg.use_stffm,
            profile_channels=(n_channels + 1) * profile,
        )

    def _diffusion(self) -> GaussianDiffusion:
        cfg = self.config
        return GaussianDiffusion(cfg.num_train_timesteps, cfg.beta_schedule, cfg.beta_start, cfg.beta_end)

    @staticmethod
    def _freeze(module: torch.nn.Module) -> torch.nn.Module:
        return module.cpu().eval().requires_grad_(False)

    # -- generate ------------------------------------------------------------------------------------
    def generate(
        self,
        target,
        *,
        samples: int = 1,
        seed: int = 0,
        sampler: str | None = None,
        steps: int | None = None,
        progress: bool = False,
        batch_size: int | None = None,
        **options: Any,
    ) -> StationTraffic:
        """``samples`` weeks per target station (see :class:`~cellsynth.generators.base.StationGenerator`).

        ``sampler``: ``"ddim"`` (default, 50 steps), ``"ddpm"`` (default: all T steps) or ``"dpm-solver"``
        (default 20 steps); ``steps`` overrides; ``precision="bfloat16"`` runs STUNet under autocast (the
        config's ``sampling.precision`` by default). Output ids are ``"<id>#<j>"`` when ``samples > 1``.
        """
        self.check_fitted()
        cfg = self.config
        sampling = cfg.sampling_options({"sampler": sampler, "steps": steps} | options, self.name)
        samples = self._check_samples(samples)
        batch_size = cfg.sampling.batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")

        target = self._resolve_target(target, seed, self.stations_)
        stations = target.stations
        spatial = self._embed(target)  # [M, d_s] or None
        m, length, c = len(stations), self.week_length_, len(self.time_["channels"])

        device = resolve_device(self.config.accelerator)
        net = module_on(self.stunet_, device)
        temporal = None if self.temporal_embeddings_ is None else self.temporal_embeddings_.to(device)
        diffusion, prediction = self._diffusion(), self.config.extensions.prediction
        x0_range = self._x0_range(device)
        generator = torch.Generator().manual_seed(int(seed))
        total = m * samples  # station-major: series i belongs to station i // samples
        # All starting noise in one draw: with DDIM / DPM-Solver a series' sample then does not depend on
        # the batch size (DDPM's per-step noise still comes from `generator` batch by batch).
        x_T = torch.randn((total, c, length), generator=generator)
        level = None  # [M, samples, C]; drawn before the chain when it conditions STUNet
        if self.config.extensions.level_condition:
            level = self._sample_levels(target, spatial, samples, generator)
        per_series = None if spatial is None else spatial.repeat_interleave(samples, 0)
        condition = self._condition(per_series, None if level is None else level.reshape(total, c))
        profiles = self._target_profiles(target, c, length)
        profiles = None if profiles is None else profiles.repeat_interleave(samples, 0)
        out = []
        for first in range(0, total, batch_size):
            last = min(first + batch_size, total)
            fs = None if condition is None else condition[first:last].to(device)
            profile = None if profiles is None else profiles[first:last].to(device)

            def eps_fn(x, t, fs=fs, profile=profile):
                return diffusion.implied_noise(prediction, x, net(x, t, fs, temporal, profile), t)

            x0 = diffusion.sample(
                eps_fn,
                (last - first, c, length),
                **sampling,
                generator=generator,
                device=device,
                progress=progress,
                x0_range=x0_range,
                x_T=x_T[first:last],
            )
            out.append(x0.cpu())
        z = torch.cat(out).reshape(m, samples, c, length).permute(0, 1, 3, 2).double().numpy()
        if self.levels_ is not None:  # z = ell + sigma_shape(ell) * u, with ell drawn after all of x_T
            level = self._sample_levels(target, spatial, samples, generator) if level is None else level
            z = self._weeks_at_levels(level, z)
        if self.config.extensions.known_level == "recent" and target.known.any():
            z[target.known] += self._recent_shift()[target.training_index[target.known]][:, None, None, :]
        z = np.clip(z, *self._output_range())
        values = self.scaler_.inverse(z).astype(np.float32)
        start, step = restore_time_axis(self.time_)
        return stack_samples(stations, values, start=start, step=step, channels=tuple(self.time_["channels"]))

    def _target_profiles(self, target: TargetStations, c: int, length: int) -> torch.Tensor | None:
        """STUNet's profile input ``[M, C + 1, L]`` (``extensions.station_profile``): a known station's mean
        training week and a mask of ones; zeros for a new station (and for every station of a model that saw
        one week per station). None without the option."""
        if not self.profile_:
            return None
        out = torch.zeros((len(target.stations), c + 1, length))
        if self.station_profiles_ is not None and target.known.any():
            known = torch.from_numpy(target.known)
            out[known, :c] = torch.as_tensor(self.station_profiles_)[target.training_index[target.known]]
            out[known, c] = 1.0
        return out

    def _x0_range(self, device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(lo, hi)`` ``[C, 1]``: the training range of what the diffusion models (z, or the level-free u)
        per channel, widened by ``clip_margin`` of it.

        Why: an x_0 prediction a few units beyond the training range is harmless in z but, through
        ``expm1``, becomes traffic many times the largest ever seen; clipping keeps samples plausible.
        With station levels, the sum ``ell + sigma u`` is clipped to the widened range of z as well.
        """
        if self.config.extensions.clip_margin is None:
            return None
        if self.levels_ is None:
            bounds = self._widened(self.scaler_.z_min_, self.scaler_.z_max_)
        else:
            bounds = self._widened(self.levels_["shape_min"], self.levels_["shape_max"])
        return tuple(torch.as_tensor(b, dtype=torch.float32, device=device)[:, None] for b in bounds)

    def _output_range(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` of the generated z per channel (:func:`~cellsynth.transforms.scaling.output_range`:
        the training range widened by ``clip_margin``, kept at its minimum below with ``training_floor``)."""
        ext = self.config.extensions
        return output_range(self.scaler_.z_min_, self.scaler_.z_max_, ext.clip_margin, ext.training_floor)

    def _widened(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return widened_range(lo, hi, self.config.extensions.clip_margin)

    def station_embeddings(self, stations: Stations) -> torch.Tensor | None:
        """Standardised F_s ``[M, d_s]`` for ``stations`` (``None`` when ``use_spatial`` is off).

        A training station (``StationGenerator``: same id; features and coordinates, where given, equal)
        gets its training embedding; every other one is embedded inductively (module docstring).
        """
        self.check_fitted()
        return self._embed(self._resolve_target(stations, 0, self.stations_))

    def _embed(self, target: TargetStations) -> torch.Tensor | None:
        if self.station_ae_ is None:
            return None
        new = None
        if target.new is not None:
            self.builder_.check_compatible(target.new)
            graph = self.builder_.extended_graph(target.new)
            with torch.no_grad():
                fs = self.station_ae_.encode(graph.x, graph.edge_index)[graph.new_nodes]
            new = (fs - self.station_stats_[0]) / self.station_stats_[1]
        return target.combine(self.station_embeddings_, new)

    # -- persistence ---------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = stations_state(self.stations_)
        station = self.station_ae_ is not None
        levels = self.levels_
        tensors |= compose_state(
            {
                "scaler": self.scaler_.state(),
                "stunet": self.stunet_.state_dict(),
                "temporal_ae": None if self.temporal_ae_ is None else self.temporal_ae_.state_dict(),
                "station_ae": self.station_ae_.state_dict() if station else None,
                "station_embeddings": dict(zip(("mean", "std"), self.station_stats_)) if station else None,
                "station_graph": {"mean": self.builder_.mean_, "std": self.builder_.std_}
                if station
                else None,
                "levels": None
                if levels is None
                else {k: np.asarray(v) for k, v in levels.items() if k not in ("regression", "neighbours")},
                **{
                    f"levels.{k}": None if levels is None or k not in levels else levels[k].state()
                    for k in ("regression", "neighbours")
                },
            }
        )
        if self.weekly_levels_ is not None:  # None in a private model
            tensors["weekly_levels"] = torch.from_numpy(self.weekly_levels_)
        if self.station_profiles_ is not None:
            tensors["station_profiles"] = torch.from_numpy(self.station_profiles_)
        if self.temporal_ae_ is not None:
            tensors["temporal_embeddings"] = self.temporal_embeddings_
        if station:
            tensors["station_embeddings"] = self.station_embeddings_
        meta |= {
            "time": self.time_,
            "week_length": self.week_length_,
            "temporal_in_dim": None if self.temporal_ae_ is None else self.temporal_ae_.in_dim,
            "station_in_dim": None if self.station_ae_ is None else self.station_ae_.in_dim,
            "history": getattr(self, "history_", {}),
            "privacy": getattr(self, "privacy_", None),  # the spent (epsilon, delta) and how
            "profile": self.profile_,  # station_profile, "auto" resolved
            "timestep_power": self.timestep_power_,  # "auto" resolved
            "validation": self.validation_,  # what "auto" chose and why, else None
        }
        return tensors, meta

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        parts = split_state(tensors, _STATE_PARTS)
        self.stations_ = restore_stations(tensors, meta)
        self.time_, self.week_length_ = meta["time"], meta["week_length"]
        weekly = tensors.get("weekly_levels")  # None in models saved before known_level existed
        self.weekly_levels_ = weekly if weekly is None else weekly.double().numpy()
        profiles = tensors.get("station_profiles")  # extensions.station_profile with two or more weeks
        self.station_profiles_ = None if profiles is None else profiles.float().numpy()
        self.profile_ = meta.get(
            "profile", self.config.extensions.station_profile is True
        )  # older: no "auto"
        self.history_ = meta.get("history", {})
        power = self.config.extensions.timestep_power  # older models: no "auto"
        self.timestep_power_ = meta.get("timestep_power", None if power == "auto" else power)
        self.validation_ = meta.get("validation")
        self.privacy_ = meta.get("privacy")
        self.scaler_ = LogScaler.from_state(parts["scaler"], self.config.extensions.normalisation)
        self.stunet_ = self._stunet(len(self.time_["channels"]), self.profile_)
        self.stunet_.load_state_dict(parts["stunet"])
        self.stunet_ = self._freeze(self.stunet_)
        self.temporal_ae_ = self.temporal_embeddings_ = None
        if meta["temporal_in_dim"] is not None:
            self.temporal_ae_ = self._temporal_ae(meta["temporal_in_dim"])
            self.temporal_ae_.load_state_dict(parts["temporal_ae"])
            self.temporal_ae_ = self._freeze(self.temporal_ae_)
            self.temporal_embeddings_ = tensors["temporal_embeddings"]
        self.levels_ = None
        if parts["levels"]:
            self.levels_ = {k: v.numpy() for k, v in parts["levels"].items()}
            for key, prior in (("regression", LevelRegression), ("neighbours", NeighbourLevels)):
                if parts.get(f"levels.{key}"):
                    self.levels_[key] = prior.from_state(parts[f"levels.{key}"])
        self.builder_ = self.station_ae_ = self.station_embeddings_ = self.station_stats_ = None
        if meta["station_in_dim"] is not None:
            self.station_ae_ = self._station_ae(meta["station_in_dim"])
            self.station_ae_.load_state_dict(parts["station_ae"])
            self.station_ae_ = self._freeze(self.station_ae_)
            self.station_embeddings_ = tensors["station_embeddings"]
            embeddings = parts["station_embeddings"]
            self.station_stats_ = (embeddings["mean"], embeddings["std"])
            self.builder_ = StationGraphBuilder(
                radius_km=self.config.radius_km,
                k=self.config.knn,
                mean_=parts["station_graph"]["mean"].numpy(),
                std_=parts["station_graph"]["std"].numpy(),
                stations_=self.stations_,
            )
