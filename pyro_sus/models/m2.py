"""M2 / SSVAE (Kingma et al. 2014), as used by Willetts, Roberts & Holmes, "Semi-Unsupervised
Learning: Clustering and Classifying using Ultra-Sparse Labels" (seeds 000 and 001)."""

from __future__ import annotations

from dataclasses import dataclass

from .dgm import DGMConfig, SemiUnsupervisedDGM
from .registry import register_model

__all__ = ["M2", "M2Config"]


@dataclass
class M2Config(DGMConfig):
    """M2 options (see :class:`DGMConfig`)."""


@register_model("m2")
class M2(SemiUnsupervisedDGM):
    """M2: y ~ Cat(pi), z ~ N(0, I), x ~ p(x | z, y); guide q(y|x) q(z|x, y).

    y and z are independent a priori, so the decoder is the only place y acts: with a
    high-capacity decoder y tends to capture style rather than class (Willetts et al. Sec. III).
    """

    config_class = M2Config
    decoder_sees_y = True
    default_latent_prior = "standard_normal"
