"""Reproduce the papers' tables with one command: a registry of experiments (paper, table, split,
hyperparameters, the paper's numbers, every deviation stated), a runner that trains J runs at once
in separate processes, and an aggregator that writes our number beside the paper's.

    pyro-sus reproduce --list
    pyro-sus reproduce willetts-table2-mnist --rows "GM-DGM SUS" --seeds 2 --epochs 15 --jobs 2

Folder layout under ``OUT/NAME/``: ``jobs/ROW-seedS.json`` (what each run does), ``logs/ROW-seedS.log``,
``runs/ROW-seedS/`` (an ordinary run folder), ``summary.json`` and ``summary.md``. Re-running the
command skips finished runs and resumes interrupted ones (a run stopped before its first checkpoint
starts over). ``--smoke`` shrinks data and epochs for tests; smoke runs are never written to the
results page.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .data import Dataset, load_dataset
from .io import atomic_write_json, atomic_write_text
from .models.catvae import RELEASED_CODE_OPTIONS

__all__ = ["Row", "Experiment", "EXPERIMENTS", "ENGINES", "register_experiment", "get_experiment", "plan_jobs",
           "run_jobs", "run_one_job",
           "aggregate", "write_results_section", "reproduce", "SMOKE"]

# --smoke: a few batches of a small subset, one epoch (unless epochs are given), one seed, at most
# 5 labels per class (tests and a quick check of a setup).
SMOKE = {"max_train": 400, "max_test": 200, "epochs": 1, "labels_per_class": 5}
METRIC_NAMES = {"accuracy": "honest accuracy", "paper_protocol_accuracy": "accuracy (paper protocol)",
                "known_accuracy": "known-class accuracy", "novel_accuracy": "novel-class accuracy",
                "hungarian_accuracy": "clustering ACC (Hungarian)", "nmi": "NMI"}


@dataclass(frozen=True)
class Row:
    """One line of a paper's table: a model with its options, and the paper's numbers for it.

    ``fit`` holds keyword arguments of :func:`pyro_sus.fit` (split, prior, ``model_options``);
    ``paper`` maps a test metric of :func:`pyro_sus.metrics.score` to the paper's (mean %, sd % or None);
    ``data`` may restrict classes: ``{"keep_classes": [...]}`` (everywhere) or ``{"test_classes": [...]}``;
    ``train`` overrides the experiment's training options for this row. ``choose_on_validation`` maps
    training options to values to try: each seed trains every combination, and the run with the best
    validation accuracy is the one whose test numbers count (model selection as the papers do it).
    """

    label: str
    model: str
    fit: dict[str, Any]
    paper: dict[str, tuple[float, float | None]]
    data: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    choose_on_validation: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def candidates(self) -> list[dict[str, Any]]:
        """Every combination of the ``choose_on_validation`` values, in the order given ([{}] if none)."""
        names = list(self.choose_on_validation)
        return [dict(zip(names, values)) for values in itertools.product(*self.choose_on_validation.values())]


def _candidate_text(candidate: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in candidate.items())


@dataclass(frozen=True)
class Experiment:
    """A table of a paper: its data set, training options (the paper's), rows, and deviations."""

    name: str
    paper: str
    table: str
    dataset: str
    train: dict[str, Any]
    rows: tuple[Row, ...]
    seeds: int
    deviations: tuple[str, ...] = ()
    data_note: str | None = None

    @property
    def epochs(self) -> int:
        return int(self.train["epochs"])

    def row(self, label: str) -> Row:
        for row in self.rows:
            if row.label == label:
                return row
        raise ValueError(f"{self.name} has no row {label!r}; rows: {[r.label for r in self.rows]}")


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(experiment: Experiment, replace: bool = False) -> Experiment:
    """Add an experiment to the registry; a different one under a taken name needs ``replace=True``."""
    old = EXPERIMENTS.get(experiment.name)
    if old is not None and old != experiment and not replace:
        raise ValueError(f"experiment {experiment.name!r} is already registered (pass replace=True)")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; known: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]


# -- the registry --------------------------------------------------------------------------------
WILLETTS = "Willetts, Roberts & Holmes, Semi-Unsupervised Learning: Clustering and Classifying using Ultra-Sparse Labels (seed 000)"
WILLETTS_DEVIATIONS = (
    "Epoch = one pass over the unlabelled set, each step taking a labelled and an unlabelled batch of the "
    "entry's batch size (MNIST 100, the released code's; Fashion-MNIST and HAR 64, Table III's); Table III's "
    "MNIST batch size of 4 is used only by the rows named 'batch 4'.",
    "y is summed out exactly (enumeration) instead of Gumbel-softmax samples; kernels use PyTorch's default "
    "initialisation instead of N(0, 0.001).",
    "The final epoch is scored (\"up to 400 epochs\": the paper does not say how it stopped).",
    "US uses K = n_aug = 40 slots (the paper gives K = n_l + n_aug with n_l = 0); the SUS prior puts half "
    "its mass on the labelled classes.",
)


