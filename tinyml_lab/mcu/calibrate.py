"""Derive cycles per MAC by op kind from published whole-model latencies.

The four MLPerf Tiny models are in the zoo layer for layer, so a published
latency ``t`` at clock ``f`` is ``f t`` cycles of a known mix of work. For
each calibration measurement (a submitter on a board):

1. dense: the anomaly-detection autoencoder is all dense layers,
   ``c_dense = (f t_AD - E_AD) / MACs_AD``;
2. conv: the ResNet-8 is all convolutions but a 640-MAC classifier,
   ``c_conv = (f t_IC - E_IC - c_dense MACs_dense) / MACs_conv``;
3. depthwise: what keyword spotting leaves after its conv and dense layers,
   ``c_dw = (f t_KWS - E_KWS - c_conv MACs_conv - c_dense MACs_dense) / MACs_dw``;

where ``E`` is the cycles of the non-MAC ops and the per-op overhead at the
core's estimated costs. A core's value is the median over its measurements.
Visual wake words is held out. ``devices.json`` stores the results;
:func:`derive` recomputes them so a reader can check every number.
"""

from __future__ import annotations

import statistics
from functools import lru_cache

from ..graph import Graph
from .devices import Core, get_core, measurements
from .latency import MAC_KINDS, Work, graph_work, work_cycles

MODELS = ("kws-dscnn", "vww-mobilenetv1", "ic-resnet8", "ad-autoencoder")


@lru_cache(maxsize=None)
def mlperf_work(model: str) -> tuple[Work, ...]:
    """The work of a zoo MLPerf Tiny model as deployed (int8)."""
    from .. import zoo
    from ..memory.deploy import deployed_graph

    return tuple(graph_work(deployed_graph(zoo.get(model))))


def mix(work: tuple[Work, ...] | list[Work]) -> dict[str, int]:
    """MACs per MAC kind."""
    out = {k: 0 for k in MAC_KINDS}
    for w in work:
        if w.kind in out:
            out[w.kind] += w.macs
    return out


def other_cycles(work, core: Core) -> float:
    """Cycles of the non-MAC ops plus every op's overhead, at the core's estimated costs."""
    total = 0.0
    for w in work:
        if w.kind in MAC_KINDS:
            total += core.op_overhead_cycles
        else:
            total += work_cycles(w, core)
    return total


def derive_one(m: dict, core: Core) -> dict[str, float]:
    """Cycles per MAC (dense, conv, depthwise) implied by one measurement's latencies."""
    f = float(m["clock_mhz"]) * 1e6
    lat = m["latency_ms"]
    out: dict[str, float] = {}
    ad = mlperf_work("ad-autoencoder")
    out["dense"] = (f * lat["ad-autoencoder"] / 1000 - other_cycles(ad, core)) / mix(ad)["dense"]
    ic = mlperf_work("ic-resnet8")
    mi = mix(ic)
    out["conv"] = (f * lat["ic-resnet8"] / 1000 - other_cycles(ic, core) - out["dense"] * mi["dense"]) / mi["conv"]
    kws = mlperf_work("kws-dscnn")
    mk = mix(kws)
    rest = f * lat["kws-dscnn"] / 1000 - other_cycles(kws, core) - out["conv"] * mk["conv"] - out["dense"] * mk["dense"]
    out["depthwise"] = rest / mk["depthwise"]
    return out


def derive(core_name: str) -> dict[str, float]:
    """The median over the core's calibration measurements, per MAC kind."""
    core = get_core(core_name)
    per = [derive_one(m, core) for m in measurements("calibration") if m["core"] == core_name]
    if not per:
        return dict(core.cycles_per_mac)
    return {k: statistics.median(p[k] for p in per) for k in MAC_KINDS}


def predicted_ms(graph_or_model: Graph | str, core_name: str, clock_mhz: float,
                 flash_cycles_per_byte: float = 0.0) -> float:
    """Predicted latency (ms) of a zoo model or graph on a core at a clock."""
    work = mlperf_work(graph_or_model) if isinstance(graph_or_model, str) else tuple(graph_work(graph_or_model))
    core = get_core(core_name)
    return sum(work_cycles(w, core, flash_cycles_per_byte) for w in work) / (clock_mhz * 1e3)


def comparison() -> list[dict]:
    """Every published measurement next to the model's prediction for the same core and clock."""
    rows = []
    for m in measurements():
        for model, ms in m["latency_ms"].items():
            pred = predicted_ms(model, m["core"], m["clock_mhz"])
            rows.append({"id": m["id"], "use": m["use"], "board": m["board"], "framework": m["framework"],
                         "model": model, "published_ms": ms, "predicted_ms": round(pred, 3),
                         "error": round(pred / ms - 1.0, 4),
                         "held_out": m["use"] == "check" or model == "vww-mobilenetv1"})
    return rows


__all__ = ["MODELS", "mlperf_work", "mix", "other_cycles", "derive_one", "derive", "predicted_ms", "comparison"]
