"""The GPU measurements (issues 5 and 37), one `device` call at a time, carried on from call to call.

A session is lent at most 15 minutes of device time and 10 minutes a call, while Willetts Table II
MNIST SUS in full (M2 and GM-DGM, 4 seeds, 400 epochs) may need more. The runs train as stacks:
each row's 4 seeds are one stacked model in one process (``reproduce``'s default; ``--no-stack``: 8
processes time-slicing the GPU). Each call trains until its time is nearly up, stops the runs (each
keeps its last epoch's checkpoint), and brings their state back; the next call, in this session or
a later one, carries that state and resumes every run where it stopped.

    here:    python benchmarks/gpu_session.py prepare [--state FILES_AT]  # FILES_AT: what the last call brought back
    device:  python3 benchmarks/gpu_session.py session  # run: carry [".whl", ".gpu-data", ".gpu-state", ".gpu-bench"], timeout_s 600

``prepare`` downloads the wheels the device image lacks (pyro-ppl, pyro-api, zuko) to ``.whl``,
copies MNIST to ``.gpu-data``, the plain-PyTorch anchor (``../shared/bench/plain_stacked_step.py``)
to ``.gpu-bench`` and the previous call's ``state-*.tar`` to ``.gpu-state`` (all git-ignored), and
checks that what travels fits the call's 64 MiB. ``session`` installs the wheels, unpacks the state,
runs the CUDA tests and the benchmarks (once: the first call; the stacked-step sweep and the anchor
in the same call), trains, and writes at most 8 files under $OUT: ``progress.txt``, ``records.tar``
(first, small: every run's light records, run.json, metrics, results, report, and the benchmarks'
output, so that the results come back even where the weights cannot) and ``state-K.tar`` (what the
next call needs: unfinished runs with their checkpoints, at most 15 MiB a file). When every run has
finished, it also aggregates the Table II section (``RESULTS.md`` in the records and the state).
``--smoke --device cpu`` runs every step on the CPU in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "willetts-table2-mnist"
ROWS = ("M2 SUS", "GM-DGM SUS")
MAX_FILE_BYTES = 15 * 2**20  # the device brings back files of at most 16 MiB
MAX_STATE_FILES = 6  # of the 8 files a call brings back; progress.txt and records.tar are the others
CARRY_LIMIT_BYTES = 64 * 2**20
# Files a finished run does not need carried on: its weights (final.pt) and resume state (last.pt).
LARGE_FINISHED = ("final.pt", "last.pt")

#: What a run folder's light records are: what the results and their reading need, no weights.
LIGHT_RECORDS = ("run.json", "metrics.jsonl", "results.json", "report.md", "report.json", "mapping.json",
                 "open_set.json")

__all__ = ["pack_state", "pack_records", "unpack_state", "run_folders"]


def run_folders(work: Path) -> list[Path]:
    """Every run folder of the Table II job under ``work``."""
    return sorted(p for p in (work / "runs" / EXPERIMENT / "runs").glob("*") if p.is_dir())


def _finished(run_dir: Path) -> bool:
    """Whether the run reached the end of its schedule (a snapshot scored on the way is not the end)."""
    results = run_dir / "results.json"
    return results.is_file() and "snapshot" not in json.loads(results.read_text())


def _kept(path: Path) -> bool:
    """Whether ``path``, a file in a run folder, travels on to the next call."""
    run_dir = path.parent
    if path.name.endswith(".tmp"):  # an atomic write cut short when the run was stopped
        return False
    if _finished(run_dir):
        return path.name not in LARGE_FINISHED
    # A run stopped before its first checkpoint starts over (pyro_sus.reproduce.run_job).
    return (run_dir / "last.pt").is_file()


def _member_bytes(path: Path) -> int:
    """At most what ``path`` takes in a tar file: a header (and a long-name header), data in 512-byte blocks."""
    return 1536 + -(-path.stat().st_size // 512) * 512


def _tar_bytes(members: int) -> int:
    """A tar file's size for members taking ``members`` bytes: two end blocks, padded to 10 KiB records."""
    return -(-(members + 1024) // 10240) * 10240


def pack_state(work: Path, out: Path, max_bytes: int = MAX_FILE_BYTES, max_files: int = MAX_STATE_FILES) -> list[Path]:
    """Pack what the next call needs from ``work`` into ``out/state-K.tar`` files of at most
    ``max_bytes``, one run folder never split across files; returns their paths."""
    groups: list[list[Path]] = []  # the files of one run folder, or one other file, stay together
    runs = run_folders(work)
    groups += [[p] for p in sorted(work.rglob("*")) if p.is_file() and not any(r in p.parents for r in runs)]
    groups += [[p for p in sorted(r.rglob("*")) if p.is_file() and _kept(p)] for r in runs]
    chunks: list[list[Path]] = []
    size = 0
    for group in (g for g in groups if g):
        group_size = sum(_member_bytes(p) for p in group)
        if _tar_bytes(group_size) > max_bytes:
            raise ValueError(f"{group[0].parent} needs {_tar_bytes(group_size)} bytes, more than one file may ({max_bytes})")
        if not chunks or _tar_bytes(size + group_size) > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1] += group
        size += group_size
    if len(chunks) > max_files:
        raise ValueError(f"the state needs {len(chunks)} files of {max_bytes} bytes, more than the {max_files} "
                         f"a call brings back: train fewer runs at once")
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, files in enumerate(chunks):
        path = out / f"state-{k}.tar"
        with tarfile.open(path, "w") as tar:
            for file in files:
                tar.add(file, arcname=str(file.relative_to(work)))
        paths.append(path)
    return paths


