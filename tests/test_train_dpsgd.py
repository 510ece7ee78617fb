"""DP-SGD: per-example gradients, clipping, the noise, Poisson sampling, and the privacy account of a run."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import strategies  # noqa: F401  (loads the hypothesis profile)
from tinyml_lab.errors import AttributeValueError, TinyMLError
from tinyml_lab.graph import GraphBuilder
from tinyml_lab.mlops.accountant import epsilon as dp_epsilon
from tinyml_lab.train import BackwardGraph
from tinyml_lab.train.dpsgd import (clip_gradients, dp_fit, dp_gradient, global_norms, per_example_gradients,
                                    poisson_batch)

EPS = 1e-6


def tiny_graph(seed: int = 1, batch_norm: bool = True):
    """Conv (relu), BatchNorm, global pooling, dense, softmax: every kind of parameter DP-SGD clips."""
    b = GraphBuilder("tiny", seed=seed)
    x = b.input((5, 5, 2))
    c = b.conv2d(x, 3, 3, padding="same", name="conv")
    if batch_norm:
        c = b.batch_norm(c, name="bn")
    c = b.relu(c, name="relu")
    o = b.dense(b.global_avg_pool(c, name="gap"), 4, name="fc")
    g = b.build(b.softmax(o, name="sm"))
    rng = np.random.default_rng(seed)
    if batch_norm:  # running statistics away from the identity, so they matter
        g.tensor("bn/var").data = rng.uniform(0.5, 2.0, 3).astype(np.float32)
        g.tensor("bn/mean").data = rng.uniform(-0.3, 0.3, 3).astype(np.float32)
        g.tensor("bn/beta").data = rng.uniform(0.2, 0.6, 3).astype(np.float32)
    return g


def data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5, 5, 2)).astype(np.float32), rng.integers(0, 4, n)


def test_per_example_gradients_match_finite_differences():
    g = tiny_graph()
    x, y = data(4)
    bg = BackwardGraph(g, backend="reference")
    w = {n: t.data.astype(np.float64) for n, t in g.tensors.items() if t.is_const}
    pe = per_example_gradients(bg, x.astype(np.float64), y, weights=w)
    rng = np.random.default_rng(3)
    for i in range(len(x)):
        def loss(weights):
            return bg.loss(bg.forward(x[i: i + 1].astype(np.float64), False, weights), y[i: i + 1])[0]

        for name in bg.trainable:
            v = rng.standard_normal(w[name].shape)
            fd = (loss({**w, name: w[name] + EPS * v}) - loss({**w, name: w[name] - EPS * v})) / (2 * EPS)
            an = float((pe.grads[name][i] * v).sum())
            assert abs(fd - an) <= 1e-5 * max(abs(fd), abs(an), 1e-4), f"example {i}, {name}: fd {fd}, ours {an}"
        assert pe.losses[i] == pytest.approx(loss(w))


def test_per_example_gradients_average_to_the_batch_gradient():
    g = tiny_graph()
    x, y = data(6)
    bg = BackwardGraph(g, backend="reference")
    pe = per_example_gradients(bg, x, y)
    batch = bg.value_and_grad(x, y, training=False)
    for name in bg.trainable:
        np.testing.assert_allclose(pe.grads[name].mean(axis=0), batch.params[name], rtol=1e-9, atol=1e-12)


def test_no_noise_and_no_clipping_is_the_ordinary_mean_gradient():
    g = tiny_graph()
    x, y = data(8)
    bg = BackwardGraph(g)  # the float32 numba path, as training uses it
    out = dp_gradient(bg, x, y, noise_multiplier=0.0, max_grad_norm=1e9, expected_batch_size=len(x),
                      rng=np.random.default_rng(0))
    batch = bg.value_and_grad(x, y, training=False)
    for name in bg.trainable:
        np.testing.assert_allclose(out.grads[name], batch.params[name], rtol=2e-4, atol=1e-6)
    assert out.loss_sum / len(x) == pytest.approx(batch.loss, rel=1e-5)


@given(c=st.floats(1e-3, 10.0), seed=st.integers(0, 2**16))
def test_every_clipped_gradient_has_norm_at_most_c(c, seed):
    rng = np.random.default_rng(seed)
    grads = {"a": rng.standard_normal((7, 3, 2)) * rng.uniform(0, 5), "b": rng.standard_normal((7, 4))}
    clipped, norms = clip_gradients(grads, c)
    after = global_norms(clipped)
    assert np.all(after <= c * (1 + 1e-12))
    small = norms <= c  # those are left alone
    for n in grads:
        np.testing.assert_array_equal(clipped[n][small], grads[n][small])
    # the clipped ones keep their direction and land on the sphere of radius c
    np.testing.assert_allclose(after[~small], c, rtol=1e-12)


def test_clipped_engine_gradients_have_norm_at_most_c():
    g = tiny_graph()
    x, y = data(10)
    bg = BackwardGraph(g)
    pe = per_example_gradients(bg, x, y)
    c = float(np.median(pe.norms))
    clipped, norms = clip_gradients(pe.grads, c)
    assert np.all(global_norms(clipped) <= c * (1 + 1e-9))
    assert (norms > c).sum() >= 4  # some were clipped, some not
    out = dp_gradient(bg, x, y, 0.0, c, len(x), np.random.default_rng(0))
    total = math.sqrt(sum(float(np.square(v * len(x)).sum()) for v in out.clean.values()))
    assert total <= len(x) * c * (1 + 1e-9)  # the sum of clipped gradients: the sensitivity bound


def test_noise_has_the_stated_standard_deviation():
    """``g~ - clean = N(0, sigma^2 C^2) / E|B|`` per coordinate: over 5 draws of 63 coordinates (315 samples)
    the sample standard deviation lies within 15% of sigma C / E|B| (a 3.7-sigma band for a chi-square with 315
    degrees of freedom, whose relative standard error is 1 / sqrt(2 * 315) = 4%), and the mean is near 0."""
    g = tiny_graph()
    x, y = data(5)
    bg = BackwardGraph(g)
    sigma, c, m = 2.5, 0.3, 40.0
    rng = np.random.default_rng(7)
    noise = []
    for _ in range(5):
        out = dp_gradient(bg, x, y, sigma, c, m, rng)
        noise += [(out.grads[n] - out.clean[n]).ravel() for n in bg.trainable]
    z = np.concatenate(noise) * m / (sigma * c)  # standard normal if the std is as stated
    assert z.size == 5 * sum(g.tensors[n].data.size for n in bg.trainable)
    assert abs(z.std() - 1.0) < 0.15
    assert abs(z.mean()) < 4.0 / math.sqrt(z.size)
    # and a Kolmogorov-Smirnov check of the shape, at a loose level
    from scipy import stats

    assert stats.kstest(z, "norm").pvalue > 1e-4


def test_empty_batch_is_pure_noise():
    g = tiny_graph()
    bg = BackwardGraph(g)
    x, y = data(3)
    out = dp_gradient(bg, x[:0], y[:0], 1.0, 1.0, 10.0, np.random.default_rng(0))
    assert out.batch_size == 0
    assert all(np.all(v == 0) for v in out.clean.values())
    assert any(np.any(v != 0) for v in out.grads.values())


def test_poisson_sampling_rate():
    rng = np.random.default_rng(0)
    sizes = [len(poisson_batch(rng, 1000, 0.05)) for _ in range(400)]
    # Binomial(1000, 0.05): mean 50, std 6.9; the mean of 400 draws has std 0.34
    assert abs(np.mean(sizes) - 50.0) < 1.5
    assert 5.5 < np.std(sizes) < 8.5


def test_dp_fit_is_seeded_and_reports_the_accountants_epsilon():
    x, y = data(60, seed=2)
    runs = []
    for seed in (0, 0, 1):
        g = tiny_graph()
        h = dp_fit(g, x, y, noise_multiplier=1.1, max_grad_norm=1.0, sampling_rate=0.1, steps=25, lr=0.2,
                   seed=seed, delta=1e-5)
        runs.append((h, {n: t.data.copy() for n, t in g.tensors.items() if t.is_const}))
    (h0, w0), (h1, w1), (h2, w2) = runs
    assert h0.rows == [dict(r, seconds=a["seconds"]) for r, a in zip(h1.rows, h0.rows)]
    for n in w0:
        np.testing.assert_array_equal(w0[n], w1[n])
    assert any(not np.array_equal(w0[n], w2[n]) for n in w0)
    # an epoch is round(1 / q) = 10 steps: rows after 10, 20 and 25 steps
    assert h0["steps"] == [10, 20, 25]
    for row in h0.rows:
        spent = dp_epsilon(0.1, 1.1, row["steps"], 1e-5)
        assert row["epsilon"] == pytest.approx(spent.epsilon, rel=1e-12)
        assert row["epsilon_classic"] == pytest.approx(spent.epsilon_classic, rel=1e-12)
    assert h0.recipe["sampling"] == "poisson" and h0.recipe["delta"] == 1e-5
    assert np.all(np.diff(h0["epsilon"]) > 0)


def test_dp_fit_without_noise_is_clipped_sgd_and_learns():
    """sigma = 0, q = 1, huge C: every step is a full-batch gradient step; the loss falls."""
    x, y = data(40, seed=4)
    g = tiny_graph(batch_norm=False)
    bg = BackwardGraph(g)
    before = bg.value_and_grad(x, y, training=False).loss
    h = dp_fit(g, x, y, noise_multiplier=0.0, max_grad_norm=1e6, sampling_rate=1.0, steps=30, lr=0.5, seed=0)
    after = bg.value_and_grad(x, y, training=False).loss
    assert after < before - 0.05
    assert math.isinf(h.last["epsilon"])
    # the first step equals one plain SGD step on the full batch
    g1, g2 = tiny_graph(batch_norm=False), tiny_graph(batch_norm=False)
    dp_fit(g1, x, y, noise_multiplier=0.0, max_grad_norm=1e6, sampling_rate=1.0, steps=1, lr=0.5, seed=0)
    grads = BackwardGraph(g2).value_and_grad(x, y, training=False).params
    for n, gr in grads.items():
        np.testing.assert_allclose(g1.tensors[n].data, g2.tensors[n].data - 0.5 * gr, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("kwargs, words", [
    (dict(noise_multiplier=-1.0), "noise_multiplier"),
    (dict(max_grad_norm=0.0), "max_grad_norm"),
    (dict(sampling_rate=0.0), "sampling rate"),
    (dict(sampling_rate=1.5), "sampling rate"),
    (dict(delta=1.0), "delta"),
    (dict(steps=None), "exactly one"),
    (dict(epochs=2), "exactly one"),
    (dict(steps=0), "steps"),
    (dict(seed=1.5), "seed"),
])
def test_bad_arguments_are_clear_errors(kwargs, words):
    x, y = data(10)
    args = dict(noise_multiplier=1.0, max_grad_norm=1.0, sampling_rate=0.2, steps=2, lr=0.1, seed=0, delta=1e-5)
    args.update(kwargs)
    with pytest.raises(AttributeValueError, match=words):
        dp_fit(tiny_graph(), x, y, **args)


def test_int8_graphs_are_refused():
    from tinyml_lab.quant import quantize_model

    g = tiny_graph(batch_norm=False)
    x, y = data(8)
    q = quantize_model(g, x)
    with pytest.raises(TinyMLError, match="int8"):
        dp_fit(q, x, y, noise_multiplier=1.0, max_grad_norm=1.0, sampling_rate=0.5, steps=1)
