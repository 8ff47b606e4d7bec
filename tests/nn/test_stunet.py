"""STUNet: shapes, ablation switches, and the STFFM context actually steering the output."""

from __future__ import annotations

import pytest
import torch

from cellsynth.nn.stunet import DAYS, STFFM, STUNet, _DayAttention, resample_time

SMALL = {"channels": 8, "channel_mults": (1, 2), "temporal_dim": 4, "spatial_dim": 3, "context_dim": 8}


def inputs(batch=3, channels=2, length=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(batch, channels, length, generator=g),
        torch.randint(0, 1000, (batch,), generator=g),
        torch.randn(batch, 3, generator=g),
        torch.randn(168, 4, generator=g),
    )


def perturb_film(net: STUNet) -> STUNet:
    # FiLM layers start at zero (training starts unconditioned); give them weights to test the wiring.
    torch.manual_seed(1)
    for name, p in net.named_parameters():
        if ".film." in name:
            p.data.normal_(0, 0.5)
    return net


@pytest.mark.parametrize(
    ("channels", "length", "mults"), [(1, 24, (1, 2)), (2, 168, (1, 2, 2)), (3, 336, (1, 2, 2))]
)
def test_output_shape_equals_input_shape(channels, length, mults):
    net = STUNet(channels, **(SMALL | {"channel_mults": mults}))
    x, t, fs, ft = inputs(channels=channels, length=length)
    assert net(x, t, fs, ft).shape == x.shape


def test_group_norm_option():
    net = STUNet(2, **SMALL, norm="group")
    assert any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in STUNet(2, **SMALL).modules())
    x, t, fs, ft = inputs()
    assert net(x, t, fs, ft).shape == x.shape


def test_length_must_halve():
    net = STUNet(1, **(SMALL | {"channel_mults": (1, 2, 2)}))
    x, t, fs, ft = inputs(channels=1, length=26)
    with pytest.raises(ValueError, match="divisible by 4"):
        net(x, t, fs, ft)


@pytest.mark.parametrize(
    "switches",
    [
        {"use_temporal": False},
        {"use_spatial": False},
        {"use_stffm": False},
        {"use_temporal": False, "use_spatial": False},
    ],
)
def test_ablations_change_the_parameters_and_still_run(switches):
    full = {n: p.shape for n, p in STUNet(2, **SMALL).named_parameters()}
    ablated_net = STUNet(2, **SMALL, **switches)
    ablated = {n: p.shape for n, p in ablated_net.named_parameters()}
    assert ablated != full
    x, t, fs, ft = inputs()
    out = ablated_net(x, t, fs if ablated_net.spatial_dim else None, ft if ablated_net.temporal_dim else None)
    assert out.shape == x.shape
    if switches.get("use_stffm") is False:
        assert not any(".film." in n for n in ablated) and not any(n.startswith("fusion") for n in ablated)
        assert ablated_net.input.in_channels == 2 + 8 + 4 + 3  # x + step + F_t + F_s at the input


@pytest.mark.parametrize("use_stffm", [True, False])
def test_conditions_change_the_prediction(use_stffm):
    torch.manual_seed(0)
    net = perturb_film(STUNet(2, **SMALL, use_stffm=use_stffm)).eval()
    x, t, fs, ft = inputs()
    base = net(x, t, fs, ft)
    assert not torch.allclose(base, net(x, t, fs + 1.0, ft), atol=1e-5)  # different F_s -> different eps
    assert not torch.allclose(base, net(x, t, fs, ft.roll(5, 0)), atol=1e-5)  # different F_t
    assert not torch.allclose(base, net(x, t + 100, fs, ft), atol=1e-5)  # different step
    # per-sample conditioning: changing station 0's embedding only changes sample 0
    fs2 = fs.clone()
    fs2[0] += 1.0
    out = net(x, t, fs2, ft)
    assert not torch.allclose(out[0], base[0], atol=1e-5) and torch.allclose(out[1:], base[1:], atol=1e-6)


def test_attention_is_optional_and_global():
    plain = STUNet(2, **SMALL, attention_heads=0).eval()
    assert not any("attention" in n for n, _ in plain.named_parameters())
    net = STUNet(2, **SMALL, attention_heads=2).eval()
    for p in net.mid_attention.attn.out_proj.parameters():  # starts as the identity; give it weights
        p.data.normal_(0, 0.5)
    x, t, fs, ft = inputs(length=168)
    x2 = x.clone()
    x2[:, :, -1] += 5.0  # only the last step changes: the convolutions alone do not reach the first steps
    assert torch.equal(plain(x2, t, fs, ft)[:, :, :4], plain(x, t, fs, ft)[:, :, :4])
    assert not torch.allclose(net(x2, t, fs, ft)[:, :, :4], net(x, t, fs, ft)[:, :, :4], atol=1e-6)
    with pytest.raises(ValueError, match="attention_heads"):
        STUNet(2, **SMALL, attention_heads=3)


