"""MSH-GAN's networks: shapes, the switch between modes, the straight-through gradient, the written-out
attention against torch's, and the discriminator's second derivative (for the gradient penalty)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cellsynth.nn.adaptive import step_features
from cellsynth.nn.baselines import gradient_penalty
from cellsynth.nn.msh_gan import MSHDiscriminator, MSHGenerator, SelfAttention, straight_through_gumbel

TAU = step_features(np.arange(24), 336)


def _generator():
    torch.manual_seed(0)
    return MSHGenerator(TAU, noise_dim=2, group_dim=3, modes=3, mode_dim=4, hidden=4, heads=2)


def test_shapes_and_seeded_noise():
    gen = _generator()
    group, steps, uniform = gen.noise(5, generator=torch.Generator().manual_seed(1))
    assert group.shape == (5, 3) and steps.shape == (5, 24, 2) and uniform.shape == (5, 24, 3)
    noise = gen.noise(5, generator=torch.Generator().manual_seed(1))
    x = gen(noise)
    assert x.shape == (5, 1, 24)
    assert torch.equal(x, gen(gen.noise(5, generator=torch.Generator().manual_seed(1))))
    assert MSHDiscriminator(TAU, hidden=4, heads=2)(x).shape == (5,)


def test_every_step_is_in_exactly_one_mode():
    gen = _generator()
    modes = gen.modes(gen.noise(50, generator=torch.Generator().manual_seed(0)))
    assert modes.shape == (50, 24, 3)
    assert set(modes.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(modes.sum(-1), torch.ones(50, 24))
    assert len(modes.argmax(-1).unique()) > 1  # the users switch between modes


def test_straight_through_gumbel_is_hard_forward_and_soft_backward():
    logits = torch.tensor([[2.0, 0.0, -1.0]], requires_grad=True)
    uniform = torch.full((1, 3), 0.5)  # equal Gumbel noise: the argmax of the logits
    out = straight_through_gumbel(logits, uniform, 1.0)
    assert torch.equal(out.detach(), torch.tensor([[1.0, 0.0, 0.0]]))
    (out * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    soft = torch.softmax(logits.detach(), -1)[0]
    weights = torch.tensor([1.0, 2.0, 3.0])
    expected = soft * (weights - (soft * weights).sum())  # d/da of sum_k w_k softmax(a)_k
    torch.testing.assert_close(logits.grad[0], expected)


def test_self_attention_equals_torch_multihead_attention():
    torch.manual_seed(0)
    mine, theirs = SelfAttention(8, 2), nn.MultiheadAttention(8, 2, batch_first=True)
    with torch.no_grad():
        theirs.in_proj_weight.copy_(mine.qkv.weight)
        theirs.in_proj_bias.copy_(mine.qkv.bias)
        theirs.out_proj.weight.copy_(mine.out.weight)
        theirs.out_proj.bias.copy_(mine.out.bias)
    x = torch.randn(3, 7, 8)
    torch.testing.assert_close(mine(x), theirs(x, x, x, need_weights=False)[0])


def test_the_discriminator_can_be_differentiated_twice():
    critic = MSHDiscriminator(TAU, hidden=4, heads=2)
    real, fake = torch.randn(4, 1, 24), torch.randn(4, 1, 24)
    penalty = gradient_penalty(critic, real, fake)
    penalty.backward()
    # every weight but the two biases that only shift the score (the gradient in x does not depend on them)
    grads = {name: p.grad for name, p in critic.named_parameters()}
    assert {name for name, g in grads.items() if g is None} == {"body.norm.bias", "output.bias"}
    assert torch.isfinite(penalty)
    assert all(torch.isfinite(g).all() for g in grads.values() if g is not None)
    assert grads["body.rnn.weight_hh_l0"].abs().sum() > 0  # through the recurrent layer, twice
