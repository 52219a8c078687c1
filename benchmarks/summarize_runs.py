"""Print a Markdown table (mean ± sd over seeds) from the results.json of finished run folders.

    python benchmarks/summarize_runs.py runs/digits-sus/*
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

METRICS = ["accuracy", "known_accuracy", "novel_accuracy", "paper_protocol_accuracy", "hungarian_accuracy", "nmi"]



# Options every variant of a setting shares; any other model option names a variant.
SHARED_OPTIONS = {"z_dim", "hidden_dims", "likelihood", "gaussian_scale"}


def _label(results: dict) -> str:
    """The model name plus the options that make it a variant (e.g. ``lcvae (posterior=flow, ...)``)."""
    options = results.get("model_options", {})
    # Only unset values are dropped: False or 0 given as an option names a variant too.
    parts = [f"{key}={value}" for key, value in sorted(options.items())
             if key not in SHARED_OPTIONS and value not in (None, "", [], {})]
    return results["model"] + (f" ({', '.join(parts)})" if parts else "")


def summarize(run_dirs: list[Path]) -> str:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for run_dir in run_dirs:
        results = json.loads((run_dir / "results.json").read_text())
        groups[(_label(results), results["dataset"], results["regime"], results["epochs"])].append(results)
    header = ("| model | data | regime | epochs | seeds | " + " | ".join(METRICS) +
              " | test bound (nats/point) | slots used (per seed) | train wall s / run | hardware |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for (model, dataset, regime, epochs), runs in sorted(groups.items()):
        cells = []
        for metric in METRICS:
            values = np.array([r["test"][metric] for r in runs if r["test"][metric] is not None])
            if not len(values):
                cells.append("n/a")
            elif len(values) == 1:  # one seed: no spread to report
                cells.append(f"{100 * values[0]:.1f}")
            else:
                cells.append(f"{100 * values.mean():.1f} ± {100 * values.std(ddof=1):.1f}")
        bounds = [r["test"].get("unlabelled_bound") for r in runs]
        cells.append(f"{np.mean(bounds):.1f}" if None not in bounds else "n/a")
        used = [r["test"].get("slots_used") for r in runs]
        cells.append("/".join(str(u) for u in used) if None not in used else "n/a")
        wall = np.mean([r["train_wall_seconds"] for r in runs])
        hw = runs[0]["hardware"]
        hardware = hw.get("gpu") or f"{hw['cpu']} x{hw['cpu_count']} ({hw['torch_threads']} torch threads)"
        seeds = ",".join(str(r["seed"]) for r in sorted(runs, key=lambda r: r["seed"]))
        lines.append(f"| {model} | {dataset} | {regime} | {epochs} | {seeds} | " + " | ".join(cells) +
                     f" | {wall:.0f} | {hardware} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", type=Path)
    args = parser.parse_args()
    print(summarize([d for d in args.run_dirs if (d / "results.json").is_file()]))


if __name__ == "__main__":
    main()
