"""The NumPy backward spec against PyTorch autograd (float64), when PyTorch is installed.

Layouts are converted at the boundary: NHWC activations to NCHW, ``(C_out, KH, KW, C_in)``
convolution weights to ``(C_out, C_in, KH, KW)``, depthwise ``(1, KH, KW, C)`` to
``(C, 1, KH, KW)`` with ``groups=C``. Explicit asymmetric pads become an ``F.pad`` before the op.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import WindowConfig, seeds, window_configs
from tinyml_lab.kernels import backward_reference as br

torch = pytest.importorskip("torch")
F = torch.nn.functional


def nchw(a: np.ndarray):
    return torch.tensor(a.transpose(0, 3, 1, 2).copy(), dtype=torch.float64, requires_grad=True)


def nhwc(t) -> np.ndarray:
    return t.detach().numpy().transpose(0, 2, 3, 1)


def close(got: np.ndarray, want: np.ndarray) -> None:
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@given(window_configs(max_hw=8, max_c=4, max_k=3, max_batch=2), seeds, st.booleans())
def test_conv_and_depthwise_match_torch(c: WindowConfig, seed, depthwise):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((c.batch, c.height, c.width, c.c_in))
    cout = c.c_in if depthwise else c.c_out
    w = rng.standard_normal((1, *c.kernel, c.c_in) if depthwise else (c.c_out, *c.kernel, c.c_in))
    b = rng.standard_normal(cout)
    dy = rng.standard_normal((c.batch, *c.out_hw, cout))

    tx = nchw(x)
    tw = torch.tensor((w.transpose(3, 0, 1, 2) if depthwise else w.transpose(0, 3, 1, 2)).copy(), requires_grad=True)
    tb = torch.tensor(b, requires_grad=True)
    t, bo, le, ri = c.pads
    y = F.conv2d(F.pad(tx, (le, ri, t, bo)), tw, tb, stride=c.strides, dilation=c.dilation,
                 groups=c.c_in if depthwise else 1)
    y.backward(torch.tensor(dy.transpose(0, 3, 1, 2).copy()))
    if depthwise:
        dx = br.depthwise_conv2d_grad_input(dy, w, x.shape, c.strides, c.dilation, c.pads)
        dw, db = br.depthwise_conv2d_grad_weight(x, dy, c.kernel, c.strides, c.dilation, c.pads)
        close(dw, tw.grad.numpy().transpose(1, 2, 3, 0))
    else:
        dx = br.conv2d_grad_input(dy, w, x.shape, c.strides, c.dilation, c.pads)
        dw, db = br.conv2d_grad_weight(x, dy, c.kernel, c.strides, c.dilation, c.pads)
        close(dw, tw.grad.numpy().transpose(0, 2, 3, 1))
    close(dx, nhwc(tx.grad))
    close(db, tb.grad.numpy())


@given(st.integers(1, 4), st.integers(1, 20), st.integers(1, 10), seeds)
def test_dense_matches_torch(n, cin, cout, seed):
    rng = np.random.default_rng(seed)
    x, w, b, dy = (rng.standard_normal(s) for s in ((n, cin), (cout, cin), (cout,), (n, cout)))
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    F.linear(tx, tw, tb).backward(torch.tensor(dy))
    dw, db = br.dense_grad_weight(x, dy)
    close(br.dense_grad_input(dy, w), tx.grad.numpy())
    close(dw, tw.grad.numpy())
    close(db, tb.grad.numpy())


@st.composite
def torch_pools(draw):
    """Pooling that PyTorch expresses: symmetric padding of at most half the window."""
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    h, w = draw(st.integers(k[0], 8)), draw(st.integers(k[1], 8))
    return draw(st.integers(1, 2)), h, w, draw(st.integers(1, 3)), k, s, p


@given(torch_pools(), seeds, st.booleans())
def test_pooling_matches_torch(cfg, seed, count_include_pad):
    n, h, w, c, k, s, p = cfg
    pads = (p[0], p[0], p[1], p[1])
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c))
    tx = nchw(x)
    y = F.avg_pool2d(tx, k, s, p, count_include_pad=count_include_pad)
    dy = rng.standard_normal(y.shape)
    y.backward(torch.tensor(dy))
    close(br.avg_pool2d_backward(dy.transpose(0, 2, 3, 1), x.shape, k, s, pads, count_include_pad), nhwc(tx.grad))
    tx = nchw(x)
    y = F.max_pool2d(tx, k, s, p)
    y.backward(torch.tensor(dy))
    close(br.max_pool2d_backward(x, dy.transpose(0, 2, 3, 1), k, s, pads), nhwc(tx.grad))


@given(st.integers(2, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), seeds)
def test_batch_norm_and_global_pool_match_torch(n, h, w, c, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c))
    gamma, beta = rng.standard_normal(c), rng.standard_normal(c)
    dy = rng.standard_normal(x.shape)
    tx, tg, tb = nchw(x), torch.tensor(gamma, requires_grad=True), torch.tensor(beta, requires_grad=True)
    y = F.batch_norm(tx, None, None, tg, tb, training=True, eps=1e-3)
    y.backward(torch.tensor(dy.transpose(0, 3, 1, 2).copy()))
    _, mu, var = br.batch_norm_train_forward(x, gamma, beta, 1e-3)
    dx, dg, db = br.batch_norm_train_backward(x, dy, gamma, mu, var, 1e-3)
    np.testing.assert_allclose(dx, nhwc(tx.grad), rtol=1e-8, atol=1e-9)
    close(dg, tg.grad.numpy())
    close(db, tb.grad.numpy())

    tx = nchw(x)
    g = rng.standard_normal((n, c))
    tx.mean(dim=(2, 3)).backward(torch.tensor(g))
    close(br.global_avg_pool_backward(g, x.shape), nhwc(tx.grad))


@given(st.integers(1, 5), st.integers(2, 8), seeds, st.sampled_from([0.0, 0.1, 0.3]))
def test_cross_entropy_matches_torch(n, k, seed, smoothing):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, k)) * 3
    labels = rng.integers(0, k, n)
    tz = torch.tensor(z, requires_grad=True)
    loss = F.cross_entropy(tz, torch.tensor(labels), label_smoothing=smoothing)
    loss.backward()
    got, dz = br.softmax_cross_entropy(z, labels, smoothing)
    assert got == pytest.approx(float(loss.detach()), rel=1e-12)
    close(dz, tz.grad.numpy())


def test_relu6_gradient_matches_torch_at_the_bounds():
    x = np.array([-1.0, 0.0, 0.5, 6.0, 7.0])
    tx = torch.tensor(x, requires_grad=True)
    F.relu6(tx).backward(torch.ones(5, dtype=torch.float64))
    close(br.clamp_backward(np.clip(x, 0, 6), np.ones(5), 0.0, 6.0), tx.grad.numpy())
