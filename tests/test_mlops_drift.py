"""Drift detectors: reference checks against SciPy and plain loops, false-alarm rates on seeded no-shift
windows and streams, detection of stated shifts, and the errors on bad input.

False-alarm counts are checked against the binomial distribution of 200 independent trials at the
nominal level: at most its 99.9% quantile for every test, and at least its 0.1% quantile for the
permutation test (MMD), whose level is exact. KS is slightly conservative (its statistic is
discrete), PSI with a fixed threshold has no nominal level (its check is stated where it is made).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from strategies import seeds  # also loads the "ci" hypothesis profile
from tinyml_lab.errors import AttributeValueError, DataError, ShapeError, TinyMLError
from tinyml_lab.mlops.drift import (ADWIN, BBSEDrift, ChiSquareDrift, DriftResult, KSDrift, MMDDrift, PageHinkley,
                                    PSIDrift, _mmd2_split, adjust_p_values, chi2_homogeneity, ks_p_value,
                                    ks_statistic, mmd2_unbiased, squared_distances)

TRIALS = 200
ALPHA = 0.05
UPPER = int(stats.binom.ppf(0.999, TRIALS, ALPHA))  # 21 of 200
LOWER = int(stats.binom.ppf(0.001, TRIALS, ALPHA))  # 2 of 200


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def gaussian_windows(seed: int, n_ref: int = 200, n_win: int = 200, d: int = 10, shift: float = 0.0):
    """Reference and window from N(0, I); the window's feature 0 moved by ``shift`` standard deviations."""
    rng = np.random.default_rng(seed)
    ref, win = rng.normal(size=(n_ref, d)), rng.normal(size=(n_win, d))
    win[:, 0] += shift
    return ref, win


def alarms(make, trials: int = TRIALS, **kw) -> int:
    return sum(make().fit(ref).test(win).drift for ref, win in (gaussian_windows(s, **kw) for s in range(trials)))


# ----------------------------------------------------------------------------------------------
# reference checks


@given(st.lists(st.integers(-5, 5), min_size=1, max_size=30), st.lists(st.floats(-5, 5), min_size=1, max_size=30))
def test_ks_statistic_matches_scipy(a, b):
    a, b = np.array(a, float), np.array(b, float)  # integers make ties, within and across samples
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert ks_statistic(b, a) == pytest.approx(stats.ks_2samp(b, a).statistic, abs=1e-12)


def test_ks_detector_statistics_and_p_values_against_scipy():
    ref, win = gaussian_windows(3, n_ref=150, n_win=80, d=4, shift=0.4)
    res = KSDrift().fit(ref).test(win)
    for j in range(4):
        sp = stats.ks_2samp(ref[:, j], win[:, j], method="asymp")
        assert res.details["statistic_per_feature"][j] == pytest.approx(sp.statistic, abs=1e-12)
        assert res.details["p_value_per_feature"][j] == pytest.approx(sp.pvalue, abs=0.025)
    d = np.linspace(0.05, 0.5, 46)
    for n, m in [(20, 20), (200, 200), (1000, 200)]:
        exact = stats.kstwo.sf(d, round(n * m / (n + m)))
        small = exact < 0.2
        assert np.abs(ks_p_value(d, n, m) - exact)[small].max() < 0.007


@given(st.lists(st.floats(0, 1), min_size=1, max_size=25))
def test_adjusted_p_values(p):
    p = np.array(p)
    assert np.allclose(adjust_p_values(p, "bonferroni"), np.minimum(1, p * p.size))
    assert np.allclose(adjust_p_values(p, "fdr"), stats.false_discovery_control(p, method="bh"))


@given(st.integers(2, 3), st.integers(2, 6), seeds)
def test_chi2_homogeneity_matches_scipy(rows, cols, seed):
    table = np.random.default_rng(seed).integers(1, 40, size=(rows, cols))
    stat, dof, p = chi2_homogeneity(table)
    ref = stats.chi2_contingency(table, correction=False)
    assert stat == pytest.approx(ref.statistic, rel=1e-9)
    assert dof == ref.dof
    assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


