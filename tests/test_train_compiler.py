"""The compiled training step: same update as the plain step, pruning, slicing, reordering, printing."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_lab import zoo
from tinyml_lab.errors import GraphError
from tinyml_lab.train.compiler import compile_step, fit_compiled, plain_step
from tinyml_lab.train.optim import SGD, Adam
from tinyml_lab.train.sparse import SparseScheme
from tinyml_lab.train.transfer import device_models, load_backbone, transfer_task

SCHEMES = ["full", "bias", "last-k:2", "sparse:bias=2,pw1=1/2,dw1=1/4", "sparse:bias=0,conv2=1/8,conv1=1/2"]


@pytest.fixture(scope="module")
def task():
    return transfer_task("new-classes")


@pytest.fixture(scope="module")
def device(task):
    return device_models(load_backbone(), task, seed=0)


def consts(g):
    return {n: t.data for n, t in g.tensors.items() if t.is_const}


def two_steps(g0, text, optimizer, reorder, x, y, compiled):
    g = g0.copy()
    opt = optimizer()
    for xb, yb in ((x, y), (x[::-1].copy(), y[::-1].copy())):
        if compiled:
            compile_step(g, SparseScheme.parse(text, g), opt, reorder).run(xb, yb)
        else:
            plain_step(g, xb, yb, SparseScheme.parse(text, g), opt)
    return g


@pytest.mark.parametrize("int8", [False, True], ids=["float", "int8+qas"])
@pytest.mark.parametrize("text", SCHEMES)
def test_compiled_step_updates_exactly_like_the_plain_step(device, task, int8, text):
    g0 = device[1] if int8 else device[0]
    x, y = task.x_train[:24], task.y_train[:24]
    for make in (lambda: SGD(lr=0.1, qas=int8), lambda: Adam(lr=1.0 if int8 else 0.01, qas=int8)):
        want = consts(two_steps(g0, text, make, True, x, y, compiled=False))
        for reorder in (True, False):
            got = consts(two_steps(g0, text, make, reorder, x, y, compiled=True))
            for n in want:
                np.testing.assert_array_equal(got[n], want[n], err_msg=f"{text} {n} reorder={reorder}")
    trained = SparseScheme.parse(text, g0).resolve(g0)
    changed = [n for n in want if not np.array_equal(want[n], g0.tensors[n].data)]
    assert changed and set(changed) <= set(trained.trainable)


def test_pruning_keeps_only_what_the_backward_reads(device):
    f = device[0]
    step = compile_step(f, SparseScheme.parse("last-k:1", f))
    kinds = {b.kind for b in step.buffers.values()}
    assert "mask" not in kinds and "saved" not in kinds  # the classifier alone needs only its input
    assert [op.kind for op in step.ops if op.kind != "forward"] == [
        "loss", "grad_weight", "update", "update"]  # no dx at all below the classifier
    bias = compile_step(f, SparseScheme.parse("bias", f))
    assert all(op.kind != "grad_weight" or op.node == "fc" for op in bias.ops)
    assert {b.name for b in bias.buffers.values() if b.kind == "mask"} == {
        "mask(relu_conv1)", "mask(relu_conv2)", "mask(relu_dw1)", "mask(relu_pw1)"}  # 1-bit masks, not activations
    sliced = compile_step(f, SparseScheme.parse("sparse:dw1=1/4", f))
    assert "relu_conv2[4/16 ch]" in sliced.buffers  # a depthwise layer keeps only its trained input channels
    assert sliced.buffers["d(dw1/weight)[4/16 ch]"].elements == 9 * 4


def test_reordering_frees_each_gradient_at_once(device):
    q = device[1]
    s = SparseScheme.parse("full", q)
    early, late = compile_step(q, s, reorder=True), compile_step(q, s, reorder=False)
    for st in (early, late):
        kinds = [op.kind for op in st.ops]
        assert kinds.count("update") == 10
    assert late.ops[-1].kind == "update" and all(op.kind == "update" for op in late.ops[-10:])
    for i, op in enumerate(early.ops):  # the update follows its gradient op
        if op.kind == "update":
            assert early.ops[i - 1].kind in ("grad_weight", "grad_bias", "update")
    lt_e, lt_l = early.lifetimes(), late.lifetimes()
    assert lt_e["d(conv1/weight)"].last - lt_e["d(conv1/weight)"].first == 1
    assert lt_l["d(fc/weight)"].last == len(late.ops) - 1 - 9
    assert lt_e.lower_bound() < lt_l.lower_bound()


def test_the_step_prints_ops_with_their_buffers(device):
    q = device[1]
    text = str(compile_step(q, SparseScheme.parse("sparse:bias=2,pw1=1/2", q)))
    lines = text.splitlines()
    assert "compiled training step of int8 graph" in lines[0] and "updates reordered" in lines[0]
    assert lines[1].split() == ["#", "op", "node", "reads", "writes", "what"]
    assert "d(pw1/weight)[16/32 ch]" in text and "mask(relu_pw1)" in text
    # relu_dw1 is kept whole for pw1's dW, so dw1's gate reads it instead of a mask of its own
    assert "mask(relu_dw1)" not in text and "QAS" in text


def test_fit_compiled_trains_and_rejects_batchnorm(device, task):
    q = device[1].copy()
    h = fit_compiled(q, task.x_train, task.y_train, SparseScheme.parse("sparse:bias=4,pw1=1", q), epochs=2,
                     optimizer=SGD(lr=0.1, qas=True), quiet=True, validation_data=(task.x_test, task.y_test))
    assert len(h) == 2 and h.last["val_accuracy"] > 0.5 and "update_zero_fraction" in h.last
    with pytest.raises(GraphError, match="fold it first"):
        compile_step(zoo.get("digits-cnn"))


@pytest.mark.parametrize("n", [1, 7, 8, 13, 64, 1001])
def test_packed_masks_gate_like_the_activation_they_replace(n):
    from tinyml_lab.kernels import backward as kb

    rng = np.random.default_rng(n)
    y = (rng.standard_normal(n) * 4).astype(np.float32)
    dy = rng.standard_normal(n).astype(np.float32)
    for lo, hi in ((0.0, np.inf), (0.0, 6.0)):
        bits = kb.pack_mask(y, lo, hi)
        assert bits.size == (n + 7) // 8
        np.testing.assert_array_equal(bits, np.packbits((y > lo) & (y < hi), bitorder="little"))
        np.testing.assert_array_equal(kb.gate_packed(dy, bits), kb.clamp_backward(y, dy, lo, hi))


def test_bias_gradient_alone_matches_the_weight_kernels_sum():
    from tinyml_lab.kernels import backward as kb

    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 9, 9, 6)).astype(np.float32)
    dy = rng.standard_normal((3, 5, 5, 12)).astype(np.float32)
    np.testing.assert_array_equal(kb.conv2d_grad_weight(x, dy, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1)[1], kb.bias_grad(dy))
    xd = rng.standard_normal((3, 9, 9, 12)).astype(np.float32)
    np.testing.assert_array_equal(kb.depthwise_conv2d_grad_weight(xd, dy, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1)[1],
                                  kb.bias_grad(dy))
