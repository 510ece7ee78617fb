"""Group fairness metrics of a classifier's decisions (Hardt, Price and Srebro, NeurIPS 2016).

For a sensitive attribute ``A`` (the group), labels ``Y`` and decisions
``Y_hat`` (binary: the ``positive`` label against the rest):

* selection rate ``P(Y_hat = 1 | A = a)``; **demographic parity** asks it to
  be equal across groups: difference ``max_a - min_a``, ratio ``min_a / max_a``
  (the "four-fifths rule" flags a ratio below 0.8);
* true positive rate ``TPR_a = P(Y_hat = 1 | Y = 1, A = a)`` and false positive
  rate ``FPR_a = P(Y_hat = 1 | Y = 0, A = a)``; **equalized odds** asks both
  to be equal across groups (the difference reported is the larger of the
  TPR gap and the FPR gap); **equal opportunity** asks it of the TPR only.

A rate with no example to estimate it (a group with no positive label, for
the TPR) is NaN and left out of the gaps. A multi-class decision is judged
one class at a time (``positive=k``); :func:`per_class_gaps` does every class.

>>> r = FairnessReport.from_predictions([1, 0, 1, 0], [1, 0, 0, 0], ["a", "a", "b", "b"])
>>> r.demographic_parity_difference, r.equal_opportunity_difference
(0.5, 1.0)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Hashable, Sequence

import numpy as np

from ..errors import DataError
from ..report import format_table


@dataclass(frozen=True)
class GroupCounts:
    """Confusion counts of one group (positive = the chosen label) and the rates they give."""

    group: Hashable
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn

    @property
    def selection_rate(self) -> float:
        """``P(Y_hat = 1)``."""
        return (self.tp + self.fp) / self.n if self.n else math.nan

    @property
    def tpr(self) -> float:
        """``P(Y_hat = 1 | Y = 1)``; NaN without positives."""
        p = self.tp + self.fn
        return self.tp / p if p else math.nan

    @property
    def fpr(self) -> float:
        """``P(Y_hat = 1 | Y = 0)``; NaN without negatives."""
        neg = self.fp + self.tn
        return self.fp / neg if neg else math.nan

    @property
    def accuracy(self) -> float:
        return (self.tp + self.tn) / self.n if self.n else math.nan

    def to_json(self) -> dict:
        return {"group": _plain(self.group), "n": self.n, "tp": self.tp, "fp": self.fp, "tn": self.tn,
                "fn": self.fn, "selection_rate": self.selection_rate, "tpr": self.tpr, "fpr": self.fpr,
                "accuracy": self.accuracy}


def _plain(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v


def _inputs(y_true: Sequence | None, y_pred: Sequence, groups: Sequence) -> tuple:
    yp = np.asarray(y_pred)
    g = np.asarray(groups)
    if yp.ndim != 1 or g.ndim != 1:
        raise DataError(f"y_pred and groups must be 1-D (one entry per example), got shapes {yp.shape} and {g.shape}")
    if len(yp) == 0:
        raise DataError("no examples: y_pred is empty")
    if len(g) != len(yp):
        raise DataError(f"{len(yp)} predictions but {len(g)} group labels; give one group per example")
    yt = None
    if y_true is not None:
        yt = np.asarray(y_true)
        if yt.shape != yp.shape:
            raise DataError(f"y_true has shape {yt.shape} and y_pred {yp.shape}; give one label per prediction")
    names = list(dict.fromkeys(_plain(v) for v in g))  # first-seen order
    if len(names) < 2:
        raise DataError(f"fairness compares groups, and there is only {len(names)} ({names}); "
                        f"pass the sensitive attribute of every example as groups")
    return yt, yp, g, sorted(names, key=str)


def confusion_by_group(y_true: Sequence, y_pred: Sequence, groups: Sequence,
                       positive: Hashable = 1) -> dict[Hashable, GroupCounts]:
    """Per-group TP, FP, TN, FN with ``positive`` as the positive label (one-vs-rest for multi-class)."""
    yt, yp, g, names = _inputs(y_true, y_pred, groups)
    t, p = yt == positive, yp == positive
    out = {}
    for name in names:
        m = g == name
        out[name] = GroupCounts(name, int((t & p & m).sum()), int((~t & p & m).sum()),
                                int((~t & ~p & m).sum()), int((t & ~p & m).sum()))
    return out


def selection_rates(y_pred: Sequence, groups: Sequence, positive: Hashable = 1) -> dict[Hashable, float]:
    """``P(Y_hat = positive | A = a)`` for every group ``a``."""
    _, yp, g, names = _inputs(None, y_pred, groups)
    return {name: float((yp[g == name] == positive).mean()) for name in names}


def _gap(values: Sequence[float]) -> float:
    v = [x for x in values if not math.isnan(x)]
    return max(v) - min(v) if len(v) >= 2 else math.nan


def demographic_parity_difference(y_pred: Sequence, groups: Sequence, positive: Hashable = 1) -> float:
    """``max_a P(Y_hat = 1 | A = a) - min_a P(Y_hat = 1 | A = a)``; 0 is parity."""
    return _gap(list(selection_rates(y_pred, groups, positive).values()))


def demographic_parity_ratio(y_pred: Sequence, groups: Sequence, positive: Hashable = 1) -> float:
    """``min_a P(Y_hat = 1 | A = a) / max_a P(Y_hat = 1 | A = a)``; 1 is parity (also when no group is selected)."""
    rates = list(selection_rates(y_pred, groups, positive).values())
    return 1.0 if max(rates) == 0 else min(rates) / max(rates)


def true_positive_rate_gap(y_true: Sequence, y_pred: Sequence, groups: Sequence, positive: Hashable = 1) -> float:
    """``max_a TPR_a - min_a TPR_a`` over the groups that have positives."""
    return _gap([c.tpr for c in confusion_by_group(y_true, y_pred, groups, positive).values()])


def false_positive_rate_gap(y_true: Sequence, y_pred: Sequence, groups: Sequence, positive: Hashable = 1) -> float:
    """``max_a FPR_a - min_a FPR_a`` over the groups that have negatives."""
    return _gap([c.fpr for c in confusion_by_group(y_true, y_pred, groups, positive).values()])


def equal_opportunity_difference(y_true: Sequence, y_pred: Sequence, groups: Sequence,
                                 positive: Hashable = 1) -> float:
    """The TPR gap (equal opportunity holds when it is 0)."""
    return true_positive_rate_gap(y_true, y_pred, groups, positive)


def equalized_odds_difference(y_true: Sequence, y_pred: Sequence, groups: Sequence, positive: Hashable = 1) -> float:
    """``max(TPR gap, FPR gap)`` (equalized odds holds when it is 0)."""
    counts = confusion_by_group(y_true, y_pred, groups, positive).values()
    gaps = [_gap([c.tpr for c in counts]), _gap([c.fpr for c in counts])]
    gaps = [x for x in gaps if not math.isnan(x)]
    return max(gaps) if gaps else math.nan


@dataclass
class FairnessReport:
    """Every group metric of one decision, with the per-group counts behind them.

    Build it with :meth:`from_predictions`; ``table()`` for people, ``to_json()`` for programs.
    """

    positive: Hashable
    groups: dict[Hashable, GroupCounts] = field(default_factory=dict)
    demographic_parity_difference: float = math.nan
    demographic_parity_ratio: float = math.nan
    tpr_gap: float = math.nan
    fpr_gap: float = math.nan
    equalized_odds_difference: float = math.nan
    equal_opportunity_difference: float = math.nan

    @classmethod
    def from_predictions(cls, y_true: Sequence, y_pred: Sequence, groups: Sequence,
                         positive: Hashable = 1) -> "FairnessReport":
        counts = confusion_by_group(y_true, y_pred, groups, positive)
        sel = [c.selection_rate for c in counts.values()]
        tpr_gap = _gap([c.tpr for c in counts.values()])
        fpr_gap = _gap([c.fpr for c in counts.values()])
        both = [x for x in (tpr_gap, fpr_gap) if not math.isnan(x)]
        return cls(positive=_plain(positive), groups=counts, demographic_parity_difference=_gap(sel),
                   demographic_parity_ratio=1.0 if max(sel) == 0 else min(sel) / max(sel),
                   tpr_gap=tpr_gap, fpr_gap=fpr_gap, equalized_odds_difference=max(both) if both else math.nan,
                   equal_opportunity_difference=tpr_gap)

    @property
    def metrics(self) -> dict[str, float]:
        """The summary metrics by name."""
        return {k: v for k, v in asdict(self).items() if k not in ("positive", "groups")}

    def table(self) -> str:
        """Per-group counts and rates, then the gaps."""
        rows = [[str(c.group), c.n, c.tp, c.fp, c.tn, c.fn, _f(c.selection_rate), _f(c.tpr), _f(c.fpr)]
                for c in self.groups.values()]
        head = format_table(["group", "n", "TP", "FP", "TN", "FN", "selection", "TPR", "FPR"], rows,
                            align="lrrrrrrrr")
        gaps = format_table(["metric", "value"], [[k.replace("_", " "), _f(v)] for k, v in self.metrics.items()],
                            align="lr")
        return f"positive label: {self.positive}\n{head}\n\n{gaps}"

    def to_json(self) -> dict:
        return {"positive": self.positive, "groups": [c.to_json() for c in self.groups.values()], **self.metrics}


def _f(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.3f}"


def per_class_gaps(y_true: Sequence, y_pred: Sequence, groups: Sequence,
                   classes: Sequence[Hashable] | None = None) -> list[dict]:
    """One row per class ``k`` (one-vs-rest): the demographic parity difference, the TPR and FPR gaps and
    the equalized odds difference of the decision ``Y_hat = k``."""
    yt = np.asarray(y_true)
    classes = sorted(set(_plain(v) for v in yt)) if classes is None else list(classes)
    rows = []
    for k in classes:
        r = FairnessReport.from_predictions(y_true, y_pred, groups, positive=k)
        rows.append({"class": k, **r.metrics})
    return rows


__all__ = ["GroupCounts", "confusion_by_group", "selection_rates", "demographic_parity_difference",
           "demographic_parity_ratio", "true_positive_rate_gap", "false_positive_rate_gap",
           "equal_opportunity_difference", "equalized_odds_difference", "FairnessReport", "per_class_gaps"]
