"""GM-DGM: the Gaussian-mixture deep generative model of Willetts, Roberts & Holmes,
"Semi-Unsupervised Learning: Clustering and Classifying using Ultra-Sparse Labels" (seed 000,
Eqs. 13-15) and the workshop paper "Semi-unsupervised learning with deep generative models" (seed 001)."""

from __future__ import annotations

from dataclasses import dataclass

from .dgm import DGMConfig, SemiUnsupervisedDGM
from .registry import register_model

__all__ = ["GMDGM", "GMDGMConfig"]


@dataclass
class GMDGMConfig(DGMConfig):
    """GM-DGM options (see :class:`DGMConfig`); p(z|y) defaults to ``"class_gaussian"``."""


@register_model("gmdgm")
class GMDGM(SemiUnsupervisedDGM):
    """GM-DGM: y ~ Cat(pi), z ~ N(mu_y, diag sigma_y^2), x ~ p(x | z); guide q(y|x) q(z|x, y).

    p(z|y) is a per-slot lookup table of mean and log-scale, so y must explain where z lies: the
    mixture in z space is what lets unlabelled classes form their own clusters.
    """

    config_class = GMDGMConfig
    decoder_sees_y = False
    default_latent_prior = "class_gaussian"
