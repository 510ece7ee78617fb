"""Model cards: the numbers come from the engine, the HTML is well-formed and escaped, files are written whole."""

from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pytest

from tinyml_lab import zoo
from tinyml_lab.data import load_digits
from tinyml_lab.data.digits import apply_shift
from tinyml_lab.errors import AttributeValueError, DataError, FileFormatError
from tinyml_lab.memory import plan
from tinyml_lab.mlops.accountant import epsilon as dp_epsilon
from tinyml_lab.mlops.model_card import build_model_card, deployed_int8
from tinyml_lab.train import evaluate

VOID = {"meta", "br", "hr", "img", "link", "input"}


class Checker(HTMLParser):
    """Records every start tag, checks that every element is closed in order, collects the text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: list[str] = []
        self.errors: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def card_and_inputs():
    d = load_digits(16)
    g = zoo.get("digits-cnn")
    n = 150
    x = np.concatenate([d.x_test[:n], apply_shift(d.x_test[:n], "noise", 0.2, seed=0)])
    y = np.concatenate([d.y_test[:n], d.y_test[:n]])
    groups = ["clean"] * n + ["sensor noise"] * n
    spent = dp_epsilon(0.05, 1.1, 400, 1e-5)
    card = build_model_card(g, x, y, intended_use="Teaching: <script>alert(1)</script> & friends",
                            training_data="scikit-learn digits | 16x16", groups=groups,
                            group_attribute="capture condition", privacy=spent,
                            caveats=["Not for <b>handwriting</b> in the wild", "8x8 originals upscaled"])
    return card, g, x, y, groups


def test_numbers_are_the_engines(card_and_inputs):
    card, g, x, y, _ = card_and_inputs
    q = deployed_int8(g, x[:64])
    d = card.details
    assert d["params"] == g.params == 2570 and d["macs"] == g.macs
    assert d["int8_weight_bytes"] == q.weight_bytes
    assert d["peak_sram_bytes"] == plan(q, "greedy-size").arena_bytes
    assert card.metrics["accuracy"] == pytest.approx(evaluate(g, x, y)["accuracy"])
    assert card.metrics["int8_accuracy"] == pytest.approx(evaluate(q, x, y)["accuracy"])
    assert sum(s["n"] for s in card.slices) == len(y) == card.metrics["examples"]
    # per-slice accuracy is that class's recall
    for c, s in enumerate(card.slices):
        m = y == c
        assert s["accuracy"] == pytest.approx(evaluate(g, x[m], y[m])["accuracy"])
    md = card.to_markdown()
    for number in (f"{g.params:,}", f"{g.macs:,}", f"{q.weight_bytes:,} bytes", f"{d['peak_sram_bytes']:,} bytes",
                   f"{card.metrics['accuracy']:.4g}"):
        assert number in md


def test_fairness_and_privacy_sections(card_and_inputs):
    card, g, x, y, groups = card_and_inputs
    f = card.fairness
    assert [r["group"] for r in f["groups"]] == ["clean", "sensor noise"]
    clean = np.asarray(groups) == "clean"
    assert f["groups"][0]["accuracy"] == pytest.approx(evaluate(g, x[clean], y[clean])["accuracy"])
    assert f["groups"][0]["accuracy"] > f["groups"][1]["accuracy"]  # noise hurts: the card shows the gap
    assert f["max_equalized_odds_difference"] == max(r["equalized_odds_difference"] for r in f["per_class"])
    spent = dp_epsilon(0.05, 1.1, 400, 1e-5)
    assert card.privacy["epsilon"] == spent.epsilon and card.privacy["delta"] == 1e-5
    md = card.to_markdown()
    assert "## Fairness" in md and "## Privacy" in md and f"{spent.epsilon:.4g}" in md


def test_html_is_well_formed_and_escaped(card_and_inputs, tmp_path):
    card = card_and_inputs[0]
    page = card.to_html()
    p = Checker()
    p.feed(page)
    p.close()
    assert not p.errors and not p.stack
    assert "script" not in p.tags and "b" not in p.tags  # user text never becomes markup
    text = "".join(p.text)
    assert "<script>alert(1)</script> & friends" in text and "<b>handwriting</b>" in text
    assert p.tags.count("table") == 6  # details, metrics, slices, fairness groups and gaps, privacy
    out = card.write(tmp_path / "card.html")
    assert out.read_text(encoding="utf-8") == page
    md = card.write(tmp_path / "card.md")
    assert md.read_text(encoding="utf-8") == card.to_markdown()
    assert "\\|" in card.to_markdown()  # the pipe in the training data does not break the table
    assert sorted(q.name for q in tmp_path.iterdir()) == ["card.html", "card.md"]  # no temporary file left


def test_privacy_from_a_dp_fit_history_and_bad_input(tmp_path):
    from tinyml_lab.graph import GraphBuilder
    from tinyml_lab.train.dpsgd import dp_fit

    b = GraphBuilder("small", seed=0)
    i = b.input((8, 8, 1))
    g = b.build(b.softmax(b.dense(b.flatten(i), 10, name="fc"), name="sm"))
    d = load_digits(8)
    h = dp_fit(g, d.x_train[:100], d.y_train[:100], noise_multiplier=1.0, max_grad_norm=1.0, sampling_rate=0.1,
               steps=3, lr=0.5, seed=0)
    card = build_model_card(g, d.x_test[:50], d.y_test[:50], intended_use="tests", training_data="digits 8x8",
                            privacy=h)
    assert card.privacy["epsilon"] == h.last["epsilon"] and card.privacy["noise_multiplier"] == 1.0
    assert card.fairness is None and "## Fairness" not in card.to_markdown()
    with pytest.raises(AttributeValueError, match="intended_use"):
        build_model_card(g, d.x_test[:5], d.y_test[:5], intended_use=" ", training_data="x")
    with pytest.raises(DataError, match="one label per input"):
        build_model_card(g, d.x_test[:5], d.y_test[:4], intended_use="x", training_data="x")
    with pytest.raises(FileFormatError, match="does not exist"):
        card.write(tmp_path / "missing" / "card.md")
