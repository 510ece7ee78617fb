"""Memory planners: put every buffer of a schedule at an offset in one arena.

A plan assigns each buffer ``b`` an offset ``o_b`` (a multiple of the
alignment) such that buffers whose lifetimes intersect occupy disjoint byte
ranges, ``[o_a, o_a + s_a) ∩ [o_b, o_b + s_b) = ∅``; its arena is
``A = max_b (o_b + s_b)``, with sizes ``s_b`` rounded up to the alignment.
Every plan satisfies ``A >= LB`` (:meth:`Lifetimes.lower_bound`).

Planners share one interface, :class:`Planner`, with one method
``place(groups, alignment) -> offsets``, and are registered by name:

* ``no-reuse``: every buffer its own bytes, ``A = sum_b s_b`` (TensorFlow
  Lite Micro's ``LinearMemoryPlanner``);
* ``linear``: buffers in the order they are written, each at the lowest
  offset free over its lifetime (a run-time allocator that frees buffers
  as they die);
* ``greedy-size``: largest first, each in the first gap among the buffers
  already placed whose lifetimes overlap it (TensorFlow Lite Micro's
  ``GreedyMemoryPlanner``);
* ``greedy-breadth``: steps in decreasing order of live bytes, each step's
  unplaced buffers largest first, each into the smallest gap that fits
  (Pisarchyk and Lee, "Efficient Memory Management for Deep Neural Net
  Inference", arXiv:2001.03288, 2020);
* ``exact``: mixed-integer programming with SciPy's ``milp`` (HiGHS), under
  a time limit, starting from the best heuristic; it stops at once when a
  heuristic already meets the lower bound, and otherwise reports the best
  plan found and the bound it proved.

Use :func:`plan` for one planner and :func:`compare` for all of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from ..errors import TinyMLError
from ..graph import Graph
from .lifetimes import Group, Lifetimes, align_up, graph_lifetimes


class PlanError(TinyMLError, ValueError):
    """A plan puts two buffers that are live at the same time on the same bytes."""


class UnknownPlannerError(TinyMLError, KeyError):
    """A planner name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------- plans

@dataclass
class Plan:
    """Offsets of every buffer of ``lifetimes`` in an arena of ``arena_bytes``."""

    lifetimes: Lifetimes
    offsets: dict[str, int]
    arena_bytes: int
    planner: str
    alignment: int = 16
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def lower_bound(self) -> int:
        return self.lifetimes.lower_bound(self.alignment)

    @property
    def ratio(self) -> float:
        """``A / LB``: 1.0 is optimal."""
        lb = self.lower_bound
        return self.arena_bytes / lb if lb else 1.0

    def size(self, name: str) -> int:
        return align_up(self.lifetimes[name].size, self.alignment)

    def validate(self) -> "Plan":
        """Check every pair of buffers live at a common step: their bytes must not overlap.

        A buffer linked in place to its input (``may_share_with``) may sit at
        exactly that input's offset. Raises :class:`PlanError` naming the pair.
        """
        bufs = sorted(self.lifetimes.buffers, key=lambda b: b.first)
        for b in bufs:
            if b.name not in self.offsets:
                raise PlanError(f"plan '{self.planner}' gives no offset to buffer {b.name!r}")
            o = self.offsets[b.name]
            if o < 0 or o % self.alignment:
                raise PlanError(f"buffer {b.name!r} is at offset {o}, not a non-negative multiple of "
                                f"the alignment {self.alignment}")
            if o + b.size > self.arena_bytes:
                raise PlanError(f"buffer {b.name!r} ends at byte {o + b.size}, past the arena's "
                                f"{self.arena_bytes} bytes")
        for i, a in enumerate(bufs):
            oa, ea = self.offsets[a.name], self.offsets[a.name] + a.size
            for b in bufs[i + 1:]:
                if b.first > a.last:
                    break
                if not a.overlaps(b) or a.size == 0 or b.size == 0:
                    continue
                ob, eb = self.offsets[b.name], self.offsets[b.name] + b.size
                if ob >= ea or oa >= eb:
                    continue
                linked = b.may_share_with == a.name or a.may_share_with == b.name
                if linked and oa == ob:
                    continue
                raise PlanError(
                    f"plan '{self.planner}' overlaps {a.name!r} (bytes {oa}..{ea - 1}, steps "
                    f"{a.first}..{a.last}) and {b.name!r} (bytes {ob}..{eb - 1}, steps {b.first}..{b.last}), "
                    f"which are live at the same time"
                )
        return self

    def to_json(self) -> dict:
        return {"planner": self.planner, "arena_bytes": self.arena_bytes, "lower_bound_bytes": self.lower_bound,
                "ratio": round(self.ratio, 4), "alignment": self.alignment, "seconds": self.seconds,
                "offsets": dict(self.offsets), "info": dict(self.info)}

    def __repr__(self) -> str:
        return (f"Plan('{self.planner}', arena {self.arena_bytes:,} bytes, lower bound {self.lower_bound:,}, "
                f"{len(self.offsets)} buffers)")


