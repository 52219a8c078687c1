"""The beta-VAE with a softmax classification head of Vengalil & Sinha, "cluster-based
semi-supervised learning with a VAE" (seed 003, Eqs. 1 and 4), the model of the active-labelling
loop (:mod:`pyro_sus.active`).

Loss per labelled point: reconstruction + beta KL + gamma w_n CE(y_n, softmax head(z)), with w_n
the confidence of a propagated label (1 for a label you were given). The head reads the sampled z,
as the authors' code does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
import pyro
import pyro.distributions as dist
from pyro import poutine

from ..nn import MLP
from ..posteriors import posterior_mean
from .base import GenerativeConfig, GenerativeModel
from .registry import register_model

__all__ = ["BetaVAEClassifierConfig", "BetaVAEClassifier"]


@dataclass
class BetaVAEClassifierConfig(GenerativeConfig):
    """Defaults from the authors' code: z = 10, beta = 5, classifier weight gamma = 150."""

    z_dim: int = 10
    beta: float = 5.0
    gamma: float = 150.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0 or self.gamma < 0:
            raise ValueError(f"beta must be > 0 and gamma >= 0, got beta={self.beta}, gamma={self.gamma}")


@register_model("betavae")
class BetaVAEClassifier(GenerativeModel):
    """beta-VAE + classifier head: z ~ N(0, I) (KL weighted beta), x ~ p(x|z); gamma * w * CE(y, head(z))."""

    config_class: ClassVar[type[BetaVAEClassifierConfig]] = BetaVAEClassifierConfig
    enumerates_unlabelled = False
    takes_label_weights = True
    traceable = True
    has_embedding = True

    def __init__(self, config: BetaVAEClassifierConfig) -> None:
        super().__init__(config)
        self.posterior = self.build_posterior(config.x_dim)
        self.latent_prior = self.build_latent_prior(1)
        self.decoder = MLP(config.z_dim, tuple(reversed(config.hidden_dims)), config.x_dim, config.activation)
        self.head = nn.Linear(config.z_dim, config.n_slots)  # "a softmax classification layer" on z

    def likelihood(self, z: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
        """p(x | z); y plays no part."""
        return self.observation(self.decoder(z))

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None, w: torch.Tensor | None = None) -> None:
        """z ~ N(0, I); x ~ p(x|z). The scale on z (here and in the guide) makes the KL term beta KL."""
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=self.config.beta):
                z = pyro.sample("z", self.unconditional_latent_prior(x))
            pyro.sample("x", self.likelihood(z), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None, w: torch.Tensor | None = None) -> None:
        """z ~ q(z|x); with labels, gamma * w * CE of the head on the sampled z (Eq. 4)."""
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=self.config.beta):
                z = pyro.sample("z", self.posterior(x))
            if y is not None:
                weights = torch.ones_like(y, dtype=z.dtype) if w is None else w.to(z.dtype)
                log_p = dist.Categorical(logits=self.head(z)).log_prob(y)
                pyro.factor("classifier_loss", -self.config.gamma * weights * log_p, has_rsample=True)

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the head at the posterior mean of z."""
        return self.head(self.embed(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean E[z|x]: the latent the active loop clusters."""
        return posterior_mean(self.posterior(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z): what a cluster centre looks like."""
        return self.likelihood(z).mean
