"""Trajectory metrics in the MoveSim style, on station ids and station coordinates.

A trajectory set is ``locations``, int [U users, T steps], each entry an index into the station arrays
``lat`` and ``lon`` (degrees, WGS84). Distances are great-circle (haversine) kilometres. Six statistics are
extracted per set and compared between real and generated with the base-2 JSD of
:mod:`cellsynth.metrics.histogram` (definitions, bins and the differences from MoveSim's code are in
docs/metrics.md, "Trajectories"):

========================  ==========================================================  ====================
statistic                 value                                                       bins
========================  ==========================================================  ====================
Distance                  km between consecutive *distinct* locations (each jump)     ``bins``, log scale
Radius                    radius of gyration of each user, km                         ``bins``, log scale
DistinctLoc               distinct locations of each user / T                         one per count 1..T
Duration                  length in steps of each stay (run of one location)          one per length 1..T
G-rank                    visit shares of the top ``top_share`` of locations, by rank  one per rank
I-rank                    share of a user's visits to their r-th location, mean       one per rank 1..T
========================  ==========================================================  ====================
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from cellsynth.geo import haversine_km as _haversine_km
from cellsynth.geo import unit_sphere
from cellsynth.metrics._validation import coordinates, float_array, location_array, require
from cellsynth.metrics.histogram import DEFAULT_BINS, histogram_jsd, integer_bin_edges, js_divergence

#: Distances below this many km (1 m) are binned as 1 m: the log-scale bins of Distance and Radius need a
#: positive floor, and a stay in place (0 km) or centroid rounding (~1e-12 km) must not stretch them.
DISTANCE_FLOOR_KM = 1e-3

#: The keys of :func:`trajectory_jsds` (MoveSim's six), in its order; the first two read coordinates.
TRAJECTORY_STATISTICS = ("distance", "radius", "distinct_loc", "duration", "g_rank", "i_rank")
NEEDS_COORDINATES = ("distance", "radius")
#: The four of them that need no coordinates: what a stations table without lat/lon is scored on.
COORDINATE_FREE = tuple(name for name in TRAJECTORY_STATISTICS if name not in NEEDS_COORDINATES)

#: Default share of all stations whose visit frequencies make up the G-rank statistic (the top 10 %).
DEFAULT_TOP_SHARE = 0.1


def haversine_km(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> np.ndarray:
    """Great-circle distance in km between points given in degrees (arrays broadcast together).

    ``a = sin^2((lat2 - lat1) / 2) + cos(lat1) cos(lat2) sin^2((lon2 - lon1) / 2)``,
    ``d = 2 R asin(sqrt(a))`` with R = :data:`cellsynth.geo.EARTH_RADIUS_KM` = 6371.0088 km
    (:func:`cellsynth.geo.haversine_km`, with its arguments checked).
    """
    arrays = [
        float_array(value, function="haversine_km", name=name, ndims=range(8), layout="of degrees")
        for name, value in (("lat1", lat1), ("lon1", lon1), ("lat2", lat2), ("lon2", lon2))
    ]
    return _haversine_km(*arrays)


def jump_distances(locations: ArrayLike, lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
    """Km of every jump: each step t where ``loc[u, t+1] != loc[u, t]``, pooled over users (1-D).

    Steps that stay at the same location are not jumps and are left out (MoveSim's code counts them as
    0 km moves). Two distinct station ids at the same coordinates give a 0 km jump.
    """
    function = "jump_distances"
    lat_array, lon_array = coordinates(lat, lon, function=function)
    trajectories = location_array(locations, function=function, name="locations", n_locations=lat_array.size)
    origin, destination = trajectories[:, :-1], trajectories[:, 1:]
    moved = origin != destination
    start, end = origin[moved], destination[moved]
    return _haversine_km(lat_array[start], lon_array[start], lat_array[end], lon_array[end])


def radius_of_gyration(locations: ArrayLike, lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
    """Radius of gyration of each user in km, shape [U].

    ``r_g(u) = sqrt( (1/T) sum_t d(p_t, c_u)^2 )`` with ``p_t`` the station visited at step t, ``d`` the
    haversine distance and ``c_u`` the user's centre of mass: the mean of the unit vectors of the T visited
    points, projected back onto the sphere (at city scale this is the mean latitude/longitude, and unlike
    that it is right across the antimeridian). Every step weighs the same, so a long stay pulls the centre.
    """
    function = "radius_of_gyration"
    lat_array, lon_array = coordinates(lat, lon, function=function)
    trajectories = location_array(locations, function=function, name="locations", n_locations=lat_array.size)
    unit = unit_sphere(lat_array[trajectories], lon_array[trajectories])
    centre = unit.mean(axis=1)
    centre_lat = np.degrees(np.arctan2(centre[:, 2], np.hypot(centre[:, 0], centre[:, 1])))
    centre_lon = np.degrees(np.arctan2(centre[:, 1], centre[:, 0]))
    visited_lat, visited_lon = lat_array[trajectories], lon_array[trajectories]
    distance = _haversine_km(visited_lat, visited_lon, centre_lat[:, None], centre_lon[:, None])
    radius = np.sqrt((distance**2).mean(axis=1))
    # A user who never leaves one point has radius 0 exactly, not the ~1e-12 km of centroid rounding.
    stays_put = (np.ptp(visited_lat, axis=1) == 0) & (np.ptp(visited_lon, axis=1) == 0)
    radius[stays_put] = 0.0
    return radius


def distinct_location_share(locations: ArrayLike) -> np.ndarray:
    """Number of distinct locations of each user divided by T, shape [U] (values k / T, k = 1..T)."""
    trajectories = _locations_without_stations(locations, "distinct_location_share")
    return _distinct_counts(trajectories) / trajectories.shape[1]


def _distinct_counts(trajectories: np.ndarray) -> np.ndarray:
    ordered = np.sort(trajectories, axis=1)
    return 1 + np.count_nonzero(np.diff(ordered, axis=1), axis=1)


def stay_durations(locations: ArrayLike) -> np.ndarray:
    """Length in steps of every stay, pooled over users (1-D int).

    A stay is a maximal run of consecutive steps at one location, so each user's stay lengths sum to T.
    The last run of a trajectory is a stay too (MoveSim's code drops it).
    """
    return _run_lengths(_locations_without_stations(locations, "stay_durations"))[0]


def one_step_stays(locations: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Per user, the one-step stays between two other stays, split by where they lead: ``(returns,
    pass_throughs)``, int ``[U]`` each.

    At step ``t`` (``0 < t < T-1``) with ``loc[t-1] != loc[t] != loc[t+1]``: a *return* if
    ``loc[t+1] == loc[t-1]`` (``a b a``: a visit away and back), a *pass-through* otherwise (``a b c``: a
    station on the way from one stay to the next). What the Duration statistic's shortest bin is made of;
    a diagnostic, not one of the six statistics.
    """
    x = _locations_without_stations(locations, "one_step_stays")
    before, mid, after = x[:, :-2], x[:, 1:-1], x[:, 2:]
    single = (mid != before) & (mid != after)
    returns = np.count_nonzero(single & (before == after), axis=1)
    return returns, np.count_nonzero(single, axis=1) - returns


def time_at_top_location(locations: ArrayLike, steps: ArrayLike | None = None) -> np.ndarray:
    """Per user, the share of ``steps`` (a bool mask over the T steps; all of them if None) spent at the
    user's most-visited location of the whole trajectory (ties: the lowest id), float ``[U]``.

    With ``steps`` the working hours it says whether users leave home when real ones do: a model that keeps
    its users at home all day has values near 1 there and few, long stays. A diagnostic, not one of the
    six statistics.
    """
    x = _locations_without_stations(locations, "time_at_top_location")
    mask = np.ones(x.shape[1], dtype=bool) if steps is None else np.asarray(steps)
    require(
        mask.dtype == bool and mask.shape == (x.shape[1],) and bool(mask.any()),
        f"must be a bool mask of the {x.shape[1]} steps with at least one True, got dtype {mask.dtype} and "
        f"shape {mask.shape} (e.g. hours >= 10 for the steps from 10:00)",
        function="time_at_top_location",
        name="steps",
    )
    top = np.array([np.bincount(row).argmax() for row in x])
    return (x[:, mask] == top[:, None]).mean(axis=1)


def _run_lengths(trajectories: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths of the runs of equal values in each row, and the row (user) of each run."""
    users, steps = trajectories.shape
    starts = np.ones((users, steps), dtype=bool)
    starts[:, 1:] = trajectories[:, 1:] != trajectories[:, :-1]
    start_index = np.flatnonzero(starts)
    # Every row begins a run, so runs never cross from one user into the next.
    lengths = np.diff(np.append(start_index, users * steps))
    return lengths, start_index // steps


def global_rank_frequency(
    locations: ArrayLike, n_locations: int, top_share: float = DEFAULT_TOP_SHARE
) -> np.ndarray:
    """Visit shares of the most visited locations, by rank, shape [R].

    ``share[l] = visits to l / (U T)`` over all users and steps, sorted in decreasing order and cut to the
    top ``R = max(1, ceil(top_share * n_locations))`` ranks (``n_locations`` = number of stations, so that
    real and generated give vectors of the same length). Locations never visited count as 0 visits.
    """
    function = "global_rank_frequency"
    require(
        isinstance(n_locations, int | np.integer) and n_locations >= 1,
        f"n_locations must be a positive integer, got {n_locations!r}",
        function=function,
        name="n_locations",
    )
    require(
        0.0 < top_share <= 1.0,
        f"top_share must be in (0, 1], got {top_share!r}",
        function=function,
        name="top_share",
    )
    trajectories = location_array(
        locations, function=function, name="locations", n_locations=int(n_locations)
    )
    counts = np.bincount(trajectories.ravel(), minlength=int(n_locations))
    ranks = max(1, math.ceil(top_share * n_locations))
    return np.sort(counts)[::-1][:ranks] / trajectories.size


def individual_rank_frequency(locations: ArrayLike) -> np.ndarray:
    """Each user's rank-frequency, shape [U, T].

    ``out[u, r - 1]`` = share of user u's T steps spent at the user's r-th most visited location
    (r = 1..T; 0 beyond the user's number of distinct locations). Each row sums to 1.
    """
    trajectories = _locations_without_stations(locations, "individual_rank_frequency")
    users, steps = trajectories.shape
    lengths, user_of_run = _run_lengths(np.sort(trajectories, axis=1))
    # Visits per (user, location), ordered by user, then by decreasing count.
    order = np.lexsort((-lengths, user_of_run))
    counts, owner = lengths[order], user_of_run[order]
    rank = np.arange(counts.size) - np.searchsorted(owner, owner, side="left")
    frequency = np.zeros((users, steps))
    frequency[owner, rank] = counts / steps
    return frequency


@dataclass(frozen=True)
class TrajectorySummary:
    """One trajectory set reduced to what :func:`trajectory_jsds` compares (:func:`summarize_trajectories`).

    A set summarised once can be compared with many others (several candidates, a bootstrap of one)
    without its statistics being recomputed each time: on GeoLife's 7,000 training users they are most of
    a comparison's cost.
    """

    steps: int  #: T, the length every compared set must share
    log_jumps: np.ndarray  #: ``log10(max(km, DISTANCE_FLOOR_KM))`` of every jump (:func:`jump_distances`)
    log_radius: np.ndarray  #: the same of every user's :func:`radius_of_gyration`
    distinct_counts: np.ndarray  #: distinct locations of every user (1..T)
    stay_lengths: np.ndarray  #: every stay's length in steps (:func:`stay_durations`)
    global_rank: np.ndarray  #: :func:`global_rank_frequency`
    individual_rank: np.ndarray  #: the mean over users of :func:`individual_rank_frequency`, [T]


def summarize_trajectories(
    locations: ArrayLike,
    lat: ArrayLike,
    lon: ArrayLike,
    *,
    top_share: float = DEFAULT_TOP_SHARE,
    name: str = "locations",
) -> TrajectorySummary:
    """The :class:`TrajectorySummary` of ``locations`` [U, T] (int station indices into ``lat``/``lon``);
    ``name`` is the set's name in error messages. A set in which no user ever changes location has no
    jump distances to compare, and is refused."""
    function = "summarize_trajectories"
    lat_array, lon_array = coordinates(lat, lon, function=function)
    n_locations = lat_array.size
    trajectories = location_array(locations, function=function, name=name, n_locations=n_locations)
    jumps = jump_distances(trajectories, lat_array, lon_array)
    require(
        jumps.size > 0,
        "no user ever changes location, so the jump-distance distribution is empty",
        function=function,
        name=name,
    )
    return TrajectorySummary(
        steps=trajectories.shape[1],
        log_jumps=_log_km(jumps),
        log_radius=_log_km(radius_of_gyration(trajectories, lat_array, lon_array)),
        distinct_counts=_distinct_counts(trajectories),
        stay_lengths=_run_lengths(trajectories)[0],
        global_rank=global_rank_frequency(trajectories, n_locations, top_share),
        individual_rank=individual_rank_frequency(trajectories).mean(axis=0),
    )


def trajectory_jsds(
    real: ArrayLike | TrajectorySummary,
    generated: ArrayLike | TrajectorySummary,
    lat: ArrayLike,
    lon: ArrayLike,
    *,
    bins: int = DEFAULT_BINS,
    top_share: float = DEFAULT_TOP_SHARE,
) -> dict[str, float]:
    """The six MoveSim JSDs (base 2, each in [0, 1]) between real and generated trajectories.

    ``real`` [U, T] and ``generated`` [V, T] are int station indices into ``lat``/``lon`` (same T), or
    either one's :func:`summarize_trajectories` (with the same ``lat``, ``lon`` and ``top_share``). Keys:

    * ``distance``: :func:`jump_distances`, on a log scale: ``log10(max(km, DISTANCE_FLOOR_KM))`` in ``bins``
      equal-width bins shared by both sets (km spans 5 decades: linear bins would put almost every jump
      into the first bin);
    * ``radius``: :func:`radius_of_gyration`, binned as ``distance`` is;
    * ``distinct_loc``: :func:`distinct_location_share`, one bin per possible count 1..T;
    * ``duration``: :func:`stay_durations`, one bin per possible length 1..T;
    * ``g_rank``: JSD between the two :func:`global_rank_frequency` vectors, each normalised to sum 1, i.e.
      between distributions over the ranks 1..R of the top ``top_share`` of stations;
    * ``i_rank``: JSD between the mean over users of :func:`individual_rank_frequency` of each set, a
      distribution over the ranks 1..T.
    """
    real_summary, generated_summary = (
        value
        if isinstance(value, TrajectorySummary)
        else summarize_trajectories(value, lat, lon, top_share=top_share, name=name)
        for name, value in (("real", real), ("generated", generated))
    )
    steps = real_summary.steps
    require(
        generated_summary.steps == steps,
        f"generated has T = {generated_summary.steps} steps but real has T = {steps}; the per-user "
        "statistics (distinct locations, stays, ranks) are only comparable over the same length",
        function="trajectory_jsds",
        name="generated",
    )
    per_step = integer_bin_edges(1, steps)
    return {
        "distance": histogram_jsd(real_summary.log_jumps, generated_summary.log_jumps, bins),
        "radius": histogram_jsd(real_summary.log_radius, generated_summary.log_radius, bins),
        "distinct_loc": histogram_jsd(
            real_summary.distinct_counts, generated_summary.distinct_counts, per_step
        ),
        "duration": histogram_jsd(real_summary.stay_lengths, generated_summary.stay_lengths, per_step),
        "g_rank": js_divergence(real_summary.global_rank, generated_summary.global_rank),
        "i_rank": js_divergence(real_summary.individual_rank, generated_summary.individual_rank),
    }


def _log_km(distance: np.ndarray) -> np.ndarray:
    """``log10(max(km, DISTANCE_FLOOR_KM))``: the scale on which distances are binned."""
    return np.log10(np.maximum(distance, DISTANCE_FLOOR_KM))


def _locations_without_stations(locations: ArrayLike, function: str) -> np.ndarray:
    """Validate ``locations`` for a statistic that needs no coordinates (any non-negative station index)."""
    return location_array(locations, function=function, name="locations", n_locations=None)
