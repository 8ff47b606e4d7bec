"""What both evaluations share: the checks that real, synthetic and training data agree, cutting the real data
into periods of the generated length, and durations in words for the output."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cellsynth.data.model import StationTraffic, UserMobility
from cellsynth.errors import DataError

__all__ = ["align_time", "check_bins", "check_step", "expect_kind", "format_step", "span_in_words"]


def _kind_name(data: object) -> str:
    if isinstance(data, StationTraffic):
        return "station traffic"
    if isinstance(data, UserMobility):
        return "user mobility"
    return f"a {type(data).__name__}"


def expect_kind(data: object, kind: type, role: str):
    if not isinstance(data, kind):
        wanted = "station traffic" if kind is StationTraffic else "user mobility"
        raise DataError(
            f"the {role} data is {_kind_name(data)} but {wanted} was expected: real, synthetic and training "
            "data must be of the same kind (all station traffic, or all user mobility)"
        )
    return data


def check_bins(bins) -> None:
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise DataError(f"bins must be a positive whole number of histogram bins, got {bins!r}")


def check_step(real, synthetic, train) -> None:
    for role, data in (("synthetic", synthetic), ("training", train)):
        if data is not None and data.step != real.step:
            raise DataError(
                f"the {role} data has a time step of {format_step(data.step)} but the real data has "
                f"{format_step(real.step)}; resample one of them so that both have the same step",
                source=data.source,
            )


def align_time(real, synthetic, train, notes: list[str]) -> tuple[int, int, int]:
    """``(period, real periods, steps per day)``: real data is compared in periods of the generated length."""
    period = synthetic.n_steps
    try:
        steps_per_day = real.steps_per("1D")
    except DataError:
        raise DataError(
            f"the time step {format_step(real.step)} does not divide a day; the daily metrics need a whole "
            "number of steps per day"
        ) from None
    if period % steps_per_day:
        raise DataError(
            f"the synthetic series have {period} steps of {format_step(real.step)}, not a whole number of "
            "days; the daily metrics need whole days",
            source=synthetic.source,
        )
    if real.n_steps < period:
        raise DataError(
            f"the real data has {real.n_steps} steps but each synthetic series has {period}: real data must "
            "span at least one generated series (generate as many steps as the real data has, or fewer)",
            source=real.source,
        )
    weeks = real.n_steps // period
    left = real.n_steps - weeks * period
    if left:
        notes.append(
            f"The real data's last {left} step(s) do not fill a whole period of "
            f"{span_in_words(period, real.step)} and are left out."
        )
    if train is not None:
        if train.n_steps < period:
            raise DataError(
                f"the training data has {train.n_steps} steps, less than one generated series ({period})",
                source=train.source,
            )
        train_left = train.n_steps % period
        if train_left:
            notes.append(
                f"The training data's last {train_left} step(s) do not fill a whole period and are left out of "
                "the memorisation check."
            )
    offset = ((synthetic.start - real.start) / real.step) % period
    if offset:
        notes.append(
            f"The generated series start at {_when(synthetic.start)}, the real periods at {_when(real.start)}: "
            "series are compared step by step, so this shift of "
            f"{format_step(real.step * int(offset))} counts as error in the profile and paired metrics."
        )
    return period, weeks, steps_per_day


def format_step(step: pd.Timedelta) -> str:
    minutes = step / pd.Timedelta("1min")
    if minutes == int(minutes) and minutes >= 60 and minutes % 60 == 0:
        return f"{int(minutes // 60)} h"
    if minutes == int(minutes):
        return f"{int(minutes)} min"
    return str(step)


def span_in_words(steps: int, step: pd.Timedelta) -> str:
    """A duration in words: "one week", "2 weeks", "3 days", "36 h"."""
    total = step * steps
    week, day = pd.Timedelta("7D"), pd.Timedelta("1D")
    if total % week == pd.Timedelta(0):
        n = total // week
        return "one week" if n == 1 else f"{n} weeks"
    if total % day == pd.Timedelta(0):
        n = total // day
        return "one day" if n == 1 else f"{n} days"
    return f"{total / pd.Timedelta('1h'):g} h"


def _when(ts: pd.Timestamp) -> str:
    return ts.strftime("%a %Y-%m-%d %H:%M %Z")
