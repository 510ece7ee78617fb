"""Structured channel pruning: the graph really shrinks, the function is kept where it must be,
and fine-tuning wins the accuracy back.

Observed on the trained digits CNN (float 0.9711, 102,976 MACs, 2,570 parameters): removing half
the channels of conv1, conv2 and pw1 (and with conv2's, those of dw1) leaves 31,008 MACs (30%) and
874 parameters; accuracy is 0.10 at once, 0.96 after 20 epochs of fine-tuning (batch 16, SGD 0.05
with cosine decay; 0.956-0.967 over seeds 0-3). The same half-width network trained from scratch
for 30 epochs reaches 0.92-0.95.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_lab import GraphBuilder, zoo
from tinyml_lab.compress import ChannelPruner, channel_group, fine_tune
from tinyml_lab.errors import AttributeValueError, GraphError
from tinyml_lab.interpreter import Interpreter
from tinyml_lab.quant.tasks import task_for


@pytest.fixture(scope="module")
def digits():
    g = zoo.get("digits-cnn")
    return g, task_for(g)


def test_half_the_channels_really_shrinks_the_graph(digits):
    g, _ = digits
    pruner = ChannelPruner(0.5).fit(g)
    small = pruner.transform(g)
    assert set(pruner.keep_) == {"conv1", "conv2", "pw1"} and "fc" in pruner.skipped_
    shapes = {n.name: small.weights(n)["weight"].shape for n in small.nodes if n.op in ("Conv2D", "DepthwiseConv2D",
                                                                                       "Dense")}
    assert shapes == {"conv1": (4, 3, 3, 1), "conv2": (8, 3, 3, 4), "dw1": (1, 3, 3, 8), "pw1": (16, 1, 1, 8),
                      "fc": (10, 16)}
    assert small.tensors["bn_dw1/gamma"].shape == (8,) and small.tensors["relu_pw1"].shape == (4, 4, 16)
    # MACs: each conv loses half its outputs and (after the first) half its inputs
    assert small.macs == 18432 // 2 + 73728 // 4 + 2304 // 2 + 8192 // 4 + 320 // 2 == 31008
    assert g.macs == 102976 and small.params < g.params / 2
    assert len(small.nodes) == len(g.nodes)
    small.validate()


def test_pruning_channels_that_are_already_zero_keeps_the_function():
    """Zero channels have the lowest norm; removing them must not change any output, through a
    depthwise chain, pooling, Flatten into Dense and GlobalAvgPool into Dense."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("zeros", seed=0)
    x = b.input((8, 8, 3))
    w1 = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    w1[[1, 4, 5]] = 0
    y = b.conv2d(x, 6, 3, padding="same", activation="relu", weight=w1, bias=np.where(
        np.isin(np.arange(6), [1, 4, 5]), 0, 0.1).astype(np.float32), name="c1")
    y = b.depthwise_conv2d(y, 3, padding="same", activation="relu", name="dw")
    y = b.max_pool2d(y, 2)
    w2 = rng.standard_normal((4, 1, 1, 6)).astype(np.float32)
    w2[[0, 3]] = 0
    y = b.conv2d(y, 4, 1, activation="relu", weight=w2, name="c2")
    a = b.dense(b.flatten(y), 5, name="head_a")
    g = b.build(b.softmax(a))
    pruned = ChannelPruner(0.5).fit(g)
    assert list(pruned.keep_["c1"]) == [0, 2, 3] and list(pruned.keep_["c2"]) == [1, 2]
    small = pruned.transform(g)
    xs = rng.standard_normal((3, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(Interpreter(small).run(xs), Interpreter(g).run(xs), rtol=1e-5, atol=1e-6)
    assert small.weights(small.node("head_a"))["weight"].shape == (5, 4 * 4 * 2)

    b = GraphBuilder("gap", seed=1)
    x = b.input((6, 6, 2))
    w = rng.standard_normal((5, 3, 3, 2)).astype(np.float32)
    w[2] = 0
    y = b.global_avg_pool(b.conv2d(x, 5, 3, activation="relu", weight=w, name="c"))
    y = b.dense(b.dense(y, 7, activation="relu", name="hidden"), 3, name="out")
    g = b.build(y)
    small = ChannelPruner(0.2, layers=["c"]).fit_transform(g)
    xs = rng.standard_normal((2, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(Interpreter(small).run(xs), Interpreter(g).run(xs), rtol=1e-5, atol=1e-6)
    assert small.weights(small.node("hidden"))["weight"].shape == (7, 4)


def test_fine_tuned_half_width_model_keeps_accuracy_within_two_points(digits):
    g, task = digits
    small = ChannelPruner(0.5).fit_transform(g)
    assert task.score(small) < 0.5
    history = fine_tune(small, task.x_train, task.y_train, epochs=20, batch_size=16, seed=0)
    assert task.score(small) >= task.score(g) - 0.02
    assert len(history) == 20


def test_residual_and_output_layers_are_left_alone():
    g = zoo.get("ic-resnet8", weights="random")
    pruner = ChannelPruner(0.5, norm="l2").fit(g)
    assert pruner.skipped_ and all("Add" in why or "Softmax" in why for why in pruner.skipped_.values())
    small = pruner.transform(g)
    assert small.macs < g.macs
    residual = [name for name, why in pruner.skipped_.items() if "Add" in why]
    assert residual
    with pytest.raises(GraphError, match="Add"):
        channel_group(g, residual[0])


def test_bad_settings_are_refused(digits):
    g, _ = digits
    with pytest.raises(AttributeValueError, match=r"\[0, 1\)"):
        ChannelPruner(1.0)
    with pytest.raises(AttributeValueError):
        ChannelPruner(0.5, norm="l0")
    with pytest.raises(GraphError, match="not a Conv2D or Dense"):
        ChannelPruner(0.5, layers=["dw1"]).fit(g)
    with pytest.raises(GraphError, match="Softmax"):
        ChannelPruner(0.5, layers=["fc"]).fit(g)
