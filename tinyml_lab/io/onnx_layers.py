"""The ONNX importer's converters of float layers: one method per op, each appending IR nodes.

Each ``op_<OpType>(node, attrs)`` reads its inputs as :class:`~.onnx_common.Value` s
(an image, or a vector with its order), writes IR nodes, and defines its
outputs; what it cannot express raises :class:`~.onnx_common.NodeProblem` with
the reason. Layouts and the rules are described in :mod:`tinyml_lab.io.onnx`.
"""

from __future__ import annotations

import math

import numpy as np

from .onnx_common import NCHW_AXES, NodeProblem, QConst, Value, same_order


class LayerConverters:
    """Mixin of :class:`~.onnx_import.Importer`: the float ops."""

    # ------------------------------------------------------------------ constants
    def op_Constant(self, node, a: dict) -> None:
        from onnx import numpy_helper

        if "value" in a:
            arr = numpy_helper.to_array(a["value"])
        elif "value_float" in a:
            arr = np.array(a["value_float"], np.float32)
        elif "value_floats" in a:
            arr = np.array(a["value_floats"], np.float32)
        elif "value_int" in a:
            arr = np.array(a["value_int"], np.int64)
        elif "value_ints" in a:
            arr = np.array(a["value_ints"], np.int64)
        else:
            raise NodeProblem(f"a Constant with {', '.join(a)} is not supported")
        self.consts[node.output[0]] = arr

    def op_Identity(self, node, a: dict) -> None:
        if node.input[0] in self.consts:
            self.consts[node.output[0]] = self.consts[node.input[0]]
            return
        self.define(node.output[0], self.value(node.input[0]))

    def op_Dropout(self, node, a: dict) -> None:
        if len(node.output) > 1 and node.output[1]:
            raise NodeProblem("its mask output is used; only inference (no mask) is supported")
        if len(node.input) > 2 and node.input[2] and bool(np.asarray(self.const(node.input[2], "training_mode"))):
            raise NodeProblem("training_mode is on; only inference is supported")
        self.define(node.output[0], self.value(node.input[0]))

    def op_Conv(self, node, a: dict) -> None:
        v = self.image(node.input[0])
        w = np.asarray(self.const(node.input[1], "weight"), np.float64)
        if w.ndim != 4:
            raise NodeProblem(f"a {w.ndim - 2}-D convolution; only 2-D is supported")
        m, cg, kh, kw = w.shape
        c_in = v.onnx_shape[0]
        group = int(a.get("group", 1))
        if c_in != cg * group:
            raise NodeProblem(f"weight {w.shape} with group {group} does not fit {c_in} input channels")
        strides = tuple(self.int_list(a, "strides", [1, 1]))
        dil = tuple(self.int_list(a, "dilations", [1, 1]))
        padding = self.padding(a, (kh, kw), strides, dil, v)
        b = None
        if len(node.input) > 2 and node.input[2]:
            b = np.asarray(self.const(node.input[2], "bias"), np.float64).ravel()
        name = self.node_name(node)
        wq = self.qconsts.get(node.input[1])
        depthwise = group > 1 and group == c_in and m == c_in
        if wq is not None and wq.axis not in (None, 0):
            raise NodeProblem("per-axis weight quantization along an input axis; the int8 spec scales per "
                               "output channel")
        if depthwise:
            w_ir = w[:, 0].transpose(1, 2, 0)[None]  # (C, 1, KH, KW) -> (1, KH, KW, C)
            op, axis = "DepthwiseConv2D", 3
        else:
            if group > 1:
                full = np.zeros((m, c_in, kh, kw))
                per_out, per_in = m // group, cg
                for j in range(group):
                    full[j * per_out:(j + 1) * per_out, j * per_in:(j + 1) * per_in] = w[j * per_out:(j + 1) * per_out]
                w = full
                self.notes.append(f"{name}: group {group} convolution as a block-diagonal Conv2D")
            w_ir = w.transpose(0, 2, 3, 1)  # (M, C, KH, KW) -> (M, KH, KW, C)
            op, axis = "Conv2D", 0
        ins = [v.ir, self.const_tensor(f"{name}/weight", w_ir)]
        if wq is not None:
            self.note_weight(ins[1], wq, axis)
        if b is not None:
            ins.append(self.const_tensor(f"{name}/bias", b))
            self.note_bias(ins[2], node.input[2])
        out = self.add_node(op, ins, node.output[0], {"strides": strides, "dilation": dil, "padding": padding},
                            name=name)
        c_out = m
        oh, ow = self.g.tensors[out].shape[:2]
        self.define(node.output[0], Value(out, "image", (c_out, oh, ow), NCHW_AXES))

    def padding(self, a: dict, kernel: tuple[int, int], strides, dil, v: Value):
        """IR padding of a window op: ``same``, ``valid`` or ``(top, bottom, left, right)``."""
        auto = a.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else str(auto)
        if auto == "VALID":
            return "valid"
        if auto == "SAME_UPPER":
            return "same"
        if auto == "SAME_LOWER":
            pads = []
            for i, n in enumerate(v.onnx_shape[1:]):
                out = -(-n // strides[i])
                total = max((out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - n, 0)
                pads += [total - total // 2, total // 2]  # the odd pixel at the start
            return tuple(pads)
        p = self.int_list(a, "pads", [0, 0, 0, 0])
        if len(p) != 4 or min(p) < 0:
            raise NodeProblem(f"pads {p}: four non-negative pads of a 2-D window are needed")
        return (p[0], p[2], p[1], p[3])

    def dense(self, node, v: Value, w_ir: np.ndarray, b: np.ndarray | None, bias_input: str | None,
              wq: QConst | None, wq_axis_ok: bool) -> None:
        """An IR Dense ``y = W x + b`` reading vector ``v``; columns permuted for ``v.order``."""
        if v.order is not None:
            w_full = np.zeros_like(w_ir)
            w_full[:, v.order] = w_ir
            w_ir = w_full
        if wq is not None and not wq_axis_ok:
            raise NodeProblem("per-axis weight quantization along the input axis; the int8 spec scales per "
                               "output channel")
        name = self.node_name(node)
        ins = [v.ir, self.const_tensor(f"{name}/weight", w_ir)]
        if wq is not None:
            self.note_weight(ins[1], wq, 0)
        if b is not None:
            ins.append(self.const_tensor(f"{name}/bias", b))
            if bias_input is not None:
                self.note_bias(ins[2], bias_input)
        out = self.add_node("Dense", ins, node.output[0], name=name)
        self.define(node.output[0], Value(out, "vector", (w_ir.shape[0],)))

    def op_Gemm(self, node, a: dict) -> None:
        if int(a.get("transA", 0)):
            raise NodeProblem("transA=1 is not supported (the batch must stay first)")
        v = self.vector(node.input[0])
        bmat = np.asarray(self.const(node.input[1], "B"), np.float64)
        trans_b = int(a.get("transB", 0))
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        w_ir = (bmat if trans_b else bmat.T) * alpha
        wq = self.qconsts.get(node.input[1])
        if wq is not None and alpha != 1.0:
            raise NodeProblem("alpha != 1 on a quantized weight")
        b, bias_input = None, None
        if len(node.input) > 2 and node.input[2]:
            c = np.asarray(self.const(node.input[2], "C"), np.float64) * beta
            if c.size not in (1, w_ir.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
                raise NodeProblem(f"C of shape {c.shape} is not a bias of {w_ir.shape[0]} outputs")
            b = np.broadcast_to(c.ravel(), (w_ir.shape[0],)).copy()
            bias_input = node.input[2] if beta == 1.0 and c.size == w_ir.shape[0] else None
        if w_ir.shape[1] != v.onnx_shape[0]:
            raise NodeProblem(f"weight {bmat.shape} does not fit {v.onnx_shape[0]} input features")
        axis_ok = wq is None or wq.axis is None or wq.axis == (0 if trans_b else 1)
        self.dense(node, v, w_ir, b, bias_input, wq, axis_ok)

    def op_MatMul(self, node, a: dict) -> None:
        v = self.vector(node.input[0])
        if node.input[1] not in self.consts:
            raise NodeProblem("a product of two activations; only a constant right-hand side is supported")
        bmat = np.asarray(self.consts[node.input[1]], np.float64)
        if bmat.ndim != 2 or bmat.shape[0] != v.onnx_shape[0]:
            raise NodeProblem(f"right-hand side {bmat.shape} does not fit {v.onnx_shape[0]} input features")
        wq = self.qconsts.get(node.input[1])
        self.dense(node, v, bmat.T, None, None, wq, wq is None or wq.axis in (None, 1))

    def op_Add(self, node, a: dict) -> None:
        x, y = node.input[0], node.input[1]
        if x in self.consts and y in self.consts:
            self.consts[node.output[0]] = self.consts[x] + self.consts[y]
            return
        if x in self.consts or y in self.consts:
            act, c = (y, self.consts[x]) if x in self.consts else (x, self.consts[y])
            self.add_bias(node, act, np.asarray(c, np.float64))
            return
        va, vb = self.value(x), self.value(y)
        if (va.kind, va.onnx_shape, va.axes) != (vb.kind, vb.onnx_shape, vb.axes) or not same_order(va, vb):
            raise NodeProblem(f"inputs of shapes {va.onnx_shape} and {vb.onnx_shape} (or layouts) differ; only "
                               f"an element-wise Add of equal shapes is supported")
        out = self.add_node("Add", [va.ir, vb.ir], node.output[0], name=self.node_name(node))
        self.define(node.output[0], self.same_layout(va, out, codes=False))

    def add_bias(self, node, act: str, c: np.ndarray) -> None:
        """``layer(x) + c``, ``c`` one value per output channel (or one for all): folded into the bias
        of the Conv/Gemm/MatMul that computes ``x``, when nothing else reads ``x``."""
        v = self.value(act)
        prod = self.g.producer(v.ir)
        channels = v.onnx_shape[0]
        if c.size == 1:
            flat = np.full(channels, float(c.ravel()[0]))
        elif v.kind == "image" and c.size == channels and c.ndim >= 3 and c.shape[-2:] == (1, 1):
            flat = c.ravel()
        elif v.kind == "vector" and len(v.onnx_shape) == 1 and c.ndim <= 2 and c.shape[-1] == channels:
            flat = c.ravel()
        else:
            flat = None
        readers = [n for n in self.onnx_graph.node if act in n.input]
        if (flat is None or prod is None or prod.op not in ("Conv2D", "DepthwiseConv2D", "Dense") or len(readers) != 1
                or act in {o.name for o in self.onnx_graph.output} or v.order is not None or v.codes
                or prod.attrs.get("activation") != "none"):
            raise NodeProblem("an Add of a constant is supported only as the bias of the Conv/Gemm/MatMul "
                               "just before it (one value per output channel)")
        w = self.g.weights(prod)
        if "bias" in w:
            w["bias"].data = (w["bias"].data.astype(np.float64) + flat).astype(np.float32)
        else:
            prod.inputs.append(self.const_tensor(f"{prod.name}/bias", flat))
        self.define(node.output[0], v)

    def op_Relu(self, node, a: dict) -> None:
        self.activation(node, "ReLU")

    def activation(self, node, op: str) -> None:
        v = self.value(node.input[0])
        out = self.add_node(op, [v.ir], node.output[0], name=self.node_name(node))
        self.define(node.output[0], self.same_layout(v, out, codes=False))

    def op_Clip(self, node, a: dict) -> None:
        v = self.value(node.input[0])
        lo = a.get("min", None)
        hi = a.get("max", None)
        if len(node.input) > 1 and node.input[1]:
            lo = float(np.asarray(self.const(node.input[1], "min")))
        if len(node.input) > 2 and node.input[2]:
            hi = float(np.asarray(self.const(node.input[2], "max")))
        lo = -math.inf if lo is None else float(lo)
        hi = math.inf if hi is None else float(hi)
        if v.codes:  # a clip of codes: its bounds in real numbers
            q = self.params.get(v.ir)
            if q is None:
                raise NodeProblem("a Clip of codes whose quantization is unknown")
            s, z = float(q.scale[0]), int(q.zero_point[0])
            off = 128 if self.is_u8(node.input[0]) else 0
            lo = -math.inf if lo - off <= -128 else s * (lo - off - z)
            hi = math.inf if hi - off >= 127 else s * (hi - off - z)
            if math.isfinite(hi) and abs(hi - 6.0) <= s / 2:
                hi = 6.0  # the code of 6.0, round(6 / s) above the zero point
        if lo == 0.0 and hi == math.inf:
            op = "ReLU"
        elif lo == 0.0 and hi == 6.0:
            op = "ReLU6"
        else:
            raise NodeProblem(f"Clip to [{lo:g}, {hi:g}]; only [0, inf) (ReLU) and [0, 6] (ReLU6) are supported")
        out = self.add_node(op, [v.ir], node.output[0], name=self.node_name(node))
        self.define(node.output[0], self.same_layout(v, out))

    def op_BatchNormalization(self, node, a: dict) -> None:
        if int(a.get("training_mode", 0)) or (len(node.output) > 1 and any(node.output[1:])):
            raise NodeProblem("training mode (or its running-statistics outputs); only inference is supported")
        v = self.value(node.input[0])
        if v.kind == "image":
            v = self.image(node.input[0])
        gamma, beta, mean, var = (np.asarray(self.const(t, r), np.float64).ravel()
                                  for t, r in zip(node.input[1:5], ("scale", "B", "mean", "var")))
        if v.order is not None:  # features permuted in the IR vector: permute the parameters alike
            inv = np.empty_like(v.order)
            inv[v.order] = np.arange(v.order.size)
            gamma, beta, mean, var = (p[inv] for p in (gamma, beta, mean, var))
        name = self.node_name(node)
        ins = [v.ir] + [self.const_tensor(f"{name}/{r}", p)
                        for r, p in zip(("gamma", "beta", "mean", "var"), (gamma, beta, mean, var))]
        out = self.add_node("BatchNorm", ins, node.output[0], {"epsilon": float(a.get("epsilon", 1e-5))}, name=name)
        self.define(node.output[0], self.same_layout(v, out, codes=False))

    def pool(self, node, a: dict, op: str) -> None:
        v = self.image(node.input[0])
        if len(node.output) > 1 and node.output[1]:
            raise NodeProblem("its Indices output is used; not supported")
        kernel = tuple(self.int_list(a, "kernel_shape", []))
        if len(kernel) != 2:
            raise NodeProblem(f"kernel_shape {list(kernel)}: only 2-D pooling is supported")
        strides = tuple(self.int_list(a, "strides", [1, 1]))
        if any(d != 1 for d in self.int_list(a, "dilations", [1, 1])):
            raise NodeProblem("dilated pooling is not supported")
        if int(a.get("storage_order", 0)):
            raise NodeProblem("storage_order=1 is not supported")
        padding = self.padding(a, kernel, strides, (1, 1), v)
        attrs = {"pool_size": kernel, "strides": strides, "padding": padding}
        if op == "AvgPool2D":
            attrs["count_include_pad"] = bool(int(a.get("count_include_pad", 0)))
        name = self.node_name(node)
        out = self.add_node(op, [v.ir], node.output[0], attrs, name=name)
        if int(a.get("ceil_mode", 0)):
            self.check_ceil(v, kernel, strides, padding, out)
        oh, ow = self.g.tensors[out].shape[:2]
        self.define(node.output[0], Value(out, "image", (v.onnx_shape[0], oh, ow), NCHW_AXES, codes=v.codes))

    def check_ceil(self, v: Value, kernel, strides, padding, out: str) -> None:
        """``ceil_mode=1`` is accepted when it gives the same output size as floor."""
        if isinstance(padding, str):
            raise NodeProblem("ceil_mode=1 with auto_pad is not supported")
        t, b, l, r = padding
        for n, k, s, p, got in zip(v.onnx_shape[1:], kernel, strides, (t + b, l + r), self.g.tensors[out].shape[:2]):
            if math.ceil((n + p - k) / s) + 1 != got:
                raise NodeProblem("ceil_mode=1 changes the output size here; only floor rounding is supported")

    def op_MaxPool(self, node, a: dict) -> None:
        self.pool(node, a, "MaxPool2D")

    def op_AveragePool(self, node, a: dict) -> None:
        self.pool(node, a, "AvgPool2D")

    def op_GlobalAveragePool(self, node, a: dict) -> None:
        v = self.image(node.input[0])
        out = self.add_node("GlobalAvgPool", [v.ir], node.output[0], name=self.node_name(node))
        self.define(node.output[0], Value(out, "vector", (v.onnx_shape[0], 1, 1)))

    def flatten_value(self, name: str) -> Value:
        """The value as a rank-2 ONNX matrix ``(N, F)`` (an IR Flatten for an image)."""
        v = self.value(name)
        if v.kind == "vector":
            return Value(v.ir, "vector", (int(np.prod(v.onnx_shape)),), order=v.order, codes=v.codes)
        h, w, c = self.g.tensors[v.ir].shape
        out = self.add_node("Flatten", [v.ir], f"{name}/flat")
        ir_index = np.arange(h * w * c).reshape(h, w, c)
        order = ir_index.transpose([ax - 1 for ax in v.axes[1:]]).ravel()
        if np.array_equal(order, np.arange(order.size)):
            order = None
        return Value(out, "vector", (h * w * c,), order=order, codes=v.codes)

    def op_Flatten(self, node, a: dict) -> None:
        if int(a.get("axis", 1)) != 1:
            raise NodeProblem(f"axis {a.get('axis')}: only axis 1 (keep the batch) is supported")
        self.define(node.output[0], self.flatten_value(node.input[0]))

    def op_Reshape(self, node, a: dict) -> None:
        v = self.value(node.input[0])
        target = [int(s) for s in np.asarray(self.const(node.input[1], "shape")).ravel()]
        current = (None,) + v.onnx_shape
        if not int(a.get("allowzero", 0)):
            target = [current[i] if s == 0 and i < len(current) else s for i, s in enumerate(target)]
        if target and (target[0] is None or target[0] == -1 or target[0] in self.batch_dims):
            rest = target[1:]
        else:
            raise NodeProblem(f"target shape {target} does not keep the batch dimension first")
        size = int(np.prod(v.onnx_shape))
        if rest.count(-1) == 1:
            known = int(np.prod([s for s in rest if s != -1]))
            rest[rest.index(-1)] = size // known if known else 0
        if -1 in rest or int(np.prod(rest)) != size or (target[0] == -1 and -1 in target[1:]):
            raise NodeProblem(f"cannot reshape {v.onnx_shape} into {target[1:]}")
        rest = tuple(int(s) for s in rest)
        if len(rest) == 1:
            self.define(node.output[0], self.flatten_value(node.input[0]))
        elif rest == v.onnx_shape:
            self.define(node.output[0], v)
        elif v.kind == "vector" and len(rest) == 3 and rest[1:] == (1, 1) and v.order is None:
            self.define(node.output[0], Value(v.ir, "vector", rest, codes=v.codes))
        else:
            raise NodeProblem(f"reshape of {v.onnx_shape} into {rest}: only flattening (N, -1) and (N, C, 1, 1) "
                               f"are supported")

    def op_Transpose(self, node, a: dict) -> None:
        v = self.value(node.input[0])
        rank = len(v.onnx_shape) + 1
        perm = tuple(int(p) for p in a.get("perm", list(reversed(range(rank)))))
        if perm[0] != 0:
            raise NodeProblem(f"perm {list(perm)} moves the batch axis")
        if perm == tuple(range(rank)):
            self.define(node.output[0], v)
            return
        if v.kind == "vector":
            v = self.image(node.input[0])
        axes = tuple(v.axes[p] for p in perm)
        shape = tuple(v.onnx_shape[p - 1] for p in perm[1:])
        self.define(node.output[0], Value(v.ir, "image", shape, axes, codes=v.codes))

    def op_Softmax(self, node, a: dict) -> None:
        v = self.value(node.input[0])
        rank = len(v.onnx_shape) + 1
        axis = int(a.get("axis", -1 if self.opset >= 13 else 1)) % rank
        spatial = int(np.prod(v.onnx_shape[1:])) if len(v.onnx_shape) > 1 else 1
        over_features = axis == 1 and (v.kind == "vector" or spatial == 1)
        over_channels = axis == 1 and v.kind == "image" and v.axes == NCHW_AXES and self.opset >= 13
        if not (over_features or over_channels):
            raise NodeProblem(f"softmax over axis {axis} of a value of shape {v.onnx_shape} (opset {self.opset}); "
                               f"only over the features (N, K) or the channels of an NCHW image")
        ir_in = v.ir
        out = self.add_node("Softmax", [ir_in], node.output[0], name=self.node_name(node))
        self.define(node.output[0], self.same_layout(v, out, codes=False))

    def op_Pad(self, node, a: dict) -> None:
        mode = a.get("mode", b"constant")
        mode = mode.decode() if isinstance(mode, bytes) else str(mode)
        if mode != "constant":
            raise NodeProblem(f"mode {mode!r}; only constant padding is supported")
        v = self.image(node.input[0])
        pads = [int(p) for p in (self.const(node.input[1], "pads") if len(node.input) > 1 and node.input[1]
                                 else a.get("pads", []))]
        if len(node.input) > 3 and node.input[3]:
            axes = [int(x) % 4 for x in np.asarray(self.const(node.input[3], "axes")).ravel()]
            full = [0] * 8
            for i, ax in enumerate(axes):
                full[ax], full[ax + 4] = pads[i], pads[i + len(axes)]
            pads = full
        if len(pads) != 8 or min(pads) < 0 or pads[0] or pads[1] or pads[4] or pads[5]:
            raise NodeProblem(f"pads {pads}: only non-negative padding of H and W is supported")
        value = 0.0
        if len(node.input) > 2 and node.input[2]:
            value = float(np.asarray(self.const(node.input[2], "constant_value")))
        if v.codes:
            q = self.params.get(v.ir)
            zp = None if q is None else int(q.zero_point[0]) + (128 if self.is_u8(node.input[0]) else 0)
            if zp is None or value != zp:
                raise NodeProblem("padding codes with a value other than the zero point")
        elif value != 0.0:
            raise NodeProblem(f"padding with {value}; only zeros are supported")
        out = self.add_node("Pad", [v.ir], node.output[0], {"pads": (pads[2], pads[6], pads[3], pads[7])},
                            name=self.node_name(node))
        h, w, c = self.g.tensors[out].shape
        self.define(node.output[0], Value(out, "image", (c, h, w), NCHW_AXES, codes=v.codes))
