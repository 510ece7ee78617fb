"""Generated C: compiles warning-free with the system C compiler, runs, and is bit-exact with the
interpreter; builds for a Cortex-M4 when ``arm-none-eabi-gcc`` is installed; the Arduino sketch
embeds exactly the ``.tflite`` bytes."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_cases import build_c, have, int8_inputs, random_graphs  # noqa: E402
from tinyml_lab import zoo  # noqa: E402
from tinyml_lab.errors import ExportError, FileFormatError  # noqa: E402
from tinyml_lab.export.c import c_identifier, kernel_library, to_c  # noqa: E402
from tinyml_lab.export.prepare import with_float_edges  # noqa: E402
from tinyml_lab.interpreter import Interpreter  # noqa: E402
from tinyml_lab.memory import deployed_graph, plan  # noqa: E402

needs_gcc = pytest.mark.skipif(not have("gcc"), reason="no gcc on this machine")


@functools.lru_cache(maxsize=None)
def zoo_int8(name: str):
    return deployed_graph(zoo.get(name))


@needs_gcc
@pytest.mark.parametrize("name", zoo.names())
def test_zoo_model_compiles_and_is_bit_exact(name, tmp_path):
    q = zoo_int8(name)
    src = to_c(q, tmp_path / "gen")
    assert sorted(p.name for p in (tmp_path / "gen").iterdir()) == [f"{src.name}.c", f"{src.name}.h"]
    x = int8_inputs(q, 4, seed=5)
    y = build_c(src, tmp_path / "build", x)
    np.testing.assert_array_equal(y.reshape((4,) + q.output_shape()), Interpreter(q).run(x))
    assert src.arena_bytes == plan(q).arena_bytes
    # one static arena of the planned size, no dynamic allocation, no floating point in the code
    assert f"#define {src.name.upper()}_ARENA_SIZE {src.arena_bytes}" in src.header
    code = re.sub(r"/\*.*?\*/", "", src.source, flags=re.S)
    assert not re.search(r"\b(malloc|calloc|free|float|double)\b", code)
    if src.const_bytes > 500_000:  # the object's sizes are checked on the smaller models (compile time)
        return
    obj = tmp_path / "m.o"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-c", "-o", str(obj),
                    str(tmp_path / "gen" / f"{src.name}.c")], check=True)
    text, data, bss = (int(v) for v in subprocess.run(["size", str(obj)], capture_output=True, text=True,
                                                         check=True).stdout.splitlines()[1].split()[:3])
    assert bss >= src.arena_bytes and text >= src.const_bytes


@needs_gcc
@settings(max_examples=12, deadline=None)
@given(random_graphs(max_blocks=3))
def test_random_graphs_compile_and_are_bit_exact(tmp_path_factory, case):
    q, seed = case
    x = int8_inputs(q, 3, seed)
    src = to_c(q)
    y = build_c(src, tmp_path_factory.mktemp("c"), x)
    np.testing.assert_array_equal(y.reshape((3,) + q.output_shape()), Interpreter(q).run(x))


@pytest.mark.skipif(not have("arm-none-eabi-gcc"),
                    reason="arm-none-eabi-gcc is not installed (Debian package gcc-arm-none-eabi)")
@pytest.mark.parametrize("name", ["kws-dscnn", "ic-resnet8"])
def test_builds_for_cortex_m4(name, tmp_path):
    src = to_c(zoo_int8(name), tmp_path)
    obj = tmp_path / "m.o"
    subprocess.run(["arm-none-eabi-gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-mcpu=cortex-m4",
                    "-mthumb", "-c", "-o", str(obj), str(tmp_path / f"{src.name}.c")], check=True)
    out = subprocess.run(["arm-none-eabi-size", str(obj)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    assert bss == src.arena_bytes and text > src.const_bytes and data == 0


def test_only_the_kernels_used_are_emitted():
    lib = kernel_library({"dense"})
    assert "tml_dense" in lib and "tml_conv2d" not in lib and "tml_requantize" in lib
    src = to_c(zoo_int8("ad-autoencoder"))
    assert "tml_softmax" not in src.source and "tml_dense(" in src.source
    assert c_identifier("3-layer net!") == "m_3_layer_net"


def test_float_edges_are_dropped_and_float_graphs_refused(tmp_path):
    q = zoo_int8("digits-cnn")
    assert to_c(with_float_edges(q)).source == to_c(q).source
    with pytest.raises(ExportError, match="quantize it first"):
        to_c(zoo.get("digits-cnn"), tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(FileFormatError, match="does not exist"):
        to_c(q, tmp_path / "a" / "b")
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileFormatError, match="it is a file"):
        to_c(q, tmp_path / "file")


# --------------------------------------------------------------------------- Arduino

def test_arduino_sketch_embeds_the_tflite_model(tmp_path):
    pytest.importorskip("tflite")
    from tinyml_lab.export.arduino import to_arduino
    from tinyml_lab.export.tflite import to_tflite
    from tinyml_lab.io.tflite import read_tflite

    q = zoo_int8("kws-dscnn")
    sk = to_arduino(q, tmp_path / "kws_sketch")
    files = sorted(p.name for p in (tmp_path / "kws_sketch").iterdir())
    assert files == ["kws_sketch.ino", "model_data.cpp", "model_data.h"]
    cpp = (tmp_path / "kws_sketch" / "model_data.cpp").read_text()
    blob = bytes(int(v, 16) for v in re.findall(r"0x([0-9a-f]{2})", cpp))
    assert blob == to_tflite(q, offline_plan=plan(q, "greedy-size")) and len(blob) == sk.model_bytes
    assert f"g_kws_sketch_model_len = {len(blob)};" in cpp
    assert read_tflite(blob).metadata["offline_offsets"]
    ino = (tmp_path / "kws_sketch" / "kws_sketch.ino").read_text()
    assert f"MicroMutableOpResolver<{len(sk.operators)}>" in ino and "resolver.AddDepthwiseConv2D();" in ino
    assert f"kTensorArenaSize = {sk.arena_bytes};" in ino and sk.arena_bytes > sk.plan_bytes
    if have("g++"):
        subprocess.run(["g++", "-std=c++11", "-Wall", "-Werror", "-c", "-o", str(tmp_path / "m.o"),
                        str(tmp_path / "kws_sketch" / "model_data.cpp")], check=True)
