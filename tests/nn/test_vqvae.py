"""VQ-VAE per coefficient band: straight-through gradients, dead-code restarts, training reduces the error."""

from __future__ import annotations

import torch

from cellsynth.nn.vqvae import BandVQVAE, VectorQuantizer, code_usage, fit_vqvaes
from cellsynth.training import seed_everything


def test_straight_through_gradient_reaches_the_encoder_unchanged():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_codes=8, dim=4)
    z_e = torch.randn(3, 5, 4, requires_grad=True)
    out = vq(z_e)
    assert torch.allclose(out.quantized, vq.codebook(out.indices))  # value: the codes
    (out.quantized * torch.arange(4.0)).sum().backward()
    assert torch.equal(z_e.grad, torch.arange(4.0).expand(3, 5, 4))  # gradient: passed through as is
    model = BandVQVAE(n_codes=8, code_dim=4, hidden=8)
    x_hat, q = model(torch.randn(2, 6))
    (x_hat.sum() + q.loss).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    assert model.quantizer.codebook.weight.grad.abs().sum() > 0  # the codebook term pulls the codes


def test_codebook_and_commitment_loss():
    vq = VectorQuantizer(n_codes=2, dim=1, beta=0.25)
    with torch.no_grad():
        vq.codebook.weight[:] = torch.tensor([[0.0], [10.0]])
    out = vq.eval()(torch.tensor([[1.0], [9.0]]))
    assert out.indices.tolist() == [0, 1]
    assert torch.isclose(out.loss, torch.tensor(1.25))  # (1 + 1)/2 * (1 + 0.25)


def test_usage_statistics():
    perplexity, used = code_usage(torch.tensor([0, 1, 2, 3]), 8)
    assert abs(perplexity - 4.0) < 1e-9 and used == 0.5
    perplexity, used = code_usage(torch.tensor([5, 5, 5]), 8)
    assert abs(perplexity - 1.0) < 1e-9 and used == 1 / 8


def test_dead_codes_are_restarted_onto_encoder_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(n_codes=6, dim=2, dead_after=3).train()
    with torch.no_grad():
        vq.codebook.weight[:] = torch.tensor([[0.0, 0.0]] + [[100.0 + i, 100.0] for i in range(5)])
    z = torch.randn(64, 2)
    for _ in range(2):
        assert vq(z).used_share == 1 / 6  # only code 0 is near the data
    assert int(vq.restarts) == 0
    vq(z)  # the third step without use: codes 1..5 move onto encoder outputs
    assert int(vq.restarts) == 5
    assert (vq.codebook.weight[1:].abs() < 10).all()
    assert vq(z).used_share > 0.5  # and now they are used
    with torch.no_grad():
        vq.eval()
        before = vq.codebook.weight.clone()
        for _ in range(5):
            vq(torch.full((4, 2), 50.0))
        assert torch.equal(before, vq.codebook.weight)  # no restarts in eval mode


def test_training_improves_reconstruction_and_records_usage(tmp_path):
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 6.28, 16)
    coeffs = torch.sin(t[None, :] * torch.rand(48, 1, generator=g) * 3) + 0.1 * torch.randn(
        48, 16, generator=g
    )
    slices = [slice(0, 8), slice(8, 16)]
    hparams = {"n_codes": 16, "code_dim": 4, "hidden": 16}
    seed_everything(0)
    before = BandVQVAE(**hparams).usage(coeffs[:, :8])
    models = fit_vqvaes(
        coeffs,
        slices,
        epochs=4,
        batch_size=4,
        seed=0,
        lr=3e-3,
        dead_after=5,
        checkpoint_dir=tmp_path,
        **hparams,
    )
    after = models[0].usage(coeffs[:, :8])
    assert after["mse"] < 0.5 * before["mse"]
    assert len(models.history) == 4 and set(models.history[-1]) == {0, 1}
    assert after["used_share"] > before["used_share"]
    assert (tmp_path / "checkpoints" / "vqvae" / "last.ckpt").exists()
