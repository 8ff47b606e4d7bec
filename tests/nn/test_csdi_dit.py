"""The user-traffic baselines' networks: CSDI's denoiser and the 1-D DiT (shapes, what each layer attends to,
adaLN-Zero's identity start, patchify / unpatchify)."""

from __future__ import annotations

import math

import pytest
import torch

from cellsynth.nn.csdi import CSDINet, csdi_step_features, sinusoidal_positions
from cellsynth.nn.dit import DiT1d, DiTBlock, modulate


def _small_csdi(k: int, length: int) -> CSDINet:
    torch.manual_seed(0)
    net = CSDINet(k, length, channels=8, layers=2, heads=2, ff_dim=8, dropout=0.0, step_dim=8, time_dim=8)
    torch.nn.init.normal_(net.output.weight)  # zero-initialised: make the output depend on the input
    return net.eval()


@pytest.mark.parametrize(("k", "length"), [(1, 12), (3, 4)])
def test_csdi_shapes_and_zero_start(k, length):
    net = CSDINet(k, length, channels=8, layers=2, heads=2, ff_dim=8, step_dim=8, time_dim=8)
    x, t = torch.randn(5, k, length), torch.tensor([0, 1, 2, 3, 49])
    out = net(x, t)
    assert out.shape == (5, k, length)
    assert torch.equal(out, torch.zeros_like(out))  # the last projection starts at zero, as CSDI's
    with pytest.raises(ValueError, match=r"expected x of shape \[B, 3, 4\]"):
        CSDINet(3, 4, channels=8, heads=2, step_dim=8, time_dim=8)(torch.randn(2, 4, 3), t[:2])


def test_csdi_side_information_tells_apart_positions_and_features():
    net = _small_csdi(3, 4)
    side = net.side_information().reshape(-1, 3, 4)  # [time_dim + feature_dim, K, L]
    time, feature = side[:8], side[8:]
    assert torch.equal(time[:, 0], time[:, 2]) and not torch.equal(time[:, :, 0], time[:, :, 1])
    assert torch.equal(feature[:, :, 0], feature[:, :, 3]) and not torch.equal(feature[:, 0], feature[:, 1])
    # The time embedding is the Transformer's: PE[p, 2i] = sin(p w_i), PE[p, 2i + 1] = cos(p w_i).
    pe = sinusoidal_positions(4, 8)
    assert pe[3, 2] == pytest.approx(math.sin(3 * 10000 ** (-2 / 8)))
    assert pe[3, 3] == pytest.approx(math.cos(3 * 10000 ** (-2 / 8)))


def test_csdi_step_features_are_csdis():
    f = csdi_step_features(torch.tensor([3]), 8)  # frequencies 10^(4 j / 3), j = 0..3
    assert f.shape == (1, 8)
    assert f[0, 1] == pytest.approx(math.sin(3 * 10 ** (4 / 3)), abs=1e-4)
    assert f[0, 4] == pytest.approx(math.cos(3.0))


def test_csdi_feature_layer_mixes_features_and_is_skipped_for_one():
    """A change in one feature row reaches the other rows only through the feature Transformer."""
    net = _small_csdi(3, 4)
    x, t = torch.randn(1, 3, 4), torch.tensor([5])
    y = x.clone()
    y[0, 0] += 1.0
    with torch.no_grad():
        assert not torch.allclose(net(x, t)[0, 1:], net(y, t)[0, 1:])
        for layer in net.layers:  # without it, the rows are denoised independently
            layer._along_features = lambda h, k, length: h
        torch.testing.assert_close(net(x, t)[0, 1:], net(y, t)[0, 1:])
    single = _small_csdi(1, 4)
    calls = []
    single.layers[0].feature_layer.register_forward_hook(lambda *a: calls.append(1))
    single(torch.randn(2, 1, 4), torch.tensor([1, 2]))
    assert calls == []


def test_modulate():
    h = torch.ones(2, 3, 4)
    shift, scale = torch.full((2, 4), 0.5), torch.full((2, 4), 1.0)
    assert torch.equal(modulate(h, shift, scale), torch.full((2, 3, 4), 2.5))


def test_adaln_zero_block_starts_as_the_identity():
    net = DiT1d(1, 16, patch_size=4, hidden=16, depth=2, heads=2, step_dim=8)
    h, c = torch.randn(3, 4, 16), torch.randn(3, 16)
    for block in net.blocks:
        assert torch.equal(block(h, c), h)
    # ... and once its modulation is trained away from zero, it is not.
    block = DiTBlock(16, 2)
    torch.nn.init.normal_(block.modulation[-1].weight)
    assert not torch.allclose(block(h, c), h)
    # The whole network starts by predicting zero noise (final adaLN and linear zero-initialised).
    out = net(torch.randn(3, 1, 16), torch.tensor([0, 10, 999]))
    assert out.shape == (3, 1, 16) and torch.equal(out, torch.zeros_like(out))


def test_dit_unpatchify_inverts_the_patching():
    """Tokens that hold each patch's values, in the order the patch embedding reads them, unpatchify to x."""
    net = DiT1d(2, 12, patch_size=3, hidden=8, depth=1, heads=2, step_dim=8)
    x = torch.randn(4, 2, 12)
    tokens = x.reshape(4, 2, 4, 3).permute(0, 2, 3, 1).reshape(4, 4, 6)  # [B, N, p * C], step-major
    assert torch.equal(net.unpatchify(tokens), x)
    assert net.patchify(x).shape == (4, 4, 8)
    # A patch's token depends on its own steps only (before attention).
    y = x.clone()
    y[:, :, 3:6] += 1.0
    changed = (net.patchify(x) != net.patchify(y)).any(-1).any(0)
    assert changed.tolist() == [False, True, False, False]


def test_dit_trained_blocks_attend_across_patches():
    torch.manual_seed(0)
    net = DiT1d(1, 16, patch_size=4, hidden=16, depth=1, heads=2, step_dim=8)
    for p in net.parameters():  # leave adaLN-Zero's start: every weight random
        torch.nn.init.normal_(p, std=0.3)
    x, t = torch.randn(1, 1, 16), torch.tensor([3])
    y = x.clone()
    y[0, 0, 0] += 1.0
    with torch.no_grad():
        assert not torch.allclose(net(x, t)[0, 0, 12:], net(y, t)[0, 0, 12:])
    with pytest.raises(ValueError, match="multiple of patch_size"):
        DiT1d(1, 10, patch_size=4)
