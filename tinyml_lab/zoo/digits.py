"""A small CNN for the labs, sized for :func:`tinyml_lab.data.load_digits`.

It uses the same building blocks as the MLPerf Tiny models (a plain
convolution, a strided convolution, one depthwise-separable pair, global
pooling) at a size that trains in seconds on a laptop CPU: 103 k MACs and
2.6 k parameters at 16x16.
"""

from __future__ import annotations

import numbers

from ..errors import AttributeValueError
from ..graph import Graph, GraphBuilder
from .mlperf_tiny import conv_bn_act

SIZES = (16, 32)


def digits_cnn(seed: int = 0, size: int = 16, num_classes: int = 10) -> Graph:
    """The lab CNN for ``size x size x 1`` digit images.

    Source: this project (a teaching model, not a benchmark). Layers:
    ``conv1`` 8 3x3, ``conv2`` 16 3x3 stride 2, ``dw1`` 3x3 stride 2,
    ``pw1`` 32 1x1 (each ``same`` padding + BatchNorm + ReLU), global average
    pooling, ``fc`` Dense ``num_classes``, Softmax.
    """
    if isinstance(size, bool) or size not in SIZES:
        raise AttributeValueError(f"digits-cnn: size must be one of {SIZES}, got {size!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise AttributeValueError(f"digits-cnn: num_classes must be an int >= 2, got {num_classes!r}")
    b = GraphBuilder(f"digits-cnn-{size}", seed)
    x = b.input((int(size), int(size), 1))
    x = conv_bn_act(b, x, "conv1", 8, 3)
    x = conv_bn_act(b, x, "conv2", 16, 3, strides=2)
    x = conv_bn_act(b, x, "dw1", None, 3, strides=2)
    x = conv_bn_act(b, x, "pw1", 32, 1)
    x = b.global_avg_pool(x, name="gap")
    x = b.dense(x, int(num_classes), name="fc")
    return b.build(b.softmax(x, name="softmax"))


__all__ = ["digits_cnn", "SIZES"]
