"""Integer arithmetic of the TFLite int8 spec: the one requantization every int8 kernel uses.

A real multiplier ``M > 0`` (for a convolution ``M = s_in * s_w / s_out``) is
stored as a Q0.31 fixed-point ``m`` in ``[2^30, 2^31)`` and a power-of-two
``shift``, ``M ~= m * 2^(shift - 31)``. An int32 accumulator ``a`` is then
rescaled with integers only:

    requantize(a) = RDBPOT(SRDHM(a * 2^max(shift, 0), m), max(-shift, 0))

where ``SRDHM(a, b) = floor(a * b / 2^31 + 1/2)`` (round to nearest, ties
toward +infinity, saturating the one overflowing case) and
``RDBPOT(x, e) = round(x / 2^e)`` (round to nearest, ties away from zero). This is gemmlowp's "double rounding" scheme,
the default of TensorFlow Lite and TFLite Micro.

Each function comes twice: vectorized NumPy (``*_np``, the spec, used by
:mod:`tinyml_lab.kernels.reference`) and a numba scalar used inside the int8
kernels. The test suite checks that the two agree bit for bit.

The fixed-point exponential and reciprocal of the int8 softmax (gemmlowp's
``exp_on_negative_values`` and ``one_over_one_plus_x_for_x_in_0_1``) are here
too, as they are built from the same primitives.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


# --------------------------------------------------------------------------- multipliers

def round_half_away(x: float) -> int:
    """Round to nearest, ties away from zero (C's ``std::round``)."""
    a = abs(x)
    q = math.floor(a)
    q += a - q >= 0.5  # exact, unlike floor(a + 0.5)
    return int(q) if x >= 0 else -int(q)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``real ~= m * 2^(shift - 31)`` with ``m`` in ``[2^30, 2^31)``, TFLite's ``QuantizeMultiplier``.

    ``real`` is taken as a double. Zero maps to ``(0, 0)``; a tiny multiplier
    whose shift would fall below -31 maps to zero, as in TFLite.
    """
    if real < 0 or not math.isfinite(real):
        raise ValueError(f"a multiplier must be finite and non-negative, got {real}")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)  # real = q * 2^shift, q in [0.5, 1)
    m = round_half_away(q * (1 << 31))
    if m == 1 << 31:
        m //= 2
        shift += 1
    if shift < -31:  # every bit would be shifted out: flush to zero, as TFLite does
        return 0, 0
    return m, shift


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel :func:`quantize_multiplier`, as int32 arrays."""
    pairs = [quantize_multiplier(float(r)) for r in np.asarray(reals, dtype=np.float64).ravel()]
    return (np.array([p[0] for p in pairs], dtype=np.int32),
            np.array([p[1] for p in pairs], dtype=np.int32))


def mean_multiplier(multiplier: int, shift: int, count: int) -> tuple[int, int]:
    """Fold ``1 / count`` into a quantized multiplier, as TFLite's int8 MEAN does.

    With ``k = min(floor(log2 count), 32, 31 + shift)``:
    ``m' = floor(m 2^k / count)`` and ``shift' = shift - k``, so
    ``m' 2^(shift' - 31) ~= m 2^(shift - 31) / count`` while ``m'`` keeps 30
    to 31 significant bits (``2^k <= count``; the floor truncates). This is
    the rescaling of ``reference_ops::QuantizedMeanOrSum``, the kernel LiteRT's
    reference resolver and TensorFlow Lite Micro run for an int8 MEAN whose
    input and output quantization differ.
    """
    if count <= 0:
        raise ValueError(f"a mean needs a positive element count, got {count}")
    k = min(int(count).bit_length() - 1, 32, 31 + int(shift))
    return (int(multiplier) << k) // int(count), int(shift) - k


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """Clamp bounds of a fused activation on an int8 output, TFLite's ``CalculateActivationRangeQuantized``.

    ReLU clamps below at the code of 0.0 (the zero point), ReLU6 also above at
    the code of 6.0, ``zero_point + round(6 / scale)`` computed in float32.
    """
    lo, hi = -128, 127
    if activation in ("relu", "relu6"):
        lo = max(lo, int(zero_point))
    if activation == "relu6":
        hi = min(hi, int(zero_point) + round_half_away(float(np.float32(6.0) / np.float32(scale))))
    return lo, hi


# --------------------------------------------------------------------------- NumPy spec

def _trunc_div_np(n: np.ndarray, d: int) -> np.ndarray:
    """Integer division rounding toward zero (C semantics), on int64 arrays."""
    q = np.abs(n) // d
    return np.where(n < 0, -q, q)


def srdhm_np(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """Saturating rounding doubling high multiply: ``floor(a * b / 2^31 + 1/2)`` as int32.

    gemmlowp adds a nudge of ``2^30`` (``1 - 2^30`` for a negative product) and
    divides rounding toward zero, so ties go toward +infinity: -0.5 becomes 0.
    """
    a64 = np.asarray(a, dtype=np.int64)
    b64 = np.asarray(b, dtype=np.int64)
    ab = a64 * b64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    out = _trunc_div_np(ab + nudge, 1 << 31)
    overflow = (a64 == INT32_MIN) & (b64 == INT32_MIN)
    return np.where(overflow, INT32_MAX, out).astype(np.int32)


def rdbpot_np(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """Rounding divide by ``2^exponent``, ties away from zero."""
    x64 = np.asarray(x, dtype=np.int64)
    e = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << e) - 1
    remainder = x64 & mask
    threshold = (mask >> 1) + (x64 < 0)
    return ((x64 >> e) + (remainder > threshold)).astype(np.int32)


def requantize_np(acc: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int) -> np.ndarray:
    """TFLite's ``MultiplyByQuantizedMultiplier`` (double rounding), vectorized; broadcasts."""
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = (np.asarray(acc, dtype=np.int64) << left)
    shifted = ((shifted + 2**31) % 2**32 - 2**31)  # the int32 product wraps, as in C
    return rdbpot_np(srdhm_np(shifted, multiplier), right)


def saturating_shift_left_np(x: np.ndarray, exponent: int) -> np.ndarray:
    """gemmlowp's ``SaturatingRoundingMultiplyByPOT`` for a positive exponent."""
    x64 = np.asarray(x, dtype=np.int64)
    threshold = (1 << (31 - exponent)) - 1
    out = np.where(x64 > threshold, INT32_MAX, np.where(x64 < -threshold, INT32_MIN, x64 << exponent))
    return out.astype(np.int32)


def exp_on_negative_values_np(a: np.ndarray) -> np.ndarray:
    """``exp(a)`` for ``a <= 0`` in Q5.26, returning Q0.31 (gemmlowp's algorithm).

    The argument is split as ``a = r - k/4 - sum_j 2^j`` with ``r`` in
    ``[-1/4, 0)``: ``exp(r)`` comes from a 4th-order Taylor expansion around
    -1/8, each set bit of the remainder multiplies in the constant
    ``exp(-2^j)``.
    """
    a = np.asarray(a, dtype=np.int64)
    frac_bits = 26
    quarter = 1 << (frac_bits - 2)
    a_mod = (a & (quarter - 1)) - quarter
    result = _exp_quarter_np(saturating_shift_left_np(a_mod, 5))
    remainder = a_mod - a
    for exponent, mult in _EXP_BARREL:
        bit = (remainder & (1 << (frac_bits + exponent))) != 0
        result = np.where(bit, srdhm_np(result, mult), result)
    return np.where(a == 0, INT32_MAX, result).astype(np.int32)


def _exp_quarter_np(a: np.ndarray) -> np.ndarray:
    """``exp(a)`` for ``a`` in ``[-1/4, 0)``, Q0.31 in and out."""
    x = np.asarray(a, dtype=np.int64) + (1 << 28)  # x = a + 1/8
    x2 = srdhm_np(x, x)
    x3 = srdhm_np(x2, x)
    x4 = srdhm_np(x2, x2)
    x4_over_4 = rdbpot_np(x4, 2)
    poly = rdbpot_np(srdhm_np(x4_over_4.astype(np.int64) + x3, _ONE_THIRD).astype(np.int64) + x2, 1)
    return (np.int64(_EXP_MINUS_EIGHTH) + srdhm_np(_EXP_MINUS_EIGHTH, x + poly)).astype(np.int32)


def one_over_one_plus_x_np(a: np.ndarray) -> np.ndarray:
    """``1 / (1 + a)`` for ``a`` in ``[0, 1)``, Q0.31 in and out (three Newton-Raphson steps)."""
    a64 = np.asarray(a, dtype=np.int64)
    s = a64 + INT32_MAX
    half_den = _trunc_div_np(s + np.where(s >= 0, 1, -1), 2)  # rounding half sum of a and 1
    x = np.int64(_48_OVER_17) + srdhm_np(half_den, _NEG_32_OVER_17)  # Q2.29
    for _ in range(3):
        hdx = srdhm_np(half_den, x)
        one_minus = np.int64(1 << 29) - hdx
        x = x + saturating_shift_left_np(srdhm_np(x, one_minus), 2)
    return saturating_shift_left_np(x, 1)


def reciprocal_np(x: np.ndarray, integer_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``1 / x`` for positive ``x`` with ``integer_bits`` integer bits, TFLite's ``GetReciprocal``.

    Returns the Q0.31 reciprocal of the mantissa and the number of bits of
    ``x`` above 1.0 (the reciprocal's exponent).
    """
    x = np.asarray(x, dtype=np.int64)
    # leading zeros of a positive int32; frexp is exact for integers below 2^53
    headroom = 32 - np.frexp(np.maximum(x, 1).astype(np.float64))[1].astype(np.int64)
    bits_over_unit = integer_bits - headroom
    shifted_minus_one = ((x << headroom) - (1 << 31))
    return one_over_one_plus_x_np(shifted_minus_one), bits_over_unit


# gemmlowp's constants, each a Q0.31 value of the named real
_EXP_MINUS_EIGHTH = 1895147668  # exp(-1/8)
_ONE_THIRD = 715827883  # 1/3
_48_OVER_17 = 1515870810  # 48/17 in Q2.29
_NEG_32_OVER_17 = -1010580540  # -32/17 in Q2.29
# (j, round(exp(-2^j) * 2^31)) for the barrel shifter of exp_on_negative_values
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))
_EXP_BARREL_ARR = np.array(_EXP_BARREL, dtype=np.int64)


# --------------------------------------------------------------------------- numba scalars

@njit(cache=True, inline="always")
def trunc_div(n: np.int64, d: np.int64) -> np.int64:
    """Integer division rounding toward zero."""
    q = abs(n) // d
    return -q if n < 0 else q


@njit(cache=True, inline="always")
def srdhm(a: np.int64, b: np.int64) -> np.int64:
    if a == INT32_MIN and b == INT32_MIN:
        return np.int64(INT32_MAX)
    ab = np.int64(a) * np.int64(b)
    nudge = np.int64(1 << 30) if ab >= 0 else np.int64(1 - (1 << 30))
    return trunc_div(ab + nudge, np.int64(1 << 31))


@njit(cache=True, inline="always")
def rdbpot(x: np.int64, exponent: np.int64) -> np.int64:
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


@njit(cache=True, inline="always")
def requantize(acc: np.int64, multiplier: np.int64, shift: np.int64) -> np.int64:
    """Scalar :func:`requantize_np`: the one rescaling every int8 kernel calls."""
    if shift > 0:
        acc = acc << shift
        acc = ((acc + 2**31) & 0xFFFFFFFF) - 2**31
        return srdhm(acc, multiplier)
    return rdbpot(srdhm(acc, multiplier), -shift)


@njit(cache=True, inline="always")
def requantize_lanes(acc: np.int64, multiplier: np.int64, left_shift: np.int64, right_shift: np.int64) -> np.int64:
    """:func:`requantize_np` of one value without branches, so that a loop over many values
    compiles to vector instructions. ``left_shift = max(shift, 0) < 32``,
    ``right_shift = max(-shift, 0)``; ``acc`` is wrapped to int32 first, as in the spec.

    Each rounding becomes a floor, i.e. an arithmetic right shift:

    * ``(acc << (32 + left)) >> 32`` keeps the low 32 bits of ``acc * 2^left``, sign-extended:
      the int32 wrap of the accumulator and of the shifted value in one go;
    * SRDHM divides ``ab + nudge`` by ``2^31`` truncating toward zero, with ``nudge = 2^30`` for
      ``ab >= 0`` and ``1 - 2^30`` below. For ``ab < 0`` the quotient is
      ``ceil((ab + 1 - 2^30) / 2^31) = floor((ab + 2^30) / 2^31)``, the same floor as for
      ``ab >= 0``: ``(ab + 2^30) >> 31``. Only ``(-2^31)^2`` gives ``2^31``, which the ``min``
      saturates to ``2^31 - 1``;
    * RDBPOT by ``2^r`` rounds half away from zero: ``floor((q + 2^(r-1) - [q < 0]) / 2^r)``,
      and for ``r = 0`` just ``q``. Both are ``(2q + 2^r + (q >> 63)) >> (r + 1)``: doubling the
      numerator turns the ``-1`` into a ``-1/2`` that cannot move the floor, and for ``r = 0``
      it gives ``floor(q + 1/2 - [q < 0] / 2) = q``.
    """
    x = (acc << (32 + left_shift)) >> 32
    q = min((x * multiplier + (1 << 30)) >> 31, np.int64(INT32_MAX))
    return (q + q + (np.int64(1) << right_shift) + (q >> 63)) >> (right_shift + 1)


@njit(cache=True)
def mean_multiplier_nb(multiplier: np.int64, shift: np.int64, count: np.int64) -> tuple[np.int64, np.int64]:
    """Scalar :func:`mean_multiplier` for the compiled kernels."""
    k = np.int64(0)
    while (np.int64(1) << (k + 1)) <= count:
        k += 1
    k = min(k, np.int64(32), np.int64(31) + shift)
    return (np.int64(multiplier) << k) // np.int64(count), np.int64(shift) - k


@njit(cache=True, inline="always")
def saturating_shift_left(x: np.int64, exponent: np.int64) -> np.int64:
    threshold = (np.int64(1) << (31 - exponent)) - 1
    if x > threshold:
        return np.int64(INT32_MAX)
    if x < -threshold:
        return np.int64(INT32_MIN)
    return x << exponent


@njit(cache=True)
def exp_on_negative_values(a: np.int64) -> np.int64:
    quarter = np.int64(1) << 24
    a_mod = (a & (quarter - 1)) - quarter
    r = saturating_shift_left(a_mod, 5) + (1 << 28)
    x2 = srdhm(r, r)
    x3 = srdhm(x2, r)
    x4 = srdhm(x2, x2)
    poly = rdbpot(srdhm(rdbpot(x4, 2) + x3, _ONE_THIRD) + x2, 1)
    result = np.int64(_EXP_MINUS_EIGHTH) + srdhm(_EXP_MINUS_EIGHTH, r + poly)
    remainder = a_mod - a
    for i in range(_EXP_BARREL_ARR.shape[0]):
        if remainder & (np.int64(1) << (26 + _EXP_BARREL_ARR[i, 0])):
            result = srdhm(result, _EXP_BARREL_ARR[i, 1])
    if a == 0:
        return np.int64(INT32_MAX)
    return result


@njit(cache=True)
def reciprocal(x: np.int64, integer_bits: np.int64) -> tuple[np.int64, np.int64]:
    headroom = np.int64(0)
    while headroom < 32 and not (x & (np.int64(1) << (31 - headroom))):
        headroom += 1
    a = (x << headroom) - (np.int64(1) << 31)
    s = a + INT32_MAX
    half_den = trunc_div(s + (1 if s >= 0 else -1), np.int64(2))
    r = np.int64(_48_OVER_17) + srdhm(half_den, _NEG_32_OVER_17)
    for _ in range(3):
        one_minus = np.int64(1 << 29) - srdhm(half_den, r)
        r = r + saturating_shift_left(srdhm(r, one_minus), 2)
    return saturating_shift_left(r, 1), integer_bits - headroom


# --------------------------------------------------------------------------- softmax parameters

SOFTMAX_DIFF_INTEGER_BITS = 5
SOFTMAX_ACCUM_INTEGER_BITS = 12
SOFTMAX_OUTPUT_SCALE = 1.0 / 256.0
SOFTMAX_OUTPUT_ZERO_POINT = -128


def softmax_params(input_scale: float, beta: float = 1.0) -> tuple[int, int, int]:
    """``(multiplier, left_shift, diff_min)`` of the int8 softmax, TFLite's preparation.

    The input difference ``x - max`` is rescaled by ``beta * s_in`` into Q5.26;
    differences below ``diff_min`` would fall outside that range and their
    exponential counts as zero.
    """
    real = min(float(np.float32(beta)) * float(np.float32(input_scale)) * (1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)),
               float((1 << 31) - 1))
    if real <= 1.0:
        raise ValueError(
            f"softmax input scale {input_scale} is too small for the int8 softmax (beta * scale * 2^26 must exceed 1)"
        )
    m, shift = quantize_multiplier(real)
    radius = ((1 << SOFTMAX_DIFF_INTEGER_BITS) - 1) * (1 << (31 - SOFTMAX_DIFF_INTEGER_BITS)) / (1 << shift)
    return m, shift, -int(math.floor(radius))
