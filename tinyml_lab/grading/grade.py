"""Grading a class: each submission runs in its own kernel with the instructor's checks; a gradebook and feedback.

For each student the graded notebook is rebuilt from the submission: the student's cells, in the
student's order, except that every check cell is the instructor's (hidden tests included), matched
by the exercise id of its grading metadata. A check cell the student deleted, or whose metadata the
student changed, is put back after the student's solution cell of that exercise (or where it stands
in the instructor's notebook), so editing or deleting a check gains nothing.

The notebook then runs in a fresh kernel (see :mod:`~tinyml_lab.grading.execute`), cell after cell,
going on after errors; a check cell that runs without error earns its points. Each student is
graded in a separate process (``jobs`` at a time), so a hang, a crash or a corrupt file costs that
student's grade and nothing else.

    tinyml-lab grade submissions/ --lab 03 -j 2 -o grades.csv
"""

from __future__ import annotations

import csv
import io
import multiprocessing as mp
import os
import re
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Callable

from nbformat import NotebookNode
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from ..errors import GradingError
from ..files import check_file, check_folder, write_atomic, write_files
from .notebook import Lab, grading_metadata, load_lab, read_notebook

__all__ = ["ExerciseResult", "StudentResult", "Submission", "find_lab", "find_submissions", "graded_notebook",
           "grade_class", "gradebook_csv", "feedback_markdown", "feedback_folder", "write_results"]

# Put at the top of each instructor check: the check helpers as shipped, whatever the notebook rebound.
CHECKS_IMPORT = "from tinyml_lab.grading.checks import *  # noqa: F403 (the original checks)\n"
STATUSES = ("ok", "timeout", "kernel died", "invalid", "missing", "error")
_MESSAGE_LIMIT = 2000


@dataclass
class ExerciseResult:
    """The points of one exercise and what its check said."""

    exercise: str
    points: float
    max: float
    status: str  # passed, failed, timeout, kernel died, not run
    message: str


