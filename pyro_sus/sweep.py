"""The runner of a paper's table (:class:`pyro_sus.tables.Experiment`): :func:`plan_jobs` writes one
job file per (row, choice, seed), :func:`run_jobs` runs them on local processes or on Ray, each job
an ordinary run folder.

Folder layout under ``OUT/NAME/``: ``jobs/ROW-seedS.json`` (what each run does), ``logs/ROW-seedS.log``,
``runs/ROW-seedS/`` (an ordinary run folder). Running again skips finished runs and resumes
interrupted ones (a run stopped before its first checkpoint starts over). The paper tables live in
:mod:`pyro_sus.experiments`; aggregation and the results page in :mod:`pyro_sus.reproduce`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from .data import Dataset, load_dataset
from .io import atomic_write_json
from .tables import SMOKE, candidate_text, defined_in, get_experiment
from .spec import TrainConfig

__all__ = ["ENGINES", "check_counts", "plan_jobs", "job_fit_options", "job_data", "job_finished", "job_groups",
           "run_job", "run_job_group", "run_one_job", "run_one_group", "run_jobs"]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=]+", "-", text).strip("-").lower()


def check_counts(**counts: int | None) -> None:
    """Each count given (seeds, epochs, jobs, threads) is an integer >= 1; ValueError naming the first that is not."""
    for name, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r} (--{name})")


def plan_jobs(name: str, out: str | Path, seeds: int | None = None, epochs: int | None = None,
              rows: Sequence[str] | None = None, device: str = TrainConfig.device, data_dir: str | None = None,
              smoke: bool = False, plugins: Sequence[str] = (), jit: bool = False,
              precision: str = TrainConfig.precision, stop_after: int | None = None) -> list[Path]:
    """Write one job file per (row, choice of ``choose_on_validation``, seed) under ``OUT/NAME/jobs``;
    returns their paths. ``plugins`` are modules each job imports first (your own experiments, models
    or priors).

    ``stop_after=k`` trains each run only to epoch k of its schedule (the paper's, unless ``epochs``
    is given) and scores it there, a snapshot of the full run (``results.json``: ``snapshot``);
    planning again with a larger k, or none, continues the same run folders."""
    check_counts(seeds=seeds, epochs=epochs, stop_after=stop_after)
    experiment = get_experiment(name)
    # The job process imports the module that defined the experiment (unless it is a script's own).
    module = defined_in(name)
    plugins = list(plugins) + ([module] if module != "__main__" and module not in plugins else [])
    chosen = [experiment.row(label) for label in rows] if rows else list(experiment.rows)
    n_seeds = (seeds or 1) if smoke else (seeds or experiment.seeds)
    epochs = epochs or (SMOKE["epochs"] if smoke else experiment.epochs)
    stop_after = stop_after if stop_after is not None and stop_after < epochs else None
    root = Path(out) / name
    trainable = {f.name for f in dataclasses.fields(TrainConfig)} - {"epochs", "seed", "device", "jit", "precision"}
    for row in chosen:
        if set(row.choose_on_validation) - trainable:
            raise ValueError(f"{row.label!r}: choose_on_validation names "
                             f"{sorted(set(row.choose_on_validation) - trainable)}, which are not training options; "
                             f"choose among {sorted(trainable)}")
        if row.choose_on_validation and row.fit.get("validation_fraction") == 0:
            raise ValueError(f"{row.label!r} chooses on validation accuracy but holds out no validation set")
    paths = []
    for row, candidate, seed in ((r, c, s) for r in chosen for c in r.candidates() for s in range(n_seeds)):
        # What the run does; a finished run made from a different definition must not be mixed in.
        # (A row without choices keeps the spec it had before they existed, so its old runs still count.)
        row_spec = {k: v for k, v in dataclasses.asdict(row).items() if k != "choose_on_validation" or v}
        spec = json.loads(json.dumps({"row": row_spec, "train": experiment.train, "epochs": epochs, "smoke": smoke,
                                      **({"candidate": candidate} if candidate else {})}))
        slug = f"{_slug(f'{row.label} {candidate_text(candidate)}')}-seed{seed}"
        # jit and precision, like the device, change how fast a run goes and its rounding, not what it
        # computes: not part of the spec (the summary says which runs used them).
        # stop_after is not part of the spec either: it says how far to train the run now, not what it is.
        job = {"experiment": name, "row": row.label, "seed": seed, "epochs": epochs, "device": device, "jit": jit,
               "precision": precision, "stop_after": stop_after,
               "data_dir": data_dir, "smoke": smoke, "plugins": list(plugins), "run_dir": str(root / "runs" / slug),
               "log": str(root / "logs" / f"{slug}.log"), "spec": spec, "candidate": candidate}
        path = root / "jobs" / f"{slug}.json"
        if path.is_file() and Path(job["run_dir"]).is_dir():
            old = json.loads(path.read_text())
            if old.get("spec") != spec:
                raise ValueError(f"{job['run_dir']} was made with a different definition of {row.label!r} "
                                 f"(options, epochs or smoke); use another --out or delete that run folder")
        atomic_write_json(path, job)
        paths.append(path)
    return paths


def _restrict(data: Dataset, keep: Sequence[int] | None, test_only: Sequence[int] | None) -> Dataset:
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if keep is not None:
        in_train = np.isin(y_train, keep)
        x_train, y_train = x_train[in_train], y_train[in_train]
    classes = keep if keep is not None else test_only
    if classes is not None and x_test is not None:
        in_test = np.isin(y_test, classes)
        x_test, y_test = x_test[in_test], y_test[in_test]
    return Dataset(data.name, x_train, y_train, x_test, y_test, data.image_shape)


def _subsample(data: Dataset) -> Dataset:
    rng = np.random.default_rng(0)  # one subset for every seed: a row's seeds can then train as one stack
    train = np.sort(rng.choice(len(data.x_train), min(SMOKE["max_train"], len(data.x_train)), replace=False))
    test = None if data.x_test is None else np.sort(rng.choice(len(data.x_test), min(SMOKE["max_test"], len(data.x_test)),
                                                               replace=False))
    return Dataset(data.name, data.x_train[train], data.y_train[train],
                   None if test is None else data.x_test[test], None if test is None else data.y_test[test],
                   data.image_shape)


def job_fit_options(job: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The model a job trains and the keyword arguments of :func:`pyro_sus.fit` it passes (split,
    prior, model and training options; the data aside)."""
    experiment = get_experiment(job["experiment"])
    row = experiment.row(job["row"])
    options = dict(row.fit)
    if job["smoke"] and options.get("labels_per_class"):  # the subset may hold fewer points per class
        options["labels_per_class"] = min(options["labels_per_class"], SMOKE["labels_per_class"])
    options["train_options"] = {**experiment.train, **row.train, **job.get("candidate", {}), "epochs": job["epochs"],
                                "seed": job["seed"], "device": job["device"], "jit": job.get("jit", False),
                                "precision": job.get("precision", TrainConfig.precision)}
    return row.model, options


