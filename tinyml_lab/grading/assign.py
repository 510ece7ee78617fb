"""Student copies of instructor labs: solutions stubbed, hidden tests removed, outputs cleared.

The grading metadata stays on every solution and check cell, so the grader can find each
exercise's check in a submission (and put the instructor's back when it was edited or deleted).

    tinyml-lab assign labs/ -o release/
"""

from __future__ import annotations

import copy
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from ..errors import GradingError
from ..files import check_folder, write_files
from .notebook import (HIDDEN_BEGIN, SOLUTION_BEGIN, Lab, cell_where, grading_metadata, load_lab,
                       remove_hidden_tests, stub_solutions)

__all__ = ["HIDDEN_ONLY_NOTE", "student_notebook", "find_labs", "release"]

# What a check cell says when all its tests are hidden.
HIDDEN_ONLY_NOTE = "# The tests of this exercise run when the lab is graded."


def student_notebook(lab: Lab) -> NotebookNode:
    """The student copy of ``lab``.

    Solution regions become ``# YOUR CODE HERE`` / ``raise NotImplementedError()``, hidden tests are
    removed from check cells, every code cell loses its outputs and execution count, and solution cells
    lose the ``hide-input`` tag (and a hidden-source flag), so the student sees where to write.
    """
    nb = copy.deepcopy(lab.notebook)
    nb.metadata.pop("widgets", None)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = cell_where(lab.name, i, cell)
        meta = grading_metadata(cell, where)
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
        if meta.get("solution"):
            cell.source = stub_solutions(cell.source, where)
            tags = [t for t in cell.metadata.get("tags", []) if t != "hide-input"]
            if tags:
                cell.metadata["tags"] = tags
            else:
                cell.metadata.pop("tags", None)
            jupyter = cell.metadata.get("jupyter")
            if isinstance(jupyter, dict):
                jupyter.pop("source_hidden", None)
                if not jupyter:
                    cell.metadata.pop("jupyter")
        elif meta.get("check"):
            visible = remove_hidden_tests(cell.source, where)
            cell.source = visible if visible.strip() else HIDDEN_ONLY_NOTE
    return nb


def find_labs(source: str | Path) -> list[Path]:
    """The instructor notebooks ``source`` names: the notebook itself, or the ``*.ipynb`` of a folder.

    Raises:
        GradingError: ``source`` is missing, not a notebook, or a folder without notebooks.
    """
    p = Path(source)
    if p.is_dir():
        labs = sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
        if not labs:
            raise GradingError(f"no notebooks (*.ipynb) in {p}; give the folder of the instructor labs")
        return labs
    if not p.exists():
        raise GradingError(f"{p} does not exist; give an instructor notebook or the folder of the labs")
    if p.suffix != ".ipynb":
        raise GradingError(f"{p} is not a notebook (.ipynb); give an instructor notebook or the folder of the labs")
    return [p]


def _is_instructor_copy(path: Path) -> bool:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return False
    return SOLUTION_BEGIN in text or HIDDEN_BEGIN in text


def release(source: str | Path, out: str | Path) -> list[dict]:
    """Write the student copy of every lab in ``source`` into the folder ``out``.

    All labs are validated and converted before anything is written; each file is written atomically.
    Existing student copies in ``out`` are replaced; an instructor notebook never is.

    Returns:
        One row per lab: ``lab``, ``exercises``, ``points``, ``solution_cells``, ``hidden_checks``, ``file``.

    Raises:
        GradingError: a lab breaks the conventions, or ``out`` is the instructor folder or holds an
            instructor notebook of the same name.
        FileFormatError: ``out`` cannot be written.
    """
    labs_paths = find_labs(source)
    src = Path(source)
    folder = src if src.is_dir() else src.parent
    target = Path(out)
    check_folder(target, "student notebooks")
    if target.resolve() == folder.resolve():
        raise GradingError(f"refusing to write the student notebooks into {folder}, the folder of the instructor "
                           f"notebooks: they would replace the solutions; give another folder with -o")
    sources = {p.resolve() for p in labs_paths}
    files, rows = {}, []
    for path in labs_paths:
        lab = load_lab(path)
        dest = target / path.name
        if dest.exists() and (dest.resolve() in sources or _is_instructor_copy(dest)):
            raise GradingError(f"refusing to overwrite {dest}: it is an instructor notebook (it holds solution or "
                               f"hidden-test markers); give another folder with -o")
        nb = student_notebook(lab)
        files[path.name] = nbformat.writes(nb) + "\n"
        rows.append({"lab": lab.name, "exercises": len(lab.exercises), "points": lab.max_points,
                     "solution_cells": sum(len(e.solution_cells) for e in lab.exercises),
                     "hidden_checks": sum(HIDDEN_BEGIN in lab.notebook.cells[e.check_cell].source
                                          for e in lab.exercises),
                     "file": str(dest)})
    write_files(target, files, "student notebooks")
    return rows
