"""Instructor lab notebooks: reading them, finding the exercises, checking the markers, stubbing solutions.

A lab is committed in its instructor form. A solution cell (metadata
``{"grading": {"solution": true, "exercise": "ex1"}}``) holds one or more regions between the lines
``### BEGIN SOLUTION`` and ``### END SOLUTION``; each region becomes ``# YOUR CODE HERE`` and
``raise NotImplementedError()`` at the marker's indentation in the student copy. The check cell
that follows (``{"grading": {"check": true, "exercise": "ex1", "points": 2}}``) may end with hidden
tests between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS``, which the student copy drops.

Every problem raises :class:`~tinyml_lab.errors.GradingError` naming the notebook, the cell index
(0-based, as nbformat counts cells) with the cell's first line, and the fix.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

from ..errors import GradingError

__all__ = ["SOLUTION_BEGIN", "SOLUTION_END", "HIDDEN_BEGIN", "HIDDEN_END", "STUB", "Exercise", "Lab",
           "read_notebook", "parse_notebook", "grading_metadata", "cell_where", "stub_solutions",
           "remove_hidden_tests", "find_exercises", "load_lab"]

SOLUTION_BEGIN = "### BEGIN SOLUTION"
SOLUTION_END = "### END SOLUTION"
HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
GRADING_KEYS = ("solution", "check", "exercise", "points")

_MARKERS = (SOLUTION_BEGIN, SOLUTION_END, HIDDEN_BEGIN, HIDDEN_END)
# A comment line that mentions a marker's words without being exactly the marker (a typo to report).
_NEAR_MARKER = re.compile(r"^\s*#.*\b(begin|end)\s+(solution|hidden\s+tests?)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Exercise:
    """One graded exercise: its id, its points, the indices of its solution cells and of its check cell."""

    id: str
    points: float
    solution_cells: tuple[int, ...]
    check_cell: int


@dataclass
class Lab:
    """An instructor notebook and its exercises, in notebook order."""

    name: str
    notebook: NotebookNode
    exercises: list[Exercise]
    path: Path | None = None

    @property
    def max_points(self) -> float:
        """The sum of the exercises' points."""
        return float(sum(e.points for e in self.exercises))

    def exercise(self, exercise_id: str) -> Exercise:
        """The exercise named ``exercise_id``."""
        for e in self.exercises:
            if e.id == exercise_id:
                return e
        raise GradingError(f"{self.name}: no exercise {exercise_id!r}; the exercises are "
                           f"{', '.join(e.id for e in self.exercises)}")


# --------------------------------------------------------------------------- reading

