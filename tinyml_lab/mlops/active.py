"""Active learning: ask for the labels the model is least sure about, and measure the learning curve.

Pool-based loop: start from ``n_initial`` random labelled rows of the pool; each round fit the model,
score every unlabelled row by how uncertain the model is, label the ``batch_size`` highest, repeat.
The curve of test accuracy against labels used is what a labelling budget buys.

Uncertainty scores (higher = ask first), from the predicted class probabilities $p$ of a row:

* least confidence: $1 - \\max_c p_c$;
* margin: $1 - (p_{(1)} - p_{(2)})$, the two largest probabilities;
* entropy: $-\\sum_c p_c \\log p_c$;
* ``"random"``: the baseline, uniform over the unlabelled rows.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AttributeValueError, ShapeError
from ._validate import as_finite, as_labels, as_probabilities, choice, positive_int, same_length

__all__ = ["least_confidence", "margin_score", "entropy_score", "STRATEGIES", "query_indices", "LearningCurve",
           "active_learning_curve"]


def least_confidence(proba: Any) -> np.ndarray:
    """$1 - \\max_c p_c$ per row of ``proba`` (N, K)."""
    p = as_probabilities(proba, "proba")
    return 1.0 - p.max(axis=1)


def margin_score(proba: Any) -> np.ndarray:
    """$1 - (p_{(1)} - p_{(2)})$ per row: 1 when the two best classes tie, 0 when one has all the mass."""
    p = as_probabilities(proba, "proba")
    top2 = np.sort(p, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


def entropy_score(proba: Any) -> np.ndarray:
    """$-\\sum_c p_c \\log p_c$ per row (nats; $0 \\log 0 = 0$)."""
    p = as_probabilities(proba, "proba")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1)


STRATEGIES: dict[str, Callable[[Any], np.ndarray] | None] = {
    "uncertainty": least_confidence, "margin": margin_score, "entropy": entropy_score, "random": None,
}


def query_indices(proba: Any, k: int, strategy: str = "uncertainty", seed: int = 0) -> np.ndarray:
    """The ``k`` rows of ``proba`` to label next: the highest scores (ties broken at random), or a random ``k``.

    Args:
        proba: predicted probabilities of the unlabelled rows, (N, K).
        k: how many to pick, ``k <= N``.
        strategy: ``"uncertainty"`` (least confidence), ``"margin"``, ``"entropy"`` or ``"random"``.
        seed: seeds the random choice and the tie-break.

    Returns:
        int64 row indices, most informative first.
    """
    strategy = choice(strategy, "strategy", tuple(STRATEGIES))
    p = as_probabilities(proba, "proba")
    k = positive_int(k, "k")
    if k > p.shape[0]:
        raise AttributeValueError(f"cannot query k={k} rows from {p.shape[0]} unlabelled ones; use k <= {p.shape[0]}")
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return rng.choice(p.shape[0], size=k, replace=False).astype(np.int64)
    score = STRATEGIES[strategy](p)
    order = np.lexsort((rng.random(p.shape[0]), -score))  # by score, ties in random order
    return order[:k].astype(np.int64)


@dataclass
class LearningCurve:
    """Test accuracy against the number of labels, for one strategy.

    Attributes:
        strategy: the query strategy.
        n_labels: labels used at each point, shape (rounds + 1,).
        accuracy: test accuracy at each point.
        queried: pool indices in the order they were labelled (the initial ones first).
    """

    strategy: str
    n_labels: np.ndarray
    accuracy: np.ndarray
    queried: np.ndarray

    def labels_to_reach(self, target: float) -> int | None:
        """The fewest labels at which accuracy reached ``target``, or None if it never did."""
        hit = np.flatnonzero(self.accuracy >= target)
        return int(self.n_labels[hit[0]]) if hit.size else None

    def area(self) -> float:
        """Mean accuracy over the curve's points (a one-number summary for comparing strategies)."""
        return float(np.mean(self.accuracy))

    def __repr__(self) -> str:
        return (f"LearningCurve({self.strategy!r}: {int(self.n_labels[0])}->{int(self.n_labels[-1])} labels, "
                f"accuracy {self.accuracy[0]:.3f}->{self.accuracy[-1]:.3f})")


