"""The pipeline orchestrator: topological order against a brute-force check, levels, content-addressed
caching with early cutoff, a cache folder that survives the process, and the errors on bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategies import seeds  # also loads the "ci" hypothesis profile
from tinyml_lab import zoo
from tinyml_lab.errors import AttributeValueError, FileFormatError, GraphError
from tinyml_lab.mlops.pipeline import Cache, Pipeline, fingerprint


def random_dag(seed: int, n: int) -> Pipeline:
    """``n`` steps; step i takes a random subset of steps j < i, added in a shuffled order."""
    rng = np.random.default_rng(seed)
    deps = {i: [j for j in range(i) if rng.random() < 0.3] for i in range(n)}
    p = Pipeline()
    for i in rng.permutation(n):
        p.add(f"s{i}", lambda **kw: sum(kw.values()) + 1, inputs=[f"s{j}" for j in deps[int(i)]])
    return p


@given(seed=seeds, n=st.integers(1, 12))
def test_order_puts_every_step_after_its_inputs(seed, n):
    p = random_dag(seed, n)
    order = p.order()
    assert sorted(order) == sorted(p.steps)
    where = {name: k for k, name in enumerate(order)}
    for s in p.steps.values():
        assert all(where[i] < where[s.name] for i in s.inputs)
    waves = p.levels()
    assert sorted(itertools.chain(*waves)) == sorted(p.steps)
    depth = {name: d for d, wave in enumerate(waves) for name in wave}
    for s in p.steps.values():
        assert all(depth[i] < depth[s.name] for i in s.inputs)
        assert depth[s.name] == 0 or any(depth[i] == depth[s.name] - 1 for i in s.inputs)


def test_ties_keep_the_order_of_addition():
    p = Pipeline()
    for name in ("b", "a", "c"):
        p.add(name, lambda: 0)
    p.add("d", lambda a, c: 0, inputs=["a", "c"])
    assert p.order() == ["b", "a", "c", "d"]
    assert p.levels() == [["b", "a", "c"], ["d"]]


def counting_pipeline(calls: list[str]) -> Pipeline:
    def step(name, fn):
        def run(**kw):
            calls.append(name)
            return fn(**kw)
        return run

    p = Pipeline()
    p.add("data", step("data", lambda n, seed: np.random.default_rng(seed).standard_normal(n)),
          params={"n": 100, "seed": 0})
    p.add("clip", step("clip", lambda data, limit: np.clip(data, -limit, limit)), inputs=["data"],
          params={"limit": 10.0})
    p.add("mean", step("mean", lambda clip: float(clip.mean())), inputs=["clip"])
    p.add("report", step("report", lambda mean, data: f"{mean:.4f} over {data.size}"), inputs=["mean", "data"])
    return p


def test_second_run_is_all_cached_and_gives_the_same_outputs():
    calls: list[str] = []
    p, cache = counting_pipeline(calls), Cache()
    first = p.run(cache)
    assert first.ran == ["data", "clip", "mean", "report"] and calls == first.ran
    second = p.run(cache)
    assert second.ran == [] and calls == first.ran
    assert second.outputs["report"] == first.outputs["report"]
    assert [s.key for s in second.steps] == [s.key for s in first.steps]


def test_a_changed_parameter_reruns_only_what_depends_on_it():
    calls: list[str] = []
    p, cache = counting_pipeline(calls), Cache()
    p.run(cache)
    p.replace("data", params={"n": 200, "seed": 0})
    assert p.run(cache).ran == ["data", "clip", "mean", "report"]
    p.replace("report", version="2")
    assert p.run(cache).ran == ["report"]


def test_early_cutoff_when_a_rerun_step_gives_the_same_output():
    calls: list[str] = []
    p, cache = counting_pipeline(calls), Cache()
    p.run(cache)
    p.replace("clip", params={"limit": 20.0})   # no standard normal draw of 100 reaches 10: same output
    r = p.run(cache)
    assert r.ran == ["clip"] and r.cached == ["data", "mean", "report"]


def test_targets_run_only_what_they_need():
    calls: list[str] = []
    r = counting_pipeline(calls).run(targets=["clip"])
    assert r.ran == ["data", "clip"] and set(r.outputs) == {"data", "clip"}


def test_cache_folder_survives_a_new_process(tmp_path):
    calls: list[str] = []
    counting_pipeline(calls).run(Cache(tmp_path / "cache"))
    assert len(Cache(tmp_path / "cache")) == 4
    calls.clear()
    r = counting_pipeline(calls).run(Cache(tmp_path / "cache"))
    assert r.ran == [] and calls == []


def test_fingerprints_of_equal_values_agree():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a) != fingerprint(a.astype(np.float64))
    assert fingerprint(a) != fingerprint(a.reshape(3, 2))
    assert fingerprint({"x": 1, "y": [1, 2]}) == fingerprint({"y": [1, 2], "x": 1})
    assert fingerprint((1, 2)) != fingerprint([1, 2]) and fingerprint(1) != fingerprint(1.0)
    assert fingerprint(zoo.get("ad-autoencoder", seed=0)) == fingerprint(zoo.get("ad-autoencoder", seed=0))
    assert fingerprint(zoo.get("ad-autoencoder", seed=0)) != fingerprint(zoo.get("ad-autoencoder", seed=1))


def test_errors_name_the_problem(tmp_path):
    p = Pipeline()
    p.add("a", lambda b: b, inputs=["b"])
    with pytest.raises(GraphError, match="no step produces"):
        p.order()
    p.add("b", lambda c: c, inputs=["c"])
    p.add("c", lambda a: a, inputs=["a"])
    with pytest.raises(GraphError, match="cycle: a -> b -> c -> a"):
        p.order()
    with pytest.raises(GraphError, match="already exists"):
        p.add("a", lambda: 0)
    with pytest.raises(AttributeValueError, match="both an input and a parameter"):
        Pipeline().add("x", lambda y: y, inputs=["y"], params={"y": 1})
    q = Pipeline()
    q.add("x", lambda n: n, params={"m": 1})
    with pytest.raises(AttributeValueError, match="cannot be called"):
        q.run()
    with pytest.raises(GraphError, match="unknown target"):
        q.run(targets=["z"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileFormatError, match="it is a file"):
        Cache(tmp_path / "file")
