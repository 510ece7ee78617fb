"""Group fairness metrics against hand-computed cases and their invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import strategies  # noqa: F401  (loads the hypothesis profile)
from tinyml_lab.errors import DataError
from tinyml_lab.mlops.fairness import (FairnessReport, confusion_by_group, demographic_parity_difference,
                                       demographic_parity_ratio, equal_opportunity_difference,
                                       equalized_odds_difference, false_positive_rate_gap, per_class_gaps,
                                       selection_rates, true_positive_rate_gap)

# group a: y = 1 1 0 0 0, y_hat = 1 0 1 0 0 -> TP 1, FN 1, FP 1, TN 2: selection 2/5, TPR 1/2, FPR 1/3
# group b: y = 1 1 1 0,   y_hat = 1 1 0 0   -> TP 2, FN 1, FP 0, TN 1: selection 2/4, TPR 2/3, FPR 0
Y = [1, 1, 0, 0, 0, 1, 1, 1, 0]
P = [1, 0, 1, 0, 0, 1, 1, 0, 0]
G = ["a"] * 5 + ["b"] * 4


def test_hand_computed_case():
    c = confusion_by_group(Y, P, G)
    assert (c["a"].tp, c["a"].fn, c["a"].fp, c["a"].tn) == (1, 1, 1, 2)
    assert (c["b"].tp, c["b"].fn, c["b"].fp, c["b"].tn) == (2, 1, 0, 1)
    assert selection_rates(P, G) == {"a": pytest.approx(0.4), "b": pytest.approx(0.5)}
    assert demographic_parity_difference(P, G) == pytest.approx(0.1)
    assert demographic_parity_ratio(P, G) == pytest.approx(0.8)
    assert true_positive_rate_gap(Y, P, G) == pytest.approx(2 / 3 - 1 / 2)
    assert false_positive_rate_gap(Y, P, G) == pytest.approx(1 / 3)
    assert equalized_odds_difference(Y, P, G) == pytest.approx(1 / 3)
    assert equal_opportunity_difference(Y, P, G) == pytest.approx(1 / 6)
    r = FairnessReport.from_predictions(Y, P, G)
    assert r.metrics == pytest.approx({"demographic_parity_difference": 0.1, "demographic_parity_ratio": 0.8,
                                       "tpr_gap": 1 / 6, "fpr_gap": 1 / 3, "equalized_odds_difference": 1 / 3,
                                       "equal_opportunity_difference": 1 / 6})
    text = r.table()
    assert "0.667" in text and "0.333" in text and "equalized odds difference" in text
    js = r.to_json()
    assert js["groups"][0]["group"] == "a" and js["groups"][1]["tp"] == 2


def test_three_groups_and_another_positive_label():
    y = [0, 1, 2, 2, 0, 1, 2, 0, 1, 2]
    p = [0, 1, 2, 0, 0, 2, 2, 1, 1, 2]
    g = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    # positive = 2: group 0: y2 at idx 2, 3; y_hat 2 at idx 2 -> TP 1, FN 1, FP 0, TN 2 (TPR 1/2, FPR 0, sel 1/4)
    # group 1: y2 at idx 6; y_hat 2 at idx 5, 6 -> TP 1, FN 0, FP 1, TN 1 (TPR 1, FPR 1/2, sel 2/3)
    # group 2: y2 at idx 9; y_hat 2 at idx 9 -> TP 1, FN 0, FP 0, TN 2 (TPR 1, FPR 0, sel 1/3)
    r = FairnessReport.from_predictions(y, p, g, positive=2)
    assert r.demographic_parity_difference == pytest.approx(2 / 3 - 1 / 4)
    assert r.demographic_parity_ratio == pytest.approx((1 / 4) / (2 / 3))
    assert r.tpr_gap == pytest.approx(0.5) and r.fpr_gap == pytest.approx(0.5)
    rows = per_class_gaps(y, p, g)
    assert [row["class"] for row in rows] == [0, 1, 2]
    assert rows[2]["equalized_odds_difference"] == pytest.approx(0.5)


def test_undefined_rates_are_left_out():
    # group b has no positive label: its TPR is undefined, so no TPR gap can be measured
    r = FairnessReport.from_predictions([1, 0, 0, 0], [1, 0, 1, 0], ["a", "a", "b", "b"])
    assert math.isnan(r.groups["b"].tpr)
    assert math.isnan(r.tpr_gap)
    assert r.fpr_gap == pytest.approx(0.5)
    assert r.equalized_odds_difference == pytest.approx(0.5)
    assert "-" in r.table()
    assert demographic_parity_ratio([0, 0, 0, 0], ["a", "a", "b", "b"]) == 1.0


@pytest.mark.parametrize("args, words", [
    (([1, 0], [1, 0], ["a", "a"]), "only 1"),
    (([1, 0], [1, 0, 1], ["a", "b", "b"]), "one label per prediction"),
    (([1, 0, 1], [1, 0, 1], ["a", "b"]), "one group per example"),
    (([], [], []), "empty"),
    (([[1, 0]], [[1, 0]], [["a", "b"]]), "1-D"),
])
def test_bad_input(args, words):
    with pytest.raises(DataError, match=words):
        FairnessReport.from_predictions(*args)


rows = st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.sampled_from(["x", "y", "z"])),
                min_size=2, max_size=60).filter(lambda r: len({g for _, _, g in r}) >= 2)


@given(data=rows, seed=st.integers(0, 2**16))
def test_metrics_are_invariant_to_permuting_rows(data, seed):
    y, p, g = (np.array(c) for c in zip(*data))
    perm = np.random.default_rng(seed).permutation(len(y))
    a = FairnessReport.from_predictions(y, p, g).to_json()
    b = FairnessReport.from_predictions(y[perm], p[perm], g[perm]).to_json()
    assert a == b or _nan_equal(a, b)


def _nan_equal(a: dict, b: dict) -> bool:
    return all((isinstance(v, float) and math.isnan(v) and math.isnan(b[k])) or v == b[k] for k, v in a.items())


@given(base=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=30),
       copies=st.lists(st.integers(1, 4), min_size=2, max_size=4))
def test_no_gap_when_decisions_are_independent_of_the_group(base, copies):
    """Every group holds the same (label, decision) pairs, each repeated a group-specific number of times:
    the rates are equal in every group by construction, so every gap is 0 and the ratio 1."""
    y, p, g = [], [], []
    for gi, k in enumerate(copies):
        for yy, pp in base * k:
            y.append(yy)
            p.append(pp)
            g.append(f"group{gi}")
    r = FairnessReport.from_predictions(y, p, g)
    assert r.demographic_parity_difference == pytest.approx(0.0, abs=1e-12)
    assert r.demographic_parity_ratio == pytest.approx(1.0)
    for v in (r.tpr_gap, r.fpr_gap, r.equalized_odds_difference, r.equal_opportunity_difference):
        assert math.isnan(v) or v == pytest.approx(0.0, abs=1e-12)


@given(data=rows)
def test_ranges_and_relations(data):
    y, p, g = zip(*data)
    r = FairnessReport.from_predictions(y, p, g)
    assert 0.0 <= r.demographic_parity_difference <= 1.0
    assert 0.0 <= r.demographic_parity_ratio <= 1.0
    if not math.isnan(r.equalized_odds_difference):
        assert r.equalized_odds_difference >= max(x for x in (r.tpr_gap, r.fpr_gap) if not math.isnan(x)) - 1e-15
    assert sum(c.n for c in r.groups.values()) == len(y)
