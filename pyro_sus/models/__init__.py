"""The model zoo. Importing this package registers every model."""

from .base import DGMConfig, SemiUnsupervisedDGM
from .gmdgm import GMDGM, GMDGMConfig
from .m2 import M2, M2Config
from .registry import MODELS, get_model_class, register_model

__all__ = ["DGMConfig", "SemiUnsupervisedDGM", "M2", "M2Config", "GMDGM", "GMDGMConfig",
           "MODELS", "get_model_class", "register_model", "build_model"]


def build_model(name: str, **options) -> SemiUnsupervisedDGM:
    """Instantiate the registered model ``name`` from its config options."""
    cls = get_model_class(name)
    return cls(cls.config_class(**options))
