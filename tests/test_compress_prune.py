"""Unstructured magnitude pruning, its fine-tuning, the sensitivity scan, and sparse storage costs.

Observed on the trained digits CNN (float 0.9711): 50% of every layer's weights zeroed gives
0.36 at once (BatchNorm statistics no longer fit; re-estimating them gives 0.85) and 0.96-0.97
after 5 epochs of masked fine-tuning.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import seeds
from tinyml_lab import zoo
from tinyml_lab.compress import (
    MagnitudePruner,
    encode_bitmask,
    encode_csr,
    fine_tune,
    format_sensitivity,
    graph_storage,
    recalibrate_batchnorm,
    sensitivity_scan,
    storage_cost,
    total_storage,
    weight_sparsity,
)
from tinyml_lab.errors import AttributeValueError, GraphError
from tinyml_lab.quant.tasks import task_for


@pytest.fixture(scope="module")
def digits():
    g = zoo.get("digits-cnn")
    return g, task_for(g)


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9])
def test_layer_scope_removes_exactly_that_fraction_of_the_smallest(digits, sparsity):
    g, _ = digits
    pruner = MagnitudePruner(sparsity).fit(g)
    pruned = pruner.transform(g)
    for node in g.nodes:
        if node.op not in ("Conv2D", "DepthwiseConv2D", "Dense"):
            continue
        w, p = g.weights(node)["weight"].data, pruned.weights(node)["weight"].data
        assert int((p == 0).sum()) == math.floor(sparsity * w.size)
        if 0 < sparsity:
            assert np.abs(w[p == 0]).max() <= np.abs(w[p != 0]).min()
    assert not any((g.weights(n)["weight"].data == 0).any() for n in g.nodes if n.op == "Conv2D")  # untouched
    assert pruned.metadata["pruning"]["scope"] == "layer"


def test_global_scope_uses_one_threshold(digits):
    g, _ = digits
    pruned = MagnitudePruner(0.6, scope="global").fit_transform(g)
    kept, dropped = [], []
    for node in pruned.nodes:
        if node.op in ("Conv2D", "DepthwiseConv2D", "Dense"):
            w0, w1 = g.weights(node)["weight"].data, pruned.weights(node)["weight"].data
            kept.append(np.abs(w0[w1 != 0]))
            dropped.append(np.abs(w0[w1 == 0]))
    assert np.concatenate(dropped).max() <= np.concatenate(kept).min()
    s = weight_sparsity(pruned)
    assert len(set(round(v, 2) for v in s.values())) > 1  # layers lose different fractions
    n_dropped = sum(d.size for d in dropped)
    assert n_dropped == math.floor(0.6 * (n_dropped + sum(k.size for k in kept)))


def test_masked_fine_tuning_keeps_the_zeros_and_wins_back_accuracy(digits):
    g, task = digits
    pruner = MagnitudePruner(0.5).fit(g)
    pruned = pruner.transform(g)
    before = task.score(pruned)
    recalibrate_batchnorm(pruned, task.x_train)
    recalibrated = task.score(pruned)
    fine_tune(pruned, task.x_train, task.y_train, epochs=5, masks=pruner.masks_)
    assert before < recalibrated < task.score(pruned)
    assert task.score(pruned) >= task.score(g) - 0.02
    for name, mask in pruner.masks_.items():
        assert not pruned.tensors[name].data[~mask].any()


def test_sensitivity_scan_one_layer_at_a_time(digits):
    g, task = digits
    rows = sensitivity_scan(g, task.score, sparsities=(0.5, 0.9), layers=["conv1", "fc"])
    assert rows[0]["layer"] is None and rows[0]["score"] == task.score(g)
    assert [(r["layer"], r["sparsity"]) for r in rows[1:]] == [("conv1", 0.5), ("conv1", 0.9), ("fc", 0.5), ("fc", 0.9)]
    assert rows[2]["nonzero_weights"] < rows[1]["nonzero_weights"] < rows[0]["nonzero_weights"]
    assert "conv1" in format_sensitivity(rows, "accuracy")
    structured = sensitivity_scan(g, task.score, sparsities=(0.5,), structured=True)
    assert {r["layer"] for r in structured[1:]} == {"conv1", "conv2", "pw1"}
    assert all(r["macs"] < g.macs for r in structured[1:])


@given(seeds, st.integers(1, 40), st.integers(1, 300), st.floats(0.0, 1.0), st.sampled_from([4, 8, 32]))
def test_storage_costs_are_the_sizes_of_the_encodings(seed, rows, cols, density, bits):
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((rows, cols)) * (rng.random((rows, cols)) < density)
    cost = storage_cost(m, bits)
    nnz = int((m != 0).sum())
    mask, values = encode_bitmask(m)
    vals, col, ptr = encode_csr(m)
    assert cost.nnz == nnz == values.size == vals.size
    assert cost.dense_bytes == math.ceil(rows * cols * bits / 8)
    assert cost.bitmask_bytes == math.ceil(rows * cols / 8) + math.ceil(nnz * bits / 8) == mask.nbytes + math.ceil(
        nnz * bits / 8)
    assert cost.csr_bytes == math.ceil(nnz * bits / 8) + col.nbytes + ptr.nbytes
    assert col.itemsize == (1 if cols <= 256 else 2) and ptr.size == rows + 1 and ptr[-1] == nnz
    dense = np.zeros_like(m)
    for r in range(rows):  # CSR decodes back
        dense[r, col[ptr[r]:ptr[r + 1]]] = vals[ptr[r]:ptr[r + 1]]
    np.testing.assert_array_equal(dense, m)
    np.testing.assert_array_equal(np.unpackbits(mask)[: m.size].astype(bool), (m != 0).ravel())


def test_which_format_wins_depends_on_sparsity():
    w = np.random.default_rng(0).standard_normal((64, 288))
    at = {s: storage_cost(np.where(np.abs(w) > np.quantile(np.abs(w), s), w, 0), 32) for s in (0.0, 0.5, 0.98)}
    assert at[0.0].best == "dense" and at[0.5].best == "bitmask" and at[0.98].best == "csr"
    # at 8 bits a bitmask needs more than 1/8 zeros to beat dense
    assert storage_cost(np.where(np.abs(w) > np.quantile(np.abs(w), 0.1), w, 0), 8).best == "dense"


def test_graph_storage_of_a_pruned_model(digits):
    g, _ = digits
    pruned = MagnitudePruner(0.75).fit_transform(g)
    totals = total_storage(graph_storage(pruned))
    assert totals["bitmask"] < totals["dense"] / 3 and totals["best"] <= min(totals["bitmask"], totals["csr"])
    assert totals["dense"] == total_storage(graph_storage(g))["dense"]


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, float("nan"), True, "half"])
def test_sparsity_outside_zero_one_is_refused(bad):
    with pytest.raises(AttributeValueError, match=r"\[0, 1\)"):
        MagnitudePruner(bad)


def test_bad_layers_and_masks_are_refused(digits):
    g, task = digits
    with pytest.raises(GraphError, match="not a conv or dense layer"):
        MagnitudePruner(0.5, layers=["gap"]).fit(g)
    with pytest.raises(AttributeValueError):
        MagnitudePruner(0.5, scope="model")
    with pytest.raises(AttributeValueError, match="not fitted"):
        MagnitudePruner(0.5).transform(g)
    with pytest.raises(GraphError, match="matches no weight"):
        fine_tune(g.copy(), task.x_train[:8], task.y_train[:8], epochs=1, masks={"conv1/weight": np.ones(3, bool)})
