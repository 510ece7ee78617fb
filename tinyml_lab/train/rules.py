"""Local rules: each op's forward for training and its backward, one place per op.

A rule's backward sees only its own node: the upstream gradient ``dy`` (of
the node's output) and what the forward kept (:class:`StepContext`). It
returns the gradients of the node's activation inputs and of its weights,
computing only those asked for (``need_input``, ``need``): a layer below
every trainable weight needs no input gradient, a frozen layer no weight
gradient. That is all reverse-mode differentiation is; the order and the
summing of gradients that meet at a tensor are the job of
:class:`~tinyml_lab.train.autodiff.BackwardGraph`.

Fused activations (``activation="relu"`` or ``"relu6"`` on a conv, dense,
pool or add) gate ``dy`` first: ``dy * [lo < y < hi]`` from the node's output.
When the forward ran in int8 the gate is read from the output's int8 codes
and the integer clamp bounds of the deployed kernel, so a code clamped by the
int8 kernel passes no gradient even where the float bounds would.

Each rule also carries the formulas of its gradients, which the printed
backward plan shows; in them ``g`` is ``dL/d(output)`` of the node, after the
gate of a fused activation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..graph import Node

FLOAT_RANGE = {"none": (-np.inf, np.inf), "relu": (0.0, np.inf), "relu6": (0.0, 6.0)}


@dataclass
class StepContext:
    """What one backward step may read.

    ``inputs`` and ``output`` are real values (dequantized when the forward
    ran in int8); ``output_codes`` the output's int8 codes in that case, with
    ``code_bounds`` the clamp bounds of the int8 kernel's fused activation.
    ``weights`` maps roles (``weight``, ``bias``, ``gamma``...) to the real
    values the forward used; ``saved`` holds extras (BatchNorm batch
    statistics); ``geometry`` the resolved explicit pads.
    """

    node: Node
    inputs: list[np.ndarray]
    output: np.ndarray
    weights: dict[str, np.ndarray]
    saved: dict[str, Any]
    geometry: dict[str, Any]
    need_input: list[bool]
    need: set[str]
    output_codes: np.ndarray | None = None
    code_bounds: tuple[int, int] | None = None


Grads = tuple[list[np.ndarray | None], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Rule:
    """One op's training forward, backward and the formulas a printed plan shows."""

    forward: Callable[..., tuple[np.ndarray, dict]]
    backward: Callable[..., Grads]
    input_formula: str
    param_formulas: dict[str, str] = field(default_factory=dict)
    reads: str = ""  # what the backward reads from the forward, for a reader and for memory accounting


# --------------------------------------------------------------------------- helpers

def activation_bounds(node: Node) -> tuple[float, float]:
    return FLOAT_RANGE[node.attrs.get("activation", "none")]


def gate(k, ctx: StepContext, dy: np.ndarray, activation: str | None = None) -> np.ndarray:
    """``dy * [lo < y < hi]`` for a (fused) ReLU or ReLU6; ``dy`` itself for no activation."""
    act = activation or ctx.node.attrs.get("activation", "none")
    if act == "none":
        return dy
    if ctx.output_codes is not None and ctx.code_bounds is not None:
        lo, hi = ctx.code_bounds
        return k.clamp_backward(ctx.output_codes, dy, lo, hi)
    lo, hi = FLOAT_RANGE[act]
    return k.clamp_backward(ctx.output, dy, lo, hi)


# --------------------------------------------------------------------------- conv, dense

def _conv_forward(k, node, inputs, w, training, geometry):
    a = node.attrs
    y = k.conv(inputs[0], w["weight"], w.get("bias"), a["strides"], a["dilation"], geometry["pads"],
               node.op == "DepthwiseConv2D", *activation_bounds(node))
    return y, {}


def _conv_backward(k, ctx: StepContext, dy):
    node, a = ctx.node, ctx.node.attrs
    depthwise = node.op == "DepthwiseConv2D"
    dy = gate(k, ctx, dy)
    x, w = ctx.inputs[0], ctx.weights["weight"]
    grads: dict[str, np.ndarray] = {}
    if ctx.need & {"weight", "bias"}:
        dw, db = k.conv_grad_weight(x, dy, w.shape[1:3], a["strides"], a["dilation"], ctx.geometry["pads"],
                                    depthwise)
        if "weight" in ctx.need:
            grads["weight"] = dw
        if "bias" in ctx.need:
            grads["bias"] = db
    dx = None
    if ctx.need_input[0]:
        dx = k.conv_grad_input(dy, w, x.shape, a["strides"], a["dilation"], ctx.geometry["pads"], depthwise)
    return [dx], grads


