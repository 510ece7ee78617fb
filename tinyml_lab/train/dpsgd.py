"""Differentially private SGD (Abadi et al., "Deep Learning with Differential Privacy", CCS 2016).

One step, for a batch ``B`` drawn by Poisson sampling (each of the ``N``
examples joins independently with probability ``q``):

1. the gradient ``g_i`` of every example's own loss, over all trainable tensors
   (:func:`per_example_gradients`);
2. each clipped to L2 norm at most ``C``: ``g_i <- g_i min(1, C / ||g_i||)``,
   the norm taken over all trainable tensors together (:func:`clip_gradients`);
3. summed, Gaussian noise ``N(0, sigma^2 C^2 I)`` added, and divided by the
   *expected* batch size ``q N`` (not ``|B|``, which would itself depend on
   the data): ``g~ = (sum_i clip(g_i) + N(0, sigma^2 C^2 I)) / (q N)``
   (:func:`dp_gradient`);
4. an ordinary optimizer step with ``g~`` (post-processing costs no privacy).

The privacy of the whole run is the composition of ``T`` sampled Gaussian
mechanisms of rate ``q`` and noise multiplier ``sigma``, tracked by
:class:`~tinyml_lab.mlops.accountant.RDPAccountant`. That accounting
**assumes Poisson sampling**, which is why :func:`dp_fit` samples its
batches that way (the batch size varies around ``q N``, and a batch may be
empty: then the step is pure noise). Shuffled fixed-size batches would need
a different analysis.

Per-example gradients come from a batch-of-one backward pass per example
(``training=False``): every example's gradient is computed exactly as the
engine computes any gradient, and one example's gradient cannot depend on
another's. BatchNorm therefore normalises with its stored running statistics
(an affine layer whose ``gamma`` and ``beta`` are trained) and those
statistics are not updated: batch statistics would mix examples, and updating
the running ones from private data would release them without noise.

>>> from tinyml_lab import zoo
>>> from tinyml_lab.data import load_digits
>>> d = load_digits(16)
>>> g = zoo.get("digits-cnn", weights="random")
>>> h = dp_fit(g, d.x_train, d.y_train, noise_multiplier=1.1, max_grad_norm=1.0,
...            sampling_rate=64 / len(d.x_train), steps=5, lr=0.5, seed=0, delta=1e-5)  # doctest: +SKIP
>>> h.last["epsilon"]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ..errors import AttributeValueError, TinyMLError
from ..graph import Graph
from .autodiff import BackwardGraph
from .fit import DivergenceError, History, check_training_data, evaluate
from .optim import SGD, Optimizer


@dataclass
class PerExample:
    """Per-example results of a batch: ``grads[name]`` has shape ``(B, *param.shape)``; ``losses`` and
    ``outputs`` (the graph's output rows) are per example."""

    grads: dict[str, np.ndarray]
    losses: np.ndarray
    outputs: np.ndarray

    @property
    def norms(self) -> np.ndarray:
        """``||g_i||_2`` over all trainable tensors together, one per example."""
        return global_norms(self.grads)


@dataclass
class DPGradient:
    """The result of one private gradient: the noisy average and what went into it.

    ``grads``: ``(sum_i clip(g_i) + noise) / expected_batch_size`` per trainable tensor.
    ``clean``: the same without the noise. ``norms``: per-example norms before clipping.
    ``batch_size``: examples in this batch. ``loss_sum``, ``correct``: summed over the batch
    (``correct`` is None for MSE).
    """

    grads: dict[str, np.ndarray]
    clean: dict[str, np.ndarray]
    norms: np.ndarray
    batch_size: int
    loss_sum: float
    correct: int | None


def global_norms(grads: dict[str, np.ndarray]) -> np.ndarray:
    """``sqrt(sum_t ||g_i^t||^2)`` for each example ``i``, ``t`` over the tensors of ``grads`` (each ``(B, ...)``)."""
    if not grads:
        raise AttributeValueError("no per-example gradients: the graph has no trainable tensor")
    sq = sum(np.square(g.reshape(len(g), -1).astype(np.float64)).sum(axis=1) for g in grads.values())
    return np.sqrt(sq)


def per_example_gradients(bg: BackwardGraph, x: np.ndarray, y: np.ndarray,
                          weights: dict[str, np.ndarray] | None = None) -> PerExample:
    """``g_i = dL(f(x_i), y_i) / dtheta`` for every example, one batch-of-one backward pass each.

    Args:
        bg: a :class:`BackwardGraph` of a float graph (its trainable tensors are differentiated).
        x, y: a batch of inputs and targets.
        weights: constants overriding the graph's (e.g. float64 copies, for finite differences).
    """
    if bg.quantized:
        raise TinyMLError(f"graph '{bg.graph.name}' is int8; DP-SGD here trains float graphs "
                          f"(train the float model privately, then quantize it)")
    x = bg.check_input(x)
    y = bg.check_target(y, len(x))
    names = bg.trainable
    grads = {n: np.empty((len(x),) + bg.graph.tensors[n].shape, dtype=np.float64) for n in names}
    losses = np.empty(len(x), dtype=np.float64)
    outputs = []
    for i in range(len(x)):
        tape = bg.forward(x[i: i + 1], training=False, weights=weights)
        gr = bg.backward(tape, y[i: i + 1])
        for n in names:
            grads[n][i] = gr.params[n]
        losses[i] = gr.loss
        outputs.append(tape.values[bg.graph.outputs[0]][0])
    return PerExample(grads, losses, np.asarray(outputs))


def clip_gradients(grads: dict[str, np.ndarray], max_grad_norm: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``g_i min(1, C / ||g_i||)`` for every example; returns the clipped gradients and the norms before clipping."""
    c = _positive(max_grad_norm, "max_grad_norm")
    norms = global_norms(grads)
    factor = np.minimum(1.0, c / np.maximum(norms, 1e-300))
    clipped = {n: g * factor.reshape((-1,) + (1,) * (g.ndim - 1)) for n, g in grads.items()}
    return clipped, norms


def dp_gradient(bg: BackwardGraph, x: np.ndarray, y: np.ndarray, noise_multiplier: float, max_grad_norm: float,
                expected_batch_size: float, rng: np.random.Generator) -> DPGradient:
    """``(sum_i clip(g_i, C) + N(0, sigma^2 C^2 I)) / E|B|`` over the batch ``(x, y)``, which may be empty.

    Args:
        bg: the backward graph of a float graph.
        x, y: the batch (Poisson-sampled by the caller); ``len(x) == 0`` gives pure noise.
        noise_multiplier: ``sigma`` >= 0 (0 means no noise and no privacy).
        max_grad_norm: ``C`` > 0.
        expected_batch_size: ``q N``, the divisor.
        rng: draws the noise.
    """
    sigma = _nonnegative(noise_multiplier, "noise_multiplier")
    c = _positive(max_grad_norm, "max_grad_norm")
    m = _positive(expected_batch_size, "expected_batch_size")
    shapes = {n: bg.graph.tensors[n].shape for n in bg.trainable}
    if len(x):
        pe = per_example_gradients(bg, x, y)
        clipped, norms = clip_gradients(pe.grads, c)
        sums = {n: g.sum(axis=0) for n, g in clipped.items()}
        loss_sum = float(pe.losses.sum())
        correct = (int((pe.outputs.argmax(axis=1) == np.asarray(y)).sum())
                   if bg.loss_kind == "cross_entropy" else None)
    else:
        sums = {n: np.zeros(s) for n, s in shapes.items()}
        norms, loss_sum = np.zeros(0), 0.0
        correct = 0 if bg.loss_kind == "cross_entropy" else None
    noisy = {n: (s + (sigma * c * rng.standard_normal(s.shape) if sigma > 0 else 0.0)) / m for n, s in sums.items()}
    clean = {n: s / m for n, s in sums.items()}
    return DPGradient(noisy, clean, norms, len(x), loss_sum, correct)


def poisson_batch(rng: np.random.Generator, n: int, q: float) -> np.ndarray:
    """Indices of a Poisson-sampled batch: each of ``n`` examples independently with probability ``q``."""
    return np.flatnonzero(rng.random(n) < q)


# --------------------------------------------------------------------------- training

def dp_fit(graph: Graph, x: np.ndarray, y: np.ndarray, noise_multiplier: float, max_grad_norm: float,
           sampling_rate: float, epochs: int | None = None, steps: int | None = None, lr: float = 0.1,
           seed: int = 0, delta: float = 1e-5, optimizer: Optimizer | None = None,
           trainable: Iterable[str] | None = None, loss: str = "cross_entropy",
           validation_data: tuple | None = None, quiet: bool = True, backend: str = "numba") -> History:
    """Train a float graph in place with DP-SGD and account for the privacy spent.

    Args:
        graph: a float32 graph; updated in place. BatchNorm uses its stored statistics (see the module text).
        x, y: the private training set.
        noise_multiplier: ``sigma``; the noise std is ``sigma * max_grad_norm``. 0 trains without noise
            (epsilon is then infinite).
        max_grad_norm: ``C``, the per-example clipping norm.
        sampling_rate: ``q`` in (0, 1]: each step takes every example with probability ``q`` (Poisson
            sampling, as the accountant assumes); the expected batch size is ``q N``.
        epochs, steps: give exactly one; an epoch is ``round(1 / q)`` steps (one pass in expectation).
        lr: learning rate of the default optimizer, plain SGD.
        seed: draws the batches and the noise; equal seeds give equal runs.
        delta: the delta of the reported (epsilon, delta), in (0, 1); e.g. below ``1 / N``.
        optimizer: overrides ``lr`` (any engine optimizer; it only post-processes the noisy gradient).
        trainable: tensor names to train (None for all parameters).
        loss: ``"cross_entropy"`` or ``"mse"``.
        validation_data: ``(x_val, y_val)`` evaluated after each epoch.
        quiet: no progress bar.
        backend: ``"numba"`` (float32) or ``"reference"`` (float64).

    Returns:
        A :class:`~tinyml_lab.train.fit.History`, one row per epoch (the last may be partial with
        ``steps``): ``steps`` (so far), ``loss`` and ``accuracy`` over the sampled examples, ``batch``
        (mean batch size), ``grad_norm`` (mean per-example norm before clipping), ``clipped`` (fraction of
        examples clipped), ``epsilon`` (improved conversion), ``epsilon_classic``, ``order``, ``val_*``
        and ``seconds``. The recipe records the privacy parameters.

    Raises:
        DivergenceError: the noisy update made a weight non-finite; the weights are restored.
    """
    from tqdm.auto import tqdm

    from ..mlops.accountant import RDPAccountant, check_delta, check_q

    if graph.is_quantized:
        raise TinyMLError(f"graph '{graph.name}' is int8; DP-SGD here trains float graphs "
                          f"(train the float model privately, then quantize it)")
    sigma = _nonnegative(noise_multiplier, "noise_multiplier")
    c = _positive(max_grad_norm, "max_grad_norm")
    q = check_q(sampling_rate)
    delta = check_delta(delta)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise AttributeValueError(f"seed must be an int, got {seed!r}")
    per_epoch = max(1, int(round(1.0 / q)))
    if (epochs is None) == (steps is None):
        raise AttributeValueError("give exactly one of epochs= or steps= (an epoch is round(1 / sampling_rate) steps)")
    for value, what in ((epochs, "epochs"), (steps, "steps")):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1):
            raise AttributeValueError(f"{what} must be an int >= 1, got {value!r}")
    total = int(steps) if steps is not None else int(epochs) * per_epoch  # type: ignore[operator]
    optimizer = SGD(lr=lr) if optimizer is None else optimizer
    if not isinstance(optimizer, Optimizer):
        raise AttributeValueError(f"optimizer must be a tinyml_lab.train Optimizer (SGD, Adam), got {optimizer!r}")
    if optimizer.qas:
        raise AttributeValueError("qas=True is for int8 training; DP-SGD here trains float graphs")

    bg = BackwardGraph(graph, trainable, loss, backend=backend)
    x, y, vx, vy = check_training_data(bg, x, y, validation_data)
    n = len(x)
    expected = q * n
    rng = np.random.default_rng(int(seed))
    accountant = RDPAccountant()
    params = {name: graph.tensors[name].data for name in bg.trainable}
    history = History()
    bar = tqdm(total=total, desc=f"dp-sgd {graph.name}", disable=quiet, leave=False, unit="step")
    done = 0
    try:
        while done < total:
            t0 = time.perf_counter()
            todo = min(per_epoch, total - done)
            loss_sum, correct, seen, norm_sum, clipped = 0.0, 0, 0, 0.0, 0
            for _ in range(todo):
                idx = poisson_batch(rng, n, q)
                step = dp_gradient(bg, x[idx], y[idx], sigma, c, expected, rng)
                before = {k: v.copy() for k, v in params.items()}
                optimizer.step(params, step.grads)
                if not all(np.all(np.isfinite(v)) for v in params.values()):
                    for k, v in before.items():
                        params[k][...] = v
                    raise DivergenceError(
                        f"DP-SGD on '{graph.name}' diverged at step {done + 1}: a weight became non-finite; "
                        f"the weights are restored to those before that step. Lower lr (it is {optimizer.lr:g}).")
                done += 1
                seen += step.batch_size
                loss_sum += step.loss_sum
                correct += step.correct or 0
                norm_sum += float(step.norms.sum())
                clipped += int((step.norms > c).sum())
                bar.update(1)
            if sigma > 0:
                accountant.step(q, sigma, todo)
            row: dict = {"epoch": len(history) + 1, "steps": done,
                         "loss": loss_sum / seen if seen else float("nan")}
            if bg.loss_kind == "cross_entropy":
                row["accuracy"] = correct / seen if seen else float("nan")
            row.update({"batch": seen / todo, "grad_norm": norm_sum / seen if seen else 0.0,
                        "clipped": clipped / seen if seen else 0.0})
            if sigma > 0:
                spent = accountant.get_epsilon(delta)
                row.update({"epsilon": spent.epsilon, "epsilon_classic": spent.epsilon_classic,
                            "order": spent.order})
            else:
                row.update({"epsilon": math.inf, "epsilon_classic": math.inf, "order": float("nan")})
            if validation_data is not None:
                ev = evaluate(graph, vx, vy, loss=bg.loss_kind, backend=backend)
                row.update({f"val_{k}": v for k, v in ev.items()})
            row["seconds"] = time.perf_counter() - t0
            history.rows.append(row)
    finally:
        bar.close()
    history.recipe = {"kind": "dp-sgd", "optimizer": repr(optimizer), "noise_multiplier": sigma,
                      "max_grad_norm": c, "sampling_rate": q, "sampling": "poisson", "expected_batch": expected,
                      "steps": total, "steps_per_epoch": per_epoch, "delta": delta, "seed": int(seed),
                      "loss": loss, "trainable": list(bg.trainable), "batch_norm": "running (not updated)"}
    return history


def _positive(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or float(value) <= 0.0:
        raise AttributeValueError(f"{what} must be a finite number > 0, got {value!r}")
    return float(value)


def _nonnegative(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)) \
            or float(value) < 0.0:
        raise AttributeValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


__all__ = ["PerExample", "DPGradient", "global_norms", "per_example_gradients", "clip_gradients", "dp_gradient",
           "poisson_batch", "dp_fit"]
