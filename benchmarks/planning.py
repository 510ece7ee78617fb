"""Memory planning and MCU estimates for every zoo model, as deployed (int8).

Prints five tables:

1. arena bytes of each planner against the lower bound, with planning times;
2. patch-based inference (MCUNetV2) of mobilenetv2 and vww-mobilenetv1 at
   2x2, 3x3 and 4x4 patches: peak memory and MAC overhead;
3. what in-place depthwise and element-wise ops save;
4. predicted latency (ms) and energy (mJ) of every zoo model on every device;
5. the published latencies the per-core efficiency was calibrated on, and
   the held-out ones, next to the prediction.

    python benchmarks/planning.py          # tables
    python benchmarks/planning.py --json   # the same data as JSON
"""

from __future__ import annotations

import argparse
import json
import time

from tinyml_lab import zoo
from tinyml_lab.mcu import devices, simulate
from tinyml_lab.mcu.calibrate import comparison
from tinyml_lab.memory import deployed_graph, graph_lifetimes, plan, plan_patches
from tinyml_lab.report import format_table

ORDER = ["greedy-size", "greedy-breadth", "exact", "linear", "no-reuse"]


def _timed_plan(lt, name: str, time_limit: float, repeats: int = 5):
    best, p = None, None
    for _ in range(1 if name == "exact" else repeats):
        t0 = time.perf_counter()
        p = plan(lt, name, **({"time_limit": time_limit} if name == "exact" else {}))
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return p, best


def planners_table(graphs: dict, time_limit: float) -> list[dict]:
    rows = []
    for name, q in graphs.items():
        lt = graph_lifetimes(q)
        row = {"model": name, "buffers": len(lt), "lower_bound_bytes": lt.lower_bound(16), "planners": {}}
        for pn in ORDER:
            p, dt = _timed_plan(lt, pn, time_limit)
            row["planners"][pn] = {"arena_bytes": p.arena_bytes, "ratio": round(p.ratio, 4), "ms": round(dt * 1e3, 3)}
            if pn == "exact":
                row["exact"] = {k: p.info.get(k) for k in ("optimal", "solver", "time_limit_s", "proven_bound_bytes")}
        rows.append(row)
    return rows


def patch_table(graphs: dict) -> list[dict]:
    rows = []
    for name in ("mobilenetv2", "vww-mobilenetv1"):
        for n in (2, 3, 4):
            t0 = time.perf_counter()
            p = plan_patches(graphs[name], n)
            rows.append({"model": name, "patches": n, "seconds": round(time.perf_counter() - t0, 3), **p.to_json()})
    return rows


def inplace_table(graphs: dict) -> list[dict]:
    rows = []
    for name, q in graphs.items():
        a, b = plan(q, "greedy-size"), plan(q, "greedy-size", inplace=True)
        lt, lti = graph_lifetimes(q), graph_lifetimes(q, inplace=True)
        dw = [i for i, n in enumerate(q.nodes) if n.op == "DepthwiseConv2D"]
        live, live_i = lt.live_bytes(16), lti.live_bytes(16)
        rows.append({"model": name, "depthwise_layers": len(dw), "arena_bytes": a.arena_bytes,
                     "arena_bytes_inplace": b.arena_bytes, "saved_bytes": a.arena_bytes - b.arena_bytes,
                     "lower_bound_bytes": lt.lower_bound(16), "lower_bound_bytes_inplace": lti.lower_bound(16),
                     "largest_depthwise_step_bytes": int(max(live[dw])) if dw else 0,
                     "largest_depthwise_step_bytes_inplace": int(max(live_i[dw])) if dw else 0})
    return rows


def device_table(graphs: dict) -> list[dict]:
    rows = []
    for name, q in graphs.items():
        for d in devices():
            r = simulate(q, d, suggest=False)
            rows.append({"model": name, "device": d.name, "fits": r.fits, "peak_sram_bytes": r.peak_sram_bytes,
                         "flash_bytes": r.flash_bytes, "latency_ms": round(r.latency_ms, 3),
                         "energy_mj": round(r.energy_mj, 4)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds for the exact planner")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    graphs = {name: deployed_graph(zoo.get(name)) for name in zoo.names()}
    result = {"planners": planners_table(graphs, args.time_limit), "patches": patch_table(graphs),
              "inplace": inplace_table(graphs), "devices": device_table(graphs), "published": comparison()}
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0

    print(f"1. Arena bytes per planner (int8, 16-byte alignment; ratio to the lower bound; best of 5 planning "
          f"times; exact planner time limit {args.time_limit:g} s)\n")
    rows = []
    for r in result["planners"]:
        cells = [r["model"], str(r["buffers"]), f"{r['lower_bound_bytes']:,}"]
        for pn in ORDER:
            p = r["planners"][pn]
            cells.append(f"{p['arena_bytes']:,} ({p['ratio']:.2f})")
        cells.append(" / ".join(f"{r['planners'][pn]['ms']:.2f}" for pn in ORDER))
        rows.append(cells)
    print(format_table(["model", "bufs", "lower bound B", *ORDER, "ms (same order)"], rows, align="lrrrrrrrl"))

    print("\n2. Patch-based inference of the first stage (MCUNetV2); peak = max(stitched output + largest patch "
          "working set, peak after the split)\n")
    print(format_table(
        ["model", "patches", "split", "peak B", "patched peak B", "x smaller", "extra MACs", "MAC overhead"],
        [[r["model"], f"{r['patches']}x{r['patches']}", r["split"], f"{r['peak_bytes_unpatched']:,}",
          f"{r['peak_bytes_patched']:,}", f"{r['reduction']:.2f}", f"{r['extra_macs']:,}",
          f"{100 * r['mac_overhead']:.1f}%"] for r in result["patches"]], align="lllrrrrr"))

    print("\n3. In-place depthwise and element-wise ops (greedy-size arena; at a depthwise step 2N -> N + H_out W_out)\n")
    print(format_table(
        ["model", "dw layers", "arena B", "in-place B", "saved B", "worst dw step B", "in-place B"],
        [[r["model"], str(r["depthwise_layers"]), f"{r['arena_bytes']:,}", f"{r['arena_bytes_inplace']:,}",
          f"{r['saved_bytes']:,}", f"{r['largest_depthwise_step_bytes']:,}",
          f"{r['largest_depthwise_step_bytes_inplace']:,}"] for r in result["inplace"]], align="lrrrrrr"))

    print("\n4. Predicted latency (ms) and energy per inference (mJ), int8; '*' = does not fit\n")
    devs = [d.name for d in devices()]
    rows = []
    for name in graphs:
        cells = [name]
        for dn in devs:
            r = next(x for x in result["devices"] if x["model"] == name and x["device"] == dn)
            cells.append(f"{r['latency_ms']:.1f} / {r['energy_mj']:.2f}{'' if r['fits'] else '*'}")
        rows.append(cells)
    print(format_table(["model (ms / mJ)", *devs], rows, align="l" + "r" * len(devs)))

    print("\n5. Published MLPerf Tiny latencies next to the prediction (calibration rows fix the cycles per MAC; "
          "held-out rows do not)\n")
    print(format_table(
        ["source", "board", "model", "published ms", "predicted ms", "error", "role"],
        [[r["id"], r["board"], r["model"], f"{r['published_ms']:.2f}", f"{r['predicted_ms']:.2f}",
          f"{100 * r['error']:+.1f}%", "held out" if r["held_out"] else "calibration"] for r in result["published"]],
        align="lllrrrl"))
    print(f"\n({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
