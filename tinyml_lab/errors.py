"""The one family of errors the engine raises on bad input.

Every error names what was wrong and, where there is one, the fix. Each class
also derives from the built-in exception a Python user would expect
(``ValueError``, ``TypeError``, ``KeyError``), so ``except ValueError`` keeps
working in code that does not know about this package.
"""

from __future__ import annotations


class TinyMLError(Exception):
    """Base class of every error raised by ``tinyml_lab`` on bad input."""


class ShapeError(TinyMLError, ValueError):
    """A tensor has the wrong shape or rank for where it is used."""


class DTypeError(TinyMLError, TypeError):
    """A tensor has the wrong dtype for where it is used."""


class AttributeValueError(TinyMLError, ValueError):
    """An op attribute (stride, padding, pool size, ...) is invalid."""


class GraphError(TinyMLError, ValueError):
    """The graph is malformed: a dangling tensor, a cycle, mismatched channels."""


class UnknownOpError(TinyMLError, KeyError):
    """An op name the engine does not implement."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the sentence readable
        return str(self.args[0]) if self.args else ""


class UnknownModelError(TinyMLError, KeyError):
    """A model name that is not in the zoo and not a file."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class FileFormatError(TinyMLError, ValueError):
    """A saved file is corrupt, truncated, of another format or of another version."""


class QuantizationError(TinyMLError, ValueError):
    """Quantization parameters are missing or inconsistent, or a float-only op met int8 data."""


class DataError(TinyMLError, ValueError):
    """Input data is empty, non-finite or otherwise unusable."""


class ExportError(TinyMLError, ValueError):
    """The graph holds something an exporter cannot express, or an export option is invalid."""


class ModelImportError(TinyMLError, ValueError):
    """A model file holds what the importer cannot express: unsupported ops, dynamic shapes, missing
    external data. ``problems`` lists every offending node (or tensor) with the reason."""

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None):
        super().__init__(message)
        self.problems = list(problems or [])


class GradingError(TinyMLError, ValueError):
    """A lab notebook breaks the grading conventions (markers, grading metadata), or a submission
    cannot be read as a notebook."""
