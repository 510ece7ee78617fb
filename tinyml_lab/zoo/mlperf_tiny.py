"""The four MLPerf Tiny reference models, layer for layer.

MLPerf Tiny (Banbury et al., "MLPerf Tiny Benchmark", NeurIPS Datasets and
Benchmarks 2021, arXiv:2106.07597) fixes one reference network per task. The
architectures below follow the benchmark's reference training scripts
(``github.com/mlcommons/tiny``, ``benchmark/training/``) with Keras semantics:

* ``padding="same"`` pads as TensorFlow does (odd pixel at the end);
* every convolution is followed by its own ``BatchNorm`` (epsilon 1e-3) and an
  explicit activation node, as the Keras models have them; folding BatchNorm
  into the convolution is a separate pass;
* layers keep the Keras default ``use_bias=True`` unless a script says
  otherwise;
* dropout layers are left out: these are inference graphs.

Weights come from the builder's seeded He-normal initialiser; they are
untrained.
"""

from __future__ import annotations

from ..errors import AttributeValueError
from ..graph import Graph, GraphBuilder


def conv_bn_act(b: GraphBuilder, x: str, name: str, filters: int | None = None,
                kernel_size: int | tuple[int, int] = 3, strides: int | tuple[int, int] = 1,
                act: str | None = "relu", use_bias: bool = True) -> str:
    """Convolution, ``BatchNorm`` and activation as three nodes.

    ``filters=None`` makes a depthwise convolution. The nodes are named
    ``name``, ``bn_<name>`` and ``<act>_<name>``; ``act`` is ``"relu"``,
    ``"relu6"`` or None (a linear layer, as in a projection or before a
    residual ``Add``).
    """
    if filters is None:
        x = b.depthwise_conv2d(x, kernel_size, strides=strides, padding="same",
                               use_bias=use_bias, name=name)
    else:
        x = b.conv2d(x, filters, kernel_size, strides=strides, padding="same",
                     use_bias=use_bias, name=name)
    x = b.batch_norm(x, epsilon=1e-3, name=f"bn_{name}")
    if act == "relu":
        x = b.relu(x, name=f"relu_{name}")
    elif act == "relu6":
        x = b.relu6(x, name=f"relu6_{name}")
    elif act is not None:
        raise AttributeValueError(f"act must be 'relu', 'relu6' or None, got {act!r}")
    return x


def dense_bn_relu(b: GraphBuilder, x: str, name: str, units: int) -> str:
    """``Dense``, ``BatchNorm`` and ``ReLU``, named ``name``, ``bn_<name>``, ``relu_<name>``."""
    x = b.dense(x, units, name=name)
    x = b.batch_norm(x, epsilon=1e-3, name=f"bn_{name}")
    return b.relu(x, name=f"relu_{name}")


def _classifier(b: GraphBuilder, x: str, pool_size: tuple[int, int], classes: int) -> str:
    """Keras ``AveragePooling2D(pool_size)`` (strides = pool size, valid), Flatten, Dense, Softmax."""
    x = b.avg_pool2d(x, pool_size, padding="valid", name="avgpool")
    x = b.flatten(x, name="flatten")
    x = b.dense(x, classes, name="fc")
    return b.softmax(x, name="softmax")


