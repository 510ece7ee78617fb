"""One training step of tinyml_lab against PyTorch eager on the CPU, one thread each.

For ``digits-cnn`` and ``mobilenetv2`` (width 0.35, 128x128, 10 classes),
BatchNorm folded and activations fused as deployed, at batch 1 and 32:

* **ours float**: the compiled step (:class:`tinyml_lab.train.compiler.CompiledStep`,
  every weight trained, SGD): forward, softmax cross-entropy, backward, updates;
* **ours int8+QAS**: the same step on the int8 graph (int8 forward as deployed,
  float backward, integer updates with QAS);
* **torch**: the same architecture built from the graph with the same
  weights (NCHW, ``nn.Conv2d``/``nn.Linear``, fused ReLU/ReLU6 as modules),
  ``model(x)``, ``F.cross_entropy``, ``loss.backward()``, ``SGD.step()``.

Times are medians over repeats after a warm-up (numba compiles or loads its
kernels on the first call); the ratio is ours / torch (below 1: faster).
``NUMBA_NUM_THREADS=1``, ``OPENBLAS_NUM_THREADS=1`` and
``torch.set_num_threads(1)``.

    python benchmarks/training.py            # table
    python benchmarks/training.py --json     # the same data as JSON
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
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

from tinyml_lab import zoo  # noqa: E402
from tinyml_lab.graph import Graph  # noqa: E402
from tinyml_lab.passes import fold_batchnorm, fuse_activations  # noqa: E402
from tinyml_lab.quant import quantize_model  # noqa: E402
from tinyml_lab.report import format_table  # noqa: E402
from tinyml_lab.train.autodiff import BackwardGraph  # noqa: E402
from tinyml_lab.train.compiler import compile_step  # noqa: E402
from tinyml_lab.train.optim import SGD  # noqa: E402

MODELS = {
    "digits-cnn": dict(num_classes=10),
    "mobilenetv2": dict(width=0.35, resolution=128, num_classes=10),
}


def median_time(fn: Callable[[], object], budget: float, min_repeat: int = 3, max_repeat: int = 200) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    fn()
    est = time.perf_counter() - t0
    n = int(min(max(budget / max(est, 1e-6), min_repeat), max_repeat))
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --------------------------------------------------------------------------- the torch twin

def torch_model(graph: Graph):
    """The float graph as a ``torch.nn.Module`` with the same weights (NCHW inside)."""
    import torch
    from torch import nn

    bg = BackwardGraph(graph, trainable=())
    mods, plan = nn.ModuleDict(), []
    act_mod = {"relu": nn.ReLU, "relu6": nn.ReLU6}
    for node in graph.nodes:
        a, w = node.attrs, graph.weights(node)
        key = node.name.replace("/", "_").replace(".", "_")
        if node.op in ("Conv2D", "DepthwiseConv2D"):
            wt = w["weight"].data
            t, b, l, r = bg._geometry[node.name]["pads"]
            if node.op == "Conv2D":
                cout, kh, kw, cin = wt.shape
                conv = nn.Conv2d(cin, cout, (kh, kw), a["strides"], 0, a["dilation"], bias="bias" in w)
                conv.weight.data = torch.from_numpy(wt.transpose(0, 3, 1, 2).copy())
            else:
                _, kh, kw, c = wt.shape
                conv = nn.Conv2d(c, c, (kh, kw), a["strides"], 0, a["dilation"], groups=c, bias="bias" in w)
                conv.weight.data = torch.from_numpy(wt.transpose(3, 0, 1, 2).copy())
            if "bias" in w:
                conv.bias.data = torch.from_numpy(w["bias"].data.copy())
            layers = ([nn.ZeroPad2d((l, r, t, b))] if (t, b, l, r) != (0, 0, 0, 0) else []) + [conv]
            if a.get("activation", "none") != "none":
                layers.append(act_mod[a["activation"]]())
            mods[key] = nn.Sequential(*layers)
        elif node.op == "Dense":
            wt = w["weight"].data
            lin = nn.Linear(wt.shape[1], wt.shape[0], bias="bias" in w)
            lin.weight.data = torch.from_numpy(wt.copy())
            if "bias" in w:
                lin.bias.data = torch.from_numpy(w["bias"].data.copy())
            layers = [lin] + ([act_mod[a["activation"]]()] if a.get("activation", "none") != "none" else [])
            mods[key] = nn.Sequential(*layers)
        elif node.op in ("ReLU", "ReLU6"):
            mods[key] = act_mod[node.op.lower()]()
        elif node.op not in ("GlobalAvgPool", "Add", "Softmax", "Flatten", "Reshape"):
            raise NotImplementedError(node.op)
        plan.append((node, key))

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.mods = mods

        def forward(self, x):
            env = {graph.inputs[0]: x}
            for node, key in plan:
                ins = [env[i] for i in node.inputs if not graph.tensors[i].is_const]
                if node.op == "GlobalAvgPool":
                    y = ins[0].mean(dim=(2, 3))
                elif node.op == "Add":
                    y = ins[0] + ins[1]
                    act = node.attrs.get("activation", "none")
                    y = torch.relu(y) if act == "relu" else torch.clamp(y, 0, 6) if act == "relu6" else y
                elif node.op == "Softmax":
                    y = ins[0]  # the loss takes the logits
                elif node.op in ("Flatten", "Reshape"):
                    y = ins[0].reshape(ins[0].shape[0], -1)
                else:
                    y = self.mods[key](ins[0])
                env[node.outputs[0]] = y
            return env[graph.outputs[0]]

    return Twin()


# --------------------------------------------------------------------------- one model

def bench_model(name: str, batch: int, budget: float, check: bool) -> dict:
    import torch
    import torch.nn.functional as F

    g = zoo.get(name, weights="random", **MODELS[name])
    f = fuse_activations(fold_batchnorm(g))
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (batch,) + f.input_shape()).astype(np.float32)
    y = rng.integers(0, MODELS[name]["num_classes"], batch)
    q = quantize_model(f, rng.uniform(-1.0, 1.0, (16,) + f.input_shape()).astype(np.float32))

    ours_f = compile_step(f.copy(), None, SGD(lr=1e-4))
    ours_q = compile_step(q.copy(), None, SGD(lr=1e-4, qas=True))
    model = torch_model(f)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    yt = torch.from_numpy(y)

    def torch_step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss

    row = {"model": name, "batch": batch, "macs": f.macs * batch}
    if check:  # same architecture and weights: the losses agree before any step
        l_ours = BackwardGraph(f).value_and_grad(x, y).loss
        with torch.no_grad():
            l_torch = float(F.cross_entropy(model(xt), yt))
        row["loss_ours"], row["loss_torch"] = l_ours, l_torch
    row["torch_ms"] = 1000 * median_time(torch_step, budget)
    row["ours_float_ms"] = 1000 * median_time(lambda: ours_f.run(x, y), budget)
    row["ours_int8_qas_ms"] = 1000 * median_time(lambda: ours_q.run(x, y), budget)
    row["ratio_float"] = row["ours_float_ms"] / row["torch_ms"]
    row["ratio_int8_qas"] = row["ours_int8_qas_ms"] / row["torch_ms"]
    row.update(where_time_goes(ours_f, x, y))
    return row


def where_time_goes(step, x, y) -> dict:
    """Milliseconds of the forward and of the backward+update ops of one float step (one run)."""
    bg = step.bg
    t0 = time.perf_counter()
    tape = bg.forward(x, training=True)
    t1 = time.perf_counter()
    step.run(x, y)
    t2 = time.perf_counter()
    del tape
    return {"forward_ms": 1000 * (t1 - t0), "backward_update_ms": 1000 * ((t2 - t1) - (t1 - t0))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    p.add_argument("--budget", type=float, default=2.0, help="seconds of timing per runtime and case")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = [bench_model(m, b, args.budget, True) for m in args.models for b in args.batches]
    meta = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "machine": platform.machine(), "threads": 1}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
        return
    print(format_table(
        ["model", "batch", "torch ms", "ours float ms", "float / torch", "ours int8+QAS ms", "int8 / torch",
         "fwd ms", "bwd+upd ms", "loss ours / torch"],
        [[r["model"], r["batch"], f"{r['torch_ms']:.2f}", f"{r['ours_float_ms']:.2f}", f"{r['ratio_float']:.2f}x",
          f"{r['ours_int8_qas_ms']:.2f}", f"{r['ratio_int8_qas']:.2f}x", f"{r['forward_ms']:.2f}",
          f"{r['backward_update_ms']:.2f}", f"{r['loss_ours']:.4f} / {r['loss_torch']:.4f}"] for r in rows],
        align="lrrrrrrrrr"))


if __name__ == "__main__":
    main()
