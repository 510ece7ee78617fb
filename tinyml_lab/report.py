"""Plain-text tables and byte sizes for the CLI and the labs."""

from __future__ import annotations

from typing import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """Aligned columns; ``align`` holds one ``l`` or ``r`` per column (default: left)."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    align = align or "l" * len(header)

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r, widths, align)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule] + [line(r) for r in cells[1:]])


def format_bytes(n: float) -> str:
    """``1536 -> '1.5 KB'`` (1 KB = 1024 bytes, as MCU datasheets count)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def print_json(obj: object) -> None:
    """Print ``obj`` as indented JSON (NumPy scalars and arrays converted), for ``--json``."""
    import json

    import numpy as np

    def default(o: object) -> object:
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, tuple):
            return list(o)
        raise TypeError(f"cannot write {type(o).__name__} as JSON")

    print(json.dumps(obj, indent=2, default=default))
