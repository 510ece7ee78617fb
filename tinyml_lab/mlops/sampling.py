"""Sampling a data set: simple random, stratified, weighted, reservoir (streaming) and importance sampling.

Every function takes a ``seed``; the same seed gives the same sample. Functions that pick rows return
*indices* into the data (sorted, so ``x[idx]`` keeps the original order), which works for arrays,
data frames and lists alike.

* :func:`simple_random_sample`: ``k`` of ``n`` rows, each subset equally likely.
* :func:`stratified_sample` / :func:`stratified_split`: the class proportions of the sample equal those of
  the data up to the largest-remainder rounding of :func:`allocate_largest_remainder`.
* :func:`weighted_sample`: rows drawn with probability proportional to a weight, with replacement
  (multinomial) or without (Efraimidis-Spirakis keys).
* :class:`Reservoir` / :func:`reservoir_sample`: a uniform sample of ``k`` items of a stream of unknown
  length in one pass and O(k) memory, by Algorithm R or Algorithm L.
* :func:`importance_sampling`: an expectation under a target density from samples of a proposal.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AttributeValueError, DataError, ShapeError
from ._validate import as_finite, choice, fraction, positive_int

__all__ = [
    "simple_random_sample", "allocate_largest_remainder", "stratified_sample", "stratified_split",
    "weighted_sample", "Reservoir", "reservoir_sample", "ImportanceEstimate", "importance_sampling",
    "effective_sample_size",
]


def _sample_size(n: int, k: int | None, frac: float | None, what: str = "sample") -> int:
    """``k`` itself, or ``round(frac * n)`` (halves up); checked to be in 1..n."""
    if (k is None) == (frac is None):
        raise AttributeValueError(f"give exactly one of k (a {what} size) or fraction (a share of the rows)")
    if frac is not None:
        frac = fraction(frac, "fraction", high_open=False)
        k = int(math.floor(frac * n + 0.5))
        if k < 1:
            raise AttributeValueError(f"a fraction of {frac} of {n} rows rounds to an empty {what}; use a larger fraction")
    k = positive_int(k, "k")
    if k > n:
        raise AttributeValueError(f"cannot draw k={k} rows without replacement from {n}; use k <= {n}")
    return k


def simple_random_sample(n: int, k: int, seed: int = 0, replace: bool = False) -> np.ndarray:
    """``k`` indices of ``range(n)``, every ``k``-subset equally likely: $P(i \\in S) = k/n$.

    Args:
        n: population size.
        k: sample size (``k <= n`` unless ``replace``).
        seed: seeds the draw.
        replace: draw with replacement (indices may repeat).

    Returns:
        int64 indices; sorted when drawn without replacement.
    """
    n = positive_int(n, "n")
    k = positive_int(k, "k")
    rng = np.random.default_rng(seed)
    if replace:
        return rng.integers(0, n, size=k).astype(np.int64)
    if k > n:
        raise AttributeValueError(f"cannot draw k={k} rows without replacement from n={n}; use k <= n or replace=True")
    return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)


def allocate_largest_remainder(counts: Any, k: int) -> np.ndarray:
    """Split ``k`` draws between groups in proportion to ``counts`` (Hamilton's largest-remainder rule).

    Quota $q_c = k\\,n_c/n$; each group first gets $\\lfloor q_c \\rfloor$, then the
    $k - \\sum_c \\lfloor q_c \\rfloor$ draws left go one each to the groups with the largest remainders
    $q_c - \\lfloor q_c \\rfloor$ (ties to the lower group index). Hence
    $\\lfloor q_c \\rfloor \\le a_c \\le \\lceil q_c \\rceil$ and $\\sum_c a_c = k$; no group gets more
    than it has.

    Args:
        counts: non-negative group sizes $n_c$.
        k: draws to allocate, ``0 <= k <= sum(counts)``.

    Returns:
        int64 allocation $a_c$, same length as ``counts``.
    """
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0:
        raise ShapeError(f"counts must be a non-empty 1-D array, got shape {c.shape}")
    if c.dtype.kind not in "iu" or (c < 0).any():
        raise DataError("counts must be non-negative integers")
    c = c.astype(np.int64)
    n = int(c.sum())
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= n:
        raise AttributeValueError(f"k must be an integer in 0..{n} (the total count), got {k!r}")
    # exact integer arithmetic: floor(k * n_c / n) and remainder (k * n_c) mod n
    num = int(k) * c
    base = num // n if n else np.zeros_like(c)
    rem = num - base * n if n else np.zeros_like(c)
    left = int(k) - int(base.sum())
    order = np.lexsort((np.arange(c.size), -rem))  # largest remainder first, ties to lower index
    base[order[:left]] += 1
    return base


def stratified_sample(labels: Any, k: int | None = None, fraction: float | None = None, seed: int = 0) -> np.ndarray:
    """Indices of a sample whose class counts follow the data's class proportions.

    Class $c$ with $n_c$ of the $n$ rows gets $a_c$ rows by :func:`allocate_largest_remainder`
    (so $|a_c - k\\,n_c/n| < 1$), drawn uniformly without replacement within the class.

    Args:
        labels: 1-D class labels (any hashable values: ints or strings).
        k: sample size, or
        fraction: share of the rows; ``k = round(fraction * n)``, halves rounded up.
        seed: seeds the draws within each class.

    Returns:
        Sorted int64 indices, ``k`` of them.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ShapeError(f"labels must be 1-D, got shape {y.shape}")
    if y.size == 0:
        raise DataError("labels is empty; there is nothing to sample")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError("labels hold NaN or infinite values; drop those rows first")
    k = _sample_size(y.size, k, fraction)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    alloc = allocate_largest_remainder(counts, k)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(classes.size):
        if alloc[c]:
            members = np.flatnonzero(inverse == c)
            chosen.append(rng.choice(members, size=int(alloc[c]), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def stratified_split(labels: Any, test_fraction: float = 0.25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices with the same class proportions (the test set is a :func:`stratified_sample`).

    Args:
        labels: 1-D class labels.
        test_fraction: share of rows in the test set, in (0, 1).
        seed: seeds the split.

    Returns:
        ``(train_idx, test_idx)``, sorted, disjoint, together ``range(n)``.
    """
    test_fraction = fraction(test_fraction, "test_fraction")
    test = stratified_sample(labels, fraction=test_fraction, seed=seed)
    n = len(np.asarray(labels))
    if test.size == n:
        raise AttributeValueError(f"test_fraction={test_fraction} leaves no training rows out of {n}")
    mask = np.ones(n, dtype=bool)
    mask[test] = False
    return np.flatnonzero(mask).astype(np.int64), test


def weighted_sample(weights: Any, k: int, seed: int = 0, replace: bool = True) -> np.ndarray:
    """``k`` indices drawn with probability proportional to ``weights``.

    With replacement each draw picks $i$ with $P(i) = w_i / \\sum_j w_j$. Without replacement
    (Efraimidis-Spirakis) row $i$ gets the key $u_i^{1/w_i}$, $u_i \\sim U(0,1)$, and the ``k``
    largest keys win: this is successive weighted draws, each from the rows not yet drawn.

    Args:
        weights: non-negative, finite, not all zero; rows of weight 0 are never drawn.
        k: number of draws (without replacement, at most the number of positive weights).
        seed: seeds the draws.
        replace: draw with (default) or without replacement.

    Returns:
        int64 indices (in draw order with replacement, sorted without).
    """
    w = as_finite(weights, "weights", ndim=1)
    if (w < 0).any():
        raise DataError(f"weights must be non-negative; got {int((w < 0).sum())} negative value(s), e.g. {w[w < 0][0]:g}")
    total = w.sum()
    if total <= 0:
        raise DataError("weights are all zero; at least one row needs a positive weight")
    k = positive_int(k, "k")
    rng = np.random.default_rng(seed)
    if replace:
        return rng.choice(w.size, size=k, replace=True, p=w / total).astype(np.int64)
    positive = np.flatnonzero(w > 0)
    if k > positive.size:
        raise AttributeValueError(f"cannot draw k={k} rows without replacement: only {positive.size} have a positive weight")
    u = rng.random(positive.size)
    keys = np.log(np.maximum(u, np.finfo(np.float64).tiny)) / w[positive]  # log(u^(1/w)), same order
    top = np.argpartition(-keys, k - 1)[:k]
    return np.sort(positive[top]).astype(np.int64)


class Reservoir:
    """A uniform random sample of ``k`` items of a stream, kept in one pass with O(k) memory.

    After ``n >= k`` items every item is in the reservoir with probability $k/n$ and every
    ``k``-subset is equally likely.

    * Algorithm R (Vitter 1985): item $i$ (0-based, $i \\ge k$) replaces a uniform slot with
      probability $k/(i+1)$; one random number per item.
    * Algorithm L (Li 1994): the gap to the next replacement is drawn directly,
      $\\lfloor \\log u / \\log(1-W) \\rfloor$ with $W \\leftarrow W\\,u^{1/k}$; about
      $k\\,(1 + \\log(n/k))$ random numbers in all, so skipped items cost only a counter step.

    Args:
        k: reservoir size.
        seed: seeds the choices.
        method: ``"R"`` or ``"L"``.

    Attributes:
        n_seen: items offered so far.
        n_random: random numbers drawn so far (Algorithm L draws far fewer).
    """

    def __init__(self, k: int, seed: int = 0, method: str = "R"):
        self.k = positive_int(k, "k")
        self.seed = seed
        self.method = choice(method, "method", ("R", "L"))
        self._rng = np.random.default_rng(seed)
        self._items: list[Any] = []
        self.n_seen = 0
        self.n_random = 0
        self._w = 0.0
        self._next = -1  # Algorithm L: index of the next item that enters the reservoir

    def _uniform(self) -> float:
        self.n_random += 1
        return max(self._rng.random(), 5e-324)  # in (0, 1): log is finite

    def _slot(self) -> int:
        self.n_random += 1
        return int(self._rng.integers(0, self.k))

    def _advance_l(self) -> None:
        self._next += int(math.floor(math.log(self._uniform()) / math.log1p(-self._w))) + 1

    def add(self, item: Any) -> None:
        """Offer one item of the stream."""
        i = self.n_seen
        self.n_seen += 1
        if i < self.k:
            self._items.append(item)
            if self.method == "L" and i == self.k - 1:
                self._w = math.exp(math.log(self._uniform()) / self.k)
                self._next = i
                self._advance_l()
            return
        if self.method == "R":
            self.n_random += 1
            j = int(self._rng.random() * (i + 1))  # uniform in 0..i
            if j < self.k:
                self._items[j] = item
        elif i == self._next:
            self._items[self._slot()] = item
            self._w *= math.exp(math.log(self._uniform()) / self.k)
            self._advance_l()

    def extend(self, items: Iterable[Any]) -> Reservoir:
        """Offer every item of ``items`` in order (Algorithm L steps over skipped items unseen); returns self."""
        it = iter(items)
        if self.method == "R":
            for item in it:
                self.add(item)
            return self
        while True:
            if self.n_seen >= self.k:  # jump straight to the next replacement
                skip = self._next - self.n_seen
                if skip > 0:
                    before = self.n_seen
                    self.n_seen += sum(1 for _ in itertools.islice(it, skip))
                    if self.n_seen - before < skip:
                        return self
            try:
                item = next(it)
            except StopIteration:
                return self
            self.add(item)

    @property
    def items(self) -> list[Any]:
        """The current sample (all items seen so far while fewer than ``k`` have arrived)."""
        return list(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Reservoir(k={self.k}, method={self.method!r}, n_seen={self.n_seen}, n_random={self.n_random})"


def reservoir_sample(stream: Iterable[Any], k: int, seed: int = 0, method: str = "R") -> list[Any]:
    """A uniform sample of ``k`` items of ``stream`` in one pass (see :class:`Reservoir`).

    Args:
        stream: any iterable, read once.
        k: sample size.
        seed: seeds the choices.
        method: ``"R"`` or ``"L"``.

    Returns:
        The ``k`` sampled items, in reservoir-slot order.

    Raises:
        DataError: the stream held fewer than ``k`` items.
    """
    r = Reservoir(k, seed=seed, method=method).extend(stream)
    if r.n_seen < r.k:
        raise DataError(f"the stream held only {r.n_seen} item(s), fewer than k={r.k}; lower k or use all items")
    return r.items


def effective_sample_size(weights: Any) -> float:
    """Kish's effective sample size $(\\sum_i w_i)^2 / \\sum_i w_i^2$: ``n`` for equal weights, 1 when one dominates."""
    w = as_finite(weights, "weights", ndim=1)
    if (w < 0).any():
        raise DataError("weights must be non-negative")
    s2 = float(np.sum(w * w))
    if s2 == 0:
        raise DataError("weights are all zero")
    return float(w.sum()) ** 2 / s2


@dataclass
class ImportanceEstimate:
    """An importance-sampling estimate of $E_p[f(X)]$.

    Attributes:
        value: the estimate.
        ess: effective sample size of the weights (see :func:`effective_sample_size`).
        weights: the self-normalised weights $\\tilde w_i = w_i / \\sum_j w_j$ (sum to 1).
        n: number of samples.
        self_normalized: which estimator gave ``value``.
    """

    value: float
    ess: float
    weights: np.ndarray
    n: int
    self_normalized: bool

    def __repr__(self) -> str:
        kind = "self-normalised" if self.self_normalized else "plain"
        return f"ImportanceEstimate({kind}: value={self.value:.6g}, ess={self.ess:.1f} of n={self.n})"


def _per_sample(v: Any, samples: np.ndarray, what: str) -> np.ndarray:
    out = v(samples) if callable(v) else v
    a = np.asarray(out, dtype=np.float64)
    if a.shape != (samples.shape[0],):
        raise ShapeError(f"{what} must give one value per sample, shape ({samples.shape[0]},); got {a.shape}")
    is_log = what.startswith("log")  # a log-density may be -inf (density 0); NaN is never allowed
    if np.isnan(a).any() or (not is_log and not np.isfinite(a).all()):
        raise DataError(f"{what} holds NaN or infinite values")
    return a


def importance_sampling(samples: Any, f: Callable[[np.ndarray], Any] | Any,
                        log_target: Callable[[np.ndarray], Any] | Any,
                        log_proposal: Callable[[np.ndarray], Any] | Any,
                        self_normalized: bool = True) -> ImportanceEstimate:
    """Estimate $E_p[f(X)]$ from samples $x_i \\sim q$ with weights $w_i = p(x_i)/q(x_i)$.

    Plain: $\\hat\\mu = \\frac1n\\sum_i w_i f(x_i)$, unbiased when $p$ and $q$ are normalised densities.
    Self-normalised: $\\hat\\mu = \\sum_i w_i f(x_i) / \\sum_i w_i$, slightly biased but consistent, and
    correct when $p$ or $q$ is known only up to a constant. Both need $q > 0$ wherever $p f \\ne 0$.

    Args:
        samples: draws from the proposal, shape ``(n,)`` or ``(n, d)``.
        f: function of the samples (vectorised), or its values per sample.
        log_target: $\\log p$ of the samples (function or values; ``-inf`` allowed).
        log_proposal: $\\log q$ of the samples (function or values; must be finite).
        self_normalized: which estimator to return.

    Returns:
        An :class:`ImportanceEstimate` with the value, the effective sample size and the weights.
    """
    x = as_finite(samples, "samples", ndim=(1, 2))
    fx = _per_sample(f, x, "f")
    lp = _per_sample(log_target, x, "log_target")
    lq = _per_sample(log_proposal, x, "log_proposal")
    if not np.isfinite(lq).all():
        raise DataError("log_proposal is -inf at some samples: they could not have come from the proposal")
    if np.isposinf(lp).any():
        raise DataError("log_target is +inf at some samples")
    logw = lp - lq
    if not np.isfinite(logw).any():
        raise DataError("every sample has target density 0; the proposal does not cover the target")
    m = logw.max()
    rel = np.exp(logw - m)  # weights up to the factor exp(m), stable
    norm = rel / rel.sum()
    ess = float(rel.sum() ** 2 / np.sum(rel * rel))
    if self_normalized:
        value = float(np.sum(norm * fx))
    else:
        w = np.exp(logw)
        if not np.isfinite(w).all():
            raise DataError("importance weights overflow; use self_normalized=True")
        value = float(np.mean(w * fx))
    return ImportanceEstimate(value=value, ess=ess, weights=norm, n=x.shape[0], self_normalized=self_normalized)