def _willetts_rows(known: Sequence[int], hidden: Sequence[int], n_classes: int, model_options: dict[str, Any],
                   numbers: dict[str, dict[str, tuple[float, float]]]) -> tuple[Row, ...]:
    regimes = {
        "US": {"hidden_classes": list(range(n_classes)), "n_extra": 40, "prior": "uniform"},
        "SS": {"labelled_fraction": 0.2, "prior": "uniform"},
        "SUS": {"hidden_classes": list(hidden), "labelled_fraction": 0.2, "n_extra": 40, "prior": "sus"},
    }
    return tuple(Row(f"{name} {regime}", model, {**split, "model_options": dict(model_options)},
                     {"paper_protocol_accuracy": numbers[name][regime]})
                 for name, model in (("M2", "m2"), ("GM-DGM", "gmdgm")) for regime, split in regimes.items())


# The paper's estimator for y (Sec. II-B, Appendix C: one Gumbel-softmax / Concrete draw per point).
# It gives no temperature; this is Jang et al.'s schedule, tau = max(0.5, exp(-1e-4 t)) at step t.
WILLETTS_GUMBEL = {"y_estimator": "gumbel-softmax", "temperature": 1.0, "temperature_min": 0.5,
                   "temperature_decay": 1e-4}


def _willetts_sus_variants(hidden: Sequence[int], model_options: dict[str, Any], batch_size: int,
                           numbers: dict[str, tuple[float, float]]) -> tuple[Row, ...]:
    """SUS rows with the paper's estimator, with its batch size, and with both (the paper's setting)."""
    split = {"hidden_classes": list(hidden), "labelled_fraction": 0.2, "n_extra": 40, "prior": "sus"}
    variants = ((", Gumbel-softmax y", WILLETTS_GUMBEL, {}), (f", batch {batch_size}", {}, {"batch_size": batch_size}),
                (f", Gumbel-softmax y, batch {batch_size}", WILLETTS_GUMBEL, {"batch_size": batch_size}))
    return tuple(Row(f"{name} SUS{suffix}", model, {**split, "model_options": {**model_options, **estimator}},
                     {"paper_protocol_accuracy": numbers[name]}, train=train)
                 for suffix, estimator, train in variants for name, model in (("M2", "m2"), ("GM-DGM", "gmdgm")))


register_experiment(Experiment(
    "willetts-table2-mnist", WILLETTS, "Table II, MNIST (US, SS, SUS)", "mnist",
    {"epochs": 400, "learning_rate": 1e-3, "batch_size": 100},
    _willetts_rows(range(5), range(5, 10), 10, {"z_dim": 5, "hidden_dims": [200, 200]},
                   {"M2": {"US": (26.1, 2.8), "SS": (97.6, 0.1), "SUS": (54.3, 0.9)},
                    "GM-DGM": {"US": (90.0, 1.5), "SS": (97.7, 0.1), "SUS": (92.5, 0.3)}})
    + _willetts_sus_variants(range(5, 10), {"z_dim": 5, "hidden_dims": [200, 200]}, 4,
                             {"M2": (54.3, 0.9), "GM-DGM": (92.5, 0.3)}),
    seeds=4, deviations=WILLETTS_DEVIATIONS + (
        "Rows named 'Gumbel-softmax y' draw y as the paper says, one relaxed sample per point (the "
        "enumerated rows are the released code's exact sum); the paper gives no temperature, so it follows "
        "Jang et al.'s schedule max(0.5, exp(-1e-4 t)) at step t, and KL(q(y|x) || p(y)) is computed exactly. "
        "Rows named 'batch 4' use Table III's MNIST batch size (4 labelled + 4 unlabelled points a step).",)))

register_experiment(Experiment(
    "willetts-table2-fashion-mnist", WILLETTS, "Table II, Fashion-MNIST (US, SS, SUS)", "fashion-mnist",
    {"epochs": 400, "learning_rate": 1.5e-3, "batch_size": 64},
    _willetts_rows(range(5), range(5, 10), 10, {"z_dim": 10, "hidden_dims": [500, 500]},
                   {"M2": {"US": (18.2, 0.4), "SS": (86.8, 0.2), "SUS": (38.7, 1.7)},
                    "GM-DGM": {"US": (75.8, 0.3), "SS": (86.9, 0.1), "SUS": (78.22, 1.1)}}),
    seeds=4, deviations=WILLETTS_DEVIATIONS))

