"""Name -> model class registry used by the CLI, checkpoint loading and the contract tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .._registry import same_definition

__all__ = ["MODELS", "register_model", "get_model_class"]

MODELS: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_model(name: str) -> Callable[[T], T]:
    """Class decorator adding a model to :data:`MODELS` under ``name``."""

    def decorate(cls: T) -> T:
        if name in MODELS and not same_definition(MODELS[name], cls):
            raise ValueError(f"model name {name!r} already registered by {MODELS[name].__name__}")
        MODELS[name] = cls
        cls.registry_name = name
        return cls

    return decorate


def get_model_class(name: str) -> type:
    """The model class registered as ``name``, or a ValueError listing the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}") from None
