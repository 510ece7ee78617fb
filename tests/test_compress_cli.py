"""``tinyml-lab prune``: unstructured and structured, the storage table, and bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tinyml_lab import Graph
from tinyml_lab.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_unstructured_prune_reports_sparse_storage(capsys, tmp_path):
    out = tmp_path / "p.npz"
    code, text, _ = run_cli(capsys, "prune", "digits-cnn", "--sparsity", "0.5", "-o", str(out), "--json")
    assert code == 0
    d = json.loads(text)
    assert d["macs_after"] == d["macs_before"] and d["params_after"] == d["params_before"]
    assert d["bitmask_bytes"] < d["csr_bytes"] < d["dense_bytes"] == d["bytes_before"]
    assert all(abs(x["sparsity"] - 0.5) < 0.01 for x in d["layers"])
    assert d["pruned_accuracy"] < d["float_accuracy"] and d["fine_tuned_accuracy"] is None
    g = Graph.load(out)
    assert np.mean(g.tensors["conv2/weight"].data == 0) == 0.5


def test_structured_prune_with_fine_tuning(capsys, tmp_path):
    out = tmp_path / "small.npz"
    code, text, _ = run_cli(capsys, "prune", "digits-cnn", "--sparsity", "0.5", "--structured", "--fine-tune", "3",
                            "-o", str(out), "--json")
    assert code == 0
    d = json.loads(text)
    assert d["macs_after"] == 31008 and d["macs_before"] == 102976
    assert d["fine_tuned_accuracy"] > d["pruned_accuracy"]
    assert {"name": "conv1", "channels_before": 8, "channels_after": 4} in d["layers"]
    assert Graph.load(out).macs == 31008
    code, table, _ = run_cli(capsys, "prune", "digits-cnn", "--sparsity", "0.25", "--structured", "-o", str(out))
    assert code == 0 and "MACs" in table and "not pruned: 'fc'" in table


@pytest.mark.parametrize("args, message", [
    (["--sparsity", "1.0"], "[0, 1)"),
    (["--sparsity", "-0.2"], "[0, 1)"),
    (["--sparsity", "0.5", "--fine-tune", "-1"], "--fine-tune"),
])
def test_bad_input_exits_2_and_leaves_no_file(capsys, tmp_path, args, message):
    code, _, err = run_cli(capsys, "prune", "digits-cnn", *args, "-o", str(tmp_path / "p.npz"))
    assert code == 2 and message in err
    assert os.listdir(tmp_path) == []


def test_fine_tuning_needs_a_data_set(capsys, tmp_path):
    code, _, err = run_cli(capsys, "prune", "kws-dscnn", "--sparsity", "0.5", "--fine-tune", "1",
                           "-o", str(tmp_path / "p.npz"))
    assert code == 2 and "no" in err and os.listdir(tmp_path) == []
