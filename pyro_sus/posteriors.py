"""Swappable posterior families q(z | context) for the continuous latent.

A posterior family is a :class:`PosteriorFamily`: built as ``family(context_dim, z_dim, hidden_dims,
activation=..., **options)`` (``activation`` is the model's hidden-layer activation), its
``forward(context)`` returns a Pyro ``Distribution`` with batch shape ``context.shape[:-1]`` and
event shape ``(z_dim,)``. Families live in :data:`POSTERIORS`; a model's config names one
(``posterior="flow"``) so the choice survives save/load and is available from the CLI. Add your own
with :func:`register_posterior`.

Under parallel enumeration of y the context carries an extra leading dimension (``(K, B, D)``),
so every family must broadcast over leading dimensions; the contract tests check this.

A family that declares ``takes_context_parts = True`` is handed the context as its parts, e.g.
``(x, onehot(y))``, standing for their concatenation after broadcasting (see :class:`MLP`): its
first layer then maps x once rather than once per enumerated value of y. Both built-in families do;
any other gets the concatenated tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.functional import softplus
import pyro.distributions as dist
import zuko
from pyro.contrib.zuko import ZukoToPyro

from .nn import MLP, activation_module, broadcast_cat
from ._registry import build, registrar

__all__ = ["POSTERIORS", "PosteriorFamily", "register_posterior", "build_posterior", "DiagonalNormalPosterior",
           "FlowPosterior", "Trunk", "posterior_mean"]

POSTERIORS: dict[str, Callable[..., nn.Module]] = {}

SCALE_FLOOR = 1e-4


register_posterior = registrar(POSTERIORS, "posterior")
register_posterior.__doc__ = "Decorator adding a posterior family (class or factory) to :data:`POSTERIORS` as ``name``."


class PosteriorFamily(nn.Module):
    """The base of every posterior family q(z | context): what a model may rely on is declared here."""

    #: ``forward`` takes the context as its parts (see the module doc), not their concatenation.
    takes_context_parts: ClassVar[bool] = False

    def forward(self, context: torch.Tensor | Sequence[torch.Tensor]) -> dist.Distribution:
        raise NotImplementedError


def build_posterior(name: str, context_dim: int, z_dim: int, hidden_dims: Sequence[int],
                    options: dict[str, Any] | None = None) -> PosteriorFamily:
    """Instantiate the registered family ``name``; unknown names or options raise ValueError, a
    family that does not build a :class:`PosteriorFamily` TypeError."""
    family = build(POSTERIORS, "posterior", "posteriors", name, context_dim, z_dim, tuple(hidden_dims), options=options)
    if not isinstance(family, PosteriorFamily):
        raise TypeError(f"posterior family {name!r} built a {type(family).__name__}, not a "
                        f"pyro_sus.posteriors.PosteriorFamily: subclass it (it declares what a model hands the family)")
    return family


class Trunk(nn.Module):
    """The shared body of a conditional density: MLP layers with the activation on the last one too."""

    def __init__(self, context_dim: int, hidden_dims: Sequence[int], activation: str = "relu") -> None:
        super().__init__()
        self.body = MLP(context_dim, hidden_dims[:-1], hidden_dims[-1], activation) if hidden_dims else None
        self.width = hidden_dims[-1] if hidden_dims else context_dim
        self.activation = activation_module(activation)  # no parameters: saved weights do not change

    def forward(self, context: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        if self.body is None:
            return context if isinstance(context, torch.Tensor) else broadcast_cat(*context)
        return self.activation(self.body(context))


@register_posterior("normal")
class DiagonalNormalPosterior(PosteriorFamily):
    """q(z|c) = N(mu(c), diag sigma(c)^2), mean and scale sharing every layer but their own output."""

    takes_context_parts: ClassVar[bool] = True

    def __init__(self, context_dim: int, z_dim: int, hidden_dims: Sequence[int], activation: str = "relu") -> None:
        super().__init__()
        self.trunk = Trunk(context_dim, hidden_dims, activation)
        self.loc = nn.Linear(self.trunk.width, z_dim)
        self.scale = nn.Linear(self.trunk.width, z_dim)

    def forward(self, context: torch.Tensor | Sequence[torch.Tensor]) -> dist.Distribution:
        """Return q(z|context) with the context's batch shape (a tensor, or parts: see the module doc)."""
        hidden = self.trunk(context)
        # softplus + floor keeps the scale positive without exp's overflow early in training.
        return dist.Normal(self.loc(hidden), softplus(self.scale(hidden)) + SCALE_FLOOR).to_event(1)


class _ConditionalDiagNormal(zuko.lazy.LazyDistribution):
    """The flow's base: N(mu(h), diag sigma(h)^2) from the trunk features h."""

    def __init__(self, width: int, z_dim: int) -> None:
        super().__init__()
        self.loc = nn.Linear(width, z_dim)
        self.scale = nn.Linear(width, z_dim)

    def forward(self, c: torch.Tensor | None = None) -> torch.distributions.Distribution:
        return zuko.distributions.DiagNormal(self.loc(c), softplus(self.scale(c)) + SCALE_FLOOR)


FLOW_KINDS = ("iaf", "maf", "nsf")


@register_posterior("flow")
class FlowPosterior(PosteriorFamily):
    """q(z|c): a conditional diagonal Normal pushed through ``transforms`` zuko autoregressive layers.

    Every layer is conditioned on the same trunk features h(c) as the base. ``kind="iaf"`` (default)
    uses inverse autoregressive layers (Kingma et al. 2016): sampling, which is what a guide does,
    takes one network pass per layer. ``"maf"`` and ``"nsf"`` (affine / spline masked autoregressive
    layers) take one pass per dimension of z to sample; they suit small ``z_dim``. The density of
    each sample is cached when it is drawn (``ZukoToPyro``), so scoring costs nothing extra.
    """

    takes_context_parts: ClassVar[bool] = True

    def __init__(self, context_dim: int, z_dim: int, hidden_dims: Sequence[int], transforms: int = 4,
                 flow_hidden: Sequence[int] = (64, 64), kind: str = "iaf", activation: str = "relu") -> None:
        super().__init__()
        if kind not in FLOW_KINDS:
            raise ValueError(f"flow kind must be one of {FLOW_KINDS}, got {kind!r}")
        if transforms < 1:
            raise ValueError(f"a flow needs at least one transform, got {transforms}")
        self.trunk = Trunk(context_dim, hidden_dims, activation)
        family = zuko.flows.NSF if kind == "nsf" else zuko.flows.MAF
        layers = family(z_dim, context=self.trunk.width, transforms=transforms,
                        hidden_features=tuple(flow_hidden)).transform
        # zuko's transforms map z to the base; sampling runs them backwards. For IAF we invert the
        # masked layers so the backward (sampling) direction is the single-pass one.
        self.flow = zuko.flows.Flow(layers.inv if kind == "iaf" else layers,
                                    _ConditionalDiagNormal(self.trunk.width, z_dim))

    def forward(self, context: torch.Tensor | Sequence[torch.Tensor]) -> dist.Distribution:
        """Return q(z|context) with the context's batch shape (a tensor, or parts: see the module doc)."""
        return ZukoToPyro(self.flow(self.trunk(context)))


def posterior_mean(q: dist.Distribution, n_samples: int = 32) -> torch.Tensor:
    """E_q[z]: exact when the family has a closed-form mean, else a Monte Carlo average."""
    try:
        return q.mean
    except (NotImplementedError, AttributeError):
        return torch.stack([q() if isinstance(q, ZukoToPyro) else q.rsample() for _ in range(n_samples)]).mean(0)
