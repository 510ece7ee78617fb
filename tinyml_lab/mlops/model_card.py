"""Model cards (Mitchell et al., "Model Cards for Model Reporting", FAT* 2019) filled by the engine.

:func:`build_model_card` measures everything it reports: parameters and MACs
from the graph, the int8 model's weight bytes and its peak SRAM (the arena of
the ``greedy-size`` memory planner, :mod:`tinyml_lab.memory`) after
BatchNorm folding, activation fusion and int8 conversion; accuracy of the
float and int8 models overall and per class (each class a slice); group
fairness metrics (:mod:`~tinyml_lab.mlops.fairness`) when a group attribute is
given; the privacy guarantee when the model was trained with DP-SGD
(a :class:`~tinyml_lab.train.fit.History` of :func:`~tinyml_lab.train.dpsgd.dp_fit`,
or a :class:`~tinyml_lab.mlops.accountant.PrivacySpent`). People supply the
words: intended use, training data, caveats.

:meth:`ModelCard.to_markdown` and :meth:`ModelCard.to_html` render it (every
text escaped in HTML); :meth:`ModelCard.write` writes it atomically, the
format chosen by the file's suffix.
"""

from __future__ import annotations

import html
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import AttributeValueError, DataError
from ..graph import Graph
from ..report import format_bytes