def parse_notebook(text: str | bytes, name: str, strict: bool = True) -> NotebookNode:
    """A notebook (nbformat 4) from its JSON text.

    Args:
        text: the file's content.
        name: how to name the notebook in errors (usually its path).
        strict: also require the notebook to pass nbformat's schema validation (instructor notebooks);
            when False, a notebook that has a list of readable cells is accepted (submissions).

    Raises:
        GradingError: not JSON, not a notebook, or (strict) not a valid one.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GradingError(f"{name} is not a valid notebook: not UTF-8 text ({exc.reason} at byte "
                               f"{exc.start})") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise GradingError(f"{name} is not a valid notebook: not valid JSON ({exc.msg} at line {exc.lineno}, "
                           f"column {exc.colno})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("cells", raw.get("worksheets")), list):
        raise GradingError(f"{name} is not a valid notebook: the JSON has no list of cells")
    if not isinstance(raw.get("nbformat"), int) or raw["nbformat"] < 3:
        raise GradingError(f"{name} is not a valid notebook: missing or unsupported \"nbformat\" version "
                           f"{raw.get('nbformat')!r}; save it with Jupyter (format 4)")
    try:
        nb = nbformat.convert(nbformat.reader.reads(text), 4)
    except Exception as exc:  # nbformat raises several types on malformed content
        raise GradingError(f"{name} is not a valid notebook: {_first_line(exc)}") from None
    if strict:
        try:
            nbformat.validate(nb)
        except nbformat.ValidationError as exc:
            raise GradingError(f"{name} is not a valid notebook: {_first_line(exc)}; open and save it with "
                               f"Jupyter, or fix the JSON") from None
    for i, cell in enumerate(nb.cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw") \
                or not isinstance(cell.get("source", ""), str):
            raise GradingError(f"{name} is not a valid notebook: cell {i} is not a code, markdown or raw cell "
                               f"with text")
        cell.setdefault("source", "")
        if not isinstance(cell.get("metadata", {}), dict):
            raise GradingError(f"{name} is not a valid notebook: cell {i} has metadata that is not a mapping")
        cell.setdefault("metadata", NotebookNode())
    return nb


def read_notebook(path: str | Path, strict: bool = True) -> NotebookNode:
    """Read the notebook at ``path`` (see :func:`parse_notebook`).

    Raises:
        GradingError: the file is missing, unreadable, or not a (valid) notebook.
    """
    p = Path(path)
    if not p.is_file():
        raise GradingError(f"notebook {p} does not exist" if not p.exists() else f"{p} is not a file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise GradingError(f"cannot read {p}: {exc.strerror}") from None
    return parse_notebook(data, str(p), strict=strict)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------- cells

def grading_metadata(cell: dict, where: str = "cell") -> dict[str, Any]:
    """The cell's ``{"grading": {...}}`` metadata ({} when there is none).

    Raises:
        GradingError: the grading metadata is not a mapping or has unknown keys.
    """
    meta = cell.get("metadata", {}).get("grading")
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise GradingError(f"{where}: the \"grading\" metadata must be a mapping such as "
                           f"{{\"check\": true, \"exercise\": \"ex1\", \"points\": 2}}, got {meta!r}")
    unknown = sorted(set(meta) - set(GRADING_KEYS))
    if unknown:
        raise GradingError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} in the \"grading\" metadata; "
                           f"the keys are {', '.join(map(repr, GRADING_KEYS))}")
    return dict(meta)


def cell_where(name: str, index: int, cell: dict | None = None) -> str:
    """``'labs/01.ipynb, cell 7 ("def scale(x):")'``: where a problem is, for error messages."""
    text = f"{name}, cell {index}"
    if cell is not None:
        first = next((ln.strip() for ln in str(cell.get("source", "")).splitlines() if ln.strip()), "")
        if first:
            text += f' ("{first[:40]}{"..." if len(first) > 40 else ""}")'
    return text


def _regions(source: str, begin: str, end: str, where: str) -> list[tuple[int, int, str]]:
    """The (begin line, end line, indentation) of each ``begin``/``end`` region of ``source``."""
    regions, start = [], None
    for n, line in enumerate(source.split("\n")):
        text = line.strip()
        if text == begin:
            if start is not None:
                raise GradingError(f"{where}: line {n + 1} opens {begin!r} inside the region opened at line "
                                   f"{start[0] + 1}; close that region with {end!r} first")
            start = (n, line[: len(line) - len(line.lstrip())])
        elif text == end:
            if start is None:
                raise GradingError(f"{where}: line {n + 1} has {end!r} without a {begin!r} before it; "
                                   f"add the {begin!r} line or remove this one")
            regions.append((start[0], n, start[1]))
            start = None
    if start is not None:
        raise GradingError(f"{where}: the {begin!r} at line {start[0] + 1} is never closed; add a line {end!r} "
                           f"after the code it hides")
    return regions


def _check_marker_spelling(source: str, where: str) -> None:
    for n, line in enumerate(source.split("\n")):
        if line.strip() not in _MARKERS and _NEAR_MARKER.match(line):
            raise GradingError(f"{where}: line {n + 1} ({line.strip()!r}) looks like a grading marker but is not "
                               f"one; write exactly one of {', '.join(map(repr, _MARKERS))}")


def _has(source: str, marker: str) -> bool:
    return any(line.strip() == marker for line in source.split("\n"))


def stub_solutions(source: str, where: str = "cell") -> str:
    """``source`` with each solution region replaced by ``# YOUR CODE HERE`` and ``raise NotImplementedError()``,
    indented like the region's ``### BEGIN SOLUTION`` line.

    Raises:
        GradingError: unbalanced or nested markers.
    """
    lines = source.split("\n")
    regions = _regions(source, SOLUTION_BEGIN, SOLUTION_END, where)
    for begin, end, indent in reversed(regions):
        lines[begin:end + 1] = [indent + STUB[0], indent + STUB[1]]
    return "\n".join(lines)


def remove_hidden_tests(source: str, where: str = "cell") -> str:
    """``source`` without its hidden-test regions (markers included); trailing blank lines dropped.

    Raises:
        GradingError: unbalanced or nested markers.
    """
    lines = source.split("\n")
    regions = _regions(source, HIDDEN_BEGIN, HIDDEN_END, where)
    if not regions:
        return source
    for begin, end, _ in reversed(regions):
        del lines[begin:end + 1]
    return "\n".join(lines).rstrip()


# --------------------------------------------------------------------------- exercises

def _points(value: Any, where: str, exercise: str) -> float:
    fix = f'put "points": N (a positive number) in its metadata {{"grading": {{"check": true, "exercise": ' \
          f'"{exercise}", "points": N}}}}'
    if value is None:
        raise GradingError(f"{where}: the check cell of {exercise} has no points; {fix}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise GradingError(f"{where}: the check cell of {exercise} has points {value!r}; {fix}")
    return float(value)


def find_exercises(nb: NotebookNode, name: str = "notebook") -> list[Exercise]:
    """The exercises of an instructor notebook, in the order of their check cells, after validating
    every marker and every grading metadata entry.

    Raises:
        GradingError: unbalanced markers, markers outside their cells, a check cell without points or
            exercise id, duplicate exercise ids, a solution without a check or a check without a solution.
    """
    solutions: dict[str, list[int]] = {}
    checks: dict[str, tuple[int, float]] = {}
    order: list[str] = []
    for i, cell in enumerate(nb.cells):
        where = cell_where(name, i, cell)
        source = cell.get("source", "")
        meta = grading_metadata(cell, where)
        _check_marker_spelling(source, where)
        has_solution = _has(source, SOLUTION_BEGIN) or _has(source, SOLUTION_END)
        has_hidden = _has(source, HIDDEN_BEGIN) or _has(source, HIDDEN_END)
        if cell.cell_type != "code":
            if meta:
                raise GradingError(f"{where}: a {cell.cell_type} cell has \"grading\" metadata; only code cells are "
                                   f"graded: remove it, or move it to the code cell it belongs to")
            if has_solution or has_hidden:
                raise GradingError(f"{where}: grading markers in a {cell.cell_type} cell; solutions and hidden "
                                   f"tests live in code cells")
            continue
        is_solution, is_check = bool(meta.get("solution")), bool(meta.get("check"))
        if meta and not (is_solution or is_check):
            raise GradingError(f"{where}: the \"grading\" metadata says neither \"solution\": true nor "
                               f"\"check\": true; set one of them")
        if is_solution and is_check:
            raise GradingError(f"{where}: a cell cannot be both a solution and a check; split it into a solution "
                               f"cell and the check cell after it")
        exercise = meta.get("exercise")
        if meta and (not isinstance(exercise, str) or not exercise.strip()):
            raise GradingError(f"{where}: the \"grading\" metadata has no exercise id; add \"exercise\": \"exN\"")
        if has_solution and not is_solution:
            raise GradingError(f"{where}: a solution region in a cell that is not a solution cell; give the cell "
                               f"the metadata {{\"grading\": {{\"solution\": true, \"exercise\": \"exN\"}}}} "
                               f"(or, for a check, move the solution into the solution cell before it)")
        if has_hidden and not is_check:
            raise GradingError(f"{where}: hidden tests in a cell that is not a check cell; move them to the end "
                               f"of the exercise's check cell")
        if is_solution:
            if "points" in meta:
                raise GradingError(f"{where}: points belong on the check cell of {exercise}, not on its solution "
                                   f"cell; move \"points\" there")
            if not _has(source, SOLUTION_BEGIN):
                raise GradingError(f"{where}: the solution cell of {exercise} has no {SOLUTION_BEGIN!r} region, so "
                                   f"the student copy would show the answer; wrap the solution in "
                                   f"{SOLUTION_BEGIN!r} ... {SOLUTION_END!r}")
            _regions(source, SOLUTION_BEGIN, SOLUTION_END, where)
            if exercise in checks:
                raise GradingError(f"{where}: the solution cell of {exercise} comes after its check (cell "
                                   f"{checks[exercise][0]}); put the check after the solution")
            if order and exercise not in solutions and order[-1] not in checks:
                raise GradingError(f"{where}: the solution of {exercise} starts before the check of {order[-1]}; "
                                   f"each exercise's check comes right after its solution cells")
            if exercise not in solutions:
                order.append(exercise)
            elif order[-1] != exercise:
                raise GradingError(f"{where}: a solution cell of {exercise} after the solution of {order[-1]}; "
                                   f"keep an exercise's solution cells together, before its check")
            solutions.setdefault(exercise, []).append(i)
        if is_check:
            if exercise in checks:
                raise GradingError(f"{where}: a second check cell for {exercise} (the first is cell "
                                   f"{checks[exercise][0]}); exercise ids are unique: give this one its own id "
                                   f"or merge the two checks")
            points = _points(meta.get("points"), where, exercise)
            if exercise not in solutions:
                raise GradingError(f"{where}: the check of {exercise} has no solution cell before it; add a cell "
                                   f"with {{\"grading\": {{\"solution\": true, \"exercise\": \"{exercise}\"}}}} and "
                                   f"a {SOLUTION_BEGIN!r} region, or fix the check's exercise id")
            if has_hidden:
                _regions(source, HIDDEN_BEGIN, HIDDEN_END, where)
            checks[exercise] = (i, points)
    for exercise, cells in solutions.items():
        if exercise not in checks:
            raise GradingError(f"{cell_where(name, cells[-1], nb.cells[cells[-1]])}: the solution of {exercise} "
                               f"has no check cell; add a code cell after it with "
                               f"{{\"grading\": {{\"check\": true, \"exercise\": \"{exercise}\", \"points\": N}}}}")
    return [Exercise(e, checks[e][1], tuple(solutions[e]), checks[e][0]) for e in order]


def load_lab(path: str | Path) -> Lab:
    """Read and validate an instructor notebook.

    Raises:
        GradingError: the notebook cannot be read or breaks the grading conventions.
    """
    p = Path(path)
    nb = read_notebook(p)
    exercises = find_exercises(nb, str(p))
    if not exercises:
        raise GradingError(f"{p} has no graded exercise: mark a solution cell and its check cell with "
                           f"\"grading\" metadata (see tinyml_lab.grading)")
    return Lab(p.stem, nb, exercises, p)
