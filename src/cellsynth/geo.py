"""Geography on a spherical Earth: the one place for its radius and the distance formulas every layer uses.

Coordinates are WGS84 degrees; the Earth is taken as a sphere of radius :data:`EARTH_RADIUS_KM` (the IUGG mean
radius), which is within 0.5 % of the ellipsoid at any latitude. numpy only: the data, graphs, metrics,
evaluation and report layers all import this module, so it imports nothing of cellsynth's.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "EARTH_RADIUS_KM",
    "KM_PER_DEGREE",
    "chord_of_km",
    "haversine_km",
    "km_of_chord",
    "local_km",
    "unit_sphere",
]

#: Mean Earth radius in km (IUGG's R1).
EARTH_RADIUS_KM = 6371.0088

#: Kilometres per degree of latitude (and of longitude at the equator): ``pi R / 180`` = 111.195 km.
KM_PER_DEGREE = math.pi * EARTH_RADIUS_KM / 180.0


def haversine_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distance in km between points given in degrees (arrays broadcast together).

    ``a = sin^2((lat2 - lat1) / 2) + cos(lat1) cos(lat2) sin^2((lon2 - lon1) / 2)``,
    ``d = 2 R asin(sqrt(a))`` with R = :data:`EARTH_RADIUS_KM`.
    """
    # The longitude difference is taken in degrees, then converted (not radians(lon2) - radians(lon1)): the
    # last bits of a distance are part of saved models (MSTDiff's anchor model keeps quantiles of distances
    # as bin edges and bins new distances against them), so this evaluation order must not change.
    phi1, phi2 = np.radians(np.asarray(lat1, dtype=float)), np.radians(np.asarray(lat2, dtype=float))
    dlambda = np.radians(np.asarray(lon2, dtype=float) - np.asarray(lon1, dtype=float))
    a = np.sin((phi2 - phi1) / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlambda / 2) ** 2
    # Rounding can push a a hair above 1 for antipodal points.
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def unit_sphere(lat, lon) -> np.ndarray:
    """Points on the unit sphere, ``[..., 3]`` for ``lat``/``lon`` of shape ``[...]``. The chord ``c``
    between two of them and their great-circle distance ``d`` satisfy ``c = 2 sin(d / 2R)``
    (:func:`chord_of_km`), so a k-d tree radius query on these is an exact haversine radius query."""
    phi, lam = np.radians(np.asarray(lat, dtype=float)), np.radians(np.asarray(lon, dtype=float))
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], axis=-1)


def chord_of_km(km: float) -> float:
    """The chord on the unit sphere of a great-circle distance of ``km``: ``c = 2 sin(min(d / 2R, pi / 2))``
    (distances beyond half the circumference give the diameter, 2)."""
    return 2.0 * np.sin(min(km / (2.0 * EARTH_RADIUS_KM), np.pi / 2))


def km_of_chord(chord) -> np.ndarray:
    """The great-circle distance in km of a chord on the unit sphere: ``d = 2 R asin(c / 2)``."""
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(np.asarray(chord) / 2.0, 0.0, 1.0))


def local_km(lat, lon, lat0, lon0) -> tuple[np.ndarray, np.ndarray]:
    """Kilometres east and north of ``(lat0, lon0)`` on a local flat map (equirectangular; fine at city
    scale): ``x = (lon - lon0) K cos(lat0)``, ``y = (lat - lat0) K`` with K = :data:`KM_PER_DEGREE`.
    ``lat0``/``lon0`` broadcast against ``lat``/``lon`` (one origin per row, say)."""
    lat, lon = np.asarray(lat, dtype=float), np.asarray(lon, dtype=float)
    east = (lon - lon0) * KM_PER_DEGREE * np.cos(np.radians(lat0))
    north = (lat - lat0) * KM_PER_DEGREE
    return east, north
