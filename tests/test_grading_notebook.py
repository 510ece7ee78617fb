"""Instructor notebooks: markers, exercises and the errors that name the cell and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tinyml_lab.errors import GradingError, TinyMLError
from tinyml_lab.grading.notebook import (STUB, find_exercises, load_lab, parse_notebook, read_notebook,
                                         remove_hidden_tests, stub_solutions)

EXAMPLE = Path(__file__).parent / "data" / "grading" / "00_example.ipynb"


def solution(source: str, exercise: str = "ex1", **extra) -> nbformat.NotebookNode:
    return new_code_cell(source, metadata={"grading": {"solution": True, "exercise": exercise, **extra},
                                           "tags": ["hide-input"]})


def check(source: str, exercise: str = "ex1", points=1, **extra) -> nbformat.NotebookNode:
    meta = {"check": True, "exercise": exercise, **extra}
    if points is not None:
        meta["points"] = points
    return new_code_cell(source, metadata={"grading": meta})


SOL = "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"


def exercises_of(*cells):
    return find_exercises(new_notebook(cells=list(cells)), "lab.ipynb")


# --------------------------------------------------------------------------- stubbing

def test_stub_keeps_the_marker_indentation_inside_a_function_and_a_loop():
    source = ("def f(xs):\n    total = 0\n    for x in xs:\n        ### BEGIN SOLUTION\n        total += x\n"
              "        ### END SOLUTION\n    return total")
    assert stub_solutions(source) == ("def f(xs):\n    total = 0\n    for x in xs:\n        # YOUR CODE HERE\n"
                                      "        raise NotImplementedError()\n    return total")
    namespace: dict = {}
    exec(stub_solutions(source), namespace)
    assert namespace["f"]([]) == 0  # the loop body is the stub: an empty input never reaches it
    with pytest.raises(NotImplementedError):
        namespace["f"]([1])


def test_stub_replaces_every_region_and_keeps_the_code_between_them():
    source = ("a = 1\n### BEGIN SOLUTION\nb = 2\nc = 3\n### END SOLUTION\nprint(a)\n  ### BEGIN SOLUTION\n"
              "d = 4\n  ### END SOLUTION")
    assert stub_solutions(source).split("\n") == ["a = 1", STUB[0], STUB[1], "print(a)", "  " + STUB[0],
                                                  "  " + STUB[1]]


def test_stub_leaves_a_source_without_regions_alone():
    assert stub_solutions("x = 1\n# a comment") == "x = 1\n# a comment"


def test_hidden_tests_are_removed_with_their_markers():
    source = ("check_true(f(1) == 2, 'f(1)')\n### BEGIN HIDDEN TESTS\ncheck_true(f(2) == 4, 'f(2)')\n"
              "### END HIDDEN TESTS\n")
    assert remove_hidden_tests(source) == "check_true(f(1) == 2, 'f(1)')"
    indented = ("for k in range(2):\n    check_true(k < 2, 'k')\n    ### BEGIN HIDDEN TESTS\n    secret()\n"
                "    ### END HIDDEN TESTS")
    assert remove_hidden_tests(indented) == "for k in range(2):\n    check_true(k < 2, 'k')"


@pytest.mark.parametrize("source, words", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without a '### BEGIN SOLUTION'"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n### END SOLUTION",
     "inside the region opened at line 1"),
])
def test_unbalanced_solution_markers(source, words):
    with pytest.raises(GradingError, match=words):
        stub_solutions(source, "lab.ipynb, cell 3")


# --------------------------------------------------------------------------- exercises

def test_the_example_lab_has_three_exercises_in_order():
    lab = load_lab(EXAMPLE)
    assert [(e.id, e.points, e.solution_cells, e.check_cell) for e in lab.exercises] == [
        ("ex1", 2.0, (4,), 5), ("ex2", 1.0, (7,), 8), ("ex3", 3.0, (10,), 11)]
    assert lab.max_points == 6.0 and lab.name == "00_example"
    assert lab.exercise("ex2").points == 1.0
    with pytest.raises(GradingError, match="no exercise 'ex9'"):
        lab.exercise("ex9")


def test_an_exercise_may_have_several_solution_cells():
    found = exercises_of(new_markdown_cell("# t"), solution(SOL), new_code_cell("y = 2"), solution(SOL),
                         check("assert x == 1", points=2.5))
    assert [(e.id, e.points, e.solution_cells, e.check_cell) for e in found] == [("ex1", 2.5, (1, 3), 4)]


def _error(*cells) -> str:
    with pytest.raises(GradingError) as info:
        exercises_of(*cells)
    assert isinstance(info.value, TinyMLError)
    return str(info.value)


def test_a_check_without_points_names_the_cell_and_the_fix():
    msg = _error(solution(SOL), check("check_true(x == 1, 'x')", points=None))
    assert msg.startswith("lab.ipynb, cell 1 (\"check_true(x == 1, 'x')\")")
    assert "has no points" in msg and '"points": N' in msg


@pytest.mark.parametrize("points", [0, -1, "2", True, float("nan")])
def test_points_must_be_a_positive_number(points):
    assert "has points" in _error(solution(SOL), check("pass", points=points))


def test_duplicate_exercise_ids():
    msg = _error(solution(SOL), check("pass"), check("pass"))
    assert "cell 2" in msg and "a second check cell for ex1 (the first is cell 1)" in msg and "unique" in msg


def test_a_solution_without_a_check():
    msg = _error(solution(SOL), check("pass"), solution(SOL, "ex2"))
    assert "cell 2" in msg and "the solution of ex2 has no check cell" in msg and '"check": true' in msg


def test_a_check_without_a_solution():
    assert "has no solution cell before it" in _error(check("pass"))
    assert "has no solution cell before it" in _error(solution(SOL), check("pass", "ex2"))


def test_a_solution_after_its_check_or_interleaved_with_another_exercise():
    assert "comes after its check" in _error(solution(SOL), check("pass"), solution(SOL))
    assert "starts before the check of ex1" in _error(solution(SOL), solution(SOL, "ex2"), check("pass"),
                                                      check("pass", "ex2"))


def test_unbalanced_markers_in_a_solution_cell_name_the_cell():
    msg = _error(new_code_cell("import numpy"), solution("def f():\n    ### BEGIN SOLUTION\n    return 1"),
                 check("pass"))
    assert msg.startswith('lab.ipynb, cell 1 ("def f():")') and "never closed" in msg


def test_markers_out_of_place():
    assert "not a solution cell" in _error(new_code_cell(SOL))
    assert "not a check cell" in _error(solution(SOL + "\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS"),
                                        check("pass"))
    assert "not a check cell" in _error(new_code_cell("### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS"))
    assert "markdown cell" in _error(new_markdown_cell("### BEGIN SOLUTION\ntext\n### END SOLUTION"))
    assert "has no '### BEGIN SOLUTION' region" in _error(solution("x = 1"), check("pass"))
    assert "never closed" in _error(solution(SOL), check("pass\n### BEGIN HIDDEN TESTS"))


def test_a_misspelled_marker_is_reported():
    msg = _error(solution("## BEGIN SOLUTION\nx = 1\n### END SOLUTION"), check("pass"))
    assert "looks like a grading marker" in msg and "'## BEGIN SOLUTION'" in msg


def test_bad_grading_metadata():
    assert "unknown key(s) 'point'" in _error(solution(SOL), check("pass", point=2))
    assert "both a solution and a check" in _error(new_code_cell(SOL, metadata={"grading": {
        "solution": True, "check": True, "exercise": "ex1", "points": 1}}))
    assert "neither" in _error(new_code_cell("x", metadata={"grading": {"exercise": "ex1"}}))
    assert "no exercise id" in _error(new_code_cell(SOL, metadata={"grading": {"solution": True}}))
    assert "must be a mapping" in _error(new_code_cell("x", metadata={"grading": True}))
    assert "only code cells are graded" in _error(new_markdown_cell("x", metadata={"grading": {"check": True}}))
    assert "points belong on the check cell" in _error(solution(SOL, points=2), check("pass"))


# --------------------------------------------------------------------------- reading

def test_reading_bad_files(tmp_path):
    with pytest.raises(GradingError, match="does not exist"):
        read_notebook(tmp_path / "none.ipynb")
    (tmp_path / "bad.ipynb").write_text('{"cells": [')
    with pytest.raises(GradingError, match=r"bad.ipynb is not a valid notebook: not valid JSON \(.* line 1"):
        read_notebook(tmp_path / "bad.ipynb")
    with pytest.raises(GradingError, match="no list of cells"):
        parse_notebook(json.dumps([1, 2]), "list.ipynb")
    with pytest.raises(GradingError, match="nbformat"):
        parse_notebook(json.dumps({"cells": []}), "old.ipynb")
    with pytest.raises(GradingError, match="not UTF-8"):
        parse_notebook(b"\xff\xfe{", "binary.ipynb")
    with pytest.raises(GradingError, match="cell 0 is not a code, markdown or raw cell"):
        parse_notebook(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                                   "cells": [{"cell_type": "picture", "source": "x", "metadata": {}}]}),
                       "odd.ipynb", strict=False)


def test_load_lab_without_exercises(tmp_path):
    path = tmp_path / "plain.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), path)
    with pytest.raises(GradingError, match="has no graded exercise"):
        load_lab(path)
