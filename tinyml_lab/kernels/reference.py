"""Plain NumPy kernels: the specification every fast kernel is tested against.

Written for clarity, vectorized where that stays readable. Float kernels
compute in float64 and return float32. Int8 kernels follow the TFLite int8
spec (the reference kernels of TensorFlow Lite Micro): int32 accumulation,
the input zero point subtracted before the multiply, weights symmetric,
:func:`~tinyml_lab.kernels.fixedpoint.requantize_np` to rescale, then the
output zero point and the clamp of the fused activation.

All activations are NHWC with the batch first; ``pads`` are
``(top, bottom, left, right)``; ``lo``/``hi`` are the clamp bounds of a fused
activation (``-inf``/``inf`` or -128/127 when there is none).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .fixedpoint import (
    SOFTMAX_ACCUM_INTEGER_BITS,
    exp_on_negative_values_np,
    mean_multiplier,
    rdbpot_np,
    reciprocal_np,
    requantize_np,
    srdhm_np,
)

Pads = tuple[int, int, int, int]


# --------------------------------------------------------------------------- helpers

def _pad(x: np.ndarray, pads: Pads, value: float | int) -> np.ndarray:
    t, b, l, r = pads
    return np.pad(x, ((0, 0), (t, b), (l, r), (0, 0)), constant_values=value)


def _windows(xp: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int],
             dilation: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Sliding windows of a padded NHWC batch: ``(N, OH, OW, KH, KW, C)``."""
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, strides, dilation, out_hw
    v = sliding_window_view(xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(1, 2))
    v = v[:, ::sh, ::sw, :, ::dh, ::dw][:, :oh, :ow]
    return v.transpose(0, 1, 2, 4, 5, 3)


def _out_hw(x: np.ndarray, kernel: tuple[int, int], strides: tuple[int, int],
            dilation: tuple[int, int], pads: Pads) -> tuple[int, int]:
    t, b, l, r = pads
    oh = (x.shape[1] + t + b - (kernel[0] - 1) * dilation[0] - 1) // strides[0] + 1
    ow = (x.shape[2] + l + r - (kernel[1] - 1) * dilation[1] - 1) // strides[1] + 1
    return oh, ow


def wrap_int32(a: np.ndarray) -> np.ndarray:
    """Two's complement wrap of int64 values to int32, as an int32 accumulator overflows."""
    return ((np.asarray(a, dtype=np.int64) + 2**31) % 2**32 - 2**31).astype(np.int64)


def _requantize_out(acc: np.ndarray, mult: np.ndarray, shift: np.ndarray, out_zp: int,
                    lo: int, hi: int) -> np.ndarray:
    """Per-channel (last axis) requantize, add the zero point, clamp to ``[lo, hi]``."""
    y = requantize_np(wrap_int32(acc), mult, shift).astype(np.int64) + out_zp
    return np.clip(y, lo, hi).astype(np.int8)


# --------------------------------------------------------------------------- float32

def conv2d(x, w, b, strides, dilation, pads, lo=-np.inf, hi=np.inf):
    """``y[n,oy,ox,o] = clamp(sum_{ky,kx,i} w[o,ky,kx,i] xp[n, sy*oy+dy*ky, sx*ox+dx*kx, i] + b[o])``,
    ``xp`` the input padded with zeros."""
    cout, kh, kw, _ = w.shape
    out_hw = _out_hw(x, (kh, kw), strides, dilation, pads)
    win = _windows(_pad(x.astype(np.float64), pads, 0.0), (kh, kw), strides, dilation, out_hw)
    y = np.tensordot(win, w.astype(np.float64), axes=([3, 4, 5], [1, 2, 3]))
    if b is not None:
        y = y + b
    return np.clip(y, lo, hi).astype(np.float32)


