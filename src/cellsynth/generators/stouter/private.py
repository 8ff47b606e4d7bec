r"""STOUTER trained with differential privacy (:mod:`cellsynth.generators.privacy`; docs/privacy.md): what
each part of the fit becomes when the config has a ``privacy`` section.

- STUNet: DP-SGD over stations (all their weeks together).
- Temporal graph encoder: its node features (hour-of-week statistics of the real traffic) are replaced by a
  data-independent encoding of the hour of the week (:func:`hour_of_week_graph`), so its pretraining and
  F_t see no traffic at all.
- Station graph encoder: built from the stations' coordinates and features only, public by assumption.
- Level regression and the recent levels of known stations: refused by the config (they fit each station's
  level on its real traffic).
- Clip range of the samples: ``±`` :data:`PUBLIC_Z_RANGE` in standardised units instead of the real minimum
  and maximum (a single station's extremes).
- **Not covered**: the normaliser's three statistics per channel (median of the positive values, mean and
  standard deviation of the log-scaled values, each pooled over every station-week); the fit note says so.
"""

from __future__ import annotations

import numpy as np
import torch
from torch_geometric.data import Data

from cellsynth.generators.privacy import PUBLIC_Z_RANGE, public_range
from cellsynth.graphs.temporal import HOURS_PER_DAY, HOURS_PER_WEEK, temporal_edges

__all__ = ["PUBLIC_Z_RANGE", "hour_of_week_graph", "privacy_notes", "public_range"]


def hour_of_week_graph() -> Data:
    """STOUTER's temporal graph (168 nodes, hourly and daily edges) with data-independent node features:
    ``cos/sin(2 pi k h / 24)`` and ``cos/sin(2 pi k d / 7)`` for ``k = 1, 2`` (h the hour of day, d the day of
    the week of node ``h + 24 d``) and a weekend flag (days 5 and 6 from the first training day)."""
    node = np.arange(HOURS_PER_WEEK)
    hour, day = node % HOURS_PER_DAY, node // HOURS_PER_DAY
    columns = []
    for k in (1, 2):
        for value, period in ((hour, HOURS_PER_DAY), (day, 7)):
            angle = 2 * np.pi * k * value / period
            columns += [np.cos(angle), np.sin(angle)]
    columns.append((day >= 5).astype(float))
    x = np.stack(columns, axis=1)
    x = (x - x.mean(0)) / x.std(0)
    return Data(x=torch.from_numpy(x).float(), edge_index=temporal_edges(), num_nodes=HOURS_PER_WEEK)


def privacy_notes(spent: dict | None) -> list[str]:
    """The fit notes of a private fit: the guarantee spent and what it does not cover."""
    if spent is None:
        return []
    return [
        f"differential privacy: ({spent['epsilon']:.3g}, {spent['delta']:.3g})-DP per station (all its weeks) "
        f"for STUNet (DP-SGD, {spent['accountant']} accountant, noise multiplier "
        f"{spent['noise_multiplier']:.3g}, clip {spent['max_grad_norm']:g}, sampling rate "
        f"{spent['sample_rate']:.3g}, {spent['steps']} steps); the temporal encoder saw no traffic, the "
        "station encoder only the stations' public coordinates and features; NOT covered: the normaliser's "
        "per-channel median, mean and standard deviation over all station-weeks (docs/privacy.md)"
    ]
