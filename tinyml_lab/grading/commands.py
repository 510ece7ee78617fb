"""CLI verbs of the grading workflow: ``assign`` (student copies) and ``grade`` (the gradebook).

    tinyml-lab assign labs/ -o release/
    tinyml-lab grade submissions/ --lab 03 -j 2 --timeout 60 -o grades.csv
"""

from __future__ import annotations

import argparse
import sys

from ..report import format_table, print_json


def _points(x: float) -> str:
    return f"{x:g}"


def cmd_assign(args: argparse.Namespace) -> None:
    from .assign import release

    rows = release(args.source, args.output)
    if args.json:
        print_json(rows)
        return
    print(format_table(["lab", "exercises", "points", "solution cells", "hidden tests", "student notebook"],
                       [[r["lab"], r["exercises"], _points(r["points"]), r["solution_cells"], r["hidden_checks"],
                         r["file"]] for r in rows], align="lrrrrl"))
    print(f"{len(rows)} student notebook(s) written to {args.output}")


def cmd_grade(args: argparse.Namespace) -> None:
    import time

    from tqdm import tqdm

    from .grade import grade_class, prepare, write_results

    lab, submissions, target = prepare(args.submissions, args.lab, args.labs, args.output)
    start = time.monotonic()
    with tqdm(total=len(submissions), unit="student", disable=args.quiet, file=sys.stderr,
              desc=f"grading {lab.name}") as bar:
        results = grade_class(lab, submissions, jobs=args.jobs, cell_timeout=args.timeout,
                              total_timeout=args.total_timeout, on_result=lambda r: bar.update(1))
    elapsed = time.monotonic() - start
    csv_path, folder = write_results(lab, results, target)
    if args.json:
        print_json({"lab": lab.name, "max": lab.max_points, "gradebook": str(csv_path), "feedback": str(folder),
                    "seconds": elapsed, "students": [r.to_json() for r in results]})
        return
    ids = [e.id for e in lab.exercises]
    rows = []
    for r in results:
        got = {e.exercise: e.points for e in r.exercises}
        rows.append([r.student, *(_points(got.get(x, 0.0)) for x in ids), _points(r.total), r.status,
                     f"{r.seconds:.1f}"])
    print(format_table(["student", *(f"{e.id} ({_points(e.points)})" for e in lab.exercises), "total", "status",
                        "time s"], rows, align="l" + "r" * (len(ids) + 1) + "lr"))
    mean = sum(r.total for r in results) / len(results)
    print(f"{len(results)} student(s) graded on {lab.name} in {elapsed:.1f} s; mean {mean:.2f} / "
          f"{_points(lab.max_points)} points")
    print(f"gradebook {csv_path}, feedback in {folder}/")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("assign", help="write the student copies of the labs (solutions stubbed, hidden tests "
                                      "removed, outputs cleared)")
    s.add_argument("source", help="an instructor notebook, or the folder of the labs (e.g. labs/)")
    s.add_argument("-o", "--output", required=True, metavar="FOLDER",
                   help="folder for the student notebooks (created if missing; never the instructor folder)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_assign)

    s = sub.add_parser("grade", help="grade the submissions of a lab: run each in its own kernel with the "
                                     "instructor's checks; gradebook CSV and feedback per student")
    s.add_argument("submissions", metavar="SUBMISSIONS_DIR",
                   help="one <student>.ipynb or one <student>/ folder per student")
    s.add_argument("--lab", required=True, metavar="NN", help="the lab: its number (03), its name, or a notebook")
    s.add_argument("--labs", default="labs", metavar="FOLDER", help="folder of the instructor labs (default: labs)")
    s.add_argument("-j", "--jobs", type=int, default=1, metavar="N", help="students graded at once (default: 1)")
    s.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds a cell may run before it is interrupted (default: 60)")
    s.add_argument("--total-timeout", type=float, default=600.0, metavar="S",
                   help="seconds a student's whole notebook may run (default: 600)")
    s.add_argument("-o", "--output", required=True, metavar="CSV",
                   help="gradebook to write; feedback goes to <name>_feedback/ beside it")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_grade)