def depthwise_conv2d(x, w, b, strides, dilation, pads, lo=-np.inf, hi=np.inf):
    """``y[n,oy,ox,c] = clamp(sum_{ky,kx} w[0,ky,kx,c] xp[n, sy*oy+dy*ky, sx*ox+dx*kx, c] + b[c])``."""
    _, kh, kw, _ = w.shape
    out_hw = _out_hw(x, (kh, kw), strides, dilation, pads)
    win = _windows(_pad(x.astype(np.float64), pads, 0.0), (kh, kw), strides, dilation, out_hw)
    y = np.einsum("nhwijc,ijc->nhwc", win, w[0].astype(np.float64))
    if b is not None:
        y = y + b
    return np.clip(y, lo, hi).astype(np.float32)


def dense(x, w, b, lo=-np.inf, hi=np.inf):
    """``y[n,o] = clamp(sum_i w[o,i] x[n,i] + b[o])``."""
    y = x.astype(np.float64) @ w.astype(np.float64).T
    if b is not None:
        y = y + b
    return np.clip(y, lo, hi).astype(np.float32)


def avg_pool2d(x, pool, strides, pads, count_include_pad=False, lo=-np.inf, hi=np.inf):
    """Mean over each window; padded positions are left out of the count unless ``count_include_pad``."""
    out_hw = _out_hw(x, pool, strides, (1, 1), pads)
    win = _windows(_pad(x.astype(np.float64), pads, 0.0), pool, strides, (1, 1), out_hw)
    total = win.sum(axis=(3, 4))
    if count_include_pad:
        count = pool[0] * pool[1]
    else:
        ones = np.ones((1,) + x.shape[1:3] + (1,))
        count = _windows(_pad(ones, pads, 0.0), pool, strides, (1, 1), out_hw).sum(axis=(3, 4))
    return np.clip(total / count, lo, hi).astype(np.float32)


def max_pool2d(x, pool, strides, pads, lo=-np.inf, hi=np.inf):
    """Max over each window; padded positions never win."""
    out_hw = _out_hw(x, pool, strides, (1, 1), pads)
    win = _windows(_pad(x.astype(np.float64), pads, -np.inf), pool, strides, (1, 1), out_hw)
    return np.clip(win.max(axis=(3, 4)), lo, hi).astype(np.float32)


def global_avg_pool(x):
    """``y[n,c] = mean_{h,w} x[n,h,w,c]``."""
    return x.astype(np.float64).mean(axis=(1, 2)).astype(np.float32)


def add(a, b, lo=-np.inf, hi=np.inf):
    return np.clip(a.astype(np.float64) + b, lo, hi).astype(np.float32)


def clamp(x, lo, hi):
    """ReLU is ``clamp(x, 0, inf)``, ReLU6 ``clamp(x, 0, 6)``."""
    return np.clip(x, lo, hi).astype(np.float32)


def softmax(x, beta=1.0):
    """``y_i = exp(beta x_i - max) / sum_j exp(beta x_j - max)`` over the last axis."""
    z = beta * x.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)


def batch_norm(x, gamma, beta, mean, var, epsilon):
    """``y = gamma (x - mean) / sqrt(var + epsilon) + beta`` over the last axis."""
    x = x.astype(np.float64)
    return (gamma * (x - mean) / np.sqrt(var.astype(np.float64) + epsilon) + beta).astype(np.float32)


def pad(x, pads, value=0.0):
    return _pad(x, pads, value).astype(x.dtype)


def quantize(x, scale, zero_point):
    """``q = clamp(round(x / scale) + zero_point, -128, 127)``, ties away from zero (TFLite)."""
    r = np.asarray(x, np.float32) / np.float32(scale)
    return np.clip(round_half_away_np(r) + zero_point, -128, 127).astype(np.int8)


