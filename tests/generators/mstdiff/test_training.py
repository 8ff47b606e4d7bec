"""MSTDiff's training (cellsynth.generators.mstdiff.training): the three loss terms and their weights, and
the training-time extensions (self-conditioning, own-chain states)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cellsynth.diffusion.discrete import GraphDiffusion
from cellsynth.errors import ConfigError
from cellsynth.generators import get
from cellsynth.generators.mstdiff.components import build_net, gaussian_diffusion
from cellsynth.generators.mstdiff.sampler import discrete_step
from cellsynth.generators.mstdiff.training import DenoiserModule
from cellsynth.graphs.transitions import geographic_knn_graph
from tests.generators.mstdiff.test_generator import SMOKE, stations, users


def test_loss_has_mse_kl_and_ce_terms_weighted_by_the_lambdas():
    data = users()
    gen = get("mstdiff", SMOKE)
    torch.manual_seed(0)
    from cellsynth.transforms.wavelets import TrafficWavelets

    coeffs = torch.from_numpy(TrafficWavelets().fit(data.traffic).transform(data.traffic)).float()
    loc = torch.from_numpy(np.array(data.locations))
    graph = GraphDiffusion(geographic_knn_graph(stations().lat, stations().lon, 3).rate, steps=3)
    net = build_net(gen.config, 48, 6, True, None, None)
    module = DenoiserModule(net, gaussian_diffusion(gen.config), graph, gen.config)
    torch.manual_seed(1)
    parts = module.losses(coeffs, loc)
    assert set(parts) == {"mse", "kl", "ce"} and all(v > 0 for v in parts.values())
    torch.manual_seed(1)
    total = module.training_step((coeffs, loc), 0)
    cfg = gen.config
    expected = cfg.lambda_mse * parts["mse"] + cfg.lambda_kl * parts["kl"] + cfg.lambda_ce * parts["ce"]
    assert cfg.lambda_ce > 0 and torch.isclose(total, expected)
    total.backward()
    assert net.logits_out[1].weight.grad.abs().sum() > 0


def test_self_conditioning_trains_half_the_batches_on_a_first_gradient_free_pass():
    data = users()
    gen = get("mstdiff", SMOKE | {"extensions": {"self_condition": True}})
    coeffs = torch.zeros(12, 48)
    loc = torch.from_numpy(np.array(data.locations))
    graph = GraphDiffusion(geographic_knn_graph(stations().lat, stations().lon, 3).rate, steps=3)
    net = build_net(gen.config, 48, 6, True, None, None)
    module = DenoiserModule(net, gaussian_diffusion(gen.config), graph, gen.config)
    calls = []
    net.register_forward_hook(
        lambda mod, args, kwargs, out: calls.append(
            (kwargs.get("l0_probs"), torch.is_grad_enabled(), out[1])
        ),
        with_kwargs=True,
    )
    torch.manual_seed(0)
    n_batches = 200
    for _ in range(n_batches):
        module.losses(coeffs, loc)
    conditioned = 0
    for i in range(len(calls) - 1):
        probs, grad, _ = calls[i + 1]
        if probs is not None:  # the call before is its gradient-free first pass, on the same l_s
            first_probs, first_grad, first_logits = calls[i]
            assert first_probs is None and not first_grad and grad
            torch.testing.assert_close(probs, first_logits.softmax(-1))
            conditioned += 1
    assert len(calls) == n_batches + conditioned
    assert 0.4 < conditioned / n_batches < 0.6


class _Certain(torch.nn.Module):
    """A denoiser certain of the true trajectory ``l0`` (the first ``B`` rows): records each call's inputs."""

    traffic, trajectory, self_condition = True, True, False

    def __init__(self, l0: torch.Tensor, n: int) -> None:
        super().__init__()
        self.l0, self.n, self.calls = l0, n, []

    def forward(self, x_t, l_s, t, s, l0_probs=None, anchors=None):
        self.calls.append((x_t, l_s, t, s))
        logits = torch.where(torch.nn.functional.one_hot(self.l0[: len(l_s)], self.n) > 0, 0.0, -torch.inf)
        return torch.zeros_like(x_t), logits


def test_own_chain_jumps_from_a_noisier_forward_state_to_the_training_step():
    """own_chain: l_{s+j} ~ q(. | l0) at s + j in s+1..min(s + span, S), traffic at a Gaussian step whose
    discrete step is s + j, then one jump to s. With a certain denoiser the jump is the true posterior, so
    l_s must follow q(l_s | l0) as the forward draw does; sequences at S keep the forward draw."""
    data = users()
    n, steps = 6, 6
    gen = get(
        "mstdiff",
        SMOKE
        | {
            "discrete_steps": steps,
            "gaussian_steps": 12,
            "extensions": {"own_chain": 1.0, "own_chain_span": 3},
        },
    )
    loc = torch.from_numpy(np.array(data.locations))
    graph = GraphDiffusion(geographic_knn_graph(stations().lat, stations().lon, 3).rate, steps=steps)
    net = _Certain(loc, n)
    module = DenoiserModule(net, gaussian_diffusion(gen.config), graph, gen.config)
    coeffs = torch.zeros(12, 48)
    s = torch.tensor([2] * 11 + [steps])
    torch.manual_seed(0)
    forward = graph.q_sample(loc, s)
    same = []
    for _ in range(300):
        out = module.own_chain_state(coeffs, loc, s, forward)
        assert out.shape == loc.shape and out.dtype == torch.long
        assert torch.equal(out[-1], forward[-1])
        _, _, t_from, s_from = net.calls[-1]
        assert ((s_from[:-1] >= 3) & (s_from[:-1] <= 5)).all() and s_from[-1] == steps
        assert torch.equal(discrete_step(t_from, steps, 12), s_from)
        same.append((out[:-1] == loc[:-1]).double().mean())
    expected = graph.q_probs(loc[:-1], 2).gather(-1, loc[:-1, :, None]).mean()
    assert {int(v) for c in net.calls for v in c[3][:-1] - 2} == {1, 2, 3}
    assert abs(float(torch.stack(same).mean() - expected)) < 0.01, (
        float(torch.stack(same).mean()),
        float(expected),
    )


def test_own_chain_trains_on_the_networks_jump_in_the_given_share_of_batches():
    data = users()
    gen = get("mstdiff", SMOKE | {"extensions": {"own_chain": 0.5}})
    loc = torch.from_numpy(np.array(data.locations))
    graph = GraphDiffusion(geographic_knn_graph(stations().lat, stations().lon, 3).rate, steps=3)
    net = build_net(gen.config, 48, 6, True, None, None)
    module = DenoiserModule(net, gaussian_diffusion(gen.config), graph, gen.config)
    grads = []
    net.register_forward_hook(lambda mod, args, out: grads.append(torch.is_grad_enabled()))
    torch.manual_seed(0)
    for _ in range(200):
        module.losses(torch.zeros(12, 48), loc)
    assert grads.count(True) == 200 and 0.4 < grads.count(False) / 200 < 0.6
    with pytest.raises(ConfigError, match="own_chain"):
        get("mstdiff", SMOKE | {"extensions": {"own_chain": 1.5}})
