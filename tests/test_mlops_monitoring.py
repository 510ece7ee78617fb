"""Metrics store: round trips, window queries, alert rules, drift checks, the dashboard, atomic batches
under SIGKILL, and the errors on bad input."""

from __future__ import annotations

import math
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from tinyml_lab.errors import AttributeValueError, DataError, FileFormatError, ShapeError
from tinyml_lab.mlops.dashboard import dashboard
from tinyml_lab.mlops.drift import BBSEDrift, ChiSquareDrift, KSDrift
from tinyml_lab.mlops.monitoring import SCHEMA_VERSION, AlertRule, MetricsStore

ROOT = Path(__file__).resolve().parents[1]


def fleet(store: MetricsStore, seed: int = 0, windows: int = 10, n: int = 40):
    """Devices a, b, c over ``windows`` periods of 100 s; from period 5 device b's accuracy drops to
    about 0.5 and its confidence falls; device c is 1.5x slower. Returns what was logged."""
    rng = np.random.default_rng(seed)
    logged = []
    for t in range(windows):
        for dev in ("a", "b", "c"):
            bad = dev == "b" and t >= 5
            y = rng.integers(0, 3, n)
            pred = np.where(rng.random(n) < (0.5 if bad else 0.95), y, (y + 1) % 3)
            conf = rng.beta(4, 3, n) if bad else rng.beta(8, 2, n)
            lat = rng.gamma(2.0, 3.0, n) * (1.5 if dev == "c" else 1.0)
            ts = t * 100 + np.arange(n) * 2.0
            store.log_predictions(dev, "v2" if t >= 8 else "v1", pred, conf, lat, true_label=y, timestamp=ts)
            logged.append(dict(dev=dev, ts=ts, y=y, pred=pred, conf=conf, lat=lat))
    return logged


@pytest.fixture()
def store():
    with MetricsStore(":memory:") as s:
        yield s


def test_round_trip_and_reopen(tmp_path):
    path = tmp_path / "m.db"
    with MetricsStore(path) as s:
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        b = s.log_predictions(["d1", "d1", "d2"], "v1", [2, 0, 1], [0.9, 0.5, 1.0], [1.5, 0.0, 3.25],
                              true_label=[2, None, np.nan], timestamp=[10.0, 11.0, 12.5])
        s.log_predictions("d2", "v1", [1], 0.7, 2.0, true_label=[-1], timestamp=13)
        assert b == 1
    with MetricsStore(path) as s:  # the schema is there, the rows too
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        w = s.window()
        assert w.timestamp.tolist() == [10.0, 11.0, 12.5, 13.0]
        assert w.device_id.tolist() == ["d1", "d1", "d2", "d2"]
        assert w.predicted.tolist() == [2, 0, 1, 1]
        assert w.confidence.tolist() == [0.9, 0.5, 1.0, 0.7]
        assert w.true_label.tolist() == [2, -1, -1, -1]
        assert w.latency_ms.tolist() == [1.5, 0.0, 3.25, 2.0]
        assert w.accuracy() == 1.0 and w.metric("labelled") == 1
        assert s.devices() == ["d1", "d2"] and s.model_versions() == ["v1"]
        assert s.integrity()["ok"]


def test_windows_by_time_and_count(store):
    logged = fleet(store)
    a = [r for r in logged if r["dev"] == "a"]
    ts = np.concatenate([r["ts"] for r in a])
    w = store.window(device="a", start=100, end=300)  # half-open: 100 <= ts < 300
    assert w.timestamp.min() == 100 and w.timestamp.max() < 300 and len(w) == np.sum((ts >= 100) & (ts < 300))
    last = store.window(device="a", last=7)
    assert last.timestamp.tolist() == sorted(ts)[-7:]
    assert set(store.window(model_version="v2").timestamp.tolist()) == {t for r in logged for t in r["ts"] if t >= 800}
    by_time = store.windows(every_s=100, device="b")
    assert len(by_time) == 10 and all(len(x) == 40 for x in by_time)
    assert [x.start for x in by_time[:2]] == [0.0, 100.0] and by_time[0].end == 100.0
    by_count = store.windows(count=150)
    assert [len(x) for x in by_count] == [150] * 8
    assert by_count[0].start == 0.0 and all(x.start <= x.end for x in by_count)
    tail = store.windows(count=500)
    assert [len(x) for x in tail] == [500, 500, 200]
    # a window by time can start elsewhere than the first prediction
    shifted = store.windows(every_s=100, start=50, end=250, device="a")
    assert [(x.start, x.end, len(x)) for x in shifted] == [(50, 150, 40), (150, 250, 40)]


