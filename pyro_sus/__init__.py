"""pyro_sus: deep generative models in Pyro for semi-unsupervised learning.

Some classes have a few labels, others none: one model classifies the labelled classes,
discovers the unlabelled ones as clusters, and hands back a classifier q(y|x).
"""

__version__ = "0.1.0"

from .api import Run, evaluate, fit, load, predict  # noqa: E402
from .data import Dataset, Preprocessor, Split, load_dataset, make_split  # noqa: E402
from .models import MODELS, build_model  # noqa: E402

__all__ = ["__version__", "fit", "evaluate", "predict", "load", "Run", "load_dataset", "make_split",
           "Dataset", "Split", "Preprocessor", "MODELS", "build_model"]
