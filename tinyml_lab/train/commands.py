"""CLI verbs of the training engine: ``qas``, ``grad-ratios``, ``train`` and ``train-memory``.

    tinyml-lab train digits-cnn --int8 --scheme sparse --budget 6KB --epochs 6
    tinyml-lab train-memory mobilenetv2 --scheme sparse --budget 256KB --json
"""

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


# --------------------------------------------------------------------------- schemes and budgets

OPTIMIZER_CHOICES = ("sgd", "sgdm", "adam")
TRANSFER_MODELS = ("digits-cnn",)


def _optimizer(name: str, lr: float | None, qas: bool):
    from .optim import SGD, Adam

    if name == "adam":
        return Adam(lr=1.0 if lr is None and qas else 0.003 if lr is None else lr, qas=qas)
    momentum = 0.9 if name == "sgdm" else 0.0
    default = (0.01 if momentum else 0.1)
    return SGD(lr=default if lr is None else lr, momentum=momentum, qas=qas)


def resolve_scheme(graph, text: str, budget: str | None, contributions=None, quiet: bool = True,
                   optimizer=None) -> tuple:
    """The scheme ``text`` names for ``graph`` (searched when it is ``sparse``), and the search result
    (None unless searched). A budget the scheme exceeds raises a :class:`BudgetError`."""
    from ..report import format_bytes
    from .memory import scheme_bytes
    from .search import search_scheme
    from .sparse import BudgetError, SparseScheme, parse_budget

    limit = parse_budget(budget) if budget is not None else None
    if str(text).strip().lower() == "sparse":
        if limit is None:
            raise BudgetError("--scheme sparse searches a scheme under a memory budget: give --budget (e.g. 256KB)")
        found = search_scheme(graph, limit, contributions)
        return found.scheme, found
    scheme = SparseScheme.parse(text, graph)
    if limit is not None:
        need = scheme_bytes(graph, scheme, optimizer=optimizer)
        if need > limit:
            raise BudgetError(f"scheme {scheme} needs {format_bytes(need)} ({need:,} bytes), over the budget of "
                              f"{format_bytes(limit)} ({limit:,} bytes); raise --budget or use --scheme sparse")
    return scheme, None


def _deployed(model: str, num_classes: int | None):
    from .. import zoo
    from ..models import load_model
    from ..passes import fold_batchnorm, fuse_activations

    if num_classes is not None:
        g = zoo.get(model, weights="random", num_classes=num_classes)
    else:
        g = load_model(model)
    if g.is_quantized:
        return g
    return fuse_activations(fold_batchnorm(g))


def cmd_train_memory(args: argparse.Namespace) -> None:
    from .. import zoo
    from ..report import format_bytes
    from .memory import format_ladder, memory_ladder

    num_classes = args.num_classes
    if num_classes is None and args.model.strip().lower() == "mobilenetv2":
        num_classes = MOBILENETV2_CLASSES
    if num_classes is not None:
        zoo.spec(args.model)
        if "num_classes" not in zoo.spec(args.model).options:
            raise TinyMLError(f"{args.model} takes no --num-classes")
    g = _deployed(args.model, num_classes)
    opt = _optimizer(args.optimizer, None, g.is_quantized)
    scheme, found = resolve_scheme(g, args.scheme, args.budget, optimizer=opt)
    ladder = memory_ladder(g, scheme, optimizer=opt, planner=args.planner)
    out = {"model": g.name, "num_classes": num_classes, "budget_bytes": None, **ladder}
    if args.budget is not None:
        from .sparse import parse_budget

        out["budget_bytes"] = parse_budget(args.budget)
        out["fits_budget"] = ladder["sparse_reordered_bytes"] <= out["budget_bytes"]
    if found is not None:
        out["search"] = {k: v for k, v in found.to_json().items() if k != "scheme"}
        out["search"]["contributions"] = "prior (no measured task)"
    if args.json:
        print_json(out)
        return
    print(f"{g.name}: training memory per step, batch 1, {ladder['convention']}")
    print(f"scheme: {scheme} ({scheme.text()})")
    if found is not None:
        print(f"  searched under {format_bytes(found.budget)} with a prior of layer contributions "
              f"({found.evaluated} schemes evaluated)")
    print(format_ladder(ladder))
    if out["budget_bytes"] is not None:
        verdict = "fits" if out["fits_budget"] else "does not fit"
        print(f"sparse update + reordering {verdict} the budget of {format_bytes(out['budget_bytes'])}")


