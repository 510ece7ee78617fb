"""Which constants of a graph a training run may change.

A graph's trainable parameters are the ``weight`` and ``bias`` of its conv and
dense layers and the ``gamma`` and ``beta`` of its BatchNorms. (BatchNorm's
``mean`` and ``var`` are running statistics that the forward pass updates,
not parameters a gradient updates.) A training run names the ones it updates
as a set of tensor names, so a sparse update (Lin et al., "On-Device Training
Under 256KB Memory", NeurIPS 2022) is a smaller set; :func:`last_layers`
builds the common "last k layers" set.

Each :class:`Param` records its channel axis, so a later subset of output
channels can be expressed as a mask along that axis.
"""

from __future__ import annotations

import difflib
import numbers
from dataclasses import dataclass
from typing import Iterable

from ..errors import AttributeValueError, GraphError
from ..graph import Graph
from .rules import TRAINABLE_ROLES

_WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense", "BatchNorm")


@dataclass(frozen=True)
class Param:
    """A trainable constant: its tensor name, its node, its role, and its output-channel axis."""

    name: str
    node: str
    op: str
    role: str
    channel_axis: int


def _channel_axis(op: str, role: str) -> int:
    if role == "weight" and op == "DepthwiseConv2D":
        return 3
    return 0


def parameters(graph: Graph) -> dict[str, Param]:
    """Every constant a gradient could update, in graph order: ``{tensor name: Param}``."""
    out: dict[str, Param] = {}
    for node in graph.nodes:
        if node.op not in _WEIGHTED:
            continue
        for role, t in graph.weights(node).items():
            if role in TRAINABLE_ROLES:
                out[t.name] = Param(t.name, node.name, node.op, role, _channel_axis(node.op, role))
    return out


def resolve_trainable(graph: Graph, trainable: Iterable[str] | None) -> tuple[str, ...]:
    """The names to train, in graph order; None means every parameter.

    A name that is not a parameter raises :class:`GraphError` naming the
    closest parameter, or explaining why a constant is not trainable.
    """
    params = parameters(graph)
    if trainable is None:
        return tuple(params)
    if isinstance(trainable, str):
        raise AttributeValueError(
            f"trainable must be a collection of tensor names, got the string {trainable!r}; "
            f"write {{{trainable!r}}}"
        )
    wanted = list(trainable)
    for name in wanted:
        if name in params:
            continue
        if not isinstance(name, str):
            raise AttributeValueError(f"trainable names must be strings, got {name!r}")
        t = graph.tensors.get(name)
        if t is not None and t.is_const:
            raise GraphError(
                f"{name!r} is a constant of graph '{graph.name}' but not a trainable parameter "
                f"(BatchNorm mean and var are running statistics, updated by the forward pass)"
            )
        close = difflib.get_close_matches(name, list(params), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise GraphError(
            f"graph '{graph.name}' has no trainable parameter {name!r}{hint} Its parameters: "
            f"{', '.join(list(params)[:8])}{' ...' if len(params) > 8 else ''}"
        )
    keep = set(wanted)
    return tuple(n for n in params if n in keep)


def last_layers(graph: Graph, k: int, roles: Iterable[str] = TRAINABLE_ROLES) -> tuple[str, ...]:
    """Parameters of the last ``k`` conv/dense layers (and the BatchNorms that follow them).

    ``last_layers(g, 1)`` is the classifier's weight and bias.
    """
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise AttributeValueError(f"k must be an int >= 1, got {k!r}")
    params = parameters(graph)
    layers = [n.name for n in graph.nodes if n.op in ("Conv2D", "DepthwiseConv2D", "Dense")]
    if k > len(layers):
        raise AttributeValueError(f"graph '{graph.name}' has {len(layers)} conv/dense layers, asked for the last {k}")
    first = layers[-k]
    order = [n.name for n in graph.nodes]
    cut = order.index(first)
    roles = set(roles)
    return tuple(p.name for p in params.values() if order.index(p.node) >= cut and p.role in roles)
