"""What an MSTDiff config builds, stage by stage of the fit (:mod:`.generator`): the Gaussian diffusion of
the traffic, each wavelet band's training range (for ``extensions.clip_x0``), the VQ-VAEs' sizes, the
station transitions of the discrete diffusion (stage 3), the partners of cell oscillations, the Markov
floor of the traffic-only ablation, and the denoiser network."""

from __future__ import annotations

import numpy as np
import torch

from cellsynth.data.knowledge import KnowledgeGraph
from cellsynth.data.model import Stations, UserMobility
from cellsynth.diffusion.discrete import uniform_rate
from cellsynth.diffusion.gaussian import GaussianDiffusion
from cellsynth.errors import ConfigError, DataError
from cellsynth.generators.conditioning import knowledge_graph_embeddings
from cellsynth.generators.floors.markov import MarkovChain, trajectory_model
from cellsynth.generators.mstdiff.config import MSTDiffConfig
from cellsynth.graphs.transitions import (
    geographic_knn_graph,
    knn_graph,
    nearest_stations,
)
from cellsynth.nn.mstdiff import MSTDiffNet
from cellsynth.transforms.wavelets import band_slices

__all__ = [
    "band_range",
    "build_net",
    "fit_markov",
    "gaussian_diffusion",
    "oscillation_partners",
    "transitions",
    "vq_hparams",
]


def gaussian_diffusion(cfg: MSTDiffConfig) -> GaussianDiffusion:
    """The traffic's Gaussian diffusion: ``gaussian_steps`` steps of the config's beta schedule."""
    return GaussianDiffusion(cfg.gaussian_steps, cfg.beta_schedule, cfg.beta_start, cfg.beta_end)


def band_range(coeffs: torch.Tensor, n_steps: int, level: int) -> torch.Tensor:
    """``[2, T]``: the training minimum and maximum of each coefficient's band, per position."""
    out = torch.empty(2, n_steps)
    for sl in band_slices(n_steps, level):
        out[0, sl], out[1, sl] = coeffs[:, sl].min(), coeffs[:, sl].max()
    return out


def vq_hparams(cfg: MSTDiffConfig) -> dict:
    """The sizes of each band's VQ-VAE (:class:`cellsynth.nn.vqvae.BandVQVAE`)."""
    return {
        "n_codes": cfg.vq_codes,
        "code_dim": cfg.vq_dim,
        "hidden": cfg.vq_hidden,
        "beta": cfg.vq_beta,
        "dead_after": cfg.vq_dead_after,
    }


def transitions(
    cfg: MSTDiffConfig, stations: Stations, kg: KnowledgeGraph | None, progress: bool, checkpoint_dir
) -> tuple[np.ndarray, str, torch.Tensor | None]:
    """``(R, source, station_init)``: the rate matrix, where it came from, TuckER station rows or None.
    ``kg=False``: uniform; a knowledge graph: TuckER (stage ``"tucker"``) and cosine neighbours; else
    geographic neighbours, else neighbours by standardised features, else uniform."""
    n = len(stations)
    k = min(cfg.knn, n - 1)
    if not cfg.kg:
        return uniform_rate(n), "uniform", None
    if kg is not None:
        emb = knowledge_graph_embeddings(
            kg,
            stations.ids,
            dim=cfg.embedding_dim,
            epochs=cfg.tucker_epochs,
            batch_size=cfg.tucker_batch_size,
            seed=cfg.seed,
            progress=progress,
            checkpoint_dir=checkpoint_dir,
            placement=cfg.placement(),
        )
        graph = knn_graph(emb, k, metric="cosine", quantile=cfg.knn_quantile)
        return graph.rate, "knowledge_graph", torch.from_numpy(np.asarray(emb, dtype=np.float32))
    if stations.has_coordinates:
        graph = geographic_knn_graph(stations.lat, stations.lon, k, quantile=cfg.knn_quantile)
        return graph.rate, "geographic", None
    feats = np.asarray(stations.features, dtype=np.float64)
    if feats.shape[1] and (feats.std(0) > 0).any():
        z = (feats - feats.mean(0)) / np.where(feats.std(0) > 0, feats.std(0), 1.0)
        graph = knn_graph(z, k, metric="euclidean", quantile=cfg.knn_quantile)
        return graph.rate, "features", None
    return uniform_rate(n), "uniform (no knowledge graph, coordinates or features)", None


