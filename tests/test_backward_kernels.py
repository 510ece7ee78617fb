"""Backward kernels: the NumPy spec against central finite differences in float64, and the numba
kernels against the spec in float32.

A kernel's gradients are checked through a scalar ``L = sum(r * f(...))`` with a random ``r``
(so ``dL/dy = r``) along random directions ``v``: ``(L(p + eps v) - L(p - eps v)) / 2 eps``
must equal ``<dL/dp, v>`` to a relative 1e-5 (see :func:`check_directional` for the noise floor). Shapes, strides, paddings, dilations and batch
sizes are drawn by hypothesis.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import WindowConfig, float_array, seeds, window_configs
from tinyml_lab.kernels import backward as kb
from tinyml_lab.kernels import backward_reference as br

EPS = 1e-6
small_windows = window_configs(max_hw=7, max_c=3, max_k=3, max_batch=2)


def pool_config(c: WindowConfig) -> bool:
    """Pooling windows start inside the image: padding smaller than the window."""
    return c.pads[0] < c.kernel[0] and c.pads[1] < c.kernel[0] and c.pads[2] < c.kernel[1] and c.pads[3] < c.kernel[1]


def check_directional(loss: Callable[[np.ndarray], float], p: np.ndarray, grad: np.ndarray,
                      rng: np.random.Generator, directions: int = 2) -> None:
    assert grad.shape == p.shape and grad.dtype == np.float64
    # a central difference of a loss L carries about 1e-16 |L| / EPS of rounding noise, so the relative
    # error is taken against at least 1e-4 max(1, |L|) (an absolute 1e-9 for an O(1) loss)
    floor = 1e-4 * max(1.0, abs(loss(p)))
    for _ in range(directions):
        v = rng.standard_normal(p.shape)
        fd = (loss(p + EPS * v) - loss(p - EPS * v)) / (2 * EPS)
        an = float((grad * v).sum())
        assert abs(fd - an) <= 1e-5 * max(abs(fd), abs(an), floor), f"finite difference {fd}, analytic {an}"


def f64(rng, shape):
    return rng.standard_normal(shape)


def assert_close32(got: np.ndarray, want: np.ndarray, rtol: float = 1e-4) -> None:
    assert got.shape == want.shape and got.dtype == np.float32
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale)


# --------------------------------------------------------------------------- finite differences (float64)

@given(small_windows, seeds)
def test_conv2d_gradients_match_finite_differences(c: WindowConfig, seed):
    rng = np.random.default_rng(seed)
    x, w, b = f64(rng, (c.batch, c.height, c.width, c.c_in)), f64(rng, (c.c_out, *c.kernel, c.c_in)), f64(rng, (c.c_out,))
    r = f64(rng, (c.batch, *c.out_hw, c.c_out))

    def loss(x_, w_, b_):
        return float((r * br.conv2d_forward(x_, w_, b_, c.strides, c.dilation, c.pads)).sum())

    dx = br.conv2d_grad_input(r, w, x.shape, c.strides, c.dilation, c.pads)
    dw, db = br.conv2d_grad_weight(x, r, c.kernel, c.strides, c.dilation, c.pads)
    check_directional(lambda v: loss(v, w, b), x, dx, rng)
    check_directional(lambda v: loss(x, v, b), w, dw, rng)
    check_directional(lambda v: loss(x, w, v), b, db, rng)


@given(small_windows, seeds)
def test_depthwise_gradients_match_finite_differences(c: WindowConfig, seed):
    rng = np.random.default_rng(seed)
    x, w, b = f64(rng, (c.batch, c.height, c.width, c.c_in)), f64(rng, (1, *c.kernel, c.c_in)), f64(rng, (c.c_in,))
    r = f64(rng, (c.batch, *c.out_hw, c.c_in))

    def loss(x_, w_, b_):
        return float((r * br.depthwise_conv2d_forward(x_, w_, b_, c.strides, c.dilation, c.pads)).sum())

    dx = br.depthwise_conv2d_grad_input(r, w, x.shape, c.strides, c.dilation, c.pads)
    dw, db = br.depthwise_conv2d_grad_weight(x, r, c.kernel, c.strides, c.dilation, c.pads)
    check_directional(lambda v: loss(v, w, b), x, dx, rng)
    check_directional(lambda v: loss(x, v, b), w, dw, rng)
    check_directional(lambda v: loss(x, w, v), b, db, rng)


@given(st.integers(1, 4), st.integers(1, 30), st.integers(1, 12), seeds)
def test_dense_gradients_match_finite_differences(n, cin, cout, seed):
    rng = np.random.default_rng(seed)
    x, w, b, r = f64(rng, (n, cin)), f64(rng, (cout, cin)), f64(rng, (cout,)), f64(rng, (n, cout))

    def loss(x_, w_, b_):
        return float((r * br.dense_forward(x_, w_, b_)).sum())

    dw, db = br.dense_grad_weight(x, r)
    check_directional(lambda v: loss(v, w, b), x, br.dense_grad_input(r, w), rng)
    check_directional(lambda v: loss(x, v, b), w, dw, rng)
    check_directional(lambda v: loss(x, w, v), b, db, rng)


@given(window_configs(max_hw=7, max_c=3, max_k=3, max_batch=2, dilation=False).filter(pool_config), seeds,
       st.booleans())
def test_pooling_gradients_match_finite_differences(c: WindowConfig, seed, count_include_pad):
    rng = np.random.default_rng(seed)
    x = f64(rng, (c.batch, c.height, c.width, c.c_in))
    r = f64(rng, (c.batch, *c.out_hw, c.c_in))
    avg = br.avg_pool2d_backward(r, x.shape, c.kernel, c.strides, c.pads, count_include_pad)
    check_directional(
        lambda v: float((r * br.avg_pool2d_forward(v, c.kernel, c.strides, c.pads, count_include_pad)).sum()),
        x, avg, rng)
    mx = br.max_pool2d_backward(x, r, c.kernel, c.strides, c.pads)
    check_directional(lambda v: float((r * br.max_pool2d_forward(v, c.kernel, c.strides, c.pads)).sum()), x, mx, rng)


@given(st.integers(1, 3), st.integers(1, 5), st.integers(1, 5), st.integers(1, 4), seeds)
def test_global_pool_pad_reshape_gradients(n, h, w, c, seed):
    rng = np.random.default_rng(seed)
    x = f64(rng, (n, h, w, c))
    r = f64(rng, (n, c))
    check_directional(lambda v: float((r * br.global_avg_pool_forward(v)).sum()), x,
                      br.global_avg_pool_backward(r, x.shape), rng)
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))
    rp = f64(rng, (n, h + pads[0] + pads[1], w + pads[2] + pads[3], c))
    check_directional(lambda v: float((rp * br.pad_forward(v, pads)).sum()), x, br.pad_backward(rp, pads), rng)
    rr = f64(rng, (n, h * w * c))
    check_directional(lambda v: float((rr * v.reshape(n, -1)).sum()), x, br.reshape_backward(rr, x.shape[1:]), rng)
    da, db = br.add_backward(rr)
    assert da is rr and db is rr


@given(st.integers(1, 40), seeds, st.sampled_from([(0.0, np.inf), (0.0, 6.0), (-np.inf, np.inf)]))
def test_clamp_gradient_from_the_output(n, seed, bounds):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n) * 5
    r = f64(rng, (n,))
    y = np.clip(x, *bounds)
    check_directional(lambda v: float((r * np.clip(v, *bounds)).sum()), x, br.clamp_backward(y, r, *bounds), rng)


@given(st.integers(1, 4), st.integers(2, 9), seeds, st.sampled_from([1.0, 0.5, 2.0]))
def test_softmax_gradient(n, k, seed, beta):
    rng = np.random.default_rng(seed)
    x, r = f64(rng, (n, k)), f64(rng, (n, k))
    y = br.softmax_forward(x, beta)
    check_directional(lambda v: float((r * br.softmax_forward(v, beta)).sum()), x, br.softmax_backward(y, r, beta), rng)


@given(st.integers(2, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), seeds)
def test_batch_norm_gradients_train_and_eval(n, h, w, c, seed):
    rng = np.random.default_rng(seed)
    x = f64(rng, (n, h, w, c)) * 2 + 1
    gamma, beta = f64(rng, (c,)), f64(rng, (c,))
    mean, var = f64(rng, (c,)), rng.uniform(0.5, 2.0, c)
    r = f64(rng, x.shape)
    eps = 1e-3

    def train_loss(x_, g_, b_):
        return float((r * br.batch_norm_train_forward(x_, g_, b_, eps)[0]).sum())

    _, mu, s2 = br.batch_norm_train_forward(x, gamma, beta, eps)
    dx, dg, db = br.batch_norm_train_backward(x, r, gamma, mu, s2, eps)
    check_directional(lambda v: train_loss(v, gamma, beta), x, dx, rng)
    check_directional(lambda v: train_loss(x, v, beta), gamma, dg, rng)
    check_directional(lambda v: train_loss(x, gamma, v), beta, db, rng)

    def eval_loss(x_, g_, b_):
        return float((r * br.batch_norm_forward(x_, g_, b_, mean, var, eps)).sum())

    dx, dg, db = br.batch_norm_eval_backward(x, r, gamma, mean, var, eps)
    check_directional(lambda v: eval_loss(v, gamma, beta), x, dx, rng)
    check_directional(lambda v: eval_loss(x, v, beta), gamma, dg, rng)
    check_directional(lambda v: eval_loss(x, gamma, v), beta, db, rng)


@given(st.integers(1, 5), st.integers(2, 10), seeds, st.sampled_from([0.0, 0.1]))
def test_cross_entropy_and_mse_gradients(n, k, seed, smoothing):
    rng = np.random.default_rng(seed)
    z = f64(rng, (n, k)) * 3
    labels = rng.integers(0, k, n)
    loss, dz = br.softmax_cross_entropy(z, labels, smoothing)
    check_directional(lambda v: br.softmax_cross_entropy(v, labels, smoothing)[0], z, dz, rng)
    t = f64(rng, (n, k))
    _, dy = br.mse(z, t)
    check_directional(lambda v: br.mse(v, t)[0], z, dy, rng)


def test_cross_entropy_is_stable_for_huge_logits():
    z = np.array([[1e4, 0.0, -1e4], [-5e3, 5e3, 0.0]])
    loss, dz = br.softmax_cross_entropy(z, np.array([0, 0]))
    assert np.isfinite(loss) and np.all(np.isfinite(dz))
    assert loss == pytest.approx(1e4 / 2, rel=1e-9)  # sample 1 is certain, sample 2 misses by 1e4
    loss32, dz32 = kb.softmax_cross_entropy(z.astype(np.float32), np.array([0, 0]), 0.0)
    assert loss32 == pytest.approx(loss) and np.all(np.isfinite(dz32))


def test_reference_keeps_float32_in_float32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 5, 3)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((2, 3, 3, 4)).astype(np.float32)
    assert br.conv2d_grad_input(dy, w, x.shape, (1, 1), (1, 1), (0, 0, 0, 0)).dtype == np.float32
    assert br.conv2d_grad_weight(x.astype(np.float64), dy, (3, 3), (1, 1), (1, 1), (0, 0, 0, 0))[0].dtype == np.float64


# --------------------------------------------------------------------------- numba against the spec (float32)

def f32(rng, shape):
    return float_array(rng, shape)


@given(window_configs(max_hw=9, max_c=6, max_k=4), seeds)
def test_conv2d_numba_matches_reference(c: WindowConfig, seed):
    rng = np.random.default_rng(seed)
    x, w = f32(rng, (c.batch, c.height, c.width, c.c_in)), f32(rng, (c.c_out, *c.kernel, c.c_in))
    dy = f32(rng, (c.batch, *c.out_hw, c.c_out))
    assert_close32(kb.conv2d_grad_input(dy, w, c.height, c.width, *c.strides, *c.dilation, *c.pads),
                   br.conv2d_grad_input(dy, w, x.shape, c.strides, c.dilation, c.pads))
    dw, db = kb.conv2d_grad_weight(x, dy, *c.kernel, *c.strides, *c.dilation, *c.pads)
    rw, rb = br.conv2d_grad_weight(x, dy, c.kernel, c.strides, c.dilation, c.pads)
    assert_close32(dw, rw)
    assert_close32(db, rb)


@given(window_configs(max_hw=9, max_c=6, max_k=4), seeds)
def test_depthwise_numba_matches_reference(c: WindowConfig, seed):
    rng = np.random.default_rng(seed)
    x, w = f32(rng, (c.batch, c.height, c.width, c.c_in)), f32(rng, (1, *c.kernel, c.c_in))
    dy = f32(rng, (c.batch, *c.out_hw, c.c_in))
    assert_close32(kb.depthwise_conv2d_grad_input(dy, w, c.height, c.width, *c.strides, *c.dilation, *c.pads),
                   br.depthwise_conv2d_grad_input(dy, w, x.shape, c.strides, c.dilation, c.pads))
    dw, db = kb.depthwise_conv2d_grad_weight(x, dy, *c.kernel, *c.strides, *c.dilation, *c.pads)
    rw, rb = br.depthwise_conv2d_grad_weight(x, dy, c.kernel, c.strides, c.dilation, c.pads)
    assert_close32(dw, rw)
    assert_close32(db, rb)


@given(st.integers(1, 4), st.integers(1, 200), st.integers(1, 30), seeds)
def test_dense_numba_matches_reference(n, cin, cout, seed):
    rng = np.random.default_rng(seed)
    x, w, dy = f32(rng, (n, cin)), f32(rng, (cout, cin)), f32(rng, (n, cout))
    assert_close32(kb.dense_grad_input(dy, w), br.dense_grad_input(dy, w))
    dw, db = kb.dense_grad_weight(x, dy)
    rw, rb = br.dense_grad_weight(x, dy)
    assert_close32(dw, rw)
    assert_close32(db, rb)


@given(window_configs(max_hw=9, max_c=5, max_k=4, dilation=False).filter(pool_config), seeds, st.booleans())
def test_pooling_numba_matches_reference(c: WindowConfig, seed, count_include_pad):
    rng = np.random.default_rng(seed)
    x = f32(rng, (c.batch, c.height, c.width, c.c_in))
    dy = f32(rng, (c.batch, *c.out_hw, c.c_in))
    assert_close32(kb.avg_pool2d_backward(dy, c.height, c.width, *c.kernel, *c.strides, *c.pads, count_include_pad),
                   br.avg_pool2d_backward(dy, x.shape, c.kernel, c.strides, c.pads, count_include_pad))
    assert_close32(kb.max_pool2d_backward(x, dy, *c.kernel, *c.strides, *c.pads),
                   br.max_pool2d_backward(x, dy, c.kernel, c.strides, c.pads))


def test_max_pool_ties_go_to_the_first_maximum():
    """int8 activations tie often; both kernels route to the first maximum in row-major order."""
    x = np.zeros((1, 2, 2, 1), np.float32)
    dy = np.ones((1, 1, 1, 1), np.float32)
    want = np.array([[[[1.0], [0.0]], [[0.0], [0.0]]]], np.float32)
    np.testing.assert_array_equal(br.max_pool2d_backward(x, dy, (2, 2), (2, 2), (0, 0, 0, 0)), want)
    np.testing.assert_array_equal(kb.max_pool2d_backward(x, dy, 2, 2, 2, 2, 0, 0, 0, 0), want)


@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6), st.integers(1, 6), seeds)
def test_elementwise_numba_matches_reference(n, h, w, c, seed):
    rng = np.random.default_rng(seed)
    x = f32(rng, (n, h, w, c)) * 4
    dy = f32(rng, (n, h, w, c))
    for lo, hi in ((0.0, np.inf), (0.0, 6.0)):
        y = np.clip(x, lo, hi)
        np.testing.assert_array_equal(kb.clamp_backward(y, dy, lo, hi), br.clamp_backward(y, dy, lo, hi))
    codes = rng.integers(-128, 128, x.shape).astype(np.int8)
    np.testing.assert_array_equal(kb.clamp_backward(codes, dy, -100.0, 90.0), br.clamp_backward(codes, dy, -100, 90))
    g = f32(rng, (n, c))
    assert_close32(kb.global_avg_pool_backward(g, h, w), br.global_avg_pool_backward(g, (n, h, w, c)))
    pads = tuple(int(v) for v in rng.integers(0, 3, 4))
    dp = f32(rng, (n, h + pads[0] + pads[1], w + pads[2] + pads[3], c))
    np.testing.assert_array_equal(kb.pad_backward(dp, *pads), br.pad_backward(dp, pads))
    s = f32(rng, (n, c))
    y = br.softmax_forward(s, 1.5)
    assert_close32(kb.softmax_backward(y, g, 1.5), br.softmax_backward(y, g, 1.5))


@given(st.integers(2, 4), st.integers(1, 5), st.integers(1, 5), st.integers(1, 6), seeds)
def test_batch_norm_numba_matches_reference(n, h, w, c, seed):
    rng = np.random.default_rng(seed)
    x = f32(rng, (n, h, w, c)) * 3 + 1
    gamma, beta = f32(rng, (c,)), f32(rng, (c,))
    mean, var = f32(rng, (c,)), rng.uniform(0.5, 2.0, c).astype(np.float32)
    dy = f32(rng, x.shape)
    got, want = kb.batch_norm_train_forward(x, gamma, beta, 1e-3), br.batch_norm_train_forward(x, gamma, beta, 1e-3)
    for a, b in zip(got, want):
        assert_close32(a, b)
    for a, b in zip(kb.batch_norm_train_backward(x, dy, gamma, want[1], want[2], 1e-3),
                    br.batch_norm_train_backward(x, dy, gamma, want[1], want[2], 1e-3)):
        assert_close32(a, b, rtol=1e-3)  # the batch-statistics gradient cancels terms
    for a, b in zip(kb.batch_norm_eval_backward(x, dy, gamma, mean, var, 1e-3),
                    br.batch_norm_eval_backward(x, dy, gamma, mean, var, 1e-3)):
        assert_close32(a, b)


@given(st.integers(1, 6), st.integers(2, 12), seeds, st.sampled_from([0.0, 0.2]))
def test_losses_numba_match_reference(n, k, seed, smoothing):
    rng = np.random.default_rng(seed)
    z = f32(rng, (n, k)) * 4
    labels = rng.integers(0, k, n)
    got, want = kb.softmax_cross_entropy(z, labels, smoothing), br.softmax_cross_entropy(z, labels, smoothing)
    assert got[0] == pytest.approx(want[0], rel=1e-5)
    assert_close32(got[1], want[1])
    t = f32(rng, (n, k))
    got, want = kb.mse(z, t), br.mse(z, t)
    assert got[0] == pytest.approx(want[0], rel=1e-5)
    assert_close32(got[1], want[1])
