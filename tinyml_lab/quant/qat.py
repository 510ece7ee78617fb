"""Quantization-aware training: train through the rounding the int8 graph will do.

The training graph is the prepared float graph (BatchNorm folded, ReLU
fused) with a ``FakeQuant`` node (8 bits, per tensor; :mod:`.fakequant`)
after the input and after every tensor that the int8 graph gives its own
parameters (:func:`insert_fake_quant`). Weights are fake-quantized too, to
``b`` bits per layer (mixed precision), symmetric, per output channel for
convolutions when ``per_channel``:

    W_q = s clamp(round(W / s), -(2^(b-1) - 1), 2^(b-1) - 1)

The forward pass uses ``W_q`` (the graph keeps the float "shadow" weights
``W``); the backward pass returns ``dL/dW_q``, which the straight-through
estimator hands to ``W`` unchanged where ``W`` is not clipped
(``dL/dW = dL/dW_q [|round(W / s)| <= qmax]``), and the optimizer updates
``W``. Activation ranges follow the data during training, ``r <- (1 - c) r +
c [min, max]_batch`` (``c = range_momentum``; 0 freezes them).

:meth:`QATrainer.to_int8` then builds the int8 graph with exactly the
weight codes and activation parameters the training forward used.
"""

from __future__ import annotations

import numbers
from typing import Mapping

import numpy as np

from ..errors import AttributeValueError, QuantizationError
from ..graph import Graph, Node, QuantParams
from ..kernels.reference import round_half_away_np
from ..train import Adam, History, Optimizer
from .convert import (
    KEEPS_SCALE,
    LINEAR,
    WEIGHT_METHODS,
    Calibrator,
    build_int8,
    check_calibration,
    layer_bits,
    prepare,
    weight_axis,
)
from .observers import affine_params

FAKE_QUANT = "FakeQuant"


def fake_quant_attrs(q: QuantParams, bits: int = 8) -> dict:
    """The attributes of a per-tensor ``FakeQuant`` node with parameters ``q``."""
    return {"bits": int(bits), "narrow": False, "scale": (float(q.scale[0]),),
            "zero_point": (int(q.zero_point[0]),), "axis": None}


def _own_params(graph: Graph) -> list[str]:
    """Tensors the int8 graph gives parameters of their own: inputs, and outputs of ops that do
    not keep their input's scale (Softmax's are fixed)."""
    names = list(graph.inputs)
    names += [n.outputs[0] for n in graph.nodes if n.op not in KEEPS_SCALE + ("Softmax", FAKE_QUANT)]
    return names


def insert_fake_quant(graph: Graph, params: Mapping[str, QuantParams]) -> Graph:
    """A copy of ``graph`` with an 8-bit ``FakeQuant`` after each tensor that ``params`` names.

    The node after tensor ``t`` is named ``t/fq`` and writes ``t/fq``; every
    reader of ``t`` reads ``t/fq`` instead, and a graph output ``t`` becomes ``t/fq``.
    """
    g = graph.copy()
    renamed: dict[str, str] = {}

    def fq_node(t: str) -> Node:
        out = f"{t}/fq"
        if out in g.tensors:
            raise QuantizationError(f"graph '{g.name}' already has a tensor {out!r}; is it fake-quantized already?")
        renamed[t] = out
        return Node(out, FAKE_QUANT, [t], [out], fake_quant_attrs(params[t]))

    new_order = [fq_node(t) for t in g.inputs if t in params]
    for node in g.nodes:
        node.inputs = [renamed.get(t, t) for t in node.inputs]
        new_order.append(node)
        if node.outputs[0] in params:
            new_order.append(fq_node(node.outputs[0]))
    g.nodes = []
    for node in new_order:
        if node.op == FAKE_QUANT:
            g.add_node(node)
        else:
            g.nodes.append(node)
    g.outputs = [renamed.get(t, t) for t in g.outputs]
    return g.validate()


