"""Drift detectors: has the data a deployed model sees moved away from what it was trained on?

Two kinds, with the verbs of scikit-learn.

*Window detectors* compare a window of recent inputs with a reference sample:
``det = KSDrift(alpha=0.05).fit(reference)``, then ``det.test(window)`` returns
a :class:`DriftResult`. They are two-sample tests (or, for PSI, a distance
with a conventional threshold):

* :class:`KSDrift`: Kolmogorov-Smirnov per feature, with a Bonferroni or
  Benjamini-Hochberg correction over the features;
* :class:`PSIDrift`: the population stability index on reference-quantile bins;
* :class:`ChiSquareDrift`: categorical features, chi-square test of homogeneity;
* :class:`MMDDrift`: kernel two-sample test (maximum mean discrepancy, Gaussian
  kernel), p-value by a seeded permutation test;
* :class:`BBSEDrift`: label shift seen through a classifier's predictions
  (black-box shift estimation), with the estimated label distribution of the window.

*Streaming detectors* watch one number per element (typically 1 for a wrong
prediction, 0 for a right one): ``update(x) -> bool`` is True at the element
where a change is detected, and ``test(stream)`` runs a whole stream:

* :class:`PageHinkley`: the Page-Hinkley cumulative-sum test;
* :class:`ADWIN`: the adaptive window of Bifet and Gavaldà, on an exponential histogram.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
from scipy import special, stats

from ..errors import AttributeValueError, DataError, ShapeError

CORRECTIONS = ("bonferroni", "fdr")


@dataclass
class DriftResult:
    """What one drift test found.

    Attributes:
        drift: whether the detector flags a change.
        statistic: the test statistic (for multi-feature tests, the largest per-feature one).
        p_value: the p-value of the decision (corrected for the number of features), or None
            for threshold rules (PSI) and streaming detectors.
        threshold: what the decision compares against: ``alpha`` for tests, the PSI or
            Page-Hinkley threshold, 1.0 for ADWIN's ratio to its cut.
        method: the detector's name.
        details: per-feature arrays and whatever else the detector reports.
    """

    drift: bool
    statistic: float
    p_value: float | None
    threshold: float | None
    method: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types (lists instead of arrays), for JSON."""

        def plain(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                return v.tolist()
            if isinstance(v, np.generic):
                return v.item()
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            if isinstance(v, (list, tuple)):
                return [plain(x) for x in v]
            return v

        return {"drift": bool(self.drift), "statistic": float(self.statistic),
                "p_value": None if self.p_value is None else float(self.p_value),
                "threshold": None if self.threshold is None else float(self.threshold),
                "method": self.method, "details": plain(self.details)}


# ----------------------------------------------------------------------------------------------
# input checks


def _check_unit(owner: str, name: str, value: Any, closed_right: bool = False) -> float:
    """``value`` as a float in (0, 1) (or (0, 1] with ``closed_right``), else AttributeValueError."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and 0 < value and (value <= 1 if closed_right else value < 1)
    if not ok:
        span = "(0, 1]" if closed_right else "(0, 1)"
        example = 0.9999 if closed_right else 0.05
        raise AttributeValueError(f"{owner}: {name}={value!r} is outside {span}; pass a number in {span}, "
                                  f"e.g. {name}={example}")
    return float(value)


def _check_positive(owner: str, name: str, value: Any, integer: bool = False, minimum: float = 0.0,
                    strict: bool = True) -> Any:
    kinds = numbers.Integral if integer else numbers.Real
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum)
    if not ok:
        what = "an integer" if integer else "a number"
        rel = ">" if strict else ">="
        raise AttributeValueError(f"{owner}: {name}={value!r} must be {what} {rel} {minimum:g}")
    return int(value) if integer else float(value)


def _check_correction(owner: str, correction: Any) -> str:
    if correction not in CORRECTIONS:
        raise AttributeValueError(f"{owner}: correction={correction!r} is not one of {', '.join(CORRECTIONS)}; "
                                  f"use 'bonferroni' (family-wise error) or 'fdr' (Benjamini-Hochberg)")
    return correction


def _as_samples(x: Any, owner: str, what: str, min_rows: int = 1) -> np.ndarray:
    """``x`` as a float64 (n, d) array: 1-D input is one feature; finite, with at least ``min_rows`` rows."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{owner}: the {what} must be numeric, got {type(x).__name__}; encode categories "
                        f"as numbers or use ChiSquareDrift") from None
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ShapeError(f"{owner}: the {what} must be (samples, features) or 1-D, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise DataError(f"{owner}: the {what} is empty (shape {a.shape}); give at least {min_rows} sample(s)")
    if a.shape[0] < min_rows:
        raise DataError(f"{owner}: the {what} has {a.shape[0]} sample(s); this test needs at least {min_rows}")
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise DataError(f"{owner}: the {what} holds {int(bad.sum())} NaN or infinite value(s) (first at sample "
                        f"{r}, feature {c}); drop or impute them before testing")
    return a


def _check_features(owner: str, window: np.ndarray, n_features: int) -> None:
    if window.shape[1] != n_features:
        raise ShapeError(f"{owner}: the window has {window.shape[1]} feature(s), the reference had {n_features}; "
                         f"pass the same columns in the same order")


def _not_fitted(owner: str, call: str = "fit(reference)") -> DataError:
    return DataError(f"{owner} is not fitted: call {call} before test()")


def adjust_p_values(p: np.ndarray, correction: str) -> np.ndarray:
    """p-values adjusted for ``d`` tests: Bonferroni $\\min(1, d p_i)$, or Benjamini-Hochberg
    $\\min_{j \\ge i} d\\,p_{(j)}/j$ on the sorted p-values (reject where the adjusted value <= alpha).

    Args:
        p: the raw p-values, one per feature.
        correction: ``"bonferroni"`` or ``"fdr"``.
    Returns:
        The adjusted p-values, in the input order.
    """
    p = np.asarray(p, dtype=np.float64)
    d = p.size
    if correction == "bonferroni":
        return np.minimum(1.0, p * d)
    _check_correction("adjust_p_values", correction)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * d / np.arange(1, d + 1)
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(d)
    out[order] = np.minimum(stepped, 1.0)
    return out


def _multi_feature_result(method: str, stat: np.ndarray, p: np.ndarray, alpha: float, correction: str,
                          **extra: Any) -> DriftResult:
    adjusted = adjust_p_values(p, correction)
    drifted = np.flatnonzero(adjusted <= alpha)
    details = {"statistic_per_feature": stat, "p_value_per_feature": p, "adjusted_p_value_per_feature": adjusted,
               "drifted_features": drifted, "correction": correction, **extra}
    return DriftResult(bool(drifted.size), float(stat.max()), float(adjusted.min()), alpha, method, details)


# ----------------------------------------------------------------------------------------------
# Kolmogorov-Smirnov


def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample KS statistic $D = \\sup_x |F_a(x) - F_b(x)|$ of two 1-D samples (empirical CDFs).

    Args:
        a, b: 1-D samples (``a`` may be given sorted; it is sorted again, which is cheap then).
    Returns:
        D in [0, 1].
    """
    a, b = np.sort(a), np.sort(b)
    pooled = np.concatenate([a, b])
    fa = np.searchsorted(a, pooled, side="right") / a.size
    fb = np.searchsorted(b, pooled, side="right") / b.size
    return float(np.abs(fa - fb).max())


def ks_p_value(d: Any, n: int, m: int) -> Any:
    """Two-sided p-value of the two-sample KS statistic by Stephens' approximation:
    $Q_{KS}((\\sqrt{e} + 0.12 + 0.11/\\sqrt{e})\\,d)$ with $e = nm/(n+m)$ and $Q_{KS}$ the Kolmogorov
    survival function (Stephens 1970). For sample sizes from 20 it is within 0.025 of the
    finite-sample Kolmogorov distribution ``scipy.stats.kstwo.sf(d, round(e))`` that
    ``ks_2samp(method="asymp")`` uses, and within 0.007 where that p-value is below 0.2, for a
    small fraction of its cost.

    Args:
        d: statistic(s); n, m: the two sample sizes.
    """
    e = math.sqrt(n * m / (n + m))
    return np.clip(special.kolmogorov((e + 0.12 + 0.11 / e) * np.asarray(d, dtype=np.float64)), 0.0, 1.0)


class KSDrift:
    """Kolmogorov-Smirnov test per feature: $D_j = \\sup_x |F^{ref}_j(x) - F^{win}_j(x)|$, drift when
    the smallest corrected p-value is <= alpha.

    The p-value is asymptotic (:func:`ks_p_value`), good from a few tens of samples per side; the
    statistic is discrete, so the test is slightly conservative, more so with ties (discrete features).

    Args:
        alpha: significance level of the whole test (all features), in (0, 1).
        correction: ``"bonferroni"`` (family-wise error <= alpha) or ``"fdr"`` (Benjamini-Hochberg:
            false discovery rate <= alpha; under no drift at all the same family-wise level).
    """

    def __init__(self, alpha: float = 0.05, correction: str = "bonferroni"):
        self.alpha = alpha
        self.correction = correction

    def fit(self, reference: Any) -> "KSDrift":
        """Keep the sorted reference columns. ``reference``: (n, d) or 1-D samples. Returns self."""
        _check_unit("KSDrift", "alpha", self.alpha)
        _check_correction("KSDrift", self.correction)
        ref = _as_samples(reference, "KSDrift", "reference")
        self.reference_ = np.sort(ref, axis=0)
        self.n_features_ = ref.shape[1]
        return self

    def test(self, window: Any) -> DriftResult:
        """Test one window ((m, d) or 1-D) against the reference."""
        if not hasattr(self, "reference_"):
            raise _not_fitted("KSDrift")
        win = _as_samples(window, "KSDrift", "window")
        _check_features("KSDrift", win, self.n_features_)
        n, m = self.reference_.shape[0], win.shape[0]
        win = np.sort(win, axis=0)
        d = np.empty(self.n_features_)
        for j in range(self.n_features_):
            a, b = self.reference_[:, j], win[:, j]
            pooled = np.concatenate([a, b])
            d[j] = np.abs(np.searchsorted(a, pooled, side="right") / n
                          - np.searchsorted(b, pooled, side="right") / m).max()
        p = ks_p_value(d, n, m)
        return _multi_feature_result("ks", d, p, self.alpha, self.correction)


# ----------------------------------------------------------------------------------------------
# population stability index


class PSIDrift:
    """Population stability index per feature on bins cut at reference quantiles:
    $\\mathrm{PSI}_j = \\sum_b (q_b - p_b) \\ln(q_b / p_b)$, drift when $\\max_j \\mathrm{PSI}_j$ > threshold.

    The credit-scoring rule of thumb (Siddiqi 2006) reads PSI < 0.1 as no significant change,
    0.1-0.25 as some change and > 0.25 as a major shift; 0.2, the default here, is the cut-off many
    monitoring tools use between the last two. PSI is the symmetric Kullback-Leibler divergence of the
    binned distributions, so a fixed cut-off means a different false-alarm rate at every sample size:
    with no shift, $\\mathrm{PSI} \\approx (1/n + 1/m)\\,\\chi^2_{B-1}$ (Yurdakul 2018). ``details``
    reports that approximate p-value per feature, but the decision is the threshold's.

    Args:
        threshold: drift when the largest per-feature PSI exceeds it.
        n_bins: number of quantile bins of the reference (fewer when the reference has ties).
        eps: proportion used in place of an empty bin's 0, so the logarithm stays finite.
    """

    def __init__(self, threshold: float = 0.2, n_bins: int = 10, eps: float = 1e-4):
        self.threshold = threshold
        self.n_bins = n_bins
        self.eps = eps

    def fit(self, reference: Any) -> "PSIDrift":
        """Bin edges at the reference's quantiles and the reference proportions. Returns self."""
        _check_positive("PSIDrift", "threshold", self.threshold)
        _check_positive("PSIDrift", "n_bins", self.n_bins, integer=True, minimum=1)
        _check_unit("PSIDrift", "eps", self.eps)
        ref = _as_samples(reference, "PSIDrift", "reference")
        qs = np.linspace(0, 1, self.n_bins + 1)[1:-1]
        cuts = np.quantile(ref, qs, axis=0).reshape(qs.size, ref.shape[1])
        self.edges_ = [np.unique(cuts[:, j]) for j in range(ref.shape[1])]
        self.reference_proportions_ = [self._proportions(ref[:, j], e) for j, e in enumerate(self.edges_)]
        self.n_reference_ = ref.shape[0]
        self.n_features_ = ref.shape[1]
        return self

    @staticmethod
    def _proportions(x: np.ndarray, edges: np.ndarray) -> np.ndarray:
        # bin b holds edges[b-1] < x <= edges[b]; the outer bins are open
        idx = np.searchsorted(edges, x, side="left")
        return np.bincount(idx, minlength=edges.size + 1) / x.size

    def psi(self, window: Any) -> np.ndarray:
        """The PSI of every feature of ``window`` against the reference."""
        if not hasattr(self, "edges_"):
            raise _not_fitted("PSIDrift")
        win = _as_samples(window, "PSIDrift", "window")
        _check_features("PSIDrift", win, self.n_features_)
        out = np.empty(self.n_features_)
        for j, (edges, p) in enumerate(zip(self.edges_, self.reference_proportions_)):
            q = np.maximum(self._proportions(win[:, j], edges), self.eps)
            pe = np.maximum(p, self.eps)
            out[j] = float(np.sum((q - pe) * np.log(q / pe)))
        return out

    def test(self, window: Any) -> DriftResult:
        """Test one window ((m, d) or 1-D) against the reference."""
        psi = self.psi(window)
        m = np.asarray(window).shape[0]
        scale = 1.0 / self.n_reference_ + 1.0 / m
        dof = np.array([max(e.size, 1) for e in self.edges_])
        approx_p = stats.chi2.sf(psi / scale, dof)
        drifted = np.flatnonzero(psi > self.threshold)
        details = {"statistic_per_feature": psi, "drifted_features": drifted, "n_bins_per_feature": dof + 1,
                   "approx_p_value_per_feature": approx_p}
        return DriftResult(bool(drifted.size), float(psi.max()), None, float(self.threshold), "psi", details)


# ----------------------------------------------------------------------------------------------
# chi-square on categories


def chi2_homogeneity(table: np.ndarray) -> tuple[float, int, float]:
    """Chi-square test of homogeneity of the rows of a contingency table (no continuity correction):
    $X^2 = \\sum_{ij} (O_{ij} - E_{ij})^2 / E_{ij}$, $E_{ij} = r_i c_j / N$, $(R-1)(C-1)$ degrees of freedom.

    Columns that are empty in every row are dropped first.

    Args:
        table: (rows, categories) counts.
    Returns:
        (statistic, degrees of freedom, p-value); (0, 0, 1) when fewer than two categories remain.
    """
    t = np.asarray(table, dtype=np.float64)
    t = t[:, t.sum(axis=0) > 0]
    rows, cols = t.shape
    if cols < 2 or rows < 2:
        return 0.0, 0, 1.0
    expected = np.outer(t.sum(axis=1), t.sum(axis=0)) / t.sum()
    stat = float(np.sum((t - expected) ** 2 / expected))
    dof = (rows - 1) * (cols - 1)
    return stat, dof, float(stats.chi2.sf(stat, dof))


def _as_categories(x: Any, owner: str, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ShapeError(f"{owner}: the {what} must be (samples, features) or 1-D, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise DataError(f"{owner}: the {what} is empty (shape {a.shape}); give at least one sample")
    if a.dtype.kind == "f":
        bad = ~np.isfinite(a)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise DataError(f"{owner}: the {what} holds NaN or infinite values (first at sample {r}, feature {c}); "
                            f"give missing values a category of their own")
    elif a.dtype.kind == "O":
        for j in range(a.shape[1]):
            for i, v in enumerate(a[:, j]):
                if v is None or (isinstance(v, float) and not math.isfinite(v)):
                    raise DataError(f"{owner}: the {what} holds a missing value {v!r} (sample {i}, feature {j}); "
                                    f"give missing values a category of their own")
    return a


class ChiSquareDrift:
    """Categorical features: per feature, the chi-square test of homogeneity of the 2 x K table of
    reference and window counts over the K categories seen in either; drift when the smallest
    corrected p-value is <= alpha.

    No continuity correction (``scipy.stats.chi2_contingency(table, correction=False)``). The
    chi-square approximation wants expected counts of about 5 or more; rare categories make it
    anti-conservative, so merge them first.

    Args:
        alpha: significance level of the whole test, in (0, 1).
        correction: ``"bonferroni"`` or ``"fdr"`` over the features.
    """

    def __init__(self, alpha: float = 0.05, correction: str = "bonferroni"):
        self.alpha = alpha
        self.correction = correction

    def fit(self, reference: Any) -> "ChiSquareDrift":
        """Count the categories of every reference column (ints, strings, any hashable). Returns self."""
        _check_unit("ChiSquareDrift", "alpha", self.alpha)
        _check_correction("ChiSquareDrift", self.correction)
        ref = _as_categories(reference, "ChiSquareDrift", "reference")
        self.reference_counts_ = []
        for j in range(ref.shape[1]):
            cats, counts = np.unique(ref[:, j], return_counts=True)
            self.reference_counts_.append(dict(zip(cats.tolist(), counts.tolist())))
        self.n_features_ = ref.shape[1]
        return self

    def contingency(self, window: Any) -> list[tuple[list, np.ndarray]]:
        """Per feature: (categories, 2 x K table of reference and window counts)."""
        if not hasattr(self, "reference_counts_"):
            raise _not_fitted("ChiSquareDrift")
        win = _as_categories(window, "ChiSquareDrift", "window")
        _check_features("ChiSquareDrift", win, self.n_features_)
        out = []
        for j, ref_counts in enumerate(self.reference_counts_):
            cats, counts = np.unique(win[:, j], return_counts=True)
            win_counts = dict(zip(cats.tolist(), counts.tolist()))
            try:
                keys = sorted(set(ref_counts) | set(win_counts))
            except TypeError:  # mixed types: keep first-seen order
                keys = list(dict.fromkeys([*ref_counts, *win_counts]))
            table = np.array([[ref_counts.get(k, 0) for k in keys], [win_counts.get(k, 0) for k in keys]])
            out.append((keys, table))
        return out

    def test(self, window: Any) -> DriftResult:
        """Test one window ((m, d) or 1-D categories) against the reference."""
        tables = self.contingency(window)
        res = [chi2_homogeneity(t) for _, t in tables]
        stat = np.array([r[0] for r in res])
        p = np.array([r[2] for r in res])
        new = [[k for k, c in zip(keys, t[0]) if c == 0] for keys, t in tables]
        return _multi_feature_result("chi2", stat, p, self.alpha, self.correction,
                                     dof_per_feature=np.array([r[1] for r in res]), unseen_categories=new)


# ----------------------------------------------------------------------------------------------
# maximum mean discrepancy


def squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """$\\|x_i - y_j\\|^2$ for all pairs, clipped at 0 against rounding."""
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.maximum(d, 0.0)


def median_bandwidth(x: np.ndarray, max_points: int = 1000, seed: int = 0) -> float:
    """Median heuristic: $\\sigma = \\mathrm{median}_{i<j} \\|x_i - x_j\\|$ over at most ``max_points``
    points (a seeded subsample), ignoring zero distances."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape[0] > max_points:
        x = x[np.random.default_rng(seed).choice(x.shape[0], max_points, replace=False)]
    d2 = squared_distances(x, x)[np.triu_indices(x.shape[0], 1)]
    d2 = d2[d2 > 0]
    if d2.size == 0:
        raise DataError("MMDDrift: every reference point is the same, so the median heuristic has no "
                        "distance to use; pass bandwidth=<a positive number>")
    return float(np.sqrt(np.median(d2)))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, bandwidth: float) -> float:
    """Unbiased $\\mathrm{MMD}^2_u = \\frac{1}{n(n-1)}\\sum_{i \\ne j} k(x_i, x_j) + \\frac{1}{m(m-1)}
    \\sum_{i \\ne j} k(y_i, y_j) - \\frac{2}{nm}\\sum_{i,j} k(x_i, y_j)$ with
    $k(a, b) = \\exp(-\\|a - b\\|^2 / 2\\sigma^2)$ (Gretton et al. 2012).

    Args:
        x: (n, d) samples, n >= 2; y: (m, d) samples, m >= 2.
        bandwidth: the kernel's sigma.
    """
    x, y = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    n, m = x.shape[0], y.shape[0]
    g = -0.5 / bandwidth**2
    kxx = np.exp(g * squared_distances(x, x))
    kyy = np.exp(g * squared_distances(y, y))
    kxy = np.exp(g * squared_distances(x, y))
    return float((kxx.sum() - n) / (n * (n - 1)) + (kyy.sum() - m) / (m * (m - 1)) - 2.0 * kxy.mean())


def _mmd2_split(k: np.ndarray, row_sums: np.ndarray, a: np.ndarray, n: int) -> np.ndarray:
    """MMD²_u for every split given by the 0/1 rows of ``a`` (1 = first sample, n ones per row) of the
    pooled kernel matrix ``k`` (unit diagonal): one matrix product for all splits."""
    big_n = k.shape[0]
    m = big_n - n
    total = row_sums.sum()
    s_xx = np.einsum("ij,ij->i", a @ k, a)  # a^T K a, diagonal included
    s_xy = a @ row_sums - s_xx              # a^T K b
    s_yy = total - s_xx - 2.0 * s_xy        # b^T K b
    return (s_xx - n) / (n * (n - 1)) + (s_yy - m) / (m * (m - 1)) - 2.0 * s_xy / (n * m)


class MMDDrift:
    """Kernel two-sample test (Gretton et al. 2012): unbiased $\\mathrm{MMD}^2_u$ with a Gaussian
    kernel, p-value $= (1 + \\#\\{\\pi: \\mathrm{MMD}^2_\\pi \\ge \\mathrm{MMD}^2\\}) / (1 + P)$ over P
    seeded random permutations of the pooled sample; drift when p <= alpha.

    The permutation test has level alpha exactly, whatever the sample sizes. All permutations are
    evaluated at once from the pooled kernel matrix (one (P, N) x (N, N) product, in chunks), which is
    faster than a compiled loop over permutations. Features are used as given: standardise them
    first if their scales differ, or the widest dominates the kernel.

    Args:
        alpha: significance level, in (0, 1).
        n_permutations: number of random permutations P.
        bandwidth: the kernel's sigma; None: the median heuristic on the reference (at fit).
        max_reference: at most this many reference points are kept (a seeded subsample), which
            bounds the cost of a test at O(P (n + m)^2).
        seed: seeds the permutations (the same window gets the same p-value) and the subsample.
    """

    def __init__(self, alpha: float = 0.05, n_permutations: int = 500, bandwidth: float | None = None,
                 max_reference: int = 1000, seed: int = 0):
        self.alpha = alpha
        self.n_permutations = n_permutations
        self.bandwidth = bandwidth
        self.max_reference = max_reference
        self.seed = seed

    def fit(self, reference: Any) -> "MMDDrift":
        """Keep the reference (subsampled to ``max_reference``) and the bandwidth. Returns self."""
        _check_unit("MMDDrift", "alpha", self.alpha)
        _check_positive("MMDDrift", "n_permutations", self.n_permutations, integer=True, minimum=1)
        _check_positive("MMDDrift", "max_reference", self.max_reference, integer=True, minimum=2, strict=False)
        if self.bandwidth is not None:
            _check_positive("MMDDrift", "bandwidth", self.bandwidth)
        ref = _as_samples(reference, "MMDDrift", "reference", min_rows=2)
        if ref.shape[0] > self.max_reference:
            rng = np.random.default_rng(self.seed)
            ref = ref[np.sort(rng.choice(ref.shape[0], self.max_reference, replace=False))]
        self.reference_ = ref
        self.n_features_ = ref.shape[1]
        self.bandwidth_ = float(self.bandwidth) if self.bandwidth is not None else median_bandwidth(ref, seed=self.seed)
        return self

    def test(self, window: Any) -> DriftResult:
        """Test one window ((m, d) or 1-D, m >= 2) against the reference."""
        if not hasattr(self, "reference_"):
            raise _not_fitted("MMDDrift")
        win = _as_samples(window, "MMDDrift", "window", min_rows=2)
        _check_features("MMDDrift", win, self.n_features_)
        n = self.reference_.shape[0]
        pooled = np.vstack([self.reference_, win])
        big_n = pooled.shape[0]
        k = np.exp(-0.5 / self.bandwidth_**2 * squared_distances(pooled, pooled))
        np.fill_diagonal(k, 1.0)
        row_sums = k.sum(axis=1)
        observed = float(_mmd2_split(k, row_sums, (np.arange(big_n) < n).astype(np.float64)[None, :], n)[0])
        rng = np.random.default_rng(self.seed)
        exceed = 0
        chunk = max(1, min(self.n_permutations, 2_000_000 // big_n))
        done = 0
        while done < self.n_permutations:
            p = min(chunk, self.n_permutations - done)
            order = rng.permuted(np.tile(np.arange(big_n), (p, 1)), axis=1)
            a = np.zeros((p, big_n))
            a[np.arange(p)[:, None], order[:, :n]] = 1.0
            exceed += int(np.count_nonzero(_mmd2_split(k, row_sums, a, n) >= observed - 1e-12))
            done += p
        p_value = (1 + exceed) / (1 + self.n_permutations)
        return DriftResult(p_value <= self.alpha, observed, p_value, float(self.alpha), "mmd",
                           {"bandwidth": self.bandwidth_, "n_permutations": self.n_permutations,
                            "n_reference": n, "n_window": win.shape[0]})


# ----------------------------------------------------------------------------------------------
# label shift: black-box shift estimation


def _as_predictions(y: Any, owner: str, what: str, n_classes: int | None = None) -> np.ndarray:
    """Hard labels (1-D ints) from labels or from (n, K) scores (argmax)."""
    a = np.asarray(y)
    if a.ndim == 2:
        if a.shape[0] == 0:
            raise DataError(f"{owner}: the {what} is empty; give at least one prediction")
        a = _as_samples(a, owner, what)
        if n_classes is not None and a.shape[1] != n_classes:
            raise ShapeError(f"{owner}: the {what} has {a.shape[1]} class scores per row, the reference had "
                             f"{n_classes} classes; pass scores of the same classifier")
        return a.argmax(axis=1)
    if a.ndim != 1:
        raise ShapeError(f"{owner}: the {what} must be 1-D labels or (n, classes) scores, got shape {a.shape}")
    if a.size == 0:
        raise DataError(f"{owner}: the {what} is empty; give at least one prediction")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise DataError(f"{owner}: the {what} holds NaN or infinite values; labels must be integers 0..K-1")
        if not np.all(a == np.round(a)):
            raise DataError(f"{owner}: the {what} holds non-integer values; labels must be integers 0..K-1")
    elif a.dtype.kind not in "iub":
        raise DataError(f"{owner}: the {what} must be integer labels 0..K-1, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if (a < 0).any():
        raise DataError(f"{owner}: the {what} holds negative labels (e.g. {int(a[a < 0][0])}); use 0..K-1")
    if n_classes is not None and (a >= n_classes).any():
        raise DataError(f"{owner}: the {what} holds label {int(a.max())}, but the reference has classes "
                        f"0..{n_classes - 1}; refit with n_classes set to cover it")
    return a


class BBSEDrift:
    """Label shift by black-box shift estimation (Lipton et al. 2018).

    Under label shift ($p(x|y)$ fixed, $p(y)$ moving) a fixed classifier's predictions satisfy
    $q = C w$, where $C_{ij} = P_{ref}(\\hat y = i, y = j)$ is its joint confusion matrix on held-out
    labelled reference data, $q_i = P_{win}(\\hat y = i)$ and $w_j = p_{win}(y = j) / p_{ref}(y = j)$.
    ``test`` estimates $\\hat w = C^{-1} \\hat q$ and the window's label distribution
    $\\hat p_{win} = \\hat w \\odot p_{ref}$ (negative entries clipped to 0, renormalised). When $C$ is
    invertible, $p(y)$ changed exactly when $P(\\hat y)$ did, so the decision is the chi-square test of
    homogeneity of the predicted-label counts of the reference and the window (the test Lipton et al.
    and Rabanser et al. 2019 use on hard predictions).

    Args:
        alpha: significance level, in (0, 1).
        n_classes: number of classes K; None: one more than the largest label seen at fit.
    """

    def __init__(self, alpha: float = 0.05, n_classes: int | None = None):
        self.alpha = alpha
        self.n_classes = n_classes

    def fit(self, y_pred: Any, y_true: Any) -> "BBSEDrift":
        """Confusion matrix of the classifier on held-out labelled reference data.

        Args:
            y_pred: the classifier's predictions (labels, or (n, K) scores) on the held-out data.
            y_true: the true labels of the same samples.
        Returns:
            self, with ``confusion_`` (K x K joint, rows predicted, columns true),
            ``label_distribution_`` and ``predicted_counts_``.
        """
        _check_unit("BBSEDrift", "alpha", self.alpha)
        if self.n_classes is not None:
            _check_positive("BBSEDrift", "n_classes", self.n_classes, integer=True, minimum=2, strict=False)
        yp = _as_predictions(y_pred, "BBSEDrift", "reference predictions", self.n_classes)
        yt = _as_predictions(y_true, "BBSEDrift", "reference labels", self.n_classes)
        if yp.size != yt.size:
            raise ShapeError(f"BBSEDrift: {yp.size} predictions but {yt.size} labels; give one label per prediction")
        k = self.n_classes or int(max(yp.max(), yt.max())) + 1
        joint = np.zeros((k, k))
        np.add.at(joint, (yp, yt), 1.0)
        missing = np.flatnonzero(joint.sum(axis=0) == 0)
        if missing.size:
            raise DataError(f"BBSEDrift: class {int(missing[0])} has no sample in the held-out reference, so its "
                            f"weight cannot be estimated; use held-out data with every class, or fewer classes")
        if np.linalg.matrix_rank(joint) < k:
            raise DataError("BBSEDrift: the confusion matrix is singular (the classifier cannot tell some classes "
                            "apart on the held-out data), so w = C^-1 q has no unique solution; merge those classes "
                            "or use a better classifier")
        self.confusion_ = joint / yp.size
        self.label_distribution_ = self.confusion_.sum(axis=0)
        self.predicted_counts_ = joint.sum(axis=1)
        self.condition_number_ = float(np.linalg.cond(self.confusion_))
        self.n_classes_ = k
        return self

    def estimate(self, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
        """(importance weights $\\hat w = C^{-1}\\hat q$ as solved, estimated label distribution of the window)."""
        if not hasattr(self, "confusion_"):
            raise _not_fitted("BBSEDrift", "fit(y_pred, y_true)")
        yp = _as_predictions(y_pred, "BBSEDrift", "window predictions", self.n_classes_)
        q = np.bincount(yp, minlength=self.n_classes_) / yp.size
        w = np.linalg.solve(self.confusion_, q)
        p = np.maximum(w, 0.0) * self.label_distribution_
        return w, p / p.sum() if p.sum() > 0 else self.label_distribution_.copy()

    def test(self, y_pred: Any) -> DriftResult:
        """Test the predictions on an unlabelled window (labels, or (m, K) scores)."""
        w, p_win = self.estimate(y_pred)
        yp = _as_predictions(y_pred, "BBSEDrift", "window predictions", self.n_classes_)
        counts = np.bincount(yp, minlength=self.n_classes_)
        stat, dof, p = chi2_homogeneity(np.vstack([self.predicted_counts_, counts]))
        details = {"weights": w, "target_label_distribution": p_win,
                   "reference_label_distribution": self.label_distribution_,
                   "reference_predicted_distribution": self.predicted_counts_ / self.predicted_counts_.sum(),
                   "window_predicted_distribution": counts / counts.sum(), "dof": dof,
                   "condition_number": self.condition_number_}
        return DriftResult(p <= self.alpha, stat, p, float(self.alpha), "bbse", details)


# ----------------------------------------------------------------------------------------------
# streaming detectors


def _as_stream(stream: Any, owner: str) -> np.ndarray:
    try:
        a = np.asarray(stream, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{owner}: the stream must be numbers (e.g. 1 for an error, 0 for a correct "
                        f"prediction), got {type(stream).__name__}") from None
    if a.ndim != 1:
        raise ShapeError(f"{owner}: the stream must be 1-D, got shape {a.shape}; test one quantity at a time")
    if a.size == 0:
        raise DataError(f"{owner}: the stream is empty; give at least one value")
    bad = ~np.isfinite(a)
    if bad.any():
        raise DataError(f"{owner}: the stream holds {int(bad.sum())} NaN or infinite value(s) (first at index "
                        f"{int(np.flatnonzero(bad)[0])}); drop them before testing")
    return a


def _as_value(x: Any, owner: str) -> float:
    try:
        x = float(x)
    except (TypeError, ValueError):
        raise DataError(f"{owner}: update() takes one number, got {type(x).__name__}") from None
    if not math.isfinite(x):
        raise DataError(f"{owner}: update() got {x}; drop NaN and infinite values before the detector")
    return x


class _StreamDetector:
    """``update`` one element at a time; ``test`` a whole stream from a fresh state."""

    name = "stream"

    def reset(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def update(self, x: float) -> bool:  # pragma: no cover
        raise NotImplementedError

    def _statistic(self) -> float:  # pragma: no cover
        raise NotImplementedError

    def test(self, stream: Iterable[float]) -> DriftResult:
        """Reset, run the whole stream, and report every detection.

        Returns:
            ``drift`` if any element triggered; ``statistic`` the largest value the detector's
            statistic reached; ``details["detections"]`` the indices (0-based, in the stream) where
            a change was detected.
        """
        a = _as_stream(stream, type(self).__name__)
        self.reset()
        hits = []
        peak = 0.0
        for i, x in enumerate(a.tolist()):
            if self._update(x):
                hits.append(i)
            peak = max(peak, self._statistic())
        return DriftResult(bool(hits), peak, None, self._threshold(), self.name,
                           {"detections": hits, "n": int(a.size), **self._details()})

    def _threshold(self) -> float:  # pragma: no cover
        raise NotImplementedError

    def _details(self) -> dict[str, Any]:
        return {}


class PageHinkley(_StreamDetector):
    """Page-Hinkley test for a rise (or fall) of the mean of a stream.

    With $\\bar x_t$ the running mean since the last detection,
    $m_t = \\alpha\\, m_{t-1} + (x_t - \\bar x_t - \\delta)$ and $M_t = \\min_{s \\le t} m_s$; a rise is
    detected when $m_t - M_t > \\lambda$ (``threshold``). A fall uses $x_t - \\bar x_t + \\delta$ and the
    running maximum. After a detection the statistics restart (Page 1954; the fading factor alpha
    as in Gama et al. 2013).

    Args:
        delta: magnitude of change tolerated (>= 0); roughly half the jump you want to catch.
        threshold: lambda; larger means fewer false alarms and a longer delay.
        alpha: fading factor of the cumulative sum, in (0, 1]; 1 is the plain test.
        min_instances: no detection before this many elements since the last restart.
        direction: ``"up"`` (error rate rising), ``"down"`` or ``"both"``.
    """

    name = "page-hinkley"

    def __init__(self, delta: float = 0.005, threshold: float = 50.0, alpha: float = 1 - 1e-4,
                 min_instances: int = 30, direction: str = "up"):
        self.delta = _check_positive("PageHinkley", "delta", delta, strict=False)
        self.threshold = _check_positive("PageHinkley", "threshold", threshold)
        self.alpha = _check_unit("PageHinkley", "alpha", alpha, closed_right=True)
        self.min_instances = _check_positive("PageHinkley", "min_instances", min_instances, integer=True,
                                             minimum=1, strict=False)
        if direction not in ("up", "down", "both"):
            raise AttributeValueError(f"PageHinkley: direction={direction!r} is not one of up, down, both")
        self.direction = direction
        self.reset()

    def reset(self) -> None:
        """Forget everything: a fresh detector."""
        self.n_seen_ = 0
        self.drift_detected = False
        self.statistic_ = 0.0
        self._restart()

    def _restart(self) -> None:
        self._n = 0
        self._mean = 0.0
        self._sum_up = 0.0
        self._min_up = 0.0
        self._sum_down = 0.0
        self._max_down = 0.0

    def _statistic(self) -> float:
        return self.statistic_

    def _current(self) -> float:
        up = self._sum_up - self._min_up if self.direction != "down" else 0.0
        down = self._max_down - self._sum_down if self.direction != "up" else 0.0
        return max(up, down)

    def _threshold(self) -> float:
        return self.threshold

    def _update(self, x: float) -> bool:
        self.n_seen_ += 1
        self._n += 1
        self._mean += (x - self._mean) / self._n
        self._sum_up = self.alpha * self._sum_up + (x - self._mean - self.delta)
        self._min_up = min(self._min_up, self._sum_up)
        self._sum_down = self.alpha * self._sum_down + (x - self._mean + self.delta)
        self._max_down = max(self._max_down, self._sum_down)
        self.statistic_ = self._current()
        self.drift_detected = self._n >= self.min_instances and self.statistic_ > self.threshold
        if self.drift_detected:
            self._restart()
        return self.drift_detected

    def update(self, x: float) -> bool:
        """Add one element; True when a change is detected at this element."""
        return self._update(_as_value(x, "PageHinkley"))


class ADWIN(_StreamDetector):
    """ADWIN, the adaptive sliding window (Bifet and Gavaldà 2007): the window W keeps every element
    since the last change; whenever it can be split into an older part $W_0$ and a newer part $W_1$
    whose means differ by more than $\\varepsilon_{cut}$, the oldest elements are dropped, and that is
    a detection.

    What is implemented (ADWIN2 of the paper): W is stored as an exponential histogram, buckets of
    $2^i$ elements holding their sum and variance, at most ``max_buckets`` per size, the two oldest of
    a size merged when there are more; splits are checked at bucket boundaries (with both parts at
    least ``min_window`` long), every ``clock`` elements. With $n = |W|$, $\\delta' = \\delta / n$ and
    $m = 1 / (1/n_0 + 1/n_1)$:

    * ``bound="bernstein"`` (default, the paper's practical form):
      $\\varepsilon_{cut} = \\sqrt{(2/m)\\,\\sigma_W^2 \\ln(2/\\delta')} + \\frac{2}{3m}\\ln(2/\\delta')$;
    * ``bound="hoeffding"`` (its Theorem 3.1, values in [0, 1]): $\\varepsilon_{cut} = \\sqrt{\\ln(4/\\delta') / (2m)}$.

    Args:
        delta: confidence, in (0, 1): the false-alarm probability bound of a check.
        max_buckets: buckets kept per size (the paper's M); memory and time O(M log(n / M)).
        min_window: shortest sub-window a split may leave.
        clock: check for a cut every this many elements (1: after every element).
        bound: ``"bernstein"`` or ``"hoeffding"``.
    """

    name = "adwin"

    def __init__(self, delta: float = 0.002, max_buckets: int = 5, min_window: int = 5, clock: int = 32,
                 bound: str = "bernstein"):
        self.delta = _check_unit("ADWIN", "delta", delta)
        self.max_buckets = _check_positive("ADWIN", "max_buckets", max_buckets, integer=True, minimum=2,
                                           strict=False)
        self.min_window = _check_positive("ADWIN", "min_window", min_window, integer=True, minimum=1,
                                          strict=False)
        self.clock = _check_positive("ADWIN", "clock", clock, integer=True, minimum=1, strict=False)
        if bound not in ("bernstein", "hoeffding"):
            raise AttributeValueError(f"ADWIN: bound={bound!r} is not one of bernstein, hoeffding")
        self.bound = bound
        self.reset()

    def reset(self) -> None:
        """Forget everything: an empty window."""
        # rows[i]: buckets of 2**i elements, oldest first, each [sum, M2 (sum of squared deviations)]
        self._rows: list[list[list[float]]] = [[]]
        self.width_ = 0
        self._total = 0.0
        self._m2 = 0.0
        self.n_seen_ = 0
        self.n_detections_ = 0
        self.drift_detected = False
        self._ratio = 0.0

    @property
    def mean_(self) -> float:
        """Mean of the current window."""
        return self._total / self.width_ if self.width_ else 0.0

    @property
    def variance_(self) -> float:
        """Variance of the current window."""
        return self._m2 / self.width_ if self.width_ else 0.0

    def _statistic(self) -> float:
        return self._ratio

    def _threshold(self) -> float:
        return 1.0

    def _details(self) -> dict[str, Any]:
        return {"final_width": self.width_, "final_mean": self.mean_}

    def _insert(self, x: float) -> None:
        if self.width_:
            mean = self._total / self.width_
            self._m2 += self.width_ / (self.width_ + 1) * (x - mean) ** 2
        self.width_ += 1
        self._total += x
        self._rows[0].append([x, 0.0])
        i = 0
        while len(self._rows[i]) > self.max_buckets:  # merge the two oldest buckets of this size
            (s0, v0), (s1, v1) = self._rows[i][0], self._rows[i][1]
            size = 2**i
            merged = [s0 + s1, v0 + v1 + size / 2 * (s0 / size - s1 / size) ** 2]
            del self._rows[i][:2]
            if i + 1 == len(self._rows):
                self._rows.append([])
            self._rows[i + 1].append(merged)  # newer than every bucket already in the next row
            i += 1

    def _drop_oldest(self) -> None:
        i = len(self._rows) - 1
        while not self._rows[i]:
            i -= 1
        s, v = self._rows[i].pop(0)
        size = 2**i
        rest = self.width_ - size
        if rest:
            mean_rest = (self._total - s) / rest
            self._m2 = max(0.0, self._m2 - v - size * rest / self.width_ * (s / size - mean_rest) ** 2)
        else:
            self._m2 = 0.0
        self.width_ = rest
        self._total -= s
        while len(self._rows) > 1 and not self._rows[-1]:
            self._rows.pop()

    def _cut_epsilon(self, n0: int, n1: int) -> float:
        m = 1.0 / (1.0 / n0 + 1.0 / n1)
        log_term = math.log(2.0 * self.width_ / self.delta)  # ln(2 / delta'), delta' = delta / n
        if self.bound == "hoeffding":
            return math.sqrt((log_term + math.log(2.0)) / (2.0 * m))
        return math.sqrt(2.0 / m * self.variance_ * log_term) + 2.0 / (3.0 * m) * log_term

    def _find_cut(self) -> bool:
        """True if some split of the window has means further apart than its cut (ratio kept)."""
        if self.width_ < 2 * self.min_window:
            return False
        n0, s0 = 0, 0.0
        best = 0.0
        for i in range(len(self._rows) - 1, -1, -1):
            size = 2**i
            for s, _ in self._rows[i]:
                n0 += size
                s0 += s
                n1 = self.width_ - n0
                if n1 < self.min_window:
                    self._ratio = max(self._ratio, best)
                    return False
                if n0 < self.min_window:
                    continue
                gap = abs(s0 / n0 - (self._total - s0) / n1)
                eps = self._cut_epsilon(n0, n1)
                best = max(best, gap / eps if eps > 0 else (math.inf if gap > 0 else 0.0))
                if gap > eps:
                    self._ratio = max(self._ratio, best)
                    return True
        self._ratio = max(self._ratio, best)
        return False

    def _update(self, x: float) -> bool:
        self.n_seen_ += 1
        self._insert(x)
        self._ratio = 0.0
        self.drift_detected = False
        if self.n_seen_ % self.clock == 0:
            while self._find_cut():
                self._drop_oldest()
                self.drift_detected = True
        if self.drift_detected:
            self.n_detections_ += 1
        return self.drift_detected

    def update(self, x: float) -> bool:
        """Add one element; True when the window was cut (a change detected) at this element."""
        x = _as_value(x, "ADWIN")
        if self.bound == "hoeffding" and not 0.0 <= x <= 1.0:
            raise DataError(f"ADWIN: update() got {x}, but bound='hoeffding' assumes values in [0, 1]; "
                            f"rescale the stream or use bound='bernstein'")
        return self._update(x)

    def test(self, stream: Iterable[float]) -> DriftResult:
        """Reset, run the whole stream, report every detection (see :meth:`_StreamDetector.test`)."""
        if self.bound == "hoeffding":
            a = _as_stream(stream, "ADWIN")
            if a.min() < 0 or a.max() > 1:
                raise DataError("ADWIN: bound='hoeffding' assumes values in [0, 1]; rescale the stream or use "
                                "bound='bernstein'")
        return super().test(stream)


__all__ = ["DriftResult", "KSDrift", "PSIDrift", "ChiSquareDrift", "MMDDrift", "BBSEDrift", "PageHinkley",
           "ADWIN", "adjust_p_values", "ks_statistic", "ks_p_value", "chi2_homogeneity", "mmd2_unbiased",
           "median_bandwidth", "squared_distances"]
