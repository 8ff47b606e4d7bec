r"""``volunteer``: VOLUNTEER (Long et al., KDD 2023) — a user VAE for the population's attributes and a
trajectory VAE over stay events that decodes travel time apart from dwell time
(:mod:`cellsynth.nn.volunteer`; docs/baselines.md, "MSTDiff's trajectory baselines").

**From steps to events** (:func:`extract_events`). A user's station sequence is cut into runs of equal
stations. A run of at least ``min_stay_steps`` steps is a *stay* ``(l_i, d_i)``; shorter runs are steps
in transit, and the number of them right before a stay is its travel time ``tau_i`` (the stations passed
through are not modelled: the paper's events are places and times). Steps in transit after the last stay
are a journey with no destination in the data; they are not scored. A user without any run of
``min_stay_steps`` steps gets its longest run as its one stay (``fit_notes`` counts them). The last stay is
*censored* when it runs to the end of the data.

**Generation** (:meth:`VolunteerGenerator.sample_events`, :func:`fill_steps`). Each new user draws
``u ~ N(0, I)``; then, event after event, ``z_i ~ N(0, I)``, the decoder gives ``l_i``, ``tau_i`` and
``d_i`` (geometric draws), until the time axis is covered. On the step grid, stay ``i`` occupies exactly
the ``d_i`` steps from its arrival (cut at the end); its ``tau_i`` travel steps before it are placed on the
stations nearest to the straight line from ``l_{i-1}`` to ``l_i`` (at fractions ``k / (tau_i + 1)``), or
on ``l_i`` when the stations have no coordinates (then the distance feature is 0 too).

Traffic: the Markov floor's location-hour model (:mod:`._traffic`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic
import torch

from cellsynth.data.model import Stations, UserMobility
from cellsynth.errors import DataError
from cellsynth.generators.base import TrainingConfig, UserGenerator
from cellsynth.generators.baselines.trajectories._traffic import (
    LocationHourTraffic,
    TrafficSection,
    generated_mobility,
)
from cellsynth.generators.floors.markov import hour_keys
from cellsynth.generators.sampling import Sampling
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
from cellsynth.geo import haversine_km, local_km
from cellsynth.nn.volunteer import VolunteerNet, sample_geometric, volunteer_loss
from cellsynth.training import TrainingModule, loader, module_on, resolve_device, seed_everything, train

__all__ = ["Events", "VolunteerConfig", "VolunteerGenerator", "extract_events", "fill_steps"]


class VolunteerConfig(TrainingConfig):
    """VOLUNTEER's settings."""

    min_stay_steps: int = pydantic.Field(
        2, ge=1, description="Fewest steps at one station that make a stay; shorter runs are travel."
    )
    location_dim: int = pydantic.Field(32, ge=1, description="Station embedding width.")
    time_dim: int = pydantic.Field(16, ge=1, description="Hour-of-week embedding width.")
    hidden: int = pydantic.Field(64, ge=1, description="LSTM and MLP width.")
    latent_dim: int = pydantic.Field(16, ge=1, description="Per-event latent z (trajectory VAE).")
    user_latent_dim: int = pydantic.Field(16, ge=1, description="Per-user latent u (user VAE).")
    kl_weight: float = pydantic.Field(1.0, ge=0, description="Weight of both KL terms (1: the ELBO).")
    epochs: int = pydantic.Field(100, ge=1, description="Passes over the training users.")
    batch_size: int = pydantic.Field(32, ge=1, description="Users per batch.")
    lr: float = pydantic.Field(1e-3, gt=0, description="Adam learning rate.")
    weight_decay: float = pydantic.Field(1e-5, ge=0, description="Adam weight decay (the code's L2).")
    traffic: TrafficSection = pydantic.Field(default_factory=TrafficSection)
    sampling: Sampling = pydantic.Field(default_factory=lambda: Sampling(batch_size=1024))


@dataclass(frozen=True)
class Events:
    """Stay events of ``U`` users, padded to ``E``: ``[U, E]`` int64 ``location``, ``travel``, ``dwell``,
    ``arrival`` (step of arrival) and bool ``censored``, ``mask``; ``fallback`` int: users whose longest
    run was taken as their stay."""

    location: np.ndarray
    travel: np.ndarray
    dwell: np.ndarray
    arrival: np.ndarray
    censored: np.ndarray
    mask: np.ndarray
    fallback: int = 0


