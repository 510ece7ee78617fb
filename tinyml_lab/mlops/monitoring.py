"""A metrics store for a fleet of deployed models, on embedded SQLite, with alert rules.

:class:`MetricsStore` keeps three kinds of rows:

* **predictions**: timestamp, device, model version, predicted label, confidence, true label
  (when one arrives; -1 in arrays when unknown), latency in ms;
* **feature summaries**: per window of a device's inputs, per feature: mean, std, min, max, count;
* **events**: alerts, drift checks and anything else worth a mark on the timeline.

Every ``log_*`` call is one batch written in one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``),
together with a row in ``batches`` that counts its rows: a writer killed halfway leaves the
previous batches and nothing of the interrupted one. File databases run in WAL mode, so readers
(a dashboard) never block the writer. The schema version is SQLite's ``user_version``; a file
of another version is refused with the reason.

Queries return a :class:`PredictionWindow` (arrays, with its metrics) by time range or by count,
for one device and/or model version; :meth:`MetricsStore.windows` cuts a range into consecutive
windows, :meth:`MetricsStore.series` gives one metric per window, and
:meth:`MetricsStore.check_drift` feeds two windows to a drift detector. An :class:`AlertRule` is a
threshold on a metric over the latest window (or a drift detector's verdict);
:meth:`MetricsStore.evaluate` checks rules, records the alerts as events and returns them.

>>> store = MetricsStore(":memory:")
>>> _ = store.log_predictions("dev-1", "v1", predicted=[1, 0, 1], confidence=[0.9, 0.8, 0.6],
...                           latency_ms=[4.0, 5.0, 9.0], true_label=[1, 1, 1], timestamp=[0, 1, 2])
>>> round(store.window(device="dev-1").metric("accuracy"), 3)
0.667
>>> [a.rule for a in store.evaluate([AlertRule("low accuracy", "accuracy", "<", 0.9)])]
['low accuracy']
"""

from __future__ import annotations

import math
import numbers
import os
import re
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ..errors import AttributeValueError, DataError, FileFormatError, ShapeError
from ..files import check_file

