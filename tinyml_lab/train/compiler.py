"""The training step compiled ahead of time: a list of ops over named buffers (a Tiny Training Engine).

Lin et al. ("On-Device Training Under 256KB Memory", NeurIPS 2022, Section
2.3) move differentiation from run time to compile time. :func:`compile_step`
does the same for one step of a graph and a sparse update scheme:

1. **derive** the backward graph from the forward graph: each node visited
   in reverse (the plan of :class:`~tinyml_lab.train.autodiff.BackwardGraph`)
   becomes small ops: ``gate`` (``g = dy * mask`` for a fused ReLU/ReLU6),
   ``grad_input`` (``dx``), ``grad_weight`` (``dW``, and ``db`` with it),
   ``grad_bias`` (``db = sum g``, which needs no saved activation), then
   ``update`` ops;
2. **prune**: no gradient op for a frozen weight, no ``dx`` below the lowest
   trained layer, and no saved activation that only a pruned op would read:
   a forward activation is kept for the backward pass only when a weight
   gradient reads it (the input of a trained layer); a ReLU/ReLU6 passes its
   gradient through a 1-bit **mask** written by the forward op, not through
   the activation itself;
3. **slice**: a layer trained on ``c`` of its ``C`` output channels computes
   ``dW`` (and its update) for those channels only; a depthwise layer keeps
   only those channels of its input (``x[c/C]``), since ``dW[c]`` reads
   input channel ``c`` alone;
4. **reorder** (``reorder=True``): each weight's ``update`` runs right after
   its gradient is computed, and that gradient buffer dies at once, instead of
   every gradient living until one update phase at the end. Within a layer
   ``dx`` is computed before the layer's update, from the old weights, so the
   step computes exactly what the plain step computes.

The result is printable (``print(step)``: ops in order, with the buffers
each reads and writes), runnable (:meth:`CompiledStep.run`: one training step
on a batch, which frees every buffer after its last reader) and the schedule
the memory planner lays out (:meth:`CompiledStep.lifetimes`, see
:mod:`tinyml_lab.train.memory`). It updates the weights exactly as the plain
step (:func:`plain_step`: the whole backward pass, then every update) does.

>>> step = compile_step(q, SparseScheme.parse("sparse:bias=2,pw1=1/2", q))   # doctest: +SKIP
>>> print(step)                                                             # doctest: +SKIP
>>> step.run(x, y).loss                                                     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from ..errors import AttributeValueError, GraphError
from ..graph import Graph, Node
from ..kernels import backward as kb
from ..ops import op_def
from ..report import format_table
from .autodiff import BackwardGraph, broadcast_scale
from .fit import Callback, History, NonFiniteGradient, Stepper, run_epochs, update_float_tensor
from .optim import SGD, Optimizer
from .quantized import ROUNDINGS, UpdateCounts, update_int8_tensor
from .rules import FLOAT_RANGE
from .sparse import Selection, SparseScheme, selection_of

LAYER_OPS = ("Conv2D", "DepthwiseConv2D", "Dense")
PASS_THROUGH = ("Reshape", "Flatten", "Quantize", "Dequantize")
OP_KINDS = ("forward", "loss", "gate", "grad_input", "grad_weight", "grad_bias", "update")


@dataclass(frozen=True)
class Op:
    """One op of a compiled step: what it is, the buffers it reads and writes, and its formula."""

    kind: str
    node: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    text: str

    def to_json(self) -> dict:
        return {"kind": self.kind, "node": self.node, "reads": list(self.reads), "writes": list(self.writes),
                "text": self.text}


@dataclass(frozen=True)
class BufferSpec:
    """A buffer of the step: ``elements`` values (per sample when ``per_sample``) of a ``kind``.

    Kinds: ``input``, ``label``, ``activation`` (a forward tensor), ``mask``
    (1 bit per element), ``saved`` (channels of an activation kept for a
    sliced weight gradient), ``gradient`` (of an activation), ``weight_gradient``,
    ``weight`` (a trainable constant, in SRAM for the whole step; ``role``
    ``weight`` or ``bias``), ``optimizer`` (its state).
    """

    name: str
    kind: str
    elements: int
    per_sample: bool
    role: str = ""


@dataclass
class StepResult:
    """What one run of a compiled step returns: the loss, the output (logits) for accuracy, and, for
    an int8 graph, the ``update_*`` figures of :func:`~tinyml_lab.train.quantized.apply_update`."""

    loss: float
    output: np.ndarray
    figures: dict = field(default_factory=dict)


def _activation(node: Node) -> str:
    if node.op in ("ReLU", "ReLU6"):
        return node.op.lower()
    return node.attrs.get("activation", "none")


class CompiledStep:
    """One training step of ``graph`` compiled into ops over buffers.

    Args:
        graph: a float32 graph without BatchNorm (fold it first, as deployed) or an int8 graph.
        trainable: a :class:`~tinyml_lab.train.sparse.SparseScheme`, a
            :class:`~tinyml_lab.train.sparse.Selection`, tensor names, or None (every parameter).
        optimizer: applies the updates; default ``SGD(lr=0.01)`` (with QAS for an int8 graph).
        reorder: apply each update as soon as its gradient exists (True) or all at the end (False).
        loss: ``"cross_entropy"`` or ``"mse"``.
        backend: ``"numba"`` (float32) or ``"reference"`` (float64).
        rounding, seed: of the int8 updates (see :func:`~tinyml_lab.train.quantized.round_steps`).
    """

    def __init__(self, graph: Graph, trainable: "SparseScheme | Selection | Iterable[str] | None" = None,
                 optimizer: Optimizer | None = None, reorder: bool = True, loss: str = "cross_entropy",
                 backend: str = "numba", rounding: str = "nearest", seed: int = 0):
        for node in graph.nodes:
            if node.op == "BatchNorm":
                raise GraphError(
                    f"graph '{graph.name}' holds BatchNorm '{node.name}'; compile the deployed graph: fold it "
                    f"first (tinyml_lab.passes.fold_batchnorm), as a device runs it"
                )
        if rounding not in ROUNDINGS:
            raise AttributeValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
        self.graph = graph
        self.scheme = trainable if isinstance(trainable, SparseScheme) else None
        self.selection: Selection = selection_of(graph, trainable)
        self.bg = BackwardGraph(graph, self.selection.trainable, loss, backend=backend)
        self.optimizer = optimizer if optimizer is not None else SGD(lr=0.01, qas=graph.is_quantized)
        if not isinstance(self.optimizer, Optimizer):
            raise AttributeValueError(f"optimizer must be a tinyml_lab.train Optimizer, got {self.optimizer!r}")
        self.reorder = bool(reorder)
        self.rounding = rounding
        self.rng = np.random.default_rng([int(seed), 1]) if rounding == "stochastic" else None
        self._nodes = {n.name: n for n in graph.nodes}
        self.buffers: dict[str, BufferSpec] = {}
        self.ops: list[Op] = []
        self._fns: list[Callable[[dict], None]] = []
        self._grad_of: dict[str, str] = {}  # trainable tensor -> its gradient buffer
        self._build()
        self._frees = self._last_readers()

    # ================================================================== building
    def _buf(self, name: str, kind: str, elements: int, per_sample: bool, role: str = "") -> str:
        if name not in self.buffers:
            self.buffers[name] = BufferSpec(name, kind, int(elements), per_sample, role)
        return name

    def _emit(self, kind: str, node: str, reads: Iterable[str], writes: Iterable[str], text: str,
              fn: Callable[[dict], None]) -> None:
        self.ops.append(Op(kind, node, tuple(reads), tuple(writes), text))
        self._fns.append(fn)

    def _act_size(self, t: str) -> int:
        return self.graph.tensors[t].size

    def _build(self) -> None:
        g, bg, sel = self.graph, self.bg, self.selection
        trainable = set(sel.trainable)
        steps = bg.steps
        # ---- what the backward reads from the forward
        keep_full: set[str] = {bg.loss_tensor}
        keep_mask: set[str] = set()
        keep_slice: dict[str, tuple[str, np.ndarray]] = {}  # tensor -> (weight name, channels)
        for s in steps:
            node = self._nodes[s.node]
            if _activation(node) != "none":
                keep_mask.add(node.outputs[0])
            if node.op in LAYER_OPS:
                w = g.weights(node)["weight"].name
                x = node.inputs[0]
                if w in s.param_grads:
                    if node.op == "DepthwiseConv2D" and w in sel.channels and x not in keep_slice:
                        keep_slice[x] = (w, sel.channels[w])
                    else:
                        keep_full.add(x)
            elif node.op == "MaxPool2D":
                keep_full.add(node.inputs[0])
            elif node.op == "Softmax":
                keep_full.add(node.outputs[0])
        for t in list(keep_slice):
            if t in keep_full or t in g.inputs:
                keep_slice.pop(t)
                keep_full.add(t)
        keep_mask -= keep_full
        self._keep_full, self._keep_mask, self._keep_slice = keep_full, keep_mask, keep_slice

        # ---- buffers that exist before the step: the input, the label, trainable weights in SRAM
        self._buf(g.inputs[0], "input", self._act_size(g.inputs[0]), True)
        self._buf("label", "label", 1, True)
        for name in sel.trainable:
            t = g.tensors[name]
            role = "bias" if t.dtype == "int32" or self.bg.params[name].role == "bias" else "weight"
            self._buf(name, "weight", t.size, False, role)
            if self.optimizer.state_buffers:
                n_sel = self._sliced_size(name)
                self._buf(f"state({name})", "optimizer", n_sel * self.optimizer.state_buffers, False)

        # ---- forward ops
        for node in g.nodes:
            if node.name in bg._skip:
                continue
            self._forward_op(node, trainable)
        # ---- loss
        lt = bg.loss_tensor
        self._buf(f"d({lt})", "gradient", self._act_size(lt), True)
        self._emit("loss", "loss", [lt, "label"], [f"d({lt})"], bg._loss_rule(), self._run_loss)
        # ---- backward
        made: set[str] = {f"d({lt})"}
        pending: list[str] = []
        for s in steps:
            self._backward_ops(self._nodes[s.node], s, made, pending)
        for p in pending:
            self._update_op(p)

    def _sliced_size(self, name: str) -> int:
        t = self.graph.tensors[name]
        if name not in self.selection.channels:
            return t.size
        return t.size // t.shape[self.selection.axes[name]] * len(self.selection.channels[name])

    def _slice_note(self, name: str) -> str:
        if name not in self.selection.channels:
            return ""
        c, total = self.selection.fraction(name, self.graph.tensors[name].shape[self.selection.axes[name]])
        return f"[{c}/{total} ch]"

    # ------------------------------------------------------------------ forward
    def _forward_op(self, node: Node, trainable: set[str]) -> None:
        g = self.graph
        acts = node.inputs[: op_def(node.op).n_inputs]
        consts = [t for t in node.inputs[len(acts):] if t in trainable]
        out = node.outputs[0]
        writes = [self._buf(out, "activation", self._act_size(out), True)]
        if out in self._keep_mask:
            writes.append(self._buf(f"mask({out})", "mask", self._act_size(out), True))
        for x in acts:
            if x in self._keep_slice and self._keep_slice[x][0] in {t.name for t in g.weights(node).values()}:
                w, idx = self._keep_slice[x]
                c = g.tensors[x].shape[-1]
                writes.append(self._buf(f"{x}[{len(idx)}/{c} ch]", "saved", self._act_size(x) // c * len(idx), True))
        act = _activation(node)
        text = f"{node.op}" + (f" + {act}" if act != "none" and node.op not in ("ReLU", "ReLU6") else "")
        if len(writes) > 1:
            text += "; keep " + ", ".join(w for w in writes[1:])
        self._emit("forward", node.name, list(acts) + consts, writes, text, _noop)

    # ------------------------------------------------------------------ backward
    def _grad_name(self, t: str, made: set[str]) -> tuple[str, list[str]]:
        name = f"d({t})"
        self._buf(name, "gradient", self._act_size(t), True)
        extra = [name] if name in made else []
        made.add(name)
        return name, extra

    def _gate_source(self, out: str) -> str:
        return out if out in self._keep_full else f"mask({out})"

    def _backward_ops(self, node: Node, s, made: set[str], pending: list[str]) -> None:
        g = self.graph
        out = node.outputs[0]
        dout = f"d({out})"
        act = _activation(node)
        src = self._gate_source(out)
        acts = node.inputs[: op_def(node.op).n_inputs]
        if node.op in ("ReLU", "ReLU6"):
            x = acts[0]
            if x in s.input_grads:
                dx, acc = self._grad_name(x, made)
                lo, hi = FLOAT_RANGE[act]
                self._emit("gate", node.name, [dout, src] + acc, [dx],
                           f"{dx} {'+' if acc else ''}= {dout} * [{lo:g} < {out} < {hi:g}]",
                           self._gate_fn(node, dout, dx, src, accumulate=bool(acc)))
            return
        if act != "none":
            lo, hi = FLOAT_RANGE[act]
            self._emit("gate", node.name, [dout, src], [dout], f"{dout} *= [{lo:g} < {out} < {hi:g}] (in place)",
                       self._gate_fn(node, dout, dout, src, accumulate=False))
        if node.op in LAYER_OPS:
            w = g.weights(node)
            wname = w["weight"].name
            bname = w["bias"].name if "bias" in w else None
            x = acts[0]
            if x in s.input_grads:
                dx, acc = self._grad_name(x, made)
                reads = [dout] + ([wname] if wname in self.selection.trainable else []) + acc
                formula = {"Conv2D": "conv_transpose(g, W)", "DepthwiseConv2D": "depthwise conv_transpose(g, W)",
                           "Dense": "g W"}[node.op]
                self._emit("grad_input", node.name, reads, [dx], f"{dx} {'+' if acc else ''}= {formula}",
                           self._grad_input_fn(node, dout, dx, accumulate=bool(acc)))
            want_w = wname in s.param_grads
            want_b = bname is not None and bname in s.param_grads
            together = (want_w and want_b and wname not in self.selection.channels
                        and bname not in self.selection.channels)
            if want_w:
                saved = x if x in self._keep_full else next(
                    b for b in self.buffers if b.startswith(f"{x}[") and self.buffers[b].kind == "saved")
                dw = self._buf(f"d({wname}){self._slice_note(wname)}", "weight_gradient",
                               self._sliced_size(wname), False)
                writes = [dw]
                if together:
                    writes.append(self._buf(f"d({bname})", "weight_gradient", g.tensors[bname].size, False))
                what = "dW[o] = sum_pixels g[o] * window(x)" if node.op != "Dense" else "dW = g^T x"
                if wname in self.selection.channels:
                    what += f" for the {len(self.selection.channels[wname])} trained channels"
                if together:
                    what += "; db = sum g"
                self._emit("grad_weight", node.name, [dout, saved], writes, what,
                           self._grad_weight_fn(node, dout, saved, wname, dw, bname if together else None,
                                                f"d({bname})" if together else None))
                self._schedule_update(wname, dw, pending)
                if together:
                    self._schedule_update(bname, f"d({bname})", pending)
            if want_b and not together:
                db = self._buf(f"d({bname}){self._slice_note(bname)}", "weight_gradient", self._sliced_size(bname),
                               False)
                self._emit("grad_bias", node.name, [dout], [db], "db = sum_pixels g (no saved activation)",
                           self._grad_bias_fn(dout, bname, db))
                self._schedule_update(bname, db, pending)
            return
        if node.op == "Add":
            reads, writes, accs = [dout], [], []
            for x in acts:
                if x in s.input_grads:
                    dx, acc = self._grad_name(x, made)
                    reads += acc
                    writes.append(dx)
                    accs.append(bool(acc))
            if writes:
                self._emit("grad_input", node.name, reads, writes,
                           "; ".join(f"{d} {'+' if a else ''}= g" for d, a in zip(writes, accs)),
                           self._add_fn(dout, writes, accs))
            return
        x = acts[0]
        if x not in s.input_grads:
            return
        dx, acc = self._grad_name(x, made)
        extra = [node.inputs[0]] if node.op == "MaxPool2D" else [out] if node.op == "Softmax" else []
        from .rules import RULES

        self._emit("grad_input", node.name, [dout] + extra + acc, [dx],
                   f"{dx} {'+' if acc else ''}= " + RULES[node.op].input_formula.split("=", 1)[1].strip(),
                   self._generic_fn(node, dout, dx, accumulate=bool(acc)))

    def _schedule_update(self, name: str, grad: str, pending: list[str]) -> None:
        self._grad_of[name] = grad
        if self.reorder:
            self._update_op(name)
        else:
            pending.append(name)

    def _update_op(self, name: str) -> None:
        grad = self._grad_of[name]
        reads = [grad, name] + ([f"state({name})"] if f"state({name})" in self.buffers else [])
        writes = [name] + ([f"state({name})"] if f"state({name})" in self.buffers else [])
        rule = "W -= lr dW" if not self.optimizer.qas else "W_bar -= round(lr dW_bar / s^2) (QAS)"
        self._emit("update", self.bg.params[name].node, reads, writes,
                   f"{name}{self._slice_note(name)}: {rule}", self._update_fn(name, grad))

    # ================================================================== running
    def _last_readers(self) -> list[list[str]]:
        """Per op, the buffers it reads or writes for the last time (freed after it runs)."""
        last: dict[str, int] = {}
        for i, op in enumerate(self.ops):
            for b in op.reads + op.writes:
                last[b] = i
        frees: list[list[str]] = [[] for _ in self.ops]
        for b, i in last.items():
            if self.buffers[b].kind not in ("weight", "optimizer"):
                frees[i].append(b)
        return frees

    def run(self, x: np.ndarray, y: np.ndarray) -> StepResult:
        """One training step on batch ``(x, y)``: forward, loss, backward and updates, in op order.

        Every buffer is dropped after the last op that reads it, so an op
        that read a pruned buffer would fail. Raises :class:`NonFiniteGradient`
        before any update when the loss is not finite, and ``FloatingPointError``
        when a gradient is not finite (weights updated before it keep their update).
        """
        bg = self.bg
        x = bg.check_input(x)
        y = bg.check_target(y, len(x))
        tape = bg.forward(x, training=True)
        env: dict = {"label": y, "__counts__": UpdateCounts()}
        self._env_from_tape(env, tape)
        logits = env["__logits__"]
        for i, (op, fn) in enumerate(zip(self.ops, self._fns)):
            if op.kind != "forward":
                fn(env)
            for b in self._frees[i]:
                env.pop(b, None)
        self.optimizer.steps_ += 1
        figures = env["__counts__"].figures()
        return StepResult(env["__loss__"], logits, figures)

    def _env_from_tape(self, env: dict, tape) -> None:
        """The forward ops' results: codes (int8) or values (float) of the kept activations, 1-bit masks
        of gated outputs (``np.packbits``), and the kept channels of sliced inputs."""
        g, bg = self.graph, self.bg
        stored = tape.codes if tape.codes is not None else tape.values
        for t in self._keep_full:
            env[t] = stored[t]
        for t in self._keep_mask:
            lo, hi = self._bounds(g.producer(t))
            env[f"mask({t})"] = kb.pack_mask(np.ascontiguousarray(stored[t]), lo, hi)
        for t, (w, idx) in self._keep_slice.items():
            c = g.tensors[t].shape[-1]
            env[f"{t}[{len(idx)}/{c} ch]"] = np.ascontiguousarray(stored[t][..., idx])
        env["__logits__"] = tape.values[bg.loss_tensor]
        env["__weights__"] = tape.weights

    def _bounds(self, node: Node) -> tuple[float, float]:
        """The gate's open interval: int8 code bounds of the deployed kernel, or the float range."""
        if self.graph.is_quantized:
            lo, hi = self.bg._code_bounds(node)
            return float(lo), float(hi)
        return FLOAT_RANGE[_activation(node)]

    def _mask(self, node: Node, stored: np.ndarray) -> np.ndarray:
        lo, hi = self._bounds(node)
        return (stored > lo) & (stored < hi)

    def _real(self, env: dict, buffer: str, tensor: str) -> np.ndarray:
        """Real values of a kept activation buffer: ``s (q - z)`` for int8 codes, as the plain step reads them."""
        v = env[buffer]
        t = self.graph.tensors[tensor]
        if v.dtype != np.int8:
            return v
        k = self.bg.k
        return (float(t.quant.scale[0]) * (v.astype(k.dtype) - int(t.quant.zero_point[0]))).astype(k.dtype)

    # ------------------------------------------------------------------ op bodies
    def _run_loss(self, env: dict) -> None:
        loss, grad = self.bg.loss_of(env["__logits__"], env["label"])
        if not np.isfinite(loss):
            raise NonFiniteGradient(loss)
        env["__loss__"] = loss
        env[f"d({self.bg.loss_tensor})"] = grad

    def _gate_fn(self, node: Node, dout: str, target: str, src: str, accumulate: bool):
        out = node.outputs[0]

        def fn(env: dict) -> None:
            dy = env[dout]
            if src == out:
                d = self.bg.k.clamp_backward(env[out], dy, *self._bounds(node))
            else:
                d = kb.gate_packed(np.ascontiguousarray(dy), env[src])
            env[target] = env[target] + d if accumulate else d
        return fn

    def _grad_input_fn(self, node: Node, dout: str, dx: str, accumulate: bool):
        a, geo, k = node.attrs, self.bg._geometry[node.name], self.bg.k
        wname = self.graph.weights(node)["weight"].name
        shape = self.graph.tensors[node.inputs[0]].shape

        def fn(env: dict) -> None:
            w = env["__weights__"][wname]
            dy = env[dout]
            if node.op == "Dense":
                d = k.dense_grad_input(dy, w)
            else:
                d = k.conv_grad_input(dy, w, (len(dy),) + shape, a["strides"], a["dilation"], geo["pads"],
                                      node.op == "DepthwiseConv2D")
            env[dx] = env[dx] + d if accumulate else d
        return fn

    def _stored_units(self, name: str, grad: np.ndarray) -> np.ndarray:
        if not self.graph.is_quantized:
            return grad
        s = broadcast_scale(self.graph.tensors[name])
        if isinstance(s, np.ndarray):
            s = self.selection.take(name, s)
        return (grad * s).astype(grad.dtype)

    def _grad_weight_fn(self, node: Node, dout: str, saved: str, wname: str, dw: str, bname: str | None,
                        db: str | None):
        a, geo, k = node.attrs, self.bg._geometry[node.name], self.bg.k
        x_tensor = node.inputs[0]
        idx = self.selection.channels.get(wname)
        kernel = self.graph.tensors[wname].shape[1:3]

        def fn(env: dict) -> None:
            x = self._real(env, saved, x_tensor)
            g = env[dout]
            if idx is not None:
                g = np.ascontiguousarray(g[..., idx])
            if node.op == "Dense":
                gw, gb = k.dense_grad_weight(x, g)
            else:
                gw, gb = k.conv_grad_weight(x, g, kernel, a["strides"], a["dilation"], geo["pads"],
                                            node.op == "DepthwiseConv2D")
            env[dw] = self._stored_units(wname, gw)
            if db is not None:
                env[db] = self._stored_units(bname, gb)
        return fn

    def _grad_bias_fn(self, dout: str, bname: str, db: str):
        k = self.bg.k

        def fn(env: dict) -> None:
            gb = k.bias_grad(env[dout])
            env[db] = self._stored_units(bname, self.selection.take(bname, gb))
        return fn

    def _add_fn(self, dout: str, writes: list[str], accs: list[bool]):
        def fn(env: dict) -> None:
            g = env[dout]
            for d, acc in zip(writes, accs):
                env[d] = env[d] + g if acc else g
        return fn

    def _generic_fn(self, node: Node, dout: str, dx: str, accumulate: bool):
        a, geo, k = node.attrs, self.bg._geometry.get(node.name, {}), self.bg.k
        x_tensor = node.inputs[0]
        shape = self.graph.tensors[x_tensor].shape

        def fn(env: dict) -> None:
            g = env[dout]
            xs = (len(g),) + shape
            if node.op == "AvgPool2D":
                d = k.avg_pool_backward(g, xs, a["pool_size"], a["strides"], geo["pads"], a["count_include_pad"])
            elif node.op == "MaxPool2D":
                d = k.max_pool_backward(self._real(env, x_tensor, x_tensor), g, a["pool_size"], a["strides"],
                                        geo["pads"])
            elif node.op == "GlobalAvgPool":
                d = k.global_avg_pool_backward(g, xs)
            elif node.op == "Pad":
                d = k.pad_backward(g, a["pads"])
            elif node.op == "Softmax":
                out = node.outputs[0]
                d = k.softmax_backward(self._real(env, out, out), g, a["beta"])
            elif node.op in PASS_THROUGH:
                d = g.reshape(xs)
            else:  # pragma: no cover - every op of ops.py is listed above
                raise GraphError(f"{node.op} '{node.name}' has no compiled backward")
            env[dx] = env[dx] + d if accumulate else d
        return fn

    def _update_fn(self, name: str, grad: str):
        def fn(env: dict) -> None:
            gr = env[grad]
            if not np.all(np.isfinite(gr)):
                raise FloatingPointError(name)
            if self.graph.is_quantized:
                env["__counts__"].add(update_int8_tensor(self.graph, name, gr, self.optimizer, self.rounding,
                                                         self.rng, self.selection))
            else:
                update_float_tensor(self.graph, name, gr, self.optimizer, self.selection)
                if not np.all(np.isfinite(self.graph.tensors[name].data)):
                    raise FloatingPointError(name)
        return fn

    # ================================================================== views
    def describe(self) -> list[dict]:
        """The ops in order, as data."""
        return [dict(op.to_json(), index=i) for i, op in enumerate(self.ops)]

    def table(self, limit: int | None = None) -> str:
        rows = [[i, op.kind, op.node, ", ".join(op.reads) or "-", ", ".join(op.writes) or "-", op.text]
                for i, op in enumerate(self.ops[:limit])]
        return format_table(["#", "op", "node", "reads", "writes", "what"], rows, align="rlllll")

    def header(self) -> str:
        kind = "int8" if self.graph.is_quantized else "float"
        what = str(self.scheme) if self.scheme is not None else f"{len(self.selection.trainable)} trainable tensor(s)"
        n_bwd = sum(op.kind not in ("forward",) for op in self.ops)
        sliced = f", {len(self.selection.channels)} sliced" if self.selection.channels else ""
        return (f"compiled training step of {kind} graph '{self.graph.name}': {what}{sliced}; "
                f"{'updates reordered' if self.reorder else 'updates at the end'}; "
                f"{len(self.ops) - n_bwd} forward + {n_bwd} backward/update ops")

    def __str__(self) -> str:
        return self.header() + "\n" + self.table()

    def __repr__(self) -> str:
        return (f"CompiledStep('{self.graph.name}', {len(self.ops)} ops, {len(self.selection.trainable)} trainable, "
                f"reorder={self.reorder})")

    def lifetimes(self, convention: "str | object" = "int8", batch: int = 1):
        """The buffers of this step as :class:`~tinyml_lab.memory.Lifetimes` under a byte ``convention``
        (see :func:`tinyml_lab.train.memory.step_lifetimes`)."""
        from .memory import step_lifetimes

        return step_lifetimes(self, convention, batch)


