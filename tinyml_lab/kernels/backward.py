"""float32 backward kernels compiled with numba; the maths of :mod:`tinyml_lab.kernels.backward_reference`.

The convolution kernels reuse the forward kernels' idea
(:mod:`tinyml_lab.kernels.float32`): each output pixel's window is gathered
into a contiguous patch of a padded copy of the input. Then

* the weight gradient adds ``dy[o] * patch`` to row ``o`` of ``dW`` (an outer
  product per output pixel), and
* the input gradient forms ``dpatch = W^T dy`` and adds it back onto the
  padded buffer at the window's positions; the padding is dropped at the end.

Sums may be reassociated (``fastmath`` reassoc/contract), so results agree
with the float64 reference to float32 rounding, not bit for bit. Batches are
walked in order, one thread, so every result is deterministic.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_FM = {"reassoc", "contract"}


# --------------------------------------------------------------------------- convolutions

@njit(cache=True)
def _padded(x, b, pt, pl, hp, wp):
    """Image ``b`` of the batch in a zero ``(hp, wp * C)`` buffer."""
    _, h, wd, c = x.shape
    xp = np.zeros((hp, wp * c), np.float32)
    for y in range(h):
        xp[y + pt, pl * c: (pl + wd) * c] = x[b, y].reshape(wd * c)
    return xp


@njit(cache=True)
def _gather(xp, patch, oy, ox, kh, kw, c, sh, sw, dh, dw):
    """The window of output pixel ``(oy, ox)`` as a ``KH*KW*C`` patch, ``(ky, kx, c)`` order."""
    seg = kw * c
    x0 = ox * sw * c
    for ky in range(kh):
        row = oy * sh + ky * dh
        if dw == 1:
            patch[ky * seg: (ky + 1) * seg] = xp[row, x0: x0 + seg]
        else:
            for kx in range(kw):
                c0 = x0 + kx * dw * c
                patch[ky * seg + kx * c: ky * seg + (kx + 1) * c] = xp[row, c0: c0 + c]


@njit(cache=True)
def _scatter(dxp, dpatch, oy, ox, kh, kw, c, sh, sw, dh, dw):
    """Add a window's gradient back onto the padded buffer (the adjoint of :func:`_gather`)."""
    seg = kw * c
    x0 = ox * sw * c
    for ky in range(kh):
        row = oy * sh + ky * dh
        for kx in range(kw):
            c0 = x0 + kx * dw * c
            j0 = ky * seg + kx * c
            for ch in range(c):
                dxp[row, c0 + ch] += dpatch[j0 + ch]


@njit(cache=True)
def _crop(dxp, dx, b, pt, pl):
    _, h, wd, c = dx.shape
    for y in range(h):
        dx[b, y] = dxp[y + pt, pl * c: (pl + wd) * c].reshape(wd, c)


@njit(cache=True, fastmath=_FM)
def conv2d_grad_input(dy, w, h, wd, sh, sw, dh, dw, pt, pb, pl, pr):
    """``dx`` of a Conv2D with ``w`` ``(C_out, KH, KW, C_in)`` on an ``h x wd`` input."""
    n, oh, ow, cout = dy.shape
    _, kh, kw, cin = w.shape
    k = kh * kw * cin
    w2 = w.reshape(cout, k)
    hp, wp = h + pt + pb, wd + pl + pr
    dx = np.empty((n, h, wd, cin), np.float32)
    dpatch = np.empty(k, np.float32)
    for b in range(n):
        dxp = np.zeros((hp, wp * cin), np.float32)
        for oy in range(oh):
            for ox in range(ow):
                dpatch[:] = 0.0
                for o in range(cout):
                    g = dy[b, oy, ox, o]
                    if g != 0.0:
                        for j in range(k):
                            dpatch[j] += g * w2[o, j]
                _scatter(dxp, dpatch, oy, ox, kh, kw, cin, sh, sw, dh, dw)
        _crop(dxp, dx, b, pt, pl)
    return dx


