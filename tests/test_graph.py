"""The graph IR: building, shape inference, figures, saving, loading, rewrites and errors."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from tinyml_lab import Graph, GraphBuilder, Node, QuantParams, Tensor
from tinyml_lab.errors import (
    AttributeValueError,
    DTypeError,
    FileFormatError,
    GraphError,
    QuantizationError,
    ShapeError,
    TinyMLError,
    UnknownOpError,
)
from tinyml_lab.interpreter import Interpreter
from tinyml_lab.ops import resolve_padding
from tinyml_lab.passes import fold_batchnorm, fuse_activations
from tinyml_lab.quant import quantize_model


def small_graph(seed: int = 0) -> Graph:
    b = GraphBuilder("small", seed=seed)
    x = b.input((10, 10, 3))
    x = b.conv2d(x, 8, 3, strides=2, padding="same")
    x = b.batch_norm(x, gamma=np.linspace(0.5, 2, 8), beta=np.linspace(-1, 1, 8),
                     mean=np.linspace(-0.3, 0.3, 8), var=np.linspace(0.2, 3, 8))
    x = b.relu(x)
    y = b.depthwise_conv2d(x, 3, padding="same", activation="relu6")
    x = b.add(x, y)
    x = b.pad(x, (1, 0, 0, 1))
    x = b.avg_pool2d(x, 2)
    x = b.flatten(x)
    x = b.dense(x, 5)
    return b.build(b.softmax(x))


# --------------------------------------------------------------------------- shapes and figures

@pytest.mark.parametrize("n,k,s,d,padding,want_out,want_pads", [
    (49, 10, 2, 1, "same", 25, (4, 5)),   # odd total padding: the extra pixel goes after
    (10, 4, 2, 1, "same", 5, (1, 1)),
    (32, 3, 1, 1, "same", 32, (1, 1)),
    (32, 3, 2, 1, "same", 16, (0, 1)),
    (9, 3, 1, 2, "same", 9, (2, 2)),
    (7, 3, 2, 1, "valid", 3, (0, 0)),
    (7, 3, 2, 2, "valid", 2, (0, 0)),
])
def test_resolve_padding_follows_tensorflow(n, k, s, d, padding, want_out, want_pads):
    (oh, ow), pads = resolve_padding((n, n), (k, k), (s, s), (d, d), padding)
    assert oh == ow == want_out
    assert pads[:2] == want_pads and pads[2:] == want_pads


def test_shapes_params_and_macs():
    g = small_graph()
    shapes = {s.name: s.output_shape for s in g.layer_stats()}
    assert shapes["conv"] == (5, 5, 8)
    assert shapes["pad"] == (6, 6, 8)
    assert shapes["avgpool"] == (3, 3, 8)
    assert shapes["flatten"] == (72,)
    assert g.output_shape() == (5,)
    stats = {s.name: s for s in g.layer_stats()}
    assert stats["conv"].params == 8 * 3 * 3 * 3 + 8
    assert stats["conv"].macs == 5 * 5 * 8 * 27
    assert stats["dwconv"].macs == 5 * 5 * 8 * 9
    assert stats["dense"].macs == 72 * 5
    assert stats["bn"].params == 4 * 8 and stats["bn"].macs == 0
    assert g.macs == 5 * 5 * 8 * 27 + 5 * 5 * 8 * 9 + 72 * 5
    assert stats["conv"].activation_bytes == 5 * 5 * 8 * 4
    assert g.params == sum(t.size for t in g.tensors.values() if t.is_const)


def test_summary_lists_every_layer():
    g = small_graph()
    text = g.summary()
    for n in g.nodes:
        assert n.name in text
    assert "MACs" in text.splitlines()[0]


# --------------------------------------------------------------------------- files

def test_save_and_load_round_trip(tmp_path):
    g = small_graph()
    path = g.save(tmp_path / "m.npz")
    h = Graph.load(path)
    assert [n.name for n in h.nodes] == [n.name for n in g.nodes]
    assert [n.attrs for n in h.nodes] == [n.attrs for n in g.nodes]
    x = np.random.default_rng(0).standard_normal((2, 10, 10, 3)).astype(np.float32)
    np.testing.assert_array_equal(Interpreter(h).run(x), Interpreter(g).run(x))


def test_int8_round_trip_keeps_every_bit(tmp_path):
    g = small_graph()
    x = np.random.default_rng(1).standard_normal((16, 10, 10, 3)).astype(np.float32)
    q = quantize_model(g, x)
    h = Graph.load(q.save(tmp_path / "q.npz"))
    for name, t in q.tensors.items():
        assert h.tensors[name].quant == t.quant
        if t.is_const:
            np.testing.assert_array_equal(h.tensors[name].data, t.data)
            assert h.tensors[name].data.dtype == t.data.dtype


def test_save_adds_suffix_and_is_atomic(tmp_path):
    g = small_graph()
    assert g.save(tmp_path / "model").name == "model.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]  # no temporary left behind
    assert (tmp_path / "model.npz").stat().st_mode & 0o044  # readable by others, as open() would make it
    with pytest.raises(FileFormatError, match="does not exist"):
        g.save(tmp_path / "missing" / "m.npz")


def test_load_rejects_corrupt_truncated_and_foreign_files(tmp_path):
    good = small_graph().save(tmp_path / "m.npz")
    data = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    for name in ("trunc.npz", "junk.npz", "other.npz", "absent.npz"):
        with pytest.raises(FileFormatError):
            Graph.load(tmp_path / name)


def _rewrite_meta(src, dst, change):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["__graph__"].tobytes())
    change(meta)
    arrays["__graph__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(dst, **arrays)


def test_load_rejects_other_versions_and_inconsistent_graphs(tmp_path):
    good = small_graph().save(tmp_path / "m.npz")
    _rewrite_meta(good, tmp_path / "v2.npz", lambda m: m.update(format_version=2))
    with pytest.raises(FileFormatError, match="version 2"):
        Graph.load(tmp_path / "v2.npz")
    _rewrite_meta(good, tmp_path / "bad.npz", lambda m: m["nodes"][0]["attrs"].update(strides=[0, 1]))
    with pytest.raises(FileFormatError, match="strides"):
        Graph.load(tmp_path / "bad.npz")
    _rewrite_meta(good, tmp_path / "op.npz", lambda m: m["nodes"][0].update(op="Conv3D"))
    with pytest.raises(FileFormatError, match="Conv3D"):
        Graph.load(tmp_path / "op.npz")
    assert zipfile.is_zipfile(good)


# --------------------------------------------------------------------------- rewrites

def test_fold_batchnorm_and_fuse_keep_the_function():
    g = small_graph()
    f = fuse_activations(fold_batchnorm(g))
    assert "BatchNorm" not in [n.op for n in f.nodes] and "ReLU" not in [n.op for n in f.nodes]
    assert f.node("conv").attrs["activation"] == "relu"
    assert len(g.nodes) == len(f.nodes) + 2  # the argument is left untouched
    x = np.random.default_rng(0).standard_normal((4, 10, 10, 3)).astype(np.float32)
    np.testing.assert_allclose(Interpreter(f).run(x), Interpreter(g).run(x), rtol=1e-5, atol=1e-6)


def test_fold_batchnorm_adds_a_bias_when_the_layer_has_none():
    b = GraphBuilder("nobias", seed=3)
    x = b.input((6, 6, 2))
    x = b.conv2d(x, 4, 3, use_bias=False)
    x = b.batch_norm(x, beta=np.ones(4), mean=np.full(4, 0.5), var=np.full(4, 2.0))
    g = b.build(b.depthwise_conv2d(b.batch_norm(b.depthwise_conv2d(x, 3, use_bias=False),
                                                gamma=np.full(4, 3.0)), 1))
    f = fold_batchnorm(g)
    assert [n.op for n in f.nodes] == ["Conv2D", "DepthwiseConv2D", "DepthwiseConv2D"]
    x = np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(Interpreter(f).run(x), Interpreter(g).run(x), rtol=1e-5, atol=1e-5)


def test_a_batchnorm_after_an_activation_is_left_alone():
    b = GraphBuilder("late", seed=0)
    x = b.conv2d(b.input((4, 4, 1)), 2, 1, activation="relu")
    g = b.build(b.batch_norm(x))
    assert [n.op for n in fold_batchnorm(g).nodes] == ["Conv2D", "BatchNorm"]
    with pytest.raises(QuantizationError, match="could not be folded"):
        quantize_model(g, np.ones((2, 4, 4, 1), np.float32))


# --------------------------------------------------------------------------- errors

def test_errors_are_one_family():
    for cls in (ShapeError, DTypeError, AttributeValueError, GraphError, UnknownOpError,
                FileFormatError, QuantizationError):
        assert issubclass(cls, TinyMLError)


def test_inconsistent_channels_name_the_layer():
    b = GraphBuilder("bad")
    x = b.input((8, 8, 3))
    with pytest.raises(GraphError, match="has 3 channels but the weight expects 4"):
        b.conv2d(x, 8, 3, weight=np.zeros((8, 3, 3, 4), np.float32))
    y = b.conv2d(x, 5, 1)
    with pytest.raises(GraphError, match="same shape"):
        b.add(x, y)


@pytest.mark.parametrize("kwargs,match", [
    ({"strides": 0}, "strides must be >= 1"),
    ({"strides": (1, 2, 3)}, "strides must be an int or a pair"),
    ({"padding": "full"}, "padding must be 'same', 'valid'"),
    ({"padding": (1, 1, -1, 0)}, "padding must be"),
    ({"dilation": -1}, "dilation must be >= 1"),
    ({"activation": "gelu"}, "activation must be one of"),
])
def test_invalid_attributes(kwargs, match):
    b = GraphBuilder("bad")
    x = b.input((8, 8, 3))
    with pytest.raises(AttributeValueError, match=match):
        b.conv2d(x, 4, 3, **kwargs)


def test_a_rejected_layer_leaves_nothing_behind():
    b = GraphBuilder("retry")
    x = b.input((8, 8, 3))
    with pytest.raises(GraphError):
        b.conv2d(x, 8, 3, weight=np.zeros((8, 3, 3, 4), np.float32), name="c")
    assert set(b.graph.tensors) == {"input"} and not b.graph.nodes
    b.conv2d(x, 8, 3, name="c")  # the name is free again
    assert b.conv2d(x, 2, 1) == "conv" and b.conv2d(x, 2, 1, name="conv1") == "conv1"
    assert b.conv2d(x, 2, 1) == "conv2"


def test_window_larger_than_input():
    b = GraphBuilder("bad")
    with pytest.raises(ShapeError, match="smaller than the window"):
        b.conv2d(b.input((2, 2, 1)), 4, 3, padding="valid")


def test_dense_needs_a_flat_input():
    b = GraphBuilder("bad")
    with pytest.raises(ShapeError, match="flatten first"):
        b.dense(b.input((4, 4, 1)), 3)


def test_unknown_op_lists_the_known_ones():
    g = Graph("g")
    g.add_tensor(Tensor("x", (4,)))
    with pytest.raises(UnknownOpError, match="Conv2D"):
        g.add_node(Node("n", "Gelu", ["x"], ["y"]))


def test_nodes_out_of_order_are_rejected():
    g = small_graph()
    g.nodes.reverse()
    with pytest.raises(GraphError, match="topological order"):
        g.validate()


def test_quant_params_validation():
    with pytest.raises(QuantizationError, match="positive"):
        QuantParams(0.0, 0)
    with pytest.raises(QuantizationError, match="axis"):
        QuantParams([0.1, 0.2], 0)
    with pytest.raises(QuantizationError, match="one per channel"):
        QuantParams([0.1, 0.2], [0, 0, 0], axis=0)
    q = QuantParams([0.1, 0.2], 0, axis=0)
    assert q.per_channel and q.zero_point.tolist() == [0, 0]
    assert QuantParams.from_json(q.to_json()) == q


def test_int8_graph_needs_quant_params_and_no_batchnorm():
    g = Graph("q")
    g.add_tensor(Tensor("x", (4,), "int8", QuantParams(0.1, 0)))
    g.add_tensor(Tensor("w", (2, 4), "int8", QuantParams(0.1, 0), data=np.ones((2, 4), np.int8)))
    g.add_node(Node("d", "Dense", ["x", "w"], ["y"]))
    g.inputs, g.outputs = ["x"], ["y"]
    with pytest.raises(QuantizationError, match="no quantization parameters"):
        g.validate()
    g.tensors["y"].quant = QuantParams(0.2, 3)
    g.validate()
    g.tensors["w"].quant = QuantParams(0.1, 4)
    with pytest.raises(QuantizationError, match="symmetric"):
        g.validate()


def test_interpreter_rejects_wrong_shapes_and_dtypes():
    g = small_graph()
    it = Interpreter(g)
    with pytest.raises(ShapeError, match=r"add a batch axis"):
        it.run(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ShapeError, match=r"\(N, 10, 10, 3\)"):
        it.run(np.zeros((1, 10, 10, 4), np.float32))
    with pytest.raises(DTypeError, match="floating point"):
        it.run(np.zeros((1, 10, 10, 3), np.int32))
    q = quantize_model(g, np.random.default_rng(0).standard_normal((8, 10, 10, 3)).astype(np.float32))
    with pytest.raises(DTypeError, match="int8 codes"):
        Interpreter(q).run(np.zeros((1, 10, 10, 3), np.float32))
    with pytest.raises(TinyMLError, match="backend"):
        Interpreter(g, backend="cuda")
