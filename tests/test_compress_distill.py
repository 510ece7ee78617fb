"""Knowledge distillation: the loss and its gradient, and a student that learns from the teacher."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import seeds
from tinyml_lab import GraphBuilder, zoo
from tinyml_lab.compress import ChannelPruner, Distiller, distillation_loss, logits
from tinyml_lab.errors import AttributeValueError, DataError, GraphError, ShapeError
from tinyml_lab.quant.tasks import task_for


@given(seeds, st.floats(0.5, 8.0), st.floats(0.0, 1.0))
def test_gradient_matches_finite_differences(seed, temperature, alpha):
    rng = np.random.default_rng(seed)
    zs, zt = rng.standard_normal((4, 5)) * 3, rng.standard_normal((4, 5)) * 3
    y = rng.integers(0, 5, 4)
    loss, grad = distillation_loss(zs, zt, y, temperature, alpha)
    eps = 1e-6
    num = np.zeros_like(zs)
    for i in np.ndindex(zs.shape):
        d = np.zeros_like(zs)
        d[i] = eps
        num[i] = (distillation_loss(zs + d, zt, y, temperature, alpha)[0]
                  - distillation_loss(zs - d, zt, y, temperature, alpha)[0]) / (2 * eps)
    np.testing.assert_allclose(grad, num, atol=1e-6, rtol=1e-4)
    assert loss >= 0


def test_the_two_ends_of_alpha():
    rng = np.random.default_rng(0)
    zs, zt = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    y = np.array([0, 3, 1])
    ce = -np.mean(np.log(np.exp(zs)[np.arange(3), y] / np.exp(zs).sum(1)))
    assert distillation_loss(zs, zt, y, 4.0, 0.0)[0] == pytest.approx(ce)
    assert distillation_loss(zt, zt, y, 2.0, 1.0)[0] == pytest.approx(0.0, abs=1e-12)  # same logits: no KL
    p, q = (np.exp(z) / np.exp(z).sum(1, keepdims=True) for z in (zt, zs))
    assert distillation_loss(zs, zt, y, 1.0, 1.0)[0] == pytest.approx(np.mean(np.sum(p * np.log(p / q), 1)))


def test_a_pruned_student_learns_from_the_teacher():
    teacher = zoo.get("digits-cnn")
    task = task_for(teacher)
    student = ChannelPruner(0.5).fit_transform(teacher)
    d = Distiller(teacher, temperature=4.0, alpha=0.7, epochs=4, seed=0).fit(student, task.x_train, task.y_train)
    assert len(d.history_) == 4 and d.history_.last["loss"] < d.history_.rows[0]["loss"]
    assert task.score(student) > 0.9
    z = logits(teacher, task.x_test[:5])
    assert z.shape == (5, 10) and not np.allclose(z.sum(1), 1.0)  # logits, not probabilities


def test_bad_input_is_refused():
    teacher = zoo.get("digits-cnn")
    with pytest.raises(AttributeValueError, match="temperature"):
        Distiller(teacher, temperature=0)
    with pytest.raises(AttributeValueError, match="alpha"):
        Distiller(teacher, alpha=1.5)
    with pytest.raises(ShapeError):
        distillation_loss(np.zeros((2, 3)), np.zeros((2, 4)), np.array([0, 1]))
    with pytest.raises(DataError):
        distillation_loss(np.zeros((2, 3)), np.zeros((2, 3)), np.array([0, 3]))
    b = GraphBuilder("other", seed=0)
    other = b.build(b.softmax(b.dense(b.flatten(b.input((16, 16, 1))), 5)))
    with pytest.raises(GraphError, match="same shapes"):
        Distiller(teacher).fit(other, np.zeros((2, 16, 16, 1), np.float32), np.array([0, 1]))
