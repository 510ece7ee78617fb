"""Rollout strategies on synthetic fleets whose versions have known accuracies, and their statistics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

import strategies  # noqa: F401  (loads the ci profile)
from tinyml_lab.errors import AttributeValueError, TinyMLError
from tinyml_lab.mlops.rollout import (
    ABTest,
    Canary,
    Direct,
    Outcome,
    Shadow,
    ThompsonBandit,
    ab_sample_size,
    make_rollout,
    mcnemar_exact,
    two_proportion_z,
)


def drive(rollout, accuracy: dict, devices: int = 20, steps: int = 200, labelled: int = 4, seed: int = 0,
          on_step=None) -> list:
    """Run ``rollout`` of 'v2' against 'v1' where version v answers right with probability accuracy[v]."""
    rng = np.random.default_rng(seed)
    rollout.start("v1", "v2", range(devices), step=0, seed=seed)
    served = []
    for t in range(steps):
        outcomes, row = [], []
        for d in range(devices):
            r = rollout.route(d, t)
            row.append(r.serve)
            right = rng.random(labelled) < accuracy[r.serve]
            outcomes.append(Outcome(d, r.serve, int(right.sum()), labelled))
            if r.shadow is not None:
                other = rng.random(labelled) < accuracy[r.shadow]
                outcomes.append(Outcome(d, r.shadow, int(other.sum()), labelled, served=False,
                                        wins=int((other & ~right).sum()), losses=int((~other & right).sum())))
        served.append(row)
        rollout.observe(outcomes)
        rollout.decide(t)
        if on_step is not None:
            on_step(t, rollout)
        if not rollout.running:
            break
    return served


# --------------------------------------------------------------------------- statistics

@given(ca=st.integers(0, 60), na=st.integers(1, 60), cb=st.integers(0, 60), nb=st.integers(1, 60))
def test_z_test_matches_chi_square(ca, na, cb, nb):
    ca, cb = min(ca, na), min(cb, nb)
    z, p = two_proportion_z(ca, na, cb, nb)
    table = np.array([[ca, na - ca], [cb, nb - cb]])
    if (table.sum(axis=0) == 0).any():
        assert (z, p) == (0.0, 1.0)
        return
    chi2, p_chi, _, _ = stats.chi2_contingency(table, correction=False)
    assert z ** 2 == pytest.approx(chi2, rel=1e-9, abs=1e-12)
    assert p == pytest.approx(p_chi, rel=1e-7, abs=1e-12)
    assert np.sign(z) == np.sign(cb / nb - ca / na)


def test_mcnemar_is_the_binomial_tail():
    b, c = 3, 14
    n = b + c
    tail = sum(stats.binom.pmf(k, n, 0.5) for k in range(0, b + 1))
    assert mcnemar_exact(b, c) == pytest.approx(min(1.0, 2 * tail))
    assert mcnemar_exact(0, 0) == 1.0


def test_sample_size_gives_the_power_it_promises():
    pa, pb = 0.80, 0.88
    n = ab_sample_size(pa, pb, alpha=0.05, power=0.8)
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(600):
        z, p = two_proportion_z(int(rng.binomial(n, pa)), n, int(rng.binomial(n, pb)), n)
        hits += p < 0.05
    assert 0.74 < hits / 600 < 0.86, (n, hits / 600)


# --------------------------------------------------------------------------- strategies

def test_direct_promotes_at_once():
    served = drive(Direct(), {"v1": 0.5, "v2": 0.5}, steps=5)
    assert served[0] == ["v2"] * 20 and len(served) == 1


def test_canary_rolls_a_bad_model_back_before_the_fleet_gets_it():
    c = Canary(stages=(0.1, 0.25, 0.5, 1.0), min_samples=32, margin=0.02)
    served = drive(c, {"v1": 0.9, "v2": 0.1})
    assert c.status_ == "rolled_back" and c.winner_ == "v1"
    exposed = {d for row in served for d, v in enumerate(row) if v == "v2"}
    assert len(exposed) == c.cohort_size(0) == 2 < 20
    assert [d.action for d in c.decisions_] == ["start", "rollback"]
    assert c.route(5, 999).serve == "v1"


def test_canary_promotes_a_good_model_stage_by_stage():
    c = Canary(min_samples=32)
    sizes = []
    served = drive(c, {"v1": 0.6, "v2": 0.9}, on_step=lambda t, r: sizes.append(len(r.cohort_)))
    assert c.status_ == "promoted" and c.winner_ == "v2"
    assert [d.action for d in c.decisions_] == ["start", "expand", "expand", "promote"]
    assert sorted(set(sizes)) == [2, 5, 10, 20]
    assert served[0].count("v2") == 2


def test_canary_tolerates_a_drop_within_the_margin():
    c = Canary(min_samples=400, margin=0.05)
    drive(c, {"v1": 0.90, "v2": 0.88}, steps=2000, seed=3)
    assert c.status_ == "promoted"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ab_detects_a_real_difference(seed):
    n = ab_sample_size(0.80, 0.90, power=0.95)
    ab = ABTest(n_per_arm=n)
    drive(ab, {"v1": 0.80, "v2": 0.90}, steps=5000, seed=seed)
    assert ab.status_ == "promoted", ab.decisions_[-1].detail
    assert min(ab.counts_.n("v1"), ab.counts_.n("v2")) >= n


def test_ab_does_not_find_a_null_difference():
    outcomes = []
    for seed in range(100):
        ab = ABTest(n_per_arm=200)
        drive(ab, {"v1": 0.85, "v2": 0.85}, steps=5000, seed=seed)
        outcomes.append(ab.status_)
    assert outcomes[0] == "kept"
    false_positives = np.mean([s != "kept" for s in outcomes])
    assert false_positives <= 0.10  # alpha = 0.05; a binomial(100, 0.05) exceeds 10 with p < 0.03


def test_ab_rolls_back_a_worse_candidate_and_split_is_seeded():
    ab = ABTest(n_per_arm=300)
    drive(ab, {"v1": 0.9, "v2": 0.75}, steps=5000, seed=4)
    assert ab.status_ == "rolled_back"
    again = ABTest(n_per_arm=300).start("v1", "v2", range(20), seed=4)
    assert again.arm_b_ == ab.arm_b_ and len(ab.arm_b_) == 10


def test_thompson_concentrates_traffic_on_the_better_version():
    b = ThompsonBandit(threshold=0.999, min_samples=10_000_000, max_steps=60)
    served = drive(b, {"v1": 0.6, "v2": 0.8}, steps=60)
    late = np.array(served[30:])
    assert (late == "v2").mean() > 0.9
    early = np.array(served[0])
    assert 0.2 < (early == "v2").mean() < 0.8  # before any evidence, a coin toss
    assert b.status_ == "promoted" and b.winner_ == "v2"
    # routing is a pure function of (seed, step, device, evidence)
    assert b.route(3, 10) == b.route(3, 10)


def test_thompson_ends_when_one_version_is_clearly_best():
    b = ThompsonBandit(threshold=0.95, min_samples=100)
    drive(b, {"v1": 0.9, "v2": 0.3})
    assert b.status_ == "rolled_back" and b.winner_ == "v1"
    assert b.decisions_[-1].stats["prob_best"] >= 0.95


def test_shadow_never_serves_and_reports_the_comparison():
    s = Shadow(min_samples=400)
    served = drive(s, {"v1": 0.5, "v2": 0.9})
    assert all(v == "v1" for row in served for v in row)
    assert s.status_ == "evaluated" and s.winner_ == "v1" and s.verdict_ == "better"
    assert s.summary()["shadow_accuracy"] == pytest.approx(0.9, abs=0.05)
    same = Shadow(min_samples=400)
    drive(same, {"v1": 0.7, "v2": 0.7}, seed=5)
    assert same.verdict_ == "no difference"


@pytest.mark.parametrize("make", [
    lambda: Canary(stages=(0.1, 0.5)), lambda: Canary(stages=(0.5, 0.2, 1.0)), lambda: Canary(margin=-0.1),
    lambda: ABTest(split=1.0), lambda: ABTest(n_per_arm=0), lambda: ThompsonBandit(threshold=1.5),
    lambda: Shadow(alpha=0), lambda: make_rollout("blue-green"),
])
def test_bad_parameters(make):
    with pytest.raises(AttributeValueError):
        make()


def test_bad_use():
    with pytest.raises(AttributeValueError, match="has not started"):
        Canary().route(0, 0)
    with pytest.raises(AttributeValueError, match="at least 2 devices"):
        Canary().start("v1", "v2", [0])
    with pytest.raises(AttributeValueError, match="same version"):
        ABTest().start("v1", "v1", range(4))
    with pytest.raises(TinyMLError):
        two_proportion_z(5, 3, 1, 2)
    with pytest.raises(AttributeValueError):
        ab_sample_size(0.5, 0.5)
