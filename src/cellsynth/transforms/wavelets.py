r"""The multi-scale view of a user's traffic week that MSTDiff diffuses in: normalisation, then a discrete
wavelet transform (DWT), both exactly invertible.

**DWT.** A ``J``-level (default 3) Daubechies-1 (Haar) DWT of each series ``x[0..T-1]`` (PyWavelets,
``mode="periodization"``, so every level halves the length exactly and no boundary coefficients are
added)::

    W x = [cA_J, cD_J, cD_{J-1}, ..., cD_1]      lengths [T/2^J, T/2^J, T/2^(J-1), ..., T/2]

concatenated into one vector of length ``T`` (``T`` must be divisible by ``2^J``). For ``T = 336``,
``J = 3``: ``[cA3, cD3, cD2, cD1]`` of lengths ``[42, 42, 84, 168]``. With db1, ``cA3[k]`` is the sum of the 8
values of steps ``8k..8k+7`` over ``sqrt(8)`` (a 4-hour mean, scaled), ``cD_j[k]`` the difference between the
halves of a block of ``2^j`` steps. The transform is orthogonal, so :func:`idwt` inverts it to rounding.

**Normalisation** (:class:`TrafficWavelets`), before the DWT, reusing :class:`cellsynth.transforms.scaling.LogScaler`
(fitted on all training values)::

    y = (log(1 + x / s) - mu) / sigma           s: median of the positive values; mu, sigma of log(1 + x/s)

User traffic is heavy-tailed and zero-inflated; the log compresses the bursts so that the Gaussian
diffusion does not spend its capacity on a few extreme values. Then, per band ``b``
(``band_standardise=True``, default), the coefficients are standardised with the band's mean and
standard deviation over the training users and positions::

    c_b = (W y)_b,    z_b = (c_b - m_b) / d_b

so that the DDPM's ``N(0, I)`` prior fits every band equally: without it the approximation band (std
``~sqrt(2^J)`` for a smooth series) would keep its signal far longer under the same noise than the
detail bands (std well below 1), i.e. each band would see a different effective noise schedule.

Inverse: ``x = s expm1(max(0, sigma y + mu))`` with ``y = W^{-1}(d z + m)`` — never negative; values the
model puts below the image of zero traffic become exactly 0.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pywt

from cellsynth.errors import DataError, NotFittedError
from cellsynth.transforms.scaling import LogScaler

__all__ = ["TrafficWavelets", "band_lengths", "band_names", "band_slices", "dwt", "idwt"]

_MODE = "periodization"


def _check_length(n_steps: int, level: int) -> None:
    if level < 1:
        raise DataError(f"the wavelet level must be >= 1, got {level}")
    if n_steps % (2**level) or n_steps == 0:
        raise DataError(
            f"a {level}-level DWT needs a series length divisible by 2^{level} = {2**level}; got {n_steps} steps "
            f"(crop or pad the week, or lower the level)"
        )


def band_lengths(n_steps: int, level: int = 3) -> list[int]:
    """``[T/2^J, T/2^J, T/2^(J-1), ..., T/2]``: the lengths of ``[cA_J, cD_J, ..., cD_1]``."""
    _check_length(n_steps, level)
    return [n_steps >> level] + [n_steps >> j for j in range(level, 0, -1)]


def band_names(level: int = 3) -> list[str]:
    """``["cA3", "cD3", "cD2", "cD1"]`` for ``level=3``."""
    return [f"cA{level}"] + [f"cD{j}" for j in range(level, 0, -1)]


def band_slices(n_steps: int, level: int = 3) -> list[slice]:
    """Where each band sits in the concatenated coefficient vector."""
    ends = np.cumsum([0, *band_lengths(n_steps, level)])
    return [slice(int(a), int(b)) for a, b in pairwise(ends)]


def dwt(x, level: int = 3, wavelet: str = "db1") -> np.ndarray:
    """``[..., T]`` -> the concatenated coefficients ``[cA_J, cD_J, ..., cD_1]`` ``[..., T]`` (float64),
    vectorised over the leading axes."""
    x = np.asarray(x, dtype=np.float64)
    _check_length(x.shape[-1], level)
    return np.concatenate(pywt.wavedec(x, wavelet, mode=_MODE, level=level, axis=-1), axis=-1)


def idwt(coefficients, level: int = 3, wavelet: str = "db1") -> np.ndarray:
    """Inverse of :func:`dwt`: concatenated coefficients ``[..., T]`` -> series ``[..., T]`` (float64)."""
    c = np.asarray(coefficients, dtype=np.float64)
    parts = [c[..., s] for s in band_slices(c.shape[-1], level)]
    return pywt.waverec(parts, wavelet, mode=_MODE, axis=-1)


class TrafficWavelets:
    """Normalise user traffic ``[U, T]`` and take its DWT; :meth:`inverse` undoes both (see module docstring).

    Fitted constants: ``scaler`` (a :class:`LogScaler`), ``band_mean [n_bands]``, ``band_std [n_bands]``
    (0 and 1 with ``band_standardise=False``).
    """

    def __init__(self, level: int = 3, wavelet: str = "db1", band_standardise: bool = True) -> None:
        self.level, self.wavelet, self.band_standardise = int(level), wavelet, bool(band_standardise)
        self.scaler: LogScaler | None = None
        self.band_mean: np.ndarray | None = None
        self.band_std: np.ndarray | None = None

    @property
    def n_bands(self) -> int:
        return self.level + 1

    def fit(self, traffic) -> TrafficWavelets:
        x = np.asarray(traffic, dtype=np.float64)
        if x.ndim != 2:
            raise DataError(f"traffic must be [users, steps], got shape {x.shape}")
        self.scaler = LogScaler("standard").fit(x[..., None])
        c = dwt(self.scaler.transform(x[..., None])[..., 0], self.level, self.wavelet)
        slices = band_slices(x.shape[1], self.level)
        if self.band_standardise:
            self.band_mean = np.array([c[:, s].mean() for s in slices])
            std = np.array([c[:, s].std() for s in slices])
            self.band_std = np.where(std > 1e-12, std, 1.0)
        else:
            self.band_mean, self.band_std = np.zeros(len(slices)), np.ones(len(slices))
        return self

    def _per_position(self, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
        lengths = band_lengths(n_steps, self.level)
        return np.repeat(self.band_mean, lengths), np.repeat(self.band_std, lengths)

    def transform(self, traffic) -> np.ndarray:
        """Traffic ``[U, T]`` (>= 0) -> standardised coefficients ``[U, T]`` (float64)."""
        self._fitted()
        x = np.asarray(traffic, dtype=np.float64)
        c = dwt(self.scaler.transform(x[..., None])[..., 0], self.level, self.wavelet)
        mean, std = self._per_position(x.shape[-1])
        return (c - mean) / std

    def inverse(self, coefficients) -> np.ndarray:
        """Standardised coefficients ``[..., T]`` -> traffic ``[..., T]``, float64, finite and ``>= 0``."""
        self._fitted()
        z = np.asarray(coefficients, dtype=np.float64)
        mean, std = self._per_position(z.shape[-1])
        y = idwt(z * std + mean, self.level, self.wavelet)
        return self.scaler.inverse(y[..., None])[..., 0]

    def state(self) -> dict[str, np.ndarray]:
        self._fitted()
        return {**self.scaler.state(), "band_mean": self.band_mean.copy(), "band_std": self.band_std.copy()}

    @classmethod
    def from_state(cls, state: dict, level: int = 3, wavelet: str = "db1", band_standardise: bool = True):
        out = cls(level, wavelet, band_standardise)
        out.scaler = LogScaler.from_state(state)
        out.band_mean = np.asarray(state["band_mean"], dtype=np.float64)
        out.band_std = np.asarray(state["band_std"], dtype=np.float64)
        return out

    def _fitted(self) -> None:
        if self.scaler is None:
            raise NotFittedError("TrafficWavelets: call fit(training traffic) first")
