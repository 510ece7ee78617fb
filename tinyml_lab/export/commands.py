"""The ``export`` verb: an int8 model as a ``.tflite`` file, C source, or an Arduino sketch.

    tinyml-lab export kws-dscnn --calib random -o kws.tflite
    tinyml-lab export model.npz --format c -o build/kws
    tinyml-lab export model.tflite --format arduino -o sketches/kws

MODEL is a zoo name, a saved graph (``.npz``) or a ``.tflite`` file. A float
model needs ``--calib``: a ``.npy`` file of float inputs (batch first), or
``random[:N]`` for N seeded standard-normal samples (enough for shapes and
sizes, not for accuracy). The output path is checked before the model is
loaded, so a bad path fails at once and nothing is written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..errors import TinyMLError
from ..report import format_bytes, format_table, print_json

FORMATS = ("tflite", "c", "arduino")


def load_for_export(spec: str, calib: str | None):
    """The int8 graph to export: MODEL loaded (a ``.tflite`` file through the importer) and,
    when it is float, quantized with the ``--calib`` data."""
    from ..models import load_model

    if str(spec).endswith(".tflite"):
        from ..io.tflite import load_tflite

        g = load_tflite(spec)
    else:
        g = load_model(spec)
    int8 = any(t.dtype == "int8" for t in g.tensors.values() if not t.is_const)
    if int8:
        if calib is not None:
            raise TinyMLError(f"{spec} is already an int8 model; drop --calib")
        return g
    if calib is None:
        raise TinyMLError(
            f"{spec} is a float32 model and the export formats carry int8 models: give --calib FILE.npy "
            f"(float inputs, batch first) or --calib random to quantize it first"
        )
    from ..quant import quantize_model

    return quantize_model(g, calibration_data(calib, g.input_shape()))


def calibration_data(spec: str, shape: tuple[int, ...]) -> np.ndarray:
    """``random[:N]`` (N seeded standard-normal samples, default 16) or a ``.npy`` file."""
    if spec == "random" or spec.startswith("random:"):
        try:
            n = int(spec.split(":", 1)[1]) if ":" in spec else 16
        except ValueError:
            n = 0
        if n <= 0:
            raise TinyMLError(f"--calib {spec!r}: give random:N with a positive sample count N")
        return np.random.default_rng(0).standard_normal((n,) + tuple(shape)).astype(np.float32)
    path = Path(spec)
    if not path.is_file():
        raise TinyMLError(f"--calib {spec!r}: no such file (give a .npy file of float inputs or 'random')")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise TinyMLError(f"--calib {spec!r}: cannot read it as a .npy array ({exc})") from None


def cmd_export(args: argparse.Namespace) -> None:
    from ..files import check_file, check_folder

    if args.format == "tflite":
        check_file(args.output, "TFLite model")
    else:
        check_folder(args.output, "C source" if args.format == "c" else "Arduino sketch")
    if args.format == "c" and args.float_io:
        raise TinyMLError("--float-io applies to tflite and arduino; the C function takes int8 codes")
    g = load_for_export(args.model, args.calib)
    if args.format == "tflite":
        from .tflite import operator_names, to_tflite

        data = to_tflite(g, args.output, float_io=args.float_io, offline_plan=args.offline_plan)
        result = {"model": g.name, "format": "tflite", "files": {str(args.output): len(data)},
                  "float_io": args.float_io, "offline_plan": args.offline_plan,
                  "operators": operator_names(g, args.float_io)}
    elif args.format == "c":
        from .c import to_c

        src = to_c(g, args.output, name=args.name)
        folder = Path(args.output)
        result = dict(src.to_json(), model=g.name, format="c",
                      files={str(folder / f): len(t.encode()) for f, t in src.files().items()})
    else:
        from .arduino import to_arduino

        sk = to_arduino(g, args.output, float_io=args.float_io)
        folder = Path(args.output)
        result = dict(sk.to_json(), model=g.name, format="arduino",
                      files={str(folder / f): len(t.encode()) for f, t in sk.files.items()})
    if args.json:
        print_json(result)
        return
    print(f"{g.name}: {len(g.nodes)} layers, exported as {args.format}")
    print(format_table(["file", "bytes", "size"],
                       [[f, f"{n:,}", format_bytes(n)] for f, n in result["files"].items()], align="lrr"))
    if args.format == "tflite":
        print(f"\noperators   {', '.join(result['operators'])}")
        print(f"inputs      {'float32' if args.float_io else 'int8 codes'}")
    elif args.format == "c":
        print(f"\nconstants   {result['const_bytes']:,} bytes (flash)")
        print(f"arena       {result['arena_bytes']:,} bytes (static, planned)")
        print(f"call        int {result['name']}_invoke(const int8_t *input, int8_t *output)")
    else:
        print(f"\nmodel       {result['model_bytes']:,} bytes (.tflite in flash)")
        print(f"arena       {result['tensor_arena_bytes']:,} bytes to give TFLM "
              f"({result['planned_activation_bytes']:,} planned activations + TFLM's structures)")
        print(f"operators   {', '.join(result['operators'])}")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("export", help="export an int8 model as .tflite, C source or an Arduino sketch")
    s.add_argument("model", help="a zoo model name, a saved model (.npz) or a .tflite file")
    s.add_argument("--format", choices=FORMATS, default="tflite", help="tflite (default), c or arduino")
    s.add_argument("-o", "--output", required=True,
                   help="the .tflite file to write, or the folder for c and arduino")
    s.add_argument("--calib", metavar="DATA",
                   help="quantize a float model first: a .npy file of float inputs, or random[:N]")
    s.add_argument("--float-io", action="store_true",
                   help="float32 input and output (QUANTIZE/DEQUANTIZE at the edges; tflite, arduino)")
    s.add_argument("--offline-plan", action="store_true",
                   help="store the planner's offsets as TFLM OfflineMemoryAllocation metadata (tflite)")
    s.add_argument("--name", help="the C identifier prefix (c; default: the model's name)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_export)


__all__ = ["register", "cmd_export", "load_for_export", "calibration_data", "FORMATS"]
