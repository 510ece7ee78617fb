"""Deployment exports of every zoo model, checked against runtimes nobody here wrote.

Prints three tables:

1. LiteRT: each model exported with ``to_tflite`` and run in LiteRT with its three op
   resolvers on the same random int8 inputs as tinyml_lab: the largest output difference
   (in codes) and the share of output codes that differ. ``REF*`` is the reference resolver
   against our graph with LiteRT's double-precision FULLY_CONNECTED swapped in (always 0:
   everything else is bit-exact); ``REF`` against our own kernels; ``BUILTIN`` the optimized
   kernels without delegates; ``AUTO`` the default (optimized kernels and XNNPACK);
2. per operator: every node of every zoo model run alone (a one-operator model), fed the
   tensors it meets inside the model, in each resolver, against our kernel: which ops differ,
   by how much, how often;
3. C: the generated source of each model compiled with the host ``gcc -O2`` and, when
   installed, ``arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb``: ``size`` of the object (text
   holds code and constants, bss the arena), the planned arena, and whether the compiled
   program's outputs equal the interpreter's.

    python benchmarks/export.py                # tables
    python benchmarks/export.py --json         # the same data as JSON
    python benchmarks/export.py --models kws-dscnn --samples 20
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tinyml_lab import zoo
from tinyml_lab.export.c import to_c
from tinyml_lab.export.tflite import to_tflite
from tinyml_lab.graph import Graph
from tinyml_lab.interpreter import Interpreter
from tinyml_lab.memory import deployed_graph
from tinyml_lab.report import format_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from export_cases import as_litert_reference, build_c  # noqa: E402

RESOLVERS = ("BUILTIN_REF", "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "AUTO")
SHORT = {"BUILTIN_REF": "REF", "BUILTIN_WITHOUT_DEFAULT_DELEGATES": "BUILTIN", "AUTO": "AUTO"}


def run_litert(data: bytes, inputs: list[np.ndarray], resolver: str) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter as LiteRT
    from ai_edge_litert.interpreter import OpResolverType

    it = LiteRT(model_content=data, experimental_op_resolver_type=OpResolverType[resolver])
    it.allocate_tensors()
    ins, out = it.get_input_details(), it.get_output_details()[0]
    ys = []
    for i in range(len(inputs[0])):
        for d, x in zip(ins, inputs):
            it.set_tensor(d["index"], x[i: i + 1])
        it.invoke()
        ys.append(it.get_tensor(out["index"])[0].copy())
    return np.stack(ys)


def diff(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a.astype(np.int64) - b.reshape(a.shape).astype(np.int64))
    return {"max": int(d.max(initial=0)), "share": float((d > 0).mean())}


def litert_table(graphs: dict[str, Graph], samples: int) -> list[dict]:
    rows = []
    for name, q in graphs.items():
        data = to_tflite(q)
        x = np.random.default_rng(0).integers(-128, 128, (samples,) + q.input_shape()).astype(np.int8)
        ours = Interpreter(q).run(x)
        row = {"model": name, "tflite_bytes": len(data), "samples": samples,
               "REF*": diff(run_litert(data, [x], "BUILTIN_REF"), as_litert_reference(q, x))}
        for r in RESOLVERS:
            row[SHORT[r]] = diff(run_litert(data, [x], r), ours)
        rows.append(row)
    return rows


def single_node(graph: Graph, index: int) -> Graph:
    node = graph.nodes[index]
    g = Graph(f"{graph.name}/{node.name}")
    for t in node.inputs + node.outputs:
        g.tensors[t] = graph.tensors[t]
    g.inputs = [t for t in node.inputs if not graph.tensors[t].is_const]
    g.outputs = list(node.outputs)
    g.nodes = [node]
    return g.validate()


def op_table(graphs: dict[str, Graph], samples: int) -> list[dict]:
    """Each node alone, fed the tensors it meets in the model (our interpreter on random inputs)."""
    stats: dict[str, dict] = {}
    for q in graphs.values():
        x = np.random.default_rng(1).integers(-128, 128, (samples,) + q.input_shape()).astype(np.int8)
        env = Interpreter(q).run(x, return_all=True)
        for i, node in enumerate(q.nodes):
            if node.op in ("Reshape", "Flatten"):
                continue
            g = single_node(q, i)
            xs = [np.ascontiguousarray(env[t]) for t in g.inputs]
            ours = env[node.outputs[0]]
            data = to_tflite(g)
            s = stats.setdefault(node.op, {"op": node.op, "nodes": 0, "outputs": 0,
                                           **{SHORT[r]: {"max": 0, "differing": 0} for r in RESOLVERS}})
            s["nodes"] += 1
            s["outputs"] += ours.size
            for r in RESOLVERS:
                d = np.abs(run_litert(data, xs, r).astype(np.int64) - ours.astype(np.int64))
                s[SHORT[r]]["max"] = max(s[SHORT[r]]["max"], int(d.max(initial=0)))
                s[SHORT[r]]["differing"] += int((d > 0).sum())
    return list(stats.values())


def size_of(tool: str, obj: Path) -> dict:
    out = subprocess.run([tool, str(obj)], capture_output=True, text=True, check=True).stdout
    text, data, bss = (int(v) for v in out.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


def c_table(graphs: dict[str, Graph], samples: int) -> list[dict]:
    rows = []
    arm = shutil.which("arm-none-eabi-gcc") is not None
    with tempfile.TemporaryDirectory() as tmp:
        for name, q in graphs.items():
            folder = Path(tmp) / name
            src = to_c(q, folder)
            c_file = folder / f"{src.name}.c"
            flags = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-c"]
            subprocess.run(["gcc", *flags, "-o", str(folder / "host.o"), str(c_file)], check=True)
            row = {"model": name, "source_bytes": len(src.source), "const_bytes": src.const_bytes,
                   "arena_bytes": src.arena_bytes, "host": size_of("size", folder / "host.o")}
            if arm:
                subprocess.run(["arm-none-eabi-gcc", *flags, "-mcpu=cortex-m4", "-mthumb", "-o",
                                str(folder / "m4.o"), str(c_file)], check=True)
                row["cortex_m4"] = size_of("arm-none-eabi-size", folder / "m4.o")
            x = np.random.default_rng(2).integers(-128, 128, (samples,) + q.input_shape()).astype(np.int8)
            y = build_c(src, folder / "run", x)
            row["bit_exact"] = bool(np.array_equal(y, Interpreter(q).run(x).reshape(y.shape)))
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=zoo.names(), help="zoo models (default: all)")
    ap.add_argument("--samples", type=int, default=8, help="random int8 inputs per model (default 8)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    args = ap.parse_args(argv)
    graphs = {n: deployed_graph(zoo.get(n)) for n in args.models}
    result = {"litert": litert_table(graphs, args.samples), "ops": op_table(graphs, args.samples),
              "c": c_table(graphs, args.samples)}
    if args.json:
        print(json.dumps(result, indent=2))
        return

    def cell(d: dict) -> str:
        return "0" if d["max"] == 0 else f"{d['max']} ({100 * d['share']:.1f}%)"

    print("LiteRT against tinyml_lab: max |diff| in codes (share of output codes that differ)")
    print(format_table(["model", ".tflite bytes", "REF*", "REF", "BUILTIN", "AUTO"],
                       [[r["model"], f"{r['tflite_bytes']:,}", cell(r["REF*"]), cell(r["REF"]), cell(r["BUILTIN"]),
                         cell(r["AUTO"])] for r in result["litert"]], align="lrrrrr"))
    print("\nper operator, each node of the zoo alone on its inputs in the model: max |diff| (differing outputs)")

    def ocell(s: dict, total: int) -> str:
        return "0" if s["max"] == 0 else f"{s['max']} ({100 * s['differing'] / total:.2f}%)"

    print(format_table(["op", "nodes", "outputs", "REF", "BUILTIN", "AUTO"],
                       [[s["op"], s["nodes"], f"{s['outputs']:,}", ocell(s["REF"], s["outputs"]),
                         ocell(s["BUILTIN"], s["outputs"]), ocell(s["AUTO"], s["outputs"])]
                        for s in result["ops"]], align="lrrrrr"))
    print("\nC export: object sizes (text = code + constants in flash, bss = the arena)")
    rows = []
    for r in result["c"]:
        h, m4 = r["host"], r.get("cortex_m4")
        rows.append([r["model"], f"{r['const_bytes']:,}", f"{r['arena_bytes']:,}", f"{h['text']:,}", f"{h['bss']:,}",
                     f"{m4['text']:,}" if m4 else "-", f"{m4['bss']:,}" if m4 else "-",
                     "yes" if r["bit_exact"] else "NO"])
    print(format_table(["model", "const B", "arena B", "host text", "host bss", "M4 text", "M4 bss", "bit-exact"],
                       rows, align="lrrrrrrr"))


if __name__ == "__main__":
    main()
