"""Float training with ``fit``: it learns, it is deterministic, it stops cleanly on divergence and
bad input."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_lab import zoo
from tinyml_lab.data import load_digits
from tinyml_lab.errors import DataError, GraphError, ShapeError, TinyMLError
from tinyml_lab.graph import GraphBuilder
from tinyml_lab.train import SGD, Adam, DivergenceError, cosine_decay, evaluate, fit


@pytest.fixture(scope="module")
def digits():
    return load_digits(16)


def test_digits_cnn_learns_quickly(digits):
    g = zoo.get("digits-cnn", weights="random", seed=0)
    opt = SGD(lr=0.05, momentum=0.9)
    h = fit(g, digits.x_train, digits.y_train, epochs=6, batch_size=32, optimizer=opt, seed=0,
            callbacks=[cosine_decay(opt, 6)], quiet=True)
    assert h["loss"][-1] < h["loss"][0] / 3
    acc = evaluate(g, digits.x_test, digits.y_test)["accuracy"]
    assert acc >= 0.9, f"test accuracy {acc:.3f} after 6 epochs"


def test_same_seed_same_weights(digits):
    x, y = digits.x_train[:96], digits.y_train[:96]
    runs = []
    for _ in range(2):
        g = zoo.get("digits-cnn", weights="random", seed=1)
        fit(g, x, y, epochs=2, batch_size=16, optimizer=Adam(lr=1e-3), seed=5, quiet=True)
        runs.append({n: t.data for n, t in g.tensors.items() if t.is_const})
    assert all(np.array_equal(runs[0][n], runs[1][n]) for n in runs[0])
    g = zoo.get("digits-cnn", weights="random", seed=1)
    fit(g, x, y, epochs=2, batch_size=16, optimizer=Adam(lr=1e-3), seed=6, quiet=True)
    assert not np.array_equal(g.tensor("fc/weight").data, runs[0]["fc/weight"])


def test_history_validation_and_early_stop(digits):
    g = zoo.get("digits-cnn", weights="random")
    seen = []
    h = fit(g, digits.x_train[:64], digits.y_train[:64], epochs=5, batch_size=32, quiet=True,
            validation_data=(digits.x_test[:32], digits.y_test[:32]),
            callbacks=[lambda row: seen.append(row["epoch"]) or row["epoch"] == 2])
    assert seen == [1, 2] and len(h) == 2
    assert {"epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(h.last)
    assert "val_accuracy" in h.table() and h.recipe["optimizer"].startswith("SGD")
    with pytest.raises(KeyError, match="records"):
        h["nope"]


def test_only_trainable_tensors_change_and_batch_norm_modes(digits):
    x, y = digits.x_train[:64], digits.y_train[:64]
    g = zoo.get("digits-cnn", weights="random")
    before = {n: t.data.copy() for n, t in g.tensors.items() if t.is_const}
    fit(g, x, y, epochs=1, batch_size=32, trainable={"fc/weight"}, batch_norm="running", quiet=True)
    changed = {n for n, t in g.tensors.items() if t.is_const and not np.array_equal(t.data, before[n])}
    assert changed == {"fc/weight"}
    fit(g, x, y, epochs=1, batch_size=32, trainable={"fc/weight"}, quiet=True)  # batch statistics
    assert not np.array_equal(g.tensor("bn_conv1/mean").data, before["bn_conv1/mean"])
    assert np.array_equal(g.tensor("conv1/weight").data, before["conv1/weight"])


def test_autoencoder_trains_with_mse():
    rng = np.random.default_rng(0)
    b = GraphBuilder("ae", seed=0)
    h = b.dense(b.input((12,)), 4, activation="relu", name="enc")
    g = b.build(b.dense(h, 12, name="dec"))
    basis = rng.standard_normal((3, 12))
    x = (rng.standard_normal((256, 3)) @ basis).astype(np.float32)
    before = evaluate(g, x, x, loss="mse")["loss"]
    hist = fit(g, x, x, epochs=30, batch_size=32, optimizer=Adam(lr=1e-2), loss="mse", quiet=True)
    assert "accuracy" not in hist.last
    assert evaluate(g, x, x, loss="mse")["loss"] < before / 4


def test_divergence_stops_with_the_weights_before_the_bad_step(digits):
    class Recording(SGD):
        def step(self, params, grads, scales=None):
            self.before.append({k: v.copy() for k, v in params.items()})
            super().step(params, grads, scales)

    g = zoo.get("digits-cnn", weights="random")
    opt = Recording(lr=1e12)
    opt.before = []
    with pytest.raises(DivergenceError, match="diverged.*Lower the learning rate") as info:
        fit(g, digits.x_train[:256], digits.y_train[:256], epochs=3, batch_size=32, optimizer=opt, quiet=True)
    assert isinstance(info.value, TinyMLError) and isinstance(info.value, ArithmeticError)
    assert len(opt.before) >= 1
    for n, want in opt.before[-1].items():
        np.testing.assert_array_equal(g.tensor(n).data, want)
        assert np.all(np.isfinite(g.tensor(n).data))
    assert all(np.all(np.isfinite(t.data)) for t in g.tensors.values() if t.is_const)  # BatchNorm statistics too


@pytest.mark.parametrize("kwargs, error, match", [
    ({"trainable": {"conv9/weight"}}, GraphError, "no trainable parameter"),
    ({"y": np.full(64, 10)}, DataError, r"\[0, 10\)"),
    ({"y": np.zeros(63, int)}, DataError, "one target per input"),
    ({"x": np.zeros((64, 8, 8, 1), np.float32)}, ShapeError, r"\(N, 16, 16, 1\)"),
    ({"x": np.full((64, 16, 16, 1), np.nan, np.float32)}, DataError, "NaN"),
    ({"loss": "hinge"}, TinyMLError, "cross_entropy, mse"),
    ({"epochs": 0}, TinyMLError, "epochs"),
    ({"batch_size": 2.5}, TinyMLError, "batch_size"),
    ({"batch_norm": "frozen"}, TinyMLError, "batch, running"),
    ({"optimizer": SGD(lr=0.1, qas=True)}, TinyMLError, "int8"),
    ({"validation_data": (1, 2, 3)}, TinyMLError, "pair"),
])
def test_bad_input_is_named(digits, kwargs, error, match):
    args = {"x": digits.x_train[:64], "y": digits.y_train[:64], "quiet": True, **kwargs}
    g = zoo.get("digits-cnn", weights="random")
    before = g.tensor("conv1/weight").data.copy()
    with pytest.raises(error, match=match):
        fit(g, **args)
    np.testing.assert_array_equal(g.tensor("conv1/weight").data, before)
