"""The STK-Diff Beijing base-station set (``beijing.npz``): one week of hourly traffic per station.

The archive holds ``bs_record`` ``[N, T]`` (hourly traffic volume, units undocumented) and, optionally,
``bs_kge`` ``[N, F]`` (a knowledge-graph embedding per station, which becomes the features ``kge_0..``).
There are no coordinates and no station names: ids are the row numbers ``"0" .. "N-1"``.

The source does not say which weekday the first hour is. The default ``start`` is a placeholder Monday,
2026-01-05 00:00 in Asia/Shanghai, so that weekly models see *a* weekday; pass the real start if you know it.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pandas as pd

from cellsynth.data.loaders._common import PLACEHOLDER_MONDAY, as_start, existing_file, source_name
from cellsynth.data.model import Stations, StationTraffic
from cellsynth.errors import DataError

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
    try:
        # allow_pickle=False: an .npz from the internet must never run code when loaded.
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DataError("is a single .npy array, not an .npz archive of named arrays", source=src)
        with loaded as archive:
            keys = sorted(archive.files)
            arrays = {key: archive[key] for key in keys if key in (record_key, features_key)}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"cannot read the .npz archive: {err}", source=src) from err
    if record_key not in arrays:
        raise DataError(f"no array {record_key!r} in the archive (arrays: {keys})", source=src)
    record = arrays[record_key]
    kge = arrays.get(features_key) if features_key is not None else None
    if record.ndim != 2 or 0 in record.shape:
        raise DataError(f"{record_key} must be [stations, hours], got shape {record.shape}", source=src)
    if not np.issubdtype(record.dtype, np.number):
        raise DataError(f"{record_key} has dtype {record.dtype}, expected numbers", source=src)
    n = record.shape[0]
    features, names = None, ()
    if kge is not None:
        if kge.ndim != 2 or kge.shape[0] != n:
            raise DataError(
                f"{features_key} has shape {kge.shape}, expected ({n}, F): one row per station of {record_key}",
                source=src,
            )
        features = kge
        names = tuple(f"kge_{j}" for j in range(kge.shape[1]))
    stations = Stations(ids=np.arange(n).astype(str), features=features, feature_names=names, source=src)
    # The model checks NaN/infinite/negative values and names the station and hour; float64 -> float32 there.
    return StationTraffic(
        values=record[:, :, None],
        start=start,
        step=pd.Timedelta(step),
        channels=(channel,),
        stations=stations,
        source=src,
    )