if TYPE_CHECKING:  # the drift module (and scipy) load only when a drift check runs
    from .drift import DriftResult

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE batches (
    id          INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,
    n_rows      INTEGER NOT NULL,
    written_at  REAL    NOT NULL
);
CREATE TABLE predictions (
    id            INTEGER PRIMARY KEY,
    batch_id      INTEGER NOT NULL REFERENCES batches(id),
    ts            REAL    NOT NULL,
    device_id     TEXT    NOT NULL,
    model_version TEXT    NOT NULL,
    predicted     INTEGER NOT NULL,
    confidence    REAL    NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
    true_label    INTEGER,
    latency_ms    REAL    NOT NULL CHECK (latency_ms >= 0)
);
CREATE INDEX predictions_device_ts ON predictions (device_id, ts);
CREATE INDEX predictions_version_ts ON predictions (model_version, ts);
CREATE INDEX predictions_ts ON predictions (ts);
CREATE TABLE feature_summaries (
    id            INTEGER PRIMARY KEY,
    batch_id      INTEGER NOT NULL REFERENCES batches(id),
    window_start  REAL    NOT NULL,
    window_end    REAL    NOT NULL,
    device_id     TEXT    NOT NULL,
    model_version TEXT,
    feature       TEXT    NOT NULL,
    mean          REAL    NOT NULL,
    std           REAL    NOT NULL CHECK (std >= 0),
    min           REAL    NOT NULL,
    max           REAL    NOT NULL,
    count         INTEGER NOT NULL CHECK (count > 0)
);
CREATE INDEX features_device_start ON feature_summaries (device_id, window_start);
CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    batch_id      INTEGER NOT NULL REFERENCES batches(id),
    ts            REAL    NOT NULL,
    kind          TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    device_id     TEXT,
    model_version TEXT,
    metric        TEXT,
    value         REAL,
    threshold     REAL,
    flagged       INTEGER NOT NULL DEFAULT 0,
    message       TEXT    NOT NULL
);
CREATE INDEX events_kind_ts ON events (kind, ts);
"""

_METRIC_RE = re.compile(r"^(accuracy|error_rate|mean_confidence|latency_mean|count|labelled|latency_p(\d{1,2}(\.\d+)?))$")
METRICS = ("accuracy", "error_rate", "mean_confidence", "latency_mean", "latency_p50", "latency_p95", "latency_p99",
           "latency_pNN", "count", "labelled", "drift")
_OPS = {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}


def _check_metric(name: Any, allow_drift: bool = False) -> str:
    if isinstance(name, str) and (_METRIC_RE.match(name) or (allow_drift and name == "drift")):
        return name
    known = ", ".join(m for m in METRICS if allow_drift or m != "drift")
    raise AttributeValueError(f"unknown metric {name!r}; use one of {known} (latency_pNN: any percentile, "
                              f"e.g. latency_p90)")


# ----------------------------------------------------------------------------------------------
# windows of predictions


@dataclass
class PredictionWindow:
    """The predictions of one window, as arrays sorted by time (``true_label`` is -1 where unknown)."""

    timestamp: np.ndarray
    device_id: np.ndarray
    model_version: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    true_label: np.ndarray
    latency_ms: np.ndarray
    start: float | None = None  # the window's bounds as asked (None: open)
    end: float | None = None

    def __len__(self) -> int:
        return int(self.timestamp.size)

    @property
    def labelled(self) -> np.ndarray:
        """Mask of the rows whose true label is known."""
        return self.true_label >= 0

    def accuracy(self) -> float | None:
        """Share of correct predictions among labelled rows; None without labelled rows."""
        m = self.labelled
        return float(np.mean(self.predicted[m] == self.true_label[m])) if m.any() else None

    def latency_percentiles(self, q: Sequence[float] = (50, 95, 99)) -> dict[float, float]:
        """Latency percentiles in ms (linear interpolation, as ``numpy.percentile``); empty: {}."""
        if not len(self):
            return {}
        return {float(p): float(v) for p, v in zip(q, np.percentile(self.latency_ms, q))}

    def metric(self, name: str) -> float | None:
        """One metric of the window: ``accuracy``, ``error_rate``, ``mean_confidence``, ``latency_mean``,
        ``latency_pNN`` (e.g. ``latency_p95``), ``count``, ``labelled``. None when undefined (no rows,
        or no labelled rows for accuracy)."""
        name = _check_metric(name)
        if name == "count":
            return float(len(self))
        if name == "labelled":
            return float(self.labelled.sum())
        if not len(self):
            return None
        if name == "accuracy":
            return self.accuracy()
        if name == "error_rate":
            acc = self.accuracy()
            return None if acc is None else 1.0 - acc
        if name == "mean_confidence":
            return float(self.confidence.mean())
        if name == "latency_mean":
            return float(self.latency_ms.mean())
        q = float(name[len("latency_p"):])
        if not 0 <= q <= 100:
            raise AttributeValueError(f"unknown metric {name!r}: a percentile is between 0 and 100")
        return float(np.percentile(self.latency_ms, q))

    def summary(self) -> dict[str, Any]:
        """count, labelled, accuracy, mean confidence and latency mean/p50/p95/p99."""
        out: dict[str, Any] = {"count": len(self), "labelled": int(self.labelled.sum())}
        for m in ("accuracy", "mean_confidence", "latency_mean", "latency_p50", "latency_p95", "latency_p99"):
            out[m] = self.metric(m)
        return out


# ----------------------------------------------------------------------------------------------
# alerts


@dataclass
class AlertRule:
    """Fire when ``metric op threshold`` over the latest window (per device unless ``per_device`` is False).

    ``metric="drift"`` fits ``detector`` (a window detector of :mod:`~tinyml_lab.mlops.drift`) on the
    ``source`` of the ``reference`` time range and tests the latest window (without ``window_s`` or
    ``window_n``: everything after the reference), per device; it fires when the detector reports
    drift (``op`` and ``threshold`` are not used then). A device without data in either range gets
    no verdict.

    Args:
        name: the alert's name, recorded with it.
        metric: one of :data:`METRICS` (``latency_pNN`` for any percentile).
        op: ``"<"``, ``"<="``, ``">"`` or ``">="``.
        threshold: the value compared with.
        window_s: the latest window is the last ``window_s`` seconds up to ``now``, ``(now - window_s, now]`` ...
        window_n: ... or the last ``window_n`` predictions (one of the two; neither: everything).
        per_device: evaluate each device on its own (else the whole fleet at once).
        model_version: only this model version's predictions.
        min_count: no verdict on a window with fewer rows (fewer labelled rows for accuracy/error_rate).
        detector, reference, source: for ``metric="drift"``, see :meth:`MetricsStore.check_drift`.
    """

    name: str
    metric: str
    op: str = "<"
    threshold: float = 0.0
    window_s: float | None = None
    window_n: int | None = None
    per_device: bool = True
    model_version: str | None = None
    min_count: int = 1
    detector: Any = None
    reference: tuple[float, float] | None = None
    source: str = "confidence"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise AttributeValueError(f"AlertRule: name={self.name!r}; give the rule a non-empty name")
        _check_metric(self.metric, allow_drift=True)
        if self.op not in _OPS:
            raise AttributeValueError(f"AlertRule {self.name!r}: op={self.op!r} is not one of {', '.join(_OPS)}")
        if not isinstance(self.threshold, numbers.Real) or not math.isfinite(self.threshold):
            raise AttributeValueError(f"AlertRule {self.name!r}: threshold={self.threshold!r} must be a finite number")
        if self.window_s is not None and self.window_n is not None:
            raise AttributeValueError(f"AlertRule {self.name!r}: give window_s or window_n, not both")
        if self.window_s is not None and not (isinstance(self.window_s, numbers.Real) and self.window_s > 0):
            raise AttributeValueError(f"AlertRule {self.name!r}: window_s={self.window_s!r} must be > 0 seconds")
        if self.window_n is not None and not (isinstance(self.window_n, numbers.Integral) and self.window_n > 0):
            raise AttributeValueError(f"AlertRule {self.name!r}: window_n={self.window_n!r} must be a positive integer")
        if not isinstance(self.min_count, numbers.Integral) or self.min_count < 1:
            raise AttributeValueError(f"AlertRule {self.name!r}: min_count={self.min_count!r} must be >= 1")
        if self.metric == "drift":
            if self.detector is None or not hasattr(self.detector, "test"):
                raise AttributeValueError(f"AlertRule {self.name!r}: metric='drift' needs detector=<a drift detector>, "
                                          f"e.g. KSDrift()")
            if self.reference is None:
                raise AttributeValueError(f"AlertRule {self.name!r}: metric='drift' needs reference=(start, end), "
                                          f"the time range the detector is fitted on")
            _check_source(self.source)

    def fires(self, value: float) -> bool:
        """Whether ``value`` breaks the rule (``value op threshold``)."""
        return bool(_OPS[self.op](value, self.threshold))

    def evaluate(self, store: "MetricsStore", now: float | None = None, record: bool = True) -> list["Alert"]:
        """Shorthand for ``store.evaluate([self], now, record)``."""
        return store.evaluate([self], now=now, record=record)


@dataclass
class Alert:
    """One fired rule: where, when, the value and what it was compared with."""

    rule: str
    metric: str
    value: float
    threshold: float | None
    device_id: str | None
    model_version: str | None
    window_start: float | None
    window_end: float | None
    timestamp: float
    message: str
    details: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# input checks


def _column(values: Any, n: int | None, what: str, kind: str) -> np.ndarray:
    """``values`` as a 1-D array of length ``n`` (a scalar is repeated)."""
    if kind == "str":
        if isinstance(values, str):
            if not values:
                raise DataError(f"{what} is an empty string; give a name")
            return np.array([values] * (n or 1), dtype=object)
        a = np.asarray(values, dtype=object)
        if a.ndim != 1:
            raise ShapeError(f"{what} must be a string or a 1-D sequence of strings, got shape {a.shape}")
        for v in a:
            if not isinstance(v, str) or not v:
                raise DataError(f"{what} holds {v!r}; every entry must be a non-empty string")
        return a
    a = np.asarray(values)
    if a.ndim == 0:
        a = np.full(n or 1, a.item())
    if a.ndim != 1:
        raise ShapeError(f"{what} must be a number or a 1-D sequence, got shape {a.shape}")
    return a


def _floats(values: Any, n: int | None, what: str) -> np.ndarray:
    try:
        a = _column(values, n, what, "float").astype(np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numbers") from None
    bad = ~np.isfinite(a)
    if bad.any():
        raise DataError(f"{what} holds NaN or infinite values (first at row {int(np.flatnonzero(bad)[0])}); "
                        f"drop those rows or fix the values before logging")
    return a


def _ints(values: Any, n: int | None, what: str, allow_missing: bool = False) -> np.ndarray:
    a = _column(values, n, what, "int")
    if a.dtype == object:  # None marks a missing label
        if not allow_missing:
            raise DataError(f"{what} must be integers")
        a = np.array([-1 if v is None else v for v in a])
    if a.dtype.kind == "f":
        miss = np.isnan(a)
        if miss.any() and not allow_missing:
            raise DataError(f"{what} holds NaN; give integer labels")
        if np.isinf(a).any() or not np.all(a[~miss] == np.round(a[~miss])):
            raise DataError(f"{what} must be integers")
        a = np.where(miss, -1, a)
    elif a.dtype.kind not in "iub":
        raise DataError(f"{what} must be integers, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if allow_missing:
        if (a < -1).any():
            raise DataError(f"{what} holds {int(a[a < -1][0])}; labels are >= 0 (-1, None or NaN: unknown)")
    elif (a < 0).any():
        raise DataError(f"{what} holds {int(a[a < 0][0])}; labels are >= 0")
    return a


_SOURCES = ("confidence", "latency", "predicted", "features")


def _check_source(source: Any) -> str:
    if source not in _SOURCES:
        raise AttributeValueError(f"unknown drift source {source!r}; use one of {', '.join(_SOURCES)}")
    return source


def _check_time(value: Any, what: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value):
        raise DataError(f"{what}={value!r} must be a finite number of seconds")
    return float(value)


def _sql_where(conditions) -> tuple[str, list]:
    """A ``WHERE`` clause joining the ``(clause, value)`` pairs whose value is not None, and its arguments."""
    kept = [(c, v) for c, v in conditions if v is not None]
    return (" WHERE " + " AND ".join(c for c, _ in kept)) if kept else "", [v for _, v in kept]


# ----------------------------------------------------------------------------------------------
# the store


class MetricsStore:
    """Predictions, feature summaries and events of a fleet in one SQLite database.

    Args:
        path: the database file (created with the schema if missing), or ``":memory:"``.
        synchronous: SQLite's ``synchronous`` in WAL mode: ``"NORMAL"`` (default: a commit survives a
            killed process, the last ones may be lost on power failure) or ``"FULL"`` (fsync per commit).
        timeout: seconds to wait for another writer's lock before failing.
    """

    def __init__(self, path: str | os.PathLike = "metrics.db", synchronous: str = "NORMAL", timeout: float = 10.0):
        if synchronous not in ("NORMAL", "FULL"):
            raise AttributeValueError(f"MetricsStore: synchronous={synchronous!r} is not NORMAL or FULL")
        self.path = str(path)
        memory = self.path == ":memory:"
        if not memory:
            check_file(path, "metrics store")
        existed = not memory and Path(self.path).exists() and Path(self.path).stat().st_size > 0
        try:
            self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._conn.execute("PRAGMA foreign_keys = ON")
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            tables = self._conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise FileFormatError(f"cannot open the metrics store {self.path}: {exc}; give a metrics database "
                                  f"file or a new path") from exc
        if existed and version != SCHEMA_VERSION:
            self._conn.close()
            found = f"schema version {version}" if version else "a database without the metrics schema"
            raise FileFormatError(f"{self.path} holds {found}; this engine reads schema version {SCHEMA_VERSION}. "
                                  f"Use a new file, or migrate it")
        if not memory:
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise FileFormatError(f"cannot switch {self.path} to WAL mode (got {mode}); use a local file system")
            self._conn.execute(f"PRAGMA synchronous = {synchronous}")
        if not existed and tables == 0:
            with self._transaction():
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self._conn.execute(stmt)
                self._conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    # -- housekeeping ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (the WAL is checkpointed into the file)."""
        self._conn.close()

    def __enter__(self) -> "MetricsStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; ROLLBACK on any exception (a killed process rolls back by itself)."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _new_batch(self, kind: str, n_rows: int) -> int:
        cur = self._conn.execute("INSERT INTO batches (kind, n_rows, written_at) VALUES (?, ?, ?)",
                                 (kind, n_rows, time.time()))
        return int(cur.lastrowid)

    def integrity(self) -> dict[str, Any]:
        """``PRAGMA integrity_check`` and whether every batch holds exactly the rows it announced."""
        check = [r[0] for r in self._conn.execute("PRAGMA integrity_check")]
        partial = []
        for table in ("predictions", "feature_summaries", "events"):
            rows = self._conn.execute(
                f"SELECT b.id, b.n_rows, count(t.id) FROM batches b JOIN {table} t ON t.batch_id = b.id "
                f"GROUP BY b.id HAVING count(t.id) != b.n_rows").fetchall()
            partial += [(table, *r) for r in rows]
            orphans = self._conn.execute(
                f"SELECT count(*) FROM {table} WHERE batch_id NOT IN (SELECT id FROM batches)").fetchone()[0]
            if orphans:
                partial.append((table, None, 0, orphans))
        return {"integrity_check": check, "ok": check == ["ok"] and not partial, "partial_batches": partial}

    # -- writing -------------------------------------------------------------------------------

    def log_predictions(self, device_id: str | Sequence[str], model_version: str | Sequence[str], predicted: Any,
                        confidence: Any, latency_ms: Any, true_label: Any = None, timestamp: Any = None) -> int:
        """Write one batch of predictions in one transaction.

        Args:
            device_id, model_version: one string for the whole batch, or one per row.
            predicted: predicted labels (ints >= 0).
            confidence: the model's confidence in [0, 1] (e.g. the top softmax probability).
            latency_ms: inference latency per row, ms >= 0.
            true_label: labels where known (-1, None or NaN: unknown); None: all unknown.
            timestamp: seconds (epoch or simulated clock), one or one per row; None: now.
        Returns:
            The batch id.
        """
        pred = _ints(predicted, None, "predicted")
        n = pred.size
        if n == 0:
            raise DataError("log_predictions: predicted is empty; log at least one prediction")
        conf = _floats(confidence, n, "confidence")
        lat = _floats(latency_ms, n, "latency_ms")
        label = np.full(n, -1, np.int64) if true_label is None else _ints(true_label, n, "true_label", True)
        ts = np.full(n, time.time()) if timestamp is None else _floats(timestamp, n, "timestamp")
        dev = _column(device_id, n, "device_id", "str")
        ver = _column(model_version, n, "model_version", "str")
        for what, col in (("confidence", conf), ("latency_ms", lat), ("true_label", label), ("timestamp", ts),
                          ("device_id", dev), ("model_version", ver)):
            if col.size != n:
                raise ShapeError(f"log_predictions: {what} has {col.size} entries for {n} predictions; "
                                 f"give one per prediction (or one for all)")
        if ((conf < 0) | (conf > 1)).any():
            i = int(np.flatnonzero((conf < 0) | (conf > 1))[0])
            raise DataError(f"confidence holds {conf[i]} (row {i}); a confidence is a probability in [0, 1]")
        if (lat < 0).any():
            i = int(np.flatnonzero(lat < 0)[0])
            raise DataError(f"latency_ms holds {lat[i]} (row {i}); a latency is >= 0 ms")
        rows = zip(ts.tolist(), dev.tolist(), ver.tolist(), pred.tolist(), conf.tolist(),
                   [None if v < 0 else v for v in label.tolist()], lat.tolist())
        with self._transaction():
            batch = self._new_batch("predictions", n)
            self._conn.executemany(
                "INSERT INTO predictions (batch_id, ts, device_id, model_version, predicted, confidence, true_label, "
                "latency_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ((batch, *r) for r in rows))
        return batch

    def log_feature_summaries(self, device_id: str, window_start: float, window_end: float,
                              summaries: dict[str, dict[str, float]], model_version: str | None = None) -> int:
        """Write one window's per-feature summaries (``{name: {mean, std, min, max, count}}``) as one batch."""
        dev = _column(device_id, 1, "device_id", "str")[0]
        start, end = _check_time(window_start, "window_start"), _check_time(window_end, "window_end")
        if start is None or end is None or end < start:
            raise DataError(f"window_start={window_start!r}, window_end={window_end!r}: give start <= end")
        if not summaries:
            raise DataError("log_feature_summaries: no features; give {name: {mean, std, min, max, count}}")
        rows = []
        for name, s in summaries.items():
            if not isinstance(name, str) or not name:
                raise DataError(f"feature name {name!r}: give each feature a non-empty string name")
            missing = {"mean", "std", "min", "max", "count"} - set(s)
            if missing:
                raise DataError(f"feature {name!r} lacks {', '.join(sorted(missing))}")
            vals = [float(s[k]) for k in ("mean", "std", "min", "max")]
            if not all(math.isfinite(v) for v in vals):
                raise DataError(f"feature {name!r} has a NaN or infinite summary {vals}; summarise finite values")
            if vals[1] < 0 or not vals[2] <= vals[0] <= vals[3]:
                raise DataError(f"feature {name!r}: need std >= 0 and min <= mean <= max, got {vals}")
            count = int(s["count"])
            if count < 1:
                raise DataError(f"feature {name!r}: count={count}; a window summary covers at least one value")
            rows.append((start, end, dev, model_version, name, *vals, count))
        with self._transaction():
            batch = self._new_batch("feature_summaries", len(rows))
            self._conn.executemany(
                "INSERT INTO feature_summaries (batch_id, window_start, window_end, device_id, model_version, feature, "
                "mean, std, min, max, count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((batch, *r) for r in rows))
        return batch

    def log_features(self, device_id: str, x: Any, window_start: float, window_end: float,
                     feature_names: Sequence[str] | None = None, model_version: str | None = None) -> int:
        """Summarise a window of raw inputs ``x`` ((n, d); images are flattened) and log the summaries.

        ``std`` is the population standard deviation (ddof 0). Names default to ``f0, f1, ...``.
        """
        a = np.asarray(x, dtype=np.float64)
        if a.ndim == 1:
            a = a[:, None]
        if a.ndim > 2:
            a = a.reshape(a.shape[0], -1)
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise DataError(f"log_features: the window is empty (shape {a.shape}); give at least one sample")
        if not np.isfinite(a).all():
            raise DataError("log_features: the window holds NaN or infinite values; drop or impute them first")
        names = [f"f{j}" for j in range(a.shape[1])] if feature_names is None else list(feature_names)
        if len(names) != a.shape[1]:
            raise ShapeError(f"log_features: {len(names)} feature names for {a.shape[1]} features")
        if len(set(names)) != len(names):
            raise DataError("log_features: feature names repeat; give each feature its own name")
        summaries = {n: {"mean": float(a[:, j].mean()), "std": float(a[:, j].std()), "min": float(a[:, j].min()),
                         "max": float(a[:, j].max()), "count": a.shape[0]} for j, n in enumerate(names)}
        return self.log_feature_summaries(device_id, window_start, window_end, summaries, model_version)

    def log_event(self, kind: str, name: str, message: str, timestamp: float | None = None,
                  device_id: str | None = None, model_version: str | None = None, metric: str | None = None,
                  value: float | None = None, threshold: float | None = None, flagged: bool = False) -> int:
        """Write one event (``kind`` e.g. ``alert``, ``drift``, ``deploy``) as its own batch; ``flagged``
        marks a problem (a fired alert, a drift found)."""
        return self._log_events([(kind, name, message, timestamp, device_id, model_version, metric, value, threshold,
                                  flagged)])

    def _log_events(self, events: list[tuple]) -> int:
        rows = []
        for kind, name, message, ts, dev, ver, metric, value, threshold, flagged in events:
            for what, v in (("kind", kind), ("name", name)):
                if not isinstance(v, str) or not v:
                    raise DataError(f"event {what}={v!r}; give a non-empty string")
            ts = time.time() if ts is None else _check_time(ts, "timestamp")
            for what, v in (("value", value), ("threshold", threshold)):
                if v is not None and not math.isfinite(float(v)):
                    raise DataError(f"event {what}={v!r} must be finite (or None)")
            rows.append((ts, kind, name, dev, ver, metric, None if value is None else float(value),
                         None if threshold is None else float(threshold), int(bool(flagged)), str(message)))
        with self._transaction():
            batch = self._new_batch("events", len(rows))
            self._conn.executemany(
                "INSERT INTO events (batch_id, ts, kind, name, device_id, model_version, metric, value, threshold, "
                "flagged, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", ((batch, *r) for r in rows))
        return batch

    # -- reading -------------------------------------------------------------------------------

    def devices(self) -> list[str]:
        """Every device with predictions or feature summaries, sorted."""
        q = "SELECT device_id FROM predictions UNION SELECT device_id FROM feature_summaries ORDER BY 1"
        return [r[0] for r in self._conn.execute(q)]

    def model_versions(self) -> list[str]:
        """Every model version with predictions, sorted."""
        return [r[0] for r in self._conn.execute("SELECT DISTINCT model_version FROM predictions ORDER BY 1")]

    def _check_device(self, device: str | None) -> None:
        if device is None:
            return
        hit = self._conn.execute("SELECT 1 FROM predictions WHERE device_id = ? UNION ALL "
                                 "SELECT 1 FROM feature_summaries WHERE device_id = ? LIMIT 1",
                                 (device, device)).fetchone()
        if hit is None:
            known = self.devices()
            shown = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "")
            raise DataError(f"unknown device {device!r}: no rows for it in the store; known devices: "
                            f"{shown or 'none yet'}")

    def _check_version(self, version: str | None) -> None:
        if version is None:
            return
        if self._conn.execute("SELECT 1 FROM predictions WHERE model_version = ? LIMIT 1", (version,)).fetchone() is None:
            raise DataError(f"unknown model version {version!r}: no predictions for it; known versions: "
                            f"{', '.join(self.model_versions()) or 'none yet'}")

    def _where(self, device, version, start, end) -> tuple[str, list]:
        self._check_device(device)
        self._check_version(version)
        start, end = _check_time(start, "start"), _check_time(end, "end")
        if start is not None and end is not None and end < start:
            raise DataError(f"start={start} is after end={end}; give start <= end")
        return _sql_where((("device_id = ?", device), ("model_version = ?", version), ("ts >= ?", start),
                           ("ts < ?", end)))

    def window(self, device: str | None = None, model_version: str | None = None, start: float | None = None,
               end: float | None = None, last: int | None = None) -> PredictionWindow:
        """The predictions with ``start <= ts < end`` (open ends when None), for one device and/or model
        version; with ``last=n`` only the latest n of them (a window by count)."""
        if last is not None and not (isinstance(last, numbers.Integral) and last > 0):
            raise AttributeValueError(f"last={last!r} must be a positive integer (the number of latest predictions)")
        where, args = self._where(device, model_version, start, end)
        cols = "ts, device_id, model_version, predicted, confidence, coalesce(true_label, -1), latency_ms"
        if last is None:
            rows = self._conn.execute(f"SELECT {cols} FROM predictions{where} ORDER BY ts, id", args).fetchall()
        else:
            rows = self._conn.execute(f"SELECT * FROM (SELECT {cols}, id FROM predictions{where} "
                                      f"ORDER BY ts DESC, id DESC LIMIT ?) ORDER BY ts, id", [*args, int(last)]).fetchall()
        return self._to_window(rows, start, end)

    @staticmethod
    def _to_window(rows: list, start: float | None, end: float | None) -> PredictionWindow:
        cols = list(zip(*rows)) if rows else [()] * 7
        return PredictionWindow(timestamp=np.array(cols[0], dtype=np.float64),
                                device_id=np.array(cols[1], dtype=object), model_version=np.array(cols[2], dtype=object),
                                predicted=np.array(cols[3], dtype=np.int64), confidence=np.array(cols[4], dtype=np.float64),
                                true_label=np.array(cols[5], dtype=np.int64), latency_ms=np.array(cols[6], dtype=np.float64),
                                start=start, end=end)

    def windows(self, every_s: float | None = None, count: int | None = None, device: str | None = None,
                model_version: str | None = None, start: float | None = None,
                end: float | None = None) -> list[PredictionWindow]:
        """Consecutive windows over a range: by time (``every_s`` seconds, aligned at ``start`` or the
        first prediction; empty windows left out) or by count (``count`` predictions each; the last
        window may be shorter)."""
        if (every_s is None) == (count is None):
            raise AttributeValueError("windows: give every_s (a window by time) or count (by count), one of the two")
        if every_s is not None and not (isinstance(every_s, numbers.Real) and math.isfinite(every_s) and every_s > 0):
            raise AttributeValueError(f"windows: every_s={every_s!r} must be > 0 seconds")
        if count is not None and not (isinstance(count, numbers.Integral) and count > 0):
            raise AttributeValueError(f"windows: count={count!r} must be a positive integer")
        w = self.window(device, model_version, start, end)
        if not len(w):
            return []
        if count is not None:
            cuts = np.arange(count, len(w), count)
            bounds = [(None, None)] * (cuts.size + 1)
        else:
            origin = w.timestamp[0] if start is None else float(start)
            slot = np.floor((w.timestamp - origin) / every_s).astype(np.int64)
            cuts = np.flatnonzero(np.diff(slot)) + 1
            slots = slot[np.r_[0, cuts]]
            bounds = [(origin + k * every_s, origin + (k + 1) * every_s) for k in slots.tolist()]
        out = []
        for (lo, hi), idx in zip(bounds, np.split(np.arange(len(w)), cuts)):
            part = PredictionWindow(w.timestamp[idx], w.device_id[idx], w.model_version[idx], w.predicted[idx],
                                    w.confidence[idx], w.true_label[idx], w.latency_ms[idx])
            part.start = float(part.timestamp[0]) if lo is None else lo
            part.end = float(part.timestamp[-1]) if hi is None else hi
            out.append(part)
        return out

    def series(self, metric: str, every_s: float | None = None, count: int | None = None, device: str | None = None,
               model_version: str | None = None, start: float | None = None, end: float | None = None) -> dict[str, np.ndarray]:
        """One metric per window (see :meth:`windows`): arrays ``start``, ``end``, ``value`` (NaN where the
        metric is undefined, e.g. accuracy without labels) and ``count``."""
        _check_metric(metric)
        ws = self.windows(every_s, count, device, model_version, start, end)
        vals = [w.metric(metric) for w in ws]
        return {"start": np.array([w.start for w in ws], dtype=np.float64),
                "end": np.array([w.end for w in ws], dtype=np.float64),
                "value": np.array([np.nan if v is None else v for v in vals], dtype=np.float64),
                "count": np.array([len(w) for w in ws], dtype=np.int64)}

    def summary(self, device: str | None = None, model_version: str | None = None, start: float | None = None,
                end: float | None = None, last: int | None = None) -> dict[str, Any]:
        """count, accuracy, mean confidence and latency mean/p50/p95/p99 of one window."""
        return self.window(device, model_version, start, end, last).summary()

    def feature_summaries(self, device: str | None = None, feature: str | None = None, start: float | None = None,
                          end: float | None = None) -> list[dict[str, Any]]:
        """Feature summary rows (windows with ``start <= window_start < end``), ordered by window then feature."""
        self._check_device(device)
        if feature is not None:
            if self._conn.execute("SELECT 1 FROM feature_summaries WHERE feature = ? LIMIT 1", (feature,)).fetchone() is None:
                names = [r[0] for r in self._conn.execute("SELECT DISTINCT feature FROM feature_summaries ORDER BY 1")]
                raise DataError(f"unknown feature {feature!r}; the store has {', '.join(names[:20]) or 'no features'}")
        where, args = _sql_where((("device_id = ?", device), ("feature = ?", feature),
                                  ("window_start >= ?", _check_time(start, "start")),
                                  ("window_start < ?", _check_time(end, "end"))))
        cur = self._conn.execute("SELECT window_start, window_end, device_id, model_version, feature, mean, std, min, "
                                 f"max, count FROM feature_summaries{where} ORDER BY window_start, device_id, id", args)
        keys = [d[0] for d in cur.description]
        return [dict(zip(keys, r)) for r in cur.fetchall()]

    def feature_matrix(self, stat: str = "mean", device: str | None = None, start: float | None = None,
                       end: float | None = None) -> tuple[np.ndarray, list[str]]:
        """The per-window summaries as a matrix: one row per (device, window), one column per feature
        (sorted by name), holding ``stat`` (mean, std, min, max). Windows missing a feature are an error."""
        if stat not in ("mean", "std", "min", "max"):
            raise AttributeValueError(f"stat={stat!r} is not one of mean, std, min, max")
        rows = self.feature_summaries(device, None, start, end)
        if not rows:
            raise DataError(f"no feature summaries for device={device!r} in [{start}, {end}); log them with "
                            f"log_features first, or widen the range")
        names = sorted({r["feature"] for r in rows})
        col = {n: j for j, n in enumerate(names)}
        keys: dict[tuple, int] = {}
        for r in rows:
            keys.setdefault((r["device_id"], r["window_start"], r["window_end"]), len(keys))
        out = np.full((len(keys), len(names)), np.nan)
        for r in rows:
            out[keys[(r["device_id"], r["window_start"], r["window_end"])], col[r["feature"]]] = r[stat]
        if np.isnan(out).any():
            i, j = np.argwhere(np.isnan(out))[0]
            raise DataError(f"window {list(keys)[i]} has no summary of feature {names[j]!r}; log every feature "
                            f"in every window")
        return out, names

    def events(self, kind: str | None = None, device: str | None = None, start: float | None = None,
               end: float | None = None) -> list[dict[str, Any]]:
        """Events (alerts, drift checks, ...) ordered by time."""
        where, args = _sql_where((("kind = ?", kind), ("device_id = ?", device),
                                  ("ts >= ?", _check_time(start, "start")), ("ts < ?", _check_time(end, "end"))))
        cur = self._conn.execute("SELECT ts, kind, name, device_id, model_version, metric, value, threshold, "
                                 f"flagged, message FROM events{where} ORDER BY ts, id", args)
        keys = [d[0] for d in cur.description]
        return [{**dict(zip(keys, r)), "flagged": bool(r[8])} for r in cur.fetchall()]

    def latest_timestamp(self) -> float | None:
        """The newest prediction's timestamp (None on an empty store)."""
        return self._conn.execute("SELECT max(ts) FROM predictions").fetchone()[0]

    # -- drift -------------------------------------------------------------------------------

    def _drift_data(self, source: str, device, version, start, end, labelled: bool = False) -> Any:
        if source == "features":
            return self.feature_matrix("mean", device, start, end)[0]
        w = self.window(device, version, start, end)
        if not len(w):
            raise DataError(f"no predictions for device={device!r}, model_version={version!r} in [{start}, {end}); "
                            f"widen the range")
        if labelled:
            m = w.labelled
            if not m.any():
                raise DataError(f"no labelled predictions in the reference [{start}, {end}); BBSEDrift needs true "
                                f"labels there")
            return w.predicted[m], w.true_label[m]
        return {"confidence": w.confidence, "latency": w.latency_ms, "predicted": w.predicted}[source]

    def check_drift(self, detector: Any, reference: tuple[float, float], current: tuple[float, float],
                    source: str = "confidence", device: str | None = None, model_version: str | None = None,
                    record: bool = True) -> "DriftResult":
        """Fit a drift detector on the ``reference`` time range and test the ``current`` one.

        Args:
            detector: a window detector (``KSDrift()``, ``MMDDrift()``, ``ChiSquareDrift()``, ``BBSEDrift()``, ...).
            reference, current: ``(start, end)`` time ranges.
            source: what is compared: ``confidence`` or ``latency`` (one value per prediction),
                ``predicted`` (labels: ChiSquareDrift, or BBSEDrift fitted on the labelled reference rows),
                ``features`` (one row per logged window: each feature's window mean).
            device, model_version: restrict both ranges to these.
            record: write the result as a ``drift`` event at the end of ``current``.
        """
        from .drift import BBSEDrift

        _check_source(source)
        (r0, r1), (c0, c1) = reference, current
        if isinstance(detector, BBSEDrift):
            if source != "predicted":
                raise AttributeValueError("BBSEDrift compares predicted labels; use source='predicted'")
            detector.fit(*self._drift_data(source, device, model_version, r0, r1, labelled=True))
        else:
            detector.fit(self._drift_data(source, device, model_version, r0, r1))
        result = detector.test(self._drift_data(source, device, model_version, c0, c1))
        if record:
            p = "" if result.p_value is None else f", p = {result.p_value:.3g}"
            self.log_event("drift", type(detector).__name__, f"{source}: statistic {result.statistic:.4g}{p}, "
                           f"{'drift' if result.drift else 'no drift'}", timestamp=float(c1), device_id=device,
                           model_version=model_version, metric=source, value=result.statistic,
                           threshold=result.threshold, flagged=result.drift)
        return result

    # -- alerts ------------------------------------------------------------------------------

    def evaluate(self, rules: Sequence[AlertRule], now: float | None = None, record: bool = True) -> list[Alert]:
        """Check every rule on its latest window and return the alerts (recorded as ``alert`` events,
        all in one batch, unless ``record`` is False).

        Args:
            rules: the rules.
            now: the end of the time windows (a window is ``(now - window_s, now]``); None: the newest
                prediction's timestamp.
        """
        rules = list(rules)
        for r in rules:
            if not isinstance(r, AlertRule):
                raise AttributeValueError(f"evaluate takes AlertRule objects, got {type(r).__name__}")
        latest = self.latest_timestamp()
        now = latest if now is None else _check_time(now, "now")
        alerts: list[Alert] = []
        if now is None:  # nothing logged yet
            return alerts
        for rule in rules:
            if rule.model_version is not None:
                self._check_version(rule.model_version)
            devices = self.devices() if rule.per_device else [None]
            for dev in devices:
                alert = self._evaluate_one(rule, dev, now)
                if alert is not None:
                    alerts.append(alert)
        if record and alerts:
            self._log_events([("alert", a.rule, a.message, a.timestamp, a.device_id, a.model_version, a.metric,
                               a.value, a.threshold, True) for a in alerts])
        return alerts

    def _evaluate_one(self, rule: AlertRule, device: str | None, now: float) -> Alert | None:
        # the window is (now - window_s, now]: window_s seconds, the newest prediction included
        start = None if rule.window_s is None else float(np.nextafter(now - rule.window_s, np.inf))
        end = np.nextafter(now, np.inf)
        where = f"device {device}" if device else "the fleet"
        if rule.metric == "drift":
            if rule.window_n is not None:  # the time span of the latest window_n predictions
                latest = self.window(device, rule.model_version, None, float(end), rule.window_n)
                start = float(latest.timestamp[0]) if len(latest) else None
            current = (rule.reference[1] if start is None else start, float(end))
            try:
                res = self.check_drift(rule.detector, rule.reference, current, rule.source, device,
                                       rule.model_version, record=False)
            except DataError:
                return None  # no data for this device in one of the ranges: no verdict
            if not res.drift:
                return None
            value, threshold = res.statistic, res.threshold
            msg = f"{rule.name}: {type(rule.detector).__name__} finds drift in {rule.source} on {where}" + (
                "" if res.p_value is None else f" (p = {res.p_value:.3g})")
            return Alert(rule.name, "drift", float(value), threshold, device, rule.model_version, start, now, now, msg,
                         {"result": res.to_dict()})
        w = self.window(device, rule.model_version, start, float(end), rule.window_n)
        n = int(w.labelled.sum()) if rule.metric in ("accuracy", "error_rate") else len(w)
        if n < rule.min_count:
            return None
        value = w.metric(rule.metric)
        if value is None or not rule.fires(value):
            return None
        msg = (f"{rule.name}: {rule.metric} = {value:.4g} {rule.op} {rule.threshold:g} on {where} over "
               f"{len(w)} predictions")
        return Alert(rule.name, rule.metric, float(value), float(rule.threshold), device, rule.model_version,
                     float(w.timestamp[0]) if start is None and len(w) else start, now, now, msg, {"n": n})


__all__ = ["MetricsStore", "AlertRule", "Alert", "PredictionWindow", "SCHEMA_VERSION", "METRICS"]
