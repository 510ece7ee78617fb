"""Quantization: float graphs to int8 graphs that follow the TFLite int8 spec.

* :mod:`~tinyml_lab.quant.observers`: range selection with the scikit-learn
  verbs (``fit`` on calibration batches): min-max, moving-average min-max,
  percentile, MSE-optimal and entropy (KL);
* :mod:`~tinyml_lab.quant.convert`: :func:`prepare` (BatchNorm folding, ReLU
  fusion), :class:`Calibrator`, :func:`quantize_model` (per-tensor or
  per-channel weights, 2 to 8 bits per layer), :func:`build_int8`;
* :mod:`~tinyml_lab.quant.report`: per-layer SQNR and model bytes;
* :mod:`~tinyml_lab.quant.fakequant` and :mod:`~tinyml_lab.quant.qat`: the
  ``FakeQuant`` op, its straight-through gradient, and
  :class:`QATrainer`, quantization-aware training on the training engine;
* :mod:`~tinyml_lab.quant.sweep`: the bit-width sweep (accuracy and size per
  weight width);
* :mod:`~tinyml_lab.quant.tasks`: which data set scores a model.

>>> from tinyml_lab import zoo
>>> from tinyml_lab.data import load_digits
>>> d = load_digits(16)
>>> q = quantize_model(zoo.get("digits-cnn"), d.x_train[:256], method="mse")
>>> q.is_quantized
True
"""

from .convert import (
    METHODS,
    Calibrator,
    activation_quant,
    build_int8,
    calibrate,
    dequantize_output,
    layer_bits,
    prepare,
    quantize_input,
    quantize_model,
    weight_quant,
    weight_quant_mse,
)
from .fakequant import fake_quantize, fake_quantize_mask, qrange
from .observers import (
    KLObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    Observer,
    PercentileObserver,
    affine_params,
    make_observer,
)
from .qat import QATrainer, insert_fake_quant, strip_fake_quant
from .report import LayerError, format_layer_report, layer_report, model_bytes, sqnr_db
from .sweep import bit_width_sweep, format_sweep

__all__ = [
    "activation_quant", "calibrate", "dequantize_output", "quantize_input", "quantize_model", "weight_quant",
    "weight_quant_mse", "prepare", "build_int8", "layer_bits", "Calibrator", "METHODS",
    "Observer", "MinMaxObserver", "MovingAverageMinMaxObserver", "PercentileObserver", "MSEObserver",
    "KLObserver", "make_observer", "affine_params",
    "fake_quantize", "fake_quantize_mask", "qrange", "QATrainer", "insert_fake_quant", "strip_fake_quant",
    "sqnr_db", "layer_report", "format_layer_report", "LayerError", "model_bytes",
    "bit_width_sweep", "format_sweep",
]
