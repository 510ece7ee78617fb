"""int8 inference latency of the zoo models: tinyml_lab's numba interpreter against onnxruntime.

Each model is quantized (min-max, 16 random calibration samples in its
natural input range) and run at batch 1 on one thread, first by
``Interpreter(q).run(x)`` and then by onnxruntime on the same int8 graph
exported to QDQ (``to_onnx(q, input_layout="nchw")``, so no transpose is
timed), in two forms: int8 activations, as exported by default, and uint8
activations (codes + 128), the form onnxruntime's x86 integer kernels take
without rewriting. The first call is reported on its own (numba compiles or
loads its kernels then); the latency is the median of single calls, the
three runtimes timed in alternating rounds so that the machine's load
affects them alike.

    python benchmarks/inference.py                  # tables
    python benchmarks/inference.py --json           # the same data as JSON
    python benchmarks/inference.py --models kws-dscnn ic-resnet8 --repeat 200

Three tables: latency per model with the ratio ours / onnxruntime; the
throughput (GMAC/s) of every convolution, depthwise and dense layer of ours,
beside onnxruntime's per-node time from its profiler; and where our time
goes (MAC layers, other ops, the interpreter's per-op overhead). The numbers
depend on the machine and on what else runs on it; nothing here is asserted
by the tests.
"""

from __future__ import annotations

import os

# one thread everywhere, set before numpy (BLAS) and numba are imported: numba's threading layer,
# and the BLAS that numpy and numba's np.dot call (OpenBLAS, or MKL, or an OpenMP build)
os.environ["NUMBA_NUM_THREADS"] = "1"
for _var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

from tinyml_lab import zoo  # noqa: E402
from tinyml_lab.graph import Graph  # noqa: E402
from tinyml_lab.interpreter import Interpreter  # noqa: E402
from tinyml_lab.quant import quantize_input, quantize_model  # noqa: E402
from tinyml_lab.report import format_table  # noqa: E402

MAC_OPS = ("Conv2D", "DepthwiseConv2D", "Dense")
# natural input ranges: images in [0, 1] (MobileNetV2's preprocessing: [-1, 1]), standardised features
INPUTS = {
    "kws-dscnn": ("normal", 0.0, 1.0),
    "vww-mobilenetv1": ("uniform", 0.0, 1.0),
    "ic-resnet8": ("uniform", 0.0, 1.0),
    "ad-autoencoder": ("normal", 0.0, 1.0),
    "mobilenetv2": ("uniform", -1.0, 1.0),
    "digits-cnn": ("uniform", 0.0, 1.0),
}
N_CALIB = 16
N_CHECK = 8  # samples compared between the runtimes


# --------------------------------------------------------------------------- timing

def median_time(fn: Callable[[], object], repeat: int | None, budget: float) -> tuple[float, int]:
    """Median seconds per call of ``fn`` over ``repeat`` calls, or over as many as fit in
    ``budget`` seconds (at least 5) when ``repeat`` is None. Returns (median, calls)."""
    if repeat is None:
        t0 = time.perf_counter()
        for _ in range(3):
            fn()
        estimate = (time.perf_counter() - t0) / 3
        repeat = int(min(max(budget / max(estimate, 1e-7), 5), 20_000))
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), repeat


def interleaved_medians(fns: dict[str, Callable[[], object]], repeat: int | None,
                        budget: float) -> dict[str, tuple[float, int]]:
    """Median seconds per call of each function, timed in alternating rounds (a few milliseconds
    of each function in turn) so that a change in the machine's load affects them all alike.
    ``repeat`` calls of each, or as many as fit in ``budget`` seconds per function (at least 5).
    Returns ``{name: (median, calls)}``."""
    estimate = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        for _ in range(3):
            fn()
        estimate[name] = max((time.perf_counter() - t0) / 3, 1e-7)
    total = {name: repeat if repeat is not None else int(min(max(budget / est, 5), 20_000))
             for name, est in estimate.items()}
    per_round = {name: max(1, min(total[name], int(0.005 / est))) for name, est in estimate.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    while any(len(times[name]) < total[name] for name in fns):
        for name, fn in fns.items():
            for _ in range(min(per_round[name], total[name] - len(times[name]))):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: (statistics.median(ts), len(ts)) for name, ts in times.items()}


