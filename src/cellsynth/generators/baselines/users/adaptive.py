"""``adaptive``: ADAPTIVE (Zhang et al., "Deep Transfer Learning for City-scale Cellular Traffic Generation
through Urban Knowledge Graph", KDD 2023, doi:10.1145/3580305.3599801) as a user-level traffic baseline of
MSTDiff: a feature-enhanced conditional GAN whose condition at every step is the knowledge-graph embedding
of the station serving the user (:mod:`cellsynth.nn.adaptive`), trained by WGAN-GP.

**Station embeddings.** With a knowledge graph (``fit(..., knowledge_graph=kg)``, the urban knowledge graph
MSTDiff uses), TuckER (:func:`cellsynth.nn.tucker.fit_tucker`, stage ``tucker``) embeds its entities and the
stations' rows are the condition. Without one, the stations' feature columns and planar coordinates
(:class:`~cellsynth.generators.conditioning.StationFeatures`), or, when stations have neither, a one-hot
vector per station. Each column is standardised with the constants of the stations generated for.

**Transfer** (the paper's setting; Python only): ``fit(target_users, knowledge_graph=target_kg,
source=source_users, source_knowledge_graph=source_kg)`` trains the GAN on the *source* city's traffic,
conditioned on the source stations' TuckER embeddings aligned onto the target's
(:func:`cellsynth.nn.adaptive.align_embeddings`), and generates users of the *target* city: its stations,
its trajectories (the Markov floor fitted on the target users' locations; their traffic, if any, is not
used), conditioned on the target's embeddings. On one city (no ``source``) it is a conditional GAN.

**Trajectories** come from the Markov floor (:mod:`._trajectory`): ADAPTIVE generates traffic only, given
them (training and generation: :mod:`._gan`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import torch

from cellsynth.data.knowledge import KnowledgeGraph
from cellsynth.data.model import Stations, UserMobility
from cellsynth.errors import DataError
from cellsynth.generators.baselines.users._gan import UserGANConfig, UserGANGenerator
from cellsynth.generators.baselines.users._trajectory import week_positions
from cellsynth.generators.conditioning import StationFeatures, knowledge_graph_embeddings
from cellsynth.nn.adaptive import AdaptiveCritic, AdaptiveGenerator, align_embeddings

__all__ = ["AdaptiveConfig", "AdaptiveUserGenerator"]


class AdaptiveConfig(UserGANConfig):
    """ADAPTIVE's networks (``cellsynth.nn.adaptive``), its station embeddings and its transfer step."""

    embedding_dim: int = pydantic.Field(32, ge=1, description="TuckER entity-embedding size (MSTDiff's).")
    tucker_epochs: int = pydantic.Field(200, ge=1, description="TuckER training epochs.")
    tucker_batch_size: int = pydantic.Field(128, ge=1, description="TuckER batch size.")
    noise_dim: int = pydantic.Field(16, ge=1, description="Noise channels per step fed to the generator.")
    hidden: int = pydantic.Field(64, ge=1, description="Width of the generator's residual TCN.")
    critic_hidden: int = pydantic.Field(32, ge=1, description="Width of the critic's TCN.")
    enhanced_dim: int = pydantic.Field(
        32, ge=1, description="Features the enhancement MLP adds to a station."
    )
    context_dim: int = pydantic.Field(32, ge=1, description="Width of the per-step context.")
    kernel_size: int = pydantic.Field(3, ge=3, description="Kernel of the dilated convolutions (odd).")
    dilations: tuple[int, ...] = pydantic.Field(
        (1, 2, 4, 8, 16, 32, 64),
        min_length=1,
        description="Dilation of each residual block (509 steps seen).",
    )
    alignment_iterations: int = pydantic.Field(
        50, ge=0, description="Transfer: most Procrustes refinements of the embedding alignment."
    )

    @pydantic.model_validator(mode="after")
    def _odd_kernel(self) -> AdaptiveConfig:
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (centred convolutions), got {self.kernel_size}")
        if any(d < 1 for d in self.dilations):
            raise ValueError("every dilation must be >= 1")
        return self