def _dense_forward(k, node, inputs, w, training, geometry):
    return k.dense(inputs[0], w["weight"], w.get("bias"), *activation_bounds(node)), {}


def _dense_backward(k, ctx: StepContext, dy):
    dy = gate(k, ctx, dy)
    grads: dict[str, np.ndarray] = {}
    if ctx.need & {"weight", "bias"}:
        dw, db = k.dense_grad_weight(ctx.inputs[0], dy)
        if "weight" in ctx.need:
            grads["weight"] = dw
        if "bias" in ctx.need:
            grads["bias"] = db
    dx = k.dense_grad_input(dy, ctx.weights["weight"]) if ctx.need_input[0] else None
    return [dx], grads


# --------------------------------------------------------------------------- pooling

def _avg_forward(k, node, inputs, w, training, geometry):
    a = node.attrs
    return k.avg_pool(inputs[0], a["pool_size"], a["strides"], geometry["pads"], a["count_include_pad"],
                      *activation_bounds(node)), {}


def _avg_backward(k, ctx: StepContext, dy):
    a = ctx.node.attrs
    dy = gate(k, ctx, dy)
    if not ctx.need_input[0]:
        return [None], {}
    return [k.avg_pool_backward(dy, ctx.inputs[0].shape, a["pool_size"], a["strides"], ctx.geometry["pads"],
                                a["count_include_pad"])], {}


def _max_forward(k, node, inputs, w, training, geometry):
    a = node.attrs
    return k.max_pool(inputs[0], a["pool_size"], a["strides"], geometry["pads"], *activation_bounds(node)), {}


def _max_backward(k, ctx: StepContext, dy):
    a = ctx.node.attrs
    dy = gate(k, ctx, dy)
    if not ctx.need_input[0]:
        return [None], {}
    return [k.max_pool_backward(ctx.inputs[0], dy, a["pool_size"], a["strides"], ctx.geometry["pads"])], {}


def _gap_forward(k, node, inputs, w, training, geometry):
    return k.global_avg_pool(inputs[0]), {}


def _gap_backward(k, ctx: StepContext, dy):
    return [k.global_avg_pool_backward(dy, ctx.inputs[0].shape) if ctx.need_input[0] else None], {}


# --------------------------------------------------------------------------- element-wise, shape

def _add_forward(k, node, inputs, w, training, geometry):
    return k.add(inputs[0], inputs[1], *activation_bounds(node)), {}


def _add_backward(k, ctx: StepContext, dy):
    dy = gate(k, ctx, dy)
    return [dy if ctx.need_input[0] else None, dy if ctx.need_input[1] else None], {}


def _clamp_forward(k, node, inputs, w, training, geometry):
    return k.clamp(inputs[0], *FLOAT_RANGE["relu6" if node.op == "ReLU6" else "relu"]), {}


def _clamp_backward(k, ctx: StepContext, dy):
    if not ctx.need_input[0]:
        return [None], {}
    return [gate(k, ctx, dy, "relu6" if ctx.node.op == "ReLU6" else "relu")], {}


def _reshape_forward(k, node, inputs, w, training, geometry):
    x = inputs[0]
    return x.reshape((x.shape[0],) + geometry["out_shape"]), {}


def _reshape_backward(k, ctx: StepContext, dy):
    x = ctx.inputs[0]
    return [dy.reshape(x.shape) if ctx.need_input[0] else None], {}


def _softmax_forward(k, node, inputs, w, training, geometry):
    return k.softmax(inputs[0], node.attrs["beta"]), {}


def _softmax_backward(k, ctx: StepContext, dy):
    if not ctx.need_input[0]:
        return [None], {}
    return [k.softmax_backward(ctx.output, dy, ctx.node.attrs["beta"])], {}


def _pad_forward(k, node, inputs, w, training, geometry):
    return k.pad(inputs[0], node.attrs["pads"]), {}


def _pad_backward(k, ctx: StepContext, dy):
    return [k.pad_backward(dy, ctx.node.attrs["pads"]) if ctx.need_input[0] else None], {}


def _identity_forward(k, node, inputs, w, training, geometry):
    return inputs[0], {}


def _identity_backward(k, ctx: StepContext, dy):
    return [dy if ctx.need_input[0] else None], {}


# --------------------------------------------------------------------------- batch normalisation

def _bn_forward(k, node, inputs, w, training, geometry):
    eps = node.attrs["epsilon"]
    if training:
        y, mean, var = k.batch_norm_train(inputs[0], w["gamma"], w["beta"], eps)
        return y, {"batch_mean": mean, "batch_var": var}
    return k.batch_norm(inputs[0], w["gamma"], w["beta"], w["mean"], w["var"], eps), {}


