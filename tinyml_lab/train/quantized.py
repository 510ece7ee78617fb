"""Training the real int8 graph, as a microcontroller would (Lin et al., "On-Device Training Under
256KB Memory", NeurIPS 2022).

**Forward**: the int8 graph from :func:`~tinyml_lab.quant.quantize_model`,
run by the same int8 kernels as inference (:class:`~tinyml_lab.interpreter.Interpreter`).

**Backward**: in float, through the dequantized int8 activations
(``x = s_x (q_x - z_x)``), with every ReLU/ReLU6 mask read from the int8
output codes and the clamp bounds of the deployed kernel
(:class:`~tinyml_lab.train.autodiff.BackwardGraph` does both). The
gradients are taken with respect to what the device stores: the int8
weights ``W_bar = W / s_W`` and the int32 biases ``b_bar = b / (s_x s_W)``,

    ``G_Wbar = s_W G_W``,   ``G_bbar = s_x s_W G_b``   (per output channel).

**Update**: the optimizer's step (with or without QAS, see
:mod:`tinyml_lab.train.optim`) is rounded and written back into the
integers, ``W_bar <- clamp(W_bar + round(delta), -127, 127)`` and
``b_bar <- clamp(b_bar + round(delta), int32)``; the scales stay fixed.

**Rounding, and why there is no float shadow.** The paper updates the int8
weights directly, and so does this trainer by default (``rounding="nearest"``,
ties away from zero): the device keeps no float copy of its weights (a
float32 shadow costs four times the int8 weights, the memory on-device
training is short of). The consequence is the mechanism behind the paper's
QAS results: a step smaller than half an integer step rounds to zero and is
lost, every time. Without QAS the step is ``-lr G_Wbar = -lr s_W G_W``,
which in real units is ``-lr s_W^2 G_W``: with ``s_W`` around 1e-2 a learning
rate that suits float training moves the weights ~10^4 times too little,
and in integer units the step is far below 1/2, so nothing changes at all.
With QAS the step is ``-lr G_W / s_W``, the float step in integer units,
and large enough to survive rounding. The figures ``update_zero_fraction``
(share of weight entries whose nonzero step rounded to zero) and
``update_abs_mean`` (mean size of the step, in integer units) in the
history make this visible. ``rounding="stochastic"`` (``floor(delta + u)``,
``u ~ U[0, 1)``, seeded; Gupta et al., "Deep Learning with Limited Numerical
Precision", ICML 2015) keeps small steps in expectation, still without a
shadow; it does not fix the ``s^2`` scale mismatch, which is QAS's job.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..errors import AttributeValueError, TinyMLError
from ..graph import Graph
from ..kernels.reference import round_half_away_np
from .autodiff import BackwardGraph, Gradients, Tape, broadcast_scale
from .fit import Callback, History, Stepper, run_epochs
from .optim import SGD, Optimizer

if TYPE_CHECKING:
    from .sparse import Selection, SparseScheme

ROUNDINGS = ("nearest", "stochastic")
_LIMITS = {"int8": (-127, 127), "int32": (-(2**31), 2**31 - 1)}


def qas_scales(graph: Graph, names: Iterable[str]) -> dict[str, np.ndarray | float]:
    """The quantization scale of each stored parameter, shaped to broadcast against it:
    ``s_W`` (per output channel) for an int8 weight, ``s_x s_W`` for an int32 bias. QAS
    multiplies each gradient by the inverse square of these."""
    out = {}
    for n in names:
        t = graph.tensors[n]
        if t.dtype not in _LIMITS:
            raise TinyMLError(f"{n!r} is {t.dtype}; QAS scales exist for int8 weights and int32 biases")
        out[n] = broadcast_scale(t)
    return out


def round_steps(delta: np.ndarray, rounding: str = "nearest", rng: np.random.Generator | None = None) -> np.ndarray:
    """Integer steps from real-valued updates: nearest (ties away from zero), or stochastic
    ``floor(delta + u)`` with ``u ~ U[0, 1)`` from ``rng``."""
    d = np.asarray(delta, dtype=np.float64)
    if rounding == "nearest":
        return round_half_away_np(d).astype(np.int64)
    if rounding == "stochastic":
        if rng is None:
            raise AttributeValueError("stochastic rounding needs a seeded numpy Generator")
        return np.floor(d + rng.random(d.shape)).astype(np.int64)
    raise AttributeValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")


def apply_update(graph: Graph, grads: dict[str, np.ndarray], optimizer: Optimizer, rounding: str = "nearest",
                 rng: np.random.Generator | None = None, selection: "Selection | None" = None) -> dict[str, float]:
    """One optimizer step on the stored integers of an int8 graph, in place.

    ``grads`` are with respect to the stored values (``G_Wbar``, ``G_bbar``,
    as :meth:`BackwardGraph.backward` gives them for an int8 graph). The
    optimizer sees the integers as floats and, with ``qas=True``, the scales
    from :func:`qas_scales`. Each ``delta`` is rounded (:func:`round_steps`)
    and added with saturation: ``[-127, 127]`` for int8 weights, the int32
    range for biases. With a ``selection``
    (:class:`~tinyml_lab.train.sparse.Selection`) a tensor trained on some
    output channels only takes a gradient of those channels and changes
    only them.

    Returns figures over the int8 weights: ``update_zero_fraction``, the share
    of entries whose nonzero ``delta`` rounded to a zero step;
    ``update_changed_fraction``, the share that changed; ``update_abs_mean``,
    the mean ``|delta|`` in integer units.
    """
    counts = UpdateCounts()
    for n, g in grads.items():
        counts.add(update_int8_tensor(graph, n, g, optimizer, rounding, rng, selection))
    optimizer.steps_ += 1
    return counts.figures()


class UpdateCounts:
    """Running sums behind the ``update_*`` figures of :func:`apply_update`."""

    def __init__(self) -> None:
        self.zero = self.changed = self.total = 0
        self.abs_sum = 0.0

    def add(self, c: tuple[int, int, int, float]) -> None:
        self.zero += c[0]
        self.changed += c[1]
        self.total += c[2]
        self.abs_sum += c[3]

    def figures(self) -> dict[str, float]:
        if self.total == 0:
            return {}
        return {"update_zero_fraction": self.zero / self.total, "update_changed_fraction": self.changed / self.total,
                "update_abs_mean": self.abs_sum / self.total}


def update_int8_tensor(graph: Graph, name: str, grad: np.ndarray, optimizer: Optimizer, rounding: str = "nearest",
                       rng: np.random.Generator | None = None, selection: "Selection | None" = None
                       ) -> tuple[int, int, int, float]:
    """Update one stored int8 weight or int32 bias in place from its gradient (of the selected
    channels when ``selection`` slices it): ``q <- clamp(q + round(delta))``. Returns
    ``(zero steps, changed entries, entries, sum |delta|)`` for an int8 weight, zeros for a bias."""
    t = graph.tensors[name]
    if t.dtype not in _LIMITS:
        raise TinyMLError(f"{name!r} is {t.dtype}; the int8 trainer updates int8 weights and int32 biases")
    index = selection.index(name, t.data.ndim) if selection is not None else (slice(None),) * t.data.ndim
    current = t.data[index]
    scale = None
    if optimizer.qas:
        scale = broadcast_scale(t)
        if isinstance(scale, np.ndarray) and selection is not None:
            scale = selection.take(name, scale)
    d = optimizer.update_one(name, current.astype(np.float32), grad, scale)
    steps = round_steps(d, rounding, rng)
    lo, hi = _LIMITS[t.dtype]
    new = np.clip(current.astype(np.int64) + steps, lo, hi)
    out = (0, 0, 0, 0.0)
    if t.dtype == "int8":
        out = (int(((steps == 0) & (d != 0)).sum()), int((new != current).sum()), d.size, float(np.abs(d).sum()))
    t.data[index] = new.astype(t.dtype)
    return out


class QuantizedStepper(Stepper):
    """Updates of the int8 trainer: :func:`apply_update`, and snapshots of the integers."""

    def __init__(self, bg: BackwardGraph, optimizer: Optimizer, rounding: str, seed: int,
                 selection: "Selection | None" = None):
        if rounding not in ROUNDINGS:
            raise AttributeValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, got {rounding!r}")
        self.bg, self.opt, self.rounding = bg, optimizer, rounding
        self.selection = selection
        self.rng = np.random.default_rng([int(seed), 1]) if rounding == "stochastic" else None

    def snapshot(self) -> object:
        g = self.bg.graph
        return {n: g.tensors[n].data.copy() for n in self.bg.trainable}, self.opt.state_dict()

    def restore(self, snap: object) -> None:
        arrays, state = snap  # type: ignore[misc]
        for n, a in arrays.items():
            self.bg.graph.tensors[n].data[...] = a
        self.opt.load_state_dict(state)

    def apply(self, tape: Tape, grads: Gradients) -> dict:
        params = grads.params
        if self.selection is not None:
            params = {n: self.selection.take(n, g) for n, g in params.items()}
        return apply_update(self.bg.graph, params, self.opt, self.rounding, self.rng, self.selection)


def fit_quantized(graph: Graph, x: np.ndarray, y: np.ndarray, epochs: int = 10, batch_size: int = 32,
                  optimizer: Optimizer | None = None, seed: int = 0, loss: str = "cross_entropy",
                  trainable: "Iterable[str] | SparseScheme | Selection | None" = None, rounding: str = "nearest",
                  validation_data: tuple | None = None, callbacks: Sequence[Callback] = (),
                  quiet: bool = False, backend: str = "numba") -> History:
    """Train an int8 graph in place: int8 forward as deployed, float backward, integer updates.

    Args:
        graph: an int8 graph from :func:`~tinyml_lab.quant.quantize_model`.
        x: real-valued inputs (quantized with the graph's input scale) or int8 codes.
        y: integer labels (``"cross_entropy"``, on the dequantized logits) or
            targets shaped like the output (``"mse"``).
        optimizer: default ``SGD(lr=0.01, momentum=0.9, qas=True)``; pass
            ``qas=False`` to see training without Quantization-Aware Scaling.
        trainable: tensor names (int8 weights, int32 biases); None for all; or a
            :class:`~tinyml_lab.train.sparse.SparseScheme` (channels picked by weight norm).
        rounding: ``"nearest"`` (the paper; no float shadow) or ``"stochastic"``.
        Other arguments as in :func:`~tinyml_lab.train.fit`.

    Returns:
        A :class:`~tinyml_lab.train.History`; each row also holds
        ``update_zero_fraction``, ``update_changed_fraction`` and
        ``update_abs_mean`` averaged over the epoch's steps.
    """
    if not graph.is_quantized:
        raise TinyMLError(
            f"graph '{graph.name}' is float; quantize it first (tinyml_lab.quant.quantize_model) or train it "
            f"with tinyml_lab.train.fit"
        )
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise AttributeValueError(f"seed must be an int, got {seed!r}")
    optimizer = SGD(lr=0.01, momentum=0.9, qas=True) if optimizer is None else optimizer
    if not isinstance(optimizer, Optimizer):
        raise AttributeValueError(f"optimizer must be a tinyml_lab.train Optimizer (SGD, Adam), got {optimizer!r}")
    from .sparse import selection_of

    sel = selection_of(graph, trainable)
    bg = BackwardGraph(graph, sel.trainable, loss, backend=backend)
    stepper = QuantizedStepper(bg, optimizer, rounding, int(seed), sel)
    history = run_epochs(bg, stepper, x, y, epochs, batch_size, seed, False, validation_data, callbacks, quiet,
                         optimizer.lr)
    history.recipe = {"kind": "int8", "optimizer": repr(optimizer), "epochs": epochs, "batch_size": batch_size,
                      "seed": seed, "loss": loss, "trainable": list(bg.trainable), "rounding": rounding}
    return history
