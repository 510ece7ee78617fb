"""Observers: watch a tensor over calibration batches, then choose the range to quantize it to.

Each observer follows the scikit-learn verbs: parameters in ``__init__``,
``partial_fit(batch)`` to add one batch, ``fit(batches)`` to start afresh
and add them all (both return the observer), learned state in attributes
ending in ``_``. After fitting, ``range_`` is the chosen ``(lo, hi)`` and
:meth:`Observer.quant_params` the affine parameters covering it.

* :class:`MinMaxObserver`: ``[min x, max x]`` over every batch (per tensor, or
  per channel along ``axis``);
* :class:`MovingAverageMinMaxObserver`: each batch's ``[min, max]`` folded in
  by ``r <- (1 - c) r + c r_batch`` (the first batch sets ``r``);
* :class:`PercentileObserver`: the ``p``-th and ``(100 - p)``-th percentiles;
* :class:`MSEObserver`: the range ``alpha [min, max]`` whose quantization
  error ``N_in Delta^2 / 12 + sum_{x outside} (x - clip(x))^2`` is smallest;
* :class:`KLObserver`: the clipping threshold ``T`` whose quantized
  distribution ``Q`` is closest to the observed ``P`` in
  ``KL(P || Q) = sum_i P_i log(P_i / Q_i)`` (the entropy calibration of
  TensorRT, Migacz 2017).

The last three read a histogram (:class:`Histogram`) whose bins sit at
multiples of a width ``w = 2^k``; when a batch falls outside, ``w`` doubles
and neighbouring bins merge, which is exact, so the result does not depend
on how the calibration data is split into batches (beyond the bin width).
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable

import numpy as np
from numba import njit

from ..errors import AttributeValueError, DataError
from ..graph import QuantParams
from ..kernels.reference import round_half_away_np
from .fakequant import qrange

Range = tuple[float, float]


# --------------------------------------------------------------------------- affine parameters

def affine_params(lo: float, hi: float, bits: int = 8, symmetric: bool = False) -> QuantParams:
    """Parameters whose codes cover ``[min(lo, 0), max(hi, 0)]`` (0.0 always has an exact code).

    Asymmetric: ``s = (hi - lo) / (qmax - qmin)``, ``z = round(qmin - lo / s)``
    clamped to ``[qmin, qmax]``. Symmetric: ``s = max(|lo|, |hi|) / qmax``,
    ``z = 0`` (the narrow range ``[-qmax, qmax]``).
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DataError(f"cannot quantize the range [{lo}, {hi}]: it is not finite")
    qmin, qmax = qrange(bits, symmetric)
    if symmetric:
        scale = max(-lo, hi) / qmax
        zp = 0
    else:
        scale = (hi - lo) / (qmax - qmin)
    if scale <= 0 or not np.isfinite(np.float32(scale)) or np.float32(scale) == 0:
        scale = 1.0 / (qmax - qmin)  # an all-zero tensor: any scale represents it
    if not symmetric:
        zp = int(np.clip(round_half_away_np(np.float64(qmin - lo / scale)), qmin, qmax))
    return QuantParams(np.float32(scale), zp)