def round_half_away_np(r: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero, exactly (``floor(r + 0.5)`` is not exact in floats)."""
    a = np.abs(r)
    q = np.floor(a)
    q = q + (a - q >= 0.5)
    return np.copysign(q, r)


def dequantize(q, scale, zero_point):
    """``x = scale * (q - zero_point)``; ``scale``/``zero_point`` broadcast (per-channel: last axis)."""
    return (np.asarray(scale, np.float32) * (q.astype(np.int32) - np.asarray(zero_point))).astype(np.float32)


# --------------------------------------------------------------------------- int8

def conv2d_int8(x, w, b, strides, dilation, pads, in_zp, mult, shift, out_zp, lo=-128, hi=127):
    """``acc[o] = sum w[o,ky,kx,i] (x[...] - in_zp) + b[o]``, then requantize per output channel.

    Positions outside the input contribute nothing, which equals padding the
    input with ``in_zp``.
    """
    cout, kh, kw, _ = w.shape
    out_hw = _out_hw(x, (kh, kw), strides, dilation, pads)
    xp = _pad(x.astype(np.int64) - in_zp, pads, 0)
    win = _windows(xp, (kh, kw), strides, dilation, out_hw)
    n, oh, ow = win.shape[:3]
    acc = win.reshape(n * oh * ow, -1) @ w.astype(np.int64).reshape(cout, -1).T
    acc = acc.reshape(n, oh, ow, cout)
    if b is not None:
        acc = acc + b.astype(np.int64)
    return _requantize_out(acc, mult, shift, out_zp, lo, hi)


def depthwise_conv2d_int8(x, w, b, strides, dilation, pads, in_zp, mult, shift, out_zp, lo=-128, hi=127):
    """``acc[c] = sum_{ky,kx} w[0,ky,kx,c] (x[...,c] - in_zp) + b[c]``, requantized per channel."""
    _, kh, kw, _ = w.shape
    out_hw = _out_hw(x, (kh, kw), strides, dilation, pads)
    win = _windows(_pad(x.astype(np.int64) - in_zp, pads, 0), (kh, kw), strides, dilation, out_hw)
    acc = (win * w[0].astype(np.int64)).sum(axis=(3, 4))
    if b is not None:
        acc = acc + b.astype(np.int64)
    return _requantize_out(acc, mult, shift, out_zp, lo, hi)


def dense_int8(x, w, b, in_zp, mult, shift, out_zp, lo=-128, hi=127):
    """``acc[o] = sum_i w[o,i] (x[i] - in_zp) + b[o]``, requantized (per tensor for TFLite)."""
    acc = (x.astype(np.int64) - in_zp) @ w.astype(np.int64).T
    if b is not None:
        acc = acc + b.astype(np.int64)
    return _requantize_out(acc, mult, shift, out_zp, lo, hi)


def _div_round_away(total: np.ndarray, count: np.ndarray | int) -> np.ndarray:
    """``total / count`` rounded half away from zero, in integers (TFLite's pooling average)."""
    count = np.asarray(count, dtype=np.int64)
    num = np.where(total > 0, total + count // 2, total - count // 2)
    q = np.abs(num) // count
    return np.where(num < 0, -q, q)


def avg_pool2d_int8(x, pool, strides, pads, lo=-128, hi=127):
    """Average of the raw codes over the valid part of each window, rounded half away from zero.

    Input and output share scale and zero point (a TFLite requirement).
    """
    out_hw = _out_hw(x, pool, strides, (1, 1), pads)
    win = _windows(_pad(x.astype(np.int64), pads, 0), pool, strides, (1, 1), out_hw)
    total = win.sum(axis=(3, 4))
    ones = np.ones((1,) + x.shape[1:3] + (1,), dtype=np.int64)
    count = _windows(_pad(ones, pads, 0), pool, strides, (1, 1), out_hw).sum(axis=(3, 4))
    return np.clip(_div_round_away(total, count), lo, hi).astype(np.int8)


def max_pool2d_int8(x, pool, strides, pads, lo=-128, hi=127):
    out_hw = _out_hw(x, pool, strides, (1, 1), pads)
    win = _windows(_pad(x.astype(np.int64), pads, -(2**40)), pool, strides, (1, 1), out_hw)
    return np.clip(win.max(axis=(3, 4)), lo, hi).astype(np.int8)


def global_avg_pool_int8(x, in_zp, mult, shift, out_zp):
    """TFLite's int8 MEAN over H and W (``reference_ops::QuantizedMeanOrSum``).

    ``acc = sum_{h,w} x - in_zp H W`` (int32), then one requantization by the
    multiplier of ``s_in / s_out`` with ``1 / (H W)`` folded in
    (:func:`~tinyml_lab.kernels.fixedpoint.mean_multiplier`), plus ``out_zp``:
    ``y = clamp(out_zp + requantize(acc, m', shift'))``. This is what LiteRT's
    reference kernels and TensorFlow Lite Micro compute; TFLite Micro takes a
    plain truncating integer mean instead when input and output share scale
    and zero point.
    """
    count = x.shape[1] * x.shape[2]
    m, s = mean_multiplier(int(mult), int(shift), count)
    acc = wrap_int32(x.astype(np.int64).sum(axis=(1, 2)) - int(in_zp) * count)
    y = requantize_np(acc, m, s).astype(np.int64) + out_zp
    return np.clip(y, -128, 127).astype(np.int8)


ADD_LEFT_SHIFT = 20


def add_int8(a, b, a_zp, a_mult, a_shift, b_zp, b_mult, b_shift, out_zp, out_mult, out_shift,
             lo=-128, hi=127):
    """TFLite's int8 ADD: both inputs are brought to a common scale ``2 max(s_a, s_b)`` with 20
    extra bits of headroom, summed, and rescaled to the output."""
    sa = requantize_np((a.astype(np.int64) - a_zp) << ADD_LEFT_SHIFT, a_mult, a_shift)
    sb = requantize_np((b.astype(np.int64) - b_zp) << ADD_LEFT_SHIFT, b_mult, b_shift)
    y = requantize_np(sa.astype(np.int64) + sb, out_mult, out_shift).astype(np.int64) + out_zp
    return np.clip(y, lo, hi).astype(np.int8)


def rescale_int8(x, in_zp, mult, shift, out_zp, lo=-128, hi=127):
    """``y = clamp(out_zp + requantize(x - in_zp))``: TFLite's quantized ReLU / ReLU6."""
    y = requantize_np(x.astype(np.int64) - in_zp, mult, shift).astype(np.int64) + out_zp
    return np.clip(y, lo, hi).astype(np.int8)


def softmax_int8(x, mult, left_shift, diff_min):
    """TFLite's int8 softmax in fixed point over the last axis; output scale 1/256, zero point -128.

    ``d = x - max`` is rescaled by ``beta s_in`` into Q5.26, ``exp(d)`` taken
    in Q0.31 and summed in Q12.19; each output is ``exp(d) / sum`` computed
    with a fixed-point reciprocal and rounded into 8 bits.
    """
    x = x.astype(np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    valid = diff >= diff_min
    scaled = srdhm_np(np.maximum(diff, diff_min) << left_shift, mult)
    e = np.where(valid, exp_on_negative_values_np(scaled), 0).astype(np.int64)
    # each exp (Q0.31) is rescaled to Q12.19, a rounding divide by 2^12, before the sum
    total = np.where(valid, rdbpot_np(e, SOFTMAX_ACCUM_INTEGER_BITS), 0).sum(axis=-1, keepdims=True)
    recip, bits_over_unit = reciprocal_np(total, SOFTMAX_ACCUM_INTEGER_BITS)
    exponent = bits_over_unit + 31 - 8
    y = rdbpot_np(srdhm_np(recip, e), exponent).astype(np.int64) - 128
    return np.where(valid, np.clip(y, -128, 127), -128).astype(np.int8)


def pad_int8(x, pads, zero_point):
    """Pad with the code of 0.0, the zero point."""
    return _pad(x, pads, zero_point).astype(np.int8)
