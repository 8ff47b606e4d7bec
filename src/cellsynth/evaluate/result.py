"""The outcome of an evaluation: :class:`Evaluation` (the metric table, what was compared, the memorisation
check) and the aligned arrays behind it for the report's figures; its JSON form (``metrics.json``).

Writing the report is :func:`cellsynth.report.write_report`'s: the report depends on this module, never the
other way round.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import cellsynth
from cellsynth.data.io import write_text_atomic
from cellsynth.data.model import Stations
from cellsynth.metrics.catalog import METRICS

__all__ = ["Evaluation", "StationComparison", "UserComparison", "normalise"]


def normalise(values: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """``values / scale`` in float64, a new array: the values (float32 as loaded) cast to float64, then
    divided in place, so that the cast is the only temporary."""
    result = values.astype(np.float64)
    result /= scale
    return result


@dataclass(frozen=True, eq=False)
class StationComparison:
    """The aligned arrays the station metrics were computed on (used by the report's figures).

    ``real_values[n, w, t, c]``: real station n, week w (``weeks`` of them), step t, channel c, in the data's
    units and dtype (float32 as loaded; a view of the loaded data when the stations line up in order);
    ``generated_values[m, k, t, c]``: generated station m, sample k. The metrics score them divided by
    ``scale[c]``, one channel at a time: :meth:`real_channel` and :meth:`generated_channel` give that
    normalised float64 channel. When ``paired``, real station n and generated station n are the same
    station (``real_ids == generated_ids``).
    """

    channels: tuple[str, ...]
    scale: np.ndarray
    real_values: np.ndarray
    generated_values: np.ndarray
    real_stations: Stations
    generated_stations: Stations
    paired: bool
    steps_per_day: int
    step: pd.Timedelta
    start: pd.Timestamp
    memorisation: dict[str, Any] | None = None

    def real_channel(self, c: int) -> np.ndarray:
        """Channel ``c`` of the real data, normalised: ``[n, w, t]`` float64, a new array."""
        return normalise(self.real_values[..., c], self.scale[c])

    def generated_channel(self, c: int) -> np.ndarray:
        """Channel ``c`` of the generated data, normalised: ``[m, k, t]`` float64, a new array."""
        return normalise(self.generated_values[..., c], self.scale[c])

    @property
    def real(self) -> np.ndarray:
        """Every channel of the real data normalised, ``[n, w, t, c]`` float64: a new array, of all channels
        at once; :meth:`real_channel` makes one channel's."""
        return normalise(self.real_values, self.scale)

    @property
    def generated(self) -> np.ndarray:
        """Every channel of the generated data normalised, ``[m, k, t, c]`` float64 (see :attr:`real`)."""
        return normalise(self.generated_values, self.scale)


@dataclass(frozen=True, eq=False)
class UserComparison:
    """The aligned arrays of a user evaluation (used by the report's figures).

    ``real_locations[u, t]`` (real user-weeks) and ``generated_locations[v, t]`` index ``stations`` (the real
    data's table; generated ids were mapped onto it). Traffic, when both sides have it, is divided by
    ``traffic_scale``.
    """

    stations: Stations
    real_locations: np.ndarray
    generated_locations: np.ndarray
    real_traffic: np.ndarray | None
    generated_traffic: np.ndarray | None
    traffic_scale: float | None
    steps_per_day: int
    step: pd.Timedelta
    start: pd.Timestamp
    memorisation: dict[str, Any] | None = None


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The outcome of :func:`evaluate`: the metric table, what was compared, and the memorisation check.

    ``metrics[group][metric]`` is ``{"value": v}`` with ``v`` scored on the normalised scale (``None`` when
    the metric is undefined for these data, with ``"reason"``), plus ``"original"`` (the same metric in the
    data's original units) for the metrics with units. Groups are the channels for station traffic, and
    ``"trajectory"`` / ``"traffic"`` for users. ``comparison`` describes the data, the alignment and the
    protocol in words; ``memorisation`` summarises the copying check (``None`` without training data);
    ``notes`` lists everything left out or worth a warning. ``aligned`` holds the arrays for the figures and
    is not serialised.
    """

    kind: str
    metrics: dict[str, dict[str, dict[str, Any]]]
    comparison: dict[str, Any]
    memorisation: dict[str, Any] | None
    notes: tuple[str, ...]
    aligned: StationComparison | UserComparison = field(repr=False)
    #: The differential-privacy guarantee of the model that generated the data (its saved ``privacy``
    #: state: epsilon, delta, unit, accountant...), when the caller knows it; ``None`` otherwise.
    privacy: dict[str, Any] | None = None

    @property
    def paired(self) -> bool:
        return bool(self.comparison.get("paired", False))

    def value(self, group: str, metric: str) -> float | None:
        """The score of ``metric`` in ``group`` (a channel, ``"trajectory"`` or ``"traffic"``)."""
        try:
            return self.metrics[group][metric]["value"]
        except KeyError:
            raise KeyError(
                f"no metric {metric!r} in group {group!r}; groups and metrics: "
                + "; ".join(f"{g}: {', '.join(m)}" for g, m in self.metrics.items())
            ) from None

    def to_dict(self) -> dict[str, Any]:
        """Everything but the arrays, as plain JSON types (non-finite numbers become ``None``)."""
        used = {name for group in self.metrics.values() for name in group}
        return _json_ready(
            {
                "cellsynth_version": cellsynth.__version__,
                "kind": self.kind,
                "comparison": self.comparison,
                "metrics": self.metrics,
                "memorisation": self.memorisation,
                "privacy": self.privacy,
                "notes": list(self.notes),
                "metric_definitions": {
                    name: {"label": info.label, "description": info.description, "better": info.better}
                    for name, info in METRICS.items()
                    if name in used
                },
            }
        )

    def to_json(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON to ``path`` atomically (temp file, then rename)."""
        path = Path(path)
        write_text_atomic(path, self.to_json_text())
        return path

    def to_json_text(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    return value