def test_metrics_against_numpy(store):
    logged = fleet(store)
    b = [r for r in logged if r["dev"] == "b"]
    w = store.window(device="b", start=500)
    y = np.concatenate([r["y"] for r in b[5:]])
    pred = np.concatenate([r["pred"] for r in b[5:]])
    lat = np.concatenate([r["lat"] for r in b[5:]])
    assert w.metric("accuracy") == pytest.approx(np.mean(y == pred))
    assert w.metric("error_rate") == pytest.approx(1 - np.mean(y == pred))
    assert w.latency_percentiles() == pytest.approx(dict(zip((50.0, 95.0, 99.0), np.percentile(lat, [50, 95, 99]))))
    assert w.metric("latency_p90") == pytest.approx(np.percentile(lat, 90))
    assert w.metric("mean_confidence") == pytest.approx(np.concatenate([r["conf"] for r in b[5:]]).mean())
    assert store.summary(device="b", start=500)["latency_p95"] == pytest.approx(np.percentile(lat, 95))
    series = store.series("accuracy", every_s=100, device="b")
    expected = [np.mean(r["y"] == r["pred"]) for r in b]
    assert np.allclose(series["value"], expected) and series["count"].tolist() == [40] * 10
    assert np.isnan(store.window(device="a", start=5000).metric("accuracy") or np.nan)


def test_feature_summaries_and_drift_checks(store):
    fleet(store)
    rng = np.random.default_rng(1)
    raw = {}
    for t in range(10):
        for dev in ("a", "b"):
            x = rng.normal(size=(64, 3)) + (0.8 if dev == "b" and t >= 5 else 0.0)
            store.log_features(dev, x, t * 100, t * 100 + 100, feature_names=["ax", "ay", "az"], model_version="v1")
            raw[(dev, t)] = x
    rows = store.feature_summaries(device="b", feature="ay")
    assert len(rows) == 10
    x = raw[("b", 3)][:, 1]
    assert rows[3]["mean"] == pytest.approx(x.mean()) and rows[3]["std"] == pytest.approx(x.std())
    assert (rows[3]["min"], rows[3]["max"], rows[3]["count"]) == (pytest.approx(x.min()), pytest.approx(x.max()), 64)
    m, names = store.feature_matrix("mean", device="b")
    assert names == ["ax", "ay", "az"] and m.shape == (10, 3)
    assert np.allclose(m[:, 2], [raw[("b", t)][:, 2].mean() for t in range(10)])
    # the window means of device b move by 0.8 sd from period 5: KS on five windows against five
    assert store.check_drift(KSDrift(), (0, 500), (500, 1000), source="features", device="b").drift
    assert not store.check_drift(KSDrift(), (0, 500), (500, 1000), source="features", device="a").drift
    assert store.check_drift(KSDrift(), (0, 500), (500, 1000), source="confidence", device="b").drift
    assert not store.check_drift(KSDrift(), (0, 500), (500, 1000), source="confidence", device="a").drift
    chi = store.check_drift(ChiSquareDrift(), (0, 500), (500, 1000), source="predicted", device="b")
    bbse = store.check_drift(BBSEDrift(), (0, 300), (300, 500), source="predicted", device="a")
    assert bbse.details["target_label_distribution"].shape == (3,)
    events = store.events("drift")
    assert [e["name"] for e in events] == ["BBSEDrift"] + ["KSDrift"] * 4 + ["ChiSquareDrift"]  # by time
    assert [e["flagged"] for e in events[1:5]] == [True, False, True, False]
    assert events[5]["value"] == pytest.approx(chi.statistic) and events[5]["ts"] == 1000


