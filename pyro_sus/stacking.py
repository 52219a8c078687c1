"""Stacked models: E runs of one model (same config, other seeds) as one model whose every network
carries a leading member dimension, so that one step trains them all with batched matrix products.

The stacked model is still a Pyro model/guide pair: its ``model`` and ``guide`` run under a
``pyro.plate("members", E, dim=-2)`` around the data plate (dim -1), y is enumerated to the left
of both (``TraceEnum_ELBO(max_plate_nesting=2)``), and a batch holds ``(E, B, D)`` tensors, member
e's points in row e. Its loss is the sum over members of each member's per-point mean loss, and
no term mixes members, so the gradient of member e's parameters is that of member e's own loss,
and Adam and gradient value clipping, which act elementwise, make one stacked step E separate steps
(``tests/test_stacking.py`` checks this to 1e-5).

A part is stacked by its stacked form (:data:`STACKED_FORMS`): ``nn.Linear`` becomes
:class:`pyro_sus.nn.StackedLinear`, the slot tables of p(z|y) their per-member tables. A model with
a parameter outside such a part (a zuko flow, a convolution) cannot be stacked:
:func:`stacking_refusal` says why, and its runs train one after another.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import pyro.distributions as dist
from pyro.infer import TraceEnum_ELBO
from torch import nn

from .nn import StackedLinear
from .priors import ClassGaussianPrior, ClassMixturePrior

__all__ = ["STACKED_FORMS", "register_stacked_form", "stack_models", "stacking_refusal", "member_entries",
           "member_state", "stack_optimizer_states", "member_optimizer_state", "member_rows", "StackedClassGaussianPrior",
           "StackedClassMixturePrior"]

#: Module class -> function making the stacked module of a list of such modules (one per member).
STACKED_FORMS: dict[type[nn.Module], Callable[[Sequence[nn.Module]], nn.Module]] = {}


def register_stacked_form(cls: type[nn.Module]) -> Callable[[Callable], Callable]:
    """Decorator: the decorated function stacks modules of exactly class ``cls`` (not subclasses,
    which may compute otherwise)."""
    def decorate(stack: Callable[[Sequence[nn.Module]], nn.Module]) -> Callable:
        STACKED_FORMS[cls] = stack
        return stack
    return decorate


register_stacked_form(nn.Linear)(StackedLinear.of)


def member_rows(table: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rows of member tables ``table`` (E, n_slots, ...) for slot indices ``y`` (..., E or 1, B), each
    member reading its own table; or mixed by weights ``y`` (..., E, B, n_slots)."""
    if not y.is_floating_point():
        members = torch.arange(table.shape[0], device=y.device).unsqueeze(-1)
        return table[members, y]
    return torch.matmul(y, table.flatten(2)).unflatten(-1, table.shape[2:])


def _stacked_parameter(values: Sequence[torch.Tensor]) -> nn.Parameter:
    return nn.Parameter(torch.stack([v.detach() for v in values]).clone())


class StackedClassGaussianPrior(nn.Module):
    """:class:`pyro_sus.priors.ClassGaussianPrior` of E members: tables (E, n_slots, z_dim)."""

    def __init__(self, priors: Sequence[ClassGaussianPrior]) -> None:
        super().__init__()
        self.loc = _stacked_parameter([p.loc for p in priors])
        self.log_scale = _stacked_parameter([p.log_scale for p in priors])

    def forward(self, y: torch.Tensor) -> dist.Distribution:
        return dist.Normal(member_rows(self.loc, y), member_rows(self.log_scale, y).exp()).to_event(1)


class StackedClassMixturePrior(nn.Module):
    """:class:`pyro_sus.priors.ClassMixturePrior` of E members: tables with a leading member dimension."""

    def __init__(self, priors: Sequence[ClassMixturePrior]) -> None:
        super().__init__()
        self.logits = _stacked_parameter([p.logits for p in priors])
        self.loc = _stacked_parameter([p.loc for p in priors])
        self.log_scale = _stacked_parameter([p.log_scale for p in priors])

    def forward(self, y: torch.Tensor) -> dist.Distribution:
        components = dist.Normal(member_rows(self.loc, y), member_rows(self.log_scale, y).exp()).to_event(1)
        return dist.MixtureSameFamily(dist.Categorical(logits=member_rows(self.logits, y)), components)


register_stacked_form(ClassGaussianPrior)(StackedClassGaussianPrior)
register_stacked_form(ClassMixturePrior)(StackedClassMixturePrior)


def _stacked_parts(model: nn.Module) -> list[str]:
    """Names of the outermost submodules of ``model`` that have a stacked form."""
    names: list[str] = []
    for name, module in model.named_modules():
        if name and type(module) in STACKED_FORMS and not any(name.startswith(n + ".") for n in names):
            names.append(name)
    return names


