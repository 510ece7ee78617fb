"""Which data set a model is scored on, and its score, for float and int8 graphs alike.

Two zoo models have data here:

* ``digits-cnn`` (and any graph taking 16x16x1 or 32x32x1 images with 10
  outputs): :func:`~tinyml_lab.data.load_digits`, scored by **accuracy**
  (top-1 of the output);
* ``ad-autoencoder`` (and any graph mapping 640 values to 640 values):
  :func:`~tinyml_lab.data.load_vibration`, scored by the **ROC AUC** of the
  reconstruction error ``mean (x - x_hat)^2`` per vector between normal and
  faulty test vectors (the "accuracy" of an anomaly detector).

A graph is matched by its ``metadata["zoo"]`` (kept by quantization, pruning
and saving), then by its input and output shapes. Other models have no task;
the CLI then reports sizes and SQNR only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from ..graph import Graph
from ..interpreter import Interpreter
from .convert import dequantize_output, quantize_input

CALIBRATION_SIZE = 256


@dataclass
class Task:
    """A data set and how a model is scored on it.

    ``loss`` is what training uses (``cross_entropy`` on labels, ``mse`` with
    the input as target); ``metric`` names the score (``accuracy`` or
    ``roc_auc``); ``y_train`` the training targets.
    """

    name: str
    metric: str
    loss: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def calibration(self, n: int = CALIBRATION_SIZE, seed: int = 0) -> np.ndarray:
        """``n`` training inputs drawn without replacement, seeded."""
        idx = np.random.default_rng(seed).permutation(len(self.x_train))[:n]
        return self.x_train[np.sort(idx)]

    @property
    def x_sqnr(self) -> np.ndarray:
        """Inputs for the per-layer SQNR: the test split; for the autoencoder its normal vectors only
        (faulty vectors lie outside the calibrated ranges, and clipping them is the point)."""
        return self.x_test[self.y_test == 0] if self.metric == "roc_auc" else self.x_test

    def outputs(self, graph: Graph, x: np.ndarray | None = None, batch_size: int = 512) -> np.ndarray:
        """The graph's real-valued outputs on ``x`` (the test inputs by default); int8 graphs get
        quantized inputs and their outputs are dequantized."""
        x = self.x_test if x is None else x
        it = Interpreter(graph)
        outs = []
        for i in range(0, len(x), batch_size):
            xb = x[i: i + batch_size]
            if graph.is_quantized:
                outs.append(dequantize_output(graph, it.run(quantize_input(graph, xb))))
            else:
                outs.append(it.run(xb))
        return np.concatenate(outs)

    def score(self, graph: Graph) -> float:
        """Accuracy, or the ROC AUC of the reconstruction error, on the test split."""
        y = self.outputs(graph)
        if self.metric == "accuracy":
            return float(np.mean(y.argmax(axis=1) == self.y_test))
        from sklearn.metrics import roc_auc_score

        err = ((y.astype(np.float64) - self.x_test) ** 2).mean(axis=1)
        return float(roc_auc_score(self.y_test, err))


def _zoo_name(graph: Graph) -> tuple[str | None, dict]:
    z = graph.metadata.get("zoo", {}) if isinstance(graph.metadata, dict) else {}
    return z.get("model"), dict(z.get("options", {}))


def task_for(graph: Graph, seed: int = 0) -> Task | None:
    """The :class:`Task` of ``graph``, or None when no data set here fits it."""
    from ..data import load_digits, load_vibration

    name, options = _zoo_name(graph)
    shape_in, shape_out = graph.input_shape(), graph.output_shape()
    if name == "digits-cnn" or (name is None and shape_in in ((16, 16, 1), (32, 32, 1)) and shape_out == (10,)):
        size = int(options.get("size", shape_in[0]))
        classes = int(options.get("num_classes", shape_out[0]))
        if shape_in != (size, size, 1) or shape_out != (classes,):
            return None
        d = load_digits(size, classes=None if classes == 10 else tuple(range(classes)))
        return Task("digits", "accuracy", "cross_entropy", d.x_train, d.y_train, d.x_test, d.y_test)
    if name == "ad-autoencoder" or (name is None and shape_in == (640,) and shape_out == (640,)):
        if shape_in != (640,) or shape_out != (640,):
            return None
        v = load_vibration(seed=0)
        return Task("vibration", "roc_auc", "mse", v.x_train, v.x_train, v.x_test, v.y_test)
    return None


CALIBRATION_SOURCES = ("digits", "vibration", "random")


def random_calibration(graph: Graph, n: int = 64, seed: int = 0) -> np.ndarray:
    """Seeded random inputs: uniform in [0, 1) for images (rank-3 inputs), standard normal otherwise."""
    rng = np.random.default_rng(seed)
    shape = (n,) + graph.input_shape()
    if len(graph.input_shape()) == 3:
        return rng.random(shape, dtype=np.float32)
    return rng.standard_normal(shape, dtype=np.float32)


def calibration_data(graph: Graph, source: str, n: int | None = None, seed: int = 0,
                     task: Task | None = None) -> np.ndarray:
    """Calibration inputs from ``source``: ``digits`` or ``vibration`` (training inputs of that data
    set, which must fit the model) or ``random`` (:func:`random_calibration`)."""
    if source not in CALIBRATION_SOURCES:
        raise DataError(f"calibration source must be one of {', '.join(CALIBRATION_SOURCES)}, got {source!r}")
    if source == "random":
        return random_calibration(graph, 64 if n is None else n, seed)
    if task is None or task.name != source:
        task = task_for(graph)
    if task is None or task.name != source:
        raise DataError(
            f"model '{graph.name}' (input {graph.input_shape()}, output {graph.output_shape()}) is not a "
            f"{source} model, so {source} data cannot calibrate it; use --calib random"
        )
    return task.calibration(CALIBRATION_SIZE if n is None else n, seed)


__all__ = ["Task", "task_for", "calibration_data", "random_calibration", "CALIBRATION_SOURCES",
           "CALIBRATION_SIZE"]
