"""Validation curves of the batch-4 runs (issue 24): python docs/results/mnist-sus-estimator/plot_batch4.py"""

import json
from pathlib import Path

from pyro_sus.plots import plot_curves

HERE = Path(__file__).parent
RUNS = {"M2, enumerated, seed 0": "m2-sus-batch-4-seed0",
        "M2, enumerated, seed 1": "m2-sus-batch-4-seed1",
        "M2, Gumbel-softmax, seed 0": "m2-sus-gumbel-softmax-y-batch-4-seed0",
        "M2, Gumbel-softmax, seed 1": "m2-sus-gumbel-softmax-y-batch-4-seed1",
        "GM-DGM, Gumbel-softmax, seed 0": "gm-dgm-sus-gumbel-softmax-y-batch-4-seed0",
        "GM-DGM, Gumbel-softmax, seed 1": "gm-dgm-sus-gumbel-softmax-y-batch-4-seed1",
        "GM-DGM, enumerated, seed 0": "gm-dgm-sus-batch-4-seed0",
        "GM-DGM, enumerated, seed 1": "gm-dgm-sus-batch-4-seed1",
        "GM-DGM, enumerated, lr 2e-4, seed 0": "gm-dgm-sus-batch-4-learning-rate-0.0002-seed0",
        "GM-DGM, enumerated, lr 2e-4, seed 1": "gm-dgm-sus-batch-4-learning-rate-0.0002-seed1"}

if __name__ == "__main__":
    histories = {label: [json.loads(line) for line in (HERE / f"{run}-metrics.jsonl").read_text().splitlines()]
                 for label, run in RUNS.items() if (HERE / f"{run}-metrics.jsonl").is_file()}
    # The p(z|y) spread is recorded by runs started from commit ded00bd on (GM-DGM only).
    plot_curves(histories, ["val_novel_accuracy", "val_known_accuracy", "val_extra_slots_used", "loss_kl_z",
                            "loss_reconstruction", "loss", "prior_z_sd_known", "prior_z_sd_extra"],
                HERE / "batch4-curves.png", title="Willetts Table II MNIST SUS, batch 4 + 4, validation", columns=4)
