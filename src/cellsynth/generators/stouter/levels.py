r"""A station's traffic level, predicted from what is known about a site before it carries traffic.

Why this exists: across stations, load is heavy-tailed (the synthetic city's busiest 10 % carry ~46 % of
it; real cities alike), while within a station the week has a shape. A diffusion model that has to draw
both from one ``N(0, I)`` sample spreads a new station's level over orders of magnitude (measured with
STOUTER on the synthetic city: the 5-95 % band of a busy held-out station ran from ~0 to 1.3x the training
maximum, and the sampled level correlated ~0 with the real one). So STOUTER separates them:

.. math::

    z_{n,t,c} = \ell_{n,c} + \sigma^{shape}_c \, u_{n,t,c}, \qquad
    \ell_{n,c} = \frac{1}{T} \sum_t z_{n,t,c}

where ``z`` is the normalised traffic (:class:`~cellsynth.transforms.scaling.LogScaler`), ``ell`` the station's
level (its mean in log space, so a multiplicative level in traffic units) and ``u`` the level-free week that
the diffusion model learns. :class:`LevelRegression` predicts ``ell`` from station descriptors ``d`` (for
STOUTER: the spatial embedding ``F_s``, the standardised station features and, for non-negative
features such as POI counts, their ``log1p``), by ridge regression on the training stations:

.. math::

    \hat\ell(d) = \bar\ell + \tilde d\, \hat\beta, \qquad
    \hat\beta = (\tilde D^\top \tilde D + \alpha I)^{-1} \tilde D^\top (L - \bar\ell)

with ``D~`` the descriptors standardised over training stations. The ridge penalty ``alpha`` is the one
with the smallest leave-one-out error over a log grid, which ridge gives in closed form (with ``H`` the hat
matrix ``D~ (D~^T D~ + alpha I)^{-1} D~^T``): ``e_i = (ell_i - ell-hat_i) / (1 - H_ii)`` (the intercept's
leverage ``1/N`` is added to ``H_ii``).

A new station's level is not determined by its descriptors (two sites with the same POIs differ), so the
model keeps the covariance ``Sigma`` (``C x C``, across channels) of the leave-one-out residuals, i.e. of
its errors on stations it did not see, and *draws* a level per generated sample:

.. math::  \ell^{(k)} = \hat\ell(d) + \Sigma^{1/2} \xi^{(k)}, \qquad \xi^{(k)} \sim N(0, I_C)

which keeps channels consistent (a busy site is busy in every channel) and makes the spread of the
generated levels the honest uncertainty of the prediction. With no descriptors (``d`` of width 0) the
prediction is the mean training level and ``Sigma`` the covariance of the training levels.

**When not to use it.** The split assumes a week's shape does not depend on its level. Data whose rows
were rescaled per station breaks that: in the STK-Diff Beijing set the row means lie within 4.1-7.1 M and
a station's mean and its spread correlate at -0.97 across stations, and drawing the level apart from the
week doubled STOUTER's held-out value JSD (docs/notebook/2026-11-21-stouter-beijing.md). For such data
set ``level_model: none``
(``configs/beijing/stouter.yaml`` does).

**Neighbour levels** (``level_model: knn``, :class:`NeighbourLevels`). The ridge draw is Gaussian around a
linear prediction; real levels are neither (on Nanjing's 256-d knowledge-graph embeddings the ridge explains
0 % of them, while the nearest training station in feature space has the lowest held-out value JSD of all
models). The k-nearest-neighbour conditional distribution makes no such assumption: a new site's level, per
sample, is the whole level vector (all channels) of one of its ``k`` nearest training stations in
standardised feature space (:func:`~cellsynth.generators.floors.stations.nearest_training_stations`, the
``nearest-station`` floor's metric), drawn uniformly:

.. math::  \ell^{(k)} = \ell_{J^{(k)}}, \qquad J^{(k)} \sim \mathrm{Uniform}\{\text{the k nearest}\}

``k = 1`` is the floor's copy of the nearest station's level, ``k = N`` the marginal distribution of the
training levels. ``k`` is the one with the lowest leave-one-out CRPS of the training levels (each station
scored against the levels of its ``k`` nearest *other* stations, summed over channels; the CRPS of an
ensemble ``X_1..X_k`` for ``y`` is ``mean_j |X_j - y| - 1/(2k^2) sum_{j,l} |X_j - X_l|``), which rewards
both a close centre and an honest spread.
"""

