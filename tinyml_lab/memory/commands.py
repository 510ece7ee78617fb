"""The ``plan`` verb: arena bytes of every planner against the lower bound, patch-based peaks, a picture.

    tinyml-lab plan kws-dscnn
    tinyml-lab plan mobilenetv2 --planner exact --time-limit 5 --json
    tinyml-lab plan vww-mobilenetv1 --patches 4 --plot arena.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import TinyMLError
from ..report import format_bytes, format_table, print_json
from .planners import planner_names


def cmd_plan(args: argparse.Namespace) -> None:
    from ..models import load_model
    from .deploy import deployed_graph
    from .lifetimes import graph_lifetimes
    from .patch import plan_patches
    from .planners import compare

    names = planner_names() if args.planner == "all" else [args.planner]
    if args.plot:
        out = Path(args.plot)
        if not out.parent.is_dir():
            raise TinyMLError(f"cannot write {out}: folder {out.parent} does not exist")
    g = load_model(args.model)
    q = g if args.float else deployed_graph(g)
    lt = graph_lifetimes(q, inplace=args.inplace)
    plans = compare(lt, names, alignment=args.alignment, time_limit=args.time_limit)
    lb = lt.lower_bound(args.alignment)
    result: dict = {
        "model": q.name,
        "dtype": "int8" if q.is_quantized else "float32",
        "inplace": args.inplace,
        "alignment": args.alignment,
        "lower_bound_bytes": lb,
        "planners": {p.planner: p.arena_bytes for p in plans},
        "ratio": {p.planner: round(p.ratio, 4) for p in plans},
        "seconds": {p.planner: p.seconds for p in plans},
    }
    exact = [p for p in plans if p.planner == "exact"]
    if exact:
        result["exact"] = exact[0].info
    patched = None
    if args.patches:
        patched = plan_patches(q, args.patches)
        result.update(patched.to_json())
    if args.plot:
        from .plot import plot_plan

        best = min(plans, key=lambda p: p.arena_bytes)
        plot_plan(best).savefig(args.plot, dpi=150)
        result["plot"] = str(args.plot)
    if args.json:
        print_json(result)
        return
    print(f"{q.name}: {len(q.nodes)} steps, {len(lt)} buffers, {result['dtype']}, alignment {args.alignment} B"
          f"{', in-place ops' if args.inplace else ''}")
    rows = [[p.planner, f"{p.arena_bytes:,}", format_bytes(p.arena_bytes), f"{p.ratio:.3f}",
             f"{p.seconds * 1000:.2f}"] for p in plans]
    rows.append(["lower bound", f"{lb:,}", format_bytes(lb), "1.000", "-"])
    print(format_table(["planner", "arena bytes", "arena", "x lower bound", "time ms"], rows, align="lrrrr"))
    if exact:
        info = exact[0].info
        if info.get("solver") == "heuristic":
            state = f"the {info.get('start')} plan meets the lower bound, so it is optimal (no program solved)"
        elif info.get("optimal"):
            state = f"optimal, proven by {info.get('solver')}"
        else:
            state = (f"best plan found within the limit; no plan can be below {info.get('proven_bound_bytes', lb):,} B "
                     f"({info.get('solver')})")
        print(f"\nexact: {state}; time limit {info.get('time_limit_s')} s")
    if patched is not None:
        s = patched.stats
        print(f"\npatch-based, {args.patches}x{args.patches} patches up to '{patched.split}':")
        print(f"  peak memory  {s['peak_bytes_unpatched']:,} B -> {s['peak_bytes_patched']:,} B "
              f"({s['reduction']:.2f}x smaller)")
        print(f"  extra MACs   {s['extra_macs']:,} (+{100 * s['mac_overhead']:.1f}% of {s['total_macs']:,})")
    if args.plot:
        print(f"\narena picture written to {args.plot}")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("plan", help="memory plans of a model: arena bytes per planner against the lower bound")
    s.add_argument("model", help="a zoo model name or a saved model file (.npz); float models are quantized first")
    s.add_argument("--planner", default="all", choices=["all", *planner_names()],
                   help="one planner or all of them (default)")
    s.add_argument("--patches", type=int, default=0, metavar="N",
                   help="also plan NxN patch-based inference of the first stage")
    s.add_argument("--plot", metavar="PNG", help="draw the best plan's arena to this image file")
    s.add_argument("--alignment", type=int, default=16, help="offset alignment in bytes (default 16)")
    s.add_argument("--inplace", action="store_true",
                   help="let depthwise and element-wise ops write over their input")
    s.add_argument("--time-limit", type=float, default=10.0, help="seconds for the exact planner (default 10)")
    s.add_argument("--float", action="store_true", help="plan the float32 graph as given, not the int8 one")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_plan)


__all__ = ["register", "cmd_plan"]
