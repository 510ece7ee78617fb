"""Buffer lifetimes: which bytes must exist at which step of a schedule.

A schedule is a list of steps (the nodes of an inference graph, or the
forward, backward and update steps of a training step). A :class:`Buffer` is
live from the step that writes it (``first``) to the last step that reads it
(``last``), both inclusive. Two buffers *conflict* when their lifetimes
intersect, ``a.first <= b.last and b.first <= a.last``; conflicting buffers
may not share memory, except through an in-place link:
``b.may_share_with == a.name`` says the op of step ``b.first`` may write ``b``
over ``a`` (which dies at that step, ``a.last == b.first``), so ``b`` may be
placed at ``a``'s offset.

The lower bound of any plan is the largest number of live bytes at one step,

``LB = max_t sum_{b live at t} size(b)``,

taken over *share groups* (a chain of in-place links is placed as one block
of the size of its largest member), with sizes rounded up to the alignment.

Entry points:

* :func:`graph_lifetimes` for an inference graph (every activation tensor,
  graph inputs and outputs included, as TensorFlow Lite Micro does;
  constants live in flash and are left out);
* :func:`schedule_lifetimes` for any schedule given as steps that read and
  write named buffers. The training engine hands its training step here:
  ``schedule_lifetimes([("fwd/conv1", ["x"], ["a1"]), ...], sizes={"x": 3072,
  ...}, keep=["w_grad"])`` (see :func:`tinyml_lab.train.memory.step_lifetimes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Sequence

import numpy as np

from ..errors import GraphError, TinyMLError
from ..graph import Graph, Node


class LifetimeError(TinyMLError, ValueError):
    """Buffer lifetimes are inconsistent (a step out of range, a dangling in-place link)."""


def align_up(n: int, alignment: int) -> int:
    """Round ``n`` up to a multiple of ``alignment``: ``ceil(n / a) * a``."""
    if alignment < 1:
        raise LifetimeError(f"alignment must be a positive number of bytes, got {alignment}")
    return -(-int(n) // alignment) * alignment


@dataclass(frozen=True)
class Buffer:
    """One buffer of a schedule: ``size`` bytes live over steps ``first..last`` (inclusive).

    ``may_share_with`` names a buffer whose memory this one may take over in
    place; ``kind`` says what it holds (``input``, ``output``, ``activation``,
    ``scratch``, ``gradient``, ...); ``dtype`` and ``shape`` describe a tensor
    buffer, when it is one.
    """

    name: str
    size: int
    first: int
    last: int
    may_share_with: str | None = None
    kind: str = "activation"
    dtype: str | None = None
    shape: tuple[int, ...] | None = None

    def overlaps(self, other: "Buffer") -> bool:
        """True when the two lifetimes intersect (they are live at a common step)."""
        return self.first <= other.last and other.first <= self.last

    def to_json(self) -> dict:
        return {"name": self.name, "size": self.size, "first": self.first, "last": self.last,
                "may_share_with": self.may_share_with, "kind": self.kind}


@dataclass(frozen=True)
class Group:
    """Buffers linked in place, placed as one block: ``size`` is their largest member's."""

    members: tuple[str, ...]
    size: int
    first: int
    last: int

    @property
    def name(self) -> str:
        return self.members[0]

    def overlaps(self, other: "Group") -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class Lifetimes:
    """The buffers of a schedule of ``len(steps)`` steps."""

    buffers: list[Buffer]
    steps: list[str]
    name: str = "schedule"
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.buffers)

    def __iter__(self):
        return iter(self.buffers)

    def __getitem__(self, name: str) -> Buffer:
        try:
            return self._by_name[name]
        except KeyError:
            raise LifetimeError(f"no buffer named {name!r} in '{self.name}'") from None

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    @property
    def total_bytes(self) -> int:
        """Bytes with no reuse at all: ``sum_b size(b)``."""
        return sum(b.size for b in self.buffers)

    def live_at(self, step: int) -> list[Buffer]:
        return [b for b in self.buffers if b.first <= step <= b.last]

    # ------------------------------------------------------------------ checks
    def validate(self) -> "Lifetimes":
        self._by_name = {}
        for b in self.buffers:
            if b.name in self._by_name:
                raise LifetimeError(f"buffer {b.name!r} appears twice in '{self.name}'")
            if b.size < 0:
                raise LifetimeError(f"buffer {b.name!r} has a negative size {b.size}")
            if not 0 <= b.first <= b.last < max(self.n_steps, 1):
                raise LifetimeError(
                    f"buffer {b.name!r} lives over steps {b.first}..{b.last}, outside the schedule's "
                    f"{self.n_steps} steps (first <= last, both in 0..{self.n_steps - 1})"
                )
            self._by_name[b.name] = b
        for b in self.buffers:
            if b.may_share_with is None:
                continue
            a = self._by_name.get(b.may_share_with)
            if a is None:
                raise LifetimeError(f"buffer {b.name!r} may share with {b.may_share_with!r}, which does not exist")
            if a.last != b.first:
                raise LifetimeError(
                    f"buffer {b.name!r} may share with {a.name!r} only if {a.name!r} dies at the step "
                    f"{b.name!r} is written (step {b.first}); it lives until step {a.last}"
                )
        sharers: dict[str, str] = {}
        for b in self.buffers:
            if b.may_share_with is not None:
                if b.may_share_with in sharers:
                    raise LifetimeError(
                        f"buffers {sharers[b.may_share_with]!r} and {b.name!r} both take over "
                        f"{b.may_share_with!r}; one buffer can be overwritten in place once"
                    )
                sharers[b.may_share_with] = b.name
        return self

    # ------------------------------------------------------------------ groups and bounds
    def groups(self, alignment: int = 1) -> list[Group]:
        """Chains of in-place links merged into blocks, sizes rounded up to ``alignment``."""
        parent = {b.name: b.name for b in self.buffers}
        for b in self.buffers:
            if b.may_share_with is not None:
                parent[b.name] = b.may_share_with

        def root(n: str) -> str:
            while parent[n] != n:
                n = parent[n]
            return n

        members: dict[str, list[Buffer]] = {}
        for b in self.buffers:
            members.setdefault(root(b.name), []).append(b)
        out = []
        for bs in members.values():
            bs.sort(key=lambda b: b.first)
            out.append(Group(tuple(b.name for b in bs), align_up(max(b.size for b in bs), alignment),
                             min(b.first for b in bs), max(b.last for b in bs)))
        out.sort(key=lambda g: (g.first, g.name))
        return out

    def live_bytes(self, alignment: int = 1) -> np.ndarray:
        """Bytes live at each step, over share groups: ``L[t] = sum_{g live at t} size(g)``."""
        live = np.zeros(max(self.n_steps, 1), dtype=np.int64)
        for g in self.groups(alignment):
            live[g.first: g.last + 1] += g.size
        return live

    def lower_bound(self, alignment: int = 1) -> int:
        """``max_t L[t]``: no plan of these buffers can use fewer bytes."""
        return int(self.live_bytes(alignment).max()) if self.buffers else 0

    def peak_step(self, alignment: int = 1) -> int:
        return int(np.argmax(self.live_bytes(alignment))) if self.buffers else 0

    def without_sharing(self) -> "Lifetimes":
        """The same buffers with every in-place link removed."""
        return Lifetimes([replace(b, may_share_with=None) for b in self.buffers
                          if b.kind != "scratch"], list(self.steps), self.name, dict(self.metadata))

    def to_json(self) -> dict:
        return {"name": self.name, "steps": list(self.steps), "buffers": [b.to_json() for b in self.buffers]}

    def __repr__(self) -> str:
        return (f"Lifetimes('{self.name}', {len(self.buffers)} buffers, {self.n_steps} steps, "
                f"lower bound {self.lower_bound():,} bytes)")


