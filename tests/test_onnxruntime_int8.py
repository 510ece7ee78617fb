"""The int8 convolution, depthwise convolution and dense kernels against onnxruntime.

Random layers (hypothesis) are built as one-node ONNX models, ``QLinearConv`` (group 1 or
depthwise, per-channel weight scales, int32 bias) or ``QLinearMatMul`` (per-tensor or per-column
weight scales), with int8 activations carrying a zero point and int8 weights with zero point 0,
and run in onnxruntime on the CPU execution provider with the default graph optimisations. The
same layer runs through both backends of ours (reference and numba) with the multipliers
``quantize_multipliers(s_in * s_w / s_out)``; the two backends must agree bit for bit and each
must be within 1 LSB of onnxruntime everywhere.

Why not bit-exact: both compute the same exact int32 accumulator ``acc = sum w (x - zp_x) + b``
and differ only in how they requantize it.

* onnxruntime (MLAS) multiplies ``acc`` by the float32 scale ``s_in * s_w / s_out`` in float32 and
  rounds to the nearest integer with ties to even (``nearbyintf`` / ``cvtps2dq``).
* TFLite, and these kernels, replace the scale by a Q0.31 fixed-point multiplier and a power-of-two
  shift and round twice: ``SaturatingRoundingDoublingHighMul`` rounds ``acc * m / 2^31`` half away
  from zero, then ``RoundingDivideByPOT`` rounds the shift half away from zero again.

So the two results differ by one code when the exact product ``acc * M`` lies at (ties: even vs.
away from zero) or within rounding error of a half-integer (the first rounding of the double
rounding, the float32 product's rounding and the multiplier's own rounding to 31 bits each move
it by a fraction of an LSB). They never differ by more than one, and only on a small fraction of
elements; both are recorded per layer type.

The bound assumes onnxruntime's integer accumulation is exact, as it is with VNNI (used here when
the CPU has it). On AVX2-only CPUs MLAS's u8s8 kernels can saturate 16-bit pair sums with
full-range weights (the reason onnxruntime offers ``reduce_range``), which would show up here as
larger differences.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

from strategies import WindowConfig, int8_array, seeds, window_configs  # noqa: E402
from tinyml_lab.kernels import int8 as ki  # noqa: E402
from tinyml_lab.kernels import reference as ref  # noqa: E402
from tinyml_lab.kernels.fixedpoint import quantize_multipliers  # noqa: E402

OPSET = 21
MAX_EXAMPLES = 250
GENERIC_FRACTION = 0.05


# --------------------------------------------------------------------------- bookkeeping

@dataclass
class DiffStats:
    """The largest |ours - onnxruntime| over every example and how many elements differed."""

    layers: int = 0
    elements: int = 0
    differing: int = 0
    max_lsb: int = 0
    max_tie_distance: float = 0.0  # over differing elements: |frac(acc * M) - 1/2|, in LSB

    def add(self, ours: np.ndarray, theirs: np.ndarray, real: np.ndarray, shift: np.ndarray) -> None:
        """``real`` is ``acc * M`` in float64 (the value both sides round); ``shift`` the exponent of
        each output channel's fixed-point multiplier."""
        d = np.abs(ours.astype(np.int64) - theirs.astype(np.int64))
        self.layers += 1
        self.elements += d.size
        self.differing += int(np.count_nonzero(d))
        self.max_lsb = max(self.max_lsb, int(d.max(initial=0)))
        diff = d != 0
        if diff.any():
            dist = np.abs(real - np.floor(real) - 0.5)
            # the first rounding of the double rounding is at 2^-right_shift of an LSB; float32
            # products and the 31-bit multiplier add far less than the 1e-3 on top
            right = np.broadcast_to(np.maximum(-shift.astype(np.int64), 0), real.shape)
            window = 0.5 * 2.0 ** -right.astype(np.float64) + 1e-3
            assert np.all(dist[diff] <= window[diff]), (
                f"a 1-LSB difference away from a rounding boundary: distance {dist[diff].max():.3g} LSB")
            self.max_tie_distance = max(self.max_tie_distance, float(dist[diff].max()))

    @property
    def fraction(self) -> float:
        return self.differing / max(self.elements, 1)

    def report(self, name: str, record_property) -> None:
        key = name.split()[0]
        record_property(f"{key}_layers", self.layers)
        record_property(f"{key}_elements", self.elements)
        record_property(f"{key}_max_lsb", self.max_lsb)
        record_property(f"{key}_fraction_differing", self.fraction)
        print(f"\n{name}: {self.layers} layers, {self.elements} outputs, max |diff| {self.max_lsb} LSB, "
              f"{self.differing} differ ({100 * self.fraction:.3f}%), each within "
              f"{self.max_tie_distance:.2g} LSB of a half-integer")


