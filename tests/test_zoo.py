"""The model zoo: architectures, MAC counts, seeding, weights and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinyml_lab import zoo
from tinyml_lab.errors import AttributeValueError, GraphError, ShapeError, UnknownModelError
from tinyml_lab.zoo.mobilenetv2 import channel_plan, make_divisible


@pytest.fixture(scope="module")
def models():
    return {name: zoo.get(name) for name in zoo.names()}


def same_out(n: int, s: int) -> int:
    """TensorFlow 'same' padding output size."""
    return math.ceil(n / s)


def const_arrays(g):
    return {n: t.data for n, t in g.tensors.items() if t.is_const}


# --------------------------------------------------------------------------- registry

def test_names_and_describe():
    assert zoo.names() == ["kws-dscnn", "vww-mobilenetv1", "ic-resnet8", "ad-autoencoder",
                           "mobilenetv2", "digits-cnn"]
    rows = zoo.describe()
    assert [r["name"] for r in rows] == zoo.names()
    for r in rows:
        assert set(r) >= {"name", "task", "input_shape", "classes", "description", "source"}
        assert r["description"] and r["source"]
    assert all("Banbury" in r["source"] for r in rows[:4])


@pytest.mark.parametrize("name, in_shape, out_shape", [
    ("kws-dscnn", (49, 10, 1), (12,)),
    ("vww-mobilenetv1", (96, 96, 3), (2,)),
    ("ic-resnet8", (32, 32, 3), (10,)),
    ("ad-autoencoder", (640,), (640,)),
    ("mobilenetv2", (128, 128, 3), (1000,)),
    ("digits-cnn", (16, 16, 1), (10,)),
])
def test_every_model_builds_and_validates(models, name, in_shape, out_shape):
    g = models[name]
    g.validate()
    assert g.input_shape() == in_shape
    assert g.output_shape() == out_shape
    described = {r["name"]: r for r in zoo.describe()}[name]
    assert tuple(described["input_shape"]) == in_shape
    assert g.metadata["zoo"]["model"] == name
    assert all(t.dtype == "float32" for t in g.tensors.values())


def test_batchnorm_after_every_conv_with_keras_epsilon(models):
    for name, g in models.items():
        for node in g.nodes:
            if node.op == "BatchNorm":
                assert node.attrs["epsilon"] == pytest.approx(1e-3)
            if node.op in ("Conv2D", "DepthwiseConv2D") and not node.name.endswith("shortcut"):
                (nxt,) = g.consumers(node.outputs[0])
                assert nxt.op == "BatchNorm", (name, node.name)
                assert nxt.name == f"bn_{node.name}"


# --------------------------------------------------------------------------- MLPerf Tiny MACs

def test_kws_dscnn_macs_by_hand(models):
    g = models["kws-dscnn"]
    h, w = same_out(49, 2), same_out(10, 2)  # 25 x 5
    conv1 = h * w * 64 * (10 * 4 * 1)
    dw = h * w * 64 * 9
    pw = h * w * 64 * 64
    fc = 64 * 12
    assert (h, w) == (25, 5)
    assert conv1 + 4 * (dw + pw) + fc == 2_656_768
    assert g.macs == 2_656_768
    assert g.tensor("avgpool").shape == (1, 1, 64)
    pool = g.node("avgpool").attrs
    assert pool["pool_size"] == (24, 5) and pool["strides"] == (24, 5) and pool["padding"] == "valid"
    assert g.tensor("conv1/weight").shape == (64, 10, 4, 1)
    assert "conv1/bias" in g.tensors and "dw1/bias" in g.tensors  # Keras default use_bias


def test_vww_mobilenetv1_macs_by_hand(models):
    g = models["vww-mobilenetv1"]
    size, c = same_out(96, 2), 8
    total = size * size * 8 * 27  # conv1 3x3x3
    for stride, filters in [(1, 16), (2, 32), (1, 32), (2, 64), (1, 64), (2, 128)] + [(1, 128)] * 5 \
            + [(2, 256), (1, 256)]:
        size = same_out(size, stride)
        total += size * size * c * 9  # depthwise 3x3
        total += size * size * filters * c  # pointwise
        c = filters
    total += 256 * 2  # dense
    assert size == 3
    assert g.macs == total == 7_489_664
    assert abs(g.macs - 7.49e6) / 7.49e6 < 0.03  # MLPerf Tiny: 7.49 M MACs
    assert not any(n.op == "ReLU6" for n in g.nodes)  # the reference uses ReLU
    assert g.tensor("avgpool").shape == (1, 1, 256)


def test_ic_resnet8_macs_by_hand(models):
    g = models["ic-resnet8"]
    stem = 32 * 32 * 16 * 27
    stack1 = 2 * (32 * 32 * 16 * 9 * 16)
    stack2 = 16 * 16 * 32 * 9 * 16 + 16 * 16 * 32 * 9 * 32 + 16 * 16 * 32 * 16
    stack3 = 8 * 8 * 64 * 9 * 32 + 8 * 8 * 64 * 9 * 64 + 8 * 8 * 64 * 32
    fc = 64 * 10
    assert g.macs == stem + stack1 + stack2 + stack3 + fc == 12_501_632
    assert abs(g.macs - 12.5e6) / 12.5e6 < 0.03  # MLPerf Tiny: 12.5 M MACs
    assert [n.name for n in g.nodes if n.op == "Add"] == ["s1_add", "s2_add", "s3_add"]
    # the shortcut convolutions have no BatchNorm, and read the stack input
    assert g.consumers("s2_shortcut")[0].op == "Add"
    assert g.node("s2_shortcut").inputs[0] == "relu_s1"
    assert g.tensor("s3_shortcut").shape == (8, 8, 64)
    assert g.node("avgpool").attrs["pool_size"] == (8, 8)


def test_ad_autoencoder_macs_by_hand(models):
    g = models["ad-autoencoder"]
    enc = 640 * 128 + 3 * 128 * 128 + 128 * 8
    dec = 8 * 128 + 3 * 128 * 128 + 128 * 640
    assert g.macs == enc + dec == 264_192
    dense = [n for n in g.nodes if n.op == "Dense"]
    assert [g.tensor(n.outputs[0]).shape[0] for n in dense] == [128] * 4 + [8] + [128] * 4 + [640]
    assert g.nodes[-1].op == "Dense" and g.nodes[-1].attrs["activation"] == "none"


# --------------------------------------------------------------------------- MobileNetV2

def test_make_divisible_matches_keras_rule():
    assert make_divisible(32 * 0.35) == 16
    assert make_divisible(5) == 8
    assert make_divisible(22) == 24
    assert make_divisible(33) == 32
    assert make_divisible(11) == 16  # 8 would be more than 10% below 11
    assert make_divisible(32) == 32


def test_mobilenetv2_channels_at_035(models):
    g = models["mobilenetv2"]
    plan = channel_plan(0.35)
    assert plan["stem"] == 16 and plan["last"] == 1280
    outs = [c for _, _, c, _ in plan["blocks"]]
    assert outs == [8, 8, 8, 16, 16, 16, 24, 24, 24, 24, 32, 32, 32, 56, 56, 56, 112]
    strides = [s for *_, s in plan["blocks"]]
    assert strides == [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
    # the graph's projection weights carry those channel counts, expansion is 6x the input
    assert [g.tensor(f"block{i}_project/weight").shape[0] for i in range(17)] == outs
    assert "block0_expand" not in g.tensors
    assert g.tensor("block1_expand/weight").shape == (6 * 8, 1, 1, 8)
    assert g.tensor("conv1/weight").shape == (16, 3, 3, 3)
    assert g.tensor("conv_last/weight").shape == (1280, 1, 1, 112)
    assert g.tensor("relu6_conv_last").shape == (4, 4, 1280)
    assert len([n for n in g.nodes if n.op == "Add"]) == 10
    # no conv biases, linear projections
    convs = [n for n in g.nodes if n.op in ("Conv2D", "DepthwiseConv2D")]
    assert all(len(n.inputs) == 2 for n in convs)
    for i in range(17):
        assert g.consumers(f"bn_block{i}_project")[0].op != "ReLU6"


def test_mobilenetv2_macs_match_published_table(models):
    # TF-Slim MobileNetV2 table: 0.35 @ 128 is 20 M MACs, 1.0 @ 224 is 300 M MACs
    assert abs(models["mobilenetv2"].macs - 20e6) / 20e6 < 0.03
    big = zoo.get("mobilenetv2", width=1.0, resolution=224)
    assert abs(big.macs - 300e6) / 300e6 < 0.03
    wide = channel_plan(1.4)
    assert wide["last"] == make_divisible(1280 * 1.4) == 1792


def test_mobilenetv2_options():
    g = zoo.get("mobilenetv2", width=0.5, resolution=96, num_classes=5)
    assert g.input_shape() == (96, 96, 3) and g.output_shape() == (5,)
    assert g.metadata["zoo"]["options"] == {"width": 0.5, "resolution": 96, "num_classes": 5}


@pytest.mark.parametrize("kwargs", [
    {"width": 0}, {"width": -1.0}, {"width": "wide"},
    {"resolution": 100}, {"resolution": 16}, {"resolution": 128.0},
    {"num_classes": 1}, {"num_classes": 2.5},
])
def test_mobilenetv2_bad_options(kwargs):
    with pytest.raises(AttributeValueError):
        zoo.get("mobilenetv2", **kwargs)


# --------------------------------------------------------------------------- digits CNN

def test_digits_cnn_sizes():
    g16 = zoo.get("digits-cnn")
    assert g16.macs < 150_000
    h = 16 * 16 * 8 * 9 + 8 * 8 * 16 * 72 + 4 * 4 * 16 * 9 + 4 * 4 * 32 * 16 + 32 * 10
    assert g16.macs == h
    g32 = zoo.get("digits-cnn", size=32, num_classes=5)
    assert g32.input_shape() == (32, 32, 1) and g32.output_shape() == (5,)
    with pytest.raises(AttributeValueError, match="size"):
        zoo.get("digits-cnn", size=20)
    with pytest.raises(AttributeValueError, match="num_classes"):
        zoo.get("digits-cnn", num_classes=1)


# --------------------------------------------------------------------------- seeds, weights

@pytest.mark.parametrize("name", ["kws-dscnn", "ad-autoencoder", "digits-cnn"])
def test_seed_determines_weights(name):
    a, b, c = (zoo.get(name, seed=s, weights="random") for s in (3, 3, 4))
    wa, wb, wc = const_arrays(a), const_arrays(b), const_arrays(c)
    assert wa.keys() == wb.keys() == wc.keys()
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    assert not np.array_equal(wa["fc/weight" if "fc/weight" in wa else "output/weight"],
                              wc["fc/weight" if "fc/weight" in wc else "output/weight"])


def test_weights_are_he_normal():
    g = zoo.get("ic-resnet8", seed=0)
    w = g.tensor("s3_conv2/weight").data  # fan-in 3*3*64
    assert w.std() == pytest.approx(math.sqrt(2 / 576), rel=0.05)
    assert abs(w.mean()) < 0.01


def test_weights_from_saved_graph_and_mapping(tmp_path):
    trained = zoo.get("kws-dscnn", seed=7)
    path = trained.save(tmp_path / "kws.npz")
    g = zoo.get("kws-dscnn", seed=0, weights=path)
    want = const_arrays(trained)
    assert all(np.array_equal(t.data, want[n]) for n, t in g.tensors.items() if t.is_const)
    assert g.metadata["zoo"]["weights"] == str(path)

    np.savez(tmp_path / "fc.npz", **{"fc/bias": np.arange(12, dtype=np.float32)})
    g = zoo.get("kws-dscnn", weights=tmp_path / "fc.npz")
    assert np.array_equal(g.tensor("fc/bias").data, np.arange(12))
    assert np.array_equal(g.tensor("conv1/weight").data, zoo.get("kws-dscnn").tensor("conv1/weight").data)

    with pytest.raises(ShapeError):
        zoo.get("kws-dscnn", weights={"fc/bias": np.zeros(10)})
    with pytest.raises(GraphError, match="does not have"):
        zoo.get("kws-dscnn", weights={"nope/weight": np.zeros(10)})
    with pytest.raises(Exception, match="no such weights file"):
        zoo.get("kws-dscnn", weights=tmp_path / "missing.npz")


# --------------------------------------------------------------------------- errors

def test_unknown_model_suggests_closest():
    with pytest.raises(UnknownModelError) as info:
        zoo.get("kws-dcnn")
    msg = str(info.value)
    assert "did you mean 'kws-dscnn'" in msg
    assert all(n in msg for n in zoo.names())
    with pytest.raises(KeyError):  # UnknownModelError is also a KeyError
        zoo.get("resnet50")


def test_name_is_forgiving_about_case_and_underscores():
    assert zoo.get("KWS_DSCNN").name == "kws-dscnn"


def test_unknown_options_name_the_accepted_ones():
    with pytest.raises(AttributeValueError, match="width, resolution, num_classes"):
        zoo.get("mobilenetv2", widht=0.5)
    with pytest.raises(AttributeValueError, match="takes no options"):
        zoo.get("kws-dscnn", num_classes=10)
    with pytest.raises(AttributeValueError, match="seed"):
        zoo.get("kws-dscnn", seed="0")
