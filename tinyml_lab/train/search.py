"""Choosing a sparse update scheme: contribution analysis and evolutionary search under a memory budget.

Lin et al. ("On-Device Training Under 256KB Memory", NeurIPS 2022, Section
2.2) measure on held-out data how much each piece of a scheme adds to the
accuracy after adaptation, assume the pieces add up, and search the scheme
with the largest sum that fits the memory budget:

``max_{k, i, r}  dacc_b[k] + sum_{i} dacc_W[i, r_i]   s.t.  memory(k, i, r) <= budget``

* ``dacc_b[k]``: accuracy of updating the biases of the last ``k`` layers
  (and the classifier), minus that of the classifier alone;
* ``dacc_W[i, r]``: accuracy of also updating layer ``i``'s weights on a
  fraction ``r`` of its output channels, minus that of the bias-only update
  (all biases) it is added to.

:func:`contribution_analysis` measures both on the digits transfer task
(held-out fifth of its training set); :func:`prior_contributions` is a stand-in
for models without a task (later layers, expanding 1x1 convolutions and more
channels count more, the trends the paper reports); :func:`search_scheme` is
the seeded evolutionary search, with the memory of a candidate taken from its
compiled, reordered step (:func:`~tinyml_lab.train.memory.scheme_bytes`).
:func:`compare_last_k` pits the searched schemes against "update the last k
layers" at the same memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from ..graph import Graph
from ..report import format_bytes, format_table
from .sparse import RATIOS, BudgetError, SparseScheme, format_ratio, layers


@dataclass
class Contributions:
    """Accuracy gains of scheme pieces: ``bias[k]`` and ``weights[(layer, ratio)]``; ``base`` the
    accuracy of the classifier-only update; ``measured`` False for a prior."""

    bias: dict[int, float]
    weights: dict[tuple[str, float], float]
    base: float = 0.0
    bias_reference: int = 0
    measured: bool = True
    runs: list[dict] = field(default_factory=list)

    def gain(self, scheme: SparseScheme) -> float:
        """``dacc_b[k] + sum_i dacc_W[i, r_i]`` (the largest measured ``k' <= k`` stands in for ``k``)."""
        ks = [k for k in self.bias if k <= scheme.bias_depth]
        total = self.bias[max(ks)] if ks else 0.0
        return total + sum(self.weights.get((n, r), 0.0) for n, r in scheme.weights)

    def rows(self) -> list[list]:
        out = [[f"bias of last {k}", "-", f"{100 * v:+.1f}"] for k, v in sorted(self.bias.items())]
        out += [[f"weight {n}", format_ratio(r), f"{100 * v:+.1f}"] for (n, r), v in sorted(self.weights.items())]
        return out

    def to_json(self) -> dict:
        return {"measured": self.measured, "base": self.base, "bias_reference": self.bias_reference,
                "bias": {str(k): v for k, v in self.bias.items()},
                "weights": [{"layer": n, "ratio": r, "gain": v} for (n, r), v in self.weights.items()]}


# --------------------------------------------------------------------------- contributions

def prior_contributions(graph: Graph) -> Contributions:
    """A stand-in when no task measures contributions: depth position ``p = (i + 1) / n`` of layer ``i``
    of ``n``; ``dacc_W[i, r] = p^2 f sqrt(r)`` with ``f`` 1 for an expanding 1x1 convolution, 0.6 for
    another convolution, 0.2 for a depthwise one; ``dacc_b[k] = 0.3 (1 - exp(-3 k / n))``. It
    encodes the paper's observations (later layers and the first 1x1 of an inverted bottleneck matter
    more, more channels help, bias gains saturate), not a measurement."""
    ls = layers(graph)
    n = len(ls)
    nodes = {nd.name: nd for nd in graph.nodes}
    weights: dict[tuple[str, float], float] = {}
    for i, name in enumerate(ls[:-1]):
        nd = nodes[name]
        if nd.op == "DepthwiseConv2D":
            f = 0.2
        else:
            w = graph.weights(nd)["weight"].shape
            f = 1.0 if (nd.op == "Conv2D" and w[1:3] == (1, 1) and w[0] > w[-1]) else 0.6
        p = (i + 1) / n
        for r in RATIOS[1:]:
            weights[(name, r)] = p * p * f * math.sqrt(r)
    bias = {k: 0.3 * (1.0 - math.exp(-3.0 * k / n)) for k in range(n)}
    return Contributions(bias, weights, 0.0, n - 1, measured=False)


def contribution_analysis(task: str = "new-classes", epochs: int = 6, lr: float = 0.1, batch_size: int = 32,
                          ratios: Sequence[float] = RATIOS[1:], int8: bool = True, qas: bool = True,
                          seed: int = 0, quiet: bool = True) -> Contributions:
    """Measure ``dacc_b[k]`` and ``dacc_W[i, r]`` on the digits transfer task.

    The device model (:func:`~tinyml_lab.train.transfer.device_models`) is
    built from the first four fifths of the task's training set and every
    scheme is trained there (compiled step, SGD without momentum, QAS for
    int8, ``epochs`` epochs, ``seed``), then scored on the held-out fifth.
    Bias gains are against the classifier-only update; weight gains against
    the update of every bias.
    """
    from tqdm.auto import tqdm

    from .transfer import TransferTask, device_models, load_backbone, transfer_task

    t = transfer_task(task)
    xf, yf, xv, yv = t.split()
    f, q = device_models(load_backbone(), TransferTask(t.name, xf, yf, xv, yv, t.new_head, t.description), seed)
    g0 = q if int8 else f
    ls = layers(g0)
    ref = len(ls) - 1
    plans: list[SparseScheme] = [SparseScheme(k, ()) for k in range(len(ls))]
    plans += [SparseScheme(ref, ((n, r),)) for n in ls[:-1] for r in ratios]
    runs = []
    for s in tqdm(plans, desc="contribution analysis", disable=quiet, leave=False):
        acc = train_and_score(g0, s, xf, yf, xv, yv, epochs, lr, batch_size, qas, seed)
        runs.append({"scheme": s.text(), "accuracy": acc})
    acc = {r["scheme"]: r["accuracy"] for r in runs}
    base = acc[SparseScheme(0, ()).text()]
    bias = {k: acc[SparseScheme(k, ()).text()] - base for k in range(1, len(ls))}
    ref_acc = acc[SparseScheme(ref, ()).text()]
    weights = {(n, r): acc[SparseScheme(ref, ((n, r),)).text()] - ref_acc for n in ls[:-1] for r in ratios}
    return Contributions(bias, weights, base, ref, True, runs)


def train_and_score(graph: Graph, scheme: SparseScheme, x: np.ndarray, y: np.ndarray, x_val: np.ndarray,
                    y_val: np.ndarray, epochs: int, lr: float, batch_size: int = 32, qas: bool = True,
                    seed: int = 0, momentum: float = 0.0) -> float:
    """Accuracy on ``(x_val, y_val)`` of a copy of ``graph`` trained with ``scheme`` (compiled step,
    SGD); a run that diverges scores the accuracy of its last good weights."""
    from .compiler import fit_compiled
    from .fit import DivergenceError, evaluate
    from .optim import SGD

    g = graph.copy()
    opt = SGD(lr=lr, momentum=momentum, qas=qas and g.is_quantized)
    try:
        fit_compiled(g, x, y, scheme, epochs, batch_size, opt, seed, quiet=True)
    except DivergenceError:
        pass
    return float(evaluate(g, x_val, y_val)["accuracy"])


# --------------------------------------------------------------------------- search

@dataclass
class SearchResult:
    """The scheme found, its memory (lower bound of the reordered step), its summed gain, and the best
    gain after each generation."""

    scheme: SparseScheme
    bytes: int
    gain: float
    budget: int
    history: list[float]
    evaluated: int

    def to_json(self) -> dict:
        return {"scheme": self.scheme.to_json(), "bytes": self.bytes, "gain": self.gain, "budget": self.budget,
                "history": self.history, "evaluated": self.evaluated}


def search_scheme(graph: Graph, budget: int, contributions: Contributions | None = None,
                  memory: Callable[[SparseScheme], int] | None = None, population: int = 24, generations: int = 20,
                  seed: int = 0, convention: str = "int8") -> SearchResult:
    """Evolutionary search for the scheme with the largest summed contribution within ``budget`` bytes.

    A candidate is a bias depth ``k`` and a ratio (:data:`~tinyml_lab.train.sparse.RATIOS`) per layer
    below the classifier. The population starts from the classifier-only scheme and random ones;
    each generation keeps the better half and fills the rest with children (uniform crossover of two
    parents, then a mutation of ``k`` or of one layer's ratio); a candidate over budget is repaired by
    lowering random genes. Seeded: equal arguments give equal results.

    Raises:
        BudgetError: not even the classifier-only scheme fits; the message gives its memory.
    """
    from .memory import scheme_bytes

    if isinstance(budget, bool) or not isinstance(budget, int) or budget <= 0:
        raise BudgetError(f"budget must be a positive number of bytes, got {budget!r}")
    contributions = contributions or prior_contributions(graph)
    ls = layers(graph)[:-1]
    n = len(ls)
    cache: dict[tuple, int] = {}

    def mem(s: SparseScheme) -> int:
        key = s.key()
        if key not in cache:
            cache[key] = memory(s) if memory is not None else scheme_bytes(graph, s, convention=convention)
        return cache[key]

    def scheme(k: int, genes: np.ndarray) -> SparseScheme:
        return SparseScheme(int(k), tuple((ls[i], RATIOS[int(v)]) for i, v in enumerate(genes) if v > 0))

    smallest = SparseScheme(0, ())
    if mem(smallest) > budget:
        need = mem(smallest)
        raise BudgetError(
            f"no update scheme of '{graph.name}' fits {format_bytes(budget)} ({budget:,} bytes): the smallest, the "
            f"classifier alone, needs {format_bytes(need)} ({need:,} bytes); give a budget of at least "
            f"{math.ceil(need / 1024)}KB"
        )
    rng = np.random.default_rng(seed)

    def repair(k: int, genes: np.ndarray) -> tuple[int, np.ndarray]:
        genes = genes.copy()
        while mem(scheme(k, genes)) > budget:
            nz = np.flatnonzero(genes)
            if nz.size and (k == 0 or rng.random() < 0.7):
                genes[rng.choice(nz)] -= 1
            elif k > 0:
                k = max(0, k - int(rng.integers(1, 4)))
        return k, genes

    def fitness(k: int, genes: np.ndarray) -> tuple[float, int]:
        s = scheme(k, genes)
        return contributions.gain(s), -mem(s)

    pop: list[tuple[int, np.ndarray]] = [(0, np.zeros(n, np.int64))]
    p_on = min(1.0, 3.0 / max(n, 1))
    while len(pop) < population:
        genes = np.where(rng.random(n) < p_on, rng.integers(1, len(RATIOS), n), 0)
        pop.append(repair(int(rng.integers(0, n + 1)), genes))
    history = []
    for _ in range(generations):
        pop.sort(key=lambda c: fitness(*c), reverse=True)
        history.append(fitness(*pop[0])[0])
        parents = pop[: max(2, population // 2)]
        children = []
        while len(parents) + len(children) < population:
            a, b = rng.choice(len(parents), 2, replace=False)
            (ka, ga), (kb, gb) = parents[a], parents[b]
            genes = np.where(rng.random(n) < 0.5, ga, gb)
            k = ka if rng.random() < 0.5 else kb
            if rng.random() < 0.5:
                k = int(np.clip(k + rng.integers(-3, 4), 0, n))
            else:
                i = int(rng.integers(0, n))
                genes = genes.copy()
                genes[i] = int(np.clip(genes[i] + rng.choice([-1, 1, 2]), 0, len(RATIOS) - 1))
            children.append(repair(k, genes))
        pop = parents + children
    pop.sort(key=lambda c: fitness(*c), reverse=True)
    best = scheme(*pop[0])
    best = SparseScheme(best.bias_depth, best.weights, best.text())
    history.append(contributions.gain(best))
    return SearchResult(best, mem(best), contributions.gain(best), budget, history, len(cache))


# --------------------------------------------------------------------------- sparse vs last k

def compare_last_k(task: str = "new-classes", seeds: Sequence[int] = (0, 1, 2), epochs: int = 6, lr: float = 0.1,
                   ks: Sequence[int] | None = None, contributions: Contributions | None = None,
                   quiet: bool = True) -> list[dict]:
    """Test accuracy of "update the last k layers" and of the searched sparse scheme at the same memory.

    For each ``k`` the budget is the (reordered, int8-convention) memory of
    last-k; the sparse scheme is searched under it with ``contributions``
    (measured by :func:`contribution_analysis` when None). Both train the int8
    device model (SGD with QAS, no momentum) on the whole training set with
    each seed (new classifier and batch order) and are scored on the test set.
    """
    from tqdm.auto import tqdm

    from .memory import scheme_bytes
    from .transfer import device_models, load_backbone, transfer_task

    t = transfer_task(task)
    backbone = load_backbone()
    models = {s: device_models(backbone, t, s)[1] for s in seeds}
    q0 = models[seeds[0]]
    n = len(layers(q0))
    ks = list(ks) if ks is not None else list(range(1, n + 1))
    contributions = contributions or contribution_analysis(task, epochs, lr, quiet=quiet)
    rows = []
    for k in tqdm(ks, desc="sparse vs last-k", disable=quiet, leave=False):
        lk = SparseScheme.last_k(q0, k)
        budget = scheme_bytes(q0, lk)
        found = search_scheme(q0, budget, contributions, seed=0).scheme
        for label, s in ((lk.label, lk), ("sparse " + found.text()[len("sparse:"):], found)):
            accs = [train_and_score(models[sd], s, t.x_train, t.y_train, t.x_test, t.y_test, epochs, lr, seed=sd)
                    for sd in seeds]
            rows.append({"k": k, "scheme": label, "bytes": scheme_bytes(q0, s), "budget": budget,
                         "accuracies": accs, "mean": float(np.mean(accs)), "std": float(np.std(accs))})
    return rows


def format_comparison(rows: Sequence[dict]) -> str:
    return format_table(["budget (last-k)", "scheme", "memory", "test accuracy %", "per seed"],
                        [[f"k={r['k']}", r["scheme"], format_bytes(r["bytes"]),
                          f"{100 * r['mean']:.1f} +- {100 * r['std']:.1f}",
                          " ".join(f"{100 * a:.1f}" for a in r["accuracies"])] for r in rows],
                        align="lllrr")


__all__ = ["Contributions", "prior_contributions", "contribution_analysis", "train_and_score", "SearchResult",
           "search_scheme", "compare_last_k", "format_comparison"]
