"""How much quantization costs: per-layer SQNR and the bytes a model stores.

SQNR, the signal-to-quantization-noise ratio of a tensor ``x`` and its
quantized version ``x_hat``, in decibels:

    SQNR = 10 log10( sum x^2 / sum (x - x_hat)^2 )

Each 1 bit of resolution is worth about 6 dB; an 8-bit tensor that uses its
range well reaches 35-45 dB. :func:`layer_report` gives, for each layer of
an int8 graph, the SQNR of its **weights** (the quantized weights alone, what
per-channel scales improve) and of its **output** on real inputs (the
int8 graph end to end up to that layer against the float graph, so errors of
earlier layers are included: a drop between two rows points at the layer
that causes it).

Sizes (:func:`model_bytes`): a float graph stores 4 bytes per constant; an
int8 graph stores each weight in ``b`` bits packed (``ceil(n b / 8)`` bytes,
``b`` the layer's weight bits, 8 unless ``metadata["weight_bits"]`` says
otherwise), each int32 bias in 4 bytes, and one float32 scale per weight
channel (per tensor: one). Activation parameters (a few per tensor) are left
out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import QuantizationError
from ..graph import Graph
from .convert import LINEAR, check_calibration, quantize_input


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """``10 log10(sum x^2 / sum (x - x_hat)^2)``; ``inf`` when the two are equal."""
    x = np.asarray(reference, np.float64)
    e = x - np.asarray(approx, np.float64)
    noise = float(np.sum(e * e))
    signal = float(np.sum(x * x))
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def _dequantize_const(t) -> np.ndarray:
    from ..train.autodiff import dequantize_constant

    return dequantize_constant(t).astype(np.float64)


@dataclass(frozen=True)
class LayerError:
    """One layer's quantization error: SQNR of its weights and of its output, in dB."""

    name: str
    op: str
    weight_bits: int | None
    weight_sqnr_db: float | None
    output_sqnr_db: float

    def to_json(self) -> dict:
        def num(v: float | None) -> float | None:
            return None if v is None or not math.isfinite(v) else round(v, 3)

        return {"name": self.name, "op": self.op, "weight_bits": self.weight_bits,
                "weight_sqnr_db": num(self.weight_sqnr_db), "output_sqnr_db": num(self.output_sqnr_db)}


def layer_report(float_graph: Graph, int8_graph: Graph, x: np.ndarray, batch_size: int = 256) -> list[LayerError]:
    """Per-layer weight and output SQNR of ``int8_graph`` against ``float_graph`` on inputs ``x``.

    ``float_graph`` is the graph as quantized: BatchNorm folded and
    activations fused (:func:`~tinyml_lab.quant.convert.prepare`), so the
    tensor names match those of the int8 graph. ``x`` holds real values.
    """
    from ..interpreter import Interpreter

    if not int8_graph.is_quantized:
        raise QuantizationError(f"graph '{int8_graph.name}' is not an int8 graph")
    missing = [n.outputs[0] for n in int8_graph.nodes if n.outputs[0] not in float_graph.tensors]
    if missing:
        raise QuantizationError(
            f"the float graph has no tensor(s) {', '.join(missing[:4])}; pass the prepared float graph "
            f"(tinyml_lab.quant.prepare) the int8 graph was made from"
        )
    x = check_calibration(float_graph, x)
    f_it, q_it = Interpreter(float_graph), Interpreter(int8_graph)
    signal: dict[str, float] = {}
    noise: dict[str, float] = {}
    for i in range(0, len(x), batch_size):
        xb = x[i: i + batch_size]
        f_env = f_it.run(xb, return_all=True)
        q_env = q_it.run(quantize_input(int8_graph, xb), return_all=True)
        for node in int8_graph.nodes:
            name = node.outputs[0]
            t = int8_graph.tensors[name]
            ref = f_env[name].astype(np.float64)
            approx = float(t.quant.scale[0]) * (q_env[name].astype(np.float64) - int(t.quant.zero_point[0]))
            signal[name] = signal.get(name, 0.0) + float(np.sum(ref * ref))
            noise[name] = noise.get(name, 0.0) + float(np.sum((ref - approx) ** 2))
    bits = int8_graph.metadata.get("weight_bits", {})
    rows = []
    for node in int8_graph.nodes:
        name = node.outputs[0]
        w_sqnr, w_bits = None, None
        if node.op in LINEAR:
            wq = int8_graph.weights(node)["weight"]
            wf = float_graph.weights(float_graph.node(node.name))["weight"]
            w_sqnr = sqnr_db(wf.data, _dequantize_const(wq))
            w_bits = int(bits.get(node.name, 8))
        s, n = signal[name], noise[name]
        out = math.inf if n == 0 else (-math.inf if s == 0 else 10.0 * math.log10(s / n))
        rows.append(LayerError(node.name, node.op, w_bits, w_sqnr, out))
    return rows


def format_layer_report(rows: list[LayerError]) -> str:
    """The rows as an aligned table."""
    from ..report import format_table

    def db(v: float | None) -> str:
        if v is None:
            return "-"
        return "inf" if v == math.inf else f"{v:.1f}"

    return format_table(
        ["layer", "op", "w bits", "weight SQNR dB", "output SQNR dB"],
        [[r.name, r.op, "-" if r.weight_bits is None else r.weight_bits, db(r.weight_sqnr_db), db(r.output_sqnr_db)]
         for r in rows],
        align="llrrr")


def model_bytes(graph: Graph) -> int:
    """Bytes of a graph's constants as stored (see the module docstring for the int8 rule)."""
    if not graph.is_quantized:
        return int(sum(t.nbytes for t in graph.tensors.values() if t.is_const))
    bits = graph.metadata.get("weight_bits", {})
    total = 0
    for node in graph.nodes:
        for role, t in graph.weights(node).items():
            if role == "weight" and t.dtype == "int8":
                b = int(bits.get(node.name, 8))
                total += math.ceil(t.size * b / 8) + 4 * (t.quant.scale.size if t.quant is not None else 1)
            else:
                total += t.nbytes
    return int(total)


__all__ = ["sqnr_db", "LayerError", "layer_report", "format_layer_report", "model_bytes"]
