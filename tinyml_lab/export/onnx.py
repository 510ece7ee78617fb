"""Export a graph to ONNX: float graphs as plain ONNX ops, int8 graphs in QDQ form.

Layout. The IR is NHWC and ONNX convolutions are NCHW, so every rank-3
activation lives in ONNX as ``(N, C, H, W)``. The exported model still takes
and returns the IR's layout: a ``Transpose`` ``(0, 3, 1, 2)`` follows each
NHWC input, and a ``Transpose`` ``(0, 2, 3, 1)`` comes before any
``Flatten``, ``Reshape`` or ``Dense`` (so that flattening reads pixels in the
IR's ``h, w, c`` order) and before a rank-3 graph output. With
``input_layout="nchw"`` rank-3 inputs are taken as ``(N, C, H, W)`` and the
entry transposes disappear. The batch dimension is symbolic (``N``).

Weights. ``Conv2D`` weights ``(C_out, KH, KW, C_in)`` become
``(C_out, C_in, KH, KW)``; ``DepthwiseConv2D`` weights ``(1, KH, KW, C)``
become ``(C, 1, KH, KW)`` in a ``Conv`` with ``group = C``; ``Dense``
weights ``(C_out, C_in)`` stay as they are, in a ``Gemm`` with ``transB=1``:
``y = x W^T + b``.

int8 graphs (QDQ). Each int8 tensor stays int8 in ONNX, written by one
``QuantizeLinear(y) = clamp(round(y / s) + z)`` and read through one
``DequantizeLinear(q) = s (q - z)`` by the ops that compute in real numbers.
Weights are int8 initializers behind a ``DequantizeLinear`` (per channel
along the ONNX weight's output-channel axis when the IR's weight is), biases
int32 initializers dequantized with scale ``s_in s_w`` and zero point 0. A
fused ReLU/ReLU6 sits between the op and its ``QuantizeLinear``. onnxruntime
fuses these patterns into ``QLinearConv``, ``QGemm``, ``QLinearAdd`` and the
like. ``MaxPool2D``, ``Reshape``, ``Flatten`` and ``Pad`` (padding with the
zero point) act on the codes directly when their input and output share
quantization parameters, as the IR's int8 kernels do.

``activation_dtype="uint8"`` stores every activation code as
``u = q + 128`` with zero point ``z + 128`` (the same real values, the same
rounding); weights stay int8. Inputs and outputs are then uint8. This is the
U8S8 form onnxruntime's x86 kernels prefer: its own int8-to-uint8 rewrite
only handles a tensor with a single reader, so with int8 activations the
layers after a branch (a residual ``Add``) or at the graph input may run in
float.

onnxruntime rescales int8 accumulators with a float multiplier and rounds
half to even; TFLite (and :mod:`tinyml_lab.kernels.int8`) use a fixed-point
multiplier and round half away from zero. The two runtimes may therefore
differ by one code at a layer's output, and such differences propagate. The
IR's own ``Quantize`` and ``Dequantize`` ops become ``QuantizeLinear`` and
``DequantizeLinear``, with the same caveat: ONNX rounds ties to even.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .. import __version__
from ..errors import ExportError
from ..files import check_file, write_atomic
from ..graph import Graph, Node, QuantParams, Tensor
from ..kernels.fixedpoint import activation_range
from ..ops import resolve_padding

MIN_OPSET = 13  # per-axis QuantizeLinear/DequantizeLinear, single-axis Softmax
LAYOUTS = ("nhwc", "nchw")
BATCH = "N"

ACTIVATION_DTYPES = ("int8", "uint8")

_ONNX_DTYPE = {"float32": TensorProto.FLOAT, "int8": TensorProto.INT8, "uint8": TensorProto.UINT8,
               "int32": TensorProto.INT32}
_TO_NCHW = (0, 3, 1, 2)
_TO_NHWC = (0, 2, 3, 1)
_CONV_PERM = (0, 3, 1, 2)  # (C_out, KH, KW, C_in) -> (C_out, C_in, KH, KW)
_DEPTHWISE_PERM = (3, 0, 1, 2)  # (1, KH, KW, C) -> (C, 1, KH, KW)
_DENSE_PERM = (0, 1)

# IR layout of a value: "ir" is the IR's own axis order after the batch (NHWC for images),
# "nchw" is channels first (rank-3 activations only).
IR, NCHW = "ir", "nchw"


# --------------------------------------------------------------------------- public API

def to_onnx(graph: Graph, path: str | os.PathLike | None = None, opset: int = 17,
            input_layout: str = "nhwc", activation_dtype: str = "int8") -> onnx.ModelProto:
    """Export ``graph`` (float32 or int8) to an ONNX model.

    Args:
        graph: a valid graph; int8 graphs are exported in QDQ form (see the
            module docstring).
        path: where to write the model, or None to only return it. The file
            is written to a temporary file in the same folder and moved into
            place, so ``path`` never holds a half-written model; a folder that
            does not exist or cannot be written fails before anything is
            built.
        opset: ONNX opset of the default domain, at least 13.
        input_layout: ``"nhwc"`` (the IR's layout) or ``"nchw"``; applies to
            rank-3 inputs only. Outputs always keep the IR's layout.
        activation_dtype: how an int8 graph stores activation codes in ONNX:
            ``"int8"`` (the IR's codes) or ``"uint8"`` (codes + 128, zero
            points + 128). Float graphs ignore it.

    Returns:
        The model, checked with ``onnx.checker`` (including shape inference).

    Raises:
        ExportError: an op, a quantization or an option the exporter cannot
            express.
        FileFormatError: ``path`` cannot be written.
    """
    layout = str(input_layout).lower()
    if layout not in LAYOUTS:
        raise ExportError(f"input_layout must be one of {', '.join(LAYOUTS)}, got {input_layout!r}")
    if activation_dtype not in ACTIVATION_DTYPES:
        raise ExportError(
            f"activation_dtype must be one of {', '.join(ACTIVATION_DTYPES)}, got {activation_dtype!r}"
        )
    newest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= newest:
        raise ExportError(
            f"opset must be an int from {MIN_OPSET} (per-axis QuantizeLinear) to {newest} "
            f"(the newest this onnx {onnx.__version__} knows), got {opset!r}"
        )
    target = check_file(path, "ONNX model") if path is not None else None
    graph.validate()
    model = _Exporter(graph, int(opset), layout, activation_dtype).build()
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"graph '{graph.name}': the exported ONNX model does not check: {exc}") from None
    if target is not None:
        write_atomic(target, model.SerializeToString(), "ONNX model")
    return model


# --------------------------------------------------------------------------- files

# --------------------------------------------------------------------------- the exporter

class _Exporter:
    """Walks the IR nodes in order and appends the equivalent ONNX nodes.

    ``values`` maps each IR activation to the ONNX value holding it and that
    value's layout; an int8 IR tensor is held as codes of ``act_dtype``,
    ``offset`` (0 or 128) above the IR's.
    """

    def __init__(self, graph: Graph, opset: int, input_layout: str, activation_dtype: str = "int8"):
        self.g = graph
        self.opset = opset
        self.input_layout = input_layout
        self.act_dtype = np.dtype(activation_dtype)
        self.offset = 128 if activation_dtype == "uint8" else 0
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.reserved = set(graph.tensors)  # IR names: generated names keep clear of them
        self.taken: set[str] = set()
        self.node_names: set[str] = set()
        self.values: dict[str, tuple[str, str]] = {}
        self.views: dict[tuple[str, ...], str] = {}  # transposed and dequantized readings of a value
        self.qparams: dict[str, tuple[str, str]] = {}
        self.scalars: dict[str, str] = {}
        self.current = ""  # IR node being exported, for node names and messages

    # ------------------------------------------------------------------ naming
    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.taken or name in self.reserved:
            name, i = f"{base}_{i}", i + 1
        self.taken.add(name)
        return name

    def add(self, op_type: str, inputs: Sequence[str], attrs: dict | None = None,
            hint: str | None = None, domain: str = "") -> str:
        """Append one ONNX node with one output; returns the output's name."""
        base = f"{self.current}/{hint or op_type}" if self.current else hint or op_type
        out = self.fresh(base)
        node_name, i = f"{self.current}/{op_type}" if self.current else op_type, 1
        while node_name in self.node_names:
            node_name, i = f"{self.current}/{op_type}_{i}", i + 1
        self.node_names.add(node_name)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=node_name, domain=domain,
                                           **(attrs or {})))
        return out

    def const(self, array: np.ndarray, base: str, exact_name: bool = False) -> str:
        """An initializer; ``exact_name`` keeps ``base`` (an IR constant's own name)."""
        name = base if exact_name and base not in self.taken else self.fresh(base)
        self.taken.add(name)
        self.inits.append(numpy_helper.from_array(np.array(array, order="C"), name))  # keeps 0-d scalars
        return name

    # ------------------------------------------------------------------ values
    def rank(self, t: str) -> int:
        return len(self.g.tensors[t].shape)

    def native(self, t: str) -> str:
        """The layout ops prefer for IR tensor ``t``: channels first for images."""
        return NCHW if self.rank(t) == 3 else IR

    def value(self, t: str, layout: str) -> str:
        """IR tensor ``t`` as stored (float or int8 codes), in ``layout``."""
        name, have = self.values[t]
        if have == layout or self.rank(t) != 3:
            return name
        key = (t, layout)
        if key not in self.views:
            perm = _TO_NCHW if layout == NCHW else _TO_NHWC
            saved, self.current = self.current, t
            self.views[key] = self.add("Transpose", [name], {"perm": list(perm)}, hint=layout)
            self.current = saved
        return self.views[key]

    def real(self, t: str, layout: str) -> str:
        """IR tensor ``t`` as real numbers: int8 codes go through one DequantizeLinear per layout."""
        v = self.value(t, layout)
        tensor = self.g.tensors[t]
        if tensor.dtype != "int8":
            return v
        key = (t, layout, "real")
        if key not in self.views:
            scale, zp = self.activation_qparams(tensor)
            saved, self.current = self.current, t
            self.views[key] = self.add("DequantizeLinear", [v, scale, zp], hint="dequantized")
            self.current = saved
        return self.views[key]

    def activation_qparams(self, tensor: Tensor) -> tuple[str, str]:
        """Scalar scale and zero-point initializers of a per-tensor int8 activation."""
        if tensor.name not in self.qparams:
            q = tensor.quant
            if q is None or q.scale.size != 1:
                raise ExportError(f"int8 tensor {tensor.name!r} needs per-tensor quantization parameters")
            self.qparams[tensor.name] = (
                self.const(np.array(q.scale[0], np.float32), f"{tensor.name}/scale"),
                self.codes(q.zero_point[0], f"{tensor.name}/zero_point"),
            )
        return self.qparams[tensor.name]

    def codes(self, value: int, base: str) -> str:
        """A scalar initializer holding the activation code of IR code ``value``."""
        return self.const(np.array(int(value) + self.offset, self.act_dtype), base)

    def dtype(self, tensor: Tensor) -> str:
        """The ONNX element type name of an IR activation."""
        return self.act_dtype.name if tensor.dtype == "int8" else tensor.dtype

    def define(self, t: str, name: str, layout: str) -> None:
        self.values[t] = (name, layout)

    def finish(self, node: Node, v: str, layout: str, activation: str | None = None) -> None:
        """Apply the fused activation, quantize if the output is int8, and bind the output."""
        act = node.attrs.get("activation", "none") if activation is None else activation
        if act == "relu":
            v = self.add("Relu", [v])
        elif act == "relu6":
            v = self.add("Clip", [v, self.float_scalar(0.0, "zero"), self.float_scalar(6.0, "six")])
        out = self.g.tensors[node.outputs[0]]
        if out.dtype == "int8":
            scale, zp = self.activation_qparams(out)
            v = self.add("QuantizeLinear", [v, scale, zp])
        self.define(out.name, v, layout)

    def float_scalar(self, value: float, hint: str) -> str:
        """A shared float32 scalar initializer (the bounds of Clip, the fill of Pad)."""
        if hint not in self.scalars:
            self.scalars[hint] = self.const(np.array(value, np.float32), hint)
        return self.scalars[hint]

    def stays_int8(self, node: Node) -> bool:
        """True when an op may move int8 codes as they are: same quantization in and out."""
        x, out = self.g.tensors[node.inputs[0]], self.g.tensors[node.outputs[0]]
        return x.dtype == "int8" and out.dtype == "int8" and x.quant == out.quant

    # ------------------------------------------------------------------ weights
    def weight(self, t: Tensor, perm: tuple[int, ...]) -> str:
        """A weight in ONNX layout as a float value: a float initializer, or an int8 initializer
        behind a DequantizeLinear (per channel along ``perm.index(axis)``)."""
        data = np.transpose(t.data, perm)
        if t.dtype == "float32":
            return self.const(data, t.name, exact_name=True)
        if t.dtype != "int8" or t.quant is None:
            raise ExportError(f"weight {t.name!r} is {t.dtype} without int8 quantization parameters")
        codes = self.const(data, t.name, exact_name=True)
        scale, zp, axis = self.weight_qparams(t.quant, data.shape, perm, t.name)
        attrs = {} if axis is None else {"axis": axis}
        return self.add("DequantizeLinear", [codes, scale, zp], attrs, hint=f"{t.name}_dequantized")

    def weight_qparams(self, q: QuantParams, shape: tuple[int, ...], perm: tuple[int, ...],
                       name: str) -> tuple[str, str, int | None]:
        if q.axis is None or q.scale.size == 1:
            return (self.const(np.array(q.scale[0], np.float32), f"{name}/scale"),
                    self.const(np.array(q.zero_point[0], np.int8), f"{name}/zero_point"), None)
        axis = perm.index(q.axis)
        if q.scale.size != shape[axis]:
            raise ExportError(
                f"weight {name!r}: {q.scale.size} per-channel scales along axis {q.axis}, but that "
                f"axis has {shape[axis]} entries"
            )
        return (self.const(q.scale.astype(np.float32), f"{name}/scale"),
                self.const(q.zero_point.astype(np.int8), f"{name}/zero_point"), axis)

    def bias(self, node: Node, b: Tensor | None, x: Tensor, w: Tensor) -> list[str]:
        """Bias input of Conv/Gemm: float as is; int32 with ``DequantizeLinear(scale s_in s_w)``."""
        if b is None:
            return []
        if b.dtype == "float32":
            return [self.const(b.data, b.name, exact_name=True)]
        if b.dtype != "int32" or x.quant is None or w.quant is None:
            raise ExportError(f"{node.op} '{node.name}': an int8 layer's bias must be int32")
        s = (np.float64(x.quant.scale[0]) * w.quant.scale.astype(np.float64)).astype(np.float32)
        codes = self.const(b.data, b.name, exact_name=True)
        if s.size == 1:
            scale = self.const(np.array(s[0], np.float32), f"{b.name}/scale")
            zp = self.const(np.array(0, np.int32), f"{b.name}/zero_point")
            attrs: dict = {}
        else:
            if s.size != b.data.size:
                raise ExportError(f"{node.op} '{node.name}': {s.size} weight scales for {b.data.size} biases")
            scale = self.const(s, f"{b.name}/scale")
            zp = self.const(np.zeros(s.size, np.int32), f"{b.name}/zero_point")
            attrs = {"axis": 0}
        return [self.add("DequantizeLinear", [codes, scale, zp], attrs, hint=f"{b.name}_dequantized")]

    # ------------------------------------------------------------------ ops
    def conv(self, node: Node) -> None:
        x = self.g.tensors[node.inputs[0]]
        w = self.g.weights(node)
        wt = w["weight"]
        depthwise = node.op == "DepthwiseConv2D"
        perm = _DEPTHWISE_PERM if depthwise else _CONV_PERM
        kh, kw = wt.shape[1:3]
        a = node.attrs
        _, pads = resolve_padding(x.shape[:2], (kh, kw), a["strides"], a["dilation"], a["padding"],
                                  f"{node.op} '{node.name}'")
        ins = [self.real(x.name, NCHW), self.weight(wt, perm)] + self.bias(node, w.get("bias"), x, wt)
        attrs = {
            "kernel_shape": [kh, kw],
            "strides": list(a["strides"]),
            "dilations": list(a["dilation"]),
            "pads": _onnx_pads(pads),
            "group": wt.shape[3] if depthwise else 1,
        }
        self.finish(node, self.add("Conv", ins, attrs), NCHW)

    def dense(self, node: Node) -> None:
        x = self.g.tensors[node.inputs[0]]
        w = self.g.weights(node)
        ins = [self.real(x.name, IR), self.weight(w["weight"], _DENSE_PERM)]
        ins += self.bias(node, w.get("bias"), x, w["weight"])
        self.finish(node, self.add("Gemm", ins, {"transB": 1}), IR)

    def pool(self, node: Node) -> None:
        x = self.g.tensors[node.inputs[0]]
        a = node.attrs
        _, pads = resolve_padding(x.shape[:2], a["pool_size"], a["strides"], (1, 1), a["padding"],
                                  f"{node.op} '{node.name}'")
        attrs = {"kernel_shape": list(a["pool_size"]), "strides": list(a["strides"]), "pads": _onnx_pads(pads)}
        if node.op == "MaxPool2D" and self.stays_int8(node):
            # max commutes with the monotone dequantization: pool the codes, clamp in codes
            v = self.add("MaxPool", [self.value(x.name, NCHW)], attrs)
            out = self.g.tensors[node.outputs[0]]
            if a["activation"] != "none":
                lo, hi = activation_range(a["activation"], float(out.quant.scale[0]), int(out.quant.zero_point[0]))
                v = self.add("Clip", [v, self.codes(lo, f"{node.name}/min"), self.codes(hi, f"{node.name}/max")])
            self.define(out.name, v, NCHW)
            return
        if node.op == "AvgPool2D":
            if a["count_include_pad"] and x.dtype == "int8":
                raise ExportError(
                    f"AvgPool2D '{node.name}': int8 with count_include_pad=True has no int8 kernel in "
                    f"tinyml_lab, so there is no behaviour to export"
                )
            attrs["count_include_pad"] = int(a["count_include_pad"])
            op = "AveragePool"
        else:
            op = "MaxPool"
        self.finish(node, self.add(op, [self.real(x.name, NCHW)], attrs), NCHW)

    def global_avg_pool(self, node: Node) -> None:
        x = self.g.tensors[node.inputs[0]]
        v = self.add("GlobalAveragePool", [self.real(x.name, NCHW)])
        out = self.g.tensors[node.outputs[0]]
        if out.dtype == "int8":  # quantize before flattening: DQ -> GlobalAveragePool -> Q fuses
            scale, zp = self.activation_qparams(out)
            v = self.add("QuantizeLinear", [v, scale, zp])
        self.define(out.name, self.add("Flatten", [v], {"axis": 1}), IR)

    def add_op(self, node: Node) -> None:
        a, b = node.inputs
        layout = self.native(a)
        self.finish(node, self.add("Add", [self.real(a, layout), self.real(b, layout)]), layout)

    def relu(self, node: Node) -> None:
        x = node.inputs[0]
        layout = self.native(x)
        self.finish(node, self.real(x, layout), layout, "relu6" if node.op == "ReLU6" else "relu")

    def reshape(self, node: Node) -> None:
        x = node.inputs[0]
        out = self.g.tensors[node.outputs[0]]
        int8 = self.stays_int8(node)
        v = self.value(x, IR) if int8 else self.real(x, IR)
        if node.op == "Flatten":
            v = self.add("Flatten", [v], {"axis": 1})
        else:
            shape = self.const(np.array((-1,) + out.shape, np.int64), f"{node.name}/shape")
            v = self.add("Reshape", [v, shape])
        if int8:
            self.define(out.name, v, IR)
        else:
            self.finish(node, v, IR, "none")

    def softmax(self, node: Node) -> None:
        x = node.inputs[0]
        layout = self.native(x)
        v = self.real(x, layout)
        beta = node.attrs["beta"]
        if beta != 1.0:
            v = self.add("Mul", [v, self.const(np.array(beta, np.float32), f"{node.name}/beta")])
        self.finish(node, self.add("Softmax", [v], {"axis": 1 if layout == NCHW else -1}), layout, "none")

    def batch_norm(self, node: Node) -> None:
        x = node.inputs[0]
        w = {k: t.data for k, t in self.g.weights(node).items()}
        eps = node.attrs["epsilon"]
        layout = self.native(x)
        v = self.real(x, layout)
        if layout == NCHW or self.rank(x) == 1:  # channels on ONNX axis 1
            ins = [v] + [self.const(w[k], self.g.weights(node)[k].name, exact_name=True)
                         for k in ("gamma", "beta", "mean", "var")]
            v = self.add("BatchNormalization", ins, {"epsilon": eps})
        else:  # channels last on a rank > 1 tensor: y = a x + (beta - a mean)
            scale = w["gamma"].astype(np.float64) / np.sqrt(w["var"].astype(np.float64) + eps)
            shift = w["beta"] - w["mean"] * scale
            v = self.add("Mul", [v, self.const(scale.astype(np.float32), f"{node.name}/scale")])
            v = self.add("Add", [v, self.const(shift.astype(np.float32), f"{node.name}/shift")])
        self.finish(node, v, layout, "none")

    def pad(self, node: Node) -> None:
        x = node.inputs[0]
        top, bottom, left, right = node.attrs["pads"]
        pads = self.const(np.array([0, 0, top, left, 0, 0, bottom, right], np.int64), f"{node.name}/pads")
        out = self.g.tensors[node.outputs[0]]
        if self.stays_int8(node):
            fill = self.codes(out.quant.zero_point[0], f"{node.name}/value")
            self.define(out.name, self.add("Pad", [self.value(x, NCHW), pads, fill]), NCHW)
            return
        fill = self.float_scalar(0.0, "zero")
        self.finish(node, self.add("Pad", [self.real(x, NCHW), pads, fill]), NCHW, "none")

    def quantize(self, node: Node) -> None:
        x = node.inputs[0]
        layout = self.native(x)
        self.finish(node, self.value(x, layout), layout, "none")

    def dequantize(self, node: Node) -> None:
        x = node.inputs[0]
        layout = self.native(x)
        self.define(node.outputs[0], self.real(x, layout), layout)

    _OPS = {
        "Conv2D": conv, "DepthwiseConv2D": conv, "Dense": dense, "AvgPool2D": pool, "MaxPool2D": pool,
        "GlobalAvgPool": global_avg_pool, "Add": add_op, "ReLU": relu, "ReLU6": relu,
        "Reshape": reshape, "Flatten": reshape, "Softmax": softmax, "BatchNorm": batch_norm,
        "Pad": pad, "Quantize": quantize, "Dequantize": dequantize,
    }

    # ------------------------------------------------------------------ the whole graph
    def build(self) -> onnx.ModelProto:
        g = self.g
        for t in g.outputs:
            if t in g.inputs:
                raise ExportError(f"graph '{g.name}': output {t!r} is also an input; there is nothing to export")
        if len(set(g.outputs)) != len(g.outputs):
            raise ExportError(f"graph '{g.name}' lists an output twice ({g.outputs}); ONNX names outputs uniquely")
        inputs = []
        for t in g.inputs:
            tensor = g.tensors[t]
            layout = NCHW if self.input_layout == "nchw" and len(tensor.shape) == 3 else IR
            shape = [tensor.shape[i] for i in (2, 0, 1)] if layout == NCHW else list(tensor.shape)
            inputs.append(_value_info(t, self.dtype(tensor), shape))
            self.taken.add(t)
            self.define(t, t, layout)
        for node in g.nodes:
            self.current = node.name
            try:
                handler = self._OPS[node.op]
            except KeyError:
                raise ExportError(
                    f"{node.op} '{node.name}': no ONNX export for this op; the exporter knows "
                    f"{', '.join(sorted(self._OPS))}"
                ) from None
            handler(self, node)
        self.current = ""
        outputs = []
        for t in g.outputs:  # in the IR's layout, under the IR's name
            self.rename(self.value(t, IR), t)
            outputs.append(_value_info(t, self.dtype(g.tensors[t]), list(g.tensors[t].shape)))
        self.name_activations()
        graph = helper.make_graph(self.nodes, _graph_name(g.name), inputs, outputs, self.inits)
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(
            graph, opset_imports=opsets, producer_name="tinyml_lab", producer_version=__version__,
            ir_version=helper.find_min_ir_version_for(opsets),
            doc_string=f"{g.name} exported by tinyml_lab {__version__} "
                       f"({f'int8 QDQ, {self.act_dtype.name} activations' if g.is_quantized else 'float32'}, "
                       f"input layout {self.input_layout})",
        )
        helper.set_model_props(model, {
            "tinyml_lab.graph": g.name,
            "tinyml_lab.input_layout": self.input_layout,
            "tinyml_lab.dtype": "int8" if g.is_quantized else "float32",
            "tinyml_lab.activation_dtype": self.act_dtype.name if g.is_quantized else "float32",
        })
        return model

    def rename(self, old: str, new: str) -> None:
        """Give ONNX value ``old`` the name ``new`` everywhere."""
        if old == new:
            return
        for n in self.nodes:
            for seq in (n.input, n.output):
                for i, v in enumerate(seq):
                    if v == old:
                        seq[i] = new
        for t, (name, layout) in self.values.items():
            if name == old:
                self.values[t] = (new, layout)
        self.taken.add(new)

    def name_activations(self) -> None:
        """Name the ONNX value that holds each IR activation after that activation, where free."""
        produced = {o for n in self.nodes for o in n.output}
        for t, (name, _) in list(self.values.items()):
            if t not in self.taken and name in produced and name not in self.g.outputs and name != t:
                self.rename(name, t)


# --------------------------------------------------------------------------- helpers

def _onnx_pads(pads: tuple[int, int, int, int]) -> list[int]:
    """IR ``(top, bottom, left, right)`` to ONNX ``[top, left, bottom, right]``."""
    top, bottom, left, right = pads
    return [top, left, bottom, right]


def _value_info(name: str, dtype: str, shape: list[int]) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, _ONNX_DTYPE[dtype], [BATCH] + [int(v) for v in shape])


def _graph_name(name: str) -> str:
    return name or "graph"


__all__ = ["to_onnx", "ExportError", "LAYOUTS", "MIN_OPSET"]
