"""What STOUTER's three baselines (``tcn-gan``, ``vae``, ``diffwave``) share: the conditioning, the data
pipeline and the generator plumbing, so that the comparison with STOUTER differs in the model only.

**Same information as STOUTER.** Every baseline is conditioned on

- the station: its feature vector standardised with the *training* mean and standard deviation
  (:class:`StationFeatures`). A station never seen in training (a planned site) is standardised with the
  same constants, so new stations work through their features, as in STOUTER. These are the same columns
  STOUTER's station graph uses as node features (POI counts, Beijing's knowledge-graph embedding); with
  ``use_coordinates`` (default) the stations' planar coordinates (km, standardised) are appended when the
  training stations have them — STOUTER sees location through its 1 km graph, the baselines see it here.
- the hour of the week: the sinusoidal embedding of every step
  (:func:`cellsynth.nn.baselines.hour_of_week_features`), where STOUTER has its temporal-graph embeddings.

STOUTER's graph *embeddings* (pretrained GCN/GIN autoencoders) are its contribution and are not given to
the baselines: they get the raw information those embeddings are computed from.

**Same data pipeline as STOUTER.** Training traffic ``[N, T, C]`` is cut into its whole weeks (``L``
steps each; ``N * W`` training series ``[C, L]``, each with its station's vector) and normalised by
:class:`~cellsynth.transforms.scaling.LogScaler` (``z = (log1p(x / s_c) - mu_c) / sigma_c``); generated ``z`` is
mapped back by its inverse, which is never negative, after clipping to the training range of ``z`` widened
by ``extensions.clip_margin`` (10 %) of it on each side and, with ``extensions.training_floor``, not below the
training minimum itself, as STOUTER clips its samples. Generated weeks land on the training time axis (its
first week), ``"<id>#<k>"`` ids for ``k > 1`` samples, as every station generator.

Training goes through :func:`cellsynth.training.train` (one stage named after the model):
checkpoints every epoch under ``checkpoint_dir/checkpoints/<name>/``, exact resume; a rerun with another
config or other data is refused.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from typing import Any, ClassVar, Literal

import lightning as L
import numpy as np
import pydantic
import torch

from cellsynth.data.knowledge import KnowledgeGraph
from cellsynth.data.model import Stations, StationTraffic
from cellsynth.data.samples import stack_samples
from cellsynth.errors import DataError, NotFittedError
from cellsynth.generators.base import (
    ConfigSection,
    StationGenerator,
    TrainingConfig,
    training_weeks,
    week_length,
)
from cellsynth.generators.privacy import (
    PrivacyConfig,
    dp_compatible,
    plain_weights,
    plan_privacy,
    public_range,
    train_private,
)
from cellsynth.generators.sampling import Sampling
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
from cellsynth.graphs.transitions import station_embeddings
from cellsynth.nn.tucker import fit_tucker
from cellsynth.training import Placement, loader, module_on, resolve_device, seed_everything, train
from cellsynth.transforms.scaling import LogScaler, output_range, widened_range

__all__ = [
    "BaselineConfig",
    "BaselineExtensions",
    "BaselineGenerator",
    "StationFeatures",
    "knowledge_graph_embeddings",
]

_KM_PER_DEGREE = 111.195  # as cellsynth.graphs.stations


class StationFeatures:
    """Standardised station vectors ``s = (r - mu) / sigma`` ``[N, D]`` with training constants.

    ``r`` is the station's feature columns, followed (``use_coordinates`` and training coordinates) by its
    planar position ``(lat * 111.195, lon * 111.195 * cos(lat_0))`` km around the training centroid
    latitude ``lat_0``. ``mu``, ``sigma`` are the per-column mean and standard deviation over the training
    stations (a constant column gets ``sigma = 1``, so it becomes zeros). Stations with neither features nor
    coordinates give ``D = 0`` (conditioning on the hour of the week only).
    """

    def __init__(self, use_coordinates: bool = True) -> None:
        self.use_coordinates = use_coordinates
        self.feature_names_: tuple[str, ...] | None = None
        self.coordinates_: bool = False
        self.lat0_: float = 0.0
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    @property
    def dim(self) -> int:
        self._fitted()
        return len(self.mean_)

    def fit(self, stations: Stations) -> StationFeatures:
        self.feature_names_ = tuple(stations.feature_names)
        self.coordinates_ = bool(self.use_coordinates and stations.has_coordinates)
        self.lat0_ = float(np.deg2rad(stations.lat.mean())) if self.coordinates_ else 0.0
        raw = self._raw(stations)
        self.mean_ = raw.mean(0) if len(raw) else np.zeros(raw.shape[1])
        sd = raw.std(0)
        self.std_ = np.where(sd > 1e-12, sd, 1.0)
        return self

    def transform(self, stations: Stations) -> np.ndarray:
        """``[M, D]`` float32 for ``stations`` (training or new ones with the same feature columns)."""
        self._fitted()
        if tuple(stations.feature_names) != self.feature_names_:
            raise DataError(
                f"stations have features {list(stations.feature_names)}, but the model was trained with features "
                f"{list(self.feature_names_)}; give the same feature columns in the same order"
            )
        if self.coordinates_ and not stations.has_coordinates:
            raise DataError(
                "the model was trained on stations with coordinates (they are part of its conditioning); give "
                "lat/lon for the stations to generate"
            )
        return ((self._raw(stations) - self.mean_) / self.std_).astype(np.float32)

    def _raw(self, stations: Stations) -> np.ndarray:
        parts = [np.asarray(stations.features, dtype=np.float64).reshape(len(stations), -1)]
        if self.coordinates_:
            parts.append(
                np.stack(
                    [stations.lat * _KM_PER_DEGREE, stations.lon * _KM_PER_DEGREE * np.cos(self.lat0_)],
                    axis=1,
                )
            )
        return np.concatenate(parts, axis=1)

    def state(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, JSON metadata)``; inverse: :meth:`from_state`."""
        self._fitted()
        arrays = {"mean": self.mean_, "std": self.std_}
        meta = {
            "feature_names": list(self.feature_names_),
            "coordinates": self.coordinates_,
            "lat0": self.lat0_,
            "use_coordinates": self.use_coordinates,
        }
        return arrays, meta

    @classmethod
    def from_state(cls, arrays: dict, meta: dict) -> StationFeatures:
        out = cls(meta["use_coordinates"])
        out.feature_names_ = tuple(meta["feature_names"])
        out.coordinates_ = bool(meta["coordinates"])
        out.lat0_ = float(meta["lat0"])
        out.mean_ = np.asarray(arrays["mean"], dtype=np.float64)
        out.std_ = np.asarray(arrays["std"], dtype=np.float64)
        return out

    def _fitted(self) -> None:
        if self.mean_ is None:
            raise NotFittedError("StationFeatures: call fit(training stations) first")