@dataclass
class StudentResult:
    """One row of the gradebook.

    ``status``: ``ok`` (the notebook ran; some checks may have failed), ``timeout``, ``kernel died``,
    ``invalid`` (not a notebook), ``missing`` (no notebook for the lab) or ``error`` (grading failed).
    """

    student: str
    status: str
    reason: str = ""
    exercises: list[ExerciseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    notebook: str = ""
    seconds: float = 0.0

    @property
    def total(self) -> float:
        return float(sum(e.points for e in self.exercises))

    def to_json(self) -> dict:
        d = asdict(self)
        d["total"] = self.total
        d["max"] = float(sum(e.max for e in self.exercises))
        return d

    @classmethod
    def from_json(cls, d: dict) -> "StudentResult":
        d = dict(d)
        d.pop("total", None)
        d.pop("max", None)
        d["exercises"] = [ExerciseResult(**e) for e in d["exercises"]]
        return cls(**d)


@dataclass
class Submission:
    """A student's notebook for the lab (``path``), or why there is none (``problem``)."""

    student: str
    path: Path | None
    problem: str = ""


# --------------------------------------------------------------------------- finding things

def find_lab(labs: str | Path, lab: str) -> Path:
    """The instructor notebook of lab ``lab`` (``"3"``, ``"03"``, a notebook's stem, or a path).

    Raises:
        GradingError: no lab or several labs match, or ``labs`` is not a folder.
    """
    direct = Path(lab)
    if direct.suffix == ".ipynb" and direct.is_file():
        return direct
    folder = Path(labs)
    if not folder.is_dir():
        raise GradingError(f"the labs folder {folder} does not exist; give it with --labs")
    notebooks = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if lab.isdigit():
        found = [p for p in notebooks if re.match(rf"0*{int(lab)}(\D|$)", p.stem)]
    else:
        found = [p for p in notebooks if p.stem == lab or p.stem.startswith(f"{lab}_")]
    if len(found) != 1:
        names = ", ".join(p.name for p in notebooks) or "none"
        what = "no lab" if not found else f"{len(found)} labs ({', '.join(p.name for p in found)})"
        raise GradingError(f"{what} in {folder} match --lab {lab}; the labs are: {names}")
    return found[0]


def _lab_number(lab_path: Path) -> int | None:
    m = re.match(r"(\d+)", lab_path.stem)
    return int(m.group(1)) if m else None


def _pick_notebook(folder: Path, lab_path: Path) -> tuple[Path | None, str]:
    found = sorted(p for p in folder.rglob("*.ipynb")
                   if not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not found:
        return None, f"no notebook in {folder.name}/"
    exact = [p for p in found if p.name == lab_path.name]
    if len(exact) == 1:
        return exact[0], ""
    number = _lab_number(lab_path)
    if number is not None:
        numbered = [p for p in found if re.match(rf"(lab[_\- ]?)?0*{number}(\D|$)", p.stem, re.IGNORECASE)]
        if len(numbered) == 1:
            return numbered[0], ""
    if len(found) == 1:
        return found[0], ""
    names = ", ".join(str(p.relative_to(folder)) for p in found)
    return None, (f"several notebooks in {folder.name}/ ({names}) and none is clearly the one of {lab_path.name}; "
                  f"keep one, or name it {lab_path.name}")


def find_submissions(folder: str | Path, lab_path: str | Path) -> list[Submission]:
    """The students of ``folder``: each top-level ``<student>.ipynb``, and each ``<student>/`` folder
    (in which the notebook of the lab is found by name, by lab number, or as the only notebook).

    Raises:
        GradingError: ``folder`` is not a folder or holds no submission.
    """
    root, lab_path = Path(folder), Path(lab_path)
    if not root.is_dir():
        raise GradingError(f"the submissions folder {root} does not exist")
    by_student: dict[str, list[Path]] = {}
    for entry in sorted(root.iterdir()):
        if entry.name.startswith(".") or entry.name.startswith("__"):
            continue
        if entry.is_dir() or entry.suffix == ".ipynb":
            by_student.setdefault(entry.stem if entry.is_file() else entry.name, []).append(entry)
    if not by_student:
        raise GradingError(f"no submission in {root}: expected one <student>.ipynb or one <student>/ folder per "
                           f"student")
    subs = []
    for student, entries in by_student.items():
        if len(entries) > 1:
            names = " and ".join(e.name + ("/" if e.is_dir() else "") for e in entries)
            subs.append(Submission(student, None, f"two submissions: {names}; keep one"))
        elif entries[0].is_dir():
            path, problem = _pick_notebook(entries[0], lab_path)
            subs.append(Submission(student, path, problem))
        else:
            subs.append(Submission(student, entries[0]))
    return subs


# --------------------------------------------------------------------------- the graded notebook

def _check_cell(lab: Lab, exercise: str) -> NotebookNode:
    inst = lab.notebook.cells[lab.exercise(exercise).check_cell]
    source = inst.source
    if "check_" in source or "CheckFailed" in source:
        source = CHECKS_IMPORT + source
    return new_code_cell(source, metadata={"grading": dict(inst.metadata["grading"])})


def graded_notebook(lab: Lab, student: NotebookNode) -> tuple[NotebookNode, dict[int, str], list[str]]:
    """The notebook to run for a submission: the student's cells, with the instructor's checks.

    Returns:
        The notebook, ``{cell index: exercise id}`` of its check cells, and notes for the student
        (a check put back, a check cell of an unknown exercise dropped).
    """
    cells: list[NotebookNode] = []
    ids: list[str | None] = []
    placed: dict[str, int] = {}
    notes: list[str] = []
    known = {e.id for e in lab.exercises}
    for cell in student.cells:
        try:
            meta = grading_metadata(cell)
        except GradingError:
            meta = {}
        if cell.get("cell_type") != "code":
            cells.append(new_markdown_cell(str(cell.get("source", ""))))
            ids.append(cell.get("id"))
            continue
        exercise = meta.get("exercise")
        if meta.get("check"):
            if exercise in known and exercise not in placed:
                placed[exercise] = len(cells)
                cells.append(_check_cell(lab, exercise))
                ids.append(cell.get("id"))
            else:
                notes.append(f"A cell marked as the check of {exercise!r} was not run: "
                             + ("that exercise's check had already run." if exercise in known
                                else "the lab has no such exercise."))
            continue
        keep = {k: meta[k] for k in ("solution", "exercise") if k in meta and isinstance(meta[k], (bool, str))}
        cells.append(new_code_cell(str(cell.get("source", "")), metadata={"grading": keep} if keep else {}))
        ids.append(cell.get("id"))
    inst_cells = lab.notebook.cells
    for e in lab.exercises:
        if e.id in placed:
            continue
        solutions = [i for i, c in enumerate(cells) if c.cell_type == "code"
                     and c.metadata.get("grading", {}).get("solution") is True
                     and c.metadata.get("grading", {}).get("exercise") == e.id]
        if solutions:
            at, where = solutions[-1] + 1, "after your solution cell"
        else:
            at, where = None, ""
            for j in range(e.check_cell - 1, -1, -1):  # the instructor's position: after the nearest cell kept
                cid = inst_cells[j].get("id")
                if cid and cid in ids:
                    at, where = ids.index(cid) + 1, "where it stands in the lab"
                    break
            if at is None:
                later = [placed[x.id] for x in lab.exercises if x.id in placed and x.check_cell > e.check_cell]
                at, where = (min(later), "before the next exercise's check") if later else (len(cells), "at the end")
        cells.insert(at, _check_cell(lab, e.id))
        ids.insert(at, None)
        placed = {x: (i + 1 if i >= at else i) for x, i in placed.items()}
        placed[e.id] = at
        notes.append(f"The check cell of {e.id} was missing or its metadata changed; the original check was run "
                     f"{where}.")
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                             "language": "python"}})
    return nb, {i: x for x, i in placed.items()}, notes