def kws_dscnn(seed: int = 0) -> Graph:
    """Keyword spotting: the DS-CNN of MLPerf Tiny (Zhang et al., "Hello Edge", 2017).

    Source: ``benchmark/training/keyword_spotting/keras_model.py``
    (``model_name == 'ds_cnn'``). Input: 49 frames x 10 MFCCs x 1; 12 classes
    (10 words, silence, unknown).

    Conv 64 (10x4) stride 2, then four depthwise-separable blocks of 64
    channels, then ``AveragePooling2D(pool_size=(int(49/2), int(10/2)))``.
    The convolutional part leaves a 25x5 map, so that (24, 5) pool with
    stride (24, 5) gives 1x1x64. About 2.66 M MACs.
    """
    b = GraphBuilder("kws-dscnn", seed)
    x = b.input((49, 10, 1))
    x = conv_bn_act(b, x, "conv1", 64, (10, 4), strides=(2, 2))
    for i in range(1, 5):
        x = conv_bn_act(b, x, f"dw{i}", None, 3)
        x = conv_bn_act(b, x, f"pw{i}", 64, 1)
    return b.build(_classifier(b, x, (49 // 2, 10 // 2), 12))


# (stride, pointwise filters) of the 13 depthwise-separable blocks at alpha 0.25
VWW_BLOCKS: tuple[tuple[int, int], ...] = (
    (1, 16), (2, 32), (1, 32), (2, 64), (1, 64), (2, 128),
    (1, 128), (1, 128), (1, 128), (1, 128), (1, 128),
    (2, 256), (1, 256),
)


def vww_mobilenetv1(seed: int = 0) -> Graph:
    """Visual wake words: MobileNetV1 at width 0.25 (Howard et al., 2017) as MLPerf Tiny defines it.

    Source: ``benchmark/training/visual_wake_words/vww_model.py``. Input
    96x96x3; 2 classes (person, no person). The reference uses plain ReLU
    (not ReLU6), biases on every layer, ``padding="same"`` throughout, and an
    ``AveragePooling2D`` over the whole final 3x3 map. About 7.5 M MACs.
    """
    b = GraphBuilder("vww-mobilenetv1", seed)
    x = b.input((96, 96, 3))
    x = conv_bn_act(b, x, "conv1", 8, 3, strides=2)
    for i, (stride, filters) in enumerate(VWW_BLOCKS, start=1):
        x = conv_bn_act(b, x, f"dw{i}", None, 3, strides=stride)
        x = conv_bn_act(b, x, f"pw{i}", filters, 1)
    h, w, _ = b.graph.tensor(x).shape
    return b.build(_classifier(b, x, (h, w), 2))


def ic_resnet8(seed: int = 0) -> Graph:
    """Image classification: the ResNet-8 of MLPerf Tiny (He et al., 2016, cut down).

    Source: ``benchmark/training/image_classification/keras_model.py``
    (``resnet_v1_eembc``). Input 32x32x3 (CIFAR-10); 10 classes.

    A 16-channel stem, then three residual stacks of 16, 32 and 64 channels.
    Each stack is ``conv3x3 -> BN -> ReLU -> conv3x3 -> BN``, added to the
    shortcut and followed by ReLU. Stacks 2 and 3 start with stride 2 and
    their shortcut is a 1x1 stride-2 convolution (with bias, no BatchNorm).
    ``AveragePooling2D(8)`` turns the final 8x8 map into 1x1. About 12.5 M MACs.
    """
    b = GraphBuilder("ic-resnet8", seed)
    x = b.input((32, 32, 3))
    x = conv_bn_act(b, x, "conv1", 16, 3)
    for s, filters in enumerate((16, 32, 64), start=1):
        stride = 1 if s == 1 else 2
        y = conv_bn_act(b, x, f"s{s}_conv1", filters, 3, strides=stride)
        y = conv_bn_act(b, y, f"s{s}_conv2", filters, 3, act=None)
        if s > 1:
            x = b.conv2d(x, filters, 1, strides=stride, padding="same", name=f"s{s}_shortcut")
        x = b.add(x, y, name=f"s{s}_add")
        x = b.relu(x, name=f"relu_s{s}")
    size = min(b.graph.tensor(x).shape[:2])
    return b.build(_classifier(b, x, (size, size), 10))


def ad_autoencoder(seed: int = 0) -> Graph:
    """Anomaly detection: the deep autoencoder of MLPerf Tiny (DCASE2020 Task 2 baseline).

    Source: ``benchmark/training/anomaly_detection/keras_model.py``; the
    features are those of Koizumi et al. (DCASE2020): 5 stacked frames of 128
    log-mel bands, 640 values. Encoder: four ``Dense 128 -> BN -> ReLU``,
    bottleneck ``Dense 8 -> BN -> ReLU``; decoder: four ``Dense 128 -> BN ->
    ReLU`` and a linear ``Dense 640``. The anomaly score is the reconstruction
    error. 264,192 MACs.
    """
    b = GraphBuilder("ad-autoencoder", seed)
    x = b.input((640,))
    for i in range(1, 5):
        x = dense_bn_relu(b, x, f"enc{i}", 128)
    x = dense_bn_relu(b, x, "bottleneck", 8)
    for i in range(1, 5):
        x = dense_bn_relu(b, x, f"dec{i}", 128)
    return b.build(b.dense(x, 640, name="output"))


__all__ = ["kws_dscnn", "vww_mobilenetv1", "ic_resnet8", "ad_autoencoder", "conv_bn_act",
           "dense_bn_relu", "VWW_BLOCKS"]
