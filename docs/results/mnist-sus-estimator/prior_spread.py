"""The spread of GM-DGM's learned p(z|y) at the end of finished runs (issue 24).

    python docs/results/mnist-sus-estimator/prior_spread.py RUN_FOLDER [RUN_FOLDER ...]

For each run folder (``OUT/EXPERIMENT/runs/ROW-seedS`` of ``pyro-sus reproduce``, with its
``final.pt``), the sd of p(z | y = slot) (root mean variance over z's dimensions) and the distance of
its mean from the origin, summarised over the known and over the extra slots. Prints a Markdown table
and writes it, with the per-slot values, to ``prior-spread.json`` beside this script. The weights are
not in the repository (runs/ is not committed), hence the saved JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from pyro_sus.run import load

HERE = Path(__file__).parent


def spread(run_dir: Path) -> dict:
    """Per-slot sd and mean norm of the run's p(z|y), and their summaries over known / extra slots."""
    run = load(run_dir)
    n_known = len(run.split.known_classes)
    sd = run.model.latent_prior_sd()
    if sd is None:
        raise SystemExit(f"{run_dir}: the model has no learned p(z|y) with a closed-form variance")
    slots = torch.arange(run.model.config.n_slots)
    with torch.no_grad():
        mean_norm = run.model.latent_prior(slots).mean.norm(dim=-1)
    known, extra = slice(0, n_known), slice(n_known, None)
    return {"run": f"{run_dir.parents[2].name}/{run_dir.name}", "sd": sd.tolist(), "mean_norm": mean_norm.tolist(),
            "sd_known": [float(sd[known].min()), float(sd[known].max())], "sd_extra_median": float(sd[extra].median()),
            "mean_norm_known": float(mean_norm[known].mean()), "mean_norm_extra_median": float(mean_norm[extra].median())}


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    rows = [spread(Path(folder)) for folder in sys.argv[1:]]
    print("| run | sd of p(z|y), known slots | sd, extra slots (median) | mean's norm, known (mean) | mean's norm, extra (median) |")
    print("|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['run']} | {row['sd_known'][0]:.2f}-{row['sd_known'][1]:.2f} | {row['sd_extra_median']:.2f} "
              f"| {row['mean_norm_known']:.1f} | {row['mean_norm_extra_median']:.1f} |")
    (HERE / "prior-spread.json").write_text(json.dumps(rows, indent=1) + "\n")
