"""Microcontroller profiles, read from ``devices.json`` (every figure there names its source).

>>> from tinyml_lab.mcu import get_device
>>> d = get_device("stm32f746")
>>> d.core, d.clock_mhz, d.sram_bytes // 1024, d.flash_bytes // 1024
('cortex-m7', 216.0, 320, 1024)
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import TinyMLError

KB = 1024


class UnknownDeviceError(TinyMLError, KeyError):
    """A device name that has no profile."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class Core:
    """Per-core kernel efficiency: cycles per MAC by op kind, cycles per element, per-op overhead."""

    name: str
    cycles_per_mac: dict[str, float]
    cycles_per_element: dict[str, float]
    op_overhead_cycles: float
    description: str = ""
    sources: dict[str, str] = field(default_factory=dict)
    derived_from: tuple[str, ...] = ()


@dataclass(frozen=True)
class Device:
    """One microcontroller: core, clock, memories, power, with the source of each figure.

    ``arena_budget_bytes`` is the largest contiguous SRAM block an arena can
    use; ``reserved_sram_bytes`` is what the system software keeps.
    ``active_power_mw`` is the power while running inference at ``clock_mhz``,
    ``sleep_power_mw`` the power in the low-power mode between inferences.
    """

    name: str
    board: str
    core: str
    clock_mhz: float
    sram_bytes: int
    arena_budget_bytes: int
    flash_bytes: int
    reserved_sram_bytes: int
    flash_cycles_per_byte: float
    voltage_v: float
    active_power_mw: float
    sleep_power_mw: float
    sources: dict[str, str] = field(default_factory=dict)
    to_check: tuple[str, ...] = ()

    @property
    def clock_hz(self) -> float:
        return self.clock_mhz * 1e6

    @property
    def sram_budget_bytes(self) -> int:
        """SRAM left to the model: ``sram - reserved``."""
        return self.sram_bytes - self.reserved_sram_bytes

    def to_json(self) -> dict:
        return {
            "name": self.name, "board": self.board, "core": self.core, "clock_mhz": self.clock_mhz,
            "sram_bytes": self.sram_bytes, "arena_budget_bytes": self.arena_budget_bytes,
            "flash_bytes": self.flash_bytes, "reserved_sram_bytes": self.reserved_sram_bytes,
            "flash_cycles_per_byte": self.flash_cycles_per_byte, "voltage_v": self.voltage_v,
            "active_power_mw": self.active_power_mw, "sleep_power_mw": self.sleep_power_mw,
            "sources": dict(self.sources), "to_check": list(self.to_check),
        }


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    text = resources.files("tinyml_lab.mcu").joinpath("devices.json").read_text(encoding="utf-8")
    return json.loads(text)


def data() -> dict[str, Any]:
    """The parsed ``devices.json`` (a fresh copy)."""
    return json.loads(json.dumps(_data()))


def names() -> list[str]:
    """Device names, as the CLI takes them (lower case)."""
    return list(_data()["devices"])


def _device(name: str, d: dict) -> Device:
    return Device(
        name=name, board=d["board"], core=d["core"], clock_mhz=float(d["clock_mhz"]),
        sram_bytes=int(d["sram_kb"] * KB), arena_budget_bytes=int(d["arena_budget_kb"] * KB),
        flash_bytes=int(d["flash_kb"] * KB), reserved_sram_bytes=int(d.get("reserved_sram_kb", 0) * KB),
        flash_cycles_per_byte=float(d.get("flash_cycles_per_byte", 0.0)), voltage_v=float(d["voltage_v"]),
        active_power_mw=float(d["active_power_mw"]), sleep_power_mw=float(d["sleep_power_mw"]),
        sources=dict(d.get("sources", {})), to_check=tuple(d.get("to_check", ())),
    )


def get_device(name: str | Device) -> Device:
    """The profile of ``name`` (case and ``_`` do not matter); an :class:`UnknownDeviceError` lists the known ones."""
    if isinstance(name, Device):
        return name
    devices = _data()["devices"]
    key = str(name).strip().lower().replace("_", "-")
    if key not in devices:
        close = difflib.get_close_matches(key, list(devices), n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownDeviceError(f"unknown device {name!r}{hint}; known devices: {', '.join(devices)}")
    return _device(key, devices[key])


def devices() -> list[Device]:
    return [get_device(n) for n in names()]


def get_core(name: str) -> Core:
    cores = _data()["cores"]
    if name not in cores:
        raise UnknownDeviceError(f"unknown core {name!r}; known cores: {', '.join(cores)}")
    c = cores[name]
    return Core(name, dict(c["cycles_per_mac"]), dict(c["cycles_per_element"]), float(c["op_overhead_cycles"]),
                c.get("description", ""), dict(c.get("sources", {})), tuple(c.get("derived_from", ())))


def measurements(use: str | None = None) -> list[dict]:
    """Published latency measurements (``use`` ``"calibration"`` or ``"check"``, or all)."""
    return [m for m in data()["measurements"] if use is None or m["use"] == use]


def runtime_costs() -> dict[str, float]:
    return {k: v for k, v in _data()["runtime"].items() if k != "sources"}


__all__ = ["Device", "Core", "UnknownDeviceError", "get_device", "get_core", "devices", "names", "measurements",
           "runtime_costs", "data", "KB"]
