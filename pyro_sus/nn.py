"""Networks shared by every model, the helper that broadcasts inputs against an enumerated y, and
the precision their layers compute at."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Literal, get_args

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "INITS", "Precision", "PRECISIONS", "MLP", "StackedLinear", "activation_module", "initialise",
           "broadcast_cat", "one_hot_rows", "network_precision"]

#: Precisions the networks may compute at (``TrainConfig.precision``): the autocast dtype, or None.
#: What the networks compute at in training (``TrainConfig.precision``), and its dtype under autocast.
Precision = Literal["fp32", "bf16"]
PRECISIONS: dict[str, torch.dtype | None] = dict(zip(get_args(Precision), (None, torch.bfloat16)))

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
        widths = [part.shape[-1] for part in parts]
        if sum(widths) != first.in_features:
            raise ValueError(f"parts of widths {widths} do not make the first layer's {first.in_features} inputs")
        if isinstance(first, StackedLinear):
            return self._stacked_layers(parts, widths)
        if len(parts) == 1:
            hidden = first(parts[0])
        else:
            hidden = first.bias
            for part, weight in zip(parts, first.weight.split(widths, dim=1)):
                hidden = hidden + nn.functional.linear(part, weight)
        for module in rest:
            hidden = module(hidden)
        return hidden

    def _stacked_layers(self, parts: tuple[torch.Tensor, ...], widths: list[int]) -> torch.Tensor:
        """The layers of a stacked MLP, every member's rows kept together in between: inputs
        (..., E or 1, B, in) are read member first, each hidden layer is one contiguous (E, rows, width)
        stack (one batched product, and activations on contiguous memory), and the output is handed
        back as (..., E, B, out)."""
        first, *rest = self
        rank = max(part.dim() for part in parts)
        hidden = first.bias.view(first.members, *[1] * (rank - 2), first.out_features)
        for part, weight in zip(parts, first.weight.split(widths, dim=-1)):
            member_first = part.reshape((1,) * (rank - part.dim()) + part.shape).movedim(-3, 0)
            hidden = hidden + torch.matmul(member_first, weight.mT.view(first.members, *[1] * (rank - 3),
                                                                          *weight.shape[:0:-1]))
        shape = hidden.shape
        hidden = hidden.reshape(first.members, -1, shape[-1])
        for module in rest:
            hidden = module(hidden)
        return hidden.view(*shape[:-1], hidden.shape[-1]).movedim(0, -3)


class StackedLinear(nn.Module):
    """E linear layers side by side, one per member of a stacked model (:mod:`pyro_sus.stacking`):
    ``weight`` (E, out, in) and ``bias`` (E, out), member e being ``nn.Linear``'s ``weight[e]``, ``bias[e]``.

    The input's third dimension from the right is the member's (``(..., E, B, in)``, or 1 to share
    an input among the members): one batched matrix product does every member's layer.
    """

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.weight = nn.Parameter(torch.empty(members, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(members, out_features))

    @classmethod
    def of(cls, layers: Sequence[nn.Linear]) -> "StackedLinear":
        """The stack of ``layers`` (equal shapes, each with a bias), holding copies of their weights."""
        first = layers[0]
        if any(layer.bias is None or layer.weight.shape != first.weight.shape for layer in layers):
            raise ValueError("stacked linear layers need equal shapes and a bias each")
        stacked = cls(len(layers), first.in_features, first.out_features).to(first.weight.device)
        with torch.no_grad():
            stacked.weight.copy_(torch.stack([layer.weight for layer in layers]))
            stacked.bias.copy_(torch.stack([layer.bias for layer in layers]))
        return stacked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return stacked_matmul(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"members={self.members}, in_features={self.in_features}, out_features={self.out_features}"


def stacked_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ weight[e].T (+ bias[e])`` for each member e: ``x`` (..., E or 1, B, in), ``weight`` (E, out, in),
    ``bias`` (E, out).

    An input with a member dimension is laid out as one (E, rows, in) matrix stack, every leading
    dimension folded into the rows, for one batched product (a view, when the layer before left its
    output in that layout); a shared input (member dimension 1) broadcasts instead."""
    if x.dim() < 3 or x.shape[-3] != weight.shape[0]:
        out = torch.matmul(x, weight.mT)
        return out if bias is None else out + bias.unsqueeze(-2)
    leading = x.movedim(-3, 0)
    rows = leading.reshape(weight.shape[0], -1, x.shape[-1])
    out = torch.bmm(rows, weight.mT) if bias is None else torch.baddbmm(bias.unsqueeze(-2), rows, weight.mT)
    return out.view(*leading.shape[:-1], weight.shape[1]).movedim(0, -3)


def activation_module(name: str) -> nn.Module:
    """A new module for the activation called ``name`` (a key of :data:`ACTIVATIONS`)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]()


def _normal_0001(weight: torch.Tensor) -> None:
    nn.init.normal_(weight, std=0.001)


def _lecun_normal(weight: torch.Tensor) -> None:
    fan_in = weight[0].numel()  # inputs per output unit: in_features, or in_channels x kernel size
    nn.init.normal_(weight, std=fan_in ** -0.5)


#: Weight initialisations a model config may name (``init``): the papers' own. "default" keeps
#: PyTorch's (uniform in +-1/sqrt(fan_in)); the others draw every Linear and convolution kernel as
#: named and set its bias to 0.
INITS = {"default": None, "xavier-uniform": nn.init.xavier_uniform_, "xavier-normal": nn.init.xavier_normal_,
         "lecun-normal": _lecun_normal, "normal-0.001": _normal_0001}


def initialise(module: nn.Module, kind: str) -> nn.Module:
    """Draw the kernels of every Linear and convolution in ``module`` as :data:`INITS` names ``kind``, biases 0."""
    if kind not in INITS:
        raise ValueError(f"init must be one of {sorted(INITS)}, got {kind!r}")
    draw = INITS[kind]
    if draw is None:
        return module
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                draw(layer.weight)
                if layer.bias is not None:
                    layer.bias.zero_()
    return module


def broadcast_cat(*tensors: torch.Tensor) -> torch.Tensor:
    """Concatenate along the last dim after broadcasting all leading (batch and enumeration) dims.

    Under parallel enumeration y arrives as shape ``(K, 1, K)`` (one-hot) while x is ``(B, D)``;
    the result is ``(K, B, D + K)``, one copy of x per value of y.
    """
    batch_shape = torch.broadcast_shapes(*(t.shape[:-1] for t in tensors))
    return torch.cat([t.expand(*batch_shape, t.shape[-1]) for t in tensors], dim=-1)


def one_hot_rows(y: torch.Tensor, n_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """``y`` (integer ids in 0..n_classes-1) as one-hot rows of ``dtype``, by comparison.

    ``torch.nn.functional.one_hot`` checks the ids' range by reading their minimum and maximum back
    to the host: on CUDA a wait for the device at every call, and a value no trace can capture. The
    ids here were checked when the data was split; an id out of range gives a row of zeros.
    """
    return (y.unsqueeze(-1) == torch.arange(n_classes, device=y.device)).to(dtype)
