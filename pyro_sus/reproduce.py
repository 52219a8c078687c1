"""Reproduce the papers' tables with one command: plan the experiment's jobs, run them (local
processes or Ray: :mod:`pyro_sus.sweep`), aggregate our numbers beside the paper's (mean and sd over
seeds) and write them as a section of docs/RESULTS.md. The tables themselves are data
(:mod:`pyro_sus.tables`; the built-in ones in :mod:`pyro_sus.experiments`).

    pyro-sus reproduce --list
    pyro-sus reproduce willetts-table2-mnist --rows "GM-DGM SUS" --seeds 2 --epochs 15 --jobs 2

``--smoke`` shrinks data and epochs for tests; smoke runs are never written to the results page.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import experiments  # noqa: F401  (registers the built-in tables)
from .data import load_dataset
from .fidelity import deviations
from .io import atomic_write_json, atomic_write_text
from .spec import RunSpec
from .sweep import ENGINES, check_counts, plan_jobs, run_jobs
from .tables import SMOKE, Row, candidate_text, get_experiment
from .spec import TrainConfig

__all__ = ["reproduce", "aggregate", "baseline_margin", "merge_summaries", "render_markdown", "write_results_section",
           "METRIC_NAMES"]


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


METRIC_NAMES = {"accuracy": "honest accuracy", "paper_protocol_accuracy": "accuracy (paper protocol)",
                "known_accuracy": "known-class accuracy", "novel_accuracy": "novel-class accuracy",
                "hungarian_accuracy": "clustering ACC (Hungarian)", "nmi": "NMI"}


def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def _finished_runs(jobs: list[dict[str, Any]], row: Row) -> list[tuple[dict[str, Any], dict[str, Any], Path]] | None:
    """(choice, results, run folder) of one seed's runs in the row's order of choices; None unless every
    choice finished."""
    by_choice = {candidate_text(j.get("candidate", {})): j for j in jobs}
    runs = []
    for candidate in row.candidates():
        job = by_choice.get(candidate_text(candidate))
        path = None if job is None else Path(job["run_dir"]) / "results.json"
        if path is None or not path.is_file():  # not planned, failed or not finished
            return None
        runs.append((candidate, json.loads(path.read_text()), path.parent))
    if len(runs) > 1 and any(not r.get("validation") for _, r, _ in runs):
        raise ValueError(f"{row.label!r} chooses on validation accuracy, but a run has no validation scores")
    return runs


def _trained_with(job: dict[str, Any], option: str, default: Any) -> Any:
    """A training option of the job's run as saved in its run folder (``jit``, ``precision``): a
    resumed run keeps the options it started with, whatever the job file says now."""
    path = Path(job["run_dir"]) / "run.json"
    return getattr(RunSpec.from_json(json.loads(path.read_text())).train, option) if path.is_file() else default


def aggregate(name: str, out: str | Path) -> dict[str, Any]:
    """Mean ± sd over seeds of every row's metrics beside the paper's; writes summary.json / summary.md."""
    experiment = get_experiment(name)
    root = Path(out) / name
    jobs = [json.loads(p.read_text()) for p in sorted((root / "jobs").glob("*.json"))]
    rows = []
    for row in experiment.rows:
        # Jobs of choices the row no longer makes (e.g. planned before it had any) are not its runs.
        choices = {candidate_text(c) for c in row.candidates()}
        mine = [j for j in jobs if j["row"] == row.label and candidate_text(j.get("candidate", {})) in choices]
        if not mine:
            continue
        results, failed, walls, selection, folders = [], [], [], [], []
        for seed in sorted({j["seed"] for j in mine}):
            runs = _finished_runs([j for j in mine if j["seed"] == seed], row)
            if runs is None:  # a run (or one of the choices) failed or has not finished
                failed.append(seed)
                continue
            best = runs[0]
            if len(runs) > 1:
                best = max(runs, key=lambda run: run[1]["validation"]["accuracy"])  # ties: the first choice
                selection.append({"seed": seed, "chosen": best[0],
                                  "validation_accuracy": {candidate_text(c): 100 * r["validation"]["accuracy"]
                                                          for c, r, _ in runs}})
            results.append(best[1])
            folders.append(best[2])
            # The price of choosing is every choice's training time.
            seconds = [r.get("train_wall_seconds") for _, r, _ in runs]
            if all(t is not None for t in seconds):
                walls.append(sum(seconds))
        metrics = {}
        for metric, paper in row.paper.items():
            values = [100 * r["test"][metric] for r in results if r.get("test", {}).get(metric) is not None]
            mean, sd = _mean_sd(values)
            paper_mean, paper_sd = paper if paper is not None else (None, None)  # None: no paper's number
            metrics[metric] = {"ours_mean": mean, "ours_sd": sd, "paper_mean": paper_mean, "paper_sd": paper_sd,
                               "difference": None if mean is None or paper_mean is None else mean - paper_mean,
                               "n": len(values)}
        hardware = results[0].get("hardware") if results else None
        rows.append({"row": row.label, "model": row.model, "seeds": sorted(r["seed"] for r in results),
                     "failed_seeds": sorted(failed), "epochs": sorted({_epochs_trained(r) for r in results}),
                     "schedule_epochs": sorted({r["epochs"] for r in results}),
                     "planned_epochs": sorted({j["epochs"] for j in mine}),
                     "stop_after": sorted({j["stop_after"] for j in mine if j.get("stop_after")}),
                     "smoke": any(j["smoke"] for j in mine), "metrics": metrics,
                     "wall_seconds_per_run": float(np.mean(walls)) if walls else None, "hardware": hardware,
                     "jit": any(_trained_with(j, "jit", False) for j in mine),
                     "precision": sorted({_trained_with(j, "precision", TrainConfig.precision) for j in mine}),
                     "kmeans": _baseline_margin(results, folders, "kmeans"),
                     **({"chosen_on_validation": selection} if row.choose_on_validation else {})})
    summary = {"experiment": name, "paper": experiment.paper, "table": experiment.table,
               "paper_epochs": experiment.epochs, "paper_seeds": experiment.seeds,
               "deviations": deviations(experiment), "all_rows": len(rows) == len(experiment.rows), "rows": rows}
    atomic_write_json(root / "summary.json", summary)
    atomic_write_text(root / "summary.md", render_markdown(summary))
    return summary


def merge_summaries(summaries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One summary of an experiment from several (rows run into different ``--out`` folders, or kept
    only as records): its rows in the experiment's order, a row in several summaries taken from the
    one where it has the most seeds (the first of equals), the deviation list as the experiment
    states it now."""
    names = {s["experiment"] for s in summaries}
    if len(names) != 1:
        raise ValueError(f"summaries of one experiment only, got {sorted(names)}")
    experiment = get_experiment(names.pop())
    best: dict[str, dict[str, Any]] = {}
    for summary in summaries:
        for row in summary["rows"]:
            if row["row"] not in best or len(row["seeds"]) > len(best[row["row"]]["seeds"]):
                best[row["row"]] = row
    unknown = sorted(set(best) - {r.label for r in experiment.rows})
    if unknown:
        raise ValueError(f"rows {unknown} are not rows of {experiment.name!r}")
    rows = [best[r.label] for r in experiment.rows if r.label in best]
    return {**summaries[0], "rows": rows, "deviations": deviations(experiment),
            "all_rows": len(rows) == len(experiment.rows)}


