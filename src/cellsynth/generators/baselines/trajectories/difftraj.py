r"""``difftraj``: DiffTraj (Zhu, Ye, Zhang, Zhao & Yu, NeurIPS 2023, arXiv:2304.11582), one of MSTDiff's
trajectory baselines: a Gaussian diffusion over continuous positions, denoised by a 1-D U-Net conditioned
on trip attributes (:class:`cellsynth.nn.difftraj.DiffTrajNet`).

**Data.** A user's T steps are one trajectory of positions: each station's coordinates on the local km map
around the stations' mean (:func:`cellsynth.geo.local_km`), z-scored per axis with the training mean and
standard deviation (the paper z-scores longitude and latitude), ``x0 [U, 2, T]``.

**Trip attributes** (the paper's Wide & Deep input, for a user's trajectory instead of a taxi trip):
continuous, z-scored: total distance travelled (km), number of moves, mean move length (km), radius of
gyration (km), number of distinct stations; categorical: the cells of the first and last positions on a
``grid_cells x grid_cells`` grid over the stations' bounding box (the paper's start and end regions). The
paper's departure time is left out: every trajectory here starts at the start of the data.

**Training** is the paper's: DDPM's epsilon objective (the velocity's with the extension below) over
``T = 500`` steps of linear betas ``1e-4..0.05`` (:class:`~cellsynth.diffusion.gaussian.GaussianDiffusion`,
diffusers' schedulers), diffusion steps drawn in antithetic pairs ``(t, T - 1 - t)`` as the published code
does, AdamW ``2e-4``, an EMA of the weights (0.9999) generates. Classifier-free guidance (scale ``w = 3``):
``guidance_training: combined`` trains the guided prediction ``eps + w (eps - eps_null)`` itself, as the
published code does (its unconditional branch sees the attributes' embedding of zeros; here a learned null
embedding); ``dropout`` trains the conditional network with the attributes replaced by the null embedding with
probability ``condition_dropout`` (Ho & Salimans' recipe) and guides only when sampling.

**Generation**: attributes drawn from the training users' (uniformly, with replacement, seeded, as the paper
generates from given trip attributes), DDIM with 100 steps by default (``sampler=``, ``steps=``); the
positions are mapped back to km and **snapped to the nearest station** per step (:func:`snap_to_stations`,
Euclidean on the km map, exact through a k-d tree). The snap is our departure: DiffTraj outputs GPS points,
cellsynth's users are station sequences. **Traffic**: the Markov floor's location-hour model
(:mod:`._traffic`).

**Extensions** (both in the ``recommended`` preset; the ``paper`` preset has neither).

``extensions.prediction: velocity`` (``noise`` is the paper's): the network predicts
:math:`v = \sqrt{\bar\alpha_t}\,\varepsilon - \sqrt{1 - \bar\alpha_t}\,x_0` (Salimans & Ho, ICLR 2022) and is trained on
:math:`\lVert v - v_\theta \rVert^2`; the samplers get the noise it implies,
:math:`\varepsilon = \sqrt{\bar\alpha_t}\,v + \sqrt{1 - \bar\alpha_t}\,x_t`
(:meth:`~cellsynth.diffusion.gaussian.GaussianDiffusion.noise_from_velocity`). Why: with the paper's schedule
:math:`\bar\alpha` is about 3e-6 at the last step, and the :math:`x_0` implied by a noise prediction,
:math:`(x_t - \sqrt{1 - \bar\alpha_t}\,\varepsilon) / \sqrt{\bar\alpha_t}`, carries its error times 500 there; a
network short of the paper's training drives the chain to positions hundreds of standard deviations out
(docs/notebook/2026-12-05-difftraj-geolife.md). From :math:`v` the implied :math:`x_0` is
:math:`\sqrt{\bar\alpha_t}\,x_t - \sqrt{1 - \bar\alpha_t}\,v`, as accurate as :math:`v` at every step.

``extensions.positions: quantile`` (``z-score`` is the paper's):
each axis of the positions is Gaussianised instead of z-scored, :math:`z = \Phi^{-1}(F(x))` with :math:`F` the
mid-rank CDF of the training visits along that axis (:func:`gaussianise_stations`), and the start and end
regions are the cells of an equal-visit grid (:math:`\Phi(z)` in ``[0, 1]^2``) instead of an equal-km one.
Why: the paper's taxi trips stay inside one city's bounding box, but user data carries far-off places
(GeoLife's 400 most visited locations are within 16 km of the centre up to the 95th percentile and 1,500 km at
the most), which inflate the standard deviation to 100-250 km; z-scored, a whole city's moves then fit in
a few hundredths of a unit, and a 16 x 16 grid over the bounding box puts the city in one cell. Both maps are
monotone per axis, so the order of positions is kept; generated positions map back by the inverse (piecewise
linear between the stations' coordinates) before the snap.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pydantic
import torch
from scipy.spatial import cKDTree
from scipy.special import ndtr, ndtri

from cellsynth.data.model import UserMobility
from cellsynth.diffusion.gaussian import GaussianDiffusion, Prediction
from cellsynth.errors import DataError
from cellsynth.generators.base import ConfigSection, TrainingConfig, UserGenerator
from cellsynth.generators.baselines.trajectories._traffic import LocationHourTraffic
from cellsynth.generators.diffusion_training import EpsilonModule
from cellsynth.generators.sampling import GaussianSampling, SamplingConfig
from cellsynth.generators.state import (
    compose_state,
    fingerprint,
    guard_resume,
    restore_stations,
    restore_time_axis,
    split_state,
    stations_state,
    time_axis_state,
)
from cellsynth.geo import local_km
from cellsynth.nn.difftraj import DiffTrajNet
from cellsynth.training import loader, module_on, resolve_device, seed_everything, train

__all__ = [
    "DiffTrajConfig",
    "DiffTrajGenerator",
    "gaussianise_stations",
    "snap_to_stations",
    "trip_attributes",
    "ungaussianise",
]

N_CONTINUOUS = 5


class DiffTrajSampling(GaussianSampling):
    sampler: Literal["ddpm", "ddim", "dpm-solver"] = pydantic.Field("ddim", description="Default sampler.")
    steps: int | None = pydantic.Field(
        100, ge=1, description="Steps of the default sampler (paper: DDIM 100)."
    )


class DiffTrajGuidance(ConfigSection):
    scale: float = pydantic.Field(3.0, ge=0, description="Classifier-free guidance scale w (paper: 3).")
    training: Literal["combined", "dropout"] = pydantic.Field(
        "combined",
        description="combined: train the guided prediction (published code); dropout: Ho & Salimans.",
    )
    condition_dropout: float = pydantic.Field(
        0.1, ge=0, lt=1, description="With training: dropout, the share of steps trained without attributes."
    )


class DiffTrajExtensions(ConfigSection):
    positions: Literal["z-score", "quantile"] = pydantic.Field(
        "z-score",
        description="How positions are scaled for the diffusion: z-score per axis (paper) or quantile "
        "(Gaussianised per axis, equal-visit start/end regions; robust to far-off places).",
    )
    prediction: Prediction = pydantic.Field(
        "noise",
        description="What the network predicts: the noise (paper) or the velocity v = sqrt(abar) eps - "
        "sqrt(1 - abar) x0 (Salimans & Ho), whose implied x0 stays accurate at the last, noisiest steps.",
    )


class DiffTrajConfig(SamplingConfig, TrainingConfig):
    """DiffTraj's settings (the published config by default)."""

    ch: int = pydantic.Field(128, ge=1, description="U-Net base width.")
    ch_mult: tuple[int, ...] = pydantic.Field((1, 2, 2, 2), min_length=1, description="Width per level.")
    num_res_blocks: int = pydantic.Field(2, ge=1, description="Residual blocks per level.")
    attention_lengths: tuple[int, ...] = pydantic.Field(
        (16,), description="Self-attention at levels of these lengths (and always in the middle)."
    )
    dropout: float = pydantic.Field(0.1, ge=0, lt=1, description="Dropout in the residual blocks.")
    hidden_dim: int = pydantic.Field(256, ge=1, description="Width of the Wide & Deep embeddings.")
    grid_cells: int = pydantic.Field(
        16, ge=1, description="Start/end regions: a grid of this many cells a side."
    )
    guidance: DiffTrajGuidance = pydantic.Field(default_factory=DiffTrajGuidance)
    num_train_timesteps: int = pydantic.Field(500, ge=2, description="Diffusion steps T.")
    beta_start: float = pydantic.Field(1e-4, gt=0, lt=1, description="First beta (linear schedule).")
    beta_end: float = pydantic.Field(0.05, gt=0, lt=1, description="Last beta (linear schedule).")
    epochs: int = pydantic.Field(200, ge=1, description="Training epochs.")
    batch_size: int = pydantic.Field(1024, ge=1, description="Trajectories per batch.")
    lr: float = pydantic.Field(2e-4, gt=0, description="AdamW learning rate.")
    weight_decay: float = pydantic.Field(0.01, ge=0, description="AdamW weight decay (torch's default).")
    ema_decay: float = pydantic.Field(0.9999, ge=0, lt=1, description="EMA of the weights, what generates.")
    sampling: DiffTrajSampling = pydantic.Field(default_factory=DiffTrajSampling)
    extensions: DiffTrajExtensions = pydantic.Field(default_factory=DiffTrajExtensions)

    @pydantic.model_validator(mode="after")
    def _schedule(self) -> DiffTrajConfig:
        if self.beta_start >= self.beta_end:
            raise ValueError(f"beta_start ({self.beta_start}) must be < beta_end ({self.beta_end})")
        return self