register_experiment(Experiment(
    "willetts-table2-har", WILLETTS, "Table II, HAR (US, SS, SUS) — on UCI HAR, not the paper's HAR set", "har",
    {"epochs": 400, "learning_rate": 5e-3, "batch_size": 64},
    _willetts_rows(range(3), range(3, 6), 6,
                   {"z_dim": 15, "hidden_dims": [500, 500], "likelihood": "gaussian", "gaussian_scale": 0.01},
                   {"M2": {"US": (29.0, 1.1), "SS": (97.7, 0.1), "SUS": (49.7, 7.5)},
                    "GM-DGM": {"US": (81.7, 1.8), "SS": (96.6, 0.3), "SUS": (87.1, 2.3)}}),
    seeds=4, deviations=WILLETTS_DEVIATIONS + (
        "The paper's HAR is Stisen et al.'s heterogeneity set; this entry runs the public UCI HAR set "
        "(561 features, 6 activities), so its numbers are not the paper's experiment.",
        "No input-dimension filter (Willetts filter only image data).",),
    data_note="needs the UCI HAR Dataset (not bundled): unpack it under --data-dir (DATA_DIR/'UCI HAR Dataset/')"))

for _dataset, _name, _options, _train, _numbers in (
        ("mnist", "MNIST", {"z_dim": 5, "hidden_dims": [200, 200]}, {"learning_rate": 1e-3, "batch_size": 100},
         ((97.0, 0.4), (97.4, 0.3))),
        ("fashion-mnist", "Fashion-MNIST", {"z_dim": 10, "hidden_dims": [500, 500]},
         {"learning_rate": 1.5e-3, "batch_size": 64}, ((90.1, 0.3), (89.8, 0.2)))):
    register_experiment(Experiment(
        f"willetts-table1-{_dataset}", WILLETTS, f"Table I, {_name}: accidental semi-unsupervised learning (SSVAE)",
        _dataset, {"epochs": 400, **_train},
        (Row("SS (classes 0-4 only)", "m2", {"labelled_fraction": 0.2, "model_options": dict(_options)},
             {"accuracy": _numbers[0]}, data={"keep_classes": [0, 1, 2, 3, 4]}),
         Row("accidental SUS (5-9 unlabelled, no extra slots)", "m2",
             {"hidden_classes": [5, 6, 7, 8, 9], "labelled_fraction": 0.2, "n_extra": 0,
              "model_options": dict(_options)},
             {"accuracy": _numbers[1]}, data={"test_classes": [0, 1, 2, 3, 4]})),
        seeds=4, deviations=WILLETTS_DEVIATIONS[:3]))

register_experiment(Experiment(
    "willetts-workshop-table1",
    "Willetts, Roberts & Holmes, Semi-Unsupervised Learning with Deep Generative Models (workshop; seed 001)",
    "Table 1: MNIST, 0,1,2,8,9 with 100 labels each, 3-7 hidden, K = 15", "mnist",
    {"epochs": 200, "learning_rate": 1e-3, "batch_size": 100},
    tuple(Row(name, model, {"hidden_classes": [3, 4, 5, 6, 7], "labels_per_class": 100, "n_extra": 10,
                            "class_probs": [0.1] * 5 + [0.05] * 10,
                            "model_options": {"z_dim": 100, "hidden_dims": [500, 500]}}, numbers)
          for name, model, numbers in (
              ("M2", "m2", {"paper_protocol_accuracy": (74.3, 4.4), "known_accuracy": (86.3, 2.2),
                            "novel_accuracy": (63.4, 8.3)}),
              ("GM-DGM", "gmdgm", {"paper_protocol_accuracy": (90.7, 2.0), "known_accuracy": (93.7, 1.9),
                                   "novel_accuracy": (87.4, 4.5)}))),
    seeds=10, deviations=(
        "The paper does not state its epochs; we use 200. Networks: two hidden layers of 500 (the paper: 2-4).",
        "No Gaussian weight prior on the network weights, Glorot initialisation not used.",
        "Known / novel accuracy here map extra slots on validation data (honest); the paper maps on the "
        "test set. The overall row uses the paper's protocol.",
    )))

JURASINSKI_GRID = (0.001, 0.1, 0.5, 1, 10, 100, 10000)
_JURASINSKI_M2 = {0: (88.6, 5.0), 0.001: (90.3, 3.5), 0.1: (91.4, 2.2), 0.5: (91.7, 2.5), 1: (92.0, 2.6),
                  10: (92.6, 2.5), 100: (93.3, 2.0), 10000: (93.7, 2.5)}
_JURASINSKI_OURS = {0.001: (72.2, 3.7), 0.1: (91.7, 3.6), 0.5: (92.3, 2.8), 1: (88.2, 3.6), 10: (78.1, 1.3),
                    100: (80.2, 0.9), 10000: (70.9, 0.4)}
_JURASINSKI_SIMPLE = {0.001: (82.1, 1.9), 0.1: (80.4, 0.7), 0.5: (79.5, 1.1), 1: (78.7, 0.7), 10: (76.7, 0.3),
                      100: (75.9, 0.8), 10000: (72.4, 0.9)}
