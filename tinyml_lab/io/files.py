"""Writing models: check the destination before the work, then write atomically.

:func:`check_writable` fails fast (before calibration or training start)
when the output cannot be written; :func:`save_model` writes a ``.npz``
graph (:meth:`~tinyml_lab.graph.Graph.save`) or an ``.onnx`` model
(:func:`~tinyml_lab.export.onnx.to_onnx`), each through a temporary file in
the same folder moved into place with ``os.replace``, so a failure leaves no
partial file.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import FileFormatError
from ..files import check_file
from ..graph import Graph

FORMATS = (".npz", ".onnx")


def check_writable(path: str | os.PathLike) -> Path:
    """The path a model will be written to (``.npz`` added unless it ends in ``.npz`` or ``.onnx``),
    after checking that its folder exists and is writable and that it is not a folder."""
    target = Path(path)
    if target.is_dir():
        raise FileFormatError(f"cannot write the model to {target}: it is a folder; give a file name")
    if target.suffix not in FORMATS:
        target = target.with_name(target.name + ".npz")
    return check_file(target, "model")


def save_model(graph: Graph, path: str | os.PathLike) -> Path:
    """Write ``graph`` to ``path`` (``.npz`` graph file, or ``.onnx``), atomically; returns the path."""
    target = check_writable(path)
    if target.suffix == ".onnx":
        from ..export.onnx import to_onnx

        to_onnx(graph, target)
        return target
    try:
        return graph.save(target)
    except OSError as exc:
        raise FileFormatError(f"cannot write the model to {target}: {exc}") from None


__all__ = ["check_writable", "save_model", "FORMATS"]