def affine_arrays(lo: np.ndarray, hi: np.ndarray, bits: int = 8, symmetric: bool = False
                  ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`affine_params` of many ranges at once: ``(scales, zero points)`` as float64 arrays
    (the scales rounded to float32 first, as stored)."""
    lo = np.minimum(np.asarray(lo, np.float64), 0.0)
    hi = np.maximum(np.asarray(hi, np.float64), 0.0)
    qmin, qmax = qrange(bits, symmetric)
    if symmetric:
        scale = np.maximum(-lo, hi) / qmax
    else:
        scale = (hi - lo) / (qmax - qmin)
    s32 = scale.astype(np.float32)
    bad = (scale <= 0) | ~np.isfinite(s32) | (s32 == 0)
    scale = np.where(bad, 1.0 / (qmax - qmin), scale)
    if symmetric:
        z = np.zeros_like(scale)
    else:
        z = np.clip(round_half_away_np(qmin - lo / scale), qmin, qmax)
    return scale.astype(np.float32).astype(np.float64), z


def real_range(q: QuantParams, bits: int = 8, narrow: bool = False) -> Range:
    """The real values the codes reach: ``[s (qmin - z), s (qmax - z)]`` (per tensor)."""
    qmin, qmax = qrange(bits, narrow)
    s, z = float(q.scale[0]), int(q.zero_point[0])
    return s * (qmin - z), s * (qmax - z)


# --------------------------------------------------------------------------- base class

def _check_batch(x: np.ndarray, what: str = "the calibration batch") -> np.ndarray:
    x = np.asarray(x)
    if x.size == 0:
        raise DataError(f"{what} is empty")
    if not np.issubdtype(x.dtype, np.floating) and not np.issubdtype(x.dtype, np.integer):
        raise DataError(f"{what} must hold numbers, got {x.dtype}")
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        raise DataError(f"{what} holds NaN or infinite values; clean or drop those samples")
    return x


def _positive_int(value: object, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise AttributeValueError(f"{what} must be an int >= {minimum}, got {value!r}")
    return int(value)


class Observer:
    """Base class: collects statistics of one tensor and turns them into a range.

    Args:
        bits: code width of the quantization the range is for (2 to 8).
        symmetric: symmetric parameters (``z = 0``, narrow range) from :meth:`quant_params`.

    Attributes:
        range_: the chosen ``(lo, hi)`` (arrays of one per channel for a
            per-channel :class:`MinMaxObserver`).
        n_batches_: how many batches were seen.
    """

    name = "observer"

    def __init__(self, bits: int = 8, symmetric: bool = False):
        qrange(bits)  # checks the width
        self.bits = int(bits)
        self.symmetric = bool(symmetric)

    # ------------------------------------------------------------------ verbs
    def fit(self, batches: np.ndarray | Iterable[np.ndarray]) -> "Observer":
        """Forget what was seen, then :meth:`partial_fit` every batch (an array is one batch)."""
        self.reset()
        if isinstance(batches, np.ndarray):
            batches = [batches]
        seen = False
        for b in batches:
            self.partial_fit(b)
            seen = True
        if not seen:
            raise DataError(f"{type(self).__name__}.fit got no batches; give at least one")
        return self

    def partial_fit(self, x: np.ndarray) -> "Observer":
        """Add one batch."""
        x = _check_batch(x)
        self._update(x)
        self.n_batches_ = getattr(self, "n_batches_", 0) + 1
        return self

    def reset(self) -> "Observer":
        for k in [k for k in vars(self) if k.endswith("_")]:
            delattr(self, k)
        return self

    @property
    def range_(self) -> Range:
        if getattr(self, "n_batches_", 0) == 0:
            raise DataError(f"{type(self).__name__} has seen no data; call fit or partial_fit first")
        return self._range()

    def quant_params(self) -> QuantParams:
        """Affine parameters covering :attr:`range_` (per tensor)."""
        lo, hi = self.range_
        return affine_params(float(np.min(lo)), float(np.max(hi)), self.bits, self.symmetric)

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # ------------------------------------------------------------------ to override
    def _update(self, x: np.ndarray) -> None:
        raise NotImplementedError

    def _range(self) -> Range:
        raise NotImplementedError


# --------------------------------------------------------------------------- min-max

def _channel_minmax(x: np.ndarray, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    if axis is None:
        return np.array(x.min(), np.float64), np.array(x.max(), np.float64)
    if not -x.ndim < axis < x.ndim:  # axis 0 is the batch
        raise AttributeValueError(f"axis {axis} is out of range for a batch of shape {x.shape}")
    m = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    return m.min(axis=1).astype(np.float64), m.max(axis=1).astype(np.float64)


class MinMaxObserver(Observer):
    """``range_ = [min x, max x]`` over all batches; per channel along ``axis`` (of the batch array).

    >>> MinMaxObserver().fit(np.array([[-1.0, 2.0]])).range_
    (-1.0, 2.0)
    """

    name = "minmax"

    def __init__(self, bits: int = 8, symmetric: bool = False, axis: int | None = None):
        super().__init__(bits, symmetric)
        self.axis = axis

    def _update(self, x: np.ndarray) -> None:
        lo, hi = _channel_minmax(x, self.axis)
        if hasattr(self, "min_"):
            lo, hi = np.minimum(lo, self.min_), np.maximum(hi, self.max_)
        self.min_, self.max_ = lo, hi

    def _range(self) -> Range:
        if self.axis is None:
            return float(self.min_), float(self.max_)
        return self.min_.copy(), self.max_.copy()


class MovingAverageMinMaxObserver(MinMaxObserver):
    """``r <- (1 - c) r + c [min, max]_batch`` per batch, ``c`` the ``averaging_constant``.

    Less swayed by one extreme batch than :class:`MinMaxObserver`; with a single
    batch the two agree.
    """

    name = "moving_average"

    def __init__(self, bits: int = 8, symmetric: bool = False, axis: int | None = None,
                 averaging_constant: float = 0.01):
        super().__init__(bits, symmetric, axis)
        c = averaging_constant
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0 < c <= 1:
            raise AttributeValueError(f"averaging_constant must be a number in (0, 1], got {c!r}")
        self.averaging_constant = float(c)

    def _update(self, x: np.ndarray) -> None:
        lo, hi = _channel_minmax(x, self.axis)
        if hasattr(self, "min_"):
            c = self.averaging_constant
            lo, hi = self.min_ + c * (lo - self.min_), self.max_ + c * (hi - self.max_)
        self.min_, self.max_ = lo, hi


# --------------------------------------------------------------------------- histograms

@njit(cache=True)
def _extremes(x):
    """``(min, max, number of zeros)`` in one pass."""
    lo, hi, zeros = np.inf, -np.inf, 0
    for v in x:
        lo = min(lo, v)
        hi = max(hi, v)
        zeros += v == 0
    return float(lo), float(hi), zeros


@njit(cache=True)
def _count_bins(x, inv_width, first, counts):
    """``counts[floor(v / w) - first] += 1`` for every value (``inv_width = 1 / w``, a power of two)."""
    last = counts.size - 1
    for v in x:
        k = int(np.floor(np.float64(v) * inv_width)) - first
        counts[min(max(k, 0), last)] += 1


class Histogram:
    """Counts of values in bins ``[k w, (k + 1) w)``, ``w`` a power of two, at most ``max_bins`` bins.

    ``add`` widens the bins (``w <- 2 w``, pairs of bins merged, exactly) until
    every value fits. ``min_``/``max_`` are the exact extremes, ``zeros_`` the
    number of values exactly 0 (they are also counted in their bin).
    """

    def __init__(self, max_bins: int = 2048):
        self.max_bins = _positive_int(max_bins, "max_bins", 16)
        self.width_: float | None = None
        self.start_ = 0  # k of the first bin
        self.counts_ = np.zeros(0, np.int64)
        self.min_, self.max_ = math.inf, -math.inf
        self.zeros_ = 0

    @property
    def total(self) -> int:
        return int(self.counts_.sum())

    def add(self, x: np.ndarray) -> "Histogram":
        x = np.ascontiguousarray(x).ravel()
        if x.dtype not in (np.float32, np.float64):
            x = x.astype(np.float64)
        lo, hi, zeros = _extremes(x)
        self.zeros_ += int(zeros)
        self.min_, self.max_ = min(self.min_, lo), max(self.max_, hi)
        if self.width_ is None:
            span = (hi - lo if hi > lo else max(abs(hi), 1e-30)) / self.max_bins
            self.width_ = 2.0 ** math.ceil(math.log2(span))
            self.start_ = math.floor(lo / self.width_)
        first, last = math.floor(self.min_ / self.width_), math.floor(self.max_ / self.width_)
        while last - first + 1 > self.max_bins:
            self._merge()
            first, last = math.floor(self.min_ / self.width_), math.floor(self.max_ / self.width_)
        first = min(first, self.start_) if self.counts_.size else first
        end = max(last + 1, self.start_ + self.counts_.size) if self.counts_.size else last + 1
        counts = np.zeros(end - first, np.int64)
        counts[self.start_ - first: self.start_ - first + self.counts_.size] = self.counts_
        _count_bins(x, 1.0 / self.width_, first, counts)
        self.counts_, self.start_ = counts, first
        return self

    def _merge(self) -> None:
        """``w <- 2 w``: bin ``k`` goes into bin ``floor(k / 2)``."""
        new_start = self.start_ // 2
        offset = self.start_ - 2 * new_start
        c = np.concatenate([np.zeros(offset, np.int64), self.counts_])
        if c.size % 2:
            c = np.append(c, 0)
        self.counts_ = c.reshape(-1, 2).sum(axis=1)
        self.start_ = new_start
        self.width_ *= 2.0

    def edges(self) -> np.ndarray:
        return (self.start_ + np.arange(self.counts_.size + 1)) * self.width_

    def centers(self) -> np.ndarray:
        """Bin centers, clipped to the observed extremes."""
        c = (self.start_ + np.arange(self.counts_.size) + 0.5) * self.width_
        return np.clip(c, self.min_, self.max_)

    def magnitudes(self, drop_zeros: bool = False) -> tuple[np.ndarray, float]:
        """Counts of ``|x|`` in bins ``j >= 0`` of width ``w``, and ``w``: bin ``k < 0`` of ``x`` is folded
        onto bin ``-k - 1``, so bin ``j`` holds ``j w <= |x| <= (j + 1) w`` (``drop_zeros``: without the
        values exactly 0)."""
        k = self.start_ + np.arange(self.counts_.size)
        j = np.where(k >= 0, k, -k - 1)
        out = np.zeros(int(j.max()) + 1, np.int64)
        np.add.at(out, j, self.counts_)
        if drop_zeros:
            out[0] -= self.zeros_
        return out, float(self.width_)


class HistogramObserver(Observer):
    """Base of the observers that choose a range from a :class:`Histogram` of the values."""

    def __init__(self, bits: int = 8, symmetric: bool = False, bins: int = 2048):
        super().__init__(bits, symmetric)
        self.bins = _positive_int(bins, "bins", 16)

    def _update(self, x: np.ndarray) -> None:
        if not hasattr(self, "histogram_"):
            self.histogram_ = Histogram(self.bins)
        self.histogram_.add(x)

    @property
    def min_(self) -> float:
        return self.histogram_.min_

    @property
    def max_(self) -> float:
        return self.histogram_.max_


class PercentileObserver(HistogramObserver):
    """``range_ = [P_(100 - p), P_p]``: the tails beyond the ``p``-th percentile are clipped.

    A tensor with no negative values keeps ``lo = min`` (0 after a ReLU).
    """

    name = "percentile"

    def __init__(self, bits: int = 8, symmetric: bool = False, bins: int = 2048, percentile: float = 99.99):
        super().__init__(bits, symmetric, bins)
        p = percentile
        if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 50 < p <= 100:
            raise AttributeValueError(f"percentile must be a number in (50, 100], got {p!r}")
        self.percentile = float(p)

    def _range(self) -> Range:
        h = self.histogram_
        cdf = np.cumsum(h.counts_)
        total = cdf[-1]
        edges = h.edges()
        q = self.percentile / 100.0
        i_hi = int(np.searchsorted(cdf, q * total, side="left"))
        hi = min(float(edges[i_hi + 1]), h.max_)
        lo = h.min_
        if h.min_ < 0:
            i_lo = int(np.searchsorted(cdf, (1.0 - q) * total, side="right"))
            lo = max(float(edges[min(i_lo, len(edges) - 1)]), h.min_)
        return min(lo, hi), hi


class MSEObserver(HistogramObserver):
    """The range ``alpha [min, max]``, ``alpha`` on a grid of ``grid`` points in ``(0, 1]``, that
    minimises the expected squared quantization error

        E(alpha) = N_in Delta^2 / 12 + sum_{x outside} (x - clip(x))^2,

    rounding noise ``Delta^2 / 12`` per value inside the codes' reach (``Delta``
    the scale) plus the clipping error of the values beyond it (bin centers).
    """

    name = "mse"

    def __init__(self, bits: int = 8, symmetric: bool = False, bins: int = 2048, grid: int = 100):
        super().__init__(bits, symmetric, bins)
        self.grid = _positive_int(grid, "grid", 2)

    def errors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(alphas, E(alpha))`` over the grid."""
        h = self.histogram_
        c, n = h.centers(), h.counts_.astype(np.float64)
        alphas = np.arange(1, self.grid + 1) / self.grid
        s, z = affine_arrays(alphas * h.min_, alphas * h.max_, self.bits, self.symmetric)
        qmin, qmax = qrange(self.bits, self.symmetric)
        lo, hi = (s * (qmin - z))[:, None], (s * (qmax - z))[:, None]
        inside = (c >= lo) & (c <= hi)
        err = (inside * n).sum(axis=1) * s * s / 12.0 + (n * (c - np.clip(c, lo, hi)) ** 2).sum(axis=1)
        return alphas, err

    def _range(self) -> Range:
        alphas, err = self.errors()
        a = float(alphas[int(np.argmin(err))])
        return a * self.histogram_.min_, a * self.histogram_.max_


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """``sum_i p_i log(p_i / q_i)`` over ``p_i > 0`` (both normalised first); inf where ``q_i = 0 < p_i``."""
    p = p / p.sum()
    q = q / q.sum()
    m = p > 0
    if np.any(q[m] == 0):
        return math.inf
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