# --------------------------------------------------------------------------- planners

PLANNERS: dict[str, type["Planner"]] = {}


def register(cls: type["Planner"]) -> type["Planner"]:
    """Class decorator: make a planner available to :func:`plan` under ``cls.name``."""
    PLANNERS[cls.name] = cls
    return cls


class Planner:
    """Places share groups; subclasses implement :meth:`place`."""

    name = "planner"

    def __init__(self, **opts: Any):
        if opts:
            raise TinyMLError(f"planner '{self.name}' takes no options, got {', '.join(sorted(opts))}")

    def place(self, groups: list[Group], alignment: int) -> dict[str, int]:
        """Offsets (multiples of ``alignment``) of the groups, by group name."""
        raise NotImplementedError


def _first_gap(size: int, placed: list[tuple[int, int]], alignment: int) -> int:
    """Lowest aligned offset where ``size`` bytes fit between intervals ``placed`` (sorted by start)."""
    candidate = 0
    for start, end in placed:
        if candidate + size <= start:
            break
        candidate = max(candidate, align_up(end, alignment))
    return candidate


def _conflicts(g: Group, placed: dict[str, tuple[Group, int]]) -> list[tuple[int, int]]:
    return sorted((o, o + p.size) for p, o in placed.values() if p.overlaps(g))


@register
class NoReuse(Planner):
    """Every group its own bytes, in order of first use: ``A = sum_g s_g``."""

    name = "no-reuse"

    def place(self, groups, alignment):
        offsets, top = {}, 0
        for g in sorted(groups, key=lambda g: (g.first, g.name)):
            offsets[g.name] = top
            top += g.size
        return offsets


@register
class Linear(Planner):
    """Execution order, first fit: each group at the lowest offset free over its lifetime."""

    name = "linear"

    def place(self, groups, alignment):
        placed: dict[str, tuple[Group, int]] = {}
        for g in sorted(groups, key=lambda g: (g.first, -g.size, g.name)):
            placed[g.name] = (g, _first_gap(g.size, _conflicts(g, placed), alignment))
        return {n: o for n, (_, o) in placed.items()}


@register
class GreedyBySize(Planner):
    """Largest first, each into the first gap among the placed groups it overlaps in time."""

    name = "greedy-size"

    def place(self, groups, alignment):
        placed: dict[str, tuple[Group, int]] = {}
        for g in sorted(groups, key=lambda g: (-g.size, g.first, g.name)):
            placed[g.name] = (g, _first_gap(g.size, _conflicts(g, placed), alignment))
        return {n: o for n, (_, o) in placed.items()}


@register
class GreedyByBreadth(Planner):
    """Steps by decreasing breadth (live bytes), their groups largest first, each into the best-fit gap."""

    name = "greedy-breadth"

    def place(self, groups, alignment):
        n_steps = max(g.last for g in groups) + 1
        breadth = np.zeros(n_steps, np.int64)
        for g in groups:
            breadth[g.first: g.last + 1] += g.size
        placed: dict[str, tuple[Group, int]] = {}
        for step in sorted(range(n_steps), key=lambda t: (-breadth[t], t)):
            live = [g for g in groups if g.first <= step <= g.last and g.name not in placed]
            for g in sorted(live, key=lambda g: (-g.size, g.first, g.name)):
                placed[g.name] = (g, self._best_fit(g.size, _conflicts(g, placed), alignment))
        return {n: o for n, (_, o) in placed.items()}

    @staticmethod
    def _best_fit(size: int, placed: list[tuple[int, int]], alignment: int) -> int:
        best, best_gap, cursor = None, None, 0
        for start, end in placed:
            if start - cursor >= size and (best_gap is None or start - cursor < best_gap):
                best, best_gap = cursor, start - cursor
            cursor = max(cursor, align_up(end, alignment))
        return cursor if best is None else best


