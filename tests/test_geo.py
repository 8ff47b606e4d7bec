"""cellsynth.geo: the one Earth radius, and the distance formulas agreeing with one another."""

from __future__ import annotations

import numpy as np
import pytest

from cellsynth.geo import (
    EARTH_RADIUS_KM,
    KM_PER_DEGREE,
    chord_of_km,
    haversine_km,
    km_of_chord,
    local_km,
    unit_sphere,
)

RNG = np.random.default_rng(0)
LAT = RNG.uniform(-70, 70, 50)
LON = RNG.uniform(-180, 180, 50)


def test_a_degree_of_latitude_is_km_per_degree():
    assert haversine_km(10.0, 20.0, 11.0, 20.0) == pytest.approx(KM_PER_DEGREE, rel=1e-12)
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(np.pi * EARTH_RADIUS_KM, rel=1e-12)


def test_chords_on_the_unit_sphere_are_great_circle_distances():
    a, b = unit_sphere(LAT, LON), unit_sphere(LAT[::-1], LON[::-1])
    chord = np.linalg.norm(a - b, axis=-1)
    distance = haversine_km(LAT, LON, LAT[::-1], LON[::-1])
    np.testing.assert_allclose(km_of_chord(chord), distance, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose([chord_of_km(d) for d in distance], chord, rtol=1e-9, atol=1e-12)
    assert chord_of_km(1e6) == pytest.approx(2.0)  # beyond half the circumference: the diameter


def test_unit_sphere_keeps_the_shape_of_its_input():
    assert unit_sphere(LAT.reshape(5, 10), LON.reshape(5, 10)).shape == (5, 10, 3)
    np.testing.assert_allclose(np.linalg.norm(unit_sphere(LAT, LON), axis=-1), 1.0)


def test_the_local_map_matches_great_circle_distances_at_city_scale():
    lat0, lon0 = 45.46, 9.19
    lat = lat0 + RNG.uniform(-0.05, 0.05, 30)  # about 5 km around
    lon = lon0 + RNG.uniform(-0.07, 0.07, 30)
    east, north = local_km(lat, lon, lat0, lon0)
    flat = np.hypot(east[:, None] - east[None, :], north[:, None] - north[None, :])
    sphere = haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    np.testing.assert_allclose(flat, sphere, rtol=2e-3, atol=1e-9)
    assert local_km(lat0, lon0, lat0, lon0) == (0.0, 0.0)
