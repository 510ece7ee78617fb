"""Class imbalance: re-weighting the loss, re-sampling the data, and the focal loss.

* :func:`class_weights`: inverse frequency, or the effective number of samples (Cui et al. 2019);
  :func:`sample_weights` turns them into one weight per row for any ``fit(..., sample_weight=...)``.
* :func:`random_oversample`, :func:`random_undersample`, :func:`smote`: change the class counts of the
  training data (never of the test data: its counts are what the deployed model will meet).
* :func:`focal_loss`, :func:`focal_loss_grad`: cross-entropy that down-weights examples the model already
  gets right, $-(1-p_y)^\\gamma \\log p_y$ (Lin et al. 2017); $\\gamma = 0$ is cross-entropy.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from ..errors import AttributeValueError, DataError, ShapeError
from ._validate import as_finite, as_labels, choice, positive_int, same_length

__all__ = ["class_weights", "sample_weights", "random_oversample", "random_undersample", "smote", "focal_loss",
           "focal_loss_grad"]


def _counts(y: np.ndarray, n_classes: int | None) -> np.ndarray:
    k = int(y.max()) + 1 if n_classes is None else positive_int(n_classes, "n_classes", minimum=2)
    if y.max() >= k:
        raise DataError(f"labels hold class {int(y.max())} but n_classes={k}")
    return np.bincount(y, minlength=k)


def class_weights(y: Any, method: str = "inverse", beta: float = 0.999, n_classes: int | None = None) -> np.ndarray:
    """One weight per class, larger for rarer classes, scaled so the mean row weight is 1: $\\sum_c n_c w_c = n$.

    * ``"inverse"``: $w_c \\propto 1/n_c$, i.e. $w_c = n / (K n_c)$ (scikit-learn's ``"balanced"``).
    * ``"effective"``: $w_c \\propto 1/E_{n_c}$ with the effective number of samples
      $E_n = (1-\\beta^n)/(1-\\beta)$ (Cui et al. 2019): $E_n \\approx n$ for small $n$ and saturates at
      $1/(1-\\beta)$, so extra samples of a big class count less. $\\beta \\to 0$ gives equal weights,
      $\\beta \\to 1$ inverse frequency. (Cui et al. scale to $\\sum_c w_c = K$ instead; only the ratios
      between classes matter to the optimum, the scale here keeps the loss as large as unweighted.)

    Args:
        y: integer labels 0..K-1.
        method: ``"inverse"`` or ``"effective"``.
        beta: in [0, 1), for ``"effective"``.
        n_classes: K, if some classes may be missing from ``y`` (they get weight 0).

    Returns:
        float64 weights of shape ``(K,)``.
    """
    y = as_labels(y, "y")
    method = choice(method, "method", ("inverse", "effective"))
    counts = _counts(y, n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros_like(counts)
    if method == "inverse":
        w[present] = 1.0 / counts[present]
    else:
        if isinstance(beta, bool) or not isinstance(beta, numbers.Real) or not 0 <= beta < 1:
            raise AttributeValueError(f"beta must be in [0, 1), got {beta!r}")
        effective = -np.expm1(counts[present] * math.log(beta)) / (1.0 - beta) if beta > 0 else np.ones(int(present.sum()))
        w[present] = 1.0 / effective
    return w * counts.sum() / np.dot(w, counts)


def sample_weights(y: Any, weights: Any) -> np.ndarray:
    """Row weights $w_{y_i}$ from class weights, for ``fit(x, y, sample_weight=...)``."""
    y = as_labels(y, "y")
    w = as_finite(weights, "weights", ndim=1)
    if (w < 0).any():
        raise DataError("class weights must be non-negative")
    if y.max() >= w.size:
        raise ShapeError(f"labels hold class {int(y.max())} but only {w.size} class weights were given")
    return w[y]


def _xy(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    xa = as_finite(x, "x", ndim=2)
    ya = as_labels(y, "y")
    same_length(("x", xa), ("y", ya))
    return xa, ya


def _ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 < ratio <= 1:
        raise AttributeValueError(f"ratio (smallest class count / largest after resampling) must be in (0, 1], got {ratio!r}")
    return float(ratio)


def random_oversample(x: Any, y: Any, ratio: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Repeat random rows of small classes until each has $\\max(n_c, \\lceil r\\, n_{max} \\rceil)$ rows.

    Args:
        x: features ``(n, d)``; y: labels ``(n,)``.
        ratio: ``r`` in (0, 1], the smallest class's share of the largest afterwards (1 = balanced).
        seed: seeds the repeats.

    Returns:
        ``(x_res, y_res)``: the original rows first, then the repeats.
    """
    xa, ya = _xy(x, y)
    r = _ratio(ratio)
    counts = np.bincount(ya)
    target = math.ceil(r * counts.max() - 1e-9)
    rng = np.random.default_rng(seed)
    extra = [rng.choice(np.flatnonzero(ya == c), size=target - n, replace=True)
             for c, n in enumerate(counts) if 0 < n < target]
    idx = np.concatenate([np.arange(ya.size)] + extra).astype(np.int64)
    return xa[idx], ya[idx]


def random_undersample(x: Any, y: Any, ratio: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Keep a random $\\min(n_c, \\lfloor n_{min} / r \\rfloor)$ rows of each class.

    Args:
        x: features ``(n, d)``; y: labels ``(n,)``.
        ratio: ``r`` in (0, 1], the smallest class's share of the largest afterwards (1 = balanced).
        seed: seeds the choice.

    Returns:
        ``(x_res, y_res)`` in the original row order.
    """
    xa, ya = _xy(x, y)
    r = _ratio(ratio)
    counts = np.bincount(ya)
    cap = math.floor(counts[counts > 0].min() / r + 1e-9)
    rng = np.random.default_rng(seed)
    keep = [rng.choice(np.flatnonzero(ya == c), size=min(n, cap), replace=False) for c, n in enumerate(counts) if n > 0]
    idx = np.sort(np.concatenate(keep)).astype(np.int64)
    return xa[idx], ya[idx]


def smote(x: Any, y: Any, k_neighbors: int = 5, ratio: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic rows for small classes on segments between same-class neighbours (SMOTE, Chawla et al. 2002).

    A new row is $x_i + u\\,(x_j - x_i)$, $u \\sim U(0,1)$, for a random row $x_i$ of the class and $x_j$ one
    of its ``k_neighbors`` nearest (Euclidean) rows of the same class. Each class is filled up to
    $\\lceil r\\, n_{max} \\rceil$ rows, as in :func:`random_oversample`.

    Args:
        x: features ``(n, d)``; y: labels ``(n,)``.
        k_neighbors: neighbours to interpolate towards (fewer if the class is smaller).
        ratio: ``r`` in (0, 1].
        seed: seeds the choices.

    Returns:
        ``(x_res, y_res)``: the original rows, then the synthetic ones.
    """
    xa, ya = _xy(x, y)
    r = _ratio(ratio)
    k_neighbors = positive_int(k_neighbors, "k_neighbors")
    counts = np.bincount(ya)
    target = math.ceil(r * counts.max() - 1e-9)
    rng = np.random.default_rng(seed)
    new_x, new_y = [xa], [ya]
    for c, n in enumerate(counts):
        if not 0 < n < target:
            continue
        if n < 2:
            raise DataError(f"class {c} has a single row; SMOTE needs at least two to interpolate. "
                            "Use random_oversample for it")
        members = xa[ya == c]
        d2 = np.sum((members[:, None, :] - members[None, :, :]) ** 2, axis=2)
        np.fill_diagonal(d2, np.inf)
        k = min(k_neighbors, n - 1)
        neighbours = np.argsort(d2, axis=1, kind="stable")[:, :k]
        m = target - n
        base = rng.integers(0, n, size=m)
        other = neighbours[base, rng.integers(0, k, size=m)]
        u = rng.random((m, 1))
        new_x.append(members[base] + u * (members[other] - members[base]))
        new_y.append(np.full(m, c, dtype=np.int64))
    return np.concatenate(new_x), np.concatenate(new_y)


def _focal_inputs(logits: Any, y: Any, gamma: Any, alpha: Any) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    z = as_finite(logits, "logits", ndim=2)
    ya = as_labels(y, "y")
    same_length(("logits", z), ("y", ya))
    if ya.max() >= z.shape[1]:
        raise DataError(f"labels hold class {int(ya.max())} but logits have {z.shape[1]} columns")
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not math.isfinite(gamma) or gamma < 0:
        raise AttributeValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    if alpha is None:
        a = np.ones(z.shape[1])
    else:
        a = as_finite(alpha, "alpha", ndim=(0, 1))
        a = np.broadcast_to(a, (z.shape[1],)) if a.ndim == 0 else a
        if a.shape != (z.shape[1],):
            raise ShapeError(f"alpha must be a scalar or one weight per class ({z.shape[1]}), got shape {a.shape}")
        if (a < 0).any():
            raise DataError("alpha (class weights) must be non-negative")
    return z, ya, float(gamma), a


def _reduce(values: np.ndarray, reduction: str) -> np.ndarray | float:
    reduction = choice(reduction, "reduction", ("mean", "sum", "none"))
    if reduction == "none":
        return values
    return float(values.mean() if reduction == "mean" else values.sum())


def _log_softmax(z: np.ndarray) -> np.ndarray:
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def focal_loss(logits: Any, y: Any, gamma: float = 2.0, alpha: Any = None, reduction: str = "mean") -> np.ndarray | float:
    """Softmax focal loss $\\ell_i = -\\alpha_{y_i} (1 - p_{i,y_i})^\\gamma \\log p_{i,y_i}$, $p = \\mathrm{softmax}(z)$.

    Args:
        logits: ``(N, K)`` scores (two columns for a binary task).
        y: labels ``(N,)`` in 0..K-1.
        gamma: focusing parameter $\\gamma \\ge 0$; 0 gives (weighted) cross-entropy.
        alpha: None, a scalar, or one weight per class.
        reduction: ``"mean"`` (over rows), ``"sum"`` or ``"none"`` (per-row losses).

    Returns:
        The loss (a float, or ``(N,)`` for ``"none"``).
    """
    z, ya, g, a = _focal_inputs(logits, y, gamma, alpha)
    logp = _log_softmax(z)[np.arange(ya.size), ya]
    one_minus_p = -np.expm1(logp)
    values = -a[ya] * one_minus_p ** g * logp
    return _reduce(values, reduction)


def focal_loss_grad(logits: Any, y: Any, gamma: float = 2.0, alpha: Any = None, reduction: str = "mean") -> np.ndarray:
    """$\\partial \\ell / \\partial z$ of :func:`focal_loss`, shape ``(N, K)``.

    With $p = p_{i,y_i}$: $\\partial \\ell_i / \\partial z_{ik} = \\alpha_{y_i}
    [\\gamma (1-p)^{\\gamma-1} p \\log p - (1-p)^\\gamma]\\,([k{=}y_i] - p_{ik})$, which is
    $p_{ik} - [k{=}y_i]$ (the cross-entropy gradient) at $\\gamma = 0$. The first term is written as
    $\\gamma (1-p)^\\gamma\\, p \\log p / (1-p)$ and taken as 0 at $p = 1$, its limit.

    Args:
        as :func:`focal_loss` (``reduction`` ``"mean"`` divides by N, ``"none"`` gives per-row gradients).

    Returns:
        float64 ``(N, K)``.
    """
    z, ya, g, a = _focal_inputs(logits, y, gamma, alpha)
    reduction = choice(reduction, "reduction", ("mean", "sum", "none"))
    logsm = _log_softmax(z)
    probs = np.exp(logsm)
    rows = np.arange(ya.size)
    logp = logsm[rows, ya]
    p = probs[rows, ya]
    q = -np.expm1(logp)  # 1 - p, accurate near p = 1
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(q > 0, g * q ** g * p * logp / np.where(q > 0, q, 1.0), 0.0) if g else np.zeros_like(p)
    factor = a[ya] * (first - q ** g)
    onehot = np.zeros_like(probs)
    onehot[rows, ya] = 1.0
    grad = factor[:, None] * (onehot - probs)
    return grad / ya.size if reduction == "mean" else grad
