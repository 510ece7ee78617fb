"""Print how the kernels fare on the ONNX backend node test cases: per op, the cases found, passed,
failed and skipped (with the reasons), and the LSB differences of the integer outputs.

    python benchmarks/onnx_conformance.py          # table
    python benchmarks/onnx_conformance.py --json   # the same data as JSON
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import onnx_cases  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = onnx_cases.summary()
    result["seconds"] = round(time.perf_counter() - t0, 2)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(onnx_cases.format_table(result))
        print(f"\n({result['seconds']} s)")
    return 1 if result["failures"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
