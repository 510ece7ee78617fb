"""Quantization-aware training on the trained digits CNN.

Observed (3 epochs, Adam lr 3e-4, seed 0, 4-bit weights per channel): post-training quantization
gives 0.91-0.92, QAT about 0.97; the int8 graph agrees with the fake-quantized float graph it was
trained as on nearly every test image.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_lab import zoo
from tinyml_lab.errors import AttributeValueError, QuantizationError
from tinyml_lab.quant import QATrainer, insert_fake_quant, prepare, quantize_model, strip_fake_quant
from tinyml_lab.quant.observers import affine_params
from tinyml_lab.quant.qat import FAKE_QUANT
from tinyml_lab.quant.tasks import task_for
from tinyml_lab.train import Adam


@pytest.fixture(scope="module")
def digits():
    g = zoo.get("digits-cnn")
    return g, task_for(g)


@pytest.fixture(scope="module")
def qat4(digits):
    g, task = digits
    return QATrainer(weight_bits=4, epochs=3, optimizer=Adam(lr=3e-4)).fit(g, task.x_train, task.y_train)


def test_qat_recovers_what_four_bit_ptq_loses(digits, qat4):
    g, task = digits
    ptq = task.score(quantize_model(g, task.calibration(), weight_bits=4))
    q = qat4.to_int8()
    assert q.is_quantized and q.metadata["weight_bits"]["conv2"] == 4
    assert task.score(q) >= ptq + 0.03
    assert task.score(q) >= task.score(g) - 0.02
    w = q.weights(q.node("conv2"))["weight"].data
    assert np.abs(w).max() <= 7


def test_int8_graph_is_what_training_simulated(digits, qat4):
    _, task = digits
    sim = task.outputs(qat4.simulated_graph())
    q = task.outputs(qat4.to_int8())
    assert np.mean(sim.argmax(1) == q.argmax(1)) >= 0.98
    assert len(qat4.history_) == 3 and qat4.history_.last["accuracy"] > 0.95


def test_the_training_graph_has_a_fake_quant_per_quantized_tensor(digits, qat4):
    g, _ = digits
    p = prepare(g)
    fq = [n for n in qat4.graph_.nodes if n.op == FAKE_QUANT]
    assert [n.inputs[0] for n in fq] == ["input", "relu_conv1", "relu_conv2", "relu_dw1", "relu_pw1", "gap", "fc"]
    assert all(n.attrs["bits"] == 8 for n in fq)
    stripped, params = strip_fake_quant(qat4.graph_)
    assert [n.name for n in stripped.nodes] == [n.name for n in p.nodes]
    assert set(params) == {n.inputs[0] for n in fq}


def test_insert_then_strip_is_the_identity():
    g = prepare(zoo.get("ic-resnet8", weights="random"))
    params = {t: affine_params(-1.0, 1.0) for t in g.inputs + [n.outputs[0] for n in g.nodes]}
    h, back = strip_fake_quant(insert_fake_quant(g, params))
    assert [(n.name, n.inputs, n.outputs) for n in h.nodes] == [(n.name, n.inputs, n.outputs) for n in g.nodes]
    assert h.outputs == g.outputs and back == params


def test_mixed_precision_qat_on_the_autoencoder():
    g = zoo.get("ad-autoencoder")
    task = task_for(g)
    x = task.x_train[:256]
    qat = QATrainer(weight_bits={"enc1": 4, "output": 4}, epochs=1, loss="mse", optimizer=Adam(lr=1e-5)).fit(g, x, x)
    q = qat.to_int8()
    bits = q.metadata["weight_bits"]
    assert bits["enc1"] == 4 and bits["enc2"] == 8
    assert np.abs(q.weights(q.node("enc1"))["weight"].data).max() <= 7
    assert task.score(q) > 0.95  # ROC AUC of the reconstruction error (float: 0.98)


def test_bad_settings_are_refused(digits):
    g, task = digits
    with pytest.raises(QuantizationError, match="2 to 8"):
        QATrainer(weight_bits=1).fit(g, task.x_train[:64], task.y_train[:64])
    with pytest.raises(AttributeValueError):
        QATrainer(weight_method="median")
    with pytest.raises(AttributeValueError):
        QATrainer(range_momentum=2)
