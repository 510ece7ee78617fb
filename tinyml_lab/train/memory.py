"""Training memory: the compiled step's buffers, sized in a byte convention, planned into one arena.

The convention of Lin et al. ("On-Device Training Under 256KB Memory",
NeurIPS 2022) for a device training its int8 model (:data:`PAPER`):

* activations and weights int8 (1 byte), biases int32 (4 bytes), as deployed;
* a ReLU/ReLU6 passes gradients through a **1-bit mask** of its output
  (``ceil(n / 8)`` bytes), not through the activation;
* gradients (of activations and of weights) in float32, 4 bytes: the
  backward pass runs in float on the dequantized activations;
* SGD without momentum on the device, so no optimizer state; an optimizer
  with state adds ``state_buffers`` float32 copies of each trained tensor
  (of its trained channels);
* frozen weights stay in flash and cost no SRAM; **trainable weights live in
  SRAM for the whole step** (they are written), as do their optimizer states.

:data:`FLOAT32` counts everything in 4 bytes and keeps whole activations for
ReLU, as a float framework would. Batch size 1 by default, as on a device.

:func:`training_memory` plans one compiled step's buffers (their lifetimes,
from the op order) with a :mod:`tinyml_lab.memory` planner and reports the
arena and where its peak lies. :func:`memory_ladder` is the paper's ladder:
full update, sparse update, sparse update with reordering.

    >>> memory_ladder(graph, scheme)["sparse_reordered_bytes"]     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ..errors import AttributeValueError
from ..graph import Graph
from ..memory.lifetimes import Lifetimes, schedule_lifetimes
from ..memory.planners import plan
from ..report import format_bytes, format_table
from .compiler import CompiledStep
from .optim import SGD, Optimizer
from .sparse import Selection, SparseScheme


@dataclass(frozen=True)
class Convention:
    """Bytes per element of each kind of buffer; ``mask_bits`` bits per element of a ReLU mask."""

    name: str
    activation: int
    weight: int
    bias: int
    gradient: int
    mask_bits: int
    state: int
    description: str

    def size(self, kind: str, elements: int, role: str = "") -> int:
        if kind == "mask":
            return -(-elements * self.mask_bits // 8)
        if kind in ("input", "activation", "saved"):
            return elements * self.activation
        if kind == "label":
            return elements * 4
        if kind in ("gradient", "weight_gradient"):
            return elements * self.gradient
        if kind == "weight":
            return elements * (self.bias if role == "bias" else self.weight)
        if kind == "optimizer":
            return elements * self.state
        raise AttributeValueError(f"no size rule for buffers of kind {kind!r}")


PAPER = Convention("int8", activation=1, weight=1, bias=4, gradient=4, mask_bits=1, state=4,
                   description="int8 activations and weights, int32 biases, 1-bit ReLU masks, float32 gradients, "
                               "frozen weights in flash")
FLOAT32 = Convention("float32", activation=4, weight=4, bias=4, gradient=4, mask_bits=32, state=4,
                     description="float32 everything, ReLU through its float output, frozen weights in flash")
CONVENTIONS = {"int8": PAPER, "paper": PAPER, "float32": FLOAT32}


def convention_of(c: "str | Convention") -> Convention:
    if isinstance(c, Convention):
        return c
    try:
        return CONVENTIONS[str(c).lower()]
    except KeyError:
        raise AttributeValueError(f"unknown memory convention {c!r}; choose one of int8, float32") from None


def step_lifetimes(step: CompiledStep, convention: "str | Convention" = "int8", batch: int = 1) -> Lifetimes:
    """The buffers of a compiled step as lifetimes: op ``i`` is schedule step ``i``; a buffer lives from
    the op that writes it (the step's start for the input, the label, trainable weights and optimizer
    state) to its last reader (the end for weights and state). A gate is in place; an Add's first
    input gradient and a reshape's take over the gradient they pass on when it dies there."""
    conv = convention_of(convention)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise AttributeValueError(f"batch must be an int >= 1, got {batch!r}")
    sizes, kinds = {}, {}
    for b in step.buffers.values():
        sizes[b.name] = conv.size(b.kind, b.elements * (batch if b.per_sample else 1), b.role)
        kinds[b.name] = b.kind
    inputs = [b.name for b in step.buffers.values() if b.kind in ("input", "label", "weight", "optimizer")]
    keep = [b.name for b in step.buffers.values() if b.kind in ("weight", "optimizer")]
    steps = [(f"{op.kind} {op.node}", list(op.reads), list(op.writes)) for op in step.ops]
    first: dict[str, int] = {n: 0 for n in inputs}
    last: dict[str, int] = {}
    for i, op in enumerate(step.ops):
        for t in op.reads:
            last[t] = i
        for t in op.writes:
            first.setdefault(t, i)
    may_share: dict[str, str] = {}
    taken: set[str] = set()
    for i, op in enumerate(step.ops):
        if op.kind == "forward" and conv.activation == 1 and op.reads:
            # int8 forward in place, as deployed: an Add over a dying input of its size, and a depthwise
            # layer channel by channel over its dying input through a one-channel scratch buffer
            node = step.graph.node(op.node)
            out = op.writes[0]
            cands = [t for t in op.reads if step.buffers[t].kind in ("activation", "input")]
            if node.op == "DepthwiseConv2D":
                cands = cands[:1]
            elif node.op != "Add":
                cands = []
            for src in cands:
                if last.get(src) == i and src not in taken and sizes[out] <= sizes[src] and src not in keep:
                    may_share[out] = src
                    taken.add(src)
                    if node.op == "DepthwiseConv2D":
                        h, w = step.graph.tensors[out].shape[:2]
                        scratch = f"scratch({node.name})"
                        sizes[scratch], kinds[scratch] = h * w * batch, "scratch"
                        steps[i] = (steps[i][0], steps[i][1], steps[i][2] + [scratch])
                    break
            continue
        if op.kind != "grad_input" or not op.reads:
            continue
        src = op.reads[0]
        new = [w for w in op.writes if first.get(w) == i and w not in op.reads]
        if (new and last.get(src) == i and src not in taken and sizes[new[0]] == sizes[src]
                and src not in keep):
            may_share[new[0]] = src
            taken.add(src)
    return schedule_lifetimes(steps, sizes, keep=keep, inputs=inputs, may_share=may_share, kinds=kinds,
                              name=f"{step.graph.name} training step ({conv.name})")