# --------------------------------------------------------------------------- running one student

def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MESSAGE_LIMIT else text[:_MESSAGE_LIMIT] + " ..."


def run_graded(cells: list[tuple[str, str | None]], points: dict[str, float], cell_timeout: float,
               total_timeout: float, on_kernel: Callable[[int | None], None] | None = None) -> dict:
    """Run ``cells`` (source, exercise id of a check or None) in a fresh kernel; the exercise results
    and the run's status, as a dict of :class:`StudentResult` fields."""
    from .execute import KernelSession

    results, status, before = [], "ok", None
    with KernelSession(cell_timeout=cell_timeout, total_timeout=total_timeout) as kernel:
        if on_kernel is not None:
            on_kernel(kernel.pid)
        for source, exercise in cells:
            r = kernel.run(source)
            if r.status == "dead":
                status = "kernel died"
            elif r.status == "timeout" and status == "ok":
                status = "timeout"
            if exercise is None:
                if r.status in ("timeout", "dead") and before is None:
                    before = r
                continue
            if r.ok:
                outcome, message = "passed", r.stdout.strip() or "passed"
            else:
                outcome = {"error": "failed", "dead": "kernel died"}.get(r.status, r.status)
                message = r.message
                if r.ename == "NotImplementedError":
                    message = f"{r.message}: not done yet (a cell still raises NotImplementedError)"
                if before is not None and r.status == "error":
                    outcome = "timeout" if before.status == "timeout" else outcome
                    message = f"{before.message} in a cell before this check; then the check failed: {message}"
            results.append(asdict(ExerciseResult(exercise, points[exercise] if r.ok else 0.0, points[exercise],
                                                 outcome, _clip(message))))
            before = None
    return {"status": status, "exercises": results}


def _worker(conn, job: dict) -> None:
    """Grade one student in this process; send ``("kernel", pid)`` then ``("result", dict)``."""
    start = time.monotonic()
    try:
        out = run_graded(job["cells"], job["points"], job["cell_timeout"], job["total_timeout"],
                         on_kernel=lambda pid: conn.send(("kernel", pid)))
        order = list(job["points"])
        exercises = sorted(out["exercises"], key=lambda e: order.index(e["exercise"]))
        result = dict(job["result"], status=out["status"], exercises=exercises)
        if out["status"] == "timeout":
            result["reason"] = "a cell or the whole notebook went over its time limit"
        elif out["status"] == "kernel died":
            result["reason"] = "the kernel died (the notebook exited the process, crashed or ran out of memory)"
    except BaseException as exc:  # anything at all: this student gets an error, the others go on
        result = dict(job["result"], status="error", reason=f"grading failed: {type(exc).__name__}: {exc}")
    result["seconds"] = time.monotonic() - start
    try:
        conn.send(("result", result))
    finally:
        conn.close()


