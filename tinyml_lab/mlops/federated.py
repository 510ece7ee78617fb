"""Federated averaging over simulated clients (McMahan et al., AISTATS 2017).

Each round the server sends the global weights ``w`` to a set of clients;
client ``k`` trains them locally for ``local_epochs`` on its own ``n_k``
examples with the training engine (:func:`~tinyml_lab.train.fit`) and
returns ``w_k``; the server sets ``w <- sum_k n_k w_k / sum_k n_k`` (a
weighted average by client size). Data never leaves a client; weights travel,
and :class:`FedAvg` counts the bytes both ways (float32, every tensor sent).

Clients are built from one dataset:

* :func:`partition_iid`: a seeded shuffle cut into equal shares;
* :func:`partition_dirichlet`: non-IID by label (Hsu, Qi and Brown 2019):
  for every class, the shares ``p ~ Dir(alpha, ..., alpha)`` split its
  examples across the clients; small ``alpha`` gives each client few classes.

**Client-level DP** (``dp_clip``, ``dp_noise``; McMahan et al., "Learning
Differentially Private Recurrent Language Models", ICLR 2018): clients take
part by Poisson sampling with rate ``client_rate``; each update
``delta_k = w_k - w`` is clipped to L2 norm ``S`` over all trained tensors;
the server adds ``N(0, sigma^2 S^2 I)`` to their sum and divides by the
expected number of clients ``client_rate * K`` (an unweighted average: weights
by client size would raise the sensitivity). The round is then a sampled
Gaussian mechanism over clients, and :class:`~tinyml_lab.mlops.accountant.RDPAccountant`
reports the client-level epsilon. BatchNorm runs on its stored statistics in
that mode (they are not sent back: they would leak the clients' data unnoised).
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import AttributeValueError, DataError
from ..graph import Graph
from ..train.fit import History, evaluate, fit
from ..train.optim import SGD
from ..train.params import resolve_trainable


@dataclass(frozen=True)
class Client:
    """One simulated client: its examples (indices into the shared dataset) and its data."""

    index: int
    x: np.ndarray
    y: np.ndarray

    @property
    def size(self) -> int:
        return len(self.x)


def _check_int(value: object, what: str, lo: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise AttributeValueError(f"{what} must be an int >= {lo}, got {value!r}")
    return int(value)


def partition_iid(y: Sequence, n_clients: int, seed: int = 0) -> list[np.ndarray]:
    """Indices of ``n_clients`` equal shares (sizes differ by at most one) of a seeded shuffle."""
    n = len(y)
    k = _check_int(n_clients, "n_clients")
    if k > n:
        raise DataError(f"{n_clients} clients for {n} examples; every client needs at least one")
    order = np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, k)]


def partition_dirichlet(y: Sequence, n_clients: int, alpha: float, seed: int = 0,
                        min_size: int = 1, max_tries: int = 100) -> list[np.ndarray]:
    """Non-IID by label: each class's examples split across clients with shares ``p ~ Dir(alpha 1_K)``.

    Draws again (up to ``max_tries``) while some client has fewer than ``min_size`` examples.
    """
    labels = np.asarray(y)
    k = _check_int(n_clients, "n_clients")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not (0 < float(alpha) < math.inf):
        raise AttributeValueError(f"alpha must be a number > 0 (small: few classes per client), got {alpha!r}")
    if k * min_size > len(labels):
        raise DataError(f"{n_clients} clients of at least {min_size} examples need {k * min_size}, "
                        f"the data has {len(labels)}")
    rng = np.random.default_rng(seed)
    for _ in range(max_tries):
        parts: list[list[int]] = [[] for _ in range(k)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(k, float(alpha)))
            cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for client, chunk in enumerate(np.split(idx, cuts)):
                parts[client].extend(chunk.tolist())
        if min(len(p) for p in parts) >= min_size:
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise DataError(f"no Dirichlet({alpha}) split in {max_tries} draws gives every client {min_size} examples; "
                    f"raise alpha or lower n_clients")


def label_skew(y: Sequence, parts: Sequence[np.ndarray]) -> float:
    """Mean total-variation distance between each client's label distribution and the whole data's
    (0 for identical mixtures, up to 1): how non-IID a partition is."""
    labels = np.asarray(y)
    classes = np.unique(labels)
    overall = np.array([(labels == c).mean() for c in classes])
    tv = []
    for p in parts:
        own = np.array([(labels[p] == c).mean() for c in classes])
        tv.append(0.5 * np.abs(own - overall).sum())
    return float(np.mean(tv))


def make_clients(x: np.ndarray, y: np.ndarray, parts: Sequence[np.ndarray]) -> list[Client]:
    """Clients from a dataset and a partition (lists of indices)."""
    return [Client(i, x[p], y[p]) for i, p in enumerate(parts)]


class FedAvg:
    """Federated averaging, with optional client-level DP.

    Args:
        rounds: communication rounds.
        local_epochs: passes over its data each selected client makes per round.
        batch_size: local mini-batch size (``None``: the whole local dataset, one step per epoch).
        lr: local SGD learning rate (plain SGD; the optimizer is new each round, as on a stateless client).
        client_fraction: without DP, ``max(1, round(fraction K))`` clients drawn per round without replacement.
        dp_clip: ``S``, the clipping norm of a client's update; None for no DP.
        dp_noise: ``sigma``, noise multiplier of the server's Gaussian noise (with ``dp_clip``).
        client_rate: with DP, each client takes part in a round with this probability (Poisson).
        delta: the delta of the reported client-level (epsilon, delta).
        batch_norm: ``"batch"`` (local batch statistics, running statistics averaged too) or
            ``"running"``; DP forces ``"running"``.
        seed: seeds client selection, local batch order and the noise.

    Attributes:
        history_: one row per round: ``round``, ``clients``, ``val_loss``/``val_accuracy`` (with
            validation data), ``bytes_up``, ``bytes_down``, ``bytes_total`` (cumulative), ``update_norm``
            (mean client update norm), ``epsilon`` (with DP), ``seconds``.
        bytes_per_round_: bytes one participating client exchanges in a round (down + up).
    """

    def __init__(self, rounds: int = 10, local_epochs: int = 1, batch_size: int | None = 32, lr: float = 0.05,
                 client_fraction: float = 1.0, dp_clip: float | None = None, dp_noise: float = 0.0,
                 client_rate: float = 1.0, delta: float = 1e-5, batch_norm: str = "batch", seed: int = 0):
        self.rounds = _check_int(rounds, "rounds")
        self.local_epochs = _check_int(local_epochs, "local_epochs")
        self.batch_size = None if batch_size is None else _check_int(batch_size, "batch_size")
        self.lr = SGD(lr=lr).lr  # checks it
        if not (isinstance(client_fraction, numbers.Real) and 0.0 < client_fraction <= 1.0):
            raise AttributeValueError(f"client_fraction must be a number in (0, 1], got {client_fraction!r}")
        self.client_fraction = float(client_fraction)
        if dp_clip is not None and not (isinstance(dp_clip, numbers.Real) and dp_clip > 0):
            raise AttributeValueError(f"dp_clip must be a number > 0 or None, got {dp_clip!r}")
        self.dp_clip = None if dp_clip is None else float(dp_clip)
        if not (isinstance(dp_noise, numbers.Real) and dp_noise >= 0):
            raise AttributeValueError(f"dp_noise must be a number >= 0, got {dp_noise!r}")
        if dp_noise > 0 and dp_clip is None:
            raise AttributeValueError("dp_noise needs dp_clip: noise is calibrated to the clipping norm")
        self.dp_noise = float(dp_noise)
        from .accountant import check_delta, check_q

        self.client_rate = check_q(client_rate)
        self.delta = check_delta(delta)
        if batch_norm not in ("batch", "running"):
            raise AttributeValueError(f"batch_norm must be 'batch' or 'running', got {batch_norm!r}")
        self.batch_norm = batch_norm
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
            raise AttributeValueError(f"seed must be an int, got {seed!r}")
        self.seed = int(seed)

    @property
    def private(self) -> bool:
        return self.dp_clip is not None

    def fit(self, graph: Graph, clients: Sequence[Client], validation_data: tuple | None = None,
            trainable: Sequence[str] | None = None) -> "FedAvg":
        """Train ``graph`` (the global model, updated in place) over ``clients``; returns self."""
        from .accountant import RDPAccountant

        if graph.is_quantized:
            raise AttributeValueError(f"graph '{graph.name}' is int8; federated training here runs on float graphs")
        clients = list(clients)
        if not clients or not all(isinstance(c, Client) and c.size > 0 for c in clients):
            raise DataError("clients must be a non-empty list of Client with data (see make_clients)")
        names = list(resolve_trainable(graph, trainable))
        batch_norm = "running" if self.private else self.batch_norm
        stats = [] if batch_norm == "running" else [
            t.name for node in graph.nodes if node.op == "BatchNorm"
            for r, t in graph.weights(node).items() if r in ("mean", "var")]
        shared = names + stats  # what travels each way
        payload = sum(graph.tensors[n].data.astype(np.float32).nbytes for n in shared)
        self.bytes_per_round_ = 2 * payload
        rng = np.random.default_rng(self.seed)
        accountant = RDPAccountant()
        k = len(clients)
        history = History()
        total_bytes = 0
        for rnd in range(1, self.rounds + 1):
            t0 = time.perf_counter()
            if self.private:
                chosen = np.flatnonzero(rng.random(k) < self.client_rate)
            else:
                m = max(1, int(round(self.client_fraction * k)))
                chosen = np.sort(rng.choice(k, size=m, replace=False))
            start = {n: graph.tensors[n].data.astype(np.float64).copy() for n in shared}
            updates, sizes = [], []
            for ci in chosen:
                c = clients[int(ci)]
                local = graph.copy()
                fit(local, c.x, c.y, epochs=self.local_epochs,
                    batch_size=self.batch_size or c.size, optimizer=SGD(lr=self.lr),
                    seed=int(rng.integers(2**31)), trainable=names, quiet=True, batch_norm=batch_norm)
                updates.append({n: local.tensors[n].data.astype(np.float64) - start[n] for n in shared})
                sizes.append(c.size)
            norms = [math.sqrt(sum(float(np.square(u[n]).sum()) for n in names)) for u in updates]
            if self.private:
                s = float(self.dp_clip)  # type: ignore[arg-type]
                summed = {n: np.zeros_like(start[n]) for n in names}
                for u, norm in zip(updates, norms):
                    f = min(1.0, s / max(norm, 1e-300))
                    for n in names:
                        summed[n] += f * u[n]
                expected = self.client_rate * k
                new = {n: start[n] + (summed[n] + (self.dp_noise * s * rng.standard_normal(start[n].shape)
                                                   if self.dp_noise > 0 else 0.0)) / expected for n in names}
            elif updates:
                w = np.asarray(sizes, dtype=np.float64) / float(sum(sizes))
                new = {n: start[n] + sum(wi * u[n] for wi, u in zip(w, updates)) for n in shared}
            else:
                new = start
            for n, v in new.items():
                graph.tensors[n].data[...] = v.astype(graph.tensors[n].data.dtype)
            up = down = payload * len(chosen)
            total_bytes += up + down
            row: dict = {"round": rnd, "clients": int(len(chosen)), "bytes_up": up, "bytes_down": down,
                         "bytes_total": total_bytes, "update_norm": float(np.mean(norms)) if norms else 0.0}
            if self.private:
                if self.dp_noise > 0:
                    accountant.step(self.client_rate, self.dp_noise)
                    row["epsilon"] = accountant.get_epsilon(self.delta).epsilon
                else:
                    row["epsilon"] = math.inf
            if validation_data is not None:
                ev = evaluate(graph, validation_data[0], validation_data[1])
                row.update({f"val_{key}": v for key, v in ev.items()})
            row["seconds"] = time.perf_counter() - t0
            history.rows.append(row)
        history.recipe = {"kind": "fedavg", "rounds": self.rounds, "local_epochs": self.local_epochs,
                          "batch_size": self.batch_size, "lr": self.lr, "clients": k,
                          "client_fraction": self.client_fraction, "dp_clip": self.dp_clip,
                          "dp_noise": self.dp_noise, "client_rate": self.client_rate, "seed": self.seed,
                          "batch_norm": batch_norm, "shared_tensors": shared}
        self.history_ = history
        return self

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}

    def __repr__(self) -> str:
        return f"FedAvg({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"


__all__ = ["Client", "partition_iid", "partition_dirichlet", "label_skew", "make_clients", "FedAvg"]
