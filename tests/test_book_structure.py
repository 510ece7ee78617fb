"""The book's sources hang together: table of contents, lab links, citations, clean notebooks.

These checks read the sources only (no build), so they run in a fraction of a
second and say which file and which entry is wrong.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "chapters").glob("*.md"))
LABS = sorted((ROOT / "labs").glob("*.ipynb"))
SUFFIXES = (".md", ".ipynb", ".rst")

# {doc}`text <target>` or {doc}`target`, and Markdown links [text](target)
DOC_LINK = re.compile(r"\{doc\}`(?:[^`<]*<([^>`]+)>|([^`<>]+))`")
MD_LINK = re.compile(r"\]\(([^)\s]+)\)")
CITE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
BIB_KEY = re.compile(r"^@\w+\s*\{\s*([^,\s]+)\s*,", re.MULTILINE)
LAB_BOX = re.compile(r"^(:{3,})\{admonition\}\s+Lab (\d+), (.+)$", re.MULTILINE)


def _toc_entries(node) -> list[tuple[str, str]]:
    """All ``("file" | "glob" | "root", value)`` pairs of a parsed ``_toc.yml``, depth first."""
    found = []
    if isinstance(node, dict):
        for key in ("root", "file", "glob"):
            if key in node:
                found.append((key, str(node[key])))
        for value in node.values():
            if isinstance(value, (list, dict)):
                found += _toc_entries(value)
    elif isinstance(node, list):
        for item in node:
            found += _toc_entries(item)
    return found


def _doc_exists(docname: str) -> bool:
    path = ROOT / docname
    return path.suffix in SUFFIXES and path.is_file() or any(path.with_name(path.name + s).is_file()
                                                             for s in SUFFIXES)


def _resolve(source: Path, target: str) -> Path:
    """Where a link ``target`` written in ``source`` points, without its suffix or anchor."""
    target = target.split("#")[0]
    path = (ROOT / target.lstrip("/")) if target.startswith("/") else (source.parent / target)
    path = path.resolve()
    return path.with_suffix("") if path.suffix in SUFFIXES else path


def _links(source: Path, text: str | None = None) -> set[Path]:
    """Documents linked with ``{doc}`` or a Markdown link in ``text`` (default: all of ``source``)."""
    text = source.read_text(encoding="utf-8") if text is None else text
    targets = [a or b for a, b in DOC_LINK.findall(text)]
    targets += [t for t in MD_LINK.findall(text) if "://" not in t and not t.startswith(("#", "mailto:"))]
    return {_resolve(source, t.strip()) for t in targets if t.strip()}


def _notebooks() -> list[Path]:
    """The lab notebooks and every committed notebook."""
    found = set(LABS)
    try:
        out = subprocess.run(["git", "ls-files", "*.ipynb"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout
        found |= {ROOT / line for line in out.splitlines() if line and (ROOT / line).is_file()}
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: every notebook outside the build
        found |= {p for p in ROOT.rglob("*.ipynb")
                  if not {".venv", "_build", ".ipynb_checkpoints"} & set(p.relative_to(ROOT).parts)}
    return sorted(found)


def _lab_boxes(chapter: Path) -> list[tuple[int, str, str]]:
    """The lab boxes of a chapter: (lab number, title, body up to the closing fence)."""
    text = chapter.read_text(encoding="utf-8")
    boxes = []
    for m in LAB_BOX.finditer(text):
        close = re.compile(rf"^{m.group(1)}\s*$", re.MULTILINE).search(text, m.end())
        assert close, f"{chapter.name}: the box 'Lab {m.group(2)}, {m.group(3)}' is never closed"
        boxes.append((int(m.group(2)), m.group(3).strip(), text[m.end():close.start()]))
    return boxes


def test_every_toc_entry_exists():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    entries = _toc_entries(toc)
    assert ("root", "intro") in entries
    for kind, value in entries:
        if kind == "glob":
            assert any(p.suffix in SUFFIXES for p in ROOT.glob(value)), \
                f"_toc.yml glob {value!r} matches no document: the strict build would warn"
        else:
            assert _doc_exists(value), f"_toc.yml lists {value!r}, which is not a .md, .ipynb or .rst file"


def test_every_lab_is_in_the_toc():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    listed = set()
    for kind, value in _toc_entries(toc):
        if kind == "glob":
            listed |= {p.resolve() for p in ROOT.glob(value)}
        else:
            listed |= {(ROOT / value).resolve(), (ROOT / (value + ".ipynb")).resolve()}
    missing = [lab.name for lab in LABS if lab.resolve() not in listed]
    assert not missing, f"labs not in _toc.yml (add them to the Labs part): {missing}"


def test_every_lab_is_linked_from_a_chapter():
    linked = set().union(*(_links(c) for c in CHAPTERS)) if CHAPTERS else set()
    orphans = [lab.name for lab in LABS if lab.with_suffix("").resolve() not in linked]
    assert not orphans, f"labs that no chapter links (a {{doc}} link in the chapter's Lab box): {orphans}"


def test_every_lab_box_links_its_lab():
    """A box "Lab N, ..." links labs/NN_*.ipynb once that notebook exists, and links no other lab."""
    boxes = [(c, *box) for c in CHAPTERS for box in _lab_boxes(c)]
    assert boxes, "no chapter has a Lab box"
    for chapter, number, title, body in boxes:
        labs = [lab for lab in LABS if lab.name.startswith(f"{number:02d}_")]
        assert len(labs) <= 1, f"more than one notebook for lab {number}: {[lab.name for lab in labs]}"
        linked_labs = {p for p in _links(chapter, body) if p.parent == (ROOT / "labs").resolve()}
        wrong = [p.name for p in linked_labs if not p.name.startswith(f"{number:02d}_")]
        assert not wrong, f"{chapter.name}: the box 'Lab {number}, {title}' links another lab: {wrong}"
        if labs:
            assert labs[0].with_suffix("").resolve() in linked_labs, \
                f"{chapter.name}: the box 'Lab {number}, {title}' does not link {{doc}}`/labs/{labs[0].stem}`"


def test_every_citation_is_in_the_bibliography():
    keys = set(BIB_KEY.findall((ROOT / "references.bib").read_text(encoding="utf-8")))
    sources = CHAPTERS + [ROOT / "intro.md"]
    missing = []
    for source in sources:
        for group in CITE.findall(source.read_text(encoding="utf-8")):
            missing += [f"{source.name}: {k.strip()}" for k in group.split(",") if k.strip() not in keys]
    for lab in LABS:
        cells = json.loads(lab.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        for group in CITE.findall(text):
            missing += [f"{lab.name}: {k.strip()}" for k in group.split(",") if k.strip() not in keys]
    assert not missing, f"citation keys not in references.bib: {missing}"


@pytest.mark.parametrize("notebook", _notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_notebook_is_committed_without_outputs(notebook):
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    dirty = [i for i, c in enumerate(cells)
             if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{notebook.relative_to(ROOT)} has outputs or execution counts in cells {dirty}: "
                       "strip them before committing (the book executes the notebooks)")


def test_the_checks_see_what_they_check():
    """The patterns find the links, citations and boxes the chapters are known to contain."""
    text = "see {doc}`the lab <../labs/06_kernels>` and {doc}`/labs/07_memory_planning`, [x](../labs/09_qas.ipynb)"
    assert [a or b for a, b in DOC_LINK.findall(text)] == ["../labs/06_kernels", "/labs/07_memory_planning"]
    assert MD_LINK.findall(text) == ["../labs/09_qas.ipynb"]
    chapter = ROOT / "chapters" / "x.md"
    assert _resolve(chapter, "../labs/06_kernels") == _resolve(chapter, "/labs/06_kernels.ipynb")
    assert CITE.findall("{cite:p}`a, b` and {cite:t}`c` and {cite}`d`") == ["a, b", "c", "d"]
    assert sum(len(_lab_boxes(c)) for c in CHAPTERS) >= 5
    assert len(BIB_KEY.findall((ROOT / "references.bib").read_text(encoding="utf-8"))) >= 10


def test_built_lab_pages_launch_in_colab_and_binder():
    """Lab pages carry Colab and Binder buttons for the repository set once, in ``_config.yml``."""
    built = sorted((ROOT / "_build" / "html" / "labs").glob("*.html"))
    if not built:
        pytest.skip("no built lab page: run `make book` first")
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    url, branch = config["repository"]["url"].rstrip("/"), config["repository"]["branch"]
    owner_repo = url.split("github.com/")[1]
    for page in built:
        html = page.read_text(encoding="utf-8")
        notebook = f"labs/{page.stem}.ipynb"
        assert f"colab.research.google.com/github/{owner_repo}/blob/{branch}/{notebook}" in html, \
            f"{page.name} has no Colab button for {notebook}"
        assert f"mybinder.org/v2/gh/{owner_repo}/{branch}?urlpath=tree/{notebook}" in html, \
            f"{page.name} has no Binder button for {notebook}"
