"""Run a graph inside one preallocated byte buffer laid out by a memory plan.

:class:`ArenaInterpreter` allocates ``plan.arena_bytes`` once; every
activation tensor (graph inputs and outputs included) is a NumPy view of
those bytes at its planned offset. Each step reads its inputs from their
views and writes its output into its view; an op the plan runs in place
(its output at its dying input's offset) runs an in-place kernel of
:mod:`tinyml_lab.memory.inplace`. Before an out-of-place step writes, its
output bytes are filled with a noise pattern, as a kernel that streams its
output would overwrite them, so an output that wrongly overlaps a live
tensor destroys it. A wrong plan therefore corrupts the result, and
bit-exact agreement with :class:`tinyml_lab.interpreter.Interpreter` is a
check that the plan is valid.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import DTypeError, ShapeError
from ..graph import Graph, Node, Tensor
from ..interpreter import _FLOAT, _FLOAT_RANGE, _INT8, _linear_params, _scale, _window, _weights, _zp
from ..kernels import int8 as ki
from ..kernels.fixedpoint import activation_range, quantize_multiplier
from . import inplace as ip
from .planners import Plan, PlanError, plan as make_plan


class ArenaInterpreter:
    """``graph`` prepared to run in the arena of ``plan`` (by default a greedy-by-size plan).

    >>> it = ArenaInterpreter(q, plan(q, "exact"))   # doctest: +SKIP
    >>> y = it.run(x)                               # same codes as Interpreter(q).run(x)
    """

    def __init__(self, graph: Graph, plan: Plan | None = None, backend: str = "numba", poison: bool = True,
                 seed: int = 0):
        graph.validate()
        self.graph = graph
        self.plan = make_plan(graph) if plan is None else plan
        self.fast = backend == "numba"
        self.poison = poison
        self._check_plan()
        self.arena = np.zeros(self.plan.arena_bytes, np.uint8)
        self._noise = np.random.default_rng(seed).integers(0, 256, self.plan.arena_bytes, dtype=np.uint8)
        self.views = {name: self._view(name) for name in self._activations()}
        self.inplace_steps: list[str] = []
        self._steps = [self._prepare(node) for node in graph.nodes]

    # ------------------------------------------------------------------ layout
    def _activations(self) -> list[str]:
        return [n for n, t in self.graph.tensors.items() if not t.is_const]

    def _check_plan(self) -> None:
        lt = self.plan.lifetimes
        for name in self._activations():
            t = self.graph.tensors[name]
            if name not in self.plan.offsets:
                raise PlanError(f"the plan has no offset for tensor {name!r} of graph '{self.graph.name}'; "
                                f"plan the graph itself (memory.plan(graph))")
            if lt[name].size < t.nbytes:
                raise PlanError(f"the plan gives tensor {name!r} {lt[name].size} bytes; it needs {t.nbytes}")

    def _view(self, name: str) -> np.ndarray:
        t = self.graph.tensors[name]
        off = self.plan.offsets[name]
        return self.arena[off: off + t.nbytes].view(np.dtype(t.dtype)).reshape((1,) + t.shape)

    def _flat(self, name: str, nbytes: int | None = None) -> np.ndarray:
        off = self.plan.offsets[name]
        t = self.graph.tensors.get(name)
        n = nbytes if nbytes is not None else t.nbytes
        dtype = np.int8 if t is None else np.dtype(t.dtype)
        return self.arena[off: off + n].view(dtype)

    def _shares(self, node: Node) -> str | None:
        """The input the plan lets ``node`` overwrite (same offset, linked in the lifetimes), if any."""
        out = node.outputs[0]
        lt = self.plan.lifetimes
        src = lt[out].may_share_with
        if src is not None and src in node.inputs and self.plan.offsets[src] == self.plan.offsets[out]:
            return src
        return None

    # ------------------------------------------------------------------ steps
    def _prepare(self, node: Node) -> Callable[[], None]:
        g = self.graph
        ins = [g.tensors[t] for t in node.inputs]
        out = g.tensors[node.outputs[0]]
        int8 = out.dtype == "int8" or ins[0].dtype == "int8"
        src = self._shares(node)
        if src is not None:
            self.inplace_steps.append(node.name)
            return self._prepare_inplace(node, src, ins, out, int8)
        fn = (_INT8 if int8 else _FLOAT)[node.op](g, node, ins, out, self.fast)
        acts = [self.views[t.name] for t in ins if not t.is_const]
        dst = self.views[out.name]
        off, nbytes = self.plan.offsets[out.name], out.nbytes
        noise, arena, poison = self._noise, self.arena, self.poison

        def step() -> None:
            if poison:
                arena[off: off + nbytes] = noise[off: off + nbytes]
            dst[...] = fn(*acts)

        return step

    def _prepare_inplace(self, node: Node, src: str, ins: list[Tensor], out: Tensor, int8: bool):
        if node.op in ("Reshape", "Flatten"):
            return lambda: None  # same bytes, another shape
        if node.op == "DepthwiseConv2D":
            return self._dw_inplace(node, ins[0], out)
        buf = self._flat(out.name)
        if node.op == "Add":
            a, b = self._flat(node.inputs[0]), self._flat(node.inputs[1])
            if int8:
                args = _add_params(node, ins[0], ins[1], out)
                return lambda: ip.add_int8_into(a, b, buf, *args)
            lo, hi = _FLOAT_RANGE[node.attrs["activation"]]
            return lambda: ip.add_float_into(a, b, buf, lo, hi)
        x = self._flat(src)
        if int8:
            m, s = quantize_multiplier(np.float64(_scale(ins[0])) / np.float64(_scale(out)))
            lo, hi = activation_range("relu6" if node.op == "ReLU6" else "relu", _scale(out), _zp(out))
            args = (_zp(ins[0]), m, s, _zp(out), lo, hi)
            return lambda: ip.rescale_int8_into(x, buf, *args)
        lo, hi = _FLOAT_RANGE["relu6" if node.op == "ReLU6" else "relu"]
        return lambda: ip.clamp_float_into(x, buf, lo, hi)

    def _dw_inplace(self, node: Node, x: Tensor, out: Tensor):
        g = self.graph
        w, b = _weights(g, node)
        wq = g.weights(node)["weight"].quant
        a = node.attrs
        (sh, sw), pads = _window(g, node, x, w.shape[1:3], a["dilation"])
        dh, dw = a["dilation"]
        mult, shift, in_zp, out_zp, lo, hi = _linear_params(node, x, wq, out, w.shape[-1])
        bias_eff = ki.effective_bias(w, b, in_zp, depthwise=True)
        h, wd, c = x.shape
        buf = self._flat(x.name)
        scratch_name = f"{node.name}/scratch"
        scratch = self._flat(scratch_name, self.plan.lifetimes[scratch_name].size)
        off, n = self.plan.offsets[scratch_name], self.plan.lifetimes[scratch_name].size
        noise, arena, poison = self._noise, self.arena, self.poison

        def step() -> None:
            if poison:
                arena[off: off + n] = noise[off: off + n]
            ip.depthwise_conv2d_int8_inplace(buf, h, wd, c, w, bias_eff, sh, sw, dh, dw, *pads, in_zp, mult,
                                             shift, out_zp, lo, hi, scratch)

        return step

    # ------------------------------------------------------------------ running
    def run(self, *inputs: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
        """Run a batch one sample at a time inside the arena; returns fresh output arrays."""
        g = self.graph
        if len(inputs) != len(g.inputs):
            raise ShapeError(f"graph '{g.name}' takes {len(g.inputs)} input(s), got {len(inputs)}")
        xs = [self._check_input(g.tensors[n], x) for n, x in zip(g.inputs, inputs)]
        n = xs[0].shape[0]
        outs = [np.empty((n,) + g.tensors[o].shape, np.dtype(g.tensors[o].dtype)) for o in g.outputs]
        for i in range(n):
            if self.poison:
                self.arena[:] = self._noise
            for name, x in zip(g.inputs, xs):
                self.views[name][0] = x[i]
            for step in self._steps:
                step()
            for o, name in zip(outs, g.outputs):
                o[i] = self.views[name][0]
        return outs[0] if len(outs) == 1 else tuple(outs)

    __call__ = run

    def _check_input(self, t: Tensor, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.shape[1:] != t.shape:
            raise ShapeError(f"input '{t.name}' expects shape (N, {', '.join(map(str, t.shape))}), got {x.shape}")
        if t.dtype == "int8" and x.dtype != np.int8:
            raise DTypeError(f"input '{t.name}' of an int8 graph must hold int8 codes, got {x.dtype}")
        return x.astype(np.dtype(t.dtype), copy=False)


def _add_params(node: Node, a: Tensor, b: Tensor, out: Tensor) -> tuple:
    """The fixed-point parameters of TFLite's int8 ADD, as :mod:`tinyml_lab.interpreter` derives them."""
    sa, sb, so = np.float64(_scale(a)), np.float64(_scale(b)), np.float64(_scale(out))
    twice_max = 2.0 * max(sa, sb)
    am, ash = quantize_multiplier(sa / twice_max)
    bm, bsh = quantize_multiplier(sb / twice_max)
    om, osh = quantize_multiplier(twice_max / ((1 << ki.ADD_LEFT_SHIFT) * so))
    lo, hi = activation_range(node.attrs["activation"], _scale(out), _zp(out))
    return (_zp(a), am, ash, _zp(b), bm, bsh, _zp(out), om, osh, lo, hi)


def run_in_arena(graph: Graph, plan: Plan, *inputs: np.ndarray) -> np.ndarray | tuple[np.ndarray, ...]:
    """One-shot :meth:`ArenaInterpreter.run`."""
    return ArenaInterpreter(graph, plan).run(*inputs)


__all__ = ["ArenaInterpreter", "run_in_arena"]
