"""Sparse update schemes: which biases, which weights and which output channels a training step changes.

A scheme (Lin et al., "On-Device Training Under 256KB Memory", NeurIPS 2022,
Section 2.2) names, for a graph whose conv and dense layers are
``L_1 ... L_n`` (``L_n`` the classifier):

* ``bias_depth = k``: the biases of the last ``k`` layers below the
  classifier, ``b_{n-k} ... b_{n-1}``; a bias update needs no saved
  activation, only the gradient flowing down to that layer;
* ``weights = {layer: r}``: the weights of chosen layers, each over a
  fraction ``r`` of its output channels, ``r`` in :data:`RATIOS`
  (0, 1/8, 1/4, 1/2, 1). The ``ceil(r C)`` channels with the largest weight
  norm ``||W[c]||_2`` are trained (ties: the lower index);
* the classifier (weight and bias) is always trained: a transfer task needs
  its own head.

Named schemes: ``full`` (every layer, every channel), ``bias`` (every bias
and the classifier), ``last-k:N`` (weights and biases of the last ``N``
layers, the classifier counting as one), and explicit ones written
``sparse:bias=K,LAYER=R,...`` (ratios as ``1/8`` or ``0.125``). A scheme
resolves against a graph into a :class:`Selection`: the trainable tensor
names and, for a tensor trained on some channels only, the channel indices.

>>> s = SparseScheme.parse("sparse:bias=2,pw1=1/2")        # doctest: +SKIP
>>> s.resolve(graph).channels["pw1/weight"]               # doctest: +SKIP
array([ 0,  3, ...])
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable, Mapping

import numpy as np

from ..errors import TinyMLError
from ..graph import Graph
from .params import parameters

RATIOS: tuple[float, ...] = (0.0, 0.125, 0.25, 0.5, 1.0)
LAYER_OPS = ("Conv2D", "DepthwiseConv2D", "Dense")
SCHEME_FORMS = "full, bias, last-k:N, sparse (searched under --budget) or sparse:bias=K,LAYER=RATIO,..."


class SchemeError(TinyMLError, ValueError):
    """A sparse update scheme that is malformed or does not fit the graph (an unknown layer, a bad ratio)."""


class BudgetError(TinyMLError, ValueError):
    """A memory budget that is malformed, or that no update scheme fits."""


def layers(graph: Graph) -> list[str]:
    """The conv and dense layers of ``graph`` in execution order; the last is the classifier."""
    out = [n.name for n in graph.nodes if n.op in LAYER_OPS]
    if not out:
        raise SchemeError(f"graph '{graph.name}' has no conv or dense layer to train")
    return out


def format_ratio(r: float) -> str:
    """``0.125 -> '1/8'``, ``1.0 -> '1'``."""
    return str(Fraction(r).limit_denominator(64))


def parse_ratio(text: str) -> float:
    """``'1/8'``, ``'0.125'``, ``'1'`` -> the ratio; a :class:`SchemeError` unless it is one of :data:`RATIOS`."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        value = math.nan
    for r in RATIOS:
        if math.isclose(value, r):
            return r
    raise SchemeError(f"channel ratio {text!r} is not one of {', '.join(format_ratio(r) for r in RATIOS)}")


@dataclass(frozen=True)
class Selection:
    """What one training step updates: trainable tensor names (graph order) and channel subsets.

    ``channels[name]`` holds the sorted indices along the tensor's output
    channel axis (``axes[name]``) for a tensor trained on some channels only;
    a tensor absent from ``channels`` is trained whole.
    """

    trainable: tuple[str, ...]
    channels: dict[str, np.ndarray] = field(default_factory=dict)
    axes: dict[str, int] = field(default_factory=dict)

    def index(self, name: str, ndim: int) -> tuple:
        """The NumPy index of the trained part of tensor ``name``: ``(..., idx, ...)`` on its channel axis."""
        if name not in self.channels:
            return (slice(None),) * ndim
        sl: list = [slice(None)] * ndim
        sl[self.axes[name]] = self.channels[name]
        return tuple(sl)

    def take(self, name: str, array: np.ndarray) -> np.ndarray:
        """The trained part of ``array`` (a copy when sliced, ``array`` itself when whole)."""
        if name not in self.channels:
            return array
        return np.ascontiguousarray(np.take(array, self.channels[name], axis=self.axes[name]))

    def fraction(self, name: str, total: int) -> tuple[int, int]:
        """``(trained channels, channels)`` of tensor ``name`` with ``total`` channels."""
        return (len(self.channels[name]), total) if name in self.channels else (total, total)


