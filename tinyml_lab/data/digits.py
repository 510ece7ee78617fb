"""Handwritten digits for the labs: scikit-learn's copy of the UCI optical digits.

The 1,797 images (8x8, 16 grey levels, about 180 per digit) ship with
scikit-learn, so nothing is downloaded. They are scaled to [0, 1], resized
bilinearly to 16x16 or 32x32 so that convolutions have room to work, and split
into stratified train and test sets. Domain shifts (rotation, sensor noise,
inverted polarity) and class subsets support the drift and transfer-learning
labs.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..errors import AttributeValueError, DataError
from . import Dataset

SIZES = (8, 16, 32)
# shift kind -> default strength (rotation in degrees, noise sigma; inversion has none)
SHIFTS: dict[str, float | None] = {"rotate": 30.0, "noise": 0.2, "invert": None}


def apply_shift(x: np.ndarray, kind: str, strength: float | None = None, seed: int = 0) -> np.ndarray:
    """A shifted copy of images ``x`` (``(N, H, W, C)`` or ``(N, H, W)``, values in [0, 1]).

    * ``"rotate"``: every image turned by ``strength`` degrees (default 30)
      about its centre, counter-clockwise, bilinear, zeros shifted in;
    * ``"noise"``: additive Gaussian noise, ``sigma = strength`` (default
      0.2), seeded by ``seed``, then clipped to [0, 1];
    * ``"invert"``: ``1 - x`` (white digits on black become black on white).
    """
    if kind not in SHIFTS:
        raise AttributeValueError(f"unknown shift {kind!r}; choose one of {', '.join(SHIFTS)}")
    x = np.asarray(x, dtype=np.float32)
    if x.ndim not in (3, 4):
        raise DataError(f"apply_shift expects images (N, H, W) or (N, H, W, C), got shape {x.shape}")
    if kind == "invert":
        if strength is not None:
            raise AttributeValueError("the 'invert' shift takes no strength")
        return (1.0 - x).astype(np.float32)
    s = SHIFTS[kind] if strength is None else strength
    if isinstance(s, bool) or not isinstance(s, numbers.Real) or not np.isfinite(s):
        raise AttributeValueError(f"{kind} strength must be a finite number, got {strength!r}")
    if kind == "rotate":
        out = ndimage.rotate(x, float(s), axes=(2, 1), reshape=False, order=1, mode="constant", cval=0.0)
        return np.clip(out, 0.0, 1.0).astype(np.float32)
    if s < 0:
        raise AttributeValueError(f"noise strength (sigma) must be >= 0, got {s!r}")
    noise = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32) * np.float32(s)
    return np.clip(x + noise, 0.0, 1.0).astype(np.float32)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of ``(N, 8, 8)`` images, pixel centres aligned (as image libraries do)."""
    if size == images.shape[1]:
        return images
    f = size / images.shape[1]
    out = ndimage.zoom(images, (1, f, f), order=1, mode="nearest", grid_mode=True)
    return np.clip(out, 0.0, 1.0)


def _check_classes(classes: Sequence[int] | None) -> tuple[int, ...]:
    if classes is None:
        return tuple(range(10))
    try:
        picked = tuple(classes)
    except TypeError:
        raise AttributeValueError(f"classes must be a sequence of digits 0-9, got {classes!r}") from None
    if not all(isinstance(c, numbers.Integral) and not isinstance(c, bool) and 0 <= c <= 9 for c in picked):
        raise AttributeValueError(f"classes must be digits 0-9, got {classes!r}")
    if len(set(picked)) != len(picked):
        raise AttributeValueError(f"classes must not repeat, got {classes!r}")
    if len(picked) < 2:
        raise AttributeValueError(f"pick at least two classes, got {classes!r}")
    return tuple(int(c) for c in picked)


def stratified_split(y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices holding ``test_fraction`` of every class (at least one each side)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = min(max(int(round(len(idx) * test_fraction)), 1), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def load_digits(size: int = 16, test_fraction: float = 0.25, seed: int = 0, shift: str | None = None,
                strength: float | None = None, classes: Sequence[int] | None = None) -> Dataset:
    """The scikit-learn digits as NHWC float32 images.

    Args:
        size: 8 (original), 16 or 32 pixels a side (bilinear resize).
        test_fraction: share of each class in the test set, in (0, 1).
        seed: seeds the split (and the noise of a ``"noise"`` shift).
        shift: None, ``"rotate"``, ``"noise"`` or ``"invert"``; applied to
            both splits (for a shift between train and test, load clean data
            and call :func:`apply_shift` on ``x_test``).
        strength: the shift's strength (degrees, sigma); its default if None.
        classes: a subset of digits, e.g. ``(0, 1, 2, 3, 4)``; labels become
            their positions in it (0..k-1) and ``Dataset.classes`` holds the
            digits, so ``classes[y]`` is the digit shown.

    Returns:
        A :class:`Dataset`: ``x_*`` of shape ``(N, size, size, 1)`` in [0, 1],
        ``y_*`` int64 labels.
    """
    from sklearn.datasets import load_digits as _sk_digits

    if isinstance(size, bool) or size not in SIZES:
        raise AttributeValueError(f"size must be one of {SIZES}, got {size!r}")
    if (isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real)
            or not 0 < test_fraction < 1):
        raise AttributeValueError(f"test_fraction must be a number strictly between 0 and 1, got {test_fraction!r}")
    if shift is not None and shift not in SHIFTS:
        raise AttributeValueError(f"unknown shift {shift!r}; choose None or one of {', '.join(SHIFTS)}")
    if shift is None and strength is not None:
        raise AttributeValueError("strength given without a shift")
    picked = _check_classes(classes)

    raw = _sk_digits()
    images = raw.images.astype(np.float32) / np.float32(16.0)
    target = raw.target.astype(np.int64)
    keep = np.isin(target, picked)
    images, target = images[keep], target[keep]
    remap = np.full(10, -1, dtype=np.int64)
    remap[list(picked)] = np.arange(len(picked))
    labels = remap[target]
    if len(labels) < 2 * len(picked):
        raise DataError("too few images to split")

    x = _resize(images, int(size))[..., None].astype(np.float32)
    train, test = stratified_split(labels, float(test_fraction), seed)
    x_train, x_test = x[train], x[test]
    what = ""
    if shift is not None:
        seeds = np.random.SeedSequence([seed, 1]).generate_state(2)
        x_train = apply_shift(x_train, shift, strength, int(seeds[0]))
        x_test = apply_shift(x_test, shift, strength, int(seeds[1]))
        s = SHIFTS[shift] if strength is None else strength
        what = f", shift {shift}" + ("" if s is None else f" {s:g}")
    digits = "0-9" if picked == tuple(range(10)) else ",".join(map(str, picked))
    description = (
        f"scikit-learn digits (UCI optical digits) at {size}x{size}x1 in [0, 1], "
        f"{len(train)} train / {len(test)} test, digits {digits}{what}"
    )
    return Dataset(np.ascontiguousarray(x_train), labels[train], np.ascontiguousarray(x_test), labels[test],
                   picked, description)


__all__ = ["load_digits", "apply_shift", "stratified_split", "SHIFTS", "SIZES"]