from __future__ import annotations

import numpy as np
import torch

from cellsynth.errors import DataError, NotFittedError
from cellsynth.metrics.traffic import ensemble_crps

__all__ = [
    "MIN_STATIONS",
    "LevelRegression",
    "NeighbourLevels",
    "at_level",
    "daily_part",
    "fit_channel_shape_scales",
    "fit_shape_scale",
    "recent_level_shift",
    "station_levels",
]

#: Training stations a level regression needs: with fewer, each leave-one-out fit has at most one station to
#: learn from, and the out-of-sample spread it keeps is no estimate at all.
MIN_STATIONS = 3

#: Ridge penalties tried, as multiples of the number of training stations (the grid is scale-free because
#: the descriptors are standardised).
_ALPHA_GRID = np.logspace(-4, 3, 36)
#: Neighbour counts the kNN level prior tries (capped at N - 1 training stations).
_NEIGHBOUR_GRID = (1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987)
_STATE = ("d_mean", "d_std", "beta", "intercept", "covariance", "alpha")


#: The level-dependent shape scale (``extensions.shape_scale``): at most this many level bins, each of at least
#: ``SHAPE_BIN_STATIONS`` training stations (fewer stations, fewer bins; one bin is the pooled scale).
SHAPE_BINS = 10
SHAPE_BIN_STATIONS = 25


