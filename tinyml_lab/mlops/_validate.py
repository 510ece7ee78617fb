"""Input checks shared by the data and evaluation tools: one clear error per kind of bad input."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from ..errors import AttributeValueError, DataError, ShapeError


def as_finite(x: Any, what: str, ndim: int | tuple[int, ...] | None = None, allow_empty: bool = False) -> np.ndarray:
    """``x`` as a float64 array, after checking it is numeric, finite, non-empty and of rank ``ndim``."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numeric, got {type(x).__name__}") from None
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if a.ndim not in allowed:
            ranks = " or ".join(str(r) for r in allowed)
            raise ShapeError(f"{what} must have rank {ranks}, got shape {a.shape}")
    if a.size == 0 and not allow_empty:
        raise DataError(f"{what} is empty; give at least one value")
    bad = ~np.isfinite(a)
    if bad.any():
        raise DataError(f"{what} holds {int(bad.sum())} NaN or infinite value(s) (first at flat index "
                        f"{int(np.flatnonzero(bad.ravel())[0])}); drop or impute them first")
    return a


def as_labels(y: Any, what: str = "labels", allow_negative: bool = False) -> np.ndarray:
    """``y`` as a 1-D int64 array of class labels (non-negative unless ``allow_negative``)."""
    a = np.asarray(y)
    if a.ndim != 1:
        raise ShapeError(f"{what} must be a 1-D array of class labels, got shape {a.shape}")
    if a.size == 0:
        raise DataError(f"{what} is empty; give at least one label")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise DataError(f"{what} holds NaN or infinite values; labels must be integers")
        if not np.all(a == np.round(a)):
            raise DataError(f"{what} holds non-integer values; labels must be integers 0..K-1")
    elif a.dtype.kind not in "iub":
        raise DataError(f"{what} must be integer class labels, got dtype {a.dtype}; encode them as 0..K-1 first")
    a = a.astype(np.int64)
    if not allow_negative and (a < 0).any():
        raise DataError(f"{what} holds negative values (e.g. {int(a[a < 0][0])}); labels must be 0..K-1")
    return a


def as_probabilities(p: Any, what: str = "probabilities", atol: float = 1e-4) -> np.ndarray:
    """``p`` as an (N, K) float64 array whose rows are probability vectors."""
    a = as_finite(p, what, ndim=2)
    if a.shape[1] < 2:
        raise ShapeError(f"{what} must have one column per class (at least 2), got shape {a.shape}")
    if (a < 0).any() or (a > 1).any():
        raise DataError(f"{what} must lie in [0, 1]; got values in [{a.min():.4g}, {a.max():.4g}]. "
                        "Pass softmax outputs, not logits")
    sums = a.sum(axis=1)
    off = np.abs(sums - 1) > atol
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise DataError(f"{what}: {int(off.sum())} row(s) do not sum to 1 (row {i} sums to {sums[i]:.6g}); "
                        "normalise them or pass logits through softmax")
    return a


def same_length(*pairs: tuple[str, Any]) -> int:
    """The common first dimension of the named arrays; ShapeError naming both when they differ."""
    name0, a0 = pairs[0]
    n = len(a0)
    for name, a in pairs[1:]:
        if len(a) != n:
            raise ShapeError(f"{name0} has {n} rows but {name} has {len(a)}; they must describe the same samples")
    return n


def positive_int(v: Any, what: str, minimum: int = 1) -> int:
    """``v`` as an int >= ``minimum``; AttributeValueError otherwise."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise AttributeValueError(f"{what} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def fraction(v: Any, what: str, low_open: bool = True, high_open: bool = True) -> float:
    """``v`` as a float in (0, 1) (ends included when not open)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise AttributeValueError(f"{what} must be a number in (0, 1), got {v!r}")
    v = float(v)
    lo_ok = v > 0 if low_open else v >= 0
    hi_ok = v < 1 if high_open else v <= 1
    if not (lo_ok and hi_ok):
        ends = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise AttributeValueError(f"{what} must be in {ends}, got {v!r}")
    return v


def choice(v: Any, what: str, options: tuple[str, ...]) -> str:
    if v not in options:
        raise AttributeValueError(f"unknown {what} {v!r}; choose one of {', '.join(repr(o) for o in options)}")
    return v