def extract_events(locations: np.ndarray, min_stay: int) -> Events:
    """The stay events of every user of ``locations [U, T]`` (module docstring)."""
    loc = np.asarray(locations, dtype=np.int64)
    u, t = loc.shape
    per_user, fallback = [], 0
    for row in loc:
        change = np.flatnonzero(np.diff(row)) + 1
        starts = np.concatenate([[0], change])
        lengths = np.diff(np.concatenate([starts, [t]]))
        stays = np.flatnonzero(lengths >= min_stay)
        if len(stays) == 0:
            stays, fallback = np.array([int(np.argmax(lengths))]), fallback + 1
        ends = starts[stays] + lengths[stays]
        previous_end = np.concatenate([[0], ends[:-1]])
        per_user.append(
            (row[starts[stays]], starts[stays] - previous_end, lengths[stays], starts[stays], ends)
        )
    e = max(len(p[0]) for p in per_user)
    out = {name: np.zeros((u, e), dtype=np.int64) for name in ("location", "travel", "dwell", "arrival")}
    censored, mask = np.zeros((u, e), dtype=bool), np.zeros((u, e), dtype=bool)
    for i, (where, travel, dwell, arrival, ends) in enumerate(per_user):
        k = len(where)
        out["location"][i, :k], out["travel"][i, :k], out["dwell"][i, :k] = where, travel, dwell
        out["arrival"][i, :k], mask[i, :k] = arrival, True
        censored[i, k - 1] = ends[-1] == t
    return Events(**out, censored=censored, mask=mask, fallback=fallback)


def fill_steps(
    location: np.ndarray, travel: np.ndarray, dwell: np.ndarray, n_steps: int, xy: np.ndarray | None
) -> np.ndarray:
    """``int64 [U, n_steps]`` from decoded events ``[U, E]`` (module docstring): each event's travel steps,
    then its ``dwell`` steps at its station; events past the end are ignored. ``xy [N, 2]`` (km) places the
    travel steps on the line between stations; None puts them at the destination."""
    u, e = location.shape
    out = np.full((u, n_steps), -1, dtype=np.int64)
    for i in range(u):
        t, previous = 0, location[i, 0]
        for j in range(e):
            if t >= n_steps:
                break
            here, tau = location[i, j], int(travel[i, j])
            span = min(tau, n_steps - t)
            if span > 0:
                if xy is None:
                    out[i, t : t + span] = here
                else:
                    f = np.arange(1, span + 1)[:, None] / (tau + 1)
                    points = (1 - f) * xy[previous] + f * xy[here]
                    out[i, t : t + span] = np.argmin(((points[:, None] - xy[None]) ** 2).sum(-1), axis=1)
            t += span
            stay = min(int(dwell[i, j]), n_steps - t)
            out[i, t : t + stay] = here
            t, previous = t + stay, here
        if t < n_steps:
            raise ValueError(f"events of user {i} cover {t} of {n_steps} steps")
    return out


class _VolunteerModule(TrainingModule):
    def __init__(self, net: VolunteerNet, cfg: VolunteerConfig) -> None:
        super().__init__()
        self.net, self.cfg = net, cfg
        self.history: list[float] = []
        self._epoch: list[float] = []

    def training_step(self, batch, batch_idx):
        keys = (
            "share",
            "log_count",
            "location",
            "previous",
            "travel",
            "dwell",
            "begin_hour",
            "arrival_hour",
            "distance",
            "censored",
            "mask",
        )
        batch = dict(zip(keys, batch, strict=True))
        terms = volunteer_loss(self.net(batch), batch["mask"].float(), self.cfg.kl_weight)
        self.log_dict(
            {k: terms[k].detach() for k in ("location", "travel", "dwell", "kl_event")},
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=len(batch["mask"]),
        )
        self._epoch.append(float(terms["loss"].detach()))
        return terms["loss"]

    def on_train_epoch_end(self) -> None:
        self.history.append(float(np.mean(self._epoch)))
        self._epoch = []

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.parameters(), lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)


def _station_xy(stations: Stations) -> np.ndarray | None:
    if not stations.has_coordinates:
        return None
    x, y = local_km(stations.lat, stations.lon, float(np.mean(stations.lat)), float(np.mean(stations.lon)))
    return np.stack([x, y], axis=1)