@register
class Exact(Planner):
    """Minimum arena by mixed-integer programming (SciPy ``milp``), within ``time_limit`` seconds.

    Variables: offsets ``x_g`` in units of the alignment, the arena ``A``, and
    one binary ``z_{gh}`` per pair of groups live at a common step, with
    ``x_g + s_g <= x_h + M (1 - z_gh)``, ``x_h + s_h <= x_g + M z_gh`` (one of
    the two lies below the other), ``x_g + s_g <= A``; minimise ``A``. ``M``
    is the best heuristic arena, which also bounds ``A`` from above, and
    ``A >= LB``. If a heuristic reaches ``LB`` it is optimal and no program
    is solved. Groups beyond ``max_groups`` are left to the heuristics.
    """

    name = "exact"

    def __init__(self, time_limit: float = 10.0, max_groups: int = 400):
        if not time_limit > 0:
            raise TinyMLError(f"exact planner: time_limit must be positive seconds, got {time_limit!r}")
        self.time_limit = float(time_limit)
        self.max_groups = int(max_groups)
        self.info: dict[str, Any] = {}

    def place(self, groups, alignment):
        lb = int(max(np.bincount(
            np.concatenate([np.arange(g.first, g.last + 1) for g in groups]),
            weights=np.concatenate([np.full(g.last - g.first + 1, g.size) for g in groups]),
        ))) if groups else 0
        best, best_arena, best_name = None, None, None
        for cls in (GreedyBySize, GreedyByBreadth, Linear):
            offs = cls().place(groups, alignment)
            arena = max((offs[g.name] + g.size for g in groups), default=0)
            if best_arena is None or arena < best_arena:
                best, best_arena, best_name = offs, arena, cls.name
        self.info = {"time_limit_s": self.time_limit, "lower_bound_bytes": lb, "start": best_name,
                     "optimal": best_arena == lb, "proven_bound_bytes": lb, "solver": "heuristic"}
        if best_arena == lb:
            return best
        if len(groups) > self.max_groups:
            self.info.update(solver="skipped", reason=f"{len(groups)} groups > max_groups={self.max_groups}")
            return best
        offs, status, bound = self._milp(groups, alignment, best_arena, lb)
        self.info["solver"] = f"scipy.optimize.milp (HiGHS): {status}"
        if bound is not None:
            self.info["proven_bound_bytes"] = max(lb, bound)
        if offs is not None:
            arena = max(offs[g.name] + g.size for g in groups)
            if arena <= best_arena:
                best, best_arena = offs, arena
        self.info["optimal"] = best_arena <= self.info["proven_bound_bytes"]
        return best

    def _milp(self, groups: list[Group], alignment: int, upper: int, lower: int):
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import lil_matrix

        a = alignment
        n = len(groups)
        s = [g.size // a for g in groups]
        ub, lb = upper // a, -(-lower // a)
        pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if groups[i].overlaps(groups[j])]
        nv = n + 1 + len(pairs)  # x_0..x_{n-1}, A, z_k
        rows = 2 * len(pairs) + n
        m = lil_matrix((rows, nv))
        lo_b = np.full(rows, -np.inf)
        hi_b = np.zeros(rows)
        r = 0
        for k, (i, j) in enumerate(pairs):
            z = n + 1 + k
            # x_i + s_i - x_j + M z <= M   (z = 0: i below j)
            m[r, i], m[r, j], m[r, z] = 1, -1, ub
            hi_b[r] = ub - s[i]
            r += 1
            # x_j + s_j - x_i - M z <= 0   (z = 1: j below i)
            m[r, j], m[r, i], m[r, z] = 1, -1, -ub
            hi_b[r] = -s[j]
            r += 1
        for i in range(n):
            m[r, i], m[r, n] = 1, -1
            hi_b[r] = -s[i]
            r += 1
        c = np.zeros(nv)
        c[n] = 1.0
        lower_b = np.zeros(nv)
        upper_b = np.ones(nv)
        upper_b[:n] = [ub - si for si in s]
        lower_b[n], upper_b[n] = lb, ub
        integrality = np.ones(nv)
        t0 = time.perf_counter()
        res = milp(c, integrality=integrality, bounds=Bounds(lower_b, upper_b),
                   constraints=LinearConstraint(m.tocsr(), lo_b, hi_b),
                   options={"time_limit": self.time_limit, "disp": False})
        self.info["solve_seconds"] = round(time.perf_counter() - t0, 3)
        bound = getattr(res, "mip_dual_bound", None)
        bound_bytes = None
        if bound is not None and np.isfinite(bound):
            bound_bytes = int(np.ceil(bound - 1e-6)) * a
        if res.status == 0 and res.x is not None:
            bound_bytes = int(round(res.x[n])) * a
        status = {0: "optimal", 1: "time limit reached", 2: "infeasible", 3: "unbounded"}.get(res.status, res.message)
        if res.x is None:
            return None, status, bound_bytes
        x = np.round(res.x[:n]).astype(np.int64)
        return {g.name: int(x[i]) * a for i, g in enumerate(groups)}, status, bound_bytes