@njit(cache=True, fastmath=_FM)
def conv2d_grad_weight(x, dy, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr):
    """``(dW, db)`` of a Conv2D: ``dW[o] = sum over output pixels of dy[o] * window``."""
    n, h, wd, cin = x.shape
    _, oh, ow, cout = dy.shape
    k = kh * kw * cin
    hp, wp = h + pt + pb, wd + pl + pr
    dw2 = np.zeros((cout, k), np.float32)
    db = np.zeros(cout, np.float32)
    patch = np.empty(k, np.float32)
    for b in range(n):
        xp = _padded(x, b, pt, pl, hp, wp)
        for oy in range(oh):
            for ox in range(ow):
                _gather(xp, patch, oy, ox, kh, kw, cin, sh, sw, dh, dw)
                for o in range(cout):
                    g = dy[b, oy, ox, o]
                    db[o] += g
                    if g != 0.0:
                        for j in range(k):
                            dw2[o, j] += g * patch[j]
    return dw2.reshape(cout, kh, kw, cin), db


@njit(cache=True, fastmath=_FM)
def depthwise_conv2d_grad_input(dy, w, h, wd, sh, sw, dh, dw, pt, pb, pl, pr):
    """``dx`` of a depthwise convolution with ``w`` ``(1, KH, KW, C)``."""
    n, oh, ow, c = dy.shape
    _, kh, kw, _ = w.shape
    hp, wp = h + pt + pb, wd + pl + pr
    dx = np.empty((n, h, wd, c), np.float32)
    for b in range(n):
        dxp = np.zeros((hp, wp * c), np.float32)
        for oy in range(oh):
            for ox in range(ow):
                for ky in range(kh):
                    row = oy * sh + ky * dh
                    for kx in range(kw):
                        c0 = (ox * sw + kx * dw) * c
                        for ch in range(c):
                            dxp[row, c0 + ch] += dy[b, oy, ox, ch] * w[0, ky, kx, ch]
        _crop(dxp, dx, b, pt, pl)
    return dx


@njit(cache=True, fastmath=_FM)
def depthwise_conv2d_grad_weight(x, dy, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr):
    """``(dW, db)`` of a depthwise convolution, ``dW`` ``(1, KH, KW, C)``."""
    n, h, wd, c = x.shape
    _, oh, ow, _ = dy.shape
    hp, wp = h + pt + pb, wd + pl + pr
    dwt = np.zeros((1, kh, kw, c), np.float32)
    db = np.zeros(c, np.float32)
    for b in range(n):
        xp = _padded(x, b, pt, pl, hp, wp)
        for oy in range(oh):
            for ox in range(ow):
                for ch in range(c):
                    db[ch] += dy[b, oy, ox, ch]
                for ky in range(kh):
                    row = oy * sh + ky * dh
                    for kx in range(kw):
                        c0 = (ox * sw + kx * dw) * c
                        for ch in range(c):
                            dwt[0, ky, kx, ch] += dy[b, oy, ox, ch] * xp[row, c0 + ch]
    return dwt, db


@njit(cache=True, fastmath=_FM)
def dense_grad_input(dy, w):
    """``dx = dy W``."""
    n, cout = dy.shape
    cin = w.shape[1]
    dx = np.zeros((n, cin), np.float32)
    for b in range(n):
        for o in range(cout):
            g = dy[b, o]
            if g != 0.0:
                for i in range(cin):
                    dx[b, i] += g * w[o, i]
    return dx


@njit(cache=True, fastmath=_FM)
def dense_grad_weight(x, dy):
    """``(dW, db) = (dy^T x, sum_n dy[n])``."""
    n, cin = x.shape
    cout = dy.shape[1]
    dw = np.zeros((cout, cin), np.float32)
    db = np.zeros(cout, np.float32)
    for b in range(n):
        for o in range(cout):
            g = dy[b, o]
            db[o] += g
            if g != 0.0:
                for i in range(cin):
                    dw[o, i] += g * x[b, i]
    return dw, db


