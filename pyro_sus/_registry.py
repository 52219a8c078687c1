"""The rule the name registries (models, posterior families, latent priors) share."""

from __future__ import annotations

__all__ = ["same_definition"]


def same_definition(old: object, new: object) -> bool:
    """True when ``new`` re-defines ``old`` (same module and name: a re-run notebook cell or a
    reloaded module), which replaces the entry instead of failing."""
    return (getattr(old, "__module__", None), getattr(old, "__qualname__", None)) == \
        (getattr(new, "__module__", None), getattr(new, "__qualname__", None))
