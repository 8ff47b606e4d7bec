"""Shared histogram bins and the Jensen-Shannon divergence: the one place every JSD in cellsynth is computed.

Definitions (docs/metrics.md, "Histograms and the JSD"):

* Shared bins: ``bins`` equal-width bins spanning ``[min, max]`` of the *union* of both samples, so the two
  histograms describe the same intervals. (The published MSTDiff code bins each sample on its own
  range, which compares bin *k* of one set with a different interval of the other.)
* Reference bins (``reference=True``, the real-against-generated traffic metrics): ``bins`` equal-width bins
  spanning the *first* sample's (the real data's) ``[min, max]``, plus one bin below and one above it for
  the second sample's values out there. Every model is then scored on the same bins of the same real data;
  with shared bins a model's own extreme values set the bin width it is scored on (one value of 1e30
  puts every other value of both samples into the first bin, a JSD of about 0).
* JSD, base 2: with ``p``, ``q`` the normalised histograms and ``m = (p + q) / 2``,
  ``JSD(p, q) = 1/2 sum_i p_i log2(p_i / m_i) + 1/2 sum_i q_i log2(q_i / m_i)``, with ``0 log 0 = 0``.
  It is symmetric and lies in ``[0, 1]``: 0 for equal histograms, 1 for disjoint supports.
* Compat (``compat=True``): the published code's variant, each sample binned on its own range and the JS
  *distance* ``sqrt(JSD)`` (``scipy.spatial.distance.jensenshannon`` with ``base=2``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from numpy.typing import ArrayLike
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr

from cellsynth.metrics._validation import float_array, require

#: Default number of equal-width bins for continuous values (the published MSTDiff code uses 100 too).
DEFAULT_BINS = 100


def shared_bin_edges(x: ArrayLike, y: ArrayLike, bins: int = DEFAULT_BINS) -> np.ndarray:
    """``bins + 1`` equal-width edges spanning ``[min, max]`` of ``x`` and ``y`` together.

    ``edges = linspace(lo, hi, bins + 1)`` with ``lo = min(min x, min y)``, ``hi = max(max x, max y)``.
    When every value is the same (``lo == hi``) the range is widened to ``[lo - 0.5, lo + 0.5]`` so that both
    samples fall into one bin (and their JSD is 0) instead of producing a zero-width bin.
    """
    x_array = float_array(x, function="shared_bin_edges", name="x", ndims=range(1, 8), layout="of values")
    y_array = float_array(y, function="shared_bin_edges", name="y", ndims=range(1, 8), layout="of values")
    _check_bin_count(bins, "shared_bin_edges")
    return _equal_width_edges(min(x_array.min(), y_array.min()), max(x_array.max(), y_array.max()), bins)


def reference_bin_edges(reference: ArrayLike, bins: int = DEFAULT_BINS) -> np.ndarray:
    """``bins + 1`` equal-width edges spanning ``[min, max]`` of ``reference`` alone (widened to
    ``[v - 0.5, v + 0.5]`` when it is one value ``v``), the inner edges of :func:`histogram_jsd`'s
    ``reference=True`` bins."""
    array = float_array(
        reference, function="reference_bin_edges", name="reference", ndims=range(1, 8), layout="of values"
    )
    _check_bin_count(bins, "reference_bin_edges")
    return _equal_width_edges(array.min(), array.max(), bins)


def _equal_width_edges(lo: float, hi: float, bins: int) -> np.ndarray:
    """``linspace(lo, hi, bins + 1)``, widened to ``[lo - 0.5, lo + 0.5]`` when ``lo == hi``."""
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def integer_bin_edges(low: int, high: int) -> np.ndarray:
    """Edges of one unit-wide bin per integer ``low, low + 1, ..., high``: ``arange(low - 0.5, high + 1.5)``.

    Used for statistics that take whole-number values (stay lengths, distinct-location counts, hours), so
    each possible value is its own bin.
    """
    require(
        int(high) >= int(low),
        f"high ({high}) must be >= low ({low})",
        function="integer_bin_edges",
        name="high",
    )
    return np.arange(int(low) - 0.5, int(high) + 1.5, 1.0)


def js_divergence(p: ArrayLike, q: ArrayLike) -> float:
    """Jensen-Shannon divergence, base 2, of two non-negative weight vectors over the same bins.

    ``p`` and ``q`` are normalised to sum 1 first (counts are fine). With ``m = (p + q) / 2``::

        JSD(p, q) = 1/2 sum_i p_i log2(p_i / m_i) + 1/2 sum_i q_i log2(q_i / m_i),   0 log 0 = 0

    Returns a value in ``[0, 1]`` (clipped there against rounding).
    """
    p_array = float_array(p, function="js_divergence", name="p", ndims=(1,), layout="[bins] of weights")
    q_array = float_array(q, function="js_divergence", name="q", ndims=(1,), layout="[bins] of weights")
    _check_weights(p_array, q_array, "js_divergence")
    return _js_divergence(p_array / p_array.sum(), q_array / q_array.sum())


def histogram_jsd(
    x: ArrayLike,
    y: ArrayLike,
    bins: int | ArrayLike = DEFAULT_BINS,
    *,
    compat: bool = False,
    reference: bool = False,
) -> float:
    """JSD (base 2) between the histograms of the values of ``x`` and ``y`` (any shapes; flattened).

    * ``bins`` an int: that many equal-width bins shared by both (:func:`shared_bin_edges`).
    * ``reference=True`` (``bins`` an int): ``bins`` equal-width bins over ``x``'s own ``[min, max]``
      (:func:`reference_bin_edges`) and two more, ``(-inf, min x)`` and ``(max x, inf)``, where only values of
      ``y`` can fall: ``y``'s mass outside ``x``'s range is compared as such, whatever its values.
    * ``bins`` an array: explicit bin edges shared by both; a value outside ``[edges[0], edges[-1]]`` raises
      :class:`~cellsynth.errors.DataError` rather than being silently left out of the histogram.
    * ``compat=True`` (the published MSTDiff code): ``x`` and ``y`` are each binned into ``bins``
      equal-width bins over their *own* ``[min, max]`` (``numpy.histogram(v, bins)``), and the JS *distance*
      ``sqrt(JSD)`` in base 2 is returned (``scipy.spatial.distance.jensenshannon(h_x, h_y, base=2)``).
      Not comparable with the default; use it only to set numbers beside the papers' tables.
    """
    x_array = float_array(
        x, function="histogram_jsd", name="x", ndims=range(1, 8), layout="of values"
    ).ravel()
    y_array = float_array(
        y, function="histogram_jsd", name="y", ndims=range(1, 8), layout="of values"
    ).ravel()
    require(
        not (compat and reference),
        "compat=True (each sample on its own range) and reference=True exclude each other",
        function="histogram_jsd",
        name="reference",
    )
    if compat or reference:
        mode = (
            "compat=True bins each sample on its own range"
            if compat
            else "reference=True bins both samples on the first one's range"
        )
        require(
            np.ndim(bins) == 0,
            f"{mode} and needs an integer number of bins, not edges",
            function="histogram_jsd",
            name="bins",
        )
        _check_bin_count(bins, "histogram_jsd")
    if compat:
        x_counts, _ = np.histogram(x_array, bins=int(bins))
        y_counts, _ = np.histogram(y_array, bins=int(bins))
        return float(jensenshannon(x_counts, y_counts, base=2.0))
    if reference:
        return chunked_reference_jsd(lambda: [x_array], [y_array], int(bins))
    if np.ndim(bins) == 0:
        _check_bin_count(bins, "histogram_jsd")
        edges = shared_bin_edges(x_array, y_array, int(bins))
    else:
        edges = _explicit_edges(bins)
        for name, values in (("x", x_array), ("y", y_array)):
            outside = (values < edges[0]) | (values > edges[-1])
            require(
                not outside.any(),
                f"{int(outside.sum())} value(s) outside the bin edges [{edges[0]:g}, {edges[-1]:g}]; the first "
                f"is {values[np.argmax(outside)]:g}",
                function="histogram_jsd",
                name=name,
            )
    x_counts, _ = np.histogram(x_array, bins=edges)
    y_counts, _ = np.histogram(y_array, bins=edges)
    return _js_divergence(x_counts / x_counts.sum(), y_counts / y_counts.sum())


def chunked_reference_jsd(
    x_chunks: Callable[[], Iterable[np.ndarray]], y_chunks: Iterable[np.ndarray], bins: int
) -> float:
    """``histogram_jsd(x, y, bins, reference=True)`` of values handed over chunk by chunk, so that only one
    chunk of them need exist at a time (the traffic JSDs build each chunk's logarithms or differences from a
    chunk of series).

    ``x_chunks()`` is called twice: once for x's range ``[min, max]`` over all chunks, which fixes the edges
    (:func:`reference_bin_edges` inside, ``(-inf, min x)`` and ``(max x, inf)`` outside), and once for x's
    counts; ``y_chunks`` is read once. Each histogram is the sum of its chunks' counts on those edges, so
    any chunking gives the counts, and the JSD, of the whole.
    """
    _check_bin_count(bins, "histogram_jsd")
    low, high = np.inf, -np.inf
    for chunk in x_chunks():
        values = _chunk_values(chunk, "x")
        low, high = min(low, values.min()), max(high, values.max())
    inner = _equal_width_edges(low, high, int(bins))
    # numpy's last bin is closed on the right: x's maximum belongs in the last inner bin, not above it
    inner[-1] = np.nextafter(inner[-1], np.inf)
    edges = np.concatenate([[-np.inf], inner, [np.inf]])
    x_counts = sum(np.histogram(_chunk_values(chunk, "x"), bins=edges)[0] for chunk in x_chunks())
    y_counts = sum(np.histogram(_chunk_values(chunk, "y"), bins=edges)[0] for chunk in y_chunks)
    return _js_divergence(x_counts / x_counts.sum(), y_counts / y_counts.sum())


def _chunk_values(chunk: np.ndarray, name: str) -> np.ndarray:
    return float_array(chunk, function="histogram_jsd", name=name, ndims=range(1, 8), layout="of values")


def _js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """JSD base 2 of two probability vectors (already normalised); ``rel_entr`` gives ``0 log 0 = 0``."""
    m = 0.5 * (p + q)
    divergence = 0.5 * (rel_entr(p, m).sum() + rel_entr(q, m).sum()) / np.log(2.0)
    return float(np.clip(divergence, 0.0, 1.0))


def _check_bin_count(bins: object, function: str) -> None:
    require(
        isinstance(bins, int | np.integer) and not isinstance(bins, bool) and int(bins) >= 1,
        f"the number of bins must be a positive integer, got {bins!r}",
        function=function,
        name="bins",
    )


def _explicit_edges(bins: ArrayLike) -> np.ndarray:
    edges = float_array(bins, function="histogram_jsd", name="bins", ndims=(1,), layout="[bins + 1] of edges")
    require(
        edges.size >= 2 and bool(np.all(np.diff(edges) > 0)),
        f"explicit bin edges must be at least 2 strictly increasing values, got {edges.size} value(s)",
        function="histogram_jsd",
        name="bins",
    )
    return edges


def _check_weights(p: np.ndarray, q: np.ndarray, function: str) -> None:
    require(
        p.shape == q.shape, f"p has {p.shape[0]} bins but q has {q.shape[0]}", function=function, name="p, q"
    )
    for name, weights in (("p", p), ("q", q)):
        require(
            bool(np.all(weights >= 0)) and weights.sum() > 0,
            "weights must be non-negative with a positive sum",
            function=function,
            name=name,
        )
