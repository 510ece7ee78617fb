"""Export an int8 graph as an Arduino sketch that runs it with TensorFlow Lite Micro.

The sketch folder holds

* ``model_data.cpp`` / ``model_data.h``: the ``.tflite`` flatbuffer
  (:func:`tinyml_lab.export.tflite.to_tflite`, with the planner's offsets as
  ``OfflineMemoryAllocation`` metadata) as a 16-byte aligned C array in the
  style of ``xxd -i``;
* ``<folder>.ino`` (Arduino wants the sketch named after its folder), from
  ``templates/arduino_sketch.ino.tmpl``: a ``MicroMutableOpResolver`` with
  exactly the operators the model uses, a static tensor arena, ``setup()``
  that allocates and prints the arena bytes used, and ``loop()`` that runs
  the model and prints the arg-max and the time.

The arena size written into the sketch is :func:`tflm_arena_estimate`: the
planned activation bytes plus an allowance for what TFLM keeps in the arena
beside the activations. It is an estimate (it depends on the TFLM version and
the kernels it is built with); the sketch prints the real figure.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .. import __version__
from ..errors import ExportError
from ..graph import Graph
from .c import TEMPLATES, c_identifier
from ..files import check_folder, write_files

_LINE = 12  # bytes per line, as xxd -i writes them
_RESOLVER = {"CONV_2D": "AddConv2D", "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
             "FULLY_CONNECTED": "AddFullyConnected", "AVERAGE_POOL_2D": "AddAveragePool2D",
             "MAX_POOL_2D": "AddMaxPool2D", "MEAN": "AddMean", "ADD": "AddAdd", "RELU": "AddRelu",
             "RELU6": "AddRelu6", "RESHAPE": "AddReshape", "SOFTMAX": "AddSoftmax", "PAD": "AddPad",
             "QUANTIZE": "AddQuantize", "DEQUANTIZE": "AddDequantize"}
# TFLM's arena beside the activations (measured on its reference kernels, rounded up): per tensor
# a TfLiteEvalTensor and allocation bookkeeping, per node its structures and op data, per output
# channel of a conv/depthwise/dense layer a multiplier and a shift, plus a fixed part
_PER_TENSOR, _PER_NODE, _PER_CHANNEL, _FIXED = 32, 96, 8, 2048


@dataclass
class ArduinoSketch:
    """The files of a sketch and its figures."""

    name: str
    files: dict[str, str]
    model_bytes: int
    plan_bytes: int
    arena_bytes: int
    operators: list[str]

    def to_json(self) -> dict:
        return {"sketch": self.name, "files": list(self.files), "model_bytes": self.model_bytes,
                "planned_activation_bytes": self.plan_bytes, "tensor_arena_bytes": self.arena_bytes,
                "operators": self.operators}


def to_arduino(graph: Graph, folder: str | os.PathLike, *, float_io: bool = False,
               planner: str = "greedy-size") -> ArduinoSketch:
    """Write an Arduino sketch folder running ``graph`` with TensorFlow Lite Micro.

    Args:
        graph: an int8 graph.
        folder: the sketch folder (created if its parent exists); the sketch is
            named after it. Checked before anything is built.
        float_io: the model takes and returns float32 (QUANTIZE/DEQUANTIZE at
            the edges) instead of int8 codes.
        planner: the planner whose offsets go into the model.

    Raises:
        ExportError: a float graph or an op TFLite cannot carry.
        FileFormatError: ``folder`` cannot be written.
    """
    from ..memory import plan
    from .tflite import BUFFER_ALIGNMENT, operator_names, prepare_graph, to_tflite

    target = check_folder(folder, "Arduino sketch")
    sketch = c_identifier(target.name)
    g = prepare_graph(graph, float_io)
    p = plan(g, planner, alignment=BUFFER_ALIGNMENT)
    data = to_tflite(graph, float_io=float_io, offline_plan=p)
    ops = operator_names(g)
    arena = tflm_arena_estimate(g, p.arena_bytes)
    model_array = f"g_{sketch}_model"
    files = {
        f"{sketch}.ino": _sketch(g, sketch, model_array, ops, p.arena_bytes, arena, float_io),
        "model_data.h": _model_header(model_array, len(data)),
        "model_data.cpp": _model_source(model_array, data, g.name),
    }
    write_files(target, files, "Arduino sketch")
    return ArduinoSketch(sketch, files, len(data), p.arena_bytes, arena, ops)


def tflm_arena_estimate(graph: Graph, planned_bytes: int) -> int:
    """Bytes to give TFLM's tensor arena: the planned activations plus TFLM's own structures,
    ``32 n_tensors + 96 n_nodes + 8 channels(conv, depthwise, dense) + 2048``, rounded up to 1 KB."""
    channels = 0
    for node in graph.nodes:
        if node.op in ("Conv2D", "DepthwiseConv2D", "Dense"):
            channels += graph.tensors[node.outputs[0]].shape[-1]
    extra = _PER_TENSOR * len(graph.tensors) + _PER_NODE * len(graph.nodes) + _PER_CHANNEL * channels + _FIXED
    return -(-(planned_bytes + extra) // 1024) * 1024


def xxd_array(data: bytes, name: str) -> str:
    """``data`` as ``alignas(16) const unsigned char name[] = {0x.., ...};``, twelve bytes a line."""
    lines = []
    for i in range(0, len(data), _LINE):
        lines.append("  " + ", ".join(f"0x{b:02x}" for b in data[i: i + _LINE]))
    return (f"alignas(16) const unsigned char {name}[] = {{\n" + ",\n".join(lines) + "\n};\n"
            f"const unsigned int {name}_len = {len(data)};\n")


def _model_header(array: str, size: int) -> str:
    return "\n".join([
        f"// model_data.h: the TFLite model as a C array ({size:,} bytes), generated by tinyml_lab {__version__}.",
        "#ifndef MODEL_DATA_H",
        "#define MODEL_DATA_H",
        "",
        f"extern const unsigned char {array}[];",
        f"extern const unsigned int {array}_len;",
        "",
        "#endif  // MODEL_DATA_H",
        "",
    ])


def _model_source(array: str, data: bytes, graph_name: str) -> str:
    return (f"// model_data.cpp: '{graph_name}' as a .tflite flatbuffer, generated by tinyml_lab {__version__}.\n"
            f'#include "model_data.h"\n\n' + xxd_array(data, array))


def _sketch(g: Graph, sketch: str, array: str, ops: list[str], plan_bytes: int, arena: int,
            float_io: bool) -> str:
    missing = [op for op in ops if op not in _RESOLVER]
    if missing:
        raise ExportError(f"no TFLM resolver call known for {', '.join(missing)}")
    x, y = g.tensors[g.inputs[0]], g.tensors[g.outputs[0]]
    if float_io:
        desc = f"{'x'.join(map(str, x.shape))} float32 values"
        in_field, fill, out_field = "data.f", "0.0f", "data.f"
    else:
        q = x.quant
        desc = (f"{'x'.join(map(str, x.shape))} int8 codes, code = round(value / {float(q.scale[0]):.6g}) + "
                f"{int(q.zero_point[0])}")
        in_field, fill, out_field = "data.int8", str(int(q.zero_point[0])), "data.int8"
    text = (TEMPLATES / "arduino_sketch.ino.tmpl").read_text()
    values = {
        "@SKETCH@": sketch, "@GRAPH@": g.name, "@VERSION@": __version__, "@PLAN_BYTES@": f"{plan_bytes:,}",
        "@ARENA_BYTES@": str(arena), "@MODEL_ARRAY@": array, "@N_OPS@": str(len(ops)),
        "@ADD_OPS@": "\n".join(f"  resolver.{_RESOLVER[op]}();" for op in ops),
        "@INPUT_DESC@": desc, "@INPUT_FIELD@": in_field, "@INPUT_FILL@": fill,
        "@OUTPUT_SIZE@": str(y.size), "@OUTPUT_FIELD@": out_field,
    }
    for key, value in values.items():
        text = text.replace(key, value)
    return text


__all__ = ["to_arduino", "ArduinoSketch", "tflm_arena_estimate", "xxd_array"]
