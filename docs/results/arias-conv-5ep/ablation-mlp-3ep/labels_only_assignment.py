"""Ablations of the categorical VAE, loaded with `pyro-sus --plugin`: the assignment and feature
losses on the labelled points only, so no 1-NN pseudo-label of an unlabelled point enters the
objective (the unlabelled points keep their ELBO term); then cross-entropy in place of Eq. 16; then
no unlabelled point at all. Not the paper's model: a diagnosis."""

import torch
import torch.nn.functional as F

from pyro_sus.models import register_model
from pyro_sus.models.catvae import CategoricalVAE


@register_model("catvae-labels-only-assignment")
class LabelsOnlyAssignmentVAE(CategoricalVAE):
    """The categorical VAE whose Eq. 16 / feature loss see the labelled points only."""

    def loss(self, x_unlabelled: torch.Tensor | None, x_labelled: torch.Tensor | None = None,
             y_labelled: torch.Tensor | None = None, w_labelled: torch.Tensor | None = None,
             labelled_scale: float = 1.0) -> torch.Tensor:
        # The parent's loss on one part at a time: the unlabelled batch alone is its ELBO only; the
        # labelled batch alone is its ELBO plus the auxiliary losses over the labelled points.
        total = super().loss(x_unlabelled, w_labelled=w_labelled)
        if x_labelled is not None and len(x_labelled):
            total = total + super().loss(None, x_labelled, y_labelled, labelled_scale=labelled_scale)
        return total


@register_model("catvae-labels-only-cross-entropy")
class LabelsOnlyCrossEntropyVAE(CategoricalVAE):
    """As above, with cross-entropy on the labels in place of Eq. 16 (and no feature loss)."""

    #: Whether the unlabelled batch's ELBO enters the objective.
    unlabelled_elbo = True

    def loss(self, x_unlabelled: torch.Tensor | None, x_labelled: torch.Tensor | None = None,
             y_labelled: torch.Tensor | None = None, w_labelled: torch.Tensor | None = None,
             labelled_scale: float = 1.0) -> torch.Tensor:
        total = super().loss(x_unlabelled) if self.unlabelled_elbo else torch.zeros(())
        if x_labelled is not None and len(x_labelled):
            f_l = self.feature(x_labelled)
            elbo = self._elbo_labelled.differentiable_loss(self.model, self.guide, x_labelled, y_labelled, f_l)
            total = total + labelled_scale * self._elbo_weight * elbo / len(x_labelled)
            total = total + self.config.w_assignment * F.cross_entropy(self.category_head(f_l), y_labelled)
        return total


@register_model("catvae-labels-only-cross-entropy-no-unlabelled")
class LabelsOnlyCrossEntropyNoUnlabelledVAE(LabelsOnlyCrossEntropyVAE):
    """As above, without the unlabelled points at all: a classifier through the model's f and head."""

    unlabelled_elbo = False
