"""Per-layer sensitivity: prune one layer at a time and watch the score.

For each prunable layer and each sparsity in a list, the layer alone is
pruned (magnitude pruning of its weights, or removal of its lowest-norm
channels with ``structured=True``) and the model scored. A layer whose
score holds up at high sparsity can be pruned hard; one that falls early
should be spared. This is how a per-layer sparsity budget is chosen (Han et
al., 2015; Li et al., 2017).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

from ..graph import Graph
from .channels import ChannelPruner
from .prune import MagnitudePruner, check_sparsity, prunable_layers

Score = Callable[[Graph], float]


def sensitivity_scan(graph: Graph, score: Score, sparsities: Sequence[float] = (0.25, 0.5, 0.75, 0.9),
                     structured: bool = False, layers: Iterable[str] | None = None, norm: str = "l1") -> list[dict]:
    """Rows ``{"layer", "sparsity", "params", "macs", "score"}``, one per layer and sparsity, after a
    first row for the unpruned model (``layer`` None, ``sparsity`` 0)."""
    sparsities = [check_sparsity(s) for s in sparsities]
    if structured:
        names = list(ChannelPruner(0.5, norm).fit(graph).keep_) if layers is None else list(layers)
    else:
        names = prunable_layers(graph, layers)
    rows = [{"layer": None, "sparsity": 0.0, "params": graph.params, "nonzero_weights": _nonzero(graph),
             "macs": graph.macs, "score": score(graph)}]
    for name in names:
        for s in sparsities:
            if structured:
                pruned = ChannelPruner(s, norm, layers=[name]).fit_transform(graph)
            else:
                pruned = MagnitudePruner(s, layers=[name]).fit_transform(graph)
            rows.append({"layer": name, "sparsity": s, "params": pruned.params, "nonzero_weights": _nonzero(pruned),
                         "macs": pruned.macs, "score": score(pruned)})
    return rows


def _nonzero(graph: Graph) -> int:
    return sum(int((graph.weights(n)["weight"].data != 0).sum()) for n in graph.nodes
               if n.op in ("Conv2D", "DepthwiseConv2D", "Dense"))


def format_sensitivity(rows: list[dict], metric: str = "score") -> str:
    """The rows as a table: one line per layer, one column per sparsity."""
    from ..report import format_table

    base = rows[0]["score"]
    sparsities = sorted({r["sparsity"] for r in rows[1:]})
    layers = list(dict.fromkeys(r["layer"] for r in rows[1:]))
    table = {(r["layer"], r["sparsity"]): r["score"] for r in rows[1:]}
    body = [[name] + [f"{table[(name, s)]:.4f}" for s in sparsities] for name in layers]
    return (f"{metric} of the unpruned model: {base:.4f}\n"
            + format_table(["layer"] + [f"{s:.0%}" for s in sparsities], body, align="l" + "r" * len(sparsities)))


__all__ = ["sensitivity_scan", "format_sensitivity"]
