"""Working through a set of series a chunk of rows at a time: the one mechanism that bounds the metrics'
temporaries by the chunk, whatever the number of stations (docs/scale.md, "Evaluating at Milan size").

A metric that sums over series, counts a histogram, or computes something per series takes its full-size
intermediate arrays (differences, logarithms, spectra, quantile copies, day pairs) of one chunk at a time and
adds the chunks up; only the inputs themselves and per-series results (one number per series, or per sample)
grow with the data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

#: Series per chunk. A chunk's temporaries are each about ``8 * CHUNK_ROWS * T`` bytes per value a row holds
#: (``K`` samples of ``T`` steps for the paired metrics' stations): 2.8 MB for a week of hourly steps.
CHUNK_ROWS = 2048


def row_chunks(rows: int, series_per_row: int = 1) -> Iterator[slice]:
    """Slices of ``range(rows)`` holding at most :data:`CHUNK_ROWS` series each (at least one row), where
    each row holds ``series_per_row`` series (a station's real weeks, say)."""
    size = max(1, CHUNK_ROWS // series_per_row)
    for start in range(0, rows, size):
        yield slice(start, min(start + size, rows))


def series_rows(values: np.ndarray) -> np.ndarray:
    """``values`` [..., T] as [S, T], one series a row (a view when ``values`` is contiguous)."""
    return values.reshape(-1, values.shape[-1])


def series_chunks(values: np.ndarray) -> Iterator[np.ndarray]:
    """``values`` [..., T] as chunks of at most :data:`CHUNK_ROWS` series, each [n, T]."""
    series = series_rows(values)
    for rows in row_chunks(len(series)):
        yield series[rows]


def map_series(function: Callable[[np.ndarray], np.ndarray], values: np.ndarray) -> np.ndarray:
    """``function(values)`` for a ``function`` that works series by series along the last axis and keeps the
    leading axes (``[n, ..., T] -> [n, ...]``), applied to chunks along the first axis and the results
    concatenated: the same array, with ``function``'s temporaries the size of a chunk."""
    if values.ndim < 2 or len(values) == 0:
        return function(values)
    series_per_row = int(np.prod(values.shape[1:-1]))
    parts = [function(values[rows]) for rows in row_chunks(len(values), series_per_row)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts)