@dataclass
class ModelCard:
    """The sections of a model card, as data. Numbers are measured by :func:`build_model_card`."""

    name: str
    details: dict[str, Any]
    intended_use: str
    training_data: str
    evaluation_data: str
    metrics: dict[str, float]
    slices: list[dict]
    fairness: dict | None = None
    privacy: dict | None = None
    caveats: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ data
    def to_json(self) -> dict:
        return {"name": self.name, "details": self.details, "intended_use": self.intended_use,
                "training_data": self.training_data, "evaluation_data": self.evaluation_data,
                "metrics": self.metrics, "slices": self.slices, "fairness": self.fairness,
                "privacy": self.privacy, "caveats": self.caveats}

    def _sections(self) -> list[tuple[str, list]]:
        """The card as (heading, blocks); a block is ("p", text), ("ul", [texts]) or ("table", header, rows)."""
        d = self.details
        details = [("table", ["property", "value"], [
            ["model", d["model"]], ["input", d["input"]], ["output", d["output"]],
            ["parameters", f"{d['params']:,}"], ["MACs per inference", f"{d['macs']:,}"],
            ["int8 weights", f"{format_bytes(d['int8_weight_bytes'])} ({d['int8_weight_bytes']:,} bytes)"],
            ["peak SRAM (int8 activations)",
             f"{format_bytes(d['peak_sram_bytes'])} ({d['peak_sram_bytes']:,} bytes, {d['planner']} planner)"],
            ["training", d.get("training", "not stated")],
        ])]
        metrics = [("table", ["metric", "value"], [[k.replace("_", " "), _num(v)] for k, v in self.metrics.items()])]
        slice_rows = [[s["slice"], s["n"], _pct(s["accuracy"]), _pct(s["precision"]), _pct(s["int8_accuracy"])]
                      for s in self.slices]
        slices = [("p", "Each class of the evaluation set is a slice; accuracy within a slice is its recall."),
                  ("table", ["slice", "examples", "accuracy (recall)", "precision", "int8 accuracy"], slice_rows)]
        sections: list[tuple[str, list]] = [
            ("Model details", details),
            ("Intended use", [("p", self.intended_use)]),
            ("Training data", [("p", self.training_data)]),
            ("Evaluation data", [("p", self.evaluation_data)]),
            ("Metrics", metrics),
            ("Metrics per slice", slices),
        ]
        if self.fairness is not None:
            f = self.fairness
            group_rows = [[g["group"], g["n"], _pct(g["accuracy"])] for g in f["groups"]]
            gap_rows = [[r["class"], _num(r["demographic_parity_difference"]), _num(r["tpr_gap"]),
                         _num(r["fpr_gap"]), _num(r["equalized_odds_difference"])] for r in f["per_class"]]
            sections.append(("Fairness", [
                ("p", f"Groups by {f['attribute']}. For each class k, the decision 'predicted k' is compared across "
                      f"groups (one-vs-rest): demographic parity difference, true and false positive rate gaps, "
                      f"equalized odds difference (the larger gap). Largest over classes: equalized odds "
                      f"difference {_num(f['max_equalized_odds_difference'])}, demographic parity difference "
                      f"{_num(f['max_demographic_parity_difference'])}."),
                ("table", ["group", "examples", "accuracy"], group_rows),
                ("table", ["class", "parity difference", "TPR gap", "FPR gap", "equalized odds difference"],
                 gap_rows),
            ]))
        if self.privacy is not None:
            p = self.privacy
            sections.append(("Privacy", [("table", ["property", "value"], [[k.replace("_", " "), _num(v)]
                                                                            for k, v in p.items()])]))
        else:
            sections.append(("Privacy", [("p", "Trained without differential privacy: no privacy guarantee is made "
                                               "for the training examples.")]))
        sections.append(("Caveats and recommendations", [("ul", list(self.caveats) or ["None stated."])]))
        return sections

    # ------------------------------------------------------------------ renderers
    def to_markdown(self) -> str:
        out = [f"# Model card: {_md(self.name)}", ""]
        for heading, blocks in self._sections():
            out += [f"## {_md(heading)}", ""]
            for b in blocks:
                if b[0] == "p":
                    out += [_md(b[1]), ""]
                elif b[0] == "ul":
                    out += [f"- {_md(t)}" for t in b[1]] + [""]
                else:
                    _, header, rows = b
                    out.append("| " + " | ".join(_md(h) for h in header) + " |")
                    out.append("|" + "|".join(" --- " for _ in header) + "|")
                    out += ["| " + " | ".join(_md(c) for c in r) + " |" for r in rows]
                    out.append("")
        return "\n".join(out).rstrip() + "\n"

    def to_html(self) -> str:
        e = html.escape
        out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
               f"<title>Model card: {e(self.name)}</title>",
               "<style>body{font-family:sans-serif;max-width:52em;margin:2em auto;line-height:1.4}"
               "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:0.2em 0.6em;"
               "text-align:left}</style>", "</head>", "<body>", f"<h1>Model card: {e(self.name)}</h1>"]
        for heading, blocks in self._sections():
            out.append("<section>")
            out.append(f"<h2>{e(heading)}</h2>")
            for b in blocks:
                if b[0] == "p":
                    out.append(f"<p>{e(str(b[1]))}</p>")
                elif b[0] == "ul":
                    out.append("<ul>" + "".join(f"<li>{e(str(t))}</li>" for t in b[1]) + "</ul>")
                else:
                    _, header, rows = b
                    out.append("<table>")
                    out.append("<thead><tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr></thead>")
                    out.append("<tbody>")
                    out += ["<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows]
                    out.append("</tbody>")
                    out.append("</table>")
            out.append("</section>")
        out += ["</body>", "</html>"]
        return "\n".join(out) + "\n"

    def write(self, path: str | os.PathLike, fmt: str | None = None) -> Path:
        """Write the card atomically: HTML for ``.html``/``.htm`` (or ``fmt="html"``), Markdown otherwise."""
        from ..files import check_file, write_atomic

        target = check_file(path, "model card")
        kind = fmt or ("html" if target.suffix.lower() in (".html", ".htm") else "markdown")
        if kind not in ("html", "markdown"):
            raise AttributeValueError(f"fmt must be 'html' or 'markdown', got {fmt!r}")
        text = self.to_html() if kind == "html" else self.to_markdown()
        return write_atomic(target, text.encode("utf-8"), "model card")


def _md(v: object) -> str:
    """A Markdown-safe cell or line: pipes escaped, newlines folded, HTML-significant characters escaped."""
    return html.escape(str(v), quote=False).replace("|", "\\|").replace("\n", " ")


def _num(v: object) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return "-" if math.isnan(v) else ("inf" if math.isinf(v) else f"{float(v):.4g}")
    return str(v)


def _pct(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{100 * v:.1f}%"


# --------------------------------------------------------------------------- the builder

def deployed_int8(graph: Graph, calibration: np.ndarray) -> Graph:
    """The graph as deployed: BatchNorm folded, activations fused, int8, calibrated on ``calibration``."""
    from ..passes import fold_batchnorm, fuse_activations
    from ..quant import quantize_model

    if graph.is_quantized:
        return graph
    return quantize_model(fuse_activations(fold_batchnorm(graph)), np.asarray(calibration, dtype=np.float32))


def privacy_section(source: Any) -> dict | None:
    """The privacy rows from a DP-SGD history (``recipe["kind"] == "dp-sgd"``), a ``PrivacySpent`` or a dict."""
    if source is None:
        return None
    from ..mlops.accountant import PrivacySpent
    from ..train.fit import History

    if isinstance(source, PrivacySpent):
        return {"mechanism": "DP-SGD (sampled Gaussian mechanism)", "epsilon": source.epsilon,
                "epsilon_classic_conversion": source.epsilon_classic, "delta": source.delta,
                **source.inputs}
    if isinstance(source, History):
        if source.recipe.get("kind") != "dp-sgd":
            raise AttributeValueError("privacy= takes the History of dp_fit (a DP-SGD run); this one is "
                                      f"{source.recipe.get('kind', 'unknown')!r}")
        r, last = source.recipe, source.last
        return {"mechanism": "DP-SGD, per-example clipping, Gaussian noise, Poisson sampling",
                "epsilon": last["epsilon"], "epsilon_classic_conversion": last["epsilon_classic"],
                "delta": r["delta"], "noise_multiplier": r["noise_multiplier"], "clipping_norm": r["max_grad_norm"],
                "sampling_rate": r["sampling_rate"], "steps": last["steps"],
                "accountant": "Rényi DP of the sampled Gaussian mechanism"}
    if isinstance(source, dict):
        return dict(source)
    raise AttributeValueError(f"privacy= takes a dp_fit History, a PrivacySpent or a dict, got {type(source).__name__}")


def build_model_card(graph: Graph, x_test: np.ndarray, y_test: np.ndarray, *, name: str | None = None,
                     intended_use: str, training_data: str, evaluation_data: str | None = None,
                     class_names: Sequence[str] | None = None, groups: Sequence | None = None,
                     group_attribute: str = "group", privacy: Any = None, training: str | None = None,
                     caveats: Sequence[str] = (), calibration: np.ndarray | None = None,
                     planner: str = "greedy-size") -> ModelCard:
    """Measure ``graph`` on ``(x_test, y_test)`` and fill a :class:`ModelCard`.

    Args:
        graph: a float classifier (its int8 deployment is built here) or an int8 one.
        x_test, y_test: evaluation images (real values) and integer labels.
        name: the card's title (default: the graph's name).
        intended_use, training_data: what people must say; evaluation_data: defaults to a count.
        class_names: a name per class for the slices (default: the class index).
        groups: a group label per evaluation example, for the fairness section (None: no section).
        group_attribute: what the groups are, in words.
        privacy: a ``dp_fit`` History, a ``PrivacySpent`` or a dict (None: trained without DP).
        training: how it was trained, in words (optimizer, epochs), for the details table.
        caveats: limitations and recommendations, one per entry.
        calibration: int8 calibration inputs (default: the first 64 evaluation images).
        planner: the memory planner whose arena is the peak SRAM.
    """
    from ..interpreter import Interpreter
    from ..memory import plan
    from .fairness import FairnessReport, per_class_gaps

    for text, what in ((intended_use, "intended_use"), (training_data, "training_data")):
        if not isinstance(text, str) or not text.strip():
            raise AttributeValueError(f"{what} must be a non-empty sentence: a model card states it")
    x = np.asarray(x_test, dtype=np.float32)
    y = np.asarray(y_test)
    if len(x) == 0 or len(x) != len(y):
        raise DataError(f"{len(x)} evaluation inputs and {len(y)} labels; give one label per input, at least one")
    q = deployed_int8(graph, x[:64] if calibration is None else calibration)
    from ..quant.convert import quantize_input

    scores_int8 = Interpreter(q).run(quantize_input(q, x))
    if graph.is_quantized:
        probs = scores_int8
    else:
        from ..train.autodiff import BackwardGraph

        bg = BackwardGraph(graph, trainable=())
        probs = np.concatenate([bg.forward(x[i: i + 256], training=False).values[graph.outputs[0]]
                                for i in range(0, len(x), 256)])
    if probs.ndim != 2:
        raise DataError(f"the model card evaluates classifiers with outputs (N, K); '{graph.name}' gives {probs.shape}")
    pred = probs.argmax(axis=1)
    pred8 = np.asarray(scores_int8).argmax(axis=1)
    k = probs.shape[1]
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    if len(names) != k:
        raise DataError(f"{len(names)} class names for {k} classes")
    slices = []
    for c in range(k):
        m = y == c
        predicted = pred == c
        slices.append({"slice": names[c], "n": int(m.sum()),
                       "accuracy": float((pred[m] == c).mean()) if m.any() else math.nan,
                       "precision": float((y[predicted] == c).mean()) if predicted.any() else math.nan,
                       "int8_accuracy": float((pred8[m] == c).mean()) if m.any() else math.nan})
    recalls = [s["accuracy"] for s in slices if not math.isnan(s["accuracy"])]
    metrics = {"accuracy": float((pred == y).mean()), "int8_accuracy": float((pred8 == y).mean()),
               "int8_agreement_with_float": float((pred8 == pred).mean()),
               "balanced_accuracy": float(np.mean(recalls)), "worst_slice_accuracy": float(np.min(recalls)),
               "examples": int(len(y))}
    arena = plan(q, planner)
    details = {"model": graph.name, "input": "x".join(map(str, graph.input_shape())) + " float32",
               "output": f"{k} class probabilities", "params": int(graph.params), "macs": int(graph.macs),
               "int8_weight_bytes": int(q.weight_bytes), "peak_sram_bytes": int(arena.arena_bytes),
               "planner": planner, "training": training or "not stated"}
    fairness = None
    if groups is not None:
        report = FairnessReport.from_predictions(y, pred, groups, positive=0)
        rows = per_class_gaps(y, pred, groups, classes=list(range(k)))
        for r in rows:
            r["class"] = names[int(r["class"])]
        group_acc = []
        g = np.asarray(groups)
        for gname in report.groups:
            m = g == gname
            group_acc.append({"group": str(gname), "n": int(m.sum()), "accuracy": float((pred[m] == y[m]).mean())})

        def worst(key: str) -> float:
            vals = [r[key] for r in rows if not math.isnan(r[key])]
            return max(vals) if vals else math.nan

        fairness = {"attribute": group_attribute, "groups": group_acc, "per_class": rows,
                    "max_equalized_odds_difference": worst("equalized_odds_difference"),
                    "max_demographic_parity_difference": worst("demographic_parity_difference")}
    return ModelCard(name=name or graph.name, details=details, intended_use=intended_use,
                     training_data=training_data,
                     evaluation_data=evaluation_data or f"{len(y)} held-out examples of {k} classes.",
                     metrics=metrics, slices=slices, fairness=fairness, privacy=privacy_section(privacy),
                     caveats=list(caveats))


__all__ = ["ModelCard", "build_model_card", "deployed_int8", "privacy_section"]
