"""Training loops: :func:`fit` for float graphs, :func:`evaluate` for float and int8 graphs.

``fit`` trains a graph in place, mini-batch by mini-batch, and returns a
:class:`History` with one row per epoch. It is deterministic for a seed
(the seed orders the batches; every kernel is deterministic). If the loss
becomes NaN or infinite, training stops with a :class:`DivergenceError` and
the weights are those from before the update that broke them.

The int8 loop, :func:`~tinyml_lab.train.quantized.fit_quantized`, shares
the machinery here.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from ..errors import AttributeValueError, DataError, TinyMLError
from ..graph import Graph
from ..report import format_table
from .autodiff import BackwardGraph, Gradients, Tape
from .optim import SGD, Optimizer

if TYPE_CHECKING:
    from .sparse import Selection, SparseScheme

Callback = Callable[[dict], "bool | None"]
BATCH_NORM_MODES = ("batch", "running")


class DivergenceError(TinyMLError, ArithmeticError):
    """The loss or the weights became NaN or infinite during training."""


class NonFiniteGradient(ArithmeticError):
    """Inside the loop: a batch's loss or gradients are not finite (no update was made)."""

    def __init__(self, loss: float):
        super().__init__(f"loss {loss}")
        self.loss = float(loss)


@dataclass
class History:
    """Per-epoch figures of a training run: ``rows[i]`` is a dict for epoch ``i + 1``.

    ``history["loss"]`` lists one key over the epochs (Keras style).
    ``recipe`` records how the run was set up.
    """

    rows: list[dict] = field(default_factory=list)
    recipe: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> list:
        if not self.rows or key not in self.rows[0]:
            known = ", ".join(self.rows[0]) if self.rows else "nothing (no epoch ran)"
            raise KeyError(f"history has no {key!r}; it records {known}")
        return [r[key] for r in self.rows]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def last(self) -> dict:
        return self.rows[-1] if self.rows else {}

    def table(self) -> str:
        """The rows as an aligned text table."""
        if not self.rows:
            return "(no epochs)"
        keys = list(self.rows[0])
        cells = [[_fmt(r.get(k)) for k in keys] for r in self.rows]
        return format_table(keys, cells, align="r" * len(keys))

    def to_json(self) -> dict:
        return {"rows": self.rows, "recipe": self.recipe}

    def __repr__(self) -> str:
        return f"History({len(self.rows)} epochs, last {self.last})"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def check_positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise AttributeValueError(f"{what} must be an int >= 1, got {value!r}")
    return int(value)


def check_finite(x: np.ndarray, what: str) -> None:
    if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
        bad = np.argwhere(~np.isfinite(x))[0]
        raise DataError(f"{what} holds NaN or infinite values (first at index {tuple(int(i) for i in bad)}); "
                        f"clean or drop those samples")


def check_training_data(bg: BackwardGraph, x: np.ndarray, y: np.ndarray, validation_data=None):
    """Inputs and targets checked against the graph (finite inputs, one target per row), and the
    optional ``validation_data`` pair likewise; returns ``(x, y, x_val, y_val)`` (None, None without it)."""
    x = bg.check_input(x)
    check_finite(x, "x")
    y = bg.check_target(y, len(x))
    vx = vy = None
    if validation_data is not None:
        if not (isinstance(validation_data, (tuple, list)) and len(validation_data) == 2):
            raise AttributeValueError("validation_data must be a pair (x_val, y_val)")
        vx = bg.check_input(validation_data[0])
        vy = bg.check_target(validation_data[1], len(vx))
    return x, y, vx, vy


def _accuracy_count(bg: BackwardGraph, tape: Tape, target: np.ndarray) -> int | None:
    if bg.loss_kind != "cross_entropy":
        return None
    out = tape.values[bg.graph.outputs[0]]
    return int((out.argmax(axis=1) == target).sum())


