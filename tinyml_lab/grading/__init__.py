"""Lab notebooks and their grading: the checks students see, release of student copies, the gradebook.

A lab is committed in its instructor form: solutions between ``### BEGIN SOLUTION`` and
``### END SOLUTION``, hidden tests between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``,
and each graded cell's points in its metadata (``{"grading": {...}}``).
"""

from .checks import CheckFailed, check_between, check_close, check_equal, check_in, check_shape, check_true

__all__ = ["CheckFailed", "check_between", "check_close", "check_equal", "check_in", "check_shape", "check_true"]
