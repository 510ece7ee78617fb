"""On-device training: reverse-mode autodiff over the graph IR, optimizers, and int8 training.

The pieces, each in its own module:

* :mod:`~tinyml_lab.train.autodiff`: :class:`BackwardGraph`, the forward
  pass that keeps what the backward pass needs, and the backward pass node by
  node in reverse; ``print(bg)`` shows the plan, ``bg.trace(name)`` follows one
  gradient from the loss to a weight;
* :mod:`~tinyml_lab.train.rules`: each op's local backward rule;
* :mod:`~tinyml_lab.train.params`: which constants are trainable (a set of
  tensor names, so a sparse update is a smaller set);
* :mod:`~tinyml_lab.train.optim`: :class:`SGD` (momentum) and :class:`Adam`,
  with Quantization-Aware Scaling as ``qas=True``;
* :mod:`~tinyml_lab.train.fit`: :func:`fit` and :func:`evaluate`;
* :mod:`~tinyml_lab.train.quantized`: :func:`fit_quantized`, training the
  deployed int8 graph (int8 forward, float backward, integer updates);
* :mod:`~tinyml_lab.train.diagnostics`: per-layer ``||W|| / ||G||`` for fp32,
  int8 and int8 with QAS, as rows and as a figure;
* :mod:`~tinyml_lab.train.transfer`: the on-device transfer experiment and its QAS table;
* :mod:`~tinyml_lab.train.sparse`: sparse update schemes (biases of the last
  k layers, weights of chosen layers on a fraction of their channels);
* :mod:`~tinyml_lab.train.compiler`: the training step compiled ahead of time
  (pruned, sliced, reordered), printable and runnable, with :func:`plain_step` as its spec;
* :mod:`~tinyml_lab.train.memory`: the compiled step's buffers in the int8
  convention, planned into one arena, and the full / sparse / reordered ladder;
* :mod:`~tinyml_lab.train.search`: contribution analysis, the evolutionary
  search under a memory budget, and the comparison with "last k layers";
* :mod:`~tinyml_lab.train.dpsgd`: DP-SGD (per-example gradients, clipping,
  Gaussian noise, Poisson sampling) with :func:`dp_fit`, whose history
  reports the epsilon spent.

>>> from tinyml_lab import zoo
>>> from tinyml_lab.data import load_digits
>>> from tinyml_lab.train import SGD, fit
>>> d = load_digits(16)
>>> g = zoo.get("digits-cnn", weights="random")
>>> history = fit(g, d.x_train, d.y_train, epochs=2, optimizer=SGD(lr=0.05, momentum=0.9), quiet=True)
>>> len(history)
2
"""

from .autodiff import BackwardGraph, BackwardStep, Gradients, Tape
from .compiler import CompiledStep, compile_step, fit_compiled, plain_step
from .dpsgd import clip_gradients, dp_fit, dp_gradient, per_example_gradients
from .diagnostics import format_ratios, gradient_ratios, plot_gradient_ratios
from .fit import DivergenceError, History, evaluate, fit
from .optim import SGD, Adam, Optimizer, cosine_decay, make_optimizer
from .params import Param, last_layers, parameters, resolve_trainable
from .memory import memory_ladder, training_memory
from .quantized import apply_update, fit_quantized, qas_scales, round_steps
from .search import contribution_analysis, search_scheme
from .sparse import BudgetError, SchemeError, Selection, SparseScheme, parse_budget

__all__ = [
    "BackwardGraph", "BackwardStep", "Gradients", "Tape",
    "fit", "evaluate", "History", "DivergenceError",
    "SGD", "Adam", "Optimizer", "cosine_decay", "make_optimizer",
    "Param", "parameters", "resolve_trainable", "last_layers",
    "fit_quantized", "apply_update", "qas_scales", "round_steps",
    "gradient_ratios", "format_ratios", "plot_gradient_ratios",
    "SparseScheme", "Selection", "SchemeError", "BudgetError", "parse_budget",
    "CompiledStep", "compile_step", "fit_compiled", "plain_step",
    "training_memory", "memory_ladder", "contribution_analysis", "search_scheme",
    "dp_fit", "dp_gradient", "per_example_gradients", "clip_gradients",
]
