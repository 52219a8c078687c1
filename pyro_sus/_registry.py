"""What the name registries (models, posterior families, latent priors) share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["same_definition", "registrar", "build"]

F = TypeVar("F", bound=Callable[..., Any])


def same_definition(old: object, new: object) -> bool:
    """True when ``new`` re-defines ``old`` (same module and name: a re-run notebook cell or a
    reloaded module), which replaces the entry instead of failing."""
    return (getattr(old, "__module__", None), getattr(old, "__qualname__", None)) == \
        (getattr(new, "__module__", None), getattr(new, "__qualname__", None))


def registrar(registry: dict[str, Callable[..., Any]], what: str) -> Callable[[str], Callable[[F], F]]:
    """A ``register(name)`` decorator factory adding parts to ``registry``; ``what`` names them in errors."""

    def register(name: str) -> Callable[[F], F]:
        def decorate(part: F) -> F:
            if name in registry and not same_definition(registry[name], part):
                raise ValueError(f"{what} {name!r} is already registered")
            registry[name] = part
            return part

        return decorate

    return register


def build(registry: dict[str, Callable[..., Any]], what: str, plural: str, name: str, *args: Any,
          options: dict[str, Any] | None = None) -> Any:
    """Call the registered part ``name`` with ``args`` and keyword ``options``; unknown names or
    options raise ValueError naming the known parts."""
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; known {plural}: {sorted(registry)}")
    try:
        return registry[name](*args, **(options or {}))
    except TypeError as err:
        raise ValueError(f"bad options for {what} {name!r}: {err}") from None
