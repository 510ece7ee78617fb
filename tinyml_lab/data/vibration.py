"""Synthetic machine vibration for unsupervised anomaly detection.

The physics, briefly. An accelerometer on a rotating machine (a motor driving
a fan or a pump) sees

* the shaft frequency ``f_r`` and a few harmonics ``k f_r`` (residual
  imbalance and misalignment), plus the blade-pass tone ``B f_r`` of a fan
  with ``B`` blades;
* broadband noise (flow, friction) coloured by a structural resonance of the
  housing;
* load: an induction motor slows down a little under load (slip, here up to
  3 %) and vibrates harder.

Each machine id has its own speed, harmonic profile, resonance and noise
level, so a detector must learn several "normals". Three faults are simulated:

* **bearing**: a defect on the outer race is struck by every rolling element,
  ``BPFO = (n/2) f_r (1 - (d/D) cos phi)`` times a second (n = 9 balls,
  d/D = 0.2, phi = 0: 3.6 ``f_r``). Each strike rings a high-frequency
  bearing resonance (3.5 to 6 kHz) that decays within milliseconds; strikes
  jitter by 1 % and are stronger in the load zone (modulated at ``f_r``);
* **imbalance**: a heavier rotor spot raises the 1x component 2 to 5 times;
* **looseness**: a loose mount rattles, spreading energy into many harmonics
  (up to 20x) and half-order sub-harmonics (0.5x, 1.5x, 2.5x).

Features follow the DCASE 2020 Task 2 baseline that the MLPerf Tiny
autoencoder was trained on (Koizumi et al., 2020): power spectrogram (1024-
point Hann STFT, hop 512, frames centred), 128 mel bands, ``10 log10``, then
five consecutive frames stacked into one 640-value vector.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import AttributeValueError, DataError
from . import Dataset

FAULTS = ("bearing", "imbalance", "looseness")
FAULT_NAMES = ("none",) + FAULTS  # codes in ``fault_test``
N_FFT, HOP, N_MELS, N_STACK = 1024, 512, 128, 5
_EPS = float(np.finfo(np.float64).eps)


@dataclass(repr=False)
class VibrationDataset(Dataset):
    """Log-mel vectors of normal (train) and normal + faulty (test) clips.

    Per vector (row of ``x_*``): ``machine_*`` its machine id, ``clip_*`` the
    index of its clip (average the scores of one clip to score the clip),
    and ``fault_test`` the fault code (``FAULT_NAMES[code]``).
    """

    machine_train: np.ndarray
    machine_test: np.ndarray
    clip_train: np.ndarray
    clip_test: np.ndarray
    fault_test: np.ndarray
    sample_rate: int
    fault_names: tuple = FAULT_NAMES


# --------------------------------------------------------------------------- features

def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (66.7 Hz per mel) below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(f < 1000.0, f / (200.0 / 3.0), 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / log_step)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(m < 15.0, m * (200.0 / 3.0), 1000.0 * np.exp(log_step * (m - 15.0)))


def mel_filterbank(sample_rate: int = 16000, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Triangular mel filters, shape ``(n_mels, n_fft // 2 + 1)``.

    Band ``i`` rises from mel point ``i`` to ``i + 1`` and falls to ``i + 2``
    (``n_mels + 2`` points evenly spaced on the Slaney mel scale between
    ``fmin`` and ``fmax``), and is scaled by ``2 / (f_{i+2} - f_i)`` so every
    band has the same area.
    """
    fmax = sample_rate / 2 if fmax is None else fmax
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise AttributeValueError(f"need 0 <= fmin < fmax <= sample_rate / 2, got fmin={fmin}, fmax={fmax}")
    bins = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins - lo) / (mid - lo)
    falling = (hi - bins) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (hi - lo))
    return fb.astype(np.float32)


