"""Where a trained categorical VAE stands (the record behind docs/RESULTS.md's Arias section):
q(C|f) on the labelled points and on 3,000 validation points, the 1-NN label of validation
features among the labelled ones (the assignment task), how spread the features are, and the
assignment and lifted-structure losses on the labelled points. Eval mode (BatchNorm's running
statistics). Usage: python diagnose.py RUN_DIR DATA_DIR [MODULE ...] > out.json, where each MODULE
is imported first (one that registers the run's model, as `pyro-sus --plugin` does)."""

import importlib
import json
import sys

import numpy as np
import torch

from pyro_sus.run import load, training_data
from pyro_sus.data import load_dataset
from pyro_sus.models.catvae import assignment_loss, lifted_structure_loss, nearest_labels

for module in sys.argv[3:]:
    importlib.import_module(module)
run = load(sys.argv[1])
data = training_data(load_dataset(run.spec.data.dataset, sys.argv[2]), run.split, run.preprocessor)
model = run.model.eval()
with torch.no_grad():
    f_l, y_l = model.feature(data.x_labelled), data.y_labelled
    f_v = model.feature(data.x_val[:3000])
    y_v = torch.tensor(run.split.class_to_slot(data.y_val[:3000]))
    p_l, p_v = torch.softmax(model.category_head(f_l), -1), torch.softmax(model.category_head(f_v), -1)
    distances = torch.cdist(f_l, f_l)
    same = y_l[:, None] == y_l[None]
    report = {
        "q_accuracy_labelled": float((p_l.argmax(-1) == y_l).float().mean()),
        "q_accuracy_validation": float((p_v.argmax(-1) == y_v).float().mean()),
        "nearest_labelled_accuracy_validation": float((nearest_labels(f_v, f_l, y_l) == y_v).float().mean()),
        "q_max_probability_mean_validation": float(p_v.max(-1).values.mean()),
        "q_slot_counts_validation": np.bincount(p_v.argmax(-1).numpy(), minlength=p_v.shape[-1]).tolist(),
        "feature_sd_over_points_validation": float(f_v.std(0).mean()),
        "distance_same_class_labelled": float(distances[same & ~torch.eye(len(y_l), dtype=torch.bool)].mean()),
        "distance_other_class_labelled": float(distances[~same].mean()),
        "assignment_loss_labelled": float(assignment_loss(p_l, y_l)),
        "lifted_structure_loss_labelled": float(lifted_structure_loss(f_l, y_l)),
    }
print(json.dumps(report, indent=1))
