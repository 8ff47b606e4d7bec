"""The memorisation check of an evaluation: run :func:`cellsynth.metrics.memorisation_check` on the
generated, training and held-out real series, summarise it for ``metrics.json``, and say the verdict in
words."""

from __future__ import annotations

from typing import Any

import numpy as np

from cellsynth import metrics

__all__ = ["memorisation_summary", "memorisation_verdict", "run_memorisation"]


def memorisation_verdict(summary: dict[str, Any]) -> str:
    """The memorisation check's outcome in one plain sentence (``summary`` as in ``Evaluation.memorisation``
    or as returned by :func:`cellsynth.metrics.memorisation_check`)."""
    share = summary["near_copy_share"]
    expected = metrics.DEFAULT_NEAR_COPY_QUANTILE
    limit = metrics.DEFAULT_MAX_NEAR_COPY_SHARE
    if summary["flagged"]:
        return (
            f"Likely copying: {share:.0%} of the generated series are near-copies of a training series (closer "
            f"to it than {1 - expected:.0%} of real series come). Genuinely new series score about "
            f"{expected:.0%}; the check flags anything above {limit:.0%}."
        )
    return (
        f"No sign of copying: {share:.0%} of the generated series are near-copies of a training series; "
        f"genuinely new series score about {expected:.0%}, and the check flags anything above {limit:.0%}."
    )


def run_memorisation(
    train, held_out, generated, *, series, held_out_what, notes, scale=None
) -> dict[str, Any] | None:
    """:func:`cellsynth.metrics.memorisation_check` of the three sets of series (``scale`` as there), with
    what was compared; ``None``, with a note saying why, when the check cannot run."""
    if len(held_out) == 0:
        notes.append(
            f"Memorisation check skipped: no held-out real series ({held_out_what}); evaluate on real data "
            "that the generator was not trained on."
        )
        return None
    if len(train) < 2:
        notes.append("Memorisation check skipped: it needs at least 2 whole training weeks.")
        return None
    result = metrics.memorisation_check(train, held_out, generated, scale=scale)
    return result | {
        "series": series,
        "held_out_series_are": held_out_what,
        "n_train": len(train),
        "n_held_out": len(held_out),
        "n_generated": len(generated),
    }


def memorisation_summary(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "series": result["series"],
        "held_out_series_are": result["held_out_series_are"],
        "train_series": result["n_train"],
        "held_out_series": result["n_held_out"],
        "generated_series": result["n_generated"],
        "median_distance_to_train": float(np.median(result["dcr_train"])),
        "median_distance_to_held_out": float(np.median(result["dcr_holdout"])),
        "dcr_ratio": result["dcr_ratio"],
        "near_copy_threshold": result["near_copy_threshold"],
        "near_copy_share": result["near_copy_share"],
        "membership_auc": result["membership_auc"],
        "flagged": result["flagged"],
        "verdict": memorisation_verdict(result),
    }
