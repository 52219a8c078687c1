"""The M2 family: p(y) p(z|y) p(x|z[,y]) with guide q(y|x) q(z|x,y), and its two members.

- M2 / SSVAE (Kingma et al. 2014, "Semi-Supervised Learning with Deep Generative Models"):
  z ~ N(0, I) whatever y, and x ~ p(x | z, y).
- GM-DGM (Willetts, Roberts & Holmes, "Semi-Unsupervised Learning: Clustering and Classifying
  using Ultra-Sparse Labels", seed 000, Eqs. 13-15; the workshop paper, seed 001):
  z ~ N(mu_y, diag sigma_y^2), a learned Gaussian per slot, and x ~ p(x | z).

The story reads top to bottom in :class:`SemiUnsupervisedDGM`: ``model`` and ``guide``, then one
method per site (``prior_y``, ``z_prior``, ``likelihood``; ``sample_y``, ``z_posterior``). The
swappable parts are named by the config: p(z|y) (:mod:`pyro_sus.priors`), q(z|x, y)
(:mod:`pyro_sus.posteriors`), p(x|...) (Bernoulli or Gaussian, ``GenerativeModel.observation``).

Unobserved y is summed out exactly (enumeration, the default and what Willetts et al.'s released
code does), or, during training, replaced by one relaxed draw per point: the Gumbel-softmax /
Concrete sample of Willetts et al.'s paper (seed 000, Sec. II-B and Appendix C; Jang et al. 2017,
Maddison et al. 2017), optionally straight-through. Either way the term -KL(q(y|x) || p(y)) is
computed exactly, so the one-draw estimate of the bound converges to the enumerated bound as the
temperature falls, and with straight-through draws its value is an unbiased estimate of it (only
the gradient is biased). Evaluation (``model.eval()``) always enumerates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import math

import torch
import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
from pyro.infer import TraceEnum_ELBO
from torch.distributions import kl_divergence

from ..nn import MLP, one_hot_rows
from ..posteriors import posterior_mean
from .base import GenerativeConfig, GenerativeModel, check_class_prior
from .registry import register_model

__all__ = ["DGMConfig", "SemiUnsupervisedDGM", "M2", "GMDGM", "Y_ESTIMATORS"]

#: How unobserved y enters the training objective: summed out, or one relaxed draw per point.
Y_ESTIMATORS = ("enumerate", "gumbel-softmax", "gumbel-straight-through")


@dataclass
class DGMConfig(GenerativeConfig):
    """Options of the M2-family models: classifier weight ``alpha``, class prior p(y), and the
    estimator for unobserved y in training.

    ``y_estimator`` is one of :data:`Y_ESTIMATORS`. The relaxed ones draw y at temperature
    ``max(temperature_min, temperature * exp(-temperature_decay * step))`` at training step ``step``
    (Jang et al.'s schedule; ``temperature_decay=0`` keeps it fixed at ``temperature``).
    """

    alpha: float = 1.1
    class_prior: tuple[float, ...] | None = None
    y_estimator: str = "enumerate"
    temperature: float = 1.0
    temperature_min: float = 0.5
    temperature_decay: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.class_prior = check_class_prior(self.class_prior, self.n_slots)
        if self.alpha < 0:
            raise ValueError(f"alpha (classifier weight) must be >= 0, got {self.alpha}")
        if self.y_estimator not in Y_ESTIMATORS:
            raise ValueError(f"y_estimator must be one of {Y_ESTIMATORS}, got {self.y_estimator!r}")
        if not 0 < self.temperature_min <= self.temperature:
            raise ValueError(f"need 0 < temperature_min <= temperature, got {self.temperature_min} and "
                             f"{self.temperature}")
        if self.temperature_decay < 0:
            raise ValueError(f"temperature_decay must be >= 0, got {self.temperature_decay}")

    def temperature_at(self, step: int) -> float:
        """The relaxation's temperature at training step ``step`` (0-based, counted over epochs)."""
        return max(self.temperature_min, self.temperature * math.exp(-self.temperature_decay * step))


class SemiUnsupervisedDGM(GenerativeModel):
    """Base of M2 and GM-DGM: p(y) p(z|y) p(x|z[,y]) with guide q(y|x) q(z|x,y).

    Subclasses choose the default latent prior and whether the decoder sees y
    (``decoder_sees_y``); the posterior family and latent prior can be swapped through the config.
    """

    config_class: ClassVar[type[DGMConfig]] = DGMConfig
    has_class_prior = True
    decoder_sees_y: ClassVar[bool] = True
    traceable = True
    stackable = True

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
        # Not saved (persistent=False): the trainer sets it from the step count before every step,
        # so checkpoints keep their keys and a resumed run anneals exactly as an uninterrupted one.
        self.register_buffer("temperature", torch.tensor(config.temperature), persistent=False)
        if config.y_estimator != "enumerate":  # training enumerates nothing: no warning about it
            self._elbo = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)

    def stacking_refusal(self) -> str | None:
        if self.config.y_estimator != "enumerate":
            return f"y_estimator {self.config.y_estimator!r} draws y for one model's batch; only 'enumerate' stacks"
        return super().stacking_refusal()

    # -- the generative story: y ~ p(y); z ~ p(z|y); x ~ p(x|z[, y]) --------------------------------
    def model(self, x: torch.Tensor | None, y: torch.Tensor | None = None) -> None:
        """y ~ p(y); z ~ p(z|y); x ~ p(x|z, y). ``y=None`` leaves y latent; ``x=None`` (y given) draws
        x, as ``pyro.infer.Predictive(model.model)(None, y)`` does to show what each slot generates."""
        if x is None and y is None:
            raise ValueError("give x, y or both: the batch size comes from them")
        with self.data_plate(x.shape[-2] if x is not None else y.shape[-1]):
            y = self.prior_y(x, y)
            z = pyro.sample("z", self.z_prior(y))
            pyro.sample("x", self.likelihood(z, y), obs=x)

    # -- the guide: y ~ q(y|x); z ~ q(z|x, y) -----------------------------------------------------------
    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """y ~ q(y|x) (enumerated when unobserved); z ~ q(z|x, y); plus alpha * CE when observed."""
        with self.data_plate(x.shape[-2]):
            y = self.sample_y(self.classifier(x), y)
            pyro.sample("z", self.z_posterior(x, y))

    # -- one method per site ----------------------------------------------------------------------------
    def prior_y(self, x: torch.Tensor | None, y: torch.Tensor | None) -> torch.Tensor:
        """y ~ p(y), observed when given; a relaxed y (training with a relaxed estimator) is a site
        that scores nothing, because the guide adds -KL(q(y|x) || p(y)) exactly."""
        if y is None and self.relaxes_y:
            relaxed = dist.RelaxedOneHotCategorical(self.temperature, probs=self.class_probs)
            with poutine.mask(mask=False):  # (not Distribution.mask: its zeros are always float32)
                return pyro.sample("y", relaxed.expand(x.shape[:1]))
        return pyro.sample("y", dist.Categorical(probs=self.class_probs), obs=y)

    def z_prior(self, y: torch.Tensor) -> dist.Distribution:
        """p(z | y): M2's N(0, I) whatever y, GM-DGM's per-slot Gaussian, or the configured family."""
        return self.latent_prior(y)

    def likelihood(self, z: torch.Tensor, y: torch.Tensor) -> dist.Distribution:
        """p(x | z, y) over the flattened input (y ignored if the decoder does not see it)."""
        return self.observation(self.decoder((z, self.onehot(y)) if self.decoder_sees_y else z))

    def sample_y(self, logits: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """y ~ q(y|...) when unobserved: enumerated, or one relaxed draw; when observed add the
        classifier term alpha * CE."""
        y_dist = dist.Categorical(logits=logits)
        if y is None and self.relaxes_y:
            family = (dist.RelaxedOneHotCategoricalStraightThrough if self.config.y_estimator ==
                      "gumbel-straight-through" else dist.RelaxedOneHotCategorical)
            # The draw's own density is masked out (it is not the categorical's); the exact
            # categorical KL takes its place, so the estimate tends to the enumerated bound.
            with poutine.mask(mask=False):
                y = pyro.sample("y", family(self.temperature, logits=logits))
            kl = kl_divergence(y_dist, dist.Categorical(probs=self.class_probs))
            pyro.factor("kl_y", kl, has_rsample=True)  # a guide factor f enters the loss as +f
            return y
        if y is None:
            return pyro.sample("y", y_dist, infer={"enumerate": "parallel"})
        # A guide factor f enters the loss as +f, so -alpha*log q(y|x) adds alpha*CE.
        # has_rsample=True: the term is a plain differentiable function of the classifier;
        # False would add score-function gradients (tests/test_elbo.py pins this).
        pyro.factor("classifier_loss", -self.config.alpha * y_dist.log_prob(y), has_rsample=True)
        return y

    def z_posterior(self, x: torch.Tensor, y: torch.Tensor) -> dist.Distribution:
        """q(z | x, y) from the configured posterior family (x: what the guide reads, :meth:`guide_inputs`)."""
        return self.posterior(self.posterior_context(x, self.onehot(y)))

    # -- sizes a subclass with more inputs (the auxiliary models) overrides -----------------------
    def classifier_input_dim(self) -> int:
        return self.config.x_dim

    def posterior_context_dim(self) -> int:
        return self.config.x_dim + self.config.n_slots

    def onehot(self, y: torch.Tensor) -> torch.Tensor:
        """y as one-hot rows; a relaxed draw (already a float vector over the slots) passes as it is."""
        return y if y.is_floating_point() else one_hot_rows(y, self.config.n_slots, self.class_probs.dtype)

    @property
    def relaxes_y(self) -> bool:
        """Whether unobserved y is drawn relaxed now: a relaxed estimator, in training mode."""
        return self.training and self.config.y_estimator != "enumerate"

    def before_step(self, step: int) -> None:
        """Set the relaxation's temperature for training step ``step``."""
        self.temperature.fill_(self.config.temperature_at(step))

    def latent_prior_sd(self) -> torch.Tensor | None:
        """Per slot, the sd of p(z | y = slot) (root mean variance over z's dimensions), when p(z|y) is
        learned and its family has a closed-form variance (GM-DGM's table, the mixture); else None."""
        if not any(p.requires_grad for p in self.latent_prior.parameters()):
            return None  # a fixed p(z|y), M2's N(0, I): nothing to watch
        slots = torch.arange(self.config.n_slots, device=self.class_probs.device)
        with torch.no_grad():
            try:
                variance = self.latent_prior(slots).variance
            except NotImplementedError:  # a family without a closed form (a flow)
                return None
        return variance.float().mean(-1).sqrt()

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y|x) over the ``n_slots`` slots."""
        return self.classifier_net(x)

    def guide_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What q(y|...) and q(z|..., y) read besides y: x itself here (an auxiliary model adds a)."""
        return x

    @torch.no_grad()
    def latent_mean(self, x: torch.Tensor) -> torch.Tensor:
        """E[z | x] under the guide: the mean of q(z | x, y) averaged over q(y|x), every slot summed
        exactly (a family without a closed-form mean, a flow, is averaged over draws)."""
        slots = torch.arange(self.config.n_slots, device=x.device).unsqueeze(-1)  # (K, 1): every y at once
        context = self.posterior_context(self.guide_inputs(x), self.onehot(slots))
        means = posterior_mean(self.posterior(context))  # (K, B, z)
        return torch.einsum("kbz,bk->bz", means, torch.softmax(self.classifier(x), dim=-1))


@register_model("m2")
class M2(SemiUnsupervisedDGM):
    """M2: y ~ Cat(pi), z ~ N(0, I), x ~ p(x | z, y); guide q(y|x) q(z|x, y).

    y and z are independent a priori, so the decoder is the only place y acts: with a
    high-capacity decoder y tends to capture style rather than class (Willetts et al. Sec. III).
    """

    decoder_sees_y = True
    default_latent_prior = "standard_normal"


@register_model("gmdgm")
class GMDGM(SemiUnsupervisedDGM):
    """GM-DGM: y ~ Cat(pi), z ~ N(mu_y, diag sigma_y^2), x ~ p(x | z); guide q(y|x) q(z|x, y).

    p(z|y) is a per-slot lookup table of mean and log-scale (``"class_gaussian"``), so y must explain
    where z lies: the mixture in z space is what lets unlabelled classes form their own clusters.
    """

    decoder_sees_y = False
    default_latent_prior = "class_gaussian"
