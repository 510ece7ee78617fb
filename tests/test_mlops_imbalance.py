"""Class imbalance: class weights, re-sampling, SMOTE geometry, focal loss and its gradient."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from strategies import seeds
from tinyml_lab.errors import AttributeValueError, DataError, ShapeError
from tinyml_lab.mlops import (
    class_weights,
    focal_loss,
    focal_loss_grad,
    random_oversample,
    random_undersample,
    sample_weights,
    smote,
)

# ---------------------------------------------------------------- class weights


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def test_inverse_frequency_weights_by_hand():
    y = np.repeat([0, 1], [90, 10])
    np.testing.assert_allclose(class_weights(y), [100 / (2 * 90), 100 / (2 * 10)])
    np.testing.assert_allclose(sample_weights(y, class_weights(y))[[0, -1]], [100 / 180, 5.0])
    # every class then carries the same total weight
    w = sample_weights(y, class_weights(y))
    assert w[y == 0].sum() == pytest.approx(w[y == 1].sum())


def test_effective_number_weights():
    y = np.repeat([0, 1, 2], [1000, 100, 10])
    beta = 0.99
    e = (1 - beta ** np.array([1000, 100, 10])) / (1 - beta)
    expected = (1 / e) * 1110 / np.sum(np.array([1000, 100, 10]) / e)
    np.testing.assert_allclose(class_weights(y, "effective", beta=beta), expected)
    # beta = 0: every class counts as one sample, equal weights; beta -> 1: inverse frequency
    np.testing.assert_allclose(class_weights(y, "effective", beta=0.0), [1, 1, 1])
    np.testing.assert_allclose(class_weights(y, "effective", beta=0.0), class_weights(y, "effective", beta=1e-12))
    np.testing.assert_allclose(class_weights(y, "effective", beta=1 - 1e-9), class_weights(y), rtol=1e-5)
    # between the two extremes the ratio of rare to common weight is between 1 and 100
    w = class_weights(y, "effective", beta=0.999)
    assert 1 < w[2] / w[0] < 100


def test_missing_class_gets_zero_weight():
    w = class_weights(np.array([0, 0, 2]), n_classes=4)
    np.testing.assert_allclose(w, [3 / 4, 0, 3 / 2, 0])


def test_class_weights_raise_minority_recall():
    rng = np.random.default_rng(0)
    n0, n1 = 1900, 100
    x = np.concatenate([rng.normal(0, 1, (n0, 2)), rng.normal(1.5, 1, (n1, 2))])
    y = np.repeat([0, 1], [n0, n1])
    plain = LogisticRegression().fit(x, y)
    weighted = LogisticRegression().fit(x, y, sample_weight=sample_weights(y, class_weights(y)))
    recall = lambda m: np.mean(m.predict(x[y == 1]) == 1)  # noqa: E731
    assert recall(weighted) > recall(plain) + 0.3


def test_class_weights_bad_input():
    with pytest.raises(AttributeValueError, match="beta"):
        class_weights([0, 1], "effective", beta=1.0)
    with pytest.raises(AttributeValueError, match="method"):
        class_weights([0, 1], "sqrt")
    with pytest.raises(DataError, match="negative"):
        class_weights([0, -1])
    with pytest.raises(DataError, match="empty"):
        class_weights([])
    with pytest.raises(DataError, match="n_classes=2"):
        class_weights([0, 2], n_classes=2)
    with pytest.raises(ShapeError, match="only 2 class weights"):
        sample_weights([0, 2], [1.0, 1.0])
    with pytest.raises(DataError, match="non-negative"):
        sample_weights([0, 1], [1.0, -1.0])


# ---------------------------------------------------------------- re-sampling


@given(seed=seeds, counts=st.lists(st.integers(2, 40), min_size=2, max_size=4), ratio=st.floats(0.2, 1.0))
def test_resampling_reaches_the_ratio(seed, counts, ratio):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(counts)), counts)
    x = rng.normal(size=(y.size, 3))
    xo, yo = random_oversample(x, y, ratio=ratio, seed=seed)
    co = np.bincount(yo)
    assert co.min() >= np.ceil(ratio * max(counts) - 1e-9) and co.max() == max(counts)
    # the originals are kept, the extras are copies of rows of the same class
    np.testing.assert_array_equal(xo[: y.size], x)
    for row, label in zip(xo[y.size:], yo[y.size:]):
        assert any(np.array_equal(row, r) for r in x[y == label])
    xu, yu = random_undersample(x, y, ratio=ratio, seed=seed)
    cu = np.bincount(yu)
    assert cu.min() == min(counts) and cu.max() <= np.floor(min(counts) / ratio + 1e-9)
    for row, label in zip(xu, yu):
        assert any(np.array_equal(row, r) for r in x[y == label])


def test_smote_points_lie_between_same_class_neighbours():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], [60, 8])
    x = np.concatenate([rng.normal(0, 1, (60, 2)), rng.normal(4, 1, (8, 2))])
    xs, ys = smote(x, y, k_neighbors=3, seed=0)
    assert np.bincount(ys).tolist() == [60, 60]
    np.testing.assert_array_equal(xs[:68], x)
    minority = x[y == 1]
    d2 = np.sum((minority[:, None] - minority[None]) ** 2, axis=2)
    np.fill_diagonal(d2, np.inf)
    near = np.argsort(d2, axis=1)[:, :3]
    for p in xs[68:]:
        # distance from p to the nearest segment (i, j), j among i's 3 nearest neighbours
        best = np.inf
        for i in range(8):
            for j in near[i]:
                a, b = minority[i], minority[j]
                t = np.clip(np.dot(p - a, b - a) / np.dot(b - a, b - a), 0, 1)
                best = min(best, np.linalg.norm(p - (a + t * (b - a))))
        assert best < 1e-9
    np.testing.assert_array_equal(xs, smote(x, y, k_neighbors=3, seed=0)[0])


def test_resampling_bad_input():
    x, y = np.zeros((4, 2)), np.array([0, 0, 0, 1])
    with pytest.raises(AttributeValueError, match="ratio"):
        random_oversample(x, y, ratio=0)
    with pytest.raises(ShapeError, match="rows"):
        random_undersample(x, y[:3])
    with pytest.raises(DataError, match="single row"):
        smote(x, y)
    with pytest.raises(DataError, match="NaN"):
        random_oversample(np.full((4, 2), np.nan), y)


# ---------------------------------------------------------------- focal loss


def _cross_entropy(z, y):
    s = z - z.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    return -logp[np.arange(y.size), y]


@given(seed=seeds, n=st.integers(1, 8), k=st.integers(2, 5), gamma=st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0]),
       weighted=st.booleans(), reduction=st.sampled_from(["mean", "sum"]))
def test_focal_gradient_matches_finite_differences(seed, n, k, gamma, weighted, reduction):
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 2, (n, k))
    y = rng.integers(0, k, n)
    alpha = rng.uniform(0.2, 2.0, k) if weighted else None
    g = focal_loss_grad(z, y, gamma, alpha, reduction)
    h = 1e-6
    fd = np.zeros_like(z)
    for i in range(n):
        for j in range(k):
            zp, zm = z.copy(), z.copy()
            zp[i, j] += h
            zm[i, j] -= h
            fd[i, j] = (focal_loss(zp, y, gamma, alpha, reduction) - focal_loss(zm, y, gamma, alpha, reduction)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-7)


def test_focal_loss_at_gamma_zero_is_cross_entropy():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(20, 4))
    y = rng.integers(0, 4, 20)
    ce = _cross_entropy(z, y)
    np.testing.assert_allclose(focal_loss(z, y, gamma=0, reduction="none"), ce)
    assert focal_loss(z, y, gamma=0) == pytest.approx(ce.mean())
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(focal_loss_grad(z, y, gamma=0, reduction="none"), p - onehot, atol=1e-12)
    alpha = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(focal_loss(z, y, gamma=0, alpha=alpha, reduction="none"), alpha[y] * ce)


def test_focal_loss_down_weights_easy_examples():
    z = np.array([[4.0, 0.0], [0.2, 0.0]])  # an easy and a hard example of class 0
    y = np.array([0, 0])
    ce = _cross_entropy(z, y)
    fl = focal_loss(z, y, gamma=2.0, reduction="none")
    assert (fl <= ce).all()
    assert fl[0] / ce[0] < 0.001 < 0.2 < fl[1] / ce[1]


def test_focal_gradient_is_finite_at_certainty():
    z = np.array([[800.0, 0.0, 0.0]])  # p_y rounds to exactly 1
    for gamma in (0.0, 0.5, 2.0):
        g = focal_loss_grad(z, np.array([0]), gamma)
        assert np.isfinite(g).all() and np.abs(g).max() < 1e-12
    assert focal_loss(z, np.array([0]), 0.5) == 0.0


def test_focal_loss_bad_input():
    z = np.zeros((2, 3))
    with pytest.raises(AttributeValueError, match="gamma"):
        focal_loss(z, [0, 1], gamma=-1)
    with pytest.raises(DataError, match="class 3"):
        focal_loss(z, [0, 3])
    with pytest.raises(ShapeError, match="rows"):
        focal_loss_grad(z, [0])
    with pytest.raises(ShapeError, match="alpha"):
        focal_loss(z, [0, 1], alpha=[1.0, 2.0])
    with pytest.raises(DataError, match="NaN"):
        focal_loss(np.array([[np.nan, 0.0]]), [0])
    with pytest.raises(AttributeValueError, match="reduction"):
        focal_loss(z, [0, 1], reduction="avg")
