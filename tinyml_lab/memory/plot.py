"""The arena as a picture: one rectangle per buffer, steps across, offsets up.

A buffer ``b`` at offset ``o_b`` live over steps ``first..last`` is the
rectangle ``[first, last + 1) x [o_b, o_b + s_b)``. A valid plan draws no
two rectangles on top of each other (in-place pairs touch at one step, at
the same offset). The dashed line is the lower bound, the solid line the
arena. The figure is built without pyplot, so it works under any backend
(and on a machine without a display); save it with ``fig.savefig(path)``.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .planners import Plan

_KIND_COLORS = {"input": "#4c78a8", "output": "#54a24b", "activation": "#f2a541", "scratch": "#b279a2",
                "gradient": "#e45756", "weight": "#72b7b2", "optimizer": "#9d755d"}


def plot_plan(plan: Plan, ax=None, labels: bool = True, title: str | None = None, unit: str = "KB") -> Figure:
    """Draw ``plan`` as a timeline; returns the Figure (the one of ``ax`` when given).

    Args:
        plan: a validated :class:`Plan`.
        ax: draw into this Axes instead of a new figure.
        labels: write each buffer's name inside its rectangle when it fits.
        title: the title; by default the planner, arena and lower bound.
        unit: ``"B"``, ``"KB"`` or ``"MB"`` for the offset axis (1 KB = 1024 bytes).
    """
    scale = {"B": 1, "KB": 1024, "MB": 1024 * 1024}[unit]
    if ax is None:
        fig = Figure(figsize=(9, 4.5), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    lt = plan.lifetimes
    arena = plan.arena_bytes / scale
    fw, fh = fig.get_size_inches()
    bbox_w, bbox_h = 0.85 * fw * 72 * ax.get_position().width, 0.9 * fh * 72 * ax.get_position().height
    for b in lt.buffers:
        o = plan.offsets[b.name] / scale
        h = max(b.size / scale, arena * 0.002)
        color = _KIND_COLORS.get(b.kind, "#bab0ac")
        ax.add_patch(Rectangle((b.first, o), b.last - b.first + 1, h, facecolor=color, edgecolor="black",
                               linewidth=0.6, alpha=0.85))
        # label a rectangle only when its name fits inside it (6-point text, about 3.7 points a character)
        width_pt = (b.last - b.first + 1) / max(lt.n_steps, 1) * bbox_w
        height_pt = h / max(arena, 1e-12) * bbox_h
        text_pt = 3.7 * len(b.name)
        if labels and width_pt >= text_pt and height_pt >= 8:
            ax.text(b.first + (b.last - b.first + 1) / 2, o + h / 2, b.name, ha="center", va="center",
                    fontsize=6, clip_on=True)
        elif labels and height_pt >= text_pt and width_pt >= 8:  # tall and narrow: write it upwards
            ax.text(b.first + (b.last - b.first + 1) / 2, o + h / 2, b.name, ha="center", va="center",
                    fontsize=6, rotation=90, clip_on=True)
    ax.axhline(plan.lower_bound / scale, color="black", linestyle="--", linewidth=0.8, label="lower bound")
    ax.axhline(arena, color="black", linewidth=1.0, label="arena")
    ax.set_xlim(0, max(lt.n_steps, 1))
    ax.set_ylim(0, max(arena, plan.lower_bound / scale) * 1.05 or 1)
    ax.set_xlabel("step (node)")
    ax.set_ylabel(f"offset ({unit})")
    ax.set_title(title if title is not None else
                 f"{lt.name}: {plan.planner}, arena {plan.arena_bytes:,} B (lower bound {plan.lower_bound:,} B)",
                 fontsize=9)
    ax.legend(loc="upper right", fontsize=7)
    return fig


__all__ = ["plot_plan"]
