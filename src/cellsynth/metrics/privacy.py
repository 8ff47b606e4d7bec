"""Memorisation check: does a generator copy its training series?

Each series (a station's week, all channels) is one flattened feature vector; distances are Euclidean on the
scale the caller passes (the evaluation uses the normalised scale, each channel divided by its training
maximum, so channels weigh alike; it passes the data as loaded with ``scale=`` and each block is divided as it
is used). Definitions, and the rule behind ``flagged``, are in docs/metrics.md, "Memorisation".

Memory: distances are taken between blocks of queries and blocks of references, each converted to float64
(and divided by ``scale``) as it is used, so the temporaries are bounded by the blocks whatever the set sizes.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from cellsynth.metrics._validation import float_array, require

#: Quantile of the real series' nearest-training distances below which a generated series is a near-copy.
DEFAULT_NEAR_COPY_QUANTILE = 0.05

#: ``flagged`` when more than this share of generated series are near-copies. New real series are
#: near-copies 5 % of the time by construction (:data:`DEFAULT_NEAR_COPY_QUANTILE`); the margin up to 25 %
#: absorbs sampling noise and a generator conditioned on training stations, which legitimately lands
#: closer to its own station's training week than other stations do (each station's mean day plus fresh
#: noise scores 3-9 % on the test fixtures over 60 seeds, 3 % on the Beijing stations). A copier scores
#: near 100 %.
DEFAULT_MAX_NEAR_COPY_SHARE = 0.25

# Distance-matrix blocks hold at most this many entries (8 bytes each): 32 MB whatever the set sizes.
_BLOCK_ENTRIES = 1 << 22
# References per block: the query block then holds _BLOCK_ENTRIES // _REFERENCE_ROWS queries.
_REFERENCE_ROWS = 2048


def nearest_neighbour_distances(queries: ArrayLike, references: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each query row to its nearest reference row, and that row's index.

    ``queries`` [Q, D], ``references`` [R, D]. Returns ``(distance [Q], index [Q])`` with
    ``distance[q] = min_r ||queries[q] - references[r]||_2``. The search works in blocks of
    ``||a||^2 + ||b||^2 - 2 a.b`` (a matrix product, fast for D in the hundreds or thousands, where k-d trees
    are not); the returned distance is then recomputed directly as ``||a - b||``, so an exact copy reads 0.
    """
    function = "nearest_neighbour_distances"
    query_array = float_array(queries, function=function, name="queries", ndims=(2,), layout="[Q, D]")
    reference_array = float_array(
        references, function=function, name="references", ndims=(2,), layout="[R, D]"
    )
    require(
        query_array.shape[1] == reference_array.shape[1],
        f"queries have D = {query_array.shape[1]} features but references have D = {reference_array.shape[1]}",
        function=function,
        name="queries, references",
    )
    return _nearest(query_array, reference_array)


