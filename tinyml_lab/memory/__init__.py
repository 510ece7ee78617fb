"""Memory: buffer lifetimes, arena planners, in-place kernels, patch-based inference.

>>> from tinyml_lab import zoo
>>> from tinyml_lab.memory import deployed_graph, plan, compare, ArenaInterpreter
>>> q = deployed_graph(zoo.get("kws-dscnn"))
>>> p = plan(q, "greedy-size")          # offsets of every tensor, arena bytes
>>> p.arena_bytes, p.lower_bound
(16000, 16000)

* :mod:`~tinyml_lab.memory.lifetimes`: :class:`Buffer`, :class:`Lifetimes`,
  :func:`graph_lifetimes`, :func:`schedule_lifetimes` (the entry point for the
  training engine's step, :mod:`tinyml_lab.train.memory`);
* :mod:`~tinyml_lab.memory.planners`: :func:`plan`, :func:`compare` and the
  planners ``no-reuse``, ``linear``, ``greedy-size``, ``greedy-breadth``, ``exact``;
* :mod:`~tinyml_lab.memory.arena`: :class:`ArenaInterpreter`, which runs an
  int8 graph inside one byte buffer laid out by a plan;
* :mod:`~tinyml_lab.memory.inplace`: in-place depthwise and element-wise kernels;
* :mod:`~tinyml_lab.memory.patch`: :func:`plan_patches` (MCUNetV2 patch-based inference);
* :mod:`~tinyml_lab.memory.plot`: :func:`plot_plan`, the arena as a timeline.
"""

from .arena import ArenaInterpreter, run_in_arena
from .deploy import deployed_graph, sample_input
from .lifetimes import Buffer, LifetimeError, Lifetimes, align_up, graph_lifetimes, schedule_lifetimes
from .patch import PatchError, PatchPlan, plan_patches
from .planners import (PLANNERS, Plan, PlanError, Planner, UnknownPlannerError, compare, format_plans,
                       planner_names, plan, register)

__all__ = ["Buffer", "Lifetimes", "LifetimeError", "align_up", "graph_lifetimes", "schedule_lifetimes",
           "Plan", "Planner", "PlanError", "UnknownPlannerError", "PLANNERS", "register",
           "plan", "compare", "planner_names", "format_plans", "ArenaInterpreter", "run_in_arena", "PatchPlan",
           "PatchError", "plan_patches", "deployed_graph", "sample_input"]
