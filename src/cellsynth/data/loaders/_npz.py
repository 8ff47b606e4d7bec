"""NumPy archives read safely, and embedding matrices as station features: shared by the STK-Diff and MobiFM
loaders."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Collection
from pathlib import Path

import numpy as np

from cellsynth.data.loaders._common import FLOAT32_MAX, GZIP_SIGNATURE, float32_overflow
from cellsynth.data.model import Stations
from cellsynth.errors import DataError

__all__ = ["check_float32", "embedding_stations", "read_npy", "read_npz", "series_matrix"]


def _load(path: Path, src: str):
    try:
        # allow_pickle=False: a file from the internet must never run code when loaded.
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read the NumPy file: {err}", source=src) from err


_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip
_NPY_SIGNATURE = b"\x93NUMPY"


def read_npz(path: Path, src: str, keys: Collection[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays of an ``.npz`` archive whose names are in ``keys`` (absent ones are left out), and the names
    of every array in it (for messages), never unpickling anything.

    The file's first bytes are checked first: numpy would take any other file for a pickle, and its advice
    (``allow_pickle=True``) would run code from the file.
    """
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
            names = sorted(archive.files)
            return {key: archive[key] for key in names if key in keys}, names
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


def check_float32(array: np.ndarray, name: str, where: str, src: str | None) -> None:
    """Finite values too large for float32 (the storage type) would become infinite: name the first.
    ``where`` formats the index for people, e.g. ``"station {}, hour {}"``."""
    if not np.issubdtype(array.dtype, np.floating) or array.dtype.itemsize <= 4:
        return  # integers, float16 and float32 never exceed float32's range
    with np.errstate(invalid="ignore"):
        too_large = np.isfinite(array) & (np.abs(array) > FLOAT32_MAX)
    if too_large.any():
        index = tuple(int(i) for i in np.argwhere(too_large)[0])
        raise DataError(
            f"{name}[{', '.join(map(str, index))}] ({where.format(*index)}): "
            f"{float32_overflow(float(array[index]))}",
            source=src,
        )


def series_matrix(
    arrays: dict[str, np.ndarray],
    key: str,
    names: list[str],
    src: str,
    *,
    axes: str = "[stations, steps]",
    where: str = "station {}, step {}",
) -> np.ndarray:
    """The 2-D number matrix ``arrays[key]`` (``axes`` says which, for messages) of an archive whose arrays are
    ``names``."""
    if key not in arrays:
        raise DataError(f"no array {key!r} in the archive (arrays: {names})", source=src)
    matrix = arrays[key]
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise DataError(f"{key} must be {axes}, got shape {matrix.shape}", source=src)
    if not np.issubdtype(matrix.dtype, np.number):
        raise DataError(f"{key} has dtype {matrix.dtype}, expected numbers", source=src)
    check_float32(matrix, key, where, src)
    return matrix


def read_npy(path: Path, src: str) -> np.ndarray:
    """The single array of an ``.npy`` file."""
    loaded = _load(path, src)
    if isinstance(loaded, np.lib.npyio.NpzFile):
        loaded.close()
        raise DataError("is an .npz archive, expected a single .npy array", source=src)
    return loaded


def embedding_stations(
    n: int, embedding: np.ndarray | None, *, what: str, rows_of: str, src: str | None
) -> Stations:
    """Stations ``"0" .. "n-1"`` (row numbers; these sources have no names or coordinates) whose features are
    the columns of ``embedding`` ``[n, F]``, named ``kge_0 .. kge_{F-1}``; no features when it is None.

    ``what`` names the embedding and ``rows_of`` the array whose rows it must match, for messages.
    """
    features, names = None, ()
    if embedding is not None:
        if embedding.ndim != 2 or embedding.shape[0] != n:
            raise DataError(
                f"{what} has shape {embedding.shape}, expected ({n}, F): one row per station of {rows_of}",
                source=src,
            )
        if not np.issubdtype(embedding.dtype, np.number):
            raise DataError(f"{what} has dtype {embedding.dtype}, expected numbers", source=src)
        check_float32(embedding, what, "station {}, column {}", src)
        features = embedding
        names = tuple(f"kge_{j}" for j in range(embedding.shape[1]))
    return Stations(ids=np.arange(n).astype(str), features=features, feature_names=names, source=src)
