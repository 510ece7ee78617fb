"""The ``dp`` and ``card`` verbs: tables, JSON, files, and exit status 2 with one line on bad input."""

from __future__ import annotations

import json

import pytest

from tinyml_lab.cli import main
from tinyml_lab.mlops.accountant import epsilon


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_dp_epsilon_json(capsys):
    code, out, err = run(capsys, "dp", "epsilon", "--q", "0.01", "--sigma", "4", "--steps", "10000",
                         "--delta", "1e-5", "--json")
    assert code == 0 and err == ""
    data = json.loads(out)
    spent = epsilon(0.01, 4.0, 10000, 1e-5)
    assert data["epsilon"] == spent.epsilon and data["epsilon_classic"] == spent.epsilon_classic
    assert data["order"] == spent.order
    assert (data["q"], data["sigma"], data["steps"], data["delta"]) == (0.01, 4.0, 10000, 1e-5)
    assert abs(data["epsilon_classic"] - 1.26) / 1.26 < 0.01  # Abadi et al. 2016, Section 3.1


def test_dp_epsilon_table(capsys):
    code, out, _ = run(capsys, "dp", "epsilon", "--q", "0.0042667", "--sigma", "1.12", "--steps", "14040")
    assert code == 0
    assert "improved" in out and "classic" in out and "2.92" in out  # the TensorFlow Privacy tutorial's figure


def test_dp_noise_inverts(capsys):
    code, out, _ = run(capsys, "dp", "noise", "--epsilon", "1.0", "--q", "0.01", "--steps", "1000", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["epsilon"] <= 1.0 and epsilon(0.01, data["sigma"] * 0.99, 1000, 1e-5).epsilon > 1.0 - 0.02


@pytest.mark.parametrize("argv, words", [
    (["--q", "0", "--sigma", "1", "--steps", "10"], "sampling rate q"),
    (["--q", "1.5", "--sigma", "1", "--steps", "10"], "sampling rate q"),
    (["--q", "0.1", "--sigma", "-1", "--steps", "10"], "noise multiplier"),
    (["--q", "0.1", "--sigma", "1", "--steps", "0"], "steps"),
    (["--q", "0.1", "--sigma", "1", "--steps", "10", "--delta", "1"], "delta"),
    (["--q", "0.1", "--sigma", "1", "--steps", "10", "--delta", "0"], "delta"),
])
def test_bad_input_exits_2_with_one_line(capsys, argv, words):
    code, out, err = run(capsys, "dp", "epsilon", *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and words in err and err.startswith("tinyml-lab dp:")


def test_card_writes_markdown_and_html(capsys, tmp_path):
    md = tmp_path / "card.md"
    code, out, err = run(capsys, "card", "digits-cnn", "-o", str(md))
    assert code == 0, err
    text = md.read_text(encoding="utf-8")
    assert "# Model card: digits-cnn-16" in text and "2,570" in text and "## Fairness" in text
    assert "written to" in out
    page = tmp_path / "card.html"
    code, out, _ = run(capsys, "card", "digits-cnn", "-o", str(page), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["details"]["params"] == 2570 and data["written"] == str(page)
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_card_bad_input(capsys, tmp_path):
    code, _, err = run(capsys, "card", "kws-dscnn", "-o", str(tmp_path / "c.md"))
    assert code == 2 and "digits" in err and err.count("\n") == 1
    code, _, err = run(capsys, "card", "digits-cnn", "-o", str(tmp_path / "nope" / "c.md"))
    assert code == 2 and "does not exist" in err
