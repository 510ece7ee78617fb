"""Weak supervision: labeling functions, label-matrix statistics, majority vote and the Dawid-Skene model.

Observed on the generated tasks below (seeds 0-4, n=2000, binary): majority vote 0.77, label model 0.87
with one accurate LF (0.9) and four noisy ones (0.6); with two copies of a noisy LF majority vote drops to
0.68, the label model without groups to 0.59, and with the copies declared as a group it is back at 0.87.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_lab.errors import AttributeValueError, DataError, ShapeError
from tinyml_lab.mlops import (
    ABSTAIN,
    LabelingFunction,
    LabelModel,
    MajorityVoteLabelModel,
    apply_lfs,
    labeling_function,
    lf_summary,
    suggest_groups,
)


def make_votes(seed: int, n: int = 2000, k: int = 2, accuracies=(0.9, 0.6, 0.6, 0.6, 0.6), coverage: float = 0.9,
               copies: int = 0):
    """Gold labels and a label matrix: LF j right with probability accuracies[j], else a uniform wrong class;
    ``copies`` extra LFs repeat LF 1's vote on 90% of rows (and abstain on the rest)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    cols = []
    for a in accuracies:
        vote = np.where(rng.random(n) < a, y, (y + rng.integers(1, k, n)) % k)
        cols.append(np.where(rng.random(n) < coverage, vote, ABSTAIN))
    for _ in range(copies):
        cols.append(np.where(rng.random(n) < 0.9, cols[1], ABSTAIN))
    return np.stack(cols, axis=1), y


# ---------------------------------------------------------------- labeling functions


def test_labeling_functions_build_the_label_matrix():
    @labeling_function()
    def lf_short(text):
        return 1 if len(text) < 5 else ABSTAIN

    lf_spam = LabelingFunction("spam", lambda t: 0 if "buy" in t else ABSTAIN)
    lf_len = LabelingFunction("len", lambda ts: np.array([len(t) % 2 for t in ts]), vectorized=True)
    texts = ["hi", "buy now", "hello there", "buy"]
    L = apply_lfs([lf_short, lf_spam, lf_len], texts)
    np.testing.assert_array_equal(L, [[1, -1, 0], [-1, 0, 1], [-1, -1, 1], [1, 0, 1]])
    assert lf_short.name == "lf_short" and lf_short("abc") == 1 and lf_len("abc") == 1


def test_labeling_function_bad_output():
    with pytest.raises(DataError, match="'bad'.*returned 'x'"):
        apply_lfs([LabelingFunction("bad", lambda t: "x")], ["a"])
    with pytest.raises(DataError, match="returned -2"):
        LabelingFunction("neg", lambda t: -2)("a")
    with pytest.raises(ShapeError, match="one vote per example"):
        LabelingFunction("v", lambda ts: np.zeros(1, dtype=int), vectorized=True).apply(["a", "b"])
    with pytest.raises(AttributeValueError, match="unique"):
        apply_lfs([LabelingFunction("a", lambda t: 0), LabelingFunction("a", lambda t: 1)], ["x"])
    with pytest.raises(DataError, match="no examples"):
        apply_lfs([LabelingFunction("a", lambda t: 0)], [])


# ---------------------------------------------------------------- statistics


def test_lf_summary_by_hand():
    L = np.array([[0, 0, -1],
                  [1, 0, -1],
                  [-1, -1, 1],
                  [-1, 1, 1]])
    y = np.array([0, 1, 1, 0])
    s = lf_summary(L, y, names=["a", "b", "c"])
    np.testing.assert_allclose(s.coverage, [0.5, 0.75, 0.5])
    # a overlaps on rows 0, 1; b on 0, 1, 3; c on 3 only
    np.testing.assert_allclose(s.overlap, [0.5, 0.75, 0.25])
    # conflicts: row 1 (a=1, b=0); row 3 agrees
    np.testing.assert_allclose(s.conflict, [0.25, 0.25, 0.0])
    np.testing.assert_allclose(s.accuracy, [1.0, 1 / 3, 0.5])
    assert s.label_coverage == 1.0 and s.polarity == [[0, 1], [0, 1], [1]]
    assert "coverage" in s.format() and "label coverage" in str(s)


def test_lf_summary_matches_generated_accuracies():
    L, y = make_votes(0, n=5000)
    s = lf_summary(L, y)
    np.testing.assert_allclose(s.coverage, 0.9, atol=0.02)
    np.testing.assert_allclose(s.accuracy, [0.9, 0.6, 0.6, 0.6, 0.6], atol=0.03)


