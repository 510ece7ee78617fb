"""Grading a synthetic class of the example lab: solved, untouched, looping, tampered, deleted checks, crashes."""

from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import nbformat
import pytest

from tinyml_lab.cli import main
from tinyml_lab.errors import GradingError
from tinyml_lab.grading.assign import student_notebook
from tinyml_lab.grading.grade import (CHECKS_IMPORT, ExerciseResult, StudentResult, feedback_folder,
                                      feedback_markdown, find_lab, find_submissions, gradebook_csv, graded_notebook,
                                      prepare)
from tinyml_lab.grading.notebook import load_lab

EXAMPLE = Path(__file__).parent / "data" / "grading" / "00_example.ipynb"
# cells of the example lab: solutions 4, 7, 10; checks 5 (ex1, 2 points), 8 (ex2, 1), 11 (ex3, 3)


def copies():
    """The lab, its student copy and the student copy with every solution filled in."""
    lab = load_lab(EXAMPLE)
    stub = student_notebook(lab)
    full = copy.deepcopy(stub)
    for e in lab.exercises:
        for i in e.solution_cells:
            full.cells[i].source = lab.notebook.cells[i].source
    return lab, stub, full


def build_class(root: Path) -> None:
    lab, stub, full = copies()

    def save(nb, name):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)

    save(full, "alice.ipynb")                                # every exercise solved
    save(stub, "bob.ipynb")                                  # the copy as released
    loop = copy.deepcopy(full)
    loop.cells[7].source = "while True:\n    pass"           # ex2 never ends
    save(loop, "carol.ipynb")
    save(full, "dana/00_example.ipynb")                      # a folder per student
    tampered = copy.deepcopy(stub)
    tampered.cells[5].source = "pass"                        # check replaced
    tampered.cells[8].metadata = {}                          # check metadata removed
    tampered.cells[8].source = "pass"
    tampered.cells[11].metadata["grading"]["points"] = 100   # points raised, check faked
    tampered.cells[11].source = 'print("✓ done")'
    save(tampered, "eve.ipynb")
    deleted = copy.deepcopy(full)
    deleted.cells[7].source = stub.cells[7].source           # ex2 left undone ...
    del deleted.cells[11], deleted.cells[8]                  # ... and the checks of ex2 and ex3 deleted
    save(deleted, "frank.ipynb")
    crash = copy.deepcopy(full)
    crash.cells[10].source = "import os\nos._exit(1)"        # the kernel dies in ex3
    save(crash, "gina.ipynb")
    (root / "hugo.ipynb").write_text('{"cells": [ oops')      # corrupt file
    (root / "ivan").mkdir()                                  # nothing handed in
    (root / "notes.txt").write_text("not a submission")


def test_a_synthetic_class(tmp_path, capsys):
    build_class(tmp_path / "subs")
    out = tmp_path / "grades.csv"
    code = main(["grade", str(tmp_path / "subs"), "--lab", "0", "--labs", str(EXAMPLE.parent), "-j", "2",
                 "--timeout", "3", "--total-timeout", "40", "-o", str(out), "--quiet", "--json"])
    printed, err = capsys.readouterr()
    assert code == 0, err
    rows = list(csv.reader(out.read_text().splitlines()))
    assert rows == [
        ["student", "ex1", "ex2", "ex3", "total", "max", "status"],
        ["alice", "2", "1", "3", "6", "6", "ok"],
        ["bob", "0", "0", "0", "0", "6", "ok"],
        ["carol", "2", "0", "3", "5", "6", "timeout"],
        ["dana", "2", "1", "3", "6", "6", "ok"],
        ["eve", "0", "0", "0", "0", "6", "ok"],
        ["frank", "2", "0", "3", "5", "6", "ok"],
        ["gina", "2", "1", "0", "3", "6", "kernel died"],
        ["hugo", "0", "0", "0", "0", "6", "invalid"],
        ["ivan", "0", "0", "0", "0", "6", "missing"],
    ]
    report = json.loads(printed)
    assert report["max"] == 6.0 and report["gradebook"] == str(out)
    by = {s["student"]: s for s in report["students"]}
    assert by["carol"]["exercises"][1]["status"] == "timeout"
    assert by["carol"]["exercises"][1]["message"].startswith("timed out after 3 s")
    assert by["gina"]["exercises"][2]["message"] == "not run: the kernel died in an earlier cell"
    assert by["hugo"]["reason"].startswith("hugo.ipynb is not a valid notebook: not valid JSON")
    assert by["ivan"]["reason"] == "no notebook in ivan/"
    assert by["bob"]["exercises"][0]["message"].startswith("NotImplementedError")
    assert by["alice"]["exercises"][0]["message"] == "✓ scale([1, 2], 3)\n✓ scale by a negative factor"
    folder = tmp_path / "grades_feedback"
    assert sorted(p.name for p in folder.iterdir()) == [f"{s}.md" for s in sorted(by)]
    eve = (folder / "eve.md").read_text()
    assert "**0 / 6 points** (status: ok)" in eve and "✓ done" not in eve
    assert "The check cell of ex2 was missing or its metadata changed" in eve
    frank = (folder / "frank.md").read_text()
    assert "the original check was run after your solution cell" in frank and "## ex3: 3 / 3" in frank
    assert "timed out after 3 s" in (folder / "carol.md").read_text()
    assert "not valid JSON" in (folder / "hugo.md").read_text()