def _inside(name: str, parts: Sequence[str]) -> bool:
    return any(name.startswith(part + ".") for part in parts)


def stacking_refusal(model: nn.Module) -> str | None:
    """Why runs of ``model``'s class and config cannot train stacked, or None when they can."""
    reason = getattr(model, "stacking_refusal", lambda: None)()
    if reason:
        return reason
    parts = _stacked_parts(model)
    for name, _ in model.named_parameters():
        if not _inside(name, parts):
            return (f"its parameter {name} lies in a part without a stacked form "
                    f"({type(model.get_submodule(name.rpartition('.')[0])).__name__})")
    return None


def stack_models(models: Sequence[nn.Module]) -> nn.Module:
    """One stacked model of ``models`` (zoo models of one class and config, e.g. built under different
    seeds), its member e holding a copy of ``models[e]``'s parameters. ValueError when they cannot be
    stacked (:func:`stacking_refusal`) or differ in class, config or a buffer."""
    if not models:
        raise ValueError("stacking needs at least one model")
    first = models[0]
    for other in models[1:]:
        if type(other) is not type(first) or other.config != first.config:
            raise ValueError(f"stacked models must share their class and config; {type(other).__name__} "
                             f"{other.config} differs from {type(first).__name__} {first.config}")
    reason = stacking_refusal(first)
    if reason:
        raise ValueError(f"{type(first).__name__} cannot be stacked: {reason}")
    parts = _stacked_parts(first)
    for name, buffer in first.named_buffers():
        if not _inside(name, parts) and not all(torch.equal(buffer, m.get_buffer(name)) for m in models[1:]):
            raise ValueError(f"stacked models must share their buffers; {name} differs between them")
    stacked = copy.deepcopy(first)
    stacked.__dict__.pop("_param_site_prefix", None)  # its param sites get names of their own
    for name in parts:
        parent_name, _, child = name.rpartition(".")
        parent = stacked.get_submodule(parent_name) if parent_name else stacked
        setattr(parent, child, STACKED_FORMS[type(first.get_submodule(name))]([m.get_submodule(name) for m in models]))
    stacked.members = len(models)
    stacked.stacked_parts = tuple(parts)
    # The members' plate sits left of the data plate: enumerated sites go further left.
    stacked._elbo = TraceEnum_ELBO(max_plate_nesting=2, strict_enumeration_warning=first.enumerates_unlabelled)
    stacked._elbo_labelled = TraceEnum_ELBO(max_plate_nesting=2, strict_enumeration_warning=False)
    return stacked


def member_entries(stacked: nn.Module) -> dict[str, torch.Tensor]:
    """The entries of a stacked model's ``state_dict`` that carry a member dimension (the rest, its
    shared buffers, are every member's as they are)."""
    return {k: v for k, v in stacked.state_dict().items() if _inside(k, stacked.stacked_parts)}


def member_state(stacked: nn.Module, member: int) -> dict[str, torch.Tensor]:
    """Member ``member``'s state as its own model's ``state_dict`` (the same keys and shapes)."""
    return {k: (v[member] if _inside(k, stacked.stacked_parts) else v).detach().clone()
            for k, v in stacked.state_dict().items()}


def stack_optimizer_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The Adam state of a stacked model from its members' (``optimizer.state_dict()`` of each model
    trained alone): moments stacked, step counts shared (they must be equal)."""
    first = states[0]
    stacked: dict[str, Any] = {"param_groups": copy.deepcopy(first["param_groups"]), "state": {}}
    for index, entry in first["state"].items():
        stacked["state"][index] = {}
        for key, value in entry.items():
            values = [s["state"][index][key] for s in states]
            if key == "step" or not isinstance(value, torch.Tensor) or value.dim() == 0:
                if any(not torch.equal(torch.as_tensor(v), torch.as_tensor(value)) for v in values):
                    raise ValueError(f"the members' optimizer states differ in {key}: they are not at the same step")
                stacked["state"][index][key] = value
            else:
                stacked["state"][index][key] = torch.stack(values)
    return stacked


def member_optimizer_state(state: dict[str, Any], member: int) -> dict[str, Any]:
    """Member ``member``'s part of a stacked Adam state, as its own optimizer's ``state_dict``."""
    return {"param_groups": copy.deepcopy(state["param_groups"]),
            "state": {index: {key: (value[member].clone() if isinstance(value, torch.Tensor) and key != "step"
                                    and value.dim() > 0 else value)
                              for key, value in entry.items()}
                      for index, entry in state["state"].items()}}
