"""Graph rewrites that keep the function and change the form.

* :func:`fold_batchnorm`: a BatchNorm after a Conv2D, DepthwiseConv2D or
  Dense disappears into that layer's weights and bias:
  ``gamma (W x + b - mean) / sqrt(var + eps) + beta = (a W) x + a (b - mean) + beta``
  with ``a = gamma / sqrt(var + eps)`` per output channel.
* :func:`fuse_activations`: a ReLU or ReLU6 after a layer that can clamp its
  own output (conv, dense, pooling, add) becomes that layer's ``activation``.

Both return a new graph and leave the argument untouched.
"""

from __future__ import annotations

import numpy as np

from .graph import Graph, Node, Tensor

_LINEAR = ("Conv2D", "DepthwiseConv2D", "Dense")
_FUSABLE = _LINEAR + ("AvgPool2D", "MaxPool2D", "Add")


def _rename_input(g: Graph, old: str, new: str) -> None:
    for n in g.nodes:
        n.inputs = [new if t == old else t for t in n.inputs]
    g.outputs = [new if t == old else t for t in g.outputs]


def _sole_consumer(g: Graph, tensor: str, node: Node) -> bool:
    users = g.consumers(tensor)
    return len(users) == 1 and users[0] is node and tensor not in g.outputs


def fold_batchnorm(graph: Graph) -> Graph:
    """Fold every BatchNorm whose input comes only from a conv or dense layer with no activation."""
    g = graph.copy()
    for bn in [n for n in g.nodes if n.op == "BatchNorm"]:
        prev = g.producer(bn.inputs[0])
        if prev is None or prev.op not in _LINEAR or prev.attrs["activation"] != "none":
            continue
        if not _sole_consumer(g, bn.inputs[0], bn):
            continue
        p = {k: t.data.astype(np.float64) for k, t in g.weights(bn).items()}
        a = p["gamma"] / np.sqrt(p["var"] + bn.attrs["epsilon"])
        w_t = g.weights(prev)["weight"]
        w = w_t.data.astype(np.float64)
        if prev.op == "DepthwiseConv2D":
            w = w * a  # channels last
        else:
            w = w * a.reshape((-1,) + (1,) * (w.ndim - 1))
        w_t.data = w.astype(np.float32)
        b_name = f"{prev.name}/bias"
        b_old = g.weights(prev).get("bias")
        b = (b_old.data.astype(np.float64) if b_old is not None else 0.0)
        b_new = (a * (b - p["mean"]) + p["beta"]).astype(np.float32)
        if b_old is not None:
            b_old.data = b_new
        else:
            while b_name in g.tensors:
                b_name += "_"
            g.tensors[b_name] = Tensor(b_name, b_new.shape, "float32", data=b_new)
            prev.inputs.append(b_name)
        # the conv now writes what the BatchNorm wrote
        for name in [t.name for t in g.weights(bn).values()]:
            del g.tensors[name]
        del g.tensors[prev.outputs[0]]
        prev.outputs = [bn.outputs[0]]
        g.nodes.remove(bn)
    return g.validate()


def fuse_activations(graph: Graph) -> Graph:
    """Turn ``layer -> ReLU/ReLU6`` into ``layer(activation=relu/relu6)`` where the layer's output
    has no other reader. A ReLU after a ReLU6-fused layer (or the reverse) folds into ReLU6."""
    g = graph.copy()
    for act in [n for n in g.nodes if n.op in ("ReLU", "ReLU6")]:
        prev = g.producer(act.inputs[0])
        if prev is None or prev.op not in _FUSABLE or not _sole_consumer(g, act.inputs[0], act):
            continue
        old = prev.attrs["activation"]
        new = "relu6" if "relu6" in (old, act.op.lower()) else "relu"
        prev.attrs["activation"] = new
        del g.tensors[prev.outputs[0]]
        prev.outputs = [act.outputs[0]]
        g.nodes.remove(act)
    return g.validate()
