"""MSTDiff: users' weekly traffic and trajectories, generated jointly (:mod:`.generator`), with the helpers
only it uses: anchors (:mod:`.anchors`), the traffic calibration (:mod:`.calibration`) and cell
oscillations (:mod:`.oscillations`)."""

from cellsynth.generators.mstdiff.generator import MSTDiffConfig, MSTDiffGenerator

__all__ = ["MSTDiffConfig", "MSTDiffGenerator"]