def pack_records(work: Path, out: Path) -> Path:
    """``out/records.tar``: every run's light records (:data:`LIGHT_RECORDS`), the benchmarks' output,
    the logs and the session records, without weights or checkpoints."""
    runs = run_folders(work)
    files = [p for r in runs for p in sorted(r.rglob("*")) if p.name in LIGHT_RECORDS]  # baselines/ too
    files += [p for p in sorted(work.rglob("*")) if p.is_file() and not any(r in p.parents for r in runs)
              and p.suffix in (".json", ".txt", ".log", ".md", ".jsonl")]
    out.mkdir(parents=True, exist_ok=True)
    path = out / "records.tar"
    with tarfile.open(path, "w") as tar:
        for file in files:
            tar.add(file, arcname=str(file.relative_to(work)))
    return path


def unpack_state(state_dir: Path, work: Path) -> int:
    """Unpack every ``state-*.tar`` in ``state_dir`` into ``work``; returns how many there were."""
    tars = sorted(state_dir.glob("state-*.tar")) if state_dir.is_dir() else []
    work.mkdir(parents=True, exist_ok=True)
    for path in tars:
        with tarfile.open(path) as tar:
            tar.extractall(work, filter="data")
    return len(tars)


def _progress(work: Path) -> str:
    lines = []
    for run_dir in run_folders(work):
        metrics = run_dir / "metrics.jsonl"
        records = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.is_file() else []
        last = records[-1] if records else {}
        seconds = sum(r["seconds"] for r in records)
        lines.append(f"{run_dir.name}: {len(records)} epochs{' (finished)' if _finished(run_dir) else ''}, "
                     f"{seconds:.0f} s of training, last: loss {last.get('loss', float('nan')):.2f}, "
                     f"validation accuracy {last.get('val_cluster_accuracy', float('nan')):.3f}")
    sessions_path = work / "sessions.json"
    sessions = json.loads(sessions_path.read_text()) if sessions_path.is_file() else []
    lines.append(f"calls: {len(sessions)}, training wall time over all calls: "
                 f"{sum(s['training_seconds'] for s in sessions):.0f} s")
    return "\n".join(lines) + "\n"


