"""Continual learning for a fleet: when to retrain, how, and what an update costs a device.

**When** (a :class:`Trigger`), in the four stages of Huyen (*Designing
Machine Learning Systems*, 2022, ch. 9), from the least to the most automated:

* ``manual``: nothing retrains by itself (:class:`Manual`); a person calls
  :meth:`ContinualLearner.retrain`; the retrain is stateless;
* ``scheduled``: every ``K`` steps (:class:`Scheduled`), stateless;
* ``stateful``: every ``K`` steps, stateful (fine-tuning from the weights now deployed);
* ``drift``: when a drift detector fires (:class:`DriftTriggered`), stateful.

*Stateless* retraining starts again from the checkpoint first deployed and
uses every labelled sample kept (plus, for a cloud retrain, a replay of the
original training set); *stateful* retraining warm-starts from the weights
the fleet runs now and uses only the labelled samples since the evidence
began (since the last retrain, or the first step of the drift window).

**How** (a retrainer):

* :class:`FullRetrain`: in the cloud, float training of the folded float
  graph with :func:`tinyml_lab.train.fit`, then int8 conversion with
  :func:`tinyml_lab.quant.quantize_model`, calibrated on the training
  inputs. Every tensor and every scale may change, so the update ships as a
  full package (the model's ``.npz``);
* :class:`SparseUpdate`: the device's own training step (Lin et al.,
  NeurIPS 2022; :func:`tinyml_lab.train.fit_compiled` on the int8 graph: int8
  forward, the compiled sparse backward, integer updates with QAS) under a
  :class:`~tinyml_lab.train.SparseScheme`. Only the trained tensors change,
  so the update ships as a patch of those tensors.

**What it costs a device** (:func:`radio_energy_mj`, :func:`training_cost`):

* receiving ``B`` bytes: ``E_rx = P_rx * 8 B / R``, with the nRF52840's
  radio receiving at ``R = 1 Mbit/s`` (BLE 1M PHY) and drawing 4.6 mA at
  3.0 V with the DC/DC regulator, ``P_rx = 13.8 mW`` (Nordic nRF52840
  Product Specification). This is a lower bound: link-layer framing, gaps
  between packets, retransmissions and the CPU are left out;
* training on the device: every op of the compiled training step of one
  sample (:class:`~tinyml_lab.train.CompiledStep`: forward, gates, input and
  weight gradients of the trained channels, updates) is priced with the
  cycle model of :mod:`tinyml_lab.mcu.latency` (MAC ops by MACs, the others
  by elements); ``E = P_active * cycles / f_clock`` per sample, times samples
  and epochs. The backward ops are priced at the core's int8 MAC rate,
  although they run in float32: a lower bound too.

A full retrain runs in the cloud, so a device spends only the radio energy
of the package; a sparse update is run once with the device's training
step on the labelled samples pooled from the fleet (one device's worth of
training, reported as ``device_train_mj``), then every device receives the patch.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AttributeValueError, DataError
from ..graph import Graph

STAGES = ("manual", "scheduled", "stateful", "drift")
RETRAINS = ("full", "sparse")
DETECTORS = ("ks", "psi", "mmd", "page-hinkley", "adwin")


# --------------------------------------------------------------------------- device cost models

@dataclass(frozen=True)
class Radio:
    """A radio's receive and transmit power and its air bit rate."""

    name: str
    rx_mw: float
    tx_mw: float
    bitrate_bps: float
    source: str


NRF52840_RADIO = Radio(
    "nrf52840", rx_mw=4.6 * 3.0, tx_mw=4.8 * 3.0, bitrate_bps=1e6,
    source="Nordic nRF52840 Product Specification, radio current consumption with DC/DC at 3.0 V: "
           "4.6 mA receiving at 1 Mbit/s (BLE 1M PHY), 4.8 mA transmitting at 0 dBm")