@njit(cache=True)
def bias_grad(dy):
    """``db[o] = sum over every leading index of dy[..., o]``, accumulated in float32 in the order the
    weight-gradient kernels accumulate their ``db`` (batch, then pixels), so the sums agree bit for bit."""
    cout = dy.shape[-1]
    rows = dy.size // cout
    fy = dy.reshape(rows, cout)
    db = np.zeros(cout, np.float32)
    for r in range(rows):
        for o in range(cout):
            db[o] += fy[r, o]
    return db


# --------------------------------------------------------------------------- pooling

@njit(cache=True)
def avg_pool2d_backward(dy, h, wd, ph, pw, sh, sw, pt, pb, pl, pr, count_include_pad):
    """Each window spreads ``dy / count`` over the inputs it averaged."""
    n, oh, ow, c = dy.shape
    dx = np.zeros((n, h, wd, c), np.float32)
    for b in range(n):
        for oy in range(oh):
            y0 = max(oy * sh - pt, 0)
            y1 = min(oy * sh - pt + ph, h)
            for ox in range(ow):
                x0 = max(ox * sw - pl, 0)
                x1 = min(ox * sw - pl + pw, wd)
                count = ph * pw if count_include_pad else (y1 - y0) * (x1 - x0)
                if count == 0:
                    continue
                inv = np.float32(1.0) / np.float32(count)
                for y in range(y0, y1):
                    for xx in range(x0, x1):
                        for ch in range(c):
                            dx[b, y, xx, ch] += dy[b, oy, ox, ch] * inv
    return dx


@njit(cache=True)
def max_pool2d_backward(x, dy, ph, pw, sh, sw, pt, pb, pl, pr):
    """``dy`` to each window's winner, the first maximum in row-major window order."""
    n, h, wd, c = x.shape
    _, oh, ow, _ = dy.shape
    dx = np.zeros((n, h, wd, c), np.float32)
    for b in range(n):
        for oy in range(oh):
            for ox in range(ow):
                for ch in range(c):
                    best = -np.inf
                    by = -1
                    bx = -1
                    for ky in range(ph):
                        y = oy * sh - pt + ky
                        if y < 0 or y >= h:
                            continue
                        for kx in range(pw):
                            xx = ox * sw - pl + kx
                            if xx < 0 or xx >= wd:
                                continue
                            v = x[b, y, xx, ch]
                            if by < 0 or v > best:
                                best = v
                                by = y
                                bx = xx
                    if by >= 0:
                        dx[b, by, bx, ch] += dy[b, oy, ox, ch]
    return dx


@njit(cache=True)
def global_avg_pool_backward(dy, h, wd):
    """``dx[n,h,w,c] = dy[n,c] / (H W)``."""
    n, c = dy.shape
    dx = np.empty((n, h, wd, c), np.float32)
    inv = np.float32(1.0) / np.float32(h * wd)
    for b in range(n):
        for y in range(h):
            for xx in range(wd):
                for ch in range(c):
                    dx[b, y, xx, ch] = dy[b, ch] * inv
    return dx


# --------------------------------------------------------------------------- element-wise

@njit(cache=True)
def clamp_backward(y, dy, lo, hi):
    """``dx = dy * [lo < y < hi]`` from the output ``y`` (float values or int8 codes)."""
    fy = y.reshape(y.size)
    fg = dy.reshape(dy.size)
    out = np.empty(dy.size, np.float32)
    for i in range(dy.size):
        v = fy[i]
        out[i] = fg[i] if (v > lo and v < hi) else np.float32(0.0)
    return out.reshape(dy.shape)


