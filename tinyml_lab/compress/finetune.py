"""Fine-tuning after pruning: a few epochs to win back what the pruning cost.

With masks (from :class:`~tinyml_lab.compress.prune.MagnitudePruner`), a
pruned weight stays zero: its gradient is masked before the update and the
weights are masked again after it, ``W <- m * (W - lr m * g)``. A channel-
pruned graph needs no mask: the channels are gone.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import AttributeValueError, GraphError
from ..graph import Graph
from ..train import SGD, History, Optimizer, cosine_decay
from .loop import backward_graph, check_int, train_loop


def fine_tune(graph: Graph, x: np.ndarray, y: np.ndarray, epochs: int = 10, batch_size: int = 32,
              optimizer: Optimizer | None = None, seed: int = 0, masks: Mapping[str, np.ndarray] | None = None,
              loss: str = "cross_entropy", batch_norm: str = "batch", schedule: str = "cosine",
              quiet: bool = True) -> History:
    """Train ``graph`` in place for ``epochs``, keeping masked weights at zero.

    Args:
        graph: a float graph (e.g. the output of a pruner).
        x, y: training inputs and labels (or targets, with ``loss="mse"``).
        epochs, batch_size, seed: the run; the seed orders the batches.
        optimizer: default ``SGD(lr=0.05, momentum=0.9)``.
        masks: ``{weight tensor name: bool array}``, True where a weight may be non-zero.
        loss: ``"cross_entropy"`` or ``"mse"``.
        batch_norm: ``"batch"`` (batch statistics, running ones updated) or ``"running"``.
        schedule: ``"cosine"`` (the learning rate decays to 0 along half a cosine over the
            epochs; the last epochs, at a small rate, let BatchNorm's running statistics settle)
            or ``"constant"``.

    Returns:
        The :class:`~tinyml_lab.train.History` of the run.
    """
    masks = {k: np.asarray(v, bool) for k, v in (masks or {}).items()}
    for name, m in masks.items():
        t = graph.tensors.get(name)
        if t is None or not t.is_const or t.shape != m.shape:
            raise GraphError(f"mask {name!r} of shape {m.shape} matches no weight of graph '{graph.name}'")
    if schedule not in ("cosine", "constant"):
        raise AttributeValueError(f"schedule must be 'cosine' or 'constant', got {schedule!r}")
    epochs = check_int(epochs, "epochs")
    opt = optimizer if optimizer is not None else SGD(lr=0.05, momentum=0.9)
    callbacks = [cosine_decay(opt, epochs)] if schedule == "cosine" else []
    bg = backward_graph(graph, loss)

    def transform(grads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: (g * masks[n] if n in masks else g) for n, g in grads.items()}

    def after_step(tape) -> None:
        for n, m in masks.items():
            graph.tensors[n].data *= m

    after_step(None)
    return train_loop(bg, x, y, epochs, batch_size, opt, seed, transform=transform if masks else None,
                      after_step=after_step if masks else None, batch_norm=batch_norm, callbacks=callbacks,
                      quiet=quiet,
                      desc=f"fine-tune {graph.name}")


def recalibrate_batchnorm(graph: Graph, x: np.ndarray, batch_size: int = 512) -> Graph:
    """Re-estimate every BatchNorm's running mean and variance on inputs ``x``, in place.

    Pruning changes what each BatchNorm sees, so its stored statistics no
    longer normalise; one forward pass in training mode over ``x`` (in
    batches of ``batch_size``, each BatchNorm using the batch's statistics,
    so later ones see normalised inputs) gives new ones, the mean over the
    batches: no gradient, no weight changes.
    """
    from ..train import BackwardGraph

    bns = [n for n in graph.nodes if n.op == "BatchNorm"]
    if not bns:
        return graph
    bg = BackwardGraph(graph, trainable=(), loss="mse")
    x = bg.check_input(x)
    sums: dict[str, list[np.ndarray]] = {n.name: [np.zeros(0), np.zeros(0)] for n in bns}
    batches = 0
    for i in range(0, len(x), check_int(batch_size, "batch_size")):
        tape = bg.forward(x[i: i + batch_size], training=True)
        for n in bns:
            extra = tape.saved[n.name]
            m = tape.values[n.inputs[0]].size // tape.values[n.inputs[0]].shape[-1]
            var = extra["batch_var"].astype(np.float64) * (m / max(m - 1, 1))
            s = sums[n.name]
            s[0] = extra["batch_mean"].astype(np.float64) + (s[0] if s[0].size else 0.0)
            s[1] = var + (s[1] if s[1].size else 0.0)
        batches += 1
    for n in bns:
        w = graph.weights(n)
        w["mean"].data = (sums[n.name][0] / batches).astype(np.float32)
        w["var"].data = (sums[n.name][1] / batches).astype(np.float32)
    return graph


__all__ = ["fine_tune", "recalibrate_batchnorm"]
