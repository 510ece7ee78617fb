"""Fixtures shared by the test files."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(scope="module")
def one_blas_thread():
    """Small scikit-learn fits and matrices run faster, and steadily on a shared machine, on one BLAS thread.

    A test module opts in with ``pytestmark = pytest.mark.usefixtures("one_blas_thread")``.
    """
    with threadpool_limits(1):
        yield
