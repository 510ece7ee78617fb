"""Plain-text rendering of a :class:`~tinyml_lab.mcu.simulator.DeviceReport` for the CLI."""

from __future__ import annotations

from ..report import format_bytes, format_table
from .simulator import DeviceReport


def format_layer_latency(report: DeviceReport, top: int | None = None) -> str:
    """Per-layer latency table (ms, share of the total)."""
    total = report.latency_ms or 1.0
    layers = report.layers
    if top is not None:
        layers = sorted(layers, key=lambda c: -c.latency_ms)[:top]
    rows = [[c.name, c.op, f"{c.macs:,}", f"{c.cycles:,.0f}", f"{c.latency_ms:.3f}", f"{100 * c.latency_ms / total:.1f}"]
            for c in layers]
    return format_table(["layer", "op", "MACs", "cycles", "ms", "%"], rows, align="llrrrr")


def print_device_report(report: DeviceReport) -> None:
    d, f = report.device, report.fit
    verdict = "fits" if f.fits else "DOES NOT FIT"
    print(f"on {d.name} ({d.board}; {d.core}, {d.clock_mhz:g} MHz): {verdict}"
          f"{' (int8, quantized from float32)' if report.quantized_from_float else ' (int8)'}")
    print(format_table(
        ["memory", "used", "budget", "headroom", "detail"],
        [["SRAM", format_bytes(f.peak_sram_bytes), format_bytes(f.sram_budget_bytes),
          format_bytes(f.sram_headroom_bytes),
          f"arena {f.arena_bytes:,} B (largest block {f.arena_budget_bytes:,} B) + runtime {f.runtime_sram_bytes:,} B"],
         ["flash", format_bytes(f.flash_bytes), format_bytes(f.flash_budget_bytes),
          format_bytes(f.flash_headroom_bytes),
          f"weights {f.weight_bytes:,} B + quant. params {f.quant_param_bytes:,} B + code {f.runtime_code_bytes:,} B"]],
        align="lrrrl"))
    print()
    print(f"latency           {report.latency_ms:.2f} ms ({report.cycles:,.0f} cycles)")
    print(f"energy            {report.energy_mj:.3f} mJ per inference at {d.active_power_mw:g} mW")
    print()
    print(format_layer_latency(report))
    if not f.fits:
        print()
        if f.sram_over_bytes:
            print(f"SRAM over by {f.sram_over_bytes:,} bytes ({format_bytes(f.sram_over_bytes)})")
        if f.flash_over_bytes:
            print(f"flash over by {f.flash_over_bytes:,} bytes ({format_bytes(f.flash_over_bytes)})")
        print("what would help:")
        for s in report.suggestions:
            scope = " SRAM" if s["action"] in ("in-place", "patch-based") else ""
            mark = "done" if s.get("applied") else (f"fits{scope}" if s.get("fits") else "not enough")
            print(f"  - {s['action']} [{mark}]: {s['detail']}")


__all__ = ["print_device_report", "format_layer_latency"]
