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
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from cellsynth.data.loaders._common import (
    FLOAT32_MAX,
    GZIP_SIGNATURE,
    PLACEHOLDER_MONDAY,
    as_start,
    existing_file,
    float32_overflow,
    source_name,
)
from cellsynth.data.model import Stations, StationTraffic
from cellsynth.errors import DataError

__all__ = ["DEFAULT_START", "load_stkdiff"]

DEFAULT_START = pd.Timestamp(PLACEHOLDER_MONDAY, tz="Asia/Shanghai")


_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip
_NPY_SIGNATURE = b"\x93NUMPY"


def _read_npz(path: Path, wanted) -> tuple[dict[str, np.ndarray], list[str]]:
    """The ``wanted`` arrays of an ``.npz`` and the names of all its arrays, never unpickling anything.

    The file's first bytes are checked first: numpy would take any other file for a pickle, and its advice
    (``allow_pickle=True``) would run code from the file.
    """
    src = source_name(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_NPY_SIGNATURE):
        raise DataError("is a single .npy array, not an .npz archive of named arrays", source=src)
    if head.startswith(GZIP_SIGNATURE):
        raise DataError("is gzip-compressed: decompress it (gunzip) to get the .npz archive", source=src)
    if not head.startswith(_ZIP_SIGNATURES):
        raise DataError(
            f"is not an .npz archive (a zip of .npy arrays; the file starts with {head!r}): download it again",
            source=src,
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = sorted(archive.files)
            arrays = {key: archive[key] for key in keys if key in wanted}
    except (zipfile.BadZipFile, EOFError, zlib.error, OSError) as err:
        raise DataError(f"is not a complete .npz archive ({err}): download it again", source=src) from err
    except ValueError as err:
        if "pickle" in str(err) or "Object arrays" in str(err):  # numpy refuses arrays that need unpickling
            raise DataError(
                f"holds an array of Python objects, which cellsynth never unpickles ({err}); save the arrays "
                "with a numeric dtype",
                source=src,
            ) from err
        raise DataError(f"cannot read the .npz archive: {err}", source=src) from err
    return arrays, keys


def _check_float32(array: np.ndarray, name: str, where: str, src: str) -> None:
    """Finite values too large for float32 (the storage type) would become infinite: name the first."""
    if not np.issubdtype(array.dtype, np.floating):
        return  # integers never reach 3.4e38
    with np.errstate(invalid="ignore"):
        too_large = np.isfinite(array) & (np.abs(array) > FLOAT32_MAX)
    if too_large.any():
        i, j = np.argwhere(too_large)[0]
        raise DataError(
            f"{name}[{i}, {j}] ({where.format(i, j)}): {float32_overflow(float(array[i, j]))}", source=src
        )


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
    NaN, negative or float32-overflowing traffic, and a file that is not a complete ``.npz`` raise
    :class:`DataError` naming the file.
    """
    path = existing_file(path)
    src = source_name(path)
    start = as_start(start, tz, source=src)
    arrays, keys = _read_npz(path, (record_key, features_key))
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
    _check_float32(record, record_key, "station {}, hour {}", src)
    if features is not None:
        _check_float32(features, features_key, "station {}, column {}", src)
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
