"""pyro_sus: deep generative models in Pyro for semi-unsupervised learning.

Some classes have a few labels, others none: one model classifies the labelled classes,
discovers the unlabelled ones as clusters, and hands back a classifier q(y|x).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

__version__ = "0.1.0"

# Loaded on first use (PEP 562), so that ``import pyro_sus`` and ``pyro-sus --help`` do not wait for
# torch and Pyro, and a Ctrl-C while they load reaches the command line's handler.
_EXPORTS = {"fit": "api", "fit_seeds": "api", "evaluate": "run", "predict": "run", "load": "run", "Run": "run",
            "load_dataset": "data", "make_split": "split", "Dataset": "data", "Split": "split",
            "Preprocessor": "preprocess",
            "MODELS": "models", "build_model": "models", "SemiUnsupervisedClassifier": "estimator"}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)  # pyro_sus.models etc. without importing them first
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
