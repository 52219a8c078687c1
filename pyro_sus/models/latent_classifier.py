"""The latent-classifier VAE of Jurasiński, "Semi-supervised learning with variational
autoencoders" (seed 004, Section 4.1), and its simplified variant.

There is no categorical latent: the classifier p(y|z) is part of the generative model and reads the
continuous latent, so q(z|x) can be any posterior family (a normalizing flow included) with no
change to the model. Labelled bound (Proposition 1) and unlabelled bound (Proposition 2):

    L(x, y) = E_q(z|x)[log p(x|y,z) + log p(y|z) + log p(z) - log q(z|x)]
    U(x)    = E_q(z|x)[E_p(y|z)[log p(x|y,z)] + log p(z) - log q(z|x)]

and the objective is lambda * L + U. The simplified variant assumes p(x, y|z) = p(x|z) p(y|z): the
decoder ignores y, so unlabelled data no longer trains the classifier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal, get_args

import torch
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine

from ..nn import MLP, one_hot_rows
from .base import GenerativeConfig, GenerativeModel
from .registry import register_model

__all__ = ["LatentClassifierConfig", "LatentClassifierVAE", "SimplifiedLatentClassifierVAE"]

Bound = Literal["paper", "exact"]
BOUNDS: tuple[str, ...] = get_args(Bound)


@dataclass
class LatentClassifierConfig(GenerativeConfig):
    """Options of the latent-classifier VAE.

    ``labelled_weight`` is the paper's lambda (best 0.5 in its Table 1). ``unlabelled_bound``:
    ``"paper"`` is U(x) above, E_p(y|z) log p(x|y,z); ``"exact"`` sums y out inside the
    likelihood, log sum_y p(y|z) p(x|y,z), which is never looser (Jensen). ``prediction_samples``
    draws of z ~ q(z|x) average p(y|z) into the classifier q(y|x).
    """

    labelled_weight: float = 0.5
    unlabelled_bound: Bound = "paper"
    prediction_samples: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.labelled_weight < 0:
            raise ValueError(f"labelled_weight (lambda) must be >= 0, got {self.labelled_weight}")
        if self.prediction_samples < 1:
            raise ValueError(f"prediction_samples must be >= 1, got {self.prediction_samples}")


@register_model("lcvae")
class LatentClassifierVAE(GenerativeModel):
    """Latent-classifier VAE: z ~ p(z), y ~ p(y|z), x ~ p(x|y, z); guide q(z|x) (any posterior family)."""

    config_class: ClassVar[type[LatentClassifierConfig]] = LatentClassifierConfig
    decoder_sees_y: ClassVar[bool] = True
    traceable = True

    def __init__(self, config: LatentClassifierConfig) -> None:
        super().__init__(config)
        k, hidden = config.n_slots, config.hidden_dims
        self.posterior = self.build_posterior(config.x_dim)
        self.latent_prior = self.build_latent_prior(1)  # p(z): no class variable above z
        self.latent_classifier = MLP(config.z_dim, hidden, k, config.activation)
        self.decoder = MLP(config.z_dim + (k if self.decoder_sees_y else 0), tuple(reversed(hidden)), config.x_dim,
                           config.activation)

    def likelihood(self, z: torch.Tensor, y: torch.Tensor | None) -> dist.Distribution:
        """p(x | y, z) (p(x | z) for the simplified variant, where y may be None)."""
        if not self.decoder_sees_y:
            return self.observation(self.decoder(z))
        return self.observation(self.decoder((z, one_hot_rows(y, self.config.n_slots, z.dtype))))

    def _labelled_weight(self, y: torch.Tensor | None) -> poutine.scale:
        """lambda on every site of a labelled batch's bound (model and guide alike); 1 without labels."""
        return poutine.scale(scale=self.config.labelled_weight if y is not None else 1.0)

    def _y_given_z(self, z: torch.Tensor) -> dist.Categorical:
        return dist.Categorical(logits=self.latent_classifier(z))

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """z ~ p(z); y ~ p(y|z); x ~ p(x|y, z). Unobserved y is enumerated (by the guide for the
        paper's bound, here for the exact one); the simplified variant skips y when it is unobserved,
        because p(x|z) does not depend on it and sum_y p(y|z) = 1. A labelled batch's bound is
        weighted by lambda (``labelled_weight``), here in the model so that SVI optimises it too."""
        with pyro.plate("data", x.shape[0]), self._labelled_weight(y):
            z = pyro.sample("z", self.unconditional_latent_prior(x))
            if y is not None or self.decoder_sees_y:
                exact = y is None and self.config.unlabelled_bound == "exact"
                y = pyro.sample("y", self._y_given_z(z), obs=y,
                                infer={"enumerate": "parallel"} if exact else {})
            pyro.sample("x", self.likelihood(z, y), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """z ~ q(z|x). For the paper's unlabelled bound, y is enumerated under the model's own p(y|z):
        with q(y|z) = p(y|z) the terms log p(y|z) - log q(y|z) cancel and what remains is
        E_p(y|z) log p(x|y, z), exactly U(x); gradients still reach p(y|z) through the weights."""
        with pyro.plate("data", x.shape[0]), self._labelled_weight(y):
            z = pyro.sample("z", self.posterior(x))
            if y is None and self.decoder_sees_y and self.config.unlabelled_bound == "paper":
                pyro.sample("y", self._y_given_z(z), infer={"enumerate": "parallel"})

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        """log E_q(z|x) p(y|z), averaged over ``prediction_samples`` draws of z."""
        q = self.posterior(x)
        draws = [q() for _ in range(self.config.prediction_samples)]
        log_probs = torch.stack([torch.log_softmax(self.latent_classifier(z), -1) for z in draws])
        return torch.logsumexp(log_probs, 0) - math.log(len(draws))


@register_model("lcvae-simple")
class SimplifiedLatentClassifierVAE(LatentClassifierVAE):
    """Simplified latent-classifier VAE: z ~ p(z), y ~ p(y|z), x ~ p(x|z) (no y -> x link)."""

    decoder_sees_y = False
    enumerates_unlabelled = False
