"""The MobiFM station sets (``NJTCH.npz``, ``NJUCH.npz`` ...): one series per station, its time axis, and a
knowledge-graph embedding per station in a separate ``.npy``.

The archive holds ``data`` ``[N, T]`` (one quantity per station and step: traffic volume in ``..T..`` sets,
number of users in ``..U..`` sets; units undocumented) and ``time`` ``[N, T, 2]`` integers, the
``[day of week 0-6, hour 0-23]`` of each step. ``kg_embeddings_<NAME>.npy`` is ``[N, F]`` (or ``[N, 1, F]``,
as the source's README describes it), F = 256: it becomes the station features ``kge_0 ..``. There are no
coordinates and no station names: ids are the row numbers ``"0" .. "N-1"``.

The step and the first step's place in the week are read from ``time``; which weekday its day 0 is, is not
documented. The default ``start`` puts day 0 on a placeholder Monday, 2026-01-05 in Asia/Shanghai, so that
weekly models see *a* weekday; pass the real first step if you know it.
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from cellsynth.data.loaders._common import PLACEHOLDER_MONDAY, as_start, existing_file, source_name
from cellsynth.data.loaders._npz import embedding_stations, read_npy, read_npz, series_matrix
from cellsynth.data.model import StationTraffic, format_duration
from cellsynth.errors import DataError

__all__ = ["load_mobifm"]

_HOUR = pd.Timedelta("1h")
_WEEK_HOURS = 7 * 24
# MobiFM names its sets <city><T|U><C|G><H|M30>: NJTCH = Nanjing traffic per cell, hourly; NJUCH = users.
_SET_NAME = re.compile(r"^[A-Z]{2}(?P<quantity>[TU])[A-Z](?:H|M\d+)$")
_QUANTITIES = {"T": "traffic", "U": "users"}


def load_mobifm(
    path: str | os.PathLike,
    embeddings: str | os.PathLike | None = None,
    *,
    channel: str | None = None,
    start: str | pd.Timestamp | None = None,
    tz: str = "Asia/Shanghai",
    step: str | pd.Timedelta | None = None,
    data_key: str = "data",
    time_key: str = "time",
) -> StationTraffic:
    """Read a MobiFM ``.npz`` (and its embeddings ``.npy``) as :class:`StationTraffic` with one channel.

    Parameters
    ----------
    path:
        The archive: ``data`` ``[N, T]``, ``time`` ``[N, T, 2]`` (day of week, hour), the same for every row.
    embeddings:
        ``kg_embeddings_<NAME>.npy``, ``[N, F]`` or ``[N, 1, F]``: station features ``kge_0 ..``. None: no
        features.
    channel:
        Name of the channel. Default: from a MobiFM set name (``NJTCH`` -> ``"traffic"``, ``NJUCH`` ->
        ``"users"``); any other file name needs it.
    start:
        Timestamp of the first step (naive: local time in ``tz``); its hour of day must be the one ``time``
        gives. Default: day 0 of ``time`` is the placeholder Monday 2026-01-05, so the first step is that
        Monday plus ``24 * day + hour`` hours.
    step:
        Default: read from ``time`` (the constant difference, in hours, between consecutive steps; needed for
        a single step, or data finer than an hour, whose ``time`` repeats an hour). Either way every step of
        ``time`` must be where a regular axis of this step puts it.

    Raises :class:`DataError` naming the file and the array, station row and step, for: missing arrays,
    shapes that do not match, a day outside 0-6 or an hour outside 0-23, rows with different time axes, an
    irregular time axis, a ``start`` at another hour, NaN or negative values.
    """
    path = existing_file(path)
    src = source_name(path)
    channel = channel if channel is not None else _channel_from_name(path, src)
    arrays, names = read_npz(path, src, (data_key, time_key))
    data = series_matrix(arrays, data_key, names, src)
    if time_key not in arrays:
        raise DataError(f"no array {time_key!r} in the archive (arrays: {names})", source=src)
    hours = _hours_of_week(arrays[time_key], data.shape, data_key=data_key, time_key=time_key, src=src)
    step = _step(hours, step, time_key=time_key, src=src)
    day, hour = divmod(int(hours[0]), 24)
    if start is None:
        start = as_start(PLACEHOLDER_MONDAY, tz, source=src) + pd.Timedelta(hours=int(hours[0]))
    else:
        start = as_start(start, tz, source=src)
        if start.hour != hour:
            raise DataError(
                f"start {start} is at hour {start.hour}, but {time_key} puts the first step at hour {hour} "
                f"(day {day}); pass a start at that hour",
                source=src,
            )
    _check_axis(hours, step, start - start.floor("h"), time_key=time_key, src=src)

    if embeddings is None:
        stations = embedding_stations(data.shape[0], None, what="", rows_of=data_key, src=src)
    else:
        emb_path = existing_file(embeddings)
        emb_src = source_name(emb_path)
        emb = read_npy(emb_path, emb_src)
        if emb.ndim == 3 and emb.shape[1] == 1:  # [N, 1, F], the layout the source's README describes
            emb = emb[:, 0, :]
        stations = embedding_stations(
            data.shape[0], emb, what="the embedding", rows_of=f"{data_key} in {src}", src=emb_src
        )
    # The model checks NaN/infinite/negative values and names the station and step; float64 -> float32 there.
    return StationTraffic(
        values=data[:, :, None], start=start, step=step, channels=(channel,), stations=stations, source=src
    )


def _channel_from_name(path, src: str) -> str:
    stem = os.path.basename(path).split(".")[0]
    match = _SET_NAME.match(stem)
    if match is None:
        raise DataError(
            f"cannot tell the channel from the file name {stem!r} (MobiFM sets are named like NJTCH for traffic "
            "and NJUCH for users); name it: channel='traffic' (--channel traffic on the command line)",
            source=src,
        )
    return _QUANTITIES[match["quantity"]]


def _hours_of_week(time: np.ndarray, shape: tuple[int, int], *, data_key: str, time_key: str, src: str):
    """``int64 [T]``: hour of the week ``24 * day + hour`` of each step, after checking ``time``."""
    if time.shape != (*shape, 2):
        raise DataError(
            f"{time_key} has shape {time.shape}, expected {(*shape, 2)}: [day of week, hour] for every station "
            f"and step of {data_key} {shape}",
            source=src,
        )
    if not np.issubdtype(time.dtype, np.integer):
        raise DataError(
            f"{time_key} has dtype {time.dtype}, expected integers (day of week, hour)", source=src
        )
    differs = (time != time[:1]).any(axis=2)
    if differs.any():
        row, t = (int(i) for i in np.argwhere(differs)[0])
        raise DataError(
            f"{time_key} of station row {row} differs from row 0 at step {t} ({time[row, t].tolist()} vs "
            f"{time[0, t].tolist()}); every station must share one time axis",
            source=src,
        )
    day, hour = time[0, :, 0].astype(np.int64), time[0, :, 1].astype(np.int64)
    for name, values, limit in (("day of week", day, 7), ("hour", hour, 24)):
        bad = (values < 0) | (values >= limit)
        if bad.any():
            t = int(bad.argmax())
            raise DataError(
                f"{time_key} at step {t} has {name} {values[t]}, outside 0-{limit - 1} "
                f"(expected [day of week 0-6, hour 0-23])",
                source=src,
            )
    return 24 * day + hour


def _step(hours: np.ndarray, step, *, time_key: str, src: str) -> pd.Timedelta:
    """The given step, or the constant number of hours between consecutive steps of ``time``."""
    if step is not None:
        try:
            step = pd.Timedelta(step)
        except ValueError as err:
            raise DataError(
                f"step {step!r} is not a duration (e.g. '1h', '30min'): {err}", source=src
            ) from err
        if step <= pd.Timedelta(0):
            raise DataError(f"step must be a positive duration, got {step}", source=src)
        return step
    if len(hours) == 1:
        raise DataError(f"{time_key} has a single step, which has no step of its own: pass step=", source=src)
    gaps = (hours[1:] - hours[:-1]) % _WEEK_HOURS  # a new week starts again at day 0
    if gaps[0] == 0:
        raise DataError(
            f"{time_key} repeats the hour of step 0 at step 1: the data is finer than an hour, which "
            "[day, hour] cannot say; pass the step (e.g. step='30min', --step 30min)",
            source=src,
        )
    return int(gaps[0]) * _HOUR


def _check_axis(
    hours: np.ndarray, step: pd.Timedelta, past_the_hour: pd.Timedelta, *, time_key: str, src: str
) -> None:
    """Every step where a regular axis of ``step`` from the first one puts it, in the week's hours.

    The first step starts ``past_the_hour`` (minutes) into hour ``hours[0]`` of the week, so step ``t`` lies in
    hour ``hours[0] + floor((past_the_hour + t * step) / 1h) mod 168``.
    """
    t = np.arange(len(hours), dtype=np.int64)
    expected = (hours[0] + (past_the_hour.value + t * step.value) // _HOUR.value) % _WEEK_HOURS
    wrong = expected != hours
    if wrong.any():
        k = int(wrong.argmax())
        every = format_duration(step)

        def label(h):
            return f"[{h // 24}, {h % 24}]"

        raise DataError(
            f"{time_key} is not a regular axis of step {every}: step {k} is {label(hours[k])} (day, hour), but "
            f"{k} step(s) of {every} after {label(hours[0])} is {label(expected[k])} ({int(wrong.sum())} step(s) "
            "off); a gap or a repeated step? pass step= if the step is not the one between its first two steps",
            source=src,
        )
