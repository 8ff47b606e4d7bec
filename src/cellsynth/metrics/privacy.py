"""Memorisation check: does a generator copy its training series?

Each series (a station's week, all channels) is one flattened feature vector; distances are Euclidean on the
scale the caller passes (the evaluation uses the normalised scale, each channel divided by its training
maximum, so channels weigh alike). Definitions, and the rule behind ``flagged``, are in docs/metrics.md,
"Memorisation".
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
    queries: np.ndarray, references: np.ndarray, *, leave_one_out: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Nearest reference of each query; ``leave_one_out`` (queries *are* the references): row i skips itself."""
    reference_norms = np.einsum("ij,ij->i", references, references)
    block = max(1, _BLOCK_ENTRIES // references.shape[0])
    index = np.empty(queries.shape[0], dtype=np.int64)
    for start in range(0, queries.shape[0], block):
        chunk = queries[start : start + block]
        # ||a||^2 is the same for every reference, so it does not change the argmin.
        squared = reference_norms[np.newaxis, :] - 2.0 * (chunk @ references.T)
        if leave_one_out:
            rows = np.arange(chunk.shape[0])
            squared[rows, start + rows] = np.inf
        index[start : start + block] = squared.argmin(axis=1)
    distance = np.linalg.norm(queries - references[index], axis=1)
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
    train_array, holdout_array, generated_array = _feature_sets(train, holdout, generated, function)
    return _membership_auc(train_array, holdout_array, generated_array)


def _membership_auc(train: np.ndarray, holdout: np.ndarray, generated: np.ndarray) -> float:
    member_distance, _ = _nearest(train, generated)
    non_member_distance, _ = _nearest(holdout, generated)
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
) -> dict[str, object]:
    """Distances of generated series to the training and held-out real series, and a copying verdict.

    ``train`` [N_train, ...], ``holdout`` [N_holdout, ...], ``generated`` [G, ...] with the same trailing
    shape (e.g. [*, T] or [*, T, C]); each series is flattened into one vector. Returned keys:

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
    train_array, holdout_array, generated_array = _feature_sets(train, holdout, generated, function)
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
    dcr_train, _ = _nearest(generated_array, train_array)
    dcr_holdout, _ = _nearest(generated_array, holdout_array)
    holdout_to_train, _ = _nearest(holdout_array, train_array)
    train_to_train, _ = _nearest(train_array, train_array, leave_one_out=True)
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
        "membership_auc": _membership_auc(train_array, holdout_array, generated_array),
        "flagged": bool(near_copy_share > max_near_copy_share),
    }


def _feature_sets(
    train: ArrayLike, holdout: ArrayLike, generated: ArrayLike, function: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three sets as [n, D] float arrays, one flattened series per row, with a common D."""
    arrays = {
        name: float_array(values, function=function, name=name, ndims=range(2, 8), layout="[series, ...]")
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
    return train_array, holdout_array, generated_array
