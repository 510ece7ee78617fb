"""The plan verb: table, JSON, patches and the picture."""

from __future__ import annotations

import json

import pytest

from tinyml_lab.cli import main


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_table_lists_every_planner_and_the_bound(capsys):
    code, out, _ = run(capsys, "plan", "kws-dscnn", "--time-limit", "2")
    assert code == 0
    for name in ("no-reuse", "linear", "greedy-size", "greedy-breadth", "exact", "lower bound"):
        assert name in out
    assert "16,000" in out and "x lower bound" in out and "time limit 2.0 s" in out


def test_plan_json_with_patches_and_plot(capsys, tmp_path):
    png = tmp_path / "arena.png"
    code, out, _ = run(capsys, "plan", "vww-mobilenetv1", "--planner", "greedy-size", "--patches", "4",
                       "--plot", str(png), "--json")
    assert code == 0 and png.stat().st_size > 1000
    d = json.loads(out)
    assert d["lower_bound_bytes"] == 55296 and d["planners"] == {"greedy-size": 64512}
    assert d["peak_bytes_unpatched"] == 55296 and d["peak_bytes_patched"] < 55296 and d["extra_macs"] > 0


def test_plan_inplace_and_float(capsys):
    code, out, _ = run(capsys, "plan", "mobilenetv2", "--planner", "greedy-size", "--inplace", "--json")
    assert code == 0 and json.loads(out)["planners"]["greedy-size"] == 229376
    code, out, _ = run(capsys, "plan", "digits-cnn", "--planner", "no-reuse", "--float", "--json")
    assert code == 0 and json.loads(out)["dtype"] == "float32"


@pytest.mark.parametrize("args,message", [
    (["plan", "ad-autoencoder", "--patches", "2"], "no place to end a first stage"),
    (["plan", "digits-cnn", "--alignment", "0"], "alignment must be a positive"),
    (["plan", "digits-cnn", "--plot", "/no/such/dir/a.png"], "does not exist"),
])
def test_plan_bad_input_exits_2(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
