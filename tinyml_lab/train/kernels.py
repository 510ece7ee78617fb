"""The two kernel sets a training graph runs on, behind one interface.

* :class:`NumbaKernels`: float32, the compiled forward kernels of
  :mod:`tinyml_lab.kernels.float32` and backward kernels of
  :mod:`tinyml_lab.kernels.backward`. Used for training.
* :class:`ReferenceKernels`: float64, the NumPy spec of
  :mod:`tinyml_lab.kernels.backward_reference`. Used to check gradients
  against finite differences.

Both take and return NHWC arrays with the batch first, explicit
``pads = (top, bottom, left, right)`` and fused-activation bounds ``lo, hi``.
"""

from __future__ import annotations

import numpy as np

from ..kernels import backward as kb
from ..kernels import backward_reference as br
from ..kernels import float32 as kf


class NumbaKernels:
    """float32 kernels compiled with numba."""

    name = "numba"
    dtype = np.dtype(np.float32)

    # forward ---------------------------------------------------------------
    def conv(self, x, w, b, strides, dilation, pads, depthwise, lo, hi):
        k = kf.depthwise_conv2d if depthwise else kf.conv2d
        cout = w.shape[-1] if depthwise else w.shape[0]
        bias = np.zeros(cout, np.float32) if b is None else b
        return k(x, w, bias, *strides, *dilation, *pads, lo, hi)

    def dense(self, x, w, b, lo, hi):
        bias = np.zeros(w.shape[0], np.float32) if b is None else b
        return kf.dense(x, w, bias, lo, hi)

    def avg_pool(self, x, pool, strides, pads, count_include_pad, lo, hi):
        return kf.avg_pool2d(x, *pool, *strides, *pads, count_include_pad, lo, hi)

    def max_pool(self, x, pool, strides, pads, lo, hi):
        return kf.max_pool2d(x, *pool, *strides, *pads, lo, hi)

    def global_avg_pool(self, x):
        return kf.global_avg_pool(x)

    def add(self, a, b, lo, hi):
        return kf.add(a, b, lo, hi)

    def clamp(self, x, lo, hi):
        return kf.clamp(x, lo, hi)

    def softmax(self, x, beta):
        return kf.softmax(x, beta)

    def batch_norm(self, x, gamma, beta, mean, var, eps):
        scale = (gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps))
        shift = (beta - mean * scale).astype(np.float32)
        return kf.batch_norm(x, scale.astype(np.float32), shift)

    def batch_norm_train(self, x, gamma, beta, eps):
        return kb.batch_norm_train_forward(x, gamma, beta, eps)

    def pad(self, x, pads):
        return kf.pad(x, *pads, 0.0)

    # backward --------------------------------------------------------------
    def conv_grad_input(self, dy, w, x_shape, strides, dilation, pads, depthwise):
        k = kb.depthwise_conv2d_grad_input if depthwise else kb.conv2d_grad_input
        return k(dy, w, x_shape[1], x_shape[2], *strides, *dilation, *pads)

    def conv_grad_weight(self, x, dy, kernel, strides, dilation, pads, depthwise):
        k = kb.depthwise_conv2d_grad_weight if depthwise else kb.conv2d_grad_weight
        return k(x, dy, *kernel, *strides, *dilation, *pads)

    def dense_grad_input(self, dy, w):
        return kb.dense_grad_input(dy, w)

    def bias_grad(self, dy):
        return kb.bias_grad(np.ascontiguousarray(dy))

    def dense_grad_weight(self, x, dy):
        return kb.dense_grad_weight(x, dy)

    def avg_pool_backward(self, dy, x_shape, pool, strides, pads, count_include_pad):
        return kb.avg_pool2d_backward(dy, x_shape[1], x_shape[2], *pool, *strides, *pads, count_include_pad)

    def max_pool_backward(self, x, dy, pool, strides, pads):
        return kb.max_pool2d_backward(x, dy, *pool, *strides, *pads)

    def global_avg_pool_backward(self, dy, x_shape):
        return kb.global_avg_pool_backward(dy, x_shape[1], x_shape[2])

    def clamp_backward(self, y, dy, lo, hi):
        return kb.clamp_backward(y, dy, float(lo), float(hi))

    def softmax_backward(self, y, dy, beta):
        return kb.softmax_backward(y, dy, beta)

    def batch_norm_train_backward(self, x, dy, gamma, mean, var, eps):
        return kb.batch_norm_train_backward(x, dy, gamma, mean, var, eps)

    def batch_norm_eval_backward(self, x, dy, gamma, mean, var, eps):
        return kb.batch_norm_eval_backward(x, dy, gamma, mean, var, eps)

    def pad_backward(self, dy, pads):
        return kb.pad_backward(dy, *pads)

    # losses ----------------------------------------------------------------
    def cross_entropy(self, logits, labels, label_smoothing):
        return kb.softmax_cross_entropy(logits, labels.astype(np.int64), float(label_smoothing))

    def mse(self, y, target):
        return kb.mse(y, target)


