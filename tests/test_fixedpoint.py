"""The integer arithmetic of the int8 spec, checked against exact big-integer maths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import strategies  # noqa: F401  (hypothesis profile)
from tinyml_lab.kernels import fixedpoint as fp

int32s = st.integers(-(2**31), 2**31 - 1)


def exact_srdhm(a: int, b: int) -> int:
    """floor(a * b / 2^31 + 1/2) (ties toward +infinity), saturated: Python's unbounded ints."""
    if a == b == -(2**31):
        return 2**31 - 1
    return (a * b + 2**30) // 2**31


def exact_rdbpot(x: int, e: int) -> int:
    q, r = divmod(abs(x), 2**e)
    q += 2 * r > 2**e or (2 * r == 2**e)  # ties away from zero
    return q if x >= 0 else -q


@given(int32s, int32s)
def test_srdhm_matches_exact_maths(a, b):
    assert int(fp.srdhm_np(np.array([a]), np.array([b]))[0]) == exact_srdhm(a, b)
    assert int(fp.srdhm(a, b)) == exact_srdhm(a, b)


@pytest.mark.parametrize("a,b,want", [(2**30, 1, 1), (-(2**30), 1, 0), (-3 * 2**30, 1, -1),
                                     (2**30 + 1, 1, 1), (-(2**30) - 1, 1, -1)])
def test_srdhm_ties_go_toward_plus_infinity(a, b, want):
    # a * b / 2^31 = 0.5, -0.5, -1.5 (ties) and just past the ties
    assert exact_srdhm(a, b) == want
    assert int(fp.srdhm_np(np.array([a]), np.array([b]))[0]) == want
    assert int(fp.srdhm(a, b)) == want


@given(int32s, st.integers(0, 31))
def test_rdbpot_rounds_half_away_from_zero(x, e):
    assert int(fp.rdbpot_np(np.array([x]), e)[0]) == exact_rdbpot(x, e)
    assert int(fp.rdbpot(x, e)) == exact_rdbpot(x, e)


@given(st.floats(1e-9, 1e4, allow_nan=False))
def test_quantize_multiplier_represents_the_real(real):
    m, shift = fp.quantize_multiplier(real)
    assert 2**30 <= m < 2**31
    assert abs(m * 2.0 ** (shift - 31) - real) <= real * 2.0**-30


def test_quantize_multiplier_edges():
    assert fp.quantize_multiplier(0.0) == (0, 0)
    assert fp.quantize_multiplier(1.0) == (2**30, 1)
    assert fp.quantize_multiplier(0.5) == (2**30, 0)
    assert fp.quantize_multiplier(2.0**-40) == (0, 0)  # flushed to zero, as TFLite does
    # a mantissa that rounds up to 2^31 moves to the next power of two
    assert fp.quantize_multiplier(1.0 - 2.0**-33) == (2**30, 1)
    with pytest.raises(ValueError):
        fp.quantize_multiplier(-1.0)


@given(st.integers(-(2**24), 2**24), st.floats(1e-6, 0.99))
def test_requantize_is_close_to_real_product(acc, real):
    m, shift = fp.quantize_multiplier(real)
    got = int(fp.requantize(acc, m, shift))
    assert got == int(fp.requantize_np(np.array([acc]), m, shift)[0])
    assert abs(got - acc * real) <= 1.0  # two roundings, each at most half a unit


@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=64),
       st.integers(1, 2**31 - 1), st.integers(-31, 8))
def test_requantize_numpy_and_numba_agree(accs, m, shift):
    got = [int(fp.requantize(a, m, shift)) for a in accs]
    assert got == fp.requantize_np(np.array(accs), m, shift).tolist()


def test_round_half_away():
    assert [fp.round_half_away(v) for v in (0.5, 1.5, 2.5, -0.5, -2.5, 0.49999999999999994)] == [1, 2, 3, -1, -3, 0]


def test_activation_range():
    assert fp.activation_range("none", 0.1, 3) == (-128, 127)
    assert fp.activation_range("relu", 0.1, -20) == (-20, 127)
    assert fp.activation_range("relu6", 6 / 255, -128) == (-128, 127)
    assert fp.activation_range("relu6", 0.1, -128) == (-128, -68)


@given(st.integers(-(2**31) + 1, 0))
def test_exp_on_negative_values_is_accurate(a):
    # a is Q5.26; the result Q0.31
    got = int(fp.exp_on_negative_values(a))
    assert got == int(fp.exp_on_negative_values_np(np.array([a]))[0])
    want = math.exp(a / 2**26) * 2**31
    assert abs(got - min(want, 2**31 - 1)) <= 2**31 * 2e-6 + 8


@given(st.integers(1, 2**31 - 1), st.integers(0, 12))
def test_reciprocal(x, bits):
    r, over = fp.reciprocal(x, bits)
    rn, overn = fp.reciprocal_np(np.array([x]), bits)
    assert (int(r), int(over)) == (int(rn[0]), int(overn[0]))
    # x has `bits` integer bits: real value x / 2^(31 - bits); 1/value = r / 2^31 * 2^-over
    value = x / 2.0 ** (31 - bits)
    assert abs(r / 2**31 * 2.0 ** (-int(over)) - 1 / value) <= 1e-6 / value


def test_softmax_params_match_hand_computation():
    m, shift, diff_min = fp.softmax_params(1 / 16)
    # beta * scale * 2^26 = 2^22 = 2^30 * 2^(23 - 31)
    assert (m, shift) == (2**30, 23)
    assert diff_min == -math.floor(31 * 2**26 / 2**23)
