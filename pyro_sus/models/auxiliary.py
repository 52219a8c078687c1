"""Auxiliary-variable DGMs: AM2 (the ADGM of Maaløe et al. 2016) and AGM-DGM, as shipped in the
released code of Willetts, Roberts & Holmes, "Semi-Unsupervised Learning: Clustering and
Classifying using Ultra-Sparse Labels" (seed 000; models ``adgm`` and ``agm_dgm``).

An auxiliary latent a makes q(y, z | x) richer without changing the marginal model of x:
inference is q(a|x) q(y|a, x) q(z|a, x, y), and the generative model gains p(a | ...) so the bound
stays a bound. As in the released code, AM2's p(a|x, y, z) sees x and AGM-DGM's p(a|y, z) does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import pyro

from ..posteriors import DiagonalNormalPosterior
from .dgm import DGMConfig, SemiUnsupervisedDGM
from .registry import register_model

__all__ = ["AuxiliaryDGMConfig", "AuxiliaryDGM", "AM2", "AGMDGM"]


@dataclass
class AuxiliaryDGMConfig(DGMConfig):
    """Options of the auxiliary models: ``a_dim`` is the size of the auxiliary latent a."""

    a_dim: int = 100  # the released code's default (its -u flag)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.a_dim < 1:
            raise ValueError(f"a_dim must be positive, got {self.a_dim}")


class AuxiliaryDGM(SemiUnsupervisedDGM):
    """p(y) p(z|y) p(x|z[,y]) p(a|[x,] y, z) with guide q(a|x) q(y|a, x) q(z|a, x, y)."""

    config_class: ClassVar[type[AuxiliaryDGMConfig]] = AuxiliaryDGMConfig
    #: Whether p(a | ...) is conditioned on x as well as on (y, z).
    aux_prior_sees_x: ClassVar[bool] = True
    tiny_options: ClassVar[dict[str, Any]] = {"z_dim": 3, "a_dim": 2}

    def __init__(self, config: AuxiliaryDGMConfig) -> None:
        super().__init__(config)
        x_dim, k, hidden = config.x_dim, config.n_slots, config.hidden_dims
        self.aux_posterior = DiagonalNormalPosterior(x_dim, config.a_dim, hidden, config.activation)
        self.aux_prior = DiagonalNormalPosterior((x_dim if self.aux_prior_sees_x else 0) + k + config.z_dim,
                                                 config.a_dim, hidden, config.activation)

    def classifier_input_dim(self) -> int:
        return self.config.x_dim + self.config.a_dim

    def posterior_context_dim(self) -> int:
        return self.config.x_dim + self.config.a_dim + self.config.n_slots

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """y ~ p(y); z ~ p(z|y); x ~ p(x|z[, y]); a ~ p(a|[x,] y, z)."""
        with self.data_plate(x.shape[-2]):
            y = self.prior_y(x, y)
            z = pyro.sample("z", self.z_prior(y))
            pyro.sample("x", self.likelihood(z, y), obs=x)
            parts = ([x] if self.aux_prior_sees_x else []) + [self.onehot(y), z]
            pyro.sample("a", self.aux_prior(tuple(parts)))  # a built-in family: it takes the parts

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """a ~ q(a|x); y ~ q(y|a, x) (enumerated or relaxed when unobserved, alpha * CE when observed); z ~ q(z|a, x, y)."""
        with self.data_plate(x.shape[-2]):
            a = pyro.sample("a", self.aux_posterior(x))
            xa = torch.cat([x, a], dim=-1)
            y = self.sample_y(self.classifier_net(xa), y)
            pyro.sample("z", self.z_posterior(xa, y))

    def guide_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """x with the mean of q(a|x) beside it (what the classifier and q(z|...) read)."""
        return torch.cat([x, self.aux_posterior(x).mean], dim=-1)

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y|x, a) at the mean of q(a|x): a deterministic stand-in for E_q(a|x) q(y|a, x)."""
        a = self.aux_posterior(x).mean
        return self.classifier_net(torch.cat([x, a], dim=-1))


@register_model("am2")
class AM2(AuxiliaryDGM):
    """AM2 (auxiliary M2 / ADGM): z ~ N(0, I), x ~ p(x|z, y), a ~ p(a|x, y, z); guide q(a|x) q(y|a,x) q(z|a,x,y)."""

    decoder_sees_y = True
    aux_prior_sees_x = True
    default_latent_prior = "standard_normal"


@register_model("agmdgm")
class AGMDGM(AuxiliaryDGM):
    """AGM-DGM (auxiliary GM-DGM): z ~ N(mu_y, sigma_y), x ~ p(x|z), a ~ p(a|y, z); guide as AM2."""

    decoder_sees_y = False
    aux_prior_sees_x = False
    default_latent_prior = "class_gaussian"
