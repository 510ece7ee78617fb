"""Buffer lifetimes of graphs and schedules, share groups and the lower bound."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_lab import GraphBuilder, zoo
from tinyml_lab.memory import (Buffer, LifetimeError, Lifetimes, deployed_graph, graph_lifetimes,
                               schedule_lifetimes)


def chain():
    b = GraphBuilder("chain", seed=0)
    x = b.input((8, 8, 2))
    y = b.conv2d(x, 4, 3, padding="same", name="c1")
    z = b.relu(y, name="r1")
    s = b.add(z, z, name="sum")
    return b.build(b.global_avg_pool(s, name="gap"))


def test_graph_lifetimes_follow_the_schedule():
    g = chain()
    lt = graph_lifetimes(g)
    assert lt.steps == ["c1", "r1", "sum", "gap"]
    assert {b.name for b in lt} == {"input", "c1", "r1", "sum", "gap"}  # constants stay in flash
    assert (lt["input"].first, lt["input"].last, lt["input"].kind) == (0, 0, "input")
    assert (lt["c1"].first, lt["c1"].last) == (0, 1)
    assert (lt["r1"].first, lt["r1"].last) == (1, 2)
    assert (lt["gap"].first, lt["gap"].last, lt["gap"].kind) == (3, 3, "output")
    assert lt["c1"].size == 8 * 8 * 4 * 4  # float32 bytes
    q = deployed_graph(g)
    assert graph_lifetimes(q)["r1"].size == 8 * 8 * 4  # int8: one byte per value


def test_lower_bound_is_the_largest_live_sum():
    lt = graph_lifetimes(chain())
    live = lt.live_bytes()
    assert live.tolist() == [512 + 1024, 1024 + 1024, 1024 + 1024, 1024 + 16]
    assert lt.lower_bound() == 2048
    assert lt.lower_bound(alignment=1000) == 4000  # sizes rounded up first
    assert lt.total_bytes == 512 + 1024 * 3 + 16


def test_inplace_links_elementwise_ops_to_dying_inputs():
    g = chain()
    lt = graph_lifetimes(g, inplace=True)
    assert lt["r1"].may_share_with == "c1"  # ReLU over the conv output, which dies at step 1
    assert lt["sum"].may_share_with == "r1"  # Add over its (doubled) dying input
    groups = lt.groups()
    big = [grp for grp in groups if "c1" in grp.members][0]
    assert big.members == ("c1", "r1", "sum") and (big.first, big.last) == (0, 3)
    assert lt.lower_bound() == 512 + 1024


def test_inplace_depthwise_adds_a_one_channel_scratch():
    q = deployed_graph(zoo.get("kws-dscnn"))
    lt = graph_lifetimes(q, inplace=True)
    scratch = [b for b in lt if b.kind == "scratch"]
    assert len(scratch) == 4 and all(b.size == 25 * 5 and b.first == b.last for b in scratch)
    dw = [n for n in q.nodes if n.op == "DepthwiseConv2D"]
    for n in dw:
        assert lt[n.outputs[0]].may_share_with == n.inputs[0]
    assert not any(b.kind == "scratch" for b in lt.without_sharing())


def test_lifetimes_reject_inconsistent_buffers():
    with pytest.raises(LifetimeError, match="outside the schedule"):
        Lifetimes([Buffer("a", 4, 0, 3)], ["s0", "s1"])
    with pytest.raises(LifetimeError, match="appears twice"):
        Lifetimes([Buffer("a", 4, 0, 0), Buffer("a", 4, 0, 0)], ["s0"])
    with pytest.raises(LifetimeError, match="dies at the step"):
        Lifetimes([Buffer("a", 4, 0, 2), Buffer("b", 4, 1, 2, may_share_with="a")], ["s0", "s1", "s2"])
    with pytest.raises(LifetimeError, match="does not exist"):
        Lifetimes([Buffer("b", 4, 0, 0, may_share_with="z")], ["s0"])
    with pytest.raises(LifetimeError, match="no buffer named"):
        Lifetimes([Buffer("a", 4, 0, 0)], ["s0"])["b"]


def test_schedule_lifetimes_entry_point():
    steps = [("fwd", ["x", "w"], ["y"]), ("loss", ["y"], ["g"]), ("bwd", ["g", "x"], ["gw"]),
             ("update", ["gw", "w"], ["w"])]
    lt = schedule_lifetimes(steps, {"x": 100, "w": 40, "y": 10, "g": 10, "gw": 40}, keep=["w"],
                            inputs=["x", "w"])
    assert (lt["x"].first, lt["x"].last) == (0, 2)
    assert (lt["w"].first, lt["w"].last) == (0, 3)
    assert (lt["gw"].first, lt["gw"].last) == (2, 3)
    assert lt.lower_bound() == 100 + 40 + 10 + 40
    with pytest.raises(LifetimeError, match="before any step writes it"):
        schedule_lifetimes([("s", ["nope"], ["y"])], {"y": 1})
    with pytest.raises(LifetimeError, match="no size given"):
        schedule_lifetimes([("s", [], ["y"])], {})
