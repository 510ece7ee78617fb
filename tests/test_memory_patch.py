"""Patch-based inference (MCUNetV2): identical outputs, the peak memory it saves, the MACs it costs."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pytest

from tinyml_lab import GraphBuilder, zoo
from tinyml_lab.interpreter import Interpreter
from tinyml_lab.memory import PatchError, deployed_graph, graph_lifetimes, plan_patches, sample_input
from tinyml_lab.memory.patch import STAGE_OPS, Region, cut_points


@lru_cache(maxsize=None)
def deployed(name: str):
    q = deployed_graph(zoo.get(name))
    x = sample_input(q, 2, seed=5)
    return q, x, Interpreter(q).run(x)


@pytest.mark.parametrize("name", ["mobilenetv2", "vww-mobilenetv1"])
def test_four_by_four_patches_give_identical_outputs(name):
    q, x, ref = deployed(name)
    p = plan_patches(q, 4)
    assert np.array_equal(p.run(x), ref)
    assert np.array_equal(p.run(x, backend="reference"), ref)
    assert p.peak_bytes_unpatched == graph_lifetimes(q).lower_bound()
    assert p.peak_bytes_patched < p.peak_bytes_unpatched
    assert p.extra_macs > 0 and p.stats["patched_stage_macs"] == p.stats["stage_macs"] + p.extra_macs


def test_mobilenetv2_peak_memory_cut_is_in_the_mcunetv2_range():
    # MCUNetV2 (Lin et al., NeurIPS 2021) reports a 4-8x smaller peak for MobileNetV2 at 4x4 patches
    q, _, _ = deployed("mobilenetv2")
    p = plan_patches(q, 4)
    assert 4.0 <= p.peak_bytes_unpatched / p.peak_bytes_patched <= 8.0
    assert 0.0 < p.stats["mac_overhead"] < 0.5


def test_receptive_field_of_a_small_chain():
    b = GraphBuilder("rf", seed=0)
    x = b.input((16, 16, 1))
    y = b.conv2d(x, 2, 3, strides=2, padding="same", name="c1")  # 8x8, pads top 0, bottom 1
    z = b.conv2d(y, 2, 3, padding="same", name="c2")  # 8x8, pads (1, 1)
    g = b.build(b.global_avg_pool(z, name="gap"))
    p = plan_patches(g, 2, split="c2")
    top_left = p.regions[0]
    assert top_left["c2"] == Region(0, 4, 0, 4)
    assert top_left["c1"] == Region(0, 5, 0, 5)  # rows -1..4 needed, clipped at the border
    assert top_left["input"] == Region(0, 11, 0, 11)  # rows 0 .. (5 - 1) 2 + 3 = 11
    bottom_right = p.regions[3]
    assert bottom_right["c1"] == Region(3, 8, 3, 8) and bottom_right["input"] == Region(6, 16, 6, 16)
    xin = np.random.default_rng(0).standard_normal((1, 16, 16, 1)).astype(np.float32)
    assert np.array_equal(p.run(xin), Interpreter(g).run(xin))
    c1_per_pixel = 3 * 3 * 1 * 2
    assert p.extra_macs == c1_per_pixel * (4 * 25 - 64)  # c1 computes 5x5 of its 8x8 per patch; c2 4x4


def test_cut_points_and_errors():
    q, _, _ = deployed("vww-mobilenetv1")
    cuts = cut_points(q)
    assert cuts == list(range(len(cuts)))  # a chain: every spatial layer ends a possible stage
    assert all(q.nodes[k].op in STAGE_OPS for k in cuts) and q.nodes[len(cuts)].op == "Flatten"
    with pytest.raises(PatchError, match="not a cut point"):
        plan_patches(q, 2, split=len(q.nodes) - 1)
    with pytest.raises(PatchError, match=">= 1"):
        plan_patches(q, 0)
    ad = deployed_graph(zoo.get("ad-autoencoder"))
    with pytest.raises(PatchError, match="no place to end a first stage"):
        plan_patches(ad, 2)


def test_counting_the_input_image_raises_the_patched_peak():
    q, _, _ = deployed("mobilenetv2")
    a = plan_patches(q, 4, split="block2_add")
    b = plan_patches(q, 4, split="block2_add", count_input=True)
    assert b.stats["stage_peak_bytes"] == a.stats["stage_peak_bytes"] + 128 * 128 * 3
    assert a.to_json()["split"] == "block2_add"