def _nearest(
    queries: np.ndarray,
    references: np.ndarray,
    *,
    divisor: np.ndarray | None = None,
    leave_one_out: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest reference of each query; ``leave_one_out`` (queries *are* the references): row i skips itself.

    Rows are taken as float64 divided by ``divisor`` [D] (when given), a block at a time. The references are
    searched block by block, keeping each query's best so far; a later block wins only when strictly closer,
    so ties go to the first reference, as one argmin over all of them would.
    """

    def features(rows: np.ndarray) -> np.ndarray:
        block = np.asarray(rows, dtype=np.float64)
        return block if divisor is None else block / divisor

    n_queries, n_references = queries.shape[0], references.shape[0]
    reference_rows = min(n_references, _REFERENCE_ROWS)
    query_rows = max(1, _BLOCK_ENTRIES // reference_rows)
    distance = np.empty(n_queries)
    index = np.empty(n_queries, dtype=np.int64)
    for start in range(0, n_queries, query_rows):
        chunk = features(queries[start : start + query_rows])
        rows = np.arange(chunk.shape[0])
        best = np.full(chunk.shape[0], np.inf)
        nearest = np.zeros(chunk.shape[0], dtype=np.int64)
        for first in range(0, n_references, reference_rows):
            block = features(references[first : first + reference_rows])
            # ||b||^2 - 2 a.b, built in place in the product's array: one block-sized matrix. ||a||^2 is the
            # same for every reference, so it does not change the argmin.
            squared = chunk @ block.T
            squared *= -2.0
            squared += np.einsum("ij,ij->i", block, block)[np.newaxis, :]
            if leave_one_out:
                itself = start + rows - first  # column of query i's own row, where it lies in this block
                mine = (itself >= 0) & (itself < block.shape[0])
                squared[rows[mine], itself[mine]] = np.inf
            closest = squared.argmin(axis=1)
            closer = squared[rows, closest] < best
            best[closer], nearest[closer] = squared[rows, closest][closer], first + closest[closer]
        index[start : start + chunk.shape[0]] = nearest
        # the distance itself taken directly, ||a - b||, so that an exact copy reads 0
        distance[start : start + chunk.shape[0]] = np.linalg.norm(
            chunk - features(references[nearest]), axis=1
        )
    return distance, index


def membership_inference_auc(train: ArrayLike, holdout: ArrayLike, generated: ArrayLike) -> float:
    """AUC of a distance-to-nearest-generated attack telling training series from held-out ones.

    Each real series x gets the score ``-min_g ||x - g||``: an attacker who sees only the generated set
    guesses "x was in training" when x lies close to some generated series. The AUC is the probability that a
    training series scores higher than a held-out one (ties count 1/2), the Mann-Whitney U statistic divided by
    ``N_train N_holdout``.
    0.5 = the generated set reveals nothing about membership; 1 = it gives every training series away.

    For a generator conditioned on the training stations, a high AUC is expected without any copying:
    membership is then revealed by the conditioning itself. It is informative for unconditional generation
    or generation for held-out stations.
    """
    function = "membership_inference_auc"
    return _membership_auc(*_feature_sets(train, holdout, generated, None, function))


def _membership_auc(
    train: np.ndarray, holdout: np.ndarray, generated: np.ndarray, divisor: np.ndarray | None
) -> float:
    member_distance, _ = _nearest(train, generated, divisor=divisor)
    non_member_distance, _ = _nearest(holdout, generated, divisor=divisor)
    # For each held-out series: members strictly closer to the generated set, plus half the ties
    # (the Mann-Whitney U count of pairs the attack orders correctly).
    ordered = np.sort(member_distance)
    closer = np.searchsorted(ordered, non_member_distance, side="left")
    tied = np.searchsorted(ordered, non_member_distance, side="right") - closer
    return float((closer + 0.5 * tied).sum() / (member_distance.size * non_member_distance.size))


def memorisation_check(
    train: ArrayLike,
    holdout: ArrayLike,
    generated: ArrayLike,
    *,
    near_copy_quantile: float = DEFAULT_NEAR_COPY_QUANTILE,
    max_near_copy_share: float = DEFAULT_MAX_NEAR_COPY_SHARE,
    scale: ArrayLike | None = None,
) -> dict[str, object]:
    """Distances of generated series to the training and held-out real series, and a copying verdict.

    ``train`` [N_train, ...], ``holdout`` [N_holdout, ...], ``generated`` [G, ...] with the same trailing
    shape (e.g. [*, T] or [*, T, C]); each series is flattened into one vector. ``scale`` (positive,
    broadcast against one series' shape, e.g. [C] for [*, T, C] series): distances are those between
    ``series / scale``, each block of series divided as it is used, so the sets can be passed in their own
    units and dtype (float32 as loaded) without a scaled float64 copy of each. Returned keys:

    * ``dcr_train`` [G]: distance of each generated series to its closest training series;
    * ``dcr_holdout`` [G]: distance of each generated series to its closest held-out series;
    * ``holdout_to_train`` [N_holdout]: distance of each held-out series to its closest training series;
    * ``train_to_train`` [N_train]: distance of each training series to its closest *other* training
      series (leave-one-out). Under a random split both are draws of "how close a real series that is not
      itself in the reference set comes to the training set";
    * ``dcr_ratio``: ``median(dcr_train) / median(dcr_holdout)``; near 0 for a copier (inf / nan when the
      holdout median is 0). Below 1 is expected for a generator conditioned on training stations, and the
      larger training set alone pulls it below 1 a little;
    * ``near_copy_threshold``: the ``near_copy_quantile`` quantile (numpy linear) of ``holdout_to_train``
      and ``train_to_train`` pooled (pooling makes this low quantile stable: from a holdout of 40 series
      alone, a 5th percentile is the 2nd or 3rd smallest value and the flag flickers);
    * ``near_copy_share``: share of generated series with ``dcr_train <= near_copy_threshold``, i.e. closer
      to a training series than all but ``near_copy_quantile`` of real series come;
    * ``membership_auc``: :func:`membership_inference_auc`;
    * ``flagged``: ``near_copy_share > max_near_copy_share`` (default 0.25). Generated series that are as
      new as real ones give a near-copy share near ``near_copy_quantile`` (0.05); copies, verbatim
      or with noise small against the spread of real series, give a share near 1.
    """
    function = "memorisation_check"
    train_array, holdout_array, generated_array, divisor = _feature_sets(
        train, holdout, generated, scale, function
    )
    require(
        0.0 <= near_copy_quantile <= 1.0,
        f"must be in [0, 1], got {near_copy_quantile!r}",
        function=function,
        name="near_copy_quantile",
    )
    require(
        0.0 <= max_near_copy_share < 1.0,
        f"must be in [0, 1), got {max_near_copy_share!r}",
        function=function,
        name="max_near_copy_share",
    )
    require(
        train_array.shape[0] >= 2,
        "needs at least 2 training series (the near-copy threshold uses each one's distance to the others)",
        function=function,
        name="train",
    )
    dcr_train, _ = _nearest(generated_array, train_array, divisor=divisor)
    dcr_holdout, _ = _nearest(generated_array, holdout_array, divisor=divisor)
    holdout_to_train, _ = _nearest(holdout_array, train_array, divisor=divisor)
    train_to_train, _ = _nearest(train_array, train_array, divisor=divisor, leave_one_out=True)
    threshold = float(np.quantile(np.concatenate([holdout_to_train, train_to_train]), near_copy_quantile))
    # <= so that verbatim copies still count when enough real series duplicate training ones to make the
    # threshold 0.
    near_copy_share = float(np.mean(dcr_train <= threshold))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(np.float64(np.median(dcr_train)) / np.float64(np.median(dcr_holdout)))
    return {
        "dcr_train": dcr_train,
        "dcr_holdout": dcr_holdout,
        "holdout_to_train": holdout_to_train,
        "train_to_train": train_to_train,
        "dcr_ratio": ratio,
        "near_copy_threshold": threshold,
        "near_copy_share": near_copy_share,
        "membership_auc": _membership_auc(train_array, holdout_array, generated_array, divisor),
        "flagged": bool(near_copy_share > max_near_copy_share),
    }


def _feature_sets(
    train: ArrayLike, holdout: ArrayLike, generated: ArrayLike, scale: ArrayLike | None, function: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The three sets as [n, D] float arrays (float32 kept as it is), one flattened series per row, with a
    common D, and ``scale`` as a divisor of each of the D features (``None`` without one)."""
    arrays = {
        name: float_array(
            values,
            function=function,
            name=name,
            ndims=range(2, 8),
            layout="[series, ...]",
            keep_float_dtype=True,
        )
        for name, values in (("train", train), ("holdout", holdout), ("generated", generated))
    }
    trailing = arrays["train"].shape[1:]
    for name in ("holdout", "generated"):
        require(
            arrays[name].shape[1:] == trailing,
            f"each series has shape {arrays[name].shape[1:]} but training series have {trailing}",
            function=function,
            name=name,
        )
    train_array, holdout_array, generated_array = (
        arrays[name].reshape(arrays[name].shape[0], -1) for name in ("train", "holdout", "generated")
    )
    if scale is None:
        return train_array, holdout_array, generated_array, None
    divisor = float_array(scale, function=function, name="scale", ndims=range(0, 8), layout="of divisors")
    require(bool(np.all(divisor > 0)), "must be positive", function=function, name="scale")
    try:
        divisor = np.broadcast_to(divisor, trailing).ravel()
    except ValueError:
        require(
            False,
            f"shape {divisor.shape} does not broadcast against one series' shape {trailing}",
            function=function,
            name="scale",
        )
    return train_array, holdout_array, generated_array, divisor
