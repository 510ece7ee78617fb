"""Import an int8 ``.tflite`` model into the graph IR.

A model made elsewhere (the TensorFlow Lite converter, another tool, or
:func:`tinyml_lab.export.tflite.to_tflite`) can then be profiled, planned,
simulated and run like any graph of the book:

>>> from tinyml_lab.io.tflite import load_tflite      # doctest: +SKIP
>>> g = load_tflite("kws.tflite")                     # doctest: +SKIP
>>> g.summary(); tinyml_lab.memory.plan(g)            # doctest: +SKIP

Operators read (the set :mod:`tinyml_lab.export.tflite` writes):

======================  ==========================================================
TFLite                  IR
======================  ==========================================================
CONV_2D                 Conv2D (``SAME``/``VALID``, strides, dilation)
DEPTHWISE_CONV_2D       DepthwiseConv2D (depth multiplier 1)
FULLY_CONNECTED         Dense (a ``Flatten`` first when the input is not 2-D)
AVERAGE_POOL_2D         AvgPool2D
MAX_POOL_2D             MaxPool2D
MEAN (axes 1, 2)        GlobalAvgPool (then a Reshape to ``(1, 1, C)`` if ``keep_dims``)
ADD                     Add (same shapes, no broadcasting)
RELU, RELU6             ReLU, ReLU6
RESHAPE                 Reshape, or Flatten when the result is a vector
SOFTMAX                 Softmax
PAD, PADV2              Pad (H and W only; PADV2 only with the zero point as value)
QUANTIZE, DEQUANTIZE    Quantize (float32 -> int8), Dequantize (int8 -> float32)
======================  ==========================================================

Fused activations NONE, RELU and RELU6 are read into the ``activation``
attribute. Activations must be int8 (float32 only into QUANTIZE and out of
DEQUANTIZE), weights int8 and symmetric, biases int32; the batch dimension
(which must be 1) is dropped from every activation's shape. Tensor names are
kept; each node is named after its output tensor. An ``OfflineMemoryAllocation``
metadata entry is read into ``graph.metadata["offline_offsets"]``.

Errors: a file that is not a TFLite flatbuffer, or is truncated, raises
:class:`~tinyml_lab.errors.FileFormatError`; a model using operators outside
this set raises :class:`~tinyml_lab.errors.UnknownOpError` listing all of
them; float, uint8 or int16 models raise :class:`~tinyml_lab.errors.FileFormatError`
saying so.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FileFormatError, TinyMLError, UnknownOpError
from ..graph import Graph, Node, QuantParams, Tensor

FILE_IDENTIFIER = b"TFL3"
OFFLINE_PLAN_METADATA = "OfflineMemoryAllocation"

SUPPORTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN", "ADD",
             "RELU", "RELU6", "RESHAPE", "SOFTMAX", "PAD", "PADV2", "QUANTIZE", "DEQUANTIZE")

_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8", 17: "int4"}
_NUMPY = {"float32": "<f4", "float16": "<f2", "int32": "<i4", "uint8": "u1", "int64": "<i8", "int16": "<i2",
          "int8": "i1"}


# --------------------------------------------------------------------------- public API

def load_tflite(path: str | os.PathLike) -> "Graph":
    """Read an int8 ``.tflite`` file into a validated :class:`~tinyml_lab.graph.Graph` named after the file.

    Raises:
        FileFormatError: no such file, not a TFLite model, truncated, or not int8.
        UnknownOpError: operators the IR does not have (all of them are named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"no such TFLite model file: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FileFormatError(f"cannot read {path}: {exc}") from None
    return read_tflite(data, name=path.stem, source=str(path))


def read_tflite(data: bytes, name: str = "model", source: str = "the data") -> Graph:
    """Parse TFLite flatbuffer bytes into a graph (see :func:`load_tflite`)."""
    if len(data) < 8 or bytes(data[4:8]) != FILE_IDENTIFIER:
        raise FileFormatError(
            f"{source} is not a TFLite model: it lacks the 'TFL3' flatbuffer identifier"
            + (" (it is shorter than a flatbuffer header)" if len(data) < 8 else "")
        )
    try:
        import tflite
    except ImportError as exc:  # depends on the environment
        raise TinyMLError(f"reading .tflite files needs the tflite package ({exc}); "
                          f"pip install 'tinyml-lab[tflite]'") from None
    try:
        model = tflite.Model.GetRootAs(data, 0)
        return _Reader(model, bytes(data), name, source).read()
    except TinyMLError:
        raise
    except (IndexError, struct.error, ValueError, TypeError, UnicodeDecodeError, AttributeError) as exc:
        raise FileFormatError(
            f"{source} is a truncated or corrupt TFLite model ({type(exc).__name__}: {exc})"
        ) from None


# --------------------------------------------------------------------------- reading

class _Reader:
    def __init__(self, model: Any, data: bytes, name: str, source: str):
        import tflite

        self.tfl = tflite
        self.m = model
        self.data = data
        self.name = name
        self.source = source
        self.op_names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        self.g = Graph(name)
        self.names: dict[int, str] = {}  # TFLite tensor index -> IR tensor name
        self.taken: set[str] = set()

    def fail(self, msg: str) -> FileFormatError:
        return FileFormatError(f"{self.source}: {msg}")

    # ------------------------------------------------------------------ the model
    def read(self) -> Graph:
        m = self.m
        if m.Version() != 3:
            raise self.fail(f"TFLite schema version {m.Version()}; this importer reads version 3")
        if m.SubgraphsLength() != 1:
            raise self.fail(f"{m.SubgraphsLength()} subgraphs; the importer reads single-subgraph models "
                            f"(no control flow)")
        self.sg = m.Subgraphs(0)
        sg_name = self.text(self.sg.Name())
        if sg_name and sg_name != "main":  # the converter names its subgraph "main"; ours carry the graph's name
            self.g.name = sg_name
        ops = [self.sg.Operators(i) for i in range(self.sg.OperatorsLength())]
        codes = [self.op_code(op) for op in ops]
        unsupported: dict[str, int] = {}
        for c in codes:
            if c not in SUPPORTED:
                unsupported[c] = unsupported.get(c, 0) + 1
        if unsupported:
            listed = ", ".join(f"{k} (x{v})" if v > 1 else k for k, v in unsupported.items())
            raise UnknownOpError(
                f"{self.source} uses operator(s) the IR does not have: {listed}; the importer reads "
                f"{', '.join(SUPPORTED)}"
            )
        self.check_dtypes(ops, codes)
        self.g.inputs = [self.activation(self.sg.Inputs(i)) for i in range(self.sg.InputsLength())]
        for op, code in zip(ops, codes):
            getattr(self, f"op_{code.lower()}")(op)
        self.g.outputs = [self.names[self.sg.Outputs(i)] for i in range(self.sg.OutputsLength())]
        self.g.metadata = {"source": "tflite", "description": self.text(m.Description())}
        offsets = self.offline_offsets()
        if offsets:
            self.g.metadata["offline_offsets"] = offsets
        try:
            return self.g.validate()
        except TinyMLError as exc:
            raise self.fail(f"the model does not form a valid int8 graph: {exc}") from None

    def op_code(self, op: Any) -> str:
        oc = self.m.OperatorCodes(op.OpcodeIndex())
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if code == self.tfl.BuiltinOperator.CUSTOM:
            return f"CUSTOM({self.text(oc.CustomCode())})"
        return self.op_names.get(code, f"BUILTIN_{code}")

    @staticmethod
    def text(b: bytes | None) -> str:
        return b.decode("utf-8", errors="replace") if b else ""

    def check_dtypes(self, ops: list, codes: list[str]) -> None:
        """Activations are int8; float32 only into QUANTIZE and out of DEQUANTIZE."""
        float_ok: set[int] = set()
        for op, code in zip(ops, codes):
            if code == "QUANTIZE":
                float_ok.add(op.Inputs(0))
            elif code == "DEQUANTIZE":
                float_ok.add(op.Outputs(0))
        for op, code in zip(ops, codes):
            for i in [op.Inputs(j) for j in range(op.InputsLength())] + [op.Outputs(0)]:
                if i < 0 or self.is_const(i):
                    continue
                dt = self.dtype(i)
                if dt == "int8" or (dt == "float32" and i in float_ok):
                    continue
                kind = "a float model" if dt == "float32" else f"{dt} activations"
                raise self.fail(
                    f"tensor {self.tensor_name(i)!r} ({code}) is {dt}: this is {kind}; the importer reads "
                    f"int8 models (full-integer quantization, float32 only at QUANTIZE/DEQUANTIZE edges)"
                )

    # ------------------------------------------------------------------ tensors
    def tensor_name(self, i: int) -> str:
        return self.text(self.sg.Tensors(i).Name()) or f"tensor_{i}"

    def dtype(self, i: int) -> str:
        t = self.sg.Tensors(i).Type()
        return _DTYPES.get(t, f"type {t}")

    def buffer_bytes(self, i: int) -> bytes:
        t = self.sg.Tensors(i)
        bi = t.Buffer()
        if bi <= 0 or bi >= self.m.BuffersLength():
            return b""
        buf = self.m.Buffers(bi)
        if buf.Offset() > 1:  # data stored after the flatbuffer (large models)
            start, size = buf.Offset(), buf.Size()
            if start + size > len(self.data):
                raise self.fail(f"buffer {bi} points past the end of the file: the file is truncated")
            return self.data[start: start + size]
        if buf.DataLength() == 0:
            return b""
        return buf.DataAsNumpy().tobytes()

    def is_const(self, i: int) -> bool:
        return len(self.buffer_bytes(i)) > 0

    def shape(self, i: int) -> tuple[int, ...]:
        t = self.sg.Tensors(i)
        return tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()

    def quant(self, i: int) -> QuantParams | None:
        q = self.sg.Tensors(i).Quantization()
        if q is None or q.ScaleLength() == 0:
            return None
        scale = q.ScaleAsNumpy().astype(np.float32)
        zp = q.ZeroPointAsNumpy().astype(np.int64) if q.ZeroPointLength() else np.zeros(scale.size, np.int64)
        dim = int(q.QuantizedDimension())
        axis = dim if scale.size > 1 or dim != 0 else None  # one channel along axis 3 stays per channel
        return QuantParams(scale, zp, axis)

    def array(self, i: int) -> np.ndarray:
        dt = self.dtype(i)
        if dt not in _NUMPY:
            raise self.fail(f"constant {self.tensor_name(i)!r} has type {dt}, which the importer cannot read")
        raw = self.buffer_bytes(i)
        shape = self.shape(i)
        itemsize = np.dtype(_NUMPY[dt]).itemsize
        if len(raw) != int(np.prod(shape, dtype=np.int64)) * itemsize:
            raise self.fail(f"constant {self.tensor_name(i)!r} holds {len(raw)} bytes, its shape {shape} needs "
                            f"{int(np.prod(shape)) * itemsize}: the file is truncated or corrupt")
        return np.frombuffer(raw, dtype=_NUMPY[dt]).reshape(shape)

    def fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name

    def activation(self, i: int) -> str:
        """IR name of activation tensor ``i``, created (batch dropped) on first use."""
        if i in self.names:
            return self.names[i]
        shape = self.shape(i)
        if not shape:
            raise self.fail(f"activation {self.tensor_name(i)!r} is a scalar; the IR needs a batch dimension")
        if shape[0] != 1:
            raise self.fail(f"activation {self.tensor_name(i)!r} has batch {shape[0]}; the importer reads "
                            f"batch-1 models")
        name = self.fresh(self.tensor_name(i))
        dt = self.dtype(i)
        q = self.quant(i) if dt == "int8" else None
        if dt == "int8" and q is None:
            raise self.fail(f"int8 tensor {name!r} has no quantization parameters")
        self.g.tensors[name] = Tensor(name, shape[1:], dt, q)
        self.names[i] = name
        return name

    def constant(self, i: int, role: str) -> str:
        if i in self.names:
            return self.names[i]
        if not self.is_const(i):
            raise self.fail(f"the {role} {self.tensor_name(i)!r} is not a constant; the IR needs constant "
                            f"weights and biases")
        name = self.fresh(self.tensor_name(i))
        dt = self.dtype(i)
        if role == "weight" and dt != "int8":
            raise self.fail(f"weight {name!r} is {dt}; the importer reads int8 weights")
        if role == "bias" and dt != "int32":
            raise self.fail(f"bias {name!r} is {dt}; int8 layers take int32 biases")
        q = self.quant(i)
        if role == "weight" and (q is None or np.any(q.zero_point != 0)):
            raise self.fail(f"weight {name!r} must be quantized symmetric (zero point 0), as the int8 spec says")
        self.g.tensors[name] = Tensor(name, self.array(i).shape, dt, q, self.array(i).copy())
        self.names[i] = name
        return name

    def const_ints(self, i: int, what: str) -> np.ndarray:
        if i < 0 or not self.is_const(i):
            raise self.fail(f"the {what} must be a constant tensor")
        return self.array(i).astype(np.int64)

    # ------------------------------------------------------------------ helpers
    def inputs(self, op: Any) -> list[int]:
        return [op.Inputs(j) for j in range(op.InputsLength())]

    def output(self, op: Any) -> str:
        if op.OutputsLength() != 1:
            raise self.fail(f"an operator with {op.OutputsLength()} outputs; the IR's ops have one")
        return self.activation(op.Outputs(0))

    def add_node(self, op_type: str, inputs: list[str], out: str, attrs: dict | None = None) -> None:
        node = Node(self.fresh(out) if out in {n.name for n in self.g.nodes} else out, op_type, inputs, [out],
                    attrs or {})
        self.g.nodes.append(node)

    def options(self, op: Any, cls: Any) -> Any:
        table = op.BuiltinOptions()
        if table is None:
            return None
        o = cls()
        o.Init(table.Bytes, table.Pos)
        return o

    def activation_name(self, code: int, op: str) -> str:
        A = self.tfl.ActivationFunctionType
        names = {A.NONE: "none", A.RELU: "relu", A.RELU6: "relu6"}
        if code not in names:
            other = {v: k for k, v in vars(A).items() if not k.startswith("_")}.get(code, str(code))
            raise UnknownOpError(f"{self.source}: {op} with fused activation {other}; the IR fuses only "
                                 f"RELU and RELU6")
        return names[code]

    def padding(self, code: int) -> str:
        return "same" if code == self.tfl.Padding.SAME else "valid"

    # ------------------------------------------------------------------ operators
    def op_conv_2d(self, op: Any) -> None:
        ins = self.inputs(op)
        o = self.options(op, self.tfl.Conv2DOptions)
        x, w = self.activation(ins[0]), self.constant(ins[1], "weight")
        args = [x, w] + ([self.constant(ins[2], "bias")] if len(ins) > 2 and ins[2] >= 0 else [])
        self.add_node("Conv2D", args, self.output(op), {
            "strides": (o.StrideH(), o.StrideW()), "padding": self.padding(o.Padding()),
            "dilation": (o.DilationHFactor(), o.DilationWFactor()),
            "activation": self.activation_name(o.FusedActivationFunction(), "CONV_2D")})

    def op_depthwise_conv_2d(self, op: Any) -> None:
        ins = self.inputs(op)
        o = self.options(op, self.tfl.DepthwiseConv2DOptions)
        x, w = self.activation(ins[0]), self.constant(ins[1], "weight")
        if self.g.tensors[w].shape[-1] != self.g.tensors[x].shape[-1]:
            raise UnknownOpError(f"{self.source}: DEPTHWISE_CONV_2D with depth multiplier "
                                 f"{o.DepthMultiplier()}; the IR's depthwise convolution has multiplier 1")
        args = [x, w] + ([self.constant(ins[2], "bias")] if len(ins) > 2 and ins[2] >= 0 else [])
        self.add_node("DepthwiseConv2D", args, self.output(op), {
            "strides": (o.StrideH(), o.StrideW()), "padding": self.padding(o.Padding()),
            "dilation": (o.DilationHFactor(), o.DilationWFactor()),
            "activation": self.activation_name(o.FusedActivationFunction(), "DEPTHWISE_CONV_2D")})

    def op_fully_connected(self, op: Any) -> None:
        ins = self.inputs(op)
        o = self.options(op, self.tfl.FullyConnectedOptions)
        x = self.activation(ins[0])
        w = self.constant(ins[1], "weight")
        if len(self.g.tensors[w].shape) != 2:
            raise self.fail(f"FULLY_CONNECTED weight {w!r} is not 2-D")
        out = self.output(op)
        if len(self.g.tensors[x].shape) != 1:
            if o is not None and o.KeepNumDims():
                raise UnknownOpError(f"{self.source}: FULLY_CONNECTED with keep_num_dims on a "
                                     f"{len(self.g.tensors[x].shape) + 1}-D input")
            flat = self.fresh(f"{out}/flatten")
            t = self.g.tensors[x]
            self.g.tensors[flat] = Tensor(flat, (int(np.prod(t.shape)),), t.dtype, t.quant)
            self.add_node("Flatten", [x], flat)
            x = flat
        args = [x, w] + ([self.constant(ins[2], "bias")] if len(ins) > 2 and ins[2] >= 0 else [])
        act = self.activation_name(o.FusedActivationFunction(), "FULLY_CONNECTED") if o is not None else "none"
        self.add_node("Dense", args, out, {"activation": act})

    def _pool(self, op: Any, ir_op: str, name: str) -> None:
        o = self.options(op, self.tfl.Pool2DOptions)
        self.add_node(ir_op, [self.activation(op.Inputs(0))], self.output(op), {
            "pool_size": (o.FilterHeight(), o.FilterWidth()), "strides": (o.StrideH(), o.StrideW()),
            "padding": self.padding(o.Padding()),
            "activation": self.activation_name(o.FusedActivationFunction(), name)})

    def op_average_pool_2d(self, op: Any) -> None:
        self._pool(op, "AvgPool2D", "AVERAGE_POOL_2D")

    def op_max_pool_2d(self, op: Any) -> None:
        self._pool(op, "MaxPool2D", "MAX_POOL_2D")

    def op_mean(self, op: Any) -> None:
        ins = self.inputs(op)
        x = self.activation(ins[0])
        rank = len(self.g.tensors[x].shape) + 1
        axes = sorted({int(a) % rank for a in self.const_ints(ins[1], "MEAN axis").ravel()})
        if rank != 4 or axes != [1, 2]:
            raise UnknownOpError(f"{self.source}: MEAN over axes {axes} of a {rank}-D tensor; the IR's "
                                 f"GlobalAvgPool averages axes 1 and 2 of a 4-D tensor")
        o = self.options(op, self.tfl.ReducerOptions)
        out = self.output(op)
        if o is not None and o.KeepDims():
            mid = self.fresh(f"{out}/mean")
            t = self.g.tensors[out]
            self.g.tensors[mid] = Tensor(mid, (t.shape[-1],), t.dtype, t.quant)
            self.add_node("GlobalAvgPool", [x], mid)
            self.add_node("Reshape", [mid], out, {"shape": self.g.tensors[out].shape})
        else:
            self.add_node("GlobalAvgPool", [x], out)

    def op_add(self, op: Any) -> None:
        ins = self.inputs(op)
        if any(self.is_const(i) for i in ins) or self.shape(ins[0]) != self.shape(ins[1]):
            raise UnknownOpError(f"{self.source}: ADD with broadcasting or a constant operand; the IR's Add "
                                 f"takes two activations of one shape")
        o = self.options(op, self.tfl.AddOptions)
        act = self.activation_name(o.FusedActivationFunction(), "ADD") if o is not None else "none"
        self.add_node("Add", [self.activation(ins[0]), self.activation(ins[1])], self.output(op),
                      {"activation": act})

    def op_relu(self, op: Any) -> None:
        self.add_node("ReLU", [self.activation(op.Inputs(0))], self.output(op))

    def op_relu6(self, op: Any) -> None:
        self.add_node("ReLU6", [self.activation(op.Inputs(0))], self.output(op))

    def op_reshape(self, op: Any) -> None:
        x = self.activation(op.Inputs(0))
        out = self.output(op)
        shape = self.g.tensors[out].shape
        if len(shape) == 1:
            self.add_node("Flatten", [x], out)
        else:
            self.add_node("Reshape", [x], out, {"shape": shape})

    def op_softmax(self, op: Any) -> None:
        o = self.options(op, self.tfl.SoftmaxOptions)
        beta = float(o.Beta()) if o is not None else 1.0
        self.add_node("Softmax", [self.activation(op.Inputs(0))], self.output(op), {"beta": beta})

    def op_pad(self, op: Any) -> None:
        ins = self.inputs(op)
        x = self.activation(ins[0])
        p = self.const_ints(ins[1], "PAD paddings")
        if p.shape != (4, 2) or np.any(p[0] != 0) or np.any(p[3] != 0) or np.any(p < 0):
            raise UnknownOpError(f"{self.source}: PAD of {p.tolist()}; the IR pads height and width of a 4-D "
                                 f"tensor only")
        out = self.output(op)
        if len(ins) > 2 and ins[2] >= 0:  # PADV2: the value must be the code of 0.0
            value = int(self.array(ins[2]).ravel()[0])
            zp = int(self.g.tensors[out].quant.zero_point[0])
            if value != zp:
                raise UnknownOpError(f"{self.source}: PADV2 with value {value}; the IR pads with the zero point "
                                     f"({zp})")
        self.add_node("Pad", [x], out, {"pads": (int(p[1, 0]), int(p[1, 1]), int(p[2, 0]), int(p[2, 1]))})

    op_padv2 = op_pad

    def op_quantize(self, op: Any) -> None:
        if self.dtype(op.Inputs(0)) != "float32":
            raise UnknownOpError(f"{self.source}: QUANTIZE from {self.dtype(op.Inputs(0))} (a requantization); "
                                 f"the IR's Quantize takes float32")
        self.add_node("Quantize", [self.activation(op.Inputs(0))], self.output(op))

    def op_dequantize(self, op: Any) -> None:
        if self.dtype(op.Inputs(0)) != "int8":
            raise UnknownOpError(f"{self.source}: DEQUANTIZE from {self.dtype(op.Inputs(0))}; the IR's "
                                 f"Dequantize takes int8")
        self.add_node("Dequantize", [self.activation(op.Inputs(0))], self.output(op))

    # ------------------------------------------------------------------ metadata
    def offline_offsets(self) -> dict[str, int]:
        for k in range(self.m.MetadataLength()):
            md = self.m.Metadata(k)
            if self.text(md.Name()) != OFFLINE_PLAN_METADATA:
                continue
            buf = self.m.Buffers(md.Buffer())
            raw = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
            words = np.frombuffer(raw[: len(raw) // 4 * 4], dtype="<i4")
            if words.size < 3 or words[2] != self.sg.TensorsLength() or words.size < 3 + words[2]:
                raise self.fail("the OfflineMemoryAllocation metadata does not give one offset per tensor")
            return {self.names[i]: int(words[3 + i]) for i in range(int(words[2]))
                    if words[3 + i] >= 0 and i in self.names}
        return {}


__all__ = ["load_tflite", "read_tflite", "SUPPORTED"]
