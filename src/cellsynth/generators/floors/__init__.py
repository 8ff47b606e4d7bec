"""Honest floors every model must beat: for stations the seasonal mean, the copy of training weeks, the
nearest station's weeks and each station's recent weeks (:mod:`.stations`), for users a Markov chain
(:mod:`.markov`)."""

from cellsynth.generators.floors.markov import MarkovConfig, MarkovGenerator
from cellsynth.generators.floors.stations import (
    CopyTrainGenerator,
    NearestStationGenerator,
    RecentWeeksGenerator,
    SeasonalMeanGenerator,
)

__all__ = [
    "CopyTrainGenerator",
    "MarkovConfig",
    "MarkovGenerator",
    "NearestStationGenerator",
    "RecentWeeksGenerator",
    "SeasonalMeanGenerator",
]
