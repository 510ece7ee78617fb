"""Model files in and out: ONNX import (:mod:`tinyml_lab.io.onnx`) and atomic model writing
(:mod:`tinyml_lab.io.files`).

>>> from tinyml_lab.io import load_onnx     # doctest: +SKIP
>>> g = load_onnx("model.onnx")              # doctest: +SKIP
"""

from .files import check_writable, save_model


def load_onnx(source, name=None):
    """:func:`tinyml_lab.io.onnx.load_onnx` (imported on first use: it needs the ``onnx`` package)."""
    from .onnx import load_onnx as _load

    return _load(source, name)


__all__ = ["load_onnx", "check_writable", "save_model"]