def trip_attributes(xy: np.ndarray, locations: np.ndarray, bounds: np.ndarray, cells: int):
    """``(continuous [U, 5], categories [U, 2])`` of trajectories ``xy [U, T, 2]`` (km) over station indices
    ``locations [U, T]``: total km, moves, mean move km, radius of gyration km (about the mean position),
    distinct stations; the grid cells of the first and last positions in ``bounds = [[xmin, ymin],
    [xmax, ymax]]``."""
    jumps = np.linalg.norm(np.diff(xy, axis=1), axis=-1)  # [U, T-1]
    moves = (np.diff(locations, axis=1) != 0).sum(axis=1)
    total = jumps.sum(axis=1)
    mean_move = np.divide(total, moves, out=np.zeros_like(total), where=moves > 0)
    radius = np.sqrt(((xy - xy.mean(axis=1, keepdims=True)) ** 2).sum(axis=-1).mean(axis=1))
    distinct = np.array([len(np.unique(row)) for row in locations], dtype=np.float64)
    continuous = np.stack([total, moves.astype(np.float64), mean_move, radius, distinct], axis=1)
    span = np.maximum(bounds[1] - bounds[0], 1e-9)

    def cell(points: np.ndarray) -> np.ndarray:
        ij = np.clip(((points - bounds[0]) / span * cells).astype(np.int64), 0, cells - 1)
        return ij[:, 0] * cells + ij[:, 1]

    return continuous, np.stack([cell(xy[:, 0]), cell(xy[:, -1])], axis=1)