# --------------------------------------------------------------------------- graphs

#: ops whose output may be written over their (dying) input, element by element
ELEMENTWISE_INPLACE = ("Add", "ReLU", "ReLU6")
#: ops whose output is their input's bytes under another shape
ALIAS_OPS = ("Reshape", "Flatten")


def _dies_here(lastuse: dict[str, int], outputs: set[str], t: str, step: int) -> bool:
    return lastuse.get(t) == step and t not in outputs


def depthwise_inplace_ok(graph: Graph, node: Node) -> bool:
    """A depthwise layer can run in place when it is int8 and its output is no larger than its input.

    Channel ``c`` of the output is computed into a one-channel scratch buffer
    and written over the input's channel ``c`` slots: ``out[p, c]`` lands at
    byte ``p C + c`` with ``p < H_out W_out <= H W``, a slot whose input value
    (channel ``c``) has been consumed (Lin et al., MCUNet, NeurIPS 2020).
    """
    x = graph.tensors[node.inputs[0]]
    y = graph.tensors[node.outputs[0]]
    return x.dtype == "int8" and y.dtype == "int8" and y.size <= x.size


def depthwise_scratch_bytes(graph: Graph, node: Node) -> int:
    """One output channel: ``H_out W_out`` bytes (int8)."""
    y = graph.tensors[node.outputs[0]]
    return y.shape[0] * y.shape[1]