@dataclass
class TrainingMemory:
    """The planned arena of one compiled training step and what fills it at its peak."""

    arena_bytes: int
    lower_bound: int
    peak_op: str
    breakdown: dict[str, int]
    forward_peak: int
    backward_peak: int
    trainable_bytes: int
    planner: str
    convention: str

    def to_json(self) -> dict:
        return dict(vars(self))


def training_memory(step: CompiledStep, convention: "str | Convention" = "int8", batch: int = 1,
                    planner: str = "greedy-size", alignment: int = 16) -> TrainingMemory:
    """Plan the step's buffers into one arena (``planner`` of :func:`tinyml_lab.memory.plan`).

    ``breakdown`` sums the bytes live at the peak op by buffer kind;
    ``forward_peak`` and ``backward_peak`` are the largest live bytes over the
    forward ops and over the loss, backward and update ops;
    ``trainable_bytes`` the SRAM that trainable weights (and state) hold.
    """
    lt = step_lifetimes(step, convention, batch)
    p = plan(lt, planner, alignment)
    live = lt.live_bytes(alignment)
    peak = int(live.argmax())
    breakdown: dict[str, int] = {}
    for b in lt.live_at(peak):
        breakdown[b.kind] = breakdown.get(b.kind, 0) + b.size
    n_fwd = sum(op.kind == "forward" for op in step.ops)
    trainable = sum(b.size for b in lt.buffers if b.kind in ("weight", "optimizer"))
    return TrainingMemory(p.arena_bytes, lt.lower_bound(alignment), lt.steps[peak], breakdown,
                          int(live[:n_fwd].max()) if n_fwd else 0, int(live[n_fwd:].max()), trainable,
                          planner, convention_of(convention).name)


