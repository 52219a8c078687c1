"""Networks shared by every model, the helper that broadcasts inputs against an enumerated y, and
the precision their layers compute at."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "PRECISIONS", "MLP", "activation_module", "broadcast_cat", "network_precision"]

#: Precisions the networks may compute at (``TrainConfig.precision``): the autocast dtype, or None.
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16}

_NETWORK_DTYPE: ContextVar[torch.dtype | None] = ContextVar("network_dtype", default=None)


@contextlib.contextmanager
def network_precision(dtype: torch.dtype | None) -> Iterator[None]:
    """Inside, every :class:`MLP` computes under ``torch.autocast(dtype)`` and hands back its input's
    dtype; None leaves them at full precision.

    Only the networks: the distributions' log-probabilities, KL terms, enumeration sums and the
    loss stay float32, which an autocast around the whole loss would not guarantee (Pyro's
    enumeration contracts with einsum, which autocast would run in the low precision).
    """
    token = _NETWORK_DTYPE.set(dtype)
    try:
        yield
    finally:
        _NETWORK_DTYPE.reset(token)

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

    def forward(self, x: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """The layers in turn, at the precision :func:`network_precision` sets (full by default).

        ``x`` may be a sequence of parts standing for their concatenation after broadcasting
        (as :func:`broadcast_cat` would build it): the first layer then maps each part at its own
        shape and adds the results. Under enumeration, ``(x, onehot(y))`` thus maps x once instead
        of once per value of y, and the one-hot part costs a lookup.
        """
        parts = (x,) if isinstance(x, torch.Tensor) else tuple(x)
        dtype = _NETWORK_DTYPE.get()
        if dtype is None:
            return self._layers(parts)
        with torch.autocast(parts[0].device.type, dtype=dtype):
            out = self._layers(parts)
        return out.to(parts[0].dtype)

    def _layers(self, parts: tuple[torch.Tensor, ...]) -> torch.Tensor:
        first, *rest = self
        if len(parts) == 1:
            hidden = first(parts[0])
        else:
            widths = [part.shape[-1] for part in parts]
            if sum(widths) != first.in_features:
                raise ValueError(f"parts of widths {widths} do not make the first layer's {first.in_features} inputs")
            weights = first.weight.split(widths, dim=1)
            hidden = first.bias
            for part, weight in zip(parts, weights):
                hidden = hidden + nn.functional.linear(part, weight)
        for module in rest:
            hidden = module(hidden)
        return hidden


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
