"""Shared by the deployment-export tests: random int8 graphs, the LiteRT runner, the C harness.

* :func:`random_graphs`: a hypothesis strategy of small float graphs (convolutions with SAME,
  VALID and explicit pads, strides, dilations, depthwise layers, pools, pads, residual adds,
  standalone ReLUs, global average pooling, dense layers, softmax), quantized with
  ``quantize_model`` per channel or per tensor;
* :func:`litert`: run ``.tflite`` bytes in LiteRT, one sample at a time, with a chosen resolver;
* :func:`as_litert_reference`: run an int8 graph as LiteRT's reference resolver does. Every op
  is ours, except FULLY_CONNECTED: LiteRT's reference kernel rescales its int32 accumulator in
  double precision, ``round(acc * (s_in * s_w / s_out))``, where TFLite Micro and our kernels
  use the fixed-point multiplier (see :mod:`tinyml_lab.export.tflite`);
* :func:`build_c`: compile generated C with a small harness and run it on a batch.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
from hypothesis import strategies as st

from tinyml_lab.graph import Graph, GraphBuilder
from tinyml_lab.interpreter import Interpreter
from tinyml_lab.kernels.fixedpoint import activation_range
from tinyml_lab.kernels.reference import round_half_away_np

ACTS = ("none", "relu", "relu6")


# --------------------------------------------------------------------------- random graphs

@st.composite
def random_graphs(draw, max_blocks: int = 4) -> tuple[Graph, int]:
    """``(int8 graph, seed)``: a small random float graph quantized with random calibration data."""
    from tinyml_lab.quant import quantize_model

    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    h, w, c = draw(st.integers(3, 10)), draw(st.integers(3, 10)), draw(st.integers(1, 6))
    b = GraphBuilder("random", seed=seed)
    x = b.input((h, w, c))

    def bias(n: int) -> np.ndarray:
        return (rng.standard_normal(n) * 0.3).astype(np.float32)

    for _ in range(draw(st.integers(1, max_blocks))):
        h, w, c = b.graph.tensors[x].shape
        kind = draw(st.sampled_from(["conv", "depthwise", "maxpool", "avgpool", "pad", "residual", "relu"]))
        act = draw(st.sampled_from(ACTS))
        if kind in ("conv", "depthwise"):
            k = draw(st.integers(1, 3))
            dil = draw(st.integers(1, 2)) if k > 1 else 1
            stride = draw(st.integers(1, 2))
            pad = draw(st.sampled_from(["same", "valid", "explicit"]))
            eff = (k - 1) * dil + 1
            if pad == "explicit":
                pad = tuple(draw(st.integers(0, 2)) for _ in range(4))
                if h + pad[0] + pad[1] < eff or w + pad[2] + pad[3] < eff:
                    pad = "same"
            elif pad == "valid" and (h < eff or w < eff):
                pad = "same"
            if kind == "conv":
                f = draw(st.integers(1, 8))
                x = b.conv2d(x, f, k, strides=stride, padding=pad, dilation=dil, activation=act, bias=bias(f))
            else:
                x = b.depthwise_conv2d(x, k, strides=stride, padding=pad, dilation=dil, activation=act,
                                       bias=bias(c))
        elif kind in ("maxpool", "avgpool"):
            p = draw(st.integers(1, 3))
            s = draw(st.integers(1, 2))
            pad = draw(st.sampled_from(["same", "valid"]))
            if pad == "valid" and (h < p or w < p):
                pad = "same"
            pool = b.max_pool2d if kind == "maxpool" else b.avg_pool2d
            x = pool(x, p, strides=s, padding=pad)
        elif kind == "pad":
            x = b.pad(x, tuple(draw(st.integers(0, 2)) for _ in range(4)))
            if draw(st.booleans()):
                x = b.relu6(x) if draw(st.booleans()) else b.relu(x)
        elif kind == "residual":
            y = b.conv2d(x, c, draw(st.sampled_from([1, 3])), padding="same", activation=act, bias=bias(c))
            x = b.add(x, y, activation=draw(st.sampled_from(ACTS)))
        else:
            x = b.relu(x)
    head = draw(st.sampled_from(["gap_dense_softmax", "flatten_dense", "gap", "none", "softmax"]))
    if head == "gap_dense_softmax":
        units = draw(st.integers(2, 10))
        x = b.softmax(b.dense(b.global_avg_pool(x), units, bias=bias(units)))
    elif head == "flatten_dense":
        units = draw(st.integers(1, 12))
        x = b.dense(b.flatten(x), units, activation=draw(st.sampled_from(ACTS)), bias=bias(units))
    elif head == "gap":
        x = b.global_avg_pool(x)
    elif head == "softmax":
        x = b.softmax(x, beta=draw(st.sampled_from([1.0, 0.5, 2.0])))
    g = b.build(x)
    calib = (rng.standard_normal((8,) + g.input_shape()) * rng.uniform(0.5, 3.0)).astype(np.float32)
    return quantize_model(g, calib, per_channel=draw(st.booleans())), seed


def int8_inputs(graph: Graph, n: int, seed: int) -> np.ndarray:
    """``n`` uniformly random int8 inputs (the whole code range, saturation included)."""
    return np.random.default_rng(seed).integers(-128, 128, (n,) + graph.input_shape()).astype(np.int8)


# --------------------------------------------------------------------------- LiteRT

def litert(data: bytes, x: np.ndarray, resolver: str = "BUILTIN_REF") -> np.ndarray:
    """Outputs of ``.tflite`` bytes in LiteRT for each sample of ``x`` (batch-1 model)."""
    from ai_edge_litert.interpreter import Interpreter as LiteRT
    from ai_edge_litert.interpreter import OpResolverType

    it = LiteRT(model_content=data, experimental_op_resolver_type=OpResolverType[resolver])
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    ys = []
    for i in range(len(x)):
        it.set_tensor(inp["index"], x[i: i + 1])
        it.invoke()
        ys.append(it.get_tensor(out["index"])[0].copy())
    return np.stack(ys)


def litert_dense(graph: Graph, node, v: np.ndarray) -> np.ndarray:
    """LiteRT's reference FULLY_CONNECTED on int8 codes: ``round(acc * s_in s_w / s_out)`` in double,
    ties away from zero (per channel when the weights are)."""
    w = graph.weights(node)
    x, y = graph.tensors[node.inputs[0]], graph.tensors[node.outputs[0]]
    acc = (v.astype(np.int64) - int(x.quant.zero_point[0])) @ w["weight"].data.astype(np.int64).T
    if "bias" in w:
        acc = acc + w["bias"].data.astype(np.int64)
    eff = np.float64(x.quant.scale[0]) * w["weight"].quant.scale.astype(np.float64) / np.float64(y.quant.scale[0])
    lo, hi = activation_range(node.attrs["activation"], float(y.quant.scale[0]), int(y.quant.zero_point[0]))
    q = round_half_away_np(acc.astype(np.float64) * eff).astype(np.int64) + int(y.quant.zero_point[0])
    return np.clip(q, lo, hi).astype(np.int8)


def as_litert_reference(graph: Graph, x: np.ndarray) -> np.ndarray:
    """``graph`` on ``x`` with our kernels, except Dense computed as LiteRT's reference kernel does."""
    it = Interpreter(graph)
    env = {graph.inputs[0]: x}
    for node, step in zip(graph.nodes, it._steps):
        if node.op == "Dense":
            env[node.outputs[0]] = litert_dense(graph, node, env[node.inputs[0]])
        else:
            step(env)
    return env[graph.outputs[0]]


# --------------------------------------------------------------------------- C

def build_c(src, folder: Path, x: np.ndarray, cc: str = "gcc") -> np.ndarray:
    """Write the generated files and a harness reading int8 inputs on stdin, compile with
    ``-std=c99 -O2 -Wall -Wextra -Werror``, run on ``x`` and return the outputs."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in src.files().items():
        (folder / name).write_text(text)
    p, P = src.name, src.name.upper()
    (folder / "main.c").write_text(
        f'#include <stdio.h>\n#include "{p}.h"\n'
        f"int main(void)\n{{\n    static int8_t x[{P}_INPUT_SIZE], y[{P}_OUTPUT_SIZE];\n"
        f"    while (fread(x, 1, sizeof x, stdin) == sizeof x) {{\n"
        f"        if ({p}_invoke(x, y) != 0) return 1;\n"
        f"        fwrite(y, 1, sizeof y, stdout);\n    }}\n    return 0;\n}}\n")
    exe = folder / "run"
    subprocess.run([cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-o", str(exe),
                    str(folder / f"{p}.c"), str(folder / "main.c")], check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], input=np.ascontiguousarray(x).tobytes(), capture_output=True, check=True).stdout
    return np.frombuffer(out, np.int8).reshape((len(x), src.output_size))


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
