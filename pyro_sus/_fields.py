"""Check a config dataclass's values against its field annotations, naming the option that is wrong.

Options arrive as JSON (``--model-option z_dim="big"``, a hand-edited ``run.json``); without this,
a wrong type fails later as a TypeError deep in a comparison that names no option.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from typing import Any

__all__ = ["check_field_types"]

_MISMATCH = object()


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as ``hint`` (int -> float, list -> tuple), or ``_MISMATCH``; unknown hints pass."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for member in typing.get_args(hint):
            coerced = _coerce(value, member)
            if coerced is not _MISMATCH:
                return coerced
        return _MISMATCH
    if origin is typing.Literal:  # one of the listed choices (strings: exactly, no coercion)
        return value if any(value == c and type(value) is type(c) for c in typing.get_args(hint)) else _MISMATCH
    if hint is type(None):
        return value if value is None else _MISMATCH
    if hint is bool:
        return value if isinstance(value, bool) else _MISMATCH
    if hint is int:  # numpy integers too, as plain ints
        return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else _MISMATCH
    if hint is float:  # NaN and infinity are no option's meaningful value
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        return float(value) if ok else _MISMATCH
    if hint is str:
        return value if isinstance(value, str) else _MISMATCH
    if origin in (tuple, list) or hint in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return _MISMATCH
        args = typing.get_args(hint)
        item = args[0] if args and (origin is list or (len(args) == 2 and args[1] is Ellipsis)) else Any
        items = [_coerce(v, item) for v in value]
        if any(v is _MISMATCH for v in items):
            return _MISMATCH
        return (tuple if (origin or hint) is tuple else list)(items)
    if origin is dict or hint is dict:
        return value if isinstance(value, dict) else _MISMATCH
    return value  # a hint this checker does not know (a plugin's own type): the config checks it


def _describe(hint: Any) -> str:
    names = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false", type(None): "null"}
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(h) for h in typing.get_args(hint))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(hint))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return f"a list of {_describe(args[0]).split(' ', 1)[-1]}s" if args else "a list"
    if origin is dict:
        return "a JSON object"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def check_field_types(config: Any) -> None:
    """Coerce every field of the dataclass ``config`` to its annotation, or raise ValueError naming it."""
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        coerced = _coerce(value, hints.get(f.name, Any))
        if coerced is _MISMATCH:
            raise ValueError(f"option {f.name}={value!r} of {type(config).__name__}: {f.name} must be "
                             f"{_describe(hints[f.name])}")
        object.__setattr__(config, f.name, coerced)
