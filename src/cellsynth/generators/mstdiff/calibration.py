r"""Calibrating a trained generator's output marginal: post-processing fitted once, after training, on
values the generator itself draws (never on held-out data), saved with the model.

A continuous diffusion cannot put mass on an atom: a zero in the data is one point of the normalised
domain, generated values scatter around its image, the half below is clipped to 0 and the half above
becomes small positive traffic (MSTDiff, measured: 27 % zeros generated against 67 % real). And an
undertrained model's marginal is off elsewhere too. Two corrections, both monotone (they keep every
user's ranks, so its temporal structure):

- :func:`zero_threshold` -- only the atom: values ``<= tau`` become 0, with ``tau`` the generated
  ``p_0``-quantile (``p_0`` the training share of zeros). Leaves the positive values alone, and therefore
  leaves a gap ``(0, tau]`` where the real data has its smallest positive values.
- :class:`QuantileMap` -- the whole marginal (quantile mapping, as in the bias correction of climate
  models): ``x' = F_ref^{-1}(F_gen(x))``, with ``F_gen`` the CDF of the generator's calibration draw and
  ``F_ref`` the training values'. A generated value at the generator's ``p``-quantile becomes the training
  data's ``p``-quantile; the atom at 0 follows from ``F_ref^{-1}(p) = 0`` for ``p <= p_0``.

Both correct the values' marginal only, not how they move along time. A third corrects the first two
moments of each coordinate of the generator's own representation (MSTDiff: each wavelet coefficient of
the week) before the quantile map:

- :class:`MomentMap` -- ``z'_j = mu_ref,j + (sigma_ref,j / sigma_gen,j) (z_j - mu_gen,j)`` per coordinate
  ``j``, with the means and standard deviations over users of the calibration draw (gen) and of the
  training data (ref). In the wavelet domain that sets, per position of the week and per scale, the
  average and the spread of the coefficients: the mean weekly profile and how much energy each scale
  carries (MSTDiff measured: too much in the coarsest band, too little in the finest, so its weeks are
  too smooth from one step to the next). Affine per coordinate, so not monotone in time: it changes the
  shape of a week, which is the point.

A generator keeps all of them in one *calibration record* (:func:`fit_calibration`: the maps and the
shares of zeros; the generator adds the sampler its draw came from), applies the one its config names
(:func:`calibrate_traffic`) and saves the record with the model (:func:`calibration_state`,
:func:`restore_calibration`).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol, get_args

import numpy as np
import torch

from cellsynth.errors import ConfigError, DataError, NotFittedError

__all__ = [
    "CALIBRATION_MODES",
    "CalibrationMode",
    "MomentMap",
    "QuantileMap",
    "calibrate_traffic",
    "calibration_state",
    "fit_calibration",
    "restore_calibration",
    "zero_threshold",
]

CalibrationMode = Literal["quantiles", "moments", "zeros", "none"]
"""``"quantiles"``: :class:`QuantileMap`; ``"moments"``: :class:`MomentMap` in the generator's representation,
then a :class:`QuantileMap` fitted after it; ``"zeros"``: :func:`zero_threshold`; ``"none"``: the raw output."""
CALIBRATION_MODES: tuple[str, ...] = get_args(CalibrationMode)


def zero_threshold(generated: np.ndarray, zero_share: float) -> float:
    r"""The level at or below which generated values are set to 0 so that their share of zeros is the
    training data's: ``tau = Q_gen(p_0) = min{x : F_gen(x) >= p_0}``, the ``p_0``-quantile of the generated
    values (so at least ``p_0`` of them are ``<= tau``; more only by ties), ``p_0`` the training share of
    exact zeros; 0 when the generated values already hold that many zeros (then nothing changes)."""
    x = np.asarray(generated, dtype=np.float64).ravel()
    if not 0.0 <= zero_share <= 1.0:
        raise ValueError(f"zero_share must be in [0, 1], got {zero_share}")
    if x.size == 0 or zero_share == 0.0 or (x <= 0).mean() >= zero_share:
        return 0.0
    return float(np.quantile(x, zero_share, method="inverted_cdf"))


class QuantileMap:
    r"""``x' = F_ref^{-1}(F_gen(x))`` (module docstring), on ``knots`` probabilities ``p_k = k / (K - 1)``.

    Fitted constants: ``generated_knots`` and ``reference_knots``, the two samples' quantiles at ``p_k``
    (float64 ``[K]``, non-decreasing). :meth:`apply`:

    1. ``F_gen(x)``: the mid-rank of ``x`` among the generated knots, ``(i_left + i_right) / 2`` where
       ``i_left`` / ``i_right`` are the insertion points of ``x`` (so a value tied with many knots, like an atom
       at 0, gets the middle of the atom's probability range), linearly interpolated between knots, and read
       as a probability ``p = i / (K - 1)``;
    2. ``x' = F_ref^{-1}(p)``, linear between the reference knots.

    Values beyond the generated range map to the reference's extremes (the training minimum and maximum).
    """

    def __init__(self, knots: int = 1001) -> None:
        if knots < 2:
            raise ValueError(f"knots must be >= 2, got {knots}")
        self.knots = int(knots)
        self.generated_knots: np.ndarray | None = None
        self.reference_knots: np.ndarray | None = None

    def fit(self, generated, reference) -> QuantileMap:
        g, r = _finite(generated, "generated"), _finite(reference, "reference")
        p = np.linspace(0.0, 1.0, self.knots)
        self.generated_knots, self.reference_knots = np.quantile(g, p), np.quantile(r, p)
        return self

    def apply(self, values) -> np.ndarray:
        """``values`` (any shape) mapped onto the reference marginal; float64 of the same shape."""
        if self.generated_knots is None:
            raise NotFittedError("QuantileMap: call fit(generated, reference) first")
        x = np.asarray(values, dtype=np.float64)
        g = self.generated_knots
        left, right = np.searchsorted(g, x, "left"), np.searchsorted(g, x, "right")
        tied = left < right
        # between knots j-1 and j (left == right == j): fractional position (x - g_{j-1}) / (g_j - g_{j-1}).
        # Not np.interp: it forms the slope 1 / (g_j - g_{j-1}) first, which overflows to inf when the knots
        # are a subnormal step apart; the ratio of the two differences stays in [0, 1].
        j = np.clip(left, 1, len(g) - 1)
        step = g[j] - g[j - 1]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            fraction = np.clip(np.where(step > 0, (x - g[j - 1]) / step, 0.0), 0.0, 1.0)
        # beyond the last knot: the last knot (the clipped j would read a flat last step as its start)
        position = np.where(left == len(g), len(g) - 1.0, j - 1 + fraction)
        position = np.where(tied, 0.5 * (left + right - 1), position)
        return np.interp(position, np.arange(len(g), dtype=np.float64), self.reference_knots)

    def state(self) -> dict[str, np.ndarray]:
        if self.generated_knots is None:
            raise NotFittedError("QuantileMap: call fit(generated, reference) first")
        return {
            "generated_knots": self.generated_knots.copy(),
            "reference_knots": self.reference_knots.copy(),
        }

    @classmethod
    def from_state(cls, state: dict) -> QuantileMap:
        g = np.asarray(state["generated_knots"], dtype=np.float64)
        out = cls(len(g))
        out.generated_knots, out.reference_knots = g, np.asarray(state["reference_knots"], dtype=np.float64)
        return out


class MomentMap:
    r"""``z'_j = mu_ref,j + (sigma_ref,j / sigma_gen,j) (z_j - mu_gen,j)`` per coordinate ``j`` (module
    docstring). Fitted constants: ``generated_mean``, ``generated_std``, ``reference_mean``,
    ``reference_std`` (float64 ``[D]``); a coordinate with no spread in the calibration draw is only
    shifted (ratio 1)."""

    def __init__(self) -> None:
        self.generated_mean = self.generated_std = self.reference_mean = self.reference_std = None

    def fit(self, generated, reference) -> MomentMap:
        """``generated [U, D]`` (the calibration draw) and ``reference [V, D]`` (training data)."""
        g, r = _rows(generated, "generated"), _rows(reference, "reference")
        if g.shape[1] != r.shape[1]:
            raise DataError(f"MomentMap: generated has {g.shape[1]} coordinates, reference {r.shape[1]}")
        self.generated_mean, self.generated_std = g.mean(axis=0), g.std(axis=0)
        self.reference_mean, self.reference_std = r.mean(axis=0), r.std(axis=0)
        return self

    def apply(self, values) -> np.ndarray:
        """``values [..., D]`` mapped; float64 of the same shape."""
        if self.generated_mean is None:
            raise NotFittedError("MomentMap: call fit(generated, reference) first")
        z = np.asarray(values, dtype=np.float64)
        if z.shape[-1] != len(self.generated_mean):
            raise DataError(f"MomentMap: fitted on {len(self.generated_mean)} coordinates, got {z.shape[-1]}")
        spread = self.generated_std > 0
        ratio = np.where(spread, self.reference_std / np.where(spread, self.generated_std, 1.0), 1.0)
        return self.reference_mean + ratio * (z - self.generated_mean)

    def state(self) -> dict[str, np.ndarray]:
        if self.generated_mean is None:
            raise NotFittedError("MomentMap: call fit(generated, reference) first")
        names = ("generated_mean", "generated_std", "reference_mean", "reference_std")
        return {name: getattr(self, name).copy() for name in names}

    @classmethod
    def from_state(cls, state: dict) -> MomentMap:
        out = cls()
        for name, value in state.items():
            setattr(out, name, np.asarray(value, dtype=np.float64))
        return out


def _rows(values, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise DataError(f"MomentMap: {name} must be [rows >= 2, coordinates], got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError(f"MomentMap: {name} values have NaN/inf")
    return x


def _finite(values, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise DataError(f"QuantileMap: {name} values are empty")
    if not np.isfinite(x).all():
        raise DataError(f"QuantileMap: {name} values have NaN/inf")
    return x


# -- the calibration record of a generator --------------------------------------------------------------
class Representation(Protocol):
    """Where :class:`MomentMap` works: ``transform`` values ``[U, T]`` to coordinates ``[U, D]`` and back
    (MSTDiff: :class:`~cellsynth.transforms.wavelets.TrafficWavelets`)."""

    def transform(self, values: np.ndarray) -> np.ndarray: ...

    def inverse(self, coordinates: np.ndarray) -> np.ndarray: ...


#: The fitted maps of a calibration record and the prefix of their tensors in a saved model ("calibration."
#: is the quantile map's, as in models saved before the other two existed).
CALIBRATION_MAPS = {
    "quantile_map": ("calibration.", QuantileMap),
    "moment_map": ("calibration_moments.", MomentMap),
    "moment_quantile_map": ("calibration_moments_quantiles.", QuantileMap),
}


def fit_calibration(raw: np.ndarray, real: np.ndarray, representation: Representation) -> dict[str, Any]:
    """The record of every mode, fitted on a generator's raw draw ``raw [U, T]`` against the training values
    ``real [V, T]``: the training and raw shares of zeros, the :func:`zero_threshold`, the
    :class:`QuantileMap`, and the :class:`MomentMap` in ``representation`` with the quantile map fitted after
    it."""
    real = np.asarray(real, dtype=np.float64)
    zero_share = float((real == 0).mean())
    moment_map = MomentMap().fit(representation.transform(raw), representation.transform(real))
    return {
        "zero_share": zero_share,
        "raw_zero_share": float((raw <= 0).mean()),
        "zero_threshold": zero_threshold(raw, zero_share),
        "quantile_map": QuantileMap().fit(raw, real),
        "moment_map": moment_map,
        "moment_quantile_map": QuantileMap().fit(_matched_moments(raw, moment_map, representation), real),
    }


def calibrate_traffic(
    record: dict[str, Any] | None, traffic: np.ndarray, mode: str, representation: Representation, who: str
) -> np.ndarray:
    """Raw generated ``traffic [U, T]`` through mode ``mode`` of ``record`` (``"none"``, or no record:
    unchanged). ``who`` names the generator in the error of a record older than the mode."""
    if mode not in CALIBRATION_MODES:
        raise ConfigError(f"calibration mode must be one of {CALIBRATION_MODES}, got {mode!r}")
    if mode == "none" or record is None:
        return traffic
    if mode == "zeros":
        return np.where(traffic > record["zero_threshold"], traffic, np.float32(0))
    if mode == "moments":
        if "moment_map" not in record:
            raise ConfigError(
                f"{who}: this model was calibrated before calibration 'moments' existed; call "
                "calibrate(training data) once and save it again, or use calibration 'quantiles'"
            )
        traffic = _matched_moments(traffic, record["moment_map"], representation)
        return record["moment_quantile_map"].apply(traffic).astype(np.float32)
    return record["quantile_map"].apply(traffic).astype(np.float32)


def _matched_moments(
    traffic: np.ndarray, moment_map: MomentMap, representation: Representation
) -> np.ndarray:
    """``traffic`` with each coordinate's mean and spread (in ``representation``) set by ``moment_map``."""
    return representation.inverse(moment_map.apply(representation.transform(traffic)))


def calibration_state(record: dict[str, Any] | None) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """``record`` as (tensors of its maps, JSON-able rest) for a saved model; inverse: :func:`restore_calibration`."""
    if record is None:
        return {}, None
    tensors = {}
    for key, (prefix, _) in CALIBRATION_MAPS.items():
        if key in record:
            tensors |= {f"{prefix}{k}": torch.from_numpy(v) for k, v in record[key].state().items()}
    return tensors, {k: v for k, v in record.items() if k not in CALIBRATION_MAPS}


def restore_calibration(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The record saved by :func:`calibration_state` (None: a model without one, or saved before calibration
    existed; the maps it was saved with, only)."""
    record = meta
    for key, (prefix, kind) in CALIBRATION_MAPS.items():
        state = {k[len(prefix) :]: v.numpy() for k, v in tensors.items() if k.startswith(prefix)}
        if record is not None and state:
            record = record | {key: kind.from_state(state)}
    return record
