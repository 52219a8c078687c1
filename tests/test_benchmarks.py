"""Benchmark scripts that ship with the results they produced run end to end with tiny settings."""

import json
import os
import subprocess
import sys
import tarfile
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


def test_gpu_session_script_measures_and_trains_end_to_end_in_smoke_mode(shared_data_dir, tmp_path):
    """benchmarks/gpu_session.sh is what a session with a lent GPU runs: every step of it, on the CPU."""
    env = dict(os.environ, DEVICE="cpu", SMOKE="1", WORK=str(tmp_path), DATA_DIR=shared_data_dir, THREADS="1",
               JOBS="2", START_WAIT="0", POLL_SECONDS="300",
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    script = ["bash", str(ROOT / "benchmarks" / "gpu_session.sh")]
    subprocess.run([*script, "start"], env={**env, "OUT": str(tmp_path / "start")}, cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=600)
    start = tmp_path / "start"
    assert "passed" in (start / "cuda-tests.txt").read_text()
    assert "m2" in (start / "throughput-cpu.txt").read_text()
    plain = json.loads((start / "plain-pytorch-cpu.json").read_text())
    assert [r["model"] for r in plain["results"]] == ["m2", "gmdgm"]
    assert all(r["ratio"] > 0 and r["ratio_jit"] > 0 for r in plain["results"])
    assert "(traced)" in (start / "throughput-cpu-jit.txt").read_text()
    # The training went on after `start` returned; `poll` waits for it and brings back every run.
    subprocess.run([*script, "poll"], env={**env, "OUT": str(tmp_path / "poll")}, cwd=ROOT, check=True,
                   capture_output=True, text=True, timeout=600)
    poll = tmp_path / "poll"
    assert int((poll / "wall.txt").read_text().split(":")[1].split()[0]) >= 0
    progress = (poll / "progress.txt").read_text()
    assert "m2-sus-seed0: 1 epochs" in progress and "gm-dgm-sus-seed0: 1 epochs" in progress
    with tarfile.open(poll / "table2.tar.gz") as bundle:
        names = bundle.getnames()
        run = json.load(bundle.extractfile("runs/willetts-table2-mnist/runs/m2-sus-seed0/run.json"))
    for run_name in ("m2-sus-seed0", "gm-dgm-sus-seed0"):
        assert f"runs/willetts-table2-mnist/runs/{run_name}/results.json" in names
    assert "runs/willetts-table2-mnist/summary.json" in names
    assert run["train"]["jit"] is True  # JIT defaults to 1


def test_zoo_script_trains_its_variants_and_names_them_by_their_options(tmp_path):
    """benchmarks/zoo.py (RESULTS' zoo tables): each variant's options reach the model, the
    labelled-only classifier runs without a z, and the table names a variant by every option it sets."""
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "zoo.py"), "digits-sus", "--epochs", "1",
                             "--models", "catvae-released", "classifier", "--out", str(tmp_path)],
                            check=True, capture_output=True, text=True, timeout=600)
    released = json.loads((tmp_path / "catvae-released-seed0" / "results.json").read_text())
    assert released["model_options"]["normalise_losses"] is False
    assert released["model_options"]["gaussian_dim"] == 150
    assert (tmp_path / "classifier-seed0" / "results.json").is_file()
    rows = {line.split(" | ")[0].lstrip("| ") for line in result.stdout.splitlines() if "| digits |" in line}
    assert "classifier" in rows
    assert any("normalise_losses=False" in row and "gaussian_dim=150" in row for row in rows), rows
