"""The TFLite exporter against LiteRT, a runtime nobody here wrote.

Every zoo model and random graphs (hypothesis) are exported and run in LiteRT with the
reference kernels (``BUILTIN_REF``, the kernels TensorFlow Lite Micro runs) on the same int8
inputs as :class:`~tinyml_lab.interpreter.Interpreter`: the outputs are bit-exact, with one
documented exception, FULLY_CONNECTED, whose LiteRT reference kernel rescales in double
precision where TFLite Micro and our kernels use the fixed-point multiplier. The tests compare
against our graph run with that one kernel swapped (``as_litert_reference``), assert exact
equality there, and check the FULLY_CONNECTED finding itself. LiteRT's default resolver is
compared too, with the differences bounded, not asserted away.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_cases import as_litert_reference, int8_inputs, litert, random_graphs  # noqa: E402
from tinyml_lab import zoo  # noqa: E402
from tinyml_lab.errors import ExportError, FileFormatError  # noqa: E402
from tinyml_lab.export.tflite import OFFLINE_PLAN_METADATA, _Writer, prepare_graph, to_tflite  # noqa: E402
from tinyml_lab.graph import GraphBuilder  # noqa: E402
from tinyml_lab.interpreter import Interpreter  # noqa: E402
from tinyml_lab.memory import deployed_graph, plan  # noqa: E402
from tinyml_lab.quant import quantize_model  # noqa: E402


@functools.lru_cache(maxsize=None)
def zoo_int8(name: str):
    return deployed_graph(zoo.get(name))


# --------------------------------------------------------------------------- zoo models

@pytest.mark.parametrize("name", zoo.names())
def test_zoo_model_bit_exact_in_litert_reference_kernels(name):
    q = zoo_int8(name)
    data = to_tflite(q)
    x = int8_inputs(q, 3, seed=1)
    theirs = litert(data, x, "BUILTIN_REF")
    np.testing.assert_array_equal(theirs, as_litert_reference(q, x))
    ours = Interpreter(q).run(x)
    # the whole difference from our own kernels is LiteRT's double-precision FULLY_CONNECTED
    if not any(n.op == "Dense" for n in q.nodes):
        np.testing.assert_array_equal(theirs, ours)
    # float I/O: QUANTIZE and DEQUANTIZE at the edges, on real inputs
    xf = (np.random.default_rng(2).standard_normal((2,) + q.input_shape())).astype(np.float32)
    yf = litert(to_tflite(q, float_io=True), xf, "BUILTIN_REF")
    from tinyml_lab.quant import dequantize_output, quantize_input

    want = dequantize_output(q, as_litert_reference(q, quantize_input(q, xf)))
    np.testing.assert_array_equal(yf, want)


@pytest.mark.parametrize("name", ["kws-dscnn", "ic-resnet8", "digits-cnn"])
def test_default_resolver_differs_by_little(name):
    """LiteRT's default resolver (optimized kernels and XNNPACK) is not bit-exact with the reference
    kernels; on these models its outputs stay within a few codes of ours (measured per model by
    benchmarks/export.py)."""
    q = zoo_int8(name)
    x = int8_inputs(q, 3, seed=3)
    ours = Interpreter(q).run(x).astype(int)
    for resolver in ("AUTO", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"):
        d = np.abs(litert(to_tflite(q), x, resolver).astype(int) - ours)
        # 1-code differences inside, which a softmax can amplify at the output
        assert d.max() <= 64 and (d > 0).mean() < 0.2, (resolver, d.max(), (d > 0).mean())


# --------------------------------------------------------------------------- random graphs

@settings(max_examples=40, deadline=None)
@given(random_graphs())
def test_random_graphs_bit_exact_in_litert(case):
    q, seed = case
    x = int8_inputs(q, 2, seed)
    theirs = litert(to_tflite(q), x, "BUILTIN_REF")
    np.testing.assert_array_equal(theirs, as_litert_reference(q, x))
    if not any(n.op == "Dense" for n in q.nodes):
        np.testing.assert_array_equal(theirs, Interpreter(q, backend="reference").run(x))


# --------------------------------------------------------------------------- findings

def _dense_graph(seed: int, per_channel: bool = False):
    rng = np.random.default_rng(seed)
    b = GraphBuilder("fc", seed=seed)
    x = b.input((64,))
    g = b.build(b.dense(x, 48, bias=(rng.standard_normal(48) * 0.5).astype(np.float32)))
    return quantize_model(g, rng.standard_normal((16, 64)).astype(np.float32), per_channel=per_channel)


def test_litert_reference_fully_connected_rescales_in_double():
    """The finding behind ``as_litert_reference``: over many random accumulators, LiteRT's
    reference FULLY_CONNECTED equals ``round(acc * M)`` in double precision, and differs from
    the fixed-point (double rounding) result by at most 1, only where ``acc * M`` is within a
    hair of a half."""
    q = _dense_graph(0)
    x = int8_inputs(q, 200, seed=0)
    theirs = litert(to_tflite(q), x)
    np.testing.assert_array_equal(theirs, as_litert_reference(q, x))
    ours = Interpreter(q).run(x)
    d = np.abs(theirs.astype(int) - ours.astype(int))
    assert d.max() <= 1
    assert (d > 0).mean() < 0.01


def test_mean_matches_litert_with_and_without_keep_dims():
    """GlobalAvgPool is TFLite's int8 MEAN (``QuantizedMeanOrSum``: ``1/(H W)`` folded into the
    multiplier). keep_dims=False runs the reference kernel in both resolvers; keep_dims=True sends
    the default resolver to its optimized kernel, which may differ by 1."""
    b = GraphBuilder("gap", seed=0)
    x = b.input((7, 9, 16))
    g = b.build(b.global_avg_pool(x))
    calib = np.random.default_rng(0).standard_normal((8, 7, 9, 16)).astype(np.float32)
    q = quantize_model(g, calib * np.linspace(0.5, 4, 16, dtype=np.float32), ranges={"gap": (-0.7, 0.9)})
    x = int8_inputs(q, 50, seed=0)
    ours = Interpreter(q).run(x)
    np.testing.assert_array_equal(Interpreter(q, backend="reference").run(x), ours)
    np.testing.assert_array_equal(litert(to_tflite(q), x, "BUILTIN_REF"), ours)
    np.testing.assert_array_equal(litert(to_tflite(q), x, "BUILTIN_WITHOUT_DEFAULT_DELEGATES"), ours)
    kept = _Writer(prepare_graph(q), None, mean_keep_dims=True).build()
    np.testing.assert_array_equal(litert(kept, x, "BUILTIN_REF").reshape(ours.shape), ours)
    d = np.abs(litert(kept, x, "BUILTIN_WITHOUT_DEFAULT_DELEGATES").reshape(ours.shape).astype(int) - ours)
    assert d.max() <= 1


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 8), st.floats(0.01, 100.0), st.integers(0, 2**16))
def test_mean_over_shapes_and_scales(h, w, c, ratio, seed):
    """``1/(H W)`` folded into the multiplier, for window counts up to 1600 and input/output scale
    ratios on both sides of 1 (a left shift included), as LiteRT's reference MEAN computes it."""
    b = GraphBuilder("gap", seed=0)
    g = b.build(b.global_avg_pool(b.input((h, w, c))))
    calib = np.random.default_rng(seed).uniform(-1, 1, (2, h, w, c)).astype(np.float32)
    q = quantize_model(g, calib, ranges={"input": (-1.0, 1.0), "gap": (-1.0 / ratio, 1.0 / ratio)})
    x = int8_inputs(q, 4, seed)
    ours = Interpreter(q).run(x)
    np.testing.assert_array_equal(Interpreter(q, backend="reference").run(x), ours)
    np.testing.assert_array_equal(litert(to_tflite(q), x), ours)


