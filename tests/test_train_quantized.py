"""Training the deployed int8 graph: the QAS update formula, rounding, saturation, the transfer
task, and the ||W||/||G|| diagnostics."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tinyml_lab import zoo  # noqa: E402
from tinyml_lab.errors import TinyMLError  # noqa: E402
from tinyml_lab.kernels.reference import round_half_away_np  # noqa: E402
from tinyml_lab.train import (  # noqa: E402
    SGD, Adam, BackwardGraph, apply_update, evaluate, fit_quantized, format_ratios, gradient_ratios,
    plot_gradient_ratios, qas_scales, round_steps,
)
from tinyml_lab.train.autodiff import broadcast_scale  # noqa: E402
from tinyml_lab.train.transfer import (  # noqa: E402
    METHODS, device_models, format_qas_table, load_backbone, qas_experiment, transfer_task,
)


@pytest.fixture(scope="module")
def task():
    return transfer_task("new-classes")


@pytest.fixture(scope="module")
def device(task):
    return device_models(load_backbone(), task, seed=0)


def one_batch_grads(q, task, n=32):
    return BackwardGraph(q).value_and_grad(task.x_train[:n], task.y_train[:n]).params


@pytest.mark.parametrize("qas", [True, False])
def test_one_sgd_step_follows_the_formula(device, task, qas):
    """W_bar <- clamp(W_bar + round(-lr s^-2 G_Wbar)) with QAS, clamp(W_bar + round(-lr G_Wbar)) without."""
    _, q0 = device
    q = q0.copy()
    grads = one_batch_grads(q, task)
    lr = 0.05
    apply_update(q, grads, SGD(lr=lr, qas=qas))
    for name, g in grads.items():
        t0, t1 = q0.tensor(name), q.tensor(name)
        s = broadcast_scale(t0)
        step = -lr * g.astype(np.float64) / (np.asarray(s) ** 2 if qas else 1.0)
        lo, hi = (-127, 127) if t0.dtype == "int8" else (-(2**31), 2**31 - 1)
        want = np.clip(t0.data.astype(np.int64) + round_half_away_np(step.astype(np.float32)), lo, hi)
        np.testing.assert_array_equal(t1.data, want.astype(t0.dtype), err_msg=name)
        assert t1.dtype == t0.dtype and t1.quant == t0.quant  # scales stay fixed
    changed = sum(int((q.tensor(n).data != q0.tensor(n).data).sum()) for n in grads if q0.tensor(n).dtype == "int8")
    if qas:
        assert changed > 100
    else:
        assert changed == 0  # -lr G_Wbar is far below half an integer step: every update rounds away


def test_qas_scales_are_weight_and_bias_scales(device):
    _, q = device
    s = qas_scales(q, ["conv1/weight", "conv1/bias", "fc/weight"])
    assert s["conv1/weight"].shape == (8, 1, 1, 1)  # per output channel
    np.testing.assert_allclose(np.ravel(s["conv1/bias"]),
                               q.tensor("input").quant.scale[0] * q.tensor("conv1/weight").quant.scale, rtol=1e-6)
    assert np.ndim(s["fc/weight"]) == 0


def test_rounding_modes():
    d = np.array([0.2, -0.2, 0.5, -0.5, 1.49, -2.51])
    np.testing.assert_array_equal(round_steps(d), [0, 0, 1, -1, 1, -3])
    rng = np.random.default_rng(0)
    many = round_steps(np.full(20000, 0.2), "stochastic", rng)
    assert set(np.unique(many)) == {0, 1} and abs(many.mean() - 0.2) < 0.01
    with pytest.raises(TinyMLError, match="Generator"):
        round_steps(d, "stochastic")
    with pytest.raises(TinyMLError, match="nearest, stochastic"):
        round_steps(d, "down")


def test_updates_saturate_at_127(device, task):
    _, q0 = device
    q = q0.copy()
    apply_update(q, one_batch_grads(q, task), SGD(lr=1e6, qas=True))
    w = q.tensor("conv1/weight").data
    assert w.max() <= 127 and w.min() >= -127 and (np.abs(w) == 127).mean() > 0.5


def test_int8_training_with_qas_improves_and_without_qas_learns_nothing(device, task):
    _, q0 = device
    before = evaluate(q0, task.x_test, task.y_test)["accuracy"]
    q = q0.copy()
    h = fit_quantized(q, task.x_train, task.y_train, epochs=3, batch_size=32,
                      optimizer=SGD(lr=0.03, momentum=0.9, qas=True), seed=0, quiet=True)
    after = evaluate(q, task.x_test, task.y_test)["accuracy"]
    assert after > before + 0.4, f"{before:.3f} -> {after:.3f}"
    assert 0 < h.last["update_changed_fraction"] and h.last["update_abs_mean"] > 0.05

    q = q0.copy()
    h = fit_quantized(q, task.x_train, task.y_train, epochs=1, batch_size=32,
                      optimizer=SGD(lr=0.03, momentum=0.9, qas=False), seed=0, quiet=True)
    assert h.last["update_zero_fraction"] == pytest.approx(1.0, abs=1e-3)
    assert h.last["update_abs_mean"] < 1e-3
    assert all(np.array_equal(q.tensor(n).data, q0.tensor(n).data) for n, t in q0.tensors.items() if t.is_const)


def test_int8_training_is_deterministic_and_respects_trainable(device, task):
    _, q0 = device
    x, y = task.x_train[:96], task.y_train[:96]
    a, b = q0.copy(), q0.copy()
    for g in (a, b):
        fit_quantized(g, x, y, epochs=1, batch_size=32, optimizer=Adam(lr=1.0), seed=3, rounding="stochastic",
                      trainable={"fc/weight", "fc/bias"}, quiet=True)
    assert np.array_equal(a.tensor("fc/weight").data, b.tensor("fc/weight").data)
    assert not np.array_equal(a.tensor("fc/weight").data, q0.tensor("fc/weight").data)
    assert np.array_equal(a.tensor("pw1/weight").data, q0.tensor("pw1/weight").data)


def test_fit_quantized_rejects_float_graphs_and_bad_rounding(device, task):
    f, q = device
    with pytest.raises(TinyMLError, match="quantize it first"):
        fit_quantized(f, task.x_train[:8], task.y_train[:8], quiet=True)
    with pytest.raises(TinyMLError, match="fit_quantized"):
        from tinyml_lab.train import fit

        fit(q, task.x_train[:8], task.y_train[:8], quiet=True)
    with pytest.raises(TinyMLError, match="rounding"):
        fit_quantized(q.copy(), task.x_train[:8], task.y_train[:8], rounding="up", quiet=True)


def test_gradient_ratios_show_the_s_squared_mismatch(device, task):
    f, q = device
    rows = gradient_ratios(f, task.x_train[:64], task.y_train[:64], quantized=q)
    assert [r["tensor"] for r in rows] == ["conv1/weight", "conv2/weight", "dw1/weight", "pw1/weight", "fc/weight"]
    for r in rows:
        assert r["int8"] / r["fp32"] > 1e3  # off by about s^-2
        assert 0.2 < r["int8_qas"] / r["fp32"] < 5  # QAS restores the float ratio
    assert "int8 + QAS" in format_ratios(rows)
    fig = plot_gradient_ratios(rows)
    assert type(fig).__name__ == "Figure" and fig.axes[0].get_yscale() == "log"
    with_bias = gradient_ratios(f, task.x_train[:64], task.y_train[:64], quantized=q, include_bias=True)
    assert len(with_bias) == 10


def test_qas_table_runs_every_method(device):
    rows = qas_experiment(seeds=(0,), epochs=1, lr={m: (1.0 if "Adam" in m else 0.03) for m in METHODS})
    by = {r["method"]: r for r in rows}
    assert set(by) == set(METHODS)
    assert by["int8 SGD-M"]["mean"] == pytest.approx(by["int8 SGD-M"]["before"])  # nothing moved
    assert by["int8 SGD-M + QAS"]["mean"] > by["int8 SGD-M"]["mean"] + 0.1  # after a single epoch
    assert by["int8 SGD-M"]["update_zero_fraction"] == pytest.approx(1.0, abs=1e-3)
    assert by["fp32 SGD-M"]["update_zero_fraction"] is None
    assert "int8 SGD-M + QAS" in format_qas_table(rows)


def test_backbone_comes_from_the_committed_weights():
    g = load_backbone()
    assert g.output_shape() == (5,) and "digits-cnn-0to4" in g.metadata["zoo"]["weights"]
    with pytest.raises(TinyMLError, match="train_weights.py"):
        load_backbone("/nonexistent/backbone.npz")
    with pytest.raises(TinyMLError, match="new-classes, rotated"):
        transfer_task("mnist")
    assert zoo.trained_weights("digits-cnn", num_classes=5) is None
