r"""PateGail's networks and the pieces of its training that are pure tensor maths (Wang et al., *PateGail: A
Privacy-Preserving Mobility Trajectory Generator with Imitation Learning*, AAAI 2023).

**State and action.** A user at step ``t`` is in state ``s_t = (l_t, h_t, d_t, n_t)``: the station, the
hour of the week, the steps already spent at ``l_t`` (``d_t``, capped) and the number of distinct stations
visited so far (``n_t``, capped) — the released code's stay time and visited-location count. The action is
the next station ``a_t = l_{t+1}`` (one of ``N``).

**Networks.** The policy ``pi(a | s)`` and the value ``V(s)`` embed the four parts of the state, concatenate
them and map them through an MLP to ``N`` logits (policy) or one number (value). The discriminator
``D(s, a)`` embeds the state and the action and maps them through a 3-hidden-layer MLP to the probability
that the pair was *generated* (labels: generated 1, real 0, as the released code).

**Reward (PATE-style aggregation).** ``k`` discriminators, each trained on its own disjoint partition of the
training users, score a pair; the policy only ever sees their noisy aggregate (:func:`aggregate_votes`)::

    D_agg(s, a) = mean_j D_j(s, a) + Lap(0, b) - beta * sqrt(| Var_j D_j(s, a) + Lap(0, 2b) |)
    r(s, a)     = -log clip(D_agg, eps, 1 - eps)

``b`` is the noise scale, ``beta`` the weight of the discriminators' disagreement (the code's utility
term). ``mode="vote"`` aggregates PATE's hard votes instead: ``D_agg = (#{j : D_j > 1/2} + Lap(0, b)) / k``.
With ``b = 0`` and ``beta = 0`` the aggregate is the plain mean (or the share of votes, whose side of 1/2
is the majority's); with ``k = 1`` PateGail is plain GAIL.

**PPO** (Schulman et al. 2017) with generalised advantage estimation (Schulman et al. 2016):
:func:`gae` and :func:`ppo_clip_loss`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = [
    "Discriminator",
    "PolicyNet",
    "StateEncoder",
    "aggregate_votes",
    "gae",
    "gail_reward",
    "ppo_clip_loss",
]


class StateEncoder(nn.Module):
    """Embeddings of ``(l, h, d, n)`` (and optionally an action station), concatenated."""

    def __init__(
        self, n_stations: int, n_hours: int, max_stay: int, max_visited: int, dim: int, time_dim: int
    ) -> None:
        super().__init__()
        self.location = nn.Embedding(n_stations, dim)
        self.hour = nn.Embedding(n_hours, time_dim)
        self.stay = nn.Embedding(max_stay + 1, time_dim)
        self.visited = nn.Embedding(max_visited + 1, time_dim)
        self.width = dim + 3 * time_dim

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """``state`` long ``[..., 4]`` (station, hour, stay, visited) -> ``[..., width]``."""
        return torch.cat(
            [
                self.location(state[..., 0]),
                self.hour(state[..., 1]),
                self.stay(state[..., 2]),
                self.visited(state[..., 3]),
            ],
            dim=-1,
        )


def _mlp(width: int, hidden: int, out: int, layers: int) -> nn.Sequential:
    parts: list[nn.Module] = []
    for _ in range(layers):
        parts += [nn.Linear(width, hidden), nn.ReLU()]
        width = hidden
    return nn.Sequential(*parts, nn.Linear(width, out))


class PolicyNet(nn.Module):
    """``pi(a | s)`` (``out = N`` logits) or ``V(s)`` (``out = 1``)."""

    def __init__(self, encoder_args: dict, hidden: int, out: int) -> None:
        super().__init__()
        self.encoder = StateEncoder(**encoder_args)
        self.head = _mlp(self.encoder.width, hidden, out, layers=2)

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(state))


class Discriminator(nn.Module):
    """``D(s, a)``: the logit of the probability that ``(s, a)`` was generated."""

    def __init__(self, encoder_args: dict, hidden: int) -> None:
        super().__init__()
        self.encoder = StateEncoder(**encoder_args)
        self.action = nn.Embedding(encoder_args["n_stations"], encoder_args["dim"])
        self.head = _mlp(self.encoder.width + encoder_args["dim"], hidden, 1, layers=3)

    def forward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.encoder(state), self.action(action)], dim=-1)
        return self.head(x).squeeze(-1)


def aggregate_votes(
    probs: torch.Tensor,
    *,
    noise_scale: float,
    disagreement_weight: float = 0.0,
    mode: Literal["mean", "vote"] = "mean",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The noisy aggregate of ``k`` discriminators' ``probs [k, M]`` (module docstring) -> ``[M]``.

    ``noise_scale`` ``b`` >= 0: Laplace noise on each aggregate (on the vote count for ``"vote"``); the
    disagreement term (``"mean"`` only) subtracts ``beta sqrt(|Var_j + Lap(0, 2b)|)``."""
    k, m = probs.shape

    def laplace(scale: float) -> torch.Tensor:
        if scale <= 0:
            return torch.zeros(m, dtype=probs.dtype, device=probs.device)
        u = torch.rand(m, generator=generator, dtype=probs.dtype).to(probs.device) - 0.5
        return -scale * torch.sign(u) * torch.log1p(-2 * u.abs())

    if mode == "vote":
        return ((probs > 0.5).sum(0).to(probs.dtype) + laplace(noise_scale)) / k
    aggregate = probs.mean(0) + laplace(noise_scale)
    if disagreement_weight > 0:
        spread = probs.var(0, unbiased=False) + laplace(2 * noise_scale)
        aggregate = aggregate - disagreement_weight * spread.abs().sqrt()
    return aggregate


def gail_reward(aggregate: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``r = -log clip(D_agg, eps, 1 - eps)``: high where the discriminators take a pair for real."""
    return -torch.log(aggregate.clamp(eps, 1 - eps))


def gae(
    rewards: torch.Tensor, values: torch.Tensor, *, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns of episodes that end after their last step.

    ``rewards``, ``values`` ``[B, T]``; ``V(s_T) = 0`` (the episode is over)::

        delta_t = r_t + gamma V(s_{t+1}) - V(s_t),    A_t = delta_t + gamma lam A_{t+1},    R_t = A_t + V(s_t)
    """
    b, t = rewards.shape
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(b, dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros(b, dtype=rewards.dtype, device=rewards.device)
    for step in range(t - 1, -1, -1):
        delta = rewards[:, step] + gamma * next_value - values[:, step]
        running = delta + gamma * lam * running
        advantages[:, step] = running
        next_value = values[:, step]
    return advantages, advantages + values


def ppo_clip_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO's clipped surrogate, to minimise: ``-mean(min(rho A, clip(rho, 1 - eps, 1 + eps) A))`` with
    ``rho = exp(log pi - log pi_old)``."""
    ratio = torch.exp(log_prob - old_log_prob)
    clipped = torch.clamp(ratio, 1 - clip, 1 + clip)
    return -torch.min(ratio * advantages, clipped * advantages).mean()