@dataclass(frozen=True)
class SparseScheme:
    """Biases of the last ``bias_depth`` layers below the classifier, weights of chosen layers at channel
    ratios, and the classifier. ``label`` is how the scheme was named (``full``, ``last-k:3``...)."""

    bias_depth: int = 0
    weights: tuple[tuple[str, float], ...] = ()
    label: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.bias_depth, bool) or not isinstance(self.bias_depth, numbers.Integral) \
                or self.bias_depth < 0:
            raise SchemeError(f"bias depth must be an int >= 0, got {self.bias_depth!r}")
        object.__setattr__(self, "weights", tuple((str(n), parse_ratio(str(r))) for n, r in self.weights
                                                   if float(r) > 0))

    # ------------------------------------------------------------------ named schemes
    @classmethod
    def full(cls, graph: Graph) -> "SparseScheme":
        """Every weight and bias of every layer."""
        ls = layers(graph)
        return cls(len(ls) - 1, tuple((n, 1.0) for n in ls[:-1]), "full")

    @classmethod
    def bias_only(cls, graph: Graph) -> "SparseScheme":
        """Every bias, and the classifier's weight."""
        return cls(len(layers(graph)) - 1, (), "bias")

    @classmethod
    def last_k(cls, graph: Graph, k: int) -> "SparseScheme":
        """Weights and biases of the last ``k`` layers (``k = 1``: the classifier only)."""
        ls = layers(graph)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= len(ls):
            raise SchemeError(f"last-k needs 1 <= k <= {len(ls)} (the conv/dense layers of '{graph.name}'), "
                              f"got {k!r}")
        return cls(k - 1, tuple((n, 1.0) for n in ls[len(ls) - k: -1]), f"last-k:{k}")

    @classmethod
    def parse(cls, text: str, graph: Graph) -> "SparseScheme":
        """A scheme from its text form (see the module docstring); ``sparse`` alone is not a scheme
        but a request to search one (:func:`~tinyml_lab.train.search.search_scheme`)."""
        s = str(text).strip().lower()
        if s == "full":
            return cls.full(graph)
        if s == "bias":
            return cls.bias_only(graph)
        m = re.fullmatch(r"last-k:(\d+)", s)
        if m:
            return cls.last_k(graph, int(m.group(1)))
        if s.startswith("sparse:"):
            depth, weights = 0, []
            ls = layers(graph)
            for item in str(text).strip()[len("sparse:"):].split(","):
                key, eq, value = item.partition("=")
                key, value = key.strip(), value.strip()
                if not eq or not key or not value:
                    raise SchemeError(f"malformed scheme {text!r}: {item.strip()!r} is not NAME=VALUE; "
                                      f"write {SCHEME_FORMS}")
                if key.lower() == "bias":
                    if not value.isdigit():
                        raise SchemeError(f"malformed scheme {text!r}: bias={value!r} must be a number of layers")
                    depth = int(value)
                else:
                    if key not in ls:
                        raise SchemeError(_unknown_layer(key, graph, ls))
                    weights.append((key, parse_ratio(value)))
            scheme = cls(depth, tuple(weights), str(text).strip())
            scheme.check(graph)
            return scheme
        if s == "sparse":
            raise SchemeError("'sparse' is searched under a memory budget: give a budget (e.g. --budget 100KB), "
                              "or write the scheme out as sparse:bias=K,LAYER=RATIO,...")
        raise SchemeError(f"malformed scheme {text!r}; write {SCHEME_FORMS}")

    # ------------------------------------------------------------------ checks and resolution
    def check(self, graph: Graph) -> "SparseScheme":
        """Raise a :class:`SchemeError` for a layer the graph lacks, a repeated layer, the classifier
        named as a weight layer, or a bias depth beyond the layers below the classifier."""
        ls = layers(graph)
        below = len(ls) - 1
        if self.bias_depth > below:
            raise SchemeError(f"bias depth {self.bias_depth} exceeds the {below} layers below the classifier "
                              f"of '{graph.name}'")
        seen = set()
        for name, _ in self.weights:
            if name not in ls:
                raise SchemeError(_unknown_layer(name, graph, ls))
            if name == ls[-1]:
                raise SchemeError(f"{name!r} is the classifier, which every scheme trains whole; name layers "
                                  f"below it")
            if name in seen:
                raise SchemeError(f"layer {name!r} appears twice in the scheme")
            seen.add(name)
        return self

    def resolve(self, graph: Graph) -> Selection:
        """The tensors this scheme trains in ``graph`` and the channels picked by weight norm."""
        self.check(graph)
        ls = layers(graph)
        params = parameters(graph)
        by_node: dict[str, dict[str, str]] = {}
        for p in params.values():
            by_node.setdefault(p.node, {})[p.role] = p.name
        chosen: set[str] = set()
        channels: dict[str, np.ndarray] = {}
        axes: dict[str, int] = {}
        roles = by_node.get(ls[-1], {})
        chosen.update(roles.get(r) for r in ("weight", "bias") if r in roles)
        for name in ls[len(ls) - 1 - self.bias_depth: -1]:
            if "bias" in by_node.get(name, {}):
                chosen.add(by_node[name]["bias"])
        for name, ratio in self.weights:
            w = by_node[name]["weight"]
            chosen.add(w)
            if ratio < 1.0:
                p = params[w]
                idx = top_channels(graph, w, p.channel_axis, ratio)
                channels[w] = idx
                axes[w] = p.channel_axis
        trainable = tuple(n for n in params if n in chosen)
        return Selection(trainable, channels, axes)

    # ------------------------------------------------------------------ text
    def key(self) -> tuple:
        return (self.bias_depth, tuple(sorted(self.weights)))

    def __str__(self) -> str:
        return self.label or self.text()

    def text(self) -> str:
        """The explicit form, ``sparse:bias=K,LAYER=R,...``, which :meth:`parse` reads back."""
        parts = [f"bias={self.bias_depth}"] + [f"{n}={format_ratio(r)}" for n, r in self.weights]
        return "sparse:" + ",".join(parts)

    def to_json(self) -> dict:
        return {"label": str(self), "text": self.text(), "bias_depth": self.bias_depth,
                "weights": {n: r for n, r in self.weights}}


