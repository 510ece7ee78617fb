"""Leakage detectors: each leak is built on purpose and found; a clean split gives an empty report."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from tinyml_lab.errors import AttributeValueError, DataError, ShapeError
from tinyml_lab.mlops import (
    check_duplicates,
    check_feature_times,
    check_scaler,
    check_target_leakage,
    check_time_split,
    detect_leakage,
    find_duplicates,
    find_near_duplicates,
    single_feature_scores,
)


@pytest.fixture
def clean():
    """A time-ordered binary task with five honest features (each only weakly predictive)."""
    rng = np.random.default_rng(0)
    n, f = 400, 5
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, f)) + 0.8 * y[:, None]
    t = np.arange(n, dtype=float)
    train, test = np.arange(300), np.arange(300, n)  # the last quarter in time is the test set
    feature_times = t[:, None] - rng.uniform(1, 5, size=(n, f))  # every value known before the label
    return dict(x=x, y=y, t=t, train=train, test=test, feature_times=feature_times)


def test_clean_split_has_no_findings(clean):
    x, y, t, tr, te = clean["x"], clean["y"], clean["t"], clean["train"], clean["test"]
    report = detect_leakage(x[tr], y[tr], x[te], train_times=t[tr], test_times=t[te],
                            feature_times=clean["feature_times"][tr], label_times=t[tr],
                            scaler=StandardScaler().fit(x[tr]), decimals=3, cosine_threshold=0.999)
    assert report.clean, str(report)
    assert report.checks == ["duplicates", "time order", "feature timing", "preprocessing", "target"]
    assert "No leakage found" in str(report)


# ---------------------------------------------------------------- duplicates


def test_exact_duplicates_are_found(clean):
    x, tr, te = clean["x"], clean["train"], clean["test"]
    x_test = x[te].copy()
    x_test[[3, 50, 77]] = x[tr][[10, 20, 30]]
    np.testing.assert_array_equal(find_duplicates(x[tr], x_test), [[3, 10], [50, 20], [77, 30]])
    (finding,) = check_duplicates(x[tr], x_test)
    assert finding.kind == "duplicate" and finding.message.startswith("3 of 100 test rows (3.0%)")
    # -0.0 and 0.0 are the same value
    assert find_duplicates(np.array([[0.0, 1.0]]), np.array([[-0.0, 1.0]])).shape == (1, 2)


def test_near_duplicates_by_rounding_and_by_cosine(clean):
    x, tr, te = clean["x"], clean["train"], clean["test"]
    x_test = x[te].copy()
    x_test[5] = x[tr][1] + 1e-7          # re-encoded copy: equal after rounding
    x_test[6] = 3.0 * x[tr][2]            # rescaled copy: same direction
    x_test[7] = x[tr][3]                  # exact copy
    findings = check_duplicates(x[tr], x_test, decimals=4, cosine_threshold=0.9999)
    assert [f.kind for f in findings] == ["duplicate", "near-duplicate"]
    np.testing.assert_array_equal(findings[0].details["pairs"], [[7, 3]])
    np.testing.assert_array_equal(findings[1].details["pairs"], [[5, 1], [6, 2]])
    cos = find_near_duplicates(x[tr], x_test, threshold=0.9999)
    assert {int(r) for r in cos[:, 0]} == {5, 6, 7} and (cos[:, 2] > 0.9999).all()
    # cosine against a direct computation for one pair
    a, b = x[tr][2], x_test[6]
    assert cos[cos[:, 0] == 6][0, 2] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# ---------------------------------------------------------------- time


def test_random_split_of_time_series_is_flagged(clean):
    t = clean["t"]
    perm = np.random.default_rng(1).permutation(t.size)
    tr, te = perm[:300], perm[300:]
    (finding,) = check_time_split(t[tr], t[te])
    assert finding.kind == "time-order" and "older than the newest training row" in finding.message
    assert finding.details["test_rows"].size == np.sum(t[te] < t[tr].max())
    assert check_time_split(t[clean["train"]], t[clean["test"]]) == []


def test_datetime_times():
    train = np.array(["2024-01-01", "2024-02-01"], dtype="datetime64[D]")
    test = np.array(["2024-01-15", "2024-03-01"], dtype="datetime64[D]")
    (finding,) = check_time_split(train, test)
    assert "1 of 2 test rows" in finding.message and "2024-02-01" in finding.message


def test_feature_computed_after_the_label_is_flagged(clean):
    ft = clean["feature_times"].copy()
    t = clean["t"]
    ft[:, 3] = t + 2.0  # feature 3 is filled in after the outcome is known
    (finding,) = check_feature_times(ft, t, feature_names=["a", "b", "c", "refund_flag", "e"])
    assert finding.kind == "feature-time" and "'refund_flag'" in finding.message
    assert finding.details["rows"].size == t.size


# ---------------------------------------------------------------- preprocessing


def test_scaler_fitted_on_all_data_is_flagged(clean):
    x, tr, te = clean["x"], clean["train"], clean["test"]
    (finding,) = check_scaler(StandardScaler().fit(x), x[tr], x[te])
    assert finding.kind == "preprocessing" and "training split only" in finding.message
    assert check_scaler(StandardScaler().fit(x[tr]), x[tr], x[te]) == []
    # the same with plain statistics (sample std, ddof=1) and with a min-max scaler
    assert check_scaler({"mean": x.mean(0), "std": x.std(0, ddof=1)}, x[tr], x[te])
    x_test = x[te].copy()
    x_test[0] = x.max(axis=0) + 1.0  # the largest values sit in the test set
    full = np.concatenate([x[tr], x_test])
    assert check_scaler(MinMaxScaler().fit(full), x[tr], x_test)
    assert check_scaler(MinMaxScaler().fit(x[tr]), x[tr], x_test) == []


def test_scaler_bad_input(clean):
    x = clean["x"]
    with pytest.raises(AttributeValueError, match="StandardScaler"):
        check_scaler(object(), x, x)
    with pytest.raises(ShapeError, match="features"):
        check_scaler({"mean": np.zeros(2)}, x, x)
    with pytest.raises(AttributeValueError, match="mean, std, min, max"):
        check_scaler({"median": np.zeros(5)}, x, x)


# ---------------------------------------------------------------- target leakage


def test_target_leak_is_flagged_and_honest_features_are_not(clean):
    x, y = clean["x"].copy(), clean["y"]
    scores = single_feature_scores(x, y)
    assert (scores > 0.55).all() and (scores < 0.8).all()
    leaky = np.column_stack([x, y * 10.0 + np.random.default_rng(2).normal(0, 0.5, y.size)])
    (finding,) = check_target_leakage(leaky, y)
    assert finding.kind == "target" and finding.details["feature"] == 5 and finding.details["score"] > 0.99
    assert check_target_leakage(x, y) == []


def test_single_feature_score_on_a_categorical_leak():
    # three classes, a feature that is the label's code word: perfect; pure noise: near chance 1/3
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    x = np.column_stack([np.array([7.0, -2.0, 4.0])[y], rng.normal(size=600)])
    s = single_feature_scores(x, y)
    assert s[0] == 1.0 and abs(s[1] - 1 / 3) < 0.08


def test_a_rare_binary_leak_gets_its_own_bin():
    # a 0/1 feature equal to a label whose positive class is rarer than one bin (1/n_bins of the rows):
    # quantile cuts all fall on 0, so without a bin per distinct value the leak would score at chance
    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.013).astype(int)
    x = np.column_stack([y.astype(float), rng.normal(size=2000)])
    s = single_feature_scores(x, y, n_bins=20)
    assert s[0] == 1.0 and s[1] < 0.7
    assert [f.kind for f in check_target_leakage(x, y, feature_names=["work_order", "noise"])] == ["target"]


# ---------------------------------------------------------------- the report


def test_report_lists_every_leak_with_a_sentence(clean):
    x, y, t = clean["x"], clean["y"], clean["t"]
    perm = np.random.default_rng(1).permutation(t.size)
    tr, te = perm[:300], perm[300:]
    leaky = np.column_stack([x, y + 0.01 * np.random.default_rng(3).normal(size=y.size)])
    x_train, x_test = leaky[tr], leaky[te].copy()
    x_test[0] = x_train[0]
    ft = np.column_stack([clean["feature_times"], t + 1])
    report = detect_leakage(x_train, y[tr], x_test, train_times=t[tr], test_times=t[te], feature_times=ft[tr],
                            label_times=t[tr], scaler=StandardScaler().fit(np.concatenate([x_train, x_test])),
                            feature_names=["a", "b", "c", "d", "e", "outcome_code"])
    assert report.kinds() == {"duplicate", "time-order", "feature-time", "preprocessing", "target"}
    text = str(report)
    assert text.startswith("5 possible leak(s)") and text.count("\n- [") == 5
    assert all(f.message.endswith(".") for f in report.findings)


def test_detector_bad_input(clean):
    x = clean["x"]
    with pytest.raises(DataError, match="NaN"):
        detect_leakage(np.full((3, 2), np.nan))
    with pytest.raises(ShapeError, match="features"):
        find_duplicates(x, x[:, :2])
    with pytest.raises(AttributeValueError, match="both train_times"):
        detect_leakage(x, train_times=clean["t"])
    with pytest.raises(ShapeError, match="rows"):
        check_feature_times(clean["feature_times"], clean["t"][:10])
    with pytest.raises(DataError, match="empty"):
        check_time_split([], [1.0])
    with pytest.raises(ShapeError, match="rows"):
        single_feature_scores(x, clean["y"][:5])
