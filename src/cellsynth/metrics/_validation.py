"""Input checks shared by the metric functions.

Every metric validates its arrays here so that a wrong shape, an empty array or a NaN fails loudly with a
:class:`~cellsynth.errors.DataError` that names the function, the argument and the offending index, instead
of producing a silently wrong number.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from cellsynth.errors import DataError


def _where(function: str, name: str) -> str:
    return f"{function}({name})"


def float_array(
    values: ArrayLike,
    *,
    function: str,
    name: str,
    ndims: Sequence[int],
    layout: str,
    keep_float_dtype: bool = False,
) -> np.ndarray:
    """``values`` as a float64 array of one of ``ndims`` dimensions, non-empty and finite.

    ``layout`` describes the expected axes for the error message, e.g. ``"[N stations, T steps]"``.
    ``keep_float_dtype=True`` keeps an array that is already floating (float32 as loaded) as it is, for
    callers that convert it to float64 a block at a time.
    """
    source = _where(function, name)
    try:
        if keep_float_dtype and isinstance(values, np.ndarray) and values.dtype.kind == "f":
            array = values
        else:
            array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"cannot be read as a numeric array ({exc})", source=source) from exc
    if array.ndim not in ndims:
        if len(ndims) > 2:
            expected = f"an array with at least {min(ndims)} dimension(s)"
        else:
            expected = "a " + " or ".join(f"{d}-D" for d in ndims) + " array"
        raise DataError(
            f"expected {expected} {layout}, got {array.ndim}-D with shape {array.shape}", source=source
        )
    if array.size == 0:
        raise DataError(
            f"is empty (shape {array.shape}); expected {layout} with every axis > 0", source=source
        )
    # The minimum and the maximum are NaN if any value is, and reach any infinity: a check without a
    # temporary the size of the array, which is only made to report what is wrong.
    if not (np.isfinite(array.min()) and np.isfinite(array.max())):
        bad = ~np.isfinite(array)
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        kind = "NaN" if np.isnan(array[first]) else "infinite"
        raise DataError(
            f"contains {int(bad.sum())} non-finite value(s); the first is {kind} at index {first}",
            source=source,
        )
    return array


def location_array(locations: ArrayLike, *, function: str, name: str, n_locations: int | None) -> np.ndarray:
    """``locations`` as an int64 array [U users, T steps] of indices in ``[0, n_locations)``.

    ``n_locations=None`` checks only that indices are non-negative (statistics that need no coordinates).
    """
    source = _where(function, name)
    array = np.asarray(locations)
    if array.dtype.kind not in "iu":
        raise DataError(
            f"expected integer location indices, got dtype {array.dtype} (cast with .astype(int) if the "
            "values are whole numbers)",
            source=source,
        )
    if array.ndim != 2:
        raise DataError(
            f"expected a 2-D array [U users, T steps], got {array.ndim}-D with shape {array.shape}",
            source=source,
        )
    if array.size == 0:
        raise DataError(
            f"is empty (shape {array.shape}); expected [U users, T steps] with U, T > 0", source=source
        )
    out_of_range = (array < 0) if n_locations is None else (array < 0) | (array >= n_locations)
    if out_of_range.any():
        first = tuple(int(i) for i in np.argwhere(out_of_range)[0])
        allowed = (
            "non-negative" if n_locations is None else f"in [0, {n_locations}) (the stations in lat/lon)"
        )
        raise DataError(
            f"{int(out_of_range.sum())} location index(es) not {allowed}; the first is {int(array[first])} "
            f"at index {first}",
            source=source,
        )
    return array.astype(np.int64, copy=False)


def coordinates(lat: ArrayLike, lon: ArrayLike, *, function: str) -> tuple[np.ndarray, np.ndarray]:
    """Station latitudes and longitudes in degrees (WGS84), 1-D, equal length, finite and in range."""
    lat_array = float_array(lat, function=function, name="lat", ndims=(1,), layout="[L stations]")
    lon_array = float_array(lon, function=function, name="lon", ndims=(1,), layout="[L stations]")
    if lat_array.shape != lon_array.shape:
        raise DataError(
            f"lat has {lat_array.shape[0]} stations but lon has {lon_array.shape[0]}",
            source=f"{function}(lat, lon)",
        )
    for name, array, limit in (("lat", lat_array, 90.0), ("lon", lon_array, 180.0)):
        outside = np.abs(array) > limit
        if outside.any():
            first = int(np.argmax(outside))
            raise DataError(
                f"{int(outside.sum())} value(s) outside [-{limit:g}, {limit:g}] degrees; the first is "
                f"{array[first]} at station {first} (are lat and lon swapped?)",
                source=_where(function, name),
            )
    return lat_array, lon_array


def require(condition: bool, message: str, *, function: str, name: str) -> None:
    """Raise a :class:`DataError` for ``function(name)`` unless ``condition`` holds."""
    if not condition:
        raise DataError(message, source=_where(function, name))


def as_samples(generated: np.ndarray) -> np.ndarray:
    """A paired generated array as [N, K, T]: a 2-D [N, T] array is one sample per station (K = 1)."""
    return generated[:, np.newaxis, :] if generated.ndim == 2 else generated


def paired_generated(real: np.ndarray, generated: np.ndarray, *, function: str) -> np.ndarray:
    """Check that ``generated`` [N, K, T] or [N, T] pairs with ``real`` [N, T] or [N, W, T] (W periods of
    each station, every one paired with the station's samples); return it as [N, K, T]."""
    samples = as_samples(generated)
    n, steps = real.shape[0], real.shape[-1]
    require(
        samples.shape[0] == n and samples.shape[2] == steps,
        f"shape {generated.shape} does not pair with real {real.shape}: expected [N={n}, K, T={steps}] or "
        f"[N={n}, T={steps}] (station i of generated is compared with station i of real)",
        function=function,
        name="generated",
    )
    return samples