# --------------------------------------------------------------------------- the file

def test_schema_buffers_and_offline_plan():
    import tflite

    q = zoo_int8("kws-dscnn")
    g = prepare_graph(q)
    p = plan(g, "greedy-size")
    data = to_tflite(q, offline_plan=p)
    m = tflite.Model.GetRootAs(data, 0)
    assert m.Version() == 3 and data[4:8] == b"TFL3"
    # every constant buffer is distinct (deduplicated) and 16-byte aligned in the file
    blobs = [m.Buffers(i).DataAsNumpy().tobytes() for i in range(m.BuffersLength()) if m.Buffers(i).DataLength()]
    assert len(blobs) == len(set(blobs))
    base = np.frombuffer(data, np.uint8).ctypes.data
    for i in range(m.BuffersLength()):
        if m.Buffers(i).DataLength():
            assert (m.Buffers(i).DataAsNumpy().ctypes.data - base) % 16 == 0
    # the offline plan: [version, subgraph, n, offsets...], activations at the plan's offsets
    md = [m.Metadata(i) for i in range(m.MetadataLength())]
    (entry,) = [e for e in md if e.Name().decode() == OFFLINE_PLAN_METADATA]
    words = np.frombuffer(m.Buffers(entry.Buffer()).DataAsNumpy().tobytes(), "<i4")
    sg = m.Subgraphs(0)
    assert words[0] == 1 and words[1] == 0 and words[2] == sg.TensorsLength()
    for i in range(sg.TensorsLength()):
        name = sg.Tensors(i).Name().decode()
        t = g.tensors.get(name)
        expected = p.offsets[name] if t is not None and not t.is_const else -1
        assert words[3 + i] == expected, name
    # the model still runs (LiteRT ignores the metadata)
    x = int8_inputs(q, 1, seed=0)
    np.testing.assert_array_equal(litert(data, x), as_litert_reference(q, x))