# ---------------------------------------------------------------- label models


def test_majority_vote_by_hand():
    L = np.array([[0, 0, 1], [1, 1, -1], [-1, -1, -1], [0, 1, -1]])
    mv = MajorityVoteLabelModel(2, tie_break="abstain").fit(L)
    np.testing.assert_allclose(mv.predict_proba(L), [[2 / 3, 1 / 3], [0, 1], [0.5, 0.5], [0.5, 0.5]])
    np.testing.assert_array_equal(mv.predict(L), [0, 1, ABSTAIN, ABSTAIN])
    random_ties = MajorityVoteLabelModel(2, tie_break="random", seed=0).predict(L)
    assert random_ties[:2].tolist() == [0, 1] and set(random_ties[2:]) <= {0, 1}


@pytest.mark.parametrize("k", [2, 3])
def test_label_model_beats_majority_vote_with_one_accurate_lf(k):
    gains = []
    for seed in range(3):
        L, y = make_votes(seed, k=k)
        mv = MajorityVoteLabelModel(k, seed=seed).fit(L).score(L, y)
        lm = LabelModel(k, seed=seed).fit(L)
        gains.append(lm.score(L, y) - mv)
        # without gold labels it ranks the accurate LF first and estimates its accuracy
        assert np.argmax(lm.accuracy_) == 0
        assert abs(lm.accuracy_[0] - 0.9) < 0.05
        np.testing.assert_allclose(lm.accuracy_[1:], 0.6, atol=0.06)
    assert min(gains) > 0.03


def test_label_model_with_correlated_lfs_needs_their_group():
    for seed in range(3):
        L, y = make_votes(seed, copies=2)
        mv = MajorityVoteLabelModel(2, seed=seed).fit(L).score(L, y)
        groups = suggest_groups(L)
        assert groups == [(1, 5, 6)]
        naive = LabelModel(2).fit(L)
        grouped = LabelModel(2, groups=groups).fit(L)
        # alone, the copies look near-perfect to the model; as a group they count once
        assert naive.accuracy_[5] > 0.95
        assert abs(grouped.accuracy_[5] - 0.6) < 0.06
        assert grouped.score(L, y) > mv + 0.1
        assert grouped.score(L, y) > naive.score(L, y) + 0.1


def test_label_model_em_raises_the_likelihood_and_is_a_posterior():
    L, y = make_votes(1, k=3, n=800)
    lm = LabelModel(3).fit(L)
    assert (np.diff(lm.log_likelihood_) > -1e-9).all()
    p = lm.predict_proba(L)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(lm.confusion_.sum(axis=2), 1.0)
    np.testing.assert_allclose(lm.class_balance_, np.bincount(y) / y.size, atol=0.05)
    # the posterior equals the model's product formula computed by hand for one row
    i = 0
    joint = lm.class_balance_.copy()
    for j in range(L.shape[1]):
        joint *= lm.confusion_[j][:, L[i, j] + 1]
    np.testing.assert_allclose(p[i], joint / joint.sum(), rtol=1e-10)


def test_label_model_bad_input():
    with pytest.raises(DataError, match="class 3"):
        LabelModel(2).fit(np.array([[0, 3]]))
    with pytest.raises(DataError, match="below -1"):
        MajorityVoteLabelModel(2).fit(np.array([[0, -2]]))
    with pytest.raises(ShapeError, match="2-D"):
        LabelModel(2).fit(np.array([0, 1]))
    with pytest.raises(DataError, match="empty"):
        LabelModel(2).fit(np.zeros((0, 3), dtype=int))
    with pytest.raises(DataError, match="NaN"):
        LabelModel(2).fit(np.array([[0.0, np.nan]]))
    with pytest.raises(AttributeValueError, match="not fitted"):
        LabelModel(2).predict(np.array([[0, 1]]))
    with pytest.raises(AttributeValueError, match="disjoint"):
        LabelModel(2, groups=[(0, 1), (1, 2)]).fit(np.zeros((4, 3), dtype=int))
    with pytest.raises(AttributeValueError, match="names LF 5"):
        LabelModel(2, groups=[(0, 5)]).fit(np.zeros((4, 3), dtype=int))
    with pytest.raises(ShapeError, match="fitted on 3"):
        LabelModel(2).fit(np.zeros((4, 3), dtype=int)).predict(np.zeros((4, 2), dtype=int))
    with pytest.raises(AttributeValueError, match="smoothing"):
        LabelModel(2, smoothing=0)
