"""Benchmark scripts that ship with the results they produced run end to end with tiny settings."""

import importlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _benchmark_module(name: str):
    """Import benchmarks/NAME.py (the folder is scripts, not a package)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


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


def _gpu_session(tmp_path: Path, data_dir: str, out: str, state: Path, *options: str) -> list[dict]:
    """One call of benchmarks/gpu_session.py on the CPU (smoke runs); returns its sessions.json."""
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_session.py"), "session", "--device", "cpu",
                    "--smoke", "--threads", "1", "--jobs", "2", "--data-dir", data_dir, "--work", str(tmp_path / "work"),
                    "--state", str(state), "--out", str(tmp_path / out), "--wheels", str(tmp_path / "no-wheels"),
                    "--anchor", str(ROOT.parent / "shared" / "bench" / "plain_stacked_step.py"), "--seeds", "2",
                    *options],
                   check=True, capture_output=True, text=True, timeout=600)
    with tarfile.open(tmp_path / out / "state-0.tar") as bundle:
        return json.load(bundle.extractfile("sessions.json"))


def test_gpu_session_stops_its_runs_in_time_and_the_next_call_resumes_them(shared_data_dir, tmp_path):
    """benchmarks/gpu_session.py is what a call with a lent GPU runs: every step of it, on the CPU.
    The first call measures, trains, stops the runs (here at epoch 2 of 5) and brings back their
    state; the second, on a fresh machine (its work folder deleted), carries that state in and
    resumes every run to the end."""
    first = _gpu_session(tmp_path, shared_data_dir, "call1", tmp_path / "nothing-yet", "--epochs", "5",
                         "--stop-at-epoch", "2")
    assert len(first) == 1 and not first[0]["finished"]
    call1 = tmp_path / "call1"
    assert "calls: 1" in (call1 / "progress.txt").read_text()
    states = sorted(call1.glob("state-*.tar"))
    names = [name for state in states for name in tarfile.open(state).getnames()]
    runs = "runs/willetts-table2-mnist/runs"
    for run_name in ("m2-sus-seed0", "gm-dgm-sus-seed0"):
        assert f"{runs}/{run_name}/last.pt" in names
        # Scored where it stopped, as a snapshot of its 5-epoch schedule (reproduce --stop-after).
        snapshot = json.load(next(tarfile.open(s).extractfile(f"{runs}/{run_name}/results.json") for s in states
                                  if f"{runs}/{run_name}/results.json" in tarfile.open(s).getnames()))
        assert snapshot["snapshot"] == {"epoch": 2, "of": 5}
    before = next(tarfile.open(s).extractfile(f"{runs}/m2-sus-seed0/metrics.jsonl") for s in states
                  if f"{runs}/m2-sus-seed0/metrics.jsonl" in tarfile.open(s).getnames()).read().decode().splitlines()
    assert "passed" in tarfile.open(states[0]).extractfile("measure/cuda-tests.txt").read().decode()
    assert "m2" in tarfile.open(states[0]).extractfile("measure/throughput-cpu.txt").read().decode()
    assert "(traced)" in tarfile.open(states[0]).extractfile("measure/throughput-cpu-jit.txt").read().decode()
    plain = json.load(tarfile.open(states[0]).extractfile("measure/plain-pytorch-cpu.json"))
    assert [r["model"] for r in plain["results"]] == ["m2", "gmdgm"]
    assert all(r["ratio"] > 0 and r["ratio_jit"] > 0 for r in plain["results"])
    paired = json.load(tarfile.open(states[0]).extractfile("measure/paired-cpu-bf16.json"))
    assert paired["settings"]["precision"] == "bf16" and paired["results"][0]["ratio"] > 0
    assert "m2" in tarfile.open(states[0]).extractfile("measure/throughput-cpu-bf16.txt").read().decode()
    # The light records come back on their own, before the state: every run's records, no weights.
    with tarfile.open(call1 / "records.tar") as records:
        light = records.getnames()
        stacked = json.load(records.extractfile("measure/stacked-steps-cpu.json"))
        anchor = records.extractfile("measure/plain-stacked-anchor-cpu.txt").read().decode()
        reads = json.load(records.extractfile("measure/host-reads-cpu.json"))["steps"]
        run_info = json.load(records.extractfile(f"{runs}/gm-dgm-sus-seed1/run.json"))
    assert not any(name.endswith(".pt") for name in light)
    assert {f"{runs}/m2-sus-seed{s}/metrics.jsonl" for s in range(2)} <= set(light)
    assert [r["members"] for r in stacked["rows"]] == [None, 1, 2] and stacked["rows"][2]["seconds_per_step"] > 0
    assert '"E": 2' in anchor
    assert reads["m2, alone, eager"]["capture"] == "not attempted: no CUDA device"
    assert any("compute_expectation" in row["asked_by"] for row in reads["m2, stacked x2, eager"]["reads"])
    assert run_info["train"]["seed"] == 1

    shutil.rmtree(tmp_path / "work")  # a fresh machine
    second = _gpu_session(tmp_path, shared_data_dir, "call2", call1, "--epochs", "5")
    assert [s["finished"] for s in second] == [False, True] and second[1]["state_files_carried_in"] == len(states)
    with tarfile.open(tmp_path / "call2" / "state-0.tar") as bundle:
        names = bundle.getnames()
        metrics = bundle.extractfile(f"{runs}/m2-sus-seed0/metrics.jsonl").read().decode().splitlines()
        run = json.load(bundle.extractfile(f"{runs}/m2-sus-seed0/run.json"))
    assert [json.loads(line)["epoch"] for line in metrics] == list(range(1, 6))
    # Resumed, not started over: epoch 1 (checkpointed before the stop) is the first call's, its time too.
    assert metrics[0] == before[0]
    assert f"{runs}/gm-dgm-sus-seed0/results.json" in names
    assert not any(name.endswith((".pt", ".tmp")) for name in names)  # a finished run's weights stay behind
    assert run["train"]["jit"] is True  # the default
    assert "runs/willetts-table2-mnist/summary.json" in names
    assert "measure/cuda-tests.txt" in names  # measured once, carried on


def test_gpu_session_state_fits_the_files_a_call_brings_back(tmp_path):
    """The state is split into files of at most the size given, a run folder never split in two;
    a run stopped before its first checkpoint and a cut-short atomic write are left behind."""
    gpu_session = _benchmark_module("gpu_session")
    pack_state, unpack_state = gpu_session.pack_state, gpu_session.unpack_state
    work = tmp_path / "work"
    runs = work / "runs" / "willetts-table2-mnist" / "runs"
    for name in ("a-seed0", "b-seed0", "c-seed0"):
        (runs / name).mkdir(parents=True)
        (runs / name / "last.pt").write_bytes(os.urandom(8000))
        (runs / name / "metrics.jsonl").write_text("{}\n")
    (runs / "a-seed0" / ".last.pt.x1.tmp").write_bytes(os.urandom(600))
    (runs / "c-seed0" / "results.json").write_text("{}")  # finished: its weights stay behind
    (runs / "c-seed0" / "final.pt").write_bytes(os.urandom(600))
    (runs / "d-seed0").mkdir()
    (runs / "d-seed0" / "run.json").write_text("{}")  # stopped before its first checkpoint
    (work / "sessions.json").write_text("[]")
    paths = pack_state(work, tmp_path / "out", max_bytes=20480)
    assert len(paths) == 2 and all(p.stat().st_size <= 20480 for p in paths)  # a and b do not fit one file
    unpack_state(tmp_path / "out", tmp_path / "again")
    kept = sorted(str(p.relative_to(tmp_path / "again")) for p in (tmp_path / "again").rglob("*") if p.is_file())
    prefix = "runs/willetts-table2-mnist/runs/"
    assert kept == [prefix + "a-seed0/last.pt", prefix + "a-seed0/metrics.jsonl", prefix + "b-seed0/last.pt",
                    prefix + "b-seed0/metrics.jsonl", prefix + "c-seed0/metrics.jsonl",
                    prefix + "c-seed0/results.json", "sessions.json"]
    assert (tmp_path / "again" / prefix / "a-seed0" / "last.pt").read_bytes() == (runs / "a-seed0" / "last.pt").read_bytes()
    with pytest.raises(ValueError, match="more than the 1 a call brings back"):
        pack_state(work, tmp_path / "out2", max_bytes=20480, max_files=1)


def test_zoo_runs_on_the_sweep_runner_and_the_table_names_each_variant_by_its_options(tmp_path):
    """The zoo (RESULTS' zoo tables) is an experiment like the papers' (pyro_sus.experiments.zoo):
    each variant's options reach the model, the labelled-only classifier runs without a z, and
    summarize_runs.py names a variant by every option it sets."""
    from pyro_sus.reproduce import reproduce

    summary, statuses = reproduce("zoo-digits-sus", tmp_path, rows=["catvae-released", "classifier"], epochs=1,
                                  device="cpu", threads=1)
    assert set(statuses.values()) == {0} and [r["row"] for r in summary["rows"]] == ["classifier", "catvae-released"]
    assert all(m["paper_mean"] is None and m["difference"] is None for m in summary["rows"][1]["metrics"].values())
    runs = tmp_path / "zoo-digits-sus" / "runs"
    released = json.loads((runs / "catvae-released-seed0" / "results.json").read_text())
    assert released["model_options"]["normalise_losses"] is False
    assert released["model_options"]["gaussian_dim"] == 150
    assert "z_dim" not in json.loads((runs / "classifier-seed0" / "results.json").read_text())["model_options"]
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "summarize_runs.py"), *map(str, runs.iterdir())],
                            check=True, capture_output=True, text=True, timeout=120)
    rows = {line.split(" | ")[0].lstrip("| ") for line in result.stdout.splitlines() if "| digits |" in line}
    assert "classifier" in rows
    assert any("normalise_losses=False" in row and "gaussian_dim=150" in row for row in rows), rows



def test_kmeans_beside_a_recorded_summary_fits_the_runs_own_split(tmp_path):
    """benchmarks/kmeans_baselines.py --summary: for runs kept only as records (results.json per row and
    seed, and the summary), the baseline it fits from the row's plan is the one the reproduce job fitted
    on the run's split.npz (same accuracy), and the summary's margin is the one aggregate computed."""
    from pyro_sus.reproduce import reproduce

    summary, statuses = reproduce("zoo-digits-sus", tmp_path / "out", rows=["classifier"], epochs=1, device="cpu",
                                  threads=1)
    assert set(statuses.values()) == {0}
    run_dir = tmp_path / "out" / "zoo-digits-sus" / "runs" / "classifier-seed0"
    records = tmp_path / "records"
    records.mkdir()
    for name in ("results.json", "run.json"):
        shutil.copy(run_dir / name, records / f"classifier-seed0-{name}")
    expected = summary["rows"][0]["kmeans"]
    summary["rows"][0]["kmeans"] = None
    (records / "summary.json").write_text(json.dumps(summary))

    module = _benchmark_module("kmeans_baselines")
    again = module.baselines_beside_summary(records / "summary.json", str(tmp_path))
    fitted = json.loads((records / "classifier-seed0-kmeans-results.json").read_text())
    reference = json.loads((run_dir / "baselines" / "kmeans" / "results.json").read_text())
    assert fitted["test"]["accuracy"] == reference["test"]["accuracy"]
    assert again["rows"][0]["kmeans"] == pytest.approx(expected)
    assert json.loads((records / "summary.json").read_text())["rows"][0]["kmeans"] == pytest.approx(expected)
    # A recorded run.json whose split the row no longer makes is refused, not silently replaced.
    (records / "classifier-seed0-kmeans-results.json").unlink()
    spec = json.loads((records / "classifier-seed0-run.json").read_text())
    spec["split"]["seed"] = 7
    (records / "classifier-seed0-run.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="split, preprocessing or seed differ"):
        module.baselines_beside_summary(records / "summary.json", str(tmp_path))

@pytest.mark.parametrize("setting", ["digits-sus", "mnist-100"])
def test_the_zoo_experiments_replay_the_options_of_the_recorded_zoo_runs(setting):
    """Every run recorded in docs/results/zoo-SETTING/ (made with the zoo's former script) has a row
    in the experiment zoo-SETTING with the same model, model options and split."""
    import pyro_sus.experiments  # noqa: F401
    from pyro_sus.tables import get_experiment

    experiment = get_experiment(f"zoo-{setting}")
    records = sorted((ROOT / "docs" / "results" / f"zoo-{setting}").glob("*-seed0.json"))
    assert records
    for record in records:
        results = json.loads(record.read_text())
        row = experiment.row(record.name[: -len("-seed0.json")])
        # These runs (2026-11) trained the paper's objective under the name it had until 2026-12-05.
        model = "catvae-paper" if results["model"] == "catvae" and "normalise_losses" not in results[
            "model_options"] else results["model"]
        assert (row.model, row.fit["model_options"]) == (model, results["model_options"]), record.name
        assert sorted(row.fit.get("hidden_classes", [])) == results["hidden_classes"]
        assert len(results["known_classes"]) + row.fit.get("extra_slots", 0) == results["n_slots"]


def test_paired_process_times_both_arms_in_their_own_processes(tmp_path):
    """benchmarks/paired_process.py: a baseline and a candidate child per round, a ratio and the
    fraction of the matmul rate for each arm, the candidate's allocator setting recorded."""
    out = tmp_path / "paired.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "paired_process.py"), "--models", "m2", "--hidden", "20",
                    "20", "--rounds", "1", "--steps", "1", "--out", str(out)], check=True, capture_output=True)
    report = json.loads(out.read_text())
    (result,) = report["results"]
    assert result["candidate"] == {"precision": "bf16", "before": False, "allocator": "retained"}
    assert len(result["times"]["baseline"]) == len(result["times"]["candidate"]) == 1 and result["ratio"] > 0
    # The old step concatenates x to every slot's one-hot y: more matmul work than the new one.
    flops = result["matmul_gflop_per_step"]
    assert flops["baseline"] > flops["candidate"] > 0
    assert set(result["fraction_of_matmul_rate"]) == {"baseline", "candidate"}


