"""Export an int8 graph as a ``.tflite`` flatbuffer (schema version 3).

The file is written with the ``flatbuffers`` package and the schema classes of
the ``tflite`` package; nothing else from TensorFlow is needed. Each IR node
becomes one TFLite operator, each IR tensor one TFLite tensor of the same
name, with the batch dimension (1) put back in front:

=================  ===========================================================
IR                 TFLite
=================  ===========================================================
Conv2D             CONV_2D (weights OHWI, per-channel scales on axis 0)
DepthwiseConv2D    DEPTHWISE_CONV_2D (weights 1HWC, per-channel on axis 3)
Dense              FULLY_CONNECTED (input ``[1, C_in]``)
AvgPool2D          AVERAGE_POOL_2D
MaxPool2D          MAX_POOL_2D
GlobalAvgPool      MEAN over axes ``[1, 2]``, ``keep_dims=False``
Add                ADD
ReLU, ReLU6        RELU, RELU6
Reshape, Flatten   RESHAPE (shape as a constant int32 input)
Softmax            SOFTMAX
Pad                PAD (int8: filled with the zero point)
Quantize           QUANTIZE (float32 -> int8), only at an input
Dequantize         DEQUANTIZE (int8 -> float32), only at an output
=================  ===========================================================

Fused activations (ReLU, ReLU6) become the operator's
``fused_activation_function``. ``SAME``/``VALID`` windows map directly;
other explicit pads of a convolution become a PAD operator in front of a
``VALID`` convolution (:func:`~tinyml_lab.export.prepare.lower_explicit_padding`).
Biases are int32 with scale ``s_in s_w[c]``, zero point 0. Constant buffers
with identical bytes are stored once; every buffer is 16-byte aligned.

Bit-exactness. The int8 arithmetic of :mod:`tinyml_lab.kernels` is that of
the TFLite reference kernels as TensorFlow Lite Micro runs them. In the LiteRT
interpreter with ``OpResolverType.BUILTIN_REF`` (its reference kernels) every
operator returns the same codes as :class:`~tinyml_lab.interpreter.Interpreter`
on the same int8 inputs, with one exception, measured on LiteRT 2.3:

* FULLY_CONNECTED: LiteRT's reference kernel rescales the int32
  accumulator in double precision, ``round(acc * (s_in s_w / s_out))``
  (ties away from zero, one rounding), where TensorFlow Lite Micro's
  reference kernel and :func:`~tinyml_lab.kernels.reference.dense_int8`
  use the fixed-point multiplier with gemmlowp's double rounding. The two
  differ by 1 code when ``acc * M`` lies within about ``2^-(r+1)`` below a
  half (``r`` the multiplier's right shift): 0.15 % of the zoo's dense
  outputs. Ours stays with the microcontroller semantics; the tests run our
  graph with that one kernel swapped for LiteRT's and require equality.

LiteRT's default resolver is not bit-exact with the reference kernels
(measured by ``benchmarks/export.py``, each zoo layer alone on the tensors it
meets in the model):

* optimized kernels (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``): CONV_2D
  requantizes differently and is 1 code off on 0.02 % of outputs,
  FULLY_CONNECTED on 0.07 %; depthwise, pooling, ADD, SOFTMAX and MEAN as
  written here agree exactly. MEAN with ``keep_dims=True`` over axes
  ``[1, 2]`` of a 4-D input would take an optimized kernel that rounds
  differently (1 code off on up to 45 % of outputs); this exporter writes
  ``keep_dims=False``, which every resolver runs with the reference
  ``QuantizedMeanOrSum``;
* with XNNPACK (``AUTO``, the default): convolutions (0.4 %), depthwise
  (0.2 %), fully connected (0.15 %), ADD (rare) and MEAN (9 %) are 1 code
  off. Softmax amplifies such 1-code differences of its logits: whole
  models differ by up to 36 codes at the output (mobilenetv2, digits-cnn).

Offline memory plan. With ``offline_plan`` the planner's offsets are stored
as TensorFlow Lite Micro's ``OfflineMemoryAllocation`` metadata: an int32
array ``[1, 0, n, o_0, ..., o_(n-1)]`` (format version, subgraph 0, one
offset per tensor, -1 for constants), so TFLM places every activation where
:func:`tinyml_lab.memory.plan` put it and its arena head is the plan's
``arena_bytes``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .. import __version__
from ..errors import ExportError

try:
    import flatbuffers
    import tflite
except ImportError as exc:  # depends on the environment
    raise ExportError(f"the TFLite exporter needs the flatbuffers and tflite packages ({exc}); "
                      f"pip install 'tinyml-lab[tflite]'") from None
from ..graph import Graph, Node, Tensor
from ..kernels.fixedpoint import SOFTMAX_OUTPUT_SCALE, SOFTMAX_OUTPUT_ZERO_POINT
from ..files import check_file, write_atomic
from .prepare import lower_explicit_padding, require_int8, window_padding, with_float_edges

SCHEMA_VERSION = 3
FILE_IDENTIFIER = b"TFL3"
OFFLINE_PLAN_METADATA = "OfflineMemoryAllocation"
OFFLINE_PLAN_VERSION = 1
BUFFER_ALIGNMENT = 16

BuiltinOp = tflite.BuiltinOperator
Options = tflite.BuiltinOptions

_TYPES = {"float32": tflite.TensorType.FLOAT32, "int8": tflite.TensorType.INT8, "int32": tflite.TensorType.INT32}
_ACTIVATION = {"none": tflite.ActivationFunctionType.NONE, "relu": tflite.ActivationFunctionType.RELU,
               "relu6": tflite.ActivationFunctionType.RELU6}
_PADDING = {"SAME": tflite.Padding.SAME, "VALID": tflite.Padding.VALID}

# operator -> version written in the operator code: the versions the TFLite converter gives the
# int8 form of each op (TFLite Micro ignores versions; LiteRT accepts any registered one)
_VERSIONS = {
    BuiltinOp.CONV_2D: 3, BuiltinOp.DEPTHWISE_CONV_2D: 3, BuiltinOp.FULLY_CONNECTED: 4,
    BuiltinOp.AVERAGE_POOL_2D: 2, BuiltinOp.MAX_POOL_2D: 2, BuiltinOp.MEAN: 2, BuiltinOp.ADD: 2,
    BuiltinOp.RELU: 2, BuiltinOp.RELU6: 2, BuiltinOp.RESHAPE: 1, BuiltinOp.SOFTMAX: 2, BuiltinOp.PAD: 2,
    BuiltinOp.QUANTIZE: 2, BuiltinOp.DEQUANTIZE: 2,
}


# --------------------------------------------------------------------------- public API

def to_tflite(graph: Graph, path: str | os.PathLike | None = None, *, float_io: bool = False,
              offline_plan: Any = False, description: str | None = None) -> bytes:
    """Serialize an int8 ``graph`` as a TFLite flatbuffer.

    Args:
        graph: an int8 graph (``Quantize``/``Dequantize`` allowed at its edges).
        path: where to write the file, or None to only return the bytes. The
            destination is checked before anything is built and written
            atomically (never half-written).
        float_io: add QUANTIZE after each int8 input and DEQUANTIZE before each
            int8 output, so the model takes and returns float32.
        offline_plan: False (TFLM plans the arena itself), True (plan with
            ``greedy-size``), a planner name, or a :class:`~tinyml_lab.memory.Plan`
            of the exported graph: its offsets go into the
            ``OfflineMemoryAllocation`` metadata.
        description: the model's description string (default: names the graph
            and tinyml_lab's version).

    Returns:
        The flatbuffer bytes.

    Raises:
        ExportError: a float graph (quantize first), or an op or parameter
            TFLite cannot carry (the message names it).
        FileFormatError: ``path`` cannot be written.
    """
    target = check_file(path, "TFLite model") if path is not None else None
    g = prepare_graph(graph, float_io)
    plan = _resolve_plan(g, offline_plan)
    data = _Writer(g, description, plan).build()
    if target is not None:
        write_atomic(target, data, "TFLite model")
    return data


def prepare_graph(graph: Graph, float_io: bool = False) -> Graph:
    """The graph exactly as it is written: checked int8, explicit pads lowered, float edges added
    when ``float_io``. One IR tensor per TFLite tensor, one node per operator."""
    require_int8(graph, "TFLite")
    g = lower_explicit_padding(graph)
    return with_float_edges(g) if float_io else g


def operator_names(graph: Graph, float_io: bool = False) -> list[str]:
    """The TFLite builtin operators ``graph`` exports to, in first-use order (for op resolvers)."""
    g = prepare_graph(graph, float_io)
    names = []
    for node in g.nodes:
        op = _BUILTIN_OF[node.op]
        name = _op_name(op)
        if name not in names:
            names.append(name)
    return names


# --------------------------------------------------------------------------- plans

def _resolve_plan(g: Graph, offline_plan: Any):
    if offline_plan is False or offline_plan is None:
        return None
    from ..memory import Plan, plan

    if offline_plan is True:
        return plan(g, "greedy-size", alignment=BUFFER_ALIGNMENT)
    if isinstance(offline_plan, str):
        return plan(g, offline_plan, alignment=BUFFER_ALIGNMENT)
    if isinstance(offline_plan, Plan):
        if offline_plan.lifetimes.metadata.get("inplace"):
            raise ExportError(
                "the offline plan shares buffers in place; TensorFlow Lite Micro's kernels do not run in "
                "place, so plan without inplace=True"
            )
        missing = [t for t, v in g.tensors.items() if not v.is_const and t not in offline_plan.offsets]
        if missing:
            raise ExportError(
                f"the offline plan has no offset for tensor(s) {', '.join(missing[:5])} of the exported graph; "
                f"plan tinyml_lab.export.tflite.prepare_graph(graph, float_io) instead of the original graph"
            )
        if offline_plan.offsets and min(offline_plan.offsets.values()) < 0:
            raise ExportError("the offline plan has a negative offset")
        return offline_plan
    raise ExportError(f"offline_plan must be False, True, a planner name or a Plan, got {offline_plan!r}")


# --------------------------------------------------------------------------- the writer

@dataclass
class _TensorEntry:
    name: str
    shape: tuple[int, ...]
    dtype: str
    buffer: int
    quant: tuple[np.ndarray, np.ndarray, int] | None  # scale (float32), zero point (int64), axis


@dataclass
class _OperatorEntry:
    opcode: int
    inputs: list[int]
    outputs: list[int]
    options_type: int = Options.NONE
    options: Callable[[flatbuffers.Builder], int] | None = None


@dataclass
class _ModelParts:
    tensors: list[_TensorEntry] = field(default_factory=list)
    buffers: list[bytes] = field(default_factory=lambda: [b""])
    opcodes: list[tuple[int, int]] = field(default_factory=list)
    operators: list[_OperatorEntry] = field(default_factory=list)


class _Writer:
    """Collects tensors, buffers and operators in IR order, then serializes them bottom-up."""

    def __init__(self, graph: Graph, description: str | None, plan: Any = None,
                 mean_keep_dims: bool = False):
        self.g = graph
        self.description = description or f"{graph.name} (exported by tinyml_lab {__version__})"
        self.plan = plan
        self.mean_keep_dims = mean_keep_dims
        self.parts = _ModelParts()
        self.index: dict[str, int] = {}
        self.buffer_index: dict[bytes, int] = {}

    # ------------------------------------------------------------------ collecting
    def buffer(self, data: bytes) -> int:
        """Index of a buffer holding ``data``; identical contents share one buffer."""
        if not data:
            return 0
        if data not in self.buffer_index:
            self.buffer_index[data] = len(self.parts.buffers)
            self.parts.buffers.append(data)
        return self.buffer_index[data]

    def tensor(self, name: str, quant: tuple | None = None) -> int:
        """Index of IR tensor ``name`` (added on first use)."""
        if name in self.index:
            return self.index[name]
        t = self.g.tensors[name]
        if t.is_const:
            shape = t.shape
            buf = self.buffer(np.ascontiguousarray(t.data).astype(t.data.dtype.newbyteorder("<")).tobytes())
        else:
            shape = (1,) + t.shape
            buf = 0
        if quant is None and t.quant is not None:
            q = t.quant
            quant = (q.scale, q.zero_point.astype(np.int64), q.axis or 0)
        return self._add(_TensorEntry(name, shape, t.dtype, buf, quant))

    def constant(self, base: str, data: np.ndarray) -> int:
        """A new int32 constant tensor (a reshape's shape, MEAN's axes, PAD's paddings)."""
        name, i = base, 1
        while name in self.index or name in self.g.tensors:
            name, i = f"{base}_{i}", i + 1
        data = np.ascontiguousarray(data, dtype="<i4")
        return self._add(_TensorEntry(name, tuple(data.shape), "int32", self.buffer(data.tobytes()), None))

    def _add(self, entry: _TensorEntry) -> int:
        self.index[entry.name] = len(self.parts.tensors)
        self.parts.tensors.append(entry)
        return self.index[entry.name]

    def opcode(self, op: int) -> int:
        key = (op, _VERSIONS[op])
        if key not in self.parts.opcodes:
            self.parts.opcodes.append(key)
        return self.parts.opcodes.index(key)

    def operator(self, op: int, inputs: list[int], node: Node, options_type: int = Options.NONE,
                 options: Callable | None = None) -> None:
        outputs = [self.tensor(node.outputs[0])]
        self.parts.operators.append(_OperatorEntry(self.opcode(op), inputs, outputs, options_type, options))

    # ------------------------------------------------------------------ ops
    def conv(self, node: Node) -> None:
        g = self.g
        w = g.weights(node)
        wt, bt = w["weight"], w.get("bias")
        x = g.tensors[node.inputs[0]]
        depthwise = node.op == "DepthwiseConv2D"
        axis = 3 if depthwise else 0
        channels = wt.shape[axis]
        self._check_weight(node, wt, axis, channels)
        ins = [self.tensor(x.name), self.tensor(wt.name)]
        ins.append(self.tensor(bt.name, self._bias_quant(x, wt, channels)) if bt is not None else -1)
        a = node.attrs
        pad = _PADDING[window_padding(g, node)]
        act = _ACTIVATION[a["activation"]]
        sh, sw = a["strides"]
        dh, dw = a["dilation"]
        if depthwise:
            def options(b):
                tflite.DepthwiseConv2DOptionsStart(b)
                tflite.DepthwiseConv2DOptionsAddPadding(b, pad)
                tflite.DepthwiseConv2DOptionsAddStrideW(b, sw)
                tflite.DepthwiseConv2DOptionsAddStrideH(b, sh)
                tflite.DepthwiseConv2DOptionsAddDepthMultiplier(b, 1)
                tflite.DepthwiseConv2DOptionsAddFusedActivationFunction(b, act)
                tflite.DepthwiseConv2DOptionsAddDilationWFactor(b, dw)
                tflite.DepthwiseConv2DOptionsAddDilationHFactor(b, dh)
                return tflite.DepthwiseConv2DOptionsEnd(b)
            self.operator(BuiltinOp.DEPTHWISE_CONV_2D, ins, node, Options.DepthwiseConv2DOptions, options)
        else:
            def options(b):
                tflite.Conv2DOptionsStart(b)
                tflite.Conv2DOptionsAddPadding(b, pad)
                tflite.Conv2DOptionsAddStrideW(b, sw)
                tflite.Conv2DOptionsAddStrideH(b, sh)
                tflite.Conv2DOptionsAddFusedActivationFunction(b, act)
                tflite.Conv2DOptionsAddDilationWFactor(b, dw)
                tflite.Conv2DOptionsAddDilationHFactor(b, dh)
                return tflite.Conv2DOptionsEnd(b)
            self.operator(BuiltinOp.CONV_2D, ins, node, Options.Conv2DOptions, options)

    def dense(self, node: Node) -> None:
        g = self.g
        w = g.weights(node)
        wt, bt = w["weight"], w.get("bias")
        x = g.tensors[node.inputs[0]]
        self._check_weight(node, wt, 0, wt.shape[0])
        ins = [self.tensor(x.name), self.tensor(wt.name)]
        ins.append(self.tensor(bt.name, self._bias_quant(x, wt, wt.shape[0])) if bt is not None else -1)
        act = _ACTIVATION[node.attrs["activation"]]

        def options(b):
            tflite.FullyConnectedOptionsStart(b)
            tflite.FullyConnectedOptionsAddFusedActivationFunction(b, act)
            tflite.FullyConnectedOptionsAddWeightsFormat(b, tflite.FullyConnectedOptionsWeightsFormat.DEFAULT)
            tflite.FullyConnectedOptionsAddKeepNumDims(b, False)
            return tflite.FullyConnectedOptionsEnd(b)
        self.operator(BuiltinOp.FULLY_CONNECTED, ins, node, Options.FullyConnectedOptions, options)

    def pool(self, node: Node) -> None:
        self._same_quant(node)
        a = node.attrs
        if node.op == "AvgPool2D" and a["count_include_pad"]:
            raise ExportError(f"AvgPool2D '{node.name}': count_include_pad=True has no TFLite (or int8) kernel")
        pad = _PADDING[window_padding(self.g, node)]
        act = _ACTIVATION[a["activation"]]
        (ph, pw), (sh, sw) = a["pool_size"], a["strides"]

        def options(b):
            tflite.Pool2DOptionsStart(b)
            tflite.Pool2DOptionsAddPadding(b, pad)
            tflite.Pool2DOptionsAddStrideW(b, sw)
            tflite.Pool2DOptionsAddStrideH(b, sh)
            tflite.Pool2DOptionsAddFilterWidth(b, pw)
            tflite.Pool2DOptionsAddFilterHeight(b, ph)
            tflite.Pool2DOptionsAddFusedActivationFunction(b, act)
            return tflite.Pool2DOptionsEnd(b)
        op = BuiltinOp.AVERAGE_POOL_2D if node.op == "AvgPool2D" else BuiltinOp.MAX_POOL_2D
        self.operator(op, [self.tensor(node.inputs[0])], node, Options.Pool2DOptions, options)

    def mean(self, node: Node) -> None:
        x = self.tensor(node.inputs[0])
        axes = self.constant(f"{node.outputs[0]}/axes", np.array([1, 2]))
        keep = self.mean_keep_dims

        def options(b):
            tflite.ReducerOptionsStart(b)
            tflite.ReducerOptionsAddKeepDims(b, keep)
            return tflite.ReducerOptionsEnd(b)
        if not keep:
            self.operator(BuiltinOp.MEAN, [x, axes], node, Options.ReducerOptions, options)
            return
        # the converter's form of a Keras GlobalAveragePooling2D(keepdims=True) + Flatten:
        # MEAN to [1, 1, 1, C], then RESHAPE to [1, C] (the intermediate is planned online)
        out = self.g.tensors[node.outputs[0]]
        q = out.quant
        kept = self._add(_TensorEntry(f"{out.name}/kept", (1, 1, 1) + out.shape, out.dtype, 0,
                                      (q.scale, q.zero_point.astype(np.int64), 0)))
        self.parts.operators.append(_OperatorEntry(self.opcode(BuiltinOp.MEAN), [x, axes], [kept],
                                                   Options.ReducerOptions, options))
        shape = self.constant(f"{out.name}/shape", np.array((1,) + out.shape))
        self.operator(BuiltinOp.RESHAPE, [kept, shape], node)

    def add(self, node: Node) -> None:
        act = _ACTIVATION[node.attrs["activation"]]

        def options(b):
            tflite.AddOptionsStart(b)
            tflite.AddOptionsAddFusedActivationFunction(b, act)
            return tflite.AddOptionsEnd(b)
        ins = [self.tensor(t) for t in node.inputs]
        self.operator(BuiltinOp.ADD, ins, node, Options.AddOptions, options)

    def relu(self, node: Node) -> None:
        op = BuiltinOp.RELU6 if node.op == "ReLU6" else BuiltinOp.RELU
        self.operator(op, [self.tensor(node.inputs[0])], node)

    def reshape(self, node: Node) -> None:
        self._same_quant(node)
        new_shape = [1] + list(self.g.tensors[node.outputs[0]].shape)
        x = self.tensor(node.inputs[0])
        shape = self.constant(f"{node.outputs[0]}/shape", np.array(new_shape))

        def options(b):
            tflite.ReshapeOptionsStartNewShapeVector(b, len(new_shape))
            for v in reversed(new_shape):
                b.PrependInt32(v)
            vec = b.EndVector()
            tflite.ReshapeOptionsStart(b)
            tflite.ReshapeOptionsAddNewShape(b, vec)
            return tflite.ReshapeOptionsEnd(b)
        self.operator(BuiltinOp.RESHAPE, [x, shape], node, Options.ReshapeOptions, options)

    def softmax(self, node: Node) -> None:
        out = self.g.tensors[node.outputs[0]]
        q = out.quant
        if q is None or not (np.isclose(q.scale[0], SOFTMAX_OUTPUT_SCALE, rtol=0, atol=1e-9)
                             and q.zero_point[0] == SOFTMAX_OUTPUT_ZERO_POINT):
            raise ExportError(f"Softmax '{node.name}': an int8 softmax output must have scale 1/256 and zero "
                              f"point -128 (got {q})")
        beta = float(node.attrs["beta"])

        def options(b):
            tflite.SoftmaxOptionsStart(b)
            tflite.SoftmaxOptionsAddBeta(b, beta)
            return tflite.SoftmaxOptionsEnd(b)
        self.operator(BuiltinOp.SOFTMAX, [self.tensor(node.inputs[0])], node, Options.SoftmaxOptions, options)

    def pad(self, node: Node) -> None:
        self._same_quant(node)
        t, bo, left, r = node.attrs["pads"]
        x = self.tensor(node.inputs[0])
        pads = self.constant(f"{node.outputs[0]}/paddings", np.array([[0, 0], [t, bo], [left, r], [0, 0]]))

        def options(b):
            tflite.PadOptionsStart(b)
            return tflite.PadOptionsEnd(b)
        self.operator(BuiltinOp.PAD, [x, pads], node, Options.PadOptions, options)

    def quantize(self, node: Node) -> None:
        def options(b):
            tflite.QuantizeOptionsStart(b)
            return tflite.QuantizeOptionsEnd(b)
        self.operator(BuiltinOp.QUANTIZE, [self.tensor(node.inputs[0])], node, Options.QuantizeOptions, options)

    def dequantize(self, node: Node) -> None:
        def options(b):
            tflite.DequantizeOptionsStart(b)
            return tflite.DequantizeOptionsEnd(b)
        self.operator(BuiltinOp.DEQUANTIZE, [self.tensor(node.inputs[0])], node, Options.DequantizeOptions,
                      options)

    _OPS = {"Conv2D": conv, "DepthwiseConv2D": conv, "Dense": dense, "AvgPool2D": pool, "MaxPool2D": pool,
            "GlobalAvgPool": mean, "Add": add, "ReLU": relu, "ReLU6": relu, "Reshape": reshape,
            "Flatten": reshape, "Softmax": softmax, "Pad": pad, "Quantize": quantize, "Dequantize": dequantize}

    # ------------------------------------------------------------------ checks
    def _same_quant(self, node: Node) -> None:
        x, y = self.g.tensors[node.inputs[0]], self.g.tensors[node.outputs[0]]
        if x.quant != y.quant:
            raise ExportError(f"{node.op} '{node.name}': TFLite's int8 {node.op} keeps the scale and zero point, "
                              f"but input has {x.quant} and output {y.quant}")

    @staticmethod
    def _check_weight(node: Node, wt: Tensor, axis: int, channels: int) -> None:
        q = wt.quant
        if q.per_channel and q.scale.size > 1 and (q.axis != axis or q.scale.size != channels):
            raise ExportError(
                f"{node.op} '{node.name}': TFLite quantizes these weights per channel along axis {axis} "
                f"({channels} scales), got {q.scale.size} scales along axis {q.axis}"
            )

    def _bias_quant(self, x: Tensor, wt: Tensor, channels: int) -> tuple:
        """Bias scale ``s_in s_w[c]`` (float32 of the double product), zero point 0."""
        s = (np.float64(x.quant.scale[0]) * wt.quant.scale.astype(np.float64)).astype(np.float32)
        return s, np.zeros(s.size, np.int64), 0

    # ------------------------------------------------------------------ the model
    def build(self) -> bytes:
        g = self.g
        for name in g.inputs:
            self.tensor(name)
        for node in g.nodes:
            try:
                handler = self._OPS[node.op]
            except KeyError:
                raise ExportError(f"{node.op} '{node.name}': TFLite export has no operator for it; it knows "
                                  f"{', '.join(sorted(self._OPS))}") from None
            handler(self, node)
        for name in g.outputs:
            self.tensor(name)
        metadata = []
        if self.plan is not None:
            metadata.append((OFFLINE_PLAN_METADATA, self.buffer(self._offline_offsets())))
        return _serialize(self.parts, [self.index[t] for t in g.inputs], [self.index[t] for t in g.outputs],
                          self.description, metadata, self.g.name)

    def _offline_offsets(self) -> bytes:
        offsets = []
        for t in self.parts.tensors:
            ir = self.g.tensors.get(t.name)
            activation = ir is not None and not ir.is_const
            offsets.append(int(self.plan.offsets[t.name]) if activation else -1)
        head = [OFFLINE_PLAN_VERSION, 0, len(offsets)]
        return np.array(head + offsets, dtype="<i4").tobytes()


_BUILTIN_OF = {"Conv2D": BuiltinOp.CONV_2D, "DepthwiseConv2D": BuiltinOp.DEPTHWISE_CONV_2D,
               "Dense": BuiltinOp.FULLY_CONNECTED, "AvgPool2D": BuiltinOp.AVERAGE_POOL_2D,
               "MaxPool2D": BuiltinOp.MAX_POOL_2D, "GlobalAvgPool": BuiltinOp.MEAN, "Add": BuiltinOp.ADD,
               "ReLU": BuiltinOp.RELU, "ReLU6": BuiltinOp.RELU6, "Reshape": BuiltinOp.RESHAPE,
               "Flatten": BuiltinOp.RESHAPE, "Softmax": BuiltinOp.SOFTMAX, "Pad": BuiltinOp.PAD,
               "Quantize": BuiltinOp.QUANTIZE, "Dequantize": BuiltinOp.DEQUANTIZE}


def _op_name(code: int) -> str:
    for k, v in vars(BuiltinOp).items():
        if not k.startswith("_") and v == code:
            return k
    return f"builtin {code}"


# --------------------------------------------------------------------------- serialization

def _int_vector(b: flatbuffers.Builder, values, prepend: Callable) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(list(values)):
        prepend(int(v))
    return b.EndVector()


def _offsets_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _bytes_vector(b: flatbuffers.Builder, data: bytes) -> int:
    """A ubyte vector whose first byte is ``BUFFER_ALIGNMENT``-aligned in the finished file."""
    b.StartVector(1, len(data), BUFFER_ALIGNMENT)
    b.head = b.head - len(data)
    b.Bytes[b.head: b.head + len(data)] = data
    return b.EndVector()


def _quantization(b: flatbuffers.Builder, quant: tuple) -> int:
    scale, zero_point, axis = quant
    s = _float_vector(b, scale)
    b.StartVector(8, len(zero_point), 8)
    for v in reversed(list(zero_point)):
        b.PrependInt64(int(v))
    z = b.EndVector()
    tflite.QuantizationParametersStart(b)
    tflite.QuantizationParametersAddScale(b, s)
    tflite.QuantizationParametersAddZeroPoint(b, z)
    tflite.QuantizationParametersAddQuantizedDimension(b, int(axis))
    return tflite.QuantizationParametersEnd(b)


def _float_vector(b: flatbuffers.Builder, values: np.ndarray) -> int:
    b.StartVector(4, len(values), 4)
    for v in reversed(np.asarray(values, np.float32).tolist()):
        b.PrependFloat32(v)
    return b.EndVector()


def _serialize(parts: _ModelParts, inputs: list[int], outputs: list[int], description: str,
               metadata: list[tuple[str, int]], graph_name: str) -> bytes:
    b = flatbuffers.Builder(1 << 16)
    # buffers (the constant data first, so the large vectors sit at the end of the file)
    buffer_tables = []
    data_vectors = [(_bytes_vector(b, d) if d else None) for d in parts.buffers]
    for vec in data_vectors:
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        buffer_tables.append(tflite.BufferEnd(b))
    # tensors
    tensor_tables = []
    for t in parts.tensors:
        name = b.CreateString(t.name)
        shape = _int_vector(b, t.shape, b.PrependInt32)
        quant = _quantization(b, t.quant) if t.quant is not None else None
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, _TYPES[t.dtype])
        tflite.TensorAddBuffer(b, t.buffer)
        tflite.TensorAddName(b, name)
        if quant is not None:
            tflite.TensorAddQuantization(b, quant)
        tensor_tables.append(tflite.TensorEnd(b))
    # operators
    operator_tables = []
    for op in parts.operators:
        ins = _int_vector(b, op.inputs, b.PrependInt32)
        outs = _int_vector(b, op.outputs, b.PrependInt32)
        opts = op.options(b) if op.options is not None else None
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, op.opcode)
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if opts is not None:
            tflite.OperatorAddBuiltinOptionsType(b, op.options_type)
            tflite.OperatorAddBuiltinOptions(b, opts)
        operator_tables.append(tflite.OperatorEnd(b))
    # the subgraph
    tensors_vec = _offsets_vector(b, tensor_tables)
    inputs_vec = _int_vector(b, inputs, b.PrependInt32)
    outputs_vec = _int_vector(b, outputs, b.PrependInt32)
    operators_vec = _offsets_vector(b, operator_tables)
    sg_name = b.CreateString(graph_name)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensors_vec)
    tflite.SubGraphAddInputs(b, inputs_vec)
    tflite.SubGraphAddOutputs(b, outputs_vec)
    tflite.SubGraphAddOperators(b, operators_vec)
    tflite.SubGraphAddName(b, sg_name)
    subgraph = tflite.SubGraphEnd(b)
    # operator codes
    code_tables = []
    for code, version in parts.opcodes:
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        tflite.OperatorCodeAddBuiltinCode(b, code)
        tflite.OperatorCodeAddVersion(b, version)
        code_tables.append(tflite.OperatorCodeEnd(b))
    # metadata
    meta_tables = []
    for name, buf in metadata:
        n = b.CreateString(name)
        tflite.MetadataStart(b)
        tflite.MetadataAddName(b, n)
        tflite.MetadataAddBuffer(b, buf)
        meta_tables.append(tflite.MetadataEnd(b))
    codes_vec = _offsets_vector(b, code_tables)
    subgraphs_vec = _offsets_vector(b, [subgraph])
    buffers_vec = _offsets_vector(b, buffer_tables)
    meta_vec = _offsets_vector(b, meta_tables) if meta_tables else None
    desc = b.CreateString(description)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, SCHEMA_VERSION)
    tflite.ModelAddOperatorCodes(b, codes_vec)
    tflite.ModelAddSubgraphs(b, subgraphs_vec)
    tflite.ModelAddDescription(b, desc)
    tflite.ModelAddBuffers(b, buffers_vec)
    if meta_vec is not None:
        tflite.ModelAddMetadata(b, meta_vec)
    model = tflite.ModelEnd(b)
    b.Finish(model, file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


__all__ = ["to_tflite", "prepare_graph", "operator_names", "SCHEMA_VERSION", "OFFLINE_PLAN_METADATA"]
