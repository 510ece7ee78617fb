"""The model zoo: the MLPerf Tiny reference models and the models of the labs.

>>> from tinyml_lab import zoo
>>> zoo.names()
['kws-dscnn', 'vww-mobilenetv1', 'ic-resnet8', 'ad-autoencoder', 'mobilenetv2', 'digits-cnn']
>>> g = zoo.get("kws-dscnn", seed=0)
>>> g.macs
2656768

The four MLPerf Tiny models follow the benchmark's reference training scripts
(Banbury et al., "MLPerf Tiny Benchmark", NeurIPS Datasets and Benchmarks
2021); see :mod:`tinyml_lab.zoo.mlperf_tiny`. Graphs are float32 and keep
their ``BatchNorm`` nodes.

Weights: models with committed trained weights (``zoo/weights/<name>.npz``,
made by ``scripts/train_weights.py``, the recipe in ``<name>.json`` beside
it) load them by default, when built with their default options; the others,
and every model with ``weights="random"``, get the builder's seeded
He-normal draw. ``weights=`` may also name other trained weights (see
:func:`load_weights`). :func:`trained_weights` tells which file a model loads.
"""

from __future__ import annotations

import difflib
import numbers
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..errors import AttributeValueError, FileFormatError, GraphError, ShapeError, UnknownModelError
from ..graph import Graph
from .digits import digits_cnn
from .mlperf_tiny import ad_autoencoder, ic_resnet8, kws_dscnn, vww_mobilenetv1
from .mobilenetv2 import mobilenetv2

MLPERF_TINY = "Banbury et al., MLPerf Tiny Benchmark, NeurIPS Datasets and Benchmarks 2021"
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
RANDOM = "random"  # weights= value for the seeded initialisation


@dataclass(frozen=True)
class ModelSpec:
    """One zoo entry: how to build it and what it is for.

    ``options`` maps each keyword ``get`` accepts for this model to its
    default; ``input_shape`` and ``classes`` are those of the defaults.
    """

    name: str
    build: Callable[..., Graph]
    task: str
    input_shape: tuple[int, ...]
    classes: int
    description: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "task": self.task,
            "input_shape": self.input_shape,
            "classes": self.classes,
            "description": self.description,
            "source": self.source,
            "options": dict(self.options),
        }


_MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec(
            "kws-dscnn", kws_dscnn, "keyword spotting", (49, 10, 1), 12,
            "Depthwise-separable CNN on 49x10 MFCCs, 12 keywords (MLPerf Tiny KWS)",
            f"{MLPERF_TINY}; Zhang et al., Hello Edge, 2017",
        ),
        ModelSpec(
            "vww-mobilenetv1", vww_mobilenetv1, "visual wake words", (96, 96, 3), 2,
            "MobileNetV1 width 0.25 at 96x96, person / no person (MLPerf Tiny VWW)",
            f"{MLPERF_TINY}; Howard et al., MobileNets, 2017",
        ),
        ModelSpec(
            "ic-resnet8", ic_resnet8, "image classification", (32, 32, 3), 10,
            "ResNet-8 on 32x32 CIFAR-10 images (MLPerf Tiny IC)",
            f"{MLPERF_TINY}; He et al., Deep Residual Learning, CVPR 2016",
        ),
        ModelSpec(
            "ad-autoencoder", ad_autoencoder, "anomaly detection", (640,), 0,
            "Dense autoencoder on 5x128 log-mel frames; score = reconstruction error (MLPerf Tiny AD)",
            f"{MLPERF_TINY}; Koizumi et al., DCASE2020 Task 2 baseline",
        ),
        ModelSpec(
            "mobilenetv2", mobilenetv2, "image classification", (128, 128, 3), 1000,
            "MobileNetV2 with width multiplier and resolution (Keras layout, no conv biases)",
            "Sandler et al., MobileNetV2, CVPR 2018",
            {"width": 0.35, "resolution": 128, "num_classes": 1000},
        ),
        ModelSpec(
            "digits-cnn", digits_cnn, "digit classification", (16, 16, 1), 10,
            "Small CNN for the labs on 16x16 (or 32x32) scikit-learn digits",
            "tinyml_lab (teaching model)",
            {"size": 16, "num_classes": 10},
        ),
    ]
}


def names() -> list[str]:
    """The names ``get`` accepts, in a stable order (MLPerf Tiny first)."""
    return list(_MODELS)


def describe() -> list[dict]:
    """One dict per model: name, task, input_shape, classes, description, source, options.

    ``classes`` is 0 for the autoencoder, whose output is a reconstruction.
    """
    return [s.describe() for s in _MODELS.values()]


def spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name``; an :class:`UnknownModelError` names the known ones."""
    if not isinstance(name, str):
        raise UnknownModelError(f"a model name must be a string, got {name!r}; known: {', '.join(_MODELS)}")
    key = name.strip().lower().replace("_", "-")
    if key in _MODELS:
        return _MODELS[key]
    close = difflib.get_close_matches(key, list(_MODELS), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UnknownModelError(f"unknown model {name!r}{hint}; known models: {', '.join(_MODELS)}")


def trained_weights(name: str, **options: Any) -> Path | None:
    """The committed weights file ``get(name, **options)`` loads by default, or None.

    Trained weights exist for the default options only (e.g. ``digits-cnn``
    at 16x16 with 10 classes).
    """
    s = spec(name)
    if {**s.options, **options} != s.options:
        return None
    path = WEIGHTS_DIR / f"{s.name}.npz"
    return path if path.is_file() else None


def get(name: str, seed: int = 0, weights: str | os.PathLike | Mapping[str, Any] | None = None,
        **options: Any) -> Graph:
    """Build zoo model ``name`` as a float32 graph.

    Args:
        name: one of :func:`names` (case and ``_``/``-`` do not matter).
        seed: seeds the He-normal initialisation, so equal seeds give equal
            weights (constants that trained weights replace do not depend on it).
        weights: None for the committed trained weights when the model has
            them for these options (:func:`trained_weights`), else the seeded
            initialisation; ``"random"`` for the seeded initialisation always;
            or trained weights to put in place of it: a path to an ``.npz``
            (arrays named like the graph's constants, e.g. ``conv1/weight``, or
            a file written by :meth:`Graph.save`), or a mapping of such names
            to arrays.
        **options: model options, e.g. ``width``, ``resolution`` and
            ``num_classes`` for ``mobilenetv2``; see :func:`describe`.

    Returns:
        The validated graph; ``graph.metadata["zoo"]`` records the model,
        its options, the seed and where the weights came from.
    """
    s = spec(name)
    unknown = sorted(set(options) - set(s.options))
    if unknown:
        accepted = f"it accepts {', '.join(s.options)}" if s.options else "it takes no options"
        raise AttributeValueError(f"{s.name}: unknown option(s) {', '.join(unknown)}; {accepted}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise AttributeValueError(f"seed must be an int, got {seed!r}")
    merged = {**s.options, **options}
    g = s.build(seed=int(seed), **merged)
    g.metadata["zoo"] = {
        "model": s.name,
        "options": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in merged.items()},
        "seed": int(seed),
        "weights": "he-normal (untrained)",
        "source": s.source,
    }
    if weights is None:
        default = trained_weights(s.name, **options)
        if default is not None:
            load_weights(g, default)
            g.metadata["zoo"]["weights"] = f"trained ({default.parent.name}/{default.name})"
    elif isinstance(weights, str) and weights == RANDOM:
        pass
    else:
        load_weights(g, weights)
        g.metadata["zoo"]["weights"] = str(weights) if isinstance(weights, (str, os.PathLike)) else "mapping"
    return g


def load_weights(graph: Graph, weights: str | os.PathLike | Mapping[str, Any]) -> Graph:
    """Replace constants of ``graph`` by arrays of the same name and shape, in place.

    ``weights`` is a mapping ``{"conv1/weight": array, ...}``, an ``.npz``
    holding such arrays, or a graph file written by :meth:`Graph.save` (its
    constants are matched by name). Constants the weights do not name keep
    their values, so a backbone can be loaded under a new classifier. A name
    the graph lacks raises :class:`GraphError`; a shape mismatch
    :class:`ShapeError`; an unreadable file :class:`FileFormatError`.
    """
    if isinstance(weights, (str, os.PathLike)):
        arrays = _read_weights(Path(weights))
    elif isinstance(weights, Mapping):
        arrays = dict(weights)
    else:
        raise AttributeValueError(
            f"weights must be a path to an .npz file or a mapping of tensor names to arrays, "
            f"got {type(weights).__name__}"
        )
    consts = {n for n, t in graph.tensors.items() if t.is_const}
    missing = sorted(set(arrays) - consts)
    if missing:
        raise GraphError(
            f"the weights name {len(missing)} tensor(s) model '{graph.name}' does not have "
            f"({', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}); its constants look like "
            f"{', '.join(sorted(consts)[:3])}"
        )
    for n, value in arrays.items():
        a = np.asarray(value, dtype=np.float32)
        t = graph.tensors[n]
        if a.shape != t.shape:
            raise ShapeError(f"weight {n!r} has shape {a.shape}; model '{graph.name}' expects {t.shape}")
        if not np.all(np.isfinite(a)):
            raise FileFormatError(f"weight {n!r} holds NaN or infinite values")
        t.data = np.ascontiguousarray(a)
    return graph.validate()


def _read_weights(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise FileFormatError(f"no such weights file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            files = list(z.files)
            if "__graph__" not in files:
                return {k: z[k] for k in files}
    except (OSError, ValueError, EOFError) as exc:
        raise FileFormatError(f"{path} is not a readable .npz weights file ({exc})") from None
    saved = Graph.load(path)
    if saved.is_quantized:
        raise FileFormatError(f"{path} is an int8 graph; load float32 weights into a zoo model")
    return {n: t.data for n, t in saved.tensors.items() if t.is_const}


__all__ = ["get", "names", "describe", "spec", "load_weights", "trained_weights", "ModelSpec", "MLPERF_TINY",
           "WEIGHTS_DIR", "RANDOM",
           "kws_dscnn", "vww_mobilenetv1", "ic_resnet8", "ad_autoencoder", "mobilenetv2", "digits_cnn"]
