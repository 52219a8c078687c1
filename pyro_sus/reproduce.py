"""Reproduce the papers' tables with one command: plan the experiment's jobs, run them (local
processes or Ray: :mod:`pyro_sus.sweep`), and aggregate our numbers beside the paper's
(:mod:`pyro_sus.summary`). The tables themselves are data, in :mod:`pyro_sus.experiments`.

    pyro-sus reproduce --list
    pyro-sus reproduce willetts-table2-mnist --rows "GM-DGM SUS" --seeds 2 --epochs 15 --jobs 2

``--smoke`` shrinks data and epochs for tests; smoke runs are never written to the results page.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import experiments  # noqa: F401  (registers the built-in tables)
from .data import load_dataset
from .summary import METRIC_NAMES, aggregate, render_markdown, write_results_section
from .sweep import (ENGINES, EXPERIMENTS, SMOKE, Experiment, Row, check_counts, get_experiment, plan_jobs,
                    register_experiment, run_job, run_jobs, run_one_job)
from .train import TrainConfig

__all__ = ["Row", "Experiment", "EXPERIMENTS", "ENGINES", "register_experiment", "get_experiment", "plan_jobs",
           "run_jobs", "run_one_job", "run_job", "aggregate", "render_markdown", "write_results_section", "reproduce",
           "SMOKE", "METRIC_NAMES"]


def reproduce(name: str, out: str | Path = "runs/reproduce", *, seeds: int | None = None, epochs: int | None = None,
              rows: Sequence[str] | None = None, device: str = TrainConfig.device, jobs: int = 1, data_dir: str | None = None,
              smoke: bool = False, threads: int | None = None,
              plugins: Sequence[str] = (), jit: bool = False, precision: str = TrainConfig.precision, engine: str = ENGINES[0],
              address: str | None = None, stack: bool = True,
              stop_after: int | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """Plan, run (``jobs`` at a time, or on Ray: :func:`run_jobs`) and aggregate one experiment;
    returns (summary, exit status per job). ``stack``: a row's seeds train together as one stacked
    model (:func:`pyro_sus.fit_seeds`), where the model stacks. ``stop_after``: each run trains to
    that epoch of its schedule and is scored there, to be continued later (:func:`plan_jobs`)."""
    # Before any job file is written:
    check_counts(seeds=seeds, epochs=epochs, jobs=jobs, threads=threads, stop_after=stop_after)
    experiment = get_experiment(name)
    load_dataset(experiment.dataset, data_dir)  # a missing data set fails here, once, with its own message
    statuses = run_jobs(plan_jobs(name, out, seeds, epochs, rows, device, data_dir, smoke, plugins, jit, precision,
                                  stop_after), jobs, threads, engine=engine, address=address, stack=stack)
    return aggregate(name, out), statuses
