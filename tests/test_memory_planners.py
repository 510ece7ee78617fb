"""Every planner on every zoo model and on random schedules: valid plans, at or above the lower bound,
checked directly and by running the graph inside the planned arena."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import seeds  # noqa: F401  (loads the shared hypothesis profile)
from tinyml_lab import GraphBuilder, zoo
from tinyml_lab.interpreter import Interpreter
from tinyml_lab.memory import (ArenaInterpreter, Buffer, Lifetimes, PlanError, UnknownPlannerError, compare,
                               deployed_graph, graph_lifetimes, plan, planner_names, sample_input)
from tinyml_lab.memory.planners import Plan

PLANNERS = ["no-reuse", "linear", "greedy-size", "greedy-breadth", "exact"]


@lru_cache(maxsize=None)
def deployed(name: str):
    q = deployed_graph(zoo.get(name))
    x = sample_input(q, 1, seed=3)
    return q, x, Interpreter(q).run(x)


def test_all_planners_are_registered():
    assert planner_names() == PLANNERS
    with pytest.raises(UnknownPlannerError, match="planners: no-reuse, linear"):
        plan(graph_lifetimes(deployed("digits-cnn")[0]), "best-fit")


@pytest.mark.parametrize("inplace", [False, True], ids=["plain", "inplace"])
@pytest.mark.parametrize("name", zoo.names())
def test_every_planner_on_every_zoo_model(name, inplace):
    q, x, ref = deployed(name)
    lt = graph_lifetimes(q, inplace=inplace)
    plans = {p.planner: p for p in compare(lt, time_limit=2.0)}
    lb = lt.lower_bound(16)
    for p in plans.values():
        p.validate()
        assert p.arena_bytes >= lb
        assert all(o % 16 == 0 for o in p.offsets.values())
        # a wrong plan corrupts the output: bit-exact agreement shows the plan is valid
        assert np.array_equal(ArenaInterpreter(q, p).run(x), ref), p.planner
    assert plans["no-reuse"].arena_bytes == sum(g.size for g in lt.groups(16))
    assert plans["greedy-size"].arena_bytes <= plans["no-reuse"].arena_bytes
    exact = plans["exact"]
    assert exact.arena_bytes <= min(p.arena_bytes for p in plans.values())
    assert exact.info["optimal"] or exact.info["proven_bound_bytes"] > lb or exact.info["solver"] != "heuristic"
    assert exact.info["time_limit_s"] == 2.0


def test_inplace_plans_run_inplace_kernels():
    q, x, ref = deployed("mobilenetv2")
    p = plan(q, "greedy-size", inplace=True)
    it = ArenaInterpreter(q, p)
    assert any(n.startswith("block") and n.endswith("_dw") for n in it.inplace_steps)
    assert any(n.endswith("_add") for n in it.inplace_steps)
    assert np.array_equal(it.run(x), ref)


def test_a_wrong_plan_is_caught_twice():
    q, x, ref = deployed("kws-dscnn")
    good = plan(q, "greedy-size")
    offsets = {n: 0 for n in good.offsets}  # everything on top of everything
    bad = Plan(good.lifetimes, offsets, max(b.size for b in good.lifetimes), "all-at-zero", 16)
    with pytest.raises(PlanError, match="which are live at the same time"):
        bad.validate()
    assert not np.array_equal(ArenaInterpreter(q, bad).run(x), ref)


def test_exact_planner_beats_greedy_and_proves_it():
    # largest first puts b2 and b5 (112 B each) where the 96 B and 48 B buffers then leave a hole
    bufs = [Buffer("b0", 96, 0, 1), Buffer("b1", 32, 3, 4), Buffer("b2", 112, 4, 4), Buffer("b3", 16, 3, 5),
            Buffer("b4", 48, 1, 3), Buffer("b5", 112, 2, 2)]
    lt = Lifetimes(bufs, [f"s{i}" for i in range(6)])
    plans = {p.planner: p for p in compare(lt, alignment=16, time_limit=5.0)}
    assert plans["greedy-size"].arena_bytes == 208 and plans["greedy-breadth"].arena_bytes == 208
    ex = plans["exact"]
    assert ex.arena_bytes == lt.lower_bound(16) == 160
    assert ex.info["optimal"] and ex.info["proven_bound_bytes"] == 160
    assert ex.info["solver"].startswith("scipy.optimize.milp") and ex.info["solver"].endswith("optimal")


def test_exact_planner_falls_back_within_its_time_limit():
    rng = np.random.default_rng(7)
    bufs = []
    for i in range(60):
        f = int(rng.integers(0, 40))
        bufs.append(Buffer(f"b{i}", int(rng.integers(1, 50)) * 16, f, f + int(rng.integers(0, 6))))
    lt = Lifetimes(bufs, [f"s{i}" for i in range(46)])
    p = plan(lt, "exact", time_limit=0.2)
    greedy = plan(lt, "greedy-size")
    assert p.arena_bytes <= greedy.arena_bytes and p.info["time_limit_s"] == 0.2
    assert p.info["proven_bound_bytes"] <= p.arena_bytes


# --------------------------------------------------------------------------- random schedules

@st.composite
def lifetimes(draw):
    n_steps = draw(st.integers(1, 12))
    n = draw(st.integers(1, 14))
    bufs = []
    for i in range(n):
        f = draw(st.integers(0, n_steps - 1))
        last = draw(st.integers(f, n_steps - 1))
        bufs.append(Buffer(f"b{i}", draw(st.integers(0, 300)), f, last))
    return Lifetimes(bufs, [f"s{i}" for i in range(n_steps)])


@given(lifetimes(), st.sampled_from([1, 4, 16]))
@settings(max_examples=40)
def test_planners_on_random_lifetimes(lt, alignment):
    plans = {p.planner: p for p in compare(lt, alignment=alignment, time_limit=1.0)}
    lb = lt.lower_bound(alignment)
    for p in plans.values():
        p.validate()
        assert p.arena_bytes >= lb
    assert plans["greedy-size"].arena_bytes <= plans["no-reuse"].arena_bytes
    assert plans["exact"].arena_bytes <= min(p.arena_bytes for p in plans.values())
    assert plans["exact"].info["proven_bound_bytes"] <= plans["exact"].arena_bytes


@st.composite
def random_dags(draw):
    """A random float CNN as a DAG: convs, depthwise convs, ReLUs, pools and adds on earlier tensors."""
    b = GraphBuilder("dag", seed=draw(st.integers(0, 1000)))
    c0 = draw(st.integers(1, 4))
    tensors = [b.input((8, 8, c0))]
    for i in range(draw(st.integers(1, 9))):
        x = tensors[draw(st.integers(0, len(tensors) - 1))]
        shape = b.graph.tensor(x).shape
        kind = draw(st.sampled_from(["conv", "dw", "relu", "pool", "add"]))
        if kind == "conv":
            y = b.conv2d(x, draw(st.integers(1, 6)), draw(st.sampled_from([1, 3])), padding="same",
                         activation=draw(st.sampled_from([None, "relu"])), name=f"n{i}")
        elif kind == "dw":
            y = b.depthwise_conv2d(x, 3, padding="same", name=f"n{i}")
        elif kind == "relu":
            y = b.relu(x, name=f"n{i}")
        elif kind == "pool":
            y = b.max_pool2d(x, 3, strides=1, padding="same", name=f"n{i}")
        else:
            same = [t for t in tensors if b.graph.tensor(t).shape == shape]
            y = b.add(x, same[draw(st.integers(0, len(same) - 1))], name=f"n{i}")
        tensors.append(y)
    used = {t for n in b.graph.nodes for t in n.inputs}
    outs = [t for t in tensors[1:] if t not in used] or [tensors[-1]]
    return b.build(outs)


@given(random_dags(), st.booleans())
@settings(max_examples=25)
def test_planners_on_random_graphs_run_bit_exact(g, inplace):
    x = np.random.default_rng(0).standard_normal((1,) + g.input_shape()).astype(np.float32)
    ref = Interpreter(g).run(x)
    for p in compare(g, inplace=inplace, time_limit=1.0):
        got = ArenaInterpreter(g, p).run(x)
        if isinstance(ref, tuple):
            assert all(np.array_equal(a, b) for a, b in zip(got, ref)), p.planner
        else:
            assert np.array_equal(got, ref), p.planner
