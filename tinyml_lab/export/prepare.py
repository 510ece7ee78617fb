"""Graph checks and rewrites shared by the deployment exporters (TFLite, C, Arduino).

* :func:`require_int8`: deployment formats carry int8 graphs; a float graph is
  refused with the fix (quantize first). ``Quantize``/``Dequantize`` nodes are
  allowed only at the edges (right after an input, right before an output).
* :func:`int8_core`: the graph without those edge nodes, int8 in and out.
* :func:`with_float_edges`: the opposite, a ``Quantize`` after every int8
  input and a ``Dequantize`` before every int8 output, for float I/O.
* :func:`lower_explicit_padding`: TFLite knows only ``SAME`` and ``VALID``
  windows. A convolution whose explicit pads are neither becomes a ``Pad``
  (filling with the input zero point, the code of 0.0) and a ``VALID``
  convolution, which computes the same codes: a padded position contributes
  ``w (zp - zp) = 0`` to the accumulator, as the int8 kernels' skipped
  positions do. Pools cannot be rewritten that way (a padded value would
  enter the average or could win the max), so they are refused.

All rewrites return new graphs and leave their argument untouched.
"""

from __future__ import annotations

from ..errors import ExportError
from ..graph import Graph, Node, Tensor
from ..ops import resolve_padding

EDGE_OPS = ("Quantize", "Dequantize")
WINDOW_OPS = ("Conv2D", "DepthwiseConv2D", "AvgPool2D", "MaxPool2D")


def require_int8(graph: Graph, fmt: str) -> None:
    """Raise :class:`ExportError` unless ``graph`` is an int8 graph ``fmt`` can carry.

    Every node computes on int8 tensors, except ``Quantize`` nodes reading a
    graph input and ``Dequantize`` nodes writing a graph output.
    """
    graph.validate()
    fix = ("quantize it first: tinyml_lab.quant.quantize_model(graph, calibration), or on the command "
           "line tinyml-lab export MODEL --calib FILE.npy")
    for node in graph.nodes:
        x = graph.tensors[node.inputs[0]]
        y = graph.tensors[node.outputs[0]]
        if node.op == "Quantize":
            if node.inputs[0] not in graph.inputs:
                raise ExportError(
                    f"Quantize '{node.name}' is inside the graph; {fmt} takes float values only at the "
                    f"input edge (Quantize right after a graph input)"
                )
            continue
        if node.op == "Dequantize":
            if node.outputs[0] not in graph.outputs or graph.consumers(node.outputs[0]):
                raise ExportError(
                    f"Dequantize '{node.name}' is inside the graph; {fmt} gives float values only at the "
                    f"output edge (Dequantize right before a graph output)"
                )
            continue
        if x.dtype != "int8" or y.dtype != "int8":
            raise ExportError(f"graph '{graph.name}' is a float32 model ({node.op} '{node.name}' computes in "
                              f"{y.dtype}); {fmt} carries int8 models: {fix}")


def int8_core(graph: Graph) -> Graph:
    """``graph`` without its edge ``Quantize``/``Dequantize`` nodes: int8 inputs and outputs."""
    g = graph.copy()
    for node in [n for n in g.nodes if n.op in EDGE_OPS]:
        g.nodes.remove(node)
        src, dst = node.inputs[0], node.outputs[0]
        if node.op == "Quantize":
            g.inputs = [dst if t == src else t for t in g.inputs]
            if not any(src in n.inputs for n in g.nodes) and src not in g.outputs:
                del g.tensors[src]
        else:
            g.outputs = [src if t == dst else t for t in g.outputs]
            del g.tensors[dst]
    return g.validate()


def _fresh(g: Graph, base: str) -> str:
    name, i = base, 1
    while name in g.tensors or any(n.name == name for n in g.nodes):
        name, i = f"{base}_{i}", i + 1
    return name


def with_float_edges(graph: Graph) -> Graph:
    """``graph`` with float32 inputs and outputs: a ``Quantize`` after each int8 input, a
    ``Dequantize`` before each int8 output (named ``<tensor>_float``)."""
    g = graph.copy()
    head: list[Node] = []
    for i, name in enumerate(list(g.inputs)):
        t = g.tensors[name]
        if t.dtype != "int8":
            continue
        f = _fresh(g, f"{name}_float")
        g.tensors[f] = Tensor(f, t.shape, "float32")
        head.append(Node(_fresh(g, f"{name}_quantize"), "Quantize", [f], [name]))
        g.inputs[i] = f
    tail: list[Node] = []
    for i, name in enumerate(list(g.outputs)):
        t = g.tensors[name]
        if t.dtype != "int8":
            continue
        f = _fresh(g, f"{name}_float")
        g.tensors[f] = Tensor(f, t.shape, "float32")
        tail.append(Node(_fresh(g, f"{name}_dequantize"), "Dequantize", [name], [f]))
        g.outputs[i] = f
    g.nodes = head + g.nodes + tail
    return g.validate()


def window_padding(graph: Graph, node: Node) -> str | None:
    """``"SAME"`` or ``"VALID"`` when the node's padding is one of TensorFlow's two schemes
    (explicit pads included, when they equal what a scheme gives), else None."""
    a = node.attrs
    x = graph.tensors[node.inputs[0]]
    if node.op in ("Conv2D", "DepthwiseConv2D"):
        kernel = graph.weights(node)["weight"].shape[1:3]
        dilation = a["dilation"]
    else:
        kernel, dilation = a["pool_size"], (1, 1)
    if a["padding"] in ("same", "valid"):
        return a["padding"].upper()
    _, same = resolve_padding(x.shape[:2], kernel, a["strides"], dilation, "same", node.name)
    if tuple(a["padding"]) == (0, 0, 0, 0):
        return "VALID"
    if tuple(a["padding"]) == same:
        return "SAME"
    return None


def lower_explicit_padding(graph: Graph) -> Graph:
    """Rewrite convolutions with pads TFLite cannot express as ``Pad`` + ``VALID`` convolution.

    Raises:
        ExportError: a pool with such pads (no equivalent rewrite exists).
    """
    g = graph.copy()
    nodes: list[Node] = []
    for node in g.nodes:
        if node.op in WINDOW_OPS and window_padding(g, node) is None:
            if node.op not in ("Conv2D", "DepthwiseConv2D"):
                raise ExportError(
                    f"{node.op} '{node.name}': pads {node.attrs['padding']} are neither SAME nor VALID; "
                    f"TFLite pools know only those two (pad the input with a Pad node, or use 'same')"
                )
            x = g.tensors[node.inputs[0]]
            name = _fresh(g, f"{node.name}/pad")
            pad = Node(name, "Pad", [x.name], [name], {"pads": tuple(node.attrs["padding"])})
            g.tensors[name] = Tensor(name, x.shape, x.dtype, x.quant)
            nodes.append(pad)
            node.inputs = [name] + node.inputs[1:]
            node.attrs = dict(node.attrs, padding="valid")
        nodes.append(node)
    g.nodes = nodes
    return g.validate()


__all__ = ["require_int8", "int8_core", "with_float_edges", "window_padding", "lower_explicit_padding",
           "EDGE_OPS"]