def cmd_train(args: argparse.Namespace) -> None:
    from ..report import format_table
    from .compiler import fit_compiled
    from .fit import DivergenceError, evaluate
    from .memory import scheme_bytes
    from .transfer import device_models, load_backbone, transfer_task

    model = args.model.strip().lower().replace("_", "-")
    if model not in TRANSFER_MODELS:
        raise TinyMLError(
            f"model {args.model!r} has no transfer task; `train` adapts a pretrained backbone to a target task, "
            f"which exists for {', '.join(TRANSFER_MODELS)} (digits 0-4 backbone -> digits 5-9 or rotated digits)"
        )
    if args.epochs < 1:
        raise TinyMLError(f"--epochs must be >= 1, got {args.epochs}")
    qas = bool(args.qas) and args.int8
    t = transfer_task(args.task)
    f, q = device_models(load_backbone(), t, args.seed)
    g = q if args.int8 else f
    opt = _optimizer(args.optimizer, args.lr, qas)
    contributions = None
    if args.scheme.strip().lower() == "sparse":
        from .search import contribution_analysis

        if args.budget is None:
            from .sparse import BudgetError

            raise BudgetError("--scheme sparse searches a scheme under a memory budget: give --budget (e.g. 6KB)")
        contributions = contribution_analysis(args.task, epochs=min(args.epochs, 6), int8=args.int8, qas=qas,
                                              quiet=args.quiet or args.json)
    scheme, found = resolve_scheme(g, args.scheme, args.budget, contributions, optimizer=opt)
    before = evaluate(g, t.x_test, t.y_test)["accuracy"]
    diverged = False
    try:
        history = fit_compiled(g, t.x_train, t.y_train, scheme, args.epochs, args.batch_size, opt, args.seed,
                               validation_data=(t.x_test, t.y_test), quiet=args.quiet or args.json)
    except DivergenceError as exc:
        diverged = True
        history = None
        if not args.json:
            print(f"warning: {exc}")
    acc = evaluate(g, t.x_test, t.y_test)["accuracy"]
    memory = scheme_bytes(g, scheme, optimizer=opt, exact=True)
    out = {"model": g.name, "task": args.task, "int8": args.int8, "qas": qas, "optimizer": repr(opt),
           "scheme": scheme.to_json(), "memory_bytes": memory, "before": before, "accuracy": acc,
           "diverged": diverged, "history": history.rows if history is not None else []}
    if contributions is not None:
        out["contributions"] = contributions.to_json()
    if args.json:
        print_json(out)
        return
    from ..report import format_bytes

    print(f"task: {t.description}")
    print(f"{'int8' if args.int8 else 'fp32'} {repr(opt)}; scheme {scheme} ({scheme.text()}); "
          f"training memory {format_bytes(memory)} per step (batch 1, compiled, reordered)")
    if history is not None:
        print(format_table(["epoch", "loss", "train acc %", "test acc %"],
                           [[r["epoch"], f"{r['loss']:.4f}", f"{100 * r['accuracy']:.1f}",
                             f"{100 * r['val_accuracy']:.1f}"] for r in history.rows], align="rrrr"))
    print(f"test accuracy: {100 * before:.1f}% before, {100 * acc:.1f}% after")


MOBILENETV2_CLASSES = 10


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

    from .sparse import SCHEME_FORMS

    s = subparsers.add_parser(
        "train", help="on-device transfer learning with a (sparse) update scheme, compiled step",
        description="Adapt the digits backbone (pretrained on digits 0-4) to a target task on the 'device': "
                    "float, or int8 with QAS; the step is compiled (pruned, sliced, reordered).")
    s.add_argument("model", help="a model with a transfer task: digits-cnn")
    s.add_argument("--task", choices=TASKS, default="new-classes")
    s.add_argument("--int8", action="store_true", help="train the int8 device model (default: float)")
    s.add_argument("--qas", action=argparse.BooleanOptionalAction, default=True,
                   help="Quantization-Aware Scaling of int8 gradients (default on)")
    s.add_argument("--optimizer", choices=OPTIMIZER_CHOICES, default="sgdm",
                   help="sgd (no momentum, as on a device), sgdm (momentum 0.9) or adam")
    s.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.01 sgdm, 0.1 sgd, adam 1.0 "
                                                           "int8 / 0.003 float)")
    s.add_argument("--scheme", default="full", help=f"update scheme: {SCHEME_FORMS}")
    s.add_argument("--budget", default=None, help="memory budget per step, e.g. 6KB (for --scheme sparse)")
    s.add_argument("--epochs", type=int, default=10)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--seed", type=int, default=0, help="new classifier and batch order")
    s.add_argument("--json", action="store_true", help="print JSON: accuracy on the test split and the history")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_train)

    s = subparsers.add_parser(
        "train-memory", help="training memory ladder: full update, sparse update, sparse + reordering",
        description="Peak SRAM of one training step (batch 1) in the int8 convention of Lin et al. 2022, "
                    "each rung planned into one arena.")
    s.add_argument("model", help="a zoo model name or a saved model file (.npz)")
    s.add_argument("--scheme", default="sparse", help=f"update scheme: {SCHEME_FORMS}")
    s.add_argument("--budget", default="256KB", help="memory budget per step (default 256KB)")
    s.add_argument("--num-classes", type=int, default=None,
                   help=f"classifier size (default: the model's; {MOBILENETV2_CLASSES} for mobilenetv2)")
    s.add_argument("--optimizer", choices=OPTIMIZER_CHOICES, default="sgd",
                   help="optimizer state counts too (default sgd: none)")
    s.add_argument("--planner", default="greedy-size", help="arena planner (see tinyml-lab plan)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_train_memory)
