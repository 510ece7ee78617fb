"""ONNX import against onnxruntime: float models within 1e-4, QDQ models within one code.

Float models are built here with ``onnx.helper``, one or a few ops each, at opsets 11 to 21, and
the zoo is exported with :func:`tinyml_lab.export.to_onnx` and read back. QDQ models are built the
same way around int8 codes, exported from the zoo's int8 graphs, and made by onnxruntime's own
``quantize_static``.

Why QDQ results may differ by one code: onnxruntime requantizes an int32 accumulator with a float
multiplier and rounds half to even; the imported graph runs TFLite's arithmetic (a fixed-point
multiplier, two roundings, ties away from zero; the average pool and mean divide with their own
rounding). Every layer checked alone differs by at most one code. Chained layers carry such
differences forward, so whole models are compared by top-1 agreement (and the round trip through
our own exporter is checked to be bit-exact instead).
"""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tinyml_lab import zoo  # noqa: E402
from tinyml_lab.errors import FileFormatError, ModelImportError  # noqa: E402
from tinyml_lab.export import to_onnx  # noqa: E402
from tinyml_lab.interpreter import Interpreter  # noqa: E402
from tinyml_lab.io.onnx import from_onnx, load_onnx  # noqa: E402
from tinyml_lab.models import load_model  # noqa: E402
from tinyml_lab.quant import quantize_input, quantize_model  # noqa: E402

RNG = np.random.default_rng(0)


# --------------------------------------------------------------------------- helpers

def _f(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def _model(nodes, inputs, outputs, inits, opset: int = 17):
    g = helper.make_graph(nodes, "case", inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = min(m.ir_version, 8 if opset <= 17 else 10)
    try:  # fill in the output shapes (declared without one)
        return onnx.shape_inference.infer_shapes(m, strict_mode=True)
    except Exception:  # a model the tests want to be refused: leave it as built
        return m


def _image_in(c: int, h: int, w: int, name: str = "x", dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, ["N", c, h, w])


def _out(name: str = "y", dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, None)


def _run_ort(m, feed: dict) -> np.ndarray:
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feed)[0]


def _run_ours(m, x: np.ndarray) -> np.ndarray:
    g = from_onnx(m)
    xi = x.transpose(0, 2, 3, 1) if x.ndim == 4 and g.metadata["onnx"]["input_layouts"]["x"] == "nchw" else x
    y = Interpreter(g).run(xi)
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


# --------------------------------------------------------------------------- float cases

def conv_pads():
    return ([helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 0, 2, 1], strides=[2, 1])],
            (3, 9, 8), {"w": _f(5, 3, 3, 3), "b": _f(5)})


def conv_same_upper_and_dilated():
    return ([helper.make_node("Conv", ["x", "w"], ["t"], auto_pad="SAME_UPPER", strides=[2, 2]),
             helper.make_node("Conv", ["t", "w2"], ["y"], pads=[2, 1, 2, 1], dilations=[2, 1])],
            (2, 9, 10), {"w": _f(4, 2, 3, 3), "w2": _f(3, 4, 3, 3)})


def conv_same_lower_and_valid():
    return ([helper.make_node("Conv", ["x", "w"], ["t"], auto_pad="SAME_LOWER", strides=[2, 2]),
             helper.make_node("Conv", ["t", "w2"], ["y"], auto_pad="VALID")],
            (2, 8, 9), {"w": _f(4, 2, 2, 2), "w2": _f(3, 4, 2, 2)})


def depthwise():
    return ([helper.make_node("Conv", ["x", "w", "b"], ["y"], group=4, pads=[1, 1, 1, 1], kernel_shape=[3, 3])],
            (4, 7, 7), {"w": _f(4, 1, 3, 3), "b": _f(4)})


def grouped():
    return ([helper.make_node("Conv", ["x", "w", "b"], ["y"], group=2, pads=[1, 1, 1, 1])],
            (4, 6, 6), {"w": _f(6, 2, 3, 3), "b": _f(6)})


def depth_multiplier():
    return ([helper.make_node("Conv", ["x", "w"], ["y"], group=3)], (3, 6, 6), {"w": _f(6, 1, 3, 3)})


def flatten_gemm():
    """Flatten of a CxHxW image reads c, h, w; the IR's reads h, w, c: the Gemm absorbs the order."""
    return ([helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "g", "gb"], ["y"], transB=1, alpha=0.5, beta=2.0)],
            (2, 4, 5), {"w": _f(3, 2, 3, 3), "g": _f(7, 60), "gb": _f(1, 7)})