def _epochs_trained(result: dict[str, Any]) -> int:
    """The epochs a run trained: its schedule's, or where it was scored as a snapshot of it."""
    return int(result["snapshot"]["epoch"]) if result.get("snapshot") else int(result["epochs"])


def _epochs_text(row: dict[str, Any]) -> str:
    """``15`` for a run of 15 epochs; ``15 of 400`` for a snapshot at epoch 15 of a 400-epoch schedule."""
    trained, schedule = row["epochs"], row.get("schedule_epochs", row["epochs"])
    text = ", ".join(map(str, trained)) or "n/a"
    return text + (f" of {', '.join(map(str, schedule))}" if trained and schedule != trained else "")


def _baseline_margin(results: list[dict[str, Any]], folders: list[Path], baseline: str) -> dict[str, Any] | None:
    """The baseline fitted on each seed's own split (``RUN/baselines/NAME``, written by the jobs) beside
    each seed's result: :func:`baseline_margin` of the seeds that have it."""
    pairs = []
    for result, folder in zip(results, folders):
        path = folder / "baselines" / baseline / "results.json"
        pairs.append((result, json.loads(path.read_text()) if path.is_file() else None))
    return baseline_margin(pairs)


def baseline_margin(pairs: Sequence[tuple[dict[str, Any], dict[str, Any] | None]]) -> dict[str, Any] | None:
    """(a run's results, its baseline's results on the same split) per seed, to the baseline's honest
    test accuracy over the seeds that have both and the row's mean margin over it on those seeds (in
    points); None if no seed has both."""
    scores = []
    for result, baseline in pairs:
        ours = result.get("test", {}).get("accuracy")
        theirs = None if baseline is None else baseline.get("test", {}).get("accuracy")
        if ours is not None and theirs is not None:
            scores.append((100 * ours, 100 * theirs))
    if not scores:
        return None
    mean, sd = _mean_sd([t for _, t in scores])
    return {"accuracy_mean": mean, "accuracy_sd": sd, "margin": float(np.mean([o - t for o, t in scores])),
            "n": len(scores)}