class BaselineExtensions(ConfigSection):
    """What cellsynth adds to the published baselines: STOUTER's normalisation and its clipping of generated
    values (the ``paper`` presets switch the clipping off)."""

    normalisation: Literal["standard", "unit"] = pydantic.Field(
        "standard",
        description="The papers give none for traffic. LogScaler mode, as STOUTER's: 'standard' (z-score) or "
        "'unit' ([-1, 1]).",
    )
    clip_margin: float | None = pydantic.Field(
        0.1,
        ge=0,
        description="Clip generated weeks (DiffWave: its x_0 prediction at every step, as STOUTER) to the "
        "per-channel range of the normalised training traffic, widened by this share of the range on each "
        "side; None: no clipping, as the papers.",
    )
    training_floor: bool = pydantic.Field(
        True,
        description="No generated value below the channel's smallest training value: the final samples are "
        "clipped there, below (the upper side keeps clip_margin), as STOUTER's extensions.training_floor. "
        "Without it a sample can fall under the training range, to zero on a channel that never is zero.",
    )


class BaselineConfig(TrainingConfig):
    """Options shared by the three baselines (conditioning, training loop; generation in ``sampling``,
    cellsynth's additions in ``extensions``)."""

    moved_fields: ClassVar[dict[str, str]] = {"generation_batch_size": "sampling.batch_size"} | {
        name: f"extensions.{name}" for name in BaselineExtensions.model_fields
    }

    use_coordinates: bool = pydantic.Field(
        True, description="Append standardised planar coordinates (km) to the station features when known."
    )
    weekly_harmonics: int = pydantic.Field(
        3, ge=0, description="Hour-of-week sinusoids: cycles per week 1..K."
    )
    daily_harmonics: int = pydantic.Field(4, ge=0, description="Hour-of-week sinusoids: cycles per day 1..K.")
    context_dim: int = pydantic.Field(32, ge=1, description="Width of the conditioning context per step.")
    epochs: int = pydantic.Field(200, ge=1, description="Passes over all training station-weeks.")
    batch_size: int = pydantic.Field(32, ge=1, description="Station-weeks per training batch.")
    lr: float = pydantic.Field(5e-4, gt=0, description="Adam learning rate.")
    sampling: Sampling = pydantic.Field(default_factory=lambda: Sampling(batch_size=512))
    extensions: BaselineExtensions = pydantic.Field(default_factory=BaselineExtensions)

    @pydantic.model_validator(mode="after")
    def _some_time_features(self) -> BaselineConfig:
        if self.weekly_harmonics + self.daily_harmonics == 0:
            raise ValueError("weekly_harmonics + daily_harmonics must be >= 1 (the hour-of-week condition)")
        return self