def _environment(wheels: Path) -> dict[str, str]:
    """The device image has torch but not pyro-ppl, pyro-api or zuko: install the carried wheels."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    paths = [str(ROOT)]
    probe = subprocess.run([sys.executable, "-c", "import pyro, zuko"], capture_output=True)
    if probe.returncode and wheels.is_dir():
        site = "/tmp/site"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", site, *map(str, sorted(wheels.glob("*.whl")))],
                       check=True)
        paths.append(site)
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def _measure(args: argparse.Namespace, work: Path, env: dict[str, str], deadline: float) -> None:
    """The CUDA tests, throughput and the Pyro / plain-PyTorch ratio, each written under
    ``work/measure``; a measurement still running at ``deadline`` (time.monotonic()) is stopped."""
    folder = work / "measure"
    folder.mkdir(parents=True, exist_ok=True)
    py, device = sys.executable, args.device
    tiny = ["--steps", "1", "--hidden", "16", "16", "--models", "m2"] if args.smoke else []
    commands = {
        "device.txt": ["bash", "-c", f"nvidia-smi; {py} -c 'import torch, pyro; print(torch.__version__, "
                                     f"pyro.__version__, torch.cuda.is_available())'"],
        # The CUDA variants of the contract and training tests (skipped on machines without a GPU).
        # The tutorial tests need nbclient, which the device image lacks; none of them is a CUDA test.
        "cuda-tests.txt": [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda",
                           "--ignore=tests/test_tutorials.py", "tests"],
        # The benchmarks' defaults: Willetts MNIST SUS sizes (444 inputs, 45 slots, z = 5, 500-500 networks).
        f"throughput-{device}.txt": [py, "benchmarks/throughput.py", "--device", device, *tiny],
        f"throughput-{device}-jit.txt": [py, "benchmarks/throughput.py", "--device", device, "--jit", *tiny],
        f"throughput-{device}-200.txt": [py, "benchmarks/throughput.py", "--device", device, "--hidden", "200", "200",
                                         "--models", "m2", "gmdgm", *tiny],
        f"throughput-{device}-bf16.txt": [py, "benchmarks/throughput.py", "--device", device, "--precision", "bf16",
                                          *tiny],
        # Today's fp32 step against the bf16 one, alternating in one process (issue 23).
        f"paired-{device}-bf16.txt": [py, "benchmarks/paired_step.py", "--device", device, "--precision", "bf16",
                                      "--out", str(folder / f"paired-{device}-bf16.json"),
                                      *(["--rounds", "1", "--hidden", "16", "16", "--models", "m2"]
                                        if args.smoke else [])],
        # Issue 37: the stacked step against the number of members, and the plain-PyTorch anchor (stacked
        # members, the whole step as one CUDA graph) in the same call, on the same GPU.
        f"stacked-steps-{device}.txt": [py, "benchmarks/stacked_runs.py", "steps", "--device", device,
                                        "--record", str(folder / f"stacked-steps-{device}.json"),
                                        *(["--shape", "digits", "--members", "1", "2", "--steps", "2"]
                                          if args.smoke else ["--shape", "table2", "--members", "1", "4", "8", "32"])],
        f"plain-stacked-anchor-{device}.txt": [py, str(Path(args.anchor)), "--device", device,
                                               *(["--steps", "2", "--small"] if args.smoke else ["--steps", "300"])],
        # Issue 37, item 4: what one step reads back from the GPU, and whether it can be one CUDA graph.
        f"host-reads-{device}.txt": [py, "benchmarks/host_reads.py", "--device", device, "--try-capture",
                                     "--out", str(folder / f"host-reads-{device}.json"),
                                     *(["--models", "m2", "--members", "2"] if args.smoke else [])],
        f"plain-pytorch-{device}.txt": [py, "benchmarks/plain_pytorch.py", "--device", device,
                                        "--out", str(folder / f"plain-pytorch-{device}.json"),
                                        *(["--steps", "1", "--check-draws", "2", "--hidden", "16", "16"]
                                          if args.smoke else [])],
    }
    for name, command in commands.items():
        with open(folder / name, "w") as log:
            timeout = min(args.measure_timeout, deadline - time.monotonic())
            try:  # a failing or hanging measurement is recorded and does not stop the training
                code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                       timeout=timeout) if timeout > 0 else "not run: out of time"
            except subprocess.TimeoutExpired:
                code = f"stopped after {timeout:.0f} s"
            log.write(f"\n# exit status: {code}\n")


def _train(args: argparse.Namespace, work: Path, env: dict[str, str], deadline: float) -> dict[str, object]:
    """Run (or resume) every Table II run until they finish or ``deadline`` (time.monotonic()) passes."""
    epochs = args.epochs or (None if args.smoke else 400)  # smoke: reproduce's one epoch
    command = [sys.executable, "-m", "pyro_sus", "reproduce", EXPERIMENT, "--rows", *ROWS, "--seeds", str(args.seeds),
               *(["--epochs", str(epochs)] if epochs else []), "--jobs", str(args.jobs), "--threads", str(args.threads),
               "--device", args.device, "--data-dir", str(args.data_dir), "--out", str(work / "runs"),
               *(["--jit"] if args.jit else []), "--precision", args.precision,
               *(["--smoke"] if args.smoke else []), *(["--no-stack"] if args.no_stack else []),
               # A run stopped at this epoch of the paper's schedule is scored there (a snapshot), and a later
               # call with a later epoch continues it (issue 38).
               *(["--stop-after", str(args.stop_at_epoch)] if args.stop_at_epoch else [])]
    started = time.monotonic()
    with open(work / "reproduce.log", "a") as log:
        # Its own process group, so that stopping it stops every training process it started.
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                   start_new_session=True)
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        if process.poll() is None:
            # Each run has saved its last finished epoch (atomically); the epoch under way is lost.
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        try:  # the runs themselves, had the reproduce process ended before them
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    planned = _planned(work)
    finished = bool(planned) and all(_finished(r) for r in planned)
    return {"training_seconds": round(time.monotonic() - started, 1), "finished": finished,
            "exit_status": process.returncode, "device": args.device, "jit": args.jit, "precision": args.precision,
            "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}


def _planned(work: Path) -> list[Path]:
    """The run folders of the jobs reproduce has planned (it writes every job file before any run)."""
    root = work / "runs" / EXPERIMENT
    return [root / "runs" / job.stem for job in sorted((root / "jobs").glob("*.json"))]


def _aggregate(work: Path, env: dict[str, str]) -> None:
    code = ("import sys; from pyro_sus.reproduce import aggregate, write_results_section as w; "
            f"w(aggregate({EXPERIMENT!r}, sys.argv[1]), sys.argv[2])")
    with open(work / "reproduce.log", "a") as log:
        subprocess.call([sys.executable, "-c", code, str(work / "runs"), str(work / "RESULTS.md")],
                        stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def session(args: argparse.Namespace) -> int:
    """One device call: unpack, measure (first call), train until the budget is nearly spent, pack."""
    began = time.monotonic()
    work, out = Path(args.work), Path(args.out)
    if work.exists() and any(work.iterdir()):  # what was done comes from the carried state alone
        raise SystemExit(f"work folder {work} is not empty: remove it or choose another (--work)")
    resumed = unpack_state(Path(args.state), work)
    env = _environment(Path(args.wheels))
    if args.measure == "yes" or (args.measure == "auto" and not (work / "measure").is_dir()):
        # At most half the call, so that the runs train in the first call too.
        _measure(args, work, env, deadline=began + args.budget / 2)
    sessions_path = work / "sessions.json"
    sessions = json.loads(sessions_path.read_text()) if sessions_path.is_file() else []
    record = _train(args, work, env, deadline=began + args.budget - args.pack_seconds)
    sessions.append({**record, "state_files_carried_in": resumed})
    sessions_path.write_text(json.dumps(sessions, indent=1) + "\n")
    if record["finished"] and not args.smoke:  # smoke runs are never written as results
        _aggregate(work, env)
    progress = _progress(work)
    out.mkdir(parents=True, exist_ok=True)
    (out / "progress.txt").write_text(progress)
    records = pack_records(work, out)  # first: the results come back even if the state cannot
    states = pack_state(work, out)
    print(progress + f"records: {records.stat().st_size / 2**20:.1f} MiB; state: "
          f"{', '.join(f'{p.name} {p.stat().st_size / 2**20:.1f} MiB' for p in states)}")
    return 0


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def prepare(args: argparse.Namespace) -> int:
    """Here: the wheels, MNIST and the last call's state, in the git-ignored folders a call carries."""
    wheels, data, state, bench = ROOT / ".whl", ROOT / ".gpu-data", ROOT / ".gpu-state", ROOT / ".gpu-bench"
    if not any(wheels.glob("pyro_ppl-*.whl")):
        import importlib.metadata as metadata
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                        "--python-version", "3.12", "--implementation", "cp", "--platform", "manylinux_2_28_x86_64",
                        "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "-d", str(wheels),
                        f"pyro-ppl=={metadata.version('pyro-ppl')}", "pyro-api==0.1.2",
                        f"zuko=={metadata.version('zuko')}"], check=True)
    if not (data / "mnist").is_dir():
        shutil.copytree(Path(args.data_dir) / "mnist", data / "mnist")
    bench.mkdir(exist_ok=True)
    shutil.copy(Path(args.anchor), bench / "plain_stacked_step.py")
    if args.state:
        tars = sorted(Path(args.state).glob("state-*.tar"))
        if not tars:
            raise SystemExit(f"{args.state} holds no state-*.tar")
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir()
        for path in tars:
            shutil.copy(path, state / path.name)
    exclude = ROOT / ".git" / "info" / "exclude"
    if exclude.parent.is_dir():
        lines = exclude.read_text().splitlines() if exclude.is_file() else []
        missing = [p for p in ("/.whl/", "/.gpu-data/", "/.gpu-state/", "/.gpu-bench/") if p not in lines]
        if missing:
            exclude.write_text("\n".join(lines + missing) + "\n")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    total = sum(_size(ROOT / name) for name in tracked.decode().split("\0") if name)
    for folder in (wheels, data, state, bench):
        print(f"{folder.name}: {_size(folder) / 2**20:.1f} MiB")
        total += _size(folder)
    print(f"what a call carries: {total / 2**20:.1f} MiB of at most {CARRY_LIMIT_BYTES / 2**20:.0f}")
    if total > CARRY_LIMIT_BYTES:
        print("too much to carry: train fewer runs at once (--seeds)", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare", help="here: wheels, MNIST and the last call's state to carry")
    p.add_argument("--state", help="the folder of the files the last call brought back (its files_at)")
    p.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--anchor", default=str(ROOT.parent / "shared" / "bench" / "plain_stacked_step.py"),
                   help="the plain-PyTorch stacked step to carry")
    s = commands.add_parser("session", help="on the device: one call's measurements and training")
    s.add_argument("--budget", type=float, default=540, help="seconds this call may take (a call may take 600)")
    s.add_argument("--pack-seconds", type=float, default=45, help="seconds kept at the end to stop runs and pack")
    s.add_argument("--measure", choices=("auto", "yes", "no"), default="auto",
                   help="run the CUDA tests and benchmarks (auto: when the state holds none yet)")
    s.add_argument("--measure-timeout", type=float, default=120, help="seconds each measurement may take")
    s.add_argument("--epochs", type=int, default=None, help="epochs per run (default: the paper's 400)")
    s.add_argument("--stop-at-epoch", type=int, default=None,
                   help="train the runs to this epoch of the paper's schedule and score them there (reproduce "
                        "--stop-after: a snapshot that a later call continues; to split a job into calls)")
    s.add_argument("--seeds", type=int, default=4)
    s.add_argument("--jobs", type=int, default=2,
                   help="processes at once on the one GPU: each trains one row's seeds as a stack (--no-stack: one run)")
    s.add_argument("--no-stack", action="store_true", help="every run in its own process (as before issue 37)")
    s.add_argument("--anchor", default=str(ROOT / ".gpu-bench" / "plain_stacked_step.py"),
                   help="the plain-PyTorch anchor carried by prepare")
    s.add_argument("--threads", type=int, default=4, help="torch threads per process (the device has 16 cores)")
    s.add_argument("--device", default="cuda")
    s.add_argument("--no-jit", dest="jit", action="store_false", help="train eager (default: the loss traced)")
    s.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="what the networks compute at in training (bf16 needs --no-jit)")
    s.add_argument("--smoke", action="store_true", help="tiny runs and benchmarks: checks this script")
    s.add_argument("--data-dir", default=str(ROOT / ".gpu-data"))
    s.add_argument("--state", default=str(ROOT / ".gpu-state"), help="the carried state-*.tar files")
    s.add_argument("--wheels", default=str(ROOT / ".whl"))
    s.add_argument("--work", default="/tmp/pyro-sus-gpu")
    s.add_argument("--out", default=os.environ.get("OUT", "/tmp/pyro-sus-gpu-out"))
    args = parser.parse_args(argv)
    return prepare(args) if args.command == "prepare" else session(args)


if __name__ == "__main__":
    sys.exit(main())
