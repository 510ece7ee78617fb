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
        self._steps: list[Step] = [self._prepare(node) for node in graph.nodes]

    # ------------------------------------------------------------------ running
    def run(self, *inputs: np.ndarray, return_all: bool = False) -> np.ndarray | dict[str, np.ndarray]:
        """Run on a batch; returns the output (or a tuple for several outputs, or every tensor
        with ``return_all``)."""
        g = self.graph
        if len(inputs) != len(g.inputs):
            raise ShapeError(f"graph '{g.name}' takes {len(g.inputs)} input(s), got {len(inputs)}")
        env: Env = {name: self._check_input(g.tensors[name], x) for name, x in zip(g.inputs, inputs)}
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
        src = [t.name for t in ins if not t.is_const]
        dst = out.name
        if len(src) == 1:
            a = src[0]

            def step(env: Env) -> None:
                env[dst] = fn(env[a])
        else:
            a, b = src

            def step2(env: Env) -> None:
                env[dst] = fn(env[a], env[b])
            return step2
        return step


def run(graph: Graph, *inputs: np.ndarray, backend: str = "numba") -> np.ndarray:
    """One-shot :meth:`Interpreter.run`."""
    return Interpreter(graph, backend).run(*inputs)


# --------------------------------------------------------------------------- helpers

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
        k = kf.depthwise_conv2d if depthwise else kf.conv2d
        return lambda v: k(v, w, bias, sh, sw, dh, dw, *pads, lo, hi)
    k = ref.depthwise_conv2d if depthwise else ref.conv2d
    return lambda v: k(v, w, b, (sh, sw), (dh, dw), pads, lo, hi)


def _f_dense(g, node, ins, out, fast):
    w, b = _weights(g, node)
    lo, hi = _FLOAT_RANGE[node.attrs["activation"]]
    if fast:
        bias = np.zeros(w.shape[0], np.float32) if b is None else b
        return lambda v: kf.dense(v, w, bias, lo, hi)
    return lambda v: ref.dense(v, w, b, lo, hi)


def _f_pool(g, node, ins, out, fast):
    a = node.attrs
    pool = a["pool_size"]
    (sh, sw), pads = _window(g, node, ins[0], pool)
    lo, hi = _FLOAT_RANGE[a["activation"]]
    if node.op == "AvgPool2D":
        cip = a["count_include_pad"]
        if fast:
            return lambda v: kf.avg_pool2d(v, pool[0], pool[1], sh, sw, *pads, cip, lo, hi)
        return lambda v: ref.avg_pool2d(v, pool, (sh, sw), pads, cip, lo, hi)
    if fast:
        return lambda v: kf.max_pool2d(v, pool[0], pool[1], sh, sw, *pads, lo, hi)
    return lambda v: ref.max_pool2d(v, pool, (sh, sw), pads, lo, hi)


def _f_gap(g, node, ins, out, fast):
    return kf.global_avg_pool if fast else ref.global_avg_pool


def _f_add(g, node, ins, out, fast):
    lo, hi = _FLOAT_RANGE[node.attrs["activation"]]
    if fast:
        return lambda a, b: kf.add(a, b, lo, hi)
    return lambda a, b: ref.add(a, b, lo, hi)


def _f_clamp(g, node, ins, out, fast):
    lo, hi = _FLOAT_RANGE["relu6" if node.op == "ReLU6" else "relu"]
    k = kf.clamp if fast else ref.clamp
    return lambda v: k(v, lo, hi)


def _f_reshape(g, node, ins, out, fast):
    shape = out.shape
    return lambda v: v.reshape((v.shape[0],) + shape)


def _f_softmax(g, node, ins, out, fast):
    beta = node.attrs["beta"]
    k = kf.softmax if fast else ref.softmax
    return lambda v: k(v, beta)


def _f_bn(g, node, ins, out, fast):
    w = {k: t.data.astype(np.float64) for k, t in g.weights(node).items()}
    eps = node.attrs["epsilon"]
    if fast:
        scale = w["gamma"] / np.sqrt(w["var"] + eps)
        shift = (w["beta"] - w["mean"] * scale).astype(np.float32)
        scale = scale.astype(np.float32)
        return lambda v: kf.batch_norm(v, scale, shift)
    return lambda v: ref.batch_norm(v, w["gamma"], w["beta"], w["mean"], w["var"], eps)


def _f_pad(g, node, ins, out, fast):
    pads = node.attrs["pads"]
    if fast:
        return lambda v: kf.pad(v, *pads, 0.0)
    return lambda v: ref.pad(v, pads, 0.0)