def _standardise(table: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Columns of ``table`` standardised with the mean and standard deviation of ``reference`` (a constant
    column: sd 1)."""
    sd = reference.std(0)
    return ((table - reference.mean(0)) / np.where(sd > 1e-12, sd, 1.0)).astype(np.float32)


class AdaptiveUserGenerator(UserGANGenerator):
    """ADAPTIVE: feature-enhanced conditional WGAN-GP of users' traffic given the knowledge-graph embedding of
    the station of every step; Markov-floor trajectories (module docstring)."""

    name = "adaptive"
    Config = AdaptiveConfig
    side_inputs = ("knowledge_graph",)

    @classmethod
    def smoke_config(cls) -> dict[str, Any]:
        return {
            "embedding_dim": 4,
            "tucker_epochs": 1,
            "noise_dim": 4,
            "hidden": 8,
            "critic_hidden": 8,
            "enhanced_dim": 4,
            "context_dim": 8,
            "dilations": (1, 4),
            "epochs": 2,
            "batch_size": 8,
            "n_critic": 2,
            "accelerator": "cpu",
        }

    def fit(
        self,
        data,
        *,
        progress: bool = True,
        checkpoint_dir: str | os.PathLike | None = None,
        knowledge_graph: KnowledgeGraph | None = None,
        source: UserMobility | None = None,
        source_knowledge_graph: KnowledgeGraph | None = None,
    ) -> AdaptiveUserGenerator:
        """Fit on ``data``'s users (one city), or, with ``source``, transfer from ``source``'s city (module
        docstring; ``knowledge_graph`` is then the target's, ``source_knowledge_graph`` the source's)."""
        if source is None:
            data = self._check_fit_inputs(data)
            if source_knowledge_graph is not None:
                raise DataError(
                    f"{self.name}: source_knowledge_graph is given without source users; give both"
                )
            self._check_graph(knowledge_graph, data.stations, "knowledge_graph")
            kg_parts = () if knowledge_graph is None else _graph_parts(knowledge_graph)
            return self._fit(
                data,
                data,
                progress=progress,
                checkpoint_dir=checkpoint_dir,
                extra_fingerprint=kg_parts,
                knowledge_graph=knowledge_graph,
            )
        data = self._check_transfer(data, source, knowledge_graph, source_knowledge_graph)
        parts = (source.locations, source.traffic, source.stations.ids)
        parts += _graph_parts(knowledge_graph) + _graph_parts(source_knowledge_graph)
        return self._fit(
            data,
            source,
            progress=progress,
            checkpoint_dir=checkpoint_dir,
            extra_fingerprint=parts,
            knowledge_graph=knowledge_graph,
            source_knowledge_graph=source_knowledge_graph,
        )

    # -- inputs --------------------------------------------------------------------------------------------
    def _check_graph(self, kg, stations: Stations, what: str) -> None:
        if kg is None:
            return
        if not isinstance(kg, KnowledgeGraph):
            raise DataError(f"{self.name}: {what} must be a KnowledgeGraph, got {type(kg).__name__}")
        named = set(kg.station_ids().astype(str))
        missing = [str(s) for s in stations.ids if str(s) not in named]
        if missing:
            raise DataError(
                f"{self.name}: {len(missing)} station(s) have no entity in {what} "
                f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}), so TuckER cannot embed them; "
                "give a knowledge graph with a triplet for every station, or none (stations are then "
                "described by their features and coordinates)",
                source=kg.source,
            )

    def _check_transfer(self, data, source, kg, source_kg) -> UserMobility:
        data = self._check_fit_inputs(data, traffic=False)
        if not isinstance(source, UserMobility):
            raise DataError(
                f"{self.name}: source must be the source city's UserMobility, got {type(source).__name__}"
            )
        self._check_user_data(source, traffic=True, what="the source data")
        if kg is None or source_kg is None:
            raise DataError(
                f"{self.name}: transfer aligns the two cities' knowledge-graph embeddings; give both "
                "knowledge_graph (the target's) and source_knowledge_graph"
            )
        self._check_graph(kg, data.stations, "knowledge_graph")
        self._check_graph(source_kg, source.stations, "source_knowledge_graph")
        same_axis = source.step == data.step and source.n_steps == data.n_steps
        if not same_axis or not np.array_equal(
            week_positions(source.start, source.step, source.n_steps),
            week_positions(data.start, data.step, data.n_steps),
        ):
            raise DataError(
                f"{self.name}: the source users ({source.n_steps} steps of {source.step} from {source.start:%a %H:%M}) "
                f"and the target users ({data.n_steps} steps of {data.step} from {data.start:%a %H:%M}) must cover "
                "the same steps of the week; crop or resample one of them",
                source=source.source,
            )
        return data

    # -- conditioning ----------------------------------------------------------------------------------------
    def _embed(
        self, stations: Stations, kg: KnowledgeGraph | None, progress: bool, checkpoint_dir
    ) -> np.ndarray:
        """``[N, d]`` raw station vectors: TuckER rows, else features (+ coordinates), else one-hot."""
        cfg = self.config
        if kg is not None:
            return knowledge_graph_embeddings(
                kg,
                stations.ids,
                dim=cfg.embedding_dim,
                epochs=cfg.tucker_epochs,
                batch_size=cfg.tucker_batch_size,
                seed=cfg.seed,
                progress=progress,
                checkpoint_dir=checkpoint_dir,
                placement=cfg.placement(),
            ).astype(np.float64)
        features = StationFeatures(use_coordinates=True).fit(stations)
        if features.dim:
            return features.transform(stations).astype(np.float64)
        return np.eye(len(stations))

    def _station_tables(
        self, data, source, *, progress, checkpoint_dir, knowledge_graph=None, source_knowledge_graph=None
    ):
        target = self._embed(data.stations, knowledge_graph, progress, checkpoint_dir)
        if source is data:
            table = _standardise(target, target)
            return table, table
        source_dir = None if checkpoint_dir is None else Path(checkpoint_dir) / "source"
        raw = self._embed(source.stations, source_knowledge_graph, progress, source_dir)
        aligned, _, _ = align_embeddings(raw, target, iterations=self.config.alignment_iterations)
        return _standardise(aligned, target), _standardise(target, target)

    def _generator(self, tau: torch.Tensor, table: torch.Tensor | None) -> AdaptiveGenerator:
        cfg = self.config
        return self._build(AdaptiveGenerator, tau, table, noise_dim=cfg.noise_dim, hidden=cfg.hidden)

    def _critic(self, tau: torch.Tensor, table: torch.Tensor | None) -> AdaptiveCritic:
        return self._build(AdaptiveCritic, tau, table, hidden=self.config.critic_hidden)

    def _build(self, network: type[torch.nn.Module], tau, table, **sizes) -> torch.nn.Module:
        """``network`` over the station ``table`` and ``tau`` with the sizes generator and critic share."""
        cfg = self.config
        return network(
            torch.as_tensor(table, dtype=torch.float32),
            tau,
            enhanced_dim=cfg.enhanced_dim,
            context_dim=cfg.context_dim,
            kernel_size=cfg.kernel_size,
            dilations=cfg.dilations,
            **sizes,
        )


def _graph_parts(kg: KnowledgeGraph) -> tuple:
    return (kg.heads, kg.relations, kg.tails)
