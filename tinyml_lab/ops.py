"""The operator set of the graph IR: attributes, shape rules and cost of each op.

Layout conventions (those of TensorFlow Lite, so a graph exports without
transposes):

* activations are NHWC; a tensor's ``shape`` in the IR leaves out the batch
  dimension, so a 32x32 RGB image is ``(32, 32, 3)``;
* ``Conv2D`` weights are ``(C_out, K_h, K_w, C_in)``;
* ``DepthwiseConv2D`` weights are ``(1, K_h, K_w, C)`` (depth multiplier 1);
* ``Dense`` weights are ``(C_out, C_in)``; biases are ``(C_out,)``.

A MAC is one multiply-accumulate of a convolution or dense layer; pooling,
element-wise ops and normalisation count zero MACs, as in the MLPerf Tiny and
MCUNet papers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from .errors import AttributeValueError, GraphError, ShapeError, UnknownOpError

Shape = tuple[int, ...]
Pads = tuple[int, int, int, int]  # (top, bottom, left, right)

ACTIVATIONS = ("none", "relu", "relu6")


# --------------------------------------------------------------------------- helpers

def _pair(value: Any, what: str, op: str, minimum: int = 1) -> tuple[int, int]:
    """Normalise an int or a pair of ints to a pair, checking the lower bound."""
    if isinstance(value, (int,)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, Sequence) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        pair = (int(value[0]), int(value[1]))
    else:
        raise AttributeValueError(
            f"{op}: {what} must be an int or a pair of ints, got {value!r}"
        )
    if min(pair) < minimum:
        raise AttributeValueError(f"{op}: {what} must be >= {minimum}, got {value!r}")
    return pair


def _padding(value: Any, op: str) -> str | Pads:
    """``'same'``, ``'valid'`` or explicit ``(top, bottom, left, right)`` pads."""
    if isinstance(value, str):
        v = value.lower()
        if v in ("same", "valid"):
            return v
    elif isinstance(value, Sequence) and len(value) == 4 and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        return tuple(int(v) for v in value)  # type: ignore[return-value]
    raise AttributeValueError(
        f"{op}: padding must be 'same', 'valid' or four non-negative ints "
        f"(top, bottom, left, right), got {value!r}"
    )


def _activation(value: Any, op: str) -> str:
    v = "none" if value is None else str(value).lower()
    if v not in ACTIVATIONS:
        raise AttributeValueError(
            f"{op}: activation must be one of {', '.join(ACTIVATIONS)}, got {value!r}"
        )
    return v


def resolve_padding(
    in_hw: tuple[int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilation: tuple[int, int],
    padding: str | Pads,
    op: str = "op",
) -> tuple[tuple[int, int], Pads]:
    """Output size and explicit pads of a sliding window, TensorFlow's rules.

    ``same``: ``out = ceil(in / s)``, total padding
    ``max((out - 1) s + (k - 1) d + 1 - in, 0)`` with the odd pixel at the end
    (bottom/right). ``valid``: ``out = floor((in - (k - 1) d - 1) / s) + 1``.
    Explicit pads: ``out = floor((in + p_0 + p_1 - (k - 1) d - 1) / s) + 1``.
    """
    outs: list[int] = []
    pads: list[int] = []
    for axis in range(2):
        n, k, s, d = in_hw[axis], kernel[axis], strides[axis], dilation[axis]
        eff = (k - 1) * d + 1
        if padding == "same":
            out = -(-n // s)
            total = max((out - 1) * s + eff - n, 0)
            before, after = total // 2, total - total // 2
        elif padding == "valid":
            before = after = 0
            if n < eff:
                raise ShapeError(
                    f"{op}: input size {n} is smaller than the window {eff} with "
                    f"padding 'valid'; use padding 'same' or a smaller kernel"
                )
            out = (n - eff) // s + 1
        else:
            before, after = padding[2 * axis], padding[2 * axis + 1]  # type: ignore[index]
            if n + before + after < eff:
                raise ShapeError(
                    f"{op}: padded input size {n + before + after} is smaller than "
                    f"the window {eff}"
                )
            out = (n + before + after - eff) // s + 1
        outs.append(out)
        pads.extend((before, after))
    return (outs[0], outs[1]), (pads[0], pads[1], pads[2], pads[3])


def _rank(shape: Shape, rank: int, op: str, name: str, hint: str = "") -> None:
    if len(shape) != rank:
        raise ShapeError(
            f"{op} '{name}': expected a rank-{rank} input (batch left out), got "
            f"shape {shape}{hint}"
        )


# --------------------------------------------------------------------------- op table

@dataclass(frozen=True)
class OpDef:
    """What the IR knows of one op.

    ``n_inputs`` activation inputs come first in ``Node.inputs``; they are
    followed by the constant ``weights`` (roles, in order; roles in
    ``optional`` may be left out). ``normalize`` checks and fills the
    attributes; ``infer`` maps input shapes and weight shapes to the output
    shape; ``macs`` counts multiply-accumulates per sample.
    """

    name: str
    n_inputs: int
    weights: tuple[str, ...]
    optional: tuple[str, ...]
    normalize: Callable[[dict], dict]
    infer: Callable[[str, list[Shape], dict[str, Shape], dict], Shape]
    macs: Callable[[list[Shape], dict[str, Shape], Shape, dict], int] = lambda i, w, o, a: 0
    int8: bool = True  # has an int8 kernel


def _no_attrs(op: str, allowed: Sequence[str] = ()) -> Callable[[dict], dict]:
    def normalize(attrs: dict) -> dict:
        extra = set(attrs) - set(allowed)
        if extra:
            raise AttributeValueError(f"{op}: unknown attribute(s) {sorted(extra)}")
        return dict(attrs)

    return normalize


def _check_known(op: str, attrs: dict, known: Sequence[str]) -> None:
    extra = set(attrs) - set(known)
    if extra:
        raise AttributeValueError(
            f"{op}: unknown attribute(s) {sorted(extra)}; known: {', '.join(known)}"
        )


def _norm_conv(op: str) -> Callable[[dict], dict]:
    def normalize(attrs: dict) -> dict:
        _check_known(op, attrs, ("strides", "padding", "dilation", "activation"))
        return {
            "strides": _pair(attrs.get("strides", 1), "strides", op),
            "padding": _padding(attrs.get("padding", "valid"), op),
            "dilation": _pair(attrs.get("dilation", 1), "dilation", op),
            "activation": _activation(attrs.get("activation"), op),
        }

    return normalize


def _infer_conv(name: str, ins: list[Shape], w: dict[str, Shape], a: dict) -> Shape:
    x = ins[0]
    _rank(x, 3, "Conv2D", name)
    ws = w["weight"]
    if len(ws) != 4:
        raise ShapeError(f"Conv2D '{name}': weight must be (C_out, K_h, K_w, C_in), got {ws}")
    c_out, kh, kw, c_in = ws
    if c_in != x[2]:
        raise GraphError(
            f"Conv2D '{name}': input has {x[2]} channels but the weight expects {c_in}"
        )
    if "bias" in w and w["bias"] != (c_out,):
        raise ShapeError(f"Conv2D '{name}': bias must be ({c_out},), got {w['bias']}")
    (oh, ow), _ = resolve_padding(
        (x[0], x[1]), (kh, kw), a["strides"], a["dilation"], a["padding"], f"Conv2D '{name}'"
    )
    return (oh, ow, c_out)


def _macs_conv(ins: list[Shape], w: dict[str, Shape], out: Shape, a: dict) -> int:
    _, kh, kw, c_in = w["weight"]
    return out[0] * out[1] * out[2] * kh * kw * c_in


def _infer_dw(name: str, ins: list[Shape], w: dict[str, Shape], a: dict) -> Shape:
    x = ins[0]
    _rank(x, 3, "DepthwiseConv2D", name)
    ws = w["weight"]
    if len(ws) != 4 or ws[0] != 1:
        raise ShapeError(
            f"DepthwiseConv2D '{name}': weight must be (1, K_h, K_w, C) "
            f"(depth multiplier 1), got {ws}"
        )
    _, kh, kw, c = ws
    if c != x[2]:
        raise GraphError(
            f"DepthwiseConv2D '{name}': input has {x[2]} channels but the weight has {c}; "
            f"only depth multiplier 1 is supported"
        )
    if "bias" in w and w["bias"] != (c,):
        raise ShapeError(f"DepthwiseConv2D '{name}': bias must be ({c},), got {w['bias']}")
    (oh, ow), _ = resolve_padding(
        (x[0], x[1]), (kh, kw), a["strides"], a["dilation"], a["padding"],
        f"DepthwiseConv2D '{name}'",
    )
    return (oh, ow, c)


def _macs_dw(ins: list[Shape], w: dict[str, Shape], out: Shape, a: dict) -> int:
    _, kh, kw, _ = w["weight"]
    return out[0] * out[1] * out[2] * kh * kw


def _norm_dense(attrs: dict) -> dict:
    _check_known("Dense", attrs, ("activation",))
    return {"activation": _activation(attrs.get("activation"), "Dense")}


def _infer_dense(name: str, ins: list[Shape], w: dict[str, Shape], a: dict) -> Shape:
    x = ins[0]
    _rank(x, 1, "Dense", name, "; add a Flatten before it")
    ws = w["weight"]
    if len(ws) != 2:
        raise ShapeError(f"Dense '{name}': weight must be (C_out, C_in), got {ws}")
    if ws[1] != x[0]:
        raise GraphError(f"Dense '{name}': input has {x[0]} features but the weight expects {ws[1]}")
    if "bias" in w and w["bias"] != (ws[0],):
        raise ShapeError(f"Dense '{name}': bias must be ({ws[0]},), got {w['bias']}")
    return (ws[0],)


def _norm_pool(op: str) -> Callable[[dict], dict]:
    def normalize(attrs: dict) -> dict:
        known = ["pool_size", "strides", "padding", "activation"]
        if op == "AvgPool2D":
            known.append("count_include_pad")
        _check_known(op, attrs, known)
        if "pool_size" not in attrs:
            raise AttributeValueError(f"{op}: pool_size is required")
        pool = _pair(attrs["pool_size"], "pool_size", op)
        out = {
            "pool_size": pool,
            "strides": _pair(attrs.get("strides", pool), "strides", op),
            "padding": _padding(attrs.get("padding", "valid"), op),
            "activation": _activation(attrs.get("activation"), op),
        }
        if op == "AvgPool2D":
            out["count_include_pad"] = bool(attrs.get("count_include_pad", False))
        return out

    return normalize


def _infer_pool(op: str) -> Callable[[str, list[Shape], dict[str, Shape], dict], Shape]:
    def infer(name: str, ins: list[Shape], w: dict[str, Shape], a: dict) -> Shape:
        x = ins[0]
        _rank(x, 3, op, name)
        (oh, ow), _ = resolve_padding(
            (x[0], x[1]), a["pool_size"], a["strides"], (1, 1), a["padding"], f"{op} '{name}'"
        )
        return (oh, ow, x[2])

    return infer


def _infer_gap(name: str, ins: list[Shape], w: dict[str, Shape], a: dict) -> Shape:
    _rank(ins[0], 3, "GlobalAvgPool", name)
    return (ins[0][2],)


def _norm_add(attrs: dict) -> dict:
    _check_known("Add", attrs, ("activation",))
    return {"activation": _activation(attrs.get("activation"), "Add")}


def _infer_add(name: str, ins: list[Shape], w: dict[str, Shape], a: dict) -> Shape:
    if ins[0] != ins[1]:
        raise GraphError(
            f"Add '{name}': the two inputs must have the same shape, got {ins[0]} and {ins[1]}"
        )
    return ins[0]


def _same(name: str, ins: list[Shape], w: dict[str, Shape], a: dict) -> Shape:
    return ins[0]


def _norm_reshape(attrs: dict) -> dict:
    _check_known("Reshape", attrs, ("shape",))
    shape = attrs.get("shape")
    if not isinstance(shape, Sequence) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in shape
    ):
        raise AttributeValueError(f"Reshape: shape must be a list of ints, got {shape!r}")
    if sum(v == -1 for v in shape) > 1 or any(v < -1 or v == 0 for v in shape):
        raise AttributeValueError(
            f"Reshape: shape may hold positive sizes and at most one -1, got {list(shape)}"
        )
    return {"shape": tuple(int(v) for v in shape)}


def _infer_reshape(name: str, ins: list[Shape], w: dict[str, Shape], a: dict) -> Shape:
    total = math.prod(ins[0])
    target = list(a["shape"])
    known = math.prod(v for v in target if v != -1)
    if -1 in target:
        if total % known:
            raise ShapeError(f"Reshape '{name}': cannot reshape {ins[0]} into {tuple(target)}")
        target[target.index(-1)] = total // known
    if math.prod(target) != total:
        raise ShapeError(
            f"Reshape '{name}': {ins[0]} has {total} elements, {tuple(target)} has "
            f"{math.prod(target)}"
        )
    return tuple(target)


def _infer_flatten(name: str, ins: list[Shape], w: dict[str, Shape], a: dict) -> Shape:
    return (math.prod(ins[0]),)


def _norm_softmax(attrs: dict) -> dict:
    _check_known("Softmax", attrs, ("beta",))
    beta = float(attrs.get("beta", 1.0))
    if not math.isfinite(beta) or beta <= 0:
        raise AttributeValueError(f"Softmax: beta must be a positive number, got {beta!r}")
    return {"beta": beta}


def _norm_bn(attrs: dict) -> dict:
    _check_known("BatchNorm", attrs, ("epsilon",))
    eps = float(attrs.get("epsilon", 1e-3))
    if not math.isfinite(eps) or eps <= 0:
        raise AttributeValueError(f"BatchNorm: epsilon must be positive, got {eps!r}")
    return {"epsilon": eps}


def _infer_bn(name: str, ins: list[Shape], w: dict[str, Shape], a: dict) -> Shape:
    c = ins[0][-1]
    for role in ("gamma", "beta", "mean", "var"):
        if w[role] != (c,):
            raise ShapeError(
                f"BatchNorm '{name}': {role} must be ({c},) to match the channels, got {w[role]}"
            )
    return ins[0]


def _norm_pad(attrs: dict) -> dict:
    _check_known("Pad", attrs, ("pads",))
    pads = attrs.get("pads")
    if not (
        isinstance(pads, Sequence) and len(pads) == 4
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pads)
    ):
        raise AttributeValueError(
            f"Pad: pads must be four non-negative ints (top, bottom, left, right), got {pads!r}"
        )
    return {"pads": tuple(int(v) for v in pads)}


def _infer_pad(name: str, ins: list[Shape], w: dict[str, Shape], a: dict) -> Shape:
    x = ins[0]
    _rank(x, 3, "Pad", name)
    t, b, l, r = a["pads"]
    return (x[0] + t + b, x[1] + l + r, x[2])


FAKE_QUANT_BITS = (2, 8)


def _norm_fakequant(attrs: dict) -> dict:
    """``bits`` in 2..8; ``narrow`` drops the code ``-2^(bits-1)`` (a symmetric range); ``scale`` and
    ``zero_point`` one entry per tensor, or one per slice along ``axis`` (of the tensor without the batch)."""
    op = "FakeQuant"
    _check_known(op, attrs, ("bits", "narrow", "scale", "zero_point", "axis"))
    bits = attrs.get("bits", 8)
    lo, hi = FAKE_QUANT_BITS
    if isinstance(bits, bool) or not isinstance(bits, int) or not lo <= bits <= hi:
        raise AttributeValueError(f"{op}: bits must be an int from {lo} to {hi}, got {bits!r}")
    narrow = attrs.get("narrow", False)
    if not isinstance(narrow, bool):
        raise AttributeValueError(f"{op}: narrow must be True or False, got {narrow!r}")
    scale = attrs.get("scale")
    scale = (scale,) if isinstance(scale, (int, float)) and not isinstance(scale, bool) else scale
    if not isinstance(scale, Sequence) or not scale or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0 for v in scale
    ):
        raise AttributeValueError(f"{op}: scale must be one or more finite positive numbers, got {scale!r}")
    zp = attrs.get("zero_point", 0)
    zp = (zp,) * len(scale) if isinstance(zp, int) and not isinstance(zp, bool) else zp
    if not isinstance(zp, Sequence) or len(zp) != len(scale) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in zp
    ):
        raise AttributeValueError(
            f"{op}: zero_point must be one int per scale ({len(scale)}), got {attrs.get('zero_point')!r}"
        )
    qmin, qmax = -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    if any(not qmin <= v <= qmax for v in zp):
        raise AttributeValueError(f"{op}: zero points must lie in [{qmin}, {qmax}] for {bits} bits, got {list(zp)}")
    axis = attrs.get("axis")
    if axis is not None and (isinstance(axis, bool) or not isinstance(axis, int)):
        raise AttributeValueError(f"{op}: axis must be None (per tensor) or an int, got {axis!r}")
    if axis is None and len(scale) != 1:
        raise AttributeValueError(f"{op}: {len(scale)} scales need an axis (per-channel); give axis")
    return {"bits": bits, "narrow": narrow, "scale": tuple(float(v) for v in scale),
            "zero_point": tuple(int(v) for v in zp), "axis": axis}


def _infer_fakequant(name: str, ins: list[Shape], w: dict[str, Shape], a: dict) -> Shape:
    x, axis = ins[0], a["axis"]
    if axis is not None:
        if not -len(x) <= axis < len(x):
            raise ShapeError(f"FakeQuant '{name}': axis {axis} is out of range for shape {x} (batch left out)")
        if len(a["scale"]) not in (1, x[axis]):
            raise ShapeError(
                f"FakeQuant '{name}': {len(a['scale'])} scales along axis {axis}, which has {x[axis]} entries"
            )
    return x


def _macs_dense(ins: list[Shape], w: dict[str, Shape], out: Shape, a: dict) -> int:
    return w["weight"][0] * w["weight"][1]


OPS: dict[str, OpDef] = {
    d.name: d
    for d in [
        OpDef("Conv2D", 1, ("weight", "bias"), ("bias",), _norm_conv("Conv2D"), _infer_conv, _macs_conv),
        OpDef("DepthwiseConv2D", 1, ("weight", "bias"), ("bias",), _norm_conv("DepthwiseConv2D"),
              _infer_dw, _macs_dw),
        OpDef("Dense", 1, ("weight", "bias"), ("bias",), _norm_dense, _infer_dense, _macs_dense),
        OpDef("AvgPool2D", 1, (), (), _norm_pool("AvgPool2D"), _infer_pool("AvgPool2D")),
        OpDef("MaxPool2D", 1, (), (), _norm_pool("MaxPool2D"), _infer_pool("MaxPool2D")),
        OpDef("GlobalAvgPool", 1, (), (), _no_attrs("GlobalAvgPool"), _infer_gap),
        OpDef("Add", 2, (), (), _norm_add, _infer_add),
        OpDef("ReLU", 1, (), (), _no_attrs("ReLU"), _same),
        OpDef("ReLU6", 1, (), (), _no_attrs("ReLU6"), _same),
        OpDef("Reshape", 1, (), (), _norm_reshape, _infer_reshape),
        OpDef("Flatten", 1, (), (), _no_attrs("Flatten"), _infer_flatten),
        OpDef("Softmax", 1, (), (), _norm_softmax, _same),
        OpDef("BatchNorm", 1, ("gamma", "beta", "mean", "var"), (), _norm_bn, _infer_bn, int8=False),
        OpDef("Pad", 1, (), (), _norm_pad, _infer_pad),
        OpDef("Quantize", 1, (), (), _no_attrs("Quantize"), _same),
        OpDef("Dequantize", 1, (), (), _no_attrs("Dequantize"), _same),
        # float in, float out: y = s (clamp(round(x / s) + z, qmin, qmax) - z), for quantization-aware training
        OpDef("FakeQuant", 1, (), (), _norm_fakequant, _infer_fakequant, int8=False),
    ]
}


def op_def(op: str) -> OpDef:
    """The definition of ``op``, or an :class:`UnknownOpError` listing the known ops."""
    try:
        return OPS[op]
    except KeyError:
        raise UnknownOpError(
            f"unknown op {op!r}; the IR knows {', '.join(sorted(OPS))}"
        ) from None
