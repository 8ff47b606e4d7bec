r"""VQ-VAEs over wavelet coefficient bands (van den Oord et al. 2017), one per band, as MSTDiff pretrains them.

A band ``x [B, L]`` (one coefficient set, e.g. ``cA3``) is encoded position by position (1-D convolutions,
no downsampling, so latent ``k`` stays aligned with coefficient ``k`` and with the denoiser's token ``k``)::

    z_e = Enc(x) in R^{L x D},    k* = argmin_k ||z_e - e_k||,    z_q = e_{k*},    x_hat = Dec(z_q)

with a codebook ``{e_k}`` of ``K = 128`` codes of dimension ``D = 32``. The loss is

.. math::  L = \|x - \hat x\|^2 + \|\mathrm{sg}[z_e] - z_q\|^2 + \beta \|z_e - \mathrm{sg}[z_q]\|^2,
           \qquad \beta = 0.25

(reconstruction, codebook, commitment). The quantisation has no gradient, so the decoder gets
``z_e + sg[z_q - z_e]`` (the straight-through estimator: value ``z_q``, gradient passed to ``z_e`` as is).

**Codebook usage** (:func:`code_usage`): the perplexity ``exp(-sum_k p_k log p_k)`` of the code frequencies
``p_k`` in a batch (``K`` when every code is used equally, 1 when one code takes all) and the share of
codes used at least once.

**Dead codes.** A code that no encoder output is near never receives a gradient (only the selected code
is pulled), so it stays dead and the effective codebook shrinks. Each training step counts, per code,
the consecutive steps it was not selected; a code unused for ``dead_after`` steps is re-initialised to a
random encoder output of the current batch (Dhariwal et al. 2020, "Jukebox", random restarts), which puts
it where the data are. The count of restarts is kept in the ``restarts`` buffer. Restarts happen only in
training mode inside :meth:`VectorQuantizer.forward`; :meth:`BandVQVAE.quantise` (what the denoiser calls)
never changes the codebook.

:func:`fit_vqvaes` pretrains one :class:`BandVQVAE` per band through
:func:`cellsynth.training.train` (stage ``"vqvae"``) and records the per-epoch reconstruction
error and codebook usage of each band in ``.history``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cellsynth.errors import ConfigError
from cellsynth.training import Placement, TrainingModule, loader, seed_everything, train

__all__ = ["BandVQVAE", "QuantizerOutput", "VQVAEModule", "VectorQuantizer", "code_usage", "fit_vqvaes"]


def code_usage(indices: torch.Tensor, n_codes: int) -> tuple[float, float]:
    """``(perplexity, share of codes used)`` of the code indices of a batch."""
    counts = torch.bincount(indices.reshape(-1), minlength=n_codes).to(torch.float64)
    p = counts / counts.sum().clamp_min(1.0)
    entropy = -(torch.xlogy(p, p)).sum()
    return float(torch.exp(entropy)), float((counts > 0).to(torch.float64).mean())


@dataclass
class QuantizerOutput:
    quantized: torch.Tensor  # z_e + sg[z_q - z_e]: value z_q, straight-through gradient to z_e
    indices: torch.Tensor  # k* per position
    loss: torch.Tensor  # ||sg[z_e] - z_q||^2 + beta ||z_e - sg[z_q]||^2
    perplexity: float
    used_share: float


class VectorQuantizer(nn.Module):
    """Nearest-code quantisation with the straight-through estimator and dead-code restarts."""

    def __init__(self, n_codes: int = 128, dim: int = 32, beta: float = 0.25, dead_after: int = 50) -> None:
        super().__init__()
        if n_codes < 2 or dim < 1 or beta < 0 or dead_after < 1:
            raise ConfigError(
                f"need n_codes >= 2, dim >= 1, beta >= 0, dead_after >= 1; got {n_codes}, {dim}, {beta}, {dead_after}"
            )
        self.n_codes, self.dim, self.beta, self.dead_after = (
            int(n_codes),
            int(dim),
            float(beta),
            int(dead_after),
        )
        self.codebook = nn.Embedding(n_codes, dim)
        nn.init.uniform_(self.codebook.weight, -1.0 / n_codes, 1.0 / n_codes)
        self.register_buffer("unused_steps", torch.zeros(n_codes, dtype=torch.long))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))

    def nearest(self, z_e: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code of every vector ``z_e [..., D]``: ``long [...]``."""
        flat = z_e.reshape(-1, self.dim)
        w = self.codebook.weight
        # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2 (||z||^2 does not change the argmin)
        d = (w * w).sum(1)[None, :] - 2.0 * flat @ w.T
        return d.argmin(1).reshape(z_e.shape[:-1])

    def forward(self, z_e: torch.Tensor) -> QuantizerOutput:
        idx = self.nearest(z_e.detach())
        z_q = self.codebook(idx)
        loss = F.mse_loss(z_q, z_e.detach()) + self.beta * F.mse_loss(z_e, z_q.detach())
        perplexity, used = code_usage(idx, self.n_codes)
        if self.training:
            self._restart_dead(z_e.detach(), idx)
        return QuantizerOutput(z_e + (z_q - z_e).detach(), idx, loss, perplexity, used)

    @torch.no_grad()
    def _restart_dead(self, z_e: torch.Tensor, idx: torch.Tensor) -> None:
        used = torch.bincount(idx.reshape(-1), minlength=self.n_codes) > 0
        self.unused_steps.add_(1).masked_fill_(used, 0)
        dead = torch.nonzero(self.unused_steps >= self.dead_after).squeeze(1)
        if dead.numel():
            flat = z_e.reshape(-1, self.dim)
            pick = torch.randint(0, flat.shape[0], (dead.numel(),), device=flat.device)
            self.codebook.weight[dead] = flat[pick]
            self.unused_steps[dead] = 0
            self.restarts.add_(dead.numel())


