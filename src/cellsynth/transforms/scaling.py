"""Invertible normalisation for heavy-tailed, non-negative traffic.

Cellular traffic spans orders of magnitude (a quiet night vs. an evening peak; a suburban cell vs. a
station); a diffusion model trained on raw values would spend its capacity on the few largest ones. The
:class:`LogScaler` compresses the tail, then brings every channel to a common scale:

.. math::

    y_{c} = \\log\\!\\left(1 + \\frac{x_{c}}{s_c}\\right), \\qquad
    z_{c} = \\frac{y_c - \\mu_c}{\\sigma_c}

- ``s_c`` is a *robust* per-channel scale: the median of the strictly positive training values of channel c
  (1 when a channel has none; floored at 1e-30 so that ``x / s_c`` stays finite for any float32 traffic). Dividing by it makes the transform unit-free (bytes, Erlang, counts...) and
  puts a typical value at ``y = log 2``; the median ignores the clipped maxima and the exact zeros that real
  data has (Beijing: 41 values clipped at 3e7, 0.8 % zeros).
- ``mode="standard"`` (default): ``mu_c`` and ``sigma_c`` are the mean and standard deviation of ``y_c`` over
  the training data, so ``z`` has mean 0 and variance 1 — the scale DDPM's ``N(0, I)`` prior assumes.
- ``mode="unit"``: ``mu_c = (max_c + min_c) / 2``, ``sigma_c = (max_c - min_c) / 2`` of ``y_c``, i.e. the training
  range maps onto ``[-1, 1]`` (what DDPM image code assumes). One extreme value sets the range, so it is
  less robust; it is here for comparison with papers that min-max normalise.

Inverse:

.. math::  x_c = s_c \\cdot \\operatorname{expm1}\\!\\big(\\max(0,\\; \\sigma_c z_c + \\mu_c)\\big)

The clamp at ``y = 0`` is *never* active on the image of real data (``x >= 0`` gives ``y >= 0``), so
``inverse(transform(x)) == x`` up to floating-point rounding. It is active only for values a generator
produces below the image of zero traffic, which it maps to exactly 0: generated traffic is never
negative. Values so large that ``x`` would overflow float32 are capped at the largest float32 (they would
otherwise become ``inf``, which the data model rejects); that cap never binds for ``z`` within hundreds of
standard deviations of the training data. Computations run in float64.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from cellsynth.errors import DataError, NotFittedError

__all__ = ["LogScaler", "output_range", "widened_range"]

_F32_MAX = float(np.finfo(np.float32).max)
_MIN_SCALE = 1e-30
_STATE = ("scale", "loc", "spread", "z_min", "z_max")


class LogScaler:
    """Per-channel ``z = (log1p(x / s) - mu) / sigma`` fitted on training traffic (see module docstring).

    Channels are the last axis of every array passed in: ``[..., C]``.
    """

    def __init__(self, mode: Literal["standard", "unit"] = "standard") -> None:
        if mode not in ("standard", "unit"):
            raise DataError(f"LogScaler mode must be 'standard' or 'unit', got {mode!r}")
        self.mode = mode
        self.scale_: np.ndarray | None = None
        self.loc_: np.ndarray | None = None
        self.spread_: np.ndarray | None = None
        #: Per-channel range of the transformed training data (a generator may clip its samples to it).
        self.z_min_: np.ndarray | None = None
        self.z_max_: np.ndarray | None = None

    # -- fitting -------------------------------------------------------------------------------------
    def fit(self, values: np.ndarray) -> LogScaler:
        """Estimate ``s_c``, ``mu_c`` and ``sigma_c`` from training values ``[..., C]`` (>= 0, finite)."""
        x = self._check(values, "fit").reshape(-1, np.shape(values)[-1])
        scale = np.ones(x.shape[1])
        for c in range(x.shape[1]):
            positive = x[:, c][x[:, c] > 0]
            if positive.size:
                # Floored so that x / s cannot overflow for any float32 traffic (found by hypothesis with
                # subnormal inputs); no real traffic has a typical value below 1e-30.
                scale[c] = max(np.median(positive), _MIN_SCALE)
        y = np.log1p(x / scale)
        if self.mode == "standard":
            loc, spread = y.mean(0), y.std(0)
        else:
            lo, hi = y.min(0), y.max(0)
            loc, spread = (hi + lo) / 2, (hi - lo) / 2
        # A constant channel (e.g. all zeros) has no spread: keep z = y - mu rather than dividing by 0.
        spread = np.where(spread > 1e-12, spread, 1.0)
        self.scale_, self.loc_, self.spread_ = scale, loc, spread
        z = (y - loc) / spread
        self.z_min_, self.z_max_ = z.min(0), z.max(0)
        return self

    # -- transform -----------------------------------------------------------------------------------
    def transform(self, values: np.ndarray) -> np.ndarray:
        """``x -> z`` (float64), ``values`` ``[..., C]`` non-negative."""
        self._fitted()
        x = self._check(values, "transform")
        return (np.log1p(x / self.scale_) - self.loc_) / self.spread_

    def inverse(self, z: np.ndarray) -> np.ndarray:
        """``z -> x`` (float64, always ``>= 0`` and finite), for any finite ``z`` (see module docstring)."""
        self._fitted()
        z = np.asarray(z, dtype=np.float64)
        if z.shape[-1:] != self.scale_.shape:
            raise DataError(f"expected {len(self.scale_)} channels in the last axis, got shape {z.shape}")
        y = np.maximum(z * self.spread_ + self.loc_, 0.0)
        with np.errstate(over="ignore"):
            x = self.scale_ * np.expm1(y)
        return np.minimum(x, _F32_MAX)

    # -- state ---------------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """The fitted constants as float64 arrays (for safetensors); inverse: :meth:`from_state`."""
        self._fitted()
        return {k: getattr(self, f"{k}_").copy() for k in _STATE}

    @classmethod
    def from_state(cls, state: dict, mode: Literal["standard", "unit"] = "standard") -> LogScaler:
        scaler = cls(mode)
        for key in _STATE:
            setattr(scaler, f"{key}_", np.asarray(state[key], dtype=np.float64))
        return scaler

    # -- helpers -------------------------------------------------------------------------------------
    def _fitted(self) -> None:
        if self.scale_ is None:
            raise NotFittedError("LogScaler: call fit(training values) first")

    def _check(self, values, what: str) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        if x.ndim < 1 or x.size == 0:
            raise DataError(f"LogScaler.{what}: need a non-empty array [..., channels], got shape {x.shape}")
        if self.scale_ is not None and x.shape[-1] != len(self.scale_):
            raise DataError(f"LogScaler.{what}: fitted on {len(self.scale_)} channels, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise DataError(f"LogScaler.{what}: values contain NaN or inf")
        if (x < 0).any():
            raise DataError(f"LogScaler.{what}: traffic cannot be negative (min {x.min()})")
        return x


def output_range(
    low: np.ndarray, high: np.ndarray, margin: float | None, floor: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The range generated normalised traffic is clipped to: ``[low, high]`` (the training range of ``z``)
    widened by ``margin`` (unbounded for None), raised below to ``low`` itself with ``floor``.

    Why the floor: a channel whose training values are all positive (user counts averaged over a half hour)
    has its minimum far below the median that sets the log scale, so a margin below reaches
    ``log1p(x / s) < 0``, which :meth:`LogScaler.inverse` turns into 0 traffic: values the channel never
    takes. Where the training data has zeros, ``low`` is already 0 traffic and the floor changes nothing.
    """
    if margin is None:
        lo, hi = np.full_like(low, -np.inf, dtype=np.float64), np.full_like(high, np.inf, dtype=np.float64)
    else:
        lo, hi = widened_range(low, high, margin)
    return (np.maximum(lo, low) if floor else lo), hi


def widened_range(low: np.ndarray, high: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """``[low - m (high - low), high + m (high - low)]``: a range widened by the share ``m = margin`` of its
    width on each side (the generators clip generated normalised traffic to the training range widened so)."""
    width = margin * (high - low)
    return low - width, high + width
