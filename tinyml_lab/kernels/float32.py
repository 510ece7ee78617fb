"""float32 kernels compiled with numba; the same maths as :mod:`tinyml_lab.kernels.reference`.

Convolutions lower their windows to the rows of a matrix (:func:`lower`,
im2col: one row per output pixel, zeros where the window leaves the image)
and multiply it by the weights with BLAS ``sgemm`` (numba's ``np.dot``);
Dense layers multiply the whole batch. Depthwise convolutions go by output
rows, each tap a multiply-add over a whole row (:func:`phase_split`,
:func:`depthwise_accumulate`). The int8 kernels reuse these helpers on
integer codes held in float32 (exact, see :mod:`tinyml_lab.kernels.int8`).

Sums may be reassociated (BLAS's order; ``fastmath`` reassoc/contract, no
assumptions about NaN or infinity), so results agree with the float64
reference to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_FM = {"reassoc", "contract"}

# Images per GEMM are chosen so that the lowered matrix stays under this many floats (16 MB).
GEMM_MAX_FLOATS = 1 << 22


# --------------------------------------------------------------------------- window geometry

@njit(cache=True)
def window(kh, kw, sh, sw, dh, dw, pt, pb, pl, pr):
    """The geometry of a sliding window as one int64 array ``(kh, kw, sh, sw, dh, dw, pt, pb, pl, pr)``:
    what the ``*_gemm`` and ``*_rows`` kernels take (one argument is cheaper to pass than ten)."""
    return np.array([kh, kw, sh, sw, dh, dw, pt, pb, pl, pr], np.int64)


@njit(cache=True)
def output_size(h, wd, geometry):
    """``(OH, OW)`` of a window ``geometry`` (see :func:`window`) sliding over an ``h x wd`` image."""
    kh, kw, sh, sw, dh, dw, pt, pb, pl, pr = geometry
    return (h + pt + pb - (kh - 1) * dh - 1) // sh + 1, (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1


@njit(cache=True)
def is_pointwise(geometry):
    """A 1x1 window with unit strides and no padding: the input pixels are the GEMM rows as they are."""
    kh, kw, sh, sw, dh, dw, pt, pb, pl, pr = geometry
    return kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pb == 0 and pl == 0 and pr == 0


# --------------------------------------------------------------------------- copies
# Index arithmetic in the loops below is unsigned (``np.uint64``): numba then emits no check for
# negative (wrap-around) indices, and LLVM turns the copies and multiply-adds into vector code.

_U = np.uint64


@njit(cache=True, fastmath=_FM, inline="always")
def _copy(dst, d0, src, s0, n):
    """``dst[d0 + j] = src[s0 + j]`` for ``j < n`` (converting to ``dst``'s type); flat arrays."""
    d, s = _U(d0), _U(s0)
    for j in range(_U(n)):
        dst[d + j] = src[s + j]


@njit(cache=True, inline="always")
def _fill(dst, value):
    flat = dst.reshape(dst.size)
    for j in range(_U(flat.size)):
        flat[j] = value


# --------------------------------------------------------------------------- lowering windows to matrices

@njit(cache=True)
def images_per_gemm(n, rows_per_image, k):
    """How many images to lower into one GEMM: all of them unless the matrix would pass
    :data:`GEMM_MAX_FLOATS`, and at least one."""
    return max(1, min(n, GEMM_MAX_FLOATS // max(rows_per_image * k, 1)))


@njit(cache=True)
def lower(x, b0, b1, geometry, fill):
    """The GEMM rows of images ``b0..b1-1`` of a contiguous ``x``: float32
    ``((b1 - b0) * OH * OW, KH * KW * C)``, row ``(b - b0) * OH * OW + oy * OW + ox`` holding the
    window of output pixel ``(b, oy, ox)`` in ``(ky, kx, c)`` order, ``fill`` where the window
    leaves the image (im2col). A convolution is then one matrix product ``rows @ W``. For a
    pointwise window the rows are the pixels themselves."""
    _, h, wd, c = x.shape
    kh, kw, sh, sw, dh, dw, pt, pb, pl, pr = geometry
    oh, ow = output_size(h, wd, geometry)
    k = kh * kw * c
    cols = np.empty(((b1 - b0) * oh * ow, k), np.float32)
    flat = cols.reshape(cols.size)
    xf = x.reshape(x.size)
    image = h * wd * c
    if is_pointwise(geometry):
        _copy(flat, 0, xf, b0 * image, flat.size)
        return cols
    wpc = (wd + pl + pr) * c
    xp = np.empty((h + pt + pb) * wpc, np.float32)  # one padded image
    seg = kw * c
    i = 0
    for b in range(b0, b1):
        _fill(xp, np.float32(fill))
        for y in range(h):
            _copy(xp, (y + pt) * wpc + pl * c, xf, b * image + y * wd * c, wd * c)
        for oy in range(oh):
            for ox in range(ow):
                for ky in range(kh):
                    src = (oy * sh + ky * dh) * wpc + ox * sw * c
                    if dw == 1:
                        _copy(flat, i * k + ky * seg, xp, src, seg)
                    else:
                        for kx in range(kw):
                            _copy(flat, i * k + ky * seg + kx * c, xp, src + kx * dw * c, c)
                i += 1
    return cols


@njit(cache=True)
def phase_shape(h, wd, c, geometry):
    """``(phase size, phase row length)`` of the buffer :func:`phase_split` fills."""
    kh, kw, sh, sw, dh, dw, pt, pb, pl, pr = geometry
    hq = (h + pt + pb + sh - 1) // sh
    wq = (wd + pl + pr + sw - 1) // sw
    return hq * wq * c, wq * c


@njit(cache=True)
def phase_split(x, b, geometry, fill, xs):
    """Image ``b`` of a contiguous ``x``, padded with ``fill``, into the flat buffer ``xs``, split by
    the phase of its rows and columns: padded pixel ``(r, j)`` goes to phase
    ``(r % sh) * sw + j % sw``, at row ``r // sh`` and column ``j // sw`` of that phase.

    Whatever the strides, the inputs of one tap ``(ky, kx)`` over one output row are then a
    contiguous run of ``OW * C`` values, starting at :func:`tap_offset`."""
    _, h, wd, c = x.shape
    kh, kw, sh, sw, dh, dw, pt, pb, pl, pr = geometry
    size, rowlen = phase_shape(h, wd, c, geometry)
    xf = x.reshape(x.size)
    _fill(xs, np.float32(fill))
    for y in range(h):
        r = y + pt
        row = (r % sh) * sw * size + (r // sh) * rowlen
        src = ((b * h) + y) * wd * c
        if sw == 1:
            _copy(xs, row + pl * c, xf, src, wd * c)
            continue
        for p in range(sw):  # padded columns p, p + sw, p + 2 sw, ...: image columns p - pl + q sw
            q0 = max(0, (pl - p + sw - 1) // sw)
            for q in range(q0, rowlen // c):
                xx = q * sw + p - pl
                if xx >= wd:
                    break
                _copy(xs, row + p * size + q * c, xf, src + xx * c, c)


@njit(cache=True, inline="always")
def tap_offset(geometry, size, rowlen, c, oy, ky, kx):
    """Where, in a :func:`phase_split` buffer, tap ``(ky, kx)`` of output row ``oy`` starts."""
    kh, kw, sh, sw, dh, dw, pt, pb, pl, pr = geometry
    return (((ky * dh) % sh) * sw + (kx * dw) % sw) * size + (oy + (ky * dh) // sh) * rowlen + (kx * dw) // sw * c


@njit(cache=True)
def depthwise_row_weights(w, ow):
    """Depthwise weights ``(1, KH, KW, C)`` as float32 ``(KH * KW, OW * C)``: each tap's ``C``
    weights repeated along an output row, so a tap is one multiply-add over ``OW * C`` values."""
    _, kh, kw, c = w.shape
    out = np.empty((kh * kw, ow * c), np.float32)
    for ky in range(kh):
        for kx in range(kw):
            for ox in range(ow):
                for ch in range(c):
                    out[ky * kw + kx, ox * c + ch] = np.float32(w[0, ky, kx, ch])
    return out


@njit(cache=True, fastmath=_FM)
def _mac1(acc, a0, xs, s0, w, w0, n):
    a, s, v = _U(a0), _U(s0), _U(w0)
    for j in range(_U(n)):
        acc[a + j] += xs[s + j] * w[v + j]


@njit(cache=True, fastmath=_FM)
def _mac3(acc, a0, xs, s0, s1, s2, w, w0, n):
    """Three taps at once: one load and store of ``acc`` per three multiply-adds."""
    a, p, q, r, v = _U(a0), _U(s0), _U(s1), _U(s2), _U(w0)
    nn = _U(n)
    for j in range(nn):
        acc[a + j] += xs[p + j] * w[v + j] + xs[q + j] * w[v + nn + j] + xs[r + j] * w[v + nn + nn + j]


@njit(cache=True)
def depthwise_accumulate(xs, h, wd, c, w_rows, geometry, t0, t1, acc):
    """``acc[oy, ox * C + ch] += x[oy * sh + ky * dh, ox * sw + kx * dw, ch] w[ky, kx, ch]`` over the
    taps ``t = ky * KW + kx`` in ``t0..t1-1`` and every output row, on a :func:`phase_split` image;
    ``acc`` is flat ``(OH * OW * C,)``, ``w_rows`` flat from :func:`depthwise_row_weights`.
    Neighbouring taps of a kernel row go three at a time."""
    kw = geometry[1]
    oh, ow = output_size(h, wd, geometry)
    size, rowlen = phase_shape(h, wd, c, geometry)
    n = ow * c
    for oy in range(oh):
        t = t0
        while t < t1:
            ky, kx = t // kw, t % kw
            if kx + 2 < kw and t + 2 < t1:
                _mac3(acc, oy * n, xs, tap_offset(geometry, size, rowlen, c, oy, ky, kx),
                      tap_offset(geometry, size, rowlen, c, oy, ky, kx + 1),
                      tap_offset(geometry, size, rowlen, c, oy, ky, kx + 2), w_rows, t * n, n)
                t += 3
            else:
                _mac1(acc, oy * n, xs, tap_offset(geometry, size, rowlen, c, oy, ky, kx), w_rows, t * n, n)
                t += 1


# --------------------------------------------------------------------------- convolutions and dense

@njit(cache=True)
def gemm_weights(w):
    """Conv weights ``(C_out, KH, KW, C_in)`` or dense weights ``(C_out, C_in)`` as a contiguous
    float32 ``(K, C_out)`` matrix, ``K = KH * KW * C_in``: the right-hand side of the GEMM."""
    cout = w.shape[0]
    w2 = np.ascontiguousarray(w).reshape(cout, w.size // cout)
    out = np.empty((w2.shape[1], cout), np.float32)
    for o in range(cout):
        for j in range(w2.shape[1]):
            out[j, o] = np.float32(w2[o, j])
    return out


@njit(cache=True, fastmath=_FM)
def _bias_clamp(y, bias, lo, hi):
    """``y = clamp(y + bias)`` in place, ``y`` ``(M, C)``, ``bias`` ``(C,)``."""
    for i in range(y.shape[0]):
        for o in range(y.shape[1]):
            y[i, o] = min(max(y[i, o] + bias[o], lo), hi)


@njit(cache=True)
def conv2d_gemm(x, w_gemm, bias, geometry, lo, hi):
    """Conv2D as ``lower(x) @ w_gemm`` (im2col, then BLAS ``sgemm``, float32 sums in BLAS's order);
    ``w_gemm`` from :func:`gemm_weights`, ``geometry`` from :func:`window`."""
    xc = np.ascontiguousarray(x)
    n, h, wd, _ = xc.shape
    cout = w_gemm.shape[1]
    oh, ow = output_size(h, wd, geometry)
    rows = oh * ow
    step = images_per_gemm(n, rows, w_gemm.shape[0])
    out = np.empty((n * rows, cout), np.float32)
    for b0 in range(0, n, step):
        b1 = min(b0 + step, n)
        y = np.dot(lower(xc, b0, b1, geometry, 0.0), w_gemm)
        _bias_clamp(y, bias, lo, hi)
        if b1 - b0 == n:
            return y.reshape(n, oh, ow, cout)
        out[b0 * rows: b1 * rows] = y
    return out.reshape(n, oh, ow, cout)


@njit(cache=True)
def conv2d(x, w, bias, sh, sw, dh, dw, pt, pb, pl, pr, lo, hi):
    """Conv2D, ``w`` ``(C_out, KH, KW, C_in)``, ``bias`` ``(C_out,)`` (zeros when the layer has none)."""
    g = window(w.shape[1], w.shape[2], sh, sw, dh, dw, pt, pb, pl, pr)
    return conv2d_gemm(x, gemm_weights(w), bias, g, lo, hi)


@njit(cache=True)
def depthwise_conv2d_rows(x, w_rows, bias, geometry, lo, hi):
    """Depthwise convolution (multiplier 1) by output rows: each tap is a multiply-add over a
    whole row (:func:`phase_split`, :func:`depthwise_accumulate`), whatever the channel count;
    ``w_rows`` from :func:`depthwise_row_weights`."""
    xc = np.ascontiguousarray(x)
    n, h, wd, c = xc.shape
    oh, ow = output_size(h, wd, geometry)
    out = np.empty((n, oh * ow, c), np.float32)
    size, _ = phase_shape(h, wd, c, geometry)
    xs = np.empty(geometry[2] * geometry[3] * size, np.float32)
    wf = w_rows.reshape(w_rows.size)
    for b in range(n):
        phase_split(xc, b, geometry, 0.0, xs)
        acc = out[b]
        for i in range(oh * ow):
            for ch in range(c):
                acc[i, ch] = bias[ch]
        flat = acc.reshape(acc.size)
        depthwise_accumulate(xs, h, wd, c, wf, geometry, 0, w_rows.shape[0], flat)
        for i in range(flat.size):
            flat[i] = min(max(flat[i], lo), hi)
    return out.reshape(n, oh, ow, c)


@njit(cache=True)
def depthwise_conv2d(x, w, bias, sh, sw, dh, dw, pt, pb, pl, pr, lo, hi):
    """Depthwise convolution (multiplier 1), ``w`` ``(1, KH, KW, C)``."""
    g = window(w.shape[1], w.shape[2], sh, sw, dh, dw, pt, pb, pl, pr)
    _, ow = output_size(x.shape[1], x.shape[2], g)
    return depthwise_conv2d_rows(x, depthwise_row_weights(w, ow), bias, g, lo, hi)


@njit(cache=True)
def rows_f32(x):
    """``x`` ``(N, C)`` as a new contiguous float32 matrix."""
    out = np.empty(x.shape, np.float32)
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            out[i, j] = np.float32(x[i, j])
    return out


@njit(cache=True)
def dense_gemm(x, w_gemm, bias, lo, hi):
    """``y = clamp(x @ w_gemm + b)`` (BLAS ``sgemm``), ``w_gemm`` ``(C_in, C_out)`` from :func:`gemm_weights`."""
    y = np.dot(rows_f32(x), w_gemm)
    _bias_clamp(y, bias, lo, hi)
    return y


@njit(cache=True)
def dense(x, w, bias, lo, hi):
    """``y = clamp(x W^T + b)``, ``w`` ``(C_out, C_in)``."""
    return dense_gemm(x, gemm_weights(w), bias, lo, hi)


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