class PrivateBaselineConfig(BaselineConfig):
    """A baseline that can train with DP-SGD (:meth:`BaselineGenerator.fit`, docs/privacy.md): the ``privacy``
    section, and the settings a private fit needs."""

    privacy: PrivacyConfig | None = pydantic.Field(
        None,
        description="Differentially private training, one station (all its weeks) the unit (docs/privacy.md).",
    )
    #: What ``cellsynth fit MODEL --epsilon`` sets besides ``privacy``.
    private_settings: ClassVar[dict] = {"extensions": {"normalisation": "standard"}}

    @pydantic.model_validator(mode="after")
    def _private_normalisation(self) -> PrivateBaselineConfig:
        if self.privacy is not None and self.extensions.normalisation != "standard":
            raise ValueError(
                "privacy: extensions.normalisation 'unit' maps the real minimum and maximum to [-1, 1]; set "
                "extensions.normalisation: standard"
            )
        return self


class BaselineGenerator(StationGenerator):
    """Fit / generate / save of a baseline; a subclass supplies its networks and how it samples.

    Subclasses implement :meth:`_network` (the network that generates), :meth:`_module` (the Lightning
    module that trains it), :meth:`_trained` (the network to keep after training), :meth:`_draw` (one
    batch of normalised weeks) and may override :meth:`_options` (sampling options of ``generate``).
    """

    Config: ClassVar[type[BaselineConfig]] = BaselineConfig
    #: ``L`` must be divisible by this (networks that halve the week).
    length_multiple: ClassVar[int] = 1
    #: Gradient-norm clipping of the training loop (``None`` for manual optimisation).
    gradient_clip_val: ClassVar[float | None] = 1.0
    #: What DP-SGD trains in a private fit, as its fit note names it.
    private_part: ClassVar[str] = "the network"

    # -- hooks -------------------------------------------------------------------------------------------
    @abstractmethod
    def _network(self, n_channels: int, station_dim: int, length: int) -> torch.nn.Module:
        """The (untrained) network that generates."""

    @abstractmethod
    def _module(self, network: torch.nn.Module) -> L.LightningModule:
        """The Lightning module that trains ``network``; batches are ``(x [B, C, L], s [B, D])``."""

    @abstractmethod
    def _trained(self, module: L.LightningModule) -> torch.nn.Module:
        """The network to generate with, taken from the trained ``module``."""

    @abstractmethod
    def _draw(
        self,
        net: torch.nn.Module,
        station: torch.Tensor,
        *,
        generator: torch.Generator,
        device: torch.device,
        progress: bool,
        **options: Any,
    ) -> torch.Tensor:
        """``[b, C, L]`` normalised weeks for the station vectors ``station`` ``[b, D]`` (on ``device``);
        all randomness from ``generator`` (on the CPU)."""

    def _options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Validate ``generate``'s extra options; the default takes none."""
        if options:
            raise DataError(
                f"{self.name}.generate got unknown option(s) {sorted(options)}; it takes progress and batch_size"
            )
        return {}

    # -- fit ---------------------------------------------------------------------------------------------
    def _check_fit_inputs(self, data):
        data = super()._check_fit_inputs(data)
        week_length(data, self.name, self.length_multiple)
        return data

    def fit(self, data, *, progress: bool = True, checkpoint_dir: str | os.PathLike | None = None):
        data = self._check_fit_inputs(data)
        cfg = self.config
        weeks = training_weeks(data, self.name, self.length_multiple)  # [N, W, L, C]
        n, w, length, c = weeks.shape
        privacy = getattr(cfg, "privacy", None)  # only in the configs of baselines that train with DP-SGD
        stations_per_batch = max(1, round(cfg.batch_size / w))  # a private batch holds about batch_size weeks
        plan = None
        if privacy is not None:  # the budget is checked before any training (docs/privacy.md)
            plan = plan_privacy(
                privacy, model=self.name, n_stations=n, batch_size=stations_per_batch, epochs=cfg.epochs
            )
        guard_resume(
            checkpoint_dir,
            self.name,
            {"config": self.config.model_dump(mode="json"), "data": station_fingerprint(data)},
        )

        self.scaler_ = LogScaler(cfg.extensions.normalisation).fit(weeks)
        if plan is not None:  # clip samples to a range chosen without the data
            self.scaler_ = public_range(self.scaler_)
        z = self.scaler_.transform(weeks).astype(np.float32)
        self.features_ = StationFeatures(cfg.use_coordinates).fit(data.stations)
        vectors = self.features_.transform(data.stations)  # [N, D]
        self.stations_, self.time_, self.week_length_ = data.stations, time_axis_state(data), length

        series = torch.from_numpy(np.ascontiguousarray(z.reshape(n * w, length, c).transpose(0, 2, 1)))
        station = torch.from_numpy(np.repeat(vectors, w, axis=0))
        dataset = torch.utils.data.TensorDataset(series, station)
        seed_everything(cfg.seed)  # before building: initial weights are seeded
        network = self._network(c, vectors.shape[1], length)
        module = self._module(network if plan is None else dp_compatible(network))
        options = {
            "max_epochs": cfg.epochs,
            "stage": self.name,
            "seed": cfg.seed,
            "checkpoint_dir": checkpoint_dir,
        }
        options |= {"progress": progress, "placement": cfg.placement()}
        self.privacy_ = None
        if plan is None:
            train(module, loader(dataset, batch_size=cfg.batch_size, seed=cfg.seed), **options,
                  gradient_clip_val=self.gradient_clip_val)  # fmt: skip
        else:  # DP-SGD: each example is one station with all its weeks
            by_station = torch.utils.data.TensorDataset(
                series.reshape(n, w, c, length), torch.from_numpy(np.ascontiguousarray(vectors))
            )
            self.privacy_ = self._train_private(module, by_station, plan, weeks=w,
                                                batch_size=stations_per_batch, **options)  # fmt: skip
        # A private fit keeps no loss curve: the losses are statistics of the real traffic outside DP-SGD.
        self.history_ = {} if plan is not None else {self.name: list(getattr(module, "history", []))}
        trained = self._trained(module)
        if plan is not None:
            trained = plain_weights(trained, self._network(c, vectors.shape[1], length))
        self.net_ = trained.cpu().eval().requires_grad_(False)
        self.fitted_ = True
        return self

    def _train_private(self, module, dataset, plan, **options) -> dict:
        """DP-SGD on ``module.net`` (:func:`~cellsynth.generators.privacy.train_private`); a model whose
        private training differs overrides this (TCN-GAN: its critic only)."""
        return train_private(module, dataset, plan, **options)

    # -- generate ----------------------------------------------------------------------------------------
    def generate(
        self,
        target,
        *,
        samples: int = 1,
        seed: int = 0,
        progress: bool = False,
        batch_size: int | None = None,
        **options: Any,
    ) -> StationTraffic:
        """``samples`` weeks per target station (see :class:`~cellsynth.generators.base.StationGenerator`).

        A training station is conditioned on its training vector (also when given by id alone), a new station
        on its own standardised features; with stations described by nothing (``D = 0``) every training
        station gets the same, hour-of-week-only condition. ``batch_size`` series are generated at a time
        (default ``sampling.batch_size``).
        """
        self.check_fitted()
        options = self._options(options)
        samples = self._check_samples(samples)
        batch_size = self.config.sampling.batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        target = self._resolve_target(target, seed, self.stations_)
        new = None if target.new is None else self.features_.transform(target.new)
        vectors = torch.from_numpy(target.combine(self.features_.transform(self.stations_), new))
        stations = target.stations
        m, length, c = len(stations), self.week_length_, len(self.time_["channels"])

        device = resolve_device(self.config.accelerator)
        x_range = self._output_range(device)
        net = module_on(self.net_, device)
        generator = torch.Generator().manual_seed(int(seed))
        total = m * samples  # station-major: series i belongs to station i // samples
        out = []
        with torch.no_grad():
            for first in range(0, total, batch_size):
                rows = torch.arange(first, min(first + batch_size, total)) // samples
                x = self._draw(
                    net,
                    vectors[rows].to(device),
                    generator=generator,
                    device=device,
                    progress=progress,
                    **options,
                )
                x = torch.maximum(torch.minimum(x, x_range[1]), x_range[0])
                out.append(x.float().cpu())
        z = torch.cat(out).reshape(m, samples, c, length).permute(0, 1, 3, 2).double().numpy()
        values = self.scaler_.inverse(z).astype(np.float32)
        start, step = restore_time_axis(self.time_)
        return stack_samples(stations, values, start=start, step=step, channels=tuple(self.time_["channels"]))

    def _x0_range(self, device) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(lo, hi)`` ``[C, 1]``: the training range of z per channel widened by ``clip_margin`` of it on each
        side (as STOUTER's), or None. Why: a value a few units beyond the training range is harmless in z
        but, through ``expm1``, becomes traffic many times the largest ever seen."""
        margin = self.config.extensions.clip_margin
        if margin is None:
            return None
        bounds = widened_range(self.scaler_.z_min_, self.scaler_.z_max_, margin)
        return tuple(torch.as_tensor(b, dtype=torch.float32, device=device)[:, None] for b in bounds)

    def _output_range(self, device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(lo, hi)`` ``[C, 1]``, what the generated z is clipped to
        (:func:`~cellsynth.transforms.scaling.output_range`): the range of :meth:`_x0_range` (unbounded
        without ``clip_margin``), raised below to the training minimum with ``training_floor``."""
        ext = self.config.extensions
        bounds = output_range(self.scaler_.z_min_, self.scaler_.z_max_, ext.clip_margin, ext.training_floor)
        return tuple(torch.as_tensor(b, dtype=torch.float32, device=device)[:, None] for b in bounds)

    # -- persistence -------------------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, meta = stations_state(self.stations_)
        feature_arrays, feature_meta = self.features_.state()
        tensors |= compose_state(
            {
                "scaler": self.scaler_.state(),
                "station_features": feature_arrays,
                "net": self.net_.state_dict(),
            }
        )
        meta |= compose_state({"station_features": feature_meta}) | {
            "time": self.time_,
            "week_length": self.week_length_,
            "history": getattr(self, "history_", {}),
            "privacy": getattr(self, "privacy_", None),  # the spent (epsilon, delta) of a private fit
        }
        return tensors, meta

    def fit_notes(self) -> list[str]:
        self.check_fitted()
        spent = getattr(self, "privacy_", None)
        if spent is None:
            return []
        return [
            f"differential privacy: ({spent['epsilon']:.3g}, {spent['delta']:.3g})-DP per station (all its weeks) "
            f"for {self.private_part} (DP-SGD, {spent['accountant']} accountant, noise multiplier "
            f"{spent['noise_multiplier']:.3g}, {spent['steps']} steps); station features are public by "
            "assumption; NOT covered: the normaliser's per-channel median, mean and standard deviation over all "
            "station-weeks (docs/privacy.md)"
        ]

    def _restore(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        parts = split_state(tensors, ("scaler", "station_features", "net"))
        self.stations_ = restore_stations(tensors, meta)
        self.time_, self.week_length_ = meta["time"], meta["week_length"]
        self.history_ = meta.get("history", {})
        self.privacy_ = meta.get("privacy")
        self.scaler_ = LogScaler.from_state(parts["scaler"], self.config.extensions.normalisation)
        feature_meta = split_state(meta, ("station_features",))["station_features"]
        self.features_ = StationFeatures.from_state(parts["station_features"], feature_meta)
        net = self._network(len(self.time_["channels"]), self.features_.dim, self.week_length_)
        net.load_state_dict(parts["net"])
        self.net_ = net.eval().requires_grad_(False)


def knowledge_graph_embeddings(
    kg: KnowledgeGraph,
    station_ids,
    *,
    dim: int,
    epochs: int,
    batch_size: int,
    seed: int,
    progress: bool,
    checkpoint_dir: str | os.PathLike | None,
    placement: Placement,
) -> np.ndarray:
    """``float32 [N, dim]``: the TuckER embedding of each station of ``station_ids`` (in that order), TuckER
    trained on ``kg`` (stage ``"tucker"``: checkpoints under ``checkpoint_dir``, exact resume). How MSTDiff
    and ADAPTIVE turn an urban knowledge graph into station vectors."""
    triplets, names, relations = kg.encode()
    tucker = fit_tucker(
        triplets,
        len(names),
        len(relations),
        dim=dim,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        progress=progress,
        checkpoint_dir=checkpoint_dir,
        placement=placement,
    )
    return np.asarray(station_embeddings(tucker.entity_embeddings(), names, station_ids), dtype=np.float32)
