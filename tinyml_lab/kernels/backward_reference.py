"""Plain NumPy backward kernels: the specification of every gradient the training engine takes.

Each op's forward is ``y = f(x, w, b)``; its backward takes the upstream
gradient ``dy = dL/dy`` and returns ``dL/dx``, ``dL/dw`` and ``dL/db``. Input
and parameter gradients are separate functions, so a backward graph can skip
what it does not need (no ``dx`` below the first trainable layer, no ``dw``
for a frozen one).

Every function computes in float64 and returns the precision of its inputs
(float64 in, float64 out; float32 in, float32 out), so the same code is the
spec of the float32 numba kernels in :mod:`tinyml_lab.kernels.backward` and
can be checked against central finite differences in float64. The forward
passes at the top are those of :mod:`tinyml_lab.kernels.reference` without its
final cast to float32, for the same reason.

Layouts as everywhere in the engine: NHWC with the batch first, convolution
weights ``(C_out, KH, KW, C_in)``, depthwise ``(1, KH, KW, C)``, dense
``(C_out, C_in)``, ``pads = (top, bottom, left, right)``.
"""

from __future__ import annotations

import numpy as np

from .reference import _out_hw, _pad, _windows

Pads = tuple[int, int, int, int]
Pair = tuple[int, int]


def _ftype(*arrays: np.ndarray) -> np.dtype:
    """float64 if any input is float64, else float32."""
    return np.dtype(np.float64) if any(np.asarray(a).dtype == np.float64 for a in arrays) else np.dtype(np.float32)


def _f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def _scatter_windows(dpatch: np.ndarray, x_shape: tuple[int, ...], kernel: Pair, strides: Pair,
                     dilation: Pair, pads: Pads) -> np.ndarray:
    """The adjoint of :func:`~tinyml_lab.kernels.reference._windows`: add every window's
    gradient ``dpatch[n, oy, ox, ky, kx, c]`` back onto the input position it was read from,
    then drop the padding. Returns ``dx`` of shape ``x_shape``."""
    n, h, w, c = x_shape
    t, b, l, r = pads
    (kh, kw), (sh, sw), (dh, dw) = kernel, strides, dilation
    oh, ow = dpatch.shape[1:3]
    dxp = np.zeros((n, h + t + b, w + l + r, c), np.float64)
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            dxp[:, y0: y0 + sh * (oh - 1) + 1: sh, x0: x0 + sw * (ow - 1) + 1: sw, :] += dpatch[:, :, :, ky, kx, :]
    return dxp[:, t: t + h, l: l + w, :]


# --------------------------------------------------------------------------- forward (input precision)

def conv2d_forward(x, w, b, strides, dilation, pads):
    """``y[n,oy,ox,o] = sum_{ky,kx,i} w[o,ky,kx,i] xp[n, sy oy + dy ky, sx ox + dx kx, i] + b[o]``."""
    kh, kw = w.shape[1:3]
    out_hw = _out_hw(x, (kh, kw), strides, dilation, pads)
    win = _windows(_pad(_f64(x), pads, 0.0), (kh, kw), strides, dilation, out_hw)
    y = np.tensordot(win, _f64(w), axes=([3, 4, 5], [1, 2, 3]))
    if b is not None:
        y = y + _f64(b)
    return y.astype(_ftype(x, w))


def depthwise_conv2d_forward(x, w, b, strides, dilation, pads):
    """``y[n,oy,ox,c] = sum_{ky,kx} w[0,ky,kx,c] xp[n, sy oy + dy ky, sx ox + dx kx, c] + b[c]``."""
    kh, kw = w.shape[1:3]
    out_hw = _out_hw(x, (kh, kw), strides, dilation, pads)
    win = _windows(_pad(_f64(x), pads, 0.0), (kh, kw), strides, dilation, out_hw)
    y = np.einsum("nhwijc,ijc->nhwc", win, _f64(w)[0])
    if b is not None:
        y = y + _f64(b)
    return y.astype(_ftype(x, w))


def dense_forward(x, w, b):
    """``y = x W^T + b``."""
    y = _f64(x) @ _f64(w).T
    if b is not None:
        y = y + _f64(b)
    return y.astype(_ftype(x, w))


def avg_pool2d_forward(x, pool, strides, pads, count_include_pad=False):
    """Mean over each window (padding counted only with ``count_include_pad``)."""
    out_hw = _out_hw(x, pool, strides, (1, 1), pads)
    win = _windows(_pad(_f64(x), pads, 0.0), pool, strides, (1, 1), out_hw)
    return (win.sum(axis=(3, 4)) / _pool_count(x.shape, pool, strides, pads, count_include_pad)).astype(_ftype(x))


