"""Swappable posterior families q(z | context) for the continuous latent."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.functional import softplus
import pyro.distributions as dist

from .nn import MLP

__all__ = ["DiagonalNormalPosterior"]


class DiagonalNormalPosterior(nn.Module):
    """q(z|c) = N(mu(c), diag sigma(c)^2), mean and scale sharing every layer but their own output."""

    def __init__(self, context_dim: int, z_dim: int, hidden_dims: Sequence[int]) -> None:
        super().__init__()
        self.body = MLP(context_dim, hidden_dims[:-1], hidden_dims[-1]) if hidden_dims else nn.Identity()
        width = hidden_dims[-1] if hidden_dims else context_dim
        self.loc = nn.Linear(width, z_dim)
        self.scale = nn.Linear(width, z_dim)

    def forward(self, context: torch.Tensor) -> dist.Distribution:
        """Return q(z|context) with batch shape ``context.shape[:-1]``."""
        hidden = torch.relu(self.body(context)) if not isinstance(self.body, nn.Identity) else context
        # softplus + floor keeps the scale positive without exp's overflow early in training.
        return dist.Normal(self.loc(hidden), softplus(self.scale(hidden)) + 1e-4).to_event(1)
