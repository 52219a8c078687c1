"""The zoo benchmark: every model on one setting with the same networks and budget (no paper's
numbers: each row reports our metrics only). docs/RESULTS.md's zoo tables.

    pyro-sus reproduce zoo-digits-sus --jobs 2
    python benchmarks/summarize_runs.py runs/reproduce/zoo-digits-sus/runs/*     # the wide table
"""

from __future__ import annotations

from typing import Any

from ..models.catvae import RELEASED_CODE_OPTIONS
from ..tables import Experiment, Row, register_experiment as _register_experiment


def register_experiment(experiment: Experiment) -> Experiment:
    """Register one of this module's tables; each job process imports this module to find it."""
    return _register_experiment(experiment, module=__name__)


#: What a zoo row reports (no paper gives these numbers for these settings): with hidden classes,
#: the known / novel split and the paper protocol; semi-supervised, accuracy is all there is to split.
SUS_METRICS = ("accuracy", "known_accuracy", "novel_accuracy", "paper_protocol_accuracy", "hungarian_accuracy", "nmi")
SS_METRICS = ("accuracy", "hungarian_accuracy", "nmi")

_FLOW = {"posterior": "flow", "posterior_options": {"transforms": 4}}
#: Each variant's model and its own options; z_dim None: the setting's, "none": the model has no z.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "m2": ("m2", {}),
    "gmdgm": ("gmdgm", {}),
    "am2": ("am2", {}),
    "agmdgm": ("agmdgm", {}),
    "m2-flow": ("m2", _FLOW),
    "gmdgm-flow": ("gmdgm", _FLOW),
    "lcvae": ("lcvae", {}),
    "lcvae-flow": ("lcvae", _FLOW),
    "lcvae-simple": ("lcvae-simple", {}),
    "m1": ("m1", {}),
    "classifier": ("classifier", {"z_dim": None}),  # the labelled-only classifier has no latent
    # For the categorical VAE z is the feature f: the paper's size, 50, in every setting. "catvae-paper"
    # trains the objective as the paper prints it; the model "catvae" the authors' released code's, with
    # their MNIST weights (its defaults, given here as the recorded runs were made).
    "catvae-paper": ("catvae-paper", {"z_dim": 50}),
    "catvae-paper-gumbel": ("catvae-paper", {"z_dim": 50, "category_inference": "gumbel"}),
    "catvae-paper-feature-loss": ("catvae-paper", {"z_dim": 50, "feature_loss": "paper"}),
    "catvae-released": ("catvae", {"z_dim": 50, **RELEASED_CODE_OPTIONS}),
    # The paper's convolutional networks read whole 28 x 28 images (every pixel kept): MNIST-shaped data only.
    "catvae-conv": ("catvae", {"z_dim": 50, "encoder": "conv"}),
}
IMAGE_28_ONLY = ("catvae-conv",)


def _rows(split: dict[str, Any], networks: dict[str, Any], images_28: bool, metrics: tuple[str, ...]
          ) -> tuple[Row, ...]:
    rows = []
    for label, (model, own) in VARIANTS.items():
        if label in IMAGE_28_ONLY and not images_28:
            continue
        options = {**networks, **own}  # the variant's own options override the setting's
        if options.get("z_dim", 0) is None:
            del options["z_dim"]
        fit = {**split, **({"std_threshold": None} if label in IMAGE_28_ONLY else {}), "model_options": options}
        rows.append(Row(label, model, fit, {metric: None for metric in metrics}))
    return tuple(rows)


register_experiment(Experiment(
    "zoo-digits-sus", "the zoo benchmark (ours; no paper's numbers)",
    "digits SUS: 5-9 hidden, 20% labels on 0-4, 10 extra slots, networks 500-500, z = 5", "digits",
    {"epochs": 200, "learning_rate": 1e-3},
    _rows({"hidden_classes": [5, 6, 7, 8, 9], "labelled_fraction": 0.2, "extra_slots": 10},
          {"z_dim": 5, "hidden_dims": [500, 500]}, images_28=False, metrics=SUS_METRICS),
    seeds=1))

register_experiment(Experiment(
    "zoo-mnist-100", "the zoo benchmark (ours; no paper's numbers)",
    "MNIST SS, 100 labels (10 per class), Jurasiński's networks (one hidden layer of 500, z = 50)", "mnist",
    {"epochs": 500, "learning_rate": 1e-3},
    _rows({"labels_per_class": 10}, {"z_dim": 50, "hidden_dims": [500]}, images_28=True, metrics=SS_METRICS),
    seeds=1))