def _fmt(mean: float | None, sd: float | None) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.1f}" + (f" ± {sd:.1f}" if sd is not None else "")


def _hardware_text(hardware: dict[str, Any] | None) -> str:
    if not hardware:
        return "n/a"
    if hardware.get("gpu"):
        return f"{hardware['gpu']}"
    return f"CPU ({hardware.get('cpu') or '?'}, {hardware.get('torch_threads')} thread(s))"


def _commands_text(summary: dict[str, Any]) -> str:
    """The command(s) that made the table: one per group of rows run with the same --seeds and --epochs."""
    smoke = any(r["smoke"] for r in summary["rows"])
    # What a smoke run takes without being told (SMOKE's epochs, one seed); it is never written as results.
    default_epochs, default_seeds = (SMOKE["epochs"], 1) if smoke else (summary["paper_epochs"], summary["paper_seeds"])
    groups: dict[tuple[int, int | None, bool, str, int | None], list[str]] = {}
    for r in summary["rows"]:
        runs = len(r["seeds"]) + len(r["failed_seeds"])
        # The planned epochs: a row whose runs all failed has none finished, and its command still needs them.
        planned = r.get("planned_epochs") or r["epochs"]
        precision = ",".join(p for p in r.get("precision", []) if p != TrainConfig.precision)
        stop_after = (r.get("stop_after") or [None])[-1]
        groups.setdefault((runs, planned[0] if planned else None, r.get("jit", False), precision, stop_after),
                          []).append(r["row"])
    commands = []
    for (runs, epochs, jit, precision, stop_after), labels in groups.items():
        every_row = len(groups) == 1 and summary.get("all_rows", True)
        commands.append(f"`pyro-sus reproduce {summary['experiment']}"
                        + ("" if every_row else " --rows " + " ".join(f'"{label}"' for label in labels))
                        + (" --smoke" if smoke else "")
                        + (f" --epochs {epochs}" if epochs is not None and epochs != default_epochs else "")
                        + (f" --stop-after {stop_after}" if stop_after is not None else "")
                        + (f" --seeds {runs}" if runs and runs != default_seeds else "")
                        + (" --jit" if jit else "") + (f" --precision {precision}" if precision else "")
                        + ("`" if smoke else " --write-results`"))
    return ("Command: " if len(commands) == 1 else "Commands: ") + "; ".join(commands)


