"""Checks of a lab before it is released: conventions, the student copy runs, no check is vacuous.

Each function returns a list of problems (sentences naming the cell and the fix); an empty list
means the lab passes.

- :func:`convention_problems`: the layout the book expects (title and objectives, the Colab install
  cell, 3-6 exercises ``ex1, ex2, ...``, solution cells folded, committed without outputs).
- :func:`student_copy_problems`: the student copy, run in a fresh kernel, works up to its first
  exercise and fails there. The rule: every code cell before the first solution cell succeeds; the
  first failing cell lies between that solution cell and the check of its exercise (both included);
  and its error is the stub's ``NotImplementedError``, or, in the check cell itself, a ``CheckFailed``
  or ``NameError`` (a check that reads what the solution should have defined). A check that passes on
  the stub, or any other first error (a timeout, a dead kernel, a ``TypeError``...), is a problem.
- :func:`vacuous_check_problems`: in one kernel, the instructor notebook runs cell by cell; at each
  exercise, its cells run first in student form (solutions stubbed, the check without hidden tests),
  where the check must fail, then in instructor form (solutions, full check), where every cell,
  the check included, must pass.
"""

from __future__ import annotations

from pathlib import Path

from .assign import student_notebook
from .execute import CellResult, KernelSession
from .notebook import Lab, cell_where, remove_hidden_tests, stub_solutions

__all__ = ["INSTALL_TAG", "convention_problems", "student_copy_problems", "vacuous_check_problems"]

INSTALL_TAG = "colab-install"


def _tags(cell: dict) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def convention_problems(lab: Lab, repository_url: str) -> list[str]:
    """Where ``lab`` departs from the lab conventions (``repository_url``: the book's repository)."""
    nb, name, problems = lab.notebook, lab.name, []
    n = len(lab.exercises)
    if not 3 <= n <= 6:
        problems.append(f"{name}: {n} exercise(s); a lab has 3 to 6")
    ids = [e.id for e in lab.exercises]
    if ids != [f"ex{k}" for k in range(1, n + 1)]:
        problems.append(f"{name}: exercise ids {ids}; number them ex1, ex2, ... in notebook order")
    cells = nb.cells
    first = cells[0] if cells else None
    if first is None or first.cell_type != "markdown" or not first.source.lstrip().startswith("# "):
        problems.append(f"{name}: the first cell must be markdown starting with the title ('# ...')")
    else:
        text = first.source.lower()
        for word, what in (("objective", "the objectives"), ("chapter", "the chapter the lab belongs to")):
            if word not in text:
                problems.append(f"{cell_where(name, 0, first)}: the first cell does not state {what}")
    install = [i for i, c in enumerate(cells) if INSTALL_TAG in _tags(c)]
    if install != [1]:
        problems.append(f"{name}: the Colab install cell (tag {INSTALL_TAG!r}) must be cell 1 and the only one so "
                        f"tagged; found the tag on cell(s) {install}")
    if len(cells) > 1 and cells[1].cell_type == "code":
        source = cells[1].source
        for needed in ('"google.colab" in sys.modules', "%pip install", f"git+{repository_url}"):
            if needed not in source:
                problems.append(f"{cell_where(name, 1, cells[1])}: the install cell does not contain {needed!r}")
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"{name}: kernelspec {kernel!r}; use python3")
    for i, cell in enumerate(cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs") or cell.get("execution_count") is not None:
            problems.append(f"{cell_where(name, i, cell)}: committed with outputs or an execution count; strip "
                            f"them before committing")
    for e in lab.exercises:
        for i in e.solution_cells:
            if "hide-input" not in _tags(cells[i]):
                problems.append(f"{cell_where(name, i, cells[i])}: the solution cell of {e.id} is not tagged "
                                f"'hide-input' (the book folds solutions)")
    return problems


def _folder(lab: Lab) -> Path | None:
    return lab.path.parent if lab.path is not None else None


def student_copy_problems(lab: Lab, cell_timeout: float = 120.0, total_timeout: float = 600.0) -> list[str]:
    """Run the student copy of ``lab`` in a fresh kernel up to its first failure (see the module's rule)."""
    nb = student_notebook(lab)
    first = lab.exercises[0]
    start, check = first.solution_cells[0], first.check_cell
    with KernelSession(cwd=_folder(lab), cell_timeout=cell_timeout, total_timeout=total_timeout) as kernel:
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            result = kernel.run(cell.source)
            where = cell_where(f"{lab.name} (student copy)", i, cell)
            if result.ok:
                if i == check:
                    return [f"{where}: the check of {first.id} passes on the stub; a check must fail until the "
                            f"exercise is done (call the student's function or read what the solution defines)"]
                continue
            if i < start:
                return [f"{where}: fails before the first exercise: {result.message}"]
            if result.ename == "NotImplementedError" or (i == check and result.ename in ("CheckFailed", "NameError")):
                return []
            return [f"{where}: the first failure of the student copy must be the stub's NotImplementedError (or a "
                    f"CheckFailed/NameError in the check of {first.id}); got {result.message}"]
    return [f"{lab.name} (student copy): no cell failed; the stub of {first.id} is never reached"]


def vacuous_check_problems(lab: Lab, cell_timeout: float = 120.0, total_timeout: float = 900.0) -> list[str]:
    """Run ``lab`` in one kernel; at each exercise its check must fail on the stub and pass on the solution."""
    cells, name = lab.notebook.cells, lab.name
    starts = {e.solution_cells[0]: e for e in lab.exercises}
    problems: list[str] = []

    def failed(i: int, result: CellResult, form: str) -> str:
        return f"{cell_where(name, i, cells[i])}: fails{form}: {result.message}"

    with KernelSession(cwd=_folder(lab), cell_timeout=cell_timeout, total_timeout=total_timeout) as kernel:
        i = 0
        while i < len(cells):
            if cells[i].cell_type != "code":
                i += 1
                continue
            e = starts.get(i)
            if e is None:
                result = kernel.run(cells[i].source)
                if not result.ok:
                    return problems + [failed(i, result, "")]
                i += 1
                continue
            span = range(i, e.check_cell + 1)
            for j in span:  # student form
                source = cells[j].source if cells[j].cell_type == "code" else ""
                if j in e.solution_cells:
                    source = stub_solutions(source)
                elif j == e.check_cell:
                    source = remove_hidden_tests(source)
                result = kernel.run(source)
            if result.ok:
                problems.append(f"{cell_where(name, e.check_cell, cells[e.check_cell])}: the check of {e.id} passes "
                                f"on the stub; it must fail until the exercise is done")
            elif result.status in ("timeout", "dead", "not run"):
                return problems + [f"{cell_where(name, e.check_cell, cells[e.check_cell])}: the check of {e.id} on "
                                   f"the stub: {result.message}"]
            for j in span:  # instructor form
                if cells[j].cell_type != "code":
                    continue
                result = kernel.run(cells[j].source)
                if not result.ok:
                    return problems + [failed(j, result, f" with the solution of {e.id} in place")]
            i = e.check_cell + 1
    return problems
