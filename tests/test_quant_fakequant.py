"""The FakeQuant op: its attributes, its forward (the int8 round trip, bit for bit) and its
straight-through gradient, in the interpreter and in the training engine."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import seeds
from tinyml_lab import Graph, GraphBuilder, Node
from tinyml_lab.errors import AttributeValueError, QuantizationError, ShapeError
from tinyml_lab.interpreter import Interpreter
from tinyml_lab.kernels import reference as ref
from tinyml_lab.quant import fake_quantize, fake_quantize_mask, qrange
from tinyml_lab.train import BackwardGraph


def _fq_graph(attrs: dict, shape=(4, 4, 3)) -> Graph:
    b = GraphBuilder("fq", seed=0)
    x = b.input(shape)
    b.graph.add_node(Node("fq", "FakeQuant", [x], ["fq"], attrs))
    return b.build("fq")


@given(seeds, st.floats(1e-3, 10.0), st.integers(-128, 127))
def test_eight_bits_is_exactly_quantize_then_dequantize(seed, scale, zp):
    x = (np.random.default_rng(seed).standard_normal((3, 17)) * 100 * scale).astype(np.float32)
    s = float(np.float32(scale))
    expected = ref.dequantize(ref.quantize(x, s, zp), s, zp)
    np.testing.assert_array_equal(fake_quantize(x, s, zp), expected)


def test_low_bits_and_narrow_ranges():
    assert qrange(4) == (-8, 7) and qrange(4, narrow=True) == (-7, 7) and qrange(2) == (-2, 1)
    x = np.linspace(-2, 2, 41, dtype=np.float32)[None]
    y = fake_quantize(x, 0.25, 0, bits=3)
    assert set(np.round(y.ravel() / 0.25).astype(int)) <= set(range(-4, 4))
    m = fake_quantize_mask(x, 0.25, 0, bits=3)
    codes = ref.round_half_away_np(x.ravel() / np.float32(0.25))
    np.testing.assert_array_equal(m.ravel(), (codes >= -4) & (codes <= 3))
    assert m.ravel()[9] and not m.ravel()[8]  # -1.1 -> code -4 passes, -1.2 -> code -5 is clamped
    with pytest.raises(QuantizationError):
        qrange(9)


def test_per_channel_along_an_axis():
    x = np.ones((2, 2, 3), np.float32) * np.array([0.3, 3.0, 30.0], np.float32)
    y = fake_quantize(x, [0.1, 1.0, 10.0], [0, 0, 0], axis=-1)
    np.testing.assert_allclose(y[0, 0], [0.3, 3.0, 30.0], rtol=1e-6)


def test_the_op_runs_in_the_interpreter_and_survives_save_and_load(tmp_path):
    attrs = {"bits": 4, "narrow": True, "scale": (0.5, 0.25, 1.0), "zero_point": (0, 0, 0), "axis": 2}
    g = _fq_graph(attrs)
    x = np.random.default_rng(0).standard_normal((2, 4, 4, 3)).astype(np.float32) * 4
    y = Interpreter(g).run(x)
    np.testing.assert_array_equal(y, fake_quantize(x, attrs["scale"], attrs["zero_point"], 4, True, 2))
    h = Graph.load(g.save(tmp_path / "fq.npz"))
    assert h.node("fq").attrs == g.node("fq").attrs
    np.testing.assert_array_equal(Interpreter(h, backend="reference").run(x), y)


@pytest.mark.parametrize("attrs, error", [
    ({"bits": 1, "scale": (1.0,)}, AttributeValueError),
    ({"bits": 9, "scale": (1.0,)}, AttributeValueError),
    ({"bits": 8, "scale": (0.0,)}, AttributeValueError),
    ({"bits": 8, "scale": (1.0,), "zero_point": (300,)}, AttributeValueError),
    ({"bits": 8, "scale": (1.0, 2.0)}, AttributeValueError),
    ({"bits": 8, "scale": (1.0, 2.0), "zero_point": (0, 0), "axis": 2}, ShapeError),
    ({"bits": 8, "scale": (1.0,), "colour": 1}, AttributeValueError),
])
def test_bad_attributes_are_refused(attrs, error):
    with pytest.raises(error):
        _fq_graph(attrs)


def test_straight_through_gradient_masks_what_the_clamp_saturates():
    """d(sum y)/dx through FakeQuant is 1 where the code is not clamped, 0 where it is."""
    attrs = {"bits": 3, "narrow": False, "scale": (0.5,), "zero_point": (1,), "axis": None}
    b = GraphBuilder("ste", seed=0)
    x = b.input((6,))
    b.graph.add_node(Node("fq", "FakeQuant", [x], ["fq"], attrs))
    y = b.dense("fq", 1, weight=np.ones((1, 6), np.float32), name="sum")
    g = b.build(y)
    xs = np.array([[-3.0, -2.4, -0.2, 0.0, 1.2, 1.4]], np.float32)
    for backend in ("numba", "reference"):
        bg = BackwardGraph(g, trainable=(), loss="mse", input_grad=True, backend=backend)
        grads = bg.value_and_grad(xs, np.zeros((1, 1), np.float32))
        dy = 2 * float(bg.forward(xs).values["sum"][0, 0])  # dL/dy of the MSE against 0
        # codes round(x / 0.5) + 1 must lie in [-4, 3]: x in (-2.75, 1.25)
        expected = dy * np.array([0, 1, 1, 1, 1, 0], np.float64)
        np.testing.assert_allclose(grads.input[0], expected, rtol=1e-5)
    assert "straight-through" in str(BackwardGraph(g, trainable=(), loss="mse", input_grad=True))
