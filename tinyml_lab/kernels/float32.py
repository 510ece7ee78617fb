"""float32 kernels compiled with numba; the same maths as :mod:`tinyml_lab.kernels.reference`.

Convolutions gather each output pixel's window into a contiguous patch
(zeros where the window leaves the image) and take dot products four output
channels at a time; depthwise convolutions and pooling vectorise across
channels. Sums may be reassociated (``fastmath`` reassoc/contract, no
assumptions about NaN or infinity), so results agree with the float64
reference to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_FM = {"reassoc", "contract"}


@njit(cache=True)
def _padded(x, b, pt, pl, hp, wp, fill):
    _, h, wd, c = x.shape
    xp = np.full((hp, wp * c), np.float32(fill), np.float32)
    for y in range(h):
        xp[y + pt, pl * c: (pl + wd) * c] = x[b, y].reshape(wd * c)
    return xp


@njit(cache=True, fastmath=_FM)
def _matvec(patch, w2, bias, lo, hi, out_row):
    """``out_row[o] = clamp(w2[o] . patch + bias[o], lo, hi)``."""
    cout, k = w2.shape
    o = 0
    while o + 4 <= cout:
        a0 = np.float32(0.0)
        a1 = np.float32(0.0)
        a2 = np.float32(0.0)
        a3 = np.float32(0.0)
        for j in range(k):
            xv = patch[j]
            a0 += xv * w2[o, j]
            a1 += xv * w2[o + 1, j]
            a2 += xv * w2[o + 2, j]
            a3 += xv * w2[o + 3, j]
        out_row[o] = min(max(a0 + bias[o], lo), hi)
        out_row[o + 1] = min(max(a1 + bias[o + 1], lo), hi)
        out_row[o + 2] = min(max(a2 + bias[o + 2], lo), hi)
        out_row[o + 3] = min(max(a3 + bias[o + 3], lo), hi)
        o += 4
    while o < cout:
        a = np.float32(0.0)
        for j in range(k):
            a += patch[j] * w2[o, j]
        out_row[o] = min(max(a + bias[o], lo), hi)
        o += 1


@njit(cache=True)
def conv2d(x, w, bias, sh, sw, dh, dw, pt, pb, pl, pr, lo, hi):
    """Conv2D, ``w`` ``(C_out, KH, KW, C_in)``, ``bias`` ``(C_out,)`` (zeros when the layer has none)."""
    n, h, wd, cin = x.shape
    cout, kh, kw, _ = w.shape
    hp = h + pt + pb
    wp = wd + pl + pr
    oh = (hp - (kh - 1) * dh - 1) // sh + 1
    ow = (wp - (kw - 1) * dw - 1) // sw + 1
    out = np.empty((n, oh, ow, cout), np.float32)
    k = kh * kw * cin
    w2 = w.reshape(cout, k)
    patch = np.empty(k, np.float32)
    seg = kw * cin
    for b in range(n):
        xp = _padded(x, b, pt, pl, hp, wp, 0.0)
        for oy in range(oh):
            for ox in range(ow):
                x0 = ox * sw * cin
                for ky in range(kh):
                    row = oy * sh + ky * dh
                    if dw == 1:
                        patch[ky * seg: (ky + 1) * seg] = xp[row, x0: x0 + seg]
                    else:
                        for kx in range(kw):
                            c0 = x0 + kx * dw * cin
                            patch[ky * seg + kx * cin: ky * seg + (kx + 1) * cin] = xp[row, c0: c0 + cin]
                _matvec(patch, w2, bias, lo, hi, out[b, oy, ox])
    return out


@njit(cache=True, fastmath=_FM)
def depthwise_conv2d(x, w, bias, sh, sw, dh, dw, pt, pb, pl, pr, lo, hi):
    """Depthwise convolution (multiplier 1), ``w`` ``(1, KH, KW, C)``."""
    n, h, wd, c = x.shape
    _, kh, kw, _ = w.shape
    hp = h + pt + pb
    wp = wd + pl + pr
    oh = (hp - (kh - 1) * dh - 1) // sh + 1
    ow = (wp - (kw - 1) * dw - 1) // sw + 1
    out = np.empty((n, oh, ow, c), np.float32)
    acc = np.empty(c, np.float32)
    for b in range(n):
        xp = _padded(x, b, pt, pl, hp, wp, 0.0)
        for oy in range(oh):
            for ox in range(ow):
                acc[:] = bias
                for ky in range(kh):
                    row = oy * sh + ky * dh
                    for kx in range(kw):
                        c0 = (ox * sw + kx * dw) * c
                        for ch in range(c):
                            acc[ch] += xp[row, c0 + ch] * w[0, ky, kx, ch]
                o = out[b, oy, ox]
                for ch in range(c):
                    o[ch] = min(max(acc[ch], lo), hi)
    return out


@njit(cache=True)
def dense(x, w, bias, lo, hi):
    """``y = clamp(x W^T + b)``, ``w`` ``(C_out, C_in)``."""
    n = x.shape[0]
    out = np.empty((n, w.shape[0]), np.float32)
    for b in range(n):
        _matvec(x[b], w, bias, lo, hi, out[b])
    return out


@njit(cache=True, fastmath=_FM)
def avg_pool2d(x, ph, pw, sh, sw, pt, pb, pl, pr, count_include_pad, lo, hi):
    n, h, wd, c = x.shape
    oh = (h + pt + pb - ph) // sh + 1
    ow = (wd + pl + pr - pw) // sw + 1
    out = np.empty((n, oh, ow, c), np.float32)
    acc = np.empty(c, np.float32)
    for b in range(n):
        for oy in range(oh):
            y0 = max(oy * sh - pt, 0)
            y1 = min(oy * sh - pt + ph, h)
            for ox in range(ow):
                x0 = max(ox * sw - pl, 0)
                x1 = min(ox * sw - pl + pw, wd)
                count = ph * pw if count_include_pad else (y1 - y0) * (x1 - x0)
                acc[:] = 0.0
                for y in range(y0, y1):
                    for xx in range(x0, x1):
                        for ch in range(c):
                            acc[ch] += x[b, y, xx, ch]
                inv = np.float32(1.0) / np.float32(count)
                for ch in range(c):
                    out[b, oy, ox, ch] = min(max(acc[ch] * inv, lo), hi)
    return out


@njit(cache=True)
def max_pool2d(x, ph, pw, sh, sw, pt, pb, pl, pr, lo, hi):
    n, h, wd, c = x.shape
    oh = (h + pt + pb - ph) // sh + 1
    ow = (wd + pl + pr - pw) // sw + 1
    out = np.empty((n, oh, ow, c), np.float32)
    m = np.empty(c, np.float32)
    for b in range(n):
        for oy in range(oh):
            y0 = max(oy * sh - pt, 0)
            y1 = min(oy * sh - pt + ph, h)
            for ox in range(ow):
                x0 = max(ox * sw - pl, 0)
                x1 = min(ox * sw - pl + pw, wd)
                m[:] = -np.inf
                for y in range(y0, y1):
                    for xx in range(x0, x1):
                        for ch in range(c):
                            v = x[b, y, xx, ch]
                            if v > m[ch] or v != v:  # NaN propagates
                                m[ch] = v
                for ch in range(c):
                    out[b, oy, ox, ch] = min(max(m[ch], lo), hi)
    return out


@njit(cache=True, fastmath=_FM)
def global_avg_pool(x):
    n, h, wd, c = x.shape
    out = np.zeros((n, c), np.float32)
    inv = np.float32(1.0) / np.float32(h * wd)
    for b in range(n):
        for y in range(h):
            for xx in range(wd):
                for ch in range(c):
                    out[b, ch] += x[b, y, xx, ch]
        for ch in range(c):
            out[b, ch] *= inv
    return out


@njit(cache=True)
def add(a, b, lo, hi):
    fa = a.reshape(a.size)
    fb = b.reshape(b.size)
    out = np.empty(a.size, np.float32)
    for i in range(a.size):
        out[i] = min(max(fa[i] + fb[i], lo), hi)
    return out.reshape(a.shape)


@njit(cache=True)
def clamp(x, lo, hi):
    fx = x.reshape(x.size)
    out = np.empty(x.size, np.float32)
    for i in range(x.size):
        out[i] = min(max(fx[i], lo), hi)
    return out.reshape(x.shape)


@njit(cache=True)
def softmax(x, beta):
    depth = x.shape[-1]
    rows = x.size // depth
    fx = x.reshape(rows, depth)
    out = np.empty((rows, depth), np.float32)
    for r in range(rows):
        mx = -np.inf
        for c in range(depth):
            mx = max(mx, np.float64(fx[r, c]))
        total = 0.0
        for c in range(depth):
            e = math.exp(beta * (np.float64(fx[r, c]) - mx))
            out[r, c] = e
            total += e
        for c in range(depth):
            out[r, c] = out[r, c] / total
    return out.reshape(x.shape)


@njit(cache=True)
def batch_norm(x, scale, shift):
    """``y = x * scale + shift`` per channel, with ``scale = gamma / sqrt(var + eps)`` and
    ``shift = beta - mean * scale`` (computed once per layer)."""
    c = x.shape[-1]
    fx = x.reshape(x.size // c, c)
    out = np.empty(fx.shape, np.float32)
    for i in range(fx.shape[0]):
        for ch in range(c):
            out[i, ch] = fx[i, ch] * scale[ch] + shift[ch]
    return out.reshape(x.shape)


@njit(cache=True)
def pad(x, pt, pb, pl, pr, value):
    n, h, wd, c = x.shape
    out = np.full((n, h + pt + pb, wd + pl + pr, c), np.float32(value), np.float32)
    out[:, pt: pt + h, pl: pl + wd, :] = x
    return out


@njit(cache=True)
def dequantize(q, scale, zero_point):
    fq = q.reshape(q.size)
    out = np.empty(q.size, np.float32)
    s = np.float32(scale)
    for i in range(q.size):
        out[i] = s * np.float32(np.int32(fq[i]) - zero_point)
    return out.reshape(q.shape)