def scheme_bytes(graph: Graph, scheme: "SparseScheme | Selection | Iterable[str] | None", reorder: bool = True,
                 convention: "str | Convention" = "int8", optimizer: Optimizer | None = None,
                 exact: bool = False) -> int:
    """Peak bytes of one step of ``scheme``: the live-bytes lower bound (fast, what the search uses), or
    the planned arena with ``exact=True``."""
    step = CompiledStep(graph, scheme, optimizer or SGD(lr=0.01, qas=graph.is_quantized), reorder)
    if exact:
        return training_memory(step, convention).arena_bytes
    return step_lifetimes(step, convention).lower_bound(16)


def memory_ladder(graph: Graph, scheme: "SparseScheme | Selection", convention: "str | Convention" = "int8",
                  optimizer: Optimizer | None = None, planner: str = "greedy-size", batch: int = 1) -> dict:
    """The three rungs of the paper's memory ladder for ``graph`` (a deployed graph, BatchNorm folded):

    * ``full_bytes``: every weight and bias trained, all gradients held until the updates at the end;
    * ``sparse_bytes``: ``scheme`` compiled (frozen gradients and their activations pruned, sliced
      layers), updates still at the end;
    * ``sparse_reordered_bytes``: the same with each update right after its gradient.

    Each is the arena planned by ``planner``; the dict also holds the details
    (:class:`TrainingMemory`) of each rung and the reduction factors.
    """
    opt = optimizer or SGD(lr=0.01, qas=graph.is_quantized)
    rungs = {
        "full": CompiledStep(graph, SparseScheme.full(graph), opt, reorder=False),
        "sparse": CompiledStep(graph, scheme, opt, reorder=False),
        "sparse_reordered": CompiledStep(graph, scheme, opt, reorder=True),
    }
    mem = {k: training_memory(s, convention, batch, planner) for k, s in rungs.items()}
    out = {f"{k}_bytes": m.arena_bytes for k, m in mem.items()}
    out.update({
        "scheme": scheme.to_json() if isinstance(scheme, SparseScheme) else {"trainable": list(scheme.trainable)},
        "convention": convention_of(convention).description,
        "batch": batch,
        "planner": planner,
        "sparse_vs_full": out["full_bytes"] / max(out["sparse_bytes"], 1),
        "reordered_vs_sparse": out["sparse_bytes"] / max(out["sparse_reordered_bytes"], 1),
        "details": {k: m.to_json() for k, m in mem.items()},
    })
    return out


def format_ladder(ladder: dict) -> str:
    """The ladder as a table: bytes, KB, factor and what fills each peak."""
    rows = []
    prev = None
    for k, label in (("full", "full update"), ("sparse", "sparse update"),
                     ("sparse_reordered", "sparse update + reordering")):
        d = ladder["details"][k]
        b = ladder[f"{k}_bytes"]
        factor = "-" if prev is None else f"{prev / max(b, 1):.1f}x"
        at_peak = ", ".join(f"{kind} {format_bytes(v)}" for kind, v in
                            sorted(d["breakdown"].items(), key=lambda kv: -kv[1]))
        rows.append([label, f"{b:,}", format_bytes(b), factor, format_bytes(d["forward_peak"]),
                     format_bytes(d["backward_peak"]), d["peak_op"], at_peak])
        prev = b
    return format_table(["rung", "arena bytes", "arena", "vs previous", "forward peak", "backward peak",
                         "peak at", "live at the peak"], rows, align="lrrrrrll")


__all__ = ["Convention", "PAPER", "FLOAT32", "CONVENTIONS", "step_lifetimes", "training_memory", "TrainingMemory",
           "scheme_bytes", "memory_ladder", "format_ladder", "convention_of"]
