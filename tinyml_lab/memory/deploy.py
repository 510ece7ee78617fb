"""The graph as it is deployed: BatchNorm folded, activations fused, int8 (TFLite spec).

Memory plans and MCU estimates are made for this graph. A float graph is
quantized with a few seeded random calibration samples: the ranges (and so
the int8 codes) are not those of real data, but shapes, byte counts, MACs
and the schedule, which is all planning and simulation read, are exact.
"""

from __future__ import annotations

import numpy as np

from ..graph import Graph


def deployed_graph(graph: Graph, seed: int = 0, samples: int = 4) -> Graph:
    """``graph`` itself when it is already int8, else ``quantize_model(graph, x)`` with ``x`` drawn
    from a standard normal distribution (``samples`` samples, seeded)."""
    if graph.is_quantized:
        return graph
    from ..quant import quantize_model

    rng = np.random.default_rng(seed)
    calib = rng.standard_normal((samples,) + graph.input_shape()).astype(np.float32)
    return quantize_model(graph, calib)


def sample_input(graph: Graph, n: int = 1, seed: int = 0) -> np.ndarray:
    """``n`` seeded random inputs for ``graph`` (int8 codes for an int8 graph)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n,) + graph.input_shape()).astype(np.float32)
    if graph.is_quantized:
        from ..quant import quantize_input

        return quantize_input(graph, x)
    return x


__all__ = ["deployed_graph", "sample_input"]
