"""STOUTER: station-level weekly traffic by a diffusion model guided by pretrained temporal- and
station-graph embeddings (:mod:`.generator`), with its station level model (:mod:`.levels`)."""

from cellsynth.generators.stouter.config import StouterConfig, StouterExtensions
from cellsynth.generators.stouter.generator import StouterGenerator

__all__ = ["StouterConfig", "StouterExtensions", "StouterGenerator"]
