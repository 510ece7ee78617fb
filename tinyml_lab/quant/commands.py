"""The ``quantize`` verb: a float model to an int8 model, with what it cost.

    tinyml-lab quantize digits-cnn --calib digits -o digits-int8.npz
    tinyml-lab quantize digits-cnn --calib digits --method mse --per-tensor -o q.npz --json
    tinyml-lab quantize kws-dscnn --calib random --seed 1 -o kws.onnx
    tinyml-lab quantize digits-cnn --calib digits --bits 4 --sweep -o q4.npz

Prints the score of the float and the int8 model where the model has a data
set here (``digits-cnn``: accuracy; ``ad-autoencoder``: ROC AUC of the
reconstruction error, see :mod:`tinyml_lab.quant.tasks`), the bytes of the
constants before and after (weights at their bit width, packed), and the
SQNR of every layer (on the test split; for the autoencoder its normal
vectors; on other seeded random inputs without a data set). ``-o`` ending in ``.onnx`` writes a QDQ ONNX model,
anything else a ``.npz`` graph; the file is written atomically, and an
output that cannot be written fails before any work.
"""

from __future__ import annotations

import argparse
import time

from ..report import format_bytes, print_json
from .convert import METHODS, prepare, quantize_model
from .tasks import CALIBRATION_SOURCES


def cmd_quantize(args: argparse.Namespace) -> None:
    from ..io.files import check_writable, save_model
    from ..models import load_model
    from .report import format_layer_report, layer_report, model_bytes
    from .tasks import calibration_data, random_calibration, task_for

    target = check_writable(args.output)
    g = load_model(args.model)
    task = task_for(g)
    x_cal = calibration_data(g, args.calib, args.calib_size, args.seed, task)
    t0 = time.perf_counter()
    q = quantize_model(g, x_cal, per_channel=args.per_channel, method=args.method, weight_bits=args.bits,
                       weight_method=args.weight_method)
    seconds = time.perf_counter() - t0
    float_g = prepare(g)
    x_eval = task.x_sqnr if task is not None else random_calibration(g, 64, args.seed + 1)
    layers = layer_report(float_g, q, x_eval)
    result = {
        "model": g.name,
        "calibration": {"source": args.calib, "samples": int(len(x_cal)), "seed": args.seed, "method": args.method},
        "per_channel": args.per_channel,
        "weight_bits": args.bits,
        "weight_method": args.weight_method,
        "data": None if task is None else task.name,
        "metric": None if task is None else task.metric,
        "float_accuracy": None if task is None else round(task.score(g), 4),
        "int8_accuracy": None if task is None else round(task.score(q), 4),
        "float_bytes": model_bytes(float_g),
        "int8_bytes": model_bytes(q),
        "seconds": round(seconds, 4),
        "output": str(target),
        "layers": [r.to_json() for r in layers],
    }
    if args.sweep:
        if task is None:
            from ..errors import DataError

            raise DataError(f"--sweep scores the model on its data set, and '{g.name}' has none here")
        from .sweep import bit_width_sweep

        result["sweep"] = bit_width_sweep(g, x_cal, task.score, per_channel=args.per_channel, method=args.method,
                                          weight_method=args.weight_method)
    save_model(q, target)
    if args.json:
        print_json(result)
        return
    _print(result, layers, format_layer_report)


def _print(r: dict, layers, format_layer_report) -> None:
    cal = r["calibration"]
    print(f"{r['model']}: int8, {r['weight_bits']}-bit weights "
          f"({'per channel' if r['per_channel'] else 'per tensor'}, {r['weight_method']}), activations calibrated "
          f"by {cal['method']} on {cal['samples']} {cal['source']} samples (seed {cal['seed']}) "
          f"in {r['seconds'] * 1000:.0f} ms")
    if r["metric"] is not None:
        what = "accuracy" if r["metric"] == "accuracy" else "ROC AUC of the reconstruction error"
        print(f"{what:<40} float {r['float_accuracy']:.4f}   int8 {r['int8_accuracy']:.4f}   "
              f"({r['data']} test split)")
    else:
        print("score                                    - (no data set for this model here; sizes and SQNR only)")
    ratio = r["float_bytes"] / max(r["int8_bytes"], 1)
    print(f"{'constants':<40} float {format_bytes(r['float_bytes'])} ({r['float_bytes']:,} B)   "
          f"int8 {format_bytes(r['int8_bytes'])} ({r['int8_bytes']:,} B), {ratio:.1f}x smaller")
    print()
    print(format_layer_report(layers))
    if "sweep" in r:
        from .sweep import format_sweep

        print()
        print(format_sweep(r["sweep"], r["metric"]))
    print(f"\nwritten to {r['output']}")


def _bits(text: str) -> int:
    try:
        b = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bits must be an int from 2 to 8, got {text!r}") from None
    return b


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("quantize", help="post-training int8 quantization with a per-layer error report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("model", help="a zoo model name, a saved model (.npz) or an ONNX model (.onnx)")
    s.add_argument("--calib", choices=CALIBRATION_SOURCES, required=True,
                   help="calibration inputs: the model's data set (digits, vibration) or seeded random inputs")
    s.add_argument("--calib-size", type=int, default=None, metavar="N",
                   help="calibration samples (default 256 from a data set, 64 random)")
    s.add_argument("--method", choices=[m for m in METHODS], default="minmax",
                   help="how activation ranges are chosen (default minmax)")
    pc = s.add_mutually_exclusive_group()
    pc.add_argument("--per-channel", dest="per_channel", action="store_true", default=True,
                    help="one weight scale per output channel of each convolution (default)")
    pc.add_argument("--per-tensor", dest="per_channel", action="store_false", help="one weight scale per layer")
    s.add_argument("--bits", type=_bits, default=8, help="weight bits, 2 to 8 (default 8; activations stay 8)")
    s.add_argument("--weight-method", choices=("minmax", "mse"), default="minmax",
                   help="weight scale: max |w| (minmax) or MSE-optimal clipping (mse)")
    s.add_argument("--sweep", action="store_true", help="also print the bit-width sweep (8 down to 2 bits)")
    s.add_argument("--seed", type=int, default=0, help="seeds the calibration sample (default 0)")
    s.add_argument("-o", "--output", required=True, help="where to write the int8 model (.npz or .onnx)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_quantize)


__all__ = ["register", "cmd_quantize"]
