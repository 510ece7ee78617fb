"""Importing ``.tflite`` models into the IR: round trips, models shaped as other tools write them,
and clear errors for files that are not (or not wholly) int8 TFLite models."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

pytest.importorskip("tflite")
pytest.importorskip("ai_edge_litert")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_cases import int8_inputs, litert, random_graphs  # noqa: E402
from tinyml_lab import zoo  # noqa: E402
from tinyml_lab.errors import FileFormatError, UnknownOpError  # noqa: E402
from tinyml_lab.export.tflite import _ModelParts, _OperatorEntry, _serialize, _TensorEntry, _Writer  # noqa: E402
from tinyml_lab.export.tflite import prepare_graph, to_tflite  # noqa: E402
from tinyml_lab.interpreter import Interpreter  # noqa: E402
from tinyml_lab.io.tflite import load_tflite, read_tflite  # noqa: E402
from tinyml_lab.memory import deployed_graph, plan  # noqa: E402


@functools.lru_cache(maxsize=None)
def zoo_int8(name: str):
    return deployed_graph(zoo.get(name))


@pytest.mark.parametrize("name", zoo.names())
def test_round_trip_gives_the_same_bytes(name, tmp_path):
    q = zoo_int8(name)
    for float_io in (False, True):
        path = tmp_path / f"{name}.tflite"
        first = to_tflite(q, path, float_io=float_io, offline_plan=True)
        g = load_tflite(path)
        assert to_tflite(g, offline_plan=True) == first
        assert g.name == q.name and len(g.metadata["offline_offsets"]) > 0
    g = read_tflite(to_tflite(q))
    x = int8_inputs(q, 2, seed=0)
    np.testing.assert_array_equal(Interpreter(g).run(x), Interpreter(q).run(x))
    assert [n.op for n in g.nodes] == [n.op for n in q.nodes]
    assert plan(g).arena_bytes == plan(q).arena_bytes


@settings(max_examples=15, deadline=None)
@given(random_graphs())
def test_random_graphs_round_trip(case):
    q, seed = case
    data = to_tflite(q)
    g = read_tflite(data)
    assert to_tflite(g) == data
    x = int8_inputs(q, 2, seed)
    np.testing.assert_array_equal(Interpreter(g).run(x), Interpreter(prepare_graph(q)).run(x))


def test_mean_with_keep_dims_imports_as_gap_and_reshape():
    q = zoo_int8("digits-cnn")
    data = _Writer(prepare_graph(q), None, mean_keep_dims=True).build()
    g = read_tflite(data)
    ops = [n.op for n in g.nodes]
    i = ops.index("GlobalAvgPool")
    assert ops[i + 1] == "Reshape" and g.tensors[g.nodes[i].outputs[0]].shape == (32,)
    x = int8_inputs(q, 3, seed=0)
    np.testing.assert_array_equal(Interpreter(g).run(x), litert(data, x))


# --------------------------------------------------------------------------- bad files

def test_not_a_tflite_file(tmp_path):
    p = tmp_path / "model.tflite"
    p.write_bytes(b"this is not a flatbuffer at all")
    with pytest.raises(FileFormatError, match="not a TFLite model.*TFL3"):
        load_tflite(p)
    p.write_bytes(b"TFL")
    with pytest.raises(FileFormatError, match="shorter than a flatbuffer header"):
        load_tflite(p)
    with pytest.raises(FileFormatError, match="no such TFLite model file"):
        load_tflite(tmp_path / "missing.tflite")


@pytest.mark.parametrize("keep", [12, 200, 5000, 30000])
def test_truncated_file(tmp_path, keep):
    data = to_tflite(zoo_int8("kws-dscnn"))
    with pytest.raises(FileFormatError, match="truncated or corrupt"):
        read_tflite(data[:keep])


def _model(ops: list[int], tensor_type: str = "int8") -> bytes:
    """A chain of one-input operators over 1x4x4x2 tensors, hand-built with the schema classes."""
    parts = _ModelParts()
    q = (np.array([0.1], np.float32), np.array([0], np.int64), 0)
    quant = q if tensor_type == "int8" else None
    parts.tensors = [_TensorEntry(f"t{i}", (1, 4, 4, 2), tensor_type, 0, quant) for i in range(len(ops) + 1)]
    for k, op in enumerate(ops):
        if (op, 1) not in parts.opcodes:
            parts.opcodes.append((op, 1))
        parts.operators.append(_OperatorEntry(parts.opcodes.index((op, 1)), [k], [k + 1]))
    return _serialize(parts, [0], [len(ops)], "hand-built", [], "hand")


def test_unsupported_operators_are_all_listed():
    import tflite

    B = tflite.BuiltinOperator
    with pytest.raises(UnknownOpError) as err:
        read_tflite(_model([B.RELU, B.TANH, B.HARD_SWISH, B.TANH]), source="m.tflite")
    msg = str(err.value)
    assert "TANH (x2)" in msg and "HARD_SWISH" in msg and "RELU," not in msg.split("does not have")[1][:30]
    assert "CONV_2D" in msg  # what is supported


def test_float_models_are_refused():
    import tflite

    with pytest.raises(FileFormatError, match="float model"):
        read_tflite(_model([tflite.BuiltinOperator.RELU], "float32"))
    ok = read_tflite(_model([tflite.BuiltinOperator.RELU, tflite.BuiltinOperator.RELU6]))
    assert [n.op for n in ok.nodes] == ["ReLU", "ReLU6"] and ok.input_shape() == (4, 4, 2)
