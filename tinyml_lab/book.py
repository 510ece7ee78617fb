"""What the book's chapters share: glue helpers, figure style, deployed models, diagrams.

The hidden first cell of every chapter runs ``from tinyml_lab.book import *``;
so does any notebook that wants the book's look (the module is part of the
package, so it works wherever ``tinyml_lab`` is installed, Colab included).

Conventions every chapter follows
---------------------------------
* A chapter is a MyST-NB Markdown notebook (front matter: ``jupytext`` with
  ``format_name: myst``, ``kernelspec`` python3, ``file_format: mystnb``),
  executed at build time; it must run in well under a minute on two cores.
* Its first code cell is tagged ``remove-cell`` and runs ``from tinyml_lab.book import *``.
* Every number the prose states about a model, a memory size, an accuracy or a
  latency is computed in a code cell and inserted with MyST-NB glue:
  ``glue_int("kws_macs", g.macs)`` in code, ``{glue:text}`kws_macs``` in prose.
  Use ``glue_int`` for counts, ``glue_bytes`` for memory, ``glue_num`` for
  anything else with an explicit format. Assumptions of a worked example
  (a clock rate, a cost) are glued too, so prose and code cannot disagree.
  Device figures quoted from a datasheet carry a citation. A sentence that rests on a
  comparison ("A is larger than B") is backed by an ``assert`` in the glue cell, so the
  build fails if the engine changes the story. Write a dollar sign as ``\$``.
* Memory units: 1 KB = 1024 bytes and 1 MB = 1024 KB, as in MCU datasheets.
* Models come from ``tinyml_lab.zoo.get(name, seed=SEED)`` (or ``int8_graph(name)`` for the
  deployed int8 form); random draws use ``rng``. BLAS runs on one thread.
* Figures: matplotlib with the style set here; a figure cell carries a caption and
  a name ``fig-<chapter>-<what>`` in its ``mystnb.figure`` options, referenced with
  ``{numref}``. Model colours come from ``MODEL_COLORS``.
* Labels: ``(ch-<slug>)=`` above a chapter title, ``(sec-<slug>-<what>)=`` for sections.
* Each chapter has learning objectives (``{admonition}`` with class ``note``), a lab box
  (class ``tip``, titled "Lab N, <name>"), self-check questions with answers in
  ``:::{dropdown} Answer`` blocks, and a summary. Key terms link to the glossary with
  ``{term}``; sources are cited with ``{cite:p}``/``{cite:t}`` from ``references.bib``.
* Execution is cached per notebook source: after changing this module or the engine,
  delete ``_build/.jupyter_cache`` to re-run the chapters.
"""

from __future__ import annotations

import os

# One BLAS thread: the chapters' linear algebra is small, and a single thread keeps
# execution time steady on a shared two-core build machine.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from threadpoolctl import threadpool_limits

# Importing the package has already loaded NumPy, so the variables above come too late for
# its BLAS pool: cap the running pools too.
threadpool_limits(1)

SEED = 0
rng = np.random.default_rng(SEED)

KB = 1024
MB = 1024 * KB
GB = 1024 * MB
TB = 1024 * GB

# One colour per zoo model, the same in every chapter.
MODEL_COLORS = {
    "kws-dscnn": "#1b9e77",
    "vww-mobilenetv1": "#d95f02",
    "ic-resnet8": "#7570b3",
    "ad-autoencoder": "#e7298a",
    "mobilenetv2": "#66a61e",
    "digits-cnn": "#a6761d",
}

matplotlib.rcParams.update({
    "figure.figsize": (7.0, 3.8),
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
})


def fmt_bytes(n: float, digits: int | None = None) -> str:
    """``n`` bytes in bytes, KB, MB, GB or TB (powers of 1024), e.g. ``97.3 KB``."""
    n = float(n)
    for unit, size in (("TB", TB), ("GB", GB), ("MB", MB), ("KB", KB)):
        if n >= size:
            v = n / size
            d = digits if digits is not None else (2 if v < 10 else 1 if v < 100 else 0)
            return f"{v:,.{d}f} {unit}"
    return f"{n:,.0f} bytes"


def glue(name: str, value, display: bool = True):
    """MyST-NB's ``glue`` (imported on first use, so the package does not need MyST-NB)."""
    from myst_nb import glue as _glue

    return _glue(name, value, display=display)


def glue_text(name: str, text: str) -> str:
    """Glue a ready-made string; ``{glue:text}`` shows it without quotes. Returns it."""
    glue(name, str(text), display=False)
    return text


def glue_int(name: str, value: int) -> str:
    """Glue an integer with thousands separators, e.g. ``2,656,768``."""
    return glue_text(name, f"{int(value):,}")


def glue_bytes(name: str, nbytes: float, digits: int | None = None) -> str:
    """Glue a memory size, e.g. ``97.3 KB``."""
    return glue_text(name, fmt_bytes(nbytes, digits))


def glue_num(name: str, value: float, fmt: str = ".1f") -> str:
    """Glue a number with an explicit format, e.g. ``glue_num("ratio", 4.02, ".1f")``."""
    return glue_text(name, format(value, fmt))


def int8_graph(name: str, **options):
    """Zoo model ``name`` as deployed: BatchNorm folded, activations fused, int8.

    Calibrated on a few seeded random inputs: byte and MAC counts do not depend
    on the weights' values, so this is enough wherever only sizes matter.
    """
    from tinyml_lab import zoo
    from tinyml_lab.quant.convert import quantize_model

    g = zoo.get(name, seed=SEED, **options)
    x = np.random.default_rng(SEED).standard_normal((4,) + g.input_shape()).astype(np.float32)
    return quantize_model(g, x)


def box(ax, x: float, y: float, text: str, w: float = 1.6, h: float = 0.7, color: str = "#e8eef7",
        **text_kw):
    """A rounded box centred at ``(x, y)`` with ``text`` inside, for diagrams drawn with matplotlib."""
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                fc=color, ec="#44546a", lw=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=text_kw.pop("fontsize", 9), **text_kw)


def arrow(ax, start: tuple, end: tuple, text: str | None = None, rad: float = 0.0, color: str = "#44546a"):
    """An arrow from ``start`` to ``end`` (optionally curved by ``rad``), with an optional label."""
    ax.annotate("", xy=end, xytext=start,
                arrowprops=dict(arrowstyle="-|>", color=color, lw=1.2, shrinkA=2, shrinkB=2,
                                connectionstyle=f"arc3,rad={rad}"))
    if text:
        ax.text((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 + 0.12, text, ha="center", va="bottom",
                fontsize=8, color=color)


def diagram(width: float = 7.0, height: float = 3.0, xlim=(0, 10), ylim=(0, 4)):
    """An empty figure without axes, for box-and-arrow diagrams."""
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axis("off")
    return fig, ax


def md_table(header: list[str], rows: list[list], align: str | None = None):
    """A Markdown table to display from a cell (rendered as a table in the book)."""
    from IPython.display import Markdown

    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else ":---:" if a == "c" else ":---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return Markdown("\n".join(lines))


__all__ = ["np", "plt", "glue", "SEED", "rng", "KB", "MB", "GB", "TB", "MODEL_COLORS", "fmt_bytes",
           "glue_text", "glue_int", "glue_bytes", "glue_num", "int8_graph", "box", "arrow", "diagram", "md_table"]
