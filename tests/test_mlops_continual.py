"""Continual learning: triggers, the learner's data selection, retrainers and the device cost model."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_lab import zoo
from tinyml_lab.errors import AttributeValueError, DataError
from tinyml_lab.mcu import get_device, latency_ms
from tinyml_lab.mlops.continual import (
    ContinualLearner,
    DriftTriggered,
    Manual,
    ModelState,
    Scheduled,
    SparseUpdate,
    changed_tensors,
    make_retrainer,
    make_trigger,
    radio_energy_mj,
    training_cost,
)
from tinyml_lab.passes import fold_batchnorm, fuse_activations
from tinyml_lab.quant import quantize_model
from tinyml_lab.train import SparseScheme


@pytest.fixture(scope="module")
def models():
    from tinyml_lab.data import load_digits

    d = load_digits(16)
    f = fuse_activations(fold_batchnorm(zoo.get("digits-cnn")))
    return d, f, quantize_model(f, d.x_train[:128])


def layer_macs(g) -> dict[str, int]:
    return {n.name: s.macs for n, s in zip(g.nodes, g.layer_stats())}


def test_training_macs_match_a_count_by_hand(models):
    _, _, q = models
    macs = layer_macs(q)
    # the classifier alone: the forward pass, then dW of fc; no input gradient anywhere
    head = training_cost(q, SparseScheme.last_k(q, 1), 1, 1)
    assert head.macs_per_sample == q.macs + macs["fc"]
    # everything: forward, dW of every layer, dx of every layer but the first (nothing needs d(input))
    full = training_cost(q, SparseScheme.full(q), 1, 1)
    assert full.macs_per_sample == q.macs + q.macs + (q.macs - macs["conv1"])
    # half the channels of pw1: its dW costs half
    s = SparseScheme.parse("sparse:bias=0,pw1=1/2", q)
    half = training_cost(q, s, 1, 1)
    assert half.macs_per_sample == q.macs + macs["fc"] + macs["pw1"] // 2 + _dx_above(q, "pw1")


def _dx_above(q, layer: str) -> int:
    """MACs of the input gradients of the conv/dense layers above ``layer`` (which need to pass d down)."""
    names = [n.name for n in q.nodes if n.op in ("Conv2D", "DepthwiseConv2D", "Dense")]
    macs = layer_macs(q)
    return sum(macs[n] for n in names[names.index(layer) + 1:])


def test_training_energy_is_power_times_time(models):
    _, _, q = models
    c = training_cost(q, SparseScheme.last_k(q, 2), samples=100, epochs=3, device="nrf52840")
    dev = get_device("nrf52840")
    assert c.latency_ms == pytest.approx(1000 * c.cycles_per_sample * 300 / dev.clock_hz)
    assert c.energy_mj == pytest.approx(dev.active_power_mw * c.latency_ms / 1000)
    # a sample's training step costs more than its inference, and less than 4 inferences
    infer_ms = latency_ms(q, dev)
    step_ms = c.latency_ms / 300
    assert infer_ms < step_ms < 4 * infer_ms


def test_radio_energy():
    assert radio_energy_mj(0) == 0.0
    assert radio_energy_mj(125_000) == pytest.approx(13.8)  # 1 Mbit at 1 Mbit/s: one second at 13.8 mW
    assert radio_energy_mj(10, receive=False) == pytest.approx(4.8 * 3.0 * 80 / 1e6)
    with pytest.raises(AttributeValueError):
        radio_energy_mj(-1)


def test_changed_tensors(models):
    _, _, q = models
    g = q.copy()
    assert changed_tensors(q, g) == {}
    g.tensors["pw1/bias"].data = g.tensors["pw1/bias"].data + 1
    assert list(changed_tensors(q, g)) == ["pw1/bias"]


def test_sparse_update_changes_only_its_tensors(models):
    d, f, q = models
    state = ModelState("v1", q, f, q, f)
    u = SparseUpdate("sparse:bias=1,pw1=1/2", epochs=1).retrain(state, d.x_train[:64], d.y_train[:64], True)
    trainable = set(SparseScheme.parse("sparse:bias=1,pw1=1/2", q).resolve(q).trainable)
    assert u.kind == "patch" and set(u.tensors) <= trainable and u.tensors
    for name, t in q.tensors.items():
        if t.is_const and name not in u.tensors:
            np.testing.assert_array_equal(u.int8.tensors[name].data, t.data)
    # pw1 is trained on half its output channels: the other half is untouched
    w_old, w_new = q.tensors["pw1/weight"].data, u.int8.tensors["pw1/weight"].data
    rows_changed = np.flatnonzero((w_old != w_new).reshape(w_old.shape[0], -1).any(axis=1))
    assert len(rows_changed) <= w_old.shape[0] // 2
    assert u.device_train_mj > 0 and u.samples == 64


def test_scheduled_and_manual_triggers():
    s = Scheduled(every=5)
    assert [t for t in range(12) if s.fire(t)] == [4, 5, 6, 7, 8, 9, 10, 11]  # due until someone retrains
    s.reset(5)
    assert [t for t in range(5, 16) if s.fire(t)][0] == 9
    assert Manual().fire(100) is None


def test_drift_trigger_fires_on_a_shift_and_not_before():
    rng = np.random.default_rng(0)
    trig = DriftTriggered("ks", alpha=0.001, window=2, reference_steps=3)
    fired = []
    for t in range(20):
        mean = 0.9 if t < 12 else 0.6
        conf = np.clip(rng.normal(mean, 0.05, 200), 0, 1)
        trig.observe(t, conf, np.zeros(10))
        if trig.fire(t):
            fired.append(t)
    assert fired and fired[0] == 12


def test_streaming_trigger_on_errors():
    rng = np.random.default_rng(1)
    trig = DriftTriggered("page-hinkley")
    fired = []
    for t in range(30):
        errors = (rng.random(40) < (0.05 if t < 15 else 0.7)).astype(float)
        trig.observe(t, np.zeros(1), errors)
        if trig.fire(t):
            fired.append(t)
    assert fired and 15 <= fired[0] <= 17


def test_learner_waits_for_labelled_evidence(models):
    d, f, q = models
    learner = ContinualLearner("stateful", SparseUpdate(epochs=1), every=2, min_samples=50)
    due = []
    for t in range(3):
        learner.observe(t, d.x_train[t * 20:(t + 1) * 20], d.y_train[t * 20:(t + 1) * 20], np.ones(20),
                        np.zeros(20))
        due.append(learner.due(t))
    # the schedule fires at step 1, but only 40 labelled samples exist then; at step 2 there are 60
    assert due[0] is None and due[1] is None and due[2] is not None
    u = learner.retrain(ModelState("v1", q, f, q, f), 2)
    assert u.samples == 60 and u.stateful and u.reason.startswith("schedule")
    with pytest.raises(DataError):
        ContinualLearner("manual").retrain(ModelState("v1", q, f, q, f), 0)


@pytest.mark.parametrize("make", [
    lambda: make_trigger("hourly"), lambda: make_retrainer("half"), lambda: ContinualLearner("auto"),
    lambda: DriftTriggered("cusum"), lambda: DriftTriggered(alpha=2.0), lambda: Scheduled(0),
    lambda: SparseUpdate(lr=0), lambda: make_retrainer("full", epochs=0),
])
def test_bad_input(make):
    with pytest.raises(AttributeValueError):
        make()
