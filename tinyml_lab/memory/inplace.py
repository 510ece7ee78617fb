"""Kernels that write their output over their input, as an in-place memory plan requires.

In-place depthwise convolution (Lin et al., "MCUNet: Tiny Deep Learning on
IoT Devices", NeurIPS 2020, TinyEngine): a depthwise layer reads channel
``c`` of its input only to make channel ``c`` of its output. So channel by
channel, the output plane is computed into a scratch buffer of one channel
(``H_out W_out`` bytes) and then copied over the input's channel-``c`` slots:
in NHWC order output ``y[p, c]`` (pixel ``p < H_out W_out <= H W``) goes to
byte ``p C + c`` of the input buffer, a slot of channel ``c`` whose value has
been consumed. Activation memory for the layer drops from ``N_in + N_out`` to
``N_in + H_out W_out``.

Each numba kernel here is bit-exact with its out-of-place counterpart
(:func:`tinyml_lab.kernels.int8.depthwise_conv2d_int8`,
:func:`~tinyml_lab.kernels.int8.add_int8`,
:func:`~tinyml_lab.kernels.int8.rescale_int8`), and each has a NumPy
reference beside it (``*_ref``) that follows the same channel-by-channel
order. All work on one sample: ``buf`` is the flat int8 buffer that holds
the input (``H W C`` bytes) and receives the output.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..kernels import reference as ref
from ..kernels.fixedpoint import requantize, requantize_np
from ..kernels.int8 import ADD_LEFT_SHIFT


# --------------------------------------------------------------------------- depthwise

@njit(cache=True)
def depthwise_conv2d_int8_inplace(buf, h, wd, c, w, bias_eff, sh, sw, dh, dw, pt, pb, pl, pr,
                                  in_zp, mult, shift, out_zp, lo, hi, scratch):
    """int8 depthwise convolution (multiplier 1) of the ``(h, wd, c)`` image in ``buf``, in place.

    ``acc[c] = bias_eff[c] + sum_{ky,kx} w[0,ky,kx,c] xp[s oy + d ky, s ox + d kx, c]`` with ``xp``
    the input padded with ``in_zp`` and ``bias_eff`` from
    :func:`tinyml_lab.kernels.int8.effective_bias`; the output ``(oh, ow, c)`` is written to
    ``buf[: oh ow c]``. ``scratch`` holds at least ``oh * ow`` int8 values. Returns ``(oh, ow)``.
    """
    _, kh, kw, _ = w.shape
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    for ch in range(c):
        for oy in range(oh):
            for ox in range(ow):
                acc = np.int64(bias_eff[ch])
                for ky in range(kh):
                    iy = oy * sh - pt + ky * dh
                    for kx in range(kw):
                        ix = ox * sw - pl + kx * dw
                        wv = np.int64(w[0, ky, kx, ch])
                        if 0 <= iy < h and 0 <= ix < wd:
                            acc += np.int64(buf[(iy * wd + ix) * c + ch]) * wv
                        else:
                            acc += np.int64(in_zp) * wv
                wrapped = (acc + 2147483648) % 4294967296 - 2147483648  # the int32 accumulator
                v = requantize(np.int64(wrapped), np.int64(mult[ch]), np.int64(shift[ch])) + out_zp
                scratch[oy * ow + ox] = np.int8(min(max(v, lo), hi))
        for p in range(oh * ow):
            buf[p * c + ch] = scratch[p]
    return oh, ow


def depthwise_conv2d_int8_inplace_ref(buf: np.ndarray, h: int, wd: int, c: int, w: np.ndarray,
                                      b: np.ndarray | None, strides, dilation, pads, in_zp: int,
                                      mult: np.ndarray, shift: np.ndarray, out_zp: int, lo: int = -128,
                                      hi: int = 127, scratch: np.ndarray | None = None) -> tuple[int, int]:
    """NumPy reference of :func:`depthwise_conv2d_int8_inplace` (plain bias ``b``, not folded).

    Channel ``c``: ``y_c = requantize(sum_k w_k (x_c[...] - in_zp) + b_c)`` computed with
    :func:`tinyml_lab.kernels.reference.depthwise_conv2d_int8` on that one channel, stored in
    ``scratch`` and then written to ``buf[p C + c]``.
    """
    x = buf[: h * wd * c].reshape(h, wd, c)
    oh = ow = None
    for ch in range(c):
        plane = np.ascontiguousarray(x[None, :, :, ch: ch + 1])
        y = ref.depthwise_conv2d_int8(plane, w[..., ch: ch + 1], None if b is None else b[ch: ch + 1], strides,
                                      dilation, pads, in_zp, mult[ch: ch + 1], shift[ch: ch + 1], out_zp, lo, hi)
        oh, ow = y.shape[1], y.shape[2]
        if scratch is None:
            scratch = np.empty(oh * ow, np.int8)
        scratch[: oh * ow] = y.reshape(-1)
        buf[ch: oh * ow * c: c] = scratch[: oh * ow]
    return int(oh), int(ow)


# --------------------------------------------------------------------------- element-wise

@njit(cache=True)
def add_int8_into(a, b, out, a_zp, a_mult, a_shift, b_zp, b_mult, b_shift, out_zp, out_mult, out_shift,
                  lo, hi):
    """TFLite int8 ADD written into ``out``, which may be ``a`` or ``b`` itself (flat arrays).

    Element ``i`` is read from both inputs before ``out[i]`` is written, so
    aliasing is safe: ``out[i] = clamp(out_zp + R_o(R_a((a_i - a_zp) 2^20) + R_b((b_i - b_zp) 2^20)))``.
    """
    for i in range(out.size):
        av = np.int64(a[i])
        bv = np.int64(b[i])
        sa = requantize((av - a_zp) << ADD_LEFT_SHIFT, a_mult, a_shift)
        sb = requantize((bv - b_zp) << ADD_LEFT_SHIFT, b_mult, b_shift)
        v = requantize(sa + sb, out_mult, out_shift) + out_zp
        out[i] = np.int8(min(max(v, lo), hi))


def add_int8_into_ref(a, b, out, a_zp, a_mult, a_shift, b_zp, b_mult, b_shift, out_zp, out_mult, out_shift,
                      lo=-128, hi=127) -> None:
    """NumPy reference of :func:`add_int8_into`: the whole result is computed, then stored."""
    out[...] = ref.add_int8(a.copy(), b.copy(), a_zp, a_mult, a_shift, b_zp, b_mult, b_shift, out_zp,
                            out_mult, out_shift, lo, hi)


@njit(cache=True)
def rescale_int8_into(x, out, in_zp, mult, shift, out_zp, lo, hi):
    """Quantized ReLU/ReLU6 ``out[i] = clamp(out_zp + requantize(x_i - in_zp))``; ``out`` may be ``x``."""
    for i in range(out.size):
        v = requantize(np.int64(x[i]) - in_zp, mult, shift) + out_zp
        out[i] = np.int8(min(max(v, lo), hi))


def rescale_int8_into_ref(x, out, in_zp, mult, shift, out_zp, lo=-128, hi=127) -> None:
    y = requantize_np(x.astype(np.int64) - in_zp, mult, shift).astype(np.int64) + out_zp
    out[...] = np.clip(y, lo, hi).astype(np.int8)


@njit(cache=True)
def add_float_into(a, b, out, lo, hi):
    """float32 ``out[i] = clamp(a_i + b_i)``; ``out`` may alias an input."""
    for i in range(out.size):
        out[i] = min(max(a[i] + b[i], lo), hi)


@njit(cache=True)
def clamp_float_into(x, out, lo, hi):
    """float32 ``out[i] = clamp(x_i, lo, hi)``; ``out`` may alias ``x``."""
    for i in range(out.size):
        out[i] = min(max(x[i], lo), hi)


__all__ = ["depthwise_conv2d_int8_inplace", "depthwise_conv2d_int8_inplace_ref", "add_int8_into",
           "add_int8_into_ref", "rescale_int8_into", "rescale_int8_into_ref", "add_float_into",
           "clamp_float_into"]