def gemm_and_matmul():
    return ([helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("Gemm", ["f", "g", "gb"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "m"], ["mm"]),
             helper.make_node("Add", ["mm", "mb"], ["y"])],
            (1, 3, 4), {"g": _f(12, 8), "gb": _f(8), "m": _f(8, 5), "mb": _f(5)})


def clip_and_batchnorm():
    return ([helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "s", "bb", "mu", "var"], ["bn"], epsilon=1e-3),
             helper.make_node("Clip", ["bn", "lo", "hi"], ["r6"]),
             helper.make_node("Conv", ["r6", "w2"], ["c2"]),
             helper.make_node("Clip", ["c2", "lo"], ["y"])],
            (3, 7, 7), {"w": _f(4, 3, 3, 3), "s": _f(4), "bb": _f(4), "mu": _f(4),
                        "var": np.abs(_f(4)) + 0.5, "lo": np.array(0, np.float32), "hi": np.array(6, np.float32),
                        "w2": _f(2, 4, 1, 1)})


def residual_add_and_pools():
    return ([helper.make_node("Conv", ["x", "w"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ra"]),
             helper.make_node("Conv", ["ra", "w2"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["b", "ra"], ["s"]),
             helper.make_node("MaxPool", ["s"], ["m"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["m"], ["p"], kernel_shape=[2, 2], pads=[0, 0, 1, 1]),
             helper.make_node("AveragePool", ["p"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                              count_include_pad=1)],
            (3, 9, 9), {"w": _f(4, 3, 3, 3), "w2": _f(4, 4, 3, 3)})


def gap_reshape_softmax():
    return ([helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Reshape", ["g", "shape"], ["f"]),
             helper.make_node("Gemm", ["f", "fc"], ["z"], transB=1),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)],
            (3, 6, 6), {"w": _f(5, 3, 3, 3), "shape": np.array([0, -1], np.int64), "fc": _f(4, 5)})


def pad_then_conv():
    return ([helper.make_node("Pad", ["x", "pads"], ["p"], mode="constant"),
             helper.make_node("Conv", ["p", "w"], ["y"])],
            (2, 5, 5), {"pads": np.array([0, 0, 1, 2, 0, 0, 2, 0], np.int64), "w": _f(3, 2, 3, 3)})


def channel_softmax():
    return ([helper.make_node("Conv", ["x", "w"], ["c"]), helper.make_node("Softmax", ["c"], ["y"], axis=1)],
            (2, 5, 5), {"w": _f(4, 2, 1, 1)})


CASES = [conv_pads, conv_same_upper_and_dilated, conv_same_lower_and_valid, depthwise, grouped, depth_multiplier,
         flatten_gemm, gemm_and_matmul, clip_and_batchnorm, residual_add_and_pools, gap_reshape_softmax,
         pad_then_conv, channel_softmax]


@pytest.mark.parametrize("opset", [11, 13, 17, 21])
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_float_ops_match_onnxruntime(case, opset):
    if case is channel_softmax and opset < 13:
        pytest.skip("before opset 13 Softmax(axis=1) of an image spans C, H and W")
    nodes, (c, h, w), inits = case()
    m = _model(nodes, [_image_in(c, h, w)], [_out()], inits, opset)
    onnx.checker.check_model(m)
    x = _f(3, c, h, w)
    expected = _run_ort(m, {"x": x})
    got = _run_ours(m, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_nhwc_inputs_behind_a_transpose_stay_nhwc():
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
             helper.make_node("Conv", ["t", "w"], ["c"]),
             helper.make_node("Transpose", ["c"], ["back"], perm=[0, 2, 3, 1]),
             helper.make_node("Flatten", ["back"], ["f"]),
             helper.make_node("Gemm", ["f", "g"], ["y"], transB=1)]
    m = _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6, 5, 2])], [_out()],
               {"w": _f(3, 2, 3, 3), "g": _f(4, 36)})
    g = from_onnx(m)
    assert g.metadata["onnx"]["input_layouts"] == {"x": "nhwc"} and g.input_shape() == (6, 5, 2)
    x = _f(2, 6, 5, 2)
    np.testing.assert_allclose(Interpreter(g).run(x), _run_ort(m, {"x": x}), atol=1e-4)
    assert not np.any(g.weights(g.nodes[-1])["weight"].data == 0)  # no column permutation was needed