def _zero(lab: Lab, status: str) -> list[ExerciseResult]:
    """Zero points on every exercise, for a submission that was not (fully) graded; the reason is the student's."""
    return [ExerciseResult(e.id, 0.0, e.points, status, "not graded: see the reason above") for e in lab.exercises]


def _context():
    if sys.platform != "win32" and "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(["tinyml_lab.grading.grade", "tinyml_lab.grading.execute"])
        return ctx
    return mp.get_context("spawn")


def _kill_group(pid: int | None) -> None:
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def grade_class(lab: Lab, submissions: list[Submission], jobs: int = 1, cell_timeout: float = 60.0,
                total_timeout: float = 600.0, on_result: Callable[[StudentResult], None] | None = None,
                ) -> list[StudentResult]:
    """Grade every submission (``jobs`` processes at a time); the results sorted by student.

    Args:
        lab: the instructor lab.
        submissions: from :func:`find_submissions`.
        jobs: students graded at the same time, each in its own process and kernel.
        cell_timeout: seconds a cell may run before it is interrupted.
        total_timeout: seconds a student's whole notebook may run before its kernel is killed.
        on_result: called with each result as it comes (a progress bar).
    """
    if not isinstance(jobs, int) or jobs < 1:
        raise GradingError(f"-j must be a whole number of students at a time >= 1, got {jobs!r}")
    for name, value in (("--timeout", cell_timeout), ("--total-timeout", total_timeout)):
        if not value > 0:
            raise GradingError(f"{name} must be a positive number of seconds, got {value!r}")
    done: list[StudentResult] = []

    def finish(result: StudentResult) -> None:
        done.append(result)
        if on_result is not None:
            on_result(result)

    points = {e.id: e.points for e in lab.exercises}
    queue: list[dict] = []
    for sub in submissions:
        base = StudentResult(sub.student, "ok", notebook=str(sub.path or ""))
        try:
            if sub.path is None:
                finish(StudentResult(sub.student, "missing", sub.problem, _zero(lab, "not run")))
                continue
            try:
                nb = read_notebook(sub.path, strict=False)
            except GradingError as exc:
                reason = str(exc).replace(str(sub.path), sub.path.name, 1)
                finish(StudentResult(sub.student, "invalid", reason, _zero(lab, "not run"),
                                     notebook=str(sub.path)))
                continue
            graded, checks, notes = graded_notebook(lab, nb)
            base.notes = notes
            cells = [(c.source, checks.get(i)) for i, c in enumerate(graded.cells) if c.cell_type == "code"]
            queue.append({"result": base.to_json(), "cells": cells, "points": points,
                          "cell_timeout": cell_timeout, "total_timeout": total_timeout})
        except Exception as exc:  # one odd submission never stops the others
            reason = f"grading failed: {type(exc).__name__}: {exc}"
            finish(StudentResult(sub.student, "error", reason, _zero(lab, "not run"),
                                 notebook=str(sub.path or "")))
    _run_processes(lab, queue, jobs, total_timeout, finish)
    return sorted(done, key=lambda r: r.student)


def _run_processes(lab: Lab, queue: list[dict], jobs: int, total_timeout: float,
                   finish: Callable[[StudentResult], None]) -> None:
    """Run each job of ``queue`` in its own process, ``jobs`` at a time, and pass each result to ``finish``."""
    if not queue:
        return
    ctx = _context()
    limit = total_timeout + 120.0  # kernel start-up and shutdown on top of the notebook's own limit
    pending = list(queue)
    running: dict = {}  # connection -> [process, job, start, kernel pid]
    try:
        while pending or running:
            while pending and len(running) < jobs:
                job = pending.pop(0)
                parent, child = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, args=(child, job), daemon=True)
                proc.start()
                child.close()
                running[parent] = [proc, job, time.monotonic(), None]
            wait(list(running) + [entry[0].sentinel for entry in running.values()], timeout=1.0)
            for conn, entry in list(running.items()):
                proc, job, start, _ = entry
                payload = None
                try:
                    while conn.poll():
                        kind, value = conn.recv()
                        if kind == "kernel":
                            entry[3] = value
                        else:
                            payload = value
                except (EOFError, OSError):
                    pass
                overdue = time.monotonic() - start > limit
                if payload is None and proc.is_alive() and not overdue:
                    continue
                base = StudentResult.from_json(job["result"])
                if payload is not None:
                    result = StudentResult.from_json(payload)
                elif proc.is_alive():  # stuck beyond every limit: kill it and its kernel
                    proc.kill()
                    _kill_group(entry[3])
                    reason = f"grading did not finish in {limit:g} s and was stopped"
                    result = StudentResult(base.student, "timeout", reason, _zero(lab, "timeout"),
                                           base.notes, base.notebook, time.monotonic() - start)
                else:
                    _kill_group(entry[3])
                    reason = f"the grading process exited with code {proc.exitcode} before it reported"
                    result = StudentResult(base.student, "error", reason, _zero(lab, "not run"),
                                           base.notes, base.notebook, time.monotonic() - start)
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5)
                conn.close()
                del running[conn]
                finish(result)
    finally:
        for conn, (proc, _, _, pid) in running.items():
            proc.kill()
            _kill_group(pid)
            conn.close()


