r"""How ``extensions.timestep_power: "auto"`` chooses STUNet's training steps: on a validation split of the
training data itself.

Training steps drawn as ``t = floor(T u^p)`` with ``p = 2`` train the low-noise steps, where the hour-to-hour
detail of a week is made, three times as often as uniform steps (``p = 1``, the paper's). On some real sets
that makes new sites' weeks as rough from hour to hour as real ones; on others it makes every score worse
(docs/notebook/2026-12-06-stouter-low-noise-steps.md). So "auto" asks the training data which it is:

1. The training data is split as the benchmark splits a dataset (:func:`inner_split`): with two or more
   whole weeks per station, the use is future weeks of known stations (the signal ``station_profile: auto``
   reads too), and every station's last weeks are held out (:func:`~cellsynth.data.split.split_weeks`, a fifth,
   at least one); with one week, the use is new sites, and a fifth of the stations is held out
   (:func:`~cellsynth.data.split.split_stations`, the fit's seed).
2. The model is fitted on the inner training part twice, with ``p = 1`` and ``p =`` :data:`AUTO_POWER`, the same
   config otherwise, and each generates :data:`VALIDATION_SAMPLES` weeks per held-out station.
3. Each is scored by the first-difference JSD of its weeks against the held-out weeks
   (:func:`~cellsynth.metrics.diff_jsd`, the benchmark's score of hour-to-hour change, mean over channels):

       p* = AUTO_POWER  if  diff_jsd(p = AUTO_POWER) < diff_jsd(p = 1)  else  1

   and the model is then fitted on all the training data with ``p*``.

Why first differences: ``p`` changes the fine detail of a week and little of its levels, and of the
benchmark's scores the first-difference JSD is the one that detail moves. Measured on the leaderboard's seven
sets, three seeds (docs/notebook/2026-12-06-stouter-auto-validation.md), with a fit with each ``p``
scored on the held-out data, the choice had the lower held-out first-difference JSD on 18 of the 21 fits; a
first version, which compared the hour-to-hour spread of the fitted weeks with the training weeks' against
a fixed threshold, on 16. The misses come from one split and one pair of inner fits: where the two ``p`` are
close on the inner split (Nanjing traffic, seed 0: both 0.0015) the final fit can still differ.
No noise margin (MSTDiff's sampler selection counts only differences beyond a paired bootstrap's spread): the
split's noise is as large as most gaps, and keeping ``p = 1`` unless ``p = 2`` is clearly lower chose worse on
the real sets (docs/notebook/2026-12-07-stouter-auto-margin.md).

Cost: two fits on four fifths of the data, then the final fit: about 2.6 fits. Only training data is read,
so the held-out data a user scores on is never seen; under ``privacy`` it is refused (the two inner fits
compare with real weeks outside DP-SGD).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cellsynth.data.model import StationTraffic
from cellsynth.data.split import split_stations, split_weeks
from cellsynth.errors import ConfigError, DataError
from cellsynth.generators.base import training_weeks
from cellsynth.generators.presets import merge_config
from cellsynth.metrics import diff_jsd

__all__ = [
    "AUTO_POWER",
    "VALIDATION_FRACTION",
    "VALIDATION_SAMPLES",
    "auto_note",
    "choose_timestep_power",
    "inner_split",
]

#: The ``timestep_power`` compared with the paper's 1 (a third of the training draws below ``T / 10``).
AUTO_POWER = 2.0
#: The share of the training data held out: the benchmark's default test fraction.
VALIDATION_FRACTION = 0.2
#: Weeks generated per held-out station for the score (the benchmark's leaderboard draws 2 too).
VALIDATION_SAMPLES = 2


def inner_split(data: StationTraffic, weeks: int, seed: int) -> tuple[StationTraffic, StationTraffic, str]:
    """``(inner_train, validation, how)`` of ``data``, which has ``weeks`` whole training weeks per station
    (module docstring, step 1); ``how`` says it in words. Raises :class:`DataError` when the data is too small
    to split."""
    if weeks >= 2:
        train, held_out = split_weeks(data, VALIDATION_FRACTION)
        k = held_out.n_steps // data.steps_per("7D")
        return train, held_out, "every station's last " + ("week" if k == 1 else f"{k} weeks") + " held out"
    train, held_out = split_stations(data, VALIDATION_FRACTION, seed)
    return train, held_out, f"{held_out.n_stations} of {data.n_stations} stations held out"


def _with_power(model, power: float):
    """An unfitted STOUTER of ``model``'s config with ``extensions.timestep_power = power``."""
    return type(model)(merge_config(model.config.model_dump(), {"extensions": {"timestep_power": power}}))


