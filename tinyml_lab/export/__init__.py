"""Deployment exports: ONNX, TFLite, C source and Arduino sketches.

* :func:`to_onnx` (:mod:`tinyml_lab.export.onnx`): float or int8 (QDQ) ONNX;
  needs the optional ``onnx`` package (``pip install tinyml-lab[onnx]``);
* :func:`to_tflite` (:mod:`tinyml_lab.export.tflite`): an int8 ``.tflite``
  flatbuffer, bit-exact in LiteRT's reference kernels;
* :func:`to_c` (:mod:`tinyml_lab.export.c`): self-contained C99 source, code
  generated per model, with a static planned arena;
* :func:`to_arduino` (:mod:`tinyml_lab.export.arduino`): an Arduino sketch
  running the ``.tflite`` model with TensorFlow Lite Micro.

Each exporter is imported on first use, so ``import tinyml_lab.export`` needs
none of the optional packages (``onnx``, ``flatbuffers``, ``tflite``). The
reverse direction, ``.tflite`` to the IR, is :func:`tinyml_lab.io.tflite.load_tflite`.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "to_onnx": "onnx",
    "to_tflite": "tflite",
    "to_c": "c",
    "CSource": "c",
    "to_arduino": "arduino",
    "ArduinoSketch": "arduino",
}

__all__ = [*_NAMES, "ExportError"]


def __getattr__(name: str) -> Any:
    if name == "ExportError":
        from ..errors import ExportError

        return ExportError
    if name in _NAMES:
        module = importlib.import_module(f"{__name__}.{_NAMES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'tinyml_lab.export' has no attribute {name!r}")
