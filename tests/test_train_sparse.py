"""Sparse update schemes: parsing, resolution to tensors and channels, budgets, and the search."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_lab import zoo
from tinyml_lab.passes import fold_batchnorm, fuse_activations
from tinyml_lab.train import fit
from tinyml_lab.train.optim import SGD
from tinyml_lab.train.search import Contributions, prior_contributions, search_scheme
from tinyml_lab.train.sparse import (
    RATIOS, BudgetError, SchemeError, SparseScheme, layers, parse_budget, parse_ratio, top_channels,
)


@pytest.fixture(scope="module")
def digits():
    return fuse_activations(fold_batchnorm(zoo.get("digits-cnn")))


def test_named_schemes_resolve_to_tensors(digits):
    assert layers(digits) == ["conv1", "conv2", "dw1", "pw1", "fc"]
    full = SparseScheme.parse("full", digits).resolve(digits)
    assert len(full.trainable) == 10 and not full.channels
    bias = SparseScheme.parse("bias", digits).resolve(digits)
    assert set(bias.trainable) == {"conv1/bias", "conv2/bias", "dw1/bias", "pw1/bias", "fc/weight", "fc/bias"}
    assert SparseScheme.parse("last-k:1", digits).resolve(digits).trainable == ("fc/weight", "fc/bias")
    assert set(SparseScheme.parse("last-k:2", digits).resolve(digits).trainable) == {
        "pw1/weight", "pw1/bias", "fc/weight", "fc/bias"}


def test_explicit_scheme_picks_channels_by_weight_norm(digits):
    s = SparseScheme.parse("sparse:bias=1,pw1=1/4,dw1=0.5", digits)
    assert SparseScheme.parse(s.text(), digits).key() == s.key()  # the text form reads back
    sel = s.resolve(digits)
    assert set(sel.trainable) == {"pw1/weight", "pw1/bias", "dw1/weight", "fc/weight", "fc/bias"}
    w = digits.tensors["pw1/weight"].data
    norms = np.sqrt((w.reshape(32, -1) ** 2).sum(axis=1))
    assert list(sel.channels["pw1/weight"]) == sorted(np.argsort(-norms, kind="stable")[:8])
    assert sel.axes["dw1/weight"] == 3 and len(sel.channels["dw1/weight"]) == 8
    assert len(top_channels(digits, "pw1/weight", 0, 1 / 8)) == 4


def test_sparse_fit_changes_only_the_selected_channels(digits):
    g = digits.copy()
    s = SparseScheme.parse("sparse:bias=0,pw1=1/8", digits)
    idx = s.resolve(g).channels["pw1/weight"]
    rng = np.random.default_rng(0)
    x = rng.random((16, 16, 16, 1)).astype(np.float32)
    fit(g, x, rng.integers(0, 10, 16), epochs=1, optimizer=SGD(lr=0.1), trainable=s, quiet=True)
    changed = np.flatnonzero(np.any(g.tensors["pw1/weight"].data != digits.tensors["pw1/weight"].data, axis=(1, 2, 3)))
    assert set(changed) <= set(idx) and len(changed) > 0
    assert np.array_equal(g.tensors["conv2/weight"].data, digits.tensors["conv2/weight"].data)


@pytest.mark.parametrize("text, match", [
    ("sparse:bias=1,pw9=1/2", "no conv/dense layer 'pw9'.*its layers: conv1, conv2, dw1, pw1, fc"),
    ("sparse:pw1=1/3", "ratio '1/3' is not one of 0, 1/8, 1/4, 1/2, 1"),
    ("sparse:pw1", "not NAME=VALUE"),
    ("sparse:bias=x", "must be a number of layers"),
    ("sparse:bias=9", "exceeds the 4 layers below the classifier"),
    ("sparse:fc=1", "is the classifier"),
    ("last-k:0", "last-k needs 1 <= k <= 5"),
    ("last-2", "malformed scheme"),
    ("sparse", "give a budget"),
])
def test_bad_schemes_say_what_is_wrong(digits, text, match):
    with pytest.raises(SchemeError, match=match):
        SparseScheme.parse(text, digits)


def test_budgets_and_ratios_parse():
    assert parse_budget("100KB") == 102400 and parse_budget("0.5 MB") == 524288 and parse_budget("4096") == 4096
    assert parse_budget("256kib") == 262144
    for bad in ("", "KB", "-3KB", "12 parsecs", "0"):
        with pytest.raises(BudgetError, match="malformed memory budget"):
            parse_budget(bad)
    assert [parse_ratio(t) for t in ("0", "1/8", "0.25", "1/2", "1")] == list(RATIOS)


def test_search_respects_the_budget_and_is_seeded(digits):
    full_bytes = 25_952
    contrib = prior_contributions(digits)
    a = search_scheme(digits, 12_000, contrib, seed=3)
    b = search_scheme(digits, 12_000, contrib, seed=3)
    assert a.scheme.key() == b.scheme.key() and a.bytes <= 12_000
    assert a.gain >= contrib.gain(SparseScheme(0, ()))
    assert a.history == sorted(a.history)  # elitist: the best never gets worse
    big = search_scheme(digits, 10 * full_bytes, contrib)
    assert big.gain == pytest.approx(contrib.gain(SparseScheme.full(digits)))  # everything fits: train all
    # measured contributions steer the search: a gain on one layer only
    one = Contributions({k: 0.0 for k in range(5)}, {("conv2", 1.0): 0.1}, 0.5, 4)
    assert search_scheme(digits, 10 * full_bytes, one).scheme.weights == (("conv2", 1.0),)


def test_a_budget_nothing_fits_names_the_smallest(digits):
    with pytest.raises(BudgetError, match=r"smallest, the classifier alone, needs .* at least \d+KB"):
        search_scheme(digits, 1000)