def _first_difference_jsd(model, validation: StationTraffic, real_weeks: np.ndarray, seed: int) -> float:
    """Mean over channels of :func:`~cellsynth.metrics.diff_jsd` between ``model``'s weeks for the validation
    stations and their real weeks ``real_weeks [M, W, L, C]``."""
    generated = model.generate(validation, samples=VALIDATION_SAMPLES, seed=seed).values  # [M * K, L, C]
    channels = real_weeks.shape[-1]
    return float(np.mean([diff_jsd(real_weeks[..., c], generated[..., c]) for c in range(channels)]))


def choose_timestep_power(
    model, data: StationTraffic, *, weeks: int, progress: bool, checkpoint_dir: str | os.PathLike | None
) -> dict[str, Any]:
    """Steps 1-3 of the module docstring for the STOUTER ``model`` being fitted on ``data`` (``weeks`` whole
    training weeks per station); returns what "auto" chose and why, as saved with the model::

        {"power": p*, "split": how, "diff_jsd": {"1": ..., "2": ...}}

    or, when the data is too small to split or to fit on a part of it, ``{"power": 1.0, "split": None,
    "reason": why}``. Each inner fit checkpoints under ``checkpoint_dir/checkpoints/validation/p<p>``, so a
    killed fit resumes there too."""
    seed = model.config.seed
    try:
        train, validation, how = inner_split(data, weeks, seed)
        # Refused in a second rather than after the first inner fit (e.g. too few stations for the levels).
        _with_power(model, 1.0)._check_fit_inputs(train)
    except (DataError, ConfigError) as error:
        return {"power": 1.0, "split": None, "reason": str(error)}
    held_out_weeks = training_weeks(validation, model.name, model._length_multiple)
    scores = {}
    for power in (1.0, AUTO_POWER):
        directory = None
        if checkpoint_dir is not None:
            directory = Path(checkpoint_dir) / "checkpoints" / "validation" / f"p{power:g}"
        if progress:  # the training bars carry no stage names; say what these extra fits are
            print(
                f"{model.name}: timestep_power auto, inner fit with p = {power:g} on the training data less the "
                f"validation part ({how})",
                file=sys.stderr,
                flush=True,
            )
        fitted = _with_power(model, power).fit(train, progress=progress, checkpoint_dir=directory)
        scores[f"{power:g}"] = _first_difference_jsd(fitted, validation, held_out_weeks, seed)
    chosen = AUTO_POWER if scores[f"{AUTO_POWER:g}"] < scores["1"] else 1.0
    return {"power": chosen, "split": how, "diff_jsd": scores}


def auto_note(choice: dict[str, Any]) -> str:
    """What ``timestep_power: "auto"`` found and chose, in a line for the user (``cellsynth fit`` prints it)."""
    power = choice["power"]
    if choice.get("split") is None:
        return f"stouter: timestep_power auto -> 1 (uniform steps) without a validation split: {choice['reason']}"
    low, uniform = choice["diff_jsd"][f"{AUTO_POWER:g}"], choice["diff_jsd"]["1"]
    found = (
        f"stouter: on a validation split of its training data ({choice['split']}), first-difference JSD "
        f"{uniform:.4f} with uniform training steps, {low:.4f} with the low-noise steps drawn more often"
    )
    return f"{found}: timestep_power auto -> {power:g}"
