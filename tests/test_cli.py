"""The tinyml-lab command line: tables, JSON and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tinyml_lab import zoo
from tinyml_lab.cli import main
from tinyml_lab.quant import quantize_model


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name,macs", [("kws-dscnn", 2_656_768), ("vww-mobilenetv1", 7_489_664),
                                       ("ic-resnet8", 12_501_632), ("ad-autoencoder", 264_192)])
def test_profile_json_reports_the_mlperf_tiny_models(capsys, name, macs):
    code, out, _ = run_cli(capsys, "profile", name, "--json")
    assert code == 0
    d = json.loads(out)
    assert d["model"] == name and d["macs"] == macs
    assert d["params"] == sum(layer["params"] for layer in d["layers"])
    assert d["macs"] == sum(layer["macs"] for layer in d["layers"])
    assert {"name", "op", "output_shape", "params", "macs"} <= set(d["layers"][0])


def test_profile_table_and_fold(capsys):
    code, out, _ = run_cli(capsys, "profile", "kws-dscnn")
    assert code == 0 and "BatchNorm" in out and "2,656,768" in out
    code, out, _ = run_cli(capsys, "profile", "kws-dscnn", "--fold")
    assert code == 0 and "BatchNorm" not in out and "2,656,768" in out


def test_zoo_lists_every_model(capsys):
    code, out, _ = run_cli(capsys, "zoo")
    assert code == 0
    for name in zoo.names():
        assert name in out
    code, out, _ = run_cli(capsys, "zoo", "--json")
    assert [m["name"] for m in json.loads(out)] == zoo.names()


def test_run_float_and_int8_files(capsys, tmp_path):
    g = zoo.get("digits-cnn")
    x = np.random.default_rng(0).uniform(0, 1, (3,) + g.input_shape()).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, _, _ = run_cli(capsys, "run", "digits-cnn", "--input", str(tmp_path / "x.npy"),
                         "--output", str(tmp_path / "y.npy"))
    assert code == 0 and np.load(tmp_path / "y.npy").shape == (3, 10)
    q = quantize_model(g, x)
    q.save(tmp_path / "q.npz")
    np.save(tmp_path / "x8.npy", np.zeros(g.input_shape(), np.int8))  # one sample, no batch axis
    code, out, _ = run_cli(capsys, "run", str(tmp_path / "q.npz"), "--input", str(tmp_path / "x8.npy"),
                           "--output", str(tmp_path / "y8.npy"), "--json")
    y = np.load(tmp_path / "y8.npy")
    assert code == 0 and y.shape == (10,) and y.dtype == np.int8
    assert json.loads(out)["dtype"] == "int8"


@pytest.mark.parametrize("args,message", [
    (["profile", "kws-dscn"], "did you mean 'kws-dscnn'"),
    (["profile", "missing.npz"], "no such model file"),
    (["run", "digits-cnn", "--input", "nope.npy", "--output", "y.npy"], "does not exist"),
])
def test_bad_input_exits_2_with_one_line(capsys, args, message):
    code, out, err = run_cli(capsys, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not out


def test_wrong_input_shape_exits_2(capsys, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 8, 8, 1), np.float32))
    code, _, err = run_cli(capsys, "run", "digits-cnn", "--input", str(tmp_path / "x.npy"),
                           "--output", str(tmp_path / "y.npy"))
    assert code == 2 and "expects shape" in err
    assert not (tmp_path / "y.npy").exists()


def test_console_script_entry_point():
    r = subprocess.run([sys.executable, "-m", "tinyml_lab.cli", "zoo"], capture_output=True, text=True)
    assert r.returncode == 0 and "kws-dscnn" in r.stdout
    r = subprocess.run([sys.executable, "-m", "tinyml_lab.cli", "profile", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1


def test_run_accepts_tflite_files(capsys, tmp_path):
    pytest.importorskip("tflite")
    from tinyml_lab.export.tflite import to_tflite
    from tinyml_lab.interpreter import Interpreter

    g = zoo.get("digits-cnn")
    q = quantize_model(g, np.random.default_rng(0).uniform(0, 1, (8,) + g.input_shape()).astype(np.float32))
    (tmp_path / "m.tflite").write_bytes(to_tflite(q))
    x = np.random.default_rng(1).integers(-128, 128, (2,) + g.input_shape()).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    code, _, err = run_cli(capsys, "run", str(tmp_path / "m.tflite"), "--input", str(tmp_path / "x.npy"),
                           "--output", str(tmp_path / "y.npy"))
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), Interpreter(q).run(x))
