"""Optimizers: the update formulas, QAS scaling, state, schedules and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_lab.errors import AttributeValueError, TinyMLError
from tinyml_lab.train import SGD, Adam, cosine_decay, make_optimizer


def arrays(seed=0):
    rng = np.random.default_rng(seed)
    return {"w": rng.standard_normal((3, 4)).astype(np.float32)}, \
        [{"w": rng.standard_normal((3, 4)).astype(np.float32)} for _ in range(3)]


def test_plain_sgd_is_minus_lr_times_gradient():
    params, grads = arrays()
    start = params["w"].copy()
    SGD(lr=0.1).step(params, grads[0])
    np.testing.assert_allclose(params["w"], start - 0.1 * grads[0]["w"], rtol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_accumulates(nesterov):
    params, grads = arrays()
    opt = SGD(lr=0.1, momentum=0.9, nesterov=nesterov)
    w = params["w"].astype(np.float64).copy()
    v = np.zeros_like(w)
    for g in grads:
        opt.step(params, g)
        v = 0.9 * v + g["w"]
        w -= 0.1 * (g["w"] + 0.9 * v if nesterov else v)
    np.testing.assert_allclose(params["w"], w, rtol=1e-5, atol=1e-6)
    assert opt.steps_ == 3 and "momentum" in opt.state_["w"]


def test_adam_follows_kingma_and_ba():
    params, grads = arrays()
    opt = Adam(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-7)
    w = params["w"].astype(np.float64).copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        opt.step(params, g)
        m = 0.8 * m + 0.2 * g["w"]
        v = 0.99 * v + 0.01 * g["w"].astype(np.float64) ** 2
        w -= 0.01 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-7)
    np.testing.assert_allclose(params["w"], w, rtol=1e-5, atol=1e-6)


def test_weight_decay_adds_to_the_gradient():
    params, grads = arrays()
    start = params["w"].copy()
    SGD(lr=0.1, weight_decay=0.5).step(params, grads[0])
    np.testing.assert_allclose(params["w"], start - 0.1 * (grads[0]["w"] + 0.5 * start), rtol=1e-5)


def test_qas_divides_gradients_by_the_squared_scale():
    params, grads = arrays()
    s = np.array([[0.01], [0.02], [0.5]])  # one scale per output channel (rows)
    plain = SGD(lr=0.1).updates(params, grads[0])["w"]
    qas = SGD(lr=0.1, qas=True).updates(params, grads[0], {"w": s})["w"]
    np.testing.assert_allclose(qas, plain / s**2, rtol=1e-5)
    # Adam is almost blind to the gradient's scale: QAS barely changes its first step
    a = Adam(lr=0.1).updates(params, grads[0])["w"]
    b = Adam(lr=0.1, qas=True).updates(params, grads[0], {"w": s})["w"]
    np.testing.assert_allclose(a, b, rtol=1e-3)
    with pytest.raises(TinyMLError, match="scales"):
        SGD(lr=0.1, qas=True).updates(params, grads[0])


def test_state_round_trip_and_reset():
    params, grads = arrays()
    opt = SGD(lr=0.1, momentum=0.9)
    opt.step(params, grads[0])
    saved = opt.state_dict()
    opt.step(params, grads[1])
    opt.load_state_dict(saved)
    assert opt.steps_ == 1
    np.testing.assert_array_equal(opt.state_["w"]["momentum"], grads[0]["w"].astype(np.float64))
    assert opt.reset().state_ == {} and opt.steps_ == 0
    assert "lr=0.1" in repr(opt) and "state_" not in repr(opt)


def test_cosine_decay_anneals_to_the_floor():
    opt = SGD(lr=1.0)
    cb = cosine_decay(opt, 4, final_fraction=0.1)
    lrs = []
    for e in range(1, 5):
        cb({"epoch": e})
        lrs.append(opt.lr)
    assert lrs[1] == pytest.approx(0.55) and lrs[-1] == pytest.approx(0.1)
    assert lrs == sorted(lrs, reverse=True)


@pytest.mark.parametrize("make", [
    lambda: SGD(lr=0), lambda: SGD(lr=float("nan")), lambda: SGD(lr=0.1, momentum=1.0),
    lambda: SGD(lr=0.1, nesterov=True), lambda: Adam(beta1=1.0), lambda: Adam(eps=0),
    lambda: SGD(lr=True), lambda: SGD(qas=1), lambda: make_optimizer("rmsprop"),
])
def test_bad_hyperparameters_name_the_argument(make):
    with pytest.raises(AttributeValueError):
        make()


def test_shape_mismatch_between_gradient_and_parameter():
    params, grads = arrays()
    with pytest.raises(AttributeValueError, match="shape"):
        SGD(lr=0.1).step(params, {"w": np.zeros(3, np.float32)})
    with pytest.raises(AttributeValueError, match="no such parameter"):
        SGD(lr=0.1).step(params, {"v": np.zeros(3, np.float32)})
    assert isinstance(make_optimizer("adam", lr=0.5), Adam)