class KLObserver(HistogramObserver):
    """Entropy calibration: the threshold ``T`` minimising ``KL(P || Q)``.

    On the histogram of ``x`` (when ``x >= 0``, ``levels = 2^bits - 1``) or of
    ``|x|`` (``levels = 2^(bits-1)``), for each candidate ``T = i w``:
    ``P`` is the first ``i`` bins with every count beyond added to the last;
    ``Q`` merges those ``i`` bins into ``levels`` groups and spreads each
    group's count evenly over its non-empty bins. ``range_`` is
    ``[max(min, -T), min(max, T)]``. Candidates are every ``stride``-th bin.

    Values exactly 0 are left out of ``P``: 0 has an exact code whatever
    ``T`` is, and the spike of zeros after a ReLU would otherwise favour a
    ``T`` so small that each of its bins keeps a code of its own.
    """

    name = "kl"

    def __init__(self, bits: int = 8, symmetric: bool = False, bins: int = 2048, stride: int = 4):
        super().__init__(bits, symmetric, bins)
        self.stride = _positive_int(stride, "stride")

    def _range(self) -> Range:
        h = self.histogram_
        one_sided = h.min_ >= 0
        counts, w = h.magnitudes(drop_zeros=True)
        levels = 2 ** self.bits - 1 if one_sided else 2 ** (self.bits - 1)
        n = counts.size
        if n <= levels or counts.sum() == 0:  # fewer bins than codes: nothing is gained by clipping
            t = h.max_ if one_sided else max(-h.min_, h.max_)
        else:
            candidates, kl = self.divergences(counts, levels)
            t = int(candidates[int(np.argmin(kl))]) * w
        return max(h.min_, -t), min(h.max_, t)

    def divergences(self, counts: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
        """Candidate thresholds (in bins) and ``KL(P || Q)`` at each."""
        n = counts.size
        candidates = np.array(list(range(levels, n, self.stride)) + [n], np.int64)
        return candidates, _kl_curve(counts.astype(np.float64), candidates, levels)


@njit(cache=True)
def _kl_curve(counts, candidates, levels):
    """``KL(P || Q)`` for each candidate ``i`` (see :class:`KLObserver`); empty bins of ``Q`` where
    ``P`` is not empty get ``1e-4`` counts."""
    out = np.empty(candidates.size)
    total_all = counts.sum()
    for c in range(candidates.size):
        i = candidates[c]
        tail = 0.0
        for j in range(i, counts.size):
            tail += counts[j]
        q = np.zeros(i)
        for g in range(levels):
            a, b = (g * i) // levels, ((g + 1) * i) // levels
            tot, nz = 0.0, 0
            for j in range(a, b):
                tot += counts[j]
                nz += counts[j] > 0
            if nz > 0:
                for j in range(a, b):
                    if counts[j] > 0:
                        q[j] = tot / nz
        p_sum = total_all
        q_sum = 0.0
        for j in range(i):
            pj = counts[j] + (tail if j == i - 1 else 0.0)
            if pj > 0 and q[j] == 0:
                q[j] = 1e-4
            q_sum += q[j]
        kl = 0.0
        for j in range(i):
            pj = counts[j] + (tail if j == i - 1 else 0.0)
            if pj > 0:
                kl += pj / p_sum * np.log((pj / p_sum) / (q[j] / q_sum))
        out[c] = kl
    return out


OBSERVERS: dict[str, type[Observer]] = {
    cls.name: cls for cls in (MinMaxObserver, MovingAverageMinMaxObserver, PercentileObserver, MSEObserver,
                              KLObserver)
}
METHODS = tuple(OBSERVERS)


def make_observer(method: str, **params: object) -> Observer:
    """An observer by name: ``minmax``, ``moving_average``, ``percentile``, ``mse`` or ``kl``."""
    try:
        cls = OBSERVERS[str(method).lower().replace("-", "_")]
    except KeyError:
        raise AttributeValueError(
            f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}"
        ) from None
    try:
        return cls(**params)  # type: ignore[arg-type]
    except TypeError as exc:
        raise AttributeValueError(f"{cls.__name__}: {exc}") from None


__all__ = ["Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "HistogramObserver", "Histogram",
           "PercentileObserver", "MSEObserver", "KLObserver", "OBSERVERS", "METHODS", "make_observer",
           "affine_params", "affine_arrays", "real_range", "kl_divergence"]