def _noop(env: dict) -> None:
    return None


def compile_step(graph: Graph, trainable: "SparseScheme | Selection | Iterable[str] | None" = None,
                 optimizer: Optimizer | None = None, reorder: bool = True, **kwargs) -> CompiledStep:
    """:class:`CompiledStep` of ``graph`` for ``trainable`` (a scheme, a selection, names or None)."""
    return CompiledStep(graph, trainable, optimizer, reorder, **kwargs)


class CompiledStepper(Stepper):
    """The training loop's stepper for a compiled step: :meth:`CompiledStep.run` per batch; snapshots
    of the trainable tensors and the optimizer state to undo a diverging step."""

    def __init__(self, step: CompiledStep):
        self.step = step
        self.bg = step.bg

    def snapshot(self) -> object:
        g = self.step.graph
        return {n: g.tensors[n].data.copy() for n in self.step.selection.trainable}, self.step.optimizer.state_dict()

    def restore(self, snap: object) -> None:
        arrays, state = snap  # type: ignore[misc]
        for n, a in arrays.items():
            self.step.graph.tensors[n].data[...] = a
        self.step.optimizer.load_state_dict(state)

    def train_batch(self, x: np.ndarray, y: np.ndarray, training: bool) -> tuple[float, np.ndarray, dict]:
        r = self.step.run(x, y)
        return r.loss, r.output, r.figures


