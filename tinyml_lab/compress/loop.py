"""The mini-batch loop shared by fine-tuning after pruning, distillation and quantization-aware training.

It drives the training engine (:class:`~tinyml_lab.train.BackwardGraph` and
an :class:`~tinyml_lab.train.Optimizer`) and leaves three hooks to the
caller, so that each technique is only what makes it different:

* ``weights()``: the constants the forward pass uses instead of the stored
  ones (QAT: the fake-quantized weights); gradients come back with respect
  to what the forward used;
* ``transform(grads)``: changes the gradients before the update (pruning:
  ``g * mask``; QAT: the straight-through estimator's clipping mask);
* ``after_step(tape)``: runs after every update (pruning: ``w * mask`` again;
  QAT: moves the activation ranges);

and ``loss(tape, index)`` may replace the graph's loss (distillation): it
returns the loss and its gradient with respect to the loss tensor of the
:class:`BackwardGraph` (the logits, for a graph ending in Softmax).

Every run is seeded: the seed orders the batches. A non-finite loss stops
the run with a :class:`~tinyml_lab.train.DivergenceError`, the weights
restored to those before the bad update.
"""

from __future__ import annotations

import numbers
import time
from typing import Callable, Mapping, Sequence

import numpy as np

from ..errors import AttributeValueError
from ..graph import Graph
from ..train import BackwardGraph, DivergenceError, History, Optimizer
from ..train.autodiff import Gradients, Tape

LossFn = Callable[[Tape, np.ndarray], tuple[float, np.ndarray]]


class _CustomLoss(BackwardGraph):
    """A :class:`BackwardGraph` whose loss is given per batch (``target`` is a callable of the tape)."""

    def loss(self, tape: Tape, target):  # type: ignore[override]
        if callable(target):
            return target(tape)
        return super().loss(tape, target)


def check_int(value: object, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise AttributeValueError(f"{what} must be an int >= {minimum}, got {value!r}")
    return int(value)


def backward_graph(graph: Graph, loss: str = "cross_entropy", trainable=None) -> BackwardGraph:
    """The :class:`BackwardGraph` the loop trains (one that also accepts a per-batch loss)."""
    return _CustomLoss(graph, trainable=trainable, loss=loss)


def train_loop(bg: BackwardGraph, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int,
               optimizer: Optimizer, seed: int = 0, *,
               weights: Callable[[], Mapping[str, np.ndarray]] | None = None,
               transform: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
               after_step: Callable[[Tape], None] | None = None,
               loss: LossFn | None = None, batch_norm: str = "batch", bn_momentum: float = 0.1,
               callbacks: Sequence[Callable[[dict], object]] = (), quiet: bool = True,
               desc: str = "train") -> History:
    """Train ``bg.graph`` in place on ``(x, y)``; one :class:`History` row per epoch.

    ``y`` is what the graph's loss compares against (labels, or targets for
    MSE); with ``loss`` given it is only used to report accuracy (labels) and
    may be None. ``batch_norm="batch"`` normalises with each batch's statistics
    and moves the running ones toward them; ``"running"`` keeps them fixed.
    ``callbacks`` are called with each epoch's row (e.g.
    :func:`~tinyml_lab.train.cosine_decay`); one returning True stops the run.
    """
    from tqdm.auto import tqdm

    epochs = check_int(epochs, "epochs")
    batch_size = check_int(batch_size, "batch_size")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise AttributeValueError(f"seed must be an int, got {seed!r}")
    if batch_norm not in ("batch", "running"):
        raise AttributeValueError(f"batch_norm must be 'batch' or 'running', got {batch_norm!r}")
    training = batch_norm == "batch"
    if not isinstance(optimizer, Optimizer):
        raise AttributeValueError(f"optimizer must be a tinyml_lab.train Optimizer (SGD, Adam), got {optimizer!r}")
    x = bg.check_input(x)
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        from ..errors import DataError

        raise DataError("the training inputs hold NaN or infinite values; clean or drop those samples")
    labels = None
    if y is not None:
        y = bg.check_target(y, len(x)) if loss is None else np.asarray(y)
        if bg.loss_kind == "cross_entropy":
            labels = np.asarray(y)
    g = bg.graph
    params = {n: g.tensors[n].data for n in bg.trainable}
    rng = np.random.default_rng(int(seed))
    n = len(x)
    history = History()
    bar = tqdm(total=epochs * -(-n // batch_size), desc=desc, disable=quiet, leave=False, unit="step")
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            order = rng.permutation(n)
            total, correct = 0.0, 0
            for i in range(0, n, batch_size):
                idx = order[i: i + batch_size]
                tape = bg.forward(x[idx], training=training, weights=None if weights is None else weights())
                target = (lambda t, idx=idx: loss(t, idx)) if loss is not None else y[idx]
                grads: Gradients = bg.backward(tape, target)
                if not np.isfinite(grads.loss) or not all(np.all(np.isfinite(v)) for v in grads.params.values()):
                    raise DivergenceError(
                        f"training of '{g.name}' diverged at epoch {epoch}: the loss became {grads.loss}; "
                        f"the weights are those before this step. Lower the learning rate (it is "
                        f"{optimizer.lr:g}), e.g. by 10x"
                    )
                gp = transform(grads.params) if transform is not None else grads.params
                optimizer.step(params, gp)
                if training:
                    bg.update_statistics(tape, bn_momentum)
                if after_step is not None:
                    after_step(tape)
                total += grads.loss * len(idx)
                if labels is not None:
                    out = tape.values[g.outputs[0]]
                    correct += int((out.argmax(axis=1) == labels[idx]).sum())
                bar.update(1)
            row: dict = {"epoch": epoch, "loss": total / n}
            if labels is not None:
                row["accuracy"] = correct / n
            row["seconds"] = time.perf_counter() - t0
            history.rows.append(row)
            if any(cb(row) for cb in callbacks):
                break
    finally:
        bar.close()
    return history


__all__ = ["train_loop", "backward_graph", "check_int", "LossFn"]