def radio_energy_mj(nbytes: int, radio: Radio = NRF52840_RADIO, receive: bool = True) -> float:
    """``E = P * 8 B / R`` in mJ for ``nbytes`` received (or sent) at the radio's air bit rate (a lower bound)."""
    if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral) or nbytes < 0:
        raise AttributeValueError(f"nbytes must be an int >= 0, got {nbytes!r}")
    power = radio.rx_mw if receive else radio.tx_mw
    return power * 8.0 * nbytes / radio.bitrate_bps


@dataclass(frozen=True)
class TrainingCost:
    """One device running a training step: MACs and cycles per sample, and totals for a run."""

    macs_per_sample: int
    cycles_per_sample: float
    samples: int
    epochs: int
    latency_ms: float
    energy_mj: float
    device: str

    def to_json(self) -> dict:
        return {"macs_per_sample": self.macs_per_sample, "cycles_per_sample": round(self.cycles_per_sample),
                "samples": self.samples, "epochs": self.epochs, "latency_ms": round(self.latency_ms, 3),
                "energy_mj": round(self.energy_mj, 4), "device": self.device}


def step_work(step) -> list:
    """The :class:`~tinyml_lab.mcu.latency.Work` of each op of a compiled training step, per sample.

    Forward ops cost what inference costs; ``grad_input`` of a conv or dense
    layer the layer's MACs (a transposed convolution has as many);
    ``grad_weight`` the layer's MACs times the trained share of its output
    channels; gates, bias gradients, other input gradients, the loss and the
    updates the elements they touch.
    """
    from ..mcu.latency import MAC_KINDS, Work, node_work, op_kind

    g = step.graph
    stats = {n.name: s for n, s in zip(g.nodes, g.layer_stats())}
    nodes = {n.name: n for n in g.nodes}
    out = []
    for op in step.ops:
        if op.kind == "loss":
            out.append(Work(op.node, op.kind, "softmax", 0, int(g.tensors[g.outputs[0]].size), 0))
            continue
        node = nodes[op.node]
        base = node_work(g, node, stats[node.name].macs)
        if op.kind == "forward":
            out.append(base)
        elif op.kind == "grad_input" and base.kind in MAC_KINDS:
            out.append(Work(op.node, op.kind, base.kind, base.macs, 0, 0))
        elif op.kind == "grad_weight":
            w = g.weights(node)["weight"].name
            share = 1.0
            if w in step.selection.channels:
                total = g.tensors[w].shape[step.selection.axes[w]]
                share = len(step.selection.channels[w]) / total
            out.append(Work(op.node, op.kind, base.kind, int(round(base.macs * share)), 0, 0))
        elif op.kind == "update":
            name = op.writes[0]
            out.append(Work(op.node, op.kind, "elementwise", 0, int(step._sliced_size(name)), 0))
        else:  # gate, grad_bias, grad_input of a pooling, softmax or reshape
            kind = op_kind(node.op)
            out.append(Work(op.node, op.kind, "elementwise" if kind in MAC_KINDS else kind, 0,
                            int(g.tensors[node.outputs[0]].size), 0))
    return out


def training_cost(graph: Graph, scheme, samples: int, epochs: int, device: str = "nrf52840") -> TrainingCost:
    """What one device spends running ``epochs`` of its compiled training step over ``samples`` samples.

    ``cycles = sum_ops cycles(op)`` per sample (see :func:`step_work` and
    :mod:`tinyml_lab.mcu.latency`), ``t = samples * epochs * cycles / f``,
    ``E = P_active * t``.
    """
    from ..mcu.devices import get_core, get_device
    from ..mcu.latency import MAC_KINDS, work_cycles
    from ..train import compile_step

    dev = get_device(device)
    core = get_core(dev.core)
    work = step_work(compile_step(graph, scheme))
    cycles = sum(work_cycles(w, core, dev.flash_cycles_per_byte) for w in work)
    macs = sum(w.macs for w in work if w.kind in MAC_KINDS)
    ms = 1000.0 * cycles * samples * epochs / dev.clock_hz
    return TrainingCost(int(macs), float(cycles), int(samples), int(epochs), ms, dev.active_power_mw * ms / 1000.0,
                        dev.name)


# --------------------------------------------------------------------------- model state and updates

