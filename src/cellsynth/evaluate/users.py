"""Evaluation of generated user mobility (:func:`evaluate_users`; the protocol is described in
:mod:`cellsynth.evaluate`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cellsynth import metrics
from cellsynth.data.model import Stations, UserMobility
from cellsynth.errors import DataError
from cellsynth.evaluate.alignment import (
    align_time,
    check_bins,
    check_step,
    expect_kind,
    format_step,
    span_in_words,
)
from cellsynth.evaluate.memorisation import memorisation_summary, run_memorisation
from cellsynth.evaluate.result import Evaluation, UserComparison
from cellsynth.evaluate.scores import attempt, note_outsized, traffic_scores
from cellsynth.geo import local_km
from cellsynth.metrics.mobility import COORDINATE_FREE, TRAJECTORY_STATISTICS

__all__ = ["evaluate_users"]


def evaluate_users(
    real: UserMobility,
    synthetic: UserMobility,
    *,
    train: UserMobility | None = None,
    bins: int = metrics.DEFAULT_BINS,
    compat: bool = False,
) -> Evaluation:
    """Score generated users against real users (see the module docstring).

    Generated users' station ids are mapped onto the real stations table (an id it lacks is an error);
    trajectory metrics use that table's coordinates. ``train`` (the users the generator was fitted on)
    normalises traffic and enables the memorisation check.
    """
    check_bins(bins)
    real = expect_kind(real, UserMobility, "real")
    synthetic = expect_kind(synthetic, UserMobility, "synthetic")
    if train is not None:
        train = expect_kind(train, UserMobility, "training")
    notes: list[str] = []
    check_step(real, synthetic, train)
    period, weeks, steps_per_day = align_time(real, synthetic, train, notes)
    stations = real.stations
    real_locations = real.locations[:, : weeks * period].reshape(-1, period)
    generated_locations = _relabel(synthetic, stations, "synthetic")
    has_coordinates = stations.has_coordinates

    table: dict[str, dict[str, dict[str, Any]]] = {}
    trajectory: dict[str, dict[str, Any]] = {}
    lat, lon = stations.trajectory_coordinates()
    jsds, reason = attempt(
        lambda: metrics.trajectory_jsds(real_locations, generated_locations, lat, lon, bins=bins)
    )
    for name in TRAJECTORY_STATISTICS if has_coordinates else COORDINATE_FREE:
        trajectory[name] = {"value": jsds[name]} if reason is None else {"value": None, "reason": reason}
    if reason is not None:
        notes.append(f"trajectory metrics not computed: {reason}")
    if not has_coordinates:
        notes.append(
            "The stations table has no coordinates: the jump-distance and radius-of-gyration JSDs, the "
            "trajectory maps and the station map are left out."
        )
    table["trajectory"] = trajectory

    real_traffic = generated_traffic = traffic_scale = None
    if real.has_traffic and synthetic.has_traffic:
        reference = train if train is not None and train.has_traffic else real
        traffic_scale = float(reference.traffic.max())
        if traffic_scale <= 0:
            raise DataError("user traffic is zero everywhere in the reference data; nothing to normalise by")
        real_traffic = (
            real.traffic[:, : weeks * period].reshape(-1, period).astype(np.float64) / traffic_scale
        )
        generated_traffic = synthetic.traffic.astype(np.float64) / traffic_scale
        note_outsized("traffic", generated_traffic, real_traffic, notes)
        # MSTDiff's table reports the value and first-difference JSDs and the daily-cycle RMSE; the other
        # distribution metrics of station traffic come along, as users are never paired.
        table["traffic"] = traffic_scores(
            real_traffic,
            generated_traffic[:, None, :],
            unit=traffic_scale,
            steps_per_day=steps_per_day,
            paired=False,
            bins=bins,
            compat=compat,
            notes=notes,
            group="traffic",
        )
    elif real.has_traffic or synthetic.has_traffic:
        which = "real" if real.has_traffic else "synthetic"
        notes.append(f"Only the {which} users have traffic: the traffic metrics are left out.")

    memorisation = None
    if train is not None:
        memorisation = _user_memorisation(
            real, synthetic, train, stations, period, weeks, traffic_scale, generated_locations, notes
        )

    comparison = {
        "real": _describe_users(real),
        "synthetic": _describe_users(synthetic),
        "train": None if train is None else _describe_users(train),
        "period_steps": period,
        "period": span_in_words(period, real.step),
        "real_periods": weeks,
        "steps_per_day": steps_per_day,
        "paired": False,
        "coordinates": has_coordinates,
        "normalisation": None
        if traffic_scale is None
        else {
            "by": "maximum of the "
            + ("training" if train is not None and train.has_traffic else "real")
            + " users' traffic",
            "maximum": traffic_scale,
        },
        "bins": int(bins),
        "compat": bool(compat),
        "protocol": _user_protocol(real, synthetic, period, weeks, has_coordinates, traffic_scale, train),
    }
    aligned = UserComparison(
        stations=stations,
        real_locations=real_locations,
        generated_locations=generated_locations,
        real_traffic=real_traffic,
        generated_traffic=generated_traffic,
        traffic_scale=traffic_scale,
        steps_per_day=steps_per_day,
        step=real.step,
        start=real.start,
        memorisation=memorisation,
    )
    return Evaluation(
        kind="user_mobility",
        metrics=table,
        comparison=comparison,
        memorisation=memorisation_summary(memorisation),
        notes=tuple(notes),
        aligned=aligned,
    )


def _relabel(users: UserMobility, stations: Stations, role: str) -> np.ndarray:
    """``users.locations`` as indices into ``stations`` (matched by station id)."""
    visited = np.unique(users.locations)
    try:
        index = stations.index_of(users.stations.ids[visited])
    except DataError as err:
        raise DataError(
            f"the {role} users visit stations that the real stations table does not have ({err}); evaluate "
            "users over the same stations",
            source=users.source,
        ) from None
    lookup = np.zeros(len(users.stations), dtype=np.int64)
    lookup[visited] = index
    return lookup[users.locations]


def _user_memorisation(
    real, synthetic, train, stations, period, weeks, traffic_scale, generated_locations, notes
) -> dict[str, Any] | None:
    """Memorisation on user-weeks: station positions (km) per step, else normalised traffic."""
    held_out = ~np.isin(np.array(real.user_ids), np.array(train.user_ids))
    if stations.has_coordinates:
        # [L, 2] km east and north of the stations' mean position; only differences matter.
        xy = np.stack(local_km(stations.lat, stations.lon, stations.lat.mean(), stations.lon.mean()), axis=1)
        train_weeks = train.n_steps // period
        train_series = xy[
            _relabel(train, stations, "training")[:, : train_weeks * period].reshape(-1, period)
        ]
        held_out_series = xy[real.locations[held_out, : weeks * period].reshape(-1, period)]
        generated_series = xy[generated_locations]
        series = "one user-week as the positions (km) of the stations visited at each step, flattened"
    elif traffic_scale is not None and train.has_traffic:
        train_weeks = train.n_steps // period
        train_series = train.traffic[:, : train_weeks * period].reshape(-1, period) / traffic_scale
        held_out_series = real.traffic[held_out, : weeks * period].reshape(-1, period) / traffic_scale
        generated_series = synthetic.traffic / traffic_scale
        series = "one user-week of traffic, normalised (no station coordinates)"
    else:
        notes.append("Memorisation check skipped: it needs station coordinates or traffic on every side.")
        return None
    return run_memorisation(
        train_series,
        held_out_series,
        generated_series,
        series=series,
        held_out_what="real users that are not training users (by user id)",
        notes=notes,
    )


def _user_protocol(real, synthetic, period, weeks, has_coordinates, traffic_scale, train) -> list[str]:
    span = span_in_words(period, real.step)
    lines = [
        f"Generated users are {span} long"
        + (
            f"; real users were cut into {weeks} consecutive user-weeks of {span}, each one compared as a user."
            if weeks > 1
            else "; so are the real ones."
        ),
        "Users are not paired: the trajectory statistics of all real users are compared with those of all "
        "generated users, as distributions (JSD, base 2).",
        "Trajectory statistics use the real stations table"
        + ("'s coordinates." if has_coordinates else ", which has no coordinates: distances are left out."),
    ]
    if traffic_scale is not None:
        lines.append(
            "User traffic is divided by the maximum of the "
            + ("training" if train is not None and train.has_traffic else "real")
            + " users' traffic and compared as distributions (values, step-to-step changes, daily cycle)."
        )
    if train is not None:
        lines.append(
            "Memorisation: each generated user-week is compared with the closest training user-week and the "
            "closest held-out real user-week."
        )
    else:
        lines.append("No training users given: no memorisation check.")
    return lines


def _describe_users(data: UserMobility) -> dict[str, Any]:
    return {
        "shape": list(data.locations.shape),
        "users": data.n_users,
        "steps": data.n_steps,
        "stations": len(data.stations),
        "traffic": data.has_traffic,
        "step": format_step(data.step),
        "start": data.start.isoformat(),
        "coordinates": data.stations.has_coordinates,
        "source": data.source,
    }