def evaluate(graph: Graph, x: np.ndarray, y: np.ndarray, loss: str = "cross_entropy", batch_size: int = 256,
             backend: str = "numba") -> dict:
    """Loss (and accuracy, for cross-entropy) of ``graph`` on ``(x, y)``, inference mode.

    Works on float graphs (BatchNorm with its running statistics) and on
    int8 graphs (the deployed int8 kernels; ``x`` real values or int8
    codes). Accuracy is the argmax of the graph's output, as deployed.
    """
    bg = BackwardGraph(graph, trainable=(), loss=loss, backend=backend)
    x = bg.check_input(x)
    y = bg.check_target(y, len(x))
    batch_size = check_positive_int(batch_size, "batch_size")
    total, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        tape = bg.forward(x[i: i + batch_size], training=False)
        yb = y[i: i + batch_size]
        total += bg.loss(tape, yb)[0] * len(yb)
        c = _accuracy_count(bg, tape, yb)
        correct += c or 0
    out = {"loss": total / len(x)}
    if loss == "cross_entropy":
        out["accuracy"] = correct / len(x)
    return out


# --------------------------------------------------------------------------- the shared loop

class Stepper:
    """How one kind of training applies an update and undoes it (float here, int8 in ``quantized``)."""

    def snapshot(self) -> object:
        raise NotImplementedError

    def restore(self, snap: object) -> None:
        raise NotImplementedError

    def apply(self, tape: Tape, grads: Gradients) -> dict:
        """Update the weights; return figures to average over the epoch (may be empty)."""
        raise NotImplementedError

    def train_batch(self, x: np.ndarray, y: np.ndarray, training: bool) -> tuple[float, np.ndarray, dict]:
        """One step on a batch: forward, backward, then :meth:`apply`. Returns the loss, the output
        (for accuracy) and the figures of ``apply``. Raises :class:`NonFiniteGradient` before any
        update when the loss or a gradient is not finite, ``FloatingPointError`` when an update made
        a weight non-finite."""
        bg = self.bg  # type: ignore[attr-defined]
        tape = bg.forward(x, training=training)
        grads = bg.backward(tape, y)
        if not np.isfinite(grads.loss) or not all(np.all(np.isfinite(g)) for g in grads.params.values()):
            raise NonFiniteGradient(grads.loss)
        extra = self.apply(tape, grads)
        return grads.loss, tape.values[bg.graph.outputs[0]], extra


class FloatStepper(Stepper):
    def __init__(self, bg: BackwardGraph, optimizer: Optimizer, batch_norm: str, bn_momentum: float,
                 selection: "Selection | None" = None):
        self.bg, self.opt = bg, optimizer
        self.update_stats = batch_norm == "batch"
        self.bn_momentum = bn_momentum
        self.selection = selection
        g = bg.graph
        self.params = {n: g.tensors[n].data for n in bg.trainable}
        self.stats = [t.name for node in g.nodes if node.op == "BatchNorm"
                      for r, t in g.weights(node).items() if r in ("mean", "var")]

    def snapshot(self) -> object:
        g = self.bg.graph
        arrays = {n: g.tensors[n].data.copy() for n in list(self.params) + self.stats}
        return arrays, self.opt.state_dict()

    def restore(self, snap: object) -> None:
        arrays, state = snap  # type: ignore[misc]
        g = self.bg.graph
        for n, a in arrays.items():
            g.tensors[n].data[...] = a
        self.opt.load_state_dict(state)

    def apply(self, tape: Tape, grads: Gradients) -> dict:
        if self.update_stats:
            self.bg.update_statistics(tape, self.bn_momentum)
        if self.selection is None or not self.selection.channels:
            self.opt.step(self.params, grads.params)
        else:
            for n, gr in grads.params.items():
                update_float_tensor(self.bg.graph, n, self.selection.take(n, gr), self.opt, self.selection)
            self.opt.steps_ += 1
        g = self.bg.graph
        for n in list(self.params) + self.stats:
            if not np.all(np.isfinite(g.tensors[n].data)):
                raise FloatingPointError(n)
        return {}


