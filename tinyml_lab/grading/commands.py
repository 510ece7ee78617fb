"""CLI verbs of the grading workflow: ``assign`` (student copies) and ``grade`` (the gradebook).

    tinyml-lab assign labs/ -o release/
    tinyml-lab grade submissions/ --lab 03 -j 2 --timeout 60 -o grades.csv
"""

from __future__ import annotations

import argparse

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


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("assign", help="write the student copies of the labs (solutions stubbed, hidden tests "
                                      "removed, outputs cleared)")
    s.add_argument("source", help="an instructor notebook, or the folder of the labs (e.g. labs/)")
    s.add_argument("-o", "--output", required=True, metavar="FOLDER",
                   help="folder for the student notebooks (created if missing; never the instructor folder)")
    s.add_argument("--json", action="store_true", help="print JSON")
    s.set_defaults(func=cmd_assign)