def test_chi_square_detector_builds_the_table_over_categories_seen_in_either():
    ref = np.array([["a", "x"], ["a", "y"], ["b", "x"], ["b", "x"], ["c", "y"]] * 20)
    win = np.array([["a", "x"], ["d", "y"], ["d", "y"], ["b", "x"]] * 15)
    det = ChiSquareDrift().fit(ref)
    (cats0, t0), (cats1, t1) = det.contingency(win)
    assert cats0 == ["a", "b", "c", "d"] and t0.tolist() == [[40, 40, 20, 0], [15, 15, 0, 30]]
    assert cats1 == ["x", "y"] and t1.tolist() == [[60, 40], [30, 30]]
    res = det.test(win)
    assert res.details["unseen_categories"] == [["d"], []]
    for j, t in enumerate((t0, t1)):
        assert res.details["statistic_per_feature"][j] == pytest.approx(
            stats.chi2_contingency(t, correction=False).statistic)
    assert res.drift and res.details["drifted_features"].tolist() == [0]


def mmd2_loops(x, y, sigma):
    """MMD²_u written as the definition: three double loops."""
    def k(a, b):
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * sigma**2))
    n, m = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return xx + yy - 2 * xy


@given(st.integers(2, 7), st.integers(2, 7), st.integers(1, 3), st.floats(0.3, 3.0), seeds)
def test_mmd2_matches_double_loop(n, m, d, sigma, seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, d)), rng.normal(0.5, 1.5, size=(m, d))
    assert mmd2_unbiased(x, y, sigma) == pytest.approx(mmd2_loops(x, y, sigma), abs=1e-12)
    # the permutation path: any split of the pooled kernel matrix gives the same number
    z = np.vstack([x, y])
    k = np.exp(-squared_distances(z, z) / (2 * sigma**2))
    np.fill_diagonal(k, 1.0)
    idx = rng.permutation(n + m)
    a = np.zeros((1, n + m))
    a[0, idx[:n]] = 1
    assert _mmd2_split(k, k.sum(1), a, n)[0] == pytest.approx(mmd2_loops(z[idx[:n]], z[idx[n:]], sigma), abs=1e-12)


def test_mmd_seeded_and_median_bandwidth():
    ref, win = gaussian_windows(1, n_ref=60, n_win=40, d=3, shift=0.3)
    a = MMDDrift(n_permutations=99, seed=7).fit(ref).test(win)
    b = MMDDrift(n_permutations=99, seed=7).fit(ref).test(win)
    assert a.p_value == b.p_value and a.statistic == b.statistic
    assert a.statistic == pytest.approx(mmd2_unbiased(ref, win, a.details["bandwidth"]))
    dist = np.sqrt(squared_distances(ref, ref)[np.triu_indices(60, 1)])
    assert a.details["bandwidth"] == pytest.approx(np.median(dist))
    assert 1 / 100 <= a.p_value <= 1


def test_psi_by_hand():
    ref = np.arange(1, 101, dtype=float)  # deciles: edges at 10.9, 20.8, ... -> 10 bins of 10
    det = PSIDrift(n_bins=10).fit(ref)
    assert np.allclose(det.reference_proportions_[0], 0.1)
    win = np.r_[np.full(50, 5.0), np.full(50, 95.0)]  # half in the first bin, half in the last
    q = np.full(10, 1e-4)
    q[0] = q[-1] = 0.5
    expected = np.sum((q - 0.1) * np.log(q / 0.1))
    res = det.test(win)
    assert res.statistic == pytest.approx(expected)
    assert res.drift and res.threshold == 0.2 and res.p_value is None


def test_psi_null_scale_is_chi_square():
    """With no shift, PSI is about (1/n + 1/m) chi²(B-1): its mean is (1/n + 1/m)(B-1)."""
    psis = np.concatenate([PSIDrift().fit(r).psi(w) for r, w in
                           (gaussian_windows(s, n_ref=1000, n_win=250, d=10) for s in range(40))])
    assert psis.mean() == pytest.approx((1 / 1000 + 1 / 250) * 9, rel=0.15)


def label_shift_sample(rng, n, prior, confusion):
    """Labels drawn from ``prior``, predictions from P(ŷ | y) = confusion[:, y]."""
    y = rng.choice(len(prior), size=n, p=prior)
    cum = np.cumsum(confusion[:, y], axis=0)
    y_hat = (rng.random(n)[None, :] > cum).sum(axis=0)
    return y, np.minimum(y_hat, len(prior) - 1)


