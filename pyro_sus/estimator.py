"""A scikit-learn estimator around a run: ``fit(X, y)`` with -1 for unlabelled points, as in
:mod:`sklearn.semi_supervised`, then ``predict``, ``predict_proba``, ``score`` and ``transform``.

Each fit is an ordinary run (:func:`pyro_sus.fit` of a :class:`~pyro_sus.spec.RunSpec`): its folder holds ``run.json``,
``metrics.jsonl``, the weights, ``results.json`` and ``report.md``, so ``pyro-sus report`` and
:func:`pyro_sus.load` read it as any other run.

Examples
--------
>>> import numpy as np
>>> from sklearn.datasets import load_digits
>>> from pyro_sus.estimator import SemiUnsupervisedClassifier
>>> X, y = load_digits(return_X_y=True)
>>> y_train = np.where((y < 5) & (np.arange(len(y)) % 5 == 0), y, -1)   # 5-9 never labelled
>>> clf = SemiUnsupervisedClassifier(epochs=5, verbose=0).fit(X / 16, y_train)
>>> clf.predict(X[:3] / 16)             # 0-4, or the id of a discovered cluster (10, 11, ...)
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .data import Dataset
from .metrics import UNMAPPED
from .preprocess import PreprocessSpec
from .spec import PriorSpec, RunSpec, TrainConfig
from .split import SplitSpec

__all__ = ["SemiUnsupervisedClassifier", "UNLABELLED"]

#: The label of an unlabelled point in ``y`` (scikit-learn's convention for semi-supervised data).
UNLABELLED = -1


class SemiUnsupervisedClassifier(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Classify the labelled classes and discover the unlabelled ones as clusters (scikit-learn API).

    ``fit(X, y)`` takes ``y`` with -1 for every unlabelled point; the classes with labels keep them,
    and ``extra_slots`` extra slots are left for the classes no point is labelled with. ``predict``
    returns a known class, or for a point in a discovered cluster that cluster's id: a new integer
    above every label seen in ``fit`` (``discovered_`` lists them). A cluster id names a cluster, not
    a class: only ``score`` maps clusters to classes, each to the majority true class of the
    validation points it receives (the honest protocol of :mod:`pyro_sus.metrics`), so give
    ``X_val, y_val`` whose labels name the classes to be discovered; without them, points in
    discovered clusters count as wrong.

    Parameters
    ----------
    model : str
        A registered model (``pyro-sus models``): ``"gmdgm"`` (Willetts et al.'s GM-DGM), ``"m2"``, ...
    extra_slots : int or None
        Extra slots for discovery. None: twice the number of classes only ``y_val`` names; without
        those, twice the number of labelled classes when some point is unlabelled, else 0.
    epochs, batch_size, learning_rate, seed
        Training options (:class:`pyro_sus.spec.TrainConfig`; the command line's defaults).
    validation_fraction : float
        Part of each class (and of the unlabelled points) held out for validation when ``fit`` gets
        no ``X_val``.
    likelihood : {"auto", "bernoulli", "gaussian"}
        p(x|...) of a generative model. ``"auto"``: Bernoulli when every feature lies in [0, 1]
        (images scaled to [0, 1]), else Gaussian (e.g. after a ``StandardScaler``).
    prior : {"sus", "uniform"}
        The class prior p(y): ``known_mass`` on the labelled classes (``"sus"``), or uniform.
    known_mass : float
        With ``prior="sus"``, p(y) mass on the labelled classes.
    std_threshold : float or None
        Keep the input dimensions whose training standard deviation exceeds this (None: all).
    model_options, train_options : dict or None
        Any other option of the model's config or of ``TrainConfig`` (``{"z_dim": 10}``).
    device : str
        ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``.
    run_root : str or None
        Folder that keeps each fit's run folder (a new one per fit, ``run_dir_``). None: a temporary
        folder, removed when the estimator is.
    verbose : int
        0: silent; 1: a progress bar while training.

    Attributes
    ----------
    classes_ : ndarray
        The labels ``predict`` can return, in the order of ``predict_proba``'s columns: the labelled
        classes (sorted), then the discovered clusters' ids.
    discovered_ : dict
        Discovered cluster id -> the class the validation points it receives mostly belong to
        (None where it received none with a label).
    n_slots_ : int
        Slots of the model: labelled classes plus ``extra_slots``.
    history_ : list of dict
        One record per epoch (loss and its terms, learning rate, validation numbers).
    run_ : pyro_sus.run.Run
        The trained run (model, preprocessing, split, results).
    run_dir_ : pathlib.Path
        The fit's run folder.
    """

    def __init__(
        self,
        model: str = "gmdgm",
        extra_slots: int | None = None,
        *,
        epochs: int = TrainConfig.epochs,
        batch_size: int = TrainConfig.batch_size,
        learning_rate: float = TrainConfig.learning_rate,
        seed: int = TrainConfig.seed,
        validation_fraction: float = SplitSpec.validation_fraction,
        likelihood: Literal["auto", "bernoulli", "gaussian"] = "auto",
        prior: Literal["sus", "uniform"] = PriorSpec.kind,
        known_mass: float = PriorSpec.known_mass,
        std_threshold: float | None = PreprocessSpec.std_threshold,
        model_options: dict[str, Any] | None = None,
        train_options: dict[str, Any] | None = None,
        device: str = TrainConfig.device,
        run_root: str | None = None,
        verbose: int = 1,
    ) -> None:
        self.model = model
        self.extra_slots = extra_slots
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.seed = seed
        self.validation_fraction = validation_fraction
        self.likelihood = likelihood
        self.prior = prior
        self.known_mass = known_mass
        self.std_threshold = std_threshold
        self.model_options = model_options
        self.train_options = train_options
        self.device = device
        self.run_root = run_root
        self.verbose = verbose

    def fit(self, X: Any, y: Any, X_val: Any = None, y_val: Any = None) -> "SemiUnsupervisedClassifier":
        """Train on ``X`` with labels ``y`` (-1: unlabelled); ``X_val, y_val`` (labels of any class,
        -1 allowed) replace the carved-out validation part and map discovered clusters to classes."""
        from .api import fit  # torch and Pyro load on the first fit, not on import

        X, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        if (X_val is None) != (y_val is None):
            raise ValueError("give both X_val and y_val, or neither")
        if X_val is not None:
            X_val, y_val = validate_data(self, X_val, y_val, dtype=np.float32, reset=False)
        labels, codes, val_codes = _encode(y, y_val)
        known = np.unique(codes[codes >= 0])
        if len(known) == 0 and self.extra_slots is None:
            raise ValueError("y has no labelled point (every label is -1): to cluster without labels, "
                             "give extra_slots, the number of clusters")
        validation_only = 0 if val_codes is None else len(np.setdiff1d(val_codes[val_codes >= 0], known))
        extra_slots = self.extra_slots
        if extra_slots is None:
            extra_slots = 2 * validation_only if validation_only else 2 * len(known) * bool((codes < 0).any())
        x_all = X if X_val is None else np.concatenate([X, X_val])
        y_all = codes if val_codes is None else np.concatenate([codes, val_codes])
        likelihood = self.likelihood
        if likelihood == "auto":
            likelihood = "bernoulli" if x_all.min() >= 0 and x_all.max() <= 1 else "gaussian"
        spec = self._spec(extra_slots, likelihood, 0 if X_val is None else len(X_val))
        data = Dataset("arrays", x_all, y_all)
        self._drop_run_folder()
        run_dir, self._cleanup = _new_run_folder(self.run_root)
        try:
            run = fit(dataset=data, run_dir=run_dir, spec=spec, progress=self.verbose > 0, plot=False)
        except BaseException:
            if not any(run_dir.iterdir()):  # a failed fit removed what it wrote; its folder goes too
                run_dir.rmdir()
            raise
        self.run_, self.run_dir_ = run, run.run_dir
        self.n_slots_ = run.split.n_slots
        # Discovered clusters are numbered after every label fit saw, so an id is never a class of fit's.
        first_id = (int(np.max(labels)) + 1) if np.issubdtype(labels.dtype, np.number) and len(labels) else 0
        cluster_ids = np.array([first_id + j for j in range(run.split.extra_slots)], dtype=np.int64)
        if not np.issubdtype(labels.dtype, np.number):
            cluster_ids = np.array([f"cluster-{j}" for j in range(run.split.extra_slots)], dtype=object)
        known_labels = labels[np.asarray(run.split.known_classes, dtype=np.int64)]
        self.classes_ = np.concatenate([known_labels, cluster_ids]) if len(cluster_ids) else known_labels
        # Slot -> original label of the class its validation points mostly hold (None: no such point).
        self._slot_class = [None if code == UNMAPPED else _plain(labels[code]) for code in run.mapping]
        self.discovered_ = {_plain(cid): self._slot_class[run.split.n_known + j] for j, cid in enumerate(cluster_ids)}
        self.history_ = run.history()
        return self

    def _spec(self, extra_slots: int, likelihood: str, given_validation_points: int) -> RunSpec:
        """The run's spec from the constructor's options."""
        from .models import DecoderConfig, get_model_class
        from .run import run_spec

        model_options = dict(self.model_options or {})
        if issubclass(get_model_class(self.model).config_class, DecoderConfig):  # it has a p(x|...) to set
            model_options.setdefault("likelihood", likelihood)
        elif self.likelihood != "auto":
            raise ValueError(f"model {self.model!r} has no likelihood p(x|...) to set (likelihood={self.likelihood!r})")
        # One checkpoint, at the end: a fit is not resumed, and a fit of seconds would spend a third
        # of them writing last.pt every epoch.
        train_options = {"epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate,
                         "seed": self.seed, "device": self.device, "checkpoint_every": self.epochs,
                         **(self.train_options or {})}
        return run_spec(self.model, extra_slots=extra_slots, split_seed=None, std_threshold=self.std_threshold,
                        validation_fraction=0.0 if given_validation_points else self.validation_fraction,
                        prior=self.prior, known_mass=self.known_mass, model_options=model_options,
                        train_options=train_options, given_validation_points=given_validation_points)

    def predict_proba(self, X: Any) -> np.ndarray:
        """q(y|x) per point over the slots, in the order of ``classes_``."""
        inputs = self._inputs(X)
        return self.run_.predict_proba(inputs)

    def predict(self, X: Any) -> np.ndarray:
        """Per point, a labelled class or the id of a discovered cluster (see ``discovered_``)."""
        slots = self.predict_proba(X).argmax(-1)
        return self.classes_[slots]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Honest accuracy: each discovered cluster counts as the class its validation points mostly
        belong to (``discovered_``), and as wrong where it received none."""
        y = np.asarray(y)
        slots = self.predict_proba(X).argmax(-1)
        mapped = [self._slot_class[slot] for slot in slots]
        correct = np.array([c is not None and c == truth for c, truth in zip(mapped, y.tolist())], dtype=float)
        return float(np.average(correct, weights=sample_weight))

    def transform(self, X: Any) -> np.ndarray:
        """Each point's latent representation (E[z|x] under the guide; :meth:`pyro_sus.run.Run.embed`)."""
        inputs = self._inputs(X)
        return self.run_.embed(inputs)

    def score_samples(self, X: Any) -> np.ndarray:
        """How well each point fits the model, higher fitting better (its bound on log p(x) where it has one)."""
        inputs = self._inputs(X)
        return self.run_.fit_scores(inputs)

    def _inputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "run_")
        return validate_data(self, X, dtype=np.float32, reset=False)

    def _drop_run_folder(self) -> None:
        cleanup = getattr(self, "_cleanup", None)
        if cleanup is not None:
            cleanup()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_cleanup", None)  # a pickled copy does not own the temporary folder
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.target_tags.required = True
        tags.classifier_tags.multi_class = True
        tags.non_deterministic = False
        tags.transformer_tags.preserves_dtype = ["float32"]  # the networks compute in float32
        return tags