def test_day_attention_links_each_hour_to_the_same_hour_of_the_other_days():
    torch.manual_seed(0)
    block = _DayAttention(8, 2).eval()
    x = torch.randn(2, 8, DAYS * 6)
    assert torch.equal(block(x), x)  # zero output projection: the identity at the start
    for p in block.attn.out_proj.parameters():
        p.data.normal_(0, 0.5)
    y = block(x)
    # the same position of another day reaches day 0; no other position does
    x2 = x.clone()
    x2[:, :, 3 * 6 + 2] += 5.0 * torch.randn(8)  # day 3, position 2 (not a constant: LayerNorm removes one)
    changed = (block(x2) - y).abs().amax(dim=(0, 1)) > 1e-6  # [L]
    assert changed.nonzero().ravel().tolist() == [d * 6 + 2 for d in range(DAYS)]
    # no day order: permuting the days of the input permutes the output alike
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    days = x.reshape(2, 8, DAYS, 6)
    permuted = block(days[:, :, perm].reshape(2, 8, -1)).reshape(2, 8, DAYS, 6)
    torch.testing.assert_close(permuted, y.reshape(2, 8, DAYS, 6)[:, :, perm])
    with pytest.raises(ValueError, match="divisible by 7 days"):
        block(torch.randn(1, 8, 24))


def test_day_attention_in_stunet_starts_as_the_plain_network():
    plain = STUNet(2, **SMALL).eval()
    net = STUNet(2, **SMALL, day_attention=2).eval()
    assert len(net.day_attention) == len(SMALL["channel_mults"])  # one per resolution on the way up
    missing, unexpected = net.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("day_attention.") for k in missing)
    x, t, fs, ft = inputs(length=168)
    torch.testing.assert_close(net(x, t, fs, ft), plain(x, t, fs, ft))
    for p in net.day_attention.parameters():
        p.data.normal_(0, 0.5)
    assert not torch.allclose(net(x, t, fs, ft), plain(x, t, fs, ft), atol=1e-5)
    with pytest.raises(ValueError, match="day_attention=3"):
        STUNet(2, **SMALL, day_attention=3)


def test_spatial_ablation_ignores_the_station():
    net = perturb_film(STUNet(2, **SMALL, use_spatial=False)).eval()
    x, t, _, ft = inputs()
    assert torch.equal(net(x, t, None, ft), net(x, t, torch.randn(3, 3), ft))
    with pytest.raises(ValueError, match="spatial"):
        STUNet(2, **SMALL)(x, t, None, ft)


def test_resample_time():
    ft = torch.arange(168.0).repeat(2, 1)  # [D=2, 168]
    pooled = resample_time(ft, 42)
    torch.testing.assert_close(pooled[0, :2], torch.tensor([1.5, 5.5]))  # mean of 4 consecutive hours
    assert resample_time(ft, 336).shape == (2, 336)
    assert resample_time(ft[None].expand(3, -1, -1), 84).shape == (3, 2, 84)


@pytest.mark.parametrize(("temporal_dim", "spatial_dim"), [(4, 3), (4, 0), (0, 3)])
@pytest.mark.parametrize("per_station_temporal", [False, True])
@pytest.mark.parametrize("length", [168, 42, 336])
def test_stffm_is_the_papers_projection_of_the_concatenation(
    temporal_dim, spatial_dim, per_station_temporal, length
):
    """``c = W [R(F_t) ; F_s 1^T] + b + step 1^T``, written out as the paper has it (one 1x1 convolution of
    each station's concatenated features), equals the split product the module computes when sampling, and
    what it computes with gradients (the projection called as a module, for Opacus's hooks)."""
    g = torch.Generator().manual_seed(2)
    fusion = STFFM(temporal_dim, spatial_dim, context_dim=8)
    batch = 5
    step = torch.randn(batch, 8, generator=g)
    shape = (batch, temporal_dim, 168) if per_station_temporal else (temporal_dim, 168)
    temporal = torch.randn(*shape, generator=g) if temporal_dim else None
    spatial = torch.randn(batch, spatial_dim, generator=g) if spatial_dim else None
    parts = []
    if temporal_dim:
        ft = resample_time(temporal, length)
        parts.append(ft if per_station_temporal else ft.expand(batch, -1, -1))
    if spatial_dim:
        parts.append(spatial[:, :, None].expand(-1, -1, length))
    with torch.no_grad():
        expected = step[:, :, None] + fusion.proj(torch.cat(parts, dim=1))
        sampling = fusion(step, length, temporal, spatial)  # the split product
    training = fusion(step, length, temporal, spatial)  # the module called on the batch
    assert sampling.shape == training.shape == (batch, 8, length)
    torch.testing.assert_close(sampling, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(training.detach(), expected, rtol=1e-5, atol=1e-6)