CONFUSION = np.array([[0.80, 0.10, 0.05, 0.10], [0.10, 0.70, 0.10, 0.10],
                      [0.05, 0.10, 0.80, 0.10], [0.05, 0.10, 0.05, 0.70]])  # columns: P(ŷ | y)


def test_bbse_recovers_label_distribution():
    rng = np.random.default_rng(0)
    y, y_hat = label_shift_sample(rng, 20000, [0.25] * 4, CONFUSION)
    det = BBSEDrift().fit(y_hat, y)
    assert np.allclose(det.confusion_.sum(axis=0), np.bincount(y) / y.size)
    target = np.array([0.1, 0.2, 0.3, 0.4])
    _, y_win = label_shift_sample(rng, 20000, target, CONFUSION)
    res = det.test(y_win)
    assert res.drift
    assert np.abs(res.details["target_label_distribution"] - target).max() < 0.03
    assert np.allclose(res.details["weights"], target / 0.25, atol=0.15)
    # exact algebra: a window whose predicted distribution is C w gives back w
    w = np.array([0.4, 0.8, 1.2, 1.6])
    q = det.confusion_ @ w
    assert np.allclose(np.linalg.solve(det.confusion_, q), w)
    scores = np.eye(4)[y_win]  # (m, K) scores are reduced by argmax
    assert det.test(scores).statistic == pytest.approx(res.statistic)


# ----------------------------------------------------------------------------------------------
# false alarms and power of the window detectors


@pytest.mark.parametrize("correction", ["bonferroni", "fdr"])
def test_ks_false_alarms_and_power(correction):
    assert alarms(lambda: KSDrift(ALPHA, correction)) <= UPPER
    # 0.5 sd in one feature of 10, window 200: detected in about 92% of trials
    assert alarms(lambda: KSDrift(ALPHA, correction), trials=50, shift=0.5) >= 40


def test_mmd_false_alarms_are_nominal_and_power():
    assert LOWER <= alarms(lambda: MMDDrift(ALPHA, n_permutations=100), n_ref=100, n_win=100) <= UPPER
    # 0.5 sd in one feature of 10, window 200: detected in about 95% of trials
    assert alarms(lambda: MMDDrift(ALPHA, n_permutations=100), trials=40, shift=0.5) >= 33


def test_psi_false_alarms_and_power():
    # threshold 0.2 at reference 1000 and window 500: the null PSI of a feature is about 0.027, so a
    # false alarm is rarer than the nominal 5% (none in these trials)
    assert alarms(PSIDrift, trials=100, n_ref=1000, n_win=500) <= stats.binom.ppf(0.999, 100, ALPHA)
    # 0.75 sd in one feature of 10 (PSI about 0.55)
    assert alarms(PSIDrift, trials=50, n_ref=1000, n_win=500, shift=0.75) >= 48


def categorical_windows(seed: int, shift: bool, n: int = 200):
    rng = np.random.default_rng(seed)
    p = np.array([0.4, 0.3, 0.2, 0.1])
    ref = rng.choice(4, size=(n, 3), p=p)
    win = rng.choice(4, size=(n, 3), p=p)
    if shift:  # feature 1: 0.4, 0.3, 0.2, 0.1 -> 0.25, 0.3, 0.2, 0.25
        win[:, 1] = rng.choice(4, size=n, p=[0.25, 0.3, 0.2, 0.25])
    return ref, win


def test_chi_square_false_alarms_and_power():
    null = sum(ChiSquareDrift().fit(r).test(w).drift for r, w in (categorical_windows(s, False) for s in range(TRIALS)))
    assert null <= UPPER
    hit = sum(ChiSquareDrift().fit(r).test(w).drift for r, w in (categorical_windows(s, True) for s in range(50)))
    assert hit >= 42


def test_bbse_false_alarms_and_power():
    def trial(seed, prior):
        rng = np.random.default_rng(seed)
        y, y_hat = label_shift_sample(rng, 1000, [0.25] * 4, CONFUSION)
        _, y_win = label_shift_sample(rng, 200, prior, CONFUSION)
        return BBSEDrift().fit(y_hat, y).test(y_win).drift
    assert sum(trial(s, [0.25] * 4) for s in range(TRIALS)) <= UPPER
    # class 0 from 25% to 45% of the window, the others shrinking alike
    assert sum(trial(s, [0.45, 0.55 / 3, 0.55 / 3, 0.55 / 3]) for s in range(50)) >= 42