def max_pool2d_forward(x, pool, strides, pads):
    """Max over each window; padded positions never win."""
    out_hw = _out_hw(x, pool, strides, (1, 1), pads)
    win = _windows(_pad(_f64(x), pads, -np.inf), pool, strides, (1, 1), out_hw)
    return win.max(axis=(3, 4)).astype(_ftype(x))


def global_avg_pool_forward(x):
    """``y[n,c] = mean_{h,w} x[n,h,w,c]``."""
    return _f64(x).mean(axis=(1, 2)).astype(_ftype(x))


def clamp_forward(x, lo, hi):
    """``clamp(x, lo, hi)``: ReLU is ``(0, inf)``, ReLU6 ``(0, 6)``, no activation ``(-inf, inf)``."""
    return np.clip(x, lo, hi)


def softmax_forward(x, beta=1.0):
    """``y_i = exp(beta x_i - max) / sum_j exp(beta x_j - max)`` over the last axis."""
    z = beta * _f64(x)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(_ftype(x))


def batch_norm_forward(x, gamma, beta, mean, var, epsilon):
    """Eval mode, the stored statistics: ``y = gamma (x - mean) / sqrt(var + eps) + beta``."""
    inv = 1.0 / np.sqrt(_f64(var) + epsilon)
    return (_f64(gamma) * (_f64(x) - _f64(mean)) * inv + _f64(beta)).astype(_ftype(x, gamma))


def batch_norm_train_forward(x, gamma, beta, epsilon):
    """Training mode, the batch's statistics over every axis but the channels (last):

    ``mu = mean(x)``, ``sigma^2 = mean((x - mu)^2)`` (biased), ``y = gamma (x - mu) / sqrt(sigma^2 + eps) + beta``.

    Returns ``(y, mu, sigma^2)``.
    """
    x64 = _f64(x)
    axes = tuple(range(x.ndim - 1))
    mu = x64.mean(axis=axes)
    var = ((x64 - mu) ** 2).mean(axis=axes)
    y = _f64(gamma) * (x64 - mu) / np.sqrt(var + epsilon) + _f64(beta)
    ft = _ftype(x, gamma)
    return y.astype(ft), mu.astype(ft), var.astype(ft)


def pad_forward(x, pads, value=0.0):
    return _pad(x, pads, value)


# --------------------------------------------------------------------------- convolutions

def conv2d_grad_input(dy, w, x_shape, strides, dilation, pads):
    """``dx[n, p, i] = sum_{oy,ox,o,ky,kx : p = s o + d k - pad} w[o,ky,kx,i] dy[n,oy,ox,o]``:
    the transposed convolution of ``dy`` with ``w``."""
    kh, kw = w.shape[1:3]
    dpatch = np.tensordot(_f64(dy), _f64(w), axes=([3], [0]))  # (N, OH, OW, KH, KW, C_in)
    return _scatter_windows(dpatch, tuple(x_shape), (kh, kw), strides, dilation, pads).astype(_ftype(dy, w))


def conv2d_grad_weight(x, dy, kernel, strides, dilation, pads):
    """``dw[o,ky,kx,i] = sum_{n,oy,ox} dy[n,oy,ox,o] xp[n, sy oy + dy ky, sx ox + dx kx, i]``,
    ``db[o] = sum_{n,oy,ox} dy[n,oy,ox,o]``. Returns ``(dw, db)``."""
    win = _windows(_pad(_f64(x), pads, 0.0), tuple(kernel), strides, dilation, dy.shape[1:3])
    dw = np.tensordot(_f64(dy), win, axes=([0, 1, 2], [0, 1, 2]))  # (C_out, KH, KW, C_in)
    ft = _ftype(x, dy)
    return dw.astype(ft), _f64(dy).sum(axis=(0, 1, 2)).astype(ft)


def bias_grad(dy):
    """``db[o] = sum_{n, ...} dy[n, ..., o]``: the bias gradient of a conv or dense layer on its own,
    without the input a weight gradient needs."""
    return _f64(dy).sum(axis=tuple(range(dy.ndim - 1))).astype(_ftype(dy))


def depthwise_conv2d_grad_input(dy, w, x_shape, strides, dilation, pads):
    """``dx[n, p, c] = sum_{o, k : p = s o + d k - pad} w[0,ky,kx,c] dy[n,oy,ox,c]``."""
    kh, kw = w.shape[1:3]
    dpatch = _f64(dy)[:, :, :, None, None, :] * _f64(w)[0]  # (N, OH, OW, KH, KW, C)
    return _scatter_windows(dpatch, tuple(x_shape), (kh, kw), strides, dilation, pads).astype(_ftype(dy, w))


