"""STOUTER's configuration: the paper's fields at the top level, cellsynth's additions in ``extensions``,
how ``generate`` samples by default in ``sampling``. What each field does: its description; what the paper
says and what we measured: docs/stouter.md."""

from __future__ import annotations

import warnings
from typing import Annotated, ClassVar, Literal

import pydantic

from cellsynth.diffusion.gaussian import GaussianDiffusion, Prediction, terminal_problem
from cellsynth.errors import ConfigError
from cellsynth.generators.base import ConfigSection, TrainingConfig
from cellsynth.generators.privacy import PrivacyConfig
from cellsynth.generators.sampling import SamplingConfig

__all__ = ["StouterConfig", "StouterExtensions"]

#: The scale of the level-free week (``StouterExtensions.shape_scale``), for all channels or per channel.
ShapeScale = Literal["pooled", "daily", "level", "level-daily"]


class StouterExtensions(ConfigSection):
    """What cellsynth's STOUTER adds to the paper (module docstring, "Where this departs from the paper"); the
    ``paper`` preset sets each to the paper's choice."""

    normalisation: Literal["standard", "unit"] = pydantic.Field(
        "standard",
        description="The paper gives none. After log1p(x / median of positive values): 'standard' (z-score, "
        "matches the N(0, I) prior) or 'unit' (training range to [-1, 1]).",
    )
    level_model: Literal["ridge", "knn", "none"] = pydantic.Field(
        "ridge",
        description="How a station's level (its mean normalised traffic) is set: 'ridge' predicts it from the "
        "station's descriptors (F_s and features) and draws it with the prediction's out-of-sample spread; "
        "'knn' draws a new site's level from those of its k nearest training stations in standardised "
        "feature space (k by leave-one-out CRPS); with either the diffusion models the level-free week "
        "(cellsynth.generators.stouter.levels). 'none' leaves the level to the diffusion model, as the paper.",
    )
    level_condition: bool = pydantic.Field(
        False,
        description="Condition STUNet on the station's level too (its standardised level appended to F_s in "
        "the STFFM): training on each station's own level, generation on the drawn one, so that a week's shape "
        "can depend on how busy the station is. Needs a level_model other than 'none'.",
    )
    shape_scale: ShapeScale | dict[str, ShapeScale] = pydantic.Field(
        "pooled",
        description="The scale sigma of the level-free week u = (z - ell) / sigma: 'pooled', one per channel "
        "over all training stations; 'daily', one per channel for the week's mean day and another for the rest "
        "(how the days stray from it), so that the diffusion learns the small day-to-day part at unit scale; "
        "'level', a function of the station's level, sigma(ell), fitted on the "
        "training stations (the RMS deviation from their level in equal-count level bins, interpolated), so "
        "that a busy station's daily swing is drawn as large as busy stations have it "
        "(cellsynth.generators.stouter.levels.fit_shape_scale); 'level-daily', the same with one scale for the "
        "mean day of the week and another for the rest (hour-to-hour noise grows less with the level than the "
        "daily swing). Or a mapping from channel name to scale, the channels not named 'pooled' (for "
        "example {users: level-daily} for a model of traffic and user counts: the level-daily scale is better "
        "on user counts and worse on traffic, docs/stouter.md). Needs a level_model other than 'none'.",
    )

    def shape_scales(self, channels: tuple[str, ...] | list[str]) -> list[str]:
        """``shape_scale`` per channel of data with these ``channels``; a ConfigError names a mapping's channel
        that the data does not have."""
        if isinstance(self.shape_scale, str):
            return [self.shape_scale] * len(channels)
        unknown = sorted(set(self.shape_scale) - set(channels))
        if unknown:
            raise ConfigError(
                f"extensions.shape_scale names channel(s) {unknown} that the data does not have; its channels "
                f"are {list(channels)}: name those, e.g. {{{channels[-1]}: level-daily}}"
            )
        return [self.shape_scale.get(channel, "pooled") for channel in channels]

    attention_heads: int = pydantic.Field(
        4,
        ge=0,
        description="Self-attention heads over time at STUNet's bottleneck (0: none, the paper's plain U-Net). "
        "Lets a station's level stay consistent over its week.",
    )
    day_attention: int = pydantic.Field(
        0,
        ge=0,
        description="Heads of an attention across the week's 7 days at each resolution of STUNet's way up "
        "(0: none, the paper's U-Net): each hour of a day sees the same hour of the other days, so the "
        "generated days repeat as real ones do (cellsynth.nn.stunet). Must divide every resolution's width.",
    )
    norm: Literal["none", "group"] = pydantic.Field(
        "none",
        description="Normalisation in STUNet's blocks: 'group' hides each series' level from the blocks and "
        "makes sampled station levels too spread (see cellsynth.nn.stunet); 'none' learns them faster.",
    )
    ema_decay: float = pydantic.Field(
        0.999,
        ge=0,
        lt=1,
        description="EMA of STUNet's weights, what generates (warm-up min(decay, (1+n)/(10+n)) at step n; "
        "0: the last weights, as the paper).",
    )
    known_level: Literal["all", "recent"] = pydantic.Field(
        "all",
        description="The level of a station seen in training: 'all' (its mean over all training weeks, as "
        "the paper) or 'recent' (its last `recent_weeks` training weeks: every sample of the station is "
        "shifted in log space by its recent level minus its all-weeks level, ell_recent - ell_all). For "
        "next weeks of known stations whose load drifts. New sites are not affected.",
    )
    recent_weeks: int = pydantic.Field(
        1, ge=1, description="Training weeks, counted back from the last, that known_level 'recent' averages."
    )
    station_profile: bool | Literal["auto"] = pydantic.Field(
        False,
        description="Condition STUNet on a known station's own mean training week (its profile, on the scale "
        "the diffusion models), concatenated to x_t with a mask channel: in training the mean of the station's "
        "other weeks (leave-one-out, so the model learns how a new week strays from the past ones), left out "
        "for one week in ten so that new sites, which have no profile, are generated too; in generation the "
        "mean of all its training weeks. For future weeks of known stations; needs at least two training weeks "
        "(with one it is never given, and true warns). 'auto': on when the training data has two or more "
        "whole weeks per station, else off (the network then is the plain one).",
    )
    clip_margin: float | None = pydantic.Field(
        0.1,
        ge=0,
        description="Clip the predicted x_0 at every sampling step to the per-channel range of the normalised "
        "training traffic, widened by this share of the range on each side (DDPM's clip to [-1, 1]); "
        "None: no clipping, as the paper.",
    )
    training_floor: bool = pydantic.Field(
        True,
        description="No generated value below the channel's smallest training value: the final samples are "
        "clipped there, below (the upper side keeps clip_margin). Without it a sample can fall under the "
        "training range, to zero on a channel that never is zero (Nanchang's user counts: 9 % zeros).",
    )
    prediction: Prediction = pydantic.Field(
        "noise",
        description="What STUNet predicts: the noise (the paper's DDPM objective) or the velocity v = "
        "sqrt(abar) eps - sqrt(1 - abar) x0 (Salimans & Ho 2022), turned back into a noise for the samplers "
        "(cellsynth.generators.diffusion_training).",
    )
    timestep_power: Annotated[float, pydantic.Field(gt=0, allow_inf_nan=False)] | Literal["auto"] = (
        pydantic.Field(
            1.0,
            description="Training steps t drawn as floor(T u^p), u uniform: 1 is the paper's uniform t; p > 1 trains "
            "the low-noise steps, where the hour-to-hour detail is made, more often (p = 2: a third of the draws "
            "below T / 10 instead of a tenth). 'auto': 1 or 2, whichever gives the lower first-difference JSD on a "
            "validation split of the training data (a fifth of the stations, or with several weeks the last fifth "
            "of each station's weeks), from two fits on the rest (cellsynth.generators.stouter.validation; about 2.6 times the "
            "fit time).",
        )
    )


