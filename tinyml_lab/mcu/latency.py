"""Latency of an int8 graph on a microcontroller, op by op, from MACs and bytes moved.

Each node falls into one kind. For a MAC kind (``conv``, ``depthwise``,
``dense``) its cycles are

``cycles = c_mac[kind] * MACs + c_flash * weight bytes + c_op``,

and for the other kinds (``elementwise``, ``pool``, ``softmax``, ``copy``)

``cycles = c_elem[kind] * elements + c_op``,

with ``c_mac`` and ``c_elem`` per core (calibrated on published
measurements of optimized int8 kernels, see :mod:`tinyml_lab.mcu.calibrate`),
``c_flash`` per device (the extra cycles per weight byte streamed from an
external flash; zero for on-chip flash, whose cost the calibration already
holds) and ``c_op`` a per-op overhead. ``elements`` counts what the op
touches: output elements for element-wise ops, window reads
(``outputs x window``) for pooling, bytes for copies. Latency is
``t = cycles / f_clock``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..graph import Graph, Node
from .devices import Core, Device, get_core

MAC_KINDS = ("conv", "depthwise", "dense")
ELEMENT_KINDS = ("elementwise", "pool", "softmax", "copy")

_KIND = {
    "Conv2D": "conv", "DepthwiseConv2D": "depthwise", "Dense": "dense",
    "Add": "elementwise", "ReLU": "elementwise", "ReLU6": "elementwise", "Quantize": "elementwise",
    "Dequantize": "elementwise", "BatchNorm": "elementwise",
    "AvgPool2D": "pool", "MaxPool2D": "pool", "GlobalAvgPool": "pool",
    "Softmax": "softmax", "Reshape": "copy", "Flatten": "copy", "Pad": "copy",
}


def op_kind(op: str) -> str:
    """The cost kind of an IR op (``conv``, ``depthwise``, ``dense``, ``elementwise``, ``pool``, ...)."""
    return _KIND.get(op, "elementwise")


@dataclass(frozen=True)
class Work:
    """What one node asks of the processor, per sample."""

    name: str
    op: str
    kind: str
    macs: int
    elements: int
    weight_bytes: int


def node_work(graph: Graph, node: Node, macs: int) -> Work:
    kind = op_kind(node.op)
    out = graph.tensors[node.outputs[0]]
    x = graph.tensors[node.inputs[0]]
    if node.op in ("AvgPool2D", "MaxPool2D"):
        ph, pw = node.attrs["pool_size"]
        elements = out.size * ph * pw
    elif node.op == "GlobalAvgPool":
        elements = x.size
    elif kind == "copy":
        elements = out.nbytes
    else:
        elements = out.size
    wbytes = sum(t.nbytes for t in graph.weights(node).values())
    return Work(node.name, node.op, kind, int(macs), int(elements), int(wbytes))


def graph_work(graph: Graph) -> list[Work]:
    """:class:`Work` of every node of ``graph``, in execution order."""
    stats = graph.layer_stats()
    return [node_work(graph, n, s.macs) for n, s in zip(graph.nodes, stats)]


def work_cycles(w: Work, core: Core, flash_cycles_per_byte: float = 0.0) -> float:
    """Cycles of one node on ``core`` (see the module docstring for the formula)."""
    if w.kind in MAC_KINDS:
        c = core.cycles_per_mac[w.kind] * w.macs
    else:
        c = core.cycles_per_element[w.kind] * w.elements
    return c + flash_cycles_per_byte * w.weight_bytes + core.op_overhead_cycles


@dataclass(frozen=True)
class LayerCost:
    """Predicted cycles and latency of one node."""

    name: str
    op: str
    kind: str
    macs: int
    cycles: float
    latency_ms: float

    def to_json(self) -> dict:
        return {"name": self.name, "op": self.op, "kind": self.kind, "macs": self.macs,
                "cycles": int(round(self.cycles)), "latency_ms": round(self.latency_ms, 4)}


def layer_costs(graph: Graph, device: Device | str) -> list[LayerCost]:
    """Predicted cost of every node of ``graph`` on ``device``: ``t_l = cycles_l / f_clock``."""
    from .devices import get_device

    dev = get_device(device) if isinstance(device, str) else device
    core = get_core(dev.core)
    out = []
    for w in graph_work(graph):
        cyc = work_cycles(w, core, dev.flash_cycles_per_byte)
        out.append(LayerCost(w.name, w.op, w.kind, w.macs, cyc, cycles_to_ms(cyc, dev.clock_hz)))
    return out


def cycles_to_ms(cycles: float, clock_hz: float) -> float:
    """``t = cycles / f`` in milliseconds."""
    if not clock_hz > 0 or not math.isfinite(clock_hz):
        raise ValueError(f"clock must be a positive frequency in Hz, got {clock_hz!r}")
    return 1000.0 * cycles / clock_hz


def latency_ms(graph: Graph, device: Device | str) -> float:
    """Predicted latency of one inference: ``sum_l t_l``."""
    return sum(c.latency_ms for c in layer_costs(graph, device))


__all__ = ["MAC_KINDS", "ELEMENT_KINDS", "op_kind", "Work", "node_work", "graph_work", "work_cycles", "LayerCost",
           "layer_costs", "cycles_to_ms", "latency_ms"]