def test_profile_step_prints_the_ops_table():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_step.py"), "--hidden", "20", "20",
                             "--steps", "1", "--rows", "5"], check=True, capture_output=True, text=True)
    assert "## m2, bf16, 20-20, 1 steps" in result.stdout and "aten::" in result.stdout


# A stand-in for Pyro's examples/vae/ss_vae_M2.py with the same outside dependencies (visdom, a
# `utils` package beside it, pyro's MNIST and get_data_directory, a pyro version assert) and the same
# log lines. Its "accuracies" report what it saw, so the test can check the harness fed it the files.
FAKE_PEER_SCRIPT = '''
import sys
from visdom import Visdom
from utils.helper import EPOCHS
import pyro
from pyro.contrib.examples.util import MNIST, get_data_directory, print_and_log
if __name__ == "__main__":
    assert pyro.__version__.startswith("0.0.1")
    log = sys.argv[sys.argv.index("-log") + 1]
    test = MNIST(root=get_data_directory(__file__), train=False, download=True)
    with open(log, "w") as logger:
        for epoch in range(EPOCHS):
            print_and_log(logger, "{} epoch: avg losses 1.5 2.5 validation accuracy {} test accuracy {}".format(
                epoch, len(test) / 100000, int(test.targets[0]) / 10))
        print_and_log(logger, "best validation accuracy 0.1 corresponding testing accuracy 0.7 "
                              "last testing accuracy 0.7")
'''


