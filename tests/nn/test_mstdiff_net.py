"""The multi-scale co-denoiser: shapes per mode, learned CLS tokens, cross-attention both ways, VQ gate,
and trajectory logits in time order (the authors' came out in wavelet-band order)."""

from __future__ import annotations

import pytest
import torch

from cellsynth.errors import ConfigError, DataError
from cellsynth.nn.mstdiff import MSTDiffNet
from cellsynth.nn.vqvae import BandVQVAE

T, N = 16, 5


def net(**kw) -> MSTDiffNet:
    torch.manual_seed(0)
    args = {
        "n_steps": T,
        "n_stations": N,
        "d_model": 16,
        "heads": 2,
        "layers_per_scale": 1,
        "full_res_layers": 1,
    }
    return MSTDiffNet(**(args | kw))


def inputs(b: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, T, generator=g),
        torch.randint(0, N, (b, T), generator=g),
        torch.randint(0, 100, (b,), generator=g),
        torch.randint(1, 10, (b,), generator=g),
    )


def test_shapes_in_each_mode():
    x, loc, t, s = inputs()
    eps, logits = net()(x, loc, t, s)
    assert eps.shape == (3, T) and logits.shape == (3, T, N)
    eps, logits = net(n_stations=None)(x, None, t, None)
    assert eps.shape == (3, T) and logits is None
    eps, logits = net(traffic=False)(None, loc, None, s)
    assert eps is None and logits.shape == (3, T, N)
    with pytest.raises(ConfigError):
        net(traffic=False, n_stations=None)
    with pytest.raises(DataError, match="divisible"):
        net(n_steps=12)


def test_cls_tokens_are_learned_parameters_that_receive_gradients():
    m = net()
    names = {name for name, _ in m.named_parameters()}
    assert {"cls_traffic", "cls_traj"} <= names
    assert isinstance(m.cls_traffic, torch.nn.Parameter) and m.cls_traffic.requires_grad
    eps, logits = m(*inputs())
    (eps.pow(2).sum() + logits.logsumexp(-1).sum()).backward()
    for cls in (m.cls_traffic, m.cls_traj):
        assert cls.grad is not None and (cls.grad.abs().sum(1) > 0).all()  # every scale's CLS is used
    before = m.cls_traj.detach().clone()
    torch.optim.SGD(m.parameters(), lr=0.1).step()
    assert not torch.equal(before, m.cls_traj)


def test_cross_attention_both_ways_and_step_embeddings():
    m = net().eval()
    x, loc, t, s = inputs()
    eps, logits = m(x, loc, t, s)
    eps2, _ = m(x, (loc + 1) % N, t, s)
    assert not torch.allclose(eps, eps2)  # traffic sees the trajectory
    _, logits2 = m(x + 1.0, loc, t, s)
    assert not torch.allclose(logits, logits2)  # trajectory sees the traffic
    eps3, _ = m(x, loc, t + 1, s)
    _, logits3 = m(x, loc, t, s + 1)
    assert not torch.allclose(eps, eps3) and not torch.allclose(logits, logits3)


def test_vq_gate_at_the_coarsest_scale():
    vq = torch.nn.ModuleList(BandVQVAE(n_codes=8, code_dim=4, hidden=8) for _ in range(4))
    m = net(vqvaes=vq, vq_scales=1)
    assert set(m.vq_gate) == {"0", "1"}  # cA3 and cD3 only
    eps, _ = m(*inputs())
    eps.pow(2).sum().backward()
    assert m.vq_gate["0"].weight.grad.abs().sum() > 0 and m.vq_proj["1"].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in vq.parameters())  # frozen
    assert all(not p.requires_grad for p in vq.parameters())
    all_scales = net(
        vqvaes=torch.nn.ModuleList(BandVQVAE(n_codes=8, code_dim=4, hidden=8) for _ in range(4)), vq_scales=3
    )
    assert set(all_scales.vq_gate) == {"0", "1", "2", "3"}