def _check(stats: dict[bool, DiffStats], name: str, record_property) -> None:
    generic, pow2 = stats[False], stats[True]
    generic.report(f"{name} (generic scales)", record_property)
    pow2.report(f"{name} (power-of-two scales)", record_property)
    assert generic.layers > 0 and pow2.layers > 0
    assert max(generic.max_lsb, pow2.max_lsb) <= 1
    # with generic scales, exact products near a half-integer are rare: a systematic rounding
    # error would move far more elements
    assert generic.fraction < GENERIC_FRACTION, f"{100 * generic.fraction:.2f}% of the outputs differ"


# --------------------------------------------------------------------------- onnx models

def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    onnx.checker.check_model(model, full_check=True)
    opts = ort.SessionOptions()  # graph_optimization_level left at its default
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _model(node: onnx.NodeProto, x_shape, y_shape, inits: list[onnx.TensorProto]) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node], "layer",
        [helper.make_tensor_value_info("x", TensorProto.INT8, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.INT8, list(y_shape))],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 10
    return model


def _scalar(name: str, dtype: int, value) -> onnx.TensorProto:
    return helper.make_tensor(name, dtype, [], [value])


def _vector(name: str, dtype: int, values: np.ndarray) -> onnx.TensorProto:
    return helper.make_tensor(name, dtype, [values.size], values.ravel().tolist())


@dataclass
class QuantLayer:
    """A quantized layer's parameters, shared by the onnxruntime model and our kernels."""

    x: np.ndarray  # int8 activations, NHWC (conv) or (N, C_in) (dense)
    w: np.ndarray  # int8 weights in the kernels' layout
    b: np.ndarray | None  # int32 bias
    s_in: np.float32
    zp_in: int
    s_w: np.ndarray  # float32, one per output channel (or a single one)
    s_out: np.float32
    zp_out: int

    def real_multiplier(self) -> np.ndarray:
        return np.float64(self.s_in) * self.s_w.astype(np.float64) / np.float64(self.s_out)

    def multipliers(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        return quantize_multipliers(np.broadcast_to(self.real_multiplier(), (channels,)))


def _draw_scales(rng: np.random.Generator, channels: int, k: int, per_channel: bool, pow2: bool):
    """Scales such that the output codes spread over the int8 range without saturating all of it:
    ``acc`` has a standard deviation of about ``74 * 74 * sqrt(k)`` codes, the effective multiplier
    aims it at ~40 codes, times a random factor in ``[1/8, 8]``.

    With ``pow2`` every scale is a power of two, so ``M = s_in s_w / s_out`` is one too and
    ``acc * M`` falls exactly on half-integers for a fraction of the outputs: the ties on which
    round-half-to-even and round-half-away-from-zero disagree.
    """
    n = channels if per_channel else 1
    target = 40.0 / (74.0 * 74.0 * np.sqrt(k)) * 2.0 ** rng.uniform(-3, 3)
    if pow2:
        a, b = int(rng.integers(4, 9)), rng.integers(4, 10, n)
        c = a + int(np.median(b)) + int(np.round(np.log2(target)))
        return np.float32(2.0**-a), (2.0 ** -b.astype(np.float64)).astype(np.float32), np.float32(2.0**-c)
    s_in = np.float32(rng.uniform(0.005, 0.1))
    s_w = rng.uniform(0.002, 0.05, n).astype(np.float32)
    s_out = np.float32(s_in * float(np.median(s_w)) / target)
    return s_in, s_w, s_out


def _bias(rng: np.random.Generator, channels: int, k: int) -> np.ndarray:
    bound = int(74 * 74 * np.sqrt(k))
    return rng.integers(-bound, bound + 1, channels).astype(np.int32)


# --------------------------------------------------------------------------- layers

def _conv_layer(cfg: WindowConfig, seed: int, depthwise: bool, pow2: bool):
    rng = np.random.default_rng(seed)
    c_out = cfg.c_in if depthwise else cfg.c_out
    k = cfg.kernel[0] * cfg.kernel[1] * (1 if depthwise else cfg.c_in)
    x = int8_array(rng, (cfg.batch, cfg.height, cfg.width, cfg.c_in))
    if depthwise:
        w = int8_array(rng, (1, *cfg.kernel, cfg.c_in), -127, 127)
        w_onnx = w[0].transpose(2, 0, 1)[:, None]  # (C, 1, KH, KW)
    else:
        w = int8_array(rng, (c_out, *cfg.kernel, cfg.c_in), -127, 127)
        w_onnx = w.transpose(0, 3, 1, 2)  # OHWI -> OIHW
    s_in, s_w, s_out = _draw_scales(rng, c_out, k, per_channel=True, pow2=pow2)
    layer = QuantLayer(x, w, _bias(rng, c_out, k), s_in, int(rng.integers(-128, 128)), s_w, s_out,
                       int(rng.integers(-128, 128)))

    t, b, l, r = cfg.pads
    node = helper.make_node(
        "QLinearConv", ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "bias"], ["y"],
        kernel_shape=list(cfg.kernel), strides=list(cfg.strides), dilations=list(cfg.dilation),
        pads=[t, l, b, r], group=cfg.c_in if depthwise else 1,
    )
    inits = [
        _scalar("x_scale", TensorProto.FLOAT, layer.s_in), _scalar("x_zp", TensorProto.INT8, layer.zp_in),
        helper.make_tensor("w", TensorProto.INT8, w_onnx.shape, np.ascontiguousarray(w_onnx).ravel().tolist()),
        _vector("w_scale", TensorProto.FLOAT, layer.s_w), _vector("w_zp", TensorProto.INT8, np.zeros(c_out, np.int8)),
        _scalar("y_scale", TensorProto.FLOAT, layer.s_out), _scalar("y_zp", TensorProto.INT8, layer.zp_out),
        _vector("bias", TensorProto.INT32, layer.b),
    ]
    oh, ow = cfg.out_hw
    x_nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    model = _model(node, x_nchw.shape, (cfg.batch, c_out, oh, ow), inits)
    theirs = _session(model).run(None, {"x": x_nchw})[0].transpose(0, 2, 3, 1)
    return layer, theirs


