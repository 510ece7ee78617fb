"""The ``prune`` verb: remove weights or whole channels, optionally fine-tune, and count what it saved.

    tinyml-lab prune digits-cnn --sparsity 0.5 -o pruned.npz
    tinyml-lab prune digits-cnn --sparsity 0.5 --structured --fine-tune 20 -o small.npz --json
    tinyml-lab prune ad-autoencoder --sparsity 0.75 --scope global -o ae.npz

Unstructured (default): the smallest-magnitude weights become zero
(``--scope layer``: the same fraction in every layer; ``global``: one
threshold); the graph keeps its shape and the saving is in a sparse format,
so the report shows the bytes of the weights dense, as a bitmask and as CSR.
``--structured``: that fraction of the output channels of every prunable
layer is removed (lowest L1 or L2 norm), so the graph really has fewer
channels, parameters and MACs. Where the model has a data set here the score
is printed before pruning, after it, and after ``--fine-tune N`` epochs.
"""

from __future__ import annotations

import argparse
import time

from ..report import format_bytes, format_table, print_json
from .channels import NORMS
from .prune import SCOPES, check_sparsity


def cmd_prune(args: argparse.Namespace) -> None:
    from ..io.files import check_writable, save_model
    from ..models import load_model
    from ..quant.tasks import task_for
    from .channels import ChannelPruner
    from .finetune import fine_tune
    from .loop import check_int
    from .prune import MagnitudePruner, weight_sparsity
    from .sparse import graph_storage, total_storage

    sparsity = check_sparsity(args.sparsity)
    epochs = check_int(args.fine_tune, "--fine-tune", minimum=0)
    target = check_writable(args.output)
    g = load_model(args.model)
    if g.is_quantized:
        from ..errors import TinyMLError

        raise TinyMLError(f"'{g.name}' is an int8 model; prune the float model, then quantize it")
    task = task_for(g)
    t0 = time.perf_counter()
    if args.structured:
        pruner = ChannelPruner(sparsity, args.norm)
        pruned = pruner.fit_transform(g)
        masks = None
        layers = [{"name": n, "channels_before": pruner.groups_[n].channels, "channels_after": int(k.size)}
                  for n, k in pruner.keep_.items()]
        layers += [{"name": n, "skipped": why} for n, why in pruner.skipped_.items()]
    else:
        pruner = MagnitudePruner(sparsity, args.scope)
        pruned = pruner.fit_transform(g)
        masks = pruner.masks_
        layers = [{"name": n, "sparsity": round(s, 4)} for n, s in weight_sparsity(pruned).items()]
    seconds = time.perf_counter() - t0
    result = {
        "model": g.name, "sparsity": sparsity, "structured": args.structured,
        "norm": args.norm if args.structured else None, "scope": None if args.structured else args.scope,
        "data": None if task is None else task.name, "metric": None if task is None else task.metric,
        "float_accuracy": None if task is None else round(task.score(g), 4),
        "pruned_accuracy": None if task is None else round(task.score(pruned), 4),
        "fine_tune_epochs": epochs, "fine_tuned_accuracy": None,
        "params_before": g.params, "params_after": pruned.params,
        "macs_before": g.macs, "macs_after": pruned.macs,
        "bytes_before": sum(c.dense_bytes for c in graph_storage(g)),
        "seconds": round(seconds, 4), "output": str(target),
    }
    if epochs:
        if task is None:
            from ..errors import DataError

            raise DataError(f"--fine-tune trains on the model's data set, and '{g.name}' has none here")
        fine_tune(pruned, task.x_train, task.y_train, epochs=epochs, batch_size=16, seed=args.seed, masks=masks,
                  loss=task.loss, quiet=args.quiet or args.json)
        result["fine_tuned_accuracy"] = round(task.score(pruned), 4)
    costs = graph_storage(pruned)
    totals = total_storage(costs)
    result.update({"dense_bytes": totals["dense"], "bitmask_bytes": totals["bitmask"], "csr_bytes": totals["csr"],
                   "best_bytes": totals["best"], "layers": layers, "storage": [c.to_json() for c in costs]})
    save_model(pruned, target)
    if args.json:
        print_json(result)
        return
    _print(result)


def _print(r: dict) -> None:
    kind = (f"{r['sparsity']:.0%} of the channels of each prunable layer removed ({r['norm']} norm)"
            if r["structured"] else f"{r['sparsity']:.0%} of the weights zeroed ({r['scope']} scope)")
    print(f"{r['model']}: {kind}")
    if r["metric"] is not None:
        what = "accuracy" if r["metric"] == "accuracy" else "ROC AUC"
        line = f"{what:<12} before {r['float_accuracy']:.4f}   pruned {r['pruned_accuracy']:.4f}"
        if r["fine_tuned_accuracy"] is not None:
            line += f"   fine-tuned ({r['fine_tune_epochs']} epochs) {r['fine_tuned_accuracy']:.4f}"
        print(line + f"   ({r['data']} test split)")
    print(f"{'params':<12} {r['params_before']:,} -> {r['params_after']:,}")
    print(f"{'MACs':<12} {r['macs_before']:,} -> {r['macs_after']:,} "
          f"({r['macs_after'] / max(r['macs_before'], 1):.0%})")
    print(f"{'weights':<12} {format_bytes(r['bytes_before'])} dense before; after: dense "
          f"{format_bytes(r['dense_bytes'])}, bitmask {format_bytes(r['bitmask_bytes'])}, "
          f"CSR {format_bytes(r['csr_bytes'])} (float32 values)")
    print()
    rows = [[c["name"], "x".join(map(str, c["shape"])), f"{c['sparsity']:.0%}", f"{c['dense_bytes']:,}",
             f"{c['bitmask_bytes']:,}", f"{c['csr_bytes']:,}", c["best"]] for c in r["storage"]]
    print(format_table(["weight", "shape", "zeros", "dense B", "bitmask B", "CSR B", "smallest"], rows,
                       align="llrrrrl"))
    skipped = [x for x in r["layers"] if "skipped" in x]
    for x in skipped:
        print(f"not pruned: {x['skipped']}")
    print(f"\nwritten to {r['output']}")


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("prune", help="magnitude or channel pruning, with sparse storage costs",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", help="a zoo model name, a saved model (.npz) or an ONNX model (.onnx)")
    s.add_argument("--sparsity", type=_fraction, required=True,
                   help="fraction of weights (or, with --structured, of channels) to remove, in [0, 1)")
    s.add_argument("--structured", action="store_true", help="remove whole output channels (the graph shrinks)")
    s.add_argument("--norm", choices=NORMS, default="l1", help="channel ranking for --structured (default l1)")
    s.add_argument("--scope", choices=SCOPES, default="layer", help="unstructured: per layer or one global threshold")
    s.add_argument("--fine-tune", type=int, default=0, metavar="EPOCHS",
                   help="epochs of fine-tuning on the model's data set after pruning (default 0)")
    s.add_argument("--seed", type=int, default=0, help="orders the fine-tuning batches (default 0)")
    s.add_argument("-o", "--output", required=True, help="where to write the pruned float model (.npz or .onnx)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_prune)


__all__ = ["register", "cmd_prune"]
