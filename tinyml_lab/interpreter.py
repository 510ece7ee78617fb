"""Run a float or int8 graph on a batch.

:class:`Interpreter` prepares every node once: it resolves paddings, turns
scales into fixed-point multipliers, folds the input zero point into an
effective bias and computes the clamp bounds of fused activations. ``run``
then only calls kernels. Two backends compute the same thing:

* ``"numba"`` (default): the compiled kernels of :mod:`tinyml_lab.kernels.float32`
  and :mod:`tinyml_lab.kernels.int8`;
* ``"reference"``: the NumPy specification, :mod:`tinyml_lab.kernels.reference`.

For an int8 graph the arrays in and out hold int8 codes, as a TFLite int8
model's do; ``real = scale * (code - zero_point)``.

Preparation reads the weights once (as a deployed model does): after changing a
graph's weights, build a new :class:`Interpreter`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .errors import DTypeError, QuantizationError, ShapeError, TinyMLError
from .graph import Graph, Node, Tensor
from .kernels import float32 as kf
from .kernels import int8 as ki
from .kernels import reference as ref
from .kernels.fixedpoint import (
    SOFTMAX_OUTPUT_SCALE,
    SOFTMAX_OUTPUT_ZERO_POINT,
    activation_range,
    quantize_multiplier,
    quantize_multipliers,
    softmax_params,
)
from .ops import resolve_padding

BACKENDS = ("numba", "reference")
Env = dict[str, np.ndarray]
Step = Callable[[Env], None]

_FLOAT_RANGE = {"none": (-np.inf, np.inf), "relu": (0.0, np.inf), "relu6": (0.0, 6.0)}
# int8 Dense layers whose float32 weight matrix is larger than this (about the size of a core's
# L2 cache) read their int8 weights instead at batches of up to four rows
_STREAM_WEIGHTS_BYTES = 1 << 20


class Interpreter:
    """A graph prepared for execution.

    >>> it = Interpreter(graph)            # doctest: +SKIP
    >>> y = it.run(x)                      # x: (N, *graph.input_shape())
    """

    def __init__(self, graph: Graph, backend: str = "numba"):
        if backend not in BACKENDS:
            raise TinyMLError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        graph.validate()
        self.graph = graph
        self.backend = backend
        self._fns: list[Callable] = []
        self._steps: list[Step] = [self._prepare(node) for node in graph.nodes]
        # an int8 graph the compiled kernels can run whole, in one call (None: step by step)
        self._program = _Program.build(graph, self._fns) if backend == "numba" else None
        # what an input that needs no conversion looks like: (shape without the batch, dtype)
        self._accepts = [(graph.tensors[n].shape, np.dtype(graph.tensors[n].dtype)) for n in graph.inputs]

    # ------------------------------------------------------------------ running
    def run(self, *inputs: np.ndarray, return_all: bool = False) -> np.ndarray | dict[str, np.ndarray]:
        """Run on a batch; returns the output (or a tuple for several outputs, or every tensor
        with ``return_all``)."""
        g = self.graph
        if len(inputs) != len(g.inputs):
            raise ShapeError(f"graph '{g.name}' takes {len(g.inputs)} input(s), got {len(inputs)}")
        env: Env = {}
        for name, x, (shape, dtype) in zip(g.inputs, inputs, self._accepts):
            ready = type(x) is np.ndarray and x.dtype == dtype and x.shape[1:] == shape and x.flags.c_contiguous
            env[name] = x if ready else self._check_input(g.tensors[name], x)
        if self._program is not None and not return_all:
            return self._program(env[g.inputs[0]])
        for step in self._steps:
            step(env)
        if return_all:
            return env
        outs = tuple(env[name] for name in g.outputs)
        return outs[0] if len(outs) == 1 else outs  # type: ignore[return-value]

    __call__ = run

    def _check_input(self, t: Tensor, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.shape[1:] != t.shape or x.ndim != len(t.shape) + 1:
            hint = "; add a batch axis with x[None]" if x.shape == t.shape else ""
            raise ShapeError(
                f"input '{t.name}' of graph '{self.graph.name}' expects shape (N, "
                f"{', '.join(map(str, t.shape))}), got {x.shape}{hint}"
            )
        if t.dtype == "int8":
            if x.dtype != np.int8:
                raise DTypeError(
                    f"graph '{self.graph.name}' is an int8 model: input '{t.name}' must hold int8 codes "
                    f"(got {x.dtype}); quantize real values with scale {float(t.quant.scale[0]):.6g} and "
                    f"zero point {int(t.quant.zero_point[0])}, e.g. tinyml_lab.kernels.reference.quantize"
                )
        else:
            if not np.issubdtype(x.dtype, np.floating):
                raise DTypeError(f"input '{t.name}' of a float model must be floating point, got {x.dtype}")
            x = x.astype(np.float32, copy=False)
        return np.ascontiguousarray(x)

    # ------------------------------------------------------------------ preparation
    def _prepare(self, node: Node) -> Step:
        g = self.graph
        ins = [g.tensors[t] for t in node.inputs]
        out = g.tensors[node.outputs[0]]
        int8 = out.dtype == "int8" or ins[0].dtype == "int8"
        table = _INT8 if int8 else _FLOAT
        try:
            make = table[node.op]
        except KeyError:
            raise QuantizationError(
                f"{node.op} '{node.name}' cannot run on {'int8' if int8 else 'float32'} tensors"
            ) from None
        fn = make(g, node, ins, out, self.backend == "numba")
        self._fns.append(fn)
        src = [t.name for t in ins if not t.is_const]
        dst = out.name
        # a bound kernel is called directly, with its prepared arguments: one Python call per step
        k, args = (fn.kernel, fn.args) if isinstance(fn, _Bound) else (fn, ())
        if len(src) == 1:
            a = src[0]

            def step(env: Env) -> None:
                env[dst] = k(env[a], *args)
            return step
        a, b = src

        def step2(env: Env) -> None:
            env[dst] = k(env[a], env[b], *args)
        return step2


def run(graph: Graph, *inputs: np.ndarray, backend: str = "numba") -> np.ndarray:
    """One-shot :meth:`Interpreter.run`."""
    return Interpreter(graph, backend).run(*inputs)


# --------------------------------------------------------------------------- helpers

class _Bound:
    """A kernel and the arguments prepared for it: ``_Bound(k, *args)(*activations)`` is
    ``k(*activations, *args)``."""

    __slots__ = ("kernel", "args")

    def __init__(self, kernel: Callable, *args):
        self.kernel = kernel
        self.args = args

    def __call__(self, *activations: np.ndarray) -> np.ndarray:
        return self.kernel(*activations, *self.args)


def _window(g: Graph, node: Node, x: Tensor, kernel: tuple[int, int], dilation=(1, 1)):
    a = node.attrs
    _, pads = resolve_padding(x.shape[:2], kernel, a["strides"], dilation, a["padding"], node.name)
    return a["strides"], pads


def _weights(g: Graph, node: Node) -> tuple[np.ndarray, np.ndarray | None]:
    w = g.weights(node)
    return w["weight"].data, (w["bias"].data if "bias" in w else None)


def _scale(t: Tensor) -> float:
    return float(t.quant.scale[0])


def _zp(t: Tensor) -> int:
    return int(t.quant.zero_point[0])


def _same_quant(node: Node, a: Tensor, b: Tensor) -> None:
    if a.quant != b.quant:
        raise QuantizationError(
            f"{node.op} '{node.name}': int8 input and output must share scale and zero point "
            f"({a.quant} vs {b.quant})"
        )


# --------------------------------------------------------------------------- float32 steps

def _f_conv(g, node, ins, out, fast):
    x = ins[0]
    w, b = _weights(g, node)
    depthwise = node.op == "DepthwiseConv2D"
    kernel = w.shape[1:3]
    a = node.attrs
    (sh, sw), pads = _window(g, node, x, kernel, a["dilation"])
    (dh, dw) = a["dilation"]
    lo, hi = _FLOAT_RANGE[a["activation"]]
    cout = w.shape[-1] if depthwise else w.shape[0]
    bias = np.zeros(cout, np.float32) if b is None else b
    if fast:
        geometry = kf.window(*kernel, sh, sw, dh, dw, *pads)
        if depthwise:
            k, wk = kf.depthwise_conv2d_rows, kf.depthwise_row_weights(w, out.shape[1])
        else:
            k, wk = kf.conv2d_gemm, kf.gemm_weights(w)
        return _Bound(k, wk, bias, geometry, lo, hi)
    k = ref.depthwise_conv2d if depthwise else ref.conv2d
    return lambda v: k(v, w, b, (sh, sw), (dh, dw), pads, lo, hi)


def _f_dense(g, node, ins, out, fast):
    w, b = _weights(g, node)
    lo, hi = _FLOAT_RANGE[node.attrs["activation"]]
    if fast:
        bias = np.zeros(w.shape[0], np.float32) if b is None else b
        wk = kf.gemm_weights(w)
        return _Bound(kf.dense_gemm, wk, bias, lo, hi)
    return lambda v: ref.dense(v, w, b, lo, hi)


def _f_pool(g, node, ins, out, fast):
    a = node.attrs
    pool = a["pool_size"]
    (sh, sw), pads = _window(g, node, ins[0], pool)
    lo, hi = _FLOAT_RANGE[a["activation"]]
    if node.op == "AvgPool2D":
        cip = a["count_include_pad"]
        if fast:
            return _Bound(kf.avg_pool2d, pool[0], pool[1], sh, sw, *pads, cip, lo, hi)
        return lambda v: ref.avg_pool2d(v, pool, (sh, sw), pads, cip, lo, hi)
    if fast:
        return _Bound(kf.max_pool2d, pool[0], pool[1], sh, sw, *pads, lo, hi)
    return lambda v: ref.max_pool2d(v, pool, (sh, sw), pads, lo, hi)


def _f_gap(g, node, ins, out, fast):
    return kf.global_avg_pool if fast else ref.global_avg_pool


def _f_add(g, node, ins, out, fast):
    lo, hi = _FLOAT_RANGE[node.attrs["activation"]]
    if fast:
        return _Bound(kf.add, lo, hi)
    return lambda a, b: ref.add(a, b, lo, hi)


def _f_clamp(g, node, ins, out, fast):
    lo, hi = _FLOAT_RANGE["relu6" if node.op == "ReLU6" else "relu"]
    return _Bound(kf.clamp if fast else ref.clamp, lo, hi)


def _f_reshape(g, node, ins, out, fast):
    shape = out.shape
    return lambda v: v.reshape((v.shape[0],) + shape)


def _f_softmax(g, node, ins, out, fast):
    beta = node.attrs["beta"]
    return _Bound(kf.softmax if fast else ref.softmax, beta)


def _f_bn(g, node, ins, out, fast):
    w = {k: t.data.astype(np.float64) for k, t in g.weights(node).items()}
    eps = node.attrs["epsilon"]
    if fast:
        scale = w["gamma"] / np.sqrt(w["var"] + eps)
        shift = (w["beta"] - w["mean"] * scale).astype(np.float32)
        scale = scale.astype(np.float32)
        return _Bound(kf.batch_norm, scale, shift)
    return lambda v: ref.batch_norm(v, w["gamma"], w["beta"], w["mean"], w["var"], eps)


def _f_pad(g, node, ins, out, fast):
    pads = node.attrs["pads"]
    if fast:
        return _Bound(kf.pad, *pads, 0.0)
    return lambda v: ref.pad(v, pads, 0.0)


def _f_quantize(g, node, ins, out, fast):
    s, z = _scale(out), _zp(out)
    if fast:
        return _Bound(ki.quantize, s, z)
    return lambda v: ref.quantize(v, s, z)


def _f_fakequant(g, node, ins, out, fast):
    from .quant.fakequant import fake_quantize_node

    attrs = dict(node.attrs)
    return lambda v: fake_quantize_node(v, attrs)


_FLOAT: dict[str, Callable] = {
    "Conv2D": _f_conv, "DepthwiseConv2D": _f_conv, "Dense": _f_dense,
    "AvgPool2D": _f_pool, "MaxPool2D": _f_pool, "GlobalAvgPool": _f_gap, "Add": _f_add,
    "ReLU": _f_clamp, "ReLU6": _f_clamp, "Reshape": _f_reshape, "Flatten": _f_reshape,
    "Softmax": _f_softmax, "BatchNorm": _f_bn, "Pad": _f_pad, "Quantize": _f_quantize,
    "FakeQuant": _f_fakequant,
}


# --------------------------------------------------------------------------- int8 steps

def _i_conv(g, node, ins, out, fast):
    x = ins[0]
    w, b = _weights(g, node)
    wq = g.weights(node)["weight"].quant
    depthwise = node.op == "DepthwiseConv2D"
    a = node.attrs
    kernel = w.shape[1:3]
    (sh, sw), pads = _window(g, node, x, kernel, a["dilation"])
    dh, dw = a["dilation"]
    mult, shift, in_zp, out_zp, lo, hi = _linear_params(node, x, wq, out, w.shape[-1] if depthwise else w.shape[0])
    if fast:
        bias_eff = ki.effective_bias(w, b, in_zp, depthwise)
        geometry = kf.window(*kernel, sh, sw, dh, dw, *pads)
        table = ki.requantize_table(mult, shift)
        if depthwise:
            k, wk = ki.depthwise_conv2d_int8_rows, kf.depthwise_row_weights(w, out.shape[1])
        else:
            k, wk = ki.conv2d_int8_gemm, kf.gemm_weights(w)
        return _Bound(k, wk, bias_eff, geometry, in_zp, table, out_zp, lo, hi)
    k = ref.depthwise_conv2d_int8 if depthwise else ref.conv2d_int8
    return lambda v: k(v, w, b, (sh, sw), (dh, dw), pads, in_zp, mult, shift, out_zp, lo, hi)


def _linear_params(node: Node, x: Tensor, wq, out: Tensor, channels: int):
    """Per-channel multipliers ``s_in * s_w[c] / s_out`` (in double, from float32 scales), the
    zero points and the clamp bounds of the fused activation."""
    s_w = np.broadcast_to(wq.scale.astype(np.float64), (channels,))
    real = np.float64(_scale(x)) * s_w / np.float64(_scale(out))
    mult, shift = quantize_multipliers(real)
    lo, hi = activation_range(node.attrs["activation"], _scale(out), _zp(out))
    return mult, shift, _zp(x), _zp(out), lo, hi


def _i_dense(g, node, ins, out, fast):
    w, b = _weights(g, node)
    wq = g.weights(node)["weight"].quant
    mult, shift, in_zp, out_zp, lo, hi = _linear_params(node, ins[0], wq, out, w.shape[0])
    if fast:
        bias_eff = ki.effective_bias(w, b, in_zp)
        wk, table = kf.gemm_weights(w), ki.requantize_table(mult, shift)
        if wk.nbytes <= _STREAM_WEIGHTS_BYTES:
            return _Bound(ki.dense_int8_gemm, wk, bias_eff, table, out_zp, lo, hi)
        # a large layer: at small batches, stream the int8 weights rather than 4x the bytes of floats
        return _Bound(_dense_int8_large, wk, np.ascontiguousarray(w.T), bias_eff, table, out_zp, lo, hi)
    return lambda v: ref.dense_int8(v, w, b, in_zp, mult, shift, out_zp, lo, hi)


def _dense_int8_large(v, w_gemm, w_codes, bias_eff, table, out_zp, lo, hi):
    if v.shape[0] <= 4:
        return ki.dense_int8_matvec(v, w_codes, bias_eff, table, out_zp, lo, hi)
    return ki.dense_int8_gemm(v, w_gemm, bias_eff, table, out_zp, lo, hi)


def _i_pool(g, node, ins, out, fast):
    _same_quant(node, ins[0], out)
    a = node.attrs
    pool = a["pool_size"]
    (sh, sw), pads = _window(g, node, ins[0], pool)
    lo, hi = activation_range(a["activation"], _scale(out), _zp(out))
    if node.op == "AvgPool2D":
        if a["count_include_pad"]:
            raise QuantizationError(
                f"AvgPool2D '{node.name}': the int8 average pool leaves padding out of the count; "
                f"count_include_pad=True has no int8 kernel"
            )
        if fast:
            return _Bound(ki.avg_pool2d_int8, pool[0], pool[1], sh, sw, *pads, lo, hi)
        return lambda v: ref.avg_pool2d_int8(v, pool, (sh, sw), pads, lo, hi)
    if fast:
        return _Bound(ki.max_pool2d_int8, pool[0], pool[1], sh, sw, *pads, lo, hi)
    return lambda v: ref.max_pool2d_int8(v, pool, (sh, sw), pads, lo, hi)


def _i_gap(g, node, ins, out, fast):
    m, s = quantize_multiplier(np.float64(_scale(ins[0])) / np.float64(_scale(out)))
    in_zp, out_zp = _zp(ins[0]), _zp(out)
    return _Bound(ki.global_avg_pool_int8 if fast else ref.global_avg_pool_int8, in_zp, m, s, out_zp)


def _i_add(g, node, ins, out, fast):
    a, b = ins
    sa, sb, so = np.float64(_scale(a)), np.float64(_scale(b)), np.float64(_scale(out))
    twice_max = 2.0 * max(sa, sb)
    am, ash = quantize_multiplier(sa / twice_max)
    bm, bsh = quantize_multiplier(sb / twice_max)
    om, osh = quantize_multiplier(twice_max / ((1 << ki.ADD_LEFT_SHIFT) * so))
    lo, hi = activation_range(node.attrs["activation"], _scale(out), _zp(out))
    args = (_zp(a), am, ash, _zp(b), bm, bsh, _zp(out), om, osh, lo, hi)
    return _Bound(ki.add_int8 if fast else ref.add_int8, *args)


def _i_relu(g, node, ins, out, fast):
    m, s = quantize_multiplier(np.float64(_scale(ins[0])) / np.float64(_scale(out)))
    lo, hi = activation_range("relu6" if node.op == "ReLU6" else "relu", _scale(out), _zp(out))
    args = (_zp(ins[0]), m, s, _zp(out), lo, hi)
    return _Bound(ki.rescale_int8 if fast else ref.rescale_int8, *args)


def _i_reshape(g, node, ins, out, fast):
    _same_quant(node, ins[0], out)
    return _f_reshape(g, node, ins, out, fast)


def _i_softmax(g, node, ins, out, fast):
    if not (np.isclose(_scale(out), SOFTMAX_OUTPUT_SCALE, rtol=0, atol=1e-9)
            and _zp(out) == SOFTMAX_OUTPUT_ZERO_POINT):
        raise QuantizationError(
            f"Softmax '{node.name}': an int8 softmax output must have scale 1/256 and zero point -128 "
            f"(got {out.quant})"
        )
    try:
        m, s, diff_min = softmax_params(_scale(ins[0]), node.attrs["beta"])
    except ValueError as exc:
        raise QuantizationError(f"Softmax '{node.name}': {exc}") from None
    return _Bound(ki.softmax_int8 if fast else ref.softmax_int8, m, s, diff_min)


def _i_pad(g, node, ins, out, fast):
    _same_quant(node, ins[0], out)
    pads, zp = node.attrs["pads"], _zp(out)
    if fast:
        return _Bound(ki.pad_int8, *pads, zp)
    return lambda v: ref.pad_int8(v, pads, zp)


def _i_dequantize(g, node, ins, out, fast):
    s, z = _scale(ins[0]), _zp(ins[0])
    if fast:
        return _Bound(kf.dequantize, s, z)
    return lambda v: ref.dequantize(v, s, z)


_INT8: dict[str, Callable] = {
    "Conv2D": _i_conv, "DepthwiseConv2D": _i_conv, "Dense": _i_dense,
    "AvgPool2D": _i_pool, "MaxPool2D": _i_pool, "GlobalAvgPool": _i_gap, "Add": _i_add,
    "ReLU": _i_relu, "ReLU6": _i_relu, "Reshape": _i_reshape, "Flatten": _i_reshape,
    "Softmax": _i_softmax, "Pad": _i_pad, "Quantize": _f_quantize, "Dequantize": _i_dequantize,
}


# --------------------------------------------------------------------------- whole int8 graphs

class _Program:
    """An int8 graph as one call of :func:`tinyml_lab.kernels.int8.run_program`: the kernels and
    arguments of the steps, encoded as rows of integers (operation, slots, offsets of the weights
    in three flat arrays, scalar parameters). Built for single-input, single-output graphs whose
    tensors are all int8 and whose ops all have a row encoding; other graphs run step by step."""

    _OPS = {ki.conv2d_int8_gemm: ki.OP_CONV, ki.depthwise_conv2d_int8_rows: ki.OP_DEPTHWISE,
            ki.dense_int8_gemm: ki.OP_DENSE, _dense_int8_large: ki.OP_DENSE,
            ki.avg_pool2d_int8: ki.OP_AVG_POOL, ki.max_pool2d_int8: ki.OP_MAX_POOL,
            ki.global_avg_pool_int8: ki.OP_GLOBAL_AVG_POOL, ki.add_int8: ki.OP_ADD,
            ki.rescale_int8: ki.OP_RESCALE, ki.softmax_int8: ki.OP_SOFTMAX, ki.pad_int8: ki.OP_PAD}

    def __init__(self, code, shapes, floats, ints, codes, out_slot, out_shape):
        self.code, self.shapes, self.out_slot, self.out_shape = code, shapes, out_slot, out_shape
        self.floats, self.ints, self.codes = floats, ints, codes

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = ki.run_program(x, self.code, self.shapes, self.floats, self.ints, self.codes, self.out_slot)
        return y.reshape((x.shape[0],) + self.out_shape)

    @classmethod
    def build(cls, graph: Graph, fns: list[Callable]) -> _Program | None:
        tensors = [t for t in graph.tensors.values() if not t.is_const]
        if len(graph.inputs) != 1 or len(graph.outputs) != 1 or any(t.dtype != "int8" for t in tensors):
            return None
        slot = {graph.inputs[0]: 0}
        shapes, rows = [cls._shape(graph.tensors[graph.inputs[0]])], []
        floats: list[np.ndarray] = []
        ints: list[np.ndarray] = []
        codes: list[np.ndarray] = []
        sizes = {"floats": 0, "ints": 0, "codes": 0}

        def put(store: list, key: str, array: np.ndarray) -> int:
            store.append(array.ravel())
            sizes[key] += array.size
            return sizes[key] - array.size

        for node, fn in zip(graph.nodes, fns):
            out = graph.tensors[node.outputs[0]]
            shape = cls._shape(out)
            if shape is None:
                return None
            src = [slot[t] for t in node.inputs if t in slot]
            row = np.zeros(ki.PROGRAM_WIDTH, np.int64)
            row[1:3] = (src + [-1, -1])[:2]
            row[3] = slot[out.name] = len(shapes)
            shapes.append(shape)
            if node.op in ("Reshape", "Flatten"):
                row[0] = ki.OP_ALIAS
            elif isinstance(fn, _Bound) and fn.kernel in cls._OPS:
                row[0] = op = cls._OPS[fn.kernel]
                args = fn.args
                if op in (ki.OP_CONV, ki.OP_DEPTHWISE):
                    w, bias, geometry, in_zp, table, out_zp, lo, hi = args
                    row[ki.GEOMETRY: ki.GEOMETRY + 10] = geometry
                    row[ki.IN_ZP] = in_zp
                elif fn.kernel is _dense_int8_large:
                    w, w_codes, bias, table, out_zp, lo, hi = args
                    row[ki.CODES_OFF] = put(codes, "codes", w_codes)
                elif op == ki.OP_DENSE:
                    w, bias, table, out_zp, lo, hi = args
                if op in (ki.OP_CONV, ki.OP_DEPTHWISE, ki.OP_DENSE):
                    row[ki.W_OFF] = put(floats, "floats", w)
                    row[ki.W_ROWS], row[ki.W_COLS] = w.shape
                    row[ki.BIAS_OFF] = put(ints, "ints", bias)
                    row[ki.TABLE_OFF] = put(ints, "ints", table)
                    row[ki.OUT_ZP], row[ki.LO], row[ki.HI] = out_zp, lo, hi
                    if op != ki.OP_DENSE or fn.kernel is not _dense_int8_large:
                        row[ki.CODES_OFF] = -1
                else:
                    row[4: 4 + len(args)] = args
            else:
                return None
            rows.append(row)

        def cat(parts: list[np.ndarray], dtype) -> np.ndarray:
            return np.ascontiguousarray(np.concatenate(parts) if parts else np.zeros(0), dtype=dtype)

        out = graph.tensors[graph.outputs[0]]
        return cls(np.array(rows, np.int64).reshape(-1, ki.PROGRAM_WIDTH), np.array(shapes, np.int64),
                   cat(floats, np.float32), cat(ints, np.int32), cat(codes, np.int8), slot[out.name], out.shape)

    @staticmethod
    def _shape(t: Tensor) -> tuple[int, int, int] | None:
        """A tensor's shape without the batch, as ``(h, w, c)``; vectors are ``(1, 1, c)``."""
        if len(t.shape) == 3:
            return t.shape  # type: ignore[return-value]
        if len(t.shape) == 2:
            return (1,) + t.shape  # type: ignore[return-value]
        if len(t.shape) == 1:
            return (1, 1) + t.shape  # type: ignore[return-value]
        return None
