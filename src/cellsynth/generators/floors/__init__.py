"""Honest floors every model must beat: for stations the seasonal mean and the copy of training weeks
(:mod:`.stations`), for users a Markov chain (:mod:`.markov`)."""

from cellsynth.generators.floors.markov import MarkovConfig, MarkovGenerator
from cellsynth.generators.floors.stations import CopyTrainGenerator, SeasonalMeanGenerator

__all__ = ["CopyTrainGenerator", "MarkovConfig", "MarkovGenerator", "SeasonalMeanGenerator"]
