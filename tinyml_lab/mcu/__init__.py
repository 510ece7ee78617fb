"""MCU simulator: device profiles, a fit check, latency, energy and battery life.

>>> from tinyml_lab import zoo
>>> from tinyml_lab.mcu import simulate
>>> r = simulate(zoo.get("kws-dscnn"), "stm32f746")   # doctest: +SKIP
>>> r.fits, r.peak_sram_bytes, round(r.latency_ms, 1)  # doctest: +SKIP

* :mod:`~tinyml_lab.mcu.devices`: the profiles of ``devices.json``;
* :mod:`~tinyml_lab.mcu.latency`: cycles per op from MACs and bytes moved;
* :mod:`~tinyml_lab.mcu.calibrate`: the per-core efficiency derived from published measurements;
* :mod:`~tinyml_lab.mcu.energy`: energy per inference and battery life;
* :mod:`~tinyml_lab.mcu.fit`: flash and SRAM budgets with headroom;
* :mod:`~tinyml_lab.mcu.simulator`: all of it for one model on one device.
"""

from .devices import Core, Device, UnknownDeviceError, devices, get_core, get_device, measurements, names
from .energy import average_power_mw, battery_life_hours, energy_mj
from .fit import FitReport, fit_check
from .latency import LayerCost, layer_costs, latency_ms
from .simulator import DeviceReport, simulate

__all__ = ["Core", "Device", "UnknownDeviceError", "devices", "get_core", "get_device", "measurements", "names",
           "energy_mj", "battery_life_hours", "average_power_mw", "FitReport", "fit_check", "LayerCost",
           "layer_costs", "latency_ms", "DeviceReport", "simulate"]
