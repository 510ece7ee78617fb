"""Conformance with a suite written elsewhere: the ONNX backend node test cases of the installed
``onnx`` package, run on both backends (NumPy reference and numba) after layout conversion.

Discovery, conversion and the comparison criteria are in :mod:`onnx_cases`. Each case is one
test whose id is the case directory name; a case the kernels cannot express is skipped with
the precise reason (``pytest -rs`` lists them). ``python benchmarks/onnx_conformance.py``
prints the per-op table.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import onnx_cases as oc  # noqa: E402

CASES = oc.discover()

# Measured with onnx 1.23.2: 181 cases discovered, 112 applicable. The floors leave room for a
# different onnx release to add or drop a few cases, but not for a broken discovery or converter.
MIN_DISCOVERED = 150
MIN_APPLICABLE = 100
MIN_APPLICABLE_PER_OP = {
    "Conv": 20, "Gemm": 10, "MatMul": 5, "Relu": 1, "Clip": 10, "AveragePool": 10, "MaxPool": 10,
    "GlobalAveragePool": 2, "Add": 3, "Softmax": 7, "QuantizeLinear": 2, "DequantizeLinear": 2,
    # every QLinearConv / QLinearMatMul case of the suite has asymmetric weights (skipped)
    "QLinearConv": 0, "QLinearMatMul": 0,
}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_node_case(case: oc.Case, record_property) -> None:
    try:
        prep = oc.prepare(case)
    except oc.NotApplicable as exc:
        pytest.skip(f"{case.name} ({case.op}): {exc}")
    failures = []
    for backend in oc.BACKENDS:
        outs = prep.run(backend)
        assert len(outs) == len(prep.expected)
        for i, (got, want) in enumerate(zip(outs, prep.expected)):
            c = oc.compare(got, want, prep.lsb)
            if prep.lsb is not None:
                record_property(f"{backend}_output{i}_max_lsb", c.max_lsb)
                record_property(f"{backend}_output{i}_n_diff", c.n_diff)
            if not c.ok:
                failures.append(f"{backend} output {i}: {c.message}")
    assert not failures, f"{case.name} ({case.op}{', ' + prep.note if prep.note else ''}): " + "; ".join(failures)


def _applicable() -> dict[str, int]:
    counts = {op: 0 for op in oc.OPS}
    for case in CASES:
        try:
            oc.prepare(case)
        except oc.NotApplicable:
            continue
        counts[case.op] += 1
    return counts


def test_discovery_finds_every_op() -> None:
    """Every requested op type has cases, found by parsing the models."""
    assert len(CASES) >= MIN_DISCOVERED, f"only {len(CASES)} cases discovered"
    found = {c.op for c in CASES}
    assert found == set(oc.OPS), f"no case for {sorted(set(oc.OPS) - found)}"
    assert len({c.name for c in CASES}) == len(CASES)


def test_applicable_cases_above_floor() -> None:
    """A silently broken discovery or converter would turn cases into skips; the floors catch it."""
    counts = _applicable()
    total = sum(counts.values())
    assert total >= MIN_APPLICABLE, f"only {total} applicable cases: {counts}"
    low = {op: n for op, n in counts.items() if n < MIN_APPLICABLE_PER_OP[op]}
    assert not low, f"ops below their floor of applicable cases: {low}"


def test_summary_table_formats() -> None:
    small = [c for c in CASES if c.op in ("Relu", "QLinearConv")]
    s = oc.summary(small)
    text = oc.format_table(s)
    assert "Relu" in text and "QLinearConv" in text and "skip reasons" in text
    relu = next(r for r in s["rows"] if r["op"] == "Relu")
    assert relu["passed"] == relu["cases"] > 0