def test_identical_weights_share_one_buffer():
    b = GraphBuilder("twins", seed=0)
    x = b.input((6, 6, 4))
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 4)).astype(np.float32)
    y = b.conv2d(b.conv2d(x, 4, 3, padding="same", weight=w), 4, 3, padding="same", weight=w)
    q = quantize_model(b.build(y), np.ones((2, 6, 6, 4), np.float32), per_channel=False)
    import tflite

    q.tensors["conv1/weight"].data = q.tensors["conv/weight"].data.copy()
    m = tflite.Model.GetRootAs(to_tflite(q), 0)
    sg = m.Subgraphs(0)
    bufs = {sg.Tensors(i).Name().decode(): sg.Tensors(i).Buffer() for i in range(sg.TensorsLength())}
    assert bufs["conv/weight"] == bufs["conv1/weight"]


def test_explicit_pads_become_a_pad_operator():
    b = GraphBuilder("pads", seed=0)
    x = b.input((8, 8, 3))
    g = b.build(b.conv2d(x, 4, 3, padding=(2, 0, 1, 1), activation="relu"))
    q = quantize_model(g, np.random.default_rng(0).standard_normal((4, 8, 8, 3)).astype(np.float32))
    assert [n.op for n in prepare_graph(q).nodes] == ["Pad", "Conv2D"]
    x = int8_inputs(q, 4, seed=0)
    np.testing.assert_array_equal(litert(to_tflite(q), x), Interpreter(q).run(x))


# --------------------------------------------------------------------------- bad input

def test_float_graph_is_refused_with_the_fix():
    with pytest.raises(ExportError, match="quantize it first"):
        to_tflite(zoo.get("digits-cnn"))


def test_pool_pads_tflite_cannot_express_are_named():
    b = GraphBuilder("pool", seed=0)
    x = b.input((8, 8, 2))
    g = b.build(b.max_pool2d(b.conv2d(x, 2, 1), 3, strides=1, padding=(1, 0, 0, 1)))
    q = quantize_model(g, np.ones((2, 8, 8, 2), np.float32))
    with pytest.raises(ExportError, match=r"MaxPool2D 'maxpool'.*neither SAME nor VALID"):
        to_tflite(q)


def test_unwritable_destination_fails_before_writing(tmp_path):
    q = zoo_int8("digits-cnn")
    with pytest.raises(FileFormatError, match="does not exist"):
        to_tflite(q, tmp_path / "missing" / "m.tflite")
    with pytest.raises(FileFormatError, match="is a folder"):
        to_tflite(q, tmp_path)
    with pytest.raises(ExportError):  # a float graph fails before the (valid) file is created
        to_tflite(zoo.get("digits-cnn"), tmp_path / "f.tflite")
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(FileFormatError, match="not writable"):
            to_tflite(q, ro / "m.tflite")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == []
    out = tmp_path / "m.tflite"
    data = to_tflite(q, out)
    assert out.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left
