"""The ONNX importer: walks the nodes, collects every problem, builds the IR graph.

:class:`Importer` holds the state (constants, the IR value of every ONNX
value, quantization parameters) and the driver; the op converters are in
:mod:`.onnx_layers` and :mod:`.onnx_qdq`. Use :func:`tinyml_lab.io.onnx.load_onnx`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ModelImportError, TinyMLError
from ..graph import Graph, Node, QuantParams, Tensor
from .onnx_common import (
    MAX_OPSET,
    MIN_OPSET,
    NCHW_AXES,
    SUPPORTED_OPS,
    NodeProblem,
    QConst,
    Value,
    listing,
    node_attrs,
    to_array,
)
from .onnx_layers import LayerConverters
from .onnx_qdq import QDQConverters


class Importer(LayerConverters, QDQConverters):
    """One ONNX model to one graph (float, or int8 for a QDQ model)."""

    def __init__(self, model, name: str | None):
        self.model = model
        self.onnx_graph = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
        self.g = Graph(name or model.graph.name or "onnx-model")
        self.consts: dict[str, np.ndarray] = {}
        self.qconsts: dict[str, QConst] = {}
        self.values: dict[str, Value] = {}
        self.params: dict[str, QuantParams] = {}  # IR tensor -> quantization of a QDQ model
        self.weight_q: dict[str, QuantParams] = {}  # IR weight tensor -> its ONNX scales (IR axis)
        self.bias_q: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # IR bias -> (int32 codes, scales)
        self.notes: list[str] = []
        self.node_names: set[str] = set()
        self.qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)
        self.batch_dims: set[int] = set()
        self.current = ""

    # ------------------------------------------------------------------ driver
    def run(self) -> Graph:
        self.check_model()
        for t in self.onnx_graph.initializer:
            self.consts[t.name] = to_array(t)
        self.add_inputs()
        problems: list[tuple[str, str]] = []
        failed: set[str] = set()
        for i, node in enumerate(self.onnx_graph.node):
            self.current = self.node_label(node, i)
            if any(t in failed for t in node.input if t):
                failed.update(node.output)
                continue
            try:
                self.convert(node)
            except NodeProblem as exc:
                problems.append((self.current, str(exc)))
                failed.update(node.output)
        if problems:
            raise ModelImportError(listing(
                f"ONNX model '{self.g.name}': {len(problems)} node(s) cannot be imported", problems), problems)
        self.set_outputs()
        self.g.metadata["onnx"] = {
            "opset": self.opset, "producer": f"{self.model.producer_name} {self.model.producer_version}".strip(),
            "input_layouts": self.input_layouts, "qdq": self.qdq, "notes": self.notes,
            "output_layouts": {t: ("nhwc" if self.g.tensors[t].shape and len(self.g.tensors[t].shape) == 3
                                   else "features") for t in self.g.outputs},
        }
        g = self.g.validate()
        return self.to_int8(g) if self.qdq else g

    def node_label(self, node, i: int) -> str:
        return f"{node.op_type} '{node.name}'" if node.name else f"{node.op_type} (node {i})"

    def check_model(self) -> None:
        """Opset, op types and input shapes: every problem at once."""
        problems = []
        if self.opset is None or not MIN_OPSET <= self.opset <= MAX_OPSET:
            problems.append(("model", f"default-domain opset {self.opset}; this importer reads opsets "
                                      f"{MIN_OPSET} to {MAX_OPSET} (convert it with onnx.version_converter)"))
        for i, node in enumerate(self.onnx_graph.node):
            if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
                dom = f" (domain {node.domain!r})" if node.domain not in ("", "ai.onnx") else ""
                problems.append((self.node_label(node, i), f"unsupported op{dom}"))
        inits = {t.name for t in self.onnx_graph.initializer}
        for inp in self.onnx_graph.input:
            if inp.name in inits:
                continue
            dims = inp.type.tensor_type.shape.dim
            if not inp.type.tensor_type.HasField("shape"):
                problems.append((f"input '{inp.name}'", "has no shape; give it a static shape (batch may be symbolic)"))
                continue
            bad = [i for i, d in enumerate(dims) if i > 0 and not (d.HasField("dim_value") and d.dim_value > 0)]
            if bad:
                shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]
                problems.append((f"input '{inp.name}'", f"dynamic shape {shape}: only the first (batch) dimension "
                                                        f"may be symbolic; fix the others (e.g. with "
                                                        f"onnx.tools.update_model_dims)"))
        for i, node in enumerate(self.onnx_graph.node):
            if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] not in inits and not any(
                    n.op_type == "Constant" and node.input[1] in n.output for n in self.onnx_graph.node):
                problems.append((self.node_label(node, i), "dynamic shape: its target shape is computed at run "
                                                           "time; it must be an initializer or a Constant"))
        if problems:
            tail = (f"The importer supports {', '.join(SUPPORTED_OPS)}"
                    if any(why.startswith("unsupported op") for _, why in problems) else "")
            raise ModelImportError(listing(
                f"ONNX model '{self.g.name}' cannot be imported ({len(problems)} problem(s))", problems, tail),
                problems)

    # ------------------------------------------------------------------ inputs and outputs
    def add_inputs(self) -> None:
        inits = {t.name for t in self.onnx_graph.initializer}
        self.input_layouts: dict[str, str] = {}
        for inp in self.onnx_graph.input:
            if inp.name in inits:
                continue
            tt = inp.type.tensor_type
            dims = [d.dim_value for d in tt.shape.dim]
            if tt.shape.dim and tt.shape.dim[0].HasField("dim_value"):
                self.batch_dims.add(tt.shape.dim[0].dim_value)
            shape = tuple(dims[1:])
            codes = tt.elem_type != 1  # FLOAT
            if len(shape) == 3:
                readers = [n for n in self.onnx_graph.node if inp.name in n.input]
                nhwc = bool(readers) and all(
                    n.op_type == "Transpose" and tuple(node_attrs(n).get("perm", ())) == NCHW_AXES for n in readers)
                ir_shape = shape if nhwc else (shape[1], shape[2], shape[0])
                self.input_layouts[inp.name] = "nhwc" if nhwc else "nchw"
                self.g.add_tensor(Tensor(inp.name, ir_shape))
                self.values[inp.name] = Value(inp.name, "image", shape, (0, 1, 2, 3) if nhwc else NCHW_AXES,
                                               codes=codes)
            elif len(shape) == 1:
                self.input_layouts[inp.name] = "features"
                self.g.add_tensor(Tensor(inp.name, shape))
                self.values[inp.name] = Value(inp.name, "vector", shape, codes=codes)
            else:
                raise ModelImportError(
                    f"input '{inp.name}' has shape (N, {', '.join(map(str, shape))}); the importer takes "
                    f"images (N, C, H, W) and feature vectors (N, F)", [(f"input '{inp.name}'", "rank")])
            self.g.inputs.append(inp.name)

    def set_outputs(self) -> None:
        for out in self.onnx_graph.output:
            v = self.values.get(out.name)
            if v is None:
                raise ModelImportError(f"graph output {out.name!r} is a constant or is never computed",
                                       [(f"output '{out.name}'", "not computed")])
            if v.kind == "vector" and v.order is not None:
                raise ModelImportError(
                    f"graph output {out.name!r} is a flattened NCHW image; the IR flattens in NHWC order and "
                    f"cannot give the ONNX order", [(f"output '{out.name}'", "flattened order")])
            if v.ir in self.g.inputs:
                raise ModelImportError(f"graph output {out.name!r} is an input; there is nothing to import",
                                       [(f"output '{out.name}'", "is an input")])
            if out.name != v.ir and out.name not in self.g.tensors and v.ir not in self.g.outputs:
                self.rename(v.ir, out.name)
                v.ir = out.name
            self.g.outputs.append(v.ir)

    def rename(self, old: str, new: str) -> None:
        """Give IR tensor ``old`` the name ``new`` (a graph output keeps its ONNX name)."""
        t = self.g.tensors.pop(old)
        t.name = new
        self.g.tensors[new] = t
        for n in self.g.nodes:
            n.inputs = [new if x == old else x for x in n.inputs]
            n.outputs = [new if x == old else x for x in n.outputs]
        if old in self.params:
            self.params[new] = self.params.pop(old)
        for v in self.values.values():
            if v.ir == old:
                v.ir = new

    # ------------------------------------------------------------------ helpers
    def fresh(self, base: str) -> str:
        name, i = base, 1
        while name in self.g.tensors:
            name, i = f"{base}_{i}", i + 1
        return name

    def node_name(self, node) -> str:
        base = node.name or (node.output[0] if node.output else node.op_type)
        name, i = base, 1
        while name in self.node_names:
            name, i = f"{base}_{i}", i + 1
        self.node_names.add(name)
        return name

    def add_node(self, op: str, inputs: list[str], out: str, attrs: dict | None = None, name: str | None = None) -> str:
        """Append an IR node writing a fresh tensor named after ONNX value ``out``; returns its name."""
        out_name = self.fresh(out)
        node_name = name or out_name
        while any(n.name == node_name for n in self.g.nodes):
            node_name += "_"
        try:
            self.g.add_node(Node(node_name, op, inputs, [out_name], attrs or {}))
        except TinyMLError as exc:
            raise NodeProblem(str(exc)) from None
        return out_name

    def const_tensor(self, base: str, data: np.ndarray) -> str:
        name = self.fresh(base)
        self.g.add_tensor(Tensor(name, data.shape, "float32", data=np.asarray(data, np.float32)))
        return name

    def value(self, name: str) -> Value:
        if name in self.consts:
            raise NodeProblem(f"input {name!r} is a constant where an activation is expected")
        try:
            return self.values[name]
        except KeyError:
            raise NodeProblem(f"input {name!r} is not computed by any node the importer knows") from None

    def const(self, name: str, what: str) -> np.ndarray:
        if name in self.consts:
            return self.consts[name]
        raise NodeProblem(f"{what} ({name!r}) must be a constant (an initializer or a Constant node)")

    def image(self, name: str, what: str = "input") -> Value:
        """The value as an NCHW image (a 1x1 vector is reshaped to an image)."""
        v = self.value(name)
        if v.kind == "vector":
            if len(v.onnx_shape) != 3 or v.onnx_shape[1:] != (1, 1) or v.order is not None:
                raise NodeProblem(f"{what} {name!r} has shape {v.onnx_shape}; an image (N, C, H, W) is needed")
            ir = self.add_node("Reshape", [v.ir], f"{v.ir}/image", {"shape": (1, 1, v.onnx_shape[0])})
            v = Value(ir, "image", v.onnx_shape, NCHW_AXES, codes=v.codes)
            self.values[name] = v
        if v.axes != NCHW_AXES:
            raise NodeProblem(f"{what} {name!r} is a transposed image (axes {v.axes}); this op needs NCHW")
        return v

    def vector(self, name: str, what: str = "input") -> Value:
        v = self.value(name)
        if v.kind != "vector" or len(v.onnx_shape) != 1:
            raise NodeProblem(f"{what} {name!r} has shape {v.onnx_shape}; a matrix (N, K) is needed")
        return v

    def define(self, onnx_name: str, v: Value) -> None:
        self.values[onnx_name] = v

    def same_layout(self, v: Value, ir: str, codes: bool | None = None) -> Value:
        return Value(ir, v.kind, v.onnx_shape, v.axes, v.order, v.codes if codes is None else codes)

    def int_list(self, attrs: dict, key: str, default: list[int]) -> list[int]:
        return [int(v) for v in attrs.get(key, default)]

    # ------------------------------------------------------------------ dispatch
    def convert(self, node) -> None:
        handler: Callable = getattr(self, f"op_{node.op_type}")
        handler(node, node_attrs(node))