def first_call(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- inputs

def natural_input(name: str, n: int, seed: int) -> np.ndarray:
    kind, a, b = INPUTS.get(name, ("normal", 0.0, 1.0))
    rng = np.random.default_rng(seed)
    shape = (n,) + zoo.spec(name).input_shape
    return (rng.normal(a, b, shape) if kind == "normal" else rng.uniform(a, b, shape)).astype(np.float32)


def nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)) if x.ndim == 4 else x


def to_uint8(q: np.ndarray) -> np.ndarray:
    return (q.astype(np.int16) + 128).astype(np.uint8)


# --------------------------------------------------------------------------- onnxruntime

def ort_session(model, profile_prefix: str | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def ort_layer_times(model, feed: dict, calls: int) -> dict[str, float]:
    """Median kernel time (seconds) per IR node from onnxruntime's profiler. Fused nodes keep the
    name of the node they replace, ``<IR node>/<op>...``, so times are summed per IR node."""
    with tempfile.TemporaryDirectory() as folder:
        sess = ort_session(model, str(Path(folder) / "ort"))
        for _ in range(calls):
            sess.run(None, feed)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    runs: dict[str, list[float]] = defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            runs[e["name"][: -len("_kernel_time")]].append(e["dur"] * 1e-6)
    per_node: dict[str, float] = defaultdict(float)
    for name, durations in runs.items():
        per_node[name.split("/")[0]] += statistics.median(durations[1:] or durations)
    return dict(per_node)


# --------------------------------------------------------------------------- one model

def bench_model(name: str, seed: int, repeat: int | None, budget: float, layers: bool) -> dict:
    from tinyml_lab.export.onnx import to_onnx

    g = zoo.get(name, seed=seed)
    q = quantize_model(g, natural_input(name, N_CALIB, seed + 1))
    xs = quantize_input(q, natural_input(name, N_CHECK, seed + 2))
    x = xs[:1]
    feed_name = q.inputs[0]
    result: dict = {"model": name, "macs": q.macs, "params": q.params, "input_shape": list(q.input_shape())}

    # ours: preparation, then the first call (numba compiles its kernels, or loads them from its cache)
    t0 = time.perf_counter()
    it = Interpreter(q)
    prepare = time.perf_counter() - t0
    first = first_call(lambda: it.run(x))
    calls: dict[str, Callable[[], object]] = {"ours": lambda: it.run(x)}

    # onnxruntime, int8 and uint8 activations
    want = it.run(xs)
    models = {}
    for dtype in ("int8", "uint8"):
        model = to_onnx(q, input_layout="nchw", activation_dtype=dtype)
        models[dtype] = model
        t0 = time.perf_counter()
        sess = ort_session(model)
        session = time.perf_counter() - t0
        cast = (lambda v: v) if dtype == "int8" else to_uint8
        feed = {feed_name: cast(nchw(x))}
        call = lambda s=sess, f=feed: s.run(None, f)  # noqa: E731
        first_ort = first_call(call)
        calls[f"ort_{dtype}"] = call
        got = sess.run(None, {feed_name: cast(nchw(xs))})[0].astype(np.int32) - (128 if dtype == "uint8" else 0)
        diff = np.abs(got - want.astype(np.int32))
        result[f"ort_{dtype}"] = {"session_ms": session * 1e3, "first_ms": first_ort * 1e3,
                                  "max_diff_lsb": int(diff.max()), "differing": float(np.mean(diff > 0))}

    # the three runtimes timed in alternating rounds
    medians = interleaved_medians(calls, repeat, budget)
    med, n_ours = medians["ours"]
    result["ours"] = {"prepare_ms": prepare * 1e3, "first_ms": first * 1e3, "median_ms": med * 1e3,
                      "repeat": n_ours, "whole_graph": it._program is not None}
    for dtype in ("int8", "uint8"):
        med, n = medians[f"ort_{dtype}"]
        result[f"ort_{dtype}"].update({"median_ms": med * 1e3, "repeat": n})
    result["ratio"] = result["ours"]["median_ms"] / result["ort_int8"]["median_ms"]
    result["ratio_uint8"] = result["ours"]["median_ms"] / result["ort_uint8"]["median_ms"]
    if layers:
        result.update(layer_breakdown(q, it, x, models["uint8"], {feed_name: to_uint8(nchw(x))},
                                      repeat, budget / 20, max(n_ours, 20)))
    return result


def layer_breakdown(q: Graph, it: Interpreter, x: np.ndarray, ort_model, ort_feed: dict,
                    repeat: int | None, budget: float, ort_calls: int) -> dict:
    """Each interpreter step timed alone on the real intermediate tensors, and onnxruntime's
    per-node times for comparison."""
    env = it.run(x, return_all=True)
    ort_times = ort_layer_times(ort_model, ort_feed, min(ort_calls, 2000))
    rows = []
    for node, step, stat in zip(q.nodes, it._steps, q.layer_stats(), strict=True):
        t, _ = median_time(lambda s=step: s(env), repeat, budget)
        row = {"layer": node.name, "op": node.op, "output_shape": list(stat.output_shape), "macs": stat.macs,
               "ours_us": t * 1e6, "ort_us": ort_times.get(node.name, 0.0) * 1e6}
        if stat.macs:
            row["ours_gmacs"] = stat.macs / t / 1e9
            row["ort_gmacs"] = stat.macs / ort_times[node.name] / 1e9 if ort_times.get(node.name) else None
        rows.append(row)
    return {"layers": rows, "call_floor_us": call_floor() * 1e6}


def call_floor() -> float:
    """Seconds for one interpreter step whose kernel has (almost) nothing to do: a 1x1 int8
    convolution on one pixel and one channel. What every op pays before computing anything."""
    from tinyml_lab import GraphBuilder

    b = GraphBuilder("floor", seed=0)
    g = b.build(b.conv2d(b.input((1, 1, 1)), 1, 1))
    q = quantize_model(g, np.ones((1, 1, 1, 1), np.float32))
    it = Interpreter(q)
    x = np.zeros((1, 1, 1, 1), np.int8)
    env = it.run(x, return_all=True)
    step = it._steps[0]
    t, _ = median_time(lambda: step(env), 2000, 0.0)
    return t


# --------------------------------------------------------------------------- report

def machine() -> dict:
    import numba
    import onnxruntime

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu or "unknown", "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__, "onnxruntime": onnxruntime.__version__, "threads": 1}


def summary_rows(results: list[dict]) -> tuple[list[list], list[list], list[list]]:
    latency, per_layer, where = [], [], []
    for r in results:
        o, a, u = r["ours"], r["ort_int8"], r["ort_uint8"]
        latency.append([
            r["model"], f"{r['macs'] / 1e6:.2f}", f"{o['first_ms']:.1f}", f"{o['median_ms']:.3f}",
            f"{a['first_ms']:.2f}", f"{a['median_ms']:.3f}", f"{u['median_ms']:.3f}",
            f"{r['ratio']:.1f}", f"{r['ratio_uint8']:.1f}", f"{a['max_diff_lsb']} / {u['max_diff_lsb']}",
        ])
        if "layers" not in r:
            continue
        mac_rows = [row for row in r["layers"] if row["op"] in MAC_OPS]
        for row in mac_rows:
            per_layer.append([
                r["model"], row["layer"], row["op"], "x".join(map(str, row["output_shape"])),
                f"{row['macs'] / 1e3:,.0f}", f"{row['ours_us']:.1f}", f"{row['ours_gmacs']:.2f}",
                f"{row['ort_us']:.1f}" if row["ort_gmacs"] else "-",
                f"{row['ort_gmacs']:.2f}" if row["ort_gmacs"] else "-",
            ])
        ms = o["median_ms"]
        steps = sum(row["ours_us"] for row in r["layers"]) / 1e3
        mac_ms = sum(row["ours_us"] for row in mac_rows) / 1e3
        by_op = defaultdict(lambda: [0, 0.0])
        for row in mac_rows:
            by_op[row["op"]][0] += row["macs"]
            by_op[row["op"]][1] += row["ours_us"] * 1e-6
        gmacs = {op: f"{m / t / 1e9:.2f}" for op, (m, t) in by_op.items()}
        where.append([
            r["model"], f"{ms:.3f}", f"{mac_ms:.3f}", f"{steps - mac_ms:.3f}", f"{ms - steps:+.3f}",
            f"{len(r['layers'])}", f"{len(r['layers']) * r['call_floor_us'] / 1e3:.3f}",
            gmacs.get("Conv2D", "-"), gmacs.get("DepthwiseConv2D", "-"), gmacs.get("Dense", "-"),
            f"{r['macs'] / (ms * 1e-3) / 1e9:.2f}",
        ])
    return latency, per_layer, where


def print_tables(results: list[dict], info: dict) -> None:
    latency, per_layer, where = summary_rows(results)
    print(f"int8 inference, batch 1, one thread - {info['cpu']}; numba {info['numba']}, "
          f"onnxruntime {info['onnxruntime']}")
    print()
    print(format_table(
        ["model", "MMACs", "ours 1st ms", "ours ms", "ORT 1st ms", "ORT ms", "ORT-u8 ms", "ours/ORT",
         "ours/ORT-u8", "max|diff| LSB"],
        latency, align="lrrrrrrrrr"))
    print("\nORT: the QDQ export with int8 activations; ORT-u8: the same graph with uint8 activations "
          "(codes + 128).\n1st: the first call (ours: numba compiles or loads its kernels). max|diff|: "
          f"output codes over {N_CHECK} samples, ORT / ORT-u8.\nMedians of calls timed in alternating "
          "rounds of the three runtimes.")
    if per_layer:
        print()
        print(format_table(
            ["model", "layer", "op", "output", "kMACs", "ours us", "ours GMAC/s", "ORT-u8 us", "ORT-u8 GMAC/s"],
            per_layer, align="lllrrrrrr"))
        print("\nours: each interpreter step timed alone (median); ORT-u8: onnxruntime's profiler, kernel time "
              "of the fused node.")
        print()
        print(format_table(
            ["model", "ours ms", "MAC layers ms", "other ops ms", "run - steps ms", "steps", "floor ms",
             "conv GMAC/s", "dw GMAC/s", "dense GMAC/s", "overall GMAC/s"],
            where, align="lrrrrrrrrrr"))
        floor = results[0].get("call_floor_us")
        print(f"\nrun - steps: the run's time minus the sum of the steps timed alone: negative when the graph "
              f"runs as one call\n(run_program, no per-step dispatch), positive for caches that are cold in a "
              f"whole run.\nfloor: steps x {floor:.1f} us, the cost of one step called from Python whose kernel "
              f"has nothing to do (a 1x1x1 conv):\nPython and numba dispatch, which a whole-graph run pays once.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed calls per model and per layer (default: as many as fit in --budget)")
    parser.add_argument("--budget", type=float, default=1.0,
                        help="seconds of timed calls per model and runtime when --repeat is not given")
    parser.add_argument("--models", nargs="+", default=zoo.names(), metavar="MODEL",
                        help=f"zoo models (default: all of {', '.join(zoo.names())})")
    parser.add_argument("--seed", type=int, default=0, help="weights and data seed")
    parser.add_argument("--no-layers", action="store_true", help="skip the per-layer tables")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    unknown = [m for m in args.models if m not in zoo.names()]
    if unknown:
        print(f"inference.py: unknown model(s) {', '.join(unknown)}; known: {', '.join(zoo.names())}",
              file=sys.stderr)
        return 2
    if args.repeat is not None and args.repeat < 1:
        print("inference.py: --repeat must be at least 1", file=sys.stderr)
        return 2
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        print("inference.py: onnxruntime is not installed (pip install tinyml-lab[onnx])", file=sys.stderr)
        return 2

    from tqdm import tqdm

    results = []
    for name in tqdm(args.models, desc="models", disable=args.quiet, file=sys.stderr):
        results.append(bench_model(name, args.seed, args.repeat, args.budget, not args.no_layers))
    info = machine()
    if args.json:
        print(json.dumps({"machine": info, "batch": 1, "seed": args.seed, "models": results}, indent=1))
    else:
        print_tables(results, info)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
