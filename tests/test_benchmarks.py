"""Benchmark scripts that ship with the results they produced run end to end with tiny settings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("options, activations, trunk_end", [
    (["--sequence", "pyro", "--aux-separate", "--momentum-step", "--grey", "--softplus"], ["ReLU", "Softplus"], "ReLU"),
    (["--sequence", "pyro"], ["ReLU"], "ReLU"),
    (["--sequence", "joint", "--labels", "300", "--softplus", "--trunk-end", "softplus"], ["Softplus"], "Softplus"),
])
def test_pyro_step_sequence_runs_and_records_every_epoch(options, activations, trunk_end, shared_data_dir, tmp_path):
    out = tmp_path / "run.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pyro_step_sequence.py"), *options, "--epochs", "2",
                    "--max-unlabelled", "300", "--data-dir", shared_data_dir, "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=300)
    record = json.loads(out.read_text())
    assert [r["epoch"] for r in record["log"]] == [1, 2]
    assert all(0 <= r["val"] <= 1 and 0 <= r["test"] <= 1 for r in record["log"])
    assert record["args"]["sequence"] == options[1] and "cpu" in json.dumps(record["hardware"]).lower()
    # The networks that ran, not just the options asked for: --softplus once silently did nothing.
    assert record["networks"] == {"activations": activations, "q(z|x,y) last hidden layer": trunk_end}


def test_pyro_step_sequence_refuses_a_trunk_end_without_softplus(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pyro_step_sequence.py"), "--trunk-end",
                             "softplus", "--out", str(tmp_path / "run.json")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "needs --softplus" in result.stderr
    assert not (tmp_path / "run.json").exists()
