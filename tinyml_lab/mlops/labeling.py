"""Weak supervision: labeling functions, the label matrix, and two ways to turn votes into labels.

A labeling function (LF) looks at one example and returns a class ``0..K-1`` or :data:`ABSTAIN`.
Applying ``m`` LFs to ``n`` examples gives the label matrix ``L`` of shape ``(n, m)``.

* :func:`lf_summary`: per-LF coverage, overlap, conflict (and accuracy when gold labels are known).
* :class:`MajorityVoteLabelModel`: each row's most frequent vote.
* :class:`LabelModel`: a Dawid-Skene model fitted by EM; it learns how often each LF is right from
  how the LFs agree, without gold labels, and weighs each vote by that.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import AttributeValueError, DataError, ShapeError
from ._validate import as_labels, choice, positive_int, same_length

__all__ = [
    "ABSTAIN", "LabelingFunction", "labeling_function", "apply_lfs", "LFSummary", "lf_summary",
    "MajorityVoteLabelModel", "LabelModel", "suggest_groups",
]

ABSTAIN = -1
"""The vote of a labeling function that has no opinion on an example."""


def _check_vote(v: Any, name: str) -> int:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Integral, np.integer)) or v < ABSTAIN:
        raise DataError(f"labeling function {name!r} returned {v!r}; it must return a class 0..K-1 or ABSTAIN (-1)")
    return int(v)


class LabelingFunction:
    """A named rule that votes for a class or abstains: $\\lambda(x) \\in \\{-1, 0, \\dots, K-1\\}$.

    Args:
        name: a short name shown in summaries.
        func: ``func(example) -> int`` (one example), or with ``vectorized=True``
            ``func(examples) -> array`` (all examples at once).
        vectorized: whether ``func`` takes the whole batch.
    """

    def __init__(self, name: str, func: Callable[[Any], Any], vectorized: bool = False):
        if not isinstance(name, str) or not name:
            raise AttributeValueError(f"a labeling function needs a non-empty name, got {name!r}")
        if not callable(func):
            raise AttributeValueError(f"labeling function {name!r}: func must be callable, got {type(func).__name__}")
        self.name = name
        self.func = func
        self.vectorized = bool(vectorized)

    def __call__(self, example: Any) -> int:
        if self.vectorized:
            return _check_vote(np.asarray(self.func([example])).ravel()[0].item(), self.name)
        return _check_vote(self.func(example), self.name)

    def apply(self, examples: Sequence[Any]) -> np.ndarray:
        """Votes on every example, int64 of shape ``(n,)``."""
        if self.vectorized:
            out = np.asarray(self.func(examples))
            if out.shape != (len(examples),):
                raise ShapeError(f"labeling function {self.name!r} returned shape {out.shape} for "
                                 f"{len(examples)} examples; it must return one vote per example")
            if out.dtype.kind not in "iu" or (out < ABSTAIN).any():
                raise DataError(f"labeling function {self.name!r} must return integer votes >= -1 (ABSTAIN)")
            return out.astype(np.int64)
        return np.array([_check_vote(self.func(x), self.name) for x in examples], dtype=np.int64)

    def __repr__(self) -> str:
        return f"LabelingFunction({self.name!r})"


def labeling_function(name: str | None = None, vectorized: bool = False) -> Callable[[Callable], LabelingFunction]:
    """Decorator: ``@labeling_function()`` turns ``def lf_short(x): ...`` into a :class:`LabelingFunction`."""
    def wrap(func: Callable) -> LabelingFunction:
        return LabelingFunction(name or func.__name__, func, vectorized=vectorized)
    return wrap


def apply_lfs(lfs: Sequence[LabelingFunction], examples: Sequence[Any]) -> np.ndarray:
    """The label matrix $L_{ij} = \\lambda_j(x_i)$, int64 of shape ``(n, m)``."""
    if len(lfs) == 0:
        raise AttributeValueError("give at least one labeling function")
    if len(examples) == 0:
        raise DataError("no examples to label")
    names = [lf.name for lf in lfs]
    if len(set(names)) != len(names):
        raise AttributeValueError(f"labeling function names must be unique, got {names}")
    return np.stack([lf.apply(examples) for lf in lfs], axis=1)


def _label_matrix(L: Any, n_classes: int | None = None) -> np.ndarray:
    a = np.asarray(L)
    if a.ndim != 2:
        raise ShapeError(f"the label matrix must be 2-D (examples x labeling functions), got shape {a.shape}")
    if a.size == 0:
        raise DataError(f"the label matrix is empty (shape {a.shape})")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or not np.all(a == np.round(a)):
            raise DataError("the label matrix must hold integer votes (-1 for ABSTAIN); it holds NaN or fractions")
    elif a.dtype.kind not in "iu":
        raise DataError(f"the label matrix must hold integer votes, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if (a < ABSTAIN).any():
        raise DataError(f"the label matrix holds votes below -1 (e.g. {int(a[a < ABSTAIN][0])}); use -1 for ABSTAIN")
    if n_classes is not None and (a >= n_classes).any():
        raise DataError(f"the label matrix holds class {int(a.max())} but n_classes={n_classes}")
    return a


@dataclass
class LFSummary:
    """Per-LF statistics of a label matrix (fractions of all ``n`` examples).

    Attributes:
        names: LF names.
        coverage: share of examples the LF labels.
        overlap: share it labels that at least one other LF also labels.
        conflict: share it labels where another LF votes a different class.
        accuracy: share of its votes equal to the gold label (None without gold labels).
        label_coverage: share of examples at least one LF labels.
        polarity: the classes each LF ever votes for.
    """

    names: list[str]
    coverage: np.ndarray
    overlap: np.ndarray
    conflict: np.ndarray
    accuracy: np.ndarray | None
    label_coverage: float
    polarity: list[list[int]] = field(default_factory=list)

    def format(self) -> str:
        """An aligned table, one row per LF."""
        from ..report import format_table

        header = ["LF", "classes", "coverage", "overlap", "conflict"] + (["accuracy"] if self.accuracy is not None else [])
        rows = []
        for j, name in enumerate(self.names):
            row = [name, ",".join(map(str, self.polarity[j])) or "-", f"{self.coverage[j]:.3f}",
                   f"{self.overlap[j]:.3f}", f"{self.conflict[j]:.3f}"]
            if self.accuracy is not None:
                row.append("-" if np.isnan(self.accuracy[j]) else f"{self.accuracy[j]:.3f}")
            rows.append(row)
        return format_table(header, rows, align="ll" + "r" * (len(header) - 2))

    def __str__(self) -> str:
        return self.format() + f"\nlabel coverage (any LF votes): {self.label_coverage:.3f}"


def lf_summary(L: Any, y: Any | None = None, names: Sequence[str] | None = None) -> LFSummary:
    """Coverage $\\frac1n\\sum_i[L_{ij}\\ne-1]$, overlap and conflict of each LF, and its accuracy if ``y`` is given.

    Args:
        L: label matrix ``(n, m)``.
        y: optional gold labels ``(n,)``.
        names: LF names (default ``lf0, lf1, ...``).

    Returns:
        An :class:`LFSummary`.
    """
    L = _label_matrix(L)
    n, m = L.shape
    if names is None:
        names = [f"lf{j}" for j in range(m)]
    if len(names) != m:
        raise ShapeError(f"{len(names)} names for {m} labeling functions")
    voted = L != ABSTAIN
    n_voting = voted.sum(axis=1)
    coverage = voted.mean(axis=0)
    overlap = (voted & (n_voting[:, None] > 1)).mean(axis=0)
    conflict = np.zeros(m)
    for j in range(m):
        others = np.delete(L, j, axis=1)
        disagree = ((others != ABSTAIN) & (others != L[:, [j]])).any(axis=1)
        conflict[j] = (voted[:, j] & disagree).mean()
    accuracy = None
    if y is not None:
        y = as_labels(y, "y")
        same_length(("L", L), ("y", y))
        accuracy = np.array([np.mean(L[voted[:, j], j] == y[voted[:, j]]) if voted[:, j].any() else np.nan
                             for j in range(m)])
    polarity = [sorted(int(v) for v in np.unique(L[voted[:, j], j])) for j in range(m)]
    return LFSummary(list(names), coverage, overlap, conflict, accuracy, float((n_voting > 0).mean()), polarity)


def _vote_counts(L: np.ndarray, n_classes: int) -> np.ndarray:
    counts = np.zeros((L.shape[0], n_classes))
    for j in range(L.shape[1]):
        rows = np.flatnonzero(L[:, j] != ABSTAIN)
        np.add.at(counts, (rows, L[rows, j]), 1.0)
    return counts


class _LabelModelBase:
    n_classes: int

    def _check(self, L: Any) -> np.ndarray:
        return _label_matrix(L, self.n_classes)

    def predict_proba(self, L: Any) -> np.ndarray:  # pragma: no cover - defined by subclasses
        raise NotImplementedError

    def predict(self, L: Any) -> np.ndarray:
        """The most probable class of each row (ties by ``tie_break``)."""
        p = self.predict_proba(L)
        best = p.max(axis=1, keepdims=True)
        tied = np.isclose(p, best, rtol=0, atol=1e-12)
        out = p.argmax(axis=1)
        multi = tied.sum(axis=1) > 1
        if multi.any():
            if self.tie_break == "abstain":
                out[multi] = ABSTAIN
            else:
                rng = np.random.default_rng(self.seed)
                for i in np.flatnonzero(multi):
                    out[i] = rng.choice(np.flatnonzero(tied[i]))
        return out.astype(np.int64)

    def score(self, L: Any, y: Any) -> float:
        """Accuracy of :meth:`predict` against gold labels (an abstention counts as wrong)."""
        y = as_labels(y, "y")
        pred = self.predict(L)
        same_length(("L", pred), ("y", y))
        return float(np.mean(pred == y))


class MajorityVoteLabelModel(_LabelModelBase):
    """Each row's label is its most frequent vote: $\\hat y_i = \\arg\\max_c \\sum_j [L_{ij} = c]$.

    Args:
        n_classes: number of classes ``K``.
        tie_break: ``"random"`` (a seeded pick among the tied classes; a row with no votes is a
            tie of all classes) or ``"abstain"`` (predict -1).
        seed: seeds the random tie-break.
    """

    def __init__(self, n_classes: int, tie_break: str = "random", seed: int = 0):
        self.n_classes = positive_int(n_classes, "n_classes", minimum=2)
        self.tie_break = choice(tie_break, "tie_break", ("random", "abstain"))
        self.seed = seed

    def fit(self, L: Any) -> MajorityVoteLabelModel:
        """Nothing to learn; checks ``L`` and returns self."""
        self._check(L)
        return self

    def predict_proba(self, L: Any) -> np.ndarray:
        """Vote shares per class, ``(n, K)``; uniform for a row without votes."""
        L = self._check(L)
        counts = _vote_counts(L, self.n_classes)
        total = counts.sum(axis=1, keepdims=True)
        return np.where(total > 0, counts / np.maximum(total, 1), 1.0 / self.n_classes)


class LabelModel(_LabelModelBase):
    """A Dawid-Skene label model fitted by expectation-maximisation.

    Model: $y \\sim \\mathrm{Cat}(\\pi)$, and given $y$ the LFs vote independently, LF $j$ emitting
    outcome $a \\in \\{\\text{abstain}, 0..K-1\\}$ with probability $\\theta_{j}[y, a]$ (a confusion matrix
    with an abstain column), so $P(L_i, y_i{=}c) = \\pi_c \\prod_j \\theta_j[c, L_{ij}]$.

    EM from the majority-vote posteriors: the E-step sets
    $q_{ic} \\propto \\pi_c \\prod_j \\theta_j[c, L_{ij}]$; the M-step sets
    $\\theta_j[c, a] \\propto s + \\sum_i q_{ic}[L_{ij}{=}a]$ and $\\pi_c \\propto s + \\sum_i q_{ic}$
    (``s`` = ``smoothing``, a Dirichlet prior that keeps every probability positive). Each step raises the
    (smoothed) log-likelihood $\\sum_i \\log \\sum_c P(L_i, y_i{=}c)$.

    An accurate LF agrees with the consensus more than a noisy one, gets a sharper confusion matrix, and
    so a larger say ($\\log \\theta_j[c,c]/\\theta_j[c',c]$) than a vote. LFs that copy each other break
    the independence assumption: alone, the model takes their agreement for accuracy. Declare such LFs as
    a group (``groups=[(1, 5, 6)]``, e.g. from :func:`suggest_groups`): a group votes as one unit whose
    joint outcome (one of $(K+1)^g$) has its own confusion matrix, so copies count once.

    Args:
        n_classes: number of classes ``K``.
        groups: tuples of LF indices modelled jointly (disjoint); every other LF is on its own.
        max_iter: EM iterations at most.
        tol: stop when the log-likelihood per example improves by less than this.
        smoothing: Dirichlet pseudo-count ``s > 0``.
        tie_break: as in :class:`MajorityVoteLabelModel`, for exact ties in :meth:`predict`.
        seed: seeds the random tie-break.

    Attributes:
        class_balance_: $\\pi$, shape ``(K,)``.
        confusion_: per-LF $\\theta$ (a group's joint table summed down to each member), shape
            ``(m, K, K+1)``; column 0 is abstain, column ``a+1`` is class ``a``.
        accuracy_: $P(\\lambda_j = y \\mid \\lambda_j \\ne \\text{abstain})$ per LF, shape ``(m,)``.
        log_likelihood_: per-example log-likelihood after each iteration.
        n_iter_: iterations run.
    """

    def __init__(self, n_classes: int, groups: Sequence[Sequence[int]] = (), max_iter: int = 200, tol: float = 1e-7,
                 smoothing: float = 1.0, tie_break: str = "random", seed: int = 0):
        self.n_classes = positive_int(n_classes, "n_classes", minimum=2)
        self.groups = [tuple(int(j) for j in g) for g in groups]
        self.max_iter = positive_int(max_iter, "max_iter")
        if not isinstance(tol, numbers.Real) or tol < 0:
            raise AttributeValueError(f"tol must be a non-negative number, got {tol!r}")
        if not isinstance(smoothing, numbers.Real) or not smoothing > 0:
            raise AttributeValueError(f"smoothing must be a positive number, got {smoothing!r}")
        self.tol = float(tol)
        self.smoothing = float(smoothing)
        self.tie_break = choice(tie_break, "tie_break", ("random", "abstain"))
        self.seed = seed

    def _units(self, m: int) -> list[tuple[int, ...]]:
        """The voting units: declared groups plus every other LF alone."""
        seen: set[int] = set()
        for g in self.groups:
            if len(g) == 0:
                raise AttributeValueError("a group of labeling functions is empty")
            for j in g:
                if not 0 <= j < m:
                    raise AttributeValueError(f"group {g} names LF {j}, but L has {m} labeling functions (0..{m - 1})")
                if j in seen:
                    raise AttributeValueError(f"LF {j} is in more than one group; groups must be disjoint")
                seen.add(j)
        return [g for g in self.groups] + [(j,) for j in range(m) if j not in seen]

    def _codes(self, L: np.ndarray) -> np.ndarray:
        """One column per unit: its members' outcomes as one number, $\\sum_t (L_{i,j_t}+1)(K+1)^t$."""
        base = self.n_classes + 1
        cols = [sum((L[:, j] + 1) * base ** t for t, j in enumerate(unit)) for unit in self.units_]
        return np.stack(cols, axis=1)

    def _posterior(self, codes: np.ndarray, log_theta: list[np.ndarray], log_pi: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        score = np.tile(log_pi, (codes.shape[0], 1))
        for u, lt in enumerate(log_theta):
            score += lt[:, codes[:, u]].T
        top = score.max(axis=1, keepdims=True)
        e = np.exp(score - top)
        total = e.sum(axis=1, keepdims=True)
        return e / total, (top + np.log(total)).ravel()

    def fit(self, L: Any) -> LabelModel:
        """Estimate $\\pi$ and $\\theta$ from the label matrix alone; returns self."""
        L = self._check(L)
        n, m = L.shape
        K, s = self.n_classes, self.smoothing
        self.units_ = self._units(m)
        codes = self._codes(L)
        sizes = [(K + 1) ** len(unit) for unit in self.units_]
        q = MajorityVoteLabelModel(K).predict_proba(L)
        history: list[float] = []
        for it in range(self.max_iter):
            theta = []
            for u, size in enumerate(sizes):
                counts = np.full((K, size), s)
                for c in range(K):
                    counts[c] += np.bincount(codes[:, u], weights=q[:, c], minlength=size)
                theta.append(counts / counts.sum(axis=1, keepdims=True))
            pi = (q.sum(axis=0) + s) / (n + K * s)
            q, log_norm = self._posterior(codes, [np.log(t) for t in theta], np.log(pi))
            history.append(float(log_norm.mean()))
            if it > 0 and history[-1] - history[-2] < self.tol:
                break
        self.unit_confusion_ = theta
        self.class_balance_ = pi
        self.log_likelihood_ = np.array(history)
        self.n_iter_ = len(history)
        confusion = np.zeros((m, K, K + 1))
        for unit, t in zip(self.units_, theta):
            outcomes = np.arange(t.shape[1])
            for pos, j in enumerate(unit):
                digit = (outcomes // (K + 1) ** pos) % (K + 1)
                for a in range(K + 1):
                    confusion[j, :, a] = t[:, digit == a].sum(axis=1)
        self.confusion_ = confusion
        right = np.einsum("c,jcc->j", pi, confusion[:, :, 1:])
        voting = np.einsum("c,jc->j", pi, 1.0 - confusion[:, :, 0])
        self.accuracy_ = right / voting
        return self

    def predict_proba(self, L: Any) -> np.ndarray:
        """Posterior $P(y_i = c \\mid L_i)$, shape ``(n, K)``."""
        if not hasattr(self, "unit_confusion_"):
            raise AttributeValueError("this LabelModel is not fitted yet; call fit(L) first")
        L = self._check(L)
        if L.shape[1] != self.confusion_.shape[0]:
            raise ShapeError(f"the model was fitted on {self.confusion_.shape[0]} labeling functions, "
                             f"L has {L.shape[1]} columns")
        q, _ = self._posterior(self._codes(L), [np.log(t) for t in self.unit_confusion_], np.log(self.class_balance_))
        return q


def suggest_groups(L: Any, min_agreement: float = 0.95, min_overlap: float = 0.1) -> list[tuple[int, ...]]:
    """LFs that vote alike so often they are likely copies of one rule, as groups for :class:`LabelModel`.

    Two LFs are linked when both vote on at least ``min_overlap`` of the rows and agree on at least
    ``min_agreement`` of those; groups are the connected sets of links. Two independent rules of
    accuracy $a$ agree on a binary task with probability $a^2 + (1-a)^2$, well below 1 unless both are
    nearly perfect, so near-total agreement points to shared logic.

    Args:
        L: label matrix ``(n, m)``.
        min_agreement: agreement rate on co-voted rows that links two LFs.
        min_overlap: share of all rows both must vote on.

    Returns:
        Groups of two or more LF indices, sorted.
    """
    L = _label_matrix(L)
    n, m = L.shape
    parent = list(range(m))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for a in range(m):
        for b in range(a + 1, m):
            both = (L[:, a] != ABSTAIN) & (L[:, b] != ABSTAIN)
            if both.mean() >= min_overlap and np.mean(L[both, a] == L[both, b]) >= min_agreement:
                parent[find(b)] = find(a)
    groups: dict[int, list[int]] = {}
    for j in range(m):
        groups.setdefault(find(j), []).append(j)
    return sorted(tuple(g) for g in groups.values() if len(g) > 1)