def log_mel(signals: np.ndarray, sample_rate: int = 16000, n_fft: int = N_FFT, hop: int = HOP,
            n_mels: int = N_MELS) -> np.ndarray:
    """Log-mel spectrogram in dB, ``(n_clips, n_frames, n_mels)``.

    Frames are centred (the signal is reflect-padded by ``n_fft // 2``), so a
    clip of ``L`` samples gives ``1 + L // hop`` frames.
    """
    x = np.atleast_2d(np.asarray(signals, dtype=np.float32))
    if x.shape[1] <= n_fft // 2:
        raise DataError(f"signals of {x.shape[1]} samples are too short for a {n_fft}-point STFT")
    x = np.pad(x, ((0, 0), (n_fft // 2, n_fft // 2)), mode="reflect")
    n_frames = 1 + (x.shape[1] - n_fft) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=1)[:, ::hop][:, :n_frames]
    window = np.hanning(n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=-1)) ** 2
    mel = power @ mel_filterbank(sample_rate, n_fft, n_mels).T.astype(np.float64)
    return (10.0 * np.log10(mel + _EPS)).astype(np.float32)


def stack_frames(logmel: np.ndarray, n_frames: int = N_STACK) -> np.ndarray:
    """Vectors of ``n_frames`` consecutive frames: ``(n_clips, T - n_frames + 1, n_frames * n_mels)``.

    Vector ``t`` is ``[frame t | frame t+1 | ... ]``, each frame ``n_mels`` values.
    """
    n_clips, t, n_mels = logmel.shape
    if t < n_frames:
        raise DataError(f"{t} frames cannot be stacked {n_frames} at a time; use longer clips")
    windows = np.lib.stride_tricks.sliding_window_view(logmel, n_frames, axis=1)  # (c, v, mels, k)
    return np.ascontiguousarray(windows.transpose(0, 1, 3, 2).reshape(n_clips, t - n_frames + 1, n_frames * n_mels))


# --------------------------------------------------------------------------- signals

def _machines(n_machines: int, seed: int) -> list[dict]:
    """Fixed properties of each machine id (the same for a seed whatever the clip counts)."""
    rng = np.random.default_rng([seed, 7919])
    out = []
    for m in range(n_machines):
        out.append({
            "f_shaft": rng.uniform(20.0, 50.0),  # 1200 to 3000 rpm
            "harmonics": 0.4 * np.arange(1, 7) ** -1.5 * rng.lognormal(0.0, 0.3, 6),
            "blades": int(rng.choice([5, 7, 9])),
            "blade_amp": rng.uniform(0.03, 0.08),
            "f_housing": rng.uniform(800.0, 2500.0),
            "noise": rng.uniform(0.02, 0.04),
            "f_bearing": rng.uniform(3500.0, 6000.0),
        })
    return out


def _coloured_noise(rng: np.random.Generator, n: int, length: int, sample_rate: int,
                    f_res: float, level: float) -> np.ndarray:
    """White noise plus noise shaped by a resonance peak at ``f_res`` (quality factor about 8)."""
    spec = np.fft.rfft(rng.standard_normal((n, length)), axis=1)
    f = np.fft.rfftfreq(length, 1.0 / sample_rate)
    q = 8.0
    gain = 1.0 + 4.0 / np.sqrt(1.0 + (q * (f / f_res - f_res / np.maximum(f, 1.0))) ** 2)
    return level * np.fft.irfft(spec * gain, n=length, axis=1) / np.sqrt(np.mean(gain**2))


def simulate_vibration(machine_ids: Sequence[int], faults: Sequence[str | None], duration: float = 1.0,
                       sample_rate: int = 16000, severity: float = 1.0, n_machines: int | None = None,
                       seed: int = 0) -> np.ndarray:
    """Accelerometer clips in g, ``(n_clips, duration * sample_rate)`` float32.

    Clip ``i`` comes from machine ``machine_ids[i]`` with fault ``faults[i]``
    (None for a healthy machine, or one of :data:`FAULTS`); ``severity``
    scales every fault's signature. Machine properties depend only on
    ``seed`` and the machine id; load, phases and noise also on the clip.
    """
    ids = np.asarray(machine_ids, dtype=np.int64)
    faults = list(faults)
    if len(faults) != len(ids):
        raise DataError(f"{len(ids)} machine ids but {len(faults)} fault labels")
    bad = sorted({str(f) for f in faults if f is not None and f not in FAULTS})
    if bad:
        raise AttributeValueError(f"unknown fault(s) {', '.join(bad)}; choose from {', '.join(FAULTS)}")
    needed = int(ids.max()) + 1 if len(ids) else 1
    if len(ids) and ids.min() < 0:
        raise DataError("machine ids must be >= 0")
    n_machines = needed if n_machines is None else int(n_machines)
    if n_machines < needed:
        raise DataError(f"machine id {needed - 1} given but n_machines is {n_machines}")
    machines = _machines(n_machines, seed)
    rng = np.random.default_rng([seed, 104729])
    n, length = len(ids), int(round(duration * sample_rate))
    t = np.arange(length) / sample_rate
    load = rng.uniform(0.3, 1.0, n)
    gain = 0.7 + 0.6 * load
    f_shaft = np.array([machines[m]["f_shaft"] for m in ids]) * (1.0 - 0.03 * load)
    x = np.zeros((n, length))
    rot = 2 * np.pi * f_shaft[:, None] * t  # shaft angle, (n, length)
    # harmonic k is Re(a e^{i phi} z^k) with z = e^{i rot}: one exp, then products
    z = np.exp(1j * rot).astype(np.complex64)
    zk = np.ones_like(z)
    for k in range(1, 7):
        zk *= z
        amp = np.array([machines[m]["harmonics"][k - 1] for m in ids]) * gain
        if k == 1:  # imbalance raises the 1x line
            amp = amp * np.where([f == "imbalance" for f in faults], 1.0 + severity * rng.uniform(1.0, 4.0, n), 1.0)
        phasor = (amp * np.exp(1j * rng.uniform(0, 2 * np.pi, n))).astype(np.complex64)
        x += (phasor[:, None] * zk).real
    del z, zk
    blades = np.array([machines[m]["blades"] for m in ids])
    blade_amp = np.array([machines[m]["blade_amp"] for m in ids]) * gain
    x += blade_amp[:, None] * np.cos(blades[:, None] * rot + rng.uniform(0, 2 * np.pi, n)[:, None])
    for m in np.unique(ids):
        rows = np.flatnonzero(ids == m)
        spec = machines[m]
        x[rows] += _coloured_noise(rng, len(rows), length, sample_rate, spec["f_housing"], spec["noise"]) \
            * np.sqrt(gain[rows])[:, None]

    loose = np.flatnonzero([f == "looseness" for f in faults])
    for i in loose:
        base = machines[ids[i]]["harmonics"][0] * gain[i] * severity
        for k in range(2, 21):
            x[i] += base * rng.uniform(0.1, 0.3) * np.cos(k * rot[i] + rng.uniform(0, 2 * np.pi))
        for k in (0.5, 1.5, 2.5):
            x[i] += base * rng.uniform(0.1, 0.25) * np.cos(k * rot[i] + rng.uniform(0, 2 * np.pi))

    bearing = np.flatnonzero([f == "bearing" for f in faults])
    if len(bearing):
        ring_t = np.arange(int(0.01 * sample_rate)) / sample_rate  # 10 ms of ringing
        for i in bearing:
            bpfo = 3.6 * f_shaft[i]
            times = np.arange(rng.uniform(0, 1 / bpfo), duration, 1 / bpfo)
            times = times + rng.normal(0.0, 0.01 / bpfo, len(times))
            strikes = np.zeros(length)
            idx = np.clip(np.round(times * sample_rate).astype(np.int64), 0, length - 1)
            zone = 1.0 + 0.5 * np.cos(2 * np.pi * f_shaft[i] * times)
            np.add.at(strikes, idx, zone * rng.uniform(0.7, 1.3, len(times)))
            decay = rng.uniform(0.8e-3, 1.5e-3)
            ring = np.exp(-ring_t / decay) * np.sin(2 * np.pi * machines[ids[i]]["f_bearing"] * ring_t)
            x[i] += 0.25 * severity * gain[i] * np.convolve(strikes, ring)[:length]
    return x.astype(np.float32)


# --------------------------------------------------------------------------- data set

def _count(value: object, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise AttributeValueError(f"{what} must be an int >= {minimum}, got {value!r}")
    return int(value)


def load_vibration(n_normal: int = 200, n_faulty: int = 60, n_machines: int = 4, duration: float = 1.0,
                   sample_rate: int = 16000, test_fraction: float = 0.25,
                   faults: Sequence[str] = FAULTS, severity: float = 1.0, seed: int = 0) -> VibrationDataset:
    """Seeded synthetic vibration clips as 640-value log-mel vectors.

    Args:
        n_normal: healthy clips, machines taking turns; ``test_fraction``
            of them (spread evenly over the machines) go to the test set, the
            rest are the training set.
        n_faulty: faulty clips, all in the test set, the fault kinds taking
            turns.
        n_machines: machine ids, each with its own speed and spectrum.
        duration: seconds per clip (1 s gives 28 vectors per clip).
        sample_rate: Hz; must be at least 8 kHz.
        test_fraction: share of the normal clips held out, in (0, 1).
        faults: which of :data:`FAULTS` to simulate.
        severity: scales the fault signatures (at 1 a per-machine z-score
            finds every faulty clip; at 0.1 to 0.3 bearing and imbalance
            faults become hard to tell from load changes).
        seed: makes the whole data set reproducible.

    Returns:
        A :class:`VibrationDataset`: ``x_train`` (normal only, as anomaly
        detection trains on normal data, ``y_train`` all 0), ``x_test`` with
        ``y_test`` (0 normal, 1 faulty), float32 vectors of shape (640,).
    """
    n_normal = _count(n_normal, "n_normal", 2)
    n_faulty = _count(n_faulty, "n_faulty", 0)
    n_machines = _count(n_machines, "n_machines", 1)
    _count(sample_rate, "sample_rate", 8000)
    if isinstance(duration, bool) or not isinstance(duration, numbers.Real) or not duration > 0:
        raise AttributeValueError(f"duration must be a positive number of seconds, got {duration!r}")
    if (isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real)
            or not 0 < test_fraction < 1):
        raise AttributeValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
    if isinstance(severity, bool) or not isinstance(severity, numbers.Real) or not severity >= 0:
        raise AttributeValueError(f"severity must be a number >= 0, got {severity!r}")
    faults = tuple(faults)
    bad = [f for f in faults if f not in FAULTS]
    if bad or (n_faulty and not faults):
        raise AttributeValueError(f"faults must be a non-empty subset of {FAULTS}, got {faults!r}")
    min_len = (N_STACK - 1) * HOP
    if duration * sample_rate < min_len:
        raise DataError(f"clips of {duration} s give too few frames to stack {N_STACK}; use at least "
                        f"{min_len / sample_rate:.2f} s")

    rng = np.random.default_rng([seed, 15485863])
    normal_ids = np.arange(n_normal) % n_machines
    # hold out normal clips evenly across machines: shuffle within each machine, then deal
    # the clips out machine by machine and take the first ones
    rank = np.empty(n_normal, dtype=np.int64)
    for m in range(n_machines):
        rows = rng.permutation(np.flatnonzero(normal_ids == m))
        rank[rows] = np.arange(len(rows)) * n_machines + m
    n_test = min(max(int(round(n_normal * test_fraction)), 1), n_normal - 1)
    test_normal = rank < np.sort(rank)[n_test]
    faulty_ids = rng.integers(0, n_machines, n_faulty)
    fault_kind = [faults[i % len(faults)] for i in range(n_faulty)]

    ids = np.concatenate([normal_ids, faulty_ids])
    labels: list[str | None] = [None] * n_normal + fault_kind
    signals = simulate_vibration(ids, labels, duration, sample_rate, float(severity), n_machines, seed)
    vectors = stack_frames(log_mel(signals, sample_rate))  # (clips, per_clip, 640)
    per_clip = vectors.shape[1]

    train_clips = np.flatnonzero(~test_normal)
    test_clips = np.concatenate([np.flatnonzero(test_normal), n_normal + np.arange(n_faulty)])
    codes = np.array([0] * n_normal + [FAULT_NAMES.index(f) for f in fault_kind], dtype=np.int64)

    def rows(clips: np.ndarray) -> np.ndarray:
        return vectors[clips].reshape(-1, vectors.shape[2])

    def per_vector(a: np.ndarray) -> np.ndarray:
        return np.repeat(a, per_clip)

    description = (
        f"synthetic machine vibration, {n_machines} machines, {duration:g} s clips at {sample_rate} Hz; "
        f"{len(train_clips)} normal train clips, {int(test_normal.sum())} normal + {n_faulty} faulty "
        f"({', '.join(faults) if n_faulty else 'none'}) test clips; {per_clip} vectors of 5x128 log-mel "
        f"(dB) per clip, severity {severity:g}"
    )
    return VibrationDataset(
        x_train=rows(train_clips),
        y_train=np.zeros(len(train_clips) * per_clip, dtype=np.int64),
        x_test=rows(test_clips),
        y_test=per_vector((codes[test_clips] > 0).astype(np.int64)),
        classes=("normal", "faulty"),
        description=description,
        machine_train=per_vector(ids[train_clips]),
        machine_test=per_vector(ids[test_clips]),
        clip_train=per_vector(np.arange(len(train_clips))),
        clip_test=per_vector(np.arange(len(test_clips))),
        fault_test=per_vector(codes[test_clips]),
        sample_rate=int(sample_rate),
    )


__all__ = ["load_vibration", "simulate_vibration", "mel_filterbank", "log_mel", "stack_frames",
           "VibrationDataset", "FAULTS", "FAULT_NAMES"]
