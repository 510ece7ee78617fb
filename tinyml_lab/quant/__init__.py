"""Quantization: float graphs to int8 graphs that follow the TFLite int8 spec."""

from .convert import (
    activation_quant,
    calibrate,
    dequantize_output,
    quantize_input,
    quantize_model,
    weight_quant,
)

__all__ = ["activation_quant", "calibrate", "dequantize_output", "quantize_input", "quantize_model",
           "weight_quant"]
