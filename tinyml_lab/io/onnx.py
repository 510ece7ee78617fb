"""Import ONNX models: float models into a float graph, QDQ-quantized models into an int8 graph.

Supported (default domain, opsets 11 to 21): ``Conv`` (plain, depthwise,
and grouped), ``Gemm``, ``MatMul`` (by a constant), ``Relu``, ``Clip``
(as ReLU or ReLU6), ``BatchNormalization`` (inference), ``Add``,
``MaxPool``, ``AveragePool``, ``GlobalAveragePool``, ``Flatten``,
``Reshape``, ``Softmax``, ``Pad`` (constant), ``Transpose`` (of layouts),
``Identity``, ``Dropout`` (inference), ``Constant``, and
``QuantizeLinear`` / ``DequantizeLinear``.

**Layout.** ONNX images are NCHW, the IR's NHWC. Every ONNX value is mapped
to an IR tensor plus a description of how the ONNX value reads it: an image
value is ``transpose(IR tensor, axes)`` (``axes = (0, 3, 1, 2)`` for plain
NCHW), so a ``Transpose`` costs no IR node; a vector value is
``IR vector[order]``. Flattening an NCHW image reads ``c, h, w`` where the
IR's Flatten reads ``h, w, c``: the permutation is kept in ``order`` and
absorbed by the next ``Gemm``/``MatMul``, whose weight columns are permuted
(a permuted vector may also pass through element-wise ops and Softmax).
A rank-4 graph input is taken as NCHW, unless its only readers are
``Transpose(perm=(0, 3, 1, 2))``, in which case it already is NHWC (the form
:func:`tinyml_lab.export.onnx.to_onnx` writes). Either way the IR graph takes
NHWC inputs and gives NHWC rank-4 outputs; ``metadata["onnx"]`` records it.

**Grouped convolutions.** ``group = C_in = C_out`` is a DepthwiseConv2D;
any other ``group > 1`` (a depthwise multiplier above 1 included) becomes a
Conv2D with a block-diagonal weight: the same function, but its MACs count
the zeros.

**QDQ models.** ``QuantizeLinear`` / ``DequantizeLinear`` pairs around the
float ops give each tensor its quantization parameters (uint8 codes become
int8: ``q8 = u8 - 128``, ``z8 = z_u8 - 128``); weights are int8
initializers behind a ``DequantizeLinear``. The result follows the TFLite
int8 spec of :mod:`tinyml_lab.kernels.int8`: int8 weights must be symmetric
(zero point 0; per tensor, or per output channel), activations per tensor,
the output of a max/average pool, reshape, flatten or pad must keep its
input's parameters, and a softmax's output must be scale 1/256, zero point
-128. A model that breaks one of these is refused with the nodes named, not
silently approximated. Biases use the model's int32 codes when their scale
is ``s_in s_w`` (within float32 rounding), and are requantized otherwise.

**Errors.** Every unsupported op, every input with a dynamic (non-batch)
dimension and every missing external-data file is collected, and one
:class:`~tinyml_lab.errors.ModelImportError` lists them all. A file that
is not ONNX, or truncated, raises :class:`~tinyml_lab.errors.FileFormatError`.

Rounding. The imported int8 graph runs TFLite's arithmetic (fixed-point
multiplier, double rounding, ties away from zero); onnxruntime rescales in
float and rounds ties to even. The two differ by at most one code at a
layer's output (see ``tests/test_io_onnx.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FileFormatError, ModelImportError, TinyMLError
from ..graph import Graph
from .onnx_common import MAX_OPSET, MIN_OPSET, SUPPORTED_OPS, listing


# --------------------------------------------------------------------------- public API

def load_onnx(source: str | os.PathLike | bytes, name: str | None = None) -> Graph:
    """Read an ONNX file (or its bytes) into a graph: float32, or int8 for a QDQ model.

    Raises:
        FileFormatError: no such file, not an ONNX model, truncated or corrupt.
        ModelImportError: unsupported ops, dynamic shapes or missing external
            data; every offending node is listed.
    """
    model = read_onnx(source)
    try:
        return from_onnx(model, name=name)
    except TinyMLError:
        raise
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        # a model that passes the ONNX checker but is inconsistent (a corrupted tensor, a bad shape)
        raise FileFormatError(f"{source if not isinstance(source, (bytes, bytearray)) else 'the model'} passes "
                              f"the ONNX checker but cannot be read ({type(exc).__name__}: {exc}); is it "
                              f"corrupt?") from None


def read_onnx(source: str | os.PathLike | bytes):
    """Parse and check an ONNX model, loading its external data (all of it must be there)."""
    import onnx
    from google.protobuf.message import DecodeError

    base = None
    if isinstance(source, (bytes, bytearray)):
        data, where = bytes(source), "the given bytes"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileFormatError(f"no such ONNX file: {path}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise FileFormatError(f"cannot read {path}: {exc}") from None
        where, base = str(path), path.parent
    if not data:
        raise FileFormatError(f"{where} is empty, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise FileFormatError(f"{where} is not a readable ONNX model (truncated or corrupt: {exc})") from None
    if not model.HasField("graph") or not model.graph.node:
        raise FileFormatError(f"{where} holds no ONNX graph (not an ONNX model, or truncated)")
    _check_external_data(model, base, where)
    if base is not None and _has_external(model):
        from onnx.external_data_helper import load_external_data_for_model

        try:
            load_external_data_for_model(model, str(base))
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"{where}: cannot read its external data ({exc})") from None
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:  # UnicodeDecodeError is a ValueError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid model"
        raise FileFormatError(f"{where} is not a valid ONNX model (truncated or corrupt?): {first}") from None
    return model


def _initializers_and_constants(model):
    yield from model.graph.initializer
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t


def _has_external(model) -> bool:
    from onnx import TensorProto

    return any(t.data_location == TensorProto.EXTERNAL for t in _initializers_and_constants(model))


def _check_external_data(model, base: Path | None, where: str) -> None:
    """Every external-data tensor's file must exist and be long enough; list all that are not."""
    from onnx import TensorProto

    problems = []
    for t in _initializers_and_constants(model):
        if t.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        if base is None:
            problems.append((t.name, f"its data is in external file {loc!r}, and the model was given as bytes"))
            continue
        f = base / loc
        if not loc or not f.is_file():
            problems.append((t.name, f"external data file {loc!r} is missing (looked in {base})"))
            continue
        end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        if end > f.stat().st_size:
            problems.append((t.name, f"external data file {loc!r} is {f.stat().st_size} bytes, shorter than the "
                                     f"{end} bytes this tensor needs"))
    if problems:
        raise ModelImportError(listing(f"{where}: external data missing for {len(problems)} tensor(s)", problems),
                               problems)


def from_onnx(model, name: str | None = None) -> Graph:
    """Convert a parsed ``onnx.ModelProto`` (see :func:`load_onnx`)."""
    from .onnx_import import Importer

    return Importer(model, name).run()


__all__ = ["load_onnx", "read_onnx", "from_onnx", "SUPPORTED_OPS", "MIN_OPSET", "MAX_OPSET"]