def _run_conv(layer: QuantLayer, cfg: WindowConfig, depthwise: bool, backend: str) -> np.ndarray:
    c_out = layer.w.shape[-1] if depthwise else layer.w.shape[0]
    mult, shift = layer.multipliers(c_out)
    s, d, p = cfg.strides, cfg.dilation, cfg.pads
    if backend == "numba":
        bias_eff = ki.effective_bias(layer.w, layer.b, layer.zp_in, depthwise)
        k = ki.depthwise_conv2d_int8 if depthwise else ki.conv2d_int8
        return k(layer.x, layer.w, bias_eff, s[0], s[1], d[0], d[1], *p, layer.zp_in, mult, shift,
                 layer.zp_out, -128, 127)
    k = ref.depthwise_conv2d_int8 if depthwise else ref.conv2d_int8
    return k(layer.x, layer.w, layer.b, s, d, p, layer.zp_in, mult, shift, layer.zp_out)


def _dense_layer(batch: int, c_in: int, c_out: int, per_channel: bool, pow2: bool, seed: int):
    rng = np.random.default_rng(seed)
    x = int8_array(rng, (batch, c_in))
    w = int8_array(rng, (c_out, c_in), -127, 127)
    s_in, s_w, s_out = _draw_scales(rng, c_out, c_in, per_channel, pow2)
    layer = QuantLayer(x, w, None, s_in, int(rng.integers(-128, 128)), s_w, s_out, int(rng.integers(-128, 128)))
    node = helper.make_node("QLinearMatMul", ["x", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"],
                            ["y"])
    w_onnx = np.ascontiguousarray(w.T)  # (C_in, C_out)
    scale = (_vector("b_scale", TensorProto.FLOAT, s_w) if per_channel
             else _scalar("b_scale", TensorProto.FLOAT, s_w[0]))
    zp = (_vector("b_zp", TensorProto.INT8, np.zeros(c_out, np.int8)) if per_channel
          else _scalar("b_zp", TensorProto.INT8, 0))
    inits = [
        _scalar("a_scale", TensorProto.FLOAT, s_in), _scalar("a_zp", TensorProto.INT8, layer.zp_in),
        helper.make_tensor("b", TensorProto.INT8, w_onnx.shape, w_onnx.ravel().tolist()), scale, zp,
        _scalar("y_scale", TensorProto.FLOAT, s_out), _scalar("y_zp", TensorProto.INT8, layer.zp_out),
    ]
    theirs = _session(_model(node, x.shape, (batch, c_out), inits)).run(None, {"x": x})[0]
    return layer, theirs


def _run_dense(layer: QuantLayer, backend: str) -> np.ndarray:
    mult, shift = layer.multipliers(layer.w.shape[0])
    if backend == "numba":
        bias_eff = ki.effective_bias(layer.w, layer.b, layer.zp_in)
        return ki.dense_int8(layer.x, layer.w, bias_eff, layer.zp_in, mult, shift, layer.zp_out, -128, 127)
    return ref.dense_int8(layer.x, layer.w, layer.b, layer.zp_in, mult, shift, layer.zp_out)


def _conv_real(layer: QuantLayer, cfg: WindowConfig, depthwise: bool) -> np.ndarray:
    """``acc * M`` in float64: the int32 accumulator (computed in float, exact below 2^24) times the
    real multiplier of each output channel."""
    k = layer.w[0].size if not depthwise else cfg.kernel[0] * cfg.kernel[1]
    assert k * 255 * 127 + int(np.abs(layer.b).max()) < 2**24
    xf = layer.x.astype(np.float32) - np.float32(layer.zp_in)
    conv = ref.depthwise_conv2d if depthwise else ref.conv2d
    acc = conv(xf, layer.w.astype(np.float32), layer.b.astype(np.float64), cfg.strides, cfg.dilation, cfg.pads)
    return acc.astype(np.float64) * layer.real_multiplier()


def _dense_real(layer: QuantLayer) -> np.ndarray:
    acc = (layer.x.astype(np.int64) - layer.zp_in) @ layer.w.astype(np.int64).T
    return acc.astype(np.float64) * layer.real_multiplier()


def _compare(layer: QuantLayer, layer_out: dict[str, np.ndarray], theirs: np.ndarray, real: np.ndarray,
             stats: DiffStats) -> None:
    ours_ref, ours_numba = layer_out["reference"], layer_out["numba"]
    assert ours_ref.shape == theirs.shape, (ours_ref.shape, theirs.shape)
    np.testing.assert_array_equal(ours_numba, ours_ref)
    diff = np.abs(ours_ref.astype(np.int64) - theirs.astype(np.int64))
    assert diff.max(initial=0) <= 1, f"max |ours - onnxruntime| = {diff.max()} LSB"
    stats.add(ours_ref, theirs, real, layer.multipliers(real.shape[-1])[1])


# --------------------------------------------------------------------------- tests

conv_configs = window_configs(max_hw=12, max_c=16, max_k=5, max_batch=2)


def test_conv2d_int8_matches_onnxruntime(record_property) -> None:
    stats = {False: DiffStats(), True: DiffStats()}

    @settings(max_examples=MAX_EXAMPLES, deadline=None)
    @given(cfg=conv_configs, pow2=st.booleans(), seed=seeds)
    def run(cfg: WindowConfig, pow2: bool, seed: int) -> None:
        layer, theirs = _conv_layer(cfg, seed, depthwise=False, pow2=pow2)
        ours = {b: _run_conv(layer, cfg, False, b) for b in ("reference", "numba")}
        _compare(layer, ours, theirs, _conv_real(layer, cfg, False), stats[pow2])

    run()
    _check(stats, "Conv2D vs QLinearConv", record_property)


def test_depthwise_conv2d_int8_matches_onnxruntime(record_property) -> None:
    stats = {False: DiffStats(), True: DiffStats()}

    @settings(max_examples=MAX_EXAMPLES, deadline=None)
    @given(cfg=conv_configs, pow2=st.booleans(), seed=seeds)
    def run(cfg: WindowConfig, pow2: bool, seed: int) -> None:
        layer, theirs = _conv_layer(cfg, seed, depthwise=True, pow2=pow2)
        ours = {b: _run_conv(layer, cfg, True, b) for b in ("reference", "numba")}
        _compare(layer, ours, theirs, _conv_real(layer, cfg, True), stats[pow2])

    run()
    _check(stats, "DepthwiseConv2D vs QLinearConv(group=C)", record_property)


def test_dense_int8_matches_onnxruntime(record_property) -> None:
    stats = {False: DiffStats(), True: DiffStats()}

    @settings(max_examples=MAX_EXAMPLES, deadline=None)
    @given(batch=st.integers(1, 2), c_in=st.integers(1, 16), c_out=st.integers(1, 16),
           per_channel=st.booleans(), pow2=st.booleans(), seed=seeds)
    def run(batch: int, c_in: int, c_out: int, per_channel: bool, pow2: bool, seed: int) -> None:
        layer, theirs = _dense_layer(batch, c_in, c_out, per_channel, pow2, seed)
        ours = {b: _run_dense(layer, b) for b in ("reference", "numba")}
        _compare(layer, ours, theirs, _dense_real(layer), stats[pow2])

    run()
    _check(stats, "Dense vs QLinearMatMul", record_property)
