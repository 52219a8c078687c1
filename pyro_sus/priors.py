"""Swappable priors: the class prior p(y) and latent priors p(z|y) that return ``Distribution``s."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
import pyro.distributions as dist

__all__ = ["class_prior", "StandardNormalPrior", "ClassGaussianPrior"]


def class_prior(n_known: int, n_extra: int, kind: str = "sus", known_mass: float = 0.5) -> torch.Tensor:
    """Probabilities over the ``n_known + n_extra`` slots of y.

    ``"sus"`` is Willetts et al.'s prior: ``known_mass`` split evenly over the known (labelled)
    classes, the rest split evenly over the extra slots. With no extra slots (semi-supervised) or
    no known classes (clustering) it reduces to uniform. ``"uniform"`` is uniform over all slots.
    """
    if n_known < 0 or n_extra < 0 or n_known + n_extra == 0:
        raise ValueError(f"need at least one slot, got n_known={n_known}, n_extra={n_extra}")
    n_slots = n_known + n_extra
    if kind == "uniform" or n_known == 0 or n_extra == 0:
        return torch.full((n_slots,), 1.0 / n_slots)
    if kind != "sus":
        raise ValueError(f"unknown class prior {kind!r}; choose 'sus' or 'uniform'")
    if not 0.0 < known_mass < 1.0:
        raise ValueError(f"known_mass must lie in (0, 1), got {known_mass}")
    return torch.cat([torch.full((n_known,), known_mass / n_known),
                      torch.full((n_extra,), (1.0 - known_mass) / n_extra)])


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I), the same for every y (M2)."""

    def __init__(self, z_dim: int) -> None:
        super().__init__()
        self.register_buffer("loc", torch.zeros(z_dim))
        self.register_buffer("scale", torch.ones(z_dim))

    def forward(self, y: torch.Tensor) -> dist.Distribution:
        """Return N(0, I) with batch shape ``y.shape``."""
        return dist.Normal(self.loc, self.scale).expand(y.shape + self.loc.shape).to_event(1)


class ClassGaussianPrior(nn.Module):
    """p(z|y) = N(mu_y, diag sigma_y^2): a learnable lookup table of one Gaussian per slot (GM-DGM)."""

    def __init__(self, n_slots: int, z_dim: int, loc_init_scale: float = 1.0) -> None:
        super().__init__()
        # Random means break the symmetry between slots; equal means would leave them interchangeable.
        self.loc = nn.Parameter(loc_init_scale * torch.randn(n_slots, z_dim))
        self.log_scale = nn.Parameter(torch.zeros(n_slots, z_dim))

    def forward(self, y: torch.Tensor) -> dist.Distribution:
        """Return the Gaussian of each slot in ``y`` (any shape, e.g. enumerated ``(K, 1)``)."""
        return dist.Normal(self.loc[y], self.log_scale[y].exp()).to_event(1)