def run_job(job_path: str | Path) -> None:
    """Train and evaluate one job (inside its own process); resumes an interrupted run folder."""
    from .api import fit

    job = json.loads(Path(job_path).read_text())
    for module in job.get("plugins", []):
        importlib.import_module(module)
    run_dir = Path(job["run_dir"])
    data = job_data(job)
    stop = {"stop_after": job.get("stop_after"), "snapshot": True}
    if (run_dir / "last.pt").is_file():
        fit(run_dir=run_dir, resume=True, dataset=data, progress=False, **stop)
    else:
        _clear_unstarted(run_dir)
        model, options = job_fit_options(job)
        # A data set chosen by name keeps its name in run.json; a restricted one is passed as an object.
        fit(model, data, run_dir, data_dir=job["data_dir"], **options, progress=False, **stop)
    if not job["smoke"]:  # smoke runs are no results: nothing to set beside them
        _fit_baselines([run_dir], data)


def job_data(job: dict[str, Any]) -> Dataset:
    """The data a job trains on: its experiment's data set, restricted as its row says, a subset for smoke."""
    experiment = get_experiment(job["experiment"])
    row = experiment.row(job["row"])
    data = _restrict(load_dataset(experiment.dataset, job["data_dir"]), row.data.get("keep_classes"),
                     row.data.get("test_classes"))
    return _subsample(data) if job["smoke"] else data


def job_finished(job: dict[str, Any]) -> bool:
    """Whether a job's run has its results: scored at the end of its schedule, or, for a job that
    stops early, scored as a snapshot at its ``stop_after`` epoch or later."""
    path = Path(job["run_dir"]) / "results.json"
    if not path.is_file():
        return False
    try:
        snapshot = json.loads(path.read_text()).get("snapshot")
    except (OSError, ValueError):
        return False
    if snapshot is None:
        return True
    return job.get("stop_after") is not None and int(snapshot["epoch"]) >= int(job["stop_after"])


def _clear_unstarted(run_dir: Path) -> None:
    """Empty a run folder stopped before its first checkpoint (killed, out of time): nothing to resume."""
    from .folders import written_before_first_checkpoint

    if not (run_dir / "last.pt").is_file() and run_dir.is_dir() and \
            all(written_before_first_checkpoint(p.name) for p in run_dir.iterdir()):
        for path in run_dir.iterdir():
            path.unlink()