def update_float_tensor(graph: Graph, name: str, grad: np.ndarray, optimizer: Optimizer,
                        selection: "Selection | None" = None) -> None:
    """``W[sel] += delta`` in place for one float parameter from the gradient of its selected channels
    (of all of it without a ``selection``); advances the optimizer's state of ``name``."""
    data = graph.tensors[name].data
    index = selection.index(name, data.ndim) if selection is not None else (slice(None),) * data.ndim
    current = data[index]
    d = optimizer.update_one(name, current, grad)
    if selection is not None and name in selection.channels:
        data[index] = current + d.astype(data.dtype)
    else:
        data += d.astype(data.dtype)


def run_epochs(bg: BackwardGraph, stepper: Stepper, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int,
               seed: int, training: bool, validation_data: tuple | None, callbacks: Sequence[Callback],
               quiet: bool, lr: float | None = None) -> History:
    """The mini-batch loop both ``fit`` and ``fit_quantized`` run."""
    from tqdm.auto import tqdm

    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise AttributeValueError(f"seed must be an int, got {seed!r}")
    x, y, vx, vy = check_training_data(bg, x, y, validation_data)
    callbacks = list(callbacks)
    for cb in callbacks:
        if not callable(cb):
            raise AttributeValueError(f"callbacks must be callables taking the epoch's row, got {cb!r}")

    rng = np.random.default_rng(int(seed))
    n = len(x)
    steps_per_epoch = -(-n // batch_size)
    history = History()
    step = 0
    previous = None  # the snapshot taken before the last update
    bar = tqdm(total=epochs * steps_per_epoch, desc=f"train {bg.graph.name}", disable=quiet, leave=False,
               unit="step")
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            order = rng.permutation(n)
            total, correct, extra_sums = 0.0, 0, {}
            for i in range(0, n, batch_size):
                idx = order[i: i + batch_size]
                snap = stepper.snapshot()
                try:
                    loss, out, extra = stepper.train_batch(x[idx], y[idx], training)
                except NonFiniteGradient as exc:
                    _diverged(bg, stepper, previous, epoch, step, exc.loss, lr)
                except FloatingPointError:
                    stepper.restore(snap)
                    _diverged(bg, stepper, None, epoch, step + 1, float("nan"), lr, weights=True)
                previous = snap
                step += 1
                total += loss * len(idx)
                if bg.loss_kind == "cross_entropy":
                    correct += int((out.argmax(axis=1) == y[idx]).sum())
                for k, v in extra.items():
                    extra_sums[k] = extra_sums.get(k, 0.0) + v
                bar.update(1)
                bar.set_postfix(epoch=epoch, loss=f"{loss:.4f}", refresh=False)
            row: dict = {"epoch": epoch, "loss": total / n}
            if bg.loss_kind == "cross_entropy":
                row["accuracy"] = correct / n
            for k, v in extra_sums.items():
                row[k] = v / steps_per_epoch
            if validation_data is not None:
                ev = evaluate(bg.graph, vx, vy, loss=bg.loss_kind, backend=bg.backend)
                row.update({f"val_{k}": v for k, v in ev.items()})
            row["seconds"] = time.perf_counter() - t0
            history.rows.append(row)
            if any(cb(row) for cb in callbacks):
                break
    finally:
        bar.close()
    return history


def _diverged(bg: BackwardGraph, stepper: Stepper, previous: object, epoch: int, step: int, loss: float,
              lr: float | None, weights: bool = False) -> None:
    if previous is not None:
        stepper.restore(previous)
        kept = f"the weights are restored to those before step {step}, the update that made them diverge"
    elif weights:
        kept = f"the weights are left as they were before step {step}, whose update made them non-finite"
    else:
        kept = "no update had been made, so the weights are unchanged (check the data and the initial weights)"
    what = "the weights became" if weights else f"the loss became {loss}"
    hint = f" Lower the learning rate (it is {lr:g}), e.g. by 10x." if lr is not None else ""
    raise DivergenceError(
        f"training of '{bg.graph.name}' diverged: {what} non-finite at epoch {epoch}, step {step + (0 if weights else 1)}; "
        f"{kept}.{hint}"
    )


# --------------------------------------------------------------------------- float training

def fit(graph: Graph, x: np.ndarray, y: np.ndarray, epochs: int = 10, batch_size: int = 32,
        optimizer: Optimizer | None = None, seed: int = 0, loss: str = "cross_entropy",
        trainable: "Iterable[str] | SparseScheme | Selection | None" = None, validation_data: tuple | None = None,
        callbacks: Sequence[Callback] = (), quiet: bool = False, batch_norm: str = "batch",
        bn_momentum: float = 0.1, label_smoothing: float = 0.0, backend: str = "numba") -> History:
    """Train a float graph in place on ``(x, y)`` with mini-batch gradient descent.

    Args:
        graph: a float32 graph, e.g. ``zoo.get("digits-cnn")``; updated in place.
        x: inputs ``(N, *graph.input_shape())``, real values.
        y: integer labels ``(N,)`` for ``"cross_entropy"``, or targets shaped
            like the output for ``"mse"`` (``y = x`` for an autoencoder).
        epochs, batch_size: passes over the data and samples per update.
        optimizer: default ``SGD(lr=0.01, momentum=0.9)``; its state persists
            across calls, so a second ``fit`` continues.
        seed: orders the batches; equal seeds give equal runs.
        loss: ``"cross_entropy"`` or ``"mse"``.
        trainable: tensor names to update; None for every parameter; or a
            :class:`~tinyml_lab.train.sparse.SparseScheme` (or its resolved
            :class:`~tinyml_lab.train.sparse.Selection`), which may train some
            output channels of a tensor only.
        validation_data: ``(x_val, y_val)`` evaluated after each epoch.
        callbacks: callables taking the epoch's row (a dict); one returning
            True stops training after that epoch.
        quiet: no progress bar.
        batch_norm: ``"batch"`` normalises with each batch's statistics and
            moves the running ones toward them (``bn_momentum``);
            ``"running"`` keeps the stored statistics fixed (BatchNorm is then
            an affine layer, as on a device that fine-tunes with batch size 1).
        label_smoothing: for cross-entropy; 0 by default.
        backend: ``"numba"`` (float32) or ``"reference"`` (float64 NumPy, slow).

    Returns:
        A :class:`History`: per epoch ``loss``, ``accuracy`` (cross-entropy),
        ``val_*`` and ``seconds``.

    Raises:
        DivergenceError: the loss became NaN or infinite; the weights are
            restored to those before the update that caused it.
    """
    if graph.is_quantized:
        raise TinyMLError(f"graph '{graph.name}' is int8; train it with tinyml_lab.train.fit_quantized")
    if batch_norm not in BATCH_NORM_MODES:
        raise AttributeValueError(f"batch_norm must be one of {', '.join(BATCH_NORM_MODES)}, got {batch_norm!r}")
    if not (isinstance(bn_momentum, numbers.Real) and 0.0 < bn_momentum <= 1.0):
        raise AttributeValueError(f"bn_momentum must be a number in (0, 1], got {bn_momentum!r}")
    optimizer = SGD(lr=0.01, momentum=0.9) if optimizer is None else optimizer
    if not isinstance(optimizer, Optimizer):
        raise AttributeValueError(f"optimizer must be a tinyml_lab.train Optimizer (SGD, Adam), got {optimizer!r}")
    if optimizer.qas:
        raise AttributeValueError("qas=True is for int8 training (fit_quantized); float training has no scales")
    from .sparse import selection_of

    sel = selection_of(graph, trainable)
    bg = BackwardGraph(graph, sel.trainable, loss, backend=backend, label_smoothing=label_smoothing)
    stepper = FloatStepper(bg, optimizer, batch_norm, float(bn_momentum), sel)
    history = run_epochs(bg, stepper, x, y, epochs, batch_size, seed, batch_norm == "batch", validation_data,
                         callbacks, quiet, optimizer.lr)
    history.recipe = {"kind": "float", "optimizer": repr(optimizer), "epochs": epochs, "batch_size": batch_size,
                      "seed": seed, "loss": loss, "trainable": list(bg.trainable), "batch_norm": batch_norm,
                      "label_smoothing": label_smoothing,
                      "channels": {n: len(c) for n, c in sel.channels.items()}}
    return history
