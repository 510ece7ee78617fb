"""The ``tinyml-lab export`` verb: formats, quantization on the fly, and bad input (exit 2, one line,
nothing written)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tflite")

from tinyml_lab.cli import main  # noqa: E402
from tinyml_lab.io.tflite import load_tflite  # noqa: E402


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_export_zoo_model_to_tflite_and_back_to_c(tmp_path, capsys):
    path = tmp_path / "digits.tflite"
    code, out, err = run(capsys, "export", "digits-cnn", "--calib", "random:8", "-o", str(path), "--json",
                         "--offline-plan")
    assert code == 0, err
    result = json.loads(out)
    assert result["format"] == "tflite" and result["files"][str(path)] == path.stat().st_size
    assert "MEAN" in result["operators"]
    g = load_tflite(path)
    assert g.is_quantized and g.metadata["offline_offsets"]
    code, out, err = run(capsys, "export", str(path), "--format", "c", "-o", str(tmp_path / "c"))
    assert code == 0, err
    assert "arena" in out and (tmp_path / "c" / "digits_cnn_16.c").is_file()
    code, out, err = run(capsys, "export", str(path), "--format", "arduino", "-o", str(tmp_path / "sk"))
    assert code == 0, err
    assert (tmp_path / "sk" / "sk.ino").is_file() and "TFLM" in out


def test_calibration_file_and_float_io(tmp_path, capsys):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(0).standard_normal((4, 16, 16, 1)).astype(np.float32))
    path = tmp_path / "m.tflite"
    code, out, err = run(capsys, "export", "digits-cnn", "--calib", str(calib), "--float-io", "-o", str(path))
    assert code == 0, err
    assert "QUANTIZE" in out and "float32" in out
    assert [n.op for n in load_tflite(path).nodes][0] == "Quantize"


@pytest.mark.parametrize("argv, message", [
    (["digits-cnn"], "float32 model.*--calib"),
    (["digits-cnn", "--calib", "random:0"], "positive sample count"),
    (["digits-cnn", "--calib", "nope.npy"], "no such file"),
    (["no-such-model", "--calib", "random"], "neither a model file nor a zoo model"),
])
def test_bad_model_or_calibration(tmp_path, capsys, argv, message):
    out_path = tmp_path / "m.tflite"
    code, out, err = run(capsys, "export", *argv, "-o", str(out_path))
    assert code == 2 and out == ""
    assert err.startswith("tinyml-lab export: ") and len(err.strip().splitlines()) == 1
    import re

    assert re.search(message, err), err
    assert not out_path.exists()


def test_bad_destinations_fail_before_anything_is_done(tmp_path, capsys):
    code, _, err = run(capsys, "export", "mobilenetv2", "--calib", "random", "-o", str(tmp_path / "no" / "m.tflite"))
    assert code == 2 and "does not exist" in err
    (tmp_path / "f").write_text("")
    code, _, err = run(capsys, "export", "digits-cnn", "--calib", "random", "--format", "c", "-o",
                       str(tmp_path / "f"))
    assert code == 2 and "it is a file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_non_tflite_input_file(tmp_path, capsys):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 64)
    code, _, err = run(capsys, "export", str(bad), "-o", str(tmp_path / "out.tflite"))
    assert code == 2 and "not a TFLite model" in err
