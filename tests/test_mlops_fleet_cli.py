"""The ``fleet simulate`` verb: tables, JSON equal to the API's report, a figure, and exit 2 on bad input."""

from __future__ import annotations

import json

import pytest

from tinyml_lab.cli import main
from tinyml_lab.mlops.fleet import simulate

SMALL = ["--devices", "6", "--steps", "12", "--t0", "4", "--seed", "2", "--quiet"]


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_is_the_report_of_the_api(capsys):
    code, out, err = run_cli(capsys, "fleet", "simulate", *SMALL, "--drift", "sudden", "--strategy", "canary",
                             "--json")
    assert code == 0, err
    got = json.loads(out)
    want = simulate(devices=6, steps=12, drift="sudden", strategy="canary", seed=2, t0=4).to_json()
    assert got == json.loads(json.dumps(want))
    assert got["summary"]["accuracy_before"] > 0.85 and got["summary"]["accuracy_after_shift"] < 0.5
    assert len(got["accuracy"]) == 12 and len(got["accuracy"][0]) == 6


def test_table_and_figure(capsys, tmp_path):
    png = tmp_path / "fleet.png"
    code, out, err = run_cli(capsys, "fleet", "simulate", *SMALL, "--drift", "gradual", "--strategy", "ab",
                             "--retrain", "full", "--plot", str(png))
    assert code == 0, err
    assert out.startswith("fleet: 6 devices x 12 steps of 8 samples, gradual drift (rotate 30, ramping from step 4")
    for heading in ("shifted", "holdout shifted", "rollbacks", "update energy (radio + device training)"):
        assert heading in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("args, reason", [
    (["--devices", "0"], "number of devices must be an integer >= 1"),
    (["--steps", "-5"], "steps must be an integer >= 1"),
    (["--strategy", "blue-green"], "unknown strategy 'blue-green'; choose one of none, shadow, canary, ab, bandit"),
    (["--drift", "weekly"], "unknown drift 'weekly'"),
    (["--retrain", "half"], "unknown retraining 'half'"),
    (["--tamper-rate", "1"], "tamper_rate must be below 1"),
    (["--devices", "1", "--strategy", "ab"], "needs at least 2"),
    (["--seed", "-1"], "seed must be an int >= 0"),
    (["--shift", "blur"], "unknown shift 'blur'"),
])
def test_bad_input_exits_2_with_one_line(capsys, args, reason):
    code, out, err = run_cli(capsys, "fleet", "simulate", "--quiet", *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("tinyml-lab fleet: ") and reason in err


def test_plot_into_a_missing_folder_fails_before_running(capsys, tmp_path):
    code, out, err = run_cli(capsys, "fleet", "simulate", *SMALL, "--plot", str(tmp_path / "no" / "f.png"))
    assert code == 2 and "does not exist" in err and out == ""


def test_metrics_database(capsys, tmp_path):
    from tinyml_lab.mlops.monitoring import MetricsStore

    db = tmp_path / "fleet.db"
    code, _, err = run_cli(capsys, "fleet", "simulate", "--devices", "2", "--steps", "3", "--drift", "none",
                           "--strategy", "none", "--quiet", "--metrics-db", str(db))
    assert code == 0, err
    with MetricsStore(db) as store:
        assert store.devices() == ["0", "1"] and len(store.window()) == 2 * 3 * 8


def test_help_lists_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["fleet", "simulate", "--help"])
    out = capsys.readouterr().out
    for word in ("sudden", "gradual", "recurring", "shadow", "canary", "bandit", "sparse", "full"):
        assert word in out
