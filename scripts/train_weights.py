"""Train the zoo's committed weights with tinyml_lab's own training engine.

    python scripts/train_weights.py            # all three
    python scripts/train_weights.py digits-cnn --quiet

Writes ``tinyml_lab/zoo/weights/<name>.npz`` (float32 arrays named like the
graph's constants, as ``zoo.load_weights`` reads them) and ``<name>.json``
beside it (the recipe and the scores), each atomically. Every run is seeded
and deterministic on a given machine (the float32 kernels may reassociate
sums, so another CPU can differ in the last bits).

* ``digits-cnn``: all ten digits, 16x16 (``load_digits``); test accuracy in
  float and after int8 conversion.
* ``ad-autoencoder``: normal vibration features (``load_vibration``), mean
  squared error; ROC AUC of the reconstruction error on the test split, per
  vector and per clip (a clip's score is the mean over its vectors).
* ``digits-cnn-0to4``: ``digits-cnn`` with 5 outputs on digits 0-4, the
  backbone of the on-device transfer experiment (``tinyml_lab.train.transfer``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from tinyml_lab import __version__, zoo
from tinyml_lab.graph import Graph
from tinyml_lab.train import Adam, SGD, cosine_decay, evaluate, fit

OUT = Path(zoo.WEIGHTS_DIR)


def _atomic_write(path: Path, write: Callable[[object], None], mode: str = "wb") -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(name: str, graph: Graph, recipe: dict) -> Path:
    """``<name>.npz`` with every float constant, and ``<name>.json`` with the recipe."""
    OUT.mkdir(parents=True, exist_ok=True)
    arrays = {n: t.data for n, t in graph.tensors.items() if t.is_const}
    npz = OUT / f"{name}.npz"
    _atomic_write(npz, lambda f: np.savez_compressed(f, **arrays))
    text = json.dumps(recipe, indent=2, sort_keys=True) + "\n"
    _atomic_write(OUT / f"{name}.json", lambda f: f.write(text), "w")
    return npz


def _int8_accuracy(graph: Graph, x_cal: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    from tinyml_lab.quant import quantize_model

    return evaluate(quantize_model(graph, x_cal), x, y)["accuracy"]


def train_digits(name: str, classes: tuple[int, ...], quiet: bool) -> dict:
    from tinyml_lab.data import load_digits

    seed, epochs, batch, lr = 0, 30, 32, 0.05
    data = load_digits(16, classes=classes)
    g = zoo.get("digits-cnn", seed=seed, weights="random", num_classes=len(classes))
    opt = SGD(lr=lr, momentum=0.9)
    h = fit(g, data.x_train, data.y_train, epochs=epochs, batch_size=batch, optimizer=opt, seed=seed,
            callbacks=[cosine_decay(opt, epochs)], quiet=quiet)
    test = evaluate(g, data.x_test, data.y_test)
    recipe = {
        "model": "digits-cnn", "options": {"size": 16, "num_classes": len(classes)},
        "data": f"tinyml_lab.data.load_digits(16, classes={list(classes)}) (seed 0 split)",
        "classes": list(classes), "seed": seed, "epochs": epochs, "batch_size": batch,
        "optimizer": f"SGD(lr={lr}, momentum=0.9), cosine decay to 0", "loss": "cross_entropy",
        "batch_norm": "batch statistics, running momentum 0.1",
        "train_accuracy": round(h.last["accuracy"], 4), "test_accuracy": round(test["accuracy"], 4),
        "test_accuracy_int8": round(_int8_accuracy(g, data.x_train[:256], data.x_test, data.y_test), 4),
        "tinyml_lab_version": __version__,
    }
    save(name, g, recipe)
    return recipe


def train_autoencoder(quiet: bool) -> dict:
    from sklearn.metrics import roc_auc_score

    from tinyml_lab.data import load_vibration
    from tinyml_lab.interpreter import Interpreter

    seed, epochs, batch, lr = 0, 20, 64, 1e-3
    data = load_vibration(seed=0)
    g = zoo.get("ad-autoencoder", seed=seed, weights="random")
    opt = Adam(lr=lr)
    h = fit(g, data.x_train, data.x_train, epochs=epochs, batch_size=batch, optimizer=opt, seed=seed, loss="mse",
            callbacks=[cosine_decay(opt, epochs)], quiet=quiet)
    rec = Interpreter(g).run(data.x_test)
    err = ((rec.astype(np.float64) - data.x_test) ** 2).mean(axis=1)
    clips = np.unique(data.clip_test)
    clip_err = np.array([err[data.clip_test == c].mean() for c in clips])
    clip_y = np.array([data.y_test[data.clip_test == c][0] for c in clips])
    recipe = {
        "model": "ad-autoencoder", "options": {},
        "data": "tinyml_lab.data.load_vibration(seed=0): normal clips only for training",
        "seed": seed, "epochs": epochs, "batch_size": batch, "optimizer": f"Adam(lr={lr}), cosine decay to 0",
        "loss": "mse (reconstruction of the 640 log-mel values)",
        "batch_norm": "batch statistics, running momentum 0.1",
        "train_mse": round(h.last["loss"], 4),
        "test_roc_auc_vector": round(float(roc_auc_score(data.y_test, err)), 4),
        "test_roc_auc_clip": round(float(roc_auc_score(clip_y, clip_err)), 4),
        "tinyml_lab_version": __version__,
    }
    save("ad-autoencoder", g, recipe)
    return recipe


JOBS: dict[str, Callable[[bool], dict]] = {
    "digits-cnn": lambda quiet: train_digits("digits-cnn", tuple(range(10)), quiet),
    "ad-autoencoder": train_autoencoder,
    "digits-cnn-0to4": lambda quiet: train_digits("digits-cnn-0to4", (0, 1, 2, 3, 4), quiet),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("names", nargs="*", metavar="NAME",
                   help=f"which weights to train (default all): {', '.join(JOBS)}")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in JOBS]
    if unknown:
        p.error(f"unknown name(s) {', '.join(unknown)}; choose from {', '.join(JOBS)}")
    for name in args.names or list(JOBS):
        t0 = time.perf_counter()
        recipe = JOBS[name](args.quiet)
        scores = {k: v for k, v in recipe.items() if k.startswith(("test_", "train_"))}
        print(f"{name}: {scores} ({time.perf_counter() - t0:.0f} s) -> {OUT / (name + '.npz')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
