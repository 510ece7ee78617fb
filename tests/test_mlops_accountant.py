"""The RDP accountant against published epsilons, an independent quadrature, and its own algebra."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import strategies  # noqa: F401  (loads the hypothesis profile)
from tinyml_lab.errors import AttributeValueError, TinyMLError
from tinyml_lab.mlops.accountant import (RDPAccountant, compute_rdp, epsilon, epsilon_classic,
                                         epsilon_improved, log_a, log_a_integral, noise_multiplier_for,
                                         rdp_to_epsilon)

# The order grid of TensorFlow Privacy's MNIST tutorial (tutorials/mnist_dpsgd_tutorial.py, compute_epsilon).
TF_TUTORIAL_ORDERS = [1 + x / 10 for x in range(1, 100)] + list(range(12, 64))
# The order grid of TensorFlow Privacy's compute_dp_sgd_privacy_lib.compute_dp_sgd_privacy.
TF_LIB_ORDERS = [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5] + list(range(5, 64)) + [128, 256, 512]
# A short grid for the property tests (each example computes RDP at every order).
SOME_ORDERS = [1.25, 1.5, 2.0, 2.5, 3.0, 4.5, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 64.0, 256.0]


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


# --------------------------------------------------------------------------- published figures

def test_abadi_2016_moments_accountant():
    """Abadi et al. 2016 (abadi2016deep), Section 3.1: with q = L/N = 0.01, sigma = 4, delta = 1e-5 and
    T = 10,000 steps the moments accountant gives epsilon ~ 1.26. The moments accountant is the RDP
    accountant at integer orders (lambda = alpha - 1) with the classic conversion."""
    spent = epsilon(0.01, 4.0, 10_000, 1e-5, orders=range(2, 65))
    assert rel(spent.epsilon_classic, 1.26) < 0.01
    assert spent.epsilon < spent.epsilon_classic  # the improved conversion is tighter


@pytest.mark.parametrize("sigma, epochs, published", [
    (1.12, 60, 2.92),   # the default run, "Select Parameters" table row 1 and "Expected Output"
    (1.12, 1, 1.00),    # "Expected Output", after 1 epoch
    (1.12, 2, 1.04),    # "Expected Output", after 2 epochs
    (0.6, 30, 9.74),    # "Select Parameters" row 2
    (1.2, 10, 1.20),    # "Select Parameters" row 3
])
def test_tensorflow_privacy_mnist_tutorial(sigma, epochs, published):
    """TensorFlow Privacy, tutorials/README.md (tfprivacy2019): MNIST, 60,000 examples, batch 256
    (q = 256/60000), 60000 // 256 = 234 steps per epoch, delta = 1e-5, epsilon from the RDP accountant
    with the classic conversion over the tutorial's orders (1.1 ... 10.9, 12 ... 63). Two decimals published."""
    spent = epsilon(256 / 60000, sigma, 234 * epochs, 1e-5, orders=TF_TUTORIAL_ORDERS)
    assert rel(spent.epsilon_classic, published) < 0.01


@pytest.mark.parametrize("n, batch, sigma, epochs, delta, published, order", [
    (60000, 150, 1.3, 15, 1e-5, 0.7242234026109595, 19.0),
    (100000, 100, 1.0, 30, 1e-7, 1.4154988495444842, 13.0),
])
def test_tensorflow_privacy_compute_dp_sgd_privacy(n, batch, sigma, epochs, delta, published, order):
    """TensorFlow Privacy, tensorflow_privacy/privacy/analysis/compute_dp_sgd_privacy_test.py
    (tfprivacy2019): epsilon and optimal order of compute_dp_sgd_privacy, whose RDP accountant uses
    the improved conversion (Canonne, Kamath and Steinke 2020, Prop. 12), steps = ceil(epochs n / batch)."""
    steps = math.ceil(epochs * n / batch)
    spent = epsilon(batch / n, sigma, steps, delta, orders=TF_LIB_ORDERS)
    assert rel(spent.epsilon, published) < 1e-6
    assert spent.order == order


