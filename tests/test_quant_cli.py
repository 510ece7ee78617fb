"""``tinyml-lab quantize``: the report, the written model, and bad input that leaves no file."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tinyml_lab import Graph, zoo
from tinyml_lab.cli import main
from tinyml_lab.export import to_onnx
from tinyml_lab.models import load_model


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_quantize_digits_reports_accuracy_sizes_and_sqnr(capsys, tmp_path):
    out = tmp_path / "q.npz"
    code, text, _ = run_cli(capsys, "quantize", "digits-cnn", "--calib", "digits", "-o", str(out), "--json")
    assert code == 0
    d = json.loads(text)
    assert {"float_accuracy", "int8_accuracy", "float_bytes", "int8_bytes", "layers"} <= set(d)
    assert abs(d["float_accuracy"] - d["int8_accuracy"]) <= 0.01 and d["metric"] == "accuracy"
    assert d["int8_bytes"] < d["float_bytes"] / 3
    assert [x["name"] for x in d["layers"]] == ["conv1", "conv2", "dw1", "pw1", "gap", "fc", "softmax"]
    assert all(x["output_sqnr_db"] > 25 for x in d["layers"])
    q = Graph.load(out)
    assert q.is_quantized and q.metadata["calibration"]["samples"] == 256
    code, table, _ = run_cli(capsys, "quantize", "digits-cnn", "--calib", "digits", "--per-tensor", "--method",
                             "percentile", "-o", str(out))
    assert code == 0 and "per tensor" in table and "output SQNR dB" in table and "accuracy" in table


def test_quantize_without_a_data_set_and_to_onnx(capsys, tmp_path):
    out = tmp_path / "kws.onnx"
    code, text, _ = run_cli(capsys, "quantize", "kws-dscnn", "--calib", "random", "--seed", "3", "--bits", "6",
                            "-o", str(out), "--json")
    assert code == 0
    d = json.loads(text)
    assert d["float_accuracy"] is None and d["int8_accuracy"] is None and d["calibration"]["seed"] == 3
    assert all(x["weight_bits"] in (6, None) for x in d["layers"])
    q = load_model(out)  # the QDQ file comes back as an int8 graph
    assert q.is_quantized and q.macs == zoo.get("kws-dscnn").macs


def test_quantize_the_autoencoder_reports_roc_auc(capsys, tmp_path):
    code, text, _ = run_cli(capsys, "quantize", "ad-autoencoder", "--calib", "vibration", "--method", "mse",
                            "-o", str(tmp_path / "ae"), "--json")
    d = json.loads(text)
    assert code == 0 and d["metric"] == "roc_auc" and d["int8_accuracy"] > 0.95
    assert os.path.exists(tmp_path / "ae.npz")


def test_an_onnx_model_can_be_quantized(capsys, tmp_path):
    src = tmp_path / "digits.onnx"
    to_onnx(zoo.get("digits-cnn"), src)
    code, text, _ = run_cli(capsys, "quantize", str(src), "--calib", "digits", "-o", str(tmp_path / "q.npz"),
                            "--json")
    assert code == 0 and json.loads(text)["int8_accuracy"] > 0.95  # found by its shapes: 16x16x1 -> 10


@pytest.mark.parametrize("args, message", [
    (["kws-dscnn", "--calib", "digits"], "not a digits model"),
    (["digits-cnn", "--calib", "digits", "--bits", "9"], "2 to 8"),
    (["digits-cnn", "--calib", "digits", "--bits", "1"], "2 to 8"),
    (["digits-cnn", "--calib", "random", "--calib-size", "0"], "empty"),
    (["nonsense-model", "--calib", "random"], "neither a model file nor a zoo model"),
])
def test_bad_input_exits_2_and_leaves_no_file(capsys, tmp_path, args, message):
    out = tmp_path / "q.npz"
    code, _, err = run_cli(capsys, "quantize", *args, "-o", str(out))
    assert code == 2 and message in err and "\n" not in err.strip()
    assert os.listdir(tmp_path) == []


def test_an_unwritable_output_fails_before_any_work(capsys, tmp_path):
    code, _, err = run_cli(capsys, "quantize", "digits-cnn", "--calib", "digits", "-o",
                           str(tmp_path / "missing" / "q.npz"))
    assert code == 2 and "does not exist" in err
    code, _, err = run_cli(capsys, "quantize", "digits-cnn", "--calib", "digits", "-o", str(tmp_path))
    assert code == 2 and "folder" in err
    assert os.listdir(tmp_path) == []


def test_a_corrupt_or_unsupported_onnx_model_exits_2_and_leaves_no_file(capsys, tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    good = to_onnx(zoo.get("digits-cnn")).SerializeToString()
    (tmp_path / "cut.onnx").write_bytes(good[: len(good) // 3])
    w = numpy_helper.from_array(np.ones((2, 1, 3, 3), np.float32), "w")
    g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
                           helper.make_node("Tanh", ["c"], ["t"], name="squash"),
                           helper.make_node("HardSigmoid", ["t"], ["y"], name="gate")], "odd",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 6, 6])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2, 4, 4])], [w])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "odd.onnx")
    out = tmp_path / "out" / "q.npz"
    out.parent.mkdir()
    for verb in (["quantize", "--calib", "random"], ["prune", "--sparsity", "0.5"]):
        code, _, err = run_cli(capsys, verb[0], str(tmp_path / "cut.onnx"), *verb[1:], "-o", str(out))
        assert code == 2 and "truncated or corrupt" in err
        code, _, err = run_cli(capsys, verb[0], str(tmp_path / "odd.onnx"), *verb[1:], "-o", str(out))
        assert code == 2 and "Tanh 'squash'" in err and "HardSigmoid 'gate'" in err
    assert os.listdir(out.parent) == []