class VolunteerGenerator(UserGenerator):
    """VOLUNTEER (Long et al., KDD 2023): a user VAE and a trajectory VAE decoding travel and dwell apart."""

    name = "volunteer"
    Config = VolunteerConfig

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {
            "location_dim": 8,
            "time_dim": 4,
            "hidden": 16,
            "latent_dim": 4,
            "user_latent_dim": 4,
            "epochs": 2,
            "batch_size": 4,
            "accelerator": "cpu",
        }

    def _network(self, n_stations: int) -> VolunteerNet:
        cfg = self.config
        return VolunteerNet(
            n_stations,
            168,
            location_dim=cfg.location_dim,
            time_dim=cfg.time_dim,
            hidden=cfg.hidden,
            latent_dim=cfg.latent_dim,
            user_latent_dim=cfg.user_latent_dim,
        )

    def _check_fit_inputs(self, data):
        data = super()._check_fit_inputs(data)
        if data.n_steps < 2:
            raise DataError(
                f"{self.name} needs at least 2 time steps per user, got {data.n_steps}", source=data.source
            )
        return data

    def _tensors(self, data: UserMobility, events: Events) -> torch.utils.data.TensorDataset:
        n = len(data.stations)
        hours = hour_keys(data.start, data.step, data.n_steps, weekly=True)
        share = np.stack([np.bincount(row, minlength=n) for row in data.locations]) / data.n_steps
        log_count = np.log(events.mask.sum(1))
        previous = np.concatenate([events.location[:, :1], events.location[:, :-1]], axis=1)
        begin = events.arrival - events.travel
        if data.stations.has_coordinates:
            lat, lon = data.stations.lat, data.stations.lon
            distance = haversine_km(lat[previous], lon[previous], lat[events.location], lon[events.location])
        else:
            distance = np.zeros(previous.shape)
        arrays = [
            torch.from_numpy(share.astype(np.float32)),
            torch.from_numpy(log_count.astype(np.float32)),
            torch.from_numpy(events.location),
            torch.from_numpy(previous),
            torch.from_numpy(events.travel),
            torch.from_numpy(events.dwell),
            torch.from_numpy(hours[begin]),
            torch.from_numpy(hours[events.arrival]),
            torch.from_numpy(np.asarray(distance, dtype=np.float32)),
            torch.from_numpy(events.censored),
            torch.from_numpy(events.mask),
        ]
        return torch.utils.data.TensorDataset(*arrays)

    def fit(self, data, *, progress: bool = True, checkpoint_dir: str | os.PathLike | None = None):
        data = self._check_fit_inputs(data)
        cfg = self.config
        guard_resume(
            checkpoint_dir,
            self.name,
            {
                "config": cfg.model_dump(mode="json"),
                "data": fingerprint(data.locations, data.traffic, data.stations.ids),
            },
        )
        events = extract_events(data.locations, cfg.min_stay_steps)
        dataset = self._tensors(data, events)
        seed_everything(cfg.seed)
        module = _VolunteerModule(self._network(len(data.stations)), cfg)
        train(
            module,
            loader(dataset, batch_size=cfg.batch_size, seed=cfg.seed),
            max_epochs=cfg.epochs,
            stage=self.name,
            seed=cfg.seed,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            placement=cfg.placement(),
        )
        self.history_ = {self.name: list(module.history)}
        self.net_ = module.net.cpu().eval().requires_grad_(False)
        self.fallback_users_ = int(events.fallback)
        self.traffic_ = LocationHourTraffic.fit(data, cfg.traffic)
        self.stations_, self.time_, self.n_steps_ = data.stations, time_axis_state(data), data.n_steps
        self.fitted_ = True
        return self

    def fit_notes(self) -> list[str]:
        if not getattr(self, "fallback_users_", 0):
            return []
        return [
            f"{self.fallback_users_} training user(s) never stayed {self.config.min_stay_steps} steps at one station; "
            "their longest run was taken as their one stay (lower min_stay_steps to keep more of them)"
        ]

    def sample_events(self, n_users: int, *, seed: int = 0, generator: torch.Generator | None = None) -> dict:
        """Decoded events of ``n_users`` new users, ``[U, E]`` numpy ``location``, ``travel``, ``dwell``, with
        as many events as it takes to cover the time axis (module docstring)."""
        self.check_fitted()
        generator = torch.Generator().manual_seed(int(seed)) if generator is None else generator
        return self._sample_events(self._sampling_net(), n_users, generator)

    def _sampling_net(self) -> VolunteerNet:
        """The network on the config's device (:func:`~cellsynth.placement.module_on`: ``net_`` is not moved)."""
        return module_on(self.net_, resolve_device(self.config.accelerator))

    @torch.no_grad()
    def _sample_events(self, net: VolunteerNet, n_users: int, generator: torch.Generator) -> dict:
        n_steps, device = self.n_steps_, next(net.parameters()).device
        start, step = restore_time_axis(self.time_)
        hours = torch.from_numpy(hour_keys(start, step, n_steps, weekly=True)).to(device)
        stations = self.stations_

        def normal(*shape):
            return torch.randn(shape, generator=generator).to(device)

        u = normal(n_users, net.user_latent_dim)
        log_places = net.user_log_places(u)
        begin = torch.zeros(n_users, dtype=torch.long, device=device)
        previous, state = None, None
        locations, travels, dwells = [], [], []
        while bool((begin < n_steps).any()):
            x = net.decoder_input(
                normal(n_users, 1, net.latent_dim), u, hours[begin.clamp(max=n_steps - 1)][:, None]
            )
            h, state = net.decoder(x, state)
            h = h[:, 0]
            probs = torch.softmax(net.location_logits(h, log_places).double(), -1).cpu()
            here = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(device)
            previous = here if previous is None else previous
            distance = torch.zeros(n_users, device=device)
            if stations.has_coordinates:
                a, b = previous.cpu().numpy(), here.cpu().numpy()
                km = haversine_km(stations.lat[a], stations.lon[a], stations.lat[b], stations.lon[b])
                distance = torch.as_tensor(np.asarray(km, dtype=np.float32), device=device)
            tau = sample_geometric(
                net.travel_logit(h, previous, here, distance), shift=0, generator=generator, cap=n_steps
            )
            arrival = (begin + tau).clamp(max=n_steps - 1)
            d = sample_geometric(
                net.dwell_logit(h, here, hours[arrival]), shift=1, generator=generator, cap=n_steps
            )
            locations.append(here.cpu())
            travels.append(tau.cpu())
            dwells.append(d.cpu())
            begin, previous = begin + tau + d, here
        return {
            "location": torch.stack(locations, 1).numpy(),
            "travel": torch.stack(travels, 1).numpy(),
            "dwell": torch.stack(dwells, 1).numpy(),
        }

    def generate(
        self, target, *, samples: int = 1, seed: int = 0, batch_size: int | None = None, **options: Any
    ) -> UserMobility:
        """``target`` new users (user VAE), each decoded event by event (trajectory VAE)."""
        self.check_fitted()
        if options:
            raise DataError(
                f"{self.name}.generate got unknown option(s) {sorted(options)}; it takes batch_size"
            )
        n_users = self._check_users(target)
        if samples != 1:
            raise DataError(
                f"{self.name} generates users: give their number, not samples (got samples={samples})"
            )
        batch_size = self.config.sampling.batch_size if batch_size is None else int(batch_size)
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        generator = torch.Generator().manual_seed(int(seed))
        xy = _station_xy(self.stations_)
        net, parts = self._sampling_net(), []  # on the sampling device once, not once a batch
        for lo in range(0, n_users, batch_size):
            events = self._sample_events(net, min(batch_size, n_users - lo), generator)
            parts.append(fill_steps(events["location"], events["travel"], events["dwell"], self.n_steps_, xy))
        start, step = restore_time_axis(self.time_)
        return generated_mobility(np.concatenate(parts), self.traffic_, start, step, self.stations_, seed)

    def _state(self):
        tensors, meta = stations_state(self.stations_)
        tensors |= compose_state({"net": self.net_.state_dict()})
        if self.traffic_ is not None:
            tensors |= self.traffic_.state()
        meta |= {"time": self.time_, "n_steps": self.n_steps_, "history": self.history_}
        return tensors, meta | {"fallback_users": self.fallback_users_}

    def _restore(self, tensors, meta) -> None:
        self.stations_ = restore_stations(tensors, meta)
        self.time_, self.n_steps_, self.history_ = meta["time"], meta["n_steps"], meta.get("history", {})
        self.fallback_users_ = int(meta.get("fallback_users", 0))
        net = self._network(len(self.stations_))
        net.load_state_dict(split_state(tensors, ("net",))["net"])
        self.net_ = net.eval().requires_grad_(False)
        self.traffic_ = LocationHourTraffic.from_state(tensors, len(self.stations_), self.config.traffic)