def fit_compiled(graph: Graph, x: np.ndarray, y: np.ndarray,
                 trainable: "SparseScheme | Selection | Iterable[str] | None" = None, epochs: int = 10,
                 batch_size: int = 32, optimizer: Optimizer | None = None, seed: int = 0, reorder: bool = True,
                 loss: str = "cross_entropy", rounding: str = "nearest", validation_data: tuple | None = None,
                 callbacks: Sequence[Callback] = (), quiet: bool = False, backend: str = "numba") -> History:
    """Train ``graph`` in place with its compiled step (float or int8), mini-batch by mini-batch.

    The loop, its seed and its :class:`~tinyml_lab.train.History` are those of
    :func:`~tinyml_lab.train.fit`; ``trainable`` may be a sparse scheme; the
    default optimizer is ``SGD(lr=0.01)``, with QAS for an int8 graph. The
    training accuracy of each row is the argmax of the logits.
    """
    step = CompiledStep(graph, trainable, optimizer, reorder, loss, backend, rounding, seed)
    history = run_epochs(step.bg, CompiledStepper(step), x, y, epochs, batch_size, seed, True, validation_data,
                         callbacks, quiet, step.optimizer.lr)
    history.recipe = {"kind": "int8" if graph.is_quantized else "float", "compiled": True,
                      "optimizer": repr(step.optimizer), "epochs": epochs, "batch_size": batch_size, "seed": seed,
                      "loss": loss, "scheme": str(step.scheme) if step.scheme is not None else None,
                      "trainable": list(step.selection.trainable),
                      "channels": {n: len(c) for n, c in step.selection.channels.items()}, "reorder": reorder}
    return history


