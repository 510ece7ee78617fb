"""int8 kernels compiled with numba, bit-exact with :mod:`tinyml_lab.kernels.reference`.

Every kernel here computes what the reference computes, reorganised for
speed:

* **Zero points folded into the bias.** Windows are padded with the input zero
  point, so a padded position holds ``x - zp = 0``, and
  ``sum_k w_k (x_k - zp) = sum_k w_k x_k - zp sum_k w_k`` over the whole
  window: the kernels multiply the raw codes and add
  ``bias_eff[o] = b[o] - zp * sum_k w[o, k]``, computed once per layer
  (:func:`effective_bias`). Sums are taken modulo 2^32, like an int32
  accumulator, so the regrouping is exact even on overflow.
* **Exact int8 products on float32 BLAS.** Convolutions lower their windows
  to the rows of a matrix (im2col, ``float32.lower``) and multiply it by the
  weights with one ``sgemm``; Dense layers multiply the batch. A product of
  two codes is at most ``2^14`` in magnitude, so a sum of up to 1024 of them
  stays below ``2^24``, where float32 holds every integer: each float32
  operation is then exact, in any order (:func:`exact_gemm_requantize`).
  Longer dot products go in chunks of 1024.
* **Depthwise convolutions by output rows**, each tap a multiply-add over a
  whole row of ``OW * C`` values (``float32.depthwise_accumulate``), exact
  in float32 by the same argument.
* **Branch-free requantization**
  (:func:`~tinyml_lab.kernels.fixedpoint.requantize_lanes`, the same
  arithmetic as the spec's ``requantize_np``), so the loop over a block of
  accumulators (:func:`requantize_rows`) runs on vector registers.

``*_gemm`` and ``*_rows`` kernels take their weights prepared once per layer
(float32 matrices, the window geometry as one array, a table of per-channel
requantization parameters); the kernels with the reference's argument lists
(:func:`conv2d_int8`, :func:`depthwise_conv2d_int8`, :func:`dense_int8`)
prepare them on every call and return the same codes. :func:`run_program`
runs a whole graph of these kernels in one call.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .fixedpoint import (
    SOFTMAX_ACCUM_INTEGER_BITS,
    exp_on_negative_values,
    mean_multiplier_nb,
    rdbpot,
    reciprocal,
    requantize,
    requantize_lanes,
    srdhm,
)
from .float32 import (
    depthwise_accumulate,
    depthwise_row_weights,
    gemm_weights,
    images_per_gemm,
    lower,
    output_size,
    phase_shape,
    phase_split,
    rows_f32,
    window,
)

ADD_LEFT_SHIFT = 20
# Columns of one float32 GEMM: sums of 1024 products of int8 codes stay below 2^24, where float32
# represents every integer (see exact_gemm_requantize).
GEMM_K_CHUNK = 1024


def effective_bias(w: np.ndarray, b: np.ndarray | None, in_zp: int, depthwise: bool = False) -> np.ndarray:
    """``b[o] - in_zp * sum_k w[o, k]`` wrapped to int32.

    Output channels are axis 0 of ``w``, or its last axis for depthwise weights
    ``(1, KH, KW, C)``.
    """
    w64 = w.astype(np.int64)
    sums = w64.reshape(-1, w.shape[-1]).sum(axis=0) if depthwise else w64.reshape(w.shape[0], -1).sum(axis=1)
    out = (0 if b is None else b.astype(np.int64)) - int(in_zp) * sums
    return ((out + 2**31) % 2**32 - 2**31).astype(np.int32)


# --------------------------------------------------------------------------- exact int8 GEMM on float32

@njit(cache=True)
def requantize_table(mult, shift):
    """Per-channel ``(multiplier, max(shift, 0), max(-shift, 0))`` as the rows of an int32 ``(3, C)``
    array: what :func:`requantize_rows` reads (see :func:`~tinyml_lab.kernels.fixedpoint.requantize_lanes`).
    int32 rows let the compiler use a 32x32->64-bit multiply."""
    c = mult.shape[0]
    table = np.empty((3, c), np.int32)
    for o in range(c):
        table[0, o] = mult[o]
        table[1, o] = max(shift[o], 0)
        table[2, o] = max(-shift[o], 0)
    return table


@njit(cache=True)
def requantize_rows(acc, bias_eff, table, out_zp, lo, hi, out):
    """``out[i, o] = clamp(out_zp + requantize(acc[i, o] + bias_eff[o]))`` over a ``(M, C)`` block,
    per-channel parameters from :func:`requantize_table`.

    ``acc`` holds exact integers (float32 GEMM results, or int64 sums of them); it is wrapped to
    int32 and the bias added in int32 arithmetic, wrapping as an int32 accumulator would (and
    cheaper than in int64). There are no branches, so the channel loop compiles to vector
    instructions; the per-channel parameters are int32, which lets the compiler process eight
    int64 lanes at once. Layers whose multipliers are all below one (no left shift, the usual
    case) take a loop without the variable left shift.
    """
    mult = table[0]
    left = table[1]
    right = table[2]
    if left.max() == 0:
        for i in range(acc.shape[0]):
            for o in range(acc.shape[1]):
                a = np.int64(np.int32(np.int64(np.int32(acc[i, o])) + bias_eff[o]))
                v = requantize_lanes(a, np.int64(mult[o]), 0, np.int64(right[o])) + out_zp
                out[i, o] = min(max(v, lo), hi)
        return
    for i in range(acc.shape[0]):
        for o in range(acc.shape[1]):
            a = np.int64(np.int32(np.int64(np.int32(acc[i, o])) + bias_eff[o]))
            v = requantize_lanes(a, np.int64(mult[o]), np.int64(left[o]), np.int64(right[o])) + out_zp
            out[i, o] = min(max(v, lo), hi)


@njit(cache=True)
def exact_gemm_requantize(cols, w_gemm, bias_eff, table, out_zp, lo, hi, out):
    """``out = requantize(cols @ w_gemm + bias_eff)`` where ``cols`` and ``w_gemm`` hold int8 codes
    as float32, computed exactly with BLAS ``sgemm``.

    Why float32 is exact here: a product of two int8 codes has magnitude at most
    ``128 * 128 = 2^14``, so every partial sum of up to ``GEMM_K_CHUNK = 1024`` products is an
    integer of magnitude at most ``2^24``, and float32 represents every integer up to ``2^24``.
    Each addition or fused multiply-add along the way therefore has an exact result, whatever
    order BLAS sums in. Longer dot products are split into chunks of 1024 columns whose exact
    results are added as integers; as every sum is finally wrapped to int32, the result is the
    int32 accumulator's, modulo ``2^32``, including overflow.
    """
    k = cols.shape[1]
    if k <= GEMM_K_CHUNK:
        requantize_rows(np.dot(cols, w_gemm), bias_eff, table, out_zp, lo, hi, out)
        return
    acc = np.zeros(out.shape, np.int64)
    for k0 in range(0, k, GEMM_K_CHUNK):
        k1 = min(k0 + GEMM_K_CHUNK, k)
        part = np.dot(np.ascontiguousarray(cols[:, k0:k1]), w_gemm[k0:k1])
        for i in range(acc.shape[0]):
            for o in range(acc.shape[1]):
                acc[i, o] += np.int64(part[i, o])
    requantize_rows(acc, bias_eff, table, out_zp, lo, hi, out)


@njit(cache=True)
def conv2d_int8_gemm(x, w_gemm, bias_eff, geometry, in_zp, table, out_zp, lo, hi):
    """int8 Conv2D as one exact GEMM (:func:`exact_gemm_requantize`) of the lowered windows
    (:func:`~tinyml_lab.kernels.float32.lower`): the raw codes, the padding filled with ``in_zp``
    so that it contributes ``x - in_zp = 0``.

    ``w_gemm`` is :func:`~tinyml_lab.kernels.float32.gemm_weights` of the int8 weights, ``geometry``
    :func:`~tinyml_lab.kernels.float32.window`, ``table`` :func:`requantize_table`.
    """
    xc = np.ascontiguousarray(x)
    n, h, wd, _ = xc.shape
    cout = w_gemm.shape[1]
    oh, ow = output_size(h, wd, geometry)
    rows = oh * ow
    out = np.empty((n * rows, cout), np.int8)
    step = images_per_gemm(n, rows, w_gemm.shape[0])
    for b0 in range(0, n, step):
        b1 = min(b0 + step, n)
        cols = lower(xc, b0, b1, geometry, np.float32(in_zp))
        exact_gemm_requantize(cols, w_gemm, bias_eff, table, out_zp, lo, hi, out[b0 * rows: b1 * rows])
    return out.reshape(n, oh, ow, cout)


@njit(cache=True)
def conv2d_int8(x, w, bias_eff, sh, sw, dh, dw, pt, pb, pl, pr, in_zp, mult, shift, out_zp, lo, hi):
    """int8 Conv2D; ``w`` is ``(C_out, KH, KW, C_in)``, ``bias_eff`` from :func:`effective_bias`."""
    g = window(w.shape[1], w.shape[2], sh, sw, dh, dw, pt, pb, pl, pr)
    return conv2d_int8_gemm(x, gemm_weights(w), bias_eff, g, in_zp, requantize_table(mult, shift),
                            out_zp, lo, hi)


@njit(cache=True)
def depthwise_conv2d_int8_rows(x, w_rows, bias_eff, geometry, in_zp, table, out_zp, lo, hi):
    """int8 depthwise convolution (multiplier 1) by output rows; ``w_rows`` is
    :func:`~tinyml_lab.kernels.float32.depthwise_row_weights` of the int8 weights.

    Each tap is a multiply-add over a whole output row
    (:func:`~tinyml_lab.kernels.float32.depthwise_accumulate`), which vectorises whatever the
    channel count. The codes are summed in float32: exact for windows of up to 1024 taps, by
    the argument of :func:`exact_gemm_requantize`; a larger window adds the sum of every 1024
    taps into an int64 accumulator.
    """
    xc = np.ascontiguousarray(x)
    n, h, wd, c = xc.shape
    oh, ow = output_size(h, wd, geometry)
    taps = w_rows.shape[0]
    out = np.empty((n, oh * ow, c), np.int8)
    size, _ = phase_shape(h, wd, c, geometry)
    xs = np.empty(geometry[2] * geometry[3] * size, np.float32)
    wf = w_rows.reshape(w_rows.size)
    acc = np.empty(oh * ow * c, np.float32)
    total = np.empty((oh * ow, c) if taps > GEMM_K_CHUNK else (0, 0), np.int64)
    for b in range(n):
        phase_split(xc, b, geometry, np.float32(in_zp), xs)
        if taps <= GEMM_K_CHUNK:
            acc[:] = 0.0
            depthwise_accumulate(xs, h, wd, c, wf, geometry, 0, taps, acc)
            requantize_rows(acc.reshape(oh * ow, c), bias_eff, table, out_zp, lo, hi, out[b])
            continue
        total[:] = 0
        for t0 in range(0, taps, GEMM_K_CHUNK):
            acc[:] = 0.0
            depthwise_accumulate(xs, h, wd, c, wf, geometry, t0, min(t0 + GEMM_K_CHUNK, taps), acc)
            part = acc.reshape(oh * ow, c)
            for i in range(oh * ow):
                for ch in range(c):
                    total[i, ch] += np.int64(part[i, ch])
        requantize_rows(total, bias_eff, table, out_zp, lo, hi, out[b])
    return out.reshape(n, oh, ow, c)


@njit(cache=True)
def depthwise_conv2d_int8(x, w, bias_eff, sh, sw, dh, dw, pt, pb, pl, pr, in_zp, mult, shift,
                          out_zp, lo, hi):
    """int8 depthwise convolution (multiplier 1); ``w`` is ``(1, KH, KW, C)``."""
    g = window(w.shape[1], w.shape[2], sh, sw, dh, dw, pt, pb, pl, pr)
    _, ow = output_size(x.shape[1], x.shape[2], g)
    return depthwise_conv2d_int8_rows(x, depthwise_row_weights(w, ow), bias_eff, g, in_zp,
                                      requantize_table(mult, shift), out_zp, lo, hi)


@njit(cache=True)
def dense_int8_gemm(x, w_gemm, bias_eff, table, out_zp, lo, hi):
    """int8 Dense as one exact GEMM (:func:`exact_gemm_requantize`), the batch as the rows;
    ``w_gemm`` ``(C_in, C_out)`` from :func:`~tinyml_lab.kernels.float32.gemm_weights`."""
    out = np.empty((x.shape[0], w_gemm.shape[1]), np.int8)
    exact_gemm_requantize(rows_f32(x), w_gemm, bias_eff, table, out_zp, lo, hi, out)
    return out


@njit(cache=True, fastmath={"reassoc", "contract"})
def dense_int8_matvec(x, w_codes, bias_eff, table, out_zp, lo, hi):
    """int8 Dense one row at a time, straight from the int8 weights ``w_codes`` ``(C_in, C_out)``
    (the transposed ``w``). A large layer at batch 1 is bound by reading its weights, and int8
    codes are a quarter of the float32 matrix's bytes. ``acc[o] += x[k] w[k, o]`` vectorises over
    the outputs; the sums are float32 over chunks of 1024 inputs, exact by the argument of
    :func:`exact_gemm_requantize`, and the chunks are added in int64."""
    xc = np.ascontiguousarray(x)
    k, cout = w_codes.shape
    out = np.empty((xc.shape[0], cout), np.int8)
    acc = np.empty(cout, np.float32)
    total = np.empty((1, cout), np.int64)
    for i in range(xc.shape[0]):
        total[:] = 0
        for k0 in range(0, k, GEMM_K_CHUNK):
            acc[:] = 0.0
            for j in range(k0, min(k0 + GEMM_K_CHUNK, k)):
                xv = np.float32(xc[i, j])
                for o in range(cout):
                    acc[o] += xv * np.float32(w_codes[j, o])
            for o in range(cout):
                total[0, o] += np.int64(acc[o])
        requantize_rows(total, bias_eff, table, out_zp, lo, hi, out[i: i + 1])
    return out


@njit(cache=True)
def dense_int8(x, w, bias_eff, in_zp, mult, shift, out_zp, lo, hi):
    """int8 Dense; ``w`` is ``(C_out, C_in)``; per-tensor or per-channel multipliers alike."""
    return dense_int8_gemm(x, gemm_weights(w), bias_eff, requantize_table(mult, shift), out_zp, lo, hi)


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
    """TFLite int8 MEAN over H, W: ``clamp(out_zp + requantize(sum x - in_zp H W, m', shift'))`` with
    ``1 / (H W)`` folded into the multiplier (:func:`~tinyml_lab.kernels.fixedpoint.mean_multiplier_nb`)."""
    n, h, wd, c = x.shape
    count = h * wd
    m, s = mean_multiplier_nb(mult, shift, count)
    out = np.empty((n, c), np.int8)
    acc = np.empty(c, np.int32)
    for b in range(n):
        acc[:] = 0
        for y in range(h):
            for xx in range(wd):
                for ch in range(c):
                    acc[ch] = np.int32(acc[ch] + np.int32(x[b, y, xx, ch]))
        for ch in range(c):
            v = requantize(np.int64(np.int32(acc[ch] - in_zp * count)), m, s)
            out[b, ch] = np.int8(min(max(v + out_zp, -128), 127))
    return out


@njit(cache=True)
def add_int8(a, b, a_zp, a_mult, a_shift, b_zp, b_mult, b_shift, out_zp, out_mult, out_shift, lo, hi):
    """TFLite int8 ADD (inputs rescaled to a common scale with 20 bits of headroom).

    The same parameters for every element, so the loop is branch-free
    (:func:`~tinyml_lab.kernels.fixedpoint.requantize_lanes`) and vectorises."""
    fa = np.ascontiguousarray(a).reshape(a.size)
    fb = np.ascontiguousarray(b).reshape(b.size)
    out = np.empty(a.size, np.int8)
    am, al, ar = np.int64(a_mult), np.int64(max(a_shift, 0)), np.int64(max(-a_shift, 0))
    bm, bl, br = np.int64(b_mult), np.int64(max(b_shift, 0)), np.int64(max(-b_shift, 0))
    om, ol, orr = np.int64(out_mult), np.int64(max(out_shift, 0)), np.int64(max(-out_shift, 0))
    for i in range(a.size):
        sa = requantize_lanes((np.int64(fa[i]) - a_zp) << ADD_LEFT_SHIFT, am, al, ar)
        sb = requantize_lanes((np.int64(fb[i]) - b_zp) << ADD_LEFT_SHIFT, bm, bl, br)
        v = requantize_lanes(sa + sb, om, ol, orr) + out_zp
        out[i] = min(max(v, lo), hi)
    return out.reshape(a.shape)


@njit(cache=True)
def rescale_int8(x, in_zp, mult, shift, out_zp, lo, hi):
    """``clamp(out_zp + requantize(x - in_zp))``: quantized ReLU and ReLU6."""
    fx = np.ascontiguousarray(x).reshape(x.size)
    out = np.empty(x.size, np.int8)
    m, left, right = np.int64(mult), np.int64(max(shift, 0)), np.int64(max(-shift, 0))
    for i in range(x.size):
        v = requantize_lanes(np.int64(fx[i]) - in_zp, m, left, right) + out_zp
        out[i] = min(max(v, lo), hi)
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


# --------------------------------------------------------------------------- whole int8 graphs

# Operations of a program for run_program: one row of ``code`` each, ``code[i, 0]`` the operation,
# ``code[i, 1:4]`` the slots of its inputs and output (-1: none), then its parameters (PROGRAM_*).
OP_CONV, OP_DEPTHWISE, OP_DENSE, OP_AVG_POOL, OP_MAX_POOL, OP_GLOBAL_AVG_POOL = 1, 2, 3, 4, 5, 6
OP_ADD, OP_RESCALE, OP_ALIAS, OP_SOFTMAX, OP_PAD = 7, 8, 9, 10, 11
PROGRAM_WIDTH = 28
# parameters of OP_CONV, OP_DEPTHWISE and OP_DENSE, from column 4: the weight matrix (offset
# into ``floats``, rows, columns), the bias and the requantize table (offsets into ``ints``;
# the table has 3 rows of ``columns``), the int8 weights of a large Dense (offset into ``codes``,
# -1 for none), in_zp, out_zp, lo, hi, then the ten numbers of the window geometry
W_OFF, W_ROWS, W_COLS, BIAS_OFF, TABLE_OFF, CODES_OFF, IN_ZP, OUT_ZP, LO, HI, GEOMETRY = range(4, 15)


@njit(cache=True)
def _slot4(slots, shapes, s, n):
    return slots[s].reshape(n, shapes[s, 0], shapes[s, 1], shapes[s, 2])


@njit(cache=True)
def run_program(x, code, shapes, floats, ints, codes, out_slot):
    """Run a whole int8 graph, prepared as a program, in one call: each row of ``code`` calls one
    kernel of this module on the flat activations of its input slots (``slots``, one per tensor,
    shaped ``(N, *shapes[slot])`` when a kernel needs it) and stores its output in a slot. The
    kernels and their arguments are those the interpreter calls one by one, so the results are
    the same; what goes is the Python and numba call overhead of every step (about 1.5 us each).

    ``x`` is the graph's input ``(N, ...)`` (slot 0), ``floats``/``ints``/``codes`` hold every
    layer's weights, biases and requantize tables end to end. Returns the flat output slot.
    """
    n = x.shape[0]
    slots = [np.empty(0, np.int8) for _ in range(shapes.shape[0])]
    slots[0] = np.ascontiguousarray(x).reshape(x.size)
    for i in range(code.shape[0]):
        op, a, b, o = code[i, 0], code[i, 1], code[i, 2], code[i, 3]
        p = code[i]
        if op == OP_CONV or op == OP_DEPTHWISE:
            w = floats[p[W_OFF]: p[W_OFF] + p[W_ROWS] * p[W_COLS]].reshape(p[W_ROWS], p[W_COLS])
            c = shapes[o, 2]
            bias = ints[p[BIAS_OFF]: p[BIAS_OFF] + c]
            table = ints[p[TABLE_OFF]: p[TABLE_OFF] + 3 * c].reshape(3, c)
            geometry = p[GEOMETRY: GEOMETRY + 10]
            if op == OP_CONV:
                y = conv2d_int8_gemm(_slot4(slots, shapes, a, n), w, bias, geometry, p[IN_ZP], table,
                                     p[OUT_ZP], p[LO], p[HI])
            else:
                y = depthwise_conv2d_int8_rows(_slot4(slots, shapes, a, n), w, bias, geometry, p[IN_ZP], table,
                                               p[OUT_ZP], p[LO], p[HI])
            slots[o] = y.reshape(y.size)
        elif op == OP_DENSE:
            k, c = p[W_ROWS], p[W_COLS]
            xa = slots[a].reshape(n, k)
            bias = ints[p[BIAS_OFF]: p[BIAS_OFF] + c]
            table = ints[p[TABLE_OFF]: p[TABLE_OFF] + 3 * c].reshape(3, c)
            if p[CODES_OFF] >= 0 and n <= 4:
                wc = codes[p[CODES_OFF]: p[CODES_OFF] + k * c].reshape(k, c)
                y2 = dense_int8_matvec(xa, wc, bias, table, p[OUT_ZP], p[LO], p[HI])
            else:
                w = floats[p[W_OFF]: p[W_OFF] + k * c].reshape(k, c)
                y2 = dense_int8_gemm(xa, w, bias, table, p[OUT_ZP], p[LO], p[HI])
            slots[o] = y2.reshape(y2.size)
        elif op == OP_AVG_POOL or op == OP_MAX_POOL:
            xa4 = _slot4(slots, shapes, a, n)
            if op == OP_AVG_POOL:
                y = avg_pool2d_int8(xa4, p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13])
            else:
                y = max_pool2d_int8(xa4, p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13])
            slots[o] = y.reshape(y.size)
        elif op == OP_GLOBAL_AVG_POOL:
            y2 = global_avg_pool_int8(_slot4(slots, shapes, a, n), p[4], p[5], p[6], p[7])
            slots[o] = y2.reshape(y2.size)
        elif op == OP_ADD:
            slots[o] = add_int8(slots[a], slots[b], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12],
                                p[13], p[14])
        elif op == OP_RESCALE:
            slots[o] = rescale_int8(slots[a], p[4], p[5], p[6], p[7], p[8], p[9])
        elif op == OP_ALIAS:
            slots[o] = slots[a]
        elif op == OP_SOFTMAX:
            depth = shapes[a, 2]
            y2 = softmax_int8(slots[a].reshape(slots[a].size // depth, depth), p[4], p[5], p[6])
            slots[o] = y2.reshape(y2.size)
        elif op == OP_PAD:
            y = pad_int8(_slot4(slots, shapes, a, n), p[4], p[5], p[6], p[7], p[8])
            slots[o] = y.reshape(y.size)
    return slots[out_slot]