def _fresh(model: Any) -> Any:
    if hasattr(model, "fit") and hasattr(model, "predict_proba"):
        try:
            from sklearn.base import clone

            return clone(model)
        except (TypeError, RuntimeError):  # not a scikit-learn estimator: a deep copy of the unfitted model
            return copy.deepcopy(model)
    if callable(model):
        made = model()
        if not (hasattr(made, "fit") and hasattr(made, "predict_proba")):
            raise AttributeValueError("the model factory must return an object with fit and predict_proba")
        return made
    raise AttributeValueError(f"model must have fit and predict_proba (or be a function returning such a model), "
                              f"got {type(model).__name__}")


def _full_proba(model: Any, x: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """predict_proba with one column per class of ``classes`` (0 for classes the model has not seen)."""
    p = np.asarray(model.predict_proba(x), dtype=np.float64)
    seen = np.asarray(getattr(model, "classes_", classes[: p.shape[1]]))
    if p.shape != (x.shape[0], seen.size):
        raise ShapeError(f"predict_proba returned shape {p.shape}; expected ({x.shape[0]}, {seen.size})")
    out = np.zeros((x.shape[0], classes.size))
    out[:, np.searchsorted(classes, seen)] = p
    if out.shape[1] == 1:
        out = np.hstack([out, np.zeros_like(out)])
    return out


def active_learning_curve(model: Any, x_pool: Any, y_pool: Any, x_test: Any, y_test: Any,
                          strategy: str = "uncertainty", n_initial: int = 10, batch_size: int = 10,
                          n_rounds: int = 20, seed: int = 0) -> LearningCurve:
    """Run the pool-based loop and record test accuracy after every round.

    The pool's labels stand in for the annotator: a row's label is "bought" only when the strategy
    queries it. The same ``seed`` gives the same initial rows for every strategy, so curves compare fairly.

    Args:
        model: an unfitted classifier with ``fit(x, y)`` and ``predict_proba(x)`` (cloned each round),
            or a function returning a fresh one.
        x_pool, y_pool: the unlabelled pool and its (hidden) labels.
        x_test, y_test: held-out data for the accuracy.
        strategy: ``"uncertainty"``, ``"margin"``, ``"entropy"`` or ``"random"``.
        n_initial: random rows labelled before the first round.
        batch_size: rows labelled per round.
        n_rounds: rounds of querying.
        seed: seeds the initial rows, random queries and tie-breaks.

    Returns:
        A :class:`LearningCurve` with ``n_rounds + 1`` points.
    """
    strategy = choice(strategy, "strategy", tuple(STRATEGIES))
    xp = as_finite(x_pool, "x_pool", ndim=2)
    yp = as_labels(y_pool, "y_pool")
    xt = as_finite(x_test, "x_test", ndim=2)
    yt = as_labels(y_test, "y_test")
    n = same_length(("x_pool", xp), ("y_pool", yp))
    same_length(("x_test", xt), ("y_test", yt))
    if xt.shape[1] != xp.shape[1]:
        raise ShapeError(f"x_pool has {xp.shape[1]} features but x_test has {xt.shape[1]}")
    n_initial = positive_int(n_initial, "n_initial")
    batch_size = positive_int(batch_size, "batch_size")
    n_rounds = positive_int(n_rounds, "n_rounds", minimum=0)
    need = n_initial + batch_size * n_rounds
    if need > n:
        raise AttributeValueError(f"n_initial + batch_size * n_rounds = {need} labels, but the pool has only {n} rows")
    classes = np.union1d(yp, yt)
    rng = np.random.default_rng(seed)
    labelled = list(rng.choice(n, size=n_initial, replace=False))
    is_labelled = np.zeros(n, dtype=bool)
    is_labelled[labelled] = True
    n_labels, accuracy = [], []
    for r in range(n_rounds + 1):
        fitted = _fresh(model)
        fitted.fit(xp[is_labelled], yp[is_labelled])
        pred = classes[_full_proba(fitted, xt, classes).argmax(axis=1)]
        n_labels.append(int(is_labelled.sum()))
        accuracy.append(float(np.mean(pred == yt)))
        if r == n_rounds:
            break
        unlabelled = np.flatnonzero(~is_labelled)
        proba = _full_proba(fitted, xp[unlabelled], classes)
        proba = proba / proba.sum(axis=1, keepdims=True)
        pick = unlabelled[query_indices(proba, batch_size, strategy, seed=int(rng.integers(2**32)))]
        is_labelled[pick] = True
        labelled.extend(pick.tolist())
    return LearningCurve(strategy, np.array(n_labels), np.array(accuracy), np.array(labelled, dtype=np.int64))
