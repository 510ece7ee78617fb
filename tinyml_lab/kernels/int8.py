"""int8 kernels compiled with numba, bit-exact with :mod:`tinyml_lab.kernels.reference`.

Every kernel here computes what the reference computes, reorganised for
speed:

* The input is copied once into a buffer padded with the input zero point,
  so the inner loops carry no bounds checks. Since a padded position then
  holds ``x - zp = 0``, ``sum_k w_k (x_k - zp) = sum_k w_k x_k - zp sum_k w_k``
  over the whole window, and the second term is folded with the bias into
  ``bias_eff[o] = b[o] - zp * sum_k w[o, k]`` once per layer
  (:func:`effective_bias`). Sums are taken modulo 2^32, like an int32
  accumulator, so the regrouping is exact even on overflow.
* Convolutions gather each output pixel's window into a contiguous patch and
  take dot products four output channels at a time (the patch is read once
  for four channels).
* Depthwise convolutions vectorise across channels.

Rescaling is :func:`~tinyml_lab.kernels.fixedpoint.requantize`, the same
routine for every op.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fixedpoint import (
    SOFTMAX_ACCUM_INTEGER_BITS,
    exp_on_negative_values,
    rdbpot,
    reciprocal,
    requantize,
    srdhm,
)

ADD_LEFT_SHIFT = 20


def effective_bias(w: np.ndarray, b: np.ndarray | None, in_zp: int, depthwise: bool = False) -> np.ndarray:
    """``b[o] - in_zp * sum_k w[o, k]`` wrapped to int32.

    Output channels are axis 0 of ``w``, or its last axis for depthwise weights
    ``(1, KH, KW, C)``.
    """
    w64 = w.astype(np.int64)
    sums = w64.reshape(-1, w.shape[-1]).sum(axis=0) if depthwise else w64.reshape(w.shape[0], -1).sum(axis=1)
    out = (0 if b is None else b.astype(np.int64)) - int(in_zp) * sums
    return ((out + 2**31) % 2**32 - 2**31).astype(np.int32)


@njit(cache=True, inline="always")
def _out_int8(acc, mult, shift, out_zp, lo, hi):
    """Requantize an accumulator (wrapped to int32 first: numba widens int32 sums), add the
    output zero point, clamp."""
    v = requantize(np.int64(np.int32(acc)), np.int64(mult), np.int64(shift)) + out_zp
    return np.int8(min(max(v, lo), hi))


@njit(cache=True)
def _padded(x, b, pt, pl, hp, wp, fill):
    """Image ``b`` of the batch in a ``(hp, wp * C)`` buffer filled with ``fill``."""
    _, h, wd, c = x.shape
    xp = np.full((hp, wp * c), np.int8(fill), np.int8)
    for y in range(h):
        row = x[b, y].reshape(wd * c)
        xp[y + pt, pl * c: (pl + wd) * c] = row
    return xp


@njit(cache=True)
def _dot_rows(patch, w2, o, k):
    """Four int32 dot products of ``patch[:k]`` with rows ``o..o+3`` of ``w2``."""
    a0 = np.int32(0)
    a1 = np.int32(0)
    a2 = np.int32(0)
    a3 = np.int32(0)
    for j in range(k):
        xv = np.int32(patch[j])
        a0 = np.int32(a0 + xv * np.int32(w2[o, j]))
        a1 = np.int32(a1 + xv * np.int32(w2[o + 1, j]))
        a2 = np.int32(a2 + xv * np.int32(w2[o + 2, j]))
        a3 = np.int32(a3 + xv * np.int32(w2[o + 3, j]))
    return a0, a1, a2, a3


@njit(cache=True)
def _dot_row(patch, w2, o, k):
    a = np.int32(0)
    for j in range(k):
        a = np.int32(a + np.int32(patch[j]) * np.int32(w2[o, j]))
    return a


@njit(cache=True)
def _matvec_int8(patch, w2, bias_eff, mult, shift, out_zp, lo, hi, out_row):
    """``out_row[o] = requantize(w2[o] . patch + bias_eff[o])`` for every output channel."""
    cout, k = w2.shape
    o = 0
    while o + 4 <= cout:
        a0, a1, a2, a3 = _dot_rows(patch, w2, o, k)
        out_row[o] = _out_int8(a0 + bias_eff[o], mult[o], shift[o], out_zp, lo, hi)
        out_row[o + 1] = _out_int8(a1 + bias_eff[o + 1], mult[o + 1], shift[o + 1], out_zp, lo, hi)
        out_row[o + 2] = _out_int8(a2 + bias_eff[o + 2], mult[o + 2], shift[o + 2], out_zp, lo, hi)
        out_row[o + 3] = _out_int8(a3 + bias_eff[o + 3], mult[o + 3], shift[o + 3], out_zp, lo, hi)
        o += 4
    while o < cout:
        a = _dot_row(patch, w2, o, k)
        out_row[o] = _out_int8(a + bias_eff[o], mult[o], shift[o], out_zp, lo, hi)
        o += 1


@njit(cache=True)
def conv2d_int8(x, w, bias_eff, sh, sw, dh, dw, pt, pb, pl, pr, in_zp, mult, shift, out_zp, lo, hi):
    """int8 Conv2D; ``w`` is ``(C_out, KH, KW, C_in)``, ``bias_eff`` from :func:`effective_bias`."""
    n, h, wd, cin = x.shape
    cout, kh, kw, _ = w.shape
    hp = h + pt + pb
    wp = wd + pl + pr
    oh = (hp - (kh - 1) * dh - 1) // sh + 1
    ow = (wp - (kw - 1) * dw - 1) // sw + 1
    out = np.empty((n, oh, ow, cout), np.int8)
    k = kh * kw * cin
    w2 = w.reshape(cout, k)
    patch = np.empty(k, np.int8)
    seg = kw * cin
    for b in range(n):
        xp = _padded(x, b, pt, pl, hp, wp, in_zp)
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
                _matvec_int8(patch, w2, bias_eff, mult, shift, out_zp, lo, hi, out[b, oy, ox])
    return out


@njit(cache=True)
def depthwise_conv2d_int8(x, w, bias_eff, sh, sw, dh, dw, pt, pb, pl, pr, in_zp, mult, shift,
                          out_zp, lo, hi):
    """int8 depthwise convolution (multiplier 1); ``w`` is ``(1, KH, KW, C)``."""
    n, h, wd, c = x.shape
    _, kh, kw, _ = w.shape
    hp = h + pt + pb
    wp = wd + pl + pr
    oh = (hp - (kh - 1) * dh - 1) // sh + 1
    ow = (wp - (kw - 1) * dw - 1) // sw + 1
    out = np.empty((n, oh, ow, c), np.int8)
    acc = np.empty(c, np.int32)
    w32 = w[0].astype(np.int32)
    for b in range(n):
        xp = _padded(x, b, pt, pl, hp, wp, in_zp)
        for oy in range(oh):
            for ox in range(ow):
                acc[:] = bias_eff
                for ky in range(kh):
                    row = oy * sh + ky * dh
                    for kx in range(kw):
                        c0 = (ox * sw + kx * dw) * c
                        for ch in range(c):
                            acc[ch] = np.int32(acc[ch] + np.int32(xp[row, c0 + ch]) * w32[ky, kx, ch])
                o = out[b, oy, ox]
                for ch in range(c):
                    o[ch] = _out_int8(acc[ch], mult[ch], shift[ch], out_zp, lo, hi)
    return out


@njit(cache=True)
def dense_int8(x, w, bias_eff, in_zp, mult, shift, out_zp, lo, hi):
    """int8 Dense; ``w`` is ``(C_out, C_in)``; per-tensor or per-channel multipliers alike."""
    n = x.shape[0]
    out = np.empty((n, w.shape[0]), np.int8)
    for b in range(n):
        _matvec_int8(x[b], w, bias_eff, mult, shift, out_zp, lo, hi, out[b])
    return out


@njit(cache=True)
def avg_pool2d_int8(x, ph, pw, sh, sw, pt, pb, pl, pr, lo, hi):
    """Average of the codes over the valid part of each window, rounded half away from zero."""
    n, h, wd, c = x.shape
    oh = (h + pt + pb - ph) // sh + 1
    ow = (wd + pl + pr - pw) // sw + 1
    out = np.empty((n, oh, ow, c), np.int8)
    acc = np.empty(c, np.int32)
    for b in range(n):
        for oy in range(oh):
            y0 = max(oy * sh - pt, 0)
            y1 = min(oy * sh - pt + ph, h)
            for ox in range(ow):
                x0 = max(ox * sw - pl, 0)
                x1 = min(ox * sw - pl + pw, wd)
                count = (y1 - y0) * (x1 - x0)
                acc[:] = 0
                for y in range(y0, y1):
                    for xx in range(x0, x1):
                        for ch in range(c):
                            acc[ch] += np.int32(x[b, y, xx, ch])
                for ch in range(c):
                    a = acc[ch]
                    v = (a + count // 2) // count if a > 0 else -((-a + count // 2) // count)
                    out[b, oy, ox, ch] = np.int8(min(max(v, lo), hi))
    return out


@njit(cache=True)
def max_pool2d_int8(x, ph, pw, sh, sw, pt, pb, pl, pr, lo, hi):
    n, h, wd, c = x.shape
    oh = (h + pt + pb - ph) // sh + 1
    ow = (wd + pl + pr - pw) // sw + 1
    out = np.empty((n, oh, ow, c), np.int8)
    m = np.empty(c, np.int8)
    for b in range(n):
        for oy in range(oh):
            y0 = max(oy * sh - pt, 0)
            y1 = min(oy * sh - pt + ph, h)
            for ox in range(ow):
                x0 = max(ox * sw - pl, 0)
                x1 = min(ox * sw - pl + pw, wd)
                m[:] = -128
                for y in range(y0, y1):
                    for xx in range(x0, x1):
                        for ch in range(c):
                            if x[b, y, xx, ch] > m[ch]:
                                m[ch] = x[b, y, xx, ch]
                for ch in range(c):
                    out[b, oy, ox, ch] = np.int8(min(max(np.int64(m[ch]), lo), hi))
    return out


@njit(cache=True)
def global_avg_pool_int8(x, in_zp, mult, shift, out_zp):
    """TFLite int8 MEAN over H, W: requantize ``sum (x - in_zp)`` by ``s_in/s_out``, then divide."""
    n, h, wd, c = x.shape
    count = h * wd
    out = np.empty((n, c), np.int8)
    acc = np.empty(c, np.int32)
    for b in range(n):
        acc[:] = 0
        for y in range(h):
            for xx in range(wd):
                for ch in range(c):
                    acc[ch] = np.int32(acc[ch] + np.int32(x[b, y, xx, ch]))
        for ch in range(c):
            a = requantize(np.int64(np.int32(acc[ch] - in_zp * count)), mult, shift)
            v = (a + count // 2) // count if a > 0 else -((-a + count // 2) // count)
            out[b, ch] = np.int8(min(max(v + out_zp, -128), 127))
    return out


@njit(cache=True)
def add_int8(a, b, a_zp, a_mult, a_shift, b_zp, b_mult, b_shift, out_zp, out_mult, out_shift, lo, hi):
    """TFLite int8 ADD (inputs rescaled to a common scale with 20 bits of headroom)."""
    fa = a.reshape(a.size)
    fb = b.reshape(b.size)
    out = np.empty(a.size, np.int8)
    for i in range(a.size):
        sa = requantize((np.int64(fa[i]) - a_zp) << ADD_LEFT_SHIFT, a_mult, a_shift)
        sb = requantize((np.int64(fb[i]) - b_zp) << ADD_LEFT_SHIFT, b_mult, b_shift)
        v = requantize(sa + sb, out_mult, out_shift) + out_zp
        out[i] = np.int8(min(max(v, lo), hi))
    return out.reshape(a.shape)


@njit(cache=True)
def rescale_int8(x, in_zp, mult, shift, out_zp, lo, hi):
    """``clamp(out_zp + requantize(x - in_zp))``: quantized ReLU and ReLU6."""
    fx = x.reshape(x.size)
    out = np.empty(x.size, np.int8)
    for i in range(x.size):
        v = requantize(np.int64(fx[i]) - in_zp, mult, shift) + out_zp
        out[i] = np.int8(min(max(v, lo), hi))
    return out.reshape(x.shape)


@njit(cache=True)
def softmax_int8(x, mult, left_shift, diff_min):
    """TFLite's fixed-point int8 softmax over the last axis (output scale 1/256, zero point -128)."""
    depth = x.shape[-1]
    rows = x.size // depth
    fx = x.reshape(rows, depth)
    out = np.empty((rows, depth), np.int8)
    e = np.empty(depth, np.int64)
    for r in range(rows):
        mx = np.int64(-128)
        for c in range(depth):
            mx = max(mx, np.int64(fx[r, c]))
        total = np.int64(0)
        for c in range(depth):
            d = np.int64(fx[r, c]) - mx
            if d >= diff_min:
                e[c] = exp_on_negative_values(srdhm(d << left_shift, mult))
                total += rdbpot(e[c], SOFTMAX_ACCUM_INTEGER_BITS)
            else:
                e[c] = -1
        recip, bits_over_unit = reciprocal(total, SOFTMAX_ACCUM_INTEGER_BITS)
        exponent = bits_over_unit + 31 - 8
        for c in range(depth):
            if e[c] < 0:
                out[r, c] = -128
            else:
                v = rdbpot(srdhm(recip, e[c]), exponent) - 128
                out[r, c] = np.int8(min(max(v, -128), 127))
    return out.reshape(x.shape)


@njit(cache=True)
def pad_int8(x, pt, pb, pl, pr, zero_point):
    n, h, wd, c = x.shape
    out = np.full((n, h + pt + pb, wd + pl + pr, c), np.int8(zero_point), np.int8)
    out[:, pt: pt + h, pl: pl + wd, :] = x
    return out


@njit(cache=True)
def quantize(x, scale, zero_point):
    """float32 -> int8, ``clamp(round(x / scale) + zp)`` with ties away from zero, the quotient
    rounded to float32 as TFLite computes it."""
    fx = x.reshape(x.size)
    out = np.empty(x.size, np.int8)
    s = np.float32(scale)
    for i in range(x.size):
        r = np.float32(np.float32(fx[i]) / s)
        a = abs(r)
        q = np.floor(a)
        if a - q >= 0.5:  # exact: a - floor(a) loses no bits
            q += 1.0
        if r < 0:
            q = -q
        out[i] = np.int8(min(max(q + zero_point, -128.0), 127.0))
    return out.reshape(x.shape)
