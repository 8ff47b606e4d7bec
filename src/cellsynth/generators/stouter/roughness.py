r"""How rough STOUTER's weeks are from hour to hour against its own training weeks: the check behind
``extensions.timestep_power: "auto"``.

The hour-to-hour detail of a week is made at the last, low-noise steps of the reverse chain. With training
steps ``t`` drawn uniformly only a tenth of STUNet's training draws fall below ``T / 10``, and on some data
the fitted denoiser leaves its weeks smoother than real ones (docs/notebook/2026-12-06-stouter-low-noise-steps.md).
The check measures that on the training data, so that a fit can see it without any held-out data:

    spread_c(z) = sd over stations, weeks and hours h of  z[..., h + 1, c] - z[..., h, c]
    ratio       = mean over channels c of  spread_c(generated) / spread_c(real)

with ``z`` on the model's normalised scale (:class:`~cellsynth.transforms.scaling.LogScaler`, log space, so
a busy station's changes do not outweigh a quiet one's), for up to :data:`CHECK_STATIONS` training stations,
two generated weeks each against all their training weeks. ``ratio < SMOOTH_RATIO`` means the model's weeks
are too smooth; ``"auto"`` then trains STUNet again with ``timestep_power = AUTO_POWER``.

Why 0.9: the value was set from a first, exploratory measurement (each array on its own median, which made
Nanchang look about 15 % too smooth) before this check existed. Measured by this check with the
``recommended`` preset at the leaderboard's rule (three seeds each), the ratio was 0.72-0.84 on Nanjing's two
sets, where ``p = 2`` lowered the held-out first-difference JSD (three-seed means); 0.88-0.995 on Nanchang (where
``p = 2`` also helped) and 0.89-0.96 on Milan's future weeks (where it hurt); 0.92-0.98 on Beijing and
1.07-1.16 on both synthetic cities (where it hurt). So it separates the clear cases, and on Nanchang and Milan
it decides seed by seed (docs/notebook/2026-12-06-stouter-auto-low-noise.md). The ratio is kept in the model
(``roughness_``) for a user to judge.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "AUTO_POWER",
    "CHECK_STATIONS",
    "SMOOTH_RATIO",
    "auto_note",
    "hour_to_hour_spread",
    "roughness_ratio",
]

#: Training stations the check generates for (all of them when there are fewer).
CHECK_STATIONS = 100
#: Below this ratio of generated to real hour-to-hour spread, "auto" trains the low-noise steps more often.
SMOOTH_RATIO = 0.9
#: The ``timestep_power`` of that second fit (a third of the training draws below ``T / 10``).
AUTO_POWER = 2.0


def hour_to_hour_spread(z: np.ndarray) -> np.ndarray:
    """``spread_c``: the standard deviation of consecutive differences along the hour axis, per channel.

    ``z [..., L, C]``: any leading axes (stations, weeks); differences never cross from one week to the
    next. Returns ``float64 [C]``."""
    z = np.asarray(z, dtype=np.float64)
    if z.ndim < 2 or z.shape[-2] < 2:
        raise ValueError(f"need [..., L, C] with at least 2 steps along L, got shape {z.shape}")
    changes = np.diff(z, axis=-2).reshape(-1, z.shape[-1])
    return changes.std(axis=0)


def roughness_ratio(model, data, real_z: np.ndarray, seed: int) -> float:
    """``ratio`` of the module docstring for a fitted STOUTER ``model`` on its training ``data``.

    ``real_z [N, W, L, C]``: ``data``'s training weeks on the model's normalised scale, before any level is
    taken out. The stations are a fixed draw of ``seed``; the generated weeks use ``seed`` too."""
    n = real_z.shape[0]
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(n, min(CHECK_STATIONS, n), replace=False))
    generated = model.generate(data.select_stations(chosen).stations, samples=2, seed=seed)
    generated_z = model.scaler_.transform(generated.values)  # [2 * stations, L, C]
    real = hour_to_hour_spread(real_z[chosen])
    # A channel that never changes in training has nothing to compare; it does not vote.
    vary = real > 1e-12
    if not vary.any():
        return 1.0
    return float(np.mean(hour_to_hour_spread(generated_z)[vary] / real[vary]))


def auto_note(ratio: float, power: float) -> str:
    """What ``timestep_power: "auto"`` found and chose, in a line for the user (``cellsynth fit`` prints it)."""
    found = f"stouter: its weeks for its training stations have {ratio:.2f} of the real hour-to-hour spread"
    if power == 1.0:
        return f"{found} (at least {SMOOTH_RATIO}): trained with uniform steps (timestep_power auto -> 1)"
    return (
        f"{found} (below {SMOOTH_RATIO}): STUNet trained again with the low-noise steps drawn more often "
        f"(timestep_power auto -> {power:g})"
    )
