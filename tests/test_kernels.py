"""Every numba kernel against its NumPy reference: float within 1e-5 relative, int8 bit-exact.

Shapes, strides, paddings, dilations and batch sizes are drawn by hypothesis.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from strategies import WindowConfig, float_array, int8_array, seeds, window_configs
from tinyml_lab.kernels import float32 as kf
from tinyml_lab.kernels import int8 as ki
from tinyml_lab.kernels import reference as ref
from tinyml_lab.kernels.fixedpoint import quantize_multipliers, softmax_params

activations = st.sampled_from([(-np.inf, np.inf), (0.0, np.inf), (0.0, 6.0)])


def assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.float32
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


def multipliers(rng, n, lo=1e-4, hi=0.05):
    return quantize_multipliers(rng.uniform(lo, hi, n))


def int8_bounds(draw_lo, draw_hi):
    return min(draw_lo, draw_hi), max(draw_lo, draw_hi)


# --------------------------------------------------------------------------- float32

@given(window_configs(), seeds, activations)
def test_conv2d_float(c: WindowConfig, seed, act):
    rng = np.random.default_rng(seed)
    x = float_array(rng, (c.batch, c.height, c.width, c.c_in))
    w = float_array(rng, (c.c_out, *c.kernel, c.c_in))
    b = float_array(rng, (c.c_out,))
    want = ref.conv2d(x, w, b, c.strides, c.dilation, c.pads, *act)
    got = kf.conv2d(x, w, b, *c.strides, *c.dilation, *c.pads, *act)
    assert want.shape == (c.batch, *c.out_hw, c.c_out)
    assert_close(got, want)


@given(window_configs(), seeds, activations)
def test_depthwise_conv2d_float(c: WindowConfig, seed, act):
    rng = np.random.default_rng(seed)
    x = float_array(rng, (c.batch, c.height, c.width, c.c_in))
    w = float_array(rng, (1, *c.kernel, c.c_in))
    b = float_array(rng, (c.c_in,))
    want = ref.depthwise_conv2d(x, w, b, c.strides, c.dilation, c.pads, *act)
    assert_close(kf.depthwise_conv2d(x, w, b, *c.strides, *c.dilation, *c.pads, *act), want)


@given(st.integers(1, 4), st.integers(1, 300), st.integers(1, 40), seeds, activations)
def test_dense_float(n, cin, cout, seed, act):
    rng = np.random.default_rng(seed)
    x, w, b = float_array(rng, (n, cin)), float_array(rng, (cout, cin)), float_array(rng, (cout,))
    assert_close(kf.dense(x, w, b, *act), ref.dense(x, w, b, *act))


def _pool_config(c: WindowConfig) -> bool:
    # pooling windows start inside the image: padding smaller than the window
    return c.pads[0] < c.kernel[0] and c.pads[1] < c.kernel[0] and c.pads[2] < c.kernel[1] and c.pads[3] < c.kernel[1]


@given(window_configs(dilation=False).filter(_pool_config), seeds, st.booleans(), activations)
def test_pooling_float(c: WindowConfig, seed, count_include_pad, act):
    rng = np.random.default_rng(seed)
    x = float_array(rng, (c.batch, c.height, c.width, c.c_in))
    want = ref.avg_pool2d(x, c.kernel, c.strides, c.pads, count_include_pad, *act)
    assert_close(kf.avg_pool2d(x, *c.kernel, *c.strides, *c.pads, count_include_pad, *act), want)
    want = ref.max_pool2d(x, c.kernel, c.strides, c.pads, *act)
    assert_close(kf.max_pool2d(x, *c.kernel, *c.strides, *c.pads, *act), want)


@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 20), seeds, activations)
def test_elementwise_float(n, h, w, c, seed, act):
    rng = np.random.default_rng(seed)
    a, b = float_array(rng, (n, h, w, c), 4.0), float_array(rng, (n, h, w, c), 4.0)
    assert_close(kf.add(a, b, *act), ref.add(a, b, *act))
    assert_close(kf.clamp(a, *act), ref.clamp(a, *act))
    assert_close(kf.global_avg_pool(a), ref.global_avg_pool(a))
    assert_close(kf.softmax(a, 0.7), ref.softmax(a, 0.7))
    g, bt, m = float_array(rng, (c,)), float_array(rng, (c,)), float_array(rng, (c,))
    v = rng.uniform(0.1, 2.0, c).astype(np.float32)
    scale = g / np.sqrt(v.astype(np.float64) + 1e-3)
    assert_close(kf.batch_norm(a, scale.astype(np.float32), (bt - m * scale).astype(np.float32)),
                 ref.batch_norm(a, g, bt, m, v, 1e-3))
    pads = tuple(int(p) for p in rng.integers(0, 3, 4))
    assert_close(kf.pad(a, *pads, 0.0), ref.pad(a, pads, 0.0))


def test_softmax_float_is_stable_for_large_inputs():
    x = np.array([[1000.0, 1000.0, -1000.0]], np.float32)
    np.testing.assert_allclose(kf.softmax(x, 1.0), [[0.5, 0.5, 0.0]])


# --------------------------------------------------------------------------- int8

@given(window_configs(), seeds, st.integers(-128, 127), st.integers(-128, 127), st.integers(-128, 127))
def test_conv2d_int8_bit_exact(c: WindowConfig, seed, in_zp, out_zp, bound):
    rng = np.random.default_rng(seed)
    x = int8_array(rng, (c.batch, c.height, c.width, c.c_in))
    w = int8_array(rng, (c.c_out, *c.kernel, c.c_in), -127)
    b = rng.integers(-(2**20), 2**20, c.c_out).astype(np.int32)
    mult, shift = multipliers(rng, c.c_out)
    lo, hi = int8_bounds(bound, out_zp)
    want = ref.conv2d_int8(x, w, b, c.strides, c.dilation, c.pads, in_zp, mult, shift, out_zp, lo, hi)
    got = ki.conv2d_int8(x, w, ki.effective_bias(w, b, in_zp), *c.strides, *c.dilation, *c.pads,
                         in_zp, mult, shift, out_zp, lo, hi)
    assert got.dtype == np.int8 and want.shape == (c.batch, *c.out_hw, c.c_out)
    np.testing.assert_array_equal(got, want)


@given(window_configs(), seeds, st.integers(-128, 127), st.integers(-128, 127))
def test_depthwise_conv2d_int8_bit_exact(c: WindowConfig, seed, in_zp, out_zp):
    rng = np.random.default_rng(seed)
    x = int8_array(rng, (c.batch, c.height, c.width, c.c_in))
    w = int8_array(rng, (1, *c.kernel, c.c_in), -127)
    b = rng.integers(-(2**16), 2**16, c.c_in).astype(np.int32)
    mult, shift = multipliers(rng, c.c_in, 1e-3, 0.5)
    want = ref.depthwise_conv2d_int8(x, w, b, c.strides, c.dilation, c.pads, in_zp, mult, shift, out_zp)
    got = ki.depthwise_conv2d_int8(x, w, ki.effective_bias(w, b, in_zp, depthwise=True), *c.strides,
                                   *c.dilation, *c.pads, in_zp, mult, shift, out_zp, -128, 127)
    np.testing.assert_array_equal(got, want)


@given(st.integers(1, 4), st.integers(1, 700), st.integers(1, 40), seeds, st.integers(-128, 127),
       st.integers(-128, 127), st.booleans())
def test_dense_int8_bit_exact(n, cin, cout, seed, in_zp, out_zp, per_channel):
    rng = np.random.default_rng(seed)
    x, w = int8_array(rng, (n, cin)), int8_array(rng, (cout, cin), -127)
    b = rng.integers(-(2**20), 2**20, cout).astype(np.int32)
    mult, shift = multipliers(rng, cout if per_channel else 1, 1e-5, 0.02)
    mult, shift = np.broadcast_to(mult, (cout,)).copy(), np.broadcast_to(shift, (cout,)).copy()
    want = ref.dense_int8(x, w, b, in_zp, mult, shift, out_zp)
    got = ki.dense_int8(x, w, ki.effective_bias(w, b, in_zp), in_zp, mult, shift, out_zp, -128, 127)
    np.testing.assert_array_equal(got, want)


def test_int8_accumulator_wraps_like_int32():
    """A 4096-term window of extreme values overflows int32; both paths wrap identically."""
    x = np.full((1, 1, 1, 4096 * 2), -128, np.int8)
    w = np.full((1, 1, 1, 4096 * 2), -127, np.int8)
    b = np.array([2**31 - 1], np.int32)
    m, s = quantize_multipliers(np.array([1e-9]))
    want = ref.conv2d_int8(x, w, b, (1, 1), (1, 1), (0, 0, 0, 0), 0, m, s, 0)
    got = ki.conv2d_int8(x, w, ki.effective_bias(w, b, 0), 1, 1, 1, 1, 0, 0, 0, 0, 0, m, s, 0, -128, 127)
    np.testing.assert_array_equal(got, want)


@given(window_configs(dilation=False).filter(_pool_config), seeds, st.integers(-128, 127))
def test_pooling_int8_bit_exact(c: WindowConfig, seed, lo):
    rng = np.random.default_rng(seed)
    x = int8_array(rng, (c.batch, c.height, c.width, c.c_in))
    want = ref.avg_pool2d_int8(x, c.kernel, c.strides, c.pads, lo, 127)
    np.testing.assert_array_equal(ki.avg_pool2d_int8(x, *c.kernel, *c.strides, *c.pads, lo, 127), want)
    want = ref.max_pool2d_int8(x, c.kernel, c.strides, c.pads, lo, 127)
    np.testing.assert_array_equal(ki.max_pool2d_int8(x, *c.kernel, *c.strides, *c.pads, lo, 127), want)


@given(st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(1, 20), seeds,
       st.integers(-128, 127), st.integers(-128, 127))
def test_elementwise_int8_bit_exact(n, h, w, c, seed, zp_a, zp_b):
    rng = np.random.default_rng(seed)
    a, b = int8_array(rng, (n, h, w, c)), int8_array(rng, (n, h, w, c))
    (am, bm, om), (ash, bsh, osh) = quantize_multipliers(rng.uniform([0.2, 0.2, 1e-6], [0.5, 0.5, 1e-5]))
    args = (zp_a, am, ash, zp_b, bm, bsh, -3, om, osh, -100, 120)
    np.testing.assert_array_equal(ki.add_int8(a, b, *args), ref.add_int8(a, b, *args))
    (m,), (s,) = quantize_multipliers(rng.uniform(0.3, 3.0, 1))
    np.testing.assert_array_equal(ki.rescale_int8(a, zp_a, m, s, zp_b, zp_b, 127),
                                  ref.rescale_int8(a, zp_a, m, s, zp_b, zp_b, 127))
    np.testing.assert_array_equal(ki.global_avg_pool_int8(a, zp_a, m, s, zp_b),
                                  ref.global_avg_pool_int8(a, zp_a, m, s, zp_b))
    pads = tuple(int(p) for p in rng.integers(0, 3, 4))
    np.testing.assert_array_equal(ki.pad_int8(a, *pads, zp_a), ref.pad_int8(a, pads, zp_a))


@given(st.integers(1, 40), st.integers(1, 30), st.floats(0.002, 2.0), st.floats(0.25, 4.0), seeds)
def test_softmax_int8_bit_exact_and_accurate(rows, depth, scale, beta, seed):
    rng = np.random.default_rng(seed)
    x = int8_array(rng, (rows, depth))
    m, s, diff_min = softmax_params(scale, beta)
    want = ref.softmax_int8(x, m, s, diff_min)
    np.testing.assert_array_equal(ki.softmax_int8(x, m, s, diff_min), want)
    # the fixed-point result is within 1/256 plus rounding of the real softmax
    real = ref.softmax(x.astype(np.float32) * np.float32(scale), beta)
    assert np.abs((want.astype(np.float64) + 128) / 256 - real).max() <= 1.5 / 256


@given(st.integers(1, 500), st.floats(1e-3, 1.0), st.integers(-128, 127), seeds)
def test_quantize_dequantize(n, scale, zp, seed):
    rng = np.random.default_rng(seed)
    x = float_array(rng, (n,), 100 * scale)
    q = ref.quantize(x, scale, zp)
    np.testing.assert_array_equal(ki.quantize(x, scale, zp), q)
    back = ref.dequantize(q, scale, zp)
    np.testing.assert_array_equal(kf.dequantize(q, scale, zp), back)
    inside = (q > -128) & (q < 127)
    assert np.all(np.abs(back[inside] - x[inside]) <= scale / 2 * (1 + 1e-5))


def test_quantize_ties_round_away_from_zero():
    q = ref.quantize(np.array([0.5, 1.5, -0.5, -1.5, 0.49999997], np.float32), 1.0, 0)
    np.testing.assert_array_equal(q, [1, 2, -1, -2, 0])
    np.testing.assert_array_equal(ki.quantize(np.array([0.5, 1.5, -0.5, -1.5, 0.49999997], np.float32), 1.0, 0), q)


# --------------------------------------------------------------------------- exact int8 GEMM on float32

def _cancelling_bias(exact: np.ndarray) -> np.ndarray:
    """A bias that brings the accumulators ``exact`` to about zero, where a multiplier near one
    turns an error of one unit in the accumulator into a different output code."""
    return (-exact + np.arange(exact.size) % 3 - 1).astype(np.int32)


def test_int8_gemm_in_float32_is_exact_at_the_extremes():
    """Products of 125 to 128 in magnitude, all of one sign, K up to 3000: the dot products pass
    2^24, where float32 no longer holds every integer, so a float32 sum over the whole window
    would round; the kernels split K into chunks whose float32 sums are exact."""
    rng = np.random.default_rng(0)
    m, s = quantize_multipliers(np.full(3, 0.999))
    for k in (1024, 1025, 3000):
        x = np.where(rng.random((2, k)) < 0.3, -127, -128).astype(np.int8)
        x[1] = -128
        w = np.stack([np.where(rng.random(k) < 0.3, 125, 127), np.full(k, -127),
                      np.where(rng.random(k) < 0.5, 127, -128)]).astype(np.int8)
        raw = x[0].astype(np.int64) @ w.astype(np.int64).T  # the kernels multiply the raw codes
        assert k < 3000 or np.abs(raw).max() > 2**25
        for in_zp in (-128, 0, 127):
            exact = (x[0].astype(np.int64) - in_zp) @ w.astype(np.int64).T
            b = _cancelling_bias(exact)
            want = ref.dense_int8(x, w, b, in_zp, m, s, -5)
            got = ki.dense_int8(x, w, ki.effective_bias(w, b, in_zp), in_zp, m, s, -5, -128, 127)
            np.testing.assert_array_equal(got, want)
            assert np.abs(want[0].astype(int) + 5).max() <= 1  # the sensitive row
            got = ki.dense_int8_matvec(x, np.ascontiguousarray(w.T), ki.effective_bias(w, b, in_zp),
                                       ki.requantize_table(m, s), -5, -128, 127)
            np.testing.assert_array_equal(got, want)
            x4, w4 = x.reshape(2, 1, 1, k), w.reshape(3, 1, 1, k)
            want = ref.conv2d_int8(x4, w4, b, (1, 1), (1, 1), (0, 0, 0, 0), in_zp, m, s, 3)
            got = ki.conv2d_int8(x4, w4, ki.effective_bias(w4, b, in_zp), 1, 1, 1, 1, 0, 0, 0, 0, in_zp, m, s, 3,
                                 -128, 127)
            np.testing.assert_array_equal(got, want)


def test_int8_conv_exact_with_padding_and_a_window_of_more_than_1024():
    """A 3x3 conv over 400 channels (K = 3600) with padding (which holds the input zero point);
    the bias cancels the accumulator of the corner pixel, whose window includes padding."""
    rng = np.random.default_rng(1)
    x = np.where(rng.random((1, 5, 4, 400)) < 0.3, -127, -128).astype(np.int8)
    w = np.where(rng.random((4, 3, 3, 400)) < 0.3, 125, 127).astype(np.int8)
    in_zp = 5
    corner = (np.pad(x[0, :2, :2].astype(np.int64) - in_zp, ((1, 0), (1, 0), (0, 0))) * w.astype(np.int64)).sum(
        axis=(1, 2, 3))
    b = _cancelling_bias(corner)
    m, s = quantize_multipliers(np.full(4, 0.999))
    want = ref.conv2d_int8(x, w, b, (1, 2), (1, 1), (1, 1, 1, 0), in_zp, m, s, -1)
    got = ki.conv2d_int8(x, w, ki.effective_bias(w, b, in_zp), 1, 2, 1, 1, 1, 1, 1, 0, in_zp, m, s, -1, -128, 127)
    np.testing.assert_array_equal(got, want)
    assert np.abs(want[0, 0, 0].astype(int) + 1).max() <= 1


def test_depthwise_int8_exact_for_a_window_of_more_than_1024_taps():
    """A 45x45 depthwise window (2025 taps) of large products; the bias cancels the first output."""
    rng = np.random.default_rng(2)
    x = np.where(rng.random((1, 50, 49, 3)) < 0.3, -127, -128).astype(np.int8)
    w = np.where(rng.random((1, 45, 45, 3)) < 0.3, 125, 127).astype(np.int8)
    w[..., 2] = -128
    in_zp = -3
    first = ((x[0, :45, :45].astype(np.int64) - in_zp) * w[0]).sum(axis=(0, 1))
    b = _cancelling_bias(first)
    m, s = quantize_multipliers(np.full(3, 0.999))
    want = ref.depthwise_conv2d_int8(x, w, b, (1, 1), (1, 1), (0, 0, 0, 0), in_zp, m, s, 2)
    got = ki.depthwise_conv2d_int8(x, w, ki.effective_bias(w, b, in_zp, depthwise=True), 1, 1, 1, 1, 0, 0, 0, 0,
                                   in_zp, m, s, 2, -128, 127)
    np.testing.assert_array_equal(got, want)
    assert np.abs(want[0, 0, 0].astype(int) - 2).max() <= 1


@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=64),
       st.integers(0, 2**31 - 1), st.integers(-31, 8))
def test_requantize_lanes_matches_the_spec(accs, m, shift):
    """The branch-free requantization of the int8 kernels equals ``requantize_np`` bit for bit."""
    from tinyml_lab.kernels.fixedpoint import requantize_lanes, requantize_np

    got = [int(requantize_lanes(np.int64(a), np.int64(m), np.int64(max(shift, 0)), np.int64(max(-shift, 0))))
           for a in accs]
    assert got == requantize_np(np.array(accs), m, shift).tolist()


@given(st.integers(1, 300), st.integers(1, 70), seeds, st.integers(-128, 127), st.integers(-128, 127))
def test_requantize_rows_matches_the_spec(rows, channels, seed, out_zp, bound):
    """Per-channel requantization of a block, with accumulators of every size (wrapping sums),
    shifts from -31 to 8 and the clamp bounds of fused activations."""
    rng = np.random.default_rng(seed)
    acc = rng.integers(-(2**40), 2**40, (rows, channels)) >> rng.integers(0, 40, (rows, channels))
    bias = rng.integers(-(2**31), 2**31, channels).astype(np.int32)
    mult = rng.integers(2**30, 2**31, channels).astype(np.int32)
    shift = rng.integers(-31, 9, channels).astype(np.int32)
    if rng.random() < 0.5:
        shift = np.minimum(shift, 0)  # the loop without left shifts
    lo, hi = int8_bounds(bound, out_zp)
    want = ref._requantize_out(acc + bias, mult, shift, out_zp, lo, hi)
    got = np.empty((rows, channels), np.int8)
    ki.requantize_rows(acc, bias, ki.requantize_table(mult, shift), out_zp, lo, hi, got)
    np.testing.assert_array_equal(got, want)


def test_kernels_accept_non_contiguous_inputs():
    rng = np.random.default_rng(1)
    x = int8_array(rng, (2, 9, 8, 6))[:, ::2, :, 1:5]
    w = int8_array(rng, (3, 3, 3, 4), -127)
    m, s = quantize_multipliers(rng.uniform(1e-3, 0.05, 3))
    b = rng.integers(-500, 500, 3).astype(np.int32)
    want = ref.conv2d_int8(x, w, b, (1, 1), (1, 1), (1, 1, 1, 1), 2, m, s, 0)
    got = ki.conv2d_int8(x, w, ki.effective_bias(w, b, 2), 1, 1, 1, 1, 1, 1, 1, 1, 2, m, s, 0, -128, 127)
    np.testing.assert_array_equal(got, want)
    wd = int8_array(rng, (1, 3, 3, 4), -127)
    m4, s4 = quantize_multipliers(rng.uniform(1e-3, 0.05, 4))
    want = ref.depthwise_conv2d_int8(x, wd, None, (2, 1), (1, 1), (1, 1, 1, 1), 2, m4, s4, 0)
    got = ki.depthwise_conv2d_int8(x, wd, ki.effective_bias(wd, None, 2, depthwise=True), 2, 1, 1, 1, 1, 1, 1, 1,
                                   2, m4, s4, 0, -128, 127)
    np.testing.assert_array_equal(got, want)
    xf = float_array(rng, (2, 9, 8, 6))[:, ::2, :, 1:5]
    wf = float_array(rng, (3, 3, 3, 4))
    assert_close(kf.conv2d(xf, wf, np.zeros(3, np.float32), 1, 1, 1, 1, 1, 1, 1, 1, -np.inf, np.inf),
                 ref.conv2d(xf, wf, None, (1, 1), (1, 1), (1, 1, 1, 1)))
    xd = float_array(rng, (5, 7))[:, ::2]
    assert_close(kf.dense(xd, wf.reshape(3, -1)[:, :4], np.zeros(3, np.float32), -np.inf, np.inf),
                 ref.dense(xd, wf.reshape(3, -1)[:, :4], None))


@given(st.integers(1, 4), st.integers(1, 2100), st.integers(1, 40), seeds, st.integers(-128, 127),
       st.integers(-128, 127))
def test_dense_int8_matvec_bit_exact(n, cin, cout, seed, in_zp, out_zp):
    """The batch-of-few Dense that reads int8 weights (large layers) equals the reference."""
    rng = np.random.default_rng(seed)
    x, w = int8_array(rng, (n, cin)), int8_array(rng, (cout, cin), -127)
    if rng.random() < 0.3:
        x[:], w[:] = -128, 127  # the largest sums
    b = rng.integers(-(2**20), 2**20, cout).astype(np.int32)
    mult, shift = multipliers(rng, cout, 1e-7, 0.02)
    want = ref.dense_int8(x, w, b, in_zp, mult, shift, out_zp)
    got = ki.dense_int8_matvec(x, np.ascontiguousarray(w.T), ki.effective_bias(w, b, in_zp),
                               ki.requantize_table(mult, shift), out_zp, -128, 127)
    np.testing.assert_array_equal(got, want)
