"""Training memory in the paper's convention: sizes, the ladder, the 256 KB scheme, and the CLI verbs."""

from __future__ import annotations

import json

import pytest

from tinyml_lab import zoo
from tinyml_lab.cli import main
from tinyml_lab.passes import fold_batchnorm, fuse_activations
from tinyml_lab.train.compiler import compile_step
from tinyml_lab.train.memory import FLOAT32, PAPER, memory_ladder, step_lifetimes, training_memory
from tinyml_lab.train.optim import SGD
from tinyml_lab.train.sparse import SparseScheme


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def digits():
    return fuse_activations(fold_batchnorm(zoo.get("digits-cnn")))


def test_buffer_sizes_follow_the_convention(digits):
    step = compile_step(digits, SparseScheme.parse("sparse:bias=1,pw1=1/2", digits))
    lt = step_lifetimes(step, PAPER)
    assert lt["relu_conv1"].size == 16 * 16 * 8          # int8 activation
    assert lt["mask(relu_pw1)"].size == 4 * 4 * 32 // 8  # 1 bit per element
    assert lt["pw1/weight"].size == 32 * 16 and lt["pw1/bias"].size == 32 * 4  # int8 weight, int32 bias in SRAM
    assert lt["d(pw1/weight)[16/32 ch]"].size == 16 * 16 * 4  # float32 gradient of the trained channels
    assert "conv1/weight" not in {b.name for b in lt}      # frozen weights stay in flash
    f32 = step_lifetimes(step, FLOAT32, batch=8)
    assert f32["relu_conv1"].size == 8 * 16 * 16 * 8 * 4 and f32["pw1/weight"].size == 32 * 16 * 4
    momentum = compile_step(digits, SparseScheme.parse("sparse:bias=1,pw1=1/2", digits), SGD(lr=0.1, momentum=0.9))
    assert step_lifetimes(momentum)["state(pw1/weight)"].size == 16 * 16 * 4
    m = training_memory(step)
    assert m.arena_bytes >= m.lower_bound >= max(m.forward_peak, m.backward_peak)


def test_mobilenetv2_ladder_and_a_256kb_scheme(capsys):
    code, out, _ = run_cli(capsys, "train-memory", "mobilenetv2", "--budget", "256KB", "--json")
    r = json.loads(out)
    assert code == 0 and r["num_classes"] == 10
    assert r["full_bytes"] > 7 * r["sparse_bytes"] >= 7 * r["sparse_reordered_bytes"]
    assert r["sparse_reordered_bytes"] <= 256 * 1024 and r["fits_budget"]
    assert r["full_bytes"] > 2_500_000  # every gradient held in float32, every weight in SRAM
    # a paper-like scheme (many biases, the first 1x1 of late blocks): reordering pays off in the backward pass
    g = fuse_activations(fold_batchnorm(zoo.get("mobilenetv2", num_classes=10, weights="random")))
    s = SparseScheme(24, tuple((f"block{i}_expand", 1.0) for i in range(11, 17)))
    lad = memory_ladder(g, s)
    d = lad["details"]
    assert d["sparse"]["backward_peak"] > 1.5 * d["sparse_reordered"]["backward_peak"]
    assert lad["sparse_reordered_bytes"] < lad["sparse_bytes"] < lad["full_bytes"]


def test_train_memory_table_and_explicit_schemes(capsys):
    code, out, _ = run_cli(capsys, "train-memory", "ic-resnet8", "--scheme", "last-k:2", "--budget", "1MB")
    assert code == 0 and "sparse update + reordering" in out and "fits the budget" in out
    code, out, _ = run_cli(capsys, "train-memory", "digits-cnn", "--scheme", "sparse:bias=2,pw1=1/4", "--json")
    assert code == 0 and json.loads(out)["scheme"]["weights"] == {"pw1": 0.25}


@pytest.mark.parametrize("args, message", [
    (["train-memory", "digits-cnn", "--budget", "1KB"], "smallest, the classifier alone, needs"),
    (["train-memory", "digits-cnn", "--scheme", "sparse:bias=1,pw7=1"], "its layers: conv1, conv2, dw1, pw1, fc"),
    (["train-memory", "digits-cnn", "--scheme", "last:3"], "malformed scheme"),
    (["train-memory", "digits-cnn", "--budget", "lots"], "malformed memory budget"),
    (["train-memory", "digits-cnn", "--scheme", "full", "--budget", "2KB"], "over the budget"),
    (["train", "mobilenetv2"], "has no transfer task"),
    (["train", "digits-cnn", "--scheme", "sparse"], "give --budget"),
])
def test_bad_input_exits_2_with_a_reason(capsys, args, message):
    code, _, err = run_cli(capsys, *args)
    assert code == 2 and message in err and err.count("\n") == 1


def test_train_verb_reports_accuracy_and_history(capsys):
    code, out, _ = run_cli(capsys, "train", "digits-cnn", "--int8", "--optimizer", "sgd", "--lr", "0.1",
                           "--scheme", "sparse:bias=4,pw1=1,dw1=1/2", "--epochs", "2", "--json")
    r = json.loads(out)
    assert code == 0 and r["qas"] and len(r["history"]) == 2 and 0.4 < r["accuracy"] <= 1.0
    assert r["scheme"]["weights"] == {"dw1": 0.5, "pw1": 1.0} and r["memory_bytes"] > 0
    code, out, _ = run_cli(capsys, "train", "digits-cnn", "--scheme", "last-k:2", "--epochs", "1", "--quiet")
    assert code == 0 and "test accuracy:" in out and "fp32" in out


def test_train_sparse_measures_contributions_then_searches(capsys):
    code, out, _ = run_cli(capsys, "train", "digits-cnn", "--int8", "--optimizer", "sgd", "--scheme", "sparse",
                           "--budget", "8KB", "--epochs", "1", "--json")
    r = json.loads(out)
    assert code == 0 and r["memory_bytes"] <= 8 * 1024 and r["contributions"]["measured"]
    assert len(r["contributions"]["weights"]) == 16  # 4 layers x 4 ratios
