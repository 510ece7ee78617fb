"""Slice metrics against scikit-learn, baselines, invariance and directional tests on digits."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_fscore_support

from strategies import seeds
from tinyml_lab.data import load_digits
from tinyml_lab.data.digits import apply_shift
from tinyml_lab.errors import AttributeValueError, DataError, ShapeError
from tinyml_lab.mlops import (
    MajorityClassBaseline,
    StratifiedBaseline,
    classification_metrics,
    directional_test,
    invariance_test,
    slice_metrics,
)

# ---------------------------------------------------------------- slice metrics


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@given(seed=seeds, n=st.integers(1, 80), k=st.integers(2, 5), binary=st.booleans())
def test_metrics_match_scikit_learn(seed, n, k, binary):
    rng = np.random.default_rng(seed)
    t, p = rng.integers(0, k, n), rng.integers(0, k, n)
    m = classification_metrics(t, p, positive=1 if binary else None)
    if binary:
        ref = precision_recall_fscore_support(t, p, labels=[1], average=None, zero_division=0)
        ref = [float(r[0]) for r in ref[:3]]
    else:
        ref = precision_recall_fscore_support(t, p, average="macro", zero_division=0)[:3]
    np.testing.assert_allclose([m.precision, m.recall, m.f1], ref, atol=1e-12)
    assert m.accuracy == pytest.approx(np.mean(t == p)) and m.count == n


def test_slices_by_hand():
    y_true = np.array([0, 1, 1, 0, 1, 1, 0, 0])
    y_pred = np.array([0, 1, 1, 0, 0, 0, 1, 0])
    device = np.array(["a", "a", "a", "a", "b", "b", "b", "b"])
    r = slice_metrics(y_true, y_pred, device, positive=1)
    a, b = r.slices
    assert (a.name, a.count, a.accuracy, a.precision, a.recall) == ("a", 4, 1.0, 1.0, 1.0)
    assert (b.name, b.count, b.accuracy, b.precision, b.recall, b.f1) == ("b", 4, 0.25, 0.0, 0.0, 0.0)
    assert r.overall.accuracy == 5 / 8 and r.worst().name == "b" and r.gap() == 0.75
    assert r.worst("recall").name == "b" and r.best("f1").name == "a"
    assert "worst slice by accuracy: b (0.250), gap 0.750" in str(r)


def test_overlapping_mask_slices_and_min_count():
    y_true = np.array([0, 1, 1, 0, 1])
    y_pred = np.array([0, 1, 0, 0, 0])
    r = slice_metrics(y_true, y_pred, {"first3": np.array([1, 1, 1, 0, 0], bool), "last1": np.array([0, 0, 0, 0, 1], bool),
                                       "none": np.zeros(5, bool)}, min_count=2)
    assert [s.count for s in r.slices] == [3, 1, 0]
    assert math.isnan(r.slices[2].accuracy)
    assert r.worst().name == "first3"  # 'last1' (accuracy 0) is too small to count
    assert "-" in r.format().splitlines()[4]


def test_slice_bad_input():
    with pytest.raises(ShapeError, match="rows"):
        slice_metrics([0, 1], [0, 1], [0])
    with pytest.raises(ShapeError, match="boolean mask"):
        slice_metrics([0, 1], [0, 1], {"a": np.array([1, 0])})
    with pytest.raises(DataError, match="NaN"):
        slice_metrics([0, 1], [0, 1], np.array([0.0, np.nan]))
    with pytest.raises(DataError, match="min_count"):
        slice_metrics([0, 1], [0, 1], [0, 1], min_count=5).worst()
    with pytest.raises(AttributeValueError, match="metric"):
        slice_metrics([0, 1], [0, 1], [0, 1]).worst("auc")


# ---------------------------------------------------------------- baselines


def test_majority_baseline():
    y = np.array([2, 2, 2, 0, 1])
    b = MajorityClassBaseline().fit(None, y)
    assert b.majority_ == 2 and b.predict(4).tolist() == [2, 2, 2, 2]
    assert b.score(np.zeros((5, 1)), y) == 0.6
    np.testing.assert_array_equal(b.predict_proba(np.zeros((2, 3))), [[0, 0, 1], [0, 0, 1]])


def test_stratified_baseline_accuracy_is_sum_of_squared_priors():
    rng = np.random.default_rng(0)
    priors = np.array([0.6, 0.3, 0.1])
    y = rng.choice(3, size=20000, p=priors)
    b = StratifiedBaseline(seed=1).fit(None, y)
    np.testing.assert_allclose(b.priors_, priors, atol=0.01)
    acc = b.score(y, y)
    assert abs(acc - np.sum(b.priors_ ** 2)) < 4 * math.sqrt(0.46 * 0.54 / y.size)
    np.testing.assert_allclose(b.predict_proba(3), np.tile(b.priors_, (3, 1)))
    np.testing.assert_array_equal(StratifiedBaseline(seed=1).fit(None, y).predict(50),
                                  StratifiedBaseline(seed=1).fit(None, y).predict(50))


def test_baseline_bad_input():
    with pytest.raises(AttributeValueError, match="not fitted"):
        MajorityClassBaseline().predict(3)
    with pytest.raises(ShapeError, match="rows"):
        MajorityClassBaseline().fit(np.zeros((3, 1)), [0, 1])
    with pytest.raises(DataError, match="empty"):
        StratifiedBaseline().fit(None, [])


# ---------------------------------------------------------------- behavioural tests


@pytest.fixture(scope="module")
def digits_model():
    d = load_digits(size=8, seed=0)
    model = LogisticRegression(max_iter=300).fit(d.x_train.reshape(len(d.x_train), -1), d.y_train)
    return d, model


def _flat(predict):
    return lambda x: predict(np.asarray(x).reshape(len(x), -1))


def test_invariance_under_small_noise_and_failure_under_inversion(digits_model):
    d, model = digits_model
    x = d.x_test
    predict = _flat(model.predict)
    same = invariance_test(predict, x, lambda v: v, name="identity")
    assert same.n_failed == 0 and same.passed() and same.examples == []
    noise = invariance_test(predict, x, lambda v: apply_shift(v, "noise", 0.02, seed=0), name="noise 0.02")
    inverted = invariance_test(predict, x, lambda v: apply_shift(v, "invert", None, seed=0), name="invert")
    assert noise.failure_rate < 0.05 < 0.5 < inverted.failure_rate
    direct = np.flatnonzero(predict(x) != predict(apply_shift(x, "invert", None, seed=0)))
    np.testing.assert_array_equal(inverted.failed, direct)
    assert len(inverted.examples) == 5 and inverted.examples[0]["index"] == direct[0]
    assert str(inverted).startswith(f"invariance test 'invert': {direct.size} of {len(x)} failed")
    # probabilities are compared by their argmax
    assert invariance_test(_flat(model.predict_proba), x, lambda v: v).n_failed == 0


def test_directional_expectation_on_a_linear_model(digits_model):
    d, model = digits_model
    x = d.x_test.reshape(len(d.x_test), -1)
    w = model.coef_[3] - model.coef_.mean(axis=0)  # pixels that speak for a 3
    logit3 = lambda v: model.decision_function(v)[:, 3]  # noqa: E731
    towards = directional_test(logit3, x, lambda v: v + 0.1 * np.sign(w), "increase", name="ink on 3-pixels")
    away = directional_test(logit3, x, lambda v: v - 0.1 * np.sign(w), "increase", name="ink off 3-pixels")
    # the 3-logit moves by 0.1 * sum|coef_3| minus the other classes' share: checked against the direct sign
    direct = np.flatnonzero(logit3(x + 0.1 * np.sign(w)) < logit3(x))
    np.testing.assert_array_equal(towards.failed, direct)
    assert away.failure_rate > towards.failure_rate
    assert directional_test(logit3, x, lambda v: v, "decrease").n_failed == 0
    tol = directional_test(logit3, x, lambda v: v - 0.1 * np.sign(w), "increase", tolerance=1e9)
    assert tol.n_failed == 0


def test_behaviour_bad_input():
    x = np.zeros((4, 2))
    with pytest.raises(ShapeError, match="one value per row"):
        invariance_test(lambda v: np.zeros(3), x, lambda v: v)
    with pytest.raises(ShapeError, match="keep every row"):
        invariance_test(lambda v: np.zeros(len(v)), x, lambda v: v[:2])
    with pytest.raises(AttributeValueError, match="direction"):
        directional_test(lambda v: np.zeros(len(v)), x, lambda v: v, "up")
    with pytest.raises(DataError, match="NaN"):
        directional_test(lambda v: np.full(len(v), np.nan), x, lambda v: v)
    with pytest.raises(DataError, match="no rows"):
        invariance_test(lambda v: v, np.zeros((0, 2)), lambda v: v)