def plain_step(graph: Graph, x: np.ndarray, y: np.ndarray,
               trainable: "SparseScheme | Selection | Iterable[str] | None" = None,
               optimizer: Optimizer | None = None, loss: str = "cross_entropy", backend: str = "numba",
               rounding: str = "nearest", seed: int = 0) -> float:
    """The uncompiled step, the specification a compiled step must match: the whole backward pass of
    :class:`~tinyml_lab.train.autodiff.BackwardGraph` for the trainable tensors, every gradient held,
    then the updates (of the selected channels). Updates ``graph`` in place; returns the loss."""
    from .fit import FloatStepper
    from .quantized import QuantizedStepper

    sel = selection_of(graph, trainable)
    opt = optimizer if optimizer is not None else SGD(lr=0.01, qas=graph.is_quantized)
    bg = BackwardGraph(graph, sel.trainable, loss, backend=backend)
    tape = bg.forward(x, training=True)
    grads = bg.backward(tape, y)
    if graph.is_quantized:
        QuantizedStepper(bg, opt, rounding, seed, sel).apply(tape, grads)
    else:
        FloatStepper(bg, opt, "running", 0.1, sel).apply(tape, grads)
    return grads.loss


__all__ = ["CompiledStep", "CompiledStepper", "Op", "BufferSpec", "StepResult", "compile_step", "fit_compiled",
           "plain_step", "OP_KINDS"]
