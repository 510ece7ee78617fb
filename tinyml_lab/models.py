"""Open a model by name: a zoo name, a saved graph (``.npz``), an ONNX file (``.onnx``) or a
TFLite int8 flatbuffer (``.tflite``)."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from .errors import UnknownModelError
from .graph import Graph


def load_model(spec: str | os.PathLike, seed: int = 0) -> Graph:
    """``spec`` is a path to a saved graph (``.npz``), an ONNX model (``.onnx``, float or QDQ int8;
    see :mod:`tinyml_lab.io.onnx`), a TFLite int8 model (``.tflite``, see :mod:`tinyml_lab.io.tflite`)
    or the name of a zoo model."""
    from . import zoo

    path = Path(spec)
    if path.suffix.lower() == ".onnx":
        from .io.onnx import load_onnx

        return load_onnx(path)
    if path.suffix.lower() == ".tflite":
        from .io.tflite import load_tflite

        return load_tflite(path)
    if path.suffix == ".npz" or path.exists():
        return Graph.load(path)
    name = str(spec)
    if name in zoo.names():
        return zoo.get(name, seed=seed)
    close = difflib.get_close_matches(name, zoo.names(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UnknownModelError(
        f"{name!r} is neither a model file nor a zoo model{hint} Zoo models: {', '.join(zoo.names())}"
    )
