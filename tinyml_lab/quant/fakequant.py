"""Fake quantization: the round trip through ``bits``-bit codes, computed in float.

``fake_quantize`` is the ``FakeQuant`` op of the IR (:mod:`tinyml_lab.ops`):

    q = clamp(round(x / s) + z, qmin, qmax),    y = s (q - z)

with ``round`` half away from zero and ``x / s`` taken in float32, exactly
as the int8 ``Quantize`` and ``Dequantize`` kernels compute it, so an 8-bit
``FakeQuant`` gives bit for bit what the int8 graph will see.
``qmin = -2^(bits-1)`` (``-2^(bits-1) + 1`` when ``narrow``), ``qmax =
2^(bits-1) - 1``.

Its gradient is the straight-through estimator (Bengio et al., 2013) with the
clipping mask: ``round`` is treated as the identity, the clamp is not, so

    dL/dx = dL/dy * [qmin <= round(x / s) + z <= qmax]

(:func:`fake_quantize_mask`): a value the clamp saturates passes no gradient.
"""

from __future__ import annotations

import numpy as np

from ..errors import QuantizationError
from ..kernels.reference import round_half_away_np
from ..ops import FAKE_QUANT_BITS


def qrange(bits: int, narrow: bool = False) -> tuple[int, int]:
    """``(qmin, qmax)`` of signed ``bits``-bit codes: ``[-2^(b-1) (+1 if narrow), 2^(b-1) - 1]``."""
    lo, hi = FAKE_QUANT_BITS
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not lo <= bits <= hi:
        raise QuantizationError(f"bit widths must be ints from {lo} to {hi}, got {bits!r}")
    return -(2 ** (int(bits) - 1)) + int(bool(narrow)), 2 ** (int(bits) - 1) - 1


def _broadcast(x: np.ndarray, values, axis: int | None, dtype) -> np.ndarray:
    """Per-tensor values as a scalar array; per-channel values shaped to broadcast along ``axis``
    (an axis of one sample, the batch left out)."""
    v = np.asarray(values, dtype=dtype)
    if axis is None or v.size == 1:
        return v.reshape(())
    ax = axis % (x.ndim - 1) + 1
    shape = [1] * x.ndim
    shape[ax] = -1
    return v.reshape(shape)


def _codes(x: np.ndarray, scale, zero_point, qmin: int, qmax: int, axis: int | None) -> np.ndarray:
    s = _broadcast(x, scale, axis, np.float32)
    z = _broadcast(x, zero_point, axis, np.float64)
    return round_half_away_np(np.asarray(x, np.float32) / s) + z


def fake_quantize(x: np.ndarray, scale, zero_point=0, bits: int = 8, narrow: bool = False,
                  axis: int | None = None) -> np.ndarray:
    """``y = s (clamp(round(x / s) + z, qmin, qmax) - z)`` on a batch ``x`` (batch first).

    Args:
        x: real values, batch first.
        scale, zero_point: one value, or one per slice along ``axis``.
        bits: 2 to 8; ``narrow`` leaves out the code ``-2^(bits-1)``.
        axis: None (per tensor) or an axis of one sample (the batch left out).

    Returns:
        The fake-quantized values, in ``x``'s float dtype.
    """
    qmin, qmax = qrange(bits, narrow)
    q = np.clip(_codes(x, scale, zero_point, qmin, qmax, axis), qmin, qmax)
    s = _broadcast(x, scale, axis, np.float32)
    z = _broadcast(x, zero_point, axis, np.float64)
    out_dtype = x.dtype if np.issubdtype(np.asarray(x).dtype, np.floating) else np.float32
    return (s * (q - z).astype(np.float32)).astype(out_dtype)


def fake_quantize_mask(x: np.ndarray, scale, zero_point=0, bits: int = 8, narrow: bool = False,
                       axis: int | None = None) -> np.ndarray:
    """``[qmin <= round(x / s) + z <= qmax]``: where the straight-through gradient passes."""
    qmin, qmax = qrange(bits, narrow)
    q = _codes(x, scale, zero_point, qmin, qmax, axis)
    return (q >= qmin) & (q <= qmax)


def fake_quantize_node(x: np.ndarray, attrs: dict) -> np.ndarray:
    """:func:`fake_quantize` with the attributes of a ``FakeQuant`` node."""
    return fake_quantize(x, attrs["scale"], attrs["zero_point"], attrs["bits"], attrs["narrow"], attrs["axis"])


def fake_quantize_node_mask(x: np.ndarray, attrs: dict) -> np.ndarray:
    """:func:`fake_quantize_mask` with the attributes of a ``FakeQuant`` node."""
    return fake_quantize_mask(x, attrs["scale"], attrs["zero_point"], attrs["bits"], attrs["narrow"], attrs["axis"])


__all__ = ["qrange", "fake_quantize", "fake_quantize_mask", "fake_quantize_node", "fake_quantize_node_mask"]