def _fake_peer(tmp_path: Path) -> Path:
    script = tmp_path / "vae" / "ss_vae_M2.py"
    (script.parent / "utils").mkdir(parents=True)
    (script.parent / "utils" / "helper.py").write_text("EPOCHS = 2\n")
    script.write_text(FAKE_PEER_SCRIPT)
    return script


def _harness(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pyro_peer_ss_vae.py"), *args],
                          capture_output=True, text=True, timeout=300)


def test_pyro_peer_harness_feeds_the_local_files_and_records_the_log(shared_data_dir, tmp_path):
    """benchmarks/pyro_peer_ss_vae.py: the script sees the local MNIST test set, nothing is fetched."""
    pytest.importorskip("torchvision")  # optional for pyro_sus; Pyro's MNIST loader needs it
    script, out = _fake_peer(tmp_path), tmp_path / "out"
    result = _harness("--script", str(script), "--data-dir", shared_data_dir, "--out", str(out),
                      "--allow-version-mismatch", "--", "-n", "2")
    assert result.returncode == 0, result.stderr
    record = json.loads((out / "peer.json").read_text())
    # 10,000 test images, the first a 7: the script read the shared IDX files through pyro's loader.
    assert record["epochs"] == [{"epoch": 1, "losses": [1.5, 2.5], "val_accuracy": 0.1, "test_accuracy": 0.7},
                                {"epoch": 2, "losses": [1.5, 2.5], "val_accuracy": 0.1, "test_accuracy": 0.7}]
    assert record["final"] == {"best_valid": 0.1, "best_test": 0.7, "last_test": 0.7}
    assert record["script_args"][:2] == ["-n", "2"] and record["script_args"][-2] == "-log"
    import pyro
    assert record["versions"]["pyro"] == pyro.__version__ and record["versions"]["script_asserts_pyro"] == "0.0.1"
    # The unpacked data went to a temporary folder, not into the records.
    assert sorted(path.name for path in out.iterdir()) == ["peer.json", "ss_vae.log"]