@dataclass
class ModelState:
    """What the cloud knows of the deployed model: its version, int8 graph and the float graph it came from,
    and the checkpoint first deployed (for stateless retraining)."""

    version: str
    int8: Graph
    float_graph: Graph
    base_int8: Graph
    base_float: Graph


@dataclass
class Update:
    """A retrained model ready to package.

    ``kind`` is ``"full"`` (ship ``int8``) or ``"patch"`` (ship ``tensors``,
    the constants that differ from the deployed model). ``device_train_mj``
    is the on-device training energy (0 for a cloud retrain); ``cloud_macs``
    the float training MACs of a cloud retrain (forward + backward ~ 3 x
    forward MACs per sample and epoch).
    """

    kind: str
    int8: Graph
    float_graph: Graph
    tensors: dict[str, np.ndarray]
    samples: int
    epochs: int
    stateful: bool
    reason: str = ""
    device_train_mj: float = 0.0
    cloud_macs: int = 0
    training: TrainingCost | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "samples": self.samples, "epochs": self.epochs, "stateful": self.stateful,
                "reason": self.reason, "tensors": sorted(self.tensors),
                "device_train_mj": round(self.device_train_mj, 4),
                "cloud_macs": self.cloud_macs, "training": None if self.training is None else self.training.to_json()}


def changed_tensors(old: Graph, new: Graph) -> dict[str, np.ndarray]:
    """The constants of ``new`` whose values, dtype or quantization differ from ``old`` (by name)."""
    out = {}
    for name, t in new.tensors.items():
        if not t.is_const:
            continue
        o = old.tensors.get(name)
        if (o is None or not o.is_const or o.dtype != t.dtype or o.shape != t.shape
                or not np.array_equal(o.data, t.data) or o.quant != t.quant):
            out[name] = t.data
    return out


class FullRetrain:
    """Cloud retraining: float fine-tuning then int8 conversion; ships the whole model.

    Args:
        epochs, lr, batch_size: of :func:`tinyml_lab.train.fit` (SGD with momentum 0.9).
        replay: samples of the original training set mixed in (guards against forgetting).
        calibration: inputs used to calibrate the int8 conversion.
    """

    kind = "full"

    def __init__(self, epochs: int = 3, lr: float = 0.005, batch_size: int = 32, replay: int = 256,
                 calibration: int = 256):
        self.epochs = _count(epochs, "epochs")
        self.lr = _positive(lr, "lr")
        self.batch_size = _count(batch_size, "batch_size")
        self.replay = _count(replay, "replay", 0)
        self.calibration = _count(calibration, "calibration")

    def retrain(self, state: ModelState, x: np.ndarray, y: np.ndarray, stateful: bool, seed: int = 0,
                replay: tuple[np.ndarray, np.ndarray] | None = None, device: str = "nrf52840") -> Update:
        from ..quant import quantize_model
        from ..train import SGD, fit

        if replay is not None and self.replay:
            rng = np.random.default_rng([seed, 5])
            pick = rng.choice(len(replay[1]), size=min(self.replay, len(replay[1])), replace=False)
            x = np.concatenate([x, replay[0][pick]])
            y = np.concatenate([y, replay[1][pick]])
        g = (state.float_graph if stateful else state.base_float).copy()
        fit(g, x, y, epochs=self.epochs, batch_size=self.batch_size, optimizer=SGD(lr=self.lr, momentum=0.9),
            seed=seed, quiet=True)
        calib = x[np.random.default_rng([seed, 6]).permutation(len(x))[: self.calibration]]
        q = quantize_model(g, calib)
        return Update("full", q, g, changed_tensors(state.int8, q), int(len(y)), self.epochs, stateful,
                      cloud_macs=3 * g.macs * int(len(y)) * self.epochs)