class ReferenceKernels:
    """float64 NumPy kernels, the spec."""

    name = "reference"
    dtype = np.dtype(np.float64)

    def conv(self, x, w, b, strides, dilation, pads, depthwise, lo, hi):
        f = br.depthwise_conv2d_forward if depthwise else br.conv2d_forward
        return np.clip(f(x, w, b, strides, dilation, pads), lo, hi)

    def dense(self, x, w, b, lo, hi):
        return np.clip(br.dense_forward(x, w, b), lo, hi)

    def avg_pool(self, x, pool, strides, pads, count_include_pad, lo, hi):
        return np.clip(br.avg_pool2d_forward(x, pool, strides, pads, count_include_pad), lo, hi)

    def max_pool(self, x, pool, strides, pads, lo, hi):
        return np.clip(br.max_pool2d_forward(x, pool, strides, pads), lo, hi)

    def global_avg_pool(self, x):
        return br.global_avg_pool_forward(x)

    def add(self, a, b, lo, hi):
        return np.clip(a + b, lo, hi)

    def clamp(self, x, lo, hi):
        return br.clamp_forward(x, lo, hi)

    def softmax(self, x, beta):
        return br.softmax_forward(x, beta)

    def batch_norm(self, x, gamma, beta, mean, var, eps):
        return br.batch_norm_forward(x, gamma, beta, mean, var, eps)

    def batch_norm_train(self, x, gamma, beta, eps):
        return br.batch_norm_train_forward(x, gamma, beta, eps)

    def pad(self, x, pads):
        return br.pad_forward(x, pads)

    def conv_grad_input(self, dy, w, x_shape, strides, dilation, pads, depthwise):
        f = br.depthwise_conv2d_grad_input if depthwise else br.conv2d_grad_input
        return f(dy, w, x_shape, strides, dilation, pads)

    def conv_grad_weight(self, x, dy, kernel, strides, dilation, pads, depthwise):
        f = br.depthwise_conv2d_grad_weight if depthwise else br.conv2d_grad_weight
        return f(x, dy, kernel, strides, dilation, pads)

    def dense_grad_input(self, dy, w):
        return br.dense_grad_input(dy, w)

    def bias_grad(self, dy):
        return br.bias_grad(dy)

    def dense_grad_weight(self, x, dy):
        return br.dense_grad_weight(x, dy)

    def avg_pool_backward(self, dy, x_shape, pool, strides, pads, count_include_pad):
        return br.avg_pool2d_backward(dy, x_shape, pool, strides, pads, count_include_pad)

    def max_pool_backward(self, x, dy, pool, strides, pads):
        return br.max_pool2d_backward(x, dy, pool, strides, pads)

    def global_avg_pool_backward(self, dy, x_shape):
        return br.global_avg_pool_backward(dy, x_shape)

    def clamp_backward(self, y, dy, lo, hi):
        return br.clamp_backward(y, dy, lo, hi)

    def softmax_backward(self, y, dy, beta):
        return br.softmax_backward(y, dy, beta)

    def batch_norm_train_backward(self, x, dy, gamma, mean, var, eps):
        return br.batch_norm_train_backward(x, dy, gamma, mean, var, eps)

    def batch_norm_eval_backward(self, x, dy, gamma, mean, var, eps):
        return br.batch_norm_eval_backward(x, dy, gamma, mean, var, eps)

    def pad_backward(self, dy, pads):
        return br.pad_backward(dy, pads)

    def cross_entropy(self, logits, labels, label_smoothing):
        return br.softmax_cross_entropy(logits, labels, label_smoothing)

    def mse(self, y, target):
        return br.mse(y, target)


BACKENDS = {"numba": NumbaKernels, "reference": ReferenceKernels}


def kernels(backend: str):
    """The kernel set named ``backend`` (``"numba"`` or ``"reference"``)."""
    from ..errors import AttributeValueError

    try:
        return BACKENDS[backend]()
    except (KeyError, TypeError):
        raise AttributeValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}") from None
