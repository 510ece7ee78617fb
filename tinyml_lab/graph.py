"""The graph IR: tensors, nodes and a graph in topological order.

A :class:`Graph` holds named :class:`Tensor` objects (activations, and
constants such as weights, which carry their ``data``) and a list of
:class:`Node` objects in execution order. Activation shapes leave out the
batch dimension and are NHWC (see :mod:`tinyml_lab.ops` for every op's layout).
A tensor may carry :class:`QuantParams`: ``real = scale * (q - zero_point)``,
per tensor or per channel along one axis.

Build graphs with :class:`GraphBuilder`; save and load them with
:meth:`Graph.save` and :meth:`Graph.load` (one ``.npz`` file holding the
arrays and a JSON description, stamped with a format version).
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .files import check_file, write_atomic
from .errors import DTypeError, FileFormatError, GraphError, QuantizationError, ShapeError, TinyMLError
from .ops import OPS, Shape, op_def

FORMAT_NAME = "tinyml-lab-graph"
FORMAT_VERSION = 1
DTYPES = ("float32", "int8", "int32")
_ITEMSIZE = {"float32": 4, "int8": 1, "int32": 4}


# --------------------------------------------------------------------------- quantization

class QuantParams:
    """Affine quantization: ``real = scale * (q - zero_point)``.

    ``scale`` (float32) and ``zero_point`` (int32) are 1-D: one entry for a
    per-tensor quantization (``axis`` is None) or one per slice along ``axis``.
    """

    __slots__ = ("scale", "zero_point", "axis")

    def __init__(self, scale: Any, zero_point: Any = 0, axis: int | None = None):
        s = np.atleast_1d(np.asarray(scale, dtype=np.float32)).copy()
        z = np.atleast_1d(np.asarray(zero_point, dtype=np.int64))
        if s.ndim != 1 or s.size == 0:
            raise QuantizationError(f"scale must be a scalar or a 1-D array, got shape {s.shape}")
        if z.size == 1 and s.size > 1:
            z = np.full(s.shape, int(z[0]), dtype=np.int64)
        if z.shape != s.shape:
            raise QuantizationError(
                f"scale has {s.size} entries but zero_point has {z.size}; give one per channel"
            )
        if not np.all(np.isfinite(s)) or np.any(s <= 0):
            raise QuantizationError(f"scales must be finite and positive, got {s[:8]}")
        if axis is None and s.size != 1:
            raise QuantizationError("a per-channel quantization needs its axis")
        if np.any(z < -(2**31)) or np.any(z >= 2**31):
            raise QuantizationError("zero points must fit in int32")
        self.scale = s
        self.zero_point = z.astype(np.int32)
        self.axis = None if axis is None else int(axis)

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, QuantParams)
            and self.axis == other.axis
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )

    def __repr__(self) -> str:
        if self.axis is None:
            return f"QuantParams(scale={float(self.scale[0]):.6g}, zero_point={int(self.zero_point[0])})"
        return f"QuantParams({self.scale.size} channels, axis={self.axis})"

    def to_json(self) -> dict:
        # float32 -> float is exact, so a JSON round trip keeps every bit
        return {
            "scale": [float(v) for v in self.scale],
            "zero_point": [int(v) for v in self.zero_point],
            "axis": self.axis,
        }

    @classmethod
    def from_json(cls, d: dict) -> "QuantParams":
        return cls(d["scale"], d["zero_point"], d.get("axis"))


# --------------------------------------------------------------------------- tensors, nodes

@dataclass
class Tensor:
    """A named value. Constants (weights, biases) hold ``data``; activations do not.

    ``shape`` of an activation leaves out the batch dimension; a constant's
    shape is its array's shape.
    """

    name: str
    shape: Shape
    dtype: str = "float32"
    quant: QuantParams | None = None
    data: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise DTypeError(f"tensor '{self.name}': dtype must be one of {DTYPES}, got {self.dtype!r}")
        self.shape = tuple(int(v) for v in self.shape)
        if self.data is not None:
            self.data = np.ascontiguousarray(self.data, dtype=self.dtype)
            self.shape = tuple(self.data.shape)

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        """Bytes of one sample (activations) or of the whole array (constants)."""
        return self.size * _ITEMSIZE[self.dtype]


@dataclass
class Node:
    """One op application: activation inputs first, then constant inputs."""

    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LayerStats:
    """Per-node figures, per sample."""

    name: str
    op: str
    output_shape: Shape
    params: int
    macs: int
    activation_bytes: int  # bytes of the node's output tensor

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "op": self.op,
            "output_shape": list(self.output_shape),
            "params": self.params,
            "macs": self.macs,
            "activation_bytes": self.activation_bytes,
        }


# --------------------------------------------------------------------------- graph

class Graph:
    """Tensors plus nodes in topological order, with named inputs and outputs."""

    def __init__(self, name: str = "graph"):
        self.name = name
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.metadata: dict[str, Any] = {}

    # ------------------------------------------------------------------ access
    def tensor(self, name: str) -> Tensor:
        try:
            return self.tensors[name]
        except KeyError:
            raise GraphError(f"graph '{self.name}' has no tensor named {name!r}") from None

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise GraphError(
            f"graph '{self.name}' has no node named {name!r}; nodes: "
            f"{', '.join(n.name for n in self.nodes[:12])}{' ...' if len(self.nodes) > 12 else ''}"
        )

    def weights(self, node: Node) -> dict[str, Tensor]:
        """The constant inputs of ``node`` by role (``weight``, ``bias``, ``gamma``, ...)."""
        d = op_def(node.op)
        consts = node.inputs[d.n_inputs:]
        roles = [r for r in d.weights if r not in d.optional] if len(consts) < len(d.weights) else list(d.weights)
        return {role: self.tensors[t] for role, t in zip(roles, consts)}

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]

    def producer(self, tensor: str) -> Node | None:
        for n in self.nodes:
            if tensor in n.outputs:
                return n
        return None

    @property
    def is_quantized(self) -> bool:
        """True when the graph's inputs are int8 (an int8 graph as deployed)."""
        return bool(self.inputs) and all(self.tensors[i].dtype == "int8" for i in self.inputs)

    def input_shape(self, i: int = 0) -> Shape:
        return self.tensors[self.inputs[i]].shape

    def output_shape(self, i: int = 0) -> Shape:
        return self.tensors[self.outputs[i]].shape

    # ------------------------------------------------------------------ building
    def add_tensor(self, tensor: Tensor) -> str:
        if tensor.name in self.tensors:
            raise GraphError(f"graph '{self.name}' already has a tensor named {tensor.name!r}")
        self.tensors[tensor.name] = tensor
        return tensor.name

    def add_node(self, node: Node) -> Node:
        """Append ``node``, normalising its attributes and inferring its output shape."""
        if any(n.name == node.name for n in self.nodes):
            raise GraphError(f"graph '{self.name}' already has a node named {node.name!r}")
        node.attrs = op_def(node.op).normalize(dict(node.attrs))
        created = [t for t in node.outputs if t not in self.tensors]
        self.nodes.append(node)
        try:
            self._infer_node(node)
        except TinyMLError:
            self.nodes.pop()  # a rejected node leaves nothing behind
            for t in created:
                self.tensors.pop(t, None)
            raise
        return node

    # ------------------------------------------------------------------ checking
    def _infer_node(self, node: Node) -> Shape:
        d = op_def(node.op)
        for t in node.inputs:
            if t not in self.tensors:
                raise GraphError(f"node '{node.name}' reads tensor {t!r}, which the graph does not have")
        n_const = len(node.inputs) - d.n_inputs
        n_min = len([r for r in d.weights if r not in d.optional])
        if len(node.inputs) < d.n_inputs or not n_min <= n_const <= len(d.weights):
            raise GraphError(
                f"{node.op} '{node.name}' takes {d.n_inputs} activation input(s) then "
                f"{', '.join(d.weights) or 'no constants'}; got {len(node.inputs)} inputs"
            )
        if len(node.outputs) != 1:
            raise GraphError(f"{node.op} '{node.name}' has one output, got {len(node.outputs)}")
        acts = [self.tensors[t] for t in node.inputs[: d.n_inputs]]
        for t in acts:
            if t.is_const:
                raise GraphError(f"{node.op} '{node.name}': input {t.name!r} must be an activation, not a constant")
        w = self.weights(node)
        for role, t in w.items():
            if not t.is_const:
                raise GraphError(f"{node.op} '{node.name}': {role} {t.name!r} must be a constant")
        shape = d.infer(node.name, [t.shape for t in acts], {r: t.shape for r, t in w.items()}, node.attrs)
        out_name = node.outputs[0]
        if out_name not in self.tensors:
            self.tensors[out_name] = Tensor(out_name, shape, self._output_dtype(node, acts))
        else:
            self.tensors[out_name].shape = shape
        return shape

    @staticmethod
    def _output_dtype(node: Node, acts: list[Tensor]) -> str:
        if node.op == "Quantize":
            return "int8"
        if node.op == "Dequantize":
            return "float32"
        return acts[0].dtype

    def validate(self) -> "Graph":
        """Check order, shapes, dtypes and quantization; raise a :class:`GraphError` on the first fault."""
        if not self.inputs or not self.outputs:
            raise GraphError(f"graph '{self.name}' needs at least one input and one output")
        defined = set(self.inputs) | {n for n, t in self.tensors.items() if t.is_const}
        for node in self.nodes:
            for t in node.inputs:
                if t not in defined:
                    raise GraphError(
                        f"node '{node.name}' reads {t!r} before anything writes it; nodes must be "
                        f"in topological order"
                    )
            node.attrs = op_def(node.op).normalize(dict(node.attrs))
            self._infer_node(node)
            self._check_dtypes(node)
            for t in node.outputs:
                if t in defined:
                    raise GraphError(f"tensor {t!r} is written twice (node '{node.name}')")
                defined.add(t)
        for t in self.outputs:
            if t not in defined:
                raise GraphError(f"graph output {t!r} is never computed")
        return self

    def _check_dtypes(self, node: Node) -> None:
        d = op_def(node.op)
        acts = [self.tensors[t] for t in node.inputs[: d.n_inputs]]
        out = self.tensors[node.outputs[0]]
        if node.op == "Quantize":
            if acts[0].dtype != "float32":
                raise DTypeError(f"Quantize '{node.name}' takes float32 input")
        elif node.op == "Dequantize":
            if acts[0].dtype != "int8":
                raise DTypeError(f"Dequantize '{node.name}' takes int8 input")
        elif any(t.dtype != acts[0].dtype for t in acts) or out.dtype != acts[0].dtype:
            raise DTypeError(f"{node.op} '{node.name}': inputs and output must share one dtype")
        int8 = any(t.dtype == "int8" for t in acts + [out])
        if not int8:
            return
        if not d.int8:
            raise QuantizationError(
                f"{node.op} '{node.name}' has no int8 kernel; fold it before quantizing "
                f"(tinyml_lab.passes.fold_batchnorm)"
            )
        for t in [t for t in acts + [out] if t.dtype == "int8"]:
            if t.quant is None:
                raise QuantizationError(f"int8 tensor {t.name!r} has no quantization parameters")
            if t.quant.per_channel:
                raise QuantizationError(f"activation {t.name!r} must be quantized per tensor")
        w = self.weights(node)
        if "weight" in w:
            wt = w["weight"]
            if wt.dtype != "int8" or wt.quant is None:
                raise QuantizationError(f"{node.op} '{node.name}': weight must be int8 with quantization parameters")
            if np.any(wt.quant.zero_point != 0):
                raise QuantizationError(f"{node.op} '{node.name}': int8 weights are symmetric (zero point 0)")
            if "bias" in w and w["bias"].dtype != "int32":
                raise QuantizationError(f"{node.op} '{node.name}': an int8 layer's bias must be int32")

    # ------------------------------------------------------------------ figures
    def layer_stats(self) -> list[LayerStats]:
        """Params, MACs and output bytes of every node, per sample."""
        out = []
        for node in self.nodes:
            d = op_def(node.op)
            w = self.weights(node)
            ins = [self.tensors[t].shape for t in node.inputs[: d.n_inputs]]
            o = self.tensors[node.outputs[0]]
            out.append(
                LayerStats(
                    node.name, node.op, o.shape,
                    sum(t.size for t in w.values()),
                    d.macs(ins, {r: t.shape for r, t in w.items()}, o.shape, node.attrs),
                    o.nbytes,
                )
            )
        return out

    @property
    def params(self) -> int:
        return sum(s.params for s in self.layer_stats())

    @property
    def macs(self) -> int:
        return sum(s.macs for s in self.layer_stats())

    @property
    def weight_bytes(self) -> int:
        """Bytes of every constant tensor (weights, biases, BatchNorm statistics)."""
        return sum(t.nbytes for t in self.tensors.values() if t.is_const)

    @property
    def activation_bytes(self) -> int:
        """Bytes of every activation tensor of one sample, inputs included (no reuse)."""
        return sum(t.nbytes for t in self.tensors.values() if not t.is_const)

    def copy(self) -> "Graph":
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        return (
            f"Graph('{self.name}', {len(self.nodes)} nodes, input {self.input_shape() if self.inputs else None}, "
            f"{self.params:,} params, {self.macs:,} MACs)"
        )

    def summary(self) -> str:
        """A plain-text table of the layers, the one ``tinyml-lab profile`` prints."""
        from .report import format_table

        rows = [
            [s.name, s.op, "x".join(map(str, s.output_shape)), f"{s.params:,}", f"{s.macs:,}",
             f"{s.activation_bytes:,}"]
            for s in self.layer_stats()
        ]
        return format_table(["layer", "op", "output", "params", "MACs", "act bytes"], rows,
                            align="llrrrr")

    # ------------------------------------------------------------------ files
    def to_json(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "metadata": self.metadata,
            "tensors": [
                {
                    "name": t.name,
                    "shape": list(t.shape),
                    "dtype": t.dtype,
                    "quant": None if t.quant is None else t.quant.to_json(),
                    "const": t.is_const,
                }
                for t in self.tensors.values()
            ],
            "nodes": [
                {"name": n.name, "op": n.op, "inputs": n.inputs, "outputs": n.outputs,
                 "attrs": _attrs_to_json(n.attrs)}
                for n in self.nodes
            ],
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the graph and its weights to one ``.npz`` file, atomically."""
        from . import __version__

        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
        target = check_file(path, "model")  # fail before any work
        self.validate()
        meta = self.to_json()
        meta["tinyml_lab_version"] = __version__
        arrays = {f"const/{i}": t.data for i, t in enumerate(self.tensors.values()) if t.is_const}
        arrays["__graph__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        return write_atomic(target, buffer.getvalue(), "model")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Graph":
        """Read a graph written by :meth:`save`; a corrupt or foreign file raises :class:`FileFormatError`."""
        path = Path(path)
        if not path.is_file():
            raise FileFormatError(f"no such model file: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                if "__graph__" not in z.files:
                    raise FileFormatError(f"{path} is an .npz file but not a tinyml-lab graph (no __graph__ entry)")
                meta = json.loads(z["__graph__"].tobytes().decode())
                arrays = {k: z[k] for k in z.files if k.startswith("const/")}
        except FileFormatError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError, UnicodeDecodeError) as exc:
            raise FileFormatError(f"{path} is not a readable tinyml-lab graph file ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise FileFormatError(f"{path} is not a tinyml-lab graph file")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise FileFormatError(
                f"{path} has graph format version {version}; this tinyml-lab reads version "
                f"{FORMAT_VERSION}. Re-save it with the tinyml-lab that wrote it, or upgrade"
            )
        try:
            g = cls(meta["name"])
            g.metadata = meta.get("metadata", {})
            for i, t in enumerate(meta["tensors"]):
                data = arrays[f"const/{i}"] if t["const"] else None
                q = None if t["quant"] is None else QuantParams.from_json(t["quant"])
                g.tensors[t["name"]] = Tensor(t["name"], tuple(t["shape"]), t["dtype"], q, data)
            for n in meta["nodes"]:
                g.nodes.append(Node(n["name"], n["op"], list(n["inputs"]), list(n["outputs"]),
                                    _attrs_from_json(n["attrs"])))
            g.inputs, g.outputs = list(meta["inputs"]), list(meta["outputs"])
        except (KeyError, TypeError, IndexError) as exc:
            raise FileFormatError(f"{path}: the graph description is incomplete ({exc!r})") from None
        try:
            g.validate()
        except TinyMLError as exc:
            raise FileFormatError(f"{path}: the stored graph is inconsistent: {exc}") from None
        return g


def _attrs_to_json(attrs: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in attrs.items()}


def _attrs_from_json(attrs: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in attrs.items()}


# --------------------------------------------------------------------------- builder

class GraphBuilder:
    """Build a float graph layer by layer; each method returns its output tensor's name.

    Weights not given are drawn He-normal from the builder's seeded generator;
    biases start at zero; BatchNorm starts as the identity (gamma 1, beta 0,
    mean 0, var 1).

    >>> b = GraphBuilder("tiny", seed=0)
    >>> x = b.input((8, 8, 1))
    >>> x = b.conv2d(x, 4, 3, padding="same", activation="relu")
    >>> x = b.dense(b.flatten(x), 10)
    >>> g = b.build(b.softmax(x))
    """

    def __init__(self, name: str = "graph", seed: int = 0):
        self.graph = Graph(name)
        self.rng = np.random.default_rng(seed)
        self._counts: dict[str, int] = {}

    def _name(self, op: str, name: str | None) -> str:
        if name is not None:
            return name
        base = {"Conv2D": "conv", "DepthwiseConv2D": "dwconv", "Dense": "dense", "AvgPool2D": "avgpool",
                "MaxPool2D": "maxpool", "GlobalAvgPool": "gap", "BatchNorm": "bn"}.get(op, op.lower())
        i = self._counts.get(base, 0)
        while (f"{base}{i}" if i else base) in self.graph.tensors:  # skip names given explicitly
            i += 1
        self._counts[base] = i + 1
        return f"{base}{i}" if i else base

    def _const(self, name: str, data: np.ndarray) -> str:
        return self.graph.add_tensor(Tensor(name, data.shape, "float32", data=data))

    def _node(self, op: str, inputs: Sequence[str], name: str | None, **attrs: Any) -> str:
        node_name = self._name(op, name)
        try:
            self.graph.add_node(Node(node_name, op, list(inputs), [node_name], attrs))
        except TinyMLError:
            for t in inputs:  # drop the weights this layer created, so a retry can reuse its name
                if t.startswith(f"{node_name}/"):
                    self.graph.tensors.pop(t, None)
            raise
        return node_name

    def _he(self, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
        return (self.rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)

    def _shape(self, x: str) -> Shape:
        return self.graph.tensor(x).shape

    # ------------------------------------------------------------------ layers
    def input(self, shape: Sequence[int], name: str = "input") -> str:
        if not shape or any(int(v) <= 0 for v in shape):
            raise ShapeError(f"input shape must be positive sizes without the batch, got {tuple(shape)}")
        self.graph.add_tensor(Tensor(name, tuple(shape), "float32"))
        self.graph.inputs.append(name)
        return name

    def conv2d(self, x: str, filters: int, kernel_size: int | Sequence[int], strides: Any = 1,
               padding: Any = "valid", dilation: Any = 1, activation: str | None = None,
               use_bias: bool = True, weight: np.ndarray | None = None, bias: np.ndarray | None = None,
               name: str | None = None) -> str:
        """2-D convolution, ``y[o] = sum_{ky,kx,i} w[o,ky,kx,i] x[s*oy+d*ky, s*ox+d*kx, i] + b[o]``."""
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        c_in = self._shape(x)[-1]
        name = self._name("Conv2D", name)
        w = weight if weight is not None else self._he((filters, kh, kw, c_in), kh * kw * c_in)
        ins = [x, self._const(f"{name}/weight", np.asarray(w, np.float32))]
        if use_bias:
            ins.append(self._const(f"{name}/bias", np.zeros(filters, np.float32) if bias is None
                                   else np.asarray(bias, np.float32)))
        return self._node("Conv2D", ins, name, strides=strides, padding=padding, dilation=dilation,
                          activation=activation)

    def depthwise_conv2d(self, x: str, kernel_size: int | Sequence[int], strides: Any = 1,
                         padding: Any = "valid", dilation: Any = 1, activation: str | None = None,
                         use_bias: bool = True, weight: np.ndarray | None = None,
                         bias: np.ndarray | None = None, name: str | None = None) -> str:
        """Depthwise convolution, ``y[c] = sum_{ky,kx} w[0,ky,kx,c] x[s*oy+d*ky, s*ox+d*kx, c] + b[c]``."""
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        c = self._shape(x)[-1]
        name = self._name("DepthwiseConv2D", name)
        w = weight if weight is not None else self._he((1, kh, kw, c), kh * kw)
        ins = [x, self._const(f"{name}/weight", np.asarray(w, np.float32))]
        if use_bias:
            ins.append(self._const(f"{name}/bias", np.zeros(c, np.float32) if bias is None
                                   else np.asarray(bias, np.float32)))
        return self._node("DepthwiseConv2D", ins, name, strides=strides, padding=padding,
                          dilation=dilation, activation=activation)

    def dense(self, x: str, units: int, activation: str | None = None, use_bias: bool = True,
              weight: np.ndarray | None = None, bias: np.ndarray | None = None,
              name: str | None = None) -> str:
        """Fully connected layer, ``y = W x + b`` with ``W`` of shape ``(units, C_in)``."""
        shape = self._shape(x)
        if len(shape) != 1:
            raise ShapeError(f"dense needs a 1-D input (batch left out), got {shape}; flatten first")
        name = self._name("Dense", name)
        w = weight if weight is not None else self._he((units, shape[0]), shape[0])
        ins = [x, self._const(f"{name}/weight", np.asarray(w, np.float32))]
        if use_bias:
            ins.append(self._const(f"{name}/bias", np.zeros(units, np.float32) if bias is None
                                   else np.asarray(bias, np.float32)))
        return self._node("Dense", ins, name, activation=activation)

    def batch_norm(self, x: str, epsilon: float = 1e-3, gamma: np.ndarray | None = None,
                   beta: np.ndarray | None = None, mean: np.ndarray | None = None,
                   var: np.ndarray | None = None, name: str | None = None) -> str:
        """``y = gamma (x - mean) / sqrt(var + eps) + beta`` over the last axis."""
        c = self._shape(x)[-1]
        name = self._name("BatchNorm", name)
        vals = {"gamma": gamma if gamma is not None else np.ones(c),
                "beta": beta if beta is not None else np.zeros(c),
                "mean": mean if mean is not None else np.zeros(c),
                "var": var if var is not None else np.ones(c)}
        ins = [x] + [self._const(f"{name}/{k}", np.asarray(v, np.float32)) for k, v in vals.items()]
        return self._node("BatchNorm", ins, name, epsilon=epsilon)

    def avg_pool2d(self, x: str, pool_size: Any, strides: Any = None, padding: Any = "valid",
                   name: str | None = None) -> str:
        return self._node("AvgPool2D", [x], name, pool_size=pool_size,
                          strides=pool_size if strides is None else strides, padding=padding)

    def max_pool2d(self, x: str, pool_size: Any, strides: Any = None, padding: Any = "valid",
                   name: str | None = None) -> str:
        return self._node("MaxPool2D", [x], name, pool_size=pool_size,
                          strides=pool_size if strides is None else strides, padding=padding)

    def global_avg_pool(self, x: str, name: str | None = None) -> str:
        return self._node("GlobalAvgPool", [x], name)

    def add(self, a: str, b: str, activation: str | None = None, name: str | None = None) -> str:
        return self._node("Add", [a, b], name, activation=activation)

    def relu(self, x: str, name: str | None = None) -> str:
        return self._node("ReLU", [x], name)

    def relu6(self, x: str, name: str | None = None) -> str:
        return self._node("ReLU6", [x], name)

    def reshape(self, x: str, shape: Sequence[int], name: str | None = None) -> str:
        return self._node("Reshape", [x], name, shape=tuple(shape))

    def flatten(self, x: str, name: str | None = None) -> str:
        return self._node("Flatten", [x], name)

    def softmax(self, x: str, beta: float = 1.0, name: str | None = None) -> str:
        return self._node("Softmax", [x], name, beta=beta)

    def pad(self, x: str, pads: Sequence[int], name: str | None = None) -> str:
        return self._node("Pad", [x], name, pads=tuple(pads))

    def build(self, outputs: str | Iterable[str]) -> Graph:
        self.graph.outputs = [outputs] if isinstance(outputs, str) else list(outputs)
        return self.graph.validate()


__all__ = ["QuantParams", "Tensor", "Node", "Graph", "GraphBuilder", "LayerStats", "OPS"]
