"""Sampling: exact class proportions, uniform reservoir inclusion, weighted frequencies, importance estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from strategies import seeds
from tinyml_lab.errors import AttributeValueError, DataError, ShapeError, TinyMLError
from tinyml_lab.mlops import (
    Reservoir,
    allocate_largest_remainder,
    effective_sample_size,
    importance_sampling,
    reservoir_sample,
    simple_random_sample,
    stratified_sample,
    stratified_split,
    weighted_sample,
)


# ---------------------------------------------------------------- simple random


def test_simple_random_sample_is_a_sorted_subset_and_seeded():
    a = simple_random_sample(100, 10, seed=3)
    assert a.shape == (10,) and np.unique(a).size == 10 and (np.diff(a) > 0).all()
    assert a.min() >= 0 and a.max() < 100
    np.testing.assert_array_equal(a, simple_random_sample(100, 10, seed=3))
    assert not np.array_equal(a, simple_random_sample(100, 10, seed=4))


def test_simple_random_sample_inclusion_is_uniform():
    n, k, runs = 12, 4, 3000
    hits = np.zeros(n)
    for s in range(runs):
        hits[simple_random_sample(n, k, seed=s)] += 1
    assert stats.chisquare(hits).pvalue > 1e-3


def test_simple_random_sample_rejects_k_above_n():
    with pytest.raises(AttributeValueError, match="k=11"):
        simple_random_sample(10, 11)
    assert simple_random_sample(10, 11, replace=True).shape == (11,)


# ---------------------------------------------------------------- stratified


@given(counts=st.lists(st.integers(0, 40), min_size=1, max_size=8).filter(lambda c: sum(c) > 0), data=st.data())
def test_largest_remainder_stays_within_one_of_the_quota(counts, data):
    k = data.draw(st.integers(0, sum(counts)))
    a = allocate_largest_remainder(np.array(counts), k)
    q = k * np.array(counts) / sum(counts)
    assert a.sum() == k
    assert (a >= np.floor(q) - 1e-9).all() and (a <= np.ceil(q) + 1e-9).all()
    assert (a <= np.array(counts)).all()


def test_largest_remainder_worked_example():
    # quotas 10 * (5, 3, 2) / 10 = (5, 3, 2) exact; 7 * (5, 3, 2) / 10 = (3.5, 2.1, 1.4) -> (4, 2, 1)
    np.testing.assert_array_equal(allocate_largest_remainder(np.array([5, 3, 2]), 10), [5, 3, 2])
    np.testing.assert_array_equal(allocate_largest_remainder(np.array([5, 3, 2]), 7), [4, 2, 1])
    # ties go to the lower index: quotas (1.5, 1.5) for k=3
    np.testing.assert_array_equal(allocate_largest_remainder(np.array([2, 2]), 3), [2, 1])


@given(seed=seeds, n_classes=st.integers(2, 6), n=st.integers(20, 300), frac=st.floats(0.05, 0.95))
def test_stratified_sample_keeps_class_proportions(seed, n_classes, n, frac):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    idx = stratified_sample(y, fraction=frac, seed=seed)
    k = int(math.floor(frac * n + 0.5))
    assert idx.size == k and np.unique(idx).size == k
    classes, counts = np.unique(y, return_counts=True)
    expected = allocate_largest_remainder(counts, k)
    got = np.array([(y[idx] == c).sum() for c in classes])
    np.testing.assert_array_equal(got, expected)


def test_stratified_sample_accepts_string_labels_and_is_seeded():
    y = np.array(["cat"] * 30 + ["dog"] * 10)
    idx = stratified_sample(y, k=8, seed=1)
    assert (y[idx] == "cat").sum() == 6 and (y[idx] == "dog").sum() == 2
    np.testing.assert_array_equal(idx, stratified_sample(y, k=8, seed=1))


def test_stratified_split_is_a_partition_with_equal_proportions():
    y = np.repeat([0, 1, 2], [600, 300, 100])
    train, test = stratified_split(y, test_fraction=0.2, seed=0)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(y.size))
    np.testing.assert_array_equal(np.bincount(y[test]), [120, 60, 20])
    np.testing.assert_array_equal(np.bincount(y[train]), [480, 240, 80])


def test_stratified_sample_bad_input():
    with pytest.raises(AttributeValueError, match="exactly one"):
        stratified_sample([0, 1], k=1, fraction=0.5)
    with pytest.raises(AttributeValueError, match="k=5"):
        stratified_sample([0, 1, 1], k=5)
    with pytest.raises(DataError, match="empty"):
        stratified_sample([], k=1)
    with pytest.raises(DataError, match="NaN"):
        stratified_sample([0.0, np.nan], k=1)
    with pytest.raises(ShapeError):
        stratified_sample(np.zeros((3, 2)), k=1)


# ---------------------------------------------------------------- weighted


def test_weighted_sample_frequencies_match_weights():
    w = np.array([1.0, 2.0, 3.0, 0.0, 4.0])
    draws = weighted_sample(w, 20000, seed=0)
    counts = np.bincount(draws, minlength=5)
    assert counts[3] == 0
    expected = 20000 * w[w > 0] / w.sum()
    assert stats.chisquare(counts[w > 0], expected).pvalue > 1e-3


def test_weighted_sample_without_replacement_matches_successive_draws():
    # P(first pick = i) = w_i / sum(w), so with k=1 the frequencies follow the weights
    w = np.array([1.0, 3.0, 6.0])
    firsts = np.array([weighted_sample(w, 1, seed=s, replace=False)[0] for s in range(4000)])
    assert stats.chisquare(np.bincount(firsts, minlength=3), 4000 * w / w.sum()).pvalue > 1e-3
    # k=2 of 3: item 0 is left out with probability P(0 not drawn) = sum over orders
    pairs = [tuple(weighted_sample(w, 2, seed=s, replace=False)) for s in range(4000)]
    p_without0 = (3 / 10) * (6 / 7) + (6 / 10) * (3 / 4)
    observed = sum(p == (1, 2) for p in pairs) / 4000
    assert abs(observed - p_without0) < 4 * math.sqrt(p_without0 * (1 - p_without0) / 4000)


def test_weighted_sample_bad_input():
    with pytest.raises(DataError, match="negative"):
        weighted_sample([1.0, -0.5], 1)
    with pytest.raises(DataError, match="all zero"):
        weighted_sample([0.0, 0.0], 1)
    with pytest.raises(DataError, match="NaN"):
        weighted_sample([1.0, np.nan], 1)
    with pytest.raises(AttributeValueError, match="positive weight"):
        weighted_sample([1.0, 0.0, 2.0], 3, replace=False)


# ---------------------------------------------------------------- reservoir


@pytest.mark.parametrize("method", ["R", "L"])
def test_reservoir_inclusion_probability_is_k_over_n(method):
    n, k, runs = 30, 5, 3000
    hits = np.zeros(n)
    for s in range(runs):
        sample = reservoir_sample(range(n), k, seed=s, method=method)
        assert len(sample) == k and len(set(sample)) == k
        hits[sample] += 1
    # each item is kept with probability k/n: expected runs * k / n hits each
    assert stats.chisquare(hits, np.full(n, runs * k / n)).pvalue > 1e-3


@pytest.mark.parametrize("method", ["R", "L"])
def test_reservoir_pairs_are_uniform(method):
    # every k-subset equally likely: with n=5, k=2 all 10 pairs appear equally often
    counts: dict[tuple[int, int], int] = {}
    for s in range(3000):
        pair = tuple(sorted(reservoir_sample(range(5), 2, seed=s, method=method)))
        counts[pair] = counts.get(pair, 0) + 1
    assert len(counts) == 10
    assert stats.chisquare(list(counts.values())).pvalue > 1e-3


def test_reservoir_add_and_extend_agree_and_are_seeded():
    for method in ("R", "L"):
        a = Reservoir(7, seed=11, method=method)
        for i in range(500):
            a.add(i)
        b = Reservoir(7, seed=11, method=method).extend(iter(range(500)))
        assert a.items == b.items and a.n_seen == b.n_seen == 500
        assert a.items == reservoir_sample(range(500), 7, seed=11, method=method)


def test_reservoir_l_draws_far_fewer_random_numbers():
    n, k = 100_000, 10
    r = Reservoir(k, seed=0, method="R").extend(range(n))
    l_ = Reservoir(k, seed=0, method="L").extend(range(n))
    assert r.n_random == n - k
    # Algorithm L needs about k (1 + log(n/k)) skips, each with a few random numbers
    assert l_.n_random < 5 * k * (1 + math.log(n / k))


def test_reservoir_short_stream():
    r = Reservoir(5).extend([1, 2, 3])
    assert r.items == [1, 2, 3] and len(r) == 3
    with pytest.raises(DataError, match="only 3"):
        reservoir_sample([1, 2, 3], 5)
    with pytest.raises(AttributeValueError, match="method"):
        Reservoir(2, method="X")
    with pytest.raises(AttributeValueError, match="k must"):
        Reservoir(0)


# ---------------------------------------------------------------- importance sampling


def _normal_logpdf(mu, sigma):
    return lambda x: stats.norm.logpdf(x, mu, sigma)


def test_importance_sampling_plain_estimator_is_unbiased():
    # target N(1, 1), proposal N(0, 2^2): E_p[X^2] = 1 + 1 = 2
    estimates = []
    for s in range(400):
        x = np.random.default_rng(s).normal(0.0, 2.0, size=200)
        e = importance_sampling(x, lambda v: v ** 2, _normal_logpdf(1, 1), _normal_logpdf(0, 2), self_normalized=False)
        estimates.append(e.value)
    estimates = np.array(estimates)
    se = estimates.std(ddof=1) / math.sqrt(estimates.size)
    assert abs(estimates.mean() - 2.0) < 4 * se


def test_importance_sampling_self_normalised_is_consistent_and_needs_no_constant():
    def error(n):
        errs = []
        for s in range(30):
            x = np.random.default_rng(s).normal(0.0, 2.0, size=n)
            # unnormalised target: the constant of N(1, 1) dropped
            e = importance_sampling(x, lambda v: v, lambda v: -0.5 * (v - 1) ** 2, _normal_logpdf(0, 2))
            errs.append(e.value - 1.0)
        return float(np.sqrt(np.mean(np.square(errs))))

    small, large = error(100), error(10_000)
    assert large < small / 4
    assert large < 0.03


def test_importance_sampling_ess():
    x = np.random.default_rng(0).normal(size=500)
    same = importance_sampling(x, lambda v: v, _normal_logpdf(0, 1), _normal_logpdf(0, 1))
    assert same.ess == pytest.approx(500)
    np.testing.assert_allclose(same.weights, 1 / 500)
    far = importance_sampling(x, lambda v: v, _normal_logpdf(3, 0.5), _normal_logpdf(0, 1))
    assert far.ess < 50
    assert effective_sample_size(np.array([1.0, 0.0, 0.0])) == 1.0
    assert effective_sample_size(np.ones(8)) == pytest.approx(8)


def test_importance_sampling_bad_input():
    x = np.array([0.0, 1.0])
    with pytest.raises(ShapeError, match="one value per sample"):
        importance_sampling(x, lambda v: v, lambda v: v[:1], lambda v: v)
    with pytest.raises(DataError, match="NaN"):
        importance_sampling(np.array([0.0, np.nan]), lambda v: v, lambda v: v, lambda v: v)
    with pytest.raises(DataError, match="proposal"):
        importance_sampling(x, lambda v: v, lambda v: v, np.array([0.0, -np.inf]))
    with pytest.raises(DataError, match="cover"):
        importance_sampling(x, lambda v: v, np.full(2, -np.inf), np.zeros(2))
    with pytest.raises(TinyMLError, match="empty"):
        importance_sampling(np.array([]), lambda v: v, lambda v: v, lambda v: v)
