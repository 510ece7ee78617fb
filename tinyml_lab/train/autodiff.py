"""Reverse-mode differentiation over the graph IR.

Training a graph is three moves, and :class:`BackwardGraph` makes each one
visible:

1. **forward** (:meth:`BackwardGraph.forward`): run the nodes in order and
   keep on a :class:`Tape` what the backward pass reads: every activation
   (dequantized, for an int8 graph, together with its int8 codes), the
   weights used, and BatchNorm's batch statistics;
2. **loss**: a scalar ``L`` of the output and its gradient. For
   ``"cross_entropy"`` on a graph that ends in Softmax, the softmax and the
   log are fused (``dL/dz = (softmax(z) - onehot(y)) / N``, stable for any
   logits ``z``); ``"mse"`` is the mean squared error;
3. **backward** (:meth:`BackwardGraph.backward`): visit the nodes in
   reverse; each node's local rule (:mod:`tinyml_lab.train.rules`) turns
   ``dL/d(output)`` into ``dL/d(inputs)`` and ``dL/d(weights)``; gradients
   meeting at a tensor read by several nodes are summed (the chain rule's sum
   over paths).

The plan of step 3 is fixed when the :class:`BackwardGraph` is built, from
the set of trainable tensor names: a node is visited only if something
trainable lies below it, and it computes its input gradient only if
something trainable lies below that input. ``print(bg)`` shows the plan;
:meth:`BackwardGraph.trace` follows one gradient from the loss to a weight.

>>> bg = BackwardGraph(zoo.get("digits-cnn"))        # doctest: +SKIP
>>> grads = bg.value_and_grad(x, y)                  # doctest: +SKIP
>>> grads.loss, grads.params["conv1/weight"].shape   # doctest: +SKIP

For an int8 graph (from :func:`~tinyml_lab.quant.quantize_model`) the
forward pass is the deployed one, the int8 :class:`~tinyml_lab.interpreter.Interpreter`;
the backward pass runs in float through the dequantized activations, with
ReLU masks read from the int8 output codes, and gives the gradients with
respect to the stored integers: ``dL/dW_bar = s_W dL/dW`` for the int8
weights ``W_bar = W / s_W`` and ``dL/db_bar = s_x s_W dL/db`` for the int32
biases. See :mod:`tinyml_lab.train.quantized` for the update.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import numpy as np

from ..errors import AttributeValueError, DataError, DTypeError, GraphError, ShapeError
from ..graph import Graph, Node, Tensor
from ..kernels.fixedpoint import activation_range
from ..ops import op_def, resolve_padding
from ..report import format_table
from .kernels import kernels
from .params import Param, parameters, resolve_trainable
from .rules import RULES, StepContext

LOSSES = ("cross_entropy", "mse")


@dataclass
class Tape:
    """What a forward pass keeps for the backward pass.

    ``values``: every activation tensor by name, real values (float32 with the
    numba backend, float64 with the reference backend). ``codes``: the int8
    codes of every activation when the forward ran in int8, else None.
    ``weights``: the real values of the constants the forward used.
    ``saved``: per-node extras (BatchNorm batch mean and variance).
    """

    values: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    saved: dict[str, dict[str, Any]]
    training: bool
    codes: dict[str, np.ndarray] | None = None

    @property
    def batch_size(self) -> int:
        return len(next(iter(self.values.values())))

    @property
    def nbytes(self) -> int:
        """Bytes held by the kept activations (the training memory the tape costs)."""
        return sum(v.nbytes for v in self.values.values()) + sum(
            v.nbytes for v in (self.codes or {}).values())


@dataclass
class Gradients:
    """The result of a backward pass.

    ``params``: ``dL/dp`` for every trainable tensor name (for an int8 graph,
    with respect to the stored integers). ``input``: ``dL/dx`` when the
    :class:`BackwardGraph` was built with ``input_grad=True``.
    ``activations``: ``dL/dt`` for every activation tensor visited, when
    :meth:`BackwardGraph.backward` ran with ``keep=True``.
    """

    loss: float
    params: dict[str, np.ndarray]
    input: np.ndarray | None = None
    activations: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class BackwardStep:
    """One node of the backward plan: which gradient comes in, which go out."""

    node: str
    op: str
    grad_in: str
    input_grads: tuple[str, ...]
    param_grads: tuple[str, ...]
    rule: str

    def to_json(self) -> dict:
        return {"node": self.node, "op": self.op, "grad_in": self.grad_in,
                "input_grads": list(self.input_grads), "param_grads": list(self.param_grads),
                "rule": self.rule}


class BackwardGraph:
    """A graph prepared for training: the forward that keeps what backward needs, and the backward plan.

    Args:
        graph: a float32 graph (BatchNorm nodes allowed) or an int8 graph.
            Weights are read from the graph at every forward pass, so an
            optimizer that updates ``graph`` in place is seen at once.
        trainable: tensor names whose gradients are wanted; None for every
            parameter (:func:`~tinyml_lab.train.params.parameters`).
        loss: ``"cross_entropy"`` (integer labels; on the input of a final
            Softmax, or on the output as logits) or ``"mse"`` (targets shaped
            like the output).
        input_grad: also compute ``dL/d(input)``.
        backend: ``"numba"`` (float32) or ``"reference"`` (float64 NumPy).
        label_smoothing: ``eps`` in ``t = (1 - eps) onehot + eps / K``; 0 by default.
    """

    def __init__(self, graph: Graph, trainable: Iterable[str] | None = None, loss: str = "cross_entropy",
                 input_grad: bool = False, backend: str = "numba", label_smoothing: float = 0.0):
        graph.validate()
        if loss not in LOSSES:
            raise AttributeValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
        if not (isinstance(label_smoothing, numbers.Real) and 0.0 <= label_smoothing < 1.0):
            raise AttributeValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
        if len(graph.inputs) != 1 or len(graph.outputs) != 1:
            raise GraphError(
                f"graph '{graph.name}' has {len(graph.inputs)} input(s) and {len(graph.outputs)} output(s); "
                f"training handles one of each"
            )
        self.graph = graph
        self._nodes = {n.name: n for n in graph.nodes}
        self.loss_kind = loss
        self.label_smoothing = float(label_smoothing)
        self.input_grad = bool(input_grad)
        self.k = kernels(backend)
        self.backend = backend
        self.quantized = graph.is_quantized
        for node in graph.nodes:
            if node.op not in RULES:
                raise GraphError(f"{node.op} '{node.name}' has no backward rule")
            if self.quantized and node.op == "BatchNorm":
                raise GraphError(f"int8 graph '{graph.name}' holds a BatchNorm; fold it before quantizing")
        self.params: dict[str, Param] = parameters(graph)
        self.trainable: tuple[str, ...] = resolve_trainable(graph, trainable)

        out = graph.outputs[0]
        last = graph.producer(out)
        self.loss_tensor = out
        self.beta = 1.0
        self._skip: set[str] = set()
        if loss == "cross_entropy" and last is not None and last.op == "Softmax":
            self.loss_tensor = last.inputs[0]
            self.beta = float(last.attrs["beta"])
            self._skip.add(last.name)
        self._geometry = {n.name: self._resolve(n) for n in graph.nodes}
        self.steps: list[BackwardStep] = self._plan()

    # ------------------------------------------------------------------ plan
    def _resolve(self, node: Node) -> dict[str, Any]:
        g, a = self.graph, node.attrs
        x = g.tensors[node.inputs[0]]
        geo: dict[str, Any] = {"out_shape": g.tensors[node.outputs[0]].shape}
        if node.op in ("Conv2D", "DepthwiseConv2D"):
            kernel = g.weights(node)["weight"].shape[1:3]
            _, geo["pads"] = resolve_padding(x.shape[:2], kernel, a["strides"], a["dilation"], a["padding"], node.name)
        elif node.op in ("AvgPool2D", "MaxPool2D"):
            _, geo["pads"] = resolve_padding(x.shape[:2], a["pool_size"], a["strides"], (1, 1), a["padding"], node.name)
        return geo

    def _act_inputs(self, node: Node) -> list[str]:
        return node.inputs[: op_def(node.op).n_inputs]

    def _plan(self) -> list[BackwardStep]:
        g = self.graph
        trainable = set(self.trainable)
        # below[t]: something whose gradient is wanted lies at or below tensor t
        below: dict[str, bool] = {g.inputs[0]: self.input_grad}
        for node in g.nodes:
            own = any(t in trainable for t in node.inputs[op_def(node.op).n_inputs:])
            below[node.outputs[0]] = own or any(below.get(t, False) for t in self._act_inputs(node))
        # feeds[t]: tensor t lies on a path to the loss
        feeds = {self.loss_tensor}
        for node in reversed(g.nodes):
            if node.name not in self._skip and node.outputs[0] in feeds:
                feeds.update(self._act_inputs(node))
        steps = []
        for node in reversed(g.nodes):
            out = node.outputs[0]
            if node.name in self._skip or out not in feeds or not below[out]:
                continue
            rule = RULES[node.op]
            ins = tuple(t for t in self._act_inputs(node) if below.get(t, False))
            params = tuple(t for t in node.inputs[op_def(node.op).n_inputs:] if t in trainable)
            text = [rule.input_formula] if ins else []
            text += [rule.param_formulas[self.params[p].role] for p in params]
            steps.append(BackwardStep(node.name, node.op, out, ins, params, "; ".join(text)))
        return steps

    def describe(self) -> list[dict]:
        """The backward plan as data: one dict per step, loss first."""
        return [{"node": "loss", "op": self._loss_text(), "grad_in": "-", "input_grads": [self.loss_tensor],
                 "param_grads": [], "rule": self._loss_rule()}] + [s.to_json() for s in self.steps]

    def _loss_text(self) -> str:
        return "SoftmaxCrossEntropy" if self.loss_kind == "cross_entropy" else "MeanSquaredError"

    def _loss_rule(self) -> str:
        if self.loss_kind == "mse":
            return "dL/dy = 2 (y - t) / size"
        scale = "" if self.beta == 1.0 else f"{self.beta:g} "
        return f"dL/dz = {scale}(softmax({scale}z) - t) / N"

    def __str__(self) -> str:
        rows = [[i, d["node"], d["op"], d["grad_in"], ", ".join(d["input_grads"] + d["param_grads"]) or "-",
                 d["rule"]] for i, d in enumerate(self.describe())]
        kind = "int8" if self.quantized else "float"
        head = (f"backward plan of {kind} graph '{self.graph.name}': {len(self.trainable)} trainable tensor(s), "
                f"loss on '{self.loss_tensor}'")
        return head + "\n" + format_table(["step", "node", "op", "dL/d in", "dL/d out", "rule"], rows,
                                          align="rlllll")

    def __repr__(self) -> str:
        return (f"BackwardGraph('{self.graph.name}', {len(self.steps)} steps, {len(self.trainable)} trainable, "
                f"loss {self.loss_kind} on '{self.loss_tensor}', backend {self.backend})")

    def trace(self, name: str, grads: Gradients | None = None) -> str:
        """Follow one gradient from the loss down to tensor ``name`` (a weight or an activation).

        Each line is one backward step: the node, the gradient it produces on
        the way down and the local rule. With ``grads`` from
        ``backward(..., keep=True)`` each line also shows that gradient's norm.
        """
        g = self.graph
        visited = {s.node: s for s in self.steps}
        if name in self.params:
            if name not in self.trainable:
                raise GraphError(f"{name!r} is not trainable in this backward graph; add it to trainable")
            node = g.node(self.params[name].node)
        elif name in g.tensors and not g.tensors[name].is_const:
            node = g.producer(name)
            if node is None:
                node = g.consumers(name)[0]
        else:
            raise GraphError(f"graph '{g.name}' has no tensor {name!r} to trace")
        chain: list[Node] = []
        current: Node | None = node
        while current is not None and current.name in visited:
            chain.append(current)
            if current.outputs[0] == self.loss_tensor:
                break
            nxt = [c for c in g.consumers(current.outputs[0]) if c.name in visited]
            current = nxt[0] if nxt else None
        rows = [["loss", self._loss_text(), f"dL/d{self.loss_tensor}", self._loss_rule()]
                + self._norm(grads, self.loss_tensor)]
        order = list(reversed(chain))
        for i, n in enumerate(order):
            if i + 1 < len(order):
                target, rule = order[i + 1].outputs[0], RULES[n.op].input_formula
            elif name in self.params:
                target, rule = name, RULES[n.op].param_formulas[self.params[name].role]
            else:
                target, rule = name, RULES[n.op].input_formula
            rows.append([n.name, n.op, f"dL/d{target}", rule] + self._norm(grads, target))
        header = ["node", "op", "gradient", "local rule"] + (["|gradient|"] if grads is not None else [])
        return (f"from the loss down to {name!r}, one backward step per line:\n"
                + format_table(header, rows, align="llll" + ("r" if grads is not None else "")))

    @staticmethod
    def _norm(grads: Gradients | None, tensor: str) -> list[str]:
        if grads is None:
            return []
        v = grads.params.get(tensor, grads.activations.get(tensor))
        return ["?" if v is None else f"{float(np.linalg.norm(v)):.4g}"]

    # ------------------------------------------------------------------ forward
    def check_input(self, x: np.ndarray) -> np.ndarray:
        """``x`` as the forward pass takes it: real values (float), or int8 codes for an int8 graph."""
        t = self.graph.tensors[self.graph.inputs[0]]
        x = np.asarray(x)
        if x.ndim != len(t.shape) + 1 or x.shape[1:] != t.shape:
            raise ShapeError(
                f"graph '{self.graph.name}' takes inputs of shape (N, {', '.join(map(str, t.shape))}), "
                f"got {x.shape}"
            )
        if len(x) == 0:
            raise DataError("the batch is empty")
        if self.quantized:
            if x.dtype == np.int8:
                return x
            if not np.issubdtype(x.dtype, np.floating):
                raise DTypeError(f"an int8 graph takes int8 codes or real (float) inputs, got {x.dtype}")
            from ..quant.convert import quantize_input

            return quantize_input(self.graph, x.astype(np.float32))
        if not np.issubdtype(x.dtype, np.floating):
            raise DTypeError(f"a float graph takes floating-point inputs, got {x.dtype}")
        return np.ascontiguousarray(x, dtype=self.k.dtype)

    def forward(self, x: np.ndarray, training: bool = True,
                weights: Mapping[str, np.ndarray] | None = None) -> Tape:
        """Run the graph on batch ``x`` and keep what :meth:`backward` reads.

        ``training=True`` normalises BatchNorm with the batch's statistics
        (kept on the tape); ``False`` with the stored running statistics.
        ``weights`` overrides constants by name (float graphs; e.g. float64
        copies for a finite-difference check).
        """
        x = self.check_input(x)
        if self.quantized:
            if weights is not None:
                raise AttributeValueError("weights= overrides constants of float graphs only")
            return self._forward_int8(x, training)
        g, k = self.graph, self.k
        consts = {n: t.data for n, t in g.tensors.items() if t.is_const}
        if weights is not None:
            unknown = sorted(set(weights) - set(consts))
            if unknown:
                raise GraphError(f"weights name tensor(s) the graph does not have: {', '.join(unknown[:5])}")
            consts.update(weights)
        used = {n: np.ascontiguousarray(v, dtype=k.dtype) for n, v in consts.items()}
        values: dict[str, np.ndarray] = {g.inputs[0]: x}
        saved: dict[str, dict] = {}
        for node in g.nodes:
            ins = [values[t] for t in self._act_inputs(node)]
            w = {role: used[t.name] for role, t in g.weights(node).items()}
            y, extra = RULES[node.op].forward(k, node, ins, w, training, self._geometry[node.name])
            values[node.outputs[0]] = y
            if extra:
                saved[node.name] = extra
        return Tape(values, used, saved, bool(training))

    def _forward_int8(self, codes: np.ndarray, training: bool) -> Tape:
        from ..interpreter import Interpreter

        g, k = self.graph, self.k
        env = Interpreter(g, "numba" if self.backend == "numba" else "reference").run(codes, return_all=True)
        values = {}
        for name, q in env.items():
            t = g.tensors[name]
            values[name] = (float(t.quant.scale[0]) * (q.astype(k.dtype) - int(t.quant.zero_point[0]))).astype(k.dtype)
        used = {n: dequantize_constant(t).astype(k.dtype) for n, t in g.tensors.items() if t.is_const}
        return Tape(values, used, {}, bool(training), codes=env)

    # ------------------------------------------------------------------ loss
    def check_target(self, target: np.ndarray, n: int) -> np.ndarray:
        """Integer labels in ``[0, K)`` for cross-entropy, or an array shaped like the output for MSE."""
        t = np.asarray(target)
        if len(t) != n:
            raise DataError(f"{n} inputs but {len(t)} targets; give one target per input")
        shape = self.graph.tensors[self.loss_tensor].shape
        if self.loss_kind == "mse":
            if t.shape[1:] != shape:
                raise ShapeError(f"mse targets must have shape (N, {', '.join(map(str, shape))}), got {t.shape}")
            if not np.all(np.isfinite(t)):
                raise DataError("the targets hold NaN or infinite values")
            return np.ascontiguousarray(t, dtype=self.k.dtype)
        if len(shape) != 1:
            raise ShapeError(f"cross_entropy needs logits of shape (N, K), the graph gives (N, {shape})")
        k = shape[0]
        if t.ndim != 1 or not (np.issubdtype(t.dtype, np.integer) or
                               (np.issubdtype(t.dtype, np.floating) and np.all(t == np.round(t)))):
            raise DataError(f"cross_entropy labels must be integers of shape (N,), got {t.dtype} of shape {t.shape}")
        t = t.astype(np.int64)
        if t.size and (t.min() < 0 or t.max() >= k):
            raise DataError(
                f"labels must lie in [0, {k}) for the {k}-class output of '{self.graph.name}'; "
                f"got values from {int(t.min())} to {int(t.max())}"
            )
        return t

    def loss(self, tape: Tape, target: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss and its gradient with respect to the loss tensor (the logits for cross-entropy)."""
        return self.loss_of(tape.values[self.loss_tensor], target)

    def loss_of(self, y: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
        """The loss of the loss tensor's real values ``y`` against ``target``, and ``dL/dy``."""
        t = self.check_target(target, len(y))
        if self.loss_kind == "mse":
            return self.k.mse(y, t)
        if self.beta != 1.0:
            y = (self.beta * y).astype(self.k.dtype)
        loss, grad = self.k.cross_entropy(y, t, self.label_smoothing)
        if self.beta != 1.0:
            grad = (self.beta * grad).astype(self.k.dtype)
        return float(loss), grad

    # ------------------------------------------------------------------ backward
    def backward(self, tape: Tape, target: np.ndarray, keep: bool = False) -> Gradients:
        """The loss on ``tape`` against ``target`` and its gradients, node by node in reverse.

        ``keep=True`` also returns every activation gradient (for :meth:`trace`).
        """
        g, k = self.graph, self.k
        loss, grad = self.loss(tape, target)
        pending: dict[str, np.ndarray] = {self.loss_tensor: grad}
        kept: dict[str, np.ndarray] = {}
        out: dict[str, np.ndarray] = {}
        for step in self.steps:
            node = self._nodes[step.node]
            dy = pending.pop(step.grad_in, None)
            if dy is None:  # nothing downstream depended on this output
                continue
            if keep:
                kept[step.grad_in] = dy
            acts = self._act_inputs(node)
            weights = {role: tape.weights[t.name] for role, t in g.weights(node).items()}
            ctx = StepContext(
                node=node, inputs=[tape.values[t] for t in acts], output=tape.values[node.outputs[0]],
                weights=weights, saved=tape.saved.get(node.name, {}), geometry=self._geometry[node.name],
                need_input=[t in step.input_grads for t in acts],
                need={self.params[p].role for p in step.param_grads},
            )
            if tape.codes is not None:
                ctx.output_codes = tape.codes[node.outputs[0]]
                ctx.code_bounds = self._code_bounds(node)
            dins, dparams = RULES[node.op].backward(k, ctx, dy)
            for t, d in zip(acts, dins):
                if d is None:
                    continue
                pending[t] = pending[t] + d if t in pending else d
            for p in step.param_grads:
                role = self.params[p].role
                out[p] = self._to_stored_units(p, dparams[role]) if self.quantized else dparams[role]
        dx = pending.get(g.inputs[0]) if self.input_grad else None
        if keep and dx is not None:
            kept[g.inputs[0]] = dx
        return Gradients(loss, out, dx, kept)

    def value_and_grad(self, x: np.ndarray, target: np.ndarray, training: bool = True,
                       keep: bool = False) -> Gradients:
        """``forward`` then ``backward`` on one batch."""
        return self.backward(self.forward(x, training), target, keep)

    def _code_bounds(self, node: Node) -> tuple[int, int] | None:
        act = {"ReLU": "relu", "ReLU6": "relu6"}.get(node.op, node.attrs.get("activation", "none"))
        if act == "none":
            return None
        q = self.graph.tensors[node.outputs[0]].quant
        return activation_range(act, float(q.scale[0]), int(q.zero_point[0]))

    def _to_stored_units(self, name: str, grad_real: np.ndarray) -> np.ndarray:
        """``dL/dq = s dL/dW`` for a constant stored as ``W = s q`` (per-channel ``s`` broadcast)."""
        return (grad_real * broadcast_scale(self.graph.tensors[name])).astype(grad_real.dtype)

    # ------------------------------------------------------------------ batch norm statistics
    def update_statistics(self, tape: Tape, momentum: float = 0.1) -> None:
        """Move each BatchNorm's running mean and variance toward the batch's:
        ``running = (1 - m) running + m batch``, the variance unbiased (``M / (M - 1)``)."""
        g = self.graph
        for name, extra in tape.saved.items():
            if "batch_mean" not in extra:
                continue
            node = self._nodes[name]
            w = g.weights(node)
            x = tape.values[node.inputs[0]]
            m = x.size // x.shape[-1]
            var = extra["batch_var"].astype(np.float64) * (m / max(m - 1, 1))
            for role, batch in (("mean", extra["batch_mean"].astype(np.float64)), ("var", var)):
                t = w[role]
                t.data = ((1.0 - momentum) * t.data.astype(np.float64) + momentum * batch).astype(np.float32)


# --------------------------------------------------------------------------- int8 constants

def broadcast_scale(t: Tensor) -> np.ndarray | float:
    """The scale of a quantized constant, shaped to broadcast against its data."""
    q = t.quant
    if q is None:
        raise GraphError(f"constant {t.name!r} has no quantization parameters")
    if q.axis is None:
        return np.float64(q.scale[0])
    shape = [1] * len(t.shape)
    shape[q.axis] = -1
    return q.scale.astype(np.float64).reshape(shape)


def dequantize_constant(t: Tensor) -> np.ndarray:
    """Real values of a constant: ``s * q`` for an int8 weight or int32 bias, the data for a float one."""
    if t.dtype == "float32":
        return t.data
    return (t.data.astype(np.float64) * broadcast_scale(t)).astype(np.float32)
