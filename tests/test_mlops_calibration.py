"""Calibration: ECE against a direct loop, ~0 for a calibrated predictor, temperature scaling on an over-confident one."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from strategies import seeds  # noqa: E402
from tinyml_lab.errors import AttributeValueError, DataError, ShapeError  # noqa: E402
from tinyml_lab.mlops import (  # noqa: E402
    TemperatureScaling,
    expected_calibration_error,
    maximum_calibration_error,
    nll,
    plot_reliability,
    reliability_diagram,
    softmax,
)


def direct_ece_mce(probs, labels, n_bins):
    """The spec, written as a loop: bin b holds confidences in (b/B, (b+1)/B], bin 0 also holds 0."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    ece, mce = 0.0, 0.0
    for b in range(n_bins):
        lo, hi = edges[b], edges[b + 1]
        in_bin = (conf > lo) & (conf <= hi)
        if b == 0:
            in_bin |= conf == 0
        if in_bin.any():
            gap = abs(correct[in_bin].mean() - conf[in_bin].mean())
            ece += in_bin.sum() / len(conf) * gap
            mce = max(mce, gap)
    return ece, mce


def calibrated_sample(seed, n, k, concentration=1.0):
    """Probabilities from a Dirichlet and labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, concentration), size=n)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return p, np.minimum(y, k - 1)


@given(seed=seeds, n=st.integers(1, 300), k=st.integers(2, 6), n_bins=st.integers(1, 25),
       grid=st.booleans())
def test_ece_matches_a_direct_loop(seed, n, k, n_bins, grid):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, 0.5), size=n)
    if grid:  # put many confidences exactly on bin edges
        top = rng.integers(0, n_bins + 1, size=n) / n_bins
        top = np.maximum(top, 1 / k)
        p = np.column_stack([top] + [(1 - top) / (k - 1)] * (k - 1))
    y = rng.integers(0, k, n)
    ece, mce = direct_ece_mce(p, y, n_bins)
    assert expected_calibration_error(p, y, n_bins) == pytest.approx(ece, abs=1e-12)
    assert maximum_calibration_error(p, y, n_bins) == pytest.approx(mce, abs=1e-12)
    d = reliability_diagram(p, y, n_bins)
    assert d.counts.sum() == n and d.bin_edges.shape == (n_bins + 1,)


def test_reliability_diagram_by_hand():
    p = np.array([[0.95, 0.05], [0.9, 0.1], [0.6, 0.4], [0.45, 0.55], [0.5, 0.5]])
    y = np.array([0, 1, 0, 0, 0])
    d = reliability_diagram(p, y, n_bins=2)
    # confidences 0.95, 0.9, 0.6, 0.55, 0.5 -> bin 1 holds all but 0.5 (bin 0 holds (0, 0.5])
    np.testing.assert_array_equal(d.counts, [1, 4])
    np.testing.assert_allclose(d.confidence, [0.5, (0.95 + 0.9 + 0.6 + 0.55) / 4])
    np.testing.assert_allclose(d.accuracy, [1.0, 0.5])
    assert d.ece() == pytest.approx(0.2 * 0.5 + 0.8 * 0.25) and d.mce() == pytest.approx(0.5)
    # binary input as P(class 1)
    assert expected_calibration_error(p[:, 1], y, 2) == pytest.approx(d.ece())


def test_calibrated_predictor_has_near_zero_ece():
    p, y = calibrated_sample(0, 100_000, 4)
    assert expected_calibration_error(p, y) < 0.01
    # a sharpened copy of the same probabilities is over-confident
    sharp = softmax(np.log(p) * 3.0)
    assert expected_calibration_error(sharp, y) > 0.1


def test_temperature_scaling_repairs_an_over_confident_model():
    p, y = calibrated_sample(1, 20_000, 5, concentration=0.7)
    logits = np.log(p) * 2.5  # the same ranking, over-confident by a factor 2.5
    val, test = slice(0, 10_000), slice(10_000, None)
    ts = TemperatureScaling().fit(logits[val], y[val])
    assert ts.temperature_ == pytest.approx(2.5, rel=0.05)
    assert ts.nll_after_ < ts.nll_before_
    before = expected_calibration_error(softmax(logits[test]), y[test])
    after = expected_calibration_error(ts.transform(logits[test]), y[test])
    assert after < before / 4 and after < 0.02
    assert nll(logits[test], y[test], ts.temperature_) < nll(logits[test], y[test])
    # the ranking does not change
    np.testing.assert_array_equal(ts.transform(logits).argmax(axis=1), logits.argmax(axis=1))


def test_temperature_fit_is_the_nll_minimum():
    p, y = calibrated_sample(2, 3000, 3)
    logits = np.log(p) * 0.5  # under-confident: T < 1
    ts = TemperatureScaling().fit(logits, y)
    assert ts.temperature_ < 1
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 2001))
    best = grid[np.argmin([nll(logits, y, t) for t in grid])]
    assert ts.temperature_ == pytest.approx(best, rel=0.01)


def test_softmax_and_nll_by_hand():
    z = np.array([[0.0, np.log(3.0)], [1000.0, 0.0]])
    np.testing.assert_allclose(softmax(z), [[0.25, 0.75], [1.0, 0.0]])
    np.testing.assert_allclose(softmax(z[:1], temperature=2.0), [[1 / (1 + np.sqrt(3)), np.sqrt(3) / (1 + np.sqrt(3))]])
    assert nll(z, np.array([1, 0])) == pytest.approx(-np.log(0.75) / 2)


def test_plot_reliability_draws_bars_and_diagonal():
    p, y = calibrated_sample(3, 2000, 3)
    ax = plot_reliability(reliability_diagram(p, y, 10), title="calibrated")
    assert ax.get_title() == "calibrated" and ax.get_xlim() == (0.0, 1.0)
    assert len(ax.patches) >= 10 and len(ax.lines) == 1
    assert ax.get_legend().get_title().get_text().startswith("ECE ")
    plt.close(ax.figure)


def test_bad_input():
    with pytest.raises(DataError, match="sum to 1"):
        expected_calibration_error(np.array([[0.5, 0.6]]), [0])
    with pytest.raises(DataError, match="NaN"):
        reliability_diagram(np.array([[np.nan, 1.0]]), [0])
    with pytest.raises(ShapeError, match="rows"):
        expected_calibration_error(np.array([[0.5, 0.5]]), [0, 1])
    with pytest.raises(DataError, match="empty"):
        expected_calibration_error(np.zeros((0, 2)), [])
    with pytest.raises(AttributeValueError, match="n_bins"):
        reliability_diagram(np.array([[0.5, 0.5]]), [0], n_bins=0)
    with pytest.raises(DataError, match="class 2"):
        TemperatureScaling().fit(np.zeros((2, 2)), [0, 2])
    with pytest.raises(AttributeValueError, match="not fitted"):
        TemperatureScaling().transform(np.zeros((1, 2)))
    with pytest.raises(AttributeValueError, match="temperature"):
        softmax(np.zeros((1, 2)), temperature=0)
    with pytest.raises(AttributeValueError, match="bounds"):
        TemperatureScaling(bounds=(2.0, 3.0))
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        reliability_diagram(np.array([1.2, 0.3]), [0, 1])