def test_the_table_summary(tmp_path, capsys):
    _, stub, full = copies()
    (tmp_path / "subs").mkdir()
    nbformat.write(full, tmp_path / "subs" / "a.ipynb")
    assert main(["grade", str(tmp_path / "subs"), "--lab", "00_example", "--labs", str(EXAMPLE.parent),
                 "-o", str(tmp_path / "g.csv"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "ex1 (2)" in out and "1 student(s) graded on 00_example" in out and "mean 6.00 / 6 points" in out


# --------------------------------------------------------------------------- the graded notebook

def test_every_check_is_the_instructors_and_a_missing_one_comes_back():
    lab, stub, full = copies()
    nb = copy.deepcopy(full)
    nb.cells[5].source = "pass"
    del nb.cells[8]
    graded, checks, notes = graded_notebook(lab, nb)
    assert sorted(checks.values()) == ["ex1", "ex2", "ex3"]
    inst = {e.id: lab.notebook.cells[e.check_cell].source for e in lab.exercises}
    for i, exercise in checks.items():
        assert graded.cells[i].source == CHECKS_IMPORT + inst[exercise]  # hidden tests included
    assert checks[5] == "ex1" and checks[8] == "ex2"  # ex2's check right after its solution cell
    assert graded.cells[7].source == full.cells[7].source
    assert notes == ["The check cell of ex2 was missing or its metadata changed; the original check was run after "
                     "your solution cell."]


def test_a_check_comes_back_where_the_lab_has_it_when_the_solution_lost_its_metadata_too():
    lab, stub, _ = copies()
    nb = copy.deepcopy(stub)
    nb.cells[10].metadata = {}
    del nb.cells[11]
    graded, checks, notes = graded_notebook(lab, nb)
    assert checks[11] == "ex3" and "where it stands in the lab" in notes[0]
    nb = copy.deepcopy(stub)
    for c in nb.cells:
        c.pop("id", None)
        c.metadata = {}
    graded, checks, notes = graded_notebook(lab, nb)  # nothing to anchor on: checks go last, in order
    assert [checks[i] for i in sorted(checks)] == ["ex1", "ex2", "ex3"] and min(checks) == len(stub.cells)


def test_check_cells_of_unknown_or_repeated_exercises_are_dropped():
    lab, stub, _ = copies()
    nb = copy.deepcopy(stub)
    nb.cells.append(copy.deepcopy(nb.cells[5]))
    nb.cells[8].metadata["grading"]["exercise"] = "ex9"
    graded, checks, notes = graded_notebook(lab, nb)
    assert sorted(checks.values()) == ["ex1", "ex2", "ex3"] and len(graded.cells) == len(stub.cells)
    assert any("'ex9'" in n for n in notes) and any("already run" in n for n in notes)


# --------------------------------------------------------------------------- finding labs and submissions

def test_find_lab_and_submissions(tmp_path):
    assert find_lab(EXAMPLE.parent, "0") == EXAMPLE
    assert find_lab(EXAMPLE.parent, "00") == EXAMPLE
    assert find_lab("nowhere", str(EXAMPLE)) == EXAMPLE
    with pytest.raises(GradingError, match="no lab in .* match --lab 3; the labs are: 00_example.ipynb"):
        find_lab(EXAMPLE.parent, "3")
    with pytest.raises(GradingError, match="does not exist"):
        find_lab(tmp_path / "none", "3")
    root = tmp_path / "subs"
    for name in ("a.ipynb", "b/submission/lab-00.ipynb", "b/other.ipynb", "c/x.ipynb", "c/y.ipynb", "d.ipynb",
                 "d/00_example.ipynb", "e/.ipynb_checkpoints/00_example-checkpoint.ipynb", "e/mine.ipynb"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("{}")
    subs = {s.student: s for s in find_submissions(root, EXAMPLE)}
    assert subs["a"].path == root / "a.ipynb"
    assert subs["b"].path == root / "b" / "submission" / "lab-00.ipynb"
    assert subs["c"].path is None and "several notebooks in c/" in subs["c"].problem
    assert subs["d"].path is None and "two submissions" in subs["d"].problem
    assert subs["e"].path == root / "e" / "mine.ipynb"
    (tmp_path / "empty").mkdir()
    with pytest.raises(GradingError, match="no submission in"):
        find_submissions(tmp_path / "empty", EXAMPLE)


def test_bad_input_exits_2(tmp_path, capsys):
    (tmp_path / "subs").mkdir()
    (tmp_path / "subs" / "a.ipynb").write_text("{}")
    args = ["grade", str(tmp_path / "subs"), "--lab", "0", "--labs", str(EXAMPLE.parent)]
    assert main(args + ["-o", str(tmp_path / "subs" / "g.csv")]) == 2
    assert "outside the submissions folder" in capsys.readouterr().err
    assert main(args + ["-o", str(tmp_path / "no" / "g.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(args + ["-o", str(tmp_path / "g.csv"), "-j", "0"]) == 2
    assert "-j must be" in capsys.readouterr().err
    with pytest.raises(GradingError, match="outside the submissions folder"):
        prepare(tmp_path / "subs", "0", EXAMPLE.parent, tmp_path / "subs" / "deeper.csv")


def test_gradebook_and_feedback_text():
    lab = load_lab(EXAMPLE)
    r = StudentResult("zoe", "ok", exercises=[ExerciseResult("ex1", 2.0, 2.0, "passed", "✓ a"),
                                              ExerciseResult("ex2", 0.0, 1.0, "failed", "CheckFailed: x: expected 9"),
                                              ExerciseResult("ex3", 1.5, 3.0, "passed", "```evil```")])
    assert gradebook_csv(lab, [r]) == "student,ex1,ex2,ex3,total,max,status\nzoe,2,0,1.5,3.5,6,ok\n"
    text = feedback_markdown(lab, r)
    assert "**3.5 / 6 points** (status: ok)" in text and "| ex2 | 0 / 1 | failed |" in text
    assert "CheckFailed: x: expected 9" in text and "```evil```" not in text
    assert feedback_folder("out/grades.csv") == Path("out/grades_feedback")


def test_a_failure_inside_the_grading_process_becomes_that_students_error():
    import multiprocessing

    from tinyml_lab.grading.grade import _worker

    parent, child = multiprocessing.Pipe(duplex=False)
    base = StudentResult("zoe", "ok").to_json()
    _worker(child, {"result": base, "cells": [("x = 1", None)], "points": {}, "cell_timeout": -1.0,
                    "total_timeout": 10.0})
    kind, result = parent.recv()
    assert kind == "result" and result["status"] == "error" and result["student"] == "zoe"
    assert result["reason"].startswith("grading failed: GradingError: the cell timeout must be a positive number")
