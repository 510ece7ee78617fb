"""Checks that give a student feedback: what was expected, what came out.

Each check prints ``✓ <what>`` when it passes and raises :class:`CheckFailed` when
it does not. ``CheckFailed`` is an ``AssertionError``, so pytest and nbmake report
it as a failed test, but its message is a sentence, not a bare assertion.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

import numpy as np

__all__ = ["CheckFailed", "check_between", "check_close", "check_equal", "check_in", "check_shape", "check_true"]


class CheckFailed(AssertionError):
    """A lab check did not pass; the message says what was expected and what came out."""


def _show(value: Any, limit: int = 6) -> str:
    """A short, readable rendering of a value (arrays are summarised)."""
    if isinstance(value, np.ndarray):
        if value.size <= limit:
            return np.array2string(value, precision=6, separator=", ")
        flat = value.ravel()
        head = ", ".join(f"{v:.6g}" if isinstance(v, (float, np.floating)) else str(v) for v in flat[:limit])
        return f"array of shape {value.shape}, dtype {value.dtype}: [{head}, ...]"
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _passed(what: str) -> None:
    print(f"✓ {what}")


def _not_implemented(value: Any, what: str) -> None:
    if value is NotImplemented or value is Ellipsis:
        raise CheckFailed(f"{what}: nothing computed yet; fill in the exercise above and run its cell again")


def check_true(condition: Any, what: str, hint: str = "") -> None:
    """Pass when ``condition`` is true; ``hint`` tells the student where to look otherwise."""
    if not bool(condition):
        raise CheckFailed(f"{what}: not satisfied" + (f". {hint}" if hint else ""))
    _passed(what)


def check_equal(got: Any, expected: Any, what: str, hint: str = "") -> None:
    """Pass when ``got == expected`` (element-wise and same shape for arrays)."""
    _not_implemented(got, what)
    if isinstance(got, np.ndarray) or isinstance(expected, np.ndarray):
        g, e = np.asarray(got), np.asarray(expected)
        if g.shape != e.shape:
            raise CheckFailed(f"{what}: expected shape {e.shape}, got shape {g.shape}" + (f". {hint}" if hint else ""))
        bad = np.flatnonzero(g.ravel() != e.ravel())
        if bad.size:
            i = np.unravel_index(bad[0], e.shape)
            raise CheckFailed(f"{what}: {bad.size} of {e.size} elements differ; first at index {tuple(map(int, i))}: "
                              f"expected {_show(e[i])}, got {_show(g[i])}" + (f". {hint}" if hint else ""))
    elif got != expected:
        raise CheckFailed(f"{what}: expected {_show(expected)}, got {_show(got)}" + (f". {hint}" if hint else ""))
    _passed(what)


def check_close(got: Any, expected: Any, what: str, rtol: float = 1e-6, atol: float = 0.0, hint: str = "") -> None:
    """Pass when ``|got - expected| <= atol + rtol * |expected|`` element-wise."""
    _not_implemented(got, what)
    try:
        g = np.asarray(got, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what}: expected a number or an array of numbers, got {_show(got)}") from None
    e = np.asarray(expected, dtype=np.float64)
    if g.shape != e.shape:
        raise CheckFailed(f"{what}: expected shape {e.shape}, got shape {g.shape}" + (f". {hint}" if hint else ""))
    tol = atol + rtol * np.abs(e)
    bad = ~(np.abs(g - e) <= tol)
    if bad.any():
        if e.ndim == 0:
            raise CheckFailed(f"{what}: expected {_show(float(e))} (within {float(tol):.3g}), got {_show(float(g))}"
                              + (f". {hint}" if hint else ""))
        i = np.unravel_index(int(np.flatnonzero(bad.ravel())[0]), e.shape)
        raise CheckFailed(f"{what}: {int(bad.sum())} of {e.size} values are off; first at index "
                          f"{tuple(map(int, i))}: expected {_show(float(e[i]))}, got {_show(float(g[i]))}"
                          + (f". {hint}" if hint else ""))
    _passed(what)


def check_between(got: Any, lo: float, hi: float, what: str, hint: str = "") -> None:
    """Pass when ``lo <= got <= hi`` (a scalar)."""
    _not_implemented(got, what)
    try:
        v = float(got)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what}: expected a number, got {_show(got)}") from None
    if not (lo <= v <= hi):
        raise CheckFailed(f"{what}: expected a value between {lo:g} and {hi:g}, got {v:.6g}" + (f". {hint}" if hint else ""))
    _passed(what)


def check_shape(got: Any, shape: Sequence[int], what: str, hint: str = "") -> None:
    """Pass when ``got`` is an array of exactly ``shape``."""
    _not_implemented(got, what)
    actual = getattr(got, "shape", None)
    if actual is None:
        raise CheckFailed(f"{what}: expected an array of shape {tuple(shape)}, got {type(got).__name__}")
    if tuple(actual) != tuple(shape):
        raise CheckFailed(f"{what}: expected shape {tuple(shape)}, got {tuple(actual)}" + (f". {hint}" if hint else ""))
    _passed(what)


def check_in(got: Any, allowed: Container, what: str, hint: str = "") -> None:
    """Pass when ``got`` is one of ``allowed``."""
    _not_implemented(got, what)
    if got not in allowed:
        shown = sorted(allowed) if isinstance(allowed, (set, frozenset)) else allowed
        raise CheckFailed(f"{what}: expected one of {_show(shown)}, got {_show(got)}" + (f". {hint}" if hint else ""))
    _passed(what)
