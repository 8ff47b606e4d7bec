"""A known station's own past weeks as a reference for STUNet (``extensions.station_profile``; docs/stouter.md,
"A known station's own weeks as a reference"): the profiles kept for generation and the leave-one-out
references STUNet learns from."""

from __future__ import annotations

import numpy as np

__all__ = ["PROFILE_DROPOUT", "week_profiles"]

#: Share of training weeks whose profile is left out (``extensions.station_profile``), so that STUNet also
#: learns weeks without one: those of new sites. The rate classifier-free guidance drops its condition at.
PROFILE_DROPOUT = 0.1


def week_profiles(weeks: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Each station's mean training week and each training week's reference week (``extensions.station_profile``).

    From ``weeks`` ``[N, W, L, C]`` (what the diffusion models): the profiles ``p_n = (1/W) sum_j x_nj``
    ``[N, C, L]`` (None when ``W < 2``), and per training week, station-major, ``[N * W, C + 1, L]``: the
    leave-one-out mean ``(W p_n - x_nj) / (W - 1)`` and a mask channel of ones. With one week per station
    there is no other week: all zeros, mask 0. Leave-one-out, so that training sees how a week strays from
    weeks it is not part of, as a future week does from the training ones.
    """
    n, w, length, c = weeks.shape
    references = np.zeros((n, w, c + 1, length), dtype=np.float32)
    if w < 2:
        return None, references.reshape(n * w, c + 1, length)
    total = weeks.sum(axis=1, keepdims=True)  # [N, 1, L, C]
    references[:, :, :c] = ((total - weeks) / (w - 1)).transpose(0, 1, 3, 2)
    references[:, :, c] = 1.0
    profiles = (total[:, 0] / w).transpose(0, 2, 1).astype(np.float32)
    return profiles, references.reshape(n * w, c + 1, length)
