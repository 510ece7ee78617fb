"""Unstructured magnitude pruning: the smallest weights become zero.

For a target sparsity ``s`` in ``[0, 1)``, :class:`MagnitudePruner` keeps a
mask ``m = [|w| > t]`` per weight tensor of the chosen conv and dense layers:

* ``scope="layer"``: each layer loses ``floor(s n_l)`` of its ``n_l``
  weights, the smallest in ``|w|``;
* ``scope="global"``: one threshold over all the layers together (Han et
  al., "Learning both Weights and Connections", NeurIPS 2015), so layers
  with many small weights lose more.

Ties are broken by position, so exactly ``floor(s n)`` weights go. Biases and
BatchNorm parameters are never pruned. The graph keeps its shape (zeros are
stored): the saving is in a sparse format (:mod:`tinyml_lab.compress.sparse`)
or a sparse kernel; fine-tuning (:func:`~tinyml_lab.compress.finetune.fine_tune`)
keeps the zeros at zero.
"""

from __future__ import annotations

import numbers
from typing import Iterable

import numpy as np

from ..errors import AttributeValueError, GraphError
from ..graph import Graph

PRUNABLE = ("Conv2D", "DepthwiseConv2D", "Dense")
SCOPES = ("layer", "global")


def check_sparsity(sparsity: object, what: str = "sparsity") -> float:
    """``sparsity`` as a float in ``[0, 1)``, or an :class:`AttributeValueError`."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real) or not 0.0 <= float(sparsity) < 1.0:
        raise AttributeValueError(
            f"{what} must be a number in [0, 1) (the fraction of weights removed; 1 would remove all), "
            f"got {sparsity!r}"
        )
    return float(sparsity)


def prunable_layers(graph: Graph, layers: Iterable[str] | None = None) -> list[str]:
    """Names of the conv and dense layers to prune: ``layers`` (checked) or all of them."""
    names = [n.name for n in graph.nodes if n.op in PRUNABLE]
    if layers is None:
        return names
    if isinstance(layers, str):
        raise AttributeValueError(f"layers must be a collection of layer names, got the string {layers!r}")
    wanted = list(layers)
    unknown = [n for n in wanted if n not in names]
    if unknown:
        raise GraphError(
            f"{', '.join(map(repr, unknown))} {'is' if len(unknown) == 1 else 'are'} not a conv or dense layer "
            f"of graph '{graph.name}'; its layers: {', '.join(names)}"
        )
    return [n for n in names if n in set(wanted)]


def _smallest(values: np.ndarray, k: int) -> np.ndarray:
    """A boolean mask of the ``k`` smallest values (ties by position)."""
    out = np.zeros(values.size, bool)
    if k > 0:
        out[np.argsort(values, kind="stable")[:k]] = True
    return out


class MagnitudePruner:
    """Zero the smallest-magnitude weights of conv and dense layers.

    Args:
        sparsity: fraction of weights to remove, in ``[0, 1)``.
        scope: ``"layer"`` (the same fraction in every layer) or ``"global"``.
        layers: the layers to prune (default: every conv and dense layer).

    Attributes:
        masks_: ``{weight tensor name: bool array, True where kept}``.
        sparsity_: ``{layer: fraction removed}``.

    >>> pruned = MagnitudePruner(0.5).fit_transform(g)   # doctest: +SKIP
    """

    def __init__(self, sparsity: float = 0.5, scope: str = "layer", layers: Iterable[str] | None = None):
        self.sparsity = check_sparsity(sparsity)
        if scope not in SCOPES:
            raise AttributeValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        self.scope = scope
        self.layers = None if layers is None else list(layers)

    def fit(self, graph: Graph) -> "MagnitudePruner":
        """Choose the masks from ``graph``'s weights."""
        layers = prunable_layers(graph, self.layers)
        weights = {name: graph.weights(graph.node(name))["weight"] for name in layers}
        masks: dict[str, np.ndarray] = {}
        if self.scope == "layer":
            for name, t in weights.items():
                a = np.abs(t.data.astype(np.float64)).ravel()
                masks[t.name] = ~_smallest(a, int(np.floor(self.sparsity * a.size))).reshape(t.shape)
        else:
            flat = np.concatenate([np.abs(t.data.astype(np.float64)).ravel() for t in weights.values()])
            drop = _smallest(flat, int(np.floor(self.sparsity * flat.size)))
            start = 0
            for t in weights.values():
                masks[t.name] = ~drop[start: start + t.size].reshape(t.shape)
                start += t.size
        self.masks_ = masks
        self.layers_ = layers
        self.sparsity_ = {name: 1.0 - float(masks[t.name].mean()) for name, t in weights.items()}
        return self

    def transform(self, graph: Graph) -> Graph:
        """A copy of ``graph`` with the masked weights set to zero."""
        if not hasattr(self, "masks_"):
            raise AttributeValueError("this MagnitudePruner is not fitted; call fit(graph) first")
        g = graph.copy()
        for name, mask in self.masks_.items():
            t = g.tensors.get(name)
            if t is None or t.shape != mask.shape:
                raise GraphError(f"graph '{graph.name}' has no weight {name!r} of shape {mask.shape} to prune")
            t.data = np.where(mask, t.data, np.zeros((), t.data.dtype)).astype(t.data.dtype)
        g.metadata = dict(g.metadata, pruning={"kind": "magnitude", "scope": self.scope,
                                               "sparsity": self.sparsity, "layers": dict(self.sparsity_)})
        return g.validate()

    def fit_transform(self, graph: Graph) -> Graph:
        return self.fit(graph).transform(graph)

    def get_params(self) -> dict:
        return {"sparsity": self.sparsity, "scope": self.scope, "layers": self.layers}

    def __repr__(self) -> str:
        return f"MagnitudePruner({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


def weight_sparsity(graph: Graph) -> dict[str, float]:
    """Fraction of zero weights in each conv and dense layer."""
    return {n.name: float(np.mean(graph.weights(n)["weight"].data == 0)) for n in graph.nodes if n.op in PRUNABLE}


__all__ = ["MagnitudePruner", "check_sparsity", "prunable_layers", "weight_sparsity", "PRUNABLE", "SCOPES"]
