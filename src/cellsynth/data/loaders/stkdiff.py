"""The STK-Diff Beijing base-station set (``beijing.npz``): one week of hourly traffic per station.

The archive holds ``bs_record`` ``[N, T]`` (hourly traffic volume, units undocumented) and, optionally,
``bs_kge`` ``[N, F]`` (a knowledge-graph embedding per station, which becomes the features ``kge_0..``).
There are no coordinates and no station names: ids are the row numbers ``"0" .. "N-1"``.

The source does not say which weekday the first hour is. The default ``start`` is a placeholder Monday,
2026-01-05 00:00 in Asia/Shanghai, so that weekly models see *a* weekday; pass the real start if you know it.
"""

from __future__ import annotations

import os

import pandas as pd

from cellsynth.data.loaders._common import PLACEHOLDER_MONDAY, as_start, existing_file, source_name
from cellsynth.data.loaders._npz import embedding_stations, read_npz, series_matrix
from cellsynth.data.model import StationTraffic

__all__ = ["DEFAULT_START", "load_stkdiff"]

DEFAULT_START = pd.Timestamp(PLACEHOLDER_MONDAY, tz="Asia/Shanghai")


def load_stkdiff(
    path: str | os.PathLike,
    *,
    start: str | pd.Timestamp = DEFAULT_START,
    tz: str = "Asia/Shanghai",
    step: str | pd.Timedelta = "1h",
    channel: str = "traffic",
    record_key: str = "bs_record",
    features_key: str | None = "bs_kge",
) -> StationTraffic:
    """Read an STK-Diff ``.npz`` as :class:`StationTraffic` with one channel (``channel``).

    ``start`` is the first hour (naive values are local time in ``tz``; the default is a documented
    placeholder Monday, see the module docstring). ``features_key`` names the station-feature matrix (columns
    ``kge_0..``); it may be absent from the archive, or set to None to ignore it. Missing keys, wrong shapes and
    NaN or negative traffic raise :class:`DataError` naming the file.
    """
    path = existing_file(path)
    src = source_name(path)
    start = as_start(start, tz, source=src)
    arrays, keys = read_npz(path, src, (record_key, features_key))
    record = series_matrix(arrays, record_key, keys, src, axes="[stations, hours]")
    kge = arrays.get(features_key) if features_key is not None else None
    stations = embedding_stations(record.shape[0], kge, what=str(features_key), rows_of=record_key, src=src)
    # The model checks NaN/infinite/negative values and names the station and hour; float64 -> float32 there.
    return StationTraffic(
        values=record[:, :, None],
        start=start,
        step=pd.Timedelta(step),
        channels=(channel,),
        stations=stations,
        source=src,
    )
