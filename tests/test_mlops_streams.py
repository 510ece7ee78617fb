"""Per-device drifting streams: schedules, seeding, covariate and label shift, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import strategies  # noqa: F401  (loads the ci profile)
from tinyml_lab.data import apply_shift
from tinyml_lab.errors import AttributeValueError, TinyMLError
from tinyml_lab.mlops.streams import (
    DeviceStream,
    DigitsSource,
    DriftSchedule,
    VibrationSource,
    make_streams,
    shifted_holdout,
)


@pytest.fixture(scope="module")
def source() -> DigitsSource:
    return DigitsSource()


# --------------------------------------------------------------------------- schedules

def test_schedule_values():
    assert [DriftSchedule("none", 2).probability(t) for t in range(5)] == [0, 0, 0, 0, 0]
    assert [DriftSchedule("sudden", 2).probability(t) for t in range(5)] == [0, 0, 1, 1, 1]
    g = DriftSchedule("gradual", 2, period=4)
    assert [g.probability(t) for t in range(8)] == [0, 0, 0.25, 0.5, 0.75, 1, 1, 1]
    r = DriftSchedule("recurring", 1, period=2)
    assert [r.probability(t) for t in range(9)] == [0, 1, 1, 0, 0, 1, 1, 0, 0]
    assert DriftSchedule("sudden", 2).probability(3, delay=2) == 0.0


@given(kind=st.sampled_from(["none", "sudden", "gradual", "recurring"]), t0=st.integers(0, 30),
       period=st.integers(1, 12), t=st.integers(0, 100))
def test_schedule_properties(kind, t0, period, t):
    s = DriftSchedule(kind, t0, period)
    p = s.probability(t)
    assert 0.0 <= p <= 1.0
    if t < t0:
        assert p == 0.0
    if kind == "gradual":
        assert s.probability(t + 1) >= p
    if kind == "recurring" and t >= t0:
        assert s.probability(t + 2 * period) == p
        assert s.probability(t + period) == 1.0 - p


@pytest.mark.parametrize("kwargs", [dict(kind="sometimes"), dict(kind="sudden", t0=-1),
                                    dict(kind="gradual", period=0), dict(kind="sudden", t0=2.5)])
def test_schedule_bad_input(kwargs):
    with pytest.raises(AttributeValueError):
        DriftSchedule(**kwargs)


# --------------------------------------------------------------------------- streams

def test_pool_is_held_out(source):
    # stream and holdout come from the test split: disjoint from each other and from training
    train = {a.tobytes() for a in source.x_train}
    assert not any(a.tobytes() in train for a in source.x_stream[:50])
    assert len(source.y_stream) + len(source.y_holdout) == 450
    assert set(np.unique(source.y_holdout)) == set(range(10))


def test_same_seed_same_batches_random_access(source):
    a = DeviceStream(source, 2, seed=5, schedule=DriftSchedule("gradual", 3, 6))
    b = DeviceStream(source, 2, seed=5, schedule=DriftSchedule("gradual", 3, 6))
    late = b.batch(7)  # asked first: order does not matter
    for t in range(9):
        x, y = a.batch(t), b.batch(t)
        np.testing.assert_array_equal(x.x, y.x)
        np.testing.assert_array_equal(x.y, y.y)
        np.testing.assert_array_equal(x.shifted, y.shifted)
    np.testing.assert_array_equal(late.x, a.batch(7).x)


def test_devices_and_seeds_are_independent(source):
    s0, s1 = make_streams(source, 2, seed=0)
    other = DeviceStream(source, 0, seed=1)
    assert not np.array_equal(s0.batch(0).y, s1.batch(0).y)
    assert not np.array_equal(s0.batch(0).y, other.batch(0).y)
    assert not np.array_equal(s0.batch(0).y, s0.batch(1).y)


def test_sudden_rotation_is_apply_shift_of_the_clean_batch(source):
    clean = DeviceStream(source, 4, seed=0, schedule=DriftSchedule("none"))
    drift = DeviceStream(source, 4, seed=0, schedule=DriftSchedule("sudden", t0=5), shift="rotate", strength=30.0)
    before, after = drift.batch(4), drift.batch(5)
    assert not before.shifted.any() and after.shifted.all()
    np.testing.assert_array_equal(before.x, clean.batch(4).x)
    c = clean.batch(5)
    np.testing.assert_array_equal(after.y, c.y)
    np.testing.assert_allclose(after.x, apply_shift(c.x, "rotate", 30.0), atol=0)


def test_gradual_share_of_shifted_samples_follows_the_ramp(source):
    streams = make_streams(source, 40, seed=0, schedule=DriftSchedule("gradual", 0, period=4), batch_size=32)
    for t, p in [(0, 0.25), (1, 0.5), (2, 0.75), (3, 1.0)]:
        share = np.mean([s.batch(t).shifted.mean() for s in streams])
        assert abs(share - p) < 0.05, (t, share)


def test_recurring_alternates(source):
    s = DeviceStream(source, 0, schedule=DriftSchedule("recurring", 2, period=3), shift="noise")
    on = [bool(s.batch(t).shifted.all()) for t in range(14)]
    off = [not s.batch(t).shifted.any() for t in range(14)]
    assert on == [False, False, True, True, True, False, False, False, True, True, True, False, False, False]
    assert all(a != b for a, b in zip(on, off))


def test_label_shift(source):
    prior = np.zeros(10)
    prior[[0, 1]] = [3, 1]
    s = DeviceStream(source, 1, schedule=DriftSchedule("sudden", 2), shift=None, label_prior=prior, batch_size=64)
    before = np.concatenate([s.batch(t).y for t in range(2)])
    after = np.concatenate([s.batch(t).y for t in range(2, 12)])
    assert len(np.unique(before)) > 5
    assert set(np.unique(after)) == {0, 1}
    assert 0.65 < np.mean(after == 0) < 0.85
    # label shift alone leaves the images as they are in the pool
    b = s.batch(3)
    pool = {a.tobytes() for a in source.x_stream}
    assert all(a.tobytes() in pool for a in b.x)


def test_onset_jitter_is_per_device_and_seeded(source):
    streams = make_streams(source, 30, seed=3, schedule=DriftSchedule("sudden", 10), onset_jitter=4)
    delays = [s.delay for s in streams]
    assert set(delays) <= set(range(5)) and len(set(delays)) > 1
    assert delays == [s.delay for s in make_streams(source, 30, seed=3, schedule=DriftSchedule("sudden", 10),
                                                    onset_jitter=4)]
    for s in streams:
        assert s.p_shift(10 + s.delay - 1) == 0.0 and s.p_shift(10 + s.delay) == 1.0


def test_shifted_holdout(source):
    x, y = shifted_holdout(source, "invert")
    np.testing.assert_allclose(x, 1.0 - source.x_holdout)
    assert y is source.y_holdout


def test_vibration_gain_shift_adds_decibels():
    src = VibrationSource(n_normal=8, n_faulty=4, duration=0.25, seed=0)
    s = DeviceStream(src, 0, schedule=DriftSchedule("sudden", 1), strength=6.0)
    clean = DeviceStream(src, 0, schedule=DriftSchedule("none"))
    np.testing.assert_allclose(s.batch(1).x, clean.batch(1).x + 6.0, rtol=0, atol=1e-5)
    assert set(np.unique(src.y_stream)) == {0, 1}
    with pytest.raises(AttributeValueError, match="vibration shift"):
        src.shift(src.x_stream[:2], "rotate", None, 0)


@pytest.mark.parametrize("kwargs, error", [
    (dict(device_id=-1), AttributeValueError),
    (dict(seed=-3), AttributeValueError),
    (dict(batch_size=0), AttributeValueError),
    (dict(shift="blur"), AttributeValueError),
    (dict(shift="invert", strength=2.0), AttributeValueError),
    (dict(label_prior=[1, 2]), AttributeValueError),
    (dict(label_prior=[0] * 10), AttributeValueError),
    (dict(shift=None, schedule=DriftSchedule("sudden")), AttributeValueError),
    (dict(onset_jitter=-1), AttributeValueError),
])
def test_stream_bad_input(source, kwargs, error):
    args = dict(device_id=0)
    args.update(kwargs)
    with pytest.raises(error) as exc:
        DeviceStream(source, **args)
    assert isinstance(exc.value, TinyMLError)


def test_bad_steps_and_fleet_size(source):
    s = DeviceStream(source, 0)
    with pytest.raises(AttributeValueError, match="step"):
        s.batch(-1)
    with pytest.raises(AttributeValueError, match="number of devices"):
        make_streams(source, 0)
    assert [b.step for b in s.take(3)] == [0, 1, 2]
