"""The devices verb and profile --device: tables with units, JSON fields, exit codes."""

from __future__ import annotations

import json

from tinyml_lab.cli import main
from tinyml_lab.mcu import names


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_devices_table_and_json(capsys):
    code, out, _ = run(capsys, "devices")
    assert code == 0 and all(n in out for n in names())
    assert "MHz" in out and "SRAM KB" in out and "active mW" in out
    code, out, _ = run(capsys, "devices", "--json")
    d = json.loads(out)
    assert [x["name"] for x in d] == names() and all(x["sources"] for x in d)


def test_profile_on_a_device(capsys):
    code, out, _ = run(capsys, "profile", "kws-dscnn", "--device", "stm32f746", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["fits"] is True and d["device"] == "stm32f746"
    for key in ("peak_sram_bytes", "flash_bytes", "latency_ms", "energy_mj"):
        assert d[key] > 0
    assert d["macs"] == 2_656_768  # the existing profile fields stay
    assert [lay["name"] for lay in d["layer_latency"]][:2] == ["conv1", "dw1"]
    assert abs(sum(lay["latency_ms"] for lay in d["layer_latency"]) - d["latency_ms"]) < 1e-3
    code, out, _ = run(capsys, "profile", "kws-dscnn", "--device", "nrf52840")
    assert code == 0 and "fits" in out and "latency" in out and " ms " in out and "mJ" in out


def test_profile_over_budget_says_by_how_much_and_what_helps(capsys):
    code, out, _ = run(capsys, "profile", "mobilenetv2", "--device", "nrf52840")
    assert code == 0 and "DOES NOT FIT" in out
    assert "SRAM over by" in out and "flash over by" in out
    for action in ("quantize", "in-place", "patch-based", "smaller width"):
        assert f"- {action} [" in out


def test_unknown_device_exits_2_and_lists_the_devices(capsys):
    code, out, err = run(capsys, "profile", "kws-dscnn", "--device", "stm32f999")
    assert code == 2 and not out and len(err.strip().splitlines()) == 1
    assert "known devices: " + ", ".join(names()) in err
