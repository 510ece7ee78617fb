"""Quantization and compression figures: calibration and conversion time of the zoo, and the
digits tables the compression chapter uses.

    python benchmarks/quantization.py                 # all tables
    python benchmarks/quantization.py --json          # the same data as JSON
    python benchmarks/quantization.py --only speed    # the timing table only
    python benchmarks/quantization.py --qat           # add QAT to the bit-width sweep (about a minute)

Tables:

1. **speed**: for every zoo model and every observer, the seconds of
   calibration (float forward passes over the calibration batch plus the
   observers' work) and of conversion (BatchNorm folding, ReLU fusion and the
   int8 graph), median of ``--repeat`` runs after a warm-up run (which
   compiles or loads the numba kernels). Calibration: 256 samples of the
   model's data set for ``digits-cnn`` and ``ad-autoencoder``, 32 seeded random
   inputs for the others (uniform [0, 1) for images, standard normal for
   feature vectors).
2. **digits**: accuracy of the trained ``digits-cnn`` on the 450 test images,
   float and int8 with every observer, per-channel and per-tensor weights.
3. **sweep**: weight bits 8 down to 2 (activations 8 bits), weight bytes
   packed, model bytes (with int32 biases and float32 scales), accuracy after
   post-training quantization (and after 3 epochs of QAT with ``--qat``).
4. **pruning**: magnitude pruning (per layer, global) and channel pruning at
   several sparsities: MACs, parameters, bytes of the conv/dense weights dense,
   as a bitmask and as CSR (float32 values), accuracy right after pruning and
   after fine-tuning (20 epochs for channel pruning, 5 for magnitude pruning;
   batch 16, SGD 0.05 momentum 0.9 with cosine decay, seed 0).

The script sets ``NUMBA_NUM_THREADS=1`` and, unless set, the BLAS thread
counts to 1 before numpy is imported, so the timings are single-threaded.
"""

from __future__ import annotations

import os

os.environ["NUMBA_NUM_THREADS"] = "1"
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from tinyml_lab import zoo  # noqa: E402
from tinyml_lab.compress import ChannelPruner, MagnitudePruner, fine_tune, graph_storage, total_storage  # noqa: E402
from tinyml_lab.quant import Calibrator, bit_width_sweep, format_sweep, prepare, quantize_model  # noqa: E402
from tinyml_lab.quant.convert import METHODS, activation_quant, build_int8, layer_bits, weight_quant  # noqa: E402
from tinyml_lab.quant.tasks import random_calibration, task_for  # noqa: E402
from tinyml_lab.report import format_table  # noqa: E402

SPEED_METHODS = ("minmax", "percentile", "mse", "kl")


def calibration_for(name: str, seed: int = 0) -> np.ndarray:
    g = zoo.get(name)
    task = task_for(g)
    return task.calibration(256, seed) if task is not None else random_calibration(g, 32, seed)


def time_quantization(name: str, method: str, x: np.ndarray, repeat: int) -> dict:
    """Median seconds of calibration and of conversion (each step timed alone)."""
    g = zoo.get(name)
    calib, conv = [], []
    for i in range(repeat + 1):
        t0 = time.perf_counter()
        p = prepare(g)
        ranges = Calibrator(method).fit(p, x).ranges_
        t1 = time.perf_counter()
        bits = layer_bits(p, 8)
        q = build_int8(p, {k: activation_quant(*r) for k, r in ranges.items()},
                       lambda node, w, axis: weight_quant(w, axis, bits[node.name]))
        t2 = time.perf_counter()
        if i:  # the first run compiles or loads the kernels
            calib.append(t1 - t0)
            conv.append(t2 - t1)
    assert q.is_quantized
    c, v = statistics.median(calib), statistics.median(conv)
    return {"model": name, "method": method, "samples": int(len(x)), "calibration_s": c, "conversion_s": v,
            "total_s": c + v}


def speed_table(repeat: int) -> list[dict]:
    rows = []
    for name in zoo.names():
        x = calibration_for(name)
        for method in SPEED_METHODS:
            rows.append(time_quantization(name, method, x, repeat))
    return rows


def digits_table() -> dict:
    g = zoo.get("digits-cnn")
    task = task_for(g)
    cal = task.calibration()
    rows = []
    for method in METHODS:
        row = {"method": method}
        for pc in (True, False):
            row["per_channel" if pc else "per_tensor"] = task.score(quantize_model(g, cal, per_channel=pc,
                                                                                   method=method))
        rows.append(row)
    return {"float": task.score(g), "rows": rows}


