"""A small pipeline orchestrator: steps in a DAG, run in dependency order, cached by content.

A :class:`Pipeline` holds named steps; each step is a function of the outputs of the steps it
names as inputs, plus its own parameters. :meth:`Pipeline.order` sorts the steps topologically
(Kahn's algorithm, ties broken by the order the steps were added, so the order is reproducible)
and :meth:`Pipeline.levels` groups them into waves that could run in parallel.

:meth:`Pipeline.run` runs them with a :class:`Cache`. A step's key is a SHA-256 hash of its name,
its version, its parameters and the *fingerprints of its inputs' outputs*:

$$\\text{key} = H(\\text{name}, \\text{version}, \\text{params}, F(\\text{input}_1), \\ldots)$$

When the cache holds the key, the step is skipped and its stored output used. Because keys hash
outputs rather than upstream keys, a step that re-runs but produces the same output leaves every
step below it cached (early cutoff, in the terms of Mokhov, Mitchell and Peyton Jones, 2018).
:func:`fingerprint` hashes NumPy arrays by dtype, shape and bytes, graphs by their saved bytes,
and containers element by element, so equal values give equal fingerprints.

>>> p = Pipeline()
>>> _ = p.add("data", lambda n: list(range(n)), params={"n": 4})
>>> _ = p.add("total", lambda data: sum(data), inputs=["data"])
>>> cache = Cache()
>>> [r.status for r in p.run(cache).steps]
['ran', 'ran']
>>> [r.status for r in p.run(cache).steps]
['cached', 'cached']
>>> p.run(cache).outputs["total"]
6
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import pickle
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..errors import AttributeValueError, GraphError
from ..files import check_folder, write_atomic


def fingerprint(value: Any) -> str:
    """A SHA-256 hex digest of ``value`` that equal values share.

    Arrays hash their dtype, shape and bytes; a :class:`~tinyml_lab.graph.Graph` hashes its saved
    ``.npz`` bytes; dicts hash their items in key order; lists and tuples element by element;
    ``None``, booleans, numbers and strings their type and ``repr``; anything else its pickle.
    """
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def _feed(h, value: Any) -> None:
    from ..graph import Graph

    if isinstance(value, np.ndarray):
        a = np.ascontiguousarray(value)
        h.update(b"ndarray" + a.dtype.str.encode() + repr(a.shape).encode())
        h.update(a.tobytes() if a.dtype != object else pickle.dumps(a.tolist()))
    elif isinstance(value, Graph):
        from .signing import graph_bytes

        h.update(b"graph")
        h.update(graph_bytes(value))
    elif isinstance(value, Mapping):
        h.update(b"dict%d" % len(value))
        for k in sorted(value, key=repr):
            _feed(h, k)
            _feed(h, value[k])
    elif isinstance(value, (list, tuple)):
        h.update(type(value).__name__.encode() + b"%d" % len(value))
        for item in value:
            _feed(h, item)
    elif value is None or isinstance(value, (bool, int, float, complex, str, bytes, np.generic)):
        h.update(type(value).__name__.encode() + repr(value).encode())
    else:
        h.update(b"pickle" + pickle.dumps(value))


@dataclass(frozen=True)
class Step:
    """One step: ``fn(**inputs, **params)``, where each input is the output of the step of that name."""

    name: str
    fn: Callable[..., Any]
    inputs: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    version: str = "1"


class Cache:
    """Step outputs by key: in memory, and also as pickle files in ``folder`` when one is given.

    Only load a cache folder that this code wrote: its files are pickles.
    """

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = None if folder is None else check_folder(folder, "pipeline cache")
        self._memory: dict[str, Any] = {}

    def __contains__(self, key: str) -> bool:
        return key in self._memory or (self.folder is not None and (self.folder / f"{key}.pkl").is_file())

    def get(self, key: str) -> Any:
        if key not in self._memory:
            self._memory[key] = pickle.loads((self.folder / f"{key}.pkl").read_bytes())
        return self._memory[key]

    def put(self, key: str, value: Any) -> None:
        self._memory[key] = value
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(self.folder / f"{key}.pkl", pickle.dumps(value), "pipeline cache entry")

    def __len__(self) -> int:
        keys = set(self._memory)
        if self.folder is not None and self.folder.is_dir():
            keys |= {p.stem for p in self.folder.glob("*.pkl")}
        return len(keys)


@dataclass(frozen=True)
class StepRun:
    """What happened to one step in one run."""

    name: str
    status: str          # "ran" or "cached"
    key: str             # the step's cache key
    output: str          # fingerprint of its output
    seconds: float       # time spent running it (0 when cached)


@dataclass
class RunReport:
    """The steps of one run in execution order, and every step's output by name."""

    steps: list[StepRun]
    outputs: dict[str, Any]

    @property
    def ran(self) -> list[str]:
        return [s.name for s in self.steps if s.status == "ran"]

    @property
    def cached(self) -> list[str]:
        return [s.name for s in self.steps if s.status == "cached"]

    def rows(self) -> list[list[str]]:
        """One row per step: name, status, short key, short output fingerprint, seconds."""
        return [[s.name, s.status, s.key[:12], s.output[:12], f"{s.seconds:.3f}"] for s in self.steps]


