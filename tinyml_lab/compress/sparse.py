"""What a sparse layer costs to store: dense, bitmask and CSR, from the encodings themselves.

A weight tensor is seen as a matrix of ``rows`` = output channels by
``cols`` = everything else (a depthwise weight ``(1, KH, KW, C)`` as its ``C``
channels by ``KH KW``). With ``n = rows cols`` values of ``v`` bits of which
``nnz`` are not zero:

* **dense**: ``ceil(n v / 8)`` bytes;
* **bitmask**: one bit per position saying "non-zero", then the non-zero
  values in order: ``ceil(n / 8) + ceil(nnz v / 8)`` bytes;
* **CSR** (compressed sparse row): the non-zero values, the column index of
  each (``b_col`` bytes: 1 when ``cols <= 256``, 2 up to 65,536, else 4), and
  ``rows + 1`` row pointers into them (``b_ptr`` bytes, enough to hold
  ``nnz``): ``ceil(nnz v / 8) + nnz b_col + (rows + 1) b_ptr`` bytes.

A bitmask wins at moderate sparsity (it pays ``1 / v`` of the dense size
whatever ``nnz`` is); CSR pays ``b_col`` bytes per non-zero and wins only
when few remain. :func:`encode_bitmask` and :func:`encode_csr` build the
arrays, and the byte counts are their sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ShapeError
from ..graph import Graph

LINEAR = ("Conv2D", "DepthwiseConv2D", "Dense")


def _index_bytes(largest: int) -> int:
    """Bytes of an unsigned index that must hold values up to ``largest``."""
    return 1 if largest < 2**8 else 2 if largest < 2**16 else 4


def as_matrix(w: np.ndarray, op: str = "Conv2D") -> np.ndarray:
    """The weight as ``(output channels, rest)``; depthwise ``(1, KH, KW, C)`` as ``(C, KH KW)``."""
    w = np.asarray(w)
    if w.ndim == 0:
        raise ShapeError("a weight must have at least one axis")
    if op == "DepthwiseConv2D":
        return np.moveaxis(w, -1, 0).reshape(w.shape[-1], -1)
    return w.reshape(w.shape[0], -1)


def encode_bitmask(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(packed mask bits, non-zero values in row-major order)`` of a matrix."""
    mask = m != 0
    return np.packbits(mask.ravel()), m[mask]


def encode_csr(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(values, column indices, row pointers)`` of a matrix, each in its narrowest unsigned type."""
    rows, cols = m.shape
    mask = m != 0
    nnz = int(mask.sum())
    col_dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32}[_index_bytes(cols - 1)]
    ptr_dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32}[_index_bytes(nnz)]
    cols_idx = np.nonzero(mask)[1].astype(col_dtype)
    ptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))]).astype(ptr_dtype)
    return m[mask], cols_idx, ptr


@dataclass(frozen=True)
class StorageCost:
    """Bytes of one weight tensor in each format."""

    name: str
    shape: tuple[int, ...]
    value_bits: int
    size: int
    nnz: int
    dense_bytes: int
    bitmask_bytes: int
    csr_bytes: int

    @property
    def sparsity(self) -> float:
        return 1.0 - self.nnz / self.size if self.size else 0.0

    @property
    def best(self) -> str:
        costs = {"dense": self.dense_bytes, "bitmask": self.bitmask_bytes, "csr": self.csr_bytes}
        return min(costs, key=costs.get)  # type: ignore[arg-type]

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "value_bits": self.value_bits, "size": self.size,
                "nnz": self.nnz, "sparsity": round(self.sparsity, 4), "dense_bytes": self.dense_bytes,
                "bitmask_bytes": self.bitmask_bytes, "csr_bytes": self.csr_bytes, "best": self.best}


def storage_cost(w: np.ndarray, value_bits: int = 32, name: str = "", op: str = "Conv2D") -> StorageCost:
    """Dense, bitmask and CSR bytes of weight ``w`` at ``value_bits`` per value (module docstring)."""
    m = as_matrix(w, op)
    bits, values = encode_bitmask(m)
    vals, cols, ptr = encode_csr(m)
    nnz = int(values.size)

    def packed(count: int) -> int:
        return math.ceil(count * value_bits / 8)

    return StorageCost(name, tuple(np.shape(w)), int(value_bits), int(m.size), nnz, packed(m.size),
                       bits.nbytes + packed(nnz), packed(vals.size) + cols.nbytes + ptr.nbytes)


def graph_storage(graph: Graph, value_bits: int | None = None) -> list[StorageCost]:
    """:func:`storage_cost` of every conv and dense weight; ``value_bits`` defaults to 32 for a float
    graph and to the layer's weight bits (``metadata["weight_bits"]``, else 8) for an int8 graph."""
    bits = graph.metadata.get("weight_bits", {}) if graph.is_quantized else {}
    out = []
    for node in graph.nodes:
        if node.op not in LINEAR:
            continue
        t = graph.weights(node)["weight"]
        v = value_bits if value_bits is not None else (int(bits.get(node.name, 8)) if graph.is_quantized else 32)
        out.append(storage_cost(t.data, v, t.name, node.op))
    return out


def total_storage(costs: list[StorageCost]) -> dict[str, int]:
    """Sums over layers: ``dense``, ``bitmask``, ``csr``, and ``best`` (each layer in its cheapest)."""
    return {"dense": sum(c.dense_bytes for c in costs), "bitmask": sum(c.bitmask_bytes for c in costs),
            "csr": sum(c.csr_bytes for c in costs),
            "best": sum(min(c.dense_bytes, c.bitmask_bytes, c.csr_bytes) for c in costs)}


__all__ = ["StorageCost", "storage_cost", "graph_storage", "total_storage", "encode_bitmask", "encode_csr",
           "as_matrix"]
