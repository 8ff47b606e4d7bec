"""Masked graph autoencoders (GraphMAE, Hou et al. KDD 2022) for STOUTER's two graphs.

STOUTER pretrains a GIN autoencoder on the temporal graph and a GCN autoencoder on the station graph, then
freezes the encoders; their outputs are the temporal embeddings F_t (one per hour of the week) and the
spatial embeddings F_s (one per station).

Training step (:meth:`GraphAutoencoder.loss`), for node features ``X`` and a mask rate ``r``:

1. pick a random set ``M`` of ``ceil(r N)`` nodes and replace their features by a learned mask token
   ``[MASK]`` (``x_i <- m`` for ``i in M``);
2. encode: ``H = f_E(A, X~)``;
3. re-mask: ``H~ = W H`` with the rows of ``M`` set to 0, so the decoder must rebuild a masked node
   from its neighbours' codes, not from its own;
4. decode: ``Z = f_D(A, H~)`` (one graph layer back to the input width);
5. scaled cosine error over the masked nodes, with ``gamma >= 1``:

.. math::  \\mathcal L_{SCE} = \\frac{1}{|M|} \\sum_{i \\in M} \\left(1 - \\frac{x_i^\\top z_i}{\\lVert x_i\\rVert\\,\\lVert z_i\\rVert}\\right)^{\\gamma}

Since ``1 - cos`` lies in [0, 2], ``gamma > 1`` shrinks the error of nodes already reconstructed well
(``1 - cos < 1``) and so focuses training on the hard ones (GraphMAE's motivation for SCE over MSE).

:meth:`GraphAutoencoder.encode` runs the encoder on unmasked features: that is the embedding.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GCNConv, GINConv

__all__ = ["GraphAutoencoder", "gcn_autoencoder", "gin_autoencoder", "sce_loss"]


def sce_loss(x: torch.Tensor, z: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Scaled cosine error ``mean_i (1 - cos(x_i, z_i))^gamma`` over the rows of ``x`` and ``z`` ``[N, F]``."""
    if gamma < 1:
        raise ValueError(f"gamma must be >= 1 (SCE), got {gamma}")
    cos = (F.normalize(x, dim=-1) * F.normalize(z, dim=-1)).sum(-1)
    return (1 - cos).clamp_min(0).pow(gamma).mean()


def _gin_layer(in_dim: int, out_dim: int, hidden: int) -> GINConv:
    # GIN (Xu et al. 2019): h_i' = MLP((1 + eps) h_i + sum_{j -> i} h_j), eps learned.
    return GINConv(
        nn.Sequential(nn.Linear(in_dim, hidden), nn.PReLU(), nn.Linear(hidden, out_dim)), train_eps=True
    )


class GraphAutoencoder(nn.Module):
    """A GraphMAE autoencoder with GIN or GCN layers (see module docstring).

    ``encoder``: ``num_layers`` graph layers ``in_dim -> hidden_dim -> ... -> embed_dim``, each followed by
    PReLU; ``decoder``: one graph layer ``embed_dim -> in_dim``.
    """

    def __init__(
        self,
        in_dim: int,
        *,
        conv: Literal["gin", "gcn"],
        hidden_dim: int = 64,
        embed_dim: int = 32,
        num_layers: int = 2,
        mask_rate: float = 0.5,
        gamma: float = 2.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if conv not in ("gin", "gcn"):
            raise ValueError(f"conv must be 'gin' or 'gcn', got {conv!r}")
        if not 0 < mask_rate < 1:
            raise ValueError(f"mask_rate must be in (0, 1), got {mask_rate}")
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.in_dim, self.embed_dim, self.conv_type = in_dim, embed_dim, conv
        self.mask_rate, self.gamma, self.dropout = mask_rate, gamma, dropout
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [embed_dim]

        def layer(a: int, b: int):
            return _gin_layer(a, b, hidden_dim) if conv == "gin" else GCNConv(a, b)

        self.encoder = nn.ModuleList(layer(a, b) for a, b in itertools.pairwise(dims))
        self.activations = nn.ModuleList(nn.PReLU() for _ in range(num_layers))
        self.mask_token = nn.Parameter(torch.zeros(1, in_dim))
        self.encoder_to_decoder = nn.Linear(embed_dim, embed_dim, bias=False)
        self.decoder = layer(embed_dim, in_dim)

    def encode(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Node embeddings ``[N, embed_dim]`` of features ``x`` ``[N, in_dim]``."""
        h = x
        for conv, act in zip(self.encoder, self.activations):
            h = F.dropout(h, self.dropout, self.training)
            h = act(conv(h, edge_index))
        return h

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.encode(x, edge_index)

    def mask_nodes(self, num_nodes: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Indices of ``ceil(mask_rate * N)`` random nodes (at least 1)."""
        n_mask = max(1, math.ceil(self.mask_rate * num_nodes))
        perm = torch.randperm(num_nodes, generator=generator, device=generator.device if generator else "cpu")
        return perm[:n_mask]

    def reconstruct(self, x: torch.Tensor, edge_index: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
        """Steps 1-4 of the module docstring: the decoder's reconstruction ``Z`` ``[N, in_dim]``."""
        x_masked = x.clone()
        x_masked[masked] = self.mask_token.to(x.dtype)
        h = self.encoder_to_decoder(self.encode(x_masked, edge_index))
        h = h.clone()
        h[masked] = 0.0  # re-mask
        return self.decoder(h, edge_index)

    def loss(
        self, x: torch.Tensor, edge_index: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """The GraphMAE objective: SCE between ``x`` and its reconstruction on a fresh random node mask."""
        masked = self.mask_nodes(x.shape[0], generator).to(x.device)
        z = self.reconstruct(x, edge_index, masked)
        return sce_loss(x[masked], z[masked], self.gamma)


def gin_autoencoder(in_dim: int, **kwargs) -> GraphAutoencoder:
    """The temporal-graph autoencoder (GIN layers)."""
    return GraphAutoencoder(in_dim, conv="gin", **kwargs)


def gcn_autoencoder(in_dim: int, **kwargs) -> GraphAutoencoder:
    """The station-graph autoencoder (GCN layers)."""
    return GraphAutoencoder(in_dim, conv="gcn", **kwargs)
