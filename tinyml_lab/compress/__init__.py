"""Compression: pruning (unstructured and by channels), fine-tuning, and knowledge distillation.

* :mod:`~tinyml_lab.compress.prune`: :class:`MagnitudePruner`, the smallest
  weights to zero, per layer or with one global threshold;
* :mod:`~tinyml_lab.compress.channels`: :class:`ChannelPruner`, whole output
  channels removed by L1 or L2 norm, so the graph has fewer channels and MACs;
* :mod:`~tinyml_lab.compress.sensitivity`: :func:`sensitivity_scan`, one
  layer pruned at a time;
* :mod:`~tinyml_lab.compress.finetune`: :func:`fine_tune` with the zeros kept;
* :mod:`~tinyml_lab.compress.sparse`: bytes of a sparse layer, dense vs
  bitmask vs CSR;
* :mod:`~tinyml_lab.compress.distill`: :func:`distillation_loss` and
  :class:`Distiller`;
* :mod:`~tinyml_lab.compress.loop`: the training loop they (and QAT) share.
"""

from .channels import ChannelGroup, ChannelPruner, channel_group
from .distill import Distiller, distillation_loss, logits
from .finetune import fine_tune, recalibrate_batchnorm
from .prune import MagnitudePruner, check_sparsity, prunable_layers, weight_sparsity
from .sensitivity import format_sensitivity, sensitivity_scan
from .sparse import StorageCost, encode_bitmask, encode_csr, graph_storage, storage_cost, total_storage

__all__ = [
    "MagnitudePruner", "ChannelPruner", "ChannelGroup", "channel_group", "check_sparsity", "prunable_layers",
    "weight_sparsity", "sensitivity_scan", "format_sensitivity", "fine_tune", "recalibrate_batchnorm", "StorageCost", "storage_cost",
    "graph_storage", "total_storage", "encode_bitmask", "encode_csr", "Distiller", "distillation_loss", "logits",
]
