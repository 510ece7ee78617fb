"""Convert a float graph into an int8 graph that follows the TFLite int8 spec.

The conversion:

1. folds BatchNorm into the preceding layers and fuses ReLU/ReLU6 into them
   (:mod:`tinyml_lab.passes`);
2. runs the float graph on calibration data and records each activation's
   range ``[min, max]``, widened to contain 0 so that 0.0 has an exact code;
3. quantizes activations per tensor, asymmetric:
   ``scale = (max - min) / 255``, ``zero_point = round(-128 - min / scale)``;
4. quantizes weights symmetric to [-127, 127]: per output channel for
   convolutions when ``per_channel`` (else per tensor), per tensor for dense
   layers; ``scale_w = max |w| / 127``;
5. quantizes biases to int32 with ``scale_b = scale_in * scale_w``.

Ops whose int8 kernel keeps the scale (pooling, reshape, pad) give their
output the input's parameters; softmax outputs use scale 1/256 and zero
point -128, as TFLite requires.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import DataError, QuantizationError
from ..graph import Graph, QuantParams
from ..kernels import reference as ref
from ..kernels.fixedpoint import SOFTMAX_OUTPUT_SCALE, SOFTMAX_OUTPUT_ZERO_POINT
from ..passes import fold_batchnorm, fuse_activations

_KEEPS_SCALE = ("AvgPool2D", "MaxPool2D", "Reshape", "Flatten", "Pad")
Range = tuple[float, float]


def activation_quant(lo: float, hi: float) -> QuantParams:
    """Asymmetric int8 parameters covering ``[min(lo, 0), max(hi, 0)]``."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0
    if scale <= 0 or not np.isfinite(scale):
        scale = 1.0 / 255.0  # an all-zero tensor: any scale represents it
    zp = int(np.clip(ref.round_half_away_np(np.float64(-128 - lo / scale)), -128, 127))
    return QuantParams(np.float32(scale), zp)


def weight_quant(w: np.ndarray, axis: int | None, bits: int = 8) -> tuple[np.ndarray, QuantParams]:
    """Symmetric quantization to ``[-(2^(bits-1) - 1), 2^(bits-1) - 1]``, per tensor or along ``axis``."""
    qmax = 2 ** (bits - 1) - 1
    if axis is None:
        amax = np.array([np.abs(w).max()], np.float64)
        shape: tuple[int, ...] = ()
    else:
        amax = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(axis=1).astype(np.float64)
        shape = tuple(-1 if i == axis else 1 for i in range(w.ndim))
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    s = scale.reshape(shape) if shape else scale[0]
    q = np.clip(ref.round_half_away_np(w / s), -qmax, qmax).astype(np.int8)
    return q, QuantParams(scale, 0, axis)


def calibrate(graph: Graph, calibration: np.ndarray, batch_size: int = 64) -> dict[str, Range]:
    """Min and max of every activation tensor of ``graph`` over the calibration batch."""
    from ..interpreter import Interpreter

    x = check_calibration(graph, calibration)
    it = Interpreter(graph)
    ranges: dict[str, Range] = {}
    for i in range(0, len(x), batch_size):
        env = it.run(x[i: i + batch_size], return_all=True)
        for name, v in env.items():
            lo, hi = float(v.min()), float(v.max())
            if name in ranges:
                lo, hi = min(lo, ranges[name][0]), max(hi, ranges[name][1])
            ranges[name] = (lo, hi)
    return ranges


def check_calibration(graph: Graph, calibration: np.ndarray) -> np.ndarray:
    x = np.asarray(calibration)
    shape = graph.input_shape()
    if x.ndim == len(shape) + 1 and x.shape[0] == 0:
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


def quantize_model(graph: Graph, calibration: np.ndarray, per_channel: bool = True,
                   ranges: dict[str, Range] | None = None,
                   weight_quantizer: Callable[[np.ndarray, int | None], tuple[np.ndarray, QuantParams]] = weight_quant,
                   ) -> Graph:
    """An int8 copy of ``graph``, calibrated on ``calibration`` (float inputs, batch first).

    ``ranges`` overrides the observed min/max of any activation tensor (an
    observer other than min-max provides them).
    """
    g = fuse_activations(fold_batchnorm(graph))
    left = [n.name for n in g.nodes if n.op == "BatchNorm"]
    if left:
        raise QuantizationError(
            f"BatchNorm node(s) {', '.join(left)} could not be folded (each must follow a conv or dense "
            f"layer with no activation in between); int8 has no BatchNorm kernel"
        )
    if g.is_quantized:
        raise QuantizationError(f"graph '{g.name}' is already int8")
    observed = calibrate(g, calibration)
    if ranges:
        observed.update(ranges)

    q = g.copy()
    for name in q.inputs:
        t = q.tensors[name]
        t.dtype, t.quant = "int8", activation_quant(*observed[name])
    for node in q.nodes:
        out = q.tensors[node.outputs[0]]
        src = q.tensors[node.inputs[0]]
        if node.op in _KEEPS_SCALE:
            out.quant = src.quant
        elif node.op == "Softmax":
            out.quant = QuantParams(SOFTMAX_OUTPUT_SCALE, SOFTMAX_OUTPUT_ZERO_POINT)
        else:
            out.quant = activation_quant(*observed[out.name])
        out.dtype = "int8"
        w = q.weights(node)
        if "weight" in w:
            wt = w["weight"]
            axis = None
            if per_channel and node.op == "Conv2D":
                axis = 0
            elif per_channel and node.op == "DepthwiseConv2D":
                axis = 3
            data, wt.quant = weight_quantizer(wt.data.astype(np.float32), axis)
            wt.data, wt.dtype = data, "int8"
            if "bias" in w:
                bt = w["bias"]
                s_b = np.float64(src.quant.scale[0]) * wt.quant.scale.astype(np.float64)
                b = np.clip(ref.round_half_away_np(bt.data.astype(np.float64) / s_b), -(2**31), 2**31 - 1)
                bt.data, bt.dtype = b.astype(np.int32), "int32"
                bt.quant = QuantParams(s_b.astype(np.float32), 0, 0 if s_b.size > 1 else None)
    q.metadata = dict(q.metadata, quantized_from=graph.name, per_channel=per_channel)
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
