"""Queueing at model replicas: Erlang C against its textbook definition, the response-time tail against
numerical integration, the formulas against the simulator, capacity planning, and the errors on bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from strategies import seeds  # also loads the "ci" hypothesis profile
from tinyml_lab.errors import AttributeValueError, DataError, ShapeError
from tinyml_lab.mlops.queueing import erlang_c, mmc, poisson_arrivals, replicas_for, simulate


def erlang_c_by_definition(c: int, a: float) -> float:
    """$C = \\frac{a^c}{c!} \\frac{c}{c-a} / (\\sum_{k<c} a^k/k! + \\frac{a^c}{c!} \\frac{c}{c-a})$."""
    top = a ** c / math.factorial(c) * c / (c - a)
    return top / (sum(a ** k / math.factorial(k) for k in range(c)) + top)


@given(c=st.integers(1, 30), fraction=st.floats(0.01, 0.99))
def test_erlang_c_matches_its_definition(c, fraction):
    a = fraction * c
    assert erlang_c(c, a) == pytest.approx(erlang_c_by_definition(c, a), rel=1e-9, abs=1e-15)


def test_one_replica_is_the_exponential_queue():
    q = mmc(80.0, 100.0)
    assert q.wait_probability == pytest.approx(0.8)          # Erlang C with c = 1 is rho
    assert q.mean_response == pytest.approx(1 / (100 - 80))
    assert q.mean_in_system == pytest.approx(0.8 / 0.2)        # rho / (1 - rho), via Little's law
    for p in (0.5, 0.9, 0.99):                                 # R ~ Exp(mu - lambda)
        assert q.response_quantile(p) == pytest.approx(-math.log(1 - p) / 20, rel=1e-9)


@given(c=st.integers(1, 8), rho=st.floats(0.05, 0.95), t=st.floats(0.0, 3.0))
def test_response_tail_is_the_convolution_of_wait_and_service(c, rho, t):
    mu = 2.0
    q = mmc(rho * c * mu, mu, c)
    theta = c * mu - q.arrival_rate
    # P(W + S > t) = P(S > t) + integral_0^t f_S(s) P(W > t - s) ds
    tail, _ = integrate.quad(lambda s: mu * math.exp(-mu * s) * q.wait_probability * math.exp(-theta * (t - s)), 0, t)
    assert q.response_tail(t) == pytest.approx(math.exp(-mu * t) + tail, rel=1e-6, abs=1e-12)


@given(c=st.integers(1, 6), rho=st.floats(0.1, 0.9), p=st.floats(0.5, 0.999))
def test_quantiles_invert_the_tails(c, rho, p):
    q = mmc(rho * c * 5.0, 5.0, c)
    assert q.response_tail(q.response_quantile(p)) == pytest.approx(1 - p, rel=1e-6)
    w = q.wait_quantile(p)
    assert w == 0.0 if 1 - p >= q.wait_probability else q.wait_tail(w) == pytest.approx(1 - p, rel=1e-9)


@pytest.mark.parametrize("c", [1, 3])
def test_formulas_agree_with_the_simulator(c):
    mu, rho, n = 10.0, 0.5, 100_000
    q = mmc(rho * c * mu, mu, c)
    arrivals = poisson_arrivals(q.arrival_rate, n, seed=1)
    sim = simulate(arrivals, np.random.default_rng(2).exponential(1 / mu, n), c)
    assert sim.mean_response == pytest.approx(q.mean_response, rel=0.03)
    assert sim.quantile(0.99) == pytest.approx(q.response_quantile(0.99), rel=0.05)
    assert np.mean(sim.waits > 0) == pytest.approx(q.wait_probability, abs=0.01)
    assert sim.busy_fraction == pytest.approx(rho, rel=0.02)


def test_poisson_arrivals_are_seeded_and_exponentially_spaced():
    a = poisson_arrivals(50.0, 20_000, seed=3)
    assert np.array_equal(a, poisson_arrivals(50.0, 20_000, seed=3))
    assert not np.array_equal(a, poisson_arrivals(50.0, 20_000, seed=4))
    gaps = np.diff(np.concatenate([[0.0], a]))
    assert stats.kstest(gaps, "expon", args=(0, 1 / 50.0)).pvalue > 0.001


@given(seed=seeds, c=st.integers(1, 4), n=st.integers(1, 60))
def test_simulator_against_a_plain_loop(seed, c, n):
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0, n))
    service = rng.exponential(1.5, n)
    sim = simulate(arrivals, service, c)
    free = [arrivals[0]] * c                     # replica k is free from free[k]
    for i in range(n):
        k = min(range(c), key=lambda j: free[j])
        start = max(arrivals[i], free[k])
        assert sim.waits[i] == pytest.approx(start - arrivals[i], abs=1e-12)
        free[k] = start + service[i]
    assert (sim.waits >= 0).all() and np.allclose(sim.responses, sim.waits + service)


def test_no_waiting_with_a_replica_per_request():
    arrivals = np.zeros(5)
    sim = simulate(arrivals, np.ones(5), servers=5)
    assert (sim.waits == 0).all()
    assert simulate(arrivals, np.ones(5), servers=1).waits.tolist() == [0, 1, 2, 3, 4]


def test_replicas_for_is_the_smallest_that_meets_the_target():
    lam, mu, target = 900.0, 100.0, 0.06
    c = replicas_for(lam, mu, target, 0.99)
    assert mmc(lam, mu, c).response_quantile(0.99) <= target
    assert c - 1 <= lam / mu or mmc(lam, mu, c - 1).response_quantile(0.99) > target
    assert replicas_for(2 * lam, mu, target) > c            # more load, more replicas
    assert replicas_for(lam, mu, 2 * target) < c            # a looser target, fewer


def test_errors_name_the_problem():
    with pytest.raises(AttributeValueError, match="at least 9 replicas"):
        mmc(800.0, 100.0, servers=8)
    with pytest.raises(AttributeValueError, match="positive finite"):
        mmc(-1.0, 100.0)
    with pytest.raises(AttributeValueError, match="positive integer"):
        mmc(1.0, 100.0, servers=0)
    with pytest.raises(AttributeValueError, match="strictly between 0 and 1"):
        mmc(1.0, 100.0).response_quantile(1.0)
    with pytest.raises(AttributeValueError, match="service time alone"):
        replicas_for(10.0, 100.0, target_s=0.01, quantile=0.99)   # p99 of the service is 46 ms
    with pytest.raises(ShapeError):
        simulate([0.0, 1.0], [1.0], 1)
    with pytest.raises(DataError, match="non-decreasing"):
        simulate([1.0, 0.0], [1.0, 1.0], 1)
    with pytest.raises(DataError, match="no requests"):
        simulate([], [], 1)
    with pytest.raises(DataError, match="non-negative"):
        simulate([0.0], [-1.0], 1)