def test_pyro_peer_data_root_holds_the_unpacked_idx_files(shared_data_dir, tmp_path):
    peer = _benchmark_module("pyro_peer_ss_vae")
    root = peer.prepare_data_root(Path(shared_data_dir), tmp_path / "root")
    for folder in ("MNIST", "MNISTCached"):  # pyro's MNIST and the script's subclass look in their own
        sizes = {name: (root / folder / "raw" / name).stat().st_size for name in peer.IDX_FILES}
        assert sizes == {"train-images-idx3-ubyte": 47040016, "train-labels-idx1-ubyte": 60008,
                         "t10k-images-idx3-ubyte": 7840016, "t10k-labels-idx1-ubyte": 10008}


def test_pyro_peer_harness_refuses_a_version_mismatch_and_missing_files(shared_data_dir, tmp_path):
    pytest.importorskip("torchvision")
    script = _fake_peer(tmp_path)
    result = _harness("--script", str(script), "--data-dir", shared_data_dir, "--out", str(tmp_path / "a"))
    assert result.returncode != 0 and "asserts pyro 0.0.1" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _harness("--script", str(script), "--data-dir", str(empty), "--out", str(tmp_path / "b"),
                      "--allow-version-mismatch")
    assert result.returncode != 0 and "train-images-idx3-ubyte" in result.stderr
    result = _harness("--script", str(tmp_path / "missing.py"), "--out", str(tmp_path / "c"))
    assert result.returncode != 0 and "pyro-ppl/pyro" in result.stderr