def gaussianise_stations(station_xy: np.ndarray, visits: np.ndarray) -> np.ndarray:
    r"""``[S, 2]``: each station's coordinates Gaussianised per axis, :math:`z_a = \Phi^{-1}(F_a(x_a))`, with
    :math:`F_a` the mid-rank CDF along axis ``a`` of the visits ``[S]`` plus one per station (so that every
    coordinate, visited or not, gets its own quantile and the map is strictly increasing). Stations sharing a
    coordinate share its value."""
    weights = np.asarray(visits, dtype=np.float64) + 1.0
    total = weights.sum()
    z = np.empty(station_xy.shape, dtype=np.float64)
    for axis in range(station_xy.shape[1]):
        values, inverse = np.unique(station_xy[:, axis], return_inverse=True)
        mass = np.bincount(inverse, weights=weights, minlength=len(values))
        z[:, axis] = ndtri((np.cumsum(mass) - mass / 2) / total)[inverse]
    return z


def ungaussianise(z: np.ndarray, station_xy: np.ndarray, station_z: np.ndarray) -> np.ndarray:
    """The inverse of :func:`gaussianise_stations` for any ``z [..., 2]``: piecewise linear between the
    stations' ``(z, coordinate)`` pairs of each axis, clamped to the outermost stations."""
    out = np.empty(np.shape(z), dtype=np.float64)
    for axis in range(station_xy.shape[1]):
        knots, first = np.unique(station_z[:, axis], return_index=True)
        out[..., axis] = np.interp(z[..., axis], knots, station_xy[first, axis])
    return out


