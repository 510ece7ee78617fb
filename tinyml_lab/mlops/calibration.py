"""Calibration: does a predicted probability of 0.8 come true 80% of the time?

* :func:`reliability_diagram`: confidences (the top probability) grouped into equal-width bins, with
  each bin's mean confidence, accuracy and count; :func:`plot_reliability` draws it.
* :func:`expected_calibration_error` (ECE): the count-weighted mean gap between accuracy and confidence
  over the bins; :func:`maximum_calibration_error` (MCE): the largest gap.
* :class:`TemperatureScaling` (Guo et al. 2017): divide the logits by one number $T$ fitted on validation
  data by minimising the negative log-likelihood; the ranking of classes (so the accuracy) is unchanged.

Binning rule (shared by every function here): with ``B`` bins and edges $e_b = b/B$, bin $b$ holds the
confidences in $(e_b, e_{b+1}]$; the first bin also holds 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AttributeValueError, DataError, ShapeError
from ._validate import as_finite, as_labels, as_probabilities, positive_int, same_length

__all__ = ["softmax", "nll", "ReliabilityDiagram", "reliability_diagram", "expected_calibration_error",
           "maximum_calibration_error", "plot_reliability", "TemperatureScaling"]


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """$\\mathrm{softmax}(z/T)_k = e^{z_k/T} / \\sum_j e^{z_j/T}$ row-wise, computed stably."""
    z = as_finite(logits, "logits", ndim=2)
    t = _temperature(temperature)
    s = z / t
    s = s - s.max(axis=1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=1, keepdims=True)


def _temperature(t: Any) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)) or not math.isfinite(t) or t <= 0:
        raise AttributeValueError(f"temperature must be a finite number > 0, got {t!r}")
    return float(t)


def _logits_labels(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    z = as_finite(logits, "logits", ndim=2)
    if z.shape[1] < 2:
        raise ShapeError(f"logits need one column per class (at least 2), got shape {z.shape}")
    y = as_labels(labels, "labels")
    same_length(("logits", z), ("labels", y))
    if y.max() >= z.shape[1]:
        raise DataError(f"labels hold class {int(y.max())} but logits have {z.shape[1]} columns")
    return z, y


def nll(logits: Any, labels: Any, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood $-\\frac1N\\sum_i \\log \\mathrm{softmax}(z_i/T)_{y_i}$ (nats)."""
    z, y = _logits_labels(logits, labels)
    s = z / _temperature(temperature)
    s = s - s.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(y.size), y].mean())


def _probs_labels(probs: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs)
    if p.ndim == 1:  # binary: P(class 1)
        p1 = as_finite(p, "probs", ndim=1)
        if (p1 < 0).any() or (p1 > 1).any():
            raise DataError(f"binary probabilities must lie in [0, 1]; got values in [{p1.min():.4g}, {p1.max():.4g}]")
        p = np.column_stack([1.0 - p1, p1])
    p = as_probabilities(p, "probs")
    y = as_labels(labels, "labels")
    same_length(("probs", p), ("labels", y))
    if y.max() >= p.shape[1]:
        raise DataError(f"labels hold class {int(y.max())} but probs have {p.shape[1]} columns")
    return p, y


@dataclass
class ReliabilityDiagram:
    """Per-bin confidence and accuracy.

    Attributes:
        bin_edges: ``(B+1,)`` edges $b/B$.
        confidence: ``(B,)`` mean top probability per bin (NaN for an empty bin).
        accuracy: ``(B,)`` share of correct top-1 predictions per bin (NaN for an empty bin).
        counts: ``(B,)`` predictions per bin.
    """

    bin_edges: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray
    counts: np.ndarray

    @property
    def gaps(self) -> np.ndarray:
        """$|\\mathrm{acc}_b - \\mathrm{conf}_b|$ per bin (NaN for empty bins)."""
        return np.abs(self.accuracy - self.confidence)

    def ece(self) -> float:
        """$\\sum_b \\frac{n_b}{N} |\\mathrm{acc}_b - \\mathrm{conf}_b|$."""
        filled = self.counts > 0
        return float(np.sum(self.counts[filled] * self.gaps[filled]) / self.counts.sum())

    def mce(self) -> float:
        """$\\max_b |\\mathrm{acc}_b - \\mathrm{conf}_b|$ over non-empty bins."""
        return float(np.max(self.gaps[self.counts > 0]))


