"""Networks shared by every model, and the helper that broadcasts inputs against an enumerated y."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "MLP", "activation_module", "broadcast_cat"]

# Hidden-layer nonlinearities a model config may name (``activation``).
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "softplus": nn.Softplus}


class MLP(nn.Sequential):
    """Fully connected network: Linear -> activation for each hidden layer, then a linear output."""

    def __init__(self, in_dim: int, hidden_dims: Sequence[int], out_dim: int, activation: str = "relu") -> None:
        activation_module(activation)  # an unknown name fails here, even with no hidden layer
        layers: list[nn.Module] = []
        for width in hidden_dims:
            layers += [nn.Linear(in_dim, width), activation_module(activation)]
            in_dim = width
        layers.append(nn.Linear(in_dim, out_dim))
        super().__init__(*layers)


def activation_module(name: str) -> nn.Module:
    """A new module for the activation called ``name`` (a key of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def broadcast_cat(*tensors: torch.Tensor) -> torch.Tensor:
    """Concatenate along the last dim after broadcasting all leading (batch and enumeration) dims.

    Under parallel enumeration y arrives as shape ``(K, 1, K)`` (one-hot) while x is ``(B, D)``;
    the result is ``(K, B, D + K)``, one copy of x per value of y.
    """
    batch_shape = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(*batch_shape, t.shape[-1]) for t in tensors], dim=-1)