class SparseUpdate:
    """The device's sparse int8 training step (compiled), on the labelled samples; ships the changed tensors.

    Args:
        scheme: a sparse scheme in the text form of :class:`~tinyml_lab.train.SparseScheme`
            (``"sparse:bias=3,pw1=1/2,dw1=1"``: the biases of the three layers under
            the classifier, all of ``dw1``, the top half of ``pw1``'s channels, and the classifier).
        epochs, lr, batch_size: of :func:`tinyml_lab.train.fit_compiled`; plain SGD with QAS
            (no momentum: no optimizer state on the device).
    """

    kind = "sparse"

    def __init__(self, scheme: str = "sparse:bias=3,pw1=1/2,dw1=1", epochs: int = 5, lr: float = 0.05,
                 batch_size: int = 32):
        self.scheme = str(scheme)
        self.epochs = _count(epochs, "epochs")
        self.lr = _positive(lr, "lr")
        self.batch_size = _count(batch_size, "batch_size")

    def retrain(self, state: ModelState, x: np.ndarray, y: np.ndarray, stateful: bool, seed: int = 0,
                replay: tuple[np.ndarray, np.ndarray] | None = None, device: str = "nrf52840") -> Update:
        from ..train import SGD, SparseScheme, fit_compiled

        g = (state.int8 if stateful else state.base_int8).copy()
        scheme = SparseScheme.parse(self.scheme, g)
        fit_compiled(g, x, y, trainable=scheme, epochs=self.epochs, batch_size=self.batch_size,
                     optimizer=SGD(lr=self.lr, qas=True), seed=seed, quiet=True)
        cost = training_cost(g, scheme, int(len(y)), self.epochs, device)
        return Update("patch", g, state.float_graph, changed_tensors(state.int8, g), int(len(y)), self.epochs,
                      stateful, device_train_mj=cost.energy_mj, training=cost)


def make_retrainer(kind: str, **params) -> FullRetrain | SparseUpdate:
    """``"full"`` -> :class:`FullRetrain`, ``"sparse"`` -> :class:`SparseUpdate`."""
    if kind == "full":
        return FullRetrain(**params)
    if kind == "sparse":
        return SparseUpdate(**params)
    raise AttributeValueError(f"unknown retraining {kind!r}; choose one of {', '.join(RETRAINS)}")


# --------------------------------------------------------------------------- triggers

class Trigger:
    """When to retrain. ``observe`` takes a step's summaries, ``fire`` returns ``(reason, since)`` or None,
    ``reset(step)`` starts afresh after a model change."""

    name = "trigger"

    def reset(self, step: int) -> None:
        self.last_ = int(step)

    def observe(self, step: int, features: np.ndarray, errors: np.ndarray) -> None:
        pass

    def fire(self, step: int) -> tuple[str, int] | None:
        raise NotImplementedError


class Manual(Trigger):
    """Never fires: retraining is a person's decision."""

    name = "manual"

    def fire(self, step: int) -> tuple[str, int] | None:
        return None


class Scheduled(Trigger):
    """Fires every ``every`` steps after the last model change; the evidence starts at that change."""

    name = "scheduled"

    def __init__(self, every: int = 10):
        self.every = _count(every, "every")
        self.last_ = 0

    def fire(self, step: int) -> tuple[str, int] | None:
        if step - self.last_ + 1 >= self.every:
            return f"schedule: {self.every} steps since step {self.last_}", self.last_
        return None


