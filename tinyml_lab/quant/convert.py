"""Convert a float graph into an int8 graph that follows the TFLite int8 spec.

The conversion (:func:`quantize_model`):

1. :func:`prepare`: folds BatchNorm into the preceding layers and fuses
   ReLU/ReLU6 into them (:mod:`tinyml_lab.passes`);
2. runs the float graph on calibration data and lets an observer
   (:mod:`tinyml_lab.quant.observers`; min-max by default) choose each
   activation's range ``[lo, hi]``, widened to contain 0 so that 0.0 has an
   exact code;
3. quantizes activations per tensor, asymmetric:
   ``scale = (hi - lo) / 255``, ``zero_point = round(-128 - lo / scale)``;
4. quantizes weights symmetric to ``[-(2^(b-1) - 1), 2^(b-1) - 1]`` (``b`` the
   layer's weight bits, 8 unless told; the codes are stored in int8
   containers, which the int8 kernels run as they are): per output channel
   for convolutions when ``per_channel`` (else per tensor), per tensor for
   dense layers; ``scale_w = max |w| / (2^(b-1) - 1)`` (or the MSE-optimal
   clipping of :func:`weight_quant_mse`);
5. quantizes biases to int32 with ``scale_b = scale_in * scale_w``.

Ops whose int8 kernel keeps the scale (pooling, reshape, pad) give their
output the input's parameters; softmax outputs use scale 1/256 and zero
point -128, as TFLite requires. :func:`build_int8` is step 3-5 with the
parameters given (the ONNX QDQ importer uses it).
"""

from __future__ import annotations

import numbers
from typing import Callable, Mapping

import numpy as np

from ..errors import DataError, QuantizationError
from ..graph import Graph, Node, QuantParams
from ..kernels import reference as ref
from ..kernels.fixedpoint import SOFTMAX_OUTPUT_SCALE, SOFTMAX_OUTPUT_ZERO_POINT
from ..passes import fold_batchnorm, fuse_activations
from .fakequant import qrange
from .observers import METHODS, Observer, affine_params, make_observer

KEEPS_SCALE = ("AvgPool2D", "MaxPool2D", "Reshape", "Flatten", "Pad")
_KEEPS_SCALE = KEEPS_SCALE  # older name
LINEAR = ("Conv2D", "DepthwiseConv2D", "Dense")
Range = tuple[float, float]
WeightQuantizer = Callable[..., tuple[np.ndarray, QuantParams]]


# --------------------------------------------------------------------------- parameters

def activation_quant(lo: float, hi: float) -> QuantParams:
    """Asymmetric int8 parameters covering ``[min(lo, 0), max(hi, 0)]``."""
    return affine_params(lo, hi, 8, symmetric=False)


def _weight_scales(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, tuple[int, ...]]:
    """``max |w|`` per tensor (shape ``(1,)``) or per slice along ``axis``, and the broadcast shape."""
    if axis is None:
        return np.array([np.abs(w).max()], np.float64), ()
    amax = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(axis=1).astype(np.float64)
    return amax, tuple(-1 if i == axis else 1 for i in range(w.ndim))


def _symmetric_codes(w: np.ndarray, scale: np.ndarray, shape: tuple[int, ...], qmax: int) -> np.ndarray:
    s = scale.reshape(shape) if shape else scale[0]
    return np.clip(ref.round_half_away_np(w / s), -qmax, qmax).astype(np.int8)


def weight_quant(w: np.ndarray, axis: int | None, bits: int = 8) -> tuple[np.ndarray, QuantParams]:
    """Symmetric quantization to ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]``, per tensor or along ``axis``:
    ``s = max |w| / (2^(bits-1) - 1)``, ``q = clamp(round(w / s))``."""
    qmax = qrange(bits)[1]
    amax, shape = _weight_scales(w, axis)
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    return _symmetric_codes(w, scale, shape, qmax), QuantParams(scale, 0, axis)


