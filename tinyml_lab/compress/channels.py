"""Structured channel pruning: remove whole output channels, so the graph gets smaller.

A conv or dense layer's output channel ``o`` can go when everything between
that layer and the next layers that read it works channel by channel:
BatchNorm, ReLU, ReLU6, pooling, Pad, a DepthwiseConv2D (which loses the
same channels) and GlobalAvgPool. The readers at the end lose the matching
inputs: a Conv2D its input channel ``o``, a Dense its input feature ``o``
(after GlobalAvgPool or another Dense) or the ``H W`` features of channel
``o`` (after Flatten). A layer whose output reaches an Add (a residual
connection ties its channels to another branch), a Softmax, a Reshape or a
graph output is not pruned; :meth:`ChannelPruner.fit` says why in
``skipped_``.

Channels are ranked by the L1 or L2 norm of their weights after BatchNorm
folding, ``||a_o W_o||`` with ``a_o = gamma_o / sqrt(var_o + eps)`` (Li et
al., "Pruning Filters for Efficient ConvNets", ICLR 2017, rank by the L1
norm of the filters; folding first makes a channel that BatchNorm scales
down count as small). Each pruned layer keeps ``C - floor(r C)`` of its
``C`` channels (at least one). Pruning ``r`` of the channels of two
consecutive layers leaves about ``(1 - r)^2`` of the MACs of the second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from ..errors import AttributeValueError, GraphError
from ..graph import Graph, Node
from ..passes import fold_batchnorm
from .prune import check_sparsity

NORMS = ("l1", "l2")
_PASS_THROUGH = ("BatchNorm", "ReLU", "ReLU6", "MaxPool2D", "AvgPool2D", "Pad", "DepthwiseConv2D", "GlobalAvgPool")


@dataclass
class ChannelGroup:
    """A prunable layer, the channel-wise nodes after it, and the readers that lose inputs.

    ``readers`` holds ``(node name, kind)`` with kind ``conv`` (input axis 3
    of a Conv2D weight), ``dense`` (input axis 1 of a Dense weight) or
    ``flatten`` (a Dense after a Flatten of an ``(H, W, C)`` tensor; its
    spatial shape in ``spatial``).
    """

    layer: str
    channels: int
    chain: list[str] = field(default_factory=list)
    readers: list[tuple[str, str]] = field(default_factory=list)
    spatial: dict[str, tuple[int, int]] = field(default_factory=dict)


def channel_group(graph: Graph, layer: str) -> ChannelGroup:
    """The :class:`ChannelGroup` of ``layer``, or a :class:`GraphError` saying why it cannot be pruned."""
    g = graph
    node = g.node(layer)
    if node.op not in ("Conv2D", "Dense"):
        raise GraphError(f"{node.op} '{layer}': only Conv2D and Dense layers have output channels to remove")
    w = g.weights(node)["weight"]
    group = ChannelGroup(layer, int(w.shape[0]))
    todo = [node.outputs[0]]
    seen: set[str] = set()
    while todo:
        t = todo.pop()
        if t in seen:
            continue
        seen.add(t)
        if t in g.outputs:
            raise GraphError(f"'{layer}': its channels reach the graph output {t!r}")
        readers = g.consumers(t)
        if not readers:
            raise GraphError(f"'{layer}': tensor {t!r} is read by nothing")
        for r in readers:
            if r.op in _PASS_THROUGH:
                group.chain.append(r.name)
                todo.append(r.outputs[0])
            elif r.op == "Conv2D" and r.inputs[0] == t:
                group.readers.append((r.name, "conv"))
            elif r.op == "Dense" and r.inputs[0] == t:
                group.readers.append((r.name, "dense"))
            elif r.op == "Flatten":
                shape = g.tensors[t].shape
                if len(shape) != 3:
                    raise GraphError(f"'{layer}': Flatten '{r.name}' of a rank-{len(shape)} tensor")
                after = g.consumers(r.outputs[0])
                if r.outputs[0] in g.outputs or not after or any(a.op != "Dense" for a in after):
                    raise GraphError(f"'{layer}': Flatten '{r.name}' is not read by Dense layers only")
                for a in after:
                    group.readers.append((a.name, "flatten"))
                    group.spatial[a.name] = (shape[0], shape[1])
            else:
                raise GraphError(f"'{layer}': its channels reach {r.op} '{r.name}', which ties them to other values")
    return group


def _channel_norms(graph: Graph, layer: str, norm: str) -> np.ndarray:
    """L1 or L2 norm of each output channel's weights, after BatchNorm folding."""
    folded = fold_batchnorm(graph)
    w = folded.weights(folded.node(layer))["weight"].data.astype(np.float64)
    m = w.reshape(w.shape[0], -1)
    return np.abs(m).sum(axis=1) if norm == "l1" else np.sqrt((m * m).sum(axis=1))


