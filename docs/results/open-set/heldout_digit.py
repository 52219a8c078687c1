"""Open-set check (issue 25 item 5): train on digits with one class removed from the training data
altogether (not labelled, not unlabelled, not validation; still in the test set), then measure how
well each point's fit score separates that class from the rest of the test set (AUROC), for the
per-point bound (what `predict --flag-unknown` uses for these models) and, for comparison, the
largest q(y|x).

    OMP_NUM_THREADS=1 python docs/results/open-set/heldout_digit.py --out runs/open-set \\
        --record docs/results/open-set/heldout-9.json
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

import pyro_sus
from pyro_sus.run import hardware_info
from pyro_sus.data import load_dataset

parser = argparse.ArgumentParser()
parser.add_argument("--out", default="runs/open-set")
parser.add_argument("--record", default="docs/results/open-set/heldout-9.json")
parser.add_argument("--held-out", type=int, default=9)
parser.add_argument("--models", nargs="+", default=["gmdgm", "m2"])
parser.add_argument("--seeds", type=int, default=3)
parser.add_argument("--epochs", type=int, default=200)
args = parser.parse_args()

digits = load_dataset("digits")
train = digits.y_train != args.held_out
data = dataclasses.replace(digits, name=f"digits-without-{args.held_out}-in-training",
                           x_train=digits.x_train[train], y_train=digits.y_train[train])
hidden = [c for c in (5, 6, 7, 8, 9) if c != args.held_out]
rows = []
for model in args.models:
    for seed in range(args.seeds):
        run_dir = Path(args.out) / f"{model}-seed{seed}"
        started = time.perf_counter()
        run = pyro_sus.fit(model, data, run_dir, hidden_classes=hidden, labelled_fraction=0.2, extra_slots=2 * len(hidden),
                           split_seed=seed, train_options={"epochs": args.epochs, "learning_rate": 1e-3, "seed": seed,
                                                           "device": "cpu"}, progress=False)
        results = json.loads((run_dir / "results.json").read_text())
        keep = data.y_test >= 0
        unseen = data.y_test[keep] == args.held_out
        max_prob = run.predict_proba(data.x_test[keep]).max(-1)
        rows.append({"model": model, "seed": seed, "epochs": args.epochs, "seconds": time.perf_counter() - started,
                     "auroc_bound": results["open_set"]["auroc_unseen"],
                     "auroc_max_probability": float(roc_auc_score(unseen, -max_prob)),
                     "flagged_at_validation_5pct": results["open_set"]["flagged_at_validation_5pct"],
                     "test_accuracy_all_classes": results["test"]["accuracy"]})
        print(json.dumps(rows[-1]), flush=True)
summary = {model: {key: float(np.mean([r[key] for r in rows if r["model"] == model]))
                   for key in ("auroc_bound", "auroc_max_probability")} for model in args.models}
Path(args.record).write_text(json.dumps({"held_out_class": args.held_out, "hidden_classes": hidden,
                                         "command": "docs/results/open-set/heldout_digit.py", "runs": rows,
                                         "mean": summary, "hardware": hardware_info("cpu")}, indent=2))
print(json.dumps(summary, indent=2))