class Pipeline:
    """Named steps with dependencies; see the module docstring."""

    def __init__(self, steps: Iterable[Step] = ()):
        self._steps: dict[str, Step] = {}
        for s in steps:
            self._insert(s)

    def _insert(self, step: Step) -> None:
        if not isinstance(step.name, str) or not step.name:
            raise AttributeValueError(f"a step name must be a non-empty string, got {step.name!r}")
        if step.name in self._steps:
            raise GraphError(f"a step named {step.name!r} already exists; give each step its own name")
        if not callable(step.fn):
            raise AttributeValueError(f"step {step.name!r}: fn must be callable, got {type(step.fn).__name__}")
        self._steps[step.name] = step

    def add(self, name: str, fn: Callable[..., Any], inputs: Iterable[str] = (),
            params: Mapping[str, Any] | None = None, version: str = "1") -> Step:
        """Add a step; ``fn`` is called with one keyword argument per input and per parameter."""
        step = Step(name, fn, tuple(inputs), dict(params or {}), str(version))
        overlap = set(step.inputs) & set(step.params)
        if overlap:
            raise AttributeValueError(f"step {name!r}: {sorted(overlap)} is both an input and a parameter")
        self._insert(step)
        return step

    def replace(self, name: str, **changes: Any) -> Step:
        """Change a step's ``fn``, ``inputs``, ``params`` or ``version`` (a new version of the pipeline)."""
        if name not in self._steps:
            raise GraphError(f"no step named {name!r}; the steps are {list(self._steps)}")
        unknown = set(changes) - {"fn", "inputs", "params", "version"}
        if unknown:
            raise AttributeValueError(f"cannot change {sorted(unknown)}; change fn, inputs, params or version")
        old = self._steps[name]
        new = Step(name, changes.get("fn", old.fn), tuple(changes.get("inputs", old.inputs)),
                   dict(changes.get("params", old.params)), str(changes.get("version", old.version)))
        self._steps[name] = new
        return new

    @property
    def steps(self) -> dict[str, Step]:
        return dict(self._steps)

    def order(self) -> list[str]:
        """The steps in dependency order (Kahn's algorithm; among ready steps, the first added first).

        Raises :class:`GraphError` for an input that names no step, or for a cycle (named).
        """
        for s in self._steps.values():
            missing = [i for i in s.inputs if i not in self._steps]
            if missing:
                raise GraphError(f"step {s.name!r} takes input(s) {missing} that no step produces")
        position = {name: i for i, name in enumerate(self._steps)}
        indegree = {name: len(set(s.inputs)) for name, s in self._steps.items()}
        users: dict[str, list[str]] = {name: [] for name in self._steps}
        for s in self._steps.values():
            for i in set(s.inputs):
                users[i].append(s.name)
        ready = sorted((n for n, d in indegree.items() if d == 0), key=position.get)
        order = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for u in users[name]:
                indegree[u] -= 1
                if indegree[u] == 0:
                    ready.append(u)
            ready.sort(key=position.get)
        if len(order) < len(self._steps):
            raise GraphError(f"the steps form a cycle: {' -> '.join(self._cycle(set(self._steps) - set(order)))}")
        return order

    def _cycle(self, stuck: set[str]) -> list[str]:
        """One cycle among the steps that never became ready, for the error message."""
        name = min(stuck, key=list(self._steps).index)
        path: list[str] = []
        while name not in path:
            path.append(name)
            name = next(i for i in self._steps[name].inputs if i in stuck)
        return path[path.index(name):] + [name]

    def levels(self) -> list[list[str]]:
        """Waves of steps: each step's inputs all lie in earlier waves, so a wave could run in parallel."""
        depth: dict[str, int] = {}
        for name in self.order():
            depth[name] = 1 + max((depth[i] for i in self._steps[name].inputs), default=-1)
        waves: list[list[str]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for name in self._steps:
            waves[depth[name]].append(name)
        return waves

    def key(self, name: str, input_fingerprints: Mapping[str, str]) -> str:
        """The cache key of step ``name`` given the fingerprints of its inputs' outputs."""
        s = self._steps[name]
        payload = {"step": s.name, "version": s.version, "params": fingerprint(dict(s.params)),
                   "inputs": [[i, input_fingerprints[i]] for i in s.inputs]}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def run(self, cache: Cache | None = None, targets: Iterable[str] | None = None) -> RunReport:
        """Run the steps (only those ``targets`` need, if given) in :meth:`order`, reusing ``cache``."""
        cache = Cache() if cache is None else cache
        order = self.order()
        if targets is not None:
            targets = list(targets)
            unknown = [t for t in targets if t not in self._steps]
            if unknown:
                raise GraphError(f"unknown target(s) {unknown}; the steps are {order}")
            needed, stack = set(), list(targets)
            while stack:
                n = stack.pop()
                if n not in needed:
                    needed.add(n)
                    stack.extend(self._steps[n].inputs)
            order = [n for n in order if n in needed]
        outputs: dict[str, Any] = {}
        prints: dict[str, str] = {}
        runs = []
        for name in order:
            s = self._steps[name]
            key = self.key(name, prints)
            if key in cache:
                value, status, seconds = cache.get(key), "cached", 0.0
            else:
                self._check_signature(s)
                t0 = time.perf_counter()
                value = s.fn(**{i: outputs[i] for i in s.inputs}, **s.params)
                seconds = time.perf_counter() - t0
                cache.put(key, value)
                status = "ran"
            outputs[name] = value
            prints[name] = fingerprint(value)
            runs.append(StepRun(name, status, key, prints[name], seconds))
        return RunReport(runs, outputs)

    @staticmethod
    def _check_signature(step: Step) -> None:
        try:
            inspect.signature(step.fn).bind(**{i: None for i in step.inputs}, **step.params)
        except TypeError as e:
            raise AttributeValueError(f"step {step.name!r} cannot be called with inputs {list(step.inputs)} and "
                                      f"parameters {sorted(step.params)}: {e}") from None
        except ValueError:  # no signature to inspect (some builtins): let the call decide
            pass


__all__ = ["Cache", "Pipeline", "RunReport", "Step", "StepRun", "fingerprint"]
