"""Whole-graph gradients: autodiff against finite differences, the plan, tracing, and int8 graphs."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_lab import zoo
from tinyml_lab.errors import DataError, GraphError, ShapeError
from tinyml_lab.graph import GraphBuilder
from tinyml_lab.kernels.fixedpoint import activation_range
from tinyml_lab.quant import quantize_model
from tinyml_lab.train import BackwardGraph, last_layers, parameters

EPS = 1e-6
FLOOR = 1e-4  # relative error is taken against at least this: central differences of an O(1) loss carry ~1e-10 noise


def small_graph(loss_head: str = "softmax"):
    """Conv (relu6), depthwise (explicit pads, stride 2, dilation), BatchNorm, ReLU6, pad,
    pointwise conv, average and max pooling, a residual add (relu), global pooling, dense."""
    b = GraphBuilder("small", seed=1)
    x = b.input((7, 7, 2))
    c = b.conv2d(x, 4, 3, padding="same", activation="relu6", name="conv")
    d = b.depthwise_conv2d(c, 2, strides=2, padding=(1, 0, 1, 1), dilation=2, name="dw")
    d = b.batch_norm(d, name="bn")
    d = b.relu6(d, name="r6")
    d = b.pad(d, (1, 0, 1, 0), name="pad")
    e = b.conv2d(d, 4, (2, 3), name="pw")
    p = b.avg_pool2d(c, 3, strides=2, padding="valid", name="ap")
    p = b.max_pool2d(p, 2, strides=1, padding="same", name="mp")
    s = b.add(e, p, activation="relu", name="add")
    g = b.global_avg_pool(s, name="gap")
    o = b.dense(g, 3, name="fc")
    if loss_head == "softmax":
        return b.build(b.softmax(o, beta=1.5, name="sm"))
    return b.build(o)


def float64_weights(g):
    return {n: t.data.astype(np.float64) for n, t in g.tensors.items() if t.is_const}


def check_graph_gradients(bg, x, y, rng, training=True):
    w = float64_weights(bg.graph)
    grads = bg.backward(bg.forward(x, training, w), y)

    def loss(weights, inputs):
        return bg.loss(bg.forward(inputs, training, weights), y)[0]

    for name in bg.trainable:
        v = rng.standard_normal(w[name].shape)
        fd = (loss({**w, name: w[name] + EPS * v}, x) - loss({**w, name: w[name] - EPS * v}, x)) / (2 * EPS)
        an = float((grads.params[name] * v).sum())
        assert abs(fd - an) <= 1e-5 * max(abs(fd), abs(an), FLOOR), f"{name}: fd {fd}, autodiff {an}"
    if bg.input_grad:
        v = rng.standard_normal(x.shape)
        fd = (loss(w, x + EPS * v) - loss(w, x - EPS * v)) / (2 * EPS)
        an = float((grads.input * v).sum())
        assert abs(fd - an) <= 1e-5 * max(abs(fd), abs(an), FLOOR)
    return grads


@pytest.mark.parametrize("training", [True, False])
def test_whole_graph_cross_entropy_gradients_match_finite_differences(training):
    g = small_graph()
    rng = np.random.default_rng(0)
    # statistics away from the identity, so no BatchNorm output sits exactly on ReLU6's kink at 0
    g.tensor("bn/var").data = rng.uniform(0.5, 2.0, 4).astype(np.float32)
    g.tensor("bn/mean").data = rng.uniform(-0.5, 0.5, 4).astype(np.float32)
    g.tensor("bn/beta").data = rng.uniform(0.5, 1.0, 4).astype(np.float32)
    x = rng.standard_normal((3, 7, 7, 2))
    bg = BackwardGraph(g, backend="reference", input_grad=True)
    assert bg.loss_tensor == "fc" and bg.beta == 1.5
    check_graph_gradients(bg, x, np.array([0, 2, 1]), rng, training)


def test_whole_graph_mse_gradients_match_finite_differences():
    g = small_graph("linear")
    rng = np.random.default_rng(1)
    bg = BackwardGraph(g, loss="mse", backend="reference", input_grad=True)
    check_graph_gradients(bg, rng.standard_normal((2, 7, 7, 2)), rng.standard_normal((2, 3)), rng)


def test_label_smoothing_changes_the_target():
    g = small_graph()
    x = np.random.default_rng(2).standard_normal((4, 7, 7, 2))
    y = np.array([0, 1, 2, 0])
    plain = BackwardGraph(g, backend="reference").value_and_grad(x, y)
    smooth = BackwardGraph(g, backend="reference", label_smoothing=0.2).value_and_grad(x, y)
    assert plain.loss != smooth.loss
    check_graph_gradients(BackwardGraph(g, backend="reference", label_smoothing=0.2), x, y,
                          np.random.default_rng(3))


def test_numba_backend_matches_reference_on_digits_cnn():
    g = zoo.get("digits-cnn", weights="random", seed=3)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (5, 16, 16, 1)).astype(np.float32)
    y = np.array([0, 3, 9, 2, 2])
    fast = BackwardGraph(g, input_grad=True).value_and_grad(x, y)
    spec = BackwardGraph(g, backend="reference", input_grad=True).value_and_grad(x, y)
    assert fast.loss == pytest.approx(spec.loss, rel=1e-5)
    for name, want in spec.params.items():
        got = fast.params[name]
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4 * max(1.0, float(np.abs(want).max())))
    np.testing.assert_allclose(fast.input, spec.input, rtol=2e-3, atol=1e-6)


def test_plan_skips_what_no_trainable_tensor_needs():
    g = zoo.get("digits-cnn", weights="random")
    head = BackwardGraph(g, trainable={"fc/weight", "fc/bias"})
    assert [s.node for s in head.steps] == ["fc"]
    assert head.steps[0].input_grads == ()  # nothing trainable below fc: no dL/dx
    assert set(head.value_and_grad(np.zeros((2, 16, 16, 1), np.float32), [1, 2]).params) == {"fc/weight", "fc/bias"}

    mid = BackwardGraph(g, trainable=["pw1/weight"])
    nodes = [s.node for s in mid.steps]
    assert nodes[0] == "fc" and nodes[-1] == "pw1" and "conv1" not in nodes
    assert mid.steps[-1].input_grads == () and mid.steps[-1].param_grads == ("pw1/weight",)

    text = str(BackwardGraph(g))
    assert "backward plan" in text and "SoftmaxCrossEntropy" in text and "conv1/weight" in text


def test_trace_follows_one_gradient_from_the_loss_to_a_weight():
    g = zoo.get("digits-cnn", weights="random")
    bg = BackwardGraph(g)
    x = np.random.default_rng(0).uniform(0, 1, (4, 16, 16, 1)).astype(np.float32)
    grads = bg.value_and_grad(x, [0, 1, 2, 3], keep=True)
    text = bg.trace("conv1/weight", grads)
    lines = text.splitlines()
    assert "loss" in lines[3] and lines[-1].startswith("conv1") and "dL/dconv1/weight" in lines[-1]
    order = [ln.split()[0] for ln in lines[3:]]
    assert order == ["loss", "fc", "gap", "relu_pw1", "bn_pw1", "pw1", "relu_dw1", "bn_dw1", "dw1",
                     "relu_conv2", "bn_conv2", "conv2", "relu_conv1", "bn_conv1", "conv1"]
    norm = float(lines[-1].split()[-1])
    assert norm == pytest.approx(float(np.linalg.norm(grads.params["conv1/weight"])), rel=1e-3)
    with pytest.raises(GraphError):
        bg.trace("nope")
    assert bg.describe()[0]["node"] == "loss"


def test_trainable_names_are_checked():
    g = zoo.get("digits-cnn", weights="random")
    with pytest.raises(GraphError, match="did you mean 'conv1/weight'"):
        BackwardGraph(g, trainable={"conv1/weigth"})
    with pytest.raises(GraphError, match="running statistics"):
        BackwardGraph(g, trainable={"bn_conv1/mean"})
    with pytest.raises(Exception, match="collection"):
        BackwardGraph(g, trainable="fc/weight")
    assert last_layers(g, 1) == ("fc/weight", "fc/bias")
    assert last_layers(g, 2)[:2] == ("pw1/weight", "pw1/bias") and "bn_pw1/gamma" in last_layers(g, 2)
    assert parameters(g)["dw1/weight"].channel_axis == 3


def test_bad_batches_are_rejected():
    bg = BackwardGraph(zoo.get("digits-cnn", weights="random"))
    x = np.zeros((2, 16, 16, 1), np.float32)
    with pytest.raises(ShapeError, match=r"\(N, 16, 16, 1\)"):
        bg.forward(np.zeros((2, 8, 8, 1), np.float32))
    tape = bg.forward(x)
    with pytest.raises(DataError, match=r"\[0, 10\)"):
        bg.backward(tape, [0, 10])
    with pytest.raises(DataError, match="one target per input"):
        bg.backward(tape, [0, 1, 2])
    with pytest.raises(DataError, match="integers"):
        bg.backward(tape, [0.5, 1.0])


# --------------------------------------------------------------------------- int8 graphs

def int8_model():
    g = zoo.get("digits-cnn", weights="random", seed=2)
    x = np.random.default_rng(0).uniform(0, 1, (32, 16, 16, 1)).astype(np.float32)
    return quantize_model(g, x), x


def test_int8_gradients_are_with_respect_to_the_stored_integers():
    q, x = int8_model()
    y = np.arange(8) % 10
    bg = BackwardGraph(q)
    tape = bg.forward(x[:8])
    assert tape.codes is not None and tape.codes[q.inputs[0]].dtype == np.int8
    grads = bg.backward(tape, y)
    # the classifier by hand: dL/dz from the dequantized logits, G_W = dz^T x, G_Wbar = s_W G_W
    z = tape.values["fc"].astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - np.eye(10)[y]) / len(y)
    xin = tape.values["gap"].astype(np.float64)
    s_w = float(q.tensor("fc/weight").quant.scale[0])
    s_x = float(q.tensor("gap").quant.scale[0])
    np.testing.assert_allclose(grads.params["fc/weight"], s_w * dz.T @ xin, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(grads.params["fc/bias"], s_x * s_w * dz.sum(0), rtol=1e-4, atol=1e-12)
    assert set(grads.params) == {n for n, t in q.tensors.items() if t.is_const}


def test_int8_relu_gate_reads_the_int8_codes():
    q, x = int8_model()
    bg = BackwardGraph(q, trainable=["conv1/weight"], input_grad=True)
    tape = bg.forward(x[:4])
    node = q.node("conv1")
    out = q.tensor(node.outputs[0])
    lo, hi = activation_range("relu", float(out.quant.scale[0]), int(out.quant.zero_point[0]))
    codes = tape.codes[node.outputs[0]]
    assert (codes == lo).any()
    from tinyml_lab.train.rules import StepContext, gate

    ctx = StepContext(node, [tape.values[node.inputs[0]]], tape.values[node.outputs[0]], {}, {}, {},
                      [True], set(), codes, (lo, hi))
    g = gate(bg.k, ctx, np.ones(codes.shape, np.float32))
    np.testing.assert_array_equal(g == 0, (codes <= lo) | (codes >= hi))


def test_int8_and_float_gradients_agree_in_direction():
    """The int8 backward divided by the scales is close to the float backward of the same model."""
    g = zoo.get("digits-cnn", seed=0)  # trained weights: activations well inside their ranges
    from tinyml_lab.data import load_digits
    from tinyml_lab.passes import fold_batchnorm, fuse_activations
    from tinyml_lab.train.autodiff import broadcast_scale

    d = load_digits(16)
    f = fuse_activations(fold_batchnorm(g))
    q = quantize_model(f, d.x_train[:128])
    x, y = d.x_train[:64], d.y_train[:64]
    gf = BackwardGraph(f).value_and_grad(x, y, training=False).params
    gq = BackwardGraph(q).value_and_grad(x, y).params
    for name in ("fc/weight", "pw1/weight", "conv1/weight"):
        a = gf[name].ravel()
        b = (gq[name] / broadcast_scale(q.tensor(name))).ravel()
        cos = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        assert cos > 0.9, f"{name}: cosine {cos:.3f}"