def check_fit_inputs(cfg: MSTDiffConfig, data: UserMobility, knowledge_graph, who: str) -> None:
    """Everything knowable before the first stage trains: the wavelet length, something to model, stations
    to move between, a knowledge graph naming every station, and what cell oscillations need (DataError or
    ConfigError naming generator ``who``)."""
    if knowledge_graph is not None and not isinstance(knowledge_graph, KnowledgeGraph):
        raise DataError(f"knowledge_graph must be a KnowledgeGraph, got {type(knowledge_graph).__name__}")
    if data.n_steps % (2**cfg.level):
        raise DataError(
            f"{who} needs T divisible by 2^level = {2**cfg.level} for the wavelet transform; "
            f"got {data.n_steps} steps (crop the data or set level lower)"
        )
    if not data.has_traffic and not cfg.trajectory:
        raise DataError(f"{who}: this data has no traffic and trajectory=False leaves nothing to model")
    if not cfg.trajectory:
        return
    stations = data.stations
    if len(stations) < 2:
        raise DataError(f"{who} needs at least 2 stations to diffuse trajectories over, got {len(stations)}")
    if cfg.kg and knowledge_graph is not None:
        named = set(knowledge_graph.station_ids().astype(str))
        missing = [str(s) for s in stations.ids if str(s) not in named]
        if missing:
            raise DataError(
                f"{who}: {len(missing)} station(s) have no entity in the knowledge graph "
                f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}), so TuckER cannot embed them; "
                "give a knowledge graph with a triplet for every station, or set kg: false (uniform transitions)"
            )
    if cfg.extensions.oscillation_neighbours:
        oscillation_partners(cfg, stations, who)


def oscillation_partners(cfg: MSTDiffConfig, stations: Stations, who: str) -> np.ndarray:
    """``int64 [N, k]``: each station's ``extensions.oscillation_neighbours`` nearest stations, nearest
    first; ConfigError (naming generator ``who``) without coordinates or with too few stations."""
    k = cfg.extensions.oscillation_neighbours
    if stations.lat is None:
        raise ConfigError(
            f"{who}: extensions.oscillation_neighbours = {k} needs station coordinates (lat/lon) to find "
            "each station's nearest ones; give them, or set extensions.oscillation_neighbours: 0"
        )
    if k >= len(stations):
        raise ConfigError(
            f"{who}: extensions.oscillation_neighbours = {k} needs more than {k} stations, got {len(stations)}; "
            f"set it to at most {len(stations) - 1}"
        )
    return nearest_stations(stations.lat, stations.lon, k)


def fit_markov(data: UserMobility) -> MarkovChain:
    """The locations of the traffic-only ablation (``trajectory=False``): the hourly Markov floor."""
    return trajectory_model(data)


def build_net(cfg: MSTDiffConfig, n_steps, n_stations, traffic, vqvaes, station_init) -> MSTDiffNet:
    """The denoiser for ``n_steps`` steps, ``n_stations`` stations (None: traffic only) and ``traffic``
    (False: trajectory only), with the frozen ``vqvaes`` and TuckER ``station_init`` (or None)."""
    return MSTDiffNet(
        n_steps=n_steps,
        level=cfg.level,
        n_stations=n_stations,
        traffic=traffic,
        d_model=cfg.d_model,
        heads=cfg.heads,
        layers_per_scale=cfg.layers_per_scale,
        full_res_layers=cfg.full_res_layers,
        ff_mult=cfg.ff_mult,
        dropout=cfg.dropout,
        station_dim=cfg.embedding_dim,
        station_init=station_init,
        vqvaes=vqvaes,
        vq_scales=cfg.vq_scales,
        self_condition=cfg.extensions.self_condition,
        n_anchors=cfg.extensions.anchors,  # the network ignores it without a trajectory
    )
