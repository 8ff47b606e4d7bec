r"""``pategail``: PateGail (Wang et al., AAAI 2023) — generative adversarial imitation learning of users'
station sequences, with the PATE-style private aggregation of discriminators trained on disjoint user
partitions (docs/baselines.md, "MSTDiff's trajectory baselines").

One training step (Lightning, manual optimisation; a batch is ``batch_size`` training users):

1. **Roll out** the policy ``pi`` for ``batch_size`` users over the whole time axis (``T`` steps), each
   starting where one of the batch's users starts (the released environment resets to real starts).
2. **Reward** every generated pair ``(s_t, a_t)`` by the noisy aggregate of the ``k`` discriminators
   (:func:`cellsynth.nn.pategail.aggregate_votes`, :func:`~cellsynth.nn.pategail.gail_reward`).
3. **PPO**: advantages by GAE (``gamma``, ``lam``), normalised over the batch; ``policy_iterations`` steps
   of the clipped surrogate minus ``entropy_weight`` times the policy's entropy, ``value_iterations`` steps
   of ``(R_t - V(s_t))^2``; gradients clipped to norm ``clip_grad``.
4. **Discriminators**: ``discriminator_iterations`` steps of binary cross-entropy each; discriminator
   ``j`` sees real pairs of its own partition of the training users only (drawn at random, as the
   released code samples each user file) against the generated pairs.

With ``discriminators = 1``, ``noise_scale = 0`` and ``disagreement_weight = 0`` this is plain GAIL (Ho &
Ermon 2016). ``extensions.pretrain_epochs`` warm-starts the policy by behaviour cloning (not the paper's).
Generation draws the first station from the training users' start distribution and rolls the policy out.
Traffic: the Markov floor's location-hour model (:mod:`._traffic`).
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import pydantic
import torch
import torch.nn.functional as F

from cellsynth.data.model import UserMobility
from cellsynth.errors import DataError
from cellsynth.generators.base import ConfigSection, TrainingConfig, UserGenerator
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
from cellsynth.nn.pategail import (
    Discriminator,
    PolicyNet,
    aggregate_votes,
    gae,
    gail_reward,
    ppo_clip_loss,
)
from cellsynth.training import TrainingModule, loader, module_on, resolve_device, seed_everything, train

__all__ = ["PateGailConfig", "PateGailGenerator", "state_features", "user_partitions"]


class PateGailExtensions(ConfigSection):
    """Beyond the paper."""

    pretrain_epochs: int = pydantic.Field(
        0, ge=0, description="Epochs of behaviour cloning of the policy before GAIL (0: none, as the paper)."
    )


class PateGailConfig(TrainingConfig):
    """PateGail's settings (the released code's, where it has them)."""

    location_dim: int = pydantic.Field(32, ge=1, description="Station embedding width.")
    time_dim: int = pydantic.Field(
        8, ge=1, description="Width of the hour, stay and visited-count embeddings."
    )
    hidden: int = pydantic.Field(64, ge=1, description="Hidden width of policy, value and discriminators.")
    max_stay: int = pydantic.Field(47, ge=1, description="Stay time (steps at the station) is capped here.")
    max_visited: int = pydantic.Field(47, ge=1, description="Distinct stations visited so far, capped here.")
    discriminators: int = pydantic.Field(
        5, ge=1, description="k: discriminators, each trained on its own disjoint partition of the users."
    )
    aggregation: Literal["mean", "vote"] = pydantic.Field(
        "mean", description="Aggregate the discriminators' probabilities ('mean') or hard votes ('vote')."
    )
    noise_scale: float = pydantic.Field(
        0.05, ge=0, description="b: Laplace noise scale on the aggregate (0: no noise)."
    )
    disagreement_weight: float = pydantic.Field(
        0.0, ge=0, description="beta: weight of the discriminators' (noisy) standard deviation in the reward."
    )
    gamma: float = pydantic.Field(0.99, gt=0, le=1, description="Discount factor.")
    lam: float = pydantic.Field(0.95, ge=0, le=1, description="GAE lambda.")
    clip: float = pydantic.Field(0.2, gt=0, description="PPO clipping epsilon.")
    entropy_weight: float = pydantic.Field(0.001, ge=0, description="Entropy bonus of the policy loss.")
    policy_iterations: int = pydantic.Field(1, ge=1, description="PPO policy steps per rollout.")
    value_iterations: int = pydantic.Field(1, ge=1, description="Value steps per rollout.")
    discriminator_iterations: int = pydantic.Field(
        10, ge=1, description="Steps per discriminator per rollout."
    )
    clip_grad: float = pydantic.Field(10.0, gt=0, description="Gradient norm clipping.")
    lr: float = pydantic.Field(1e-3, gt=0, description="Adam learning rate of all networks.")
    weight_decay: float = pydantic.Field(1e-5, ge=0, description="Adam weight decay of policy and value.")
    epochs: int = pydantic.Field(
        100, ge=1, description="Passes over the training users (one rollout per batch)."
    )
    batch_size: int = pydantic.Field(
        50, ge=1, description="Users per rollout (and real pairs per discriminator)."
    )
    traffic: TrafficSection = pydantic.Field(default_factory=TrafficSection)
    sampling: Sampling = pydantic.Field(default_factory=lambda: Sampling(batch_size=1024))
    extensions: PateGailExtensions = pydantic.Field(default_factory=PateGailExtensions)


def state_features(locations: np.ndarray, hours: np.ndarray, max_stay: int, max_visited: int) -> np.ndarray:
    """``int64 [U, T, 4]``: ``(l_t, h_t, d_t, n_t)`` of every step of ``locations [U, T]``: ``d_t`` the steps
    already spent at ``l_t`` before ``t`` (0 on arrival), ``n_t`` the distinct stations in ``l_0..l_t``."""
    loc = np.asarray(locations, dtype=np.int64)
    u, t = loc.shape
    stay = np.zeros((u, t), dtype=np.int64)
    for step in range(1, t):
        stay[:, step] = np.where(loc[:, step] == loc[:, step - 1], stay[:, step - 1] + 1, 0)
    first = np.zeros((u, t), dtype=bool)
    order = np.argsort(loc, axis=1, kind="stable")
    ranked = np.take_along_axis(loc, order, axis=1)
    new = np.ones((u, t), dtype=bool)
    new[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    np.put_along_axis(first, order, new, axis=1)  # the first occurrence of each station in time
    visited = np.cumsum(first, axis=1)
    hour = np.broadcast_to(hours[None, :], (u, t))
    return np.stack(
        [loc, hour, np.minimum(stay, max_stay), np.minimum(visited, max_visited)], axis=-1
    ).astype(np.int64)


def user_partitions(n_users: int, k: int, seed: int) -> np.ndarray:
    """``int64 [n_users]``: each user's partition ``0..k-1`` — disjoint, sizes within one of each other,
    users assigned by a seeded permutation (one partition per discriminator)."""
    order = np.random.default_rng(seed).permutation(n_users)
    partition = np.empty(n_users, dtype=np.int64)
    partition[order] = np.arange(n_users) % k
    return partition


class _Rollout:
    """Vectorised environment: users move to the station the policy picks; states as :func:`state_features`."""

    @staticmethod
    def run(
        policy,
        start: torch.Tensor,
        hours: torch.Tensor,
        n: int,
        max_stay: int,
        max_visited: int,
        generator: torch.Generator | None = None,
    ):
        """``(states [B, T-1, 4], actions [B, T-1], log_probs [B, T-1], locations [B, T])``."""
        b, t = len(start), len(hours)
        device = start.device
        loc = start.clone()
        stay = torch.zeros(b, dtype=torch.long, device=device)
        seen = torch.zeros(b, n, dtype=torch.bool, device=device)
        seen[torch.arange(b, device=device), loc] = True
        states, actions, log_probs, path = [], [], [], [loc]
        for step in range(t - 1):
            visited = seen.sum(1).clamp(max=max_visited)
            state = torch.stack([loc, hours[step].expand(b), stay.clamp(max=max_stay), visited], dim=-1)
            logits = policy(state)
            probs = torch.softmax(logits.float(), -1)
            if generator is None:  # training: the global generator, reseeded every step
                action = torch.multinomial(probs, 1).squeeze(1)
            else:  # generation: a CPU generator, the same draws on every device
                action = torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(device)
            states.append(state)
            actions.append(action)
            log_probs.append(torch.log_softmax(logits, -1).gather(1, action[:, None]).squeeze(1))
            stay = torch.where(action == loc, stay + 1, torch.zeros_like(stay))
            loc = action
            seen[torch.arange(b, device=device), loc] = True
            path.append(loc)
        return (
            torch.stack(states, 1),
            torch.stack(actions, 1),
            torch.stack(log_probs, 1),
            torch.stack(path, 1),
        )


class _GailModule(TrainingModule):
    """PPO + discriminators with manual optimisation (module docstring)."""

    def __init__(self, cfg: PateGailConfig, encoder_args: dict, expert_states, expert_actions, partition):
        super().__init__()
        self.automatic_optimization = False
        self.cfg = cfg
        n = encoder_args["n_stations"]
        self.policy = PolicyNet(encoder_args, cfg.hidden, n)
        self.value = PolicyNet(encoder_args, cfg.hidden, 1)
        self.discriminators = torch.nn.ModuleList(
            Discriminator(encoder_args, cfg.hidden) for _ in range(cfg.discriminators)
        )
        # real (s, a) pairs [U, T-1, 4] / [U, T-1] and each user's partition; rebuilt on every fit, not saved
        self.register_buffer("expert_states", expert_states, persistent=False)
        self.register_buffer("expert_actions", expert_actions, persistent=False)
        self.register_buffer("partition", partition, persistent=False)
        self.register_buffer("hours", expert_states[0, :, 1].clone(), persistent=False)
        self.n_stations = n
        self.history: list[float] = []
        self._epoch: list[float] = []

    def configure_optimizers(self):
        cfg = self.cfg
        return [
            torch.optim.Adam(self.policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
            torch.optim.Adam(self.value.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay),
            torch.optim.Adam(self.discriminators.parameters(), lr=cfg.lr),
        ]

    def _discriminator_probs(self, states, actions) -> torch.Tensor:
        return torch.stack([torch.sigmoid(d(states, actions)) for d in self.discriminators])

    def _step(self, optimizer, loss, params) -> None:
        optimizer.zero_grad()
        self.manual_backward(loss)
        torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad)
        optimizer.step()

    def training_step(self, batch, batch_idx):
        cfg = self.cfg
        (users,) = batch
        opt_policy, opt_value, opt_disc = self.optimizers()
        hours = torch.cat([self.hours, self.hours[-1:]])  # the last step's hour (only its state is used)
        start = self.expert_states[users, 0, 0]
        with torch.no_grad():
            states, actions, old_log_probs, _ = _Rollout.run(
                self.policy, start, hours, self.n_stations, cfg.max_stay, cfg.max_visited
            )
            flat_s, flat_a = states.reshape(-1, 4), actions.reshape(-1)
            aggregate = aggregate_votes(
                self._discriminator_probs(flat_s, flat_a),
                noise_scale=cfg.noise_scale,
                disagreement_weight=cfg.disagreement_weight,
                mode=cfg.aggregation,
            )
            rewards = gail_reward(aggregate).reshape(actions.shape)
            values = self.value(states).squeeze(-1)
            advantages, returns = gae(rewards, values, gamma=cfg.gamma, lam=cfg.lam)
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        for _ in range(cfg.value_iterations):
            loss_v = (returns - self.value(states).squeeze(-1)).pow(2).mean()
            self._step(opt_value, loss_v, self.value.parameters())
        for _ in range(cfg.policy_iterations):
            log_all = torch.log_softmax(self.policy(states), -1)
            log_prob = log_all.gather(-1, actions[..., None]).squeeze(-1)
            entropy = -(log_all.exp() * log_all).sum(-1).mean()
            loss_p = (
                ppo_clip_loss(log_prob, old_log_probs, advantages, cfg.clip) - cfg.entropy_weight * entropy
            )
            self._step(opt_policy, loss_p, self.policy.parameters())
        loss_d = self._train_discriminators(opt_disc, flat_s, flat_a)
        self._epoch.append(float(rewards.mean()))
        self.log_dict(
            {"reward": rewards.mean(), "d_loss": loss_d},
            prog_bar=True,
            on_step=False,
            on_epoch=True,
            batch_size=len(users),
        )

    def _train_discriminators(self, optimizer, gen_states, gen_actions) -> torch.Tensor:
        """``discriminator_iterations`` BCE steps; discriminator ``j`` on real pairs of partition ``j``."""
        cfg, size = self.cfg, self.cfg.batch_size
        steps = self.expert_actions.shape[1]
        loss = torch.zeros((), device=self.device)
        for _ in range(cfg.discriminator_iterations):
            total = torch.zeros((), device=self.device)
            for j, disc in enumerate(self.discriminators):
                members = torch.nonzero(self.partition == j).squeeze(1)
                pick_user = members[torch.randint(len(members), (size,), device=self.device)]
                pick_step = torch.randint(steps, (size,), device=self.device)
                real_logit = disc(
                    self.expert_states[pick_user, pick_step], self.expert_actions[pick_user, pick_step]
                )
                fake = torch.randint(len(gen_actions), (size,), device=self.device)
                fake_logit = disc(gen_states[fake], gen_actions[fake])
                total = total + 0.5 * (
                    F.binary_cross_entropy_with_logits(real_logit, torch.zeros_like(real_logit))
                    + F.binary_cross_entropy_with_logits(fake_logit, torch.ones_like(fake_logit))
                )
            self._step(optimizer, total, self.discriminators.parameters())
            loss = total.detach() / len(self.discriminators)
        return loss

    def on_train_epoch_end(self) -> None:
        self.history.append(float(np.mean(self._epoch)) if self._epoch else float("nan"))
        self._epoch = []


class _CloningModule(TrainingModule):
    """Behaviour cloning of the policy: cross-entropy of the real next station (``extensions``)."""

    def __init__(self, policy: PolicyNet, lr: float, expert_states, expert_actions) -> None:
        super().__init__()
        self.policy, self.lr = policy, lr
        self.register_buffer("expert_states", expert_states, persistent=False)
        self.register_buffer("expert_actions", expert_actions, persistent=False)
        self.history: list[float] = []

    def training_step(self, batch, batch_idx):
        (users,) = batch
        logits = self.policy(self.expert_states[users])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), self.expert_actions[users].reshape(-1))
        self.log("bc_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(users))
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.policy.parameters(), lr=self.lr)


class PateGailGenerator(UserGenerator):
    """PateGail (Wang et al., AAAI 2023): GAIL over next stations, PATE-aggregated discriminators."""

    name = "pategail"
    Config = PateGailConfig

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {
            "location_dim": 8,
            "time_dim": 4,
            "hidden": 16,
            "discriminators": 2,
            "discriminator_iterations": 2,
            "epochs": 2,
            "batch_size": 6,
            "accelerator": "cpu",
            "extensions": {"pretrain_epochs": 1},
        }

    def _check_fit_inputs(self, data):
        data = super()._check_fit_inputs(data)
        if data.n_steps < 2:
            raise DataError(
                f"{self.name} needs at least 2 time steps per user, got {data.n_steps}", source=data.source
            )
        k = self.config.discriminators
        if data.n_users < k:
            raise DataError(
                f"{self.name} splits the users into {k} disjoint partitions (one per discriminator), but the data "
                f"has {data.n_users} users; set discriminators to at most {data.n_users}",
                source=data.source,
            )
        return data

    def _encoder_args(self, n_stations: int) -> dict:
        cfg = self.config
        return {
            "n_stations": n_stations,
            "n_hours": 168,
            "max_stay": cfg.max_stay,
            "max_visited": cfg.max_visited,
            "dim": cfg.location_dim,
            "time_dim": cfg.time_dim,
        }

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
        n = len(data.stations)
        hours = hour_keys(data.start, data.step, data.n_steps, weekly=True)
        features = state_features(data.locations, hours, cfg.max_stay, cfg.max_visited)
        expert_states = torch.from_numpy(features[:, :-1].copy())
        expert_actions = torch.from_numpy(np.ascontiguousarray(data.locations[:, 1:], dtype=np.int64))
        partition = user_partitions(data.n_users, cfg.discriminators, cfg.seed)
        users = torch.utils.data.TensorDataset(torch.arange(data.n_users))
        seed_everything(cfg.seed)
        module = _GailModule(
            cfg, self._encoder_args(n), expert_states, expert_actions, torch.from_numpy(partition)
        )
        self.history_: dict[str, list[float]] = {}
        if cfg.extensions.pretrain_epochs:
            cloning = _CloningModule(module.policy, cfg.lr, expert_states, expert_actions)
            train(
                cloning,
                loader(users, batch_size=cfg.batch_size, seed=cfg.seed),
                max_epochs=cfg.extensions.pretrain_epochs,
                stage=f"{self.name}-cloning",
                seed=cfg.seed,
                checkpoint_dir=checkpoint_dir,
                progress=progress,
                placement=cfg.placement(),
            )
            module.policy = cloning.policy
        train(
            module,
            loader(users, batch_size=cfg.batch_size, seed=cfg.seed),
            max_epochs=cfg.epochs,
            stage=self.name,
            seed=cfg.seed,
            checkpoint_dir=checkpoint_dir,
            progress=progress,
            placement=cfg.placement(),
            gradient_clip_val=None,
        )
        self.history_[self.name] = list(module.history)
        self.policy_ = module.policy.cpu().eval().requires_grad_(False)
        start = np.bincount(data.locations[:, 0], minlength=n).astype(np.float64)
        self.start_ = start / start.sum()
        self.traffic_ = LocationHourTraffic.fit(data, cfg.traffic)
        self.stations_, self.time_, self.n_steps_ = data.stations, time_axis_state(data), data.n_steps
        self.fitted_ = True
        return self

    def generate(
        self, target, *, samples: int = 1, seed: int = 0, batch_size: int | None = None, **options: Any
    ) -> UserMobility:
        """``target`` users: first station from the training start distribution, then the policy."""
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
        cfg = self.config
        start, step = restore_time_axis(self.time_)
        hours = torch.from_numpy(hour_keys(start, step, self.n_steps_, weekly=True))
        device = resolve_device(cfg.accelerator)
        generator = torch.Generator().manual_seed(int(seed))
        first = torch.multinomial(
            torch.from_numpy(self.start_), n_users, replacement=True, generator=generator
        )
        policy = module_on(self.policy_, device)
        out = []
        with torch.no_grad():
            for lo in range(0, n_users, batch_size):
                path = _Rollout.run(
                    policy,
                    first[lo : lo + batch_size].to(device),
                    hours.to(device),
                    len(self.start_),
                    cfg.max_stay,
                    cfg.max_visited,
                    generator=generator,
                )[3]
                out.append(path.cpu())
        locations = torch.cat(out).numpy().astype(np.int64)
        return generated_mobility(locations, self.traffic_, start, step, self.stations_, seed)

    def _state(self):
        tensors, meta = stations_state(self.stations_)
        tensors |= compose_state({"policy": self.policy_.state_dict(), "start": {"p": self.start_}})
        if self.traffic_ is not None:
            tensors |= self.traffic_.state()
        return tensors, meta | {"time": self.time_, "n_steps": self.n_steps_, "history": self.history_}

    def _restore(self, tensors, meta) -> None:
        self.stations_ = restore_stations(tensors, meta)
        self.time_, self.n_steps_, self.history_ = meta["time"], meta["n_steps"], meta.get("history", {})
        parts = split_state(tensors, ("policy", "start"))
        policy = PolicyNet(self._encoder_args(len(self.stations_)), self.config.hidden, len(self.stations_))
        policy.load_state_dict(parts["policy"])
        self.policy_ = policy.eval().requires_grad_(False)
        self.start_ = parts["start"]["p"].numpy()
        self.traffic_ = LocationHourTraffic.from_state(tensors, len(self.stations_), self.config.traffic)
