"""The M2 family: p(y) p(z|y) p(x|z[,y]) with guide q(y|x) q(z|x,y), y enumerated when unobserved."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch.nn.functional import one_hot
import pyro
import pyro.distributions as dist

from ..nn import MLP, broadcast_cat
from .base import GenerativeConfig, GenerativeModel, check_class_prior

__all__ = ["DGMConfig", "SemiUnsupervisedDGM"]


@dataclass
class DGMConfig(GenerativeConfig):
    """Options of the M2-family models: classifier weight ``alpha`` and class prior p(y)."""

    alpha: float = 1.1
    class_prior: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.class_prior = check_class_prior(self.class_prior, self.n_slots)
        if self.alpha < 0:
            raise ValueError(f"alpha (classifier weight) must be >= 0, got {self.alpha}")


class SemiUnsupervisedDGM(GenerativeModel):
    """Base of M2 and GM-DGM: p(y) p(z|y) p(x|z[,y]) with guide q(y|x) q(z|x,y).

    Subclasses choose the default latent prior and whether the decoder sees y
    (``decoder_sees_y``); the posterior family and latent prior can be swapped through the config.
    """

    config_class: ClassVar[type[DGMConfig]] = DGMConfig
    decoder_sees_y: ClassVar[bool] = True
    traceable = True

    def __init__(self, config: DGMConfig) -> None:
        super().__init__(config)
        k, hidden = config.n_slots, config.hidden_dims
        prior = torch.tensor(config.class_prior) if config.class_prior else torch.full((k,), 1.0 / k)
        self.register_buffer("class_probs", prior)
        self.classifier_net = MLP(self.classifier_input_dim(), hidden, k, config.activation)
        self.posterior = self.build_posterior(self.posterior_context_dim())
        self.latent_prior = self.build_latent_prior(k)
        self.decoder = MLP(config.z_dim + (k if self.decoder_sees_y else 0), tuple(reversed(hidden)), config.x_dim,
                           config.activation)

    # -- sizes a subclass with more inputs (the auxiliary models) overrides -----------------------
    def classifier_input_dim(self) -> int:
        return self.config.x_dim

    def posterior_context_dim(self) -> int:
        return self.config.x_dim + self.config.n_slots

    def onehot(self, y: torch.Tensor) -> torch.Tensor:
        return one_hot(y, self.config.n_slots).to(self.class_probs.dtype)

    # -- the generative story -------------------------------------------------------------------
    def likelihood(self, z: torch.Tensor, y: torch.Tensor) -> dist.Distribution:
        """p(x | z, y) as a distribution over the flattened input (y ignored if the decoder does not see it)."""
        return self.observation(self.decoder(broadcast_cat(z, self.onehot(y)) if self.decoder_sees_y else z))

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """y ~ p(y); z ~ p(z|y); x ~ p(x|z, y). ``y=None`` leaves y latent."""
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(probs=self.class_probs), obs=y)
            z = pyro.sample("z", self.latent_prior(y))
            pyro.sample("x", self.likelihood(z, y), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """y ~ q(y|x) (enumerated when unobserved); z ~ q(z|x, y); plus alpha * CE when observed."""
        with pyro.plate("data", x.shape[0]):
            y = self.sample_y(self.classifier(x), y)
            pyro.sample("z", self.posterior(broadcast_cat(x, self.onehot(y))))

    def sample_y(self, logits: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """Enumerate y ~ q(y|...) when unobserved; when observed add the classifier term alpha * CE."""
        y_dist = dist.Categorical(logits=logits)
        if y is None:
            return pyro.sample("y", y_dist, infer={"enumerate": "parallel"})
        # A guide factor f enters the loss as +f, so -alpha*log q(y|x) adds alpha*CE.
        # has_rsample=True: the term is a plain differentiable function of the classifier;
        # False would add score-function gradients (tests/test_elbo.py pins this).
        pyro.factor("classifier_loss", -self.config.alpha * y_dist.log_prob(y), has_rsample=True)
        return y

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y|x) over the ``n_slots`` slots."""
        return self.classifier_net(x)
