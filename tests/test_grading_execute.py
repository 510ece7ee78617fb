"""Cells in a fresh kernel: this Python, one thread per runtime, limits per cell and per run, a dying kernel."""

from __future__ import annotations

import sys

import pytest

from tinyml_lab.errors import GradingError
from tinyml_lab.grading.execute import KernelSession


def test_limits_errors_and_the_kernels_python(tmp_path):
    with KernelSession(cwd=tmp_path, cell_timeout=1, total_timeout=5) as kernel:
        r = kernel.run("import os, sys\nprint(sys.executable, os.environ['OPENBLAS_NUM_THREADS'], "
                       "os.environ['OMP_NUM_THREADS'], os.getcwd())")
        assert r.ok and r.stdout.split() == [sys.executable, "1", "1", str(tmp_path)]
        r = kernel.run("x = 41\n1 / 0")
        assert (r.status, r.ename, r.message) == ("error", "ZeroDivisionError", "ZeroDivisionError: division by zero")
        r = kernel.run("while True:\n    pass")  # interrupted after its second; the kernel goes on
        assert (r.status, r.message) == ("timeout", "timed out after 1 s")
        assert kernel.run("print(x + 1)").stdout == "42\n"
        r = kernel.run("sum(range(10**15))")  # C code ignores the interrupt: the run's limit kills the kernel
        assert r.status == "timeout" and "limit of 5 s for the whole run" in r.message
        r = kernel.run("print(x)")
        assert r.status == "not run" and "limit of 5 s" in r.message
    assert list(tmp_path.iterdir()) == []  # the kernel's log is kept elsewhere


def test_a_dying_kernel_ends_the_run():
    with KernelSession(cell_timeout=10) as kernel:
        assert kernel.run("import os\nos._exit(3)").status == "dead"
        r = kernel.run("print(1)")
        assert r.status == "not run" and r.message == "not run: the kernel died in an earlier cell"


def test_limits_must_be_positive():
    with pytest.raises(GradingError, match="cell timeout must be a positive"):
        KernelSession(cell_timeout=0)
    with pytest.raises(GradingError, match="total timeout must be a positive"):
        KernelSession(total_timeout=-1)
