"""Permutation feature importance: how much the score drops when one feature's values are shuffled.

Shuffling a column keeps its distribution but breaks its link to the label (and to the other
features); a model that relies on the feature loses score, one that ignores it loses nothing. The
measure needs only a predict function and a metric, so it works for any model, including a deployed
int8 graph. It measures reliance *of this model on this data*: two correlated features can share the
credit, each looking unimportant when shuffled alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import DataError, ShapeError
from ._validate import as_finite, positive_int, same_length

__all__ = ["PermutationImportance", "permutation_importance"]


@dataclass
class PermutationImportance:
    """Importances of each feature over the shuffles.

    Attributes:
        baseline: the metric on the unshuffled data.
        importances: ``(f, n_repeats)`` drop of the score per shuffle (positive = the feature helps).
        names: feature names.
    """

    baseline: float
    importances: np.ndarray
    names: list[str]

    @property
    def mean(self) -> np.ndarray:
        return self.importances.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        return self.importances.std(axis=1)

    def ranking(self) -> list[str]:
        """Feature names, most important first."""
        return [self.names[j] for j in np.argsort(-self.mean, kind="stable")]

    def format(self, top: int | None = None) -> str:
        """A table of mean +- std, most important first."""
        from ..report import format_table

        order = np.argsort(-self.mean, kind="stable")[:top]
        rows = [[self.names[j], f"{self.mean[j]:+.4f}", f"{self.std[j]:.4f}"] for j in order]
        return format_table(["feature", "importance", "std"], rows, align="lrr")

    def __str__(self) -> str:
        return f"baseline score {self.baseline:.4f}\n" + self.format()


def _accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def permutation_importance(predict: Callable[[np.ndarray], Any], x: Any, y: Any,
                           metric: Callable[[np.ndarray, np.ndarray], float] | None = None, n_repeats: int = 5,
                           seed: int = 0, higher_is_better: bool = True,
                           feature_names: Sequence[str] | None = None) -> PermutationImportance:
    """$I_j = s(y, f(X)) - s(y, f(X_{\\pi_j}))$, averaged over ``n_repeats`` shuffles $\\pi_j$ of column $j$.

    Random draws: ``rng = np.random.default_rng(seed)``, then for each feature in order and each repeat,
    ``rng.permutation(n)`` gives the row order of that column.

    Args:
        predict: ``predict(x) -> predictions`` (labels, scores or probabilities, whatever ``metric`` takes).
        x: features ``(n, f)``.
        y: targets ``(n,)``.
        metric: ``metric(y_true, y_pred) -> float``; accuracy if None.
        n_repeats: shuffles per feature.
        seed: seeds the shuffles.
        higher_is_better: False for a loss (the sign is flipped so a helpful feature stays positive).
        feature_names: names (default ``x0, x1, ...``).

    Returns:
        A :class:`PermutationImportance`.
    """
    xa = as_finite(x, "x", ndim=2)
    ya = np.asarray(y)
    if ya.ndim == 0 or ya.size == 0:
        raise DataError("y is empty; give one target per row")
    n = same_length(("x", xa), ("y", ya))
    n_repeats = positive_int(n_repeats, "n_repeats")
    metric = metric or _accuracy
    names = [f"x{j}" for j in range(xa.shape[1])] if feature_names is None else [str(v) for v in feature_names]
    if len(names) != xa.shape[1]:
        raise ShapeError(f"{len(names)} feature names for {xa.shape[1]} features")
    sign = 1.0 if higher_is_better else -1.0

    def score(data: np.ndarray) -> float:
        value = float(metric(ya, predict(data)))
        if not np.isfinite(value):
            raise DataError(f"the metric returned {value}; it must return a finite number")
        return value

    baseline = score(xa)
    rng = np.random.default_rng(seed)
    out = np.zeros((xa.shape[1], n_repeats))
    work = xa.copy()
    for j in range(xa.shape[1]):
        for r in range(n_repeats):
            work[:, j] = xa[rng.permutation(n), j]
            out[j, r] = sign * (baseline - score(work))
        work[:, j] = xa[:, j]
    return PermutationImportance(baseline, out, names)