def test_rdp_values_published_by_tensorflow_privacy():
    """RDP (not epsilon) at integer and fractional orders, from TensorFlow Privacy's
    rdp_accountant_test.py (tfprivacy2019): compute_rdp(0.1, 2, 10, 5) = 0.07737 and
    compute_rdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100]) = [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307]."""
    assert compute_rdp(0.1, 2.0, 10, [5])[0] == pytest.approx(0.07737, abs=1e-5)
    got = compute_rdp(0.01, 2.5, 50, [1.5, 2.5, 5, 50, 100])
    np.testing.assert_allclose(got, [0.00065, 0.001085, 0.00218075, 0.023846, 167.416307], atol=1e-5)


# --------------------------------------------------------------------------- independent checks

@pytest.mark.parametrize("q, sigma, alpha", [
    (1e-4, 1.0, 1.5), (1e-3, 1.0, 2.0), (0.01, 10.0, 20.0), (0.1, 100.0, 20.5), (0.01, 2.5, 1.5),
    (0.3, 0.8, 3.7), (0.01, 1.1, 1.05), (256 / 60000, 1.12, 7.25), (0.5, 0.5, 2.5), (0.05, 2.0, 32.0),
    (0.02, 1.5, 11.3), (0.9, 3.0, 6.0),
])
def test_series_agree_with_quadrature(q, sigma, alpha):
    """The binomial sum (integer orders) and the erfc series (fractional orders) against the direct
    numerical integral of E_{N(0, sigma^2)}[(mu / mu0)^alpha], mu = (1-q) N(0, sigma^2) + q N(1, sigma^2)."""
    assert log_a(q, sigma, alpha) == pytest.approx(log_a_integral(q, sigma, alpha), rel=1e-7)


@given(q=st.floats(1e-4, 0.99), sigma=st.floats(0.5, 20.0), alpha=st.floats(1.05, 30.0))
def test_series_agree_with_quadrature_property(q, sigma, alpha):
    a, b = log_a(q, sigma, alpha), log_a_integral(q, sigma, alpha)
    assert a == pytest.approx(b, rel=1e-6, abs=1e-13)


def test_fractional_series_is_continuous_at_integer_orders():
    for alpha in (2.0, 3.0, 8.0):
        below, at, above = (log_a(0.02, 1.3, alpha + d) for d in (-1e-7, 0.0, 1e-7))
        assert below < at < above
        assert above - below == pytest.approx(2e-7 * (above - below) / 2e-7, rel=1e-3)
        assert at == pytest.approx(0.5 * (below + above), rel=1e-5)


def test_no_subsampling_is_the_gaussian_mechanism():
    """q = 1: RDP(alpha) = alpha / (2 sigma^2) (Mironov 2017, Prop. 7)."""
    orders = np.array([1.5, 2.0, 7.3, 64.0])
    np.testing.assert_allclose(compute_rdp(1.0, 2.0, 3, orders), 3 * orders / 8.0)


def test_improved_conversion_matches_the_exact_gaussian_curve():
    """The Gaussian mechanism with sigma = 4.530877117 is exactly (1, 1e-6)-DP (Balle and Wang 2018,
    Theorem 8); RDP with the improved conversion over a fine order grid comes within 1% of it, and never
    below it (RDP conversions are upper bounds)."""
    orders = np.arange(1.01, 60.0, 0.01)
    spent = rdp_to_epsilon(compute_rdp(1.0, 4.530877117, 1, orders), orders, 1e-6)
    assert 1.0 - 1e-9 <= spent.epsilon < 1.01
    assert spent.epsilon_classic > spent.epsilon


def test_composition_is_additive_and_the_accountant_mixes_rates():
    acc = RDPAccountant().step(0.01, 1.1, count=70).step(0.01, 1.1, count=30)
    np.testing.assert_allclose(acc.rdp_, compute_rdp(0.01, 1.1, 100))
    assert acc.get_epsilon(1e-5).epsilon == pytest.approx(epsilon(0.01, 1.1, 100, 1e-5).epsilon)
    mixed = RDPAccountant().step(0.01, 1.1, 10).step(0.05, 2.0, 5)
    np.testing.assert_allclose(mixed.rdp_, compute_rdp(0.01, 1.1, 10) + compute_rdp(0.05, 2.0, 5))
    assert mixed.steps_ == 15
    assert RDPAccountant().get_epsilon(1e-5).epsilon == 0.0