def _f_quantize(g, node, ins, out, fast):
    s, z = _scale(out), _zp(out)
    if fast:
        return lambda v: ki.quantize(v, s, z)
    return lambda v: ref.quantize(v, s, z)


_FLOAT: dict[str, Callable] = {
    "Conv2D": _f_conv, "DepthwiseConv2D": _f_conv, "Dense": _f_dense,
    "AvgPool2D": _f_pool, "MaxPool2D": _f_pool, "GlobalAvgPool": _f_gap, "Add": _f_add,
    "ReLU": _f_clamp, "ReLU6": _f_clamp, "Reshape": _f_reshape, "Flatten": _f_reshape,
    "Softmax": _f_softmax, "BatchNorm": _f_bn, "Pad": _f_pad, "Quantize": _f_quantize,
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
        k = ki.depthwise_conv2d_int8 if depthwise else ki.conv2d_int8
        return lambda v: k(v, w, bias_eff, sh, sw, dh, dw, *pads, in_zp, mult, shift, out_zp, lo, hi)
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
        return lambda v: ki.dense_int8(v, w, bias_eff, in_zp, mult, shift, out_zp, lo, hi)
    return lambda v: ref.dense_int8(v, w, b, in_zp, mult, shift, out_zp, lo, hi)


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
            return lambda v: ki.avg_pool2d_int8(v, pool[0], pool[1], sh, sw, *pads, lo, hi)
        return lambda v: ref.avg_pool2d_int8(v, pool, (sh, sw), pads, lo, hi)
    if fast:
        return lambda v: ki.max_pool2d_int8(v, pool[0], pool[1], sh, sw, *pads, lo, hi)
    return lambda v: ref.max_pool2d_int8(v, pool, (sh, sw), pads, lo, hi)


def _i_gap(g, node, ins, out, fast):
    m, s = quantize_multiplier(np.float64(_scale(ins[0])) / np.float64(_scale(out)))
    in_zp, out_zp = _zp(ins[0]), _zp(out)
    k = ki.global_avg_pool_int8 if fast else ref.global_avg_pool_int8
    return lambda v: k(v, in_zp, m, s, out_zp)


def _i_add(g, node, ins, out, fast):
    a, b = ins
    sa, sb, so = np.float64(_scale(a)), np.float64(_scale(b)), np.float64(_scale(out))
    twice_max = 2.0 * max(sa, sb)
    am, ash = quantize_multiplier(sa / twice_max)
    bm, bsh = quantize_multiplier(sb / twice_max)
    om, osh = quantize_multiplier(twice_max / ((1 << ki.ADD_LEFT_SHIFT) * so))
    lo, hi = activation_range(node.attrs["activation"], _scale(out), _zp(out))
    args = (_zp(a), am, ash, _zp(b), bm, bsh, _zp(out), om, osh, lo, hi)
    k = ki.add_int8 if fast else ref.add_int8
    return lambda u, v: k(u, v, *args)


def _i_relu(g, node, ins, out, fast):
    m, s = quantize_multiplier(np.float64(_scale(ins[0])) / np.float64(_scale(out)))
    lo, hi = activation_range("relu6" if node.op == "ReLU6" else "relu", _scale(out), _zp(out))
    args = (_zp(ins[0]), m, s, _zp(out), lo, hi)
    k = ki.rescale_int8 if fast else ref.rescale_int8
    return lambda v: k(v, *args)


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
    k = ki.softmax_int8 if fast else ref.softmax_int8
    return lambda v: k(v, m, s, diff_min)


def _i_pad(g, node, ins, out, fast):
    _same_quant(node, ins[0], out)
    pads, zp = node.attrs["pads"], _zp(out)
    if fast:
        return lambda v: ki.pad_int8(v, *pads, zp)
    return lambda v: ref.pad_int8(v, pads, zp)


def _i_dequantize(g, node, ins, out, fast):
    s, z = _scale(ins[0]), _zp(ins[0])
    if fast:
        return lambda v: kf.dequantize(v, s, z)
    return lambda v: ref.dequantize(v, s, z)


_INT8: dict[str, Callable] = {
    "Conv2D": _i_conv, "DepthwiseConv2D": _i_conv, "Dense": _i_dense,
    "AvgPool2D": _i_pool, "MaxPool2D": _i_pool, "GlobalAvgPool": _i_gap, "Add": _i_add,
    "ReLU": _i_relu, "ReLU6": _i_relu, "Reshape": _i_reshape, "Flatten": _i_reshape,
    "Softmax": _i_softmax, "Pad": _i_pad, "Quantize": _f_quantize, "Dequantize": _i_dequantize,
}
