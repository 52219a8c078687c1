"""Arias Figueroa & Ramírez Rivera, Learning to cluster with auxiliary tasks (seed 002): Tables II-III."""

from __future__ import annotations

import math

from ..models.catvae import RELEASED_CODE_OPTIONS
from ..sweep import Experiment, Row, register_experiment

_CONV = {"z_dim": 50, "encoder": "conv", "category_inference": "gumbel", "temperature": 1.0}
_PAPER = {"hungarian_accuracy": (98.3, None), "nmi": (95.4, None), "accuracy": (98.33, 0.18)}
# The losses of the authors' released code (github.com/jariasf/semisupervised-vae-metric-embedding, its
# MNIST run.sh): cross-entropy assignment, a Gaussian z (150) between f and the decoder with KL weight 1.1,
# BCE summed over pixels, the categorical KL not divided by log K (weight 1.2), w_assign 4.7, w_metric 0.85,
# margin 0.5, 7-NN. The MLP ablation in docs/RESULTS.md measured them: 32.8% -> 83.0-83.9% after 3 epochs.
# With every pixel kept, w_reconstruction 784 and w_categorical 1.2 log 10 are normalise_losses=False with
# weights 1 and 1.2, up to float rounding; the row keeps the form its recorded runs were trained with.
_RELEASED_LOSSES = {**{key: value for key, value in RELEASED_CODE_OPTIONS.items() if key != "normalise_losses"},
                          "w_reconstruction": 784.0, "w_categorical": 1.2 * math.log(10)}
register_experiment(Experiment(
    "arias-figueroa-tables2-3",
    "Arias Figueroa & Ramírez Rivera, Learning to cluster with auxiliary tasks: a semi-supervised approach (seed 002)",
    "Tables II-III: MNIST, 100 labels: clustering ACC / NMI, test error", "mnist",
    {"epochs": 100, "learning_rate": 1e-3, "batch_size": 100},
    (Row("categorical VAE (conv)", "catvae",
         {"labels_per_class": 10, "std_threshold": None,
          "model_options": {**_CONV, "feature_alpha": 0.6, "w_assignment": 5.0}}, _PAPER),
     Row("categorical VAE (conv), losses of the released code", "catvae",
         {"labels_per_class": 10, "std_threshold": None,
          "model_options": {**_CONV, **_RELEASED_LOSSES}}, _PAPER)),
    seeds=5, deviations=(
        "Learning rate decays by cosine, not by 0.5 every 50 epochs.",
        "The feature loss is the lifted-structure loss of the authors' code: the paper's Eqs. 17-18 collapse the "
        "features (measured: docs/RESULTS.md, zoo on digits).",
        "Table III's error is reported here as accuracy (100 - error).",
        "Row 'losses of the released code' takes the losses and weights of the authors' released code, which differ "
        "from the paper's: cross-entropy in place of Eq. 16, a Gaussian z ~ q(z|f) of 150 dimensions (KL weight "
        "1.1) that the decoder reads in place of f, the reconstruction summed over pixels, the categorical KL "
        "not divided by log K (weight 1.2), w_A 4.7, w_F 0.85, margin 0.5, 7-NN. It keeps the paper's networks "
        "(f = 50), learning rate and fixed Gumbel temperature 1 (that code: f = 200, lr 1e-2, temperature "
        "annealed from 1 to 0.5).",
    )))