def graph_lifetimes(graph: Graph, inplace: bool = False) -> Lifetimes:
    """Lifetimes of every activation tensor of ``graph``, for one sample; step ``i`` runs node ``i``.

    Graph inputs are live from step 0, graph outputs until the last step.
    With ``inplace``, element-wise ops (Add, ReLU, ReLU6) may write over an
    input that dies at their step, Reshape/Flatten alias their dying input,
    and int8 depthwise convolutions run in place with a one-channel scratch
    buffer (see :func:`depthwise_inplace_ok`).
    """
    graph.validate()
    nodes = graph.nodes
    n = len(nodes)
    if n == 0:
        raise GraphError(f"graph '{graph.name}' has no nodes to plan")
    lastuse: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for t in node.inputs:
            if not graph.tensors[t].is_const:
                lastuse[t] = i
    outputs = set(graph.outputs)
    first: dict[str, int] = {t: 0 for t in graph.inputs}
    for i, node in enumerate(nodes):
        first[node.outputs[0]] = i
    share: dict[str, str] = {}
    scratch: list[Buffer] = []
    taken: set[str] = set()
    if inplace:
        for i, node in enumerate(nodes):
            out = node.outputs[0]
            acts = [t for t in node.inputs if not graph.tensors[t].is_const]
            cands: list[str] = []
            if node.op in ELEMENTWISE_INPLACE or node.op in ALIAS_OPS:
                cands = [t for t in acts if graph.tensors[t].nbytes == graph.tensors[out].nbytes]
            elif node.op == "DepthwiseConv2D" and depthwise_inplace_ok(graph, node):
                cands = acts[:1]
            for t in cands:
                if _dies_here(lastuse, outputs, t, i) and t not in taken:
                    share[out] = t
                    taken.add(t)
                    if node.op == "DepthwiseConv2D":
                        scratch.append(Buffer(f"{node.name}/scratch", depthwise_scratch_bytes(graph, node),
                                              i, i, kind="scratch", dtype="int8"))
                    break
    buffers = []
    for name, t in graph.tensors.items():
        if t.is_const or name not in first:
            continue
        f = first[name]
        last = n - 1 if name in outputs else max(lastuse.get(name, f), f)
        kind = "input" if name in graph.inputs else "output" if name in outputs else "activation"
        buffers.append(Buffer(name, t.nbytes, f, last, share.get(name), kind, t.dtype, t.shape))
    buffers.sort(key=lambda b: (b.first, b.kind != "input"))
    buffers.extend(scratch)
    return Lifetimes(buffers, [nd.name for nd in nodes], graph.name,
                     {"graph": graph.name, "inplace": inplace, "dtype": "int8" if graph.is_quantized else "float32"})


# --------------------------------------------------------------------------- schedules

Step = tuple[str, Sequence[str], Sequence[str]]


def schedule_lifetimes(steps: Sequence[Step], sizes: dict[str, int], keep: Iterable[str] = (),
                       inputs: Iterable[str] = (), may_share: dict[str, str] | None = None,
                       kinds: dict[str, str] | None = None, name: str = "schedule") -> Lifetimes:
    """Lifetimes of a schedule given as ``(step name, reads, writes)`` triples.

    A buffer lives from the step that first writes it (step 0 for the names
    in ``inputs``) to the last step that reads it; names in ``keep`` live to
    the end (results such as updated weights or the loss). ``sizes`` gives
    every buffer's bytes; ``may_share`` maps a written buffer to the read
    buffer it may overwrite in place. This is the entry point for the
    training engine's step.
    """
    keep, inputs = set(keep), set(inputs)
    may_share = dict(may_share or {})
    kinds = dict(kinds or {})
    first: dict[str, int] = {t: 0 for t in inputs}
    last: dict[str, int] = {}
    for i, (step, reads, writes) in enumerate(steps):
        for t in reads:
            if t not in first:
                raise LifetimeError(f"step {i} ({step!r}) reads {t!r} before any step writes it")
            last[t] = i
        for t in writes:
            first.setdefault(t, i)
    missing = sorted(set(first) - set(sizes))
    if missing:
        raise LifetimeError(f"no size given for buffer(s) {', '.join(missing[:5])}")
    n = len(steps)
    buffers = []
    for t, f in first.items():
        end = n - 1 if t in keep else max(last.get(t, f), f)
        buffers.append(Buffer(t, int(sizes[t]), f, end, may_share.get(t), kinds.get(t, "activation")))
    return Lifetimes(buffers, [s for s, _, _ in steps], name)



__all__ = ["Buffer", "Group", "Lifetimes", "LifetimeError", "align_up", "graph_lifetimes",
           "schedule_lifetimes", "depthwise_inplace_ok", "depthwise_scratch_bytes",
           "ELEMENTWISE_INPLACE", "ALIAS_OPS"]
