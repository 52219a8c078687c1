"""Baselines a user expects beside the DGMs: a classifier trained on the labelled data alone, and
M1 (Kingma et al. 2014: a VAE, with a classifier on its latent means)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import pyro
import pyro.distributions as dist

from ..nn import MLP
from ..posteriors import posterior_mean
from .base import GenerativeConfig, GenerativeModel, ModelConfig, ZooModel
from .registry import register_model

__all__ = ["ClassifierConfig", "LabelledOnlyClassifier", "M1Config", "M1"]


@dataclass
class ClassifierConfig(ModelConfig):
    """The labelled-only classifier: the same MLP as the DGMs' q(y|x)."""


@register_model("classifier")
class LabelledOnlyClassifier(ZooModel):
    """Supervised baseline: y ~ Cat(softmax f(x)) on labelled data only; unlabelled data is ignored.

    Written as a Pyro model with an empty guide, so the shared trainer minimises -log p(y|x) (the
    cross-entropy). It can only ever predict known classes: in SUS it discovers nothing.
    """

    config_class = ClassifierConfig
    uses_unlabelled = False
    enumerates_unlabelled = False
    traceable = True

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__(config)
        self.classifier_net = MLP(config.x_dim, config.hidden_dims, config.n_slots, config.activation)

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """y ~ Cat(softmax f(x)), observed."""
        with pyro.plate("data", x.shape[0]):
            pyro.sample("y", dist.Categorical(logits=self.classifier_net(x)), obs=y)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Nothing is latent when y is observed."""

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier_net(x)


@dataclass
class M1Config(GenerativeConfig):
    """M1 options; ``alpha`` scales the classifier's cross-entropy (it only trains the classifier head)."""

    alpha: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha <= 0:
            raise ValueError(f"alpha must be > 0 for M1 (it is the only signal its classifier gets), got {self.alpha}")


@register_model("m1")
class M1(GenerativeModel):
    """M1: z ~ p(z), x ~ p(x|z) on all data; a classifier reads the posterior mean E_q[z|x].

    Kingma et al. train the VAE first and the classifier after. Here both train in one objective,
    with the classifier's input detached: the VAE never sees a label (as in M1), and the classifier
    follows the encoder as it trains, so one run of the shared trainer does both stages.
    """

    config_class: ClassVar[type[M1Config]] = M1Config
    enumerates_unlabelled = False
    traceable = True

    def __init__(self, config: M1Config) -> None:
        super().__init__(config)
        self.posterior = self.build_posterior(config.x_dim)
        self.latent_prior = self.build_latent_prior(1)
        self.decoder = MLP(config.z_dim, tuple(reversed(config.hidden_dims)), config.x_dim, config.activation)
        self.head = MLP(config.z_dim, config.hidden_dims, config.n_slots, config.activation)

    def likelihood(self, z: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
        """p(x | z); y plays no part."""
        return self.observation(self.decoder(z))

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """z ~ p(z); x ~ p(x|z). Labels are not part of M1's generative model."""
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.unconditional_latent_prior(x))
            pyro.sample("x", self.likelihood(z), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """z ~ q(z|x); with labels, alpha * CE of the head on the detached posterior mean."""
        with pyro.plate("data", x.shape[0]):
            q = self.posterior(x)
            pyro.sample("z", q)
            if y is not None:
                logits = self.head(posterior_mean(q).detach())
                pyro.factor("classifier_loss", -self.config.alpha * dist.Categorical(logits=logits).log_prob(y),
                            has_rsample=True)

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(posterior_mean(self.posterior(x)))
