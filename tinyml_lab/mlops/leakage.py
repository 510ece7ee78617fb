"""Data leakage: information in training or evaluation that the deployed model will not have.

A leak makes offline scores better than what the model will do in use. The detectors here look for
the common kinds, each returning :class:`LeakageFinding` objects with a sentence that says what was found
and how to fix it; :func:`detect_leakage` runs every check its arguments allow and gathers the findings
in a :class:`LeakageReport`.

* duplicates (:func:`check_duplicates`): test rows that also appear in training, exactly (row hashes),
  after rounding, or by cosine similarity;
* time order (:func:`check_time_split`): test rows older than the newest training row;
* feature timing (:func:`check_feature_times`): feature values computed after the label was known;
* preprocessing (:func:`check_scaler`): scaling statistics equal to those of train+test, not of train;
* target leakage (:func:`check_target_leakage`): one feature alone predicts the label almost perfectly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AttributeValueError, DataError, ShapeError
from ._validate import as_finite, as_labels, fraction, positive_int, same_length

__all__ = [
    "LeakageFinding", "LeakageReport", "find_duplicates", "find_near_duplicates", "check_duplicates",
    "check_time_split", "check_feature_times", "check_scaler", "single_feature_scores", "check_target_leakage",
    "detect_leakage",
]


@dataclass
class LeakageFinding:
    """One suspected leak.

    Attributes:
        kind: ``"duplicate"``, ``"near-duplicate"``, ``"time-order"``, ``"feature-time"``,
            ``"preprocessing"`` or ``"target"``.
        message: one sentence: what was found, how much, and the fix.
        details: the numbers behind the sentence (indices, counts, scores).
    """

    kind: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"[{self.kind}] {self.message}"


@dataclass
class LeakageReport:
    """The findings of :func:`detect_leakage` and the checks that ran."""

    findings: list[LeakageFinding]
    checks: list[str]

    @property
    def clean(self) -> bool:
        """True when no check found anything."""
        return not self.findings

    def kinds(self) -> set[str]:
        return {f.kind for f in self.findings}

    def of_kind(self, kind: str) -> list[LeakageFinding]:
        return [f for f in self.findings if f.kind == kind]

    def __str__(self) -> str:
        ran = ", ".join(self.checks) or "none"
        if self.clean:
            return f"No leakage found (checks run: {ran})."
        lines = [f"{len(self.findings)} possible leak(s) (checks run: {ran}):"]
        lines += [f"- {f}" for f in self.findings]
        return "\n".join(lines)


# ---------------------------------------------------------------- duplicates


def _features(x_train: Any, x_test: Any) -> tuple[np.ndarray, np.ndarray]:
    a = as_finite(x_train, "x_train", ndim=2)
    b = as_finite(x_test, "x_test", ndim=2)
    if a.shape[1] != b.shape[1]:
        raise ShapeError(f"x_train has {a.shape[1]} features but x_test has {b.shape[1]}")
    return a, b


def _row_keys(x: np.ndarray) -> list[bytes]:
    x = np.ascontiguousarray(x + 0.0)  # + 0.0 turns -0.0 into 0.0, so equal rows have equal bytes
    return [row.tobytes() for row in x]


def find_duplicates(x_train: Any, x_test: Any, decimals: int | None = None) -> np.ndarray:
    """Pairs ``(test_row, train_row)`` whose features are equal (after rounding to ``decimals``, if given).

    Rows are keyed by their bytes in a hash table: $O(n_{train} + n_{test})$ time.

    Args:
        x_train, x_test: feature matrices with the same number of columns.
        decimals: round to this many decimals first (near-duplicates that differ by noise), or None.

    Returns:
        int64 array ``(k, 2)``; each test row appears once, paired with its first matching training row.
    """
    a, b = _features(x_train, x_test)
    if decimals is not None:
        if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)):
            raise AttributeValueError(f"decimals must be an integer or None, got {decimals!r}")
        a, b = np.round(a, decimals), np.round(b, decimals)
    first: dict[bytes, int] = {}
    for i, key in enumerate(_row_keys(a)):
        first.setdefault(key, i)
    pairs = [(j, first[key]) for j, key in enumerate(_row_keys(b)) if key in first]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def find_near_duplicates(x_train: Any, x_test: Any, threshold: float = 0.99, chunk: int = 1024) -> np.ndarray:
    """Pairs ``(test_row, train_row)`` with cosine similarity $\\frac{a \\cdot b}{\\|a\\|\\|b\\|} \\ge$ ``threshold``.

    Each test row is paired with its most similar training row. All-zero rows have no direction and are
    skipped (exact duplicates of them are found by :func:`find_duplicates`).

    Args:
        x_train, x_test: feature matrices.
        threshold: similarity in (0, 1].
        chunk: test rows per matrix product (bounds memory).

    Returns:
        float64 array ``(k, 3)``: test row, train row, similarity.
    """
    a, b = _features(x_train, x_test)
    threshold = fraction(threshold, "threshold", high_open=False)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    ua = np.where(na[:, None] > 0, a / np.where(na > 0, na, 1.0)[:, None], 0.0)
    ub = np.where(nb[:, None] > 0, b / np.where(nb > 0, nb, 1.0)[:, None], 0.0)
    out = []
    for start in range(0, ub.shape[0], positive_int(chunk, "chunk")):
        sim = ub[start:start + chunk] @ ua.T
        best = sim.argmax(axis=1)
        top = sim[np.arange(sim.shape[0]), best]
        for r in np.flatnonzero(top >= threshold - 1e-12):
            out.append((start + r, best[r], min(float(top[r]), 1.0)))
    return np.array(out, dtype=np.float64).reshape(-1, 3)


def check_duplicates(x_train: Any, x_test: Any, decimals: int | None = None,
                     cosine_threshold: float | None = None) -> list[LeakageFinding]:
    """Findings for exact duplicates, then for near-duplicates (rounding, cosine) not already counted."""
    a, b = _features(x_train, x_test)
    findings = []
    exact = find_duplicates(a, b)
    seen = set(exact[:, 0].tolist())
    if exact.size:
        findings.append(LeakageFinding(
            "duplicate",
            f"{exact.shape[0]} of {b.shape[0]} test rows ({exact.shape[0] / b.shape[0]:.1%}) also appear in the "
            "training data, so the test score partly measures memory; drop them from the test set or split by "
            "source (user, device, recording) before sampling.",
            {"pairs": exact}))
    near_parts = []
    if decimals is not None:
        rounded = find_duplicates(a, b, decimals=decimals)
        near_parts.append(rounded[[j not in seen for j in rounded[:, 0]]] if rounded.size else rounded)
    if cosine_threshold is not None:
        cos = find_near_duplicates(a, b, threshold=cosine_threshold)
        pairs = cos[:, :2].astype(np.int64)
        near_parts.append(pairs[[j not in seen for j in pairs[:, 0]]] if pairs.size else pairs)
    if near_parts:
        near = np.concatenate(near_parts)
        if near.size:
            _, first = np.unique(near[:, 0], return_index=True)
            near = near[np.sort(first)]
            how = " and ".join(filter(None, [f"equal after rounding to {decimals} decimals" if decimals is not None else "",
                                             f"cosine similarity >= {cosine_threshold}" if cosine_threshold is not None else ""]))
            findings.append(LeakageFinding(
                "near-duplicate",
                f"{near.shape[0]} more test rows ({near.shape[0] / b.shape[0]:.1%}) nearly repeat a training row "
                f"({how}), e.g. re-encoded or slightly augmented copies; remove them or group them on the same "
                "side of the split.",
                {"pairs": near}))
    return findings


# ---------------------------------------------------------------- time


def _times(t: Any, what: str) -> np.ndarray:
    a = np.asarray(t)
    if a.ndim == 0:
        raise ShapeError(f"{what} must be an array of times, got a scalar")
    if a.size == 0:
        raise DataError(f"{what} is empty")
    if a.dtype.kind == "M":
        if np.isnat(a).any():
            raise DataError(f"{what} holds NaT values")
        return a.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
    return as_finite(a, what, ndim=a.ndim)


def _show_time(v: float, like: Any) -> str:
    if np.asarray(like).dtype.kind == "M":
        return str(np.datetime64(int(v), "ns").astype("datetime64[s]"))
    return f"{v:g}"


def check_time_split(train_times: Any, test_times: Any) -> list[LeakageFinding]:
    """A finding when test rows are older than the newest training row: $\\min t_{test} < \\max t_{train}$.

    Args:
        train_times, test_times: 1-D numbers or ``datetime64``.
    """
    tr = _times(train_times, "train_times")
    te = _times(test_times, "test_times")
    if tr.ndim != 1 or te.ndim != 1:
        raise ShapeError("train_times and test_times must be 1-D")
    cut = tr.max()
    early = np.flatnonzero(te < cut)
    if not early.size:
        return []
    return [LeakageFinding(
        "time-order",
        f"{early.size} of {te.size} test rows ({early.size / te.size:.1%}) are older than the newest training row "
        f"({_show_time(cut, train_times)}), so the model trains on the future of what it is tested on; split by "
        "time, training on rows before a cut-off and testing on rows after it.",
        {"test_rows": early, "max_train_time": cut})]


def check_feature_times(feature_times: Any, label_times: Any, feature_names: Sequence[str] | None = None
                        ) -> list[LeakageFinding]:
    """A finding per feature whose value was computed after the label time of some row.

    At prediction time only values known before the label exist; a value computed later (a refund
    flag for a fraud label, a discharge code for a readmission label) carries the answer.

    Args:
        feature_times: ``(n, f)`` time each feature value became available.
        label_times: ``(n,)`` time the label was determined (or the prediction is made).
        feature_names: names for the messages.
    """
    ft = _times(feature_times, "feature_times")
    lt = _times(label_times, "label_times")
    if ft.ndim != 2 or lt.ndim != 1:
        raise ShapeError(f"feature_times must be (n, f) and label_times (n,), got {ft.shape} and {lt.shape}")
    same_length(("feature_times", ft), ("label_times", lt))
    names = _names(feature_names, ft.shape[1])
    findings = []
    for j in range(ft.shape[1]):
        late = np.flatnonzero(ft[:, j] > lt)
        if late.size:
            findings.append(LeakageFinding(
                "feature-time",
                f"feature {names[j]!r} is computed after the label time for {late.size} of {lt.size} rows "
                f"({late.size / lt.size:.1%}); the deployed model cannot see it, so drop it or rebuild it from data "
                "available at prediction time.",
                {"feature": j, "name": names[j], "rows": late}))
    return findings


def _names(names: Sequence[str] | None, f: int) -> list[str]:
    if names is None:
        return [f"x{j}" for j in range(f)]
    if len(names) != f:
        raise ShapeError(f"{len(names)} feature names for {f} features")
    return [str(n) for n in names]


# ---------------------------------------------------------------- preprocessing


def _scaler_stats(scaler: Any) -> dict[str, np.ndarray]:
    if isinstance(scaler, dict):
        stats = {k: np.asarray(v, dtype=np.float64) for k, v in scaler.items()}
    elif hasattr(scaler, "mean_") and hasattr(scaler, "scale_"):
        stats = {"mean": np.asarray(scaler.mean_, dtype=np.float64), "std": np.asarray(scaler.scale_, dtype=np.float64)}
    elif hasattr(scaler, "data_min_") and hasattr(scaler, "data_max_"):
        stats = {"min": np.asarray(scaler.data_min_, dtype=np.float64), "max": np.asarray(scaler.data_max_, dtype=np.float64)}
    else:
        raise AttributeValueError("scaler must be a fitted StandardScaler or MinMaxScaler, or a dict with 'mean'/'std' "
                                  f"or 'min'/'max' arrays; got {type(scaler).__name__}")
    unknown = set(stats) - {"mean", "std", "min", "max"}
    if unknown or not stats:
        raise AttributeValueError(f"scaler statistics must be among mean, std, min, max; got {sorted(stats)}")
    return stats


def _stats_of(x: np.ndarray, name: str) -> list[np.ndarray]:
    if name == "mean":
        return [x.mean(axis=0)]
    if name == "std":
        return [x.std(axis=0), x.std(axis=0, ddof=1) if x.shape[0] > 1 else x.std(axis=0)]
    return [x.min(axis=0) if name == "min" else x.max(axis=0)]


def check_scaler(scaler: Any, x_train: Any, x_test: Any, rtol: float = 1e-6) -> list[LeakageFinding]:
    """A finding when the scaler's statistics are those of train+test rather than of the training split.

    Statistics fitted on all data carry the test set's mean and spread into training. A statistic
    "matches" when it equals the reference within ``rtol`` (relative to the feature's spread); the check
    only speaks when the full-data statistics match and the training-split ones do not.

    Args:
        scaler: fitted ``StandardScaler`` (``mean_``, ``scale_``), ``MinMaxScaler`` (``data_min_``,
            ``data_max_``), or a dict of ``mean``/``std``/``min``/``max`` arrays.
        x_train, x_test: the raw (unscaled) features of the two splits.
        rtol: matching tolerance.
    """
    a, b = _features(x_train, x_test)
    stats = _scaler_stats(scaler)
    full = np.concatenate([a, b])
    spread = np.maximum(full.std(axis=0), 1e-12)
    matched_full, matched_train = [], []
    for name, value in stats.items():
        if value.shape != (a.shape[1],):
            raise ShapeError(f"scaler {name} has shape {value.shape}; the data have {a.shape[1]} features")
        close = lambda ref: bool(np.all(np.abs(value - ref) <= rtol * spread + 1e-12))  # noqa: E731
        matched_full.append(any(close(r) for r in _stats_of(full, name)))
        matched_train.append(any(close(r) for r in _stats_of(a, name)))
    if all(matched_full) and not all(matched_train):
        return [LeakageFinding(
            "preprocessing",
            f"the scaler's {'/'.join(stats)} equal those of train and test together, not of the training split, so "
            "test statistics leaked into training; fit the scaler (and every learned preprocessing step) on the "
            "training split only, e.g. inside a Pipeline.",
            {"statistics": sorted(stats)})]
    return []


# ---------------------------------------------------------------- target leakage


def single_feature_scores(x: Any, y: Any, n_bins: int = 20, seed: int = 0) -> np.ndarray:
    """Out-of-sample balanced accuracy of predicting ``y`` from each feature alone.

    Per feature, 2-fold cross-validation: on one half, cut the feature at its quantiles into at most
    ``n_bins`` bins and take each bin's majority class; score the other half by balanced accuracy
    $\\frac1K\\sum_c \\mathrm{recall}_c$ (chance is $1/K$ whatever the class balance); average the folds.

    Args:
        x: features ``(n, f)``; y: class labels ``(n,)``.
        n_bins: bins per feature (a feature with fewer distinct values gets one bin each).
        seed: seeds the fold split.

    Returns:
        float64 scores of shape ``(f,)``.
    """
    xa = as_finite(x, "x", ndim=2)
    ya = as_labels(y, "y")
    n = same_length(("x", xa), ("y", ya))
    if n < 4:
        raise DataError(f"need at least 4 rows to score features out of sample, got {n}")
    n_bins = positive_int(n_bins, "n_bins", minimum=2)
    classes, yi = np.unique(ya, return_inverse=True)
    k = classes.size
    perm = np.random.default_rng(seed).permutation(n)
    folds = [perm[: n // 2], perm[n // 2:]]
    scores = np.zeros(xa.shape[1])
    for j in range(xa.shape[1]):
        total = 0.0
        for fit_rows, test_rows in ((folds[0], folds[1]), (folds[1], folds[0])):
            col = xa[fit_rows, j]
            values = np.unique(col)
            if values.size <= n_bins:  # one bin per distinct value: cut half-way between neighbours
                edges = (values[:-1] + values[1:]) / 2
            else:
                edges = np.unique(np.quantile(col, np.linspace(0, 1, n_bins + 1)[1:-1]))
            fit_bin = np.searchsorted(edges, col, side="right")
            table = np.zeros((edges.size + 1, k))
            np.add.at(table, (fit_bin, yi[fit_rows]), 1.0)
            overall = np.bincount(yi[fit_rows], minlength=k).argmax()
            bin_class = np.where(table.sum(axis=1) > 0, table.argmax(axis=1), overall)
            pred = bin_class[np.searchsorted(edges, xa[test_rows, j], side="right")]
            truth = yi[test_rows]
            recalls = [np.mean(pred[truth == c] == c) for c in range(k) if (truth == c).any()]
            total += float(np.mean(recalls))
        scores[j] = total / 2
    return scores


def check_target_leakage(x: Any, y: Any, feature_names: Sequence[str] | None = None, threshold: float = 0.95,
                         n_bins: int = 20, seed: int = 0) -> list[LeakageFinding]:
    """A finding per feature that alone predicts the label with balanced accuracy >= ``threshold``.

    Real signals rarely decide a label on their own; a feature that does is usually the label in
    disguise (recorded with or after it). See :func:`single_feature_scores` for the score.
    """
    scores = single_feature_scores(x, y, n_bins=n_bins, seed=seed)
    threshold = fraction(threshold, "threshold", high_open=False)
    names = _names(feature_names, scores.size)
    k = np.unique(np.asarray(y)).size
    return [LeakageFinding(
        "target",
        f"feature {names[j]!r} alone predicts the label with balanced accuracy {scores[j]:.3f} (chance {1 / k:.3f}); "
        "check whether it is recorded with or after the label, and drop it if so.",
        {"feature": j, "name": names[j], "score": float(scores[j])})
        for j in np.flatnonzero(scores >= threshold)]


# ---------------------------------------------------------------- all together


def detect_leakage(x_train: Any, y_train: Any = None, x_test: Any = None, *, feature_names: Sequence[str] | None = None,
                   train_times: Any = None, test_times: Any = None, feature_times: Any = None, label_times: Any = None,
                   scaler: Any = None, decimals: int | None = None, cosine_threshold: float | None = None,
                   target_threshold: float = 0.95, seed: int = 0) -> LeakageReport:
    """Run every check the arguments allow and gather the findings.

    Args:
        x_train, y_train, x_test: raw features of the splits and the training labels (``y_train`` enables
            the target check, ``x_test`` the duplicate and scaler checks).
        feature_names: names used in the messages.
        train_times, test_times: row times for the time-order check.
        feature_times, label_times: when each training feature value and label became known
            (rows of ``x_train``), for the feature-timing check.
        scaler: a fitted scaler (or dict of statistics) for the preprocessing check.
        decimals, cosine_threshold: near-duplicate options of :func:`check_duplicates`.
        target_threshold: balanced accuracy that flags a single feature.
        seed: seeds the target check's folds.

    Returns:
        A :class:`LeakageReport`.
    """
    xa = as_finite(x_train, "x_train", ndim=2)
    findings: list[LeakageFinding] = []
    checks: list[str] = []
    if x_test is not None:
        findings += check_duplicates(xa, x_test, decimals=decimals, cosine_threshold=cosine_threshold)
        checks.append("duplicates")
    if (train_times is None) != (test_times is None):
        raise AttributeValueError("give both train_times and test_times for the time-order check, or neither")
    if train_times is not None:
        findings += check_time_split(train_times, test_times)
        checks.append("time order")
    if (feature_times is None) != (label_times is None):
        raise AttributeValueError("give both feature_times and label_times for the feature-timing check, or neither")
    if feature_times is not None:
        findings += check_feature_times(feature_times, label_times, feature_names)
        checks.append("feature timing")
    if scaler is not None:
        if x_test is None:
            raise AttributeValueError("the scaler check needs x_test too")
        findings += check_scaler(scaler, xa, x_test)
        checks.append("preprocessing")
    if y_train is not None:
        findings += check_target_leakage(xa, y_train, feature_names, threshold=target_threshold, seed=seed)
        checks.append("target")
    return LeakageReport(findings, checks)
