"""CLI verb ``fleet``: simulate a fleet of microcontrollers that drifts, retrains and rolls out updates.

    tinyml-lab fleet simulate --devices 20 --drift sudden --strategy canary --seed 0
    tinyml-lab fleet simulate --devices 20 --drift gradual --strategy bandit --retrain full --json
"""

from __future__ import annotations

import argparse
import io

from ..report import format_bytes, format_table, print_json


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _drift_text(cfg: dict) -> str:
    if cfg["drift"] == "none":
        return "no drift"
    what = cfg["shift"] or "label shift"
    if cfg["shift"] not in (None, "invert") and cfg["strength"] is not None:
        what += f" {cfg['strength']:g}"
    when = f"at step {cfg['t0']}"
    if cfg["drift"] == "gradual":
        when = f"ramping from step {cfg['t0']} over {cfg['period']} steps"
    elif cfg["drift"] == "recurring":
        when = f"from step {cfg['t0']}, {cfg['period']} steps on, {cfg['period']} off"
    return f"{cfg['drift']} drift ({what}, {when})"


def print_report(report) -> None:
    """The report as tables: timeline, events, versions, summary."""
    cfg = report.config
    s = report.summary()
    stage = {"manual": "manual retraining only", "scheduled": f"scheduled retraining every {cfg['every']} steps",
             "stateful": f"stateful fine-tuning every {cfg['every']} steps",
             "drift": f"drift-triggered ({cfg['detector']})"}[cfg["stage"]]
    print(f"fleet: {cfg['devices']} devices x {cfg['steps']} steps of {cfg['batch_size']} samples, "
          f"{_drift_text(cfg)}")
    print(f"{stage} {cfg['retrain']} updates, {cfg['strategy']} rollout, seed {cfg['seed']}")
    print()
    every = max(1, cfg["steps"] // 12)
    rows = [[r["step"], _pct(r["p_shift"]), _pct(r["accuracy"]), _pct(r["min_accuracy"]),
             " ".join(f"{v} x{n}" for v, n in r["served"].items()), format_bytes(r["update_bytes"])]
            for r in report.timeline(every)]
    print(format_table(["step", "shifted", "accuracy", "min device", "served", "update bytes (cum.)"], rows,
                       align="rrrrlr"))
    if report.events:
        print()
        print(format_table(["step", "event", "detail"], [[e["step"], e["kind"], e["detail"]] for e in report.events],
                           align="rll"))
    print()
    print(format_table(
        ["version", "kind", "parent", "package", "status", "holdout clean", "holdout shifted"],
        [[v["version"], v["kind"], v["parent"] or "-", format_bytes(v["package_bytes"]), v["status"],
          _pct(v["holdout_clean"]), _pct(v["holdout_shifted"])] for v in report.versions],
        align="llllrrr"))
    print()
    ttr = s["time_to_recover"]
    items = [
        ("accuracy before the shift", _pct(s["accuracy_before"])),
        ("accuracy at its lowest after it", _pct(s["accuracy_after_shift"])),
        ("accuracy at the end", _pct(s["accuracy_end"])),
        (f"steps to regain {cfg['recovery_share']:.0%} of the drop", "-" if ttr is None else str(ttr)),
        ("share of the drop regained at the end", _pct(s["recovered_share"])),
        ("updates released / promoted", f"{s['updates_released']} / {s['promoted']}"),
        ("rollbacks", str(s["rollbacks"])),
        ("rejected packages", str(s["rejected_packages"])),
        ("update bytes sent", f"{format_bytes(s['update_bytes'])} ({s['update_bytes']:,} bytes)"),
        ("update energy (radio + device training)",
         f"{s['update_energy_mj']:.2f} mJ ({s['radio_energy_mj']:.2f} + {s['device_train_mj']:.2f})"),
        ("uplink bytes (labelled samples)", format_bytes(s["uplink_bytes"])),
        ("versions serving at the end", ", ".join(s["final_versions"])),
    ]
    print(format_table(["summary", "value"], items, align="lr"))


def cmd_fleet_simulate(args: argparse.Namespace) -> None:
    from ..files import check_file, write_atomic
    from .fleet import Fleet, FleetConfig

    cfg = FleetConfig(devices=args.devices, steps=args.steps, drift=args.drift, strategy=args.strategy,
                      retrain=args.retrain, stage=args.stage, seed=args.seed, shift=args.shift,
                      strength=None if args.shift == "invert" else args.strength, t0=args.t0, period=args.period,
                      every=args.every, detector=args.detector, tamper_rate=args.tamper_rate,
                      onset_jitter=args.onset_jitter).check()
    target = check_file(args.plot, "figure") if args.plot else None
    store = None
    if args.metrics_db:
        from .monitoring import MetricsStore

        store = MetricsStore(args.metrics_db)
    try:
        report = Fleet(cfg, store=store).run(quiet=args.quiet)
    finally:
        if store is not None:
            store.close()
    if target is not None:
        import matplotlib

        matplotlib.use("Agg")
        buf = io.BytesIO()
        report.plot().savefig(buf, format=target.suffix.lstrip(".") or "png", dpi=120, bbox_inches="tight")
        write_atomic(target, buf.getvalue(), "figure")
    if args.json:
        print_json(report.to_json())
        return
    print_report(report)
    if target is not None:
        print(f"\nfigure written to {target}")


def register(subparsers) -> None:
    from .continual import DETECTORS, RETRAINS, STAGES
    from .rollout import STRATEGIES
    from .streams import DRIFTS

    p = subparsers.add_parser("fleet", help="simulate a fleet of devices: drift, retraining, signed rollouts")
    sub = p.add_subparsers(dest="fleet_verb", required=True, metavar="ACTION")
    s = sub.add_parser(
        "simulate", help="run the fleet simulation and report accuracy, bytes, energy, rollbacks",
        description="N microcontrollers run the int8 digits-cnn on their own drifting streams; the cloud watches "
                    "their summaries, retrains when its trigger says so, signs the update and rolls it out.")
    s.add_argument("--devices", type=int, default=20, help="number of devices (default 20)")
    s.add_argument("--steps", type=int, default=60, help="simulation steps (default 60)")
    s.add_argument("--drift", default="sudden", metavar="KIND", help=f"{', '.join(DRIFTS)} (default sudden)")
    s.add_argument("--strategy", default="canary", metavar="NAME",
                   help=f"rollout strategy: {', '.join(STRATEGIES)} (default canary; none pushes to all at once)")
    s.add_argument("--retrain", default="sparse", metavar="KIND",
                   help=f"{', '.join(RETRAINS)}: on-device sparse update shipped as a patch, or cloud retrain "
                        f"shipped as the whole model (default sparse)")
    s.add_argument("--stage", default="drift", metavar="STAGE",
                   help=f"continual-learning stage: {', '.join(STAGES)} (default drift)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--shift", default="rotate", metavar="KIND", help="covariate shift: rotate, noise, invert")
    s.add_argument("--strength", type=float, default=30.0, help="shift strength (degrees, sigma; default 30)")
    s.add_argument("--t0", type=int, default=20, help="first step of the drift (default 20)")
    s.add_argument("--period", type=int, default=10, help="ramp (gradual) or phase (recurring) length in steps")
    s.add_argument("--every", type=int, default=15, help="steps between scheduled retrains (default 15)")
    s.add_argument("--detector", default="ks", metavar="NAME", help=f"drift detector: {', '.join(DETECTORS)}")
    s.add_argument("--tamper-rate", type=float, default=0.0,
                   help="probability that a package is damaged in transit (default 0)")
    s.add_argument("--onset-jitter", type=int, default=0, help="devices start drifting up to this many steps late")
    s.add_argument("--plot", default=None, metavar="FILE", help="write the figure (PNG, SVG, PDF) to FILE")
    s.add_argument("--metrics-db", default=None, metavar="FILE",
                   help="also log predictions, feature summaries and events to this SQLite metrics store")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_fleet_simulate)


__all__ = ["register", "cmd_fleet_simulate", "print_report"]
