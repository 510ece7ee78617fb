"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018).

Built as ``tf.keras.applications.MobileNetV2`` builds it, so that channel
counts match the published width/resolution table: convolutions carry no
bias, every convolution is followed by ``BatchNorm`` (epsilon 1e-3), the
expansion and depthwise layers by ``ReLU6``, and the projection is linear.
Keras pads its stride-2 layers explicitly so that they match TensorFlow's
``"same"`` rule; the graph uses ``padding="same"`` directly.
"""

from __future__ import annotations

import numbers

from ..errors import AttributeValueError
from ..graph import Graph, GraphBuilder
from .mlperf_tiny import conv_bn_act

# (expansion t, channels c, repeats n, first stride s), Table 2 of the paper
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``v`` to the nearest multiple of ``divisor``, never more than 10% below ``v``.

    ``new = max(min_value, int(v + divisor / 2) // divisor * divisor)``, plus
    one more ``divisor`` if that fell below ``0.9 v`` (the rule of the
    reference MobileNet implementations).
    """
    if min_value is None:
        min_value = divisor
    new = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


def channel_plan(width: float = 0.35) -> dict:
    """The channel counts MobileNetV2 uses at ``width``.

    Returns ``{"stem": int, "blocks": [(t, expanded, out, stride), ...], "last": int}``
    with one entry per inverted-residual block (17 of them). A block's output
    count is ``make_divisible(int(c * width), 8)`` as in Keras; its expanded
    count is ``t`` times its input count (unrounded).
    """
    stem = make_divisible(32 * width, 8)
    blocks = []
    c_in = stem
    for t, c, n, s in BLOCKS:
        c_out = make_divisible(int(c * width), 8)
        for i in range(n):
            blocks.append((t, c_in * t, c_out, s if i == 0 else 1))
            c_in = c_out
    last = make_divisible(1280 * width, 8) if width > 1.0 else 1280
    return {"stem": stem, "blocks": blocks, "last": last}


def _check(width: object, resolution: object, num_classes: object) -> None:
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not width > 0:
        raise AttributeValueError(f"mobilenetv2: width must be a number > 0, got {width!r}")
    if (isinstance(resolution, bool) or not isinstance(resolution, numbers.Integral)
            or resolution < 32 or resolution % 32):
        raise AttributeValueError(
            f"mobilenetv2: resolution must be an int >= 32 divisible by 32 (e.g. 96, 128, 160, 224), "
            f"got {resolution!r}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 2:
        raise AttributeValueError(f"mobilenetv2: num_classes must be an int >= 2, got {num_classes!r}")


def mobilenetv2(seed: int = 0, width: float = 0.35, resolution: int = 128, num_classes: int = 1000) -> Graph:
    """MobileNetV2 at a width multiplier and input resolution.

    Source: Sandler et al. (2018), built like ``tf.keras.applications.MobileNetV2``
    (``alpha=width``). Input ``resolution x resolution x 3``.

    Stem conv 3x3 stride 2 with ``make_divisible(32 width, 8)`` channels; 17
    inverted-residual blocks (expand 1x1 -> depthwise 3x3 -> linear project
    1x1, with an ``Add`` when the stride is 1 and the channel count is
    unchanged; the first block has no expansion); a 1x1 conv to 1280 channels
    (scaled only when ``width > 1``); global average pooling, ``Dense``,
    ``Softmax``. Layers are named ``block<i>_expand``, ``block<i>_dw``,
    ``block<i>_project`` (i from 0), with ``bn_`` and ``relu6_`` nodes after
    them.
    """
    _check(width, resolution, num_classes)
    plan = channel_plan(float(width))
    b = GraphBuilder(f"mobilenetv2-w{width:g}-r{resolution}", seed)
    x = b.input((int(resolution), int(resolution), 3))
    x = conv_bn_act(b, x, "conv1", plan["stem"], 3, strides=2, act="relu6", use_bias=False)
    c_in = plan["stem"]
    for i, (t, expanded, c_out, stride) in enumerate(plan["blocks"]):
        y = x
        if t != 1:
            y = conv_bn_act(b, y, f"block{i}_expand", expanded, 1, act="relu6", use_bias=False)
        y = conv_bn_act(b, y, f"block{i}_dw", None, 3, strides=stride, act="relu6", use_bias=False)
        y = conv_bn_act(b, y, f"block{i}_project", c_out, 1, act=None, use_bias=False)
        x = b.add(x, y, name=f"block{i}_add") if stride == 1 and c_in == c_out else y
        c_in = c_out
    x = conv_bn_act(b, x, "conv_last", plan["last"], 1, act="relu6", use_bias=False)
    x = b.global_avg_pool(x, name="gap")
    x = b.dense(x, int(num_classes), name="fc")
    return b.build(b.softmax(x, name="softmax"))


__all__ = ["mobilenetv2", "make_divisible", "channel_plan", "BLOCKS"]