# ----------------------------------------------------------------------------------------------
# streaming detectors


def error_stream(seed: int, n: int = 2000, change: int | None = None, before: float = 0.1, after: float = 0.4):
    """0/1 errors at rate ``before``, then ``after`` from index ``change``."""
    rng = np.random.default_rng(seed)
    p = np.full(n, before)
    if change is not None:
        p[change:] = after
    return (rng.random(n) < p).astype(float)


@pytest.mark.parametrize("make", [PageHinkley, lambda: PageHinkley(delta=0.05, threshold=20), ADWIN],
                         ids=["page-hinkley", "page-hinkley-tuned", "adwin"])
def test_stream_detectors_quiet_then_fast(make):
    quiet = [make().test(error_stream(s)) for s in range(20)]
    assert sum(len(r.details["detections"]) for r in quiet) == 0  # 40,000 stationary elements
    for s in range(20):  # error rate 0.1 -> 0.4 at element 1000
        det = make().test(error_stream(100 + s, change=1000)).details["detections"]
        assert det and 1000 <= det[0] < 1000 + 400, det


def test_stream_update_matches_test():
    x = error_stream(5, change=800)
    for det in (PageHinkley(delta=0.05, threshold=20), ADWIN(clock=8)):
        hits = [i for i, v in enumerate(x) if det.update(v)]
        assert hits and hits == det.test(x).details["detections"]
        det.reset()
        assert not det.drift_detected and det.n_seen_ == 0


@given(st.lists(st.floats(0, 1), min_size=1, max_size=300), st.integers(2, 5), st.sampled_from([1, 4, 32]))
def test_adwin_window_is_the_latest_elements(xs, max_buckets, clock):
    """The exponential histogram keeps exact sums and variances: the window's mean and variance are those
    of the last ``width_`` elements, and no size holds more than ``max_buckets`` buckets."""
    det = ADWIN(delta=0.1, max_buckets=max_buckets, clock=clock)
    for x in xs:
        det.update(x)
    tail = np.array(xs[len(xs) - det.width_:])
    assert det.mean_ == pytest.approx(tail.mean(), abs=1e-9)
    assert det.variance_ == pytest.approx(tail.var(), abs=1e-9)
    assert sum(len(r) * 2**i for i, r in enumerate(det._rows)) == det.width_
    assert all(len(r) <= max_buckets for r in det._rows)


def test_adwin_cut_bound():
    det = ADWIN(delta=0.01)
    for x in error_stream(0, n=400):
        det.update(x)
    n0, n1, n = 100, det.width_ - 100, det.width_
    m = 1 / (1 / n0 + 1 / n1)
    log = math.log(2 * n / 0.01)
    assert det._cut_epsilon(n0, n1) == pytest.approx(math.sqrt(2 / m * det.variance_ * log) + 2 / (3 * m) * log)
    det.bound = "hoeffding"
    assert det._cut_epsilon(n0, n1) == pytest.approx(math.sqrt(math.log(4 * n / 0.01) / (2 * m)))


def test_page_hinkley_by_hand():
    det = PageHinkley(delta=0.1, threshold=1.0, alpha=1.0, min_instances=1)
    # means 0, 0, 1/3: m = -0.1, -0.2, -0.2 + (1 - 1/3 - 0.1) = 0.3667; min -0.2 -> 0.5667
    assert [det.update(v) for v in (0.0, 0.0, 1.0)] == [False, False, False]
    assert det.statistic_ == pytest.approx(1 - 1 / 3 - 0.1 + 0.2 - 0.2)
    # mean 1/2: m = 0.3667 + 0.4 = 0.7667 -> 0.9667; then mean 3/5: + 0.3 -> 1.2667 > 1
    assert det.update(1.0) is False
    assert det.update(1.0) is True and det.drift_detected
    down = PageHinkley(delta=0.0, threshold=3, direction="down", min_instances=1).test(np.r_[np.ones(50), np.zeros(50)])
    assert down.drift and 50 <= down.details["detections"][0] < 60