def _bn_backward(k, ctx: StepContext, dy):
    eps = ctx.node.attrs["epsilon"]
    w, x = ctx.weights, ctx.inputs[0]
    if "batch_mean" in ctx.saved:
        dx, dgamma, dbeta = k.batch_norm_train_backward(x, dy, w["gamma"], ctx.saved["batch_mean"],
                                                        ctx.saved["batch_var"], eps)
    else:
        dx, dgamma, dbeta = k.batch_norm_eval_backward(x, dy, w["gamma"], w["mean"], w["var"], eps)
    grads = {r: g for r, g in (("gamma", dgamma), ("beta", dbeta)) if r in ctx.need}
    return [dx if ctx.need_input[0] else None], grads


# --------------------------------------------------------------------------- fake quantization

def _fakequant_forward(k, node, inputs, w, training, geometry):
    from ..quant.fakequant import fake_quantize_node

    return fake_quantize_node(inputs[0], node.attrs).astype(k.dtype), {}


def _fakequant_backward(k, ctx: StepContext, dy):
    """Straight-through estimator: ``round`` passes ``dy``, the clamp masks it."""
    from ..quant.fakequant import fake_quantize_node_mask

    if not ctx.need_input[0]:
        return [None], {}
    return [(dy * fake_quantize_node_mask(ctx.inputs[0], ctx.node.attrs)).astype(dy.dtype)], {}


# --------------------------------------------------------------------------- the table

RULES: dict[str, Rule] = {
    "Conv2D": Rule(
        _conv_forward, _conv_backward,
        "dx = conv_transpose(g, W)",
        {"weight": "dW[o] = sum_pixels g[o] * window(x)", "bias": "db = sum_pixels g"},
        "x (for dW), W (for dx), y (for a fused activation)",
    ),
    "DepthwiseConv2D": Rule(
        _conv_forward, _conv_backward,
        "dx[c] = conv_transpose(g[c], W[c])",
        {"weight": "dW[c] = sum_pixels g[c] * window(x[c])", "bias": "db = sum_pixels g"},
        "x (for dW), W (for dx), y (for a fused activation)",
    ),
    "Dense": Rule(
        _dense_forward, _dense_backward,
        "dx = g W",
        {"weight": "dW = g^T x", "bias": "db = sum_batch g"},
        "x (for dW), W (for dx), y (for a fused activation)",
    ),
    "AvgPool2D": Rule(_avg_forward, _avg_backward, "dx = g / count, spread over each window", reads="shapes only"),
    "MaxPool2D": Rule(_max_forward, _max_backward, "dx = g at each window's maximum", reads="x (the winners)"),
    "GlobalAvgPool": Rule(_gap_forward, _gap_backward, "dx = g / (H W) at every pixel", reads="shapes only"),
    "Add": Rule(_add_forward, _add_backward, "da = db = g", reads="y (for a fused activation)"),
    "ReLU": Rule(_clamp_forward, _clamp_backward, "dx = g [y > 0]", reads="y"),
    "ReLU6": Rule(_clamp_forward, _clamp_backward, "dx = g [0 < y < 6]", reads="y"),
    "Reshape": Rule(_reshape_forward, _reshape_backward, "dx = reshape(g)", reads="shapes only"),
    "Flatten": Rule(_reshape_forward, _reshape_backward, "dx = reshape(g)", reads="shapes only"),
    "Softmax": Rule(_softmax_forward, _softmax_backward, "dx = beta y (g - sum(g y))", reads="y"),
    "BatchNorm": Rule(
        _bn_forward, _bn_backward,
        "dx = gamma/(M sigma) (M g - sum g - xhat sum(g xhat)); with running statistics dx = g gamma / sigma",
        {"gamma": "dgamma = sum g xhat", "beta": "dbeta = sum g"},
        "x and the batch mean and variance",
    ),
    "Pad": Rule(_pad_forward, _pad_backward, "dx = g without the border", reads="shapes only"),
    "Quantize": Rule(_identity_forward, _identity_backward, "dx = g (real values)", reads="nothing"),
    "Dequantize": Rule(_identity_forward, _identity_backward, "dx = g (real values)", reads="nothing"),
    "FakeQuant": Rule(_fakequant_forward, _fakequant_backward,
                      "dx = g [qmin <= round(x/s) + z <= qmax] (straight-through)", reads="x (the clipping mask)"),
}

# roles a gradient can update; BatchNorm's mean and var are statistics, updated by the forward
TRAINABLE_ROLES = ("weight", "bias", "gamma", "beta")
