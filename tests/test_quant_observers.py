"""Observers: the verbs, the exact merging histogram, and what each range rule chooses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import seeds
from tinyml_lab.errors import AttributeValueError, DataError, QuantizationError
from tinyml_lab.quant import activation_quant, affine_params, make_observer
from tinyml_lab.quant.observers import (
    METHODS,
    Histogram,
    KLObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    affine_arrays,
    kl_divergence,
    real_range,
)


def test_every_method_has_an_observer_and_fit_returns_it():
    x = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    for m in METHODS:
        obs = make_observer(m)
        assert obs.fit(x) is obs
        lo, hi = obs.range_
        assert x.min() - 1e-6 <= lo <= 0 <= hi <= x.max() + 1e-6
        assert obs.quant_params().scale.size == 1


def test_minmax_over_batches_equals_minmax_of_all():
    rng = np.random.default_rng(1)
    batches = [rng.standard_normal((4, 3, 3, 2)) * (i + 1) for i in range(3)]
    obs = MinMaxObserver().fit(batches)
    allx = np.concatenate(batches)
    assert obs.range_ == (allx.min(), allx.max())
    per_channel = MinMaxObserver(axis=-1).fit(batches)
    np.testing.assert_array_equal(per_channel.range_[1], allx.max(axis=(0, 1, 2)))
    assert obs.n_batches_ == 3


def test_moving_average_follows_the_formula():
    a, b = np.array([[-1.0, 1.0]]), np.array([[-3.0, 5.0]])
    obs = MovingAverageMinMaxObserver(averaging_constant=0.25).fit([a, b])
    assert obs.range_ == pytest.approx((-1.0 + 0.25 * (-3.0 + 1.0), 1.0 + 0.25 * (5.0 - 1.0)))
    assert MovingAverageMinMaxObserver().fit(a).range_ == MinMaxObserver().fit(a).range_


@given(seeds, st.integers(1, 5), st.floats(0.01, 1000.0))
def test_histogram_merging_is_exact(seed, n_batches, spread):
    """Counts after any number of widenings equal a direct histogram at the final width."""
    rng = np.random.default_rng(seed)
    batches = [rng.standard_normal(200) * spread * (k + 1) + k for k in range(n_batches)]
    h = Histogram(64)
    for b in batches:
        h.add(b)
    allx = np.concatenate(batches)
    assert h.total == allx.size
    assert h.counts_.size <= 64 + 1
    assert (h.min_, h.max_) == (allx.min(), allx.max())
    k = np.floor(allx / h.width_).astype(np.int64) - h.start_
    np.testing.assert_array_equal(np.bincount(k, minlength=h.counts_.size), h.counts_)
    assert math.log2(h.width_) == int(math.log2(h.width_))


def test_histogram_magnitudes_fold_negative_bins():
    x = np.array([-2.5, -0.5, 0.0, 0.25, 2.0])
    h = Histogram(16).add(x)
    counts, w = h.magnitudes()
    k = np.floor(x / w).astype(int)
    np.testing.assert_array_equal(np.bincount(np.where(k >= 0, k, -k - 1), minlength=counts.size), counts)
    assert h.magnitudes(drop_zeros=True)[0].sum() == 4


def test_percentile_clips_the_tails_only():
    x = np.concatenate([np.linspace(0, 1, 10000), [50.0]])
    assert PercentileObserver(percentile=100).fit(x).range_[1] == 50.0
    lo, hi = PercentileObserver(percentile=99.9).fit(x).range_
    assert lo == 0.0 and 0.99 <= hi <= 1.01


def test_mse_range_beats_the_full_range():
    x = np.random.default_rng(2).laplace(size=20000)
    obs = MSEObserver().fit(x)
    alphas, err = obs.errors()
    assert err.min() <= err[-1]
    lo, hi = obs.range_
    assert x.min() < lo < 0 < hi < x.max()  # heavy tails: clipping wins


def test_vectorized_affine_params_match_the_scalar_rule():
    lo = np.array([-3.0, 0.0, -1e-3, 0.0, -5.0])
    hi = np.array([2.0, 6.0, 1e-3, 0.0, -1.0])
    for bits in (8, 4):
        s, z = affine_arrays(lo, hi, bits)
        for i in range(lo.size):
            q = affine_params(lo[i], hi[i], bits)
            assert s[i] == float(q.scale[0]) and z[i] == int(q.zero_point[0])


def test_kl_threshold_clips_outliers_but_not_a_uniform_tensor():
    rng = np.random.default_rng(3)
    gauss = np.concatenate([np.abs(rng.standard_normal(50000)), [40.0]])
    lo, hi = KLObserver().fit(gauss).range_
    assert lo == gauss.min() and hi < 10.0
    uni = rng.random(50000) * 4
    assert KLObserver().fit(uni).range_[1] > 3.5
    assert kl_divergence(np.array([1.0, 1.0]), np.array([1.0, 1.0])) == 0.0


def test_eight_bit_affine_params_are_the_converters():
    for lo, hi in [(-1.0, 3.0), (0.0, 6.0), (-0.5, 0.0), (0.0, 0.0)]:
        assert affine_params(lo, hi) == activation_quant(lo, hi)
        q = affine_params(lo, hi)
        r_lo, r_hi = real_range(q)
        assert r_lo <= min(lo, 0) + 1e-6 and r_hi >= max(hi, 0) - float(q.scale[0])
    q = affine_params(-2.0, 1.0, 4, symmetric=True)
    assert int(q.zero_point[0]) == 0 and float(q.scale[0]) == pytest.approx(2.0 / 7)


@pytest.mark.parametrize("bad", [np.array([1.0, np.nan]), np.array([np.inf]), np.zeros((0, 3))])
def test_bad_batches_are_refused(bad):
    for m in METHODS:
        with pytest.raises(DataError):
            make_observer(m).fit(bad)


def test_bad_parameters_are_refused():
    with pytest.raises(AttributeValueError, match="unknown calibration method"):
        make_observer("median")
    with pytest.raises(QuantizationError, match="2 to 8"):
        MinMaxObserver(bits=9)
    with pytest.raises(AttributeValueError):
        PercentileObserver(percentile=30)
    with pytest.raises(AttributeValueError):
        MovingAverageMinMaxObserver(averaging_constant=0)
    with pytest.raises(DataError, match="no data"):
        MinMaxObserver().range_
    with pytest.raises(DataError, match="no batches"):
        MinMaxObserver().fit([])
