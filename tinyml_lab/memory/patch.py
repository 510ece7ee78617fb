"""Patch-based inference: run the memory-heavy first stage of a CNN one spatial patch at a time.

Following MCUNetV2 (Lin, Chen, Cai, Gan and Han, "MCUNetV2: Memory-Efficient
Patch-based Inference for Tiny Deep Learning", NeurIPS 2021): the output
feature map of the first stage (the *split* tensor) is cut into ``n x n``
patches; each output patch needs a region of every earlier tensor, its
receptive field, found backwards through the stage. A window op (conv,
depthwise conv, pooling) with kernel ``k``, stride ``s``, dilation ``d`` and
leading padding ``p`` needs input rows

``[oy_0 s - p, (oy_1 - 1) s - p + (k - 1) d + 1)`` for output rows ``[oy_0, oy_1)``

(clipped to the image), element-wise ops need the same region, and a tensor
read by several ops is computed over the union (bounding box) of what they
need. Each patch is computed over these regions with explicit padding only
where a region meets the image border, so every output value is computed
from exactly the inputs the whole-image computation uses: the stitched split
tensor, and so the network's output, is identical to layer-by-layer
execution. Neighbouring receptive fields overlap, so the patched stage costs
more MACs:

``extra = sum_patches sum_layers m_l |R_l(patch)| - sum_layers m_l H_l W_l``,

with ``m_l`` the MACs per output pixel of layer ``l`` and ``R_l`` its output
region. Peak memory of the patched stage is the stitched split tensor plus
the largest per-patch working set (the live bytes of one patch's regions;
the input image is read patch by patch, as MCUNetV2 assumes, unless
``count_input``); the rest of the network runs layer by layer, so the
patched peak is ``max(stage peak, peak after the split)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import GraphError, ShapeError, TinyMLError
from ..graph import Graph, Node
from ..interpreter import _FLOAT, _INT8, Interpreter
from ..ops import resolve_padding
from .lifetimes import graph_lifetimes

WINDOW_OPS = ("Conv2D", "DepthwiseConv2D", "AvgPool2D", "MaxPool2D")
POINTWISE_OPS = ("Add", "ReLU", "ReLU6", "Quantize", "Dequantize")
STAGE_OPS = WINDOW_OPS + POINTWISE_OPS + ("Pad",)


class PatchError(TinyMLError, ValueError):
    """The graph cannot be split at the requested place, or the patch count does not fit."""


@dataclass(frozen=True)
class Region:
    """Rows ``[y0, y1)`` and columns ``[x0, x1)`` of a feature map."""

    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def rows(self) -> int:
        return max(self.y1 - self.y0, 0)

    @property
    def cols(self) -> int:
        return max(self.x1 - self.x0, 0)

    @property
    def area(self) -> int:
        return self.rows * self.cols

    def union(self, other: "Region | None") -> "Region":
        if other is None:
            return self
        return Region(min(self.y0, other.y0), max(self.y1, other.y1), min(self.x0, other.x0), max(self.x1, other.x1))


def _window(graph: Graph, node: Node) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, ...]]:
    """Kernel, strides, dilation and whole-image pads ``(top, bottom, left, right)`` of a window op or Pad."""
    x = graph.tensors[node.inputs[0]]
    a = node.attrs
    if node.op == "Pad":
        return (1, 1), (1, 1), (1, 1), tuple(a["pads"])
    if node.op in ("Conv2D", "DepthwiseConv2D"):
        kernel = graph.weights(node)["weight"].shape[1:3]
        dilation = a["dilation"]
    else:
        kernel, dilation = a["pool_size"], (1, 1)
    _, pads = resolve_padding(x.shape[:2], kernel, a["strides"], dilation, a["padding"], node.name)
    return tuple(kernel), tuple(a["strides"]), tuple(dilation), pads


def _needed(graph: Graph, node: Node, out: Region) -> tuple[Region, tuple[int, int, int, int]]:
    """The (clipped) input region output region ``out`` of a window op reads, and the patch's pads."""
    h, w = graph.tensors[node.inputs[0]].shape[:2]
    (kh, kw), (sh, sw), (dh, dw), (pt, _, pl, _) = _window(graph, node)
    a = out.y0 * sh - pt
    b = (out.y1 - 1) * sh - pt + (kh - 1) * dh + 1
    c = out.x0 * sw - pl
    d = (out.x1 - 1) * sw - pl + (kw - 1) * dw + 1
    region = Region(min(max(a, 0), h), max(min(b, h), 0), min(max(c, 0), w), max(min(d, w), 0))
    return region, (max(0, -a), max(0, b - h), max(0, -c), max(0, d - w))