@njit(cache=True)
def pack_mask(y, lo, hi):
    """The 1-bit mask ``[lo < y < hi]`` of a ReLU/ReLU6 output, 8 elements per byte (element ``i`` in
    bit ``i mod 8`` of byte ``i // 8``): what the backward pass keeps instead of the activation."""
    fy = y.reshape(y.size)
    n = fy.size
    out = np.zeros((n + 7) // 8, np.uint8)
    for b in range(n // 8):
        m = 0
        base = b * 8
        for j in range(8):
            v = fy[base + j]
            m |= (1 if (v > lo and v < hi) else 0) << j
        out[b] = m
    for i in range(n - n % 8, n):
        v = fy[i]
        if v > lo and v < hi:
            out[i >> 3] |= np.uint8(1 << (i & 7))
    return out


@njit(cache=True)
def gate_packed(dy, bits):
    """``dx = dy * mask`` from a mask packed by :func:`pack_mask`; the same values as
    :func:`clamp_backward` on the output the mask was made from."""
    fg = dy.reshape(dy.size)
    n = fg.size
    out = np.empty(n, dy.dtype)
    zero = fg.dtype.type(0.0) if n else 0.0
    for b in range(n // 8):
        m = bits[b]
        base = b * 8
        for j in range(8):
            out[base + j] = fg[base + j] if (m >> j) & 1 else zero
    for i in range(n - n % 8, n):
        out[i] = fg[i] if (bits[i >> 3] >> (i & 7)) & 1 else zero
    return out.reshape(dy.shape)


@njit(cache=True)
def pad_backward(dy, pt, pb, pl, pr):
    n, hp, wp, c = dy.shape
    return np.ascontiguousarray(dy[:, pt: hp - pb, pl: wp - pr, :])


@njit(cache=True)
def softmax_backward(y, dy, beta):
    """``dx_i = beta y_i (dy_i - sum_j dy_j y_j)`` over the last axis."""
    depth = y.shape[-1]
    rows = y.size // depth
    fy = y.reshape(rows, depth)
    fg = dy.reshape(rows, depth)
    out = np.empty((rows, depth), np.float32)
    for r in range(rows):
        s = 0.0
        for c in range(depth):
            s += np.float64(fg[r, c]) * fy[r, c]
        for c in range(depth):
            out[r, c] = beta * fy[r, c] * (fg[r, c] - s)
    return out.reshape(y.shape)


# --------------------------------------------------------------------------- batch normalisation

@njit(cache=True)
def batch_norm_train_forward(x, gamma, beta, epsilon):
    """Normalise with the batch's mean and biased variance per channel (last axis), in float64
    sums. Returns ``(y, mean, var)``."""
    c = x.shape[-1]
    m = x.size // c
    fx = x.reshape(m, c)
    mean = np.zeros(c, np.float64)
    var = np.zeros(c, np.float64)
    for i in range(m):
        for ch in range(c):
            mean[ch] += fx[i, ch]
    mean /= m
    for i in range(m):
        for ch in range(c):
            d = fx[i, ch] - mean[ch]
            var[ch] += d * d
    var /= m
    scale = np.empty(c, np.float64)
    for ch in range(c):
        scale[ch] = gamma[ch] / math.sqrt(var[ch] + epsilon)
    out = np.empty((m, c), np.float32)
    for i in range(m):
        for ch in range(c):
            out[i, ch] = (fx[i, ch] - mean[ch]) * scale[ch] + beta[ch]
    return out.reshape(x.shape), mean.astype(np.float32), var.astype(np.float32)


@njit(cache=True)
def batch_norm_train_backward(x, dy, gamma, mean, var, epsilon):
    """``(dx, dgamma, dbeta)`` of training-mode BatchNorm (batch statistics), sums in float64."""
    c = x.shape[-1]
    m = x.size // c
    fx = x.reshape(m, c)
    fg = dy.reshape(m, c)
    inv = np.empty(c, np.float64)
    for ch in range(c):
        inv[ch] = 1.0 / math.sqrt(np.float64(var[ch]) + epsilon)
    dbeta = np.zeros(c, np.float64)
    dgamma = np.zeros(c, np.float64)
    for i in range(m):
        for ch in range(c):
            g = np.float64(fg[i, ch])
            dbeta[ch] += g
            dgamma[ch] += g * (fx[i, ch] - np.float64(mean[ch])) * inv[ch]
    dx = np.empty((m, c), np.float32)
    for i in range(m):
        for ch in range(c):
            xhat = (fx[i, ch] - np.float64(mean[ch])) * inv[ch]
            dx[i, ch] = gamma[ch] * inv[ch] / m * (m * np.float64(fg[i, ch]) - dbeta[ch] - xhat * dgamma[ch])
    return dx.reshape(x.shape), dgamma.astype(np.float32), dbeta.astype(np.float32)


@njit(cache=True)
def batch_norm_eval_backward(x, dy, gamma, mean, var, epsilon):
    """``(dx, dgamma, dbeta)`` of eval-mode BatchNorm (stored statistics)."""
    c = x.shape[-1]
    m = x.size // c
    fx = x.reshape(m, c)
    fg = dy.reshape(m, c)
    inv = np.empty(c, np.float64)
    for ch in range(c):
        inv[ch] = 1.0 / math.sqrt(np.float64(var[ch]) + epsilon)
    dx = np.empty((m, c), np.float32)
    dbeta = np.zeros(c, np.float64)
    dgamma = np.zeros(c, np.float64)
    for i in range(m):
        for ch in range(c):
            g = np.float64(fg[i, ch])
            dx[i, ch] = g * gamma[ch] * inv[ch]
            dbeta[ch] += g
            dgamma[ch] += g * (fx[i, ch] - np.float64(mean[ch])) * inv[ch]
    return dx.reshape(x.shape), dgamma.astype(np.float32), dbeta.astype(np.float32)


# --------------------------------------------------------------------------- losses

@njit(cache=True)
def softmax_cross_entropy(logits, labels, label_smoothing):
    """Mean softmax cross-entropy against integer labels and its gradient ``(p - t) / N``,
    log-sum-exp with the row maximum subtracted, in float64. Returns ``(loss, dlogits)``."""
    n, k = logits.shape
    grad = np.empty((n, k), np.float32)
    total = 0.0
    off = label_smoothing / k
    for b in range(n):
        mx = -np.inf
        for j in range(k):
            mx = max(mx, np.float64(logits[b, j]))
        s = 0.0
        for j in range(k):
            s += math.exp(np.float64(logits[b, j]) - mx)
        lse = math.log(s)
        for j in range(k):
            logp = np.float64(logits[b, j]) - mx - lse
            t = off + (1.0 - label_smoothing if j == labels[b] else 0.0)
            total -= t * logp
            grad[b, j] = (math.exp(logp) - t) / n
    return total / n, grad


@njit(cache=True)
def mse(y, target):
    """``mean((y - t)^2)`` and ``2 (y - t) / size``. Returns ``(loss, dy)``."""
    fy = y.reshape(y.size)
    ft = target.reshape(target.size)
    grad = np.empty(y.size, np.float32)
    total = 0.0
    for i in range(y.size):
        d = np.float64(fy[i]) - np.float64(ft[i])
        total += d * d
        grad[i] = 2.0 * d / y.size
    return total / y.size, grad.reshape(y.shape)


__all__ = [
    "conv2d_grad_input", "conv2d_grad_weight", "depthwise_conv2d_grad_input",
    "depthwise_conv2d_grad_weight", "dense_grad_input", "dense_grad_weight", "bias_grad",
    "avg_pool2d_backward", "max_pool2d_backward", "global_avg_pool_backward", "clamp_backward",
    "pack_mask", "gate_packed", "pad_backward", "softmax_backward", "batch_norm_train_forward", "batch_norm_train_backward",
    "batch_norm_eval_backward", "softmax_cross_entropy", "mse",
]
