"""One model on one device: does it fit, how fast, how much energy, and what would help if it does not.

The model is simulated as deployed: BatchNorm folded, activations fused,
int8 (a float graph is quantized first, see
:func:`tinyml_lab.memory.deploy.deployed_graph`). The arena comes from a
greedy-by-size plan (TensorFlow Lite Micro's planner); latency from
:mod:`tinyml_lab.mcu.latency`; energy ``E = P_active t``.

When the model does not fit, :func:`simulate` says by how many bytes and
tries what helps, with numbers: int8 instead of float32, in-place
depthwise/element-wise ops, patch-based inference of the first stage, and a
smaller width multiplier.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..graph import Graph
from ..memory.deploy import deployed_graph
from ..memory.planners import plan as make_plan
from .devices import Device, get_core, get_device
from .energy import energy_mj
from .fit import FitReport, fit_check, runtime_code_bytes, runtime_sram_bytes
from .latency import LayerCost, layer_costs

WIDTHS = (1.0, 0.75, 0.5, 0.35, 0.25, 0.1)


@dataclass
class DeviceReport:
    """What :func:`simulate` found; ``to_json`` gives the fields of ``tinyml-lab profile --device``."""

    model: str
    device: Device
    fit: FitReport
    layers: list[LayerCost]
    quantized_from_float: bool
    suggestions: list[dict] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.fit.fits

    @property
    def peak_sram_bytes(self) -> int:
        return self.fit.peak_sram_bytes

    @property
    def flash_bytes(self) -> int:
        return self.fit.flash_bytes

    @property
    def cycles(self) -> float:
        return sum(c.cycles for c in self.layers)

    @property
    def latency_ms(self) -> float:
        return sum(c.latency_ms for c in self.layers)

    @property
    def energy_mj(self) -> float:
        return energy_mj(self.device.active_power_mw, self.latency_ms)

    def to_json(self) -> dict:
        f = self.fit
        return {
            "device": self.device.name,
            "board": self.device.board,
            "deployed_dtype": "int8",
            "quantized_from_float": self.quantized_from_float,
            "fits": f.fits,
            "peak_sram_bytes": f.peak_sram_bytes,
            "flash_bytes": f.flash_bytes,
            "latency_ms": round(self.latency_ms, 4),
            "energy_mj": round(self.energy_mj, 5),
            "cycles": int(round(self.cycles)),
            "sram": {"arena_bytes": f.arena_bytes, "runtime_bytes": f.runtime_sram_bytes,
                     "budget_bytes": f.sram_budget_bytes, "largest_block_bytes": f.arena_budget_bytes,
                     "headroom_bytes": f.sram_headroom_bytes, "over_bytes": f.sram_over_bytes},
            "flash": {"weight_bytes": f.weight_bytes, "quant_param_bytes": f.quant_param_bytes,
                      "runtime_code_bytes": f.runtime_code_bytes, "budget_bytes": f.flash_budget_bytes,
                      "headroom_bytes": f.flash_headroom_bytes, "over_bytes": f.flash_over_bytes},
            "over": {"sram_bytes": f.sram_over_bytes, "flash_bytes": f.flash_over_bytes},
            "suggestions": self.suggestions,
            "layer_latency": [c.to_json() for c in self.layers],
            "power_mw": self.device.active_power_mw,
        }


def simulate(graph: Graph, device: Device | str, planner: str = "greedy-size", inplace: bool = False,
             suggest: bool = True) -> DeviceReport:
    """Fit, latency and energy of ``graph`` (deployed as int8) on ``device``; suggestions if it does not fit."""
    dev = get_device(device)
    q = deployed_graph(graph)
    fit = fit_check(q, dev, planner=planner, inplace=inplace)
    report = DeviceReport(q.metadata.get("quantized_from", q.name), dev, fit, layer_costs(q, dev),
                          not graph.is_quantized)
    if suggest and not fit.fits:
        report.suggestions = suggestions(graph, q, dev, fit, report)
    return report


def suggestions(graph: Graph, q: Graph, dev: Device, fit: FitReport, report: DeviceReport) -> list[dict]:
    """What would bring the model within budget, each with the bytes it would need."""
    out: list[dict] = []
    rt = runtime_sram_bytes(q)
    if not graph.is_quantized:
        from ..passes import fold_batchnorm, fuse_activations

        fg = fuse_activations(fold_batchnorm(graph))
        f_sram = make_plan(fg).arena_bytes + rt
        f_flash = fg.weight_bytes + runtime_code_bytes(fg)
        out.append({"action": "quantize", "applied": True,
                    "detail": f"the estimate is already for int8; float32 would need {f_sram:,} B of SRAM and "
                              f"{f_flash:,} B of flash ({f_sram / max(fit.peak_sram_bytes, 1):.1f}x and "
                              f"{f_flash / max(fit.flash_bytes, 1):.1f}x the int8 figures)",
                    "peak_sram_bytes": f_sram, "flash_bytes": f_flash})
    if not fit.fits_sram:
        ip = make_plan(q, inplace=True).arena_bytes
        out.append({"action": "in-place", "applied": False, "peak_sram_bytes": ip + rt,
                    "fits": _sram_ok(ip, rt, dev),
                    "detail": f"in-place depthwise and element-wise ops: arena {fit.arena_bytes:,} -> {ip:,} B"})
        out.extend(_patch_suggestion(q, dev, rt, report))
    width = _width_suggestion(graph, dev)
    if width is not None:
        out.append(width)
    elif not fit.fits:
        need = []
        if not fit.fits_sram:
            need.append(min(1.0, (dev.sram_budget_bytes - rt) / max(fit.arena_bytes, 1)))
        if not fit.fits_flash:
            need.append(min(1.0, ((dev.flash_bytes - fit.runtime_code_bytes) / max(fit.weight_bytes, 1)) ** 0.5))
        alpha = max(min(need), 0.0)
        out.append({"action": "smaller width", "applied": False, "width_factor": round(alpha, 3),
                    "detail": f"scaling every layer's channels by a factor a scales activations by about a and "
                              f"weights by about a^2: a <= {alpha:.2f} would be needed"})
    return out


def _sram_ok(arena: int, rt: int, dev: Device) -> bool:
    return arena + rt <= dev.sram_budget_bytes and arena <= dev.arena_budget_bytes


def _patch_suggestion(q: Graph, dev: Device, rt: int, report: DeviceReport) -> list[dict]:
    from ..memory.patch import PatchError, plan_patches

    best = None
    for n in (2, 3, 4, 6, 8):
        try:
            p = plan_patches(q, n)
        except PatchError:
            continue
        ok = _sram_ok(p.peak_bytes_patched, rt, dev)
        if best is None or ok or p.peak_bytes_patched < best[1].peak_bytes_patched:
            best = (n, p, ok)
        if ok:
            break
    if best is None:
        return []
    n, p, ok = best
    core = get_core(dev.core)
    extra_ms = p.extra_macs * core.cycles_per_mac["conv"] / dev.clock_hz * 1000
    return [{"action": "patch-based", "applied": False, "patches": n, "split": p.split,
             "peak_sram_bytes": p.peak_bytes_patched + rt, "extra_macs": p.extra_macs,
             "extra_latency_ms": round(extra_ms, 3), "fits": ok,
             "detail": f"{n}x{n} patches up to '{p.split}': peak activations {p.peak_bytes_unpatched:,} -> "
                       f"{p.peak_bytes_patched:,} B for {p.extra_macs:,} more MACs (about +{extra_ms:.1f} ms)"}]


def _width_suggestion(graph: Graph, dev: Device) -> dict | None:
    """For a zoo model with a width option, the widest width below the current one that fits."""
    meta = graph.metadata.get("zoo", {})
    opts = dict(meta.get("options", {}))
    if "width" not in opts:
        return None
    from .. import zoo

    current = float(opts["width"])
    for w in [w for w in WIDTHS if w < current]:
        g = zoo.get(meta["model"], seed=meta.get("seed", 0), **dict(opts, width=w))
        r = simulate(g, dev, suggest=False)
        if r.fits:
            return {"action": "smaller width", "applied": False, "width": w, "fits": True,
                    "peak_sram_bytes": r.peak_sram_bytes, "flash_bytes": r.flash_bytes,
                    "latency_ms": round(r.latency_ms, 3),
                    "detail": f"width {w:g} instead of {current:g}: {r.peak_sram_bytes:,} B SRAM, "
                              f"{r.flash_bytes:,} B flash, {r.latency_ms:.1f} ms"}
    return {"action": "smaller width", "applied": False, "fits": False,
            "detail": f"no width down to {WIDTHS[-1]:g} fits; fewer classes, a lower resolution or pruning "
                      f"would be needed as well"}


__all__ = ["DeviceReport", "simulate", "suggestions"]