def reliability_diagram(probs: Any, labels: Any, n_bins: int = 15) -> ReliabilityDiagram:
    """Bin the top-1 confidences and compare each bin's mean confidence with its accuracy.

    Args:
        probs: ``(N, K)`` predicted probabilities (rows sum to 1), or ``(N,)`` P(class 1) of a binary task.
        labels: ``(N,)`` true classes.
        n_bins: equal-width bins on [0, 1].

    Returns:
        A :class:`ReliabilityDiagram`.
    """
    p, y = _probs_labels(probs, labels)
    n_bins = positive_int(n_bins, "n_bins")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(b, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(b, weights=conf, minlength=n_bins) / counts
        accuracy = np.bincount(b, weights=correct, minlength=n_bins) / counts
    return ReliabilityDiagram(edges, confidence, accuracy, counts)


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """ECE $= \\sum_b \\frac{n_b}{N} |\\mathrm{acc}_b - \\mathrm{conf}_b|$ over ``n_bins`` equal-width bins."""
    return reliability_diagram(probs, labels, n_bins).ece()


def maximum_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """MCE $= \\max_b |\\mathrm{acc}_b - \\mathrm{conf}_b|$ over the non-empty bins."""
    return reliability_diagram(probs, labels, n_bins).mce()


def plot_reliability(diagram: ReliabilityDiagram, ax: Any = None, title: str | None = None, color: str = "#1b9e77",
                     show_counts: bool = True) -> Any:
    """Draw a reliability diagram: accuracy bars per bin, the gap to the mean confidence hatched, ECE in the legend.

    Args:
        diagram: from :func:`reliability_diagram`.
        ax: matplotlib Axes to draw on (a new figure if None).
        title: axes title.
        color: bar colour.
        show_counts: shade each bar by its bin's share of the predictions (darker = more).

    Returns:
        The Axes.
    """
    import matplotlib.pyplot as plt

    if not isinstance(diagram, ReliabilityDiagram):
        raise AttributeValueError(f"plot_reliability takes a ReliabilityDiagram, got {type(diagram).__name__}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    edges = diagram.bin_edges
    width = np.diff(edges)
    filled = diagram.counts > 0
    share = diagram.counts / max(int(diagram.counts.sum()), 1)
    alpha = 0.35 + 0.65 * share / share.max() if show_counts and share.max() > 0 else np.ones_like(share)
    for b in np.flatnonzero(filled):
        ax.bar(edges[b], diagram.accuracy[b], width=width[b], align="edge", color=color, alpha=float(alpha[b]),
               edgecolor="black", linewidth=0.5, label="accuracy" if b == np.flatnonzero(filled)[0] else None)
        lo, hi = sorted((diagram.accuracy[b], diagram.confidence[b]))
        ax.bar(edges[b], hi - lo, bottom=lo, width=width[b], align="edge", fill=False, hatch="///",
               edgecolor="#d95f02", linewidth=0, label="gap" if b == np.flatnonzero(filled)[0] else None)
    ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", title=f"ECE {diagram.ece():.3f}", fontsize="small")
    if title:
        ax.set_title(title)
    return ax


class TemperatureScaling:
    """Calibrate logits by one temperature: $p = \\mathrm{softmax}(z / T)$, $T^* = \\arg\\min_T \\mathrm{NLL}(z/T, y)$.

    $T > 1$ softens over-confident predictions, $T < 1$ sharpens under-confident ones; the argmax, hence
    the accuracy, does not change. The NLL is convex in $1/T$, so it has one minimum, found over $\\log T$
    within ``bounds`` by a bounded scalar search (scipy).

    Args:
        bounds: the range searched for $T$.

    Attributes:
        temperature_: the fitted $T$.
        nll_before_, nll_after_: validation NLL at $T = 1$ and at $T$.
    """

    def __init__(self, bounds: tuple[float, float] = (0.05, 20.0)):
        lo, hi = bounds
        if not (0 < lo < 1 < hi and math.isfinite(hi)):
            raise AttributeValueError(f"bounds must satisfy 0 < low < 1 < high, got {bounds!r}")
        self.bounds = (float(lo), float(hi))

    def fit(self, logits: Any, labels: Any) -> TemperatureScaling:
        """Fit $T$ on validation logits ``(N, K)`` and labels ``(N,)``; returns self."""
        from scipy.optimize import minimize_scalar

        z, y = _logits_labels(logits, labels)
        lo, hi = np.log(self.bounds[0]), np.log(self.bounds[1])
        res = minimize_scalar(lambda u: nll(z, y, float(np.exp(u))), bounds=(lo, hi), method="bounded",
                              options={"xatol": 1e-6})
        t = float(np.exp(res.x))
        self.temperature_ = t
        self.nll_before_ = nll(z, y)
        self.nll_after_ = nll(z, y, t)
        if self.nll_after_ > self.nll_before_:  # the search cannot do worse than no scaling
            self.temperature_, self.nll_after_ = 1.0, self.nll_before_
        return self

    def transform(self, logits: Any) -> np.ndarray:
        """Calibrated probabilities $\\mathrm{softmax}(z / T)$, ``(N, K)``."""
        if not hasattr(self, "temperature_"):
            raise AttributeValueError("this TemperatureScaling is not fitted yet; call fit(logits, labels) first")
        return softmax(logits, self.temperature_)

    def fit_transform(self, logits: Any, labels: Any) -> np.ndarray:
        return self.fit(logits, labels).transform(logits)

    def __repr__(self) -> str:
        fitted = f", temperature_={self.temperature_:.4g}" if hasattr(self, "temperature_") else ""
        return f"TemperatureScaling(bounds={self.bounds}{fitted})"