def _encode(y: np.ndarray, y_val: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The labels seen (sorted), and ``y`` / ``y_val`` as indices into them (-1: unlabelled)."""
    def labelled(values: np.ndarray) -> np.ndarray:
        if np.issubdtype(values.dtype, np.number):
            return values != UNLABELLED
        return np.ones(len(values), dtype=bool)  # string labels have no -1: every point is labelled

    parts = [y] if y_val is None else [y, y_val]
    if y_val is not None and np.issubdtype(y.dtype, np.number) != np.issubdtype(y_val.dtype, np.number):
        raise ValueError(f"y and y_val must hold labels of one kind, got {y.dtype} and {y_val.dtype}")
    labels = np.unique(np.concatenate([part[labelled(part)] for part in parts]))

    def codes(values: np.ndarray) -> np.ndarray:
        out = np.full(len(values), -1, dtype=np.int64)
        keep = labelled(values)
        out[keep] = np.searchsorted(labels, values[keep])
        return out

    return labels, codes(y), None if y_val is None else codes(y_val)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _new_run_folder(run_root: str | None) -> tuple[Path, Any]:
    """A new, empty run folder under ``run_root`` (kept), or a temporary one and what removes it."""
    if run_root is not None:
        Path(run_root).mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="fit-", dir=run_root)), None
    folder = Path(tempfile.mkdtemp(prefix="pyro_sus-fit-"))
    return folder, _Remover(folder)


class _Remover:
    """Removes a temporary run folder once: called on refit, or when the estimator is garbage-collected."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(folder), ignore_errors=True)

    def __call__(self) -> None:
        self._finalizer()
