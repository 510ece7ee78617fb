"""The model registry: versions, content-addressed artifacts stored once, stages with one production
version, lineage, integrity on load, an index that survives a reopen, and the errors on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyml_lab import zoo
from tinyml_lab.errors import AttributeValueError, FileFormatError
from tinyml_lab.interpreter import Interpreter
from tinyml_lab.mlops.registry import ModelRegistry, RegistryError
from tinyml_lab.mlops.signing import graph_bytes


@pytest.fixture
def models():
    return zoo.get("ad-autoencoder", seed=0), zoo.get("ad-autoencoder", seed=1)


def test_versions_are_numbered_and_identical_bytes_stored_once(tmp_path, models):
    a, b = models
    reg = ModelRegistry(tmp_path)
    v1 = reg.register("ad", a, metrics={"auc": 0.9}, lineage={"seed": 0})
    v2 = reg.register("ad", b, lineage={"seed": 1})
    v3 = reg.register("ad", graph_bytes(a))
    assert [v.version for v in reg.versions("ad")] == [1, 2, 3]
    assert v1.sha256 == v3.sha256 != v2.sha256
    assert reg.artifact_count() == 2
    assert reg.stored_bytes() == v1.size + v2.size
    assert reg.get("ad").version == 3 and reg.get("ad", version=1).metrics == {"auc": 0.9}


def test_loaded_model_computes_what_the_registered_one_did(tmp_path, models):
    a, _ = models
    reg = ModelRegistry(tmp_path)
    reg.register("ad", a)
    x = np.random.default_rng(0).standard_normal((3,) + a.input_shape()).astype(np.float32)
    assert np.array_equal(Interpreter(reg.load("ad")).run(x), Interpreter(a).run(x))


def test_one_version_in_production_and_rollback_by_promotion(tmp_path, models):
    a, b = models
    reg = ModelRegistry(tmp_path)
    reg.register("ad", a)
    reg.register("ad", b)
    reg.promote("ad", 1, "production")
    reg.promote("ad", 2, "staging")
    assert reg.get("ad", stage="production").version == 1
    reg.promote("ad", 2, "production")
    assert [v.stage for v in reg.versions("ad")] == ["archived", "production"]
    reg.promote("ad", 1, "production")                    # roll back
    assert [v.stage for v in reg.versions("ad")] == ["production", "archived"]


def test_the_index_survives_a_reopen(tmp_path, models):
    a, _ = models
    reg = ModelRegistry(tmp_path)
    reg.register("ad", a, lineage={"pipeline": "abc", "seed": 0})
    reg.promote("ad", 1, "staging")
    again = ModelRegistry(tmp_path)
    assert again.versions("ad") == reg.versions("ad")
    assert again.get("ad").lineage == {"pipeline": "abc", "seed": 0}


def test_a_changed_artifact_is_refused(tmp_path, models):
    a, _ = models
    reg = ModelRegistry(tmp_path)
    v = reg.register("ad", a)
    path = tmp_path / "artifacts" / f"{v.sha256}.npz"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match="changed on disk"):
        reg.load("ad")
    path.unlink()
    with pytest.raises(FileFormatError, match="missing"):
        reg.load("ad")


def test_errors_name_the_problem(tmp_path, models):
    a, _ = models
    reg = ModelRegistry(tmp_path)
    with pytest.raises(RegistryError, match="no model named 'kws'"):
        reg.versions("kws")
    reg.register("ad", a)
    with pytest.raises(RegistryError, match="has no version 7"):
        reg.get("ad", version=7)
    with pytest.raises(RegistryError, match="stage 'production'"):
        reg.get("ad", stage="production")
    with pytest.raises(AttributeValueError, match="stage must be one of"):
        reg.promote("ad", 1, "live")
    with pytest.raises(AttributeValueError, match="must be a number"):
        reg.register("ad", a, metrics={"auc": "high"})
    with pytest.raises(AttributeValueError, match="JSON-serialisable"):
        reg.register("ad", a, lineage={"x": object()})
    with pytest.raises(AttributeValueError, match="Graph or the bytes"):
        reg.register("ad", 42)
    with pytest.raises(FileFormatError):
        reg.register("ad", b"not a model")
    (tmp_path / "registry.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(FileFormatError, match="format 1"):
        ModelRegistry(tmp_path)