def test_alert_rules(store):
    fleet(store)
    rules = [AlertRule("low accuracy", "accuracy", "<", 0.8, window_s=100),
             AlertRule("slow", "latency_p95", ">", 15.0, window_n=200),
             AlertRule("fleet accuracy", "accuracy", "<", 0.5, per_device=False),
             AlertRule("confidence drift", "drift", detector=KSDrift(), reference=(0, 500), window_s=200)]
    alerts = store.evaluate(rules)
    fired = sorted((a.rule, a.device_id) for a in alerts)
    assert ("low accuracy", "b") in fired and ("low accuracy", "a") not in fired
    assert ("confidence drift", "b") in fired and ("confidence drift", "a") not in fired
    assert all(r != "fleet accuracy" for r, _ in fired)
    for a in alerts:
        if a.rule == "slow":  # only the slow device, and the value is the p95 of its last 200
            w = store.window(device=a.device_id, last=200)
            assert a.value == pytest.approx(np.percentile(w.latency_ms, 95)) and a.value > 15
    recorded = store.events("alert")
    assert len(recorded) == len(alerts) and all(e["flagged"] for e in recorded)
    assert recorded[0]["message"].startswith(alerts[0].rule)
    # at an earlier time, device b was fine; nothing is recorded without record=True
    early = store.evaluate(rules[:1], now=399, record=False)
    assert early == [] and len(store.events("alert")) == len(alerts)
    # min_count: no verdict on a window with too few labelled predictions
    assert rules[0].evaluate(store, now=999, record=False)
    assert AlertRule("x", "accuracy", "<", 0.8, window_s=100, min_count=41).evaluate(store, record=False) == []
    assert store.evaluate([AlertRule("v2 accuracy", "accuracy", "<", 0.8, model_version="v2")], record=False)
    by_count = AlertRule("drift, last 100", "drift", detector=KSDrift(), reference=(0, 500), window_n=100)
    assert [a.device_id for a in by_count.evaluate(store, record=False)] == ["b"]


def test_failed_batch_leaves_nothing(store):
    store.log_predictions("a", "v1", [1], [0.5], [1.0], timestamp=0)
    with pytest.raises(RuntimeError):
        with store._transaction():
            batch = store._new_batch("predictions", 2)
            store._conn.execute("INSERT INTO predictions (batch_id, ts, device_id, model_version, predicted, "
                                "confidence, latency_ms) VALUES (?, 1, 'a', 'v1', 0, 0.5, 1)", (batch,))
            raise RuntimeError("the writer fails halfway")
    assert len(store.window()) == 1 and store._conn.execute("SELECT count(*) FROM batches").fetchone()[0] == 1


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from tinyml_lab.mlops.monitoring import MetricsStore
    store = MetricsStore(sys.argv[1])
    rng = np.random.default_rng(int(sys.argv[2]))
    n = 3000
    k = 0
    while True:
        pred, conf, lat = rng.integers(0, 10, n), rng.random(n), rng.random(n) * 20
        print("begin", k, flush=True)
        store.log_predictions("dev-%d" % (k % 4), "v1", pred, conf, lat, true_label=pred, timestamp=k + np.arange(n) / n)
        print("done", k, flush=True)
        k += 1