def _fit_baselines(run_dirs: Sequence[Path], data: Dataset) -> None:
    """The k-means baseline on each finished run's own split (``RUN/baselines/kmeans``, seconds), for the
    summary's margin over it (issue 41); a run that stopped early (no results yet) gets it when it finishes."""
    from .api import fit_baseline

    for run_dir in run_dirs:
        finished = (run_dir / "results.json").is_file()
        if finished and json.loads((run_dir / "run.json").read_text())["model"] != "kmeans":
            fit_baseline(run_dir, "kmeans", dataset=data)


def job_groups(job_paths: Sequence[str | Path]) -> list[list[Path]]:
    """The jobs that differ only in seed (one row and choice, the same epochs, device and data), in the
    order given: what a stacked run trains together (:func:`pyro_sus.fit_seeds`)."""
    groups: dict[str, list[Path]] = {}
    for path in map(Path, job_paths):
        job = json.loads(path.read_text())
        key = json.dumps([job.get(k) for k in ("experiment", "row", "candidate", "epochs", "device", "jit",
                                               "precision", "stop_after", "data_dir", "smoke", "plugins")],
                         sort_keys=True)
        groups.setdefault(key, []).append(path)
    return list(groups.values())


def run_job_group(job_paths: Sequence[str | Path]) -> None:
    """Train and evaluate the jobs of one group (:func:`job_groups`, inside one process) as one
    stacked model where they can: all new, or all interrupted (resumed together); otherwise, and for
    a model that does not stack, one after another. Finished jobs are skipped."""
    from .api import fit_seeds

    jobs = [json.loads(Path(p).read_text()) for p in job_paths]
    pending = [(Path(p), job) for p, job in zip(job_paths, jobs) if not job_finished(job)]
    if not pending:
        return
    for module in pending[0][1].get("plugins", []):
        importlib.import_module(module)
    job = pending[0][1]
    if len(pending) == 1:
        run_job(pending[0][0])
        return
    data = job_data(job)
    folders = [Path(j["run_dir"]) for _, j in pending]
    started = [(f / "last.pt").is_file() for f in folders]
    for folder in folders:
        _clear_unstarted(folder)
    stop = {"stop_after": job.get("stop_after"), "snapshot": True}
    if all(started):
        fit_seeds(dataset=data, folders=folders, resume=True, progress=False, **stop)
    elif not any(started):
        model, options = job_fit_options(job)
        train_options = {k: v for k, v in options.pop("train_options").items() if k != "seed"}
        fit_seeds(model, data, folders=folders, seeds=[j["seed"] for _, j in pending], data_dir=job["data_dir"],
                  train_options=train_options, progress=False, **options, **stop)
    else:  # some interrupted, some new: they are not at one epoch
        for path, _ in pending:
            run_job(path)
        return
    if not job["smoke"]:
        _fit_baselines(folders, data)


ENGINES = ("local", "ray")


#: Exit status of a job that another process is running already (sysexits' EX_TEMPFAIL): not started.
ALREADY_RUNNING = 75