def sweep_table(qat: bool) -> list[dict]:
    g = zoo.get("digits-cnn")
    task = task_for(g)
    train = (task.x_train, task.y_train) if qat else None
    return bit_width_sweep(g, task.calibration(), task.score, train=train)


def pruning_table() -> list[dict]:
    g = zoo.get("digits-cnn")
    task = task_for(g)
    rows = []
    cases = [("unstructured", "layer", s) for s in (0.5, 0.75, 0.9)] + [("unstructured", "global", s) for s in
                                                                      (0.5, 0.75, 0.9)]
    cases += [("structured", "l1", s) for s in (0.25, 0.5, 0.75)]
    for kind, how, s in cases:
        if kind == "structured":
            pruned, masks, epochs = ChannelPruner(s, how).fit_transform(g), None, 20
        else:
            p = MagnitudePruner(s, how).fit(g)
            pruned, masks, epochs = p.transform(g), p.masks_, 5
        before = task.score(pruned)
        totals = total_storage(graph_storage(pruned))
        fine_tune(pruned, task.x_train, task.y_train, epochs=epochs, batch_size=16, masks=masks, seed=0)
        rows.append({"kind": kind, "scope_or_norm": how, "sparsity": s, "macs": pruned.macs, "params": pruned.params,
                     "dense_bytes": totals["dense"], "bitmask_bytes": totals["bitmask"], "csr_bytes": totals["csr"],
                     "accuracy_pruned": before, "accuracy_fine_tuned": task.score(pruned), "epochs": epochs})
    base = total_storage(graph_storage(g))
    float_row = {"kind": "float", "scope_or_norm": "-", "sparsity": 0.0, "macs": g.macs, "params": g.params,
                 "dense_bytes": base["dense"], "bitmask_bytes": base["bitmask"], "csr_bytes": base["csr"],
                 "accuracy_pruned": task.score(g), "accuracy_fine_tuned": task.score(g), "epochs": 0}
    return [float_row] + rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("speed", "digits", "sweep", "pruning"), nargs="+")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per model and observer (default 3)")
    p.add_argument("--qat", action="store_true", help="add a QAT column to the bit-width sweep")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    want = set(args.only or ("speed", "digits", "sweep", "pruning"))
    out: dict = {"machine": {"python": platform.python_version(), "processor": platform.processor() or
                             platform.machine(), "threads": 1}}
    if "speed" in want:
        out["speed"] = speed_table(args.repeat)
    if "digits" in want:
        out["digits"] = digits_table()
    if "sweep" in want:
        out["sweep"] = sweep_table(args.qat)
    if "pruning" in want:
        out["pruning"] = pruning_table()
    if args.json:
        print(json.dumps(out, indent=2))
        return
    if "speed" in out:
        print("calibration and conversion, seconds (median of %d runs, one thread)" % args.repeat)
        print(format_table(["model", "observer", "samples", "calibrate s", "convert s", "total s"],
                           [[r["model"], r["method"], r["samples"], f"{r['calibration_s']:.3f}",
                             f"{r['conversion_s']:.3f}", f"{r['total_s']:.3f}"] for r in out["speed"]],
                           align="llrrrr"))
        print()
    if "digits" in out:
        d = out["digits"]
        print(f"digits-cnn accuracy (450 test images), float {d['float']:.4f}")
        print(format_table(["observer", "int8 per channel", "int8 per tensor"],
                           [[r["method"], f"{r['per_channel']:.4f}", f"{r['per_tensor']:.4f}"] for r in d["rows"]],
                           align="lrr"))
        print()
    if "sweep" in out:
        print("digits-cnn bit-width sweep (weights b bits, activations 8 bits, per channel, min-max)")
        print(format_sweep(out["sweep"]))
        print()
    if "pruning" in out:
        print("digits-cnn pruning (bytes: conv/dense weights, float32 values)")
        print(format_table(
            ["kind", "scope/norm", "sparsity", "MACs", "params", "dense B", "bitmask B", "CSR B", "acc pruned",
             "acc fine-tuned"],
            [[r["kind"], r["scope_or_norm"], f"{r['sparsity']:.0%}", f"{r['macs']:,}", f"{r['params']:,}",
              f"{r['dense_bytes']:,}", f"{r['bitmask_bytes']:,}", f"{r['csr_bytes']:,}", f"{r['accuracy_pruned']:.4f}",
              f"{r['accuracy_fine_tuned']:.4f}"] for r in out["pruning"]],
            align="llrrrrrrrr"))


if __name__ == "__main__":
    main()
