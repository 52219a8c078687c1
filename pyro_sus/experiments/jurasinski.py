"""Jurasiński, Semi-supervised learning with a latent classifier VAE (seed 004): Table 1."""

from __future__ import annotations

from ..sweep import Experiment, Row, register_experiment

GRID = (0.001, 0.1, 0.5, 1, 10, 100, 10000)
_M2 = {0: (88.6, 5.0), 0.001: (90.3, 3.5), 0.1: (91.4, 2.2), 0.5: (91.7, 2.5), 1: (92.0, 2.6),
       10: (92.6, 2.5), 100: (93.3, 2.0), 10000: (93.7, 2.5)}
_OURS = {0.001: (72.2, 3.7), 0.1: (91.7, 3.6), 0.5: (92.3, 2.8), 1: (88.2, 3.6), 10: (78.1, 1.3),
         100: (80.2, 0.9), 10000: (70.9, 0.4)}
_SIMPLE = {0.001: (82.1, 1.9), 0.1: (80.4, 0.7), 0.5: (79.5, 1.1), 1: (78.7, 0.7), 10: (76.7, 0.3),
           100: (75.9, 0.8), 10000: (72.4, 0.9)}
# All 784 pixels, scaled to [0, 1] (no std filter: that is Willetts' preprocessing, not Kingma's).
_SPLIT = {"labels_per_class": 10, "validation_fraction": 1 / 6, "prior": "uniform", "std_threshold": None}
_NETS = {"z_dim": 50, "hidden_dims": [500]}
register_experiment(Experiment(
    "jurasinski-table1", "Jurasiński, Semi-supervised learning with a latent classifier VAE (seed 004)",
    "Table 1: MNIST, 100 labels (50k / 10k / 10k)", "mnist",
    {"epochs": 500, "learning_rate": 1e-3, "batch_size": 100, "select": "best-validation"},
    (Row("baseline (labelled-only classifier)", "classifier",
         {**_SPLIT, "model_options": {"hidden_dims": [500]}}, {"accuracy": (74.74, 1.16)}),)
    + tuple(Row(f"M2 alpha={a:g}", "m2", {**_SPLIT, "model_options": {**_NETS, "alpha": a}},
                {"accuracy": n}) for a, n in _M2.items())
    + tuple(Row(f"LCVAE lambda={lam:g}", "lcvae",
                {**_SPLIT, "model_options": {**_NETS, "labelled_weight": lam}},
                {"accuracy": n}) for lam, n in _OURS.items())
    + tuple(Row(f"LCVAE simplified lambda={lam:g}", "lcvae-simple",
                {**_SPLIT, "model_options": {**_NETS, "labelled_weight": lam}},
                {"accuracy": n}) for lam, n in _SIMPLE.items()),
    seeds=4, deviations=(
        "Each run hands back its best validation epoch's model (select=best-validation), as the paper picks the "
        "best epoch on validation; runs made before this option existed scored the final epoch.",
        "The paper does not state its number of runs; we default to 4.",
        "Networks from Kingma et al. as the paper says: one hidden layer of 500, z = 50, Adam 1e-3, cosine decay.",
    )))
