"""Knowledge distillation: a small student learns from a large teacher's softened outputs.

With logits ``z_s`` (student) and ``z_t`` (teacher), temperature ``T`` and
mixing weight ``alpha`` (Hinton, Vinyals and Dean, "Distilling the Knowledge
in a Neural Network", 2015):

    p = softmax(z_t / T),  q = softmax(z_s / T)
    L = alpha T^2 KL(p || q) + (1 - alpha) CE(y, softmax(z_s))

averaged over the batch. The ``T^2`` keeps the soft term's gradient on the
scale of the hard one's as ``T`` changes:

    dL/dz_s = [alpha T (q - p) + (1 - alpha) (softmax(z_s) - onehot(y))] / N

A higher ``T`` shows the student more of the teacher's "dark knowledge"
(how much a 3 looks like an 8); ``alpha = 0`` is plain training on labels.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from ..errors import AttributeValueError, DataError, GraphError, ShapeError
from ..graph import Graph
from ..train import SGD, History, Optimizer, cosine_decay
from .loop import backward_graph, check_int, train_loop


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check(temperature: object, alpha: object) -> tuple[float, float]:
    if (isinstance(temperature, bool) or not isinstance(temperature, numbers.Real)
            or not math.isfinite(temperature) or temperature <= 0):
        raise AttributeValueError(f"temperature must be a finite number > 0, got {temperature!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0.0 <= alpha <= 1.0:
        raise AttributeValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(temperature), float(alpha)


def distillation_loss(student_logits: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray,
                      temperature: float = 4.0, alpha: float = 0.9) -> tuple[float, np.ndarray]:
    """``L`` and ``dL/dz_s`` of the module docstring, in float64.

    Args:
        student_logits, teacher_logits: ``(N, K)``.
        labels: ``(N,)`` integers in ``[0, K)``.
        temperature: ``T > 0``; alpha: weight of the soft term, in ``[0, 1]``.
    """
    t, a = _check(temperature, alpha)
    zs = np.asarray(student_logits, np.float64)
    zt = np.asarray(teacher_logits, np.float64)
    y = np.asarray(labels)
    if zs.ndim != 2 or zs.shape != zt.shape:
        raise ShapeError(f"student and teacher logits must both be (N, K), got {zs.shape} and {zt.shape}")
    if y.shape != (zs.shape[0],) or not np.issubdtype(y.dtype, np.integer) or (y.size and (
            y.min() < 0 or y.max() >= zs.shape[1])):
        raise DataError(f"labels must be {zs.shape[0]} integers in [0, {zs.shape[1]}), got {y.dtype} {y.shape}")
    n = zs.shape[0]
    p, q = _softmax(zt / t), _softmax(zs / t)
    log_q = zs / t - zs.max(axis=1, keepdims=True) / t
    log_q = log_q - np.log(np.exp(log_q).sum(axis=1, keepdims=True))
    with np.errstate(divide="ignore", invalid="ignore"):
        kl = np.where(p > 0, p * (np.log(p) - log_q), 0.0).sum() / n
    s = _softmax(zs)
    ce = -np.log(np.maximum(s[np.arange(n), y], 1e-300)).sum() / n
    onehot = np.zeros_like(s)
    onehot[np.arange(n), y] = 1.0
    grad = (a * t * (q - p) + (1.0 - a) * (s - onehot)) / n
    return float(a * t * t * kl + (1.0 - a) * ce), grad


def logits(graph: Graph, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The values a graph's final Softmax reads (scaled by its ``beta``), or its output when it has none."""
    from ..interpreter import Interpreter

    it = Interpreter(graph)
    last = graph.producer(graph.outputs[0])
    name, beta = graph.outputs[0], 1.0
    if last is not None and last.op == "Softmax":
        name, beta = last.inputs[0], float(last.attrs["beta"])
    out = [it.run(x[i: i + batch_size], return_all=True)[name] for i in range(0, len(x), batch_size)]
    return beta * np.concatenate(out).astype(np.float64)


class Distiller:
    """Train a student graph against a teacher's softened outputs and the labels.

    Args:
        teacher: the float graph to learn from (not changed).
        temperature, alpha: ``T`` and the soft term's weight.
        epochs, batch_size, seed: the run; the seed orders the batches.
        optimizer: default ``SGD(lr=0.05, momentum=0.9)``.
        schedule: ``"cosine"`` (learning rate decays to 0 over the epochs) or ``"constant"``.
        quiet: no progress bar.

    Attributes:
        history_: the student's training history.

    >>> Distiller(teacher, temperature=4, alpha=0.9).fit(student, x, y)   # doctest: +SKIP
    """

    def __init__(self, teacher: Graph, temperature: float = 4.0, alpha: float = 0.9, epochs: int = 5,
                 batch_size: int = 32, optimizer: Optimizer | None = None, seed: int = 0, schedule: str = "cosine",
                 quiet: bool = True):
        self.temperature, self.alpha = _check(temperature, alpha)
        self.teacher = teacher
        self.epochs = check_int(epochs, "epochs")
        self.batch_size = check_int(batch_size, "batch_size")
        self.optimizer = optimizer
        self.seed = seed
        if schedule not in ("cosine", "constant"):
            raise AttributeValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
        self.schedule = schedule
        self.quiet = quiet

    def fit(self, student: Graph, x: np.ndarray, y: np.ndarray) -> "Distiller":
        """Train ``student`` in place on ``(x, y)``."""
        if student.input_shape() != self.teacher.input_shape() or student.output_shape() != self.teacher.output_shape():
            raise GraphError(
                f"student '{student.name}' ({student.input_shape()} -> {student.output_shape()}) and teacher "
                f"'{self.teacher.name}' ({self.teacher.input_shape()} -> {self.teacher.output_shape()}) must take "
                f"and give the same shapes"
            )
        bg = backward_graph(student, "cross_entropy")
        x = bg.check_input(x)
        y = bg.check_target(y, len(x))
        teacher = logits(self.teacher, x)
        k = student.tensors[bg.loss_tensor].shape
        if len(k) != 1:
            raise ShapeError(f"student '{student.name}' must give logits of shape (N, K), got (N, {k})")

        def loss(tape, idx):
            zs = bg.beta * tape.values[bg.loss_tensor].astype(np.float64)
            value, grad = distillation_loss(zs, teacher[idx], y[idx], self.temperature, self.alpha)
            return value, (bg.beta * grad).astype(bg.k.dtype)

        opt = self.optimizer if self.optimizer is not None else SGD(lr=0.05, momentum=0.9)
        callbacks = [cosine_decay(opt, self.epochs)] if self.schedule == "cosine" else []
        self.history_: History = train_loop(bg, x, y, self.epochs, self.batch_size, opt, self.seed, loss=loss,
                                            callbacks=callbacks, quiet=self.quiet, desc=f"distill {student.name}")
        return self


__all__ = ["distillation_loss", "Distiller", "logits"]
