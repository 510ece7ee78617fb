"""Offline data sets: digits (resize, split, shifts, class subsets) and synthetic vibration."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_lab.data import (
    FAULTS,
    Dataset,
    apply_shift,
    load_digits,
    load_vibration,
    log_mel,
    mel_filterbank,
    stack_frames,
)
from tinyml_lab.errors import AttributeValueError, DataError

N_DIGITS = 1797


def auc(negatives, positives) -> float:
    """Probability that a random positive scores above a random negative."""
    neg, pos = np.asarray(negatives)[None, :], np.asarray(positives)[:, None]
    return float((pos > neg).mean() + 0.5 * (pos == neg).mean())


# --------------------------------------------------------------------------- digits

@pytest.fixture(scope="module")
def digits16():
    return load_digits(size=16, seed=0)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_digits_shapes_dtypes_ranges(size):
    d = load_digits(size=size)
    assert isinstance(d, Dataset)
    assert d.x_train.shape[1:] == d.x_test.shape[1:] == (size, size, 1) == d.input_shape
    assert d.x_train.dtype == d.x_test.dtype == np.float32
    assert d.y_train.dtype == np.int64
    assert len(d.x_train) + len(d.x_test) == N_DIGITS
    for x in (d.x_train, d.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert d.x_train.max() == pytest.approx(1.0, abs=0.05)
    assert d.classes == tuple(range(10)) and d.n_classes == 10
    assert "scikit-learn digits" in d.description and "x_train" in repr(d)


def test_resize_keeps_mean_intensity():
    small, big = load_digits(size=8, seed=1), load_digits(size=32, seed=1)
    # same seed and classes -> same split, so image i is the same digit at both sizes
    assert np.array_equal(small.y_test, big.y_test)
    means8 = small.x_test.mean(axis=(1, 2, 3))
    means32 = big.x_test.mean(axis=(1, 2, 3))
    assert np.abs(means8 - means32).max() < 0.05


def test_split_is_stratified(digits16):
    counts_train = np.bincount(digits16.y_train, minlength=10)
    counts_test = np.bincount(digits16.y_test, minlength=10)
    share = counts_test / (counts_train + counts_test)
    assert np.all(np.abs(share - 0.25) < 0.01)
    d = load_digits(test_fraction=0.5)
    share = np.bincount(d.y_test) / (np.bincount(d.y_test) + np.bincount(d.y_train))
    assert np.all(np.abs(share - 0.5) < 0.01)


def test_digits_deterministic_for_a_seed(digits16):
    again = load_digits(size=16, seed=0)
    for a, b in [(digits16.x_train, again.x_train), (digits16.y_test, again.y_test)]:
        assert np.array_equal(a, b)
    other = load_digits(size=16, seed=1)
    assert not np.array_equal(digits16.y_train, other.y_train)


def test_train_and_test_do_not_overlap():
    d = load_digits(size=8)
    train = {x.tobytes() for x in d.x_train}
    test = {x.tobytes() for x in d.x_test}
    # scikit-learn's digits hold no exact duplicates across classes; any overlap would be a leak
    assert len(train & test) <= 2


def test_invert_is_exact(digits16):
    inv = load_digits(size=16, seed=0, shift="invert")
    assert np.array_equal(inv.x_train, 1.0 - digits16.x_train)
    assert np.array_equal(inv.x_test, 1.0 - digits16.x_test)
    assert np.array_equal(inv.y_train, digits16.y_train)
    assert "invert" in inv.description


def test_rotation_moves_pixels_but_keeps_mass(digits16):
    rot = load_digits(size=16, seed=0, shift="rotate")
    assert np.array_equal(rot.y_test, digits16.y_test)
    mass_before = digits16.x_test.sum(axis=(1, 2, 3))
    mass_after = rot.x_test.sum(axis=(1, 2, 3))
    assert np.median(mass_after / mass_before) == pytest.approx(1.0, abs=0.08)
    assert np.abs(rot.x_test - digits16.x_test).mean() > 0.05
    assert np.allclose(apply_shift(digits16.x_test, "rotate", 0.0), digits16.x_test, atol=1e-6)
    # positive angles turn counter-clockwise: a dot right of centre moves above it
    dot = np.zeros((1, 9, 9, 1), np.float32)
    dot[0, 4, 7, 0] = 1.0
    assert tuple(np.argwhere(apply_shift(dot, "rotate", 90)[0, :, :, 0] > 0.5)[0]) == (1, 4)


def test_noise_has_the_requested_sigma_and_is_seeded(digits16):
    x = np.full((200, 16, 16, 1), 0.5, np.float32)  # mid-grey: clipping is rare at sigma 0.1
    noisy = apply_shift(x, "noise", 0.1, seed=3)
    assert (noisy - x).std() == pytest.approx(0.1, rel=0.03)
    assert np.array_equal(noisy, apply_shift(x, "noise", 0.1, seed=3))
    assert not np.array_equal(noisy, apply_shift(x, "noise", 0.1, seed=4))
    d = load_digits(size=16, seed=0, shift="noise")  # default sigma 0.2, clipped to [0, 1]
    assert d.x_train.min() >= 0.0 and d.x_train.max() <= 1.0
    assert np.abs(d.x_train - digits16.x_train).mean() > 0.05
    assert np.array_equal(d.x_train, load_digits(size=16, seed=0, shift="noise").x_train)


def test_class_subset_remaps_labels():
    from sklearn.datasets import load_digits as sk_digits

    raw = sk_digits()
    d = load_digits(size=8, classes=(7, 3, 5))
    assert d.classes == (7, 3, 5) and d.n_classes == 3
    assert set(np.unique(d.y_train)) == set(np.unique(d.y_test)) == {0, 1, 2}
    by_digit = {c: {(img / 16.0).astype(np.float32).tobytes() for img in raw.images[raw.target == c]}
                for c in (7, 3, 5)}
    for x, y in zip(d.x_test, d.y_test):
        assert x[..., 0].tobytes() in by_digit[d.classes[y]]
    assert len(d.x_train) + len(d.x_test) == int(np.isin(raw.target, (7, 3, 5)).sum())


@pytest.mark.parametrize("kwargs", [
    {"size": 12}, {"size": True}, {"test_fraction": 0.0}, {"test_fraction": 1.0}, {"test_fraction": 1.5},
    {"shift": "blur"}, {"strength": 10.0}, {"classes": (1,)}, {"classes": (1, 1)}, {"classes": (1, 10)},
    {"classes": "12"},
])
def test_digits_bad_arguments(kwargs):
    with pytest.raises(AttributeValueError):
        load_digits(**kwargs)


def test_apply_shift_bad_arguments():
    x = np.zeros((2, 8, 8, 1), np.float32)
    with pytest.raises(AttributeValueError, match="rotate, noise, invert"):
        apply_shift(x, "flip")
    with pytest.raises(AttributeValueError):
        apply_shift(x, "noise", -0.1)
    with pytest.raises(AttributeValueError):
        apply_shift(x, "invert", 0.5)
    with pytest.raises(DataError):
        apply_shift(np.zeros((8, 8)), "invert")


# --------------------------------------------------------------------------- vibration features

def test_mel_filterbank_shape_and_bands():
    fb = mel_filterbank(16000, 1024, 128)
    assert fb.shape == (128, 513) and fb.dtype == np.float32
    assert np.all(fb >= 0)
    assert np.all(fb.max(axis=1) > 0), "every band must see at least one FFT bin"
    peaks = fb.argmax(axis=1)
    assert np.all(np.diff(peaks) >= 0) and peaks[-1] > 480
    # equal-area triangles: each band integrates to about 1 over frequency (narrow low bands
    # are sampled by only a few FFT bins, hence the tolerance)
    area = fb.sum(axis=1) * (16000 / 1024)
    assert np.allclose(area, 1.0, rtol=0.15) and abs(area.mean() - 1.0) < 0.02


def test_log_mel_of_a_tone_peaks_in_its_band():
    sr = 16000
    t = np.arange(sr) / sr
    tone = np.sin(2 * np.pi * 2000 * t)[None].astype(np.float32)
    lm = log_mel(tone, sr)
    assert lm.shape == (1, 1 + sr // 512, 128)
    band = int(lm[0].mean(axis=0).argmax())
    fb = mel_filterbank(sr)
    assert abs(fb[band].argmax() * sr / 1024 - 2000) < 100


def test_stack_frames_convention():
    lm = np.arange(2 * 7 * 3, dtype=np.float32).reshape(2, 7, 3)
    v = stack_frames(lm, 5)
    assert v.shape == (2, 3, 15)
    assert np.array_equal(v[1, 2], lm[1, 2:7].reshape(-1))  # [frame t | t+1 | ... | t+4]


# --------------------------------------------------------------------------- vibration data set

@pytest.fixture(scope="module")
def vib():
    return load_vibration(seed=0)


def test_vibration_shapes_and_labels(vib):
    assert vib.x_train.shape[1] == vib.x_test.shape[1] == 640
    assert vib.x_train.dtype == vib.x_test.dtype == np.float32
    assert np.isfinite(vib.x_train).all() and np.isfinite(vib.x_test).all()
    assert np.all(vib.y_train == 0), "anomaly detection trains on normal data only"
    assert set(np.unique(vib.y_test)) == {0, 1}
    assert np.array_equal(vib.y_test, (vib.fault_test > 0).astype(np.int64))
    n = len(vib.x_test)
    assert len(vib.machine_test) == len(vib.clip_test) == len(vib.fault_test) == n
    assert len(vib.machine_train) == len(vib.clip_train) == len(vib.x_train)
    assert set(np.unique(vib.machine_train)) == {0, 1, 2, 3}
    per_clip = np.bincount(vib.clip_test)
    assert np.all(per_clip == 28)  # 1 s at 16 kHz: 32 frames, 28 stacks of 5
    # 150 normal train clips, 50 normal + 60 faulty test clips
    assert len(vib.x_train) == 28 * 150 and n == 28 * (50 + 60)
    assert {vib.fault_names[c] for c in np.unique(vib.fault_test)} == {"none", *FAULTS}
    assert vib.classes == ("normal", "faulty") and vib.sample_rate == 16000


def test_vibration_vectors_are_consecutive_frames(vib):
    clip0 = vib.x_test[vib.clip_test == 0]
    assert np.array_equal(clip0[0, 128:], clip0[1, :512])


def test_bearing_faults_raise_high_band_energy(vib):
    high = vib.x_test.reshape(-1, 5, 128)[:, :, 96:].mean(axis=(1, 2))  # bands above ~3.7 kHz
    clips = np.unique(vib.clip_test)
    score = np.array([high[vib.clip_test == c].mean() for c in clips])
    fault = np.array([vib.fault_test[vib.clip_test == c][0] for c in clips])
    bearing = vib.fault_names.index("bearing")
    assert auc(score[fault == 0], score[fault == bearing]) > 0.95
    assert score[fault == bearing].mean() - score[fault == 0].mean() > 3.0  # dB


def test_every_fault_separable_by_a_per_machine_zscore(vib):
    score = np.zeros(len(vib.x_test))
    for m in np.unique(vib.machine_train):
        train = vib.x_train[vib.machine_train == m]
        mu, sd = train.mean(axis=0), train.std(axis=0) + 1e-3
        rows = vib.machine_test == m
        score[rows] = (((vib.x_test[rows] - mu) / sd) ** 2).mean(axis=1)
    clips = np.unique(vib.clip_test)
    clip_score = np.array([score[vib.clip_test == c].mean() for c in clips])
    fault = np.array([vib.fault_test[vib.clip_test == c][0] for c in clips])
    for code in range(1, len(vib.fault_names)):
        assert auc(clip_score[fault == 0], clip_score[fault == code]) > 0.9, vib.fault_names[code]


def test_vibration_deterministic_for_a_seed():
    a = load_vibration(n_normal=12, n_faulty=6, seed=5)
    b = load_vibration(n_normal=12, n_faulty=6, seed=5)
    c = load_vibration(n_normal=12, n_faulty=6, seed=6)
    for field in ("x_train", "x_test", "y_test", "machine_test", "fault_test"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x_train, c.x_train)


def test_vibration_without_faults_and_other_lengths():
    d = load_vibration(n_normal=8, n_faulty=0, n_machines=2, duration=0.5, seed=1)
    assert np.all(d.y_test == 0)
    assert np.bincount(d.clip_test)[0] == (1 + 8000 // 512) - 4
    bearing_only = load_vibration(n_normal=8, n_faulty=4, faults=("bearing",), seed=1)
    assert set(np.unique(bearing_only.fault_test)) == {0, 1}


@pytest.mark.parametrize("kwargs, error", [
    ({"n_normal": 1}, AttributeValueError),
    ({"n_faulty": -1}, AttributeValueError),
    ({"test_fraction": 1.0}, AttributeValueError),
    ({"faults": ("rust",)}, AttributeValueError),
    ({"faults": ()}, AttributeValueError),
    ({"severity": -1.0}, AttributeValueError),
    ({"sample_rate": 4000}, AttributeValueError),
    ({"duration": 0}, AttributeValueError),
    ({"duration": 0.05}, DataError),
])
def test_vibration_bad_arguments(kwargs, error):
    with pytest.raises(error):
        load_vibration(**{"n_normal": 8, "n_faulty": 3, **kwargs})