def weight_quant_mse(w: np.ndarray, axis: int | None, bits: int = 8, grid: int = 100
                     ) -> tuple[np.ndarray, QuantParams]:
    """Symmetric quantization whose clipping ``alpha max |w|`` (``alpha`` on a grid in ``(0, 1]``)
    minimises ``sum (w - s q)^2`` per tensor or per slice along ``axis``.

    At 8 bits this is close to :func:`weight_quant`; at 2 to 4 bits clipping
    the few large weights makes the many small ones far more exact.
    """
    qmax = qrange(bits)[1]
    amax, shape = _weight_scales(w, axis)
    rows = w.reshape(1, -1) if axis is None else np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    rows = rows.astype(np.float64)
    best = np.where(amax > 0, amax / qmax, 1.0)
    best_err = np.full(amax.shape, np.inf)
    for a in np.arange(1, grid + 1) / grid:
        s = np.where(amax > 0, a * amax / qmax, 1.0).astype(np.float32).astype(np.float64)
        q = np.clip(ref.round_half_away_np(rows / s[:, None]), -qmax, qmax)
        err = ((rows - s[:, None] * q) ** 2).sum(axis=1)
        better = err < best_err
        best, best_err = np.where(better, s, best), np.where(better, err, best_err)
    scale = best.astype(np.float32)
    return _symmetric_codes(w, scale, shape, qmax), QuantParams(scale, 0, axis)


WEIGHT_METHODS: dict[str, WeightQuantizer] = {"minmax": weight_quant, "mse": weight_quant_mse}


def weight_axis(node: Node, per_channel: bool) -> int | None:
    """The per-channel axis of a layer's weight (None: per tensor). Dense layers stay per tensor."""
    if per_channel and node.op == "Conv2D":
        return 0
    if per_channel and node.op == "DepthwiseConv2D":
        return 3
    return None


def layer_bits(graph: Graph, weight_bits: int | Mapping[str, int] = 8) -> dict[str, int]:
    """Weight bits of every conv and dense layer: one int for all, or ``{layer: bits}`` (others 8)."""
    layers = [n.name for n in graph.nodes if n.op in LINEAR]
    if isinstance(weight_bits, Mapping):
        unknown = sorted(set(weight_bits) - set(layers))
        if unknown:
            raise QuantizationError(
                f"weight_bits names {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} not a "
                f"conv or dense layer of graph '{graph.name}'; its layers: {', '.join(layers)}"
            )
        out = {name: 8 for name in layers}
        out.update(weight_bits)
    else:
        out = {name: weight_bits for name in layers}
    for name, b in out.items():
        if isinstance(b, bool) or not isinstance(b, numbers.Integral) or not 2 <= b <= 8:
            raise QuantizationError(
                f"layer '{name}': weight bit widths must be ints from 2 to 8, got {b!r}"
            )
    return {k: int(v) for k, v in out.items()}


# --------------------------------------------------------------------------- calibration

def prepare(graph: Graph) -> Graph:
    """``fuse_activations(fold_batchnorm(graph))``, refusing a BatchNorm that cannot be folded."""
    g = fuse_activations(fold_batchnorm(graph))
    left = [n.name for n in g.nodes if n.op == "BatchNorm"]
    if left:
        raise QuantizationError(
            f"BatchNorm node(s) {', '.join(left)} could not be folded (each must follow a conv or dense "
            f"layer with no activation in between); int8 has no BatchNorm kernel"
        )
    return g


