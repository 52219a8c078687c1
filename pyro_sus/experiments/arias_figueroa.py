"""Arias Figueroa & Ramírez Rivera, Learning to cluster with auxiliary tasks (seed 002): Tables II-III."""

from __future__ import annotations

import math

from ..models.catvae import RELEASED_CODE_OPTIONS
from ..tables import Experiment, Row, Setting, register_experiment as _register_experiment


def register_experiment(experiment: Experiment) -> Experiment:
    """Register one of this module's tables; each job process imports this module to find it."""
    return _register_experiment(experiment, module=__name__)


_CONV = {"z_dim": 50, "encoder": "conv", "category_inference": "gumbel", "temperature": 1.0}
_PAPER = {"hungarian_accuracy": (98.3, None), "nmi": (95.4, None), "accuracy": (98.33, 0.18)}
# The losses of the authors' released code (github.com/jariasf/semisupervised-vae-metric-embedding, its
# MNIST run.sh): cross-entropy assignment, a Gaussian z (150) between f and the decoder with KL weight 1.1,
# BCE summed over pixels, the categorical KL not divided by log K (weight 1.2), w_assign 4.7, w_metric 0.85,
# margin 0.5, 7-NN. The MLP ablation in docs/RESULTS.md measured them: 32.8% -> 83.0-83.9% after 3 epochs.
# With every pixel kept, w_reconstruction 784 and w_categorical 1.2 log 10 with the paper's normalised losses are
# normalise_losses=False with weights 1 and 1.2, up to float rounding; the row keeps the form its recorded runs
# were trained with (normalise_losses=True, stated: "catvae"'s default is False since 2026-12-05).
_RELEASED_LOSSES = {**{key: value for key, value in RELEASED_CODE_OPTIONS.items() if key != "normalise_losses"},
                    "normalise_losses": True, "w_reconstruction": 784.0, "w_categorical": 1.2 * math.log(10)}
_PAPER_ROW, _RELEASED_ROW = "categorical VAE (conv)", "categorical VAE (conv), losses of the released code"
_ALL_LABELS_ROW = "categorical VAE (conv), losses of the released code, all labels"
register_experiment(Experiment(
    "arias-figueroa-tables2-3",
    "Arias Figueroa & Ramírez Rivera, Learning to cluster with auxiliary tasks: a semi-supervised approach (seed 002)",
    "Tables II-III: MNIST, 100 labels: clustering ACC / NMI, test error", "mnist",
    {"epochs": 100, "learning_rate": 1e-3, "batch_size": 100},
    (Row(_PAPER_ROW, "catvae-paper",
         {"labels_per_class": 10, "std_threshold": None,
          "model_options": {**_CONV, "feature_alpha": 0.6, "w_assignment": 5.0}}, _PAPER),
     Row(_RELEASED_ROW, "catvae",
         {"labels_per_class": 10, "std_threshold": None,
          "model_options": {**_CONV, **_RELEASED_LOSSES}}, _PAPER),
     # Table III's "All" column: every training label kept (test error 0.70).
     Row(_ALL_LABELS_ROW, "catvae", {"std_threshold": None, "model_options": {**_CONV, **_RELEASED_LOSSES}},
         {"accuracy": (99.3, None)})),
    seeds=5, settings=(
        Setting("networks", "conv encoder and decoder of Sec. V-A, f = 50", "the same", "paper", "model.encoder",
                "conv"),
        Setting("BatchNorm", "after every convolution but the decoder's output", "after every convolution but the "
                "encoder's last (f) and the decoder's output", "ours"),
        Setting("categories C", "Gumbel-softmax, fixed temperature 1", "Gumbel-softmax, fixed temperature 1",
                "paper", "model.category_inference", "gumbel"),
        Setting("weight initialisation", "LeCun et al.'s", "PyTorch's default", "ours", "model.init", "default"),
        Setting("reconstruction", "normalised mean squared error on [0, 1] pixels", "Bernoulli log-likelihood of "
                "pixels binarised by a draw per image and batch", "ours", "model.likelihood", "bernoulli"),
        Setting("pixels", "grey values in [0, 1], no pre-processing", "binarised by a draw per image and batch, "
                "every pixel kept", "ours", "train.binarize", True),
        Setting("validation data", "20% of the 59,900 unlabelled training images", "10% of the training set",
                "ours", "split.validation_fraction", 0.1),
        Setting("learning-rate schedule", "1e-3, halved every 50 epochs", "cosine decay from 1e-3", "ours",
                "train.lr_schedule", "cosine"),
        Setting("batches", "200 images: 100 labelled and 100 unlabelled", "100 labelled and 100 unlabelled",
                "paper", "train.batch_size", 100),
        Setting("feature loss", "Eqs. 17-18 (they collapse the features: docs/RESULTS.md)", "the lifted-structure "
                "loss", "released code", "model.feature_loss", "lifted"),
        Setting("objective", "Eqs. 8-16 as printed", "as printed", "paper", "model.normalise_losses", True,
                (_PAPER_ROW,)),
        Setting("objective", "Eqs. 8-16 as printed", "cross-entropy in place of Eq. 16, a Gaussian z ~ q(z|f) of "
                "150 dimensions (KL weight 1.1) that the decoder reads in place of f, the reconstruction summed over "
                "pixels, the categorical KL not divided by log K (weight 1.2), w_A 4.7, w_F 0.85, margin 0.5, 7-NN "
                "(f = 50, lr 1e-3 and temperature 1 kept from the paper; that code: f = 200, lr 1e-2, temperature "
                "annealed from 1 to 0.5)", "released code", "model.normalise_losses", True,
                (_RELEASED_ROW, _ALL_LABELS_ROW)),
    ), deviations=(
        "Table III's error is reported here as accuracy (100 - error).",
    )))