@pytest.mark.parametrize("name", zoo.names())
def test_zoo_exported_to_onnx_comes_back_the_same(name):
    g = zoo.get(name)
    m = to_onnx(g, input_layout="nchw")
    h = from_onnx(m)
    assert [n.op for n in h.nodes] == [n.op for n in g.nodes] and h.macs == g.macs
    x = RNG.random((2,) + g.input_shape(), dtype=np.float32)
    y = Interpreter(h).run(x)
    np.testing.assert_array_equal(y, Interpreter(g).run(x))
    xo = x.transpose(0, 3, 1, 2) if x.ndim == 4 else x
    np.testing.assert_allclose(y, _run_ort(m, {m.graph.input[0].name: xo}), atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- QDQ

def _q(name, scale, zp, dtype=np.int8):
    return {f"{name}_s": np.array(scale, np.float32), f"{name}_z": np.array(zp, dtype)}


def _qdq_case(body, body_inits, c, h, w, s_in, z_in, s_out, z_out, dtype=np.int8):
    """int8 input codes -> DQ -> body (reads 'xr', writes 'yr') -> Q -> int8 output codes."""
    elem = TensorProto.INT8 if dtype == np.int8 else TensorProto.UINT8
    nodes = [helper.make_node("DequantizeLinear", ["x", "in_s", "in_z"], ["xr"])] + body + [
        helper.make_node("QuantizeLinear", ["yr", "out_s", "out_z"], ["y"])]
    inits = {**_q("in", s_in, z_in, dtype), **_q("out", s_out, z_out, dtype), **body_inits}
    return _model(nodes, [_image_in(c, h, w, dtype=elem)], [_out("y", elem)], inits, 17)


def _weight(name, w, axis=0):
    """Symmetric int8 weight (per output channel along ``axis``) behind a DequantizeLinear."""
    amax = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(1)
    s = (amax / 127).astype(np.float32)
    shape = [1] * w.ndim
    shape[axis] = -1
    q = np.clip(np.round(w / s.reshape(shape)), -127, 127).astype(np.int8)
    node = helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name], axis=axis)
    return node, {f"{name}_q": q, f"{name}_s": s, f"{name}_z": np.zeros(s.size, np.int8)}, s


def _bias(name, b, scale):
    codes = np.round(b / scale).astype(np.int32)
    node = helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_s", f"{name}_z"], [name], axis=0)
    return node, {f"{name}_q": codes, f"{name}_s": scale.astype(np.float32), f"{name}_z": np.zeros(codes.size, np.int32)}


