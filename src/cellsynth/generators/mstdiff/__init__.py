"""MSTDiff: users' weekly traffic and trajectories, generated jointly. One module per concern: the config
(:mod:`.config`: the paper's fields, then the ``extensions``, ``sampling`` and ``calibration`` sections),
the denoiser's training (:mod:`.training`), the joint reverse sampler (:mod:`.sampler`) and the choice of
its options per model (:mod:`.sampler_selection`), the fit/generate orchestration (:mod:`.generator`) and
what a saved model holds (:mod:`.persistence`), and the helpers only MSTDiff uses: anchors
(:mod:`.anchors`), the traffic calibration (:mod:`.calibration`) and cell oscillations (:mod:`.oscillations`)."""

from cellsynth.generators.mstdiff.config import (
    MSTDiffCalibration,
    MSTDiffConfig,
    MSTDiffExtensions,
    MSTDiffSampling,
)
from cellsynth.generators.mstdiff.generator import MSTDiffGenerator

__all__ = ["MSTDiffCalibration", "MSTDiffConfig", "MSTDiffExtensions", "MSTDiffGenerator", "MSTDiffSampling"]