class BandVQVAE(nn.Module):
    """A VQ-VAE of one coefficient band ``[B, L] -> [B, L]`` with a per-position latent (module docstring)."""

    def __init__(
        self,
        *,
        n_codes: int = 128,
        code_dim: int = 32,
        hidden: int = 64,
        beta: float = 0.25,
        dead_after: int = 50,
    ) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv1d(1, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(hidden, code_dim, 1),
        )
        self.quantizer = VectorQuantizer(n_codes, code_dim, beta, dead_after)
        self.decoder = nn.Sequential(
            nn.Conv1d(code_dim, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(hidden, hidden, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(hidden, 1, 1),
        )

    @property
    def code_dim(self) -> int:
        return self.quantizer.dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, L]`` -> ``z_e [B, L, D]``."""
        return self.encoder(x.unsqueeze(1)).transpose(1, 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``z [B, L, D]`` -> ``x_hat [B, L]``."""
        return self.decoder(z.transpose(1, 2)).squeeze(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        q = self.quantizer(self.encode(x))
        return self.decode(q.quantized), q

    def quantise(self, x: torch.Tensor) -> torch.Tensor:
        """The quantised embedding ``z_q [B, L, D]`` of ``x [B, L]`` (straight-through; never restarts codes)."""
        z_e = self.encode(x)
        z_q = self.quantizer.codebook(self.quantizer.nearest(z_e.detach()))
        return z_e + (z_q - z_e).detach()

    @torch.no_grad()
    def usage(self, x: torch.Tensor) -> dict[str, float]:
        """Reconstruction MSE, perplexity and share of codes used on ``x [B, L]`` (eval mode, no restarts)."""
        was = self.training
        self.eval()
        x_hat, q = self(x)
        self.train(was)
        return {"mse": float(F.mse_loss(x_hat, x)), "perplexity": q.perplexity, "used_share": q.used_share}


class VQVAEModule(TrainingModule):
    """Trains one :class:`BandVQVAE` per band of concatenated coefficients ``[B, T]`` (band ``b`` at
    ``slices[b]``); loss = sum over bands of (reconstruction + codebook + commitment). Records per-epoch
    means of each band's ``mse``, ``perplexity``, ``used_share`` and the cumulative ``restarts`` in
    ``history`` (a list of ``{band: {...}}``)."""

    def __init__(
        self,
        slices: list[tuple[int, int]],
        *,
        n_codes: int = 128,
        code_dim: int = 32,
        hidden: int = 64,
        beta: float = 0.25,
        dead_after: int = 50,
        lr: float = 1e-3,
    ) -> None:
        super().__init__()
        self.slices = [tuple(s) for s in slices]
        self.lr = lr
        self.models = nn.ModuleList(
            BandVQVAE(n_codes=n_codes, code_dim=code_dim, hidden=hidden, beta=beta, dead_after=dead_after)
            for _ in self.slices
        )
        self.history: list[dict[int, dict[str, float]]] = []
        self._acc: dict[int, dict[str, float]] = {}
        self._n = 0

    def training_step(self, batch, batch_idx):
        (coeffs,) = batch
        total = 0.0
        for b, ((lo, hi), model) in enumerate(zip(self.slices, self.models)):
            x = coeffs[:, lo:hi]
            x_hat, q = model(x)
            mse = F.mse_loss(x_hat, x)
            total = total + mse + q.loss
            acc = self._acc.setdefault(b, {"mse": 0.0, "perplexity": 0.0, "used_share": 0.0})
            acc["mse"] += float(mse.detach())
            acc["perplexity"] += q.perplexity
            acc["used_share"] += q.used_share
        self._n += 1
        return total

    def on_train_epoch_end(self) -> None:
        if self._n:
            record = {}
            for b, acc in self._acc.items():
                record[b] = {k: v / self._n for k, v in acc.items()}
                record[b]["restarts"] = int(self.models[b].quantizer.restarts)
            self.history.append(record)
        self._acc, self._n = {}, 0

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def fit_vqvaes(
    coefficients: torch.Tensor,
    slices: list[slice] | list[tuple[int, int]],
    *,
    epochs: int = 50,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    placement: Placement | None = None,
    **hparams,
) -> nn.ModuleList:
    """Pretrain one VQ-VAE per band on ``coefficients [U, T]`` (float32); returns the trained
    :class:`BandVQVAE` list in eval mode on the CPU, with ``.history`` (per epoch, per band: ``mse``,
    ``perplexity``, ``used_share``, ``restarts``). ``hparams``: ``n_codes``, ``code_dim``, ``hidden``,
    ``beta``, ``dead_after``, ``lr``. Stage ``"vqvae"`` of ``checkpoint_dir``."""
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    pairs = [(s.start, s.stop) if isinstance(s, slice) else tuple(s) for s in slices]
    seed_everything(seed)
    module = VQVAEModule(pairs, **hparams)
    data = torch.utils.data.TensorDataset(torch.as_tensor(coefficients, dtype=torch.float32))
    module = train(
        module,
        loader(data, batch_size=batch_size, seed=seed),
        max_epochs=epochs,
        stage="vqvae",
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        progress=progress,
        placement=placement,
    )
    models = module.models.eval()
    models.history = list(module.history)
    return models