def test_station_embeddings_initialised_from_given_vectors():
    init = torch.randn(N, 32)
    m = net(station_init=init)
    expected = init / init.norm(dim=1, keepdim=True)
    assert torch.allclose(m.stations.weight, expected)


def test_logits_at_step_k_are_about_the_location_at_step_k():
    """Train to copy l_s (nothing else to go on) and check that logits[:, k] predicts l_s[:, k] for every k.
    Band-ordered logits (the authors' code) would fail this: position k would predict some other step."""
    m = net(n_stations=N, traffic=False, dropout=0.0)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(1)
    s = torch.ones(32, dtype=torch.long)
    for _ in range(60):
        loc = torch.randint(0, N, (32, T), generator=g)
        _, logits = m(None, loc, None, s)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, N), loc.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    loc = torch.randint(0, N, (64, T), generator=g)
    with torch.no_grad():
        _, logits = m(None, loc, None, torch.ones(64, dtype=torch.long))
        assert (logits.argmax(-1) == loc).float().mean() > 0.95
        # Permuting the steps of the input permutes the predictions the same way.
        perm = torch.randperm(T, generator=g)
        _, permuted = m(None, loc[:, perm], None, torch.ones(64, dtype=torch.long))
        assert (permuted.argmax(-1) == logits.argmax(-1)[:, perm]).float().mean() > 0.95


def test_self_conditioning_takes_the_previous_prediction_as_an_expected_station_embedding():
    x, loc, t, s = inputs()
    sc = net(self_condition=True)
    first = sc(x, loc, t, s)[1]
    probs = torch.softmax(torch.randn(3, T, N, generator=torch.Generator().manual_seed(1)), -1)
    second = sc(x, loc, t, s, l0_probs=probs)[1]
    assert not torch.allclose(first, second)  # the previous prediction is seen
    # No previous prediction is the same as a zero one (what half of the training batches get).
    torch.testing.assert_close(first, sc(x, loc, t, s, l0_probs=torch.zeros(3, T, N))[1])
    sc(x, loc, t, s, l0_probs=probs)[1].sum().backward()
    assert sc.self_cond_proj.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="l0_probs has shape"):
        sc(x, loc, t, s, l0_probs=probs[..., :-1])
    with pytest.raises(ValueError, match="without self_condition"):
        net()(x, loc, t, s, l0_probs=probs)
    assert not net(n_stations=None, self_condition=True).self_condition  # nothing to condition on


def test_anchors_condition_the_trajectory_and_point_at_their_stations():
    x, loc, t, s = inputs()
    anchored = net(n_anchors=2)
    a = torch.tensor([[0, 1], [2, 2], [4, 3]])
    b = torch.tensor([[1, 0], [3, 2], [0, 4]])
    first = anchored(x, loc, t, s, anchors=a)[1]
    assert not torch.allclose(first, anchored(x, loc, t, s, anchors=b)[1])  # the anchors are seen
    # The pointer starts at zero; with a large bias on the second anchor every step predicts that station
    # (the first user's second anchor, 1; the second user's anchors coincide, so both biases land on 2).
    with torch.no_grad():
        anchored.anchor_out.bias.copy_(torch.tensor([0.0, 50.0]))
    pointed = anchored(x, loc, t, s, anchors=a)[1].argmax(-1)
    assert (pointed == a[:, 1:]).all()
    anchored(x, loc, t, s, anchors=a)[1].sum().backward()
    assert (
        anchored.anchor_in[0].weight.grad.abs().sum() > 0 and anchored.anchor_out.weight.grad.abs().sum() > 0
    )
    with pytest.raises(ValueError, match="takes 2 anchors per user: give anchors"):
        anchored(x, loc, t, s)
    with pytest.raises(ValueError, match="anchors has shape"):
        anchored(x, loc, t, s, anchors=a[:, :1])
    with pytest.raises(ValueError, match="takes 0 anchors per user: do not give anchors"):
        net()(x, loc, t, s, anchors=a)
    assert net(n_stations=None, n_anchors=2).n_anchors == 0  # traffic only: nothing to anchor
