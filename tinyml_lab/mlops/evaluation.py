"""Offline evaluation beyond one accuracy number: slices, baselines, and behavioural tests.

* :func:`slice_metrics`: accuracy, precision, recall and F1 per slice of the data (a device type, a
  user group, a noise level) with counts, the worst slice and the gap to the best: an average can hide
  a slice where the model fails.
* :class:`MajorityClassBaseline`, :class:`StratifiedBaseline`: what a model must beat to have learned
  anything (the scikit-learn verbs: ``fit``, ``predict``, ``predict_proba``).
* :func:`invariance_test`: the prediction should not change under a perturbation that keeps the label
  (a small shift, a brightness change); :func:`directional_test`: a score should move in a stated direction
  under a perturbation (more evidence of a class, a higher score for it). Both report the failure rate and
  examples.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AttributeValueError, DataError, ShapeError
from ._validate import as_finite, as_labels, choice, positive_int, same_length

__all__ = ["SliceMetrics", "SliceReport", "classification_metrics", "slice_metrics", "MajorityClassBaseline",
           "StratifiedBaseline", "BehaviourTestResult", "invariance_test", "directional_test"]

METRICS = ("accuracy", "precision", "recall", "f1")


@dataclass
class SliceMetrics:
    """Metrics of one slice (NaN when the slice is empty)."""

    name: str
    count: int
    accuracy: float
    precision: float
    recall: float
    f1: float

    def get(self, metric: str) -> float:
        return float(getattr(self, choice(metric, "metric", METRICS)))


def classification_metrics(y_true: Any, y_pred: Any, positive: int | None = None, name: str = "all") -> SliceMetrics:
    """Accuracy and precision/recall/F1, for class ``positive`` or macro-averaged.

    Per class $c$: $P_c = TP/(TP+FP)$, $R_c = TP/(TP+FN)$, $F1_c = 2P_cR_c/(P_c+R_c)$, each 0 when its
    denominator is 0. Macro average: the mean over the classes present in ``y_true`` or ``y_pred``
    (as scikit-learn's ``average="macro"`` with ``zero_division=0``).

    Args:
        y_true, y_pred: integer labels of the same length (may be empty: NaN metrics, count 0).
        positive: the class for binary metrics, or None for the macro average.
        name: the slice's name.
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.size == 0 and p.size == 0:
        return SliceMetrics(name, 0, math.nan, math.nan, math.nan, math.nan)
    t, p = as_labels(t, "y_true", allow_negative=True), as_labels(p, "y_pred", allow_negative=True)
    same_length(("y_true", t), ("y_pred", p))
    classes = [positive] if positive is not None else np.union1d(t, p).tolist()
    prec, rec, f1 = [], [], []
    for c in classes:
        tp = float(np.sum((p == c) & (t == c)))
        fp = float(np.sum((p == c) & (t != c)))
        fn = float(np.sum((p != c) & (t == c)))
        pc = tp / (tp + fp) if tp + fp else 0.0
        rc = tp / (tp + fn) if tp + fn else 0.0
        prec.append(pc)
        rec.append(rc)
        f1.append(2 * pc * rc / (pc + rc) if pc + rc else 0.0)
    return SliceMetrics(name, int(t.size), float(np.mean(t == p)), float(np.mean(prec)), float(np.mean(rec)),
                        float(np.mean(f1)))


@dataclass
class SliceReport:
    """Metrics per slice and overall.

    Attributes:
        overall: metrics on all rows.
        slices: one :class:`SliceMetrics` per slice, in the order given (sorted keys for a label array).
        min_count: slices smaller than this are listed but not eligible as worst or best.
    """

    overall: SliceMetrics
    slices: list[SliceMetrics]
    min_count: int = 1

    def _eligible(self, metric: str) -> list[SliceMetrics]:
        ok = [s for s in self.slices if s.count >= self.min_count and not math.isnan(s.get(metric))]
        if not ok:
            raise DataError(f"no slice has at least min_count={self.min_count} rows")
        return ok

    def worst(self, metric: str = "accuracy") -> SliceMetrics:
        """The slice with the lowest ``metric`` (among slices with at least ``min_count`` rows)."""
        return min(self._eligible(metric), key=lambda s: s.get(metric))

    def best(self, metric: str = "accuracy") -> SliceMetrics:
        return max(self._eligible(metric), key=lambda s: s.get(metric))

    def gap(self, metric: str = "accuracy") -> float:
        """Best minus worst slice on ``metric``."""
        return self.best(metric).get(metric) - self.worst(metric).get(metric)

    def format(self) -> str:
        from ..report import format_table

        def row(s: SliceMetrics) -> list[str]:
            return [s.name, str(s.count)] + ["-" if math.isnan(s.get(m)) else f"{s.get(m):.3f}" for m in METRICS]

        return format_table(["slice", "count", *METRICS], [row(s) for s in self.slices] + [row(self.overall)],
                            align="lrrrrr")

    def __str__(self) -> str:
        w = self.worst()
        return self.format() + f"\nworst slice by accuracy: {w.name} ({w.accuracy:.3f}), gap {self.gap():.3f}"


def slice_metrics(y_true: Any, y_pred: Any, slices: Any, positive: int | None = None, min_count: int = 1) -> SliceReport:
    """Metrics of :func:`classification_metrics` on every slice.

    Args:
        y_true, y_pred: integer labels ``(n,)``.
        slices: a 1-D array with one slice key per row (each row in one slice), or a mapping
            ``name -> boolean mask`` (slices may overlap or leave rows out).
        positive: class for binary precision/recall/F1, or None for macro averages.
        min_count: smallest slice that may be called worst or best.

    Returns:
        A :class:`SliceReport`.
    """
    t = as_labels(y_true, "y_true", allow_negative=True)
    p = as_labels(y_pred, "y_pred", allow_negative=True)
    n = same_length(("y_true", t), ("y_pred", p))
    min_count = positive_int(min_count, "min_count")
    masks: list[tuple[str, np.ndarray]] = []
    if isinstance(slices, Mapping):
        if not slices:
            raise DataError("slices is an empty mapping; give at least one slice")
        for name, mask in slices.items():
            m = np.asarray(mask)
            if m.dtype != bool or m.shape != (n,):
                raise ShapeError(f"slice {name!r} must be a boolean mask of shape ({n},), got {m.dtype} {m.shape}")
            masks.append((str(name), m))
    else:
        keys = np.asarray(slices)
        if keys.ndim != 1:
            raise ShapeError(f"slices must be a 1-D array of slice keys or a mapping of masks, got shape {keys.shape}")
        same_length(("y_true", t), ("slices", keys))
        if keys.dtype.kind == "f" and np.isnan(keys).any():
            raise DataError("slice keys hold NaN; give every row a key (e.g. 'unknown')")
        masks = [(str(k), keys == k) for k in np.unique(keys)]
    rows = [classification_metrics(t[m], p[m], positive, name) for name, m in masks]
    return SliceReport(classification_metrics(t, p, positive, "all"), rows, min_count)


# ---------------------------------------------------------------- baselines


class _Baseline:
    def _fit_labels(self, x: Any, y: Any) -> np.ndarray:
        ya = as_labels(y, "y", allow_negative=True)
        if x is not None:
            same_length(("x", np.asarray(x)), ("y", ya))
        self.classes_, counts = np.unique(ya, return_counts=True)
        self.priors_ = counts / counts.sum()
        return ya

    def _rows(self, x: Any) -> int:
        if not hasattr(self, "priors_"):
            raise AttributeValueError(f"this {type(self).__name__} is not fitted yet; call fit(x, y) first")
        n = len(x) if not isinstance(x, (int, np.integer)) else int(x)
        if n < 1:
            raise DataError("nothing to predict: x has no rows")
        return n

    def score(self, x: Any, y: Any) -> float:
        """Accuracy of :meth:`predict` on ``(x, y)``."""
        ya = as_labels(y, "y", allow_negative=True)
        return float(np.mean(self.predict(x) == ya))


class MajorityClassBaseline(_Baseline):
    """Always predict the most frequent training class: accuracy $\\max_c \\pi_c$ on data like the training set.

    Attributes:
        classes_: the classes seen; priors_: their frequencies; majority_: the predicted class.
    """

    def fit(self, x: Any, y: Any) -> MajorityClassBaseline:
        """Count the classes of ``y`` (``x`` is only checked for length); returns self."""
        self._fit_labels(x, y)
        self.majority_ = int(self.classes_[np.argmax(self.priors_)])
        return self

    def predict(self, x: Any) -> np.ndarray:
        """The majority class for each row of ``x`` (or for ``x`` rows, if ``x`` is an int)."""
        return np.full(self._rows(x), self.majority_, dtype=np.int64)

    def predict_proba(self, x: Any) -> np.ndarray:
        """One-hot on the majority class, columns in ``classes_`` order."""
        out = np.zeros((self._rows(x), self.classes_.size))
        out[:, int(np.argmax(self.priors_))] = 1.0
        return out


class StratifiedBaseline(_Baseline):
    """Guess a class at random with the training frequencies: expected accuracy $\\sum_c \\pi_c^2$.

    Args:
        seed: seeds the guesses (each call to :meth:`predict` continues the same stream).
    """

    def __init__(self, seed: int = 0):
        self.seed = seed

    def fit(self, x: Any, y: Any) -> StratifiedBaseline:
        self._fit_labels(x, y)
        self._rng = np.random.default_rng(self.seed)
        return self

    def predict(self, x: Any) -> np.ndarray:
        n = self._rows(x)
        return self.classes_[self._rng.choice(self.classes_.size, size=n, p=self.priors_)].astype(np.int64)

    def predict_proba(self, x: Any) -> np.ndarray:
        """The class frequencies on every row."""
        return np.tile(self.priors_, (self._rows(x), 1))


# ---------------------------------------------------------------- behavioural tests


@dataclass
class BehaviourTestResult:
    """The outcome of an invariance or directional test.

    Attributes:
        name: what was tested.
        kind: ``"invariance"`` or ``"directional"``.
        n: rows tested; n_failed: rows where the expectation failed.
        failed: indices of the failing rows.
        examples: up to ``max_examples`` failures as dicts (``index``, ``before``, ``after``).
    """

    name: str
    kind: str
    n: int
    n_failed: int
    failed: np.ndarray
    examples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def failure_rate(self) -> float:
        return self.n_failed / self.n

    def passed(self, max_failure_rate: float = 0.0) -> bool:
        """True when at most ``max_failure_rate`` of the rows failed."""
        return self.failure_rate <= max_failure_rate

    def __str__(self) -> str:
        head = f"{self.kind} test {self.name!r}: {self.n_failed} of {self.n} failed ({self.failure_rate:.1%})"
        lines = [head] + [f"  row {e['index']}: {e['before']} -> {e['after']}" for e in self.examples]
        return "\n".join(lines)


def _predict_rows(f: Callable[[Any], Any], x: Any, n: int, what: str) -> np.ndarray:
    out = np.asarray(f(x))
    if out.ndim == 0 or out.shape[0] != n:
        raise ShapeError(f"{what} returned shape {out.shape}; expected one value per row ({n})")
    return out


def _perturbed(perturb: Callable[[Any], Any], x: Any) -> Any:
    xp = perturb(x)
    if len(xp) != len(x):
        raise ShapeError(f"the perturbation returned {len(xp)} rows for {len(x)}; it must keep every row")
    return xp


def _as_scalar(v: Any) -> Any:
    a = np.asarray(v)
    return a.item() if a.ndim == 0 else a.tolist()


def invariance_test(predict: Callable[[Any], Any], x: Any, perturb: Callable[[Any], Any], name: str = "invariance",
                    max_examples: int = 5) -> BehaviourTestResult:
    """Rows whose predicted label changes under ``perturb``: failure when $f(x_i) \\ne f(\\tilde x_i)$.

    Args:
        predict: ``predict(x) -> labels`` (one per row; a 2-D output is compared as its row-wise argmax).
        x: the rows to test (an array, or anything ``predict`` and ``perturb`` accept that has ``len``).
        perturb: ``perturb(x) -> x'`` that should not change the label (seed it yourself if random).
        name: what the perturbation is, for the report.
        max_examples: failures to keep as examples.

    Returns:
        A :class:`BehaviourTestResult`.
    """
    n = len(x)
    if n == 0:
        raise DataError("x has no rows to test")
    before = _predict_rows(predict, x, n, "predict")
    after = _predict_rows(predict, _perturbed(perturb, x), n, "predict")
    if before.ndim == 2:
        before, after = before.argmax(axis=1), after.argmax(axis=1)
    failed = np.flatnonzero(before != after)
    examples = [{"index": int(i), "before": _as_scalar(before[i]), "after": _as_scalar(after[i])}
                for i in failed[: max(0, int(max_examples))]]
    return BehaviourTestResult(name, "invariance", n, int(failed.size), failed, examples)


def directional_test(score: Callable[[Any], Any], x: Any, perturb: Callable[[Any], Any], direction: str = "increase",
                     tolerance: float = 0.0, name: str = "directional", max_examples: int = 5) -> BehaviourTestResult:
    """Rows whose score moves the wrong way under ``perturb``.

    ``"increase"`` fails when $s(\\tilde x_i) < s(x_i) - \\tau$; ``"decrease"`` when
    $s(\\tilde x_i) > s(x_i) + \\tau$ ($\\tau$ = ``tolerance`` absorbs noise; equal scores pass).

    Args:
        score: ``score(x) -> (n,)`` floats, e.g. the probability of one class.
        x: the rows to test.
        perturb: ``perturb(x) -> x'`` that should move the score in ``direction``.
        direction: ``"increase"`` or ``"decrease"``.
        tolerance: ``tau >= 0``.
        name: for the report.
        max_examples: failures to keep as examples.

    Returns:
        A :class:`BehaviourTestResult`.
    """
    direction = choice(direction, "direction", ("increase", "decrease"))
    if not isinstance(tolerance, numbers.Real) or isinstance(tolerance, bool) or not tolerance >= 0:
        raise AttributeValueError(f"tolerance must be a number >= 0, got {tolerance!r}")
    n = len(x)
    if n == 0:
        raise DataError("x has no rows to test")
    before = as_finite(_predict_rows(score, x, n, "score"), "score(x)", ndim=1)
    after = as_finite(_predict_rows(score, _perturbed(perturb, x), n, "score"), "score(perturb(x))", ndim=1)
    bad = after < before - tolerance if direction == "increase" else after > before + tolerance
    failed = np.flatnonzero(bad)
    examples = [{"index": int(i), "before": float(before[i]), "after": float(after[i])}
                for i in failed[: max(0, int(max_examples))]]
    return BehaviourTestResult(name, "directional", n, int(failed.size), failed, examples)