def check_calibration(graph: Graph, calibration: np.ndarray) -> np.ndarray:
    """The calibration batch as float32, or a :class:`DataError` saying what is wrong with it."""
    if calibration is None:
        raise DataError("no calibration data; give a batch of inputs (N, *input_shape)")
    x = np.asarray(calibration)
    shape = graph.input_shape()
    if x.ndim == len(shape) + 1 and x.shape[0] == 0 or x.size == 0:
        raise DataError("the calibration data is empty; give at least one sample")
    if x.shape[1:] != shape:
        raise DataError(f"calibration data must have shape (N, {', '.join(map(str, shape))}), got {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise DataError(f"calibration data must be floating point, got {x.dtype}")
    bad = ~np.isfinite(x)
    if bad.any():
        raise DataError(
            f"the calibration data holds {int(bad.sum())} NaN or infinite value(s) "
            f"(first at index {tuple(int(i) for i in np.argwhere(bad)[0])}); clean or drop those samples"
        )
    return x.astype(np.float32)


class Calibrator:
    """Fits one observer per activation tensor of a float graph on calibration batches.

    Args:
        method: ``minmax``, ``moving_average``, ``percentile``, ``mse`` or ``kl``
            (:data:`~tinyml_lab.quant.observers.METHODS`).
        batch_size: samples per forward pass (one observer batch).
        **observer_params: passed to the observer (e.g. ``percentile=99.9``).

    Attributes:
        observers_: ``{tensor name: fitted observer}``.
        ranges_: ``{tensor name: (lo, hi)}``.

    >>> Calibrator("mse").fit(prepare(g), x).ranges_     # doctest: +SKIP
    """

    def __init__(self, method: str = "minmax", batch_size: int = 64, **observer_params: object):
        make_observer(method, **observer_params)  # checks the method and its parameters now
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise QuantizationError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.method = method
        self.batch_size = int(batch_size)
        self.observer_params = dict(observer_params)

    def fit(self, graph: Graph, calibration: np.ndarray) -> "Calibrator":
        from ..interpreter import Interpreter

        x = check_calibration(graph, calibration)
        it = Interpreter(graph)
        observers: dict[str, Observer] = {}
        for i in range(0, len(x), self.batch_size):
            env = it.run(x[i: i + self.batch_size], return_all=True)
            for name, v in env.items():
                if name not in observers:
                    observers[name] = make_observer(self.method, **self.observer_params)
                observers[name].partial_fit(v)
        self.observers_ = observers
        self.ranges_ = {name: tuple(float(v) for v in o.range_) for name, o in observers.items()}
        return self


def calibrate(graph: Graph, calibration: np.ndarray, batch_size: int = 64, method: str = "minmax",
              **observer_params: object) -> dict[str, Range]:
    """The range of every activation tensor of ``graph`` over the calibration batch, chosen by ``method``
    (min and max by default)."""
    return Calibrator(method, batch_size, **observer_params).fit(graph, calibration).ranges_


# --------------------------------------------------------------------------- conversion

def quantize_model(graph: Graph, calibration: np.ndarray, per_channel: bool = True,
                   ranges: dict[str, Range] | None = None,
                   weight_quantizer: WeightQuantizer = weight_quant,
                   method: str = "minmax", weight_bits: int | Mapping[str, int] = 8,
                   weight_method: str | None = None, batch_size: int = 64,
                   observer_params: Mapping[str, object] | None = None) -> Graph:
    """An int8 copy of ``graph``, calibrated on ``calibration`` (float inputs, batch first).

    Args:
        graph: a float graph (BatchNorm and ReLU nodes are folded and fused first).
        calibration: representative inputs ``(N, *input_shape)``.
        per_channel: per-output-channel weight scales for convolutions.
        ranges: ``{tensor: (lo, hi)}`` overriding what the observer chose.
        weight_quantizer: ``f(w, axis) -> (codes, QuantParams)``, called with
            ``bits=`` for layers below 8 bits; :func:`weight_quant` by default.
        method: the activation observer (``minmax``, ``moving_average``,
            ``percentile``, ``mse``, ``kl``).
        weight_bits: 2 to 8, for every layer or ``{layer: bits}`` (mixed precision).
        weight_method: ``"minmax"`` or ``"mse"``, a shortcut for ``weight_quantizer``.
        batch_size: calibration samples per forward pass.
        observer_params: passed to the observer.

    Returns:
        The int8 graph; ``metadata["weight_bits"]`` records each layer's bits.
    """
    if weight_method is not None:
        try:
            weight_quantizer = WEIGHT_METHODS[weight_method]
        except KeyError:
            raise QuantizationError(
                f"weight_method must be one of {', '.join(WEIGHT_METHODS)}, got {weight_method!r}"
            ) from None
    if graph.is_quantized:
        raise QuantizationError(f"graph '{graph.name}' is already int8")
    g = prepare(graph)
    bits = layer_bits(g, weight_bits)
    calib = Calibrator(method, batch_size, **dict(observer_params or {}))
    observed = calib.fit(g, calibration).ranges_
    if ranges:
        observed.update(ranges)
    params = {name: activation_quant(*r) for name, r in observed.items()}

    def quantize_weight(node: Node, w: np.ndarray, axis: int | None) -> tuple[np.ndarray, QuantParams]:
        b = bits[node.name]
        return weight_quantizer(w, axis) if b == 8 else weight_quantizer(w, axis, bits=b)

    q = build_int8(g, params, quantize_weight, per_channel)
    q.metadata = dict(q.metadata, quantized_from=graph.name, per_channel=per_channel, weight_bits=bits,
                      calibration={"method": calib.method, "samples": int(len(calibration)),
                                   **{k: v for k, v in calib.observer_params.items()}})
    return q


def build_int8(g: Graph, params: Mapping[str, QuantParams],
               quantize_weight: Callable[[Node, np.ndarray, int | None], tuple[np.ndarray, QuantParams]],
               per_channel: bool = True, bias_codes: Mapping[str, np.ndarray] | None = None) -> Graph:
    """The int8 copy of a prepared float graph ``g`` with the activation parameters given.

    ``params`` holds the parameters of the inputs and of every output that
    does not keep its input's scale; ``quantize_weight(node, w, axis)``
    returns a layer's codes and parameters; ``bias_codes`` optionally gives
    a bias's int32 codes by tensor name (else ``round(b / (s_in s_w))``).
    """
    q = g.copy()
    missing = [t for t in q.inputs if t not in params]
    for node in q.nodes:
        if node.op not in KEEPS_SCALE and node.op != "Softmax" and node.outputs[0] not in params:
            missing.append(node.outputs[0])
    if missing:
        raise QuantizationError(
            f"no quantization parameters for tensor(s) {', '.join(missing)} of graph '{g.name}'"
        )
    for name in q.inputs:
        t = q.tensors[name]
        t.dtype, t.quant = "int8", params[name]
    for node in q.nodes:
        out = q.tensors[node.outputs[0]]
        src = q.tensors[node.inputs[0]]
        if node.op in KEEPS_SCALE:
            out.quant = src.quant
        elif node.op == "Softmax":
            out.quant = QuantParams(SOFTMAX_OUTPUT_SCALE, SOFTMAX_OUTPUT_ZERO_POINT)
        else:
            out.quant = params[out.name]
        out.dtype = "int8"
        w = q.weights(node)
        if "weight" in w:
            wt = w["weight"]
            data, wt.quant = quantize_weight(node, wt.data.astype(np.float32), weight_axis(node, per_channel))
            wt.data, wt.dtype = data, "int8"
            if "bias" in w:
                bt = w["bias"]
                s_b = np.float64(src.quant.scale[0]) * wt.quant.scale.astype(np.float64)
                if bias_codes is not None and bt.name in bias_codes:
                    b = np.asarray(bias_codes[bt.name], np.int64)
                else:
                    b = np.clip(ref.round_half_away_np(bt.data.astype(np.float64) / s_b), -(2**31), 2**31 - 1)
                bt.data, bt.dtype = b.astype(np.int32), "int32"
                bt.quant = QuantParams(s_b.astype(np.float32), 0, 0 if s_b.size > 1 else None)
    return q.validate()


def quantize_input(graph: Graph, x: np.ndarray, index: int = 0) -> np.ndarray:
    """Real values to the int8 codes input ``index`` of an int8 graph expects."""
    t = graph.tensors[graph.inputs[index]]
    if t.quant is None:
        raise QuantizationError(f"input '{t.name}' of graph '{graph.name}' is not quantized")
    return ref.quantize(x, float(t.quant.scale[0]), int(t.quant.zero_point[0]))


def dequantize_output(graph: Graph, y: np.ndarray, index: int = 0) -> np.ndarray:
    """int8 codes of output ``index`` back to real values."""
    t = graph.tensors[graph.outputs[index]]
    if t.quant is None:
        raise QuantizationError(f"output '{t.name}' of graph '{graph.name}' is not quantized")
    return ref.dequantize(y, float(t.quant.scale[0]), int(t.quant.zero_point[0]))


__all__ = ["activation_quant", "weight_quant", "weight_quant_mse", "WEIGHT_METHODS", "weight_axis", "layer_bits",
           "prepare", "check_calibration", "Calibrator", "calibrate", "quantize_model", "build_int8",
           "quantize_input", "dequantize_output", "KEEPS_SCALE", "METHODS"]