def cut_points(graph: Graph) -> list[int]:
    """Node indices ``k`` after which the only live tensor is node ``k``'s (rank-3) output and every
    node ``0..k`` is a spatial op the patch executor can run: the places a first stage can end."""
    live_until: dict[str, int] = {}
    for i, node in enumerate(graph.nodes):
        for t in node.inputs:
            if not graph.tensors[t].is_const:
                live_until[t] = i
    for t in graph.outputs:
        live_until[t] = len(graph.nodes)
    produced = set(graph.inputs)
    cuts = []
    for k, node in enumerate(graph.nodes):
        if node.op not in STAGE_OPS:
            break
        produced.add(node.outputs[0])
        out = node.outputs[0]
        if len(graph.tensors[out].shape) != 3 or k == len(graph.nodes) - 1:
            continue
        alive = [t for t in produced if live_until.get(t, -1) > k]
        if alive == [out]:
            cuts.append(k)
    return cuts


def _split_bounds(size: int, n: int) -> list[int]:
    return [round(i * size / n) for i in range(n + 1)]


@dataclass
class PatchPlan:
    """The first stage of ``graph`` (nodes ``0..split_index``) cut into ``n x n`` patches.

    Build with :func:`plan_patches`. ``regions[p][t]`` is the region of
    tensor ``t`` patch ``p`` computes.
    """

    graph: Graph
    n: int
    split_index: int
    regions: list[dict[str, Region]]
    count_input: bool = False
    stats: dict = field(default_factory=dict)

    @property
    def split(self) -> str:
        return self.graph.nodes[self.split_index].outputs[0]

    @property
    def stage(self) -> list[Node]:
        return self.graph.nodes[: self.split_index + 1]

    # ------------------------------------------------------------------ figures
    @property
    def peak_bytes_patched(self) -> int:
        """``max(stitched split tensor + largest patch working set, peak after the split)``."""
        return self.stats["peak_bytes_patched"]

    @property
    def peak_bytes_unpatched(self) -> int:
        """Largest live bytes of layer-by-layer execution (the lower bound of any arena plan)."""
        return self.stats["peak_bytes_unpatched"]

    @property
    def extra_macs(self) -> int:
        """MACs the overlapping receptive fields add: patched stage minus whole-image stage."""
        return self.stats["extra_macs"]

    def _compute_stats(self) -> None:
        g = self.graph
        k = self.split_index
        lt = graph_lifetimes(g)
        live = lt.live_bytes(1)
        unpatched = int(live.max())
        rest = int(live[k + 1:].max()) if k + 1 < len(live) else 0
        split_t = g.tensors[self.split]
        stitched = split_t.nbytes
        worst = 0
        for regs in self.regions:
            worst = max(worst, self._patch_peak(regs))
        input_bytes = sum(g.tensors[t].nbytes for t in g.inputs) if self.count_input else 0
        stage_peak = stitched + worst + input_bytes
        stats = {s.name: s for s in g.layer_stats()}
        whole = sum(stats[nd.name].macs for nd in self.stage)
        patched = 0
        for regs in self.regions:
            for nd in self.stage:
                o = nd.outputs[0]
                if o not in regs or stats[nd.name].macs == 0:
                    continue
                h, w = g.tensors[o].shape[:2]
                patched += stats[nd.name].macs * regs[o].area // (h * w)
        self.stats = {
            "peak_bytes_unpatched": unpatched,
            "peak_bytes_patched": max(stage_peak, rest),
            "stage_peak_bytes": stage_peak,
            "rest_peak_bytes": rest,
            "patch_working_set_bytes": worst,
            "stitched_bytes": stitched,
            "stage_macs": whole,
            "patched_stage_macs": patched,
            "extra_macs": patched - whole,
            "total_macs": g.macs,
            "mac_overhead": (patched - whole) / g.macs if g.macs else 0.0,
            "reduction": unpatched / max(stage_peak, rest) if max(stage_peak, rest) else 1.0,
        }

    def _patch_peak(self, regs: dict[str, Region]) -> int:
        """Largest live bytes while one patch runs (the split tensor's patch goes to the stitched buffer)."""
        g = self.graph
        stage = self.stage
        first = {nd.outputs[0]: i for i, nd in enumerate(stage)}
        live = np.zeros(len(stage), np.int64)
        last: dict[str, int] = {}
        for i, nd in enumerate(stage):
            for t in nd.inputs:
                if t in regs:
                    last[t] = i
        for t, r in regs.items():
            if t == self.split:
                continue
            f = first.get(t, 0)
            tt = g.tensors[t]
            live[f: max(last.get(t, f), f) + 1] += r.area * tt.shape[2] * np.dtype(tt.dtype).itemsize
        return int(live.max()) if len(live) else 0

    def to_json(self) -> dict:
        return {"patches": self.n, "split": self.split, "split_index": self.split_index,
                "count_input": self.count_input, **{k: (round(v, 6) if isinstance(v, float) else v)
                                                    for k, v in self.stats.items()}}

    def __repr__(self) -> str:
        return (f"PatchPlan({self.n}x{self.n} patches up to '{self.split}', peak "
                f"{self.stats['peak_bytes_unpatched']:,} -> {self.stats['peak_bytes_patched']:,} bytes, "
                f"+{self.stats['extra_macs']:,} MACs)")

    # ------------------------------------------------------------------ running
    def run(self, *inputs: np.ndarray, backend: str = "numba") -> np.ndarray | tuple[np.ndarray, ...]:
        """Outputs of the graph on a batch, the first stage computed patch by patch."""
        g = self.graph
        if len(inputs) != 1 or len(g.inputs) != 1:
            raise ShapeError(f"patch-based inference takes one input, got {len(inputs)}")
        it = Interpreter(g, backend)
        x = it._check_input(g.tensors[g.inputs[0]], inputs[0])
        split_t = g.tensors[self.split]
        stitched = np.empty((x.shape[0],) + split_t.shape, np.dtype(split_t.dtype))
        cache: dict = {}
        for regs in self.regions:
            env: dict[str, tuple[np.ndarray, Region]] = {}
            r = regs[g.inputs[0]]
            env[g.inputs[0]] = (x[:, r.y0: r.y1, r.x0: r.x1], r)
            for nd in self.stage:
                o = nd.outputs[0]
                if o in regs:
                    env[o] = (self._run_node(nd, regs[o], env, cache, backend == "numba"), regs[o])
            y, r = env[self.split]
            stitched[:, r.y0: r.y1, r.x0: r.x1] = y
        env_rest = {self.split: stitched}
        for step in it._steps[self.split_index + 1:]:
            step(env_rest)
        outs = tuple(env_rest[o] for o in g.outputs)
        return outs[0] if len(outs) == 1 else outs

    def _run_node(self, nd: Node, out: Region, env: dict, cache: dict, fast: bool) -> np.ndarray:
        g = self.graph
        t_out = g.tensors[nd.outputs[0]]
        int8 = t_out.dtype == "int8" or g.tensors[nd.inputs[0]].dtype == "int8"
        table = _INT8 if int8 else _FLOAT
        # the kernels are prepared for the patch's shapes, as if the patch were the whole tensor
        out_t = replace(t_out, shape=(out.rows, out.cols) + t_out.shape[2:])
        if nd.op in WINDOW_OPS or nd.op == "Pad":
            need, pads = _needed(g, nd, out)
            a, ra = env[nd.inputs[0]]
            x_t = g.tensors[nd.inputs[0]]
            ins = [replace(x_t, shape=(need.rows, need.cols) + x_t.shape[2:])] + [g.tensors[t] for t in nd.inputs[1:]]
            if need.area == 0:  # a Pad region entirely in the padding
                zp = int(t_out.quant.zero_point[0]) if int8 else 0
                return np.full((a.shape[0], out.rows, out.cols, t_out.shape[2]), zp, np.dtype(t_out.dtype))
            key = (nd.name, pads, need.rows, need.cols, out.rows, out.cols)
            if key not in cache:
                attr = "pads" if nd.op == "Pad" else "padding"
                patched = Node(nd.name, nd.op, nd.inputs, nd.outputs, dict(nd.attrs, **{attr: pads}))
                cache[key] = table[nd.op](g, patched, ins, out_t, fast)
            xs = a[:, need.y0 - ra.y0: need.y1 - ra.y0, need.x0 - ra.x0: need.x1 - ra.x0]
            y = cache[key](np.ascontiguousarray(xs))
        else:
            ins = [g.tensors[t] if g.tensors[t].is_const else replace(g.tensors[t], shape=out_t.shape)
                   for t in nd.inputs]
            key = (nd.name, None, out.rows, out.cols)
            if key not in cache:
                cache[key] = table[nd.op](g, nd, ins, out_t, fast)
            args = []
            for t in nd.inputs:
                if g.tensors[t].is_const:
                    continue
                a, ra = env[t]
                args.append(np.ascontiguousarray(a[:, out.y0 - ra.y0: out.y1 - ra.y0, out.x0 - ra.x0: out.x1 - ra.x0]))
            y = cache[key](*args)
        if y.shape[1:3] != (out.rows, out.cols):
            raise PatchError(f"{nd.op} '{nd.name}' gave a {y.shape[1:3]} patch where {out.rows}x{out.cols} "
                             f"was planned")
        return y


