"""STOUTER's Lightning wrappers (training only; the networks live in :mod:`cellsynth.nn`)."""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from cellsynth.diffusion.gaussian import GaussianDiffusion, Prediction
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
    """The epsilon (or velocity) objective for STUNet: batches are (week, station index); the frozen
    embeddings are buffers.

    With ``profiles`` (``[N * W, C + 1, L]``, each training week's reference week and mask channel,
    ``extensions.station_profile``) a batch's condition is ``[B, 2]``, (station, week row), and each week's
    profile is left out (zeroed, mask included) with probability ``profile_dropout``, so that the network also
    learns the weeks of stations without one.
    """

    def __init__(
        self,
        net: STUNet,
        diffusion: GaussianDiffusion,
        spatial: torch.Tensor | None,
        temporal: torch.Tensor | None,
        lr: float,
        weight_decay: float,
        ema_decay: float,
        profiles: torch.Tensor | None = None,
        profile_dropout: float = 0.0,
        prediction: Prediction = "noise",
        timestep_power: float = 1.0,
    ) -> None:
        super().__init__(
            net,
            diffusion,
            lr=lr,
            weight_decay=weight_decay,
            ema_decay=ema_decay,
            prediction=prediction,
            timestep_power=timestep_power,
        )
        self.register_buffer("spatial", spatial)
        self.register_buffer("temporal", temporal)
        self.register_buffer("profiles", profiles)
        self.profile_dropout = profile_dropout

    def network_output(self, net, x_t, t, condition):
        profile = None
        if self.profiles is not None:
            station, row = condition.unbind(1)
            keep = torch.rand(row.shape[0], device=row.device) >= self.profile_dropout
            profile = self.profiles[row] * keep[:, None, None].to(self.profiles.dtype)
        else:
            station = condition
        spatial = self.spatial[station] if self.spatial is not None else None
        return net(x_t, t, spatial, self.temporal, profile)
