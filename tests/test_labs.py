"""The lab notebooks of ``labs/``: conventions, the student copy, and checks that are not vacuous.

For each ``labs/*.ipynb`` (whatever is there; none gives an empty parametrization):

- structure: valid grading metadata, 3-6 exercises ex1..exN with points, the Colab install cell
  (tag ``colab-install``, second cell) installing from the repository of ``_config.yml``, committed
  without outputs or execution counts, a first markdown cell with the title, objectives and chapter;
- the student copy, in a fresh kernel, runs up to its first exercise and fails there: every cell
  before the first solution cell succeeds, and the first failure lies between that solution cell
  and its check (both included) and is the stub's ``NotImplementedError`` or, in the check cell
  itself, a ``CheckFailed`` or ``NameError`` (see :mod:`tinyml_lab.grading.verify`);
- in one kernel, each exercise's check fails on the stub and passes on the solution.

Select these with ``pytest -m labs``; nbmake runs the instructor notebooks as they are
(``pytest --nbmake labs/``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tinyml_lab.grading.notebook import load_lab
from tinyml_lab.grading.verify import convention_problems, student_copy_problems, vacuous_check_problems

ROOT = Path(__file__).resolve().parents[1]
LABS = sorted(p for p in (ROOT / "labs").glob("*.ipynb") if not p.name.startswith(".")) \
    if (ROOT / "labs").is_dir() else []

pytestmark = pytest.mark.labs
each_lab = pytest.mark.parametrize("path", LABS, ids=[p.stem for p in LABS])


def repository_url() -> str:
    """``repository.url`` of the book's ``_config.yml``: the one place the repository is set."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return str(config["repository"]["url"]).rstrip("/")


def explain(problems: list[str]) -> str:
    return "\n".join(["", *problems])


@each_lab
def test_lab_structure(path):
    lab = load_lab(path)
    problems = convention_problems(lab, repository_url())
    assert not problems, explain(problems)


@each_lab
def test_student_copy_runs_to_its_first_stub(path):
    problems = student_copy_problems(load_lab(path))
    assert not problems, explain(problems)


@each_lab
def test_no_check_is_vacuous(path):
    problems = vacuous_check_problems(load_lab(path))
    assert not problems, explain(problems)