@given(q=st.floats(1e-4, 1.0), sigma=st.floats(0.5, 30.0), steps=st.integers(1, 100_000),
       delta=st.floats(1e-12, 0.5))
def test_improved_never_exceeds_classic(q, sigma, steps, delta):
    spent = epsilon(q, sigma, steps, delta, orders=SOME_ORDERS)
    assert spent.epsilon <= spent.epsilon_classic + 1e-12
    assert spent.order in SOME_ORDERS
    # and at every single order, not only at the optimum
    rdp = compute_rdp(q, sigma, steps, SOME_ORDERS)
    a = np.asarray(SOME_ORDERS)
    assert np.all(epsilon_improved(rdp, a, delta) <= epsilon_classic(rdp, a, delta) + 1e-12)


@given(q=st.floats(1e-3, 0.2), sigma=st.floats(0.5, 5.0), steps=st.integers(1, 5000))
def test_epsilon_grows_with_steps_and_falls_with_noise(q, sigma, steps):
    e = epsilon(q, sigma, steps, 1e-5, orders=SOME_ORDERS).epsilon
    assert epsilon(q, sigma, steps + 100, 1e-5, orders=SOME_ORDERS).epsilon >= e - 1e-12
    assert epsilon(q, sigma * 1.5, steps, 1e-5, orders=SOME_ORDERS).epsilon <= e + 1e-12


@pytest.mark.parametrize("classic", [False, True])
def test_noise_multiplier_inverts_epsilon(classic):
    sigma = noise_multiplier_for(1.0, q=256 / 60000, steps=234 * 10, delta=1e-5, classic=classic)
    spent = epsilon(256 / 60000, sigma, 234 * 10, 1e-5)
    got = spent.epsilon_classic if classic else spent.epsilon
    assert got <= 1.0
    below = epsilon(256 / 60000, sigma * 0.999, 234 * 10, 1e-5)
    assert (below.epsilon_classic if classic else below.epsilon) > 1.0 - 0.01
    # the published row (sigma = 1.2, 10 epochs, eps 1.20 classic) is consistent with the inverse
    assert noise_multiplier_for(1.1977, q=256 / 60000, steps=2340, delta=1e-5,
                                orders=TF_TUTORIAL_ORDERS, classic=True) == pytest.approx(1.2, rel=2e-3)


@pytest.mark.parametrize("kwargs, words", [
    (dict(q=0.0, sigma=1.0, steps=10, delta=1e-5), "sampling rate q"),
    (dict(q=1.5, sigma=1.0, steps=10, delta=1e-5), "sampling rate q"),
    (dict(q=0.01, sigma=0.0, steps=10, delta=1e-5), "noise multiplier"),
    (dict(q=0.01, sigma=-1.0, steps=10, delta=1e-5), "noise multiplier"),
    (dict(q=0.01, sigma=1.0, steps=0, delta=1e-5), "steps"),
    (dict(q=0.01, sigma=1.0, steps=2.5, delta=1e-5), "steps"),
    (dict(q=0.01, sigma=1.0, steps=10, delta=0.0), "delta"),
    (dict(q=0.01, sigma=1.0, steps=10, delta=1.0), "delta"),
    (dict(q=float("nan"), sigma=1.0, steps=10, delta=1e-5), "q"),
    (dict(q=0.01, sigma=1.0, steps=10, delta=1e-5, orders=[0.5, 2]), "orders"),
])
def test_bad_input_is_a_clear_error(kwargs, words):
    with pytest.raises(AttributeValueError, match=words):
        epsilon(**kwargs)


def test_bad_target_epsilon():
    with pytest.raises(TinyMLError, match="target_epsilon"):
        noise_multiplier_for(0.0, 0.01, 100, 1e-5)
    with pytest.raises(TinyMLError, match="rdp|RDP"):
        rdp_to_epsilon([0.1, 0.2], [2.0], 1e-5)