def strip_fake_quant(graph: Graph) -> tuple[Graph, dict[str, QuantParams]]:
    """Remove every per-tensor ``FakeQuant``; returns the graph and ``{tensor: its parameters}``."""
    g = graph.copy()
    params: dict[str, QuantParams] = {}
    for node in [n for n in g.nodes if n.op == FAKE_QUANT]:
        a = node.attrs
        if a["axis"] is not None or a["bits"] != 8:
            raise QuantizationError(
                f"FakeQuant '{node.name}': int8 activations are per tensor and 8 bits, got bits={a['bits']}, "
                f"axis={a['axis']}"
            )
        src, out = node.inputs[0], node.outputs[0]
        params[src] = QuantParams(np.float32(a["scale"][0]), a["zero_point"][0])
        for other in g.nodes:
            other.inputs = [src if t == out else t for t in other.inputs]
        g.outputs = [src if t == out else t for t in g.outputs]
        g.nodes.remove(node)
        del g.tensors[out]
    return g.validate(), params


class QATrainer:
    """Quantization-aware training of a float graph, then its int8 graph.

    Args:
        weight_bits: 2 to 8 for every conv and dense layer, or ``{layer: bits}``
            (others 8): mixed precision. Activations are 8 bits.
        per_channel: per-output-channel weight scales for convolutions.
        method: the observer that sets the initial activation ranges
            (see :mod:`tinyml_lab.quant.observers`).
        weight_method: ``"minmax"`` (``s = max |W| / qmax``) or ``"mse"``.
        epochs, batch_size, seed: the training run (the seed orders batches).
        optimizer: default ``Adam(lr=1e-3)``.
        loss: ``"cross_entropy"`` or ``"mse"``.
        range_momentum: how fast activation ranges follow the data (0: frozen).
        calibration_size: samples of ``x`` used for the initial ranges when
            ``fit`` gets no calibration data.
        quiet: no progress bar.

    Attributes:
        graph_: the training graph (float shadow weights, ``FakeQuant`` nodes).
        bits_: ``{layer: weight bits}``.
        history_: the training :class:`~tinyml_lab.train.History`.

    >>> qat = QATrainer(weight_bits=4, epochs=3).fit(g, x, y)   # doctest: +SKIP
    >>> q = qat.to_int8()                                        # doctest: +SKIP
    """

    def __init__(self, weight_bits: int | Mapping[str, int] = 8, per_channel: bool = True, method: str = "minmax",
                 weight_method: str = "minmax", epochs: int = 3, batch_size: int = 32,
                 optimizer: Optimizer | None = None, seed: int = 0, loss: str = "cross_entropy",
                 range_momentum: float = 0.01, calibration_size: int = 256, quiet: bool = True):
        if weight_method not in WEIGHT_METHODS:
            raise AttributeValueError(f"weight_method must be one of {', '.join(WEIGHT_METHODS)}, got {weight_method!r}")
        c = range_momentum
        if isinstance(c, bool) or not isinstance(c, numbers.Real) or not 0 <= c <= 1:
            raise AttributeValueError(f"range_momentum must be a number in [0, 1], got {c!r}")
        Calibrator(method)  # checks the method
        self.weight_bits = weight_bits
        self.per_channel = bool(per_channel)
        self.method = method
        self.weight_method = weight_method
        self.epochs = epochs
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.seed = seed
        self.loss = loss
        self.range_momentum = float(c)
        self.calibration_size = calibration_size
        self.quiet = quiet

    # ------------------------------------------------------------------ weights
    def _quantize(self, node: Node, w: np.ndarray) -> tuple[np.ndarray, QuantParams]:
        axis = weight_axis(node, self.per_channel)
        return WEIGHT_METHODS[self.weight_method](w, axis, bits=self.bits_[node.name])

    def fake_weights(self) -> dict[str, np.ndarray]:
        """``{weight tensor: W_q}``, the weights the training forward uses."""
        out = {}
        for node in self.graph_.nodes:
            if node.op in LINEAR:
                t = self.graph_.weights(node)["weight"]
                codes, q = self._quantize(node, t.data)
                out[t.name] = _dequantize(codes, q)
        return out

    def _ste(self, grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(grads)
        for node in self.graph_.nodes:
            if node.op not in LINEAR:
                continue
            t = self.graph_.weights(node)["weight"]
            if t.name in out and self.weight_method != "minmax":  # max |W| scales clip nothing
                codes, q = self._quantize(node, t.data)
                qmax = 2 ** (self.bits_[node.name] - 1) - 1
                s = _broadcast_scale(q, t.data.ndim)
                out[t.name] = out[t.name] * (np.abs(round_half_away_np(t.data / s)) <= qmax)
        return out

    # ------------------------------------------------------------------ fitting
    def fit(self, graph: Graph, x: np.ndarray, y: np.ndarray, calibration: np.ndarray | None = None) -> "QATrainer":
        """Insert the fake quantization into ``prepare(graph)`` and train it on ``(x, y)``
        (``graph`` itself is left untouched)."""
        from ..compress.loop import backward_graph, train_loop

        if graph.is_quantized:
            raise QuantizationError(f"graph '{graph.name}' is already int8; QAT starts from a float graph")
        g = prepare(graph)
        self.bits_ = layer_bits(g, self.weight_bits)
        x = np.asarray(x)
        if calibration is None:
            from ..compress.loop import check_int

            calibration = x[: check_int(self.calibration_size, "calibration_size")]
        check_calibration(g, calibration)
        ranges = Calibrator(self.method).fit(g, calibration).ranges_
        own = _own_params(g)
        self.ranges_ = {t: ranges[t] for t in own}
        self.graph_ = insert_fake_quant(g, {t: affine_params(*r) for t, r in self.ranges_.items()})
        opt = self.optimizer if self.optimizer is not None else Adam(lr=1e-3)
        bg = backward_graph(self.graph_, self.loss)
        self.history_: History = train_loop(
            bg, x, y, self.epochs, self.batch_size, opt, self.seed, weights=self.fake_weights,
            transform=self._ste, after_step=self._observe, quiet=self.quiet, desc=f"QAT {graph.name}")
        return self

    def _observe(self, tape) -> None:
        c = self.range_momentum
        if c == 0:
            return
        for node in self.graph_.nodes:
            if node.op != FAKE_QUANT:
                continue
            t = node.inputs[0]
            v = tape.values[t]
            lo, hi = self.ranges_[t]
            lo, hi = lo + c * (float(v.min()) - lo), hi + c * (float(v.max()) - hi)
            self.ranges_[t] = (lo, hi)
            node.attrs = fake_quant_attrs(affine_params(lo, hi))

    # ------------------------------------------------------------------ results
    def simulated_graph(self) -> Graph:
        """A float graph that computes what the int8 graph approximates: ``graph_`` with ``W_q``."""
        g = self.graph_.copy()
        for name, w in self.fake_weights().items():
            g.tensors[name].data = w.astype(np.float32)
        return g

    def to_int8(self) -> Graph:
        """The int8 graph: the activation parameters of the ``FakeQuant`` nodes, the weight codes of
        the training forward, biases ``round(b / (s_in s_w))``."""
        g, params = strip_fake_quant(self.graph_)
        q = build_int8(g, params, lambda node, w, axis: self._quantize(node, w), self.per_channel)
        q.metadata = dict(q.metadata, per_channel=self.per_channel, weight_bits=dict(self.bits_),
                          quantized_from=g.name, qat={"epochs": self.epochs, "weight_method": self.weight_method})
        return q


def _broadcast_scale(q: QuantParams, ndim: int) -> np.ndarray | float:
    if q.axis is None:
        return np.float32(q.scale[0])
    shape = [1] * ndim
    shape[q.axis] = -1
    return q.scale.reshape(shape)


def _dequantize(codes: np.ndarray, q: QuantParams) -> np.ndarray:
    return (_broadcast_scale(q, codes.ndim) * codes.astype(np.float32)).astype(np.float32)


__all__ = ["QATrainer", "insert_fake_quant", "strip_fake_quant", "fake_quant_attrs", "FAKE_QUANT"]
