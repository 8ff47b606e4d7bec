"""STOUTER's Lightning wrappers (training only; the networks live in :mod:`cellsynth.nn`)."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from cellsynth.diffusion.gaussian import GaussianDiffusion
from cellsynth.generators.diffusion_training import EpsilonModule
from cellsynth.nn.graph_autoencoder import GraphAutoencoder
from cellsynth.nn.stunet import STUNet
from cellsynth.training import TrainingModule

__all__ = ["DiffusionModule", "GraphMAEModule"]


class GraphMAEModule(TrainingModule):
    """GraphMAE pretraining on one graph: each batch is one full-graph step with a fresh node mask."""

    def __init__(self, model: GraphAutoencoder, graph: Data, lr: float, weight_decay: float) -> None:
        super().__init__()
        self.model, self.lr, self.weight_decay = model, lr, weight_decay
        self.register_buffer("x", graph.x.float())
        self.register_buffer("edge_index", graph.edge_index.long())
        self.history: list[float] = []
        self._epoch: list[float] = []

    def training_step(self, batch, batch_idx):
        loss = self.model.loss(self.x, self.edge_index)
        self.log("sce", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=1)
        self._epoch.append(float(loss.detach()))
        return loss

    def on_train_epoch_end(self) -> None:
        self.history.append(float(np.mean(self._epoch)))
        self._epoch = []

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, weight_decay=self.weight_decay)


class DiffusionModule(EpsilonModule):
    """The epsilon objective for STUNet: batches are (week, station index); the frozen embeddings are buffers."""

    def __init__(
        self,
        net: STUNet,
        diffusion: GaussianDiffusion,
        spatial: torch.Tensor | None,
        temporal: torch.Tensor | None,
        lr: float,
        weight_decay: float,
        ema_decay: float,
    ) -> None:
        super().__init__(net, diffusion, lr=lr, weight_decay=weight_decay, ema_decay=ema_decay)
        self.register_buffer("spatial", spatial)
        self.register_buffer("temporal", temporal)

    def predict_noise(self, net, x_t, t, station):
        return net(x_t, t, self.spatial[station] if self.spatial is not None else None, self.temporal)
