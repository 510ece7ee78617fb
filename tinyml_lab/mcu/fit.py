"""Does it fit? Flash and SRAM budgets of one graph on one device, each with its headroom.

* flash: ``weights + biases + 8 bytes per output channel (requantization
  multiplier and shift) + runtime code``, with runtime code
  ``16 KB + 4 KB per op type`` (see ``devices.json`` for the sources);
* SRAM: ``arena + runtime``, the arena from a memory plan
  (:func:`tinyml_lab.memory.plan`), the runtime ``4 KB + 64 B per tensor``.
  The arena must also fit in the largest contiguous SRAM block.

Headroom is ``budget - used`` (negative when over).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..graph import Graph
from ..memory.planners import Plan, plan as make_plan
from .devices import Device, get_device, runtime_costs


@dataclass(frozen=True)
class FitReport:
    """Bytes used and available on one device."""

    device: str
    arena_bytes: int
    runtime_sram_bytes: int
    peak_sram_bytes: int
    sram_budget_bytes: int
    arena_budget_bytes: int
    weight_bytes: int
    quant_param_bytes: int
    runtime_code_bytes: int
    flash_bytes: int
    flash_budget_bytes: int

    @property
    def sram_over_bytes(self) -> int:
        """Bytes over the SRAM budget (or over the largest block, whichever is worse); 0 if it fits."""
        return max(self.peak_sram_bytes - self.sram_budget_bytes, self.arena_bytes - self.arena_budget_bytes, 0)

    @property
    def flash_over_bytes(self) -> int:
        return max(self.flash_bytes - self.flash_budget_bytes, 0)

    @property
    def sram_headroom_bytes(self) -> int:
        return min(self.sram_budget_bytes - self.peak_sram_bytes, self.arena_budget_bytes - self.arena_bytes)

    @property
    def flash_headroom_bytes(self) -> int:
        return self.flash_budget_bytes - self.flash_bytes

    @property
    def fits_sram(self) -> bool:
        return self.sram_over_bytes == 0

    @property
    def fits_flash(self) -> bool:
        return self.flash_over_bytes == 0

    @property
    def fits(self) -> bool:
        return self.fits_sram and self.fits_flash

    def to_json(self) -> dict:
        d = asdict(self)
        d.update(fits=self.fits, fits_sram=self.fits_sram, fits_flash=self.fits_flash,
                 sram_over_bytes=self.sram_over_bytes, flash_over_bytes=self.flash_over_bytes,
                 sram_headroom_bytes=self.sram_headroom_bytes, flash_headroom_bytes=self.flash_headroom_bytes)
        return d


def runtime_sram_bytes(graph: Graph) -> int:
    """``sram_base + sram_per_tensor * (number of activation tensors)``."""
    rt = runtime_costs()
    n = sum(1 for t in graph.tensors.values() if not t.is_const)
    return int(rt["sram_base_bytes"] + rt["sram_per_tensor_bytes"] * n)


def quant_param_bytes(graph: Graph) -> int:
    """Per-output-channel requantization parameters of every conv, depthwise and dense layer."""
    rt = runtime_costs()
    channels = 0
    for node in graph.nodes:
        w = graph.weights(node).get("weight")
        if w is not None:
            channels += w.shape[-1] if node.op == "DepthwiseConv2D" else w.shape[0]
    return int(rt["flash_per_channel_bytes"] * channels)


def runtime_code_bytes(graph: Graph) -> int:
    """``flash_base + flash_per_op_type * (number of distinct ops)``."""
    rt = runtime_costs()
    return int(rt["flash_base_bytes"] + rt["flash_per_op_type_bytes"] * len({n.op for n in graph.nodes}))


def fit_check(graph: Graph, device: Device | str, plan: Plan | None = None, planner: str = "greedy-size",
              inplace: bool = False) -> FitReport:
    """Flash and SRAM use of ``graph`` on ``device`` (the arena from ``plan``, or a fresh ``planner`` plan)."""
    dev = get_device(device)
    p = plan if plan is not None else make_plan(graph, planner, inplace=inplace)
    weights = graph.weight_bytes
    qp = quant_param_bytes(graph) if graph.is_quantized else 0
    code = runtime_code_bytes(graph)
    rt = runtime_sram_bytes(graph)
    return FitReport(
        device=dev.name, arena_bytes=p.arena_bytes, runtime_sram_bytes=rt, peak_sram_bytes=p.arena_bytes + rt,
        sram_budget_bytes=dev.sram_budget_bytes, arena_budget_bytes=dev.arena_budget_bytes, weight_bytes=weights,
        quant_param_bytes=qp, runtime_code_bytes=code, flash_bytes=weights + qp + code,
        flash_budget_bytes=dev.flash_bytes,
    )


__all__ = ["FitReport", "fit_check", "runtime_sram_bytes", "quant_param_bytes", "runtime_code_bytes"]
