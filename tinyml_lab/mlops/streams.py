"""Per-device data streams that drift: what each microcontroller of a fleet sees, step by step.

A stream draws a batch at every step ``t`` from a *field pool*, data the
deployed model never saw in training. With probability ``p(t)`` a sample
comes from the *shifted domain* instead: a covariate shift of its input
(rotated, noisy or inverted digits; a sensor gain change or extra noise on
vibration features) and, optionally, a different class prior (label shift).
The drift schedule sets ``p(t)``:

* ``none``:      ``p(t) = 0``;
* ``sudden``:    ``p(t) = 1[t >= t0]``;
* ``gradual``:   ``p(t) = clip((t - t0 + 1) / period, 0, 1)``, a ramp over ``period`` steps;
* ``recurring``: ``p(t) = 1[t >= t0 and floor((t - t0) / period) is even]``, shifted
  and clean phases of ``period`` steps taking turns.

Each device's onset may lag by up to ``onset_jitter`` steps (drawn once per
device), so that a fleet does not drift in lock-step.

Randomness: the batch of device ``d`` at step ``t`` is drawn from
``np.random.default_rng([seed, d, t])``, so streams are independent across
devices, reproducible, and random-access (the batch at step 40 does not
depend on whether step 39 was drawn).

>>> src = DigitsSource()
>>> s = DeviceStream(src, device_id=3, seed=0, schedule=DriftSchedule("sudden", t0=10))
>>> b = s.batch(12)
>>> b.x.shape, bool(b.shifted.all())
((16, 16, 16, 1), True)
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from ..errors import AttributeValueError, DataError

DRIFTS = ("none", "sudden", "gradual", "recurring")


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int >= 0 (NumPy seed sequences take no negative entropy)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise AttributeValueError(f"{what} must be an int >= 0, got {seed!r}")
    return int(seed)


def check_count(value: object, what: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``; an :class:`AttributeValueError` naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise AttributeValueError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- drift schedule

@dataclass(frozen=True)
class DriftSchedule:
    """When the shifted domain appears: ``p(t)``, the probability that a sample of step ``t`` is shifted.

    Args:
        kind: one of :data:`DRIFTS`.
        t0: first step of the shift (steps count from 0).
        period: ``gradual``: steps of the ramp from 0 to 1; ``recurring``:
            steps of each shifted or clean phase.
    """

    kind: str = "none"
    t0: int = 20
    period: int = 10

    def __post_init__(self) -> None:
        if self.kind not in DRIFTS:
            raise AttributeValueError(f"unknown drift {self.kind!r}; choose one of {', '.join(DRIFTS)}")
        check_count(self.t0, "drift onset t0", 0)
        check_count(self.period, "drift period", 1)

    def probability(self, t: int, delay: int = 0) -> float:
        """``p(t)`` for a device whose onset lags by ``delay`` steps (see the module docstring)."""
        s = int(t) - (self.t0 + int(delay))
        if self.kind == "none" or s < 0:
            return 0.0
        if self.kind == "sudden":
            return 1.0
        if self.kind == "gradual":
            return min(1.0, (s + 1) / self.period)
        return 1.0 if (s // self.period) % 2 == 0 else 0.0

    def to_json(self) -> dict:
        return {"kind": self.kind, "t0": self.t0, "period": self.period}


# --------------------------------------------------------------------------- sources

class DigitsSource:
    """Field pool of digit images: the test split of :func:`tinyml_lab.data.load_digits`, never trained on.

    The pool is cut (stratified, seeded) into ``stream`` images, which the
    devices see, and ``holdout`` images, which only the simulation uses to
    score a model version on data no retraining saw. Covariate shifts are
    those of :func:`tinyml_lab.data.digits.apply_shift`: ``rotate`` (degrees),
    ``noise`` (sigma) and ``invert``.

    Args:
        size: image side, 16 (the ``digits-cnn`` of the zoo) or 32.
        seed: seeds the train/test split of the digits (0 is the split the
            committed ``digits-cnn`` weights were trained on) and the
            stream/holdout cut.
        holdout_fraction: share of the pool kept for scoring, in (0, 1).
    """

    name = "digits"

    def __init__(self, size: int = 16, seed: int = 0, holdout_fraction: float = 1 / 3):
        from ..data import SHIFTS, load_digits
        from ..data.digits import stratified_split

        check_seed(seed)
        if (isinstance(holdout_fraction, bool) or not isinstance(holdout_fraction, numbers.Real)
                or not 0 < holdout_fraction < 1):
            raise AttributeValueError(f"holdout_fraction must be strictly between 0 and 1, got {holdout_fraction!r}")
        d = load_digits(size, seed=seed)
        stream, hold = stratified_split(d.y_test, float(holdout_fraction), seed + 1)
        stream, hold = np.sort(stream), np.sort(hold)
        self.x_train, self.y_train = d.x_train, d.y_train
        self.x_stream, self.y_stream = d.x_test[stream], d.y_test[stream]
        self.x_holdout, self.y_holdout = d.x_test[hold], d.y_test[hold]
        self.classes = d.classes
        self.shifts = dict(SHIFTS)
        self.default_shift = "rotate"
        self.description = (f"digits {size}x{size}: {len(stream)} stream / {len(hold)} holdout images from the "
                            f"test split (seed {seed}), {len(d.y_train)} training images")

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_stream.shape[1:])

    deterministic = ("rotate", "invert")

    def shift(self, x: np.ndarray, kind: str, strength: float | None, seed: int) -> np.ndarray:
        """``x`` shifted by ``kind`` at ``strength`` (its default if None), noise seeded by ``seed``."""
        from ..data import apply_shift

        return apply_shift(x, kind, strength, seed)

    def shifted_pool(self, kind: str, strength: float | None) -> np.ndarray:
        """The whole stream pool shifted by a deterministic ``kind`` (computed once, then reused)."""
        return _cached_pool(self, kind, strength)


class VibrationSource:
    """Field pool of vibration feature vectors (:func:`tinyml_lab.data.load_vibration`): label 0 normal, 1 faulty.

    The features are log-mel powers in dB (``10 log10``), so the shifts are
    those of a sensor: ``gain`` adds ``strength`` dB to every band (a gain
    change of the accelerometer or its amplifier multiplies the power; default
    6 dB, a doubling of the amplitude), ``noise`` adds Gaussian noise of
    ``strength`` dB (default 3) to each value. The pool is the test split
    (normal and faulty clips), cut into stream and holdout like
    :class:`DigitsSource`; the training split holds normal vectors only.

    Args:
        n_normal, n_faulty, duration: passed to :func:`~tinyml_lab.data.load_vibration`.
        seed: seeds the data set and the stream/holdout cut.
        holdout_fraction: share of the pool kept for scoring, in (0, 1).
    """

    name = "vibration"
    SHIFT_DEFAULTS: dict[str, float] = {"gain": 6.0, "noise": 3.0}

    def __init__(self, n_normal: int = 40, n_faulty: int = 20, duration: float = 0.5, seed: int = 0,
                 holdout_fraction: float = 1 / 3):
        from ..data import load_vibration
        from ..data.digits import stratified_split

        check_seed(seed)
        if (isinstance(holdout_fraction, bool) or not isinstance(holdout_fraction, numbers.Real)
                or not 0 < holdout_fraction < 1):
            raise AttributeValueError(f"holdout_fraction must be strictly between 0 and 1, got {holdout_fraction!r}")
        d = load_vibration(n_normal=n_normal, n_faulty=n_faulty, duration=duration, seed=seed)
        if len(np.unique(d.y_test)) < 2:
            raise DataError("the vibration pool needs normal and faulty clips; give n_faulty >= 1")
        stream, hold = stratified_split(d.y_test, float(holdout_fraction), seed + 1)
        stream, hold = np.sort(stream), np.sort(hold)
        self.x_train, self.y_train = d.x_train, d.y_train
        self.x_stream, self.y_stream = d.x_test[stream], d.y_test[stream]
        self.x_holdout, self.y_holdout = d.x_test[hold], d.y_test[hold]
        self.classes = ("normal", "faulty")
        self.shifts: dict[str, float | None] = dict(self.SHIFT_DEFAULTS)
        self.default_shift = "gain"
        self.description = (f"vibration log-mel vectors: {len(stream)} stream / {len(hold)} holdout from the test "
                            f"split (seed {seed})")

    @property
    def n_classes(self) -> int:
        return 2

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_stream.shape[1:])

    deterministic = ("gain",)

    def shifted_pool(self, kind: str, strength: float | None) -> np.ndarray:
        """The whole stream pool shifted by a deterministic ``kind`` (computed once, then reused)."""
        return _cached_pool(self, kind, strength)

    def shift(self, x: np.ndarray, kind: str, strength: float | None, seed: int) -> np.ndarray:
        """``gain``: ``x + g`` dB; ``noise``: ``x + N(0, sigma^2)`` dB, seeded by ``seed``."""
        if kind not in self.shifts:
            raise AttributeValueError(f"unknown vibration shift {kind!r}; choose one of {', '.join(self.shifts)}")
        s = self.shifts[kind] if strength is None else strength
        if isinstance(s, bool) or not isinstance(s, numbers.Real) or not np.isfinite(s):
            raise AttributeValueError(f"{kind} strength must be a finite number of dB, got {strength!r}")
        x = np.asarray(x, dtype=np.float32)
        if kind == "gain":
            return (x + np.float32(s)).astype(np.float32)
        if s < 0:
            raise AttributeValueError(f"noise strength (sigma, dB) must be >= 0, got {s!r}")
        noise = np.random.default_rng(seed).standard_normal(x.shape).astype(np.float32) * np.float32(s)
        return (x + noise).astype(np.float32)


SOURCES = {"digits": DigitsSource, "vibration": VibrationSource}


def _cached_pool(source, kind: str, strength: float | None) -> np.ndarray:
    """A deterministic shift acts on each sample alone, so shifting the pool once and indexing it gives
    the same values as shifting every batch."""
    if kind not in source.deterministic:
        raise AttributeValueError(f"the {kind!r} shift is random per sample; shift each batch instead")
    cache = source.__dict__.setdefault("_shifted", {})
    key = (kind, None if strength is None else float(strength))
    if key not in cache:
        cache[key] = source.shift(source.x_stream, kind, strength, 0)
    return cache[key]


# --------------------------------------------------------------------------- streams

@dataclass(frozen=True)
class Batch:
    """What one device sees at one step: inputs, true labels, which samples are shifted, and ``p(t)``."""

    step: int
    device: int
    x: np.ndarray
    y: np.ndarray
    shifted: np.ndarray
    p_shift: float


class DeviceStream:
    """The seeded stream of one device: ``batch(t)`` is a :class:`Batch` drawn from ``rng([seed, device, t])``.

    Args:
        source: a :class:`DigitsSource` or :class:`VibrationSource` (anything
            with ``x_stream``, ``y_stream``, ``n_classes``, ``shifts`` and ``shift``).
        device_id: the device's number, >= 0.
        seed: the fleet's seed, >= 0.
        schedule: the :class:`DriftSchedule`.
        shift: the covariate shift of the shifted domain (a key of
            ``source.shifts``), or None for a label shift alone.
        strength: the shift's strength; the source's default if None.
        label_prior: class probabilities of the shifted domain (None: the
            pool's own class frequencies); a label shift when it differs.
        batch_size: samples per step.
        onset_jitter: the device's onset lags the schedule by a delay drawn
            uniformly from ``0..onset_jitter`` steps with ``rng([seed, device])``.
    """

    def __init__(self, source, device_id: int, seed: int = 0, schedule: DriftSchedule | None = None,
                 shift: str | None = "default", strength: float | None = None,
                 label_prior: Sequence[float] | None = None, batch_size: int = 16, onset_jitter: int = 0):
        self.source = source
        self.device_id = check_seed(device_id, "device_id")
        self.seed = check_seed(seed)
        self.schedule = schedule if schedule is not None else DriftSchedule()
        if not isinstance(self.schedule, DriftSchedule):
            raise AttributeValueError(f"schedule must be a DriftSchedule, got {schedule!r}")
        self.shift_kind = source.default_shift if shift == "default" else shift
        if self.shift_kind is not None and self.shift_kind not in source.shifts:
            raise AttributeValueError(f"unknown shift {self.shift_kind!r} for {source.name} data; choose one of "
                                      f"{', '.join(source.shifts)} (or None for a label shift alone)")
        if self.shift_kind == "invert" and strength is not None:
            raise AttributeValueError("the 'invert' shift takes no strength")
        self.strength = strength
        self.batch_size = check_count(batch_size, "batch_size")
        jitter = check_count(onset_jitter, "onset_jitter", 0)
        self.delay = int(np.random.default_rng([self.seed, self.device_id]).integers(0, jitter + 1))
        self.label_prior = None if label_prior is None else self._check_prior(label_prior)
        if self.shift_kind is None and self.label_prior is None and self.schedule.kind != "none":
            raise AttributeValueError("a drifting stream needs a covariate shift, a label_prior, or both")
        self._by_class = [np.flatnonzero(source.y_stream == c) for c in range(source.n_classes)]

    def _check_prior(self, prior: Sequence[float]) -> np.ndarray:
        try:
            p = np.asarray(prior, dtype=np.float64)
        except (TypeError, ValueError):
            raise AttributeValueError(f"label_prior must be a sequence of numbers, got {prior!r}") from None
        k = self.source.n_classes
        if p.shape != (k,) or not np.isfinite(p).all() or (p < 0).any() or p.sum() <= 0:
            raise AttributeValueError(f"label_prior must hold {k} non-negative numbers (one per class) with a "
                                      f"positive sum, got {prior!r}")
        empty = [c for c in range(k) if p[c] > 0 and not np.any(self.source.y_stream == c)]
        if empty:
            raise DataError(f"label_prior gives weight to class(es) {empty}, which the stream pool lacks")
        return p / p.sum()

    def p_shift(self, t: int) -> float:
        """The probability that a sample of step ``t`` comes from the shifted domain, for this device."""
        return self.schedule.probability(t, self.delay)

    def batch(self, t: int) -> Batch:
        """The batch of step ``t`` (>= 0), the same every time it is asked for."""
        t = check_count(t, "step", 0)
        src = self.source
        rng = np.random.default_rng([self.seed, self.device_id, t])
        p = self.p_shift(t)
        n = self.batch_size
        shifted = rng.random(n) < p
        idx = rng.integers(0, len(src.y_stream), n)
        if self.label_prior is not None and shifted.any():
            classes = rng.choice(len(self.label_prior), size=int(shifted.sum()), p=self.label_prior)
            idx[shifted] = [self._by_class[c][rng.integers(0, len(self._by_class[c]))] for c in classes]
        x = src.x_stream[idx].copy()
        if self.shift_kind is not None and shifted.any():
            noise_seed = int(rng.integers(0, 2**31 - 1))
            if self.shift_kind in src.deterministic:
                x[shifted] = src.shifted_pool(self.shift_kind, self.strength)[idx[shifted]]
            else:
                x[shifted] = src.shift(x[shifted], self.shift_kind, self.strength, noise_seed)
        return Batch(t, self.device_id, x, src.y_stream[idx].copy(), shifted, p)

    def __iter__(self) -> Iterator[Batch]:
        t = 0
        while True:
            yield self.batch(t)
            t += 1

    def take(self, steps: int) -> list[Batch]:
        """The batches of steps ``0 .. steps - 1``."""
        return [self.batch(t) for t in range(check_count(steps, "steps", 0))]


def make_streams(source, n_devices: int, seed: int = 0, schedule: DriftSchedule | None = None,
                 **options) -> list[DeviceStream]:
    """One :class:`DeviceStream` per device ``0 .. n_devices - 1`` (options as :class:`DeviceStream`)."""
    n = check_count(n_devices, "number of devices")
    return [DeviceStream(source, d, seed, schedule, **options) for d in range(n)]


def shifted_holdout(source, shift: str | None, strength: float | None = None, seed: int = 0) -> tuple:
    """``(x, y)``: the holdout of ``source`` entirely in the shifted domain (inputs only; the
    holdout's class frequencies are kept), to score a model after a shift."""
    x = source.x_holdout
    if shift is not None:
        x = source.shift(x, shift, strength, check_seed(seed))
    return x, source.y_holdout


__all__ = ["DRIFTS", "DriftSchedule", "DigitsSource", "VibrationSource", "SOURCES", "Batch", "DeviceStream",
           "make_streams", "shifted_holdout", "check_seed", "check_count"]
