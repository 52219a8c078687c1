"""GM-DGM: the Gaussian-mixture deep generative model of Willetts, Roberts & Holmes,
"Semi-Unsupervised Learning: Clustering and Classifying using Ultra-Sparse Labels" (seed 000,
Eqs. 13-15) and the workshop paper "Semi-unsupervised learning with deep generative models" (seed 001)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..priors import ClassGaussianPrior
from .base import DGMConfig, SemiUnsupervisedDGM
from .registry import register_model

__all__ = ["GMDGM", "GMDGMConfig"]


@dataclass
class GMDGMConfig(DGMConfig):
    """GM-DGM options; ``prior_loc_init_scale`` is the spread of the initial p(z|y) means."""

    prior_loc_init_scale: float = 1.0


@register_model("gmdgm")
class GMDGM(SemiUnsupervisedDGM):
    """GM-DGM: y ~ Cat(pi), z ~ N(mu_y, diag sigma_y^2), x ~ p(x | z); guide q(y|x) q(z|x, y).

    p(z|y) is a per-slot lookup table of mean and log-scale, so y must explain where z lies: the
    mixture in z space is what lets unlabelled classes form their own clusters.
    """

    config_class = GMDGMConfig

    decoder_sees_y = False

    def make_latent_prior(self) -> nn.Module:
        return ClassGaussianPrior(self.config.n_slots, self.config.z_dim, self.config.prior_loc_init_scale)
