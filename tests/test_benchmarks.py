"""Benchmark scripts that ship with the results they produced run end to end with tiny settings."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("options", [["--sequence", "pyro", "--aux-separate", "--momentum-step", "--grey", "--softplus"],
                                     ["--sequence", "pyro"], ["--sequence", "joint", "--labels", "300"]])
def test_pyro_step_sequence_runs_and_records_every_epoch(options, shared_data_dir, tmp_path):
    out = tmp_path / "run.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pyro_step_sequence.py"), *options, "--epochs", "2",
                    "--max-unlabelled", "300", "--data-dir", shared_data_dir, "--out", str(out)],
                   check=True, capture_output=True, text=True, timeout=300)
    record = json.loads(out.read_text())
    assert [r["epoch"] for r in record["log"]] == [1, 2]
    assert all(0 <= r["val"] <= 1 and 0 <= r["test"] <= 1 for r in record["log"])
    assert record["args"]["sequence"] == options[1] and "cpu" in json.dumps(record["hardware"]).lower()