def _unknown_layer(name: str, graph: Graph, ls: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, ls, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"graph '{graph.name}' has no conv/dense layer {name!r}{hint}; its layers: {', '.join(ls)}"


def top_channels(graph: Graph, tensor: str, axis: int, ratio: float) -> np.ndarray:
    """The ``ceil(ratio C)`` output channels of weight ``tensor`` with the largest L2 norm, sorted.

    The norm is taken over the real values (dequantized for an int8 weight,
    so per-channel scales are accounted for); ties go to the lower index.
    """
    from .autodiff import dequantize_constant

    w = dequantize_constant(graph.tensors[tensor]).astype(np.float64)
    c = w.shape[axis]
    norms = np.sqrt((np.moveaxis(w, axis, 0).reshape(c, -1) ** 2).sum(axis=1))
    n = max(1, math.ceil(ratio * c))
    order = np.argsort(-norms, kind="stable")
    return np.sort(order[:n]).astype(np.int64)


def selection_of(graph: Graph, scheme: "SparseScheme | Selection | Iterable[str] | None",
                 channels: Mapping[str, Iterable[int]] | None = None) -> Selection:
    """A :class:`Selection` from a scheme, a selection, a collection of tensor names (with optional
    ``channels``), or None (every parameter)."""
    from .params import resolve_trainable

    if isinstance(scheme, Selection):
        return scheme
    if isinstance(scheme, SparseScheme):
        return scheme.resolve(graph)
    names = resolve_trainable(graph, scheme)
    params = parameters(graph)
    chans: dict[str, np.ndarray] = {}
    axes: dict[str, int] = {}
    for n, idx in (channels or {}).items():
        if n not in names:
            raise SchemeError(f"channels given for {n!r}, which is not trainable here")
        p = params[n]
        size = graph.tensors[n].shape[p.channel_axis]
        arr = np.unique(np.asarray(list(idx), dtype=np.int64))
        if arr.size == 0 or arr.min() < 0 or arr.max() >= size:
            raise SchemeError(f"channels of {n!r} must be indices in [0, {size}), got {list(idx)[:8]}")
        if arr.size < size:
            chans[n] = arr
            axes[n] = p.channel_axis
    return Selection(names, chans, axes)


# --------------------------------------------------------------------------- budgets

_UNITS = {"": 1, "b": 1, "kb": 1024, "kib": 1024, "k": 1024, "mb": 1024 ** 2, "mib": 1024 ** 2, "m": 1024 ** 2}


def parse_budget(text: "str | int | float") -> int:
    """Bytes from ``'100KB'``, ``'0.5 MB'``, ``'262144'`` (1 KB = 1024 bytes, as MCU datasheets count)."""
    if isinstance(text, numbers.Real) and not isinstance(text, bool):
        if text > 0:
            return int(text)
        raise BudgetError(f"a memory budget must be positive, got {text!r}")
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    unit = m.group(2).lower() if m else None
    if not m or unit not in _UNITS or float(m.group(1)) <= 0:
        raise BudgetError(f"malformed memory budget {text!r}; write a positive size such as 100KB, 0.5MB or "
                          f"262144 (bytes)")
    return int(float(m.group(1)) * _UNITS[unit])


__all__ = ["RATIOS", "SparseScheme", "Selection", "SchemeError", "BudgetError", "layers", "top_channels",
           "parse_ratio", "format_ratio", "parse_budget", "selection_of", "SCHEME_FORMS"]
