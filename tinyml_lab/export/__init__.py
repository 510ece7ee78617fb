"""Deployment exports: ONNX (:mod:`tinyml_lab.export.onnx`).

The ONNX exporter needs the optional ``onnx`` package (``pip install
tinyml-lab[onnx]``); it is imported on first use, so ``import
tinyml_lab.export`` works without it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["to_onnx", "ExportError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import onnx as _onnx

        return getattr(_onnx, name)
    raise AttributeError(f"module 'tinyml_lab.export' has no attribute {name!r}")
