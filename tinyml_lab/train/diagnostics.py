"""Why int8 training needs QAS, in one number per layer: ``||W|| / ||G||``.

For each conv and dense layer, the ratio of the weight's norm to its
gradient's norm on one batch, three ways (Lin et al., "On-Device Training
Under 256KB Memory", NeurIPS 2022, Figure 3):

* ``fp32``: the float graph (BatchNorm folded, so the layers are those of
  the int8 graph), ``||W|| / ||G_W||``;
* ``int8``: the int8 graph, stored integers ``W_bar = W / s_W`` and their
  gradient ``G_Wbar = s_W G_W``; the ratio is about ``s_W^-2`` times the fp32 one;
* ``int8_qas``: the same with the QAS gradient ``G_Wbar / s_W^2``, which
  brings the ratio back to the fp32 one.

An SGD step changes a weight by ``lr ||G|| / ||W||`` of its size, so a ratio
10^4 times larger means a 10^4 times smaller relative step at the same
learning rate.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from ..errors import TinyMLError
from ..graph import Graph
from ..passes import fold_batchnorm, fuse_activations
from ..report import format_table
from .autodiff import BackwardGraph, broadcast_scale


def gradient_ratios(graph: Graph, x: np.ndarray, y: np.ndarray, quantized: Graph | None = None,
                    loss: str = "cross_entropy", include_bias: bool = False,
                    calibration: np.ndarray | None = None) -> list[dict]:
    """``||W|| / ||G||`` per layer for fp32, int8 without QAS and int8 with QAS, on batch ``(x, y)``.

    Args:
        graph: the float graph (BatchNorm is folded and activations fused first).
        x, y: one batch of real inputs and targets.
        quantized: its int8 version; by default ``quantize_model(graph, calibration or x)``.
        loss: ``"cross_entropy"`` or ``"mse"``.
        include_bias: also a row per bias (QAS factor ``(s_x s_W)^-2``).

    Returns:
        One dict per parameter, in graph order: ``layer``, ``tensor``, ``op``,
        ``scale`` (mean ``s``), ``fp32``, ``int8``, ``int8_qas``.
    """
    if graph.is_quantized:
        raise TinyMLError("give the float graph; its int8 version is the quantized= argument")
    folded = fuse_activations(fold_batchnorm(graph))
    if quantized is None:
        from ..quant import quantize_model

        quantized = quantize_model(folded, x if calibration is None else calibration)
    names = [n for n, t in quantized.tensors.items()
             if t.is_const and (t.dtype == "int8" or (include_bias and t.dtype == "int32"))]
    missing = [n for n in names if n not in folded.tensors]
    if missing:
        raise TinyMLError(f"the int8 graph's constants {missing[:3]} are not in the float graph; "
                          f"give the int8 graph made from this float graph")
    g_float = BackwardGraph(folded, names, loss).value_and_grad(x, y, training=False).params
    g_int8 = BackwardGraph(quantized, names, loss).value_and_grad(x, y, training=False).params
    producer = {t: n for n in quantized.nodes for t in n.inputs}
    rows = []
    for n in names:
        t = quantized.tensors[n]
        s = broadcast_scale(t)
        w_float = folded.tensors[n].data.astype(np.float64)
        w_int = t.data.astype(np.float64)
        g_q = g_int8[n].astype(np.float64)
        node = producer[n]
        rows.append({
            "layer": node.name, "tensor": n, "op": node.op,
            "scale": float(np.mean(s)),
            "fp32": _ratio(w_float, g_float[n]),
            "int8": _ratio(w_int, g_q),
            "int8_qas": _ratio(w_int, g_q / (np.asarray(s) ** 2)),
        })
    return rows


def _ratio(w: np.ndarray, g: np.ndarray) -> float:
    gn = float(np.linalg.norm(g))
    return float(np.linalg.norm(w)) / gn if gn > 0 else float("inf")


def format_ratios(rows: Iterable[dict]) -> str:
    """The rows of :func:`gradient_ratios` as a table."""
    return format_table(
        ["layer", "tensor", "scale s", "fp32 ||W||/||G||", "int8 (no QAS)", "int8 + QAS"],
        [[r["layer"], r["tensor"], f"{r['scale']:.3g}", f"{r['fp32']:.3g}", f"{r['int8']:.3g}",
          f"{r['int8_qas']:.3g}"] for r in rows],
        align="llrrrr",
    )


def plot_gradient_ratios(rows: Iterable[dict], title: str | None = None):
    """The per-layer ratios on a log scale; returns a matplotlib ``Figure`` (no pyplot, safe on Agg)."""
    from matplotlib.figure import Figure

    rows = list(rows)
    fig = Figure(figsize=(7.0, 3.8), layout="constrained")
    ax = fig.add_subplot()
    pos = np.arange(len(rows))
    styles = [("fp32", "fp32", "o-"), ("int8", "int8, no QAS", "s--"), ("int8_qas", "int8 + QAS", "^:")]
    for key, label, fmt in styles:
        vals = [r[key] if 0 < r[key] < float("inf") else float("nan") for r in rows]  # log axis: skip 0
        ax.plot(pos, vals, fmt, label=label)
    ax.set_yscale("log")
    ax.set_xticks(pos)
    ax.set_xticklabels([r["tensor"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("||W|| / ||G||")
    ax.set_title(title or "weight-to-gradient norm ratio per layer")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(loc="best")
    return fig