def test_result_is_json_ready():
    res = KSDrift().fit(np.arange(50.0)).test(np.arange(50.0) + 25)
    assert isinstance(res, DriftResult)
    out = json.loads(json.dumps(res.to_dict()))
    assert out["drift"] is True and out["details"]["drifted_features"] == [0]


# ----------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("make, fit_args", [
    (KSDrift, (np.zeros((20, 3)),)), (PSIDrift, (np.random.default_rng(0).normal(size=(20, 3)),)),
    (MMDDrift, (np.random.default_rng(0).normal(size=(20, 3)),)), (ChiSquareDrift, (np.zeros((20, 3)),)),
])
def test_window_bad_input(make, fit_args):
    with pytest.raises(DataError, match="not fitted"):
        make().test(np.zeros((5, 3)))
    det = make().fit(*fit_args)
    with pytest.raises(ShapeError, match="window has 2 feature.*reference had 3"):
        det.test(np.zeros((5, 2)))
    bad = np.zeros((5, 3))
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN or infinite.*sample 2, feature 1"):
        det.test(bad)
    bad[2, 1] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        det.test(bad)
    with pytest.raises(DataError, match="empty"):
        det.test(np.zeros((0, 3)))
    with pytest.raises(DataError, match="empty"):
        make().fit(np.zeros((0, 3)))


@pytest.mark.parametrize("make", [
    lambda: KSDrift(alpha=0).fit(np.zeros(5)), lambda: KSDrift(alpha=1.0).fit(np.zeros(5)),
    lambda: ChiSquareDrift(alpha=-0.1).fit(np.zeros(5)), lambda: MMDDrift(alpha=2).fit(np.ones((5, 1))),
    lambda: BBSEDrift(alpha=1.5).fit([0, 1], [0, 1]), lambda: ADWIN(delta=0.0), lambda: ADWIN(delta=1.0),
    lambda: PageHinkley(alpha=0.0), lambda: PageHinkley(alpha=1.01), lambda: KSDrift(correction="holm").fit([1.0]),
    lambda: PSIDrift(threshold=-1).fit([1.0]), lambda: MMDDrift(n_permutations=0).fit(np.ones((5, 1))),
    lambda: PageHinkley(direction="sideways"), lambda: ADWIN(bound="chernoff"),
])
def test_bad_parameters(make):
    with pytest.raises(AttributeValueError, match="alpha|delta|correction|threshold|n_permutations|direction|bound"):
        make()


def test_stream_and_label_bad_input():
    for det in (PageHinkley(), ADWIN()):
        with pytest.raises(DataError, match="stream is empty"):
            det.test([])
        with pytest.raises(DataError, match="NaN or infinite.*index 2"):
            det.test([0.0, 1.0, np.nan])
        with pytest.raises(DataError, match="NaN"):
            det.update(float("nan"))
        with pytest.raises(ShapeError, match="1-D"):
            det.test(np.zeros((3, 2)))
    with pytest.raises(DataError, match="values in \\[0, 1\\]"):
        ADWIN(bound="hoeffding").update(3.0)
    with pytest.raises(DataError, match="not fitted.*fit\\(y_pred, y_true\\)"):
        BBSEDrift().test([0, 1])
    with pytest.raises(DataError, match="class 2 has no sample"):
        BBSEDrift(n_classes=3).fit([0, 1, 0, 1], [0, 1, 0, 1])
    with pytest.raises(DataError, match="singular"):
        BBSEDrift().fit([0, 0, 0, 0], [0, 1, 0, 1])
    det = BBSEDrift().fit([0, 1, 0, 1], [0, 1, 0, 1])
    with pytest.raises(DataError, match="label 5"):
        det.test([0, 5])
    with pytest.raises(DataError, match="empty"):
        det.test([])
    with pytest.raises(ShapeError, match="3 class scores.*2 classes"):
        det.test(np.zeros((4, 3)))
    with pytest.raises(DataError, match="missing value"):
        ChiSquareDrift().fit(np.array(["a", None, "b"], dtype=object))
    with pytest.raises(DataError, match="at least 2"):
        MMDDrift().fit(np.random.default_rng(0).normal(size=(5, 2))).test(np.ones((1, 2)))
    with pytest.raises(DataError, match="every reference point is the same.*bandwidth="):
        MMDDrift().fit(np.ones((5, 2)))
    assert issubclass(DataError, TinyMLError)
