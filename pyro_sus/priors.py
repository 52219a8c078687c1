"""Swappable priors: the class prior p(y) and latent priors p(z|y) that return ``Distribution``s.

A latent prior is a module ``family(n_slots, z_dim, **options)`` whose ``forward(y)`` returns a
Pyro ``Distribution`` over z with batch shape ``y.shape`` (or one that broadcasts to it) and event
shape ``(z_dim,)``. ``y`` may carry an enumeration dimension (``(K, 1)``), or be a float tensor of
shape ``(..., n_slots)``: a one-hot or relaxed (Gumbel-softmax) draw of y, for which a family mixes
its slots' parameters with those weights (:func:`slot_rows`; exact for a hard one-hot, and
differentiable in the weights, which straight-through training needs). Families live in
:data:`LATENT_PRIORS`; a model's config names one (``latent_prior="mixture"``), so the choice
survives save/load and is available from the CLI. Models without a class variable in p(z)
(M1, the latent-classifier VAE) build their prior with ``n_slots=1`` and pass ``y = 0``.
Add your own with :func:`register_latent_prior` (``tutorials/03_extending_priors.ipynb``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
import pyro.distributions as dist

from ._registry import build, registrar

__all__ = ["class_prior", "LATENT_PRIORS", "register_latent_prior", "build_latent_prior", "slot_rows",
           "slot_batch_shape", "StandardNormalPrior", "ClassGaussianPrior", "ClassMixturePrior"]

LATENT_PRIORS: dict[str, Callable[..., nn.Module]] = {}


def class_prior(n_known: int, extra_slots: int, kind: str = "sus", known_mass: float = 0.5,
                probs: Sequence[float] | None = None) -> torch.Tensor:
    """Probabilities over the ``n_known + extra_slots`` slots of y.

    ``"sus"`` is Willetts et al.'s prior: ``known_mass`` split evenly over the known (labelled)
    classes, the rest split evenly over the extra slots. With no extra slots (semi-supervised) or
    no known classes (clustering) it reduces to uniform. ``"uniform"`` is uniform over all slots.
    ``"given"`` uses ``probs`` (one non-negative number per slot; normalised here).
    """
    if n_known < 0 or extra_slots < 0 or n_known + extra_slots == 0:
        raise ValueError(f"need at least one slot, got n_known={n_known}, extra_slots={extra_slots}")
    n_slots = n_known + extra_slots
    if kind == "given":
        if probs is None or len(probs) != n_slots:
            raise ValueError(f"a given class prior needs {n_slots} probabilities (known slots first, "
                             f"then extra slots), got {None if probs is None else len(probs)}")
        given = torch.tensor([float(p) for p in probs])
        if not torch.isfinite(given).all() or (given < 0).any() or given.sum() <= 0:
            raise ValueError(f"class prior probabilities must be non-negative and not all zero: {list(probs)}")
        return given / given.sum()
    if kind == "uniform" or n_known == 0 or extra_slots == 0:
        return torch.full((n_slots,), 1.0 / n_slots)
    if kind != "sus":
        raise ValueError(f"unknown class prior {kind!r}; choose 'sus', 'uniform' or 'given'")
    if not 0.0 < known_mass < 1.0:
        raise ValueError(f"known_mass must lie in (0, 1), got {known_mass}")
    return torch.cat([torch.full((n_known,), known_mass / n_known),
                      torch.full((extra_slots,), (1.0 - known_mass) / extra_slots)])


register_latent_prior = registrar(LATENT_PRIORS, "latent prior")
register_latent_prior.__doc__ = "Decorator adding a latent prior family (class or factory) to :data:`LATENT_PRIORS`."


def build_latent_prior(name: str, n_slots: int, z_dim: int, options: dict[str, Any] | None = None) -> nn.Module:
    """Instantiate the registered latent prior ``name``; unknown names or options raise ValueError."""
    return build(LATENT_PRIORS, "latent prior", "latent priors", name, n_slots, z_dim, options=options)


def slot_rows(table: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rows of a per-slot ``table`` (n_slots, ...) for slot indices ``y``, or mixed by weights ``y`` (..., n_slots)."""
    if not y.is_floating_point():
        return table[y]
    return (y @ table.flatten(1)).unflatten(-1, table.shape[1:])


def slot_batch_shape(y: torch.Tensor) -> torch.Size:
    """The batch shape ``y`` stands for: its shape for indices, all but the last dim for weights."""
    return y.shape[:-1] if y.is_floating_point() else y.shape


@register_latent_prior("standard_normal")
class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I), the same for every y (M2)."""

    def __init__(self, n_slots: int, z_dim: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(z_dim))
        self.register_buffer("scale", torch.ones(z_dim))

    def forward(self, y: torch.Tensor) -> dist.Distribution:
        """Return N(0, I) with the batch shape of ``y``."""
        return dist.Normal(self.loc, self.scale).expand(slot_batch_shape(y) + self.loc.shape).to_event(1)


@register_latent_prior("class_gaussian")
class ClassGaussianPrior(nn.Module):
    """p(z|y) = N(mu_y, diag sigma_y^2): a learnable lookup table of one Gaussian per slot (GM-DGM)."""

    def __init__(self, n_slots: int, z_dim: int, loc_init_scale: float = 1.0) -> None:
        super().__init__()
        # Random means break the symmetry between slots; equal means would leave them interchangeable.
        self.loc = nn.Parameter(loc_init_scale * torch.randn(n_slots, z_dim))
        self.log_scale = nn.Parameter(torch.zeros(n_slots, z_dim))

    def forward(self, y: torch.Tensor) -> dist.Distribution:
        """Return the Gaussian of each slot in ``y`` (any shape, e.g. enumerated ``(K, 1)``)."""
        return dist.Normal(slot_rows(self.loc, y), slot_rows(self.log_scale, y).exp()).to_event(1)


@register_latent_prior("mixture")
class ClassMixturePrior(nn.Module):
    """p(z|y) = sum_m w_ym N(mu_ym, diag sigma_ym^2): a learnable Gaussian mixture per slot.

    With ``n_slots=1`` it is a learnable mixture prior p(z) (a "mixture of Gaussians" VAE prior).
    """

    def __init__(self, n_slots: int, z_dim: int, components: int = 3, loc_init_scale: float = 1.0) -> None:
        super().__init__()
        if components < 1:
            raise ValueError(f"a mixture needs at least one component, got {components}")
        self.logits = nn.Parameter(torch.zeros(n_slots, components))
        self.loc = nn.Parameter(loc_init_scale * torch.randn(n_slots, components, z_dim))
        self.log_scale = nn.Parameter(torch.zeros(n_slots, components, z_dim))

    def forward(self, y: torch.Tensor) -> dist.Distribution:
        """Return the mixture of each slot in ``y``."""
        components = dist.Normal(slot_rows(self.loc, y), slot_rows(self.log_scale, y).exp()).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=slot_rows(self.logits, y)), components)