# All 784 pixels, scaled to [0, 1] (no std filter: that is Willetts' preprocessing, not Kingma's).
_JURASINSKI_SPLIT = {"labels_per_class": 10, "validation_fraction": 1 / 6, "prior": "uniform", "std_threshold": None}
_JURASINSKI_NETS = {"z_dim": 50, "hidden_dims": [500]}
register_experiment(Experiment(
    "jurasinski-table1", "Jurasiński, Semi-supervised learning with a latent classifier VAE (seed 004)",
    "Table 1: MNIST, 100 labels (50k / 10k / 10k)", "mnist",
    {"epochs": 500, "learning_rate": 1e-3, "batch_size": 100, "select": "best-validation"},
    (Row("baseline (labelled-only classifier)", "classifier",
         {**_JURASINSKI_SPLIT, "model_options": {"hidden_dims": [500]}}, {"accuracy": (74.74, 1.16)}),)
    + tuple(Row(f"M2 alpha={a:g}", "m2", {**_JURASINSKI_SPLIT, "model_options": {**_JURASINSKI_NETS, "alpha": a}},
                {"accuracy": n}) for a, n in _JURASINSKI_M2.items())
    + tuple(Row(f"LCVAE lambda={lam:g}", "lcvae",
                {**_JURASINSKI_SPLIT, "model_options": {**_JURASINSKI_NETS, "labelled_weight": lam}},
                {"accuracy": n}) for lam, n in _JURASINSKI_OURS.items())
    + tuple(Row(f"LCVAE simplified lambda={lam:g}", "lcvae-simple",
                {**_JURASINSKI_SPLIT, "model_options": {**_JURASINSKI_NETS, "labelled_weight": lam}},
                {"accuracy": n}) for lam, n in _JURASINSKI_SIMPLE.items()),
    seeds=4, deviations=(
        "Each run hands back its best validation epoch's model (select=best-validation), as the paper picks the "
        "best epoch on validation; runs made before this option existed scored the final epoch.",
        "The paper does not state its number of runs; we default to 4.",
        "Networks from Kingma et al. as the paper says: one hidden layer of 500, z = 50, Adam 1e-3, cosine decay.",
    )))

_ARIAS_CONV = {"z_dim": 50, "encoder": "conv", "category_inference": "gumbel", "temperature": 1.0}
_ARIAS_PAPER = {"hungarian_accuracy": (98.3, None), "nmi": (95.4, None), "accuracy": (98.33, 0.18)}
# The losses of the authors' released code (github.com/jariasf/semisupervised-vae-metric-embedding, its
# MNIST run.sh): cross-entropy assignment, a Gaussian z (150) between f and the decoder with KL weight 1.1,
# BCE summed over pixels, the categorical KL not divided by log K (weight 1.2), w_assign 4.7, w_metric 0.85,
# margin 0.5, 7-NN. The MLP ablation in docs/RESULTS.md measured them: 32.8% -> 83.0-83.9% after 3 epochs.
# With every pixel kept, w_reconstruction 784 and w_categorical 1.2 log 10 are normalise_losses=False with
# weights 1 and 1.2, up to float rounding; the row keeps the form its recorded runs were trained with.
_ARIAS_RELEASED_LOSSES = {**{key: value for key, value in RELEASED_CODE_OPTIONS.items() if key != "normalise_losses"},
                          "w_reconstruction": 784.0, "w_categorical": 1.2 * math.log(10)}
