"""Invertible array transforms that models build on, below the networks and knowing no data model:
the log scaling of traffic (:mod:`.scaling`) and its wavelet representation (:mod:`.wavelets`)."""

from cellsynth.transforms.scaling import LogScaler
from cellsynth.transforms.wavelets import TrafficWavelets, band_names, band_slices

__all__ = ["LogScaler", "TrafficWavelets", "band_names", "band_slices"]