""")


def test_killed_writer_leaves_whole_batches(tmp_path):
    """A writer logs batches of 3,000 predictions without pause and is killed right after it announces a
    new batch; about 96% of its time is spent inside the transaction, so the kill lands mid-batch."""
    path = tmp_path / "fleet.db"
    for round_, (seed, min_done) in enumerate([(0, 3), (1, 5)]):  # the second writer appends to the same file
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(seed)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            done = 0
            for line in proc.stdout:
                if line.startswith("done"):
                    done += 1
                elif line.startswith("begin") and done >= min_done:
                    time.sleep(0.002 * round_)  # kill as a batch is being written
                    break
            else:
                pytest.fail(f"the writer stopped by itself: {proc.stderr.read()}")
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
    raw = sqlite3.connect(path)  # opens as a plain SQLite file (the WAL is recovered)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    with MetricsStore(path) as s:
        report = s.integrity()
        assert report["ok"], report
        n_batches, n_rows = s._conn.execute("SELECT count(*), sum(n_rows) FROM batches").fetchone()
        assert n_batches >= 8 and n_rows == 3000 * n_batches
        assert len(s.window()) == n_rows
        per_batch = s._conn.execute("SELECT count(*) FROM predictions GROUP BY batch_id").fetchall()
        assert {c for (c,) in per_batch} == {3000}


def test_dashboard(store):
    fleet(store)
    store.check_drift(KSDrift(), (0, 500), (500, 1000), device="b")
    store.evaluate([AlertRule("low accuracy", "accuracy", "<", 0.8, window_s=100)])
    fig = dashboard(store, every_s=100, title="fleet")
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    acc, lat, drift = fig.axes
    assert len([ln for ln in acc.get_lines() if ln.get_linestyle() == "-"]) == 3  # one line per device
    b_line = [ln for ln in acc.get_lines() if ln.get_label() == "b"][0]
    assert np.allclose(b_line.get_ydata(), store.series("accuracy", every_s=100, device="b")["value"])
    assert [ln.get_label() for ln in lat.get_lines()][:3] == ["p50", "p95", "p99"]
    assert any(ln.get_linestyle() == "--" for ln in drift.get_lines())  # the alert marker
    assert len(dashboard(store, count=200, devices=["a"]).axes) == 3
    with pytest.raises(DataError, match="empty"):
        dashboard(MetricsStore(":memory:"))


# ----------------------------------------------------------------------------------------------
# bad input


def test_bad_writes(store):
    with pytest.raises(DataError, match="latency_ms holds -1.0 \\(row 1\\).*>= 0"):
        store.log_predictions("a", "v1", [1, 2], [0.5, 0.5], [1.0, -1.0])
    with pytest.raises(DataError, match="confidence holds NaN"):
        store.log_predictions("a", "v1", [1, 2], [0.5, math.nan], [1.0, 1.0])
    with pytest.raises(DataError, match="confidence holds 1.5.*probability"):
        store.log_predictions("a", "v1", [1], [1.5], [1.0])
    with pytest.raises(ShapeError, match="latency_ms has 3 entries for 2 predictions"):
        store.log_predictions("a", "v1", [1, 2], [0.5, 0.5], [1.0, 1.0, 1.0])
    with pytest.raises(DataError, match="empty"):
        store.log_predictions("a", "v1", [], [], [])
    with pytest.raises(DataError, match="non-empty string"):
        store.log_predictions(["a", ""], "v1", [1, 2], [0.5, 0.5], [1.0, 1.0])
    with pytest.raises(DataError, match="labels are >= 0"):
        store.log_predictions("a", "v1", [-3], [0.5], [1.0])
    with pytest.raises(DataError, match="NaN or infinite"):
        store.log_features("a", [[1.0, np.inf]], 0, 1)
    with pytest.raises(DataError, match="start <= end"):
        store.log_features("a", [[1.0, 2.0]], 5, 1)
    with pytest.raises(ShapeError, match="3 feature names for 2 features"):
        store.log_features("a", [[1.0, 2.0]], 0, 1, feature_names=["x", "y", "z"])
    assert len(store.window()) == 0 and store._conn.execute("SELECT count(*) FROM batches").fetchone()[0] == 0


def test_bad_queries_and_rules(store):
    fleet(store, windows=2)
    with pytest.raises(DataError, match="unknown device 'zz'.*known devices: a, b, c"):
        store.window(device="zz")
    with pytest.raises(DataError, match="unknown model version 'v9'"):
        store.summary(model_version="v9")
    with pytest.raises(DataError, match="unknown feature"):
        store.feature_summaries(feature="nope")
    with pytest.raises(AttributeValueError, match="unknown metric 'precision'"):
        AlertRule("p", "precision", "<", 0.5)
    with pytest.raises(AttributeValueError, match="unknown metric 'f1'"):
        store.series("f1", every_s=10)
    with pytest.raises(AttributeValueError, match="op="):
        AlertRule("p", "accuracy", "!=", 0.5)
    with pytest.raises(AttributeValueError, match="window_s or window_n, not both"):
        AlertRule("p", "accuracy", "<", 0.5, window_s=10, window_n=10)
    with pytest.raises(AttributeValueError, match="needs detector"):
        AlertRule("d", "drift")
    with pytest.raises(AttributeValueError, match="every_s .* or count"):
        store.windows()
    with pytest.raises(AttributeValueError, match="last="):
        store.window(last=0)
    with pytest.raises(DataError, match="start=.* is after end"):
        store.window(start=10, end=5)
    with pytest.raises(AttributeValueError, match="source"):
        store.check_drift(KSDrift(), (0, 50), (50, 100), source="pixels")
    with pytest.raises(DataError, match="no predictions"):
        store.check_drift(KSDrift(), (0, 50), (5000, 6000))


def test_bad_files(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        MetricsStore(tmp_path / "missing" / "m.db")
    with pytest.raises(FileFormatError, match="is a folder"):
        MetricsStore(tmp_path)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(FileFormatError, match="junk.db"):
        MetricsStore(junk)
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    with pytest.raises(FileFormatError, match="without the metrics schema"):
        MetricsStore(other)
    newer = tmp_path / "newer.db"
    MetricsStore(newer).close()
    con = sqlite3.connect(newer)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    with pytest.raises(FileFormatError, match=f"schema version {SCHEMA_VERSION + 1}.*reads schema version"):
        MetricsStore(newer)