# --------------------------------------------------------------------------- outputs

def _num(x: float) -> str:
    return f"{x:g}"


def gradebook_csv(lab: Lab, results: list[StudentResult]) -> str:
    """The gradebook: ``student``, one column per exercise (points), ``total``, ``max``, ``status``."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    ids = [e.id for e in lab.exercises]
    w.writerow(["student", *ids, "total", "max", "status"])
    for r in results:
        got = {e.exercise: e.points for e in r.exercises}
        w.writerow([r.student, *(_num(got.get(x, 0.0)) for x in ids), _num(r.total), _num(lab.max_points),
                    r.status])
    return buf.getvalue()


def feedback_markdown(lab: Lab, result: StudentResult) -> str:
    """The feedback of one student, in Markdown: the total, then each exercise's points and message."""
    lines = [f"# {lab.name}: feedback for {result.student}", "",
             f"**{_num(result.total)} / {_num(lab.max_points)} points** (status: {result.status})", ""]
    if result.reason:
        lines += [result.reason, ""]
    lines += ["| exercise | points | result |", "|---|---:|---|"]
    lines += [f"| {e.exercise} | {_num(e.points)} / {_num(e.max)} | {e.status} |" for e in result.exercises]
    lines.append("")
    for e in result.exercises:
        lines += [f"## {e.exercise}: {_num(e.points)} / {_num(e.max)}", "", "```text", e.message.replace("```", "'''"),
                  "```", ""]
    if result.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in result.notes] + [""]
    return "\n".join(lines)


def feedback_folder(csv_path: str | Path) -> Path:
    """The feedback folder next to the gradebook: ``grades.csv`` -> ``grades_feedback/``."""
    p = Path(csv_path)
    return p.with_name(f"{p.stem}_feedback")


def _safe_name(student: str) -> str:
    return re.sub(r"[^\w.@+-]", "_", student) or "_"


def write_results(lab: Lab, results: list[StudentResult], csv_path: str | Path) -> tuple[Path, Path]:
    """Write the gradebook and the feedback files, each atomically; their paths."""
    target = check_file(csv_path, "gradebook")
    folder = check_folder(feedback_folder(target), "feedback files")
    write_files(folder, {f"{_safe_name(r.student)}.md": feedback_markdown(lab, r) for r in results}, "feedback")
    write_atomic(target, gradebook_csv(lab, results).encode(), "gradebook")
    return target, folder


def prepare(submissions_dir: str | Path, lab: str, labs: str | Path, csv_path: str | Path,
            ) -> tuple[Lab, list[Submission], Path]:
    """Check every input and output before grading starts: the lab, the submissions, where results go."""
    lab_path = find_lab(labs, lab)
    the_lab = load_lab(lab_path)
    subs = find_submissions(submissions_dir, lab_path)
    target = check_file(csv_path, "gradebook")
    check_folder(feedback_folder(target), "feedback files")
    root = Path(submissions_dir).resolve()
    if root == target.resolve().parent or root in target.resolve().parents:
        raise GradingError(f"write the gradebook outside the submissions folder {submissions_dir} (its feedback "
                           f"folder would be taken for a student next time); give another path with -o")
    return the_lab, subs, target
