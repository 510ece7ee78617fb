"""The bit-width sweep: accuracy and size of a model as its weights go from 8 bits down to 2.

For each width ``b`` every conv and dense layer's weights are quantized to
``b`` bits (symmetric, codes in ``[-(2^(b-1) - 1), 2^(b-1) - 1]``, stored in
int8 containers the int8 kernels run as they are) and activations stay 8
bits. The score is that of the int8 graph (post-training quantization), and
optionally of the int8 graph after quantization-aware training at that width
(:class:`~tinyml_lab.quant.qat.QATrainer`). Sizes count ``b`` bits per
weight, packed (:func:`~tinyml_lab.quant.report.model_bytes`): ``weight
bytes`` the weights alone, ``model bytes`` with int32 biases and float32
scales.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ..graph import Graph
from .convert import LINEAR, layer_bits, prepare, quantize_model
from .report import model_bytes

Score = Callable[[Graph], float]


def weight_bytes(graph: Graph, bits: int | dict[str, int] = 8) -> int:
    """Bytes of the conv and dense weights alone at ``bits`` per weight, packed."""
    per_layer = layer_bits(graph, bits)
    return int(sum(math.ceil(graph.weights(n)["weight"].size * per_layer[n.name] / 8)
                   for n in graph.nodes if n.op in LINEAR))


def bit_width_sweep(graph: Graph, calibration: np.ndarray, score: Score | None = None,
                    bits: Sequence[int] = (8, 7, 6, 5, 4, 3, 2), per_channel: bool = True, method: str = "minmax",
                    weight_method: str = "minmax", train: tuple[np.ndarray, np.ndarray] | None = None,
                    qat_epochs: int = 3, loss: str = "cross_entropy", seed: int = 0) -> list[dict]:
    """One row per weight width (and a first ``float`` row, ``bits`` 32).

    Args:
        graph: the float model.
        calibration: inputs for the activation ranges.
        score: ``f(graph) -> float`` (e.g. :meth:`~tinyml_lab.quant.tasks.Task.score`); None for sizes only.
        bits: the widths, 2 to 8.
        per_channel, method, weight_method: as in :func:`~tinyml_lab.quant.convert.quantize_model`.
        train: ``(x, y)`` to add a quantization-aware-training column (``qat_epochs`` epochs each).
        loss, seed: of that training.

    Returns:
        Rows ``{"bits", "weight_bytes", "model_bytes", "score"[, "qat_score"]}``.
    """
    from .qat import QATrainer

    g = prepare(graph)
    rows = [{"bits": 32, "weight_bytes": 4 * weight_bytes(g, 8), "model_bytes": model_bytes(g),
             "score": None if score is None else score(graph)}]
    if train is not None:
        rows[0]["qat_score"] = rows[0]["score"]
    for b in bits:
        q = quantize_model(graph, calibration, per_channel=per_channel, method=method, weight_bits=b,
                           weight_method=weight_method)
        row = {"bits": int(b), "weight_bytes": weight_bytes(g, b), "model_bytes": model_bytes(q),
               "score": None if score is None else score(q)}
        if train is not None:
            qat = QATrainer(weight_bits=b, per_channel=per_channel, method=method, weight_method=weight_method,
                            epochs=qat_epochs, seed=seed, loss=loss).fit(graph, *train, calibration=calibration)
            row["qat_score"] = None if score is None else score(qat.to_int8())
        rows.append(row)
    return rows


def format_sweep(rows: list[dict], metric: str = "accuracy") -> str:
    """The rows as an aligned table."""
    from ..report import format_table

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.4f}"

    qat = any("qat_score" in r for r in rows)
    header = ["weight bits", "weight bytes", "model bytes", f"PTQ {metric}"] + ([f"QAT {metric}"] if qat else [])
    body = [["float32" if r["bits"] == 32 else r["bits"], f"{r['weight_bytes']:,}", f"{r['model_bytes']:,}",
             num(r["score"])] + ([num(r.get("qat_score"))] if qat else []) for r in rows]
    return format_table(header, body, align="rrrr" + ("r" if qat else ""))


__all__ = ["bit_width_sweep", "format_sweep", "weight_bytes"]
