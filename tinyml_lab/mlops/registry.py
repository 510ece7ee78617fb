"""A model registry in a folder: versions of named models, stored once by content, with stages and lineage.

The folder holds ``artifacts/<sha256>.npz``, each model file stored once under the SHA-256 of its
bytes (registering the same bytes twice stores nothing new), and ``registry.json``, the index:
for every model name, its versions in order, each with the artifact's hash and size, its metrics,
its lineage (what produced it: data fingerprint, pipeline key, code version, seed) and its stage.

Stages follow the usual life of a model: ``none`` when registered, ``staging`` while it is
evaluated, ``production`` when it serves, ``archived`` afterwards. Promoting a version to
``production`` archives the one that served before, so one version per model is in production
and a rollback is a promotion of the previous version. Loading checks the artifact's hash, so a
file changed on disk is refused rather than served. Every write is atomic
(:func:`tinyml_lab.files.write_atomic`).

>>> import tempfile
>>> from tinyml_lab import zoo
>>> reg = ModelRegistry(tempfile.mkdtemp())
>>> v1 = reg.register("kws", zoo.get("kws-dscnn", seed=0), metrics={"accuracy": 0.90})
>>> v2 = reg.register("kws", zoo.get("kws-dscnn", seed=0))     # same bytes: no new artifact
>>> (v1.version, v2.version, v1.sha256 == v2.sha256, reg.artifact_count())
(1, 2, True, 1)
>>> reg.promote("kws", 1, "production").stage
'production'
"""

from __future__ import annotations

import json
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import AttributeValueError, FileFormatError, TinyMLError
from ..files import check_folder, write_atomic
from ..graph import Graph
from .signing import graph_bytes, graph_from_bytes, sha256

STAGES = ("none", "staging", "production", "archived")
INDEX = "registry.json"
FORMAT = 1


class RegistryError(TinyMLError, KeyError):
    """A model name, version or stage that the registry does not hold."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a model."""

    name: str
    version: int
    sha256: str
    size: int
    stage: str = "none"
    metrics: dict[str, float] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)


class ModelRegistry:
    """Versions of named models in ``folder``; see the module docstring."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = check_folder(folder, "model registry")
        self._index = self._read_index()

    # ------------------------------------------------------------------ the index file

    def _read_index(self) -> dict[str, list[dict]]:
        path = self.folder / INDEX
        if not path.exists():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise FileFormatError(f"{path} is not a registry index (invalid JSON: {e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("models"), dict):
            raise FileFormatError(f"{path} is not a registry index of format {FORMAT}")
        return data["models"]

    def _write_index(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": FORMAT, "models": self._index}, indent=1, sort_keys=True)
        write_atomic(self.folder / INDEX, text.encode("utf-8"), "registry index")

    def _artifact(self, digest: str) -> Path:
        return self.folder / "artifacts" / f"{digest}.npz"

    # ------------------------------------------------------------------ queries

    def names(self) -> list[str]:
        """The registered model names, sorted."""
        return sorted(self._index)

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, oldest first."""
        if name not in self._index:
            raise RegistryError(f"no model named {name!r} in the registry; it holds {self.names() or 'none'}")
        return [ModelVersion(**v) for v in self._index[name]]

    def get(self, name: str, version: int | None = None, stage: str | None = None) -> ModelVersion:
        """A version by number, the version in ``stage``, or (neither given) the latest."""
        versions = self.versions(name)
        if version is not None and stage is not None:
            raise AttributeValueError("give a version or a stage, not both")
        if version is not None:
            for v in versions:
                if v.version == version:
                    return v
            raise RegistryError(f"{name!r} has no version {version}; it has {[v.version for v in versions]}")
        if stage is not None:
            _check_stage(stage)
            found = [v for v in versions if v.stage == stage]
            if not found:
                raise RegistryError(f"no version of {name!r} is in stage {stage!r}")
            return found[-1]
        return versions[-1]

    def artifact_count(self) -> int:
        """How many distinct model files the registry stores."""
        folder = self.folder / "artifacts"
        return len(list(folder.glob("*.npz"))) if folder.is_dir() else 0

    def stored_bytes(self) -> int:
        """Bytes of all stored model files (each distinct file once)."""
        folder = self.folder / "artifacts"
        return sum(p.stat().st_size for p in folder.glob("*.npz")) if folder.is_dir() else 0

    # ------------------------------------------------------------------ changes

    def register(self, name: str, model: Graph | bytes, metrics: Mapping[str, float] | None = None,
                 lineage: Mapping[str, Any] | None = None) -> ModelVersion:
        """Store ``model`` (a graph, or the bytes of its ``.npz``) as the next version of ``name``.

        Args:
            name: the model's name in the registry.
            model: a :class:`~tinyml_lab.graph.Graph` or the bytes of its saved ``.npz``.
            metrics: numbers measured on it (e.g. ``{"accuracy": 0.97}``).
            lineage: JSON-serialisable facts about what produced it (data hash, pipeline key, seed).

        Returns:
            The new :class:`ModelVersion`, in stage ``none``.
        """
        if not isinstance(name, str) or not name.strip():
            raise AttributeValueError(f"a model name must be a non-empty string, got {name!r}")
        if isinstance(model, Graph):
            data = graph_bytes(model)
        elif isinstance(model, (bytes, bytearray)):
            data = bytes(model)
            graph_from_bytes(data)  # refuse bytes that are not a model file
        else:
            raise AttributeValueError("model must be a Graph or the bytes of a saved graph, "
                                      f"got {type(model).__name__}")
        clean_metrics = {}
        for k, v in dict(metrics or {}).items():
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise AttributeValueError(f"metric {k!r} must be a number, got {v!r}")
            clean_metrics[str(k)] = float(v)
        lineage = dict(lineage or {})
        try:
            json.dumps(lineage)
        except TypeError as e:
            raise AttributeValueError("lineage must be JSON-serialisable (strings, numbers, lists, dicts): "
                                      f"{e}") from None
        digest = sha256(data)
        path = self._artifact(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data, "model artifact")
        number = len(self._index.get(name, [])) + 1
        entry = ModelVersion(name, number, digest, len(data), "none", clean_metrics, lineage)
        self._index.setdefault(name, []).append(asdict(entry))
        self._write_index()
        return entry

    def promote(self, name: str, version: int, stage: str) -> ModelVersion:
        """Move a version to ``stage``; promoting to ``production`` archives the previous production version."""
        _check_stage(stage)
        target = self.get(name, version=version)
        for entry in self._index[name]:
            if stage == "production" and entry["stage"] == "production" and entry["version"] != version:
                entry["stage"] = "archived"
            if entry["version"] == target.version:
                entry["stage"] = stage
        self._write_index()
        return self.get(name, version=version)

    def load(self, name: str, version: int | None = None, stage: str | None = None) -> Graph:
        """The graph of a version (see :meth:`get`), after checking its bytes against the stored hash."""
        v = self.get(name, version=version, stage=stage)
        path = self._artifact(v.sha256)
        if not path.is_file():
            raise FileFormatError(f"the artifact of {name!r} version {v.version} ({path.name}) is missing")
        data = path.read_bytes()
        if sha256(data) != v.sha256:
            raise FileFormatError(f"the artifact of {name!r} version {v.version} was changed on disk: its SHA-256 "
                                  f"no longer matches the registry; re-register the model")
        return graph_from_bytes(data)


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise AttributeValueError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")


__all__ = ["ModelRegistry", "ModelVersion", "RegistryError", "STAGES"]
