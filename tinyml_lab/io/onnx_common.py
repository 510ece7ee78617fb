"""What the ONNX importer's parts share: how an ONNX value is held in the IR, and small helpers.

See :mod:`tinyml_lab.io.onnx` for what is imported and how.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import TinyMLError

MIN_OPSET, MAX_OPSET = 11, 21
NCHW_AXES = (0, 3, 1, 2)  # ONNX NCHW value = transpose(IR NHWC tensor, NCHW_AXES)
SUPPORTED_OPS = ("Conv", "Gemm", "MatMul", "Relu", "Clip", "BatchNormalization", "Add", "MaxPool", "AveragePool",
                 "GlobalAveragePool", "Flatten", "Reshape", "Softmax", "Pad", "Transpose", "Identity", "Dropout",
                 "Constant", "QuantizeLinear", "DequantizeLinear")


class NodeProblem(TinyMLError):
    """Inside the importer: one node cannot be expressed (collected, then reported together)."""


@dataclass
class Value:
    """How an ONNX value is held in the IR.

    ``kind`` is ``image`` (IR tensor ``(H, W, C)``; the ONNX value is
    ``transpose(ir, axes)`` with the batch) or ``vector`` (IR tensor
    ``(F,)``; the ONNX value, flattened, is ``ir[order]``, ``order`` None for
    the identity; ``onnx_shape`` is ``(F,)`` or ``(F, 1, 1)``). ``codes``: the
    ONNX value holds quantized codes rather than real numbers.
    """

    ir: str
    kind: str
    onnx_shape: tuple[int, ...]
    axes: tuple[int, ...] | None = None
    order: np.ndarray | None = None
    codes: bool = False


@dataclass
class QConst:
    """A constant behind a DequantizeLinear: its int codes and parameters (ONNX layout)."""

    codes: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None
    dtype: str


def node_attrs(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def to_array(t) -> np.ndarray:
    from onnx import numpy_helper

    return numpy_helper.to_array(t)


def listing(head: str, problems: list[tuple[str, str]], tail: str = "") -> str:
    """One line: ``head: who (why); who (why); ...`` then ``tail`` (the CLI prints errors on one line)."""
    text = f"{head}: " + "; ".join(f"{who} ({why})" for who, why in problems)
    return f"{text}. {tail}" if tail else text


def same_order(a: Value, b: Value) -> bool:
    if a.order is None or b.order is None:
        return a.order is None and b.order is None
    return np.array_equal(a.order, b.order)


def dequantize_codes(codes: np.ndarray, scale, zp: np.ndarray, axis: int | None) -> np.ndarray:
    codes = np.asarray(codes).astype(np.float64)
    s = np.asarray(scale, np.float64)
    z = np.asarray(zp, np.float64)
    if axis is not None and s.size > 1:
        shape = [1] * codes.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    return ((codes - z) * s).astype(np.float32)