@contextlib.contextmanager
def _job_lock(path: Path) -> Iterator[bool]:
    """Hold ``JOB.lock`` beside the job file while the job runs; whether this process got it.

    Two commands pointed at the same ``--out`` would otherwise train the same run folder at once
    (each resuming, clearing or overwriting the other's files). Where ``fcntl`` is missing
    (Windows) there is no lock."""
    try:
        import fcntl
    except ImportError:
        yield True
        return
    with open(path.with_suffix(".lock"), "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_one_job(path: str | Path, threads: int) -> int:
    """Run one job in its own process unless it finished before (exit status 0 then) or another
    process is running it (:data:`ALREADY_RUNNING`); its output goes to the job's log. Both engines
    run this, on whichever machine takes the job."""
    path = Path(path)
    job = json.loads(path.read_text())
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    Path(job["log"]).parent.mkdir(parents=True, exist_ok=True)
    with _job_lock(path) as locked:
        # Checked with the lock taken: a job that another process has just finished is not run again.
        if job_finished(job):
            return 0
        stamp = f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {path}"
        with open(job["log"], "a") as log:
            if not locked:
                log.write(f"{stamp}: another process is running this job (it holds {path.with_suffix('.lock')}); "
                          "not started\n")
                return ALREADY_RUNNING
            log.write(f"{stamp}\n")
            log.flush()
            return subprocess.call([sys.executable, "-m", "pyro_sus.sweep", str(path)], stdout=log,
                                   stderr=subprocess.STDOUT, env=env)


def run_one_group(paths: Sequence[str | Path], threads: int) -> dict[str, int]:
    """Run a group of jobs (:func:`job_groups`) in one process, stacked (:func:`run_job_group`), as
    :func:`run_one_job` runs one: finished jobs give 0, jobs another process holds
    :data:`ALREADY_RUNNING`; the others the process's exit status, or 0 where the run finished."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        return {str(paths[0]): run_one_job(paths[0], threads)}
    jobs = {str(p): json.loads(p.read_text()) for p in paths}
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    statuses: dict[str, int] = {}
    with contextlib.ExitStack() as held:
        mine = []
        for path in paths:
            job = jobs[str(path)]
            Path(job["log"]).parent.mkdir(parents=True, exist_ok=True)
            if not held.enter_context(_job_lock(path)):
                statuses[str(path)] = ALREADY_RUNNING
                with open(job["log"], "a") as log:
                    log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {path}: another process is running this job "
                              f"(it holds {path.with_suffix('.lock')}); not started\n")
            elif job_finished(job):
                statuses[str(path)] = 0
            else:
                mine.append(path)
        if not mine:
            return statuses
        first = jobs[str(mine[0])]
        stamp = f"# {time.strftime('%Y-%m-%d %H:%M:%S')}"
        for path in mine[1:]:
            with open(jobs[str(path)]["log"], "a") as log:
                log.write(f"{stamp} {path}: trained together with {len(mine) - 1} other seeds; the log is "
                          f"{first['log']}\n")
        with open(first["log"], "a") as log:
            log.write(f"{stamp} {' '.join(map(str, mine))}\n")
            log.flush()
            code = subprocess.call([sys.executable, "-m", "pyro_sus.sweep", *map(str, mine)], stdout=log,
                                   stderr=subprocess.STDOUT, env=env)
        for path in mine:
            statuses[str(path)] = 0 if job_finished(jobs[str(path)]) else (code or 1)
    return statuses


def run_jobs(job_paths: Sequence[Path], jobs: int = 1, threads: int | None = None, engine: str = "local",
             address: str | None = None, stack: bool = True) -> dict[str, int]:
    """Run every job not finished yet; a failing job does not stop the others. Returns each job
    file's exit status (0 also for one finished before), keyed by its path.

    ``stack=True`` trains the seeds of a row together, one stacked model in one process
    (:func:`job_groups`, :func:`run_one_group`); ``jobs`` then counts groups.
    ``engine="local"``: ``jobs`` processes at a time on this machine. ``engine="ray"``: one Ray task
    per job, each asking for ``threads`` CPUs, on the Ray cluster at ``address`` (None: the one this
    process is connected to, or a local one started here), so the cluster's free CPUs set how many
    run at once; every machine must see the job files, the output folder and the data at the same paths.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, jobs))
    groups = job_groups(job_paths) if stack else [[Path(p)] for p in job_paths]
    if engine == "ray":
        return _run_jobs_on_ray(groups, threads, address)
    statuses: dict[str, int] = {}
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for result in pool.map(lambda group: run_one_group(group, threads), groups):
            statuses.update(result)
    return {str(p): statuses[str(p)] for p in job_paths}


def _run_jobs_on_ray(groups: Sequence[Sequence[Path]], threads: int, address: str | None) -> dict[str, int]:
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray: pip install 'pyro_sus[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=threads, max_retries=0)(run_one_group)
        refs = [(group, task.remote([str(p) for p in group], threads)) for group in groups]
        statuses = {}
        for group, ref in refs:
            try:
                statuses.update(ray.get(ref))
            except ray.exceptions.RayError as err:  # the task itself failed (a lost node): that group only
                for path in group:
                    statuses[str(path)] = 1
                    log = Path(json.loads(Path(path).read_text())["log"])
                    log.parent.mkdir(parents=True, exist_ok=True)
                    with open(log, "a") as handle:
                        handle.write(f"# ray: {type(err).__name__}: {err}\n")
        return statuses
    finally:
        if started_here:
            ray.shutdown()


if __name__ == "__main__":  # one job (or group of seeds) per process: python -m pyro_sus.sweep JOB.json [JOB.json ...]
    if len(sys.argv) < 2:
        sys.exit("usage: python -m pyro_sus.sweep JOB.json [JOB.json ...]")
    import torch

    from pyro_sus.allocator import retain_freed_memory

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    retain_freed_memory()  # the job owns this process (see pyro_sus.allocator)
    # Through the imported module, not this __main__ copy, so that one import of the package serves
    # the job and the plugins it imports (which register in pyro_sus.tables.EXPERIMENTS).
    from pyro_sus.sweep import run_job as run_job_in_package, run_job_group as run_group_in_package

    if len(sys.argv) == 2:
        run_job_in_package(sys.argv[1])
    else:
        run_group_in_package(sys.argv[1:])