def test_pyro_peer_log_parser_reads_pyro_log_lines():
    parse_log = _benchmark_module("pyro_peer_ss_vae").parse_log
    text = ("0 epoch: avg losses 507.5 108.0 193.6 0.0 validation accuracy 0.1697 test accuracy 0.1679\n"
            "a line the script did not write\n"
            "1 epoch: avg losses 400.0 90.0 180.0 0.0 validation accuracy 0.25 test accuracy 0.2\n"
            "best validation accuracy 0.25 corresponding testing accuracy 0.2 last testing accuracy 0.2\n")
    parsed = parse_log(text)
    assert [e["epoch"] for e in parsed["epochs"]] == [1, 2]
    assert parsed["epochs"][0]["losses"] == [507.5, 108.0, 193.6, 0.0]
    assert parsed["epochs"][1]["val_accuracy"] == 0.25 and parsed["epochs"][1]["test_accuracy"] == 0.2
    assert parsed["final"] == {"best_valid": 0.25, "best_test": 0.2, "last_test": 0.2}
    assert parse_log("") == {"epochs": [], "final": None}


def _is_submodule(package, name: str) -> bool:
    return hasattr(package, "__path__") and importlib.util.find_spec(f"{package.__name__}.{name}") is not None


SCRIPTS = sorted([*(ROOT / "docs" / "results").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py"),
                  *(ROOT / "tutorials").glob("*.py")])


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_script_beside_the_records_names_only_what_the_package_has(script):
    """The scripts that made the recorded numbers (docs/results/), the benchmarks and the tutorials'
    runner are not run by every test: each must at least parse and import from pyro_sus only names
    that exist, so that moving a name cannot leave a script behind (a second opinion to the smoke
    runs above, for the scripts too slow to run here)."""
    import ast

    missing = []
    for node in ast.walk(ast.parse(script.read_text(), str(script))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pyro_sus"):
            module = importlib.import_module(node.module)
            missing += [f"{node.module}.{a.name}" for a in node.names
                        if not hasattr(module, a.name) and not _is_submodule(module, a.name)]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pyro_sus"):
                    importlib.import_module(alias.name)
    assert not missing, f"{script.name} imports names pyro_sus no longer has: {missing}"


def test_a_trainer_step_reads_back_only_pyros_enumeration_flags_and_adams_cpu_step_counts():
    """Every read of a value from the device stalls a GPU and rules out capturing the step as one CUDA
    graph. An eager trainer step (alone and stacked; deferred finite checks, as on CUDA) reads only
    Pyro's own flag in TraceEnum_ELBO (``not mask.all()`` in pyro.infer.util.compute_expectation)
    and Adam's step counts, which torch keeps on the CPU: nothing of ours (F.one_hot read each y's
    range back, 8 reads in an M2 step, before one_hot_rows)."""
    import torch

    from pyro_sus.syncs import host_reads as record

    host_reads = _benchmark_module("host_reads")

    for name in ("m2", "gmdgm"):
        for members in (None, 3):
            reads = record(host_reads.one_step(name, members, torch.device("cpu"), jit=False, hidden=(16,), x_dim=12,
                                               slots=6))
            ours = [r for r in reads if not (r.where.split(":")[0].endswith("pyro/infer/util.py")
                                             or "torch/optim/" in r.origin)]
            assert not ours, (name, members, ours)
            assert any("compute_expectation" in r.where for r in reads)  # the one left, Pyro's
