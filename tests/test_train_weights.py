"""The committed trained weights: loaded by default, small, with their recipe, and as good as
the recipe says."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyml_lab import zoo
from tinyml_lab.data import load_digits
from tinyml_lab.train import evaluate

NAMES = ("digits-cnn", "ad-autoencoder", "digits-cnn-0to4")


def recipe(name: str) -> dict:
    return json.loads((zoo.WEIGHTS_DIR / f"{name}.json").read_text())


def test_weights_are_committed_small_and_finite():
    total = 0
    for name in NAMES:
        path = zoo.WEIGHTS_DIR / f"{name}.npz"
        total += path.stat().st_size
        with np.load(path) as z:
            assert all(z[k].dtype == np.float32 and np.all(np.isfinite(z[k])) for k in z.files)
        r = recipe(name)
        assert {"seed", "epochs", "batch_size", "optimizer"} <= set(r)
    assert total < 1.5 * 2**20


def test_zoo_loads_trained_weights_by_default_and_random_on_request():
    trained = zoo.get("digits-cnn")
    assert trained.metadata["zoo"]["weights"].startswith("trained")
    assert zoo.trained_weights("digits-cnn") == zoo.WEIGHTS_DIR / "digits-cnn.npz"
    a, b = zoo.get("digits-cnn", weights="random", seed=3), zoo.get("digits-cnn", weights="random", seed=4)
    assert a.metadata["zoo"]["weights"] == "he-normal (untrained)"
    assert not np.array_equal(a.tensor("fc/weight").data, b.tensor("fc/weight").data)
    assert not np.array_equal(a.tensor("fc/weight").data, trained.tensor("fc/weight").data)
    # trained weights belong to the default options only
    assert zoo.get("digits-cnn", size=32).metadata["zoo"]["weights"] == "he-normal (untrained)"
    assert zoo.trained_weights("kws-dscnn") is None


def test_digits_cnn_accuracy_matches_its_recipe():
    d = load_digits(16)
    acc = evaluate(zoo.get("digits-cnn"), d.x_test, d.y_test)["accuracy"]
    assert acc >= 0.95
    assert acc == pytest.approx(recipe("digits-cnn")["test_accuracy"], abs=0.01)
    src = load_digits(16, classes=(0, 1, 2, 3, 4))
    backbone = zoo.get("digits-cnn", num_classes=5, weights=zoo.WEIGHTS_DIR / "digits-cnn-0to4.npz")
    assert evaluate(backbone, src.x_test, src.y_test)["accuracy"] >= 0.95


def test_autoencoder_reconstruction_error_separates_faults():
    from sklearn.metrics import roc_auc_score

    from tinyml_lab.data import load_vibration
    from tinyml_lab.interpreter import Interpreter

    d = load_vibration(seed=0)
    g = zoo.get("ad-autoencoder")
    err = ((Interpreter(g).run(d.x_test).astype(np.float64) - d.x_test) ** 2).mean(axis=1)
    auc = roc_auc_score(d.y_test, err)
    assert auc >= 0.95
    assert auc == pytest.approx(recipe("ad-autoencoder")["test_roc_auc_vector"], abs=0.01)
