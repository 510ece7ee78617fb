"""The ``devices`` verb: the microcontroller profiles, with units.

    tinyml-lab devices
    tinyml-lab devices --json
"""

from __future__ import annotations

import argparse

from ..report import format_table, print_json


def cmd_devices(args: argparse.Namespace) -> None:
    from .devices import devices

    devs = devices()
    if args.json:
        print_json([d.to_json() for d in devs])
        return
    rows = [[d.name, d.core, f"{d.clock_mhz:g}", f"{d.sram_bytes // 1024:,}", f"{d.arena_budget_bytes // 1024:,}",
             f"{d.flash_bytes // 1024:,}", f"{d.active_power_mw:.1f}", f"{1000 * d.sleep_power_mw:.1f}", d.board]
            for d in devs]
    print(format_table(["device", "core", "MHz", "SRAM KB", "arena KB", "flash KB", "active mW", "sleep uW",
                        "board"], rows, align="llrrrrrrl"))
    print("\nSources for every figure: tinyml_lab/mcu/devices.json (tinyml-lab devices --json).")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("devices", help="the microcontroller profiles: core, clock, memories, power")
    s.add_argument("--json", action="store_true", help="print JSON, with the source of each figure")
    s.set_defaults(func=cmd_devices)


__all__ = ["register", "cmd_devices"]