# --------------------------------------------------------------------------- entry points

def planner_names() -> list[str]:
    return list(PLANNERS)


def get_planner(name: str, **opts: Any) -> Planner:
    key = str(name).strip().lower().replace("_", "-")
    if key not in PLANNERS:
        raise UnknownPlannerError(f"unknown planner {name!r}; planners: {', '.join(PLANNERS)}")
    return PLANNERS[key](**opts)


def _lifetimes_of(obj: Lifetimes | Graph, inplace: bool) -> Lifetimes:
    if isinstance(obj, Lifetimes):
        return obj
    if isinstance(obj, Graph):
        return graph_lifetimes(obj, inplace=inplace)
    raise TinyMLError(f"plan() takes a Lifetimes or a Graph, got {type(obj).__name__}")


def plan(lifetimes_or_graph: Lifetimes | Graph, planner: str = "greedy-size", alignment: int = 16,
         inplace: bool = False, **opts: Any) -> Plan:
    """Plan the buffers of a schedule (or of a graph, via :func:`graph_lifetimes`) with ``planner``.

    Buffers linked in place are placed as one block. ``opts`` go to the
    planner (``time_limit`` and ``max_groups`` for ``exact``). The plan is
    validated before it is returned.
    """
    lt = _lifetimes_of(lifetimes_or_graph, inplace)
    align_up(1, alignment)  # checks the alignment
    p = get_planner(planner, **opts)
    t0 = time.perf_counter()
    groups = lt.groups(alignment)
    offsets_g = p.place(groups, alignment) if groups else {}
    seconds = time.perf_counter() - t0
    offsets = {}
    for g in groups:
        for member in g.members:
            offsets[member] = offsets_g[g.name]
    arena = max((offsets_g[g.name] + g.size for g in groups), default=0)
    info = dict(getattr(p, "info", {}))
    return Plan(lt, offsets, int(arena), p.name, alignment, round(seconds, 6), info).validate()


def compare(lifetimes_or_graph: Lifetimes | Graph, planners: Iterable[str] | None = None,
            alignment: int = 16, inplace: bool = False, **exact_opts: Any) -> list[Plan]:
    """One validated plan per planner (all registered ones by default), in registration order."""
    lt = _lifetimes_of(lifetimes_or_graph, inplace)
    names = list(planners) if planners is not None else planner_names()
    return [plan(lt, n, alignment, **(exact_opts if n == "exact" else {})) for n in names]


def format_plans(plans: list[Plan]) -> str:
    """The comparison table the ``plan`` verb prints: arena, ratio to the lower bound, time."""
    from ..report import format_bytes, format_table

    lb = plans[0].lower_bound if plans else 0
    rows = [[p.planner, f"{p.arena_bytes:,}", format_bytes(p.arena_bytes), f"{p.ratio:.3f}",
             f"{p.seconds * 1000:.2f}"] for p in plans]
    rows.append(["lower bound", f"{lb:,}", format_bytes(lb), "1.000", "-"])
    return format_table(["planner", "arena bytes", "arena", "x lower bound", "ms"], rows, align="lrrrr")


__all__ = ["Plan", "Planner", "PlanError", "UnknownPlannerError", "PLANNERS", "register", "plan", "compare",
           "planner_names", "get_planner", "format_plans", "NoReuse", "Linear", "GreedyBySize",
           "GreedyByBreadth", "Exact"]