def render_markdown(summary: dict[str, Any]) -> str:
    """The summary as a section of docs/RESULTS.md: ours beside the paper's, REDUCED where it is."""
    rows = summary["rows"]
    epochs = sorted({e for r in rows for e in r["epochs"]})
    # Each row's own "N" or "N of M" (rows squeezed into N epochs beside snapshots of an M-epoch schedule).
    epochs_text = "; ".join(dict.fromkeys(_epochs_text(r) for r in rows if r["epochs"])) or "n/a"
    seeds = max((len(r["seeds"]) for r in rows), default=0)
    reduced = (any(e < summary["paper_epochs"] for e in epochs) or seeds < summary["paper_seeds"]
               or any(r["smoke"] for r in rows))
    title = f"### `{summary['experiment']}`: {summary['table']}" + (" — REDUCED" if reduced else "")
    lines = [title, "", f"Paper: {summary['paper']}. ",
             f"Paper's budget: {summary['paper_epochs']} epochs, {summary['paper_seeds']} run(s). "
             f"Ours: {epochs_text} epochs, up to {seeds} seed(s)"
             + (" (**smoke run: tiny data, not a result**)" if any(r["smoke"] for r in rows) else "") + ".",
             _commands_text(summary), "",
             "| row | metric | ours | paper | ours − paper | seeds | epochs | wall s / run | hardware |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for metric, m in r["metrics"].items():
            diff = "n/a" if m["difference"] is None else f"{m['difference']:+.1f}"
            # A run without results.json failed or has not finished yet (another process may be training it).
            failed = f" ({len(r['failed_seeds'])} not finished)" if r["failed_seeds"] else ""
            seconds = r["wall_seconds_per_run"]
            wall = "n/a" if seconds is None else f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.2g}"
            lines.append(f"| {r['row']} | {METRIC_NAMES.get(metric, metric)} | {_fmt(m['ours_mean'], m['ours_sd'])} | "
                         f"{_fmt(m['paper_mean'], m['paper_sd'])} | {diff} | {len(r['seeds'])}{failed} | "
                         f"{_epochs_text(r)} | {wall} | {_hardware_text(r['hardware'])} |")
    baselines = [(r["row"], r["kmeans"]) for r in rows if r.get("kmeans")]
    if baselines:
        lines += ["", "k-means on each run's own split (PCA, then seeded k-means with one cluster per slot: "
                      "`RUN/baselines/kmeans`), honest test accuracy, and each row's margin over it on the same seeds:"]
        lines += [f"- {row}: k-means {_fmt(k['accuracy_mean'], k['accuracy_sd'])} ({k['n']} seed(s)); the row "
                  f"{'beats' if k['margin'] >= 0 else 'trails'} it by {abs(k['margin']):.1f} points"
                  for row, k in baselines]
    chosen = [(r["row"], s) for r in rows for s in r.get("chosen_on_validation", [])]
    if chosen:
        lines += ["", "Chosen per seed on validation accuracy (the wall time above counts every choice's training):"]
        lines += [f"- {row}, seed {s['seed']}: {candidate_text(s['chosen'])} (validation: "
                  + ", ".join(f"{text} {acc:.1f}" for text, acc in s["validation_accuracy"].items()) + ")"
                  for row, s in chosen]
    if summary["deviations"]:
        lines += ["", "Deviations from the paper:"] + [f"- {d}" for d in summary["deviations"]]
    return "\n".join(lines) + "\n"


def write_results_section(summary: dict[str, Any], results_md: str | Path) -> None:
    """Replace (or append) this experiment's generated section of ``results_md``."""
    if any(r["smoke"] for r in summary["rows"]):
        raise ValueError("smoke runs are not results: run without --smoke before writing to the results page")
    import fcntl

    path = Path(results_md)
    begin = f"<!-- BEGIN generated: pyro-sus reproduce {summary['experiment']} -->"
    end = f"<!-- END generated: pyro-sus reproduce {summary['experiment']} -->"
    block = f"{begin}\n{render_markdown(summary)}{end}"
    path.parent.mkdir(parents=True, exist_ok=True)
    # Two experiments finishing together must not drop each other's section: read-modify-write under a lock.
    with open(path.with_name(f".{path.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        text = path.read_text() if path.is_file() else "# Results\n"
        if begin in text and end in text:
            text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        atomic_write_text(path, text)
