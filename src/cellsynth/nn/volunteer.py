r"""VOLUNTEER's networks (Long et al., *Practical Synthetic Human Trajectories Generation Based on
Variational Point Processes*, KDD 2023): a user VAE and a trajectory VAE over stay events.

**Events.** A user's sequence is a list of stays ``e_i = (tau_i, l_i, d_i)``: the travel time ``tau_i >= 0``
(steps in transit before arriving), the station ``l_i`` and the dwell time ``d_i >= 1`` (steps there).
Event ``i`` begins at ``b_i`` (the end of stay ``i - 1``; ``b_0 = 0``), arrives at ``a_i = b_i + tau_i``.

**User VAE.** A user's attributes ``x_u = (s_u, c_u)``: the share of its steps at each station ``s_u [N]``
and ``c_u = log`` of its number of stays. ``q(u | x_u) = N(mu, sigma^2)`` (an MLP), ``p(u) = N(0, I)``,
``p(x_u | u)``: ``softmax(g(u))`` for ``s_u`` (soft cross-entropy) and ``N(c_u; m(u), 1)``. New users are
``u ~ N(0, I)``: the population's attribute distribution.

**Trajectory VAE** (a variational point process): an LSTM encoder reads the events
``[emb l_i, log1p tau_i, log1p d_i, emb hour(b_i), u]`` and gives ``q(z_i | e_<=i, u) = N(mu_i, sigma_i^2)``,
prior ``N(0, I)`` per event. An LSTM decoder reads ``[z_i, u, emb hour(b_i)]`` into ``h_i``, and three heads
decode the event, travel separate from dwell::

    P(l_i = j)  = softmax_j( f(h_i) + log softmax g(u) )                     (the user's places)
    P(tau_i)    = (1 - q_i)^tau_i q_i,        q_i = sigmoid(t(h_i, l_{i-1}, l_i, log1p dist(l_{i-1}, l_i)))
    P(d_i)      = (1 - p_i)^(d_i - 1) p_i,    p_i = sigmoid(w(h_i, l_i, hour(a_i)))

Travel depends on the stations it joins and their distance; dwell on the station and the hour of
arrival. A last stay cut off by the end of the data is censored: its term is ``P(D >= d_i) = (1 - p_i)^(d_i
- 1)``. The loss is the negative ELBO per event (:func:`volunteer_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["VolunteerNet", "geometric_log_prob", "sample_geometric", "volunteer_loss"]


def geometric_log_prob(logit: torch.Tensor, k: torch.Tensor, *, shift: int, censored=None) -> torch.Tensor:
    """``log P(K = k)`` of a geometric law on ``shift, shift + 1, ...`` with success probability
    ``sigmoid(logit)``: ``(k - shift) log(1 - p) + log p``; where ``censored``, ``log P(K >= k)``."""
    failures = (k - shift).to(logit.dtype)
    log_p = failures * F.logsigmoid(-logit) + F.logsigmoid(logit)
    if censored is not None:
        log_p = torch.where(censored, failures * F.logsigmoid(-logit), log_p)
    return log_p


def sample_geometric(
    logit: torch.Tensor, *, shift: int, generator: torch.Generator | None = None, cap: int | None = None
) -> torch.Tensor:
    """Draws of the geometric law of :func:`geometric_log_prob`: ``shift + floor(log U / log(1 - p))``."""
    u = torch.rand(logit.shape, generator=generator, dtype=torch.float64).to(logit.device)
    log_fail = F.logsigmoid(-logit.double())
    draws = torch.floor(torch.log1p(-u) / log_fail.clamp(max=-1e-12))
    if cap is not None:
        draws = draws.clamp(max=cap)
    return (draws + shift).long()


def _mlp(width: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width, hidden), nn.SELU(), nn.Linear(hidden, hidden), nn.SELU(), nn.Linear(hidden, out)
    )


class VolunteerNet(nn.Module):
    """User VAE + trajectory VAE (module docstring)."""

    def __init__(
        self,
        n_stations: int,
        n_hours: int,
        *,
        location_dim: int,
        time_dim: int,
        hidden: int,
        latent_dim: int,
        user_latent_dim: int,
    ) -> None:
        super().__init__()
        self.n_stations, self.latent_dim, self.user_latent_dim = n_stations, latent_dim, user_latent_dim
        self.location = nn.Embedding(n_stations, location_dim)
        self.hour = nn.Embedding(n_hours, time_dim)
        # user VAE
        self.user_encoder = _mlp(n_stations + 1, hidden, 2 * user_latent_dim)
        self.user_places = _mlp(user_latent_dim, hidden, n_stations)
        self.user_count = _mlp(user_latent_dim, hidden, 1)
        # trajectory VAE
        self.encoder = nn.LSTM(location_dim + 2 + time_dim + user_latent_dim, hidden, batch_first=True)
        self.posterior = _mlp(hidden, hidden, 2 * latent_dim)
        self.decoder = nn.LSTM(latent_dim + user_latent_dim + time_dim, hidden, batch_first=True)
        self.location_head = _mlp(hidden, hidden, n_stations)
        self.travel_head = _mlp(hidden + 2 * location_dim + 1, hidden, 1)
        self.dwell_head = _mlp(hidden + location_dim + time_dim, hidden, 1)

    # -- user VAE -------------------------------------------------------------------------------------
    def encode_user(self, share: torch.Tensor, log_count: torch.Tensor):
        mu, logvar = self.user_encoder(torch.cat([share, log_count[:, None]], -1)).chunk(2, -1)
        return mu, logvar

    def user_log_places(self, u: torch.Tensor) -> torch.Tensor:
        """``log softmax g(u)`` ``[B, N]``: the decoded user's share of time per station."""
        return torch.log_softmax(self.user_places(u), -1)

    # -- trajectory VAE heads -----------------------------------------------------------------------------
    def decoder_input(self, z: torch.Tensor, u: torch.Tensor, begin_hour: torch.Tensor) -> torch.Tensor:
        """``[z_i, u, emb hour(b_i)]``; ``z`` ``[B, E, D]``, ``u`` ``[B, Du]``, hours ``[B, E]``."""
        return torch.cat([z, u[:, None].expand(-1, z.shape[1], -1), self.hour(begin_hour)], -1)

    def location_logits(self, h: torch.Tensor, log_places: torch.Tensor) -> torch.Tensor:
        return (
            self.location_head(h) + log_places[:, None]
            if h.dim() == 3
            else self.location_head(h) + log_places
        )

    def travel_logit(self, h, previous, location, distance_km) -> torch.Tensor:
        """``logit q_i``: depends on the decoder state, both stations and their distance (not on dwell)."""
        x = torch.cat(
            [h, self.location(previous), self.location(location), torch.log1p(distance_km)[..., None]], -1
        )
        return self.travel_head(x).squeeze(-1)

    def dwell_logit(self, h, location, arrival_hour) -> torch.Tensor:
        """``logit p_i``: depends on the decoder state, the station and the hour of arrival (not on travel)."""
        x = torch.cat([h, self.location(location), self.hour(arrival_hour)], -1)
        return self.dwell_head(x).squeeze(-1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Per-event and per-user terms of the negative ELBO of a batch of users (:func:`volunteer_loss`).

        ``batch``: ``share [B, N]``, ``log_count [B]``, and per event ``[B, E]``: ``location``, ``previous``,
        ``travel``, ``dwell``, ``begin_hour``, ``arrival_hour``, ``distance``, ``censored``, ``mask``."""
        mu_u, logvar_u = self.encode_user(batch["share"], batch["log_count"])
        u = mu_u + torch.exp(0.5 * logvar_u) * torch.randn_like(mu_u)
        log_places = self.user_log_places(u)
        events = torch.cat(
            [
                self.location(batch["location"]),
                torch.log1p(batch["travel"].float())[..., None],
                torch.log1p(batch["dwell"].float())[..., None],
                self.hour(batch["begin_hour"]),
                u[:, None].expand(-1, batch["location"].shape[1], -1),
            ],
            -1,
        )
        encoded, _ = self.encoder(events)
        mu, logvar = self.posterior(encoded).chunk(2, -1)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        h, _ = self.decoder(self.decoder_input(z, u, batch["begin_hour"]))
        location_nll = F.cross_entropy(
            self.location_logits(h, log_places).transpose(1, 2), batch["location"], reduction="none"
        )
        travel_nll = -geometric_log_prob(
            self.travel_logit(h, batch["previous"], batch["location"], batch["distance"]),
            batch["travel"],
            shift=0,
        )
        dwell_nll = -geometric_log_prob(
            self.dwell_logit(h, batch["location"], batch["arrival_hour"]),
            batch["dwell"],
            shift=1,
            censored=batch["censored"],
        )
        return {
            "location": location_nll,
            "travel": travel_nll,
            "dwell": dwell_nll,
            "kl_event": _kl(mu, logvar),
            "user_places": -(batch["share"] * log_places).sum(-1),
            "user_count": 0.5 * (self.user_count(u).squeeze(-1) - batch["log_count"]) ** 2,
            "kl_user": _kl(mu_u, logvar_u),
        }


def _kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, sigma^2) || N(0, I))`` summed over the last dimension."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(-1)


def volunteer_loss(terms: dict[str, torch.Tensor], mask: torch.Tensor, kl_weight: float = 1.0) -> dict:
    """The negative ELBO per event of a batch: event terms summed over real events (``mask``), user terms
    summed over users, the total divided by the number of events. Returns every term (per event) and
    ``"loss"``."""
    n_events = mask.sum().clamp(min=1)
    out = {
        name: (terms[name] * mask).sum() / n_events for name in ("location", "travel", "dwell", "kl_event")
    }
    out |= {name: terms[name].sum() / n_events for name in ("user_places", "user_count", "kl_user")}
    reconstruction = out["location"] + out["travel"] + out["dwell"] + out["user_places"] + out["user_count"]
    out["loss"] = reconstruction + kl_weight * (out["kl_event"] + out["kl_user"])
    return out
