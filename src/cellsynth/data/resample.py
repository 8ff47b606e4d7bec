"""Station traffic aggregated to a coarser time step (``cellsynth data resample``).

Traffic volumes and counts add up over time, so a coarse step holds the **sum** of the ``k = step / old step``
fine steps it covers, never their mean:

    coarse[n, j, c] = sum_{i = 0}^{k - 1} fine[n, j * k + i, c]

and it is marked repaired where any of those fine steps was. The coarse steps start at the data's own start
(not at clock boundaries); stations, channels and the start are kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellsynth.data.model import StationTraffic, UserMobility, format_duration
from cellsynth.errors import ConfigError, DataError

__all__ = ["resample"]


def resample(
    traffic: StationTraffic, step: str | pd.Timedelta, *, drop_partial: bool = False
) -> StationTraffic:
    """``traffic`` summed into steps of ``step``, a whole multiple of its own step (the same step: unchanged).

    The series length must be a whole number of new steps; otherwise :class:`DataError` says how many trailing
    steps are left over, and ``drop_partial=True`` drops them (the dropped count is
    ``(traffic.end - result.end) / traffic.step``). A step that is finer than the data's, or not a whole multiple
    of it, raises :class:`ConfigError`; so does user mobility, whose locations cannot be summed.
    """
    if isinstance(traffic, UserMobility):
        raise ConfigError(
            "resample aggregates station traffic only; this is user mobility (trajectories), whose location per "
            "step cannot be summed into a coarser step"
        )
    if not isinstance(traffic, StationTraffic):
        raise ConfigError(f"resample needs a cellsynth.data.StationTraffic, got {type(traffic).__name__}")
    new = _as_step(step)
    old = traffic.step
    if new < old or new.value % old.value:
        finer = new < old
        raise ConfigError(
            f"cannot resample data at a {format_duration(old)} step to {format_duration(new)}: "
            + (
                "resampling only aggregates, to a coarser step"
                if finer
                else "that is not a whole multiple of it"
            )
            + f"; choose a multiple of {format_duration(old)}, such as {format_duration(2 * old)} or "
            f"{format_duration(6 * old)}"
        )
    factor = new.value // old.value
    steps = traffic.n_steps
    left_over = steps % factor
    if steps < factor:
        raise DataError(
            f"the data has {steps} step(s) of {format_duration(old)}, less than one step of "
            f"{format_duration(new)}",
            source=traffic.source,
        )
    if left_over and not drop_partial:
        first_left = traffic.start + old * (steps - left_over)
        raise DataError(
            f"{steps} steps of {format_duration(old)} are not a whole number of {format_duration(new)} steps "
            f"({factor} each): the last {left_over} step(s), from {first_left}, would be left over; drop them "
            "explicitly with --drop-partial (drop_partial=True), or cut the data to a whole number of steps",
            source=traffic.source,
        )
    kept = steps - left_over
    n, _, c = traffic.values.shape
    # float64 sums: float32 would lose the low digits of large volumes.
    summed = traffic.values[:, :kept].reshape(n, kept // factor, factor, c).sum(axis=2, dtype=np.float64)
    repaired = None
    if traffic.repaired is not None:
        repaired = traffic.repaired[:, :kept].reshape(n, kept // factor, factor, c).any(axis=2)
    return StationTraffic(
        values=summed,
        start=traffic.start,
        step=new,
        channels=traffic.channels,
        stations=traffic.stations,
        repaired=repaired,
        source=traffic.source,
    )


def _as_step(step) -> pd.Timedelta:
    try:
        value = pd.Timedelta(step)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"step {step!r} is not a duration; write it like 1h, 30min or 1D") from err
    if pd.isna(value) or value <= pd.Timedelta(0):
        raise ConfigError(f"step {step!r} must be a positive duration, like 1h, 30min or 1D")
    return value
