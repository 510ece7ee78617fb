"""Permutation importance: a decisive feature matters, pure noise does not, the bookkeeping matches a direct loop."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from tinyml_lab.errors import AttributeValueError, DataError, ShapeError
from tinyml_lab.mlops import PermutationImportance, permutation_importance


pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture(scope="module")
def task():
    rng = np.random.default_rng(0)
    n = 1000
    x = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)])
    y = (2.0 * x[:, 0] + 0.5 * x[:, 2] > 0).astype(int)  # x0 decisive, x1 pure noise, x2 minor
    return x, y


def test_decisive_feature_matters_and_noise_does_not(task):
    x, y = task
    model = LogisticRegression().fit(x[:500], y[:500])
    pi = permutation_importance(model.predict, x[500:], y[500:], n_repeats=10, seed=0,
                                feature_names=["decisive", "noise", "minor"])
    assert pi.baseline > 0.95
    assert pi.mean[0] > 0.3
    assert abs(pi.mean[1]) < 0.01 and pi.std[1] < 0.01
    assert 0.01 < pi.mean[2] < pi.mean[0]
    assert pi.ranking() == ["decisive", "minor", "noise"]
    assert pi.format().splitlines()[2].startswith("decisive")


def test_a_feature_the_model_ignores_has_exactly_zero_importance(task):
    x, y = task
    pi = permutation_importance(lambda d: (d[:, 0] > 0).astype(int), x, y, n_repeats=3)
    np.testing.assert_array_equal(pi.importances[1:], 0.0)


def test_matches_a_direct_loop_with_the_documented_draws(task):
    x, y = task
    model = LogisticRegression().fit(x, y)

    def log_loss(y_true, proba):
        return -np.mean(np.log(proba[np.arange(y_true.size), y_true]))

    pi = permutation_importance(model.predict_proba, x, y, metric=log_loss, n_repeats=4, seed=7,
                                higher_is_better=False)
    rng = np.random.default_rng(7)
    base = log_loss(y, model.predict_proba(x))
    expected = np.zeros((3, 4))
    for j in range(3):
        for r in range(4):
            xp = x.copy()
            xp[:, j] = x[rng.permutation(len(x)), j]
            expected[j, r] = log_loss(y, model.predict_proba(xp)) - base
    np.testing.assert_allclose(pi.importances, expected, rtol=1e-12)
    assert pi.baseline == pytest.approx(base)
    assert (pi.mean[[0, 2]] > 0).all()  # a loss that rises when shuffled: positive importance


def test_seeded(task):
    x, y = task
    f = LogisticRegression().fit(x, y).predict
    a = permutation_importance(f, x, y, seed=3)
    b = permutation_importance(f, x, y, seed=3)
    c = permutation_importance(f, x, y, seed=4)
    np.testing.assert_array_equal(a.importances, b.importances)
    assert not np.array_equal(a.importances, c.importances)
    assert isinstance(a, PermutationImportance)


def test_bad_input(task):
    x, y = task
    f = lambda d: np.zeros(len(d))  # noqa: E731
    with pytest.raises(ShapeError, match="rows"):
        permutation_importance(f, x, y[:10])
    with pytest.raises(DataError, match="NaN"):
        permutation_importance(f, np.full((3, 2), np.nan), [0, 1, 0])
    with pytest.raises(AttributeValueError, match="n_repeats"):
        permutation_importance(f, x, y, n_repeats=0)
    with pytest.raises(ShapeError, match="names"):
        permutation_importance(f, x, y, feature_names=["a"])
    with pytest.raises(DataError, match="finite"):
        permutation_importance(f, x, y, metric=lambda a, b: float("nan"))
    with pytest.raises(DataError, match="empty"):
        permutation_importance(f, np.zeros((0, 2)), [])