class DriftTriggered(Trigger):
    """Fires when a drift detector of :mod:`tinyml_lab.mlops.drift` flags the recent summaries.

    Window detectors (``ks``, ``psi``, ``mmd``) compare the per-sample
    features of the last ``window`` steps with a reference: the first
    ``reference_steps`` steps after each model change (the distribution the
    model was validated on in production). Streaming detectors
    (``page-hinkley``, ``adwin``) read the labelled error stream (1 wrong,
    0 right) sample by sample. A detection must persist for ``patience``
    consecutive steps; the evidence (the labelled samples a stateful retrain
    uses) starts at the step of the detection.

    Args:
        detector: a name of :data:`DETECTORS`, or a fitted-on-demand object with ``fit``/``test``.
        alpha: the test level (ks, mmd).
        window: steps per test window.
        reference_steps: steps collected as the reference after a model change.
        patience: consecutive detections needed.
    """

    name = "drift"

    def __init__(self, detector: Any = "ks", alpha: float = 0.001, window: int = 2, reference_steps: int = 3,
                 patience: int = 1):
        if isinstance(detector, str) and detector not in DETECTORS:
            raise AttributeValueError(f"unknown drift detector {detector!r}; choose one of {', '.join(DETECTORS)}")
        self.detector = detector
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
            raise AttributeValueError(f"alpha must be in (0, 1), got {alpha!r}")
        self.alpha = float(alpha)
        self.window = _count(window, "window")
        self.reference_steps = _count(reference_steps, "reference_steps")
        self.patience = _count(patience, "patience")
        self.reset(0)

    @property
    def streaming(self) -> bool:
        return self.detector in ("page-hinkley", "adwin")

    def _make(self):
        from . import drift

        if not isinstance(self.detector, str):
            return self.detector
        return {"ks": lambda: drift.KSDrift(alpha=self.alpha),
                "psi": lambda: drift.PSIDrift(),
                "mmd": lambda: drift.MMDDrift(alpha=self.alpha, n_permutations=200),
                "page-hinkley": lambda: drift.PageHinkley(),
                "adwin": lambda: drift.ADWIN()}[self.detector]()

    def reset(self, step: int) -> None:
        self.last_ = int(step)
        self.detector_ = self._make()
        self.reference_: list[np.ndarray] = []
        self.recent_: list[tuple[int, np.ndarray]] = []
        self.fitted_ = False
        self.hits_ = 0
        self.fired_ = False
        self.result_ = None

    def observe(self, step: int, features: np.ndarray, errors: np.ndarray) -> None:
        if self.streaming:
            for e in np.asarray(errors, dtype=np.float64).ravel():
                self.fired_ |= bool(self.detector_.update(float(e)))
            return
        f = np.asarray(features, dtype=np.float64)
        if not self.fitted_:
            self.reference_.append(f)
            if step - self.last_ + 1 >= self.reference_steps:
                self.detector_.fit(np.concatenate(self.reference_))
                self.fitted_ = True
            return
        self.recent_.append((int(step), f))
        self.recent_ = self.recent_[-self.window:]

    def fire(self, step: int) -> tuple[str, int] | None:
        if self.streaming:
            hit, self.fired_ = self.fired_, False
            self.hits_ = self.hits_ + 1 if hit else 0
            if self.hits_ >= self.patience:
                return f"{self.detector}: change in the error stream", step
            return None
        if not self.fitted_ or len(self.recent_) < self.window:
            return None
        self.result_ = self.detector_.test(np.concatenate([f for _, f in self.recent_]))
        self.hits_ = self.hits_ + 1 if self.result_.drift else 0
        if self.hits_ >= self.patience:
            r = self.result_
            p = "" if r.p_value is None else f", p = {r.p_value:.2g}"
            return f"{r.method or self.detector}: statistic {r.statistic:.3f}{p}", step
        return None


def make_trigger(stage: str, every: int = 10, detector: Any = "ks", **params) -> Trigger:
    """The trigger of a stage of :data:`STAGES`."""
    if stage == "manual":
        return Manual()
    if stage in ("scheduled", "stateful"):
        return Scheduled(every)
    if stage == "drift":
        return DriftTriggered(detector, **params)
    raise AttributeValueError(f"unknown continual-learning stage {stage!r}; choose one of {', '.join(STAGES)}")


# --------------------------------------------------------------------------- the learner

@dataclass
class _Labelled:
    step: int
    x: np.ndarray
    y: np.ndarray