def qdq_conv():
    wn, wi, s = _weight("w", _f(6, 3, 3, 3))
    bn, bi = _bias("b", _f(6), np.float32(0.02) * s)
    return ([wn, bn, helper.make_node("Conv", ["xr", "w", "b"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["yr"])], {**wi, **bi}, (3, 9, 9), (0.02, -5, 0.05, -128))


def qdq_depthwise():
    wn, wi, s = _weight("w", _f(4, 1, 3, 3))
    return ([wn, helper.make_node("Conv", ["xr", "w"], ["yr"], group=4, pads=[1, 1, 1, 1])], wi, (4, 6, 6),
            (0.03, 3, 0.04, 2))


def qdq_gemm():
    wn, wi, s = _weight("w", _f(5, 48))
    bn, bi = _bias("b", _f(5), np.float32(0.02) * s)
    return ([wn, bn, helper.make_node("Flatten", ["xr"], ["f"]),
             helper.make_node("Gemm", ["f", "w", "b"], ["yr"], transB=1)], {**wi, **bi}, (3, 4, 4),
            (0.02, 0, 0.1, -10))


def qdq_add():
    wn, wi, _ = _weight("w", _f(3, 3, 3, 3))
    return ([wn, helper.make_node("Conv", ["xr", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["c", "c_s", "c_z"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "c_s", "c_z"], ["cr"]),
             helper.make_node("Add", ["cr", "xr"], ["yr"])], {**wi, **_q("c", 0.04, 4)}, (3, 5, 5),
            (0.02, 1, 0.05, -3))


def qdq_pools():
    return ([helper.make_node("AveragePool", ["xr"], ["a"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("QuantizeLinear", ["a", "in_s", "in_z"], ["aq"]),
             helper.make_node("DequantizeLinear", ["aq", "in_s", "in_z"], ["ar"]),
             helper.make_node("MaxPool", ["ar"], ["yr"], kernel_shape=[2, 2])], {}, (3, 8, 8),
            (0.03, -7, 0.03, -7))


def qdq_gap():
    return ([helper.make_node("GlobalAveragePool", ["xr"], ["yr"])], {}, (5, 7, 7), (0.03, -20, 0.011, -40))


def qdq_softmax():
    return ([helper.make_node("Flatten", ["xr"], ["f"]), helper.make_node("Softmax", ["f"], ["yr"], axis=1)], {},
            (10, 1, 1), (0.07, 0, 1 / 256, -128))


QDQ_CASES = [qdq_conv, qdq_depthwise, qdq_gemm, qdq_add, qdq_pools, qdq_gap, qdq_softmax]


@pytest.mark.parametrize("case", QDQ_CASES, ids=lambda c: c.__name__)
def test_qdq_layers_match_onnxruntime_within_one_code(case):
    body, inits, (c, h, w), (s_in, z_in, s_out, z_out) = case()
    m = _qdq_case(body, inits, c, h, w, s_in, z_in, s_out, z_out)
    g = from_onnx(m)
    assert g.is_quantized
    x = RNG.integers(-128, 128, (8, c, h, w)).astype(np.int8)
    expected = _run_ort(m, {"x": x}).astype(np.int32)
    got = Interpreter(g).run(x.transpose(0, 2, 3, 1)).astype(np.int32)
    if got.ndim == 4:
        got = got.transpose(0, 3, 1, 2)
    assert np.abs(got - expected.reshape(got.shape)).max() <= 1


def test_qdq_with_uint8_activations_becomes_int8_codes():
    body, inits, (c, h, w), (s_in, z_in, s_out, z_out) = qdq_conv()
    m = _qdq_case(body, inits, c, h, w, s_in, z_in + 128, s_out, z_out + 128, dtype=np.uint8)
    g = from_onnx(m)
    assert int(g.tensors[g.inputs[0]].quant.zero_point[0]) == z_in
    u = RNG.integers(0, 256, (4, c, h, w)).astype(np.uint8)
    expected = _run_ort(m, {"x": u}).astype(np.int32) - 128
    got = Interpreter(g).run((u.astype(np.int16) - 128).astype(np.int8).transpose(0, 2, 3, 1)).astype(np.int32)
    assert np.abs(got.transpose(0, 3, 1, 2) - expected).max() <= 1


@pytest.mark.parametrize("name", ["digits-cnn", "ic-resnet8", "ad-autoencoder"])
def test_zoo_int8_exported_as_qdq_comes_back_bit_exact(name):
    g = zoo.get(name)
    x = RNG.random((16,) + g.input_shape(), dtype=np.float32)
    q = quantize_model(g, x)
    m = to_onnx(q, activation_dtype="uint8" if name == "ic-resnet8" else "int8")
    h = from_onnx(m)
    assert [n.op for n in h.nodes] == [n.op for n in q.nodes]
    for a, b in zip(q.nodes, h.nodes):
        wa, wb = q.weights(a), h.weights(b)
        assert wa.keys() == wb.keys()
        assert {k: v for k, v in a.attrs.items() if k != "padding"} == {
            k: v for k, v in b.attrs.items() if k != "padding"}  # 'same' comes back as explicit pads
        assert h.tensors[b.outputs[0]].shape == q.tensors[a.outputs[0]].shape
        for role in wa:
            np.testing.assert_array_equal(wb[role].data, wa[role].data)
            assert wb[role].quant == wa[role].quant
        assert h.tensors[b.outputs[0]].quant == q.tensors[a.outputs[0]].quant
    xq = quantize_input(q, x)
    np.testing.assert_array_equal(Interpreter(h).run(xq), Interpreter(q).run(xq))


def test_a_model_quantized_by_onnxruntime_imports(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from tinyml_lab.quant import dequantize_output, prepare
    from tinyml_lab.quant.tasks import task_for

    g = zoo.get("digits-cnn")
    task = task_for(g)
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    to_onnx(prepare(g), src, input_layout="nchw")  # BatchNorm folded: int8 has no BatchNorm

    class Reader(CalibrationDataReader):
        def __init__(self):
            cal = task.calibration().transpose(0, 3, 1, 2)
            self.batches = iter([{"input": cal[i:i + 64]} for i in range(0, len(cal), 64)])

        def get_next(self):
            return next(self.batches, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    h = load_model(dst)
    assert h.is_quantized and any("softmax" in note for note in h.metadata["onnx"]["notes"])
    ours = dequantize_output(h, Interpreter(h).run(quantize_input(h, task.x_test)))
    s = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
    theirs = s.run(None, {"input": task.x_test.transpose(0, 3, 1, 2)})[0]
    assert np.mean(ours.argmax(1) == theirs.argmax(1)) >= 0.99
    assert task.score(h) >= task.score(g) - 0.01


# --------------------------------------------------------------------------- errors

def _small_model(opset: int = 17):
    return _model([helper.make_node("Conv", ["x", "w"], ["y"])], [_image_in(2, 5, 5)], [_out()], {"w": _f(3, 2, 3, 3)},
                  opset)


def test_truncated_corrupt_and_missing_files(tmp_path):
    data = to_onnx(zoo.get("digits-cnn")).SerializeToString()
    cases = {"half.onnx": data[: len(data) // 2], "tail.onnx": data[:-7], "noise.onnx": RNG.bytes(500),
             "empty.onnx": b""}
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(FileFormatError):
            load_onnx(tmp_path / name)
    with pytest.raises(FileFormatError, match="no such"):
        load_onnx(tmp_path / "nothing.onnx")


def test_unsupported_ops_are_all_listed():
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="gate"),
             helper.make_node("Mul", ["c", "s"], ["m"], name="swish"),
             helper.make_node("LRN", ["m"], ["y"], size=3, name="norm")]
    m = _model(nodes, [_image_in(2, 5, 5)], [_out()], {"w": _f(3, 2, 3, 3)})
    with pytest.raises(ModelImportError) as info:
        from_onnx(m)
    names = [who for who, _ in info.value.problems]
    assert names == ["Sigmoid 'gate'", "Mul 'swish'", "LRN 'norm'"]
    assert "gate" in str(info.value) and "norm" in str(info.value) and "importer supports Conv" in str(info.value)
    assert "\n" not in str(info.value)  # one line, as the CLI prints it


def test_dynamic_shapes_are_listed():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, "H", "W"])
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Shape", ["c"], ["shape"], name="shape_of"),
             helper.make_node("Reshape", ["c", "shape"], ["y"], name="reshape")]
    m = _model(nodes, [x], [_out()], {"w": _f(3, 2, 3, 3)})
    with pytest.raises(ModelImportError) as info:
        from_onnx(m)
    text = str(info.value)
    assert "input 'x'" in text and "dynamic shape" in text and "Shape 'shape_of'" in text
    assert "Reshape 'reshape'" in text


def test_missing_external_data_is_listed(tmp_path):
    m = _small_model()
    path = tmp_path / "ext.onnx"
    onnx.save_model(m, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
                    size_threshold=0)
    g = load_onnx(path)
    assert g.weights(g.nodes[0])["weight"].shape == (3, 3, 3, 2)
    (tmp_path / "w.bin").unlink()
    with pytest.raises(ModelImportError, match="w.bin") as info:
        load_onnx(path)
    assert info.value.problems[0][0] == "w"


@pytest.mark.parametrize("opset", [9, 10])
def test_opsets_outside_11_to_21_are_refused(opset):
    with pytest.raises(ModelImportError, match="opset"):
        from_onnx(_small_model(opset))


def test_qdq_that_breaks_the_int8_spec_is_refused_with_the_reason():
    w = _f(4, 3, 3, 3)
    wq = np.clip(np.round(w / 0.02) + 128, 0, 255).astype(np.uint8)
    body = [helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], name="dq_w"),
            helper.make_node("Conv", ["xr", "w"], ["yr"], name="conv")]
    inits = {"w_q": wq, "w_s": np.array(0.02, np.float32), "w_z": np.array(128, np.uint8)}
    with pytest.raises(ModelImportError, match="symmetric int8 weights") as info:
        from_onnx(_qdq_case(body, inits, 3, 5, 5, 0.02, 0, 0.05, 0))
    assert info.value.problems[0][0] == "Conv 'conv'"
    body, inits, (c, h, w_), _ = qdq_pools()
    with pytest.raises(ModelImportError, match="keeps its input's scale"):
        from_onnx(_qdq_case(body, inits, c, h, w_, 0.03, -7, 0.05, 0))
