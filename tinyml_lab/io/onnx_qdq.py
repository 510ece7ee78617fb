"""The ONNX importer's QDQ part: quantization parameters from QuantizeLinear / DequantizeLinear,
quantized constants, and the int8 graph that follows the TFLite int8 spec.

See :mod:`tinyml_lab.io.onnx` (section "QDQ models") for the rules.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelImportError, QuantizationError
from ..graph import Graph, Node, QuantParams
from ..kernels.fixedpoint import SOFTMAX_OUTPUT_SCALE, SOFTMAX_OUTPUT_ZERO_POINT
from ..kernels.reference import round_half_away_np
from .onnx_common import NodeProblem, QConst, Value, dequantize_codes, listing


class QDQConverters:
    """Mixin of :class:`~.onnx_import.Importer`: quantization."""

    def op_DequantizeLinear(self, node, a: dict) -> None:
        x, scale = node.input[0], self.const(node.input[1], "scale")
        zp = self.const(node.input[2], "zero_point") if len(node.input) > 2 and node.input[2] else None
        if a.get("block_size", 0):
            raise NodeProblem("blocked quantization (block_size) is not supported")
        if x in self.consts:  # a quantized constant: fold it, keep the codes
            codes = self.consts[x]
            axis = a.get("axis", 1) if np.asarray(scale).size > 1 else None
            z = np.zeros_like(np.asarray(scale), dtype=np.int64) if zp is None else np.asarray(zp, np.int64)
            real = dequantize_codes(codes, scale, z, axis)
            self.consts[node.output[0]] = real
            self.qconsts[node.output[0]] = QConst(np.asarray(codes), np.asarray(scale, np.float32).ravel(),
                                                   z.ravel(), None if axis is None else int(axis) % codes.ndim,
                                                   str(codes.dtype))
            return
        v = self.value(x)
        self.record(v, scale, zp, a, "DequantizeLinear")
        self.define(node.output[0], self.same_layout(v, v.ir, codes=False))

    def op_QuantizeLinear(self, node, a: dict) -> None:
        v = self.value(node.input[0])
        scale = self.const(node.input[1], "y_scale")
        zp = self.const(node.input[2], "y_zero_point") if len(node.input) > 2 and node.input[2] else None
        if a.get("block_size", 0):
            raise NodeProblem("blocked quantization (block_size) is not supported")
        if zp is None and a.get("output_dtype", 0) not in (0, 2, 3):
            raise NodeProblem("only int8 and uint8 codes are supported")
        self.record(v, scale, zp, a, "QuantizeLinear")
        self.define(node.output[0], self.same_layout(v, v.ir, codes=True))

    def record(self, v: Value, scale, zp, a: dict, op: str) -> None:
        """Parameters of IR tensor ``v.ir`` (uint8 codes moved to int8), checked against earlier ones."""
        s = np.asarray(scale, np.float32).ravel()
        if s.size != 1:
            raise NodeProblem(f"per-axis {op} of an activation; int8 activations are quantized per tensor")
        if zp is None:
            z, dtype = 0, np.dtype(np.uint8)
        else:
            z, dtype = int(np.asarray(zp).ravel()[0]), np.asarray(zp).dtype
        if dtype == np.uint8:
            z -= 128
        elif dtype != np.int8:
            raise NodeProblem(f"{dtype} codes; only int8 and uint8 activations are supported")
        q = QuantParams(s[0], z)
        old = self.params.get(v.ir)
        if old is not None and old != q:
            raise NodeProblem(f"tensor {v.ir!r} is quantized twice, with {old} and {q}")
        self.params[v.ir] = q

    def is_u8(self, name: str) -> bool:
        for n in self.onnx_graph.node:
            if name in n.output and n.op_type == "QuantizeLinear" and len(n.input) > 2 and n.input[2]:
                return np.asarray(self.consts.get(n.input[2], np.int8(0))).dtype == np.uint8
        for inp in self.onnx_graph.input:
            if inp.name == name:
                return inp.type.tensor_type.elem_type == 2  # UINT8
        return False

    def note_weight(self, ir_name: str, wq: QConst, ir_axis: int) -> None:
        if wq.dtype not in ("int8",) or np.any(wq.zero_point != 0):
            raise NodeProblem(
                f"its weight is {wq.dtype} with zero point(s) {np.unique(wq.zero_point)[:4].tolist()}; the TFLite "
                f"int8 spec needs symmetric int8 weights (zero point 0): re-quantize the model with symmetric "
                f"int8 weights (e.g. onnxruntime quantize_static with weight_type=QInt8)")
        self.weight_q[ir_name] = QuantParams(wq.scale, 0, None if wq.axis is None else ir_axis)

    def note_bias(self, ir_name: str, onnx_name: str) -> None:
        bq = self.qconsts.get(onnx_name)
        if bq is not None:
            self.bias_q[ir_name] = (bq.codes.astype(np.int64).ravel(), bq.scale.astype(np.float64))

    def to_int8(self, g: Graph) -> Graph:
        from ..passes import fuse_activations
        from ..quant.convert import KEEPS_SCALE, LINEAR, build_int8

        problems: list[tuple[str, str]] = []
        for node in g.nodes:
            if node.op == "BatchNorm":
                problems.append((node.name, "a BatchNorm in a QDQ model; int8 has no BatchNorm kernel (fold it into "
                                            "the convolution before quantizing)"))
            if node.op in LINEAR and g.weights(node)["weight"].name not in self.weight_q:
                problems.append((node.name, "its weight is float; a QDQ model must quantize every weight"))
        p = fuse_activations(g)
        for node in p.nodes:
            out, src = node.outputs[0], node.inputs[0]
            if node.op in KEEPS_SCALE and out in self.params and src in self.params and self.params[out] != self.params[src]:
                problems.append((node.name, f"{node.op} with input {self.params[src]} and output {self.params[out]}; "
                                            f"the int8 {node.op} keeps its input's scale and zero point"))
            if node.op == "Softmax" and out in self.params:
                q = self.params[out]
                if not (abs(float(q.scale[0]) - SOFTMAX_OUTPUT_SCALE) < 1e-9
                        and int(q.zero_point[0]) == SOFTMAX_OUTPUT_ZERO_POINT):
                    if out in p.outputs:  # nothing reads the codes: give them the int8 softmax's grid
                        self.notes.append(f"{node.name}: softmax output re-quantized from {q} to scale 1/256, zero "
                                          f"point -128 (the int8 softmax's fixed output); compare in real values")
                        del self.params[out]
                    else:
                        problems.append((node.name, f"softmax output quantized with {q} and read by other layers; "
                                                    f"the int8 softmax gives scale 1/256 and zero point -128"))
        need = list(p.inputs) + [n.outputs[0] for n in p.nodes if n.op not in KEEPS_SCALE + ("Softmax",)]
        problems += [(t, "this tensor has no QuantizeLinear/DequantizeLinear; a QDQ model must quantize every "
                         "activation") for t in need if t not in self.params]
        if problems:
            raise ModelImportError(listing(
                f"QDQ model '{g.name}' does not fit the TFLite int8 spec ({len(problems)} problem(s))", problems),
                problems)
        resolved = dict(self.params)  # with the parameters that scale-keeping ops pass on
        for node in p.nodes:
            if node.op in KEEPS_SCALE and node.inputs[0] in resolved:
                resolved.setdefault(node.outputs[0], resolved[node.inputs[0]])
        bias_codes = {}
        for name, (codes, s_b) in self.bias_q.items():
            node = next(n for n in p.nodes if name in n.inputs)
            w = p.weights(node)["weight"].name
            expected = np.float64(resolved[node.inputs[0]].scale[0]) * self.weight_q[w].scale.astype(np.float64)
            if s_b.size == expected.size or s_b.size == 1:
                if np.allclose(s_b, expected, rtol=1e-6, atol=0):
                    bias_codes[name] = codes
                    continue
            self.notes.append(f"{node.name}: bias requantized to scale s_in s_w")

        def quantize_weight(node: Node, w: np.ndarray, axis) -> tuple[np.ndarray, QuantParams]:
            q = self.weight_q[p.weights(node)["weight"].name]
            s = q.scale.astype(np.float64)
            if q.axis is not None:
                shape = [1] * w.ndim
                shape[q.axis] = -1
                s = s.reshape(shape)
            codes = round_half_away_np(w.astype(np.float64) / s)
            if codes.min() < -128 or codes.max() > 127:
                raise QuantizationError(f"{node.name}: weight codes outside int8")
            return codes.astype(np.int8), q

        try:
            q = build_int8(p, self.params, quantize_weight, per_channel=True, bias_codes=bias_codes)
        except QuantizationError as exc:
            raise ModelImportError(f"QDQ model '{g.name}': {exc}", [(g.name, str(exc))]) from None
        q.metadata = dict(q.metadata, weight_bits={n.name: 8 for n in q.nodes if n.op in LINEAR})
        q.metadata["onnx"] = dict(q.metadata["onnx"], notes=self.notes,
                                  input_codes={t: ("uint8 - 128" if self.is_u8(t) else "int8") for t in q.inputs})
        return q
