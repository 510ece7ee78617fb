"""The training verbs of the CLI: ``qas`` and ``grad-ratios``."""

from __future__ import annotations

import json

from tinyml_lab.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_grad_ratios_table_json_and_plot(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "grad-ratios", "--plot", str(tmp_path / "r.png"))
    assert code == 0 and "int8 + QAS" in out and "conv1/weight" in out
    assert (tmp_path / "r.png").stat().st_size > 1000
    code, out, _ = run_cli(capsys, "grad-ratios", "--json", "--bias")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 10 and {"fp32", "int8", "int8_qas"} <= set(rows[0])


def test_qas_table_with_a_fixed_learning_rate(capsys):
    code, out, _ = run_cli(capsys, "qas", "--seeds", "0", "--epochs", "1", "--lr", "0.03", "--last-k", "1",
                           "--quiet")
    assert code == 0
    assert "int8 SGD-M + QAS" in out and "last 1 layer(s)" in out
    code, out, _ = run_cli(capsys, "qas", "--sweep", "int8 SGD-M", "--lr-values", "0.03", "--epochs", "1",
                           "--json")
    assert code == 0 and json.loads(out)[0]["update_zero_fraction"] > 0.99


def test_qas_bad_input_exits_2(capsys):
    code, _, err = run_cli(capsys, "qas", "--epochs", "0", "--lr", "0.1", "--seeds", "0", "--quiet")
    assert code == 2 and "epochs must be an int >= 1" in err
    code, _, err = run_cli(capsys, "qas", "--last-k", "9", "--lr", "0.1", "--seeds", "0", "--quiet")
    assert code == 2 and "conv/dense layers" in err
