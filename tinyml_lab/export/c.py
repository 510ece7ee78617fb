"""Generate self-contained C99 source for an int8 graph: code, not an interpreter.

TinyEngine's idea (Lin et al., MCUNet, NeurIPS 2020): at deployment time the
graph is known, so instead of shipping a model file and an interpreter that
parses it, generate the program that runs exactly this graph. The generated
``<name>.c`` holds

* every weight, bias and requantization parameter as a ``const`` array (in
  flash on a microcontroller);
* one static arena of the size :func:`tinyml_lab.memory.plan` computed, each
  activation at its planned offset (no ``malloc``);
* a small kernel library (``templates/kernels.c``: only the kernels the graph
  uses), computing the int8 arithmetic of :mod:`tinyml_lab.kernels.reference`
  with integers only, the same requantization included;
* ``int <name>_invoke(const int8_t *input, int8_t *output)``: the layers as a
  straight sequence of calls with every shape, stride and parameter a
  literal, returning 0 (or -1 for a NULL pointer).

``<name>.h`` declares the function and gives the sizes, the arena bytes and the
input and output quantization (as float macros for the caller's convenience;
nothing in the int8 path uses floating point). Input and output are int8 codes
in the IR's layout (NHWC, batch left out). A graph with float edges
(``Quantize``/``Dequantize``) is exported without them: the C function
takes and returns codes.

The output is bit-exact with :class:`tinyml_lab.interpreter.Interpreter`
(tested by compiling with ``gcc -std=c99 -O2 -Wall -Wextra -Werror`` and
running on random inputs).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import ExportError
from ..graph import Graph, Node, Tensor
from ..kernels.fixedpoint import (
    activation_range,
    mean_multiplier,
    quantize_multiplier,
    quantize_multipliers,
    softmax_params,
)
from ..ops import resolve_padding
from ..files import check_folder, write_files
from .prepare import int8_core, require_int8

TEMPLATES = Path(__file__).resolve().parent / "templates"
ARENA_ALIGNMENT = 16
_VALUES_PER_LINE = 24
_KERNEL_OF = {"Conv2D": "conv2d", "DepthwiseConv2D": "depthwise", "Dense": "dense", "AvgPool2D": "avgpool",
              "MaxPool2D": "maxpool", "GlobalAvgPool": "mean", "Add": "add", "ReLU": "rescale",
              "ReLU6": "rescale", "Softmax": "softmax", "Pad": "pad"}


@dataclass
class CSource:
    """A generated C model: the text of ``<name>.c`` and ``<name>.h`` and the figures behind them."""

    name: str
    source: str
    header: str
    arena_bytes: int
    const_bytes: int
    input_size: int
    output_size: int
    layers: list[str] = field(default_factory=list)

    def files(self) -> dict[str, str]:
        return {f"{self.name}.c": self.source, f"{self.name}.h": self.header}

    def to_json(self) -> dict:
        return {"name": self.name, "files": list(self.files()), "arena_bytes": self.arena_bytes,
                "const_bytes": self.const_bytes, "input_size": self.input_size, "output_size": self.output_size,
                "layers": len(self.layers)}


# --------------------------------------------------------------------------- public API

def to_c(graph: Graph, folder: str | os.PathLike | None = None, *, name: str | None = None,
         planner: str = "greedy-size") -> CSource:
    """Generate C99 source for an int8 ``graph`` and write ``<name>.c`` and ``<name>.h`` into ``folder``.

    Args:
        graph: an int8 graph with one input and one output.
        folder: where to write the two files (created if its parent exists),
            or None to only return them. Checked before anything is generated;
            each file is written atomically.
        name: the C prefix (default: the graph's name made a C identifier).
        planner: the memory planner laying out the arena (see
            :func:`tinyml_lab.memory.plan`).

    Raises:
        ExportError: a float graph (quantize first), several inputs or
            outputs, or an op without a C kernel.
        FileFormatError: ``folder`` cannot be written.
    """
    target = check_folder(folder, "C source") if folder is not None else None
    require_int8(graph, "C export")
    g = int8_core(graph)
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise ExportError(f"graph '{g.name}' has {len(g.inputs)} input(s) and {len(g.outputs)} output(s); the C "
                          f"export makes one function with one input and one output")
    if not g.nodes:
        raise ExportError(f"graph '{g.name}' has no nodes; there is nothing to generate")
    ident = c_identifier(name or g.name)
    out = _Generator(g, ident, planner).build()
    if target is not None:
        write_files(target, out.files(), "C source")
    return out


def c_identifier(name: str) -> str:
    """``name`` as a lower-case C identifier: other characters become ``_``, a leading digit gets ``m_``."""
    ident = re.sub(r"[^0-9a-zA-Z_]", "_", name).strip("_").lower() or "model"
    return f"m_{ident}" if ident[0].isdigit() else ident


def kernel_library(kernels: set[str]) -> str:
    """The sections of ``templates/kernels.c`` named in ``kernels`` (and the common helpers), in file order."""
    text = (TEMPLATES / "kernels.c").read_text()
    parts = re.split(r"^/\*@ (\w+)", text, flags=re.M)
    out = []
    for section, body in zip(parts[1::2], parts[2::2]):
        if section == "common" or section in kernels:
            out.append(f"/* {section}" + body.rstrip() + "\n")
    return "\n".join(out)


def c_array(ctype: str, name: str, values: np.ndarray, comment: str = "") -> str:
    """``static const <ctype> <name>[n] = {...};`` with the values of a flat array."""
    flat = np.asarray(values).ravel()
    items = [str(v) for v in flat.tolist()]
    if ctype == "int32_t":  # INT32_MIN is not a literal in C
        items = ["(-2147483647 - 1)" if v == "-2147483648" else v for v in items]
    lines = [", ".join(items[i: i + _VALUES_PER_LINE]) for i in range(0, len(items), _VALUES_PER_LINE)]
    body = ",\n    ".join(lines)
    note = f"  /* {comment} */" if comment else ""
    return f"static const {ctype} {name}[{max(flat.size, 1)}] = {{{note}\n    {body or '0'}\n}};\n"


# --------------------------------------------------------------------------- the generator

def _scale(t: Tensor) -> float:
    return float(t.quant.scale[0])


def _zp(t: Tensor) -> int:
    return int(t.quant.zero_point[0])


def _float_literal(v: float) -> str:
    return f"{float(np.float32(v)):.9g}f"


class _Generator:
    def __init__(self, graph: Graph, ident: str, planner: str):
        from ..memory import plan

        self.g = graph
        self.ident = ident
        self.plan = plan(graph, planner, alignment=ARENA_ALIGNMENT)
        self.arrays: list[str] = []
        self.const_bytes = 0
        self.calls: list[str] = []
        self.kernels: set[str] = set()
        self.layers: list[str] = []

    def array(self, ctype: str, name: str, values: np.ndarray, comment: str = "") -> str:
        flat = np.asarray(values).ravel()
        self.arrays.append(c_array(ctype, name, flat, comment))
        self.const_bytes += flat.size * {"int8_t": 1, "int32_t": 4}[ctype]
        return name

    def at(self, tensor: str) -> str:
        return f"a + {self.plan.offsets[tensor]}"

    # ------------------------------------------------------------------ layers
    def linear_params(self, node: Node, x: Tensor, wt: Tensor, out: Tensor, channels: int, tag: str):
        """Per-channel ``(m, shift)`` arrays of ``s_in s_w[c] / s_out`` and the clamp bounds."""
        s_w = np.broadcast_to(wt.quant.scale.astype(np.float64), (channels,))
        mult, shift = quantize_multipliers(np.float64(_scale(x)) * s_w / np.float64(_scale(out)))
        lo, hi = activation_range(node.attrs["activation"], _scale(out), _zp(out))
        return (self.array("int32_t", f"{tag}_m", mult), self.array("int8_t", f"{tag}_s", shift.astype(np.int8)),
                lo, hi)

    def weights(self, node: Node, tag: str) -> tuple[str, str, Tensor]:
        w = self.g.weights(node)
        wt = w["weight"]
        wname = self.array("int8_t", f"{tag}_w", wt.data, f"{wt.name} {'x'.join(map(str, wt.shape))}")
        bias = "NULL"
        if "bias" in w:
            bias = self.array("int32_t", f"{tag}_b", w["bias"].data, w["bias"].name)
        return wname, bias, wt

    def conv(self, node: Node, tag: str) -> str:
        x, y = self.g.tensors[node.inputs[0]], self.g.tensors[node.outputs[0]]
        wname, bias, wt = self.weights(node, tag)
        a = node.attrs
        kh, kw = wt.shape[1:3]
        (oh, ow), (pt, _, pl, _) = resolve_padding(x.shape[:2], (kh, kw), a["strides"], a["dilation"],
                                                   a["padding"], node.name)
        (sh, sw), (dh, dw) = a["strides"], a["dilation"]
        h, w, cin = x.shape
        if node.op == "DepthwiseConv2D":
            m, s, lo, hi = self.linear_params(node, x, wt, y, cin, tag)
            return (f"tml_depthwise({self.at(x.name)}, {h}, {w}, {cin}, {wname}, {bias}, {kh}, {kw}, {sh}, {sw}, "
                    f"{dh}, {dw}, {pt}, {pl}, {oh}, {ow}, {_zp(x)}, {m}, {s}, {_zp(y)}, {lo}, {hi}, "
                    f"{self.at(y.name)});")
        cout = wt.shape[0]
        m, s, lo, hi = self.linear_params(node, x, wt, y, cout, tag)
        return (f"tml_conv2d({self.at(x.name)}, {h}, {w}, {cin}, {wname}, {bias}, {cout}, {kh}, {kw}, {sh}, {sw}, "
                f"{dh}, {dw}, {pt}, {pl}, {oh}, {ow}, {_zp(x)}, {m}, {s}, {_zp(y)}, {lo}, {hi}, {self.at(y.name)});")

    def dense(self, node: Node, tag: str) -> str:
        x, y = self.g.tensors[node.inputs[0]], self.g.tensors[node.outputs[0]]
        wname, bias, wt = self.weights(node, tag)
        cout, cin = wt.shape
        m, s, lo, hi = self.linear_params(node, x, wt, y, cout, tag)
        return (f"tml_dense({self.at(x.name)}, {cin}, {wname}, {bias}, {cout}, {_zp(x)}, {m}, {s}, {_zp(y)}, "
                f"{lo}, {hi}, {self.at(y.name)});")

    def pool(self, node: Node, tag: str) -> str:
        x, y = self.g.tensors[node.inputs[0]], self.g.tensors[node.outputs[0]]
        if x.quant != y.quant:
            raise ExportError(f"{node.op} '{node.name}': int8 pooling keeps the scale and zero point")
        a = node.attrs
        if node.op == "AvgPool2D" and a["count_include_pad"]:
            raise ExportError(f"AvgPool2D '{node.name}': count_include_pad=True has no int8 kernel")
        (ph, pw), (sh, sw) = a["pool_size"], a["strides"]
        (oh, ow), (pt, _, pl, _) = resolve_padding(x.shape[:2], (ph, pw), (sh, sw), (1, 1), a["padding"], node.name)
        lo, hi = activation_range(a["activation"], _scale(y), _zp(y))
        fn = "tml_avgpool" if node.op == "AvgPool2D" else "tml_maxpool"
        h, w, c = x.shape
        return (f"{fn}({self.at(x.name)}, {h}, {w}, {c}, {ph}, {pw}, {sh}, {sw}, {pt}, {pl}, {oh}, {ow}, {lo}, {hi}, "
                f"{self.at(y.name)});")

    def mean(self, node: Node, tag: str) -> str:
        x, y = self.g.tensors[node.inputs[0]], self.g.tensors[node.outputs[0]]
        h, w, c = x.shape
        m, s = quantize_multiplier(np.float64(_scale(x)) / np.float64(_scale(y)))
        m, s = mean_multiplier(m, s, h * w)
        return f"tml_mean({self.at(x.name)}, {h * w}, {c}, {_zp(x)}, {m}, {s}, {_zp(y)}, {self.at(y.name)});"

    def add(self, node: Node, tag: str) -> str:
        a, b = (self.g.tensors[t] for t in node.inputs)
        y = self.g.tensors[node.outputs[0]]
        sa, sb, so = np.float64(_scale(a)), np.float64(_scale(b)), np.float64(_scale(y))
        twice_max = 2.0 * max(sa, sb)
        am, ash = quantize_multiplier(sa / twice_max)
        bm, bsh = quantize_multiplier(sb / twice_max)
        om, osh = quantize_multiplier(twice_max / ((1 << 20) * so))
        lo, hi = activation_range(node.attrs["activation"], _scale(y), _zp(y))
        return (f"tml_add({self.at(a.name)}, {self.at(b.name)}, {y.size}, {_zp(a)}, {am}, {ash}, {_zp(b)}, {bm}, "
                f"{bsh}, {_zp(y)}, {om}, {osh}, {lo}, {hi}, {self.at(y.name)});")

    def rescale(self, node: Node, tag: str) -> str:
        x, y = self.g.tensors[node.inputs[0]], self.g.tensors[node.outputs[0]]
        m, s = quantize_multiplier(np.float64(_scale(x)) / np.float64(_scale(y)))
        lo, hi = activation_range("relu6" if node.op == "ReLU6" else "relu", _scale(y), _zp(y))
        return (f"tml_rescale({self.at(x.name)}, {x.size}, {_zp(x)}, {m}, {s}, {_zp(y)}, {lo}, {hi}, "
                f"{self.at(y.name)});")

    def reshape(self, node: Node, tag: str) -> str:
        x, y = self.g.tensors[node.inputs[0]], self.g.tensors[node.outputs[0]]
        if x.quant != y.quant:
            raise ExportError(f"{node.op} '{node.name}': an int8 reshape keeps the scale and zero point")
        if self.plan.offsets[x.name] == self.plan.offsets[y.name]:
            return "/* same bytes, nothing to move */"
        return f"memcpy({self.at(y.name)}, {self.at(x.name)}, {x.size});"

    def softmax(self, node: Node, tag: str) -> str:
        x, y = self.g.tensors[node.inputs[0]], self.g.tensors[node.outputs[0]]
        if not (abs(_scale(y) - 1 / 256) < 1e-9 and _zp(y) == -128):
            raise ExportError(f"Softmax '{node.name}': an int8 softmax output has scale 1/256 and zero point -128")
        try:
            m, s, diff_min = softmax_params(_scale(x), node.attrs["beta"])
        except ValueError as exc:
            raise ExportError(f"Softmax '{node.name}': {exc}") from None
        depth = x.shape[-1]
        return (f"tml_softmax({self.at(x.name)}, {x.size // depth}, {depth}, {m}, {s}, {diff_min}, "
                f"{self.at(y.name)});")

    def pad(self, node: Node, tag: str) -> str:
        x, y = self.g.tensors[node.inputs[0]], self.g.tensors[node.outputs[0]]
        if x.quant != y.quant:
            raise ExportError(f"Pad '{node.name}': an int8 pad keeps the scale and zero point")
        t, b, left, r = node.attrs["pads"]
        h, w, c = x.shape
        return f"tml_pad({self.at(x.name)}, {h}, {w}, {c}, {t}, {b}, {left}, {r}, {_zp(y)}, {self.at(y.name)});"

    _OPS = {"Conv2D": conv, "DepthwiseConv2D": conv, "Dense": dense, "AvgPool2D": pool, "MaxPool2D": pool,
            "GlobalAvgPool": mean, "Add": add, "ReLU": rescale, "ReLU6": rescale, "Reshape": reshape,
            "Flatten": reshape, "Softmax": softmax, "Pad": pad}

    # ------------------------------------------------------------------ the files
    def build(self) -> CSource:
        g, p = self.g, self.ident
        for i, node in enumerate(g.nodes):
            try:
                handler = self._OPS[node.op]
            except KeyError:
                raise ExportError(f"{node.op} '{node.name}': the C export has no kernel for it; it knows "
                                  f"{', '.join(sorted(self._OPS))}") from None
            y = g.tensors[node.outputs[0]]
            call = handler(self, node, f"l{i:02d}")
            if node.op in _KERNEL_OF:
                self.kernels.add(_KERNEL_OF[node.op])
            shape = "x".join(map(str, y.shape))
            self.calls.append(f"    /* {i}: {node.op} '{_comment(node.name)}' -> {shape} at +"
                              f"{self.plan.offsets[y.name]} */\n    {call}")
            self.layers.append(f"{node.op} {node.name}")
        x, y = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
        arena = self.plan.arena_bytes
        header = self.header(x, y, arena)
        lines = [
            f"/* {p}.c: the int8 model '{_comment(g.name)}' as C99 code, generated by tinyml_lab {__version__}.",
            f" * {len(g.nodes)} layers, {self.const_bytes:,} bytes of constants, a {arena:,}-byte arena",
            f" * (planner '{self.plan.planner}'). Integer arithmetic only; no dynamic allocation. */",
            f'#include "{p}.h"',
            "",
            "#include <stdint.h>",
            "#include <string.h>",
            "",
            kernel_library(self.kernels),
            "/* ---- constants (flash) ---- */",
            "".join(self.arrays),
            "/* ---- the arena: every activation at its planned offset ---- */",
            f"static int32_t {p}_arena[({p.upper()}_ARENA_SIZE + 3) / 4];",
            "",
            f"int {p}_invoke(const int8_t *input, int8_t *output)",
            "{",
            f"    int8_t *const a = (int8_t *){p}_arena;",
            "    if (input == NULL || output == NULL) {",
            "        return -1;",
            "    }",
            f"    memcpy({self.at(x.name)}, input, {p.upper()}_INPUT_SIZE);",
            "\n".join(self.calls),
            f"    memcpy(output, {self.at(y.name)}, {p.upper()}_OUTPUT_SIZE);",
            "    return 0;",
            "}",
            "",
        ]
        return CSource(p, "\n".join(lines), header, arena, self.const_bytes, x.size, y.size, self.layers)

    def header(self, x: Tensor, y: Tensor, arena: int) -> str:
        p, P = self.ident, self.ident.upper()
        guard = f"{P}_H"
        return "\n".join([
            f"/* {p}.h: generated by tinyml_lab {__version__} from graph '{_comment(self.g.name)}'. */",
            f"#ifndef {guard}",
            f"#define {guard}",
            "",
            "#include <stdint.h>",
            "",
            "#ifdef __cplusplus",
            'extern "C" {',
            "#endif",
            "",
            f"/* input: {'x'.join(map(str, x.shape))} int8 codes (NHWC, no batch), real = scale (code - zero_point) */",
            f"#define {P}_INPUT_SIZE {x.size}",
            f"#define {P}_INPUT_SCALE {_float_literal(_scale(x))}",
            f"#define {P}_INPUT_ZERO_POINT {_zp(x)}",
            f"/* output: {'x'.join(map(str, y.shape))} int8 codes */",
            f"#define {P}_OUTPUT_SIZE {y.size}",
            f"#define {P}_OUTPUT_SCALE {_float_literal(_scale(y))}",
            f"#define {P}_OUTPUT_ZERO_POINT {_zp(y)}",
            "/* bytes of the static activation arena (planned offsets, 16-byte aligned) */",
            f"#define {P}_ARENA_SIZE {arena}",
            "",
            "/* Run the model on one input; returns 0, or -1 for a NULL pointer. Not reentrant (one arena). */",
            f"int {p}_invoke(const int8_t *input, int8_t *output);",
            "",
            "#ifdef __cplusplus",
            "}",
            "#endif",
            "",
            f"#endif /* {guard} */",
            "",
        ])


def _comment(text: str) -> str:
    """Text safe inside a C comment."""
    return text.replace("*/", "* /").replace("\n", " ")


__all__ = ["to_c", "CSource", "c_identifier", "kernel_library", "c_array"]
