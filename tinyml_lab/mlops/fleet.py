"""A fleet of microcontrollers running an int8 model, drifting, and a cloud that watches, retrains and rolls out.

The loop, one step at a time (:meth:`Fleet.step`):

1. **devices**: each device draws its batch from its own seeded stream
   (:mod:`tinyml_lab.mlops.streams`), runs the version the rollout routes it
   to (the int8 ``digits-cnn`` of the zoo, committed weights, through the
   int8 :class:`~tinyml_lab.interpreter.Interpreter`) and, in a shadow
   rollout, the candidate beside it. A device holds two model banks
   (:class:`~tinyml_lab.mlops.signing.ModelSlot`: running and previous), so
   switching between two versions costs no bytes; a version it does not
   hold arrives as a signed package, which it installs only if it verifies
   (otherwise it keeps serving what it runs, and the rejection is recorded);
2. **uplink**: each device sends a summary (accuracy on its labelled
   samples, mean confidence, mean input) and its labelled samples; a share
   ``label_fraction`` of each batch gets its label (the first samples of the
   batch, which is drawn at random);
3. **cloud**: the rollout strategy (:mod:`tinyml_lab.mlops.rollout`) takes
   the labelled outcomes and may expand, promote or roll back; the
   continual learner (:mod:`tinyml_lab.mlops.continual`) keeps the labelled
   samples, watches the per-sample confidences with its trigger (not during a
   rollout, when several versions serve), and when due retrains (a cloud
   full retrain or a sparse update with the device's training step) and
   releases a new version, packaged and signed, which a new rollout carries.

Accounting: update bytes are what the cloud sends (every delivery, including
ones a device rejects); update energy is the radio energy of receiving them
plus, for a sparse update, one device's training energy
(:func:`~tinyml_lab.mlops.continual.radio_energy_mj`,
:func:`~tinyml_lab.mlops.continual.training_cost`); uplink bytes are the
labelled samples' int8 inputs and labels. Recovery is measured on the fleet's
mean accuracy: the baseline is the mean before the shift, and the fleet has
recovered at the first step after the onset where the mean over the last
``recovery_window`` steps is back within ``recovery_tolerance`` of it. Every
version is also scored on the held-out images, clean and shifted.

Everything random is seeded from ``seed``: two runs with the same
configuration give identical reports.

>>> report = simulate(devices=4, steps=6, drift="none", strategy="none", seed=0, quiet=True)  # doctest: +SKIP
>>> report.summary()["accuracy_before"]                                                       # doctest: +SKIP
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import AttributeValueError
from ..graph import Graph
from .continual import RETRAINS, STAGES, ContinualLearner, ModelState, Update, radio_energy_mj
from .rollout import STRATEGIES, Outcome, Route, make_rollout
from .signing import ModelSlot, graph_bytes, package_model, package_patch, public_key_bytes, sha256, signing_key
from .streams import DRIFTS, DigitsSource, DriftSchedule, check_count, check_seed, make_streams, shifted_holdout

MODEL = "digits-cnn"
# per-strategy defaults sized for a fleet of tens of devices labelling a few samples per step
STRATEGY_DEFAULTS: dict[str, dict] = {
    "none": {}, "shadow": {"min_samples": 200}, "canary": {"min_samples": 32},
    "ab": {"n_per_arm": 200}, "bandit": {"min_samples": 200},
}


@dataclass
class FleetConfig:
    """Everything a simulation depends on (see :func:`simulate` for the meaning of each field)."""

    devices: int = 20
    steps: int = 60
    drift: str = "sudden"
    strategy: str = "canary"
    retrain: str = "sparse"
    stage: str = "drift"
    seed: int = 0
    shift: str | None = "rotate"
    strength: float | None = 30.0
    t0: int = 20
    period: int = 10
    label_prior: tuple | None = None
    onset_jitter: int = 0
    batch_size: int = 8
    label_fraction: float = 0.5
    every: int = 15
    detector: str = "ks"
    min_samples: int = 512
    tamper_rate: float = 0.0
    device: str = "nrf52840"
    strategy_params: dict = field(default_factory=dict)
    retrain_params: dict = field(default_factory=dict)
    recovery_window: int = 3
    recovery_tolerance: float = 0.05
    recovery_share: float = 0.5

    def check(self) -> "FleetConfig":
        """Raise an :class:`AttributeValueError` naming the first bad field and what it accepts."""
        check_count(self.devices, "number of devices")
        check_count(self.steps, "steps")
        check_seed(self.seed)
        for value, what, options in ((self.drift, "drift", DRIFTS), (self.strategy, "strategy", STRATEGIES),
                                     (self.retrain, "retraining", RETRAINS), (self.stage, "stage", STAGES)):
            if value not in options:
                raise AttributeValueError(f"unknown {what} {value!r}; choose one of {', '.join(options)}")
        for value, what, lo_open in ((self.label_fraction, "label_fraction", True),
                                     (self.tamper_rate, "tamper_rate", False)):
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not ((value > 0 if lo_open else value >= 0) and value <= 1):
                raise AttributeValueError(f"{what} must be a number in {'(' if lo_open else '['}0, 1], got {value!r}")
        if self.tamper_rate >= 1:
            raise AttributeValueError("tamper_rate must be below 1: with every package damaged nothing installs")
        if self.strategy in ("canary", "ab") and self.devices < 2:
            raise AttributeValueError(f"the {self.strategy} strategy compares devices and needs at least 2, "
                                      f"got {self.devices}")
        check_count(self.recovery_window, "recovery_window")
        return self


@dataclass
class _Device:
    id: int
    stream: Any
    slot: ModelSlot
    shadow: ModelSlot | None = None


@dataclass
class FleetReport:
    """Metrics over time of one simulation, and its summary.

    Arrays are indexed ``[step]`` or ``[step, device]``: ``accuracy`` (true
    accuracy of each device's batch), ``confidence`` (mean max-probability),
    ``p_shift`` (probability of the shifted domain), ``served`` (version
    each device served), ``update_bytes``/``update_energy_mj`` (downlink and
    its energy, per step) and ``uplink_bytes``. ``events`` lists drift alarms,
    releases, rollout decisions, rejected packages; ``versions`` every model
    version with its package size and held-out accuracy; ``rollouts`` each
    rollout's summary.
    """

    config: dict
    accuracy: np.ndarray
    confidence: np.ndarray
    p_shift: np.ndarray
    served: list
    update_bytes: np.ndarray
    update_energy_mj: np.ndarray
    uplink_bytes: np.ndarray
    events: list
    versions: list
    rollouts: list
    rejected: int
    rollbacks: int
    device_train_mj: float

    def fleet_accuracy(self) -> np.ndarray:
        """Mean accuracy over devices, per step."""
        return self.accuracy.mean(axis=1)

    def recovery(self) -> dict:
        """Fleet accuracy before the (first) shift, at its lowest after it, at the end, and the recovery.

        With ``a`` the fleet accuracy and ``r`` its rolling mean over
        ``recovery_window`` steps after the onset ``t0``: ``before`` is the
        mean of ``a`` before ``t0``, ``after_shift`` the minimum of ``r``,
        ``drop = before - after_shift``. If ``drop <= recovery_tolerance``
        the shift did no material harm (``time_to_recover = 0``). Otherwise
        ``time_to_recover`` counts the steps from ``t0`` until ``r`` regains
        ``recovery_share`` of the drop after its minimum (None if it never
        does), and ``recovered_share = (end - after_shift) / drop`` with
        ``end`` the mean of the last ``recovery_window`` steps.
        """
        cfg = self.config
        a = self.fleet_accuracy()
        w = int(cfg["recovery_window"])
        t0, steps = int(cfg["t0"]), len(a)
        out = {"accuracy_before": None, "accuracy_after_shift": None, "accuracy_end": None,
               "drop": None, "time_to_recover": None, "recovered_share": None}
        if steps == 0:
            return out
        out["accuracy_end"] = _r(a[-min(w, steps):].mean())
        if cfg["drift"] == "none" or t0 >= steps or t0 == 0:
            out["accuracy_before"] = _r(a.mean()) if cfg["drift"] == "none" or t0 >= steps else None
            return out
        base = float(a[:t0].mean())
        roll = np.array([a[max(t0, t - w + 1): t + 1].mean() for t in range(t0, steps)])
        low = int(np.argmin(roll))
        drop = base - float(roll[low])
        out.update(accuracy_before=_r(base), accuracy_after_shift=_r(roll[low]), drop=_r(drop))
        if drop <= float(cfg["recovery_tolerance"]):
            out["time_to_recover"] = 0
            return out
        target = float(roll[low]) + float(cfg["recovery_share"]) * drop
        back = np.flatnonzero(roll[low:] >= target)
        out["time_to_recover"] = int(low + back[0]) if back.size else None
        out["recovered_share"] = _r((float(a[-min(w, steps):].mean()) - float(roll[low])) / drop, 4)
        return out

    def summary(self) -> dict:
        """The headline figures as plain Python values."""
        cfg = self.config
        rec = self.recovery()
        releases = [e for e in self.events if e["kind"] == "release"]
        radio = float(self.update_energy_mj.sum()) - self.device_train_mj
        return {
            "devices": cfg["devices"], "steps": cfg["steps"], "drift": cfg["drift"], "strategy": cfg["strategy"],
            "retrain": cfg["retrain"], "stage": cfg["stage"], "seed": cfg["seed"],
            **rec,
            "updates_released": len(releases),
            "promoted": sum(1 for r in self.rollouts if r["status"] == "promoted"),
            "rollbacks": self.rollbacks, "rejected_packages": self.rejected,
            "update_bytes": int(self.update_bytes.sum()), "update_energy_mj": _r(self.update_energy_mj.sum(), 4),
            "radio_energy_mj": _r(radio, 4), "device_train_mj": _r(self.device_train_mj, 4),
            "uplink_bytes": int(self.uplink_bytes.sum()),
            "final_versions": sorted(set(self.served[-1])),
        }

    def to_json(self) -> dict:
        """Everything, as JSON-ready values (arrays as nested lists, rounded to 6 digits)."""
        return {"config": self.config, "summary": self.summary(),
                "accuracy": np.round(self.accuracy, 6).tolist(), "confidence": np.round(self.confidence, 6).tolist(),
                "p_shift": np.round(self.p_shift, 6).tolist(), "served": self.served,
                "update_bytes": self.update_bytes.tolist(),
                "update_energy_mj": np.round(self.update_energy_mj, 6).tolist(),
                "uplink_bytes": self.uplink_bytes.tolist(), "events": self.events, "versions": self.versions,
                "rollouts": self.rollouts}

    def timeline(self, every: int = 5) -> list[dict]:
        """Rows every ``every`` steps (and the last): fleet accuracy, its min, shifted share, versions served, bytes."""
        a = self.accuracy
        rows = []
        for t in list(range(0, len(a), every)) + ([len(a) - 1] if (len(a) - 1) % every else []):
            counts: dict[str, int] = {}
            for v in self.served[t]:
                counts[v] = counts.get(v, 0) + 1
            rows.append({"step": t, "p_shift": _r(self.p_shift[t].mean(), 3), "accuracy": _r(a[t].mean(), 4),
                         "min_accuracy": _r(a[t].min(), 4), "served": dict(sorted(counts.items())),
                         "update_bytes": int(self.update_bytes[: t + 1].sum())})
        return rows

    def plot(self, ax=None):
        """Fleet accuracy over time (mean, and the range over devices), the shifted share, releases and
        rollout decisions; cumulative update bytes on a second axis. Returns the figure."""
        return plot_fleet(self, ax)


def _r(v: float, digits: int = 6) -> float:
    return round(float(v), digits)


def _stats(v: np.ndarray) -> dict[str, float]:
    v = np.asarray(v, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max()),
            "count": int(v.size)}


class Fleet:
    """N devices, their streams and model slots, and the cloud side. See the module docstring.

    Args:
        config: a :class:`FleetConfig`; keyword arguments override its fields.
        store: a :class:`~tinyml_lab.mlops.monitoring.MetricsStore` to log into, or None: every
            device's predictions each step (with the modelled latency of its model on the MCU and the
            label where one arrives), a per-step feature summary (mean input, confidence), and the
            events (alarms, releases, rollout decisions, rejected packages); the timestamp is the step.
    """

    def __init__(self, config: FleetConfig | None = None, store=None, **overrides):
        cfg = FleetConfig(**{**(asdict(config) if config is not None else {}), **overrides}).check()
        self.config = cfg
        self.source, float_graph, int8 = _factory_model()
        schedule = DriftSchedule(cfg.drift, cfg.t0, cfg.period)
        shift = cfg.shift if cfg.drift != "none" or cfg.shift is not None else None
        streams = make_streams(self.source, cfg.devices, cfg.seed, schedule, shift=shift,
                               strength=None if shift == "invert" else cfg.strength,
                               label_prior=cfg.label_prior, batch_size=cfg.batch_size,
                               onset_jitter=cfg.onset_jitter)
        self.key = signing_key(cfg.seed)
        self.public_key = public_key_bytes(self.key)
        self.version = "v1"
        self.state = ModelState("v1", int8, float_graph, int8, float_graph)
        data = graph_bytes(int8)
        self.graphs: dict[str, Graph] = {"v1": int8}
        self.shas: dict[str, str] = {"v1": sha256(data)}
        self.full_packages: dict[str, bytes] = {"v1": package_model(int8, "v1", self.key, MODEL)}
        self.patches: dict[str, bytes] = {}
        self.updates: dict[str, Update | None] = {"v1": None}
        self.version_info: dict[str, dict] = {"v1": {"version": "v1", "kind": "factory", "parent": None,
                                                     "released_at": None, "status": "deployed", "reason": "factory",
                                                     "package_bytes": len(self.full_packages["v1"])}}
        self.devices = [_Device(d, streams[d], ModelSlot(int8, "v1", self.shas["v1"], self.public_key, MODEL))
                        for d in range(cfg.devices)]
        self.learner = ContinualLearner(cfg.stage, _retrainer(cfg), every=cfg.every, detector=cfg.detector,
                                        min_samples=cfg.min_samples,
                                        replay=(self.source.x_train, self.source.y_train))
        self.rollout = None
        self.rollouts: list = []
        self._interpreters: dict[str, Any] = {}
        self.n_labelled = max(1, int(round(cfg.label_fraction * cfg.batch_size)))
        s, n = cfg.steps, cfg.devices
        self.accuracy = np.zeros((s, n))
        self.confidence = np.zeros((s, n))
        self.p_shift = np.zeros((s, n))
        self.served: list[list[str]] = []
        self.update_bytes = np.zeros(s, dtype=np.int64)
        self.update_energy = np.zeros(s)
        self.uplink_bytes = np.zeros(s, dtype=np.int64)
        self.events: list[dict] = []
        self.rejected = 0
        self.rollbacks = 0
        self.device_train_mj = 0.0
        self.t = 0
        self.store = store
        self._latency: dict[str, float] = {}

    # ------------------------------------------------------------------ model bookkeeping
    def _interpreter(self, slot: ModelSlot):
        from ..interpreter import Interpreter

        it = self._interpreters.get(slot.sha256)
        if it is None:
            it = self._interpreters[slot.sha256] = Interpreter(slot.graph)
        return it

    def _predict(self, slot: ModelSlot, x: np.ndarray) -> np.ndarray:
        from ..quant import dequantize_output, quantize_input

        it = self._interpreter(slot)
        return dequantize_output(it.graph, it.run(quantize_input(it.graph, x)))

    def _event(self, t: int, kind: str, detail: str, **extra) -> None:
        self.events.append({"step": int(t), "kind": kind, "detail": detail, **extra})
        if self.store is not None:
            dev = extra.get("device")
            self.store.log_event(kind, kind, detail, timestamp=float(t), device_id=None if dev is None else str(dev),
                                 model_version=extra.get("version"), flagged=kind in ("trigger", "rollback",
                                                                                      "rejected"))

    def _log_step(self, t: int, batches: list, probs: list) -> None:
        """Every device's predictions of step ``t`` into the metrics store (labels where they arrive)."""
        from ..mcu import latency_ms

        k = self.n_labelled
        for dev, b, p in zip(self.devices, batches, probs):
            slot = dev.slot
            if slot.sha256 not in self._latency:
                self._latency[slot.sha256] = latency_ms(slot.graph, self.config.device)
            label = np.full(len(b.y), -1, np.int64)
            label[:k] = b.y[:k]
            self.store.log_predictions(str(dev.id), slot.version, p.argmax(axis=1), np.clip(p.max(axis=1), 0, 1),
                                       np.full(len(b.y), self._latency[slot.sha256]), label, float(t))
            self.store.log_feature_summaries(
                str(dev.id), float(t), float(t),
                {"mean_input": _stats(b.x.reshape(len(b.x), -1).mean(axis=1)), "confidence": _stats(p.max(axis=1))},
                slot.version)

    def _package_for(self, slot: ModelSlot, version: str) -> bytes:
        """The patch when the slot runs the patch's base, else the full package (built on first need)."""
        patch = self.patches.get(version)
        if patch is not None and self.version_info[version]["base_sha256"] == slot.sha256:
            return patch
        if version not in self.full_packages:
            self.full_packages[version] = package_model(self.graphs[version], version, self.key, MODEL)
        return self.full_packages[version]

    def _deliver(self, dev: _Device, slot: ModelSlot, version: str, t: int) -> bool:
        """Send ``version`` to a slot; damaged in transit with probability ``tamper_rate``. True if installed."""
        blob = self._package_for(slot, version)
        rng = np.random.default_rng([self.config.seed, dev.id, t, 7])
        if self.config.tamper_rate and rng.random() < self.config.tamper_rate:
            b = bytearray(blob)
            b[int(rng.integers(0, len(b)))] ^= 1 << int(rng.integers(0, 8))
            blob = bytes(b)
        self.update_bytes[t] += len(blob)
        self.update_energy[t] += radio_energy_mj(len(blob))
        if slot.install(blob):
            return True
        self.rejected += 1
        self._event(t, "rejected", f"device {dev.id} rejected {version}: {slot.log[-1].reason}", device=dev.id)
        return False

    def _provide(self, dev: _Device, version: str, t: int) -> None:
        """Make ``dev`` run ``version``: already running, a bank switch, or a delivery (kept old if rejected)."""
        slot = dev.slot
        if slot.version == version:
            return
        if slot.holds(version):
            slot.swap()
            return
        self._deliver(dev, slot, version, t)

    def _provide_shadow(self, dev: _Device, version: str | None, t: int) -> ModelSlot | None:
        if version is None:
            dev.shadow = None
            return None
        if dev.shadow is None or dev.shadow.version != version:
            s = dev.slot
            dev.shadow = ModelSlot(s.graph, s.version, s.sha256, self.public_key, MODEL)
            if not self._deliver(dev, dev.shadow, version, t):
                dev.shadow = None
        return dev.shadow

    # ------------------------------------------------------------------ releases
    def release(self, update: Update | Graph, t: int | None = None, reason: str = "") -> str:
        """Package a new version (a retrained :class:`Update`, or any int8 graph as a full model) and start
        a rollout of it with the configured strategy at the next step. Returns the version name."""
        t = self.t if t is None else int(t)
        version = f"v{len(self.graphs) + 1}"
        if isinstance(update, Graph):
            graph, kind, tensors = update, "full", {}
            self.updates[version] = None
        else:
            graph, kind, tensors = update.int8, update.kind, update.tensors
            self.updates[version] = update
            reason = reason or update.reason
        if not graph.is_quantized:
            raise AttributeValueError("a release must be an int8 graph (quantize it first)")
        data = graph_bytes(graph)
        self.graphs[version], self.shas[version] = graph, sha256(data)
        info = {"version": version, "kind": kind, "parent": self.version, "released_at": t, "status": "rolling out",
                "reason": reason, "base_sha256": self.shas[self.version]}
        if kind == "patch" and tensors:
            self.patches[version] = package_patch(tensors, version, self.version, self.shas[self.version],
                                                  self.shas[version], self.key, MODEL)
            info["package_bytes"] = len(self.patches[version])
            info["tensors"] = sorted(tensors)
        else:
            self.full_packages[version] = package_model(graph, version, self.key, MODEL)
            info["package_bytes"] = len(self.full_packages[version])
        if update is not None and not isinstance(update, Graph):
            info["update"] = update.to_json()
            self.update_energy[t] += update.device_train_mj
            self.device_train_mj += update.device_train_mj
        self.version_info[version] = info
        self._event(t, "release", f"{version} ({kind}, {info['package_bytes']:,} bytes): {reason}",
                    version=version)
        params = {**STRATEGY_DEFAULTS[self.config.strategy], **self.config.strategy_params}
        self.rollout = make_rollout(self.config.strategy, **params).start(
            self.version, version, range(self.config.devices), step=t + 1,
            seed=int(np.random.SeedSequence([self.config.seed, len(self.graphs)]).generate_state(1)[0]))
        return version

    def _end_rollout(self, t: int) -> None:
        r = self.rollout
        cand = r.candidate_
        self.version_info[cand]["status"] = r.status_
        self.rollouts.append(r.summary())
        if r.status_ == "promoted":
            self.version_info[self.version]["status"] = "replaced"
            self.version = cand
            u = self.updates.get(cand)
            self.state = ModelState(cand, self.graphs[cand], u.float_graph if u is not None else self.state.float_graph,
                                    self.state.base_int8, self.state.base_float)
            self.version_info[cand]["status"] = "promoted"
        else:
            if r.status_ in ("rolled_back", "kept"):
                self.rollbacks += 1
            for dev in self.devices:
                if dev.slot.version == cand:
                    dev.slot.rollback()
        for dev in self.devices:
            dev.shadow = None
        self.learner.deployed(t)
        self.rollout = None

    # ------------------------------------------------------------------ one step
    def step(self) -> None:
        """Advance the fleet by one step (see the module docstring).

        BLAS runs on one thread during the step: the batches are small, so
        threads only add contention, and float sums in one fixed order keep
        runs reproducible to the last digit on any machine.
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            self._step()

    def _step(self) -> None:
        cfg = self.config
        t = self.t
        if t >= cfg.steps:
            raise AttributeValueError(f"the simulation has {cfg.steps} steps and all have run")
        routes: list[Route] = []
        for dev in self.devices:
            r = self.rollout.route(dev.id, t) if self.rollout is not None else Route(self.version)
            self._provide(dev, r.serve, t)
            routes.append(r)
        batches = [dev.stream.batch(t) for dev in self.devices]
        probs = self._run_grouped([dev.slot for dev in self.devices], batches)
        shadow_slots = [self._provide_shadow(dev, r.shadow, t) for dev, r in zip(self.devices, routes)]
        shadow_probs = self._run_grouped(shadow_slots, batches)
        k = self.n_labelled
        outcomes, feats, errors, xs, ys = [], [], [], [], []
        served = []
        for dev, b, p, sp in zip(self.devices, batches, probs, shadow_probs):
            pred = p.argmax(axis=1)
            right = pred == b.y
            self.accuracy[t, dev.id] = right.mean()
            self.confidence[t, dev.id] = p.max(axis=1).mean()
            self.p_shift[t, dev.id] = b.p_shift
            served.append(dev.slot.version)
            outcomes.append(Outcome(dev.id, dev.slot.version, int(right[:k].sum()), k))
            if sp is not None:
                s_right = sp.argmax(axis=1)[:k] == b.y[:k]
                outcomes.append(Outcome(dev.id, dev.shadow.version, int(s_right.sum()), k, served=False,
                                        wins=int((s_right & ~right[:k]).sum()),
                                        losses=int((~s_right & right[:k]).sum())))
            feats.append(p.max(axis=1))
            errors.append(~right[:k])
            xs.append(b.x[:k])
            ys.append(b.y[:k])
            self.uplink_bytes[t] += k * (int(np.prod(b.x.shape[1:])) + 1)
        self.served.append(served)
        if self.store is not None:
            self._log_step(t, batches, probs)
        rolling = self.rollout is not None
        self.learner.observe(t, np.concatenate(xs), np.concatenate(ys), np.concatenate(feats),
                             np.concatenate(errors).astype(np.float64), watch=not rolling)
        if rolling:
            self.rollout.observe(outcomes)
            d = self.rollout.decide(t)
            if d is not None:
                self._event(t, d.action, d.detail, strategy=d.strategy)
            if not self.rollout.running:
                self._end_rollout(t)
        if self.rollout is None:
            waiting = self.learner.pending_ is not None
            due = self.learner.due(t)
            if not waiting and self.learner.pending_ is not None:
                self._event(t, "trigger", self.learner.pending_[0])
            if due is not None:
                seed = int(np.random.SeedSequence([cfg.seed, t, 3]).generate_state(1)[0])
                update = self.learner.retrain(self.state, t, seed=seed, device=cfg.device)
                self.release(update, t)
        self.t += 1

    def _run_grouped(self, slots: list[ModelSlot | None], batches: list) -> list[np.ndarray | None]:
        """Each device's output probabilities, running the devices that hold the same model as one batch."""
        out: list[np.ndarray | None] = [None] * len(slots)
        groups: dict[str, list[int]] = {}
        for i, s in enumerate(slots):
            if s is not None:
                groups.setdefault(s.sha256, []).append(i)
        for idx in groups.values():
            p = self._predict(slots[idx[0]], np.concatenate([batches[i].x for i in idx]))
            n = 0
            for i in idx:
                m = len(batches[i].y)
                out[i] = p[n: n + m]
                n += m
        return out

    # ------------------------------------------------------------------ the whole run
    def run(self, quiet: bool = True) -> FleetReport:
        """Run the remaining steps and return the :class:`FleetReport`."""
        from tqdm.auto import tqdm

        for _ in tqdm(range(self.t, self.config.steps), desc="fleet", disable=quiet, leave=False):
            self.step()
        return self.report()

    def report(self) -> FleetReport:
        """The report of the steps run so far (a rollout still running is summarised as running)."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return self._report()

    def _report(self) -> FleetReport:
        s = self.t
        rollouts = list(self.rollouts)
        if self.rollout is not None:
            rollouts.append(self.rollout.summary())
        versions = []
        x_shift, y_shift = shifted_holdout(self.source, self.config.shift if self.config.drift != "none" else None,
                                           None if self.config.shift == "invert" else self.config.strength,
                                           self.config.seed)
        for v, info in self.version_info.items():
            slot = ModelSlot(self.graphs[v], v, self.shas[v], self.public_key, MODEL)
            row = {k: val for k, val in info.items() if k not in ("base_sha256", "update")}
            row["holdout_clean"] = _r((self._predict(slot, self.source.x_holdout).argmax(1)
                                       == self.source.y_holdout).mean(), 4)
            row["holdout_shifted"] = _r((self._predict(slot, x_shift).argmax(1) == y_shift).mean(), 4)
            if "update" in info:
                row["update"] = info["update"]
            versions.append(row)
        cfg = asdict(self.config)
        cfg["steps"] = s if s < self.config.steps else self.config.steps
        return FleetReport(cfg, self.accuracy[:s].copy(), self.confidence[:s].copy(), self.p_shift[:s].copy(),
                           [list(r) for r in self.served], self.update_bytes[:s].copy(), self.update_energy[:s].copy(),
                           self.uplink_bytes[:s].copy(), list(self.events), versions, rollouts, self.rejected,
                           self.rollbacks, self.device_train_mj)


@lru_cache(maxsize=1)
def _factory_model() -> tuple[DigitsSource, Graph, Graph]:
    """The field data and the model every device leaves the factory with: ``digits-cnn`` with its committed
    weights, BatchNorm folded, int8-calibrated on 256 training images. Shared by every fleet and never
    modified (retraining and patching work on copies)."""
    from .. import zoo
    from ..passes import fold_batchnorm, fuse_activations
    from ..quant import quantize_model

    source = DigitsSource(seed=0)  # the split the committed digits-cnn weights were trained on
    float_graph = fuse_activations(fold_batchnorm(zoo.get(MODEL)))
    return source, float_graph, quantize_model(float_graph, source.x_train[:256])


def _retrainer(cfg: FleetConfig):
    from .continual import make_retrainer

    return make_retrainer(cfg.retrain, **cfg.retrain_params)


def simulate(devices: int = 20, steps: int = 60, drift: str = "sudden", strategy: str = "canary",
             retrain: str = "sparse", seed: int = 0, quiet: bool = True, **options) -> FleetReport:
    """Simulate a fleet and return its :class:`FleetReport`.

    Args:
        devices: number of microcontrollers (>= 1; canary and A/B need 2).
        steps: simulation steps (>= 1); each device sees ``batch_size`` samples a step.
        drift: ``none``, ``sudden`` (at ``t0``), ``gradual`` (ramp over ``period``) or ``recurring``.
        strategy: rollout strategy: ``none`` (all at once), ``shadow``, ``canary``, ``ab`` or ``bandit``.
        retrain: ``sparse`` (device training step, patch) or ``full`` (cloud retrain, whole model).
        seed: seeds everything.
        quiet: no progress bar.
        **options: further :class:`FleetConfig` fields: ``stage`` (manual, scheduled, stateful, drift),
            ``shift`` and ``strength`` (rotate 30 degrees by default), ``t0``, ``period``,
            ``label_prior``, ``onset_jitter``, ``batch_size``, ``label_fraction``, ``every``,
            ``detector``, ``min_samples``, ``tamper_rate``, ``device`` (MCU profile for energy),
            ``strategy_params``, ``retrain_params``, ``recovery_window``, ``recovery_tolerance``.
    """
    fleet = Fleet(devices=devices, steps=steps, drift=drift, strategy=strategy, retrain=retrain, seed=seed,
                  **options)
    return fleet.run(quiet=quiet)


def plot_fleet(report: FleetReport, ax=None):
    """Fleet accuracy over time with the range over devices, the shifted share, releases and rollout
    decisions, and cumulative update bytes (right axis). Returns the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(7.0, 3.6))
    else:
        fig = ax.figure
    a = report.accuracy
    t = np.arange(len(a))
    ax.fill_between(t, a.min(axis=1), a.max(axis=1), color="#a6761d", alpha=0.2, lw=0, label="range over devices")
    ax.plot(t, a.mean(axis=1), color="#a6761d", lw=2, label="fleet accuracy")
    ax.plot(t, report.p_shift.mean(axis=1), color="#7570b3", lw=1, ls="--", label="shifted share")
    marks = {"release": ("#1b9e77", "release"), "promote": ("#1b9e77", "promote"),
             "rollback": ("#d95f02", "rollback"), "expand": ("#66a61e", "expand"), "trigger": ("#e7298a", "trigger")}
    seen = set()
    for e in report.events:
        if e["kind"] in marks:
            color, label = marks[e["kind"]]
            ax.axvline(e["step"], color=color, lw=0.8, ls=":", label=None if label in seen else label)
            seen.add(label)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax2 = ax.twinx()
    ax2.step(t, np.cumsum(report.update_bytes) / 1024, where="post", color="#666666", lw=1)
    ax2.set_ylabel("update KB sent (cumulative)")
    ax2.grid(False)
    cfg = report.config
    ax.set_title(f"{cfg['devices']} devices, {cfg['drift']} drift, {cfg['strategy']} rollout, {cfg['retrain']} "
                 f"updates")
    ax.legend(loc="lower left", fontsize=7, ncol=2)
    return fig


__all__ = ["FleetConfig", "Fleet", "FleetReport", "simulate", "plot_fleet", "STRATEGY_DEFAULTS", "MODEL"]