class ContinualLearner:
    """The cloud's retraining loop: keeps labelled samples, asks the trigger, retrains when due.

    Args:
        stage: one of :data:`STAGES` (sets the trigger and stateful or stateless retraining).
        retrain: ``"full"`` or ``"sparse"``, or a retrainer object.
        every: steps between scheduled retrains.
        detector: the drift detector of the ``drift`` stage.
        min_samples: labelled samples of the evidence period needed before retraining.
        buffer_size: most labelled samples kept (the newest).
        trigger: a :class:`Trigger` to use instead of the stage's.
        replay: ``(x, y)`` of the original training set for stateless and full retrains.
    """

    def __init__(self, stage: str = "drift", retrain: Any = "sparse", every: int = 10, detector: Any = "ks",
                 min_samples: int = 512, buffer_size: int = 2048, trigger: Trigger | None = None,
                 replay: tuple[np.ndarray, np.ndarray] | None = None, **trigger_params):
        if stage not in STAGES:
            raise AttributeValueError(f"unknown continual-learning stage {stage!r}; choose one of {', '.join(STAGES)}")
        self.stage = stage
        self.stateful = stage in ("stateful", "drift")
        self.retrainer = make_retrainer(retrain) if isinstance(retrain, str) else retrain
        self.trigger = trigger if trigger is not None else make_trigger(stage, every, detector, **trigger_params)
        self.min_samples = _count(min_samples, "min_samples")
        self.buffer_size = _count(buffer_size, "buffer_size")
        self.replay = replay
        self.buffer_: list[_Labelled] = []
        self.pending_: tuple[str, int] | None = None
        self.updates_: list[Update] = []

    def observe(self, step: int, x: np.ndarray, y: np.ndarray, features: np.ndarray, errors: np.ndarray,
                watch: bool = True) -> None:
        """Keep a step's labelled samples; pass its summaries to the trigger unless ``watch`` is False
        (during a rollout, when mixed versions serve)."""
        if len(y):
            self.buffer_.append(_Labelled(int(step), np.asarray(x), np.asarray(y)))
        total = sum(len(b.y) for b in self.buffer_)
        while self.buffer_ and total - len(self.buffer_[0].y) >= self.buffer_size:
            total -= len(self.buffer_.pop(0).y)
        if watch:
            self.trigger.observe(step, features, errors)

    def samples_since(self, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Labelled samples from steps ``>= step`` (the newest ``buffer_size``)."""
        keep = [b for b in self.buffer_ if b.step >= step]
        if not keep:
            return np.empty((0,)), np.empty((0,), np.int64)
        return np.concatenate([b.x for b in keep]), np.concatenate([b.y for b in keep])

    def due(self, step: int) -> tuple[str, int] | None:
        """``(reason, since)`` when a retrain should run now: the trigger fired (now or earlier) and
        enough labelled samples of the evidence period exist."""
        if self.pending_ is None:
            self.pending_ = self.trigger.fire(step)
        if self.pending_ is None:
            return None
        since = self.pending_[1] if self.stateful else 0
        n = sum(len(b.y) for b in self.buffer_ if b.step >= since)
        return self.pending_ if n >= self.min_samples else None

    def retrain(self, state: ModelState, step: int, seed: int = 0, reason: str = "manual",
                device: str = "nrf52840") -> Update:
        """Retrain now (the trigger's evidence period, or everything kept when stateless)."""
        since = self.pending_[1] if (self.pending_ is not None and self.stateful) else 0
        if self.pending_ is not None:
            reason = self.pending_[0]
        x, y = self.samples_since(since)
        if len(y) == 0:
            raise DataError("no labelled samples to retrain on; let the fleet run and collect labels first")
        u = self.retrainer.retrain(state, x, y, self.stateful, seed, replay=self.replay, device=device)
        u.reason = reason
        self.pending_ = None
        self.updates_.append(u)
        return u

    def deployed(self, step: int) -> None:
        """A model change reached the whole fleet (or a rollout ended): restart the trigger."""
        self.pending_ = None
        self.trigger.reset(step + 1)


def _count(v: object, what: str, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
        raise AttributeValueError(f"{what} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _positive(v: object, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(v) or v <= 0:
        raise AttributeValueError(f"{what} must be a positive number, got {v!r}")
    return float(v)


__all__ = ["STAGES", "RETRAINS", "DETECTORS", "Radio", "NRF52840_RADIO", "radio_energy_mj", "TrainingCost",
           "step_work", "training_cost", "ModelState", "Update", "changed_tensors", "FullRetrain", "SparseUpdate",
           "make_retrainer", "Trigger", "Manual", "Scheduled", "DriftTriggered", "make_trigger", "ContinualLearner"]