register_experiment(Experiment(
    "arias-figueroa-tables2-3",
    "Arias Figueroa & Ramírez Rivera, Learning to cluster with auxiliary tasks: a semi-supervised approach (seed 002)",
    "Tables II-III: MNIST, 100 labels: clustering ACC / NMI, test error", "mnist",
    {"epochs": 100, "learning_rate": 1e-3, "batch_size": 100},
    (Row("categorical VAE (conv)", "catvae",
         {"labels_per_class": 10, "std_threshold": None,
          "model_options": {**_ARIAS_CONV, "feature_alpha": 0.6, "w_assignment": 5.0}}, _ARIAS_PAPER),
     Row("categorical VAE (conv), losses of the released code", "catvae",
         {"labels_per_class": 10, "std_threshold": None,
          "model_options": {**_ARIAS_CONV, **_ARIAS_RELEASED_LOSSES}}, _ARIAS_PAPER)),
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

# Means over five random label selections; 95% confidence half-widths 0.60 / 0.70 / 0.38 / 0.12.
_PYRO_LABELS = {100: (93.19, None), 600: (94.37, None), 1000: (94.87, None), 3000: (95.82, None)}
register_experiment(Experiment(
    "pyro-ssvae-tutorial", "Pyro's SS-VAE tutorial (examples/vae/ss_vae_M2.py; a peer implementation, not a seed)",
    "test accuracy at 100 / 600 / 1000 / 3000 labels", "mnist",
    # The script's defaults (50 epochs, Adam 4.2e-4 with beta1 0.95, batch 200, Softplus) on grey values. Pyro visits
    # each label once per epoch: "dataset" gives each epoch the same objective. No clipping.
    {"epochs": 50, "learning_rate": 4.2e-4, "adam_beta1": 0.95, "batch_size": 200, "lr_schedule": "constant",
     "clip_value": None, "labelled_scale": "dataset", "binarize": False, "select": "best-validation"},
    # Each run tries the script's lr and the lr of Pyro's one per-epoch log (4.2e-3), and keeps the one with
    # the better validation accuracy: Pyro's table states neither, and the better one depends on the labels.
    tuple(Row(f"M2, {n} labels", "m2",
              {"labels_per_class": n // 10, "validation_fraction": 1 / 6, "prior": "uniform", "std_threshold": None,
               "model_options": {"z_dim": 50, "hidden_dims": [500], "activation": "softplus", "alpha": 46.0}},
              {"accuracy": number}, choose_on_validation={"learning_rate": (4.2e-4, 4.2e-3)})
          for n, number in _PYRO_LABELS.items()),
    seeds=5, deviations=(
        "Pyro's table gives no epochs, batch size or learning rate (its numbers are means over five random label "
        "selections, alpha' chosen on validation accuracy); the script's defaults are used, although its check "
        "that the batch size divides the number of labels rejects batch 200 with 100 labels. The learning rate is "
        "chosen per run on validation accuracy between the script's 4.2e-4 and 4.2e-3 (its per-epoch log); "
        "alpha stays at the script's 46.",
        "Labelled and unlabelled batches in one step, the labelled terms scaled by (labelled / unlabelled set "
        "sizes); Pyro interleaves one labelled batch per (unlabelled / labelled) unlabelled batches and takes "
        "the auxiliary loss as a second Adam step: the same objective per epoch, another sequence of steps.",
        "Each run hands back its best validation epoch's model (select=best-validation), as Pyro reports the test "
        "accuracy at the best validation epoch; runs made before this option existed scored the final epoch.",
    )))


# -- planning and running ----------------------------------------------------------------------
def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=]+", "-", text).strip("-").lower()


def plan_jobs(name: str, out: str | Path, seeds: int | None = None, epochs: int | None = None,
              rows: Sequence[str] | None = None, device: str = "auto", data_dir: str | None = None,
              smoke: bool = False, plugins: Sequence[str] = (), jit: bool = False,
              precision: str = "fp32") -> list[Path]:
    """Write one job file per (row, choice of ``choose_on_validation``, seed) under ``OUT/NAME/jobs``;
    returns their paths. ``plugins`` are modules each job imports first (your own experiments, models
    or priors)."""
    from .train import TrainConfig

    experiment = get_experiment(name)
    chosen = [experiment.row(label) for label in rows] if rows else list(experiment.rows)
    n_seeds = 1 if smoke else (seeds or experiment.seeds)
    epochs = epochs or (SMOKE["epochs"] if smoke else experiment.epochs)
    root = Path(out) / name
    trainable = {f.name for f in dataclasses.fields(TrainConfig)} - {"epochs", "seed", "device", "jit", "precision"}
    for row in chosen:
        if set(row.choose_on_validation) - trainable:
            raise ValueError(f"{row.label!r}: choose_on_validation names "
                             f"{sorted(set(row.choose_on_validation) - trainable)}, which are not training options; "
                             f"choose among {sorted(trainable)}")
        if row.choose_on_validation and row.fit.get("validation_fraction") == 0:
            raise ValueError(f"{row.label!r} chooses on validation accuracy but holds out no validation set")
    paths = []
    for row, candidate, seed in ((r, c, s) for r in chosen for c in r.candidates() for s in range(n_seeds)):
        # What the run does; a finished run made from a different definition must not be mixed in.
        # (A row without choices keeps the spec it had before they existed, so its old runs still count.)
        row_spec = {k: v for k, v in dataclasses.asdict(row).items() if k != "choose_on_validation" or v}
        spec = json.loads(json.dumps({"row": row_spec, "train": experiment.train, "epochs": epochs, "smoke": smoke,
                                      **({"candidate": candidate} if candidate else {})}))
        slug = f"{_slug(f'{row.label} {_candidate_text(candidate)}')}-seed{seed}"
        # jit and precision, like the device, change how fast a run goes and its rounding, not what it
        # computes: not part of the spec (the summary says which runs used them).
        job = {"experiment": name, "row": row.label, "seed": seed, "epochs": epochs, "device": device, "jit": jit,
               "precision": precision,
               "data_dir": data_dir, "smoke": smoke, "plugins": list(plugins), "run_dir": str(root / "runs" / slug),
               "log": str(root / "logs" / f"{slug}.log"), "spec": spec, "candidate": candidate}
        path = root / "jobs" / f"{slug}.json"
        if path.is_file() and Path(job["run_dir"]).is_dir():
            old = json.loads(path.read_text())
            if old.get("spec") != spec:
                raise ValueError(f"{job['run_dir']} was made with a different definition of {row.label!r} "
                                 f"(options, epochs or smoke); use another --out or delete that run folder")
        atomic_write_json(path, job)
        paths.append(path)
    return paths


def _restrict(data: Dataset, keep: Sequence[int] | None, test_only: Sequence[int] | None) -> Dataset:
    x_train, y_train, x_test, y_test = data.x_train, data.y_train, data.x_test, data.y_test
    if keep is not None:
        in_train = np.isin(y_train, keep)
        x_train, y_train = x_train[in_train], y_train[in_train]
    classes = keep if keep is not None else test_only
    if classes is not None and x_test is not None:
        in_test = np.isin(y_test, classes)
        x_test, y_test = x_test[in_test], y_test[in_test]
    return Dataset(data.name, x_train, y_train, x_test, y_test, data.image_shape)


def _subsample(data: Dataset, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    train = np.sort(rng.choice(len(data.x_train), min(SMOKE["max_train"], len(data.x_train)), replace=False))
    test = None if data.x_test is None else np.sort(rng.choice(len(data.x_test), min(SMOKE["max_test"], len(data.x_test)),
                                                               replace=False))
    return Dataset(data.name, data.x_train[train], data.y_train[train],
                   None if test is None else data.x_test[test], None if test is None else data.y_test[test],
                   data.image_shape)


def run_job(job_path: str | Path) -> None:
    """Train and evaluate one job (inside its own process); resumes an interrupted run folder."""
    from .api import fit, written_before_first_checkpoint

    job = json.loads(Path(job_path).read_text())
    for module in job.get("plugins", []):
        importlib.import_module(module)
    experiment = get_experiment(job["experiment"])
    row = experiment.row(job["row"])
    run_dir = Path(job["run_dir"])
    data = load_dataset(experiment.dataset, job["data_dir"])
    data = _restrict(data, row.data.get("keep_classes"), row.data.get("test_classes"))
    if job["smoke"]:
        data = _subsample(data, job["seed"])
    if (run_dir / "last.pt").is_file():
        fit(run_dir=run_dir, resume=True, dataset=data, progress=False)
        return
    if run_dir.is_dir() and all(written_before_first_checkpoint(p.name) for p in run_dir.iterdir()):
        # Stopped before its first checkpoint (killed, out of time): nothing to resume, start over.
        for path in run_dir.iterdir():
            path.unlink()
    options = dict(row.fit)
    if job["smoke"] and options.get("labels_per_class"):  # the subset may hold fewer points per class
        options["labels_per_class"] = min(options["labels_per_class"], SMOKE["labels_per_class"])
    # A data set chosen by name keeps its name in run.json; a restricted one is passed as an object.
    fit(row.model, data, run_dir, data_dir=job["data_dir"], **options,
        train_options={**experiment.train, **row.train, **job.get("candidate", {}), "epochs": job["epochs"],
                       "seed": job["seed"], "device": job["device"], "jit": job.get("jit", False),
                       "precision": job.get("precision", "fp32")},
        progress=False)


ENGINES = ("local", "ray")


def run_one_job(path: str | Path, threads: int) -> int:
    """Run one job in its own process unless it finished before (exit status 0 then); its output goes
    to the job's log. Both engines run this, on whichever machine takes the job."""
    path = Path(path)
    job = json.loads(path.read_text())
    if (Path(job["run_dir"]) / "results.json").is_file():
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    Path(job["log"]).parent.mkdir(parents=True, exist_ok=True)
    with open(job["log"], "a") as log:
        log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} {path}\n")
        log.flush()
        return subprocess.call([sys.executable, "-m", "pyro_sus.reproduce", str(path)], stdout=log,
                               stderr=subprocess.STDOUT, env=env)


def run_jobs(job_paths: Sequence[Path], jobs: int = 1, threads: int | None = None, engine: str = "local",
             address: str | None = None) -> dict[str, int]:
    """Run every job not finished yet; a failing job does not stop the others. Returns each job
    file's exit status (0 also for one finished before), keyed by its path.

    ``engine="local"``: ``jobs`` processes at a time on this machine. ``engine="ray"``: one Ray task
    per job, each asking for ``threads`` CPUs, on the Ray cluster at ``address`` (None: the one this
    process is connected to, or a local one started here), so the cluster's free CPUs set how many
    run at once; every machine must see the job files, the output folder and the data at the same paths.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, jobs))
    if engine == "ray":
        return _run_jobs_on_ray(job_paths, threads, address)
    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return dict(pool.map(lambda path: (str(path), run_one_job(path, threads)), job_paths))


def _run_jobs_on_ray(job_paths: Sequence[Path], threads: int, address: str | None) -> dict[str, int]:
    try:
        import ray
    except ImportError:
        raise ValueError("--engine ray needs Ray: pip install 'pyro_sus[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=threads, max_retries=0)(run_one_job)
        refs = {str(path): task.remote(str(path), threads) for path in job_paths}
        statuses = {}
        for path, ref in refs.items():
            try:
                statuses[path] = ray.get(ref)
            except ray.exceptions.RayError as err:  # the task itself failed (a lost node): that job only
                statuses[path] = 1
                log = Path(json.loads(Path(path).read_text())["log"])
                log.parent.mkdir(parents=True, exist_ok=True)
                with open(log, "a") as handle:
                    handle.write(f"# ray: {type(err).__name__}: {err}\n")
        return statuses
    finally:
        if started_here:
            ray.shutdown()


# -- aggregation ---------------------------------------------------------------------------------
def _mean_sd(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)


def _finished_runs(jobs: list[dict[str, Any]], row: Row) -> list[tuple[dict[str, Any], dict[str, Any]]] | None:
    """(choice, results) of one seed's runs in the row's order of choices; None unless every choice finished."""
    by_choice = {_candidate_text(j.get("candidate", {})): j for j in jobs}
    runs = []
    for candidate in row.candidates():
        job = by_choice.get(_candidate_text(candidate))
        path = None if job is None else Path(job["run_dir"]) / "results.json"
        if path is None or not path.is_file():  # not planned, failed or not finished
            return None
        runs.append((candidate, json.loads(path.read_text())))
    if len(runs) > 1 and any(not r.get("validation") for _, r in runs):
        raise ValueError(f"{row.label!r} chooses on validation accuracy, but a run has no validation scores")
    return runs


def _trained_with(job: dict[str, Any], option: str, default: Any) -> Any:
    """A training option of the job's run as saved in its run folder (``jit``, ``precision``): a
    resumed run keeps the options it started with, whatever the job file says now."""
    path = Path(job["run_dir"]) / "run.json"
    return json.loads(path.read_text()).get("train", {}).get(option, default) if path.is_file() else default


def aggregate(name: str, out: str | Path) -> dict[str, Any]:
    """Mean ± sd over seeds of every row's metrics beside the paper's; writes summary.json / summary.md."""
    experiment = get_experiment(name)
    root = Path(out) / name
    jobs = [json.loads(p.read_text()) for p in sorted((root / "jobs").glob("*.json"))]
    rows = []
    for row in experiment.rows:
        # Jobs of choices the row no longer makes (e.g. planned before it had any) are not its runs.
        choices = {_candidate_text(c) for c in row.candidates()}
        mine = [j for j in jobs if j["row"] == row.label and _candidate_text(j.get("candidate", {})) in choices]
        if not mine:
            continue
        results, failed, walls, selection = [], [], [], []
        for seed in sorted({j["seed"] for j in mine}):
            runs = _finished_runs([j for j in mine if j["seed"] == seed], row)
            if runs is None:  # a run (or one of the choices) failed or has not finished
                failed.append(seed)
                continue
            best = runs[0]
            if len(runs) > 1:
                best = max(runs, key=lambda run: run[1]["validation"]["accuracy"])  # ties: the first choice
                selection.append({"seed": seed, "chosen": best[0],
                                  "validation_accuracy": {_candidate_text(c): 100 * r["validation"]["accuracy"]
                                                          for c, r in runs}})
            results.append(best[1])
            # The price of choosing is every choice's training time.
            seconds = [r.get("train_wall_seconds") for _, r in runs]
            if all(t is not None for t in seconds):
                walls.append(sum(seconds))
        metrics = {}
        for metric, paper in row.paper.items():
            values = [100 * r["test"][metric] for r in results if r.get("test", {}).get(metric) is not None]
            mean, sd = _mean_sd(values)
            metrics[metric] = {"ours_mean": mean, "ours_sd": sd, "paper_mean": paper[0], "paper_sd": paper[1],
                               "difference": None if mean is None else mean - paper[0], "n": len(values)}
        hardware = results[0].get("hardware") if results else None
        rows.append({"row": row.label, "model": row.model, "seeds": sorted(r["seed"] for r in results),
                     "failed_seeds": sorted(failed), "epochs": sorted({r["epochs"] for r in results}),
                     "planned_epochs": sorted({j["epochs"] for j in mine}),
                     "smoke": any(j["smoke"] for j in mine), "metrics": metrics,
                     "wall_seconds_per_run": float(np.mean(walls)) if walls else None, "hardware": hardware,
                     "jit": any(_trained_with(j, "jit", False) for j in mine),
                     "precision": sorted({_trained_with(j, "precision", "fp32") for j in mine}),
                     **({"chosen_on_validation": selection} if row.choose_on_validation else {})})
    summary = {"experiment": name, "paper": experiment.paper, "table": experiment.table,
               "paper_epochs": experiment.epochs, "paper_seeds": experiment.seeds,
               "deviations": list(experiment.deviations), "all_rows": len(rows) == len(experiment.rows), "rows": rows}
    atomic_write_json(root / "summary.json", summary)
    atomic_write_text(root / "summary.md", render_markdown(summary))
    return summary


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
    groups: dict[tuple[int, int | None, bool, str], list[str]] = {}
    for r in summary["rows"]:
        runs = len(r["seeds"]) + len(r["failed_seeds"])
        # The planned epochs: a row whose runs all failed has none finished, and its command still needs them.
        planned = r.get("planned_epochs") or r["epochs"]
        precision = ",".join(p for p in r.get("precision", []) if p != "fp32")
        groups.setdefault((runs, planned[0] if planned else None, r.get("jit", False), precision), []).append(r["row"])
    commands = []
    for (runs, epochs, jit, precision), labels in groups.items():
        every_row = len(groups) == 1 and summary.get("all_rows", True)
        commands.append(f"`pyro-sus reproduce {summary['experiment']}"
                        + ("" if every_row else " --rows " + " ".join(f'"{label}"' for label in labels))
                        + (f" --epochs {epochs}" if epochs is not None and epochs != summary["paper_epochs"] else "")
                        + (f" --seeds {runs}" if runs and runs != summary["paper_seeds"] else "")
                        + (" --jit" if jit else "") + (f" --precision {precision}" if precision else "")
                        + " --write-results`")
    return ("Command: " if len(commands) == 1 else "Commands: ") + "; ".join(commands)


def render_markdown(summary: dict[str, Any]) -> str:
    """The summary as a section of docs/RESULTS.md: ours beside the paper's, REDUCED where it is."""
    rows = summary["rows"]
    epochs = sorted({e for r in rows for e in r["epochs"]})
    seeds = max((len(r["seeds"]) for r in rows), default=0)
    reduced = (any(e < summary["paper_epochs"] for e in epochs) or seeds < summary["paper_seeds"]
               or any(r["smoke"] for r in rows))
    title = f"### `{summary['experiment']}`: {summary['table']}" + (" — REDUCED" if reduced else "")
    lines = [title, "", f"Paper: {summary['paper']}. ",
             f"Paper's budget: {summary['paper_epochs']} epochs, {summary['paper_seeds']} run(s). "
             f"Ours: {', '.join(map(str, epochs)) or 'n/a'} epochs, up to {seeds} seed(s)"
             + (" (**smoke run: tiny data, not a result**)" if any(r["smoke"] for r in rows) else "") + ".",
             _commands_text(summary), "",
             "| row | metric | ours | paper | ours − paper | seeds | epochs | wall s / run | hardware |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        for metric, m in r["metrics"].items():
            diff = "n/a" if m["difference"] is None else f"{m['difference']:+.1f}"
            failed = f" ({len(r['failed_seeds'])} failed)" if r["failed_seeds"] else ""
            wall = "n/a" if r["wall_seconds_per_run"] is None else f"{r['wall_seconds_per_run']:.0f}"
            lines.append(f"| {r['row']} | {METRIC_NAMES.get(metric, metric)} | {_fmt(m['ours_mean'], m['ours_sd'])} | "
                         f"{_fmt(m['paper_mean'], m['paper_sd'])} | {diff} | {len(r['seeds'])}{failed} | "
                         f"{', '.join(map(str, r['epochs'])) or 'n/a'} | {wall} | {_hardware_text(r['hardware'])} |")
    chosen = [(r["row"], s) for r in rows for s in r.get("chosen_on_validation", [])]
    if chosen:
        lines += ["", "Chosen per seed on validation accuracy (the wall time above counts every choice's training):"]
        lines += [f"- {row}, seed {s['seed']}: {_candidate_text(s['chosen'])} (validation: "
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


def reproduce(name: str, out: str | Path = "runs/reproduce", *, seeds: int | None = None, epochs: int | None = None,
              rows: Sequence[str] | None = None, device: str = "auto", jobs: int = 1, data_dir: str | None = None,
              smoke: bool = False, threads: int | None = None,
              plugins: Sequence[str] = (), jit: bool = False, precision: str = "fp32", engine: str = "local",
              address: str | None = None) -> tuple[dict[str, Any], dict[str, int]]:
    """Plan, run (``jobs`` at a time, or on Ray: :func:`run_jobs`) and aggregate one experiment;
    returns (summary, exit status per job)."""
    experiment = get_experiment(name)
    load_dataset(experiment.dataset, data_dir)  # a missing data set fails here, once, with its own message
    statuses = run_jobs(plan_jobs(name, out, seeds, epochs, rows, device, data_dir, smoke, plugins, jit, precision),
                        jobs, threads, engine=engine, address=address)
    return aggregate(name, out), statuses


if __name__ == "__main__":  # one job per process: python -m pyro_sus.reproduce JOB.json
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pyro_sus.reproduce JOB.json")
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    # Through the imported module, not this __main__ copy: a plugin registers its experiments in
    # pyro_sus.reproduce.EXPERIMENTS, which is not this file's dict when it runs as a script.
    from pyro_sus.reproduce import run_job as run_job_in_package

    run_job_in_package(sys.argv[1])