class StouterConfig(SamplingConfig, TrainingConfig):
    """Hyperparameters of STOUTER: the paper's model at the top level, cellsynth's additions in
    ``extensions``, generation defaults in ``sampling``. Defaults train in minutes on 2 CPU cores for ~200
    stations x 1 week."""

    moved_fields: ClassVar[dict[str, str]] = SamplingConfig.moved_fields | {
        name: f"extensions.{name}" for name in StouterExtensions.model_fields
    }
    #: What ``cellsynth fit stouter --epsilon`` sets besides ``privacy`` (see :func:`_private_problems`).
    private_settings: ClassVar[dict] = {
        "extensions": {
            "level_model": "none",
            "known_level": "all",
            "normalisation": "standard",
            "station_profile": False,
            "timestep_power": 1.0,
        }
    }

    # -- station graph -------------------------------------------------------------------------------
    radius_km: float = pydantic.Field(
        1.0, gt=0, description="Stations closer than this are linked (paper: 1 km)."
    )
    knn: int = pydantic.Field(
        10, ge=1, description="Without coordinates: link each station to its k nearest in feature space."
    )
    # -- graph autoencoders (GraphMAE) ----------------------------------------------------------------
    temporal_hidden_dim: int = pydantic.Field(
        64, ge=1, description="Hidden width of the GIN (temporal) encoder."
    )
    temporal_embed_dim: int = pydantic.Field(
        32, ge=1, description="Width d_t of the temporal embeddings F_t."
    )
    temporal_layers: int = pydantic.Field(2, ge=1, description="GIN layers of the temporal encoder.")
    station_hidden_dim: int = pydantic.Field(
        64, ge=1, description="Hidden width of the GCN (station) encoder."
    )
    station_embed_dim: int = pydantic.Field(32, ge=1, description="Width d_s of the spatial embeddings F_s.")
    station_layers: int = pydantic.Field(2, ge=1, description="GCN layers of the station encoder.")
    mask_rate: float = pydantic.Field(0.5, gt=0, lt=1, description="Share of nodes masked per GraphMAE step.")
    sce_gamma: float = pydantic.Field(2.0, ge=1, description="Exponent gamma of the scaled cosine error.")
    pretrain_epochs: int = pydantic.Field(20, ge=1, description="Epochs of each autoencoder's pretraining.")
    pretrain_steps_per_epoch: int = pydantic.Field(
        20, ge=1, description="Full-graph optimiser steps per pretraining epoch (each with a fresh mask)."
    )
    pretrain_lr: float = pydantic.Field(1e-3, gt=0, description="Adam learning rate of the autoencoders.")
    pretrain_weight_decay: float = pydantic.Field(
        1e-4, ge=0, description="Adam weight decay of the autoencoders."
    )
    # -- STUNet and its STFFM ------------------------------------------------------------------------
    channels: int = pydantic.Field(32, ge=1, description="Width of STUNet's first resolution.")
    channel_mults: tuple[int, ...] = pydantic.Field(
        (1, 2, 2), min_length=1, description="Width multiplier per resolution; len - 1 halvings of the week."
    )
    context_dim: int = pydantic.Field(64, ge=2, description="Width of the STFFM context and step embedding.")
    blocks_per_level: int = pydantic.Field(1, ge=1, description="Residual blocks per resolution.")
    dropout: float = pydantic.Field(0.0, ge=0, lt=1, description="Dropout inside STUNet's residual blocks.")
    use_temporal: bool = pydantic.Field(
        True, description="Ablation: condition on the temporal embeddings F_t."
    )
    use_spatial: bool = pydantic.Field(True, description="Ablation: condition on the spatial embeddings F_s.")
    use_stffm: bool = pydantic.Field(
        True,
        description="Ablation: False = concatenate the conditions once at the input instead of fusing them "
        "into every block.",
    )
    # -- diffusion -----------------------------------------------------------------------------------
    num_train_timesteps: int = pydantic.Field(1000, ge=2, description="Diffusion steps T of training.")
    beta_schedule: Literal["linear", "squaredcos_cap_v2"] = pydantic.Field(
        "linear", description="Variance schedule: DDPM's linear one or the cosine one."
    )
    beta_start: float = pydantic.Field(1e-4, gt=0, lt=1, description="First beta of the linear schedule.")
    beta_end: float = pydantic.Field(0.02, gt=0, lt=1, description="Last beta of the linear schedule.")
    # -- training ------------------------------------------------------------------------------------
    epochs: int = pydantic.Field(
        200, ge=1, description="Epochs of STUNet training (one pass over all station-weeks)."
    )
    batch_size: int = pydantic.Field(32, ge=1, description="Station-weeks per STUNet training batch.")
    lr: float = pydantic.Field(1e-3, gt=0, description="AdamW learning rate of STUNet.")
    weight_decay: float = pydantic.Field(0.0, ge=0, description="AdamW weight decay of STUNet.")
    # -- beyond the paper ----------------------------------------------------------------------------
    extensions: StouterExtensions = pydantic.Field(default_factory=StouterExtensions)
    privacy: PrivacyConfig | None = pydantic.Field(
        None,
        description="Differentially private training, one station (all its weeks) the unit (docs/privacy.md); "
        "None: not private.",
    )

    @pydantic.field_validator("channel_mults")
    @classmethod
    def _positive(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(m < 1 for m in value):
            raise ValueError("every channel multiplier must be >= 1")
        return value

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> StouterConfig:
        if self.beta_schedule == "linear" and self.beta_start >= self.beta_end:
            raise ValueError(f"beta_start ({self.beta_start}) must be < beta_end ({self.beta_end})")
        with warnings.catch_warnings():  # build the schedule quietly: the error below says it all
            warnings.simplefilter("ignore")
            schedule = GaussianDiffusion(
                self.num_train_timesteps, self.beta_schedule, self.beta_start, self.beta_end
            )
        problem = terminal_problem(schedule.alphas_cumprod, self.beta_schedule, self.beta_end)
        if problem:
            raise ValueError(problem)
        if self.privacy is not None:
            for problem in _private_problems(self):
                raise ValueError(problem)
        if self.extensions.level_condition and self.extensions.level_model == "none":
            raise ValueError(
                "extensions.level_condition conditions STUNet on the station level, which level_model 'none' "
                "does not separate; set extensions.level_model to 'ridge' or 'knn', or level_condition: false"
            )
        scales = self.extensions.shape_scale
        by_level = scales != "pooled" if isinstance(scales, str) else set(scales.values()) - {"pooled"}
        if by_level and self.extensions.level_model == "none":
            raise ValueError(
                f"extensions.shape_scale {self.extensions.shape_scale!r} scales the week by the station level, "
                "which level_model 'none' does not separate; set extensions.level_model to 'ridge' or 'knn', or "
                "shape_scale: pooled"
            )
        coarsest = self.channels * self.channel_mults[-1]
        heads = self.extensions.attention_heads
        if heads and coarsest % heads:
            raise ValueError(
                f"extensions.attention_heads ({heads}) must divide STUNet's coarsest width "
                f"channels * channel_mults[-1] = {coarsest}"
            )
        day_heads = self.extensions.day_attention
        widths = [self.channels * m for m in self.channel_mults]
        if day_heads and any(width % day_heads for width in widths):
            raise ValueError(
                f"extensions.day_attention ({day_heads}) must divide every STUNet width channels * "
                f"channel_mults = {widths}"
            )
        return self


# -- Lightning wrappers (training only; the networks live in cellsynth.nn) ----------------------------------


def _private_problems(config: StouterConfig) -> list[str]:
    """What in ``config`` would learn from the real traffic outside DP-SGD (docs/privacy.md, "What is covered")."""
    problems = []
    ext = config.extensions
    if ext.level_model != "none":
        problems.append(
            f"privacy: extensions.level_model {ext.level_model!r} keeps each training station's level, fitted on "
            "its real traffic outside DP-SGD; set extensions.level_model: none (the diffusion then learns levels "
            "privately)"
        )
    if ext.known_level != "all":
        problems.append(
            "privacy: extensions.known_level 'recent' keeps each station's recent real level in the model; "
            "set extensions.known_level: all"
        )
    if ext.station_profile:
        problems.append(
            "privacy: extensions.station_profile keeps each station's mean real week in the model; set "
            "extensions.station_profile: false"
        )
    if ext.timestep_power == "auto":
        problems.append(
            "privacy: extensions.timestep_power 'auto' chooses the training from a comparison with the real "
            "weeks outside DP-SGD; set a number (1: the paper's uniform steps)"
        )
    if ext.normalisation != "standard":
        problems.append(
            "privacy: extensions.normalisation 'unit' maps the real minimum and maximum to [-1, 1]; set "
            "extensions.normalisation: standard"
        )
    return problems