def level_bins(stations: int) -> int:
    """The level bins of :func:`fit_shape_scale` for this many training stations: ``min(10, max(1, N // 25))``."""
    return min(SHAPE_BINS, max(1, stations // SHAPE_BIN_STATIONS))


def daily_part(x: np.ndarray, days: int = 7) -> np.ndarray:
    """The projection of weeks ``x`` ``[..., L, C]`` (time on axis -2, ``L`` = ``days`` whole days) onto their
    mean day: each step replaced by the mean of the same time of day over the ``days`` days. Linear and
    idempotent: ``daily_part(x - daily_part(x)) = 0``."""
    x = np.asarray(x, dtype=np.float64)
    *lead, length, c = x.shape
    per_day = x.reshape(*lead, days, length // days, c)
    return np.broadcast_to(per_day.mean(-3, keepdims=True), per_day.shape).reshape(x.shape)


def fit_shape_scale(
    levels: np.ndarray, centred: np.ndarray, *, daily: bool = False, bins: int | None = None
) -> dict[str, np.ndarray]:
    r"""The scale of a station's week as a function of its level, ``sigma_c(ell)`` (``extensions.shape_scale:
    level``): ``{"knots", "scales", "low", "high"}``, each ``[K, C]``, from the training levels ``ell``
    ``[N, C]`` and the weeks' deviations from them, ``centred = z - ell`` ``[N, ..., C]``.

    Per channel the stations are sorted by level and cut into ``K = min(10, max(1, N // 25))`` (or ``bins``)
    groups of equal count ``G_k``; the knot is the group's median level and the scale its RMS deviation,

    .. math::  s_k = \Big(\frac{1}{|G_k| T} \sum_{n \in G_k} \sum_t (z_{n,t} - \ell_n)^2\Big)^{1/2},

    and :func:`at_level` interpolates linearly between the knots (constant beyond them). ``K = 1`` is the
    pooled scale. ``low`` and ``high`` are each group's smallest and largest deviation: a generated week
    deviates from its level no further than the weeks of stations at that level did (the generator widens
    them by ``clip_margin``). Without them, a quiet station's burst, many of its small ``sigma`` above its
    level, would be drawn for a busy station as many of a busy station's ``sigma``.

    ``daily=True`` (``shape_scale: level-daily``; ``centred`` ``[N, W, L, C]``, whole weeks) gives the mean
    day and the rest their own scales: ``scales`` is then the RMS of :func:`daily_part` of the deviations and
    ``residual_scales`` that of the rest, because the hour-to-hour noise of real traffic grows far less with
    the level than its daily swing does.

    Why: in ``log1p(x / s)`` a quiet station's week is flattened (``log1p`` is linear near 0) while a busy one
    swings by the log of its peak-to-trough ratio, so one scale for all gives quiet sites too much swing and
    busy ones too little (Nanjing's user counts: daily swing 0.44 / 0.84 / 1.49 over the level terciles,
    drawn 0.47 / 0.75 / 0.65 with the pooled scale; docs/notebook/2026-12-05-stouter-shape-scale.md, which
    also says why it is off in the presets: real traffic's hour-to-hour noise does not grow with the level
    as its swing does, and one scale scales both).
    """
    ell = np.asarray(levels, dtype=np.float64)
    dev = np.asarray(centred, dtype=np.float64)
    n, c = ell.shape
    flat = dev.reshape(n, -1, c)
    low, high = flat.min(1), flat.max(1)  # [N, C] each
    parts = {"scales": dev}
    if daily:
        profile = daily_part(dev)
        parts = {"scales": profile, "residual_scales": dev - profile}
    square = {key: (part.reshape(n, -1, c) ** 2).mean(1) for key, part in parts.items()}  # [N, C] each
    if bins is None:
        bins = level_bins(n)
    elif not 1 <= bins <= n:
        raise ValueError(f"bins must lie in 1..{n} (the training stations), got {bins}")
    fitted = {key: np.empty((bins, c)) for key in ("knots", "low", "high", *parts)}
    for ch in range(c):
        for k, group in enumerate(np.array_split(np.argsort(ell[:, ch], kind="stable"), bins)):
            fitted["knots"][k, ch] = np.median(ell[group, ch])
            fitted["low"][k, ch], fitted["high"][k, ch] = low[group, ch].min(), high[group, ch].max()
            for key in parts:
                fitted[key][k, ch] = np.sqrt(square[key][group, ch].mean())
    for key in parts:  # a constant channel (or one without a daily swing): that part is left as it is
        fitted[key] = np.where(fitted[key] > 1e-12, fitted[key], 1.0)
    return fitted


def fit_channel_shape_scales(
    levels: np.ndarray, centred: np.ndarray, modes: list[str], pooled_sd: np.ndarray
) -> dict[str, np.ndarray]:
    r""":func:`fit_shape_scale` with each channel's own ``extensions.shape_scale`` (``modes``, one of
    ``pooled``, ``daily``, ``level``, ``level-daily`` per channel; ``centred`` ``[N, W, L, C]``, whole weeks):
    ``{"knots", "scales", "residual_scales", "low", "high", "clipped"}``, the first five ``[K, C]`` with the
    level bins ``K`` of :func:`fit_shape_scale`, ``clipped`` ``[C]`` bool.

    Every channel is written in the level-daily form ``P(d) / sigma(ell) + (d - P(d)) / sigma_r(ell)``, which
    holds each mode exactly: ``pooled`` is ``sigma = sigma_r = pooled_sd`` at every level (``P`` is linear, so
    the split at equal scales is ``d / sigma``) and is not clipped by level (``clipped`` False), as a pooled
    model is not; ``level`` is ``sigma_r = sigma``; ``daily`` is the one-bin level-daily scale at every knot.
    Why per channel: the daily swing of user counts scales with the level as the level-daily scale draws it,
    while the mean day of traffic is smoother at busy sites than at quiet ones, which no level scale of a
    level-blind network draws (docs/notebook/2026-12-07-stouter-level-roughness.md); a model of both channels
    needs both."""
    ell = np.asarray(levels, dtype=np.float64)
    n, c = ell.shape
    if len(modes) != c:
        raise ValueError(f"{len(modes)} shape_scale modes for {c} channels")
    bins = level_bins(n)
    out = {key: np.empty((bins, c)) for key in ("knots", "scales", "residual_scales", "low", "high")}
    out["clipped"] = np.array([mode != "pooled" for mode in modes])
    for ch, mode in enumerate(modes):
        one = slice(ch, ch + 1)
        if mode == "level":
            fitted = fit_shape_scale(ell[:, one], centred[..., one], bins=bins)
            fitted["residual_scales"] = fitted["scales"]
        elif mode in ("level-daily", "daily", "pooled"):
            fitted = fit_shape_scale(ell[:, one], centred[..., one], daily=True, bins=bins)
            # "daily": the one-bin scales, given at the level bins' knots so that the knots still rise
            if mode == "daily":
                whole = fit_shape_scale(ell[:, one], centred[..., one], daily=True, bins=1)
                knots = fitted["knots"]
                fitted = {key: np.broadcast_to(value, (bins, 1)) for key, value in whole.items()}
                fitted["knots"] = knots
            elif mode == "pooled":
                scale = np.full((bins, 1), float(pooled_sd[ch]))
                fitted |= {"scales": scale, "residual_scales": scale}
        else:
            raise ValueError(f"unknown shape_scale {mode!r}")
        for key in ("knots", "scales", "residual_scales", "low", "high"):
            out[key][:, ch] = fitted[key][:, 0]
    return out


def at_level(level: np.ndarray, knots: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` ``[K, C]`` given at the ``knots`` ``[K, C]`` of :func:`fit_shape_scale`, at levels
    ``[..., C]``: linear between the knots, constant beyond them; the shape of ``level``."""
    ell = np.asarray(level, dtype=np.float64)
    out = np.empty_like(ell)
    for ch in range(ell.shape[-1]):
        out[..., ch] = np.interp(ell[..., ch], knots[:, ch], values[:, ch])
    return out


def station_levels(z: np.ndarray) -> np.ndarray:
    """``ell_{n,c}``: the mean of ``z`` ``[N, ..., C]`` over every axis but the first and last -> ``[N, C]``."""
    z = np.asarray(z, dtype=np.float64)
    return z.reshape(z.shape[0], -1, z.shape[-1]).mean(1)


def recent_level_shift(weekly_levels: np.ndarray, recent_weeks: int) -> np.ndarray:
    """``ell_recent - ell_all`` ``[N, C]`` from the levels of each station's training weeks ``[N, W, C]``:
    the mean of the last ``min(recent_weeks, W)`` weeks minus the mean of all ``W`` (zero with one week).

    Why: a known station's samples carry its level over all training weeks; a planner asking for its next
    weeks needs its recent level when load drifts (``extensions.known_level: recent``). In log space the
    shift is a factor ``exp(sigma_c (ell_recent - ell_all))`` on the traffic.
    """
    levels = np.asarray(weekly_levels, dtype=np.float64)
    if levels.ndim != 3:
        raise DataError(f"weekly levels must be [N stations, W weeks, C], got shape {levels.shape}")
    if recent_weeks < 1:
        raise DataError(f"recent_weeks must be >= 1, got {recent_weeks}")
    return levels[:, -recent_weeks:].mean(1) - levels.mean(1)


class LevelRegression:
    """Ridge regression of station levels ``[N, C]`` on descriptors ``[N, D]`` (module docstring)."""

    def __init__(self) -> None:
        self.d_mean_: np.ndarray | None = None
        self.d_std_: np.ndarray | None = None
        self.beta_: np.ndarray | None = None  # [D, C]
        self.intercept_: np.ndarray | None = None  # [C]
        self.covariance_: np.ndarray | None = None  # [C, C]
        self.alpha_: np.ndarray | None = None  # [] (the chosen penalty)
        self._level_var: np.ndarray | None = None  # [C], variance of the training levels

    def fit(self, descriptors: np.ndarray, levels: np.ndarray) -> LevelRegression:
        d = self._check(descriptors, "descriptors")
        y = np.asarray(levels, dtype=np.float64)
        if y.ndim != 2 or len(y) != len(d):
            raise DataError(f"levels must be [N, C] with N = {len(d)} stations, got shape {y.shape}")
        if len(d) < MIN_STATIONS:
            raise DataError(
                f"a level regression needs at least {MIN_STATIONS} training stations, got {len(d)}"
            )
        n = len(d)
        self.d_mean_ = d.mean(0)
        sd = d.std(0)
        self.d_std_ = np.where(sd > 1e-12, sd, 1.0)  # a constant descriptor becomes zeros
        x = (d - self.d_mean_) / self.d_std_
        self.intercept_, self._level_var = y.mean(0), y.var(0)
        yc = y - self.intercept_
        if x.shape[1] == 0:
            residuals, alpha, self.beta_ = yc * n / (n - 1), np.inf, np.zeros((0, y.shape[1]))
        else:
            u, s, vt = np.linalg.svd(x, full_matrices=False)
            uty = u.T @ yc
            best = None
            for alpha in _ALPHA_GRID * n:
                shrink = s**2 / (s**2 + alpha)  # [r]
                fitted = u @ (shrink[:, None] * uty)
                leverage = (u**2) @ shrink + 1.0 / n
                loo = (yc - fitted) / (1.0 - leverage)[:, None]
                error = float((loo**2).sum())
                if best is None or error < best[0]:
                    best = (error, alpha, loo)
            _, alpha, residuals = best
            self.beta_ = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)
        self.alpha_ = np.asarray(alpha, dtype=np.float64)
        self.covariance_ = np.atleast_2d(np.cov(residuals, rowvar=False, bias=True))
        return self

    def predict(self, descriptors: np.ndarray) -> np.ndarray:
        """``ell-hat`` ``[M, C]`` for descriptors ``[M, D]``."""
        self._fitted()
        d = self._check(descriptors, "descriptors")
        if d.shape[1] != len(self.d_mean_):
            raise DataError(f"descriptors must have {len(self.d_mean_)} columns, got {d.shape[1]}")
        return self.intercept_ + ((d - self.d_mean_) / self.d_std_) @ self.beta_

    def sample(self, descriptors: np.ndarray, samples: int, generator: torch.Generator) -> np.ndarray:
        """Drawn levels ``[M, samples, C]``: ``ell-hat(d) + Sigma^{1/2} xi`` (module docstring)."""
        mean = self.predict(descriptors)
        xi = torch.randn((len(mean), samples, mean.shape[1]), generator=generator, dtype=torch.float64)
        return mean[:, None, :] + xi.numpy() @ self.sqrt_covariance().T

    def sqrt_covariance(self) -> np.ndarray:
        """A matrix ``S`` with ``S S^T = Sigma`` (eigen-decomposition: valid for a singular ``Sigma`` too)."""
        self._fitted()
        w, v = np.linalg.eigh(self.covariance_)
        return v * np.sqrt(np.clip(w, 0.0, None))

    @property
    def explained(self) -> np.ndarray:
        """Per channel, the share of the training levels' variance the prediction explains out of sample:
        ``1 - Sigma_cc / Var(ell_c)`` (leave-one-out; 0 with no descriptors)."""
        self._fitted()
        return 1.0 - np.diag(self.covariance_) / np.maximum(self._level_var, 1e-300)

    # -- state ---------------------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        self._fitted()
        return {k: np.asarray(getattr(self, f"{k}_"), dtype=np.float64) for k in _STATE} | {
            "level_var": self._level_var
        }

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> LevelRegression:
        model = cls()
        for key in _STATE:
            setattr(model, f"{key}_", np.asarray(state[key], dtype=np.float64))
        model._level_var = np.asarray(state["level_var"], dtype=np.float64)
        return model

    # -- helpers -------------------------------------------------------------------------------------
    def _fitted(self) -> None:
        if self.beta_ is None:
            raise NotFittedError("LevelRegression: call fit(descriptors, levels) first")

    @staticmethod
    def _check(values: np.ndarray, what: str) -> np.ndarray:
        x = np.asarray(values, dtype=np.float64)
        if x.ndim != 2:
            raise DataError(f"{what} must be [stations, columns], got shape {x.shape}")
        if not np.isfinite(x).all():
            raise DataError(f"{what} contain NaN or inf")
        return x


class NeighbourLevels:
    """A new site's level drawn from the levels of its ``k`` nearest training stations (module docstring,
    "Neighbour levels"). It works on neighbour indices, so the metric is the caller's."""

    def __init__(self) -> None:
        self.levels_: np.ndarray | None = None  # [N, C], the training levels
        self.neighbours_: np.ndarray | None = None  # [], the chosen k
        self.crps_: np.ndarray | None = None  # [], its leave-one-out CRPS (summed over channels)
        self.loo_mse_: np.ndarray | None = None  # [C], leave-one-out error of the k neighbours' mean level

    def fit(
        self, levels: np.ndarray, loo_neighbours: np.ndarray, grid: tuple[int, ...] | None = None
    ) -> NeighbourLevels:
        """``levels`` ``[N, C]``; ``loo_neighbours`` ``[N, K]``: each training station's nearest *other*
        training stations, nearest first. ``grid``: the ``k`` tried (default: 1, 2, 3, 5, 8, ... below
        ``K``, and ``K``)."""
        y = np.asarray(levels, dtype=np.float64)
        order = np.asarray(loo_neighbours)
        if y.ndim != 2 or order.ndim != 2 or len(order) != len(y):
            raise DataError(
                f"levels must be [N, C] and neighbours [N, K] with the same N, got {y.shape} and {order.shape}"
            )
        if len(y) < MIN_STATIONS:
            raise DataError(
                f"a neighbour level prior needs at least {MIN_STATIONS} training stations, got {len(y)}"
            )
        if (order == np.arange(len(y))[:, None]).any() or order.min() < 0 or order.max() >= len(y):
            raise DataError("leave-one-out neighbours must be indices of other training stations")
        best = None
        if grid is None:
            grid = (*(k for k in _NEIGHBOUR_GRID if k < order.shape[1]), order.shape[1])
        if not grid or min(grid) < 1 or max(grid) > order.shape[1]:
            raise DataError(f"neighbour counts must lie in 1..{order.shape[1]}, got {grid}")
        for k in grid:
            draws = y[order[:, :k]]  # [N, k, C]
            score = float(ensemble_crps(draws, y).sum(1).mean())
            if best is None or score < best[0]:
                best = (score, k, ((draws.mean(1) - y) ** 2).mean(0))
        self.crps_, self.neighbours_, self.loo_mse_ = (np.asarray(v, dtype=np.float64) for v in best)
        self.levels_ = y.copy()  # its own array: saved apart from the caller's
        return self

    @property
    def k(self) -> int:
        self._fitted()
        return int(self.neighbours_)

    def sample(self, neighbours: np.ndarray, samples: int, generator: torch.Generator) -> np.ndarray:
        """Drawn levels ``[M, samples, C]`` for stations whose nearest training stations are ``neighbours``
        ``[M, >= k]`` (nearest first): each sample the level of one of the first ``k``, uniformly."""
        self._fitted()
        order = np.asarray(neighbours)
        if order.ndim != 2 or order.shape[1] < min(self.k, len(self.levels_)):
            raise DataError(f"neighbours must be [M, >= {self.k}], got shape {order.shape}")
        pick = torch.randint(0, self.k, (len(order), samples), generator=generator).numpy()
        return self.levels_[np.take_along_axis(order[:, : self.k], pick, axis=1)]

    @property
    def explained(self) -> np.ndarray:
        """Per channel ``1 - MSE_loo / Var(ell_c)``, the MSE of the ``k`` neighbours' mean level (as
        :attr:`LevelRegression.explained`)."""
        self._fitted()
        return 1.0 - self.loo_mse_ / np.maximum(self.levels_.var(0), 1e-300)

    def state(self) -> dict[str, np.ndarray]:
        self._fitted()
        return {k: np.asarray(getattr(self, f"{k}_"), dtype=np.float64) for k in _NEIGHBOUR_STATE}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> NeighbourLevels:
        model = cls()
        for key in _NEIGHBOUR_STATE:
            setattr(model, f"{key}_", np.asarray(state[key], dtype=np.float64))
        return model

    def _fitted(self) -> None:
        if self.levels_ is None:
            raise NotFittedError("NeighbourLevels: call fit(levels, loo_neighbours) first")


_NEIGHBOUR_STATE = ("levels", "neighbours", "crps", "loo_mse")
