"""Runs side by side: ``pyro-sus compare RUN...`` reads each run's ``results.json``.

One row per run: model, data, regime, epochs trained, honest test accuracy (all, known, novel
classes), the GCD protocol's All / Old / New, NMI, the open-set AUROC and the training wall time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .run import seed_folders
from .io import RunFileError, atomic_write_text, read_json

__all__ = ["COLUMNS", "compare_rows", "render_table", "write_csv", "run_folders"]

#: (column, what it holds) in the order they are printed.
COLUMNS = (("run", "the run folder"), ("model", "registered model"), ("dataset", "data set"),
           ("regime", "semi-unsupervised, semi-supervised or unsupervised"),
           ("epochs", "epochs trained (of the schedule's, for a snapshot or a selected epoch)"),
           ("accuracy", "honest test accuracy (validation where no test set): extra slots mapped on validation"),
           ("known", "accuracy on the labelled classes' points"), ("novel", "accuracy on the hidden classes' points"),
           ("gcd_all", "GCD protocol, All (test)"), ("gcd_old", "GCD protocol, Old"), ("gcd_new", "GCD protocol, New"),
           ("nmi", "normalised mutual information of slots and classes (test)"),
           ("auroc_unseen", "open-set AUROC of the fit score for classes training never saw"),
           ("wall_s", "training wall time, seconds"))


def run_folders(paths: Sequence[str | Path]) -> list[Path]:
    """Each path as run folders: a run folder itself, or a folder of seed runs (``seed0``, ``seed1`` ...)."""
    folders: list[Path] = []
    for path in map(Path, paths):
        if (path / "run.json").is_file():
            folders.append(path)
            continue
        seeds = seed_folders(path)
        if not seeds:
            what = "does not exist" if not path.exists() else "holds no run (no run.json, no seed*/run.json)"
            raise RunFileError(f"{path} {what}")
        folders.extend(seeds)
    return folders


def compare_rows(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """One record per run (the keys of :data:`COLUMNS`; None where a run has no such number)."""
    rows = []
    for folder in run_folders(paths):
        if not (folder / "results.json").is_file():
            raise RunFileError(f"{folder} has no results.json: run `pyro-sus evaluate {folder}` first")
        results = read_json(folder / "results.json", "scores written by `pyro-sus evaluate`")
        if not isinstance(results, dict):
            raise RunFileError(f"{folder / 'results.json'} is not a JSON object of scores; evaluate the run again")
        scored = results.get("test") or results.get("validation") or {}
        gcd = (results.get("gcd") or {}).get("test") or {}
        epochs = results.get("epochs")
        trained = (results.get("snapshot") or {}).get("epoch", results.get("selected_epoch", epochs))
        rows.append({
            "run": str(folder), "model": results.get("model"), "dataset": Path(str(results.get("dataset"))).name,
            "regime": results.get("regime"),
            "epochs": f"{trained} of {epochs}" if trained not in (None, epochs) else epochs,
            "accuracy": scored.get("accuracy"), "known": scored.get("known_accuracy"),
            "novel": scored.get("novel_accuracy"), "gcd_all": gcd.get("all"), "gcd_old": gcd.get("old"),
            "gcd_new": gcd.get("new"), "nmi": scored.get("nmi"),
            "auroc_unseen": (results.get("open_set") or {}).get("auroc_unseen"),
            "wall_s": results.get("train_wall_seconds")})
    return rows


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "wall_s":
        return f"{value:.0f}"
    if isinstance(value, float):
        return f"{100 * value:.1f}"  # scores as percentages, as the papers print them
    return str(value)


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned plain-text table (scores in percent), with a key under it."""
    names = [name for name, _ in COLUMNS]
    cells = [names] + [[_cell(name, row[name]) for name in names] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(names))]
    lines = ["  ".join(text.ljust(width) if i < 5 else text.rjust(width)
                       for i, (text, width) in enumerate(zip(line, widths))) for line in cells]
    key = "".join(f"  {name}: {meaning}\n" for name, meaning in COLUMNS[4:])
    return "\n".join(lines) + f"\n\nScores in percent, '-' where a run has none.\n{key}"


def write_csv(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """The rows as CSV (scores as fractions, as in results.json)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[name for name, _ in COLUMNS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(Path(path), buffer.getvalue())
