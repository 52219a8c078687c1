"""The shared shape of a semi-unsupervised deep generative model: config, model/guide, classifier."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.functional import one_hot
import pyro
import pyro.distributions as dist
from pyro.infer import TraceEnum_ELBO
from pyro.nn import PyroModule

from ..nn import MLP, broadcast_cat
from ..posteriors import DiagonalNormalPosterior
from ..priors import StandardNormalPrior

__all__ = ["DGMConfig", "SemiUnsupervisedDGM"]

LIKELIHOODS = ("bernoulli", "gaussian")


@dataclass
class DGMConfig:
    """Options shared by the M2-family models; saved as JSON beside the weights."""

    x_dim: int
    n_slots: int
    z_dim: int = 5
    hidden_dims: tuple[int, ...] = (500, 500)
    likelihood: str = "bernoulli"
    gaussian_scale: float = 0.01
    alpha: float = 1.1
    class_prior: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        self.hidden_dims = tuple(int(h) for h in self.hidden_dims)
        if self.class_prior is not None:
            self.class_prior = tuple(float(p) for p in self.class_prior)
        if self.x_dim < 1 or self.n_slots < 1 or self.z_dim < 1:
            raise ValueError(f"x_dim, n_slots and z_dim must be positive: {self}")
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {self.likelihood!r}")
        if self.alpha < 0:
            raise ValueError(f"alpha (classifier weight) must be >= 0, got {self.alpha}")
        if self.class_prior is not None:
            prior = torch.tensor(self.class_prior)
            if len(prior) != self.n_slots or (prior < 0).any() or abs(float(prior.sum()) - 1) > 1e-4:
                raise ValueError(f"class_prior must be {self.n_slots} non-negative numbers summing to 1")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "DGMConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} options: {sorted(unknown)}")
        return cls(**data)


class SemiUnsupervisedDGM(PyroModule):
    """Base of M2 and GM-DGM: p(y) p(z|y) p(x|z[,y]) with guide q(y|x) q(z|x,y).

    Subclasses choose the latent prior (``make_latent_prior``) and whether the decoder sees y
    (``decoder_sees_y``). Parameters live in the module, not in Pyro's global param store, so
    several models can be trained in one process; train with ``TraceEnum_ELBO.differentiable_loss``
    and any torch optimizer (see :mod:`pyro_sus.train`).
    """

    config_class: ClassVar[type[DGMConfig]] = DGMConfig

    def __init__(self, config: DGMConfig) -> None:
        super().__init__()
        self.config = config
        k, hidden = config.n_slots, config.hidden_dims
        prior = torch.tensor(config.class_prior) if config.class_prior else torch.full((k,), 1.0 / k)
        self.register_buffer("class_probs", prior)
        self.classifier_net = MLP(config.x_dim, hidden, k)
        self.posterior = DiagonalNormalPosterior(config.x_dim + k, config.z_dim, hidden)
        self.latent_prior = self.make_latent_prior()
        self.decoder = MLP(self.decoder_input_dim(), tuple(reversed(hidden)), config.x_dim)
        if config.likelihood == "gaussian":
            self.register_buffer("obs_scale", torch.tensor(float(config.gaussian_scale)))
        # y is summed out exactly; the single plate "data" is the only plate. Labelled batches have
        # nothing to enumerate, which is expected, so their instance does not warn about it.
        self._elbo = TraceEnum_ELBO(max_plate_nesting=1)
        self._elbo_labelled = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)

    # -- parts a subclass chooses (defaults are M2's) -------------------------------------------
    decoder_sees_y: ClassVar[bool] = True

    def make_latent_prior(self) -> nn.Module:
        """p(z|y) as a module mapping y to a ``Distribution``; N(0, I) by default."""
        return StandardNormalPrior(self.config.z_dim)

    def decoder_input_dim(self) -> int:
        return self.config.z_dim + (self.config.n_slots if self.decoder_sees_y else 0)

    def decoder_input(self, z: torch.Tensor, y_onehot: torch.Tensor) -> torch.Tensor:
        return broadcast_cat(z, y_onehot) if self.decoder_sees_y else z

    # -- the generative story -------------------------------------------------------------------
    def likelihood(self, z: torch.Tensor, y: torch.Tensor) -> dist.Distribution:
        """p(x | z, y) as a distribution over the flattened input."""
        out = self.decoder(self.decoder_input(z, one_hot(y, self.config.n_slots).to(z.dtype)))
        if self.config.likelihood == "bernoulli":
            # Grey levels are allowed as soft targets (no binarisation at evaluation), hence no
            # support check on the observed values.
            return dist.Bernoulli(logits=out, validate_args=False).to_event(1)
        return dist.Normal(out, self.obs_scale).to_event(1)

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """y ~ p(y); z ~ p(z|y); x ~ p(x|z, y). ``y=None`` leaves y latent."""
        with pyro.plate("data", x.shape[0]):
            y = pyro.sample("y", dist.Categorical(probs=self.class_probs), obs=y)
            z = pyro.sample("z", self.latent_prior(y))
            pyro.sample("x", self.likelihood(z, y), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """y ~ q(y|x) (enumerated when unobserved); z ~ q(z|x, y); plus alpha * CE when observed."""
        with pyro.plate("data", x.shape[0]):
            y_dist = dist.Categorical(logits=self.classifier(x))
            if y is None:
                y = pyro.sample("y", y_dist, infer={"enumerate": "parallel"})
            else:
                # A guide factor f enters the loss as +f, so -alpha*log q(y|x) adds alpha*CE.
                # has_rsample=True: the term is a plain differentiable function of the classifier;
                # False would add score-function gradients (tests/test_elbo.py pins this).
                pyro.factor("classifier_loss", -self.config.alpha * y_dist.log_prob(y), has_rsample=True)
            y_onehot = one_hot(y, self.config.n_slots).to(x.dtype)
            pyro.sample("z", self.posterior(broadcast_cat(x, y_onehot)))

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of q(y|x) over the ``n_slots`` slots."""
        return self.classifier_net(x)

    # -- objective used by the shared trainer ---------------------------------------------------
    def loss(self, x_unlabelled: torch.Tensor | None, x_labelled: torch.Tensor | None = None,
             y_labelled: torch.Tensor | None = None) -> torch.Tensor:
        """Per-point negative ELBO of each batch, summed: -L_u(x) and -L_l(x, y) + alpha * CE.

        One call covers labelled, unlabelled and classifier terms, so one optimizer step does too.
        """
        total = torch.zeros((), device=self.class_probs.device)
        if x_unlabelled is not None and len(x_unlabelled):
            total = total + self._elbo.differentiable_loss(self.model, self.guide, x_unlabelled) / len(x_unlabelled)
        if x_labelled is not None and len(x_labelled):
            total = total + self._elbo_labelled.differentiable_loss(self.model, self.guide, x_labelled, y_labelled) / len(x_labelled)
        return total

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
        """q(y|x) for every row of ``x``, computed in batches without gradients."""
        return torch.cat([torch.softmax(self.classifier(chunk), dim=-1) for chunk in x.split(batch_size)])

    # -- persistence --------------------------------------------------------------------------
    def save(self, directory: str | Path, name: str = "model") -> None:
        """Write ``{name}.json`` (config) and ``{name}.pt`` (weights) into ``directory``."""
        from ..io import atomic_torch_save, atomic_write_text

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write_text(directory / f"{name}.json", json.dumps(self.config.to_json(), indent=2))
        atomic_torch_save(self.state_dict(), directory / f"{name}.pt")

    @classmethod
    def load(cls, directory: str | Path, name: str = "model", map_location: str = "cpu") -> "SemiUnsupervisedDGM":
        """Rebuild a model written by :meth:`save` (config JSON + weights)."""
        from ..io import CheckpointError, load_checkpoint

        directory = Path(directory)
        config_path = directory / f"{name}.json"
        if not config_path.is_file():
            raise CheckpointError(f"{config_path} does not exist")
        model = cls(cls.config_class.from_json(json.loads(config_path.read_text())))
        try:
            model.load_state_dict(load_checkpoint(directory / f"{name}.pt", map_location))
        except (RuntimeError, TypeError, AttributeError) as err:
            raise CheckpointError(f"{directory / name}.pt does not match {cls.__name__} ({err})") from err
        return model