def depthwise_conv2d_grad_weight(x, dy, kernel, strides, dilation, pads):
    """``dw[0,ky,kx,c] = sum_{n,oy,ox} dy[n,oy,ox,c] xp[n, sy oy + dy ky, sx ox + dx kx, c]``,
    ``db[c] = sum dy[..., c]``. Returns ``(dw, db)``."""
    win = _windows(_pad(_f64(x), pads, 0.0), tuple(kernel), strides, dilation, dy.shape[1:3])
    dw = np.einsum("nhwc,nhwijc->ijc", _f64(dy), win)[None]
    ft = _ftype(x, dy)
    return dw.astype(ft), _f64(dy).sum(axis=(0, 1, 2)).astype(ft)


def dense_grad_input(dy, w):
    """``dx = dy W``."""
    return (_f64(dy) @ _f64(w)).astype(_ftype(dy, w))


def dense_grad_weight(x, dy):
    """``dW = dy^T x``, ``db = sum_n dy[n]``. Returns ``(dW, db)``."""
    ft = _ftype(x, dy)
    return (_f64(dy).T @ _f64(x)).astype(ft), _f64(dy).sum(axis=0).astype(ft)


# --------------------------------------------------------------------------- pooling

def _pool_count(x_shape, pool, strides, pads, count_include_pad):
    """How many inputs each average-pool window divides by: ``(1, OH, OW, 1)`` or a scalar."""
    if count_include_pad:
        return float(pool[0] * pool[1])
    out_hw = _out_hw(np.empty((1,) + tuple(x_shape[1:3]) + (1,)), pool, strides, (1, 1), pads)
    ones = np.ones((1,) + tuple(x_shape[1:3]) + (1,))
    return _windows(_pad(ones, pads, 0.0), pool, strides, (1, 1), out_hw).sum(axis=(3, 4))


def avg_pool2d_backward(dy, x_shape, pool, strides, pads, count_include_pad=False):
    """Each window spreads ``dy / count`` evenly over the inputs it averaged; padding gets nothing."""
    g = _f64(dy) / _pool_count(x_shape, pool, strides, pads, count_include_pad)
    dpatch = np.broadcast_to(g[:, :, :, None, None, :], g.shape[:3] + tuple(pool) + g.shape[3:])
    return _scatter_windows(dpatch, tuple(x_shape), pool, strides, (1, 1), pads).astype(_ftype(dy))


def max_pool2d_backward(x, dy, pool, strides, pads):
    """``dy`` goes to the input that won each window (the first one in row-major window order
    on a tie, so int8 inputs with equal codes route deterministically); overlapping windows add."""
    win = _windows(_pad(_f64(x), pads, -np.inf), pool, strides, (1, 1), dy.shape[1:3])
    n, oh, ow, ph, pw, c = win.shape
    flat = win.reshape(n, oh, ow, ph * pw, c)
    winner = flat.argmax(axis=3)  # first maximum
    onehot = np.arange(ph * pw)[None, None, None, :, None] == winner[:, :, :, None, :]
    dpatch = (onehot * _f64(dy)[:, :, :, None, :]).reshape(n, oh, ow, ph, pw, c)
    return _scatter_windows(dpatch, tuple(x.shape), pool, strides, (1, 1), pads).astype(_ftype(dy))


def global_avg_pool_backward(dy, x_shape):
    """``dx[n,h,w,c] = dy[n,c] / (H W)``."""
    n, h, w, c = x_shape
    g = _f64(dy)[:, None, None, :] / (h * w)
    return np.broadcast_to(g, (n, h, w, c)).astype(_ftype(dy))


# --------------------------------------------------------------------------- element-wise and shape

def clamp_backward(y, dy, lo, hi):
    """``dx = dy * [lo < y < hi]``: ReLU, ReLU6 and fused activations, from the *output* ``y``
    (``y`` strictly inside the bounds exactly when the input was). ``y`` may also hold int8
    codes with the integer clamp bounds of an int8 layer."""
    y = np.asarray(y)
    gate = (y > lo) & (y < hi)
    return np.where(gate, _f64(dy), 0.0).astype(_ftype(dy))


def add_backward(dy):
    """``y = a + b``: ``da = db = dy``."""
    return dy, dy


def pad_backward(dy, pads):
    """The gradient of the padded border is dropped: ``dx = dy[:, t:-b, l:-r, :]``."""
    t, b, l, r = pads
    h, w = dy.shape[1] - t - b, dy.shape[2] - l - r
    return np.ascontiguousarray(dy[:, t: t + h, l: l + w, :])


