"""CLI verbs of the training engine: ``tinyml-lab qas`` and ``tinyml-lab grad-ratios``."""

from __future__ import annotations

import argparse

from ..errors import TinyMLError
from ..report import print_json


def cmd_qas(args: argparse.Namespace) -> None:
    from .transfer import format_qas_table, lr_sweep, qas_experiment, transfer_task

    if args.sweep is not None:
        rows = lr_sweep(args.sweep, args.lr_values or [1.0, 10.0, 100.0, 1e3, 1e4, 1e5], task=args.task,
                        seed=args.seeds[0], epochs=args.epochs, batch_size=args.batch_size, last_k=args.last_k,
                        rounding=args.rounding, logit_range=args.logit_range)
        if args.json:
            print_json(rows)
            return
        from ..report import format_table

        print(format_table(["method", "lr", "test accuracy %", "steps rounded to 0", "diverged"],
                           [[r["method"], f"{r['lr']:g}", f"{100 * r['accuracy']:.1f}",
                             "-" if r["update_zero_fraction"] is None else f"{100 * r['update_zero_fraction']:.1f}%",
                             r["diverged"]] for r in rows], align="lrrrr"))
        return
    rows = qas_experiment(task=args.task, seeds=args.seeds, lr=args.lr, epochs=args.epochs,
                          batch_size=args.batch_size, last_k=args.last_k, rounding=args.rounding,
                          logit_range=args.logit_range, quiet=args.quiet)
    if args.json:
        print_json({"task": args.task, "seeds": list(args.seeds), "rows": rows})
        return
    print(f"task: {transfer_task(args.task).description}")
    print(f"{args.epochs} epochs, batch {args.batch_size}, seeds {', '.join(map(str, args.seeds))}, "
          f"{'all layers' if args.last_k is None else f'last {args.last_k} layer(s)'}, "
          f"rounding {args.rounding}, logit range {args.logit_range}")
    print(format_qas_table(rows))


def cmd_grad_ratios(args: argparse.Namespace) -> None:
    from .diagnostics import format_ratios, gradient_ratios, plot_gradient_ratios
    from .transfer import device_models, load_backbone, transfer_task

    t = transfer_task(args.task)
    f, q = device_models(load_backbone(), t, args.seed)
    n = args.batch_size
    rows = gradient_ratios(f, t.x_train[:n], t.y_train[:n], quantized=q, include_bias=args.bias)
    if args.plot:
        from pathlib import Path

        out = Path(args.plot)
        if not out.parent.is_dir():
            raise TinyMLError(f"cannot write {out}: folder {out.parent} does not exist")
        plot_gradient_ratios(rows).savefig(out, dpi=120)
    if args.json:
        print_json(rows)
        return
    print(f"||W|| / ||G|| per layer on {n} images of task {args.task!r} (device model, seed {args.seed})")
    print(format_ratios(rows))
    if args.plot:
        print(f"figure written to {args.plot}")


def register(subparsers) -> None:
    from .transfer import LR_GRID, METHODS, TASKS

    s = subparsers.add_parser(
        "qas", help="on-device transfer: fp32 vs int8 SGD-M with and without QAS vs int8 Adam",
        description=f"Adapt the digits backbone on the int8 'device'. Without --lr, each method's learning "
                    f"rate is chosen from {', '.join(f'{v:g}' for v in LR_GRID)} on held-out data.")
    s.add_argument("--task", choices=TASKS, default="new-classes")
    s.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--lr", type=float, default=None, help="one learning rate for every method (no selection)")
    s.add_argument("--last-k", type=int, default=None, help="update only the last K conv/dense layers")
    s.add_argument("--rounding", choices=("nearest", "stochastic"), default="nearest")
    s.add_argument("--logit-range", choices=("pretrained", "calibrated"), default="pretrained")
    s.add_argument("--sweep", choices=list(METHODS), default=None, metavar="METHOD",
                   help="instead, test accuracy of METHOD over the learning rates of --lr-values (first seed)")
    s.add_argument("--lr-values", type=float, nargs="+", default=None)
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_qas)

    s = subparsers.add_parser("grad-ratios", help="||W||/||G|| per layer: fp32, int8, int8 with QAS")
    s.add_argument("--task", choices=TASKS, default="new-classes")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--bias", action="store_true", help="also the biases")
    s.add_argument("--plot", default=None, metavar="PNG", help="write the figure to this file")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_grad_ratios)
