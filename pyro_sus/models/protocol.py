"""The interface the trainer, evaluation, the active loop and ``pyro_sus.testing.check_model`` rely on.

A model is a ``ZooModel`` subclass in practice (it brings the objective, prediction and persistence);
this Protocol names what the rest of the package may call and read, so a model's author sees the
whole contract in one place. Capabilities are declared as class attributes, never probed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

from .base import Batch, ModelConfig

__all__ = ["SemiUnsupervisedModel", "CAPABILITIES"]

#: The declared capabilities and their types (checked by ``pyro_sus.testing.check_interface``).
CAPABILITIES: dict[str, type] = {
    "uses_unlabelled": bool,        # unlabelled batches enter the objective
    "enumerates_unlabelled": bool,  # the unlabelled objective sums a discrete site out
    "takes_label_weights": bool,    # Batch.w_labelled is accepted
    "has_class_prior": bool,        # the config's class_prior (p(y)) is set from the run's prior spec
    "traceable": bool,              # loss may be traced (pyro_sus.tracing)
    "has_embedding": bool,          # embed(x) and decode(z) exist (the active loop needs them)
    "fit_score_kind": str,          # "bound", "max_probability" or "negative_distance": what fit_scores measures
    "trained_by_gradient": bool,    # trained by the gradient loop; False: fitted once in closed form (fit_data)
    "loss_is_the_bounds": bool,     # loss is the per-point mean of the model/guide's bounds (what SVI optimises)
}


@runtime_checkable
class SemiUnsupervisedModel(Protocol):
    """What a zoo model offers: a loss on a :class:`Batch` and its named terms, q(y|x), a per-point
    fit score, a step hook, persistence, and its declared capabilities."""

    registry_name: ClassVar[str]
    config: ModelConfig
    uses_unlabelled: ClassVar[bool]
    enumerates_unlabelled: ClassVar[bool]
    takes_label_weights: ClassVar[bool]
    has_class_prior: ClassVar[bool]
    traceable: ClassVar[bool]
    has_embedding: ClassVar[bool]
    fit_score_kind: ClassVar[str]
    trained_by_gradient: ClassVar[bool]

    @property
    def likelihood_family(self) -> str | None:
        """The family of p(x|...), or None (inputs of "bernoulli" or None are binarised in training)."""

    def loss(self, batch: Batch) -> torch.Tensor:
        """The differentiable training objective of one step (a scalar to minimise)."""

    def loss_terms(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The loss split into named terms that sum to it at the same random draws (no gradients)."""

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y|x) over the slots."""

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """q(y|x), repeatable."""

    def fit_scores(self, x: torch.Tensor) -> torch.Tensor:
        """How well each point fits the model, higher better (per ``fit_score_kind``)."""

    def before_step(self, step: int) -> None:
        """Called before training step ``step`` (a schedule sets itself here)."""

    def latent_prior_sd(self) -> torch.Tensor | None:
        """Per slot, the sd of a learned p(z|y = slot), or None (recorded every epoch)."""

    def save(self, directory: str | Path, name: str = "model") -> None:
        """Write the config (JSON) and the weights."""

    @classmethod
    def load(cls, directory: str | Path, name: str = "model", map_location: str = "cpu") -> Any:
        """Rebuild a saved model."""
