r"""Training of MSTDiff's co-denoiser (stage ``"denoiser"``) on ``(wavelet coefficients, locations[, anchors])``:
the paper's loss, with an EMA of the weights (what generates), and the training-time extensions.

.. math::  L = \lambda_1 \|\varepsilon - \varepsilon_\theta\|^2
           + \lambda_2\, \mathrm{KL}\big(q(l_{s-1} \mid l_s, l_0) \,\|\, p_\theta(l_{s-1} \mid l_s)\big)
           + \lambda_3\, \mathrm{CE}\big(l_0, \mathrm{logits}\big)

(the authors' code drops the CE term; we keep it), with ``p_theta(l_{s-1} | l_s)`` the posterior marginalised
exactly over the predicted ``l_0`` (:meth:`GraphDiffusion.reverse_probs`), ``t ~ U{0..T_g-1}`` and ``s = s(t)``
(:func:`~cellsynth.generators.mstdiff.sampler.discrete_step`). The EMA is warmed up as
``decay_n = min(decay, (1 + n) / (10 + n))`` at optimiser step ``n``.

Extensions (config ``extensions``; not in the paper), each changing only how ``l_s`` or the network's input
is drawn, never the loss:

- ``self_condition`` (a network with ``self_condition``): half the batches first run a gradient-free pass on
  the same ``l_s`` and give its ``p_theta(l_0 | ...)`` to the second (docs/discrete-diffusion.md §8);
- ``own_chain = p``: a share ``p`` of the batches see ``l_s`` drawn by one jump of the current network from
  a noisier forward state (:meth:`DenoiserModule.own_chain_state`, docs/discrete-diffusion.md §10).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F

from cellsynth.diffusion.discrete import GraphDiffusion
from cellsynth.diffusion.gaussian import GaussianDiffusion
from cellsynth.generators.mstdiff.config import MSTDiffConfig
from cellsynth.generators.mstdiff.sampler import discrete_step, gaussian_steps_of
from cellsynth.nn.mstdiff import MSTDiffNet
from cellsynth.training import EMA, TrainingModule

__all__ = ["DenoiserModule"]


class DenoiserModule(TrainingModule):
    """Training of the co-denoiser on (coefficients, locations[, anchors]) with the three-term loss; EMA
    weights in ``ema``; ``history`` holds each epoch's mean of every loss term."""

    def __init__(
        self, net: MSTDiffNet, gauss: GaussianDiffusion, graph: GraphDiffusion | None, cfg: MSTDiffConfig
    ) -> None:
        super().__init__()
        self.net = net
        self.ema = copy.deepcopy(net).requires_grad_(False)
        self.gauss, self.graph, self.cfg = gauss, graph, cfg
        self.history: list[dict[str, float]] = []
        self._epoch: list[dict[str, float]] = []

    def losses(
        self, coeffs: torch.Tensor, loc: torch.Tensor, anchors: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """The unweighted terms ``{"mse", "kl", "ce"}`` (those of the streams the network has) of one batch."""
        cfg, net = self.cfg, self.net
        own_chain = cfg.extensions.own_chain
        batch = loc.shape[0]
        t = self.gauss.sample_timesteps(batch, device=loc.device)
        s = discrete_step(t, cfg.discrete_steps, cfg.gaussian_steps)
        x_t = l_s = noise = None
        if net.traffic:
            noise = torch.randn_like(coeffs)
            x_t = self.gauss.add_noise(coeffs, noise, t)
        if net.trajectory:
            l_s = self.graph.q_sample(loc, s)
            if own_chain > 0 and torch.rand(()) < own_chain:
                l_s = self.own_chain_state(coeffs, loc, s, l_s, anchors)
        t_in, s_in = (t if net.traffic else None), (s if net.trajectory else None)
        l0_probs = None
        if net.self_condition and torch.rand(()) < 0.5:  # half the batches: condition on a first pass
            with torch.no_grad():
                l0_probs = net(x_t, l_s, t_in, s_in, anchors=anchors)[1].softmax(-1)
        eps, logits = net(x_t, l_s, t_in, s_in, l0_probs=l0_probs, anchors=anchors)
        out = {}
        if net.traffic:
            out["mse"] = F.mse_loss(eps, noise)
        if net.trajectory:
            out["kl"] = self.graph.kl(loc, l_s, logits, s)
            out["ce"] = self.graph.ce(loc, logits)
        return out

    @torch.no_grad()
    def own_chain_state(
        self,
        coeffs: torch.Tensor,
        loc: torch.Tensor,
        s: torch.Tensor,
        l_s: torch.Tensor,
        anchors: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""``l_s`` as the network's own chain would bring it (``extensions.own_chain``): ``l_{s+j} ~ q(. | l_0)``
        with ``j ~ U{1..own_chain_span}`` (capped at ``S``), the network's prediction there (traffic at the
        matching Gaussian step, the last whose :func:`discrete_step` is ``s + j``: :func:`gaussian_steps_of`),
        then ``l_s ~ sum_{l_0} p_theta(l_0 | l_{s+j}) q(l_s | l_{s+j}, l_0)`` (:meth:`GraphDiffusion.sample_step`
        with ``s_to``). Sequences already at ``S`` keep the forward draw ``l_s``.

        The forward process never puts a plausible-but-wrong station where the denoiser was unsure; the
        reverse chain does, and later steps take such a draw for a real visit (docs/discrete-diffusion.md
        §10). The loss stays the paper's: ``q(l_{s-1} | l_s, l_0)`` is defined for every ``l_s``.
        """
        cfg, net, graph = self.cfg, self.net, self.graph
        jump = torch.randint(1, cfg.extensions.own_chain_span + 1, s.shape, device=s.device)
        s_from = torch.clamp(s + jump, max=graph.steps)
        moved = s_from > s
        x_from = t_from = None
        if net.traffic:
            t_from = gaussian_steps_of(s_from, cfg.discrete_steps, cfg.gaussian_steps)[1]
            x_from = self.gauss.add_noise(coeffs, torch.randn_like(coeffs), t_from)
        l_from = graph.q_sample(loc, s_from)
        logits = net(x_from, l_from, t_from, s_from, anchors=anchors)[1]
        s_to = torch.where(moved, s, s_from - 1)  # rows not moved are discarded below
        drawn = graph.sample_step(l_from, logits, s_from, s_to=s_to)
        return torch.where(moved[:, None], drawn, l_s)

    def training_step(self, batch, batch_idx):
        parts = self.losses(*batch)
        weights = {"mse": self.cfg.lambda_mse, "kl": self.cfg.lambda_kl, "ce": self.cfg.lambda_ce}
        loss = sum(weights[k] * v for k, v in parts.items())
        self._epoch.append({k: float(v.detach()) for k, v in parts.items()})
        return loss

    def configure_callbacks(self):
        return [EMA(self.cfg.ema_decay)]  # the average (self.ema) is what generates

    def on_train_epoch_end(self) -> None:
        if self._epoch:
            self.history.append({k: float(np.mean([e[k] for e in self._epoch])) for k in self._epoch[0]})
        self._epoch = []

    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
