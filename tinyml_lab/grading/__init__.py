"""Lab notebooks and their grading: the checks students see, release of student copies, the gradebook.

A lab is committed in its instructor form: solutions between ``### BEGIN SOLUTION`` and
``### END SOLUTION``, hidden tests between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``,
and each graded cell's points in its metadata (``{"grading": {...}}``).

Modules: ``checks`` (what a lab's check cells call), ``notebook`` (reading and validating an
instructor lab, stubbing solutions), ``assign`` (student copies), ``execute`` (cells in a fresh
kernel with time limits), ``grade`` (a class's gradebook and feedback), ``verify`` (a lab's checks
before release). Only ``checks`` is imported here, so a lab's ``import`` stays light.
"""

from .checks import CheckFailed, check_between, check_close, check_equal, check_in, check_shape, check_true

__all__ = ["CheckFailed", "check_between", "check_close", "check_equal", "check_in", "check_shape", "check_true"]
