"""The ``tinyml-lab`` command: tables for people, ``--json`` for programs.

Exit status 0 on success and 2 on bad input, with a one-line reason on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from . import __version__
from .errors import TinyMLError
from .report import format_bytes, format_table, print_json


# Modules that add verbs: each has ``register(subparsers)``, which adds its parsers and sets
# ``func`` to a function taking the parsed arguments (raising TinyMLError on bad input).
VERB_MODULES: list[str] = ["tinyml_lab.memory.commands", "tinyml_lab.mcu.commands", "tinyml_lab.train.commands",
                           "tinyml_lab.export.commands", "tinyml_lab.quant.commands", "tinyml_lab.compress.commands",
                           "tinyml_lab.grading.commands", "tinyml_lab.mlops.privacy_commands",
                           "tinyml_lab.mlops.fleet_commands"]


# --------------------------------------------------------------------------- verbs

def cmd_zoo(args: argparse.Namespace) -> None:
    from . import zoo

    rows = []
    for d in zoo.describe():
        g = zoo.get(d["name"])
        rows.append(dict(d, params=g.params, macs=g.macs))
    if args.json:
        print_json(rows)
        return
    print(format_table(
        ["model", "task", "input", "classes", "params", "MACs"],
        [[r["name"], r["task"], "x".join(map(str, r["input_shape"])), r["classes"] or "-", f"{r['params']:,}",
          f"{r['macs']:,}"] for r in rows],
        align="lllrrr"))


def cmd_profile(args: argparse.Namespace) -> None:
    from .models import load_model
    from .passes import fold_batchnorm, fuse_activations

    g = load_model(args.model)
    if args.fold:
        g = fuse_activations(fold_batchnorm(g))
    stats = g.layer_stats()
    summary = {
        "model": g.name,
        "dtype": "int8" if g.is_quantized else "float32",
        "input_shape": list(g.input_shape()),
        "output_shape": list(g.output_shape()),
        "params": g.params,
        "macs": g.macs,
        "weight_bytes": g.weight_bytes,
        "activation_bytes": g.activation_bytes,
        "layers": [s.to_json() for s in stats],
    }
    report = None
    if args.device:
        from .mcu.simulator import simulate

        report = simulate(g, args.device)
        summary.update(report.to_json())
    if args.json:
        print_json(summary)
        return
    print(f"{g.name}: input {'x'.join(map(str, g.input_shape()))} {summary['dtype']}, "
          f"{len(stats)} layers")
    print(g.summary())
    print()
    print(f"params            {g.params:,}")
    print(f"MACs              {g.macs:,}")
    print(f"weights           {format_bytes(g.weight_bytes)} ({g.weight_bytes:,} bytes)")
    print(f"activations       {format_bytes(g.activation_bytes)} (all tensors of one sample, no reuse)")
    if report is not None:
        from .mcu.report import print_device_report

        print()
        print_device_report(report)


def cmd_run(args: argparse.Namespace) -> None:
    from .interpreter import Interpreter
    from .models import load_model

    g = load_model(args.model)
    path = Path(args.input)
    if not path.is_file():
        raise TinyMLError(f"input file {path} does not exist")
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TinyMLError(f"cannot read {path} as a .npy array ({exc})") from None
    single = x.shape == g.input_shape()
    y = Interpreter(g, backend=args.backend).run(x[None] if single else x)
    if single:
        y = y[0]
    out = Path(args.output)
    if not out.parent.is_dir():
        raise TinyMLError(f"cannot write {out}: folder {out.parent} does not exist")
    np.save(out, y)
    if args.json:
        print_json({"model": g.name, "input_shape": list(x.shape), "output_shape": list(y.shape),
                     "dtype": str(y.dtype), "output": str(out)})
    else:
        print(f"{g.name}: {x.shape} {x.dtype} -> {y.shape} {y.dtype}, written to {out}")


# --------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tinyml-lab", description="The engine of the ML systems book.")
    p.add_argument("--version", action="version", version=f"tinyml-lab {__version__}")
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    s = sub.add_parser("zoo", help="list the models of the zoo")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_zoo)

    s = sub.add_parser("profile", help="params, MACs and activation bytes per layer")
    s.add_argument("model", help="a zoo model name or a saved model file (.npz)")
    s.add_argument("--fold", action="store_true",
                   help="fold BatchNorm and fuse activations first, as deployed")
    s.add_argument("--device", metavar="DEVICE",
                   help="also estimate fit, latency and energy on a microcontroller (see tinyml-lab devices)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_profile)

    s = sub.add_parser("run", help="run a model on an array saved with numpy.save")
    s.add_argument("model", help="a zoo model name or a saved model file (.npz)")
    s.add_argument("--input", required=True, help=".npy file: one sample or a batch (int8 codes for an int8 model)")
    s.add_argument("--output", required=True, help=".npy file to write")
    s.add_argument("--backend", choices=("numba", "reference"), default="numba")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_run)

    for module in VERB_MODULES:
        importlib.import_module(module).register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except TinyMLError as exc:
        print(f"tinyml-lab {args.verb}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