def _regions(graph: Graph, split_index: int, n: int) -> list[dict[str, Region]]:
    stage = graph.nodes[: split_index + 1]
    split = stage[-1].outputs[0]
    h, w = graph.tensors[split].shape[:2]
    ys, xs = _split_bounds(h, n), _split_bounds(w, n)
    patches = []
    for i in range(n):
        for j in range(n):
            req: dict[str, Region] = {split: Region(ys[i], ys[i + 1], xs[j], xs[j + 1])}
            for nd in reversed(stage):
                o = nd.outputs[0]
                if o not in req:
                    continue
                r = req[o]
                acts = [t for t in nd.inputs if not graph.tensors[t].is_const]
                for t in acts:
                    need = _needed(graph, nd, r)[0] if (nd.op in WINDOW_OPS or nd.op == "Pad") else r
                    req[t] = need.union(req.get(t))
            patches.append(req)
    return patches


def plan_patches(graph: Graph, n: int = 4, split: str | int | None = None, count_input: bool = False) -> PatchPlan:
    """Plan ``n x n`` patch-based execution of the first stage of ``graph``.

    Args:
        graph: an int8 or float CNN.
        n: patches per side.
        split: where the first stage ends: a tensor name, a node index, or
            None to choose the cut point with the smallest patched peak
            memory (the earliest among ties, which costs the fewest extra MACs).
        count_input: count the whole input image as resident during the
            patched stage (MCUNetV2 reads it patch by patch, so False).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise PatchError(f"the number of patches per side must be an int >= 1, got {n!r}")
    cuts = [k for k in cut_points(graph) if min(graph.tensors[graph.nodes[k].outputs[0]].shape[:2]) >= n]
    if not cuts:
        raise PatchError(f"graph '{graph.name}' has no place to end a first stage of {n}x{n} patches (a tensor "
                         f"that alone carries the state, at least {n}x{n} pixels, after only spatial ops)")
    if split is None:
        best = None
        for k in cuts:
            p = PatchPlan(graph, int(n), k, _regions(graph, k, int(n)), count_input)
            p._compute_stats()
            if best is None or p.stats["peak_bytes_patched"] < best.stats["peak_bytes_patched"] * 0.995:
                best = p
        return best
    if isinstance(split, str):
        idx = [i for i, nd in enumerate(graph.nodes) if nd.outputs[0] == split]
        if not idx:
            raise GraphError(f"graph '{graph.name}' has no tensor {split!r} produced by a node")
        k = idx[0]
    else:
        k = int(split)
    if k not in cuts:
        names = ", ".join(graph.nodes[c].outputs[0] for c in cuts[:12])
        raise PatchError(f"cannot end the patched stage at {graph.nodes[k].outputs[0]!r}: it is not a cut point "
                         f"with at least {n}x{n} pixels; cut points: {names}")
    p = PatchPlan(graph, int(n), k, _regions(graph, k, int(n)), count_input)
    p._compute_stats()
    return p


__all__ = ["PatchPlan", "PatchError", "Region", "plan_patches", "cut_points", "WINDOW_OPS", "STAGE_OPS"]