def reshape_backward(dy, x_shape):
    """Reshape and Flatten move no numbers: ``dx`` is ``dy`` in the input's shape."""
    return dy.reshape((dy.shape[0],) + tuple(x_shape))


def softmax_backward(y, dy, beta=1.0):
    """``dx_i = beta y_i (dy_i - sum_j dy_j y_j)`` over the last axis."""
    y64, g = _f64(y), _f64(dy)
    return (beta * y64 * (g - (g * y64).sum(axis=-1, keepdims=True))).astype(_ftype(dy))


# --------------------------------------------------------------------------- batch normalisation

def batch_norm_train_backward(x, dy, gamma, mean, var, epsilon):
    """Training-mode BatchNorm, the batch statistics depending on ``x``. With ``M`` values per
    channel, ``xhat = (x - mu) / sqrt(sigma^2 + eps)``:

    ``dbeta = sum dy``, ``dgamma = sum dy xhat``,
    ``dx = gamma / (M sqrt(sigma^2 + eps)) (M dy - dbeta - xhat dgamma)``.

    Returns ``(dx, dgamma, dbeta)``.
    """
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    inv = 1.0 / np.sqrt(_f64(var) + epsilon)
    xhat = (_f64(x) - _f64(mean)) * inv
    g = _f64(dy)
    dbeta = g.sum(axis=axes)
    dgamma = (g * xhat).sum(axis=axes)
    dx = _f64(gamma) * inv / m * (m * g - dbeta - xhat * dgamma)
    ft = _ftype(x, dy)
    return dx.astype(ft), dgamma.astype(ft), dbeta.astype(ft)


def batch_norm_eval_backward(x, dy, gamma, mean, var, epsilon):
    """Eval-mode BatchNorm, a fixed affine map: ``dx = dy gamma / sqrt(var + eps)``,
    ``dgamma = sum dy (x - mean) / sqrt(var + eps)``, ``dbeta = sum dy``.

    Returns ``(dx, dgamma, dbeta)``.
    """
    axes = tuple(range(x.ndim - 1))
    inv = 1.0 / np.sqrt(_f64(var) + epsilon)
    g = _f64(dy)
    ft = _ftype(x, dy)
    dx = g * (_f64(gamma) * inv)
    dgamma = (g * (_f64(x) - _f64(mean)) * inv).sum(axis=axes)
    return dx.astype(ft), dgamma.astype(ft), g.sum(axis=axes).astype(ft)


# --------------------------------------------------------------------------- losses

def softmax_cross_entropy(logits, labels, label_smoothing=0.0):
    """Mean cross-entropy of ``softmax(logits)`` against integer ``labels``, and its gradient.

    With ``K`` classes, targets ``t = (1 - eps) onehot(label) + eps / K`` (label smoothing,
    Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016; ``eps = 0`` by default),
    ``log p = z - max z - log sum exp(z - max z)`` (stable for any logits),

    ``L = -(1/N) sum_n sum_k t[n,k] log p[n,k]``, ``dL/dz = (p - t) / N``.

    Returns ``(L, dL/dlogits)``; ``L`` is a Python float.
    """
    z = _f64(logits)
    n, k = z.shape
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1, keepdims=True))
    logp = z - lse
    t = np.full((n, k), label_smoothing / k)
    t[np.arange(n), np.asarray(labels)] += 1.0 - label_smoothing
    loss = float(-(t * logp).sum() / n)
    return loss, ((np.exp(logp) - t) / n).astype(_ftype(logits))


def mse(y, target):
    """Mean squared error over every element, ``L = mean((y - t)^2)``, ``dL/dy = 2 (y - t) / size``.

    Returns ``(L, dL/dy)``; ``L`` is a Python float.
    """
    d = _f64(y) - _f64(target)
    return float((d * d).mean()), (2.0 * d / d.size).astype(_ftype(y))


__all__ = [
    "conv2d_forward", "depthwise_conv2d_forward", "dense_forward", "avg_pool2d_forward",
    "max_pool2d_forward", "global_avg_pool_forward", "clamp_forward", "softmax_forward",
    "batch_norm_forward", "batch_norm_train_forward", "pad_forward",
    "conv2d_grad_input", "conv2d_grad_weight", "depthwise_conv2d_grad_input",
    "depthwise_conv2d_grad_weight", "dense_grad_input", "dense_grad_weight", "bias_grad",
    "avg_pool2d_backward", "max_pool2d_backward", "global_avg_pool_backward", "clamp_backward",
    "add_backward", "pad_backward", "reshape_backward", "softmax_backward",
    "batch_norm_train_backward", "batch_norm_eval_backward", "softmax_cross_entropy", "mse",
]
