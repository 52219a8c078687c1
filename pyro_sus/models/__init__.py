"""The model zoo. Importing this package registers every model."""

from ..nn import initialise
from .auxiliary import AGMDGM, AM2, AuxiliaryDGM, AuxiliaryDGMConfig
from .base import DecoderConfig, GenerativeConfig, GenerativeModel, ModelConfig, ZooModel, check_model_size
from .betavae import BetaVAEClassifier, BetaVAEClassifierConfig
from .catvae import CategoricalVAE, CategoricalVAEConfig, PaperCategoricalVAE, PaperCategoricalVAEConfig
from .baselines import M1, ClassifierConfig, LabelledOnlyClassifier, M1Config
from .dgm import GMDGM, M2, DGMConfig, SemiUnsupervisedDGM
from .kmeans import KMeansBaseline, KMeansConfig
from .latent_classifier import LatentClassifierConfig, LatentClassifierVAE, SimplifiedLatentClassifierVAE
from .registry import MODELS, get_model_class, register_model

__all__ = ["ModelConfig", "DecoderConfig", "GenerativeConfig", "ZooModel", "GenerativeModel", "DGMConfig", "SemiUnsupervisedDGM",
           "M2", "GMDGM", "AuxiliaryDGMConfig", "AuxiliaryDGM", "AM2", "AGMDGM",
           "LatentClassifierConfig", "LatentClassifierVAE", "SimplifiedLatentClassifierVAE",
           "BetaVAEClassifierConfig", "BetaVAEClassifier", "CategoricalVAEConfig", "CategoricalVAE",
           "PaperCategoricalVAEConfig", "PaperCategoricalVAE", "ClassifierConfig",
           "LabelledOnlyClassifier", "M1Config", "M1", "KMeansConfig", "KMeansBaseline",
           "MODELS", "get_model_class", "register_model", "build_model"]


def build_model(name: str, *, where: str = "model options", **options) -> ZooModel:
    """The registered model ``name`` from its config options, freshly initialised as ``init`` says (from
    the current random state), after checking that its sizes fit this machine. Every run builds its
    model here (``pyro-sus train``, each seed of a stack, each round of the active loop); a bad or
    unknown option is a ValueError that names ``where``."""
    cls = get_model_class(name)
    try:
        config = cls.config_class(**options)
    except (TypeError, ValueError) as err:  # an option this model does not have, or a bad value
        raise ValueError(f"{where}: bad options for model {name!r}: {err}") from None
    check_model_size(cls, config, where)
    return initialise(cls(config), config.init)
