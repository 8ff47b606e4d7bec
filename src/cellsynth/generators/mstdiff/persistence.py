"""Saving and loading a fitted :class:`~cellsynth.generators.mstdiff.generator.MSTDiffGenerator`: what its
``_state`` and ``_restore`` hand to :mod:`cellsynth.generators.state`. Tensors: the stations, the EMA
network, the wavelets and the traffic clip range, the graph's rate (non-zero entries) and schedule, the Markov
floor, anchors, cell oscillations and calibration; meta: the time axis, what the model generates, the fit's
history and the sampler selection. The graph's eigendecomposition is not saved: it is deterministic, and
:class:`~cellsynth.diffusion.discrete.GraphDiffusion` rebuilds it from the rate."""

from __future__ import annotations

import numpy as np
import torch

from cellsynth.diffusion.discrete import GraphDiffusion
from cellsynth.generators.floors.markov import DEFAULT_SMOOTHING, MarkovChain
from cellsynth.generators.mstdiff.anchors import AnchorModel
from cellsynth.generators.mstdiff.calibration import calibration_state, restore_calibration
from cellsynth.generators.mstdiff.components import (
    build_net,
    gaussian_diffusion,
    oscillation_partners,
    vq_hparams,
)
from cellsynth.generators.mstdiff.oscillations import CellOscillations
from cellsynth.generators.state import restore_stations, stations_state
from cellsynth.nn.vqvae import BandVQVAE
from cellsynth.transforms.wavelets import TrafficWavelets

__all__ = ["model_state", "restore_model"]


def model_state(model):
    """``(tensors, meta)`` of a fitted ``model`` (module docstring)."""
    tensors, meta = stations_state(model.stations_)
    tensors |= {f"net.{k}": v for k, v in model.net_.state_dict().items()}
    if model.wavelets_ is not None:
        tensors |= {
            f"wavelets.{k}": torch.from_numpy(np.asarray(v)) for k, v in model.wavelets_.state().items()
        }
        tensors["clip"] = model.clip_.clone()
    if model.graph_ is not None:
        rate = model.graph_.rate
        nz = np.nonzero(rate)
        tensors["graph.index"] = torch.from_numpy(np.stack(nz).astype(np.int64))
        tensors["graph.values"] = torch.from_numpy(rate[nz].copy())
        tensors["graph.abar"] = torch.from_numpy(model.graph_.abar.copy())
    for part in (model.markov_, model.anchor_model_, model.oscillations_):
        if part is not None:
            tensors |= part.state()
    calibration_tensors, calibration_meta = calibration_state(model.calibration_)
    tensors |= calibration_tensors
    meta |= {
        "time": model.time_,
        "n_steps": model.n_steps_,
        "traffic": model.traffic_,
        "trajectory": model.trajectory_,
        "graph_source": model.graph_source_,
        "vqvae": model.net_.vqvaes is not None,
        "history": model.history_,
        "vq_usage": model.vq_usage_,
        "calibration": calibration_meta,
        "sampler_selection": model.sampler_selection_,
    }
    return tensors, meta


def restore_model(model, tensors, meta) -> None:
    """Set a fresh ``model``'s fitted attributes from what :func:`model_state` saved (``model.config`` is already
    the saved config). Models saved before calibration or sampler selection existed load without them."""
    cfg = model.config
    model.stations_ = restore_stations(tensors, meta)
    model.time_, model.n_steps_ = meta["time"], meta["n_steps"]
    model.traffic_, model.trajectory_ = meta["traffic"], meta["trajectory"]
    model.graph_source_, model.history_ = meta["graph_source"], meta["history"]
    model.vq_usage_ = meta.get("vq_usage")
    # absent in models saved before calibration existed
    model.calibration_ = restore_calibration(tensors, meta.get("calibration"))
    # absent in models saved before sampler selection existed
    model.sampler_selection_ = meta.get("sampler_selection")
    n = len(model.stations_)
    for part in ("wavelets_", "clip_", "graph_", "markov_", "anchor_model_", "oscillations_"):
        setattr(model, part, None)  # what this model's kind does not have stays None
    if model.traffic_:
        state = {k[len("wavelets.") :]: v.numpy() for k, v in tensors.items() if k.startswith("wavelets.")}
        model.wavelets_ = TrafficWavelets.from_state(state, cfg.level, cfg.wavelet, cfg.band_standardise)
        model.clip_ = tensors["clip"]
    if model.trajectory_:
        rate = np.zeros((n, n), dtype=np.float64)
        idx = tensors["graph.index"].numpy()
        rate[idx[0], idx[1]] = tensors["graph.values"].numpy()
        model.graph_ = GraphDiffusion(rate, abar=tensors["graph.abar"].numpy())
        if cfg.extensions.anchors:
            model.anchor_model_ = AnchorModel.from_state(tensors, model.stations_.lat, model.stations_.lon)
        if cfg.extensions.oscillation_neighbours:
            partners = oscillation_partners(cfg, model.stations_, model.name)
            model.oscillations_ = CellOscillations.from_state(tensors, partners)
    else:
        model.markov_ = MarkovChain.from_state(tensors, 24, DEFAULT_SMOOTHING, 1)
    model.gauss_ = gaussian_diffusion(cfg)
    vqvaes = None
    if meta["vqvae"]:
        vqvaes = torch.nn.ModuleList(BandVQVAE(**vq_hparams(cfg)) for _ in range(cfg.level + 1))
    net = build_net(cfg, model.n_steps_, n if model.trajectory_ else None, model.traffic_, vqvaes, None)
    net.load_state_dict({k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")})
    # As the EMA copy that fit() keeps: CPU kernels for a weight that requires grad can round differently
    # (measured: F.linear, last bit, even under no_grad), and a loaded model must generate identically.
    model.net_ = net.requires_grad_(False).eval()