def snap_to_stations(xy: np.ndarray, station_xy: np.ndarray) -> np.ndarray:
    """``int64 [...]``: the index of the station nearest (Euclidean) to each position ``xy [..., 2]``."""
    _, index = cKDTree(station_xy).query(np.asarray(xy, dtype=np.float64).reshape(-1, 2))
    return np.asarray(index, dtype=np.int64).reshape(xy.shape[:-1])


class _DiffTrajModule(EpsilonModule):
    """Antithetic diffusion steps and the two guidance trainings (module docstring)."""

    def __init__(self, net: DiffTrajNet, diffusion: GaussianDiffusion, cfg: DiffTrajConfig) -> None:
        super().__init__(
            net,
            diffusion,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            ema_decay=cfg.ema_decay,
            prediction=cfg.extensions.prediction,
        )
        self.guidance = cfg.guidance

    def training_step(self, batch, batch_idx):
        x0, continuous, categories = batch
        n, steps = x0.shape[0], self.diffusion.num_train_timesteps
        half = torch.randint(0, steps, (n // 2 + 1,), device=x0.device)
        t = torch.cat([half, steps - 1 - half])[:n]
        noise = torch.randn_like(x0)
        x_t = self.diffusion.add_noise(x0, noise, t)
        if self.guidance.training == "combined":
            predicted = self.net.guided(x_t, t, continuous, categories, self.guidance.scale)
        else:
            keep = torch.rand(n, device=x0.device) >= self.guidance.condition_dropout
            predicted = self.net(x_t, t, continuous, categories, keep)
        loss = torch.nn.functional.mse_loss(predicted, self.target(x0, noise, t))
        self.log("mse", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=n)
        self._epoch.append(float(loss.detach()))
        return loss


class DiffTrajGenerator(UserGenerator):
    """DiffTraj (Zhu et al., NeurIPS 2023): a 1-D U-Net diffusion over users' positions, snapped to the nearest
    station; traffic from the Markov floor's location-hour model.

    ``generate(n_users, seed=, sampler=, steps=, batch_size=, progress=)``; details and departures from the
    paper: the module docstring."""

    name = "difftraj"
    Config = DiffTrajConfig

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {
            "ch": 8,
            "ch_mult": (1, 2),
            "num_res_blocks": 1,
            "hidden_dim": 8,
            "epochs": 2,
            "batch_size": 8,
            "num_train_timesteps": 50,
            "beta_end": 0.3,  # about 10 / T, so that x_T is pure noise with so few steps
            "sampling": {"steps": 5},
            "accelerator": "cpu",
        }

    def _check_fit_inputs(self, data):
        data = super()._check_fit_inputs(data)
        if not data.stations.has_coordinates:
            raise DataError(
                f"{self.name} diffuses positions and needs the stations' lat/lon; give stations with coordinates",
                source=data.source,
            )
        if data.n_steps < 2:
            raise DataError(
                f"{self.name} needs at least 2 steps per user, got {data.n_steps}", source=data.source
            )
        return data

    def _diffusion(self) -> GaussianDiffusion:
        cfg = self.config
        return GaussianDiffusion(cfg.num_train_timesteps, "linear", cfg.beta_start, cfg.beta_end)

    def _network(self, length: int) -> DiffTrajNet:
        cfg = self.config
        return DiffTrajNet(
            length,
            N_CONTINUOUS,
            (cfg.grid_cells**2, cfg.grid_cells**2),
            ch=cfg.ch,
            ch_mult=cfg.ch_mult,
            num_res_blocks=cfg.num_res_blocks,
            attention_lengths=cfg.attention_lengths,
            dropout=cfg.dropout,
            hidden_dim=cfg.hidden_dim,
        )

    def _station_xy(self, stations) -> np.ndarray:
        east, north = local_km(stations.lat, stations.lon, self.origin_[0], self.origin_[1])
        return np.stack([east, north], axis=1)

    def fit(self, data, *, progress: bool = True, checkpoint_dir=None) -> DiffTrajGenerator:
        data = self._check_fit_inputs(data)
        cfg = self.config
        guard_resume(
            checkpoint_dir,
            self.name,
            {"config": cfg.model_dump(mode="json"), "data": fingerprint(data.locations, data.stations.ids)},
        )
        self.stations_, self.time_, self.n_steps_ = data.stations, time_axis_state(data), data.n_steps
        self.origin_ = np.array([np.mean(data.stations.lat), np.mean(data.stations.lon)])
        station_xy = self._station_xy(data.stations)
        self.bounds_ = np.stack([station_xy.min(axis=0), station_xy.max(axis=0)])
        xy = station_xy[data.locations]  # [U, T, 2]
        self.xy_mean_, self.xy_std_ = xy.reshape(-1, 2).mean(axis=0), _std(xy.reshape(-1, 2))
        continuous, self.categories_ = trip_attributes(xy, data.locations, self.bounds_, cfg.grid_cells)
        if cfg.extensions.positions == "quantile":
            visits = np.bincount(data.locations.ravel(), minlength=len(data.stations))
            self.station_z_ = gaussianise_stations(station_xy, visits)
            z = self.station_z_[data.locations]
            # equal-visit start/end regions: the grid over Phi(z), which is uniform in [0, 1]^2 per axis
            _, self.categories_ = trip_attributes(ndtr(z), data.locations, _UNIT_SQUARE, cfg.grid_cells)
        else:
            z = (xy - self.xy_mean_) / self.xy_std_
        self.attr_mean_, self.attr_std_ = continuous.mean(axis=0), _std(continuous)
        self.continuous_ = (continuous - self.attr_mean_) / self.attr_std_

        x0 = z.transpose(0, 2, 1).astype(np.float32)
        dataset = torch.utils.data.TensorDataset(
            torch.from_numpy(np.ascontiguousarray(x0)),
            torch.from_numpy(self.continuous_.astype(np.float32)),
            torch.from_numpy(self.categories_),
        )
        seed_everything(cfg.seed)
        module = _DiffTrajModule(self._network(data.n_steps), self._diffusion(), cfg)
        train(
            module,
            loader(dataset, batch_size=cfg.batch_size, seed=cfg.seed),
            max_epochs=cfg.epochs,
            stage=self.name,
            seed=cfg.seed,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            placement=cfg.placement(),
            gradient_clip_val=None,  # the published training loop does not clip gradients
        )
        self.history_ = list(module.history)
        self.net_ = module.ema.cpu().eval().requires_grad_(False)
        self.traffic_ = LocationHourTraffic.fit(data)
        self.fitted_ = True
        return self

    def generate(
        self,
        target,
        *,
        samples: int = 1,
        seed: int = 0,
        progress: bool = False,
        batch_size: int | None = None,
        **options: Any,
    ) -> UserMobility:
        self.check_fitted()
        sampling = self.config.sampling_options(options, self.name)
        n_users = self._check_users(target)
        if samples != 1:
            raise DataError(
                f"{self.name} generates users: give their number, not samples (got samples={samples})"
            )
        batch_size = self.config.sampling.batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        rng = np.random.default_rng(seed)
        rows = rng.integers(0, len(self.continuous_), n_users)
        continuous = torch.from_numpy(self.continuous_[rows].astype(np.float32))
        categories = torch.from_numpy(self.categories_[rows])
        device = resolve_device(self.config.accelerator)
        net, diffusion, scale = module_on(self.net_, device), self._diffusion(), self.config.guidance.scale
        prediction = self.config.extensions.prediction

        def predict_noise(x, t, cont, cat):
            return diffusion.implied_noise(prediction, x, net.guided(x, t, cont, cat, scale), t)

        generator = torch.Generator().manual_seed(int(seed))
        out = []
        for first in range(0, n_users, batch_size):
            cont = continuous[first : first + batch_size].to(device)
            cat = categories[first : first + batch_size].to(device)
            x = diffusion.sample(
                lambda x, t, cont=cont, cat=cat: predict_noise(x, t, cont, cat),
                (len(cont), 2, self.n_steps_),
                **sampling,
                generator=generator,
                device=device,
                progress=progress,
            )
            out.append(x.double().cpu())
        z = torch.cat(out).numpy().transpose(0, 2, 1)
        station_xy = self._station_xy(self.stations_)
        if self.config.extensions.positions == "quantile":
            xy = ungaussianise(z, station_xy, self.station_z_)
        else:
            xy = z * self.xy_std_ + self.xy_mean_
        loc = snap_to_stations(xy, station_xy)
        start, step = restore_time_axis(self.time_)
        traffic = None if self.traffic_ is None else self.traffic_.sample(loc, start, step, rng)
        return UserMobility(loc, start, step, self.stations_, traffic=traffic)

    def _state(self):
        tensors, meta = stations_state(self.stations_)
        arrays = {
            "origin": self.origin_,
            "bounds": self.bounds_,
            "xy_mean": self.xy_mean_,
            "xy_std": self.xy_std_,
            "attr_mean": self.attr_mean_,
            "attr_std": self.attr_std_,
            "continuous": self.continuous_,
            "categories": self.categories_,
        }
        if self.config.extensions.positions == "quantile":
            arrays["station_z"] = self.station_z_
        tensors |= compose_state({"difftraj": arrays, "net": self.net_.state_dict()})
        if self.traffic_ is not None:
            tensors |= self.traffic_.state()
        return tensors, meta | {"time": self.time_, "n_steps": self.n_steps_}

    def _restore(self, tensors, meta) -> None:
        self.stations_ = restore_stations(tensors, meta)
        self.time_, self.n_steps_ = meta["time"], meta["n_steps"]
        parts = split_state(tensors, ("difftraj", "net"))
        for key, value in parts["difftraj"].items():
            setattr(self, f"{key}_", value.numpy())
        net = self._network(self.n_steps_)
        net.load_state_dict(parts["net"])
        self.net_ = net.eval().requires_grad_(False)
        self.traffic_ = LocationHourTraffic.from_state(tensors, len(self.stations_))


_UNIT_SQUARE = np.array([[0.0, 0.0], [1.0, 1.0]])


def _std(values: np.ndarray) -> np.ndarray:
    """Per-column standard deviation, 1 where a column is constant (nothing to scale)."""
    std = values.std(axis=0)
    return np.where(std > 0, std, 1.0)
