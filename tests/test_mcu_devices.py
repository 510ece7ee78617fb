"""Device profiles: the required boards, a source for every figure, helpful errors, package data."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from tinyml_lab.mcu import UnknownDeviceError, devices, get_core, get_device, measurements, names

REQUIRED = {
    "stm32f746": ("cortex-m7", 216, 320, 1024),
    "stm32h743": ("cortex-m7", 480, None, None),
    "nucleo-l4r5zi": ("cortex-m4", 120, None, None),
    "nucleo-h7a3zi": ("cortex-m7", 280, None, None),
    "nrf52840": ("cortex-m4", 64, 256, 1024),
    "esp32-s3": ("xtensa-lx7", 240, 512, None),
    "rp2040": ("cortex-m0plus", 133, 264, None),
}


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_required_devices_and_their_figures(name):
    core, mhz, sram_kb, flash_kb = REQUIRED[name]
    d = get_device(name)
    assert (d.core, d.clock_mhz) == (core, mhz)
    assert d.clock_hz == mhz * 1e6
    if sram_kb:
        assert d.sram_bytes == sram_kb * 1024
    if flash_kb:
        assert d.flash_bytes == flash_kb * 1024
    assert 0 < d.arena_budget_bytes <= d.sram_bytes and 0 <= d.reserved_sram_bytes < d.sram_bytes
    assert d.active_power_mw > d.sleep_power_mw > 0
    for figure in ("core", "clock_mhz", "sram_kb", "flash_kb", "active_power_mw", "sleep_power_mw"):
        assert len(d.sources.get(figure, "")) > 20, f"{name}: no source for {figure}"
    get_core(d.core)  # every device's core has an efficiency profile


def test_names_are_lower_case_and_lookup_is_forgiving():
    assert names() == [n.lower() for n in names()]
    assert get_device("STM32F746").name == "stm32f746"
    assert get_device("nucleo_l4r5zi").name == "nucleo-l4r5zi"
    assert [d.name for d in devices()] == names()


def test_unknown_device_lists_the_known_ones():
    with pytest.raises(UnknownDeviceError) as e:
        get_device("stm32f747")
    msg = str(e.value)
    assert "did you mean 'stm32f746'" in msg and all(n in msg for n in names())
    with pytest.raises(KeyError):  # also a KeyError, for code that does not know the package
        get_device("arduino-uno")


def test_cores_cite_their_efficiency_and_measurements_are_complete():
    for core in ("cortex-m7", "cortex-m4", "cortex-m0plus", "xtensa-lx7"):
        c = get_core(core)
        assert set(c.cycles_per_mac) == {"conv", "depthwise", "dense"}
        assert set(c.cycles_per_element) == {"elementwise", "pool", "softmax", "copy"}
        assert all(len(c.sources[k]) > 20 for k in ("cycles_per_mac", "cycles_per_element", "op_overhead_cycles"))
    for m in measurements():
        assert m["use"] in ("calibration", "check") and "MLPerf Tiny" in m["source"]
        assert set(m["latency_ms"]) == {"kws-dscnn", "vww-mobilenetv1", "ic-resnet8", "ad-autoencoder"}


def test_device_data_ships_as_package_data():
    text = resources.files("tinyml_lab.mcu").joinpath("devices.json").read_text()
    data = json.loads(text)
    assert data["format"] == "tinyml-lab-devices" and set(REQUIRED) <= set(data["devices"])
    for d in data["devices"].values():
        assert set(d.get("to_check", [])) <= set(d["sources"])  # what is flagged has a named source
