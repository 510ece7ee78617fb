"""The on-device transfer experiment: does Quantization-Aware Scaling let an int8 model learn?

Setting (after Lin et al., "On-Device Training Under 256KB Memory", NeurIPS
2022, who fine-tune pretrained int8 models on new data sets and report, on
average over eight of them, 64.9% top-1 for int8 SGD-M without QAS, 73.5% with
QAS and 73.3% for fp32 SGD-M): a ``digits-cnn`` pretrained on digits 0-4 (the
committed backbone ``zoo/weights/digits-cnn-0to4.npz``, made by
``scripts/train_weights.py``) is adapted to a target task:

* ``"new-classes"``: digits 5-9 with a new, seeded classifier;
* ``"rotated"``: digits 0-4 turned by 45 degrees, the pretrained classifier kept.

The "device" holds the int8 graph of :func:`~tinyml_lab.quant.quantize_model`,
calibrated on target training images. Its logits keep the range the
pretrained classifier produces on those images (``logit_range="pretrained"``),
so that a classifier that learns can express confident logits: a new head's
calibrated range is that of an untrained head, and saturated logits stall
int8 training (``logit_range="calibrated"`` shows it).

Every method trains the same weights for the same epochs and batch size; each
one's learning rate is chosen from the same grid :data:`LR_GRID` by accuracy
on a held-out fifth of the target training set (seed 0), then the method is
trained on the whole training set with three seeds (classifier
initialisation and batch order) and scored on the test set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import AttributeValueError, FileFormatError
from ..graph import Graph
from ..passes import fold_batchnorm, fuse_activations
from ..report import format_table
from .fit import DivergenceError, evaluate, fit
from .optim import SGD, Adam, Optimizer
from .params import last_layers
from .quantized import fit_quantized

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "zoo" / "weights"
BACKBONE_FILE = "digits-cnn-0to4.npz"
SOURCE_CLASSES = (0, 1, 2, 3, 4)
TASKS = ("new-classes", "rotated")
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
METHODS: dict[str, dict] = {
    "fp32 SGD-M": {"precision": "fp32", "optimizer": "sgd", "qas": False},
    "int8 SGD-M": {"precision": "int8", "optimizer": "sgd", "qas": False},
    "int8 SGD-M + QAS": {"precision": "int8", "optimizer": "sgd", "qas": True},
    "int8 Adam": {"precision": "int8", "optimizer": "adam", "qas": False},
}
CALIBRATION_SIZE = 256


@dataclass
class TransferTask:
    """A target task: train/validation/test arrays and whether it needs a new classifier."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    new_head: bool
    description: str

    def split(self, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(x_fit, y_fit, x_val, y_val)``: the last ``fraction`` of the training set held out."""
        cut = len(self.x_train) - int(round(len(self.x_train) * fraction))
        return self.x_train[:cut], self.y_train[:cut], self.x_train[cut:], self.y_train[cut:]


def transfer_task(name: str = "new-classes") -> TransferTask:
    """The target data of task ``name`` (one of :data:`TASKS`), 16x16 digits, a fixed split."""
    from ..data import load_digits

    if name == "new-classes":
        d = load_digits(16, classes=(5, 6, 7, 8, 9))
        return TransferTask(name, d.x_train, d.y_train, d.x_test, d.y_test, True,
                            "digits 5-9 (labels 0-4) with a new classifier; backbone pretrained on digits 0-4")
    if name == "rotated":
        d = load_digits(16, classes=SOURCE_CLASSES, shift="rotate", strength=45.0)
        return TransferTask(name, d.x_train, d.y_train, d.x_test, d.y_test, False,
                            "digits 0-4 rotated by 45 degrees; backbone and classifier pretrained upright")
    raise AttributeValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")


def load_backbone(path: str | Path | None = None) -> Graph:
    """The float ``digits-cnn`` (5 classes) pretrained on digits 0-4."""
    from .. import zoo

    p = Path(path) if path is not None else WEIGHTS_DIR / BACKBONE_FILE
    if not p.is_file():
        raise FileFormatError(f"no pretrained backbone at {p}; make it with `python scripts/train_weights.py`")
    return zoo.get("digits-cnn", num_classes=len(SOURCE_CLASSES), weights=p)


def device_models(backbone: Graph, task: TransferTask, seed: int = 0,
                  logit_range: str = "pretrained") -> tuple[Graph, Graph]:
    """The float graph (BatchNorm folded) and the int8 graph the device starts from.

    For a task with a new classifier, ``fc`` is drawn He-normal from ``seed``
    with a zero bias. The int8 graph is calibrated on the first
    :data:`CALIBRATION_SIZE` target training images; ``logit_range``
    ``"pretrained"`` gives the logits the range of the pretrained classifier
    on them, ``"calibrated"`` the range of the device's own (new) classifier.
    """
    from ..quant import calibrate, quantize_model

    if logit_range not in ("pretrained", "calibrated"):
        raise AttributeValueError(f"logit_range must be 'pretrained' or 'calibrated', got {logit_range!r}")
    g = backbone.copy()
    if task.new_head:
        w = g.tensors["fc/weight"]
        rng = np.random.default_rng([int(seed), 2022])
        w.data = (rng.standard_normal(w.shape) * math.sqrt(2.0 / w.shape[1])).astype(np.float32)
        g.tensors["fc/bias"].data = np.zeros(w.shape[0], np.float32)
    f = fuse_activations(fold_batchnorm(g))
    calib = task.x_train[:CALIBRATION_SIZE]
    ranges = None
    if logit_range == "pretrained":
        logits = f.producer(f.outputs[0]).inputs[0]
        ranges = {logits: calibrate(fuse_activations(fold_batchnorm(backbone)), calib)[logits]}
    return f, quantize_model(f, calib, ranges=ranges)


def make_optimizer(method: str, lr: float) -> Optimizer:
    m = METHODS[method]
    if m["optimizer"] == "sgd":
        return SGD(lr=lr, momentum=0.9, qas=m["qas"])
    return Adam(lr=lr, qas=m["qas"])


def adapt(method: str, float_graph: Graph, int8_graph: Graph, x: np.ndarray, y: np.ndarray, lr: float,
          seed: int = 0, epochs: int = 10, batch_size: int = 32, trainable: Sequence[str] | None = None,
          rounding: str = "nearest", quiet: bool = True) -> tuple[Graph, dict]:
    """Train a copy of the device model with ``method`` (a key of :data:`METHODS`).

    Returns the trained graph and figures: ``diverged``, and for int8 the
    last epoch's ``update_zero_fraction``. A run whose loss diverges returns
    the weights from before the bad update, flagged ``diverged``.
    """
    if method not in METHODS:
        raise AttributeValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    opt = make_optimizer(method, lr)
    int8 = METHODS[method]["precision"] == "int8"
    g = (int8_graph if int8 else float_graph).copy()
    info: dict = {"diverged": False}
    try:
        if int8:
            h = fit_quantized(g, x, y, epochs, batch_size, opt, seed, trainable=trainable, rounding=rounding,
                              quiet=quiet)
            info["update_zero_fraction"] = h.last.get("update_zero_fraction", float("nan"))
        else:
            fit(g, x, y, epochs, batch_size, opt, seed, trainable=trainable, quiet=quiet)
    except DivergenceError:
        info["diverged"] = True
    return g, info


def _trainable(graph: Graph, last_k: int | None) -> tuple[str, ...] | None:
    return None if last_k is None else last_layers(graph, last_k)


def select_lr(method: str, backbone: Graph, task: TransferTask, grid: Iterable[float] = LR_GRID,
              epochs: int = 10, batch_size: int = 32, last_k: int | None = None, rounding: str = "nearest",
              logit_range: str = "pretrained") -> tuple[float, dict[float, float]]:
    """The learning rate of ``grid`` with the best held-out accuracy (seed 0), and every score."""
    x_fit, y_fit, x_val, y_val = task.split()
    f, q = device_models(backbone, TransferTask(task.name, x_fit, y_fit, x_val, y_val, task.new_head,
                                                task.description), 0, logit_range)
    scores = {}
    for lr in grid:
        g, info = adapt(method, f, q, x_fit, y_fit, lr, 0, epochs, batch_size, _trainable(f, last_k), rounding)
        scores[float(lr)] = -1.0 if info["diverged"] else evaluate(g, x_val, y_val)["accuracy"]
    best = max(scores, key=lambda k: (scores[k], -k))  # ties: the smaller learning rate
    return best, scores


def qas_experiment(task: str = "new-classes", seeds: Sequence[int] = (0, 1, 2),
                   methods: Sequence[str] = tuple(METHODS), lr: float | dict | None = None,
                   grid: Sequence[float] = LR_GRID, epochs: int = 10, batch_size: int = 32,
                   last_k: int | None = None, rounding: str = "nearest", logit_range: str = "pretrained",
                   backbone: Graph | None = None, quiet: bool = True) -> list[dict]:
    """The QAS table: test accuracy of each method after on-device adaptation, over ``seeds``.

    Args:
        task: one of :data:`TASKS`.
        seeds: each seed draws the new classifier (if any) and orders the batches.
        methods: keys of :data:`METHODS`.
        lr: one learning rate for all methods, a dict per method, or None to
            choose each method's from ``grid`` on held-out data (:func:`select_lr`).
        epochs, batch_size: of every adaptation run.
        last_k: update only the last ``k`` conv/dense layers; None updates all.
        rounding: int8 update rounding, ``"nearest"`` or ``"stochastic"``.
        logit_range: see :func:`device_models`.
        backbone: the pretrained float graph; the committed one by default.
        quiet: no progress output.

    Returns:
        One dict per method: ``method``, ``lr``, ``accuracies`` (per seed),
        ``mean``, ``std``, ``before`` (test accuracy of the device model before
        adaptation, mean over seeds), ``diverged`` (runs), ``update_zero_fraction``
        (int8: share of weight steps rounded to zero in the last epoch, mean),
        and ``lr_scores`` when the learning rate was selected.
    """
    from tqdm.auto import tqdm

    t = transfer_task(task)
    backbone = load_backbone() if backbone is None else backbone
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise AttributeValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    models = {s: device_models(backbone, t, s, logit_range) for s in seeds}
    rows = []
    for method in tqdm(list(methods), desc="QAS experiment", disable=quiet, leave=False):
        scores = None
        if lr is None:
            chosen, scores = select_lr(method, backbone, t, grid, epochs, batch_size, last_k, rounding, logit_range)
        else:
            chosen = float(lr[method] if isinstance(lr, dict) else lr)
        accs, before, zero, diverged = [], [], [], 0
        int8 = METHODS[method]["precision"] == "int8"
        for s in seeds:
            f, q = models[s]
            start = q if int8 else f
            before.append(evaluate(start, t.x_test, t.y_test)["accuracy"])
            g, info = adapt(method, f, q, t.x_train, t.y_train, chosen, s, epochs, batch_size,
                            _trainable(f, last_k), rounding)
            diverged += info["diverged"]
            accs.append(evaluate(g, t.x_test, t.y_test)["accuracy"])
            if "update_zero_fraction" in info:
                zero.append(info["update_zero_fraction"])
        row = {"method": method, "lr": chosen, "accuracies": accs, "mean": float(np.mean(accs)),
               "std": float(np.std(accs)), "before": float(np.mean(before)), "diverged": diverged,
               "update_zero_fraction": float(np.mean(zero)) if zero else None}
        if scores is not None:
            row["lr_scores"] = scores
        rows.append(row)
    return rows


def lr_sweep(method: str, lrs: Sequence[float], task: str = "new-classes", seed: int = 0, epochs: int = 10,
             batch_size: int = 32, last_k: int | None = None, rounding: str = "nearest",
             logit_range: str = "pretrained", backbone: Graph | None = None) -> list[dict]:
    """Test accuracy of one method over learning rates (one seed): how far from the float learning
    rate must int8 SGD without QAS go before its updates survive rounding?"""
    t = transfer_task(task)
    backbone = load_backbone() if backbone is None else backbone
    f, q = device_models(backbone, t, seed, logit_range)
    rows = []
    for lr in lrs:
        g, info = adapt(method, f, q, t.x_train, t.y_train, float(lr), seed, epochs, batch_size,
                        _trainable(f, last_k), rounding)
        rows.append({"method": method, "lr": float(lr), "accuracy": evaluate(g, t.x_test, t.y_test)["accuracy"],
                     "diverged": info["diverged"], "update_zero_fraction": info.get("update_zero_fraction")})
    return rows


def format_qas_table(rows: Iterable[dict]) -> str:
    """The rows of :func:`qas_experiment` as an aligned table (accuracies in %)."""
    out = []
    for r in rows:
        z = r.get("update_zero_fraction")
        out.append([r["method"], f"{r['lr']:g}", f"{100 * r['before']:.1f}",
                    f"{100 * r['mean']:.1f} +- {100 * r['std']:.1f}",
                    " ".join(f"{100 * a:.1f}" for a in r["accuracies"]),
                    "-" if z is None else f"{100 * z:.1f}%", r["diverged"]])
    return format_table(["method", "lr", "before %", "after %", "per seed", "steps rounded to 0", "diverged"],
                        out, align="lrrrrrr")
