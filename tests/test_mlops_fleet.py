"""The fleet simulation: drift, retraining, signed rollouts, accounting and reproducibility."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from tinyml_lab.errors import AttributeValueError, TinyMLError
from tinyml_lab.mlops.continual import NRF52840_RADIO, radio_energy_mj
from tinyml_lab.mlops.fleet import Fleet, FleetConfig, simulate
from tinyml_lab.mlops.signing import signing_key

# a small fleet that still drifts, notices and recovers within a few seconds
SMALL = dict(devices=8, steps=26, t0=6, min_samples=192, batch_size=8, label_fraction=0.5)


def bad_model(fleet: Fleet):
    """The deployed model with its classifier rows rolled by one: it answers 'digit + 1'."""
    g = fleet.graphs["v1"].copy()
    for name in ("fc/weight", "fc/bias"):
        t = g.tensors[name]
        t.data = np.roll(t.data, 1, axis=0).copy()
    return g


@pytest.fixture(scope="module")
def recovered():
    return simulate(drift="sudden", strategy="none", retrain="sparse", seed=0, **SMALL)


def test_drift_triggered_sparse_update_recovers(recovered):
    r = recovered
    s = r.summary()
    a = r.fleet_accuracy()
    # before the shift the int8 digits CNN does what it does on held-out digits
    assert s["accuracy_before"] > 0.9
    # the 30 degree rotation costs most of it ...
    assert s["accuracy_after_shift"] < 0.45
    # ... the detector fires on the first shifted window, a sparse patch is released and served
    kinds = [(e["kind"], e["step"]) for e in r.events]
    trigger = next(t for k, t in kinds if k == "trigger")
    release = next(t for k, t in kinds if k == "release")
    assert 6 <= trigger <= 7 and release > trigger
    assert ("promote", release + 1) in kinds
    # ... and the fleet gets much of it back, on its streams and on held-out images
    assert a[-5:].mean() > s["accuracy_after_shift"] + 0.25
    assert s["recovered_share"] > 0.4 and s["time_to_recover"] is not None
    v1, v2 = r.versions[0], r.versions[1]
    assert v2["kind"] == "patch" and v2["status"] == "promoted"
    assert v2["holdout_shifted"] > v1["holdout_shifted"] + 0.3
    assert r.served[-1] == ["v2"] * 8
    # the patch holds only the trained tensors and is far smaller than the model
    assert set(v2["tensors"]) <= {"conv2/bias", "dw1/bias", "dw1/weight", "pw1/bias", "pw1/weight", "fc/weight",
                                  "fc/bias"}
    assert v2["package_bytes"] < v1["package_bytes"] / 2
    assert s["update_bytes"] == 8 * v2["package_bytes"]


def test_energy_accounting(recovered):
    s = recovered.summary()
    # radio: every byte sent, at the nRF52840's receive power and air bit rate
    expected = NRF52840_RADIO.rx_mw * 8 * s["update_bytes"] / NRF52840_RADIO.bitrate_bps
    assert s["radio_energy_mj"] == pytest.approx(expected, abs=1e-4)  # the summary keeps 4 decimals
    assert radio_energy_mj(1000) == pytest.approx(13.8 * 8e-3)
    # one device's worth of on-device training for the sparse update
    u = recovered.versions[1]["update"]
    assert s["device_train_mj"] == pytest.approx(u["device_train_mj"], abs=1e-4) and u["device_train_mj"] > 0
    assert u["training"]["samples"] == u["samples"] and u["training"]["epochs"] == 5
    assert s["update_energy_mj"] == pytest.approx(s["radio_energy_mj"] + s["device_train_mj"], abs=1e-3)
    # uplink: the labelled samples' int8 inputs and a label byte each
    assert s["uplink_bytes"] == 26 * 8 * 4 * (16 * 16 + 1)


def test_seeded_runs_are_identical():
    opts = dict(SMALL, steps=16, strategy="canary", tamper_rate=0.2)
    a = simulate(drift="sudden", seed=3, **opts).to_json()
    b = simulate(drift="sudden", seed=3, **opts).to_json()
    assert a == b
    c = simulate(drift="sudden", seed=4, **opts).to_json()
    assert c["accuracy"] != a["accuracy"]


def test_canary_rolls_a_bad_model_back_before_the_whole_fleet_gets_it():
    f = Fleet(devices=10, steps=40, drift="none", stage="manual", strategy="canary",
              strategy_params={"min_samples": 16}, seed=1)
    for _ in range(3):
        f.step()
    f.release(bad_model(f), reason="a deliberately bad model")
    while f.rollout is not None:
        f.step()
    r = f.report()
    ran_bad = {d for row in r.served for d, v in enumerate(row) if v == "v2"}
    assert 0 < len(ran_bad) < 10
    assert r.rollouts[0]["status"] == "rolled_back" and r.rollbacks == 1
    assert [e["kind"] for e in r.events] == ["release", "rollback"]
    # every device is back on v1, having kept it in its second bank (no bytes for the way back)
    assert all(d.slot.version == "v1" for d in f.devices)
    sent = int(r.update_bytes.sum())
    assert sent == len(ran_bad) * r.versions[1]["package_bytes"]
    f.step()
    assert f.report().accuracy[-1].mean() > 0.8


def test_tampered_packages_are_rejected_and_devices_keep_serving():
    f = Fleet(devices=10, steps=30, drift="none", stage="manual", strategy="none", tamper_rate=0.4, seed=2)
    f.step()
    good = f.graphs["v1"].copy()
    b = good.tensors["fc/bias"]
    b.data = (b.data + 1).astype(b.data.dtype)
    f.release(good)
    for _ in range(8):
        f.step()
    r = f.report()
    rejected = [e for e in r.events if e["kind"] == "rejected"]
    assert r.rejected == len(rejected) > 0
    for e in rejected:  # a device that rejected at a step served the model it had
        assert r.served[e["step"]][e["device"]] == "v1"
        assert "signature" in e["detail"] or "truncated" in e["detail"] or "magic" in e["detail"] \
            or "manifest" in e["detail"]
    # every delivery is paid for, the rejected ones too
    assert int(r.update_bytes.sum()) == (10 + r.rejected) * r.versions[1]["package_bytes"]
    assert r.served[-1] == ["v2"] * 10


def test_wrong_signing_key_installs_nothing():
    f = Fleet(devices=4, steps=10, drift="none", stage="manual", strategy="none", seed=0)
    f.key = signing_key(12345)  # the cloud signs with a key the devices do not trust
    f.step()
    good = f.graphs["v1"].copy()
    good.tensors["fc/bias"].data = (good.tensors["fc/bias"].data + 1).astype(np.int32)
    f.release(good)
    for _ in range(3):
        f.step()
    r = f.report()
    assert r.rejected == 12 and all(v == "v1" for row in r.served for v in row)
    assert all("another key" in e["detail"] for e in r.events if e["kind"] == "rejected")
    assert r.rollouts[0]["status"] == "running"


def test_manual_and_scheduled_stages():
    manual = simulate(drift="sudden", strategy="none", stage="manual", seed=0, **SMALL)
    assert manual.summary()["updates_released"] == 0
    assert manual.summary()["accuracy_end"] < 0.45
    sched = simulate(drift="none", strategy="none", stage="scheduled", every=10, seed=0,
                     retrain_params={"epochs": 1}, **dict(SMALL, steps=22))
    releases = [e["step"] for e in sched.events if e["kind"] == "release"]
    assert releases == [9, 20]  # every 10 steps after each model change


def test_no_drift_no_alarm():
    r = simulate(drift="none", strategy="canary", seed=5, **SMALL)
    assert r.summary()["updates_released"] == 0 and r.summary()["accuracy_before"] > 0.9


def test_full_retrain_ships_the_whole_model():
    r = simulate(drift="sudden", strategy="none", retrain="full", seed=0,
                 retrain_params={"epochs": 1, "replay": 64}, **SMALL)
    v2 = r.versions[1]
    assert v2["kind"] == "full" and v2["package_bytes"] > 10_000
    assert r.summary()["update_bytes"] == 8 * v2["package_bytes"]
    assert r.summary()["device_train_mj"] == 0.0
    assert v2["holdout_shifted"] > r.versions[0]["holdout_shifted"] + 0.2


def test_report_views(recovered):
    rows = recovered.timeline(5)
    assert [row["step"] for row in rows] == [0, 5, 10, 15, 20, 25]
    assert rows[-1]["served"] == {"v2": 8}
    fig = recovered.plot()
    ax = fig.axes[0]
    assert ax.get_ylabel() == "accuracy" and len(ax.lines) >= 2
    assert recovered.recovery()["accuracy_before"] == recovered.summary()["accuracy_before"]


@pytest.mark.parametrize("kwargs, match", [
    (dict(devices=0), "number of devices"),
    (dict(steps=-1), "steps"),
    (dict(strategy="blue-green"), "unknown strategy"),
    (dict(drift="sometimes"), "unknown drift"),
    (dict(retrain="partial"), "unknown retraining"),
    (dict(stage="auto"), "unknown stage"),
    (dict(tamper_rate=1.0), "tamper_rate"),
    (dict(label_fraction=0), "label_fraction"),
    (dict(devices=1, strategy="canary"), "at least 2"),
    (dict(seed=-1), "seed"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(AttributeValueError, match=match) as exc:
        FleetConfig(**kwargs).check()
    assert isinstance(exc.value, TinyMLError)


def test_stepping_past_the_end():
    f = Fleet(devices=2, steps=1, drift="none", strategy="none", stage="manual")
    f.run()
    with pytest.raises(AttributeValueError, match="all have run"):
        f.step()


def test_metrics_store_receives_the_fleet():
    from tinyml_lab.mcu import latency_ms
    from tinyml_lab.mlops.monitoring import MetricsStore

    store = MetricsStore(":memory:")
    f = Fleet(devices=3, steps=6, drift="none", strategy="none", stage="manual", store=store)
    for _ in range(4):
        f.step()
    r = f.report()
    assert store.devices() == ["0", "1", "2"]
    w = store.window(device="1")
    assert len(w) == 4 * 8 and int(w.labelled.sum()) == 4 * 4  # half of each batch of eight is labelled
    for t in range(4):
        at = w.confidence[w.timestamp == t]
        assert at.mean() == pytest.approx(r.confidence[t, 1], abs=1e-6)
    assert w.latency_ms[0] == pytest.approx(latency_ms(f.graphs["v1"], "nrf52840"))
    f.release(bad_model(f))
    f.step()
    assert [e["kind"] for e in store.events()] == ["release", "promote"]
    assert set(store.window(device="0", start=4).model_version) == {"v2"}
