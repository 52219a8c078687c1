"""The model zoo. Importing this package registers every model."""

from ..nn import initialise
from .auxiliary import AGMDGM, AM2, AuxiliaryDGM, AuxiliaryDGMConfig
from .base import GenerativeConfig, GenerativeModel, ModelConfig, ZooModel
from .betavae import BetaVAEClassifier, BetaVAEClassifierConfig
from .catvae import CategoricalVAE, CategoricalVAEConfig, PaperCategoricalVAE, PaperCategoricalVAEConfig
from .baselines import M1, ClassifierConfig, LabelledOnlyClassifier, M1Config
from .dgm import DGMConfig, SemiUnsupervisedDGM
from .gmdgm import GMDGM, GMDGMConfig
from .kmeans import KMeansBaseline, KMeansConfig
from .latent_classifier import LatentClassifierConfig, LatentClassifierVAE, SimplifiedLatentClassifierVAE
from .m2 import M2, M2Config
from .registry import MODELS, get_model_class, register_model

__all__ = ["ModelConfig", "GenerativeConfig", "ZooModel", "GenerativeModel", "DGMConfig", "SemiUnsupervisedDGM",
           "M2", "M2Config", "GMDGM", "GMDGMConfig", "AuxiliaryDGMConfig", "AuxiliaryDGM", "AM2", "AGMDGM",
           "LatentClassifierConfig", "LatentClassifierVAE", "SimplifiedLatentClassifierVAE",
           "BetaVAEClassifierConfig", "BetaVAEClassifier", "CategoricalVAEConfig", "CategoricalVAE",
           "PaperCategoricalVAEConfig", "PaperCategoricalVAE", "ClassifierConfig",
           "LabelledOnlyClassifier", "M1Config", "M1", "KMeansConfig", "KMeansBaseline",
           "MODELS", "get_model_class", "register_model", "build_model"]


def build_model(name: str, **options) -> ZooModel:
    """Instantiate the registered model ``name`` from its config options, its weights drawn as ``init`` says."""
    cls = get_model_class(name)
    model = cls(cls.config_class(**options))
    return initialise(model, model.config.init)