class ChannelPruner:
    """Remove the lowest-norm output channels of conv and dense layers; the graph shrinks.

    Args:
        ratio: fraction of each pruned layer's channels to remove, in ``[0, 1)``.
        norm: ``"l1"`` or ``"l2"``.
        layers: layers to prune (default: every layer that can be).

    Attributes:
        groups_: ``{layer: ChannelGroup}`` of the layers pruned.
        keep_: ``{layer: sorted indices of the channels kept}``.
        norms_: ``{layer: per-channel norms}``.
        skipped_: ``{layer: why it is not pruned}`` (when ``layers`` is None).

    >>> small = ChannelPruner(0.5).fit_transform(g)   # doctest: +SKIP
    >>> small.macs < g.macs                             # doctest: +SKIP
    True
    """

    def __init__(self, ratio: float = 0.5, norm: str = "l1", layers: Iterable[str] | None = None):
        self.ratio = check_sparsity(ratio, "ratio")
        if norm not in NORMS:
            raise AttributeValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.norm = norm
        self.layers = None if layers is None else list(layers)

    def fit(self, graph: Graph) -> "ChannelPruner":
        """Find the prunable layers and rank their channels."""
        candidates = [n.name for n in graph.nodes if n.op in ("Conv2D", "Dense")]
        if self.layers is not None:
            unknown = [n for n in self.layers if n not in candidates]
            if unknown:
                raise GraphError(f"{', '.join(map(repr, unknown))}: not a Conv2D or Dense layer of graph "
                                 f"'{graph.name}'; its layers: {', '.join(candidates)}")
        groups: dict[str, ChannelGroup] = {}
        skipped: dict[str, str] = {}
        for name in (candidates if self.layers is None else self.layers):
            try:
                groups[name] = channel_group(graph, name)
            except GraphError as exc:
                if self.layers is not None:
                    raise
                skipped[name] = str(exc)
        keep, norms = {}, {}
        for name, grp in groups.items():
            norms[name] = _channel_norms(graph, name, self.norm)
            n_keep = max(1, grp.channels - math.floor(self.ratio * grp.channels))
            keep[name] = np.sort(np.argsort(-norms[name], kind="stable")[:n_keep])
        self.groups_, self.keep_, self.norms_, self.skipped_ = groups, keep, norms, skipped
        return self

    def transform(self, graph: Graph) -> Graph:
        """A smaller copy of ``graph``: pruned channels removed from every tensor that holds them."""
        if not hasattr(self, "keep_"):
            raise AttributeValueError("this ChannelPruner is not fitted; call fit(graph) first")
        g = graph.copy()
        for name, keep in self.keep_.items():
            grp = self.groups_[name]
            _take(g, g.node(name), {"weight": 0, "bias": 0}, keep)
            for c in grp.chain:
                node = g.node(c)
                axes = {"DepthwiseConv2D": {"weight": 3, "bias": 0},
                        "BatchNorm": {"gamma": 0, "beta": 0, "mean": 0, "var": 0}}.get(node.op, {})
                _take(g, node, axes, keep)
            for reader, kind in grp.readers:
                node = g.node(reader)
                if kind == "conv":
                    _take(g, node, {"weight": 3}, keep)
                elif kind == "dense":
                    _take(g, node, {"weight": 1}, keep)
                else:
                    h, w = grp.spatial[reader]
                    idx = (np.arange(h * w)[:, None] * grp.channels + keep[None, :]).ravel()
                    _take(g, node, {"weight": 1}, idx)
        g.metadata = dict(g.metadata, pruning={
            "kind": "channels", "ratio": self.ratio, "norm": self.norm,
            "channels": {n: [self.groups_[n].channels, int(k.size)] for n, k in self.keep_.items()}})
        return g.validate()

    def fit_transform(self, graph: Graph) -> Graph:
        return self.fit(graph).transform(graph)

    def get_params(self) -> dict:
        return {"ratio": self.ratio, "norm": self.norm, "layers": self.layers}

    def __repr__(self) -> str:
        return f"ChannelPruner({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


def _take(g: Graph, node: Node, axes: dict[str, int], index: np.ndarray) -> None:
    """Keep ``index`` along the given axis of each named constant of ``node``."""
    for role, t in g.weights(node).items():
        if role in axes:
            t.data = np.ascontiguousarray(np.take(t.data, index, axis=axes[role]))
            t.shape = t.data.shape


__all__ = ["ChannelPruner", "ChannelGroup", "channel_group", "NORMS"]
