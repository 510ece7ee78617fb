"""Student copies (``assign``) and the checks of a lab before release."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_output

from tinyml_lab.cli import main
from tinyml_lab.errors import GradingError
from tinyml_lab.grading.assign import HIDDEN_ONLY_NOTE, release, student_notebook
from tinyml_lab.grading.notebook import load_lab, read_notebook
from tinyml_lab.grading.verify import convention_problems, student_copy_problems, vacuous_check_problems

EXAMPLE = Path(__file__).parent / "data" / "grading" / "00_example.ipynb"
URL = "https://github.com/tinyml-lab/tinyml-lab"
SOLUTION_CODE = ("np.asarray(x, dtype=float) * factor", "int(values.max())", "int(values.min())", "min(c, limit)")
HIDDEN_CODE = ("scale by a negative factor", "a count equal to the limit", "HIDDEN TESTS")


def executed_copy(folder: Path) -> Path:
    """The example lab with outputs and execution counts, as if saved after a run."""
    nb = nbformat.read(EXAMPLE, as_version=4)
    for k, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = k + 1
        cell.outputs = [new_output("stream", name="stdout", text="✓ something\n")]
    folder.mkdir(exist_ok=True)
    path = folder / EXAMPLE.name
    nbformat.write(nb, path)
    return path


def test_student_copy_has_no_solution_no_hidden_test_and_no_output(tmp_path):
    labs = tmp_path / "labs"
    executed_copy(labs)
    rows = release(labs, tmp_path / "release")
    assert rows == [{"lab": "00_example", "exercises": 3, "points": 6.0, "solution_cells": 3, "hidden_checks": 2,
                     "file": str(tmp_path / "release" / "00_example.ipynb")}]
    text = (tmp_path / "release" / "00_example.ipynb").read_text()
    for secret in SOLUTION_CODE + HIDDEN_CODE + ("BEGIN SOLUTION", "✓ something"):
        assert secret not in text
    nb = read_notebook(tmp_path / "release" / "00_example.ipynb")  # strict: a valid notebook
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    lab = load_lab(EXAMPLE)
    for e in lab.exercises:  # grading metadata kept, cells in place, hide-input gone from solutions
        sol, chk = nb.cells[e.solution_cells[0]], nb.cells[e.check_cell]
        assert sol.metadata["grading"] == {"solution": True, "exercise": e.id} and "tags" not in sol.metadata
        assert chk.metadata["grading"] == {"check": True, "exercise": e.id, "points": e.points}
        assert "raise NotImplementedError()" in sol.source and "check_" in chk.source
    assert nb.cells[10].source.split("\n")[3:5] == ["        # YOUR CODE HERE", "        raise NotImplementedError()"]
    assert nb.cells[7].source.count("# YOUR CODE HERE") == 2
    assert nb.cells[1].metadata["tags"] == ["colab-install"]


def test_a_check_made_only_of_hidden_tests_says_so():
    lab = load_lab(EXAMPLE)
    lab.notebook.cells[8].source = "### BEGIN HIDDEN TESTS\ncheck_equal(largest, 9, 'largest')\n### END HIDDEN TESTS"
    assert student_notebook(lab).cells[8].source == HIDDEN_ONLY_NOTE


def test_release_refuses_to_overwrite_the_instructor_notebooks(tmp_path):
    labs = tmp_path / "labs"
    executed_copy(labs)
    before = (labs / EXAMPLE.name).read_bytes()
    with pytest.raises(GradingError, match="refusing to write the student notebooks into"):
        release(labs, labs)
    with pytest.raises(GradingError, match="refusing to write"):
        release(labs / EXAMPLE.name, labs)
    other = tmp_path / "other"
    executed_copy(other)
    with pytest.raises(GradingError, match=r"refusing to overwrite .*00_example.ipynb: it is an instructor notebook"):
        release(labs, other)
    assert (labs / EXAMPLE.name).read_bytes() == before
    # a student copy from an earlier release is replaced
    release(labs / EXAMPLE.name, tmp_path / "release")
    release(labs / EXAMPLE.name, tmp_path / "release")
    assert "BEGIN SOLUTION" not in (tmp_path / "release" / EXAMPLE.name).read_text()


def test_release_writes_nothing_when_one_lab_is_broken(tmp_path):
    labs = tmp_path / "labs"
    executed_copy(labs)
    nb = nbformat.read(EXAMPLE, as_version=4)
    del nb.cells[5].metadata["grading"]["points"]
    nbformat.write(nb, labs / "01_broken.ipynb")
    with pytest.raises(GradingError, match=r"01_broken.ipynb, cell 5 .*has no points"):
        release(labs, tmp_path / "release")
    assert not (tmp_path / "release").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(GradingError, match="no notebooks"):
        release(tmp_path / "empty", tmp_path / "r")


def test_assign_verb(capsys, tmp_path):
    assert main(["assign", str(EXAMPLE.parent), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "00_example" in out and "1 student notebook(s) written" in out
    assert main(["assign", str(EXAMPLE), "-o", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["hidden_checks"] == 2
    assert main(["assign", str(EXAMPLE.parent), "-o", str(EXAMPLE.parent)]) == 2
    assert "refusing" in capsys.readouterr().err
    assert main(["assign", str(tmp_path / "missing.ipynb"), "-o", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err


# --------------------------------------------------------------------------- checks before release

def test_the_example_lab_follows_the_conventions():
    lab = load_lab(EXAMPLE)
    assert convention_problems(lab, URL) == []
    broken = copy.deepcopy(lab)
    broken.notebook.cells[0].source = "Lab without a title"
    broken.notebook.cells[1].metadata["tags"] = []
    broken.notebook.cells[4].metadata["tags"] = []
    broken.notebook.cells[5].execution_count = 3
    problems = "\n".join(convention_problems(broken, "https://example.org/fork"))
    for words in ("first cell must be markdown", "must be cell 1", "git+https://example.org/fork",
                  "not tagged 'hide-input'", "committed with outputs"):
        assert words in problems


def test_the_example_lab_runs_to_its_first_stub_and_no_check_is_vacuous():
    lab = load_lab(EXAMPLE)
    assert student_copy_problems(lab, cell_timeout=30, total_timeout=60) == []
    assert vacuous_check_problems(lab, cell_timeout=30, total_timeout=60) == []


def test_a_vacuous_check_and_a_broken_set_up_cell_are_found():
    lab = load_lab(EXAMPLE)
    lab.notebook.cells[5].source = 'check_true(True, "always")'
    assert "the check of ex1 passes on the stub" in student_copy_problems(lab, 30, 60)[0]
    problems = vacuous_check_problems(lab, 30, 60)
    assert len(problems) == 1 and "cell 5" in problems[0] and "the check of ex1 passes on the stub" in problems[0]
    lab = load_lab(EXAMPLE)
    lab.notebook.cells[2].source += "\nimport a_module_that_does_not_exist"
    problems = student_copy_problems(lab, 30, 60)
    assert len(problems) == 1 and "fails before the first exercise: ModuleNotFoundError" in problems[0]
