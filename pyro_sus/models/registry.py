"""Name -> model class registry used by the CLI, checkpoint loading and the contract tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from .._registry import registrar

__all__ = ["MODELS", "register_model", "get_model_class"]

MODELS: dict[str, type] = {}
T = TypeVar("T", bound=type)
_register = registrar(MODELS, "model")


def register_model(name: str) -> Callable[[T], T]:
    """Class decorator adding a model to :data:`MODELS` under ``name`` (the registry helper every
    registry shares), and telling the class its name."""

    def decorate(cls: T) -> T:
        _register(name)(cls)
        cls.registry_name = name
        return cls

    return decorate


def get_model_class(name: str) -> type:
    """The model class registered as ``name``, or a ValueError listing the known names."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {sorted(MODELS)}") from None
