"""Python entry points: ``fit``, ``evaluate``, ``predict`` and ``load``, all around a run folder.

A run folder holds ``run.json`` (every option, to rebuild data and model), ``split.npz``,
``preprocess.npz``, ``last.pt`` (training state, for ``--resume``), ``final.json`` + ``final.pt``
(model config and final weights), ``metrics.jsonl``, and after evaluation ``mapping.json``,
``results.json`` and ``confusion.png``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import shlex
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .data import (DATASETS, DataError, Dataset, Preprocessor, Split, load_dataset, resolve_data_dir,
                   train_defaults)
from .io import (LOCK_NAME, CheckpointError, RunBusyError, RunFileError, atomic_savez, atomic_write_json,
                 load_checkpoint, read_json, run_folder_holder, run_folder_lock)
from .evaluation import (Predictions, discovery_section, gcd_section, header, open_set_section,
                         predict_parts, slot_mapping, test_section, validation_section)
from .metrics import UNMAPPED
from .report import write_report
from .models import build_model, get_model_class
from .priors import class_prior
from .spec import DataSpec, PreprocessSpec, PriorSpec, RunRecord, RunSpec, SplitSpec, TrainConfig
from .train import ClosedFormFit, TrainingData, TrainingDiverged, TrainingLoop, resolve_device, seed_everything

__all__ = ["Run", "fit", "fit_seeds", "fit_baseline", "baseline_folder", "run_accuracy", "BASELINES",
           "seed_folder",
           "seed_folders", "evaluate", "predict", "load", "run_spec", "spec_options",
           "load_parts", "build_run_model", "training_data", "hardware_info", "data_fingerprint"]

#: What ``fit`` writes into a run folder before its first checkpoint (``last.pt``), with the
#: temp files of atomic writes: all a fresh run removes again when it fails before that point.
WRITTEN_BEFORE_FIRST_CHECKPOINT = ("run.json", "split.npz", "preprocess.npz", "metrics.jsonl", "last_good.pt",
                                   "best.pt")


#: What a fresh run writes before ``run.json``: a folder holding only these has no run in it yet.
UNSTARTED_LEFTOVERS = ("split.npz", "preprocess.npz")


def written_before_first_checkpoint(name: str) -> bool:
    """Whether a file of that name can be all a run left that stopped before its first checkpoint."""
    return name in WRITTEN_BEFORE_FIRST_CHECKPOINT or name == LOCK_NAME or _temp_file(name)


def data_fingerprint(dataset: Dataset) -> str:
    """SHA-256 of a data set's arrays (train and test features and labels, with dtypes and shapes)."""
    digest = hashlib.sha256()
    for name in ("x_train", "y_train", "x_test", "y_test"):
        array = getattr(dataset, name)
        if array is None:
            digest.update(f"{name}:none;".encode())
            continue
        array = np.ascontiguousarray(array)
        digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def hardware_info(device: torch.device | str = "cpu") -> dict[str, Any]:
    """What the numbers were measured on."""
    device = torch.device(device)
    info = {"device": str(device), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


@dataclass
class Run:
    """A trained model with everything needed to classify new data the way it was trained."""

    run_dir: Path
    #: What the run does and what happened to it: run.json, read as its two typed parts.
    spec: RunSpec
    record: RunRecord
    model: torch.nn.Module
    preprocessor: Preprocessor
    split: Split
    mapping: np.ndarray | None = None
    #: The run's scores (``results.json``, what ``evaluate`` wrote), or None before it is evaluated.
    results: dict[str, Any] | None = None

    def features(self, x: np.ndarray) -> torch.Tensor:
        """Raw inputs ``x`` as the model's input tensor, checked as training checks its data: real
        finite numbers, the run's layout (feature count, and image shape where ``x`` keeps one), and
        the range the likelihood needs (a Bernoulli model in [0, 1])."""
        x = np.asarray(x)
        shape = self.spec.data.image_shape
        if x.ndim > 2 and shape and tuple(x.shape[1:]) != tuple(shape):
            raise DataError(f"the inputs have shape {list(x.shape[1:])} per point; this run was trained on "
                            f"{list(shape)}")
        features = self.preprocessor.transform(x, "the inputs")
        _check_likelihood(self.model, features, "the inputs")
        return torch.tensor(features, device=self.model.device)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Each raw input's latent representation (scvi-tools' ``get_latent_representation``): E[z | x]
        under the guide for the deep generative models (q(z|x, y) averaged over q(y|x)), the latent
        code for models with an embedding, the principal components for k-means."""
        features = self.features(x)
        self.model.eval()
        embed = getattr(self.model, "latent_mean", None) or (self.model.embed if self.model.has_embedding else None)
        if embed is None:
            raise ValueError(f"model {self.spec.model!r} gives no latent representation (it has neither "
                             f"latent_mean nor an embedding)")
        with torch.no_grad():
            return torch.cat([embed(chunk) for chunk in features.split(2048)]).cpu().numpy()

    def history(self, as_frame: bool = False) -> Any:
        """The training history: one record per epoch (``metrics.jsonl``: loss, its terms, learning
        rate, validation numbers, seconds); ``as_frame=True`` gives a pandas DataFrame (needs pandas)."""
        path = self.run_dir / "metrics.jsonl"
        if not path.is_file():
            raise RunFileError(f"{path} does not exist: this run folder holds no training history")
        try:
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise RunFileError(f"{path} is not one JSON record per line ({err})") from None
        if not as_frame:
            return records
        try:
            import pandas
        except ImportError:
            raise ImportError("history(as_frame=True) needs pandas (pip install pandas); history() gives the "
                              "same records as a list of dicts") from None
        return pandas.DataFrame.from_records(records)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """q(y|x) over the model's slots for raw inputs ``x`` (same layout as the training data)."""
        features = self.features(x)
        self.model.eval()
        return self.model.predict_proba(features).cpu().numpy()

    def unlabelled_bound(self, x: np.ndarray, n_samples: int = 4) -> float | None:
        """Mean per point of the model's unlabelled bound on raw inputs ``x`` (nats, higher is better)."""
        features = self.features(x)
        self.model.eval()
        return self.model.unlabelled_bound(features, n_samples)

    def fit_scores(self, x: np.ndarray) -> np.ndarray:
        """How well each raw input fits the model, higher fitting better (see ``ZooModel.fit_scores``)."""
        features = self.features(x)
        self.model.eval()
        return self.model.fit_scores(features).cpu().numpy()

    def predict(self, x: np.ndarray, flag_unknown: float | None = None) -> dict[str, np.ndarray]:
        """Per point: slot, predicted class (known label or the majority label of the discovered
        cluster on the validation split; -1 when that cluster got no validation point), whether the
        slot is a discovered cluster, the slot probabilities, and ``fit_score`` (higher fits the
        model better). ``flag_unknown=Q`` adds ``fits_no_slot``: the fit score lies below the
        validation split's Q-quantile (``open_set.json``, written by ``evaluate``)."""
        probs = self.predict_proba(x)
        slots = probs.argmax(-1)
        mapping = self.mapping if self.mapping is not None else self._known_only_mapping()
        out = {"slot": slots, "predicted_class": mapping[slots], "discovered": slots >= self.split.n_known,
               "probabilities": probs, "fit_score": self.fit_scores(x)}
        if flag_unknown is not None:
            out["fits_no_slot"] = out["fit_score"] < self.fit_threshold(flag_unknown)
        return out

    def fit_threshold(self, quantile: float) -> float:
        """The validation split's ``quantile`` of the fit score, from ``open_set.json``."""
        if not 0 < quantile < 1:
            raise ValueError(f"the quantile for flagging unknown points must lie in (0, 1), got {quantile}")
        path = self.run_dir / "open_set.json"
        if not path.is_file():
            raise RunFileError(f"{path} does not exist: run `pyro-sus evaluate {self.run_dir}` first")
        saved = read_json(path, "validation fit-score quantiles written by `pyro-sus evaluate`")
        grid = saved.get("validation_quantiles") if isinstance(saved, dict) else None
        if not (isinstance(grid, list) and len(grid) >= 2 and all(isinstance(v, (int, float)) for v in grid)):
            raise RunFileError(f"{path} is not a list of validation quantiles; run `pyro-sus evaluate` again")
        return float(np.interp(quantile, np.linspace(0, 1, len(grid)), grid))

    def _known_only_mapping(self) -> np.ndarray:
        mapping = np.full(self.split.n_slots, UNMAPPED, dtype=np.int64)
        mapping[: self.split.n_known] = self.split.known_classes
        return mapping


def training_data(dataset: Dataset, split: Split, pre: Preprocessor) -> TrainingData:
    """The run's training tensors: labelled (slots), unlabelled and validation points, preprocessed."""
    def features(idx: np.ndarray) -> torch.Tensor:
        return torch.tensor(pre.transform(dataset.x_train[idx]) if len(idx) else np.zeros((0, pre.output_dim), np.float32))

    return TrainingData(features(split.labelled_idx),
                        torch.tensor(split.class_to_slot(dataset.y_train[split.labelled_idx])),
                        features(split.unlabelled_idx), features(split.validation_idx),
                        dataset.y_train[split.validation_idx], known_classes=split.known_classes)


def fit(
    model: str = "gmdgm",
    dataset: str | Dataset | None = None,
    run_dir: str | Path = "runs/latest",
    *,
    spec: RunSpec | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
    resume: bool = False,
    device: str | None = None,
    stop_after: int | None = None,
    snapshot: bool = False,
    progress: bool = True,
    evaluate_after: bool = True,
    plot: bool = True,
    **options: Any,
) -> Run | None:
    """Split the data, train ``model`` and (by default) evaluate it; everything lands in ``run_dir``.

    Parameters
    ----------
    model
        A registered model's name (``pyro-sus models``).
    dataset
        A name (default ``"digits"``), a path to a ``.npz`` or a :class:`Dataset`.
    run_dir
        The run folder: empty or absent for a new run, the run's own with ``resume=True``.
    spec
        A :class:`RunSpec` to train (its model replaces ``model``); ``options`` then override its parts
        (``model_options`` and ``train_options`` are merged into its own).
    **options
        The run's options, as :func:`run_spec` names them: the split (``hidden_classes``,
        ``unseen_classes``, ``labels_per_class`` or ``labelled_fraction``, ``n_extra``,
        ``validation_fraction``, ``split_seed``), the preprocessing (``std_threshold``), the class
        prior (``prior``, ``known_mass``, ``class_probs``), ``model_options`` and ``train_options``.
        Training options not given take the data set's own defaults where it has them
        (:data:`pyro_sus.data.TRAIN_DEFAULTS`: digits trains 200 epochs at 1e-3), else
        :class:`~pyro_sus.spec.TrainConfig`'s; run.json names those taken from the data set.
    resume
        Continue an interrupted run in ``run_dir`` with the options saved there (a run stopped
        before its first checkpoint starts over); ``dataset`` / ``data_dir`` then point at data that
        moved, which must hash to what the run trained on, and ``device`` moves the run to another
        device (a run trained on CUDA continues on the CPU).
    stop_after
        Train only up to epoch k now (a time-limited session) and return None: the state is in
        ``run_dir/last.pt``, to be resumed later. With ``snapshot=True`` the run stopped there is
        also handed back and scored as it stands (``final.pt``, ``results.json`` with ``snapshot:
        {epoch, of}``): a snapshot of the run on its full schedule, which a resume continues.
    plot
        False draws no figure (learning curves, evaluation's plots): a fit of seconds would spend as
        long again drawing them.

    A run folder has one writer at a time: a second process training or evaluating it is refused
    (:class:`pyro_sus.io.RunBusyError`). Every option and the data are checked before anything is
    written; a fresh run that fails before its first checkpoint removes what it wrote, so the
    corrected call can use the same ``run_dir``.

    Examples
    --------
    >>> run = fit("gmdgm", "digits", "runs/gmdgm", hidden_classes=[5, 6, 7, 8, 9], labelled_fraction=0.2,
    ...           train_options={"epochs": 50})
    >>> again = fit(dataset="digits", run_dir="runs/gmdgm-lr", spec=run.spec, train_options={"learning_rate": 3e-3})
    """
    run_dir = Path(run_dir)
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after must be an epoch number >= 1, got {stop_after!r}")
    if resume:
        if options or spec is not None:
            raise ValueError(f"resume continues {run_dir} with the options saved in its run.json; "
                             f"{sorted(options) or ['spec']} cannot change them (start a new run folder instead)")
        return _resume(run_dir, dataset, data_dir, stop_after, progress, evaluate_after, device, snapshot)
    spec, data_defaults = _fit_spec(model, dataset, spec, device, options)
    data, spec = _checked_data(spec, run_dir, dataset, data_dir, download)
    fresh = _FreshRun.plan(run_dir, spec, data, data_defaults)
    with fresh.started():
        return _train_run(run_dir, fresh.info, spec, fresh.split, fresh.pre, data, resume=False,
                          stop_after=stop_after, progress=progress, evaluate_after=evaluate_after,
                          snapshot=snapshot, plot=plot)


def _fit_spec(model: str, dataset: str | Dataset | None, spec: RunSpec | None, device: str | None,
              options: dict[str, Any]) -> tuple[RunSpec, dict[str, Any]]:
    """The spec a fit trains, from ``spec`` and/or the run's ``options``, and the training options it
    took from the data set's defaults (none when a spec is given: its training options are whole)."""
    train_options = dict(options.pop("train_options", None) or {})
    if device is not None:
        train_options["device"] = device
    if spec is not None:
        base = spec_options(spec)
        # An option given replaces the spec's, and with it what excludes it.
        if "prior" in options and "class_probs" not in options:
            base["class_probs"] = None
        for one, other in (("labels_per_class", "labelled_fraction"), ("labelled_fraction", "labels_per_class")):
            if options.get(one) is not None and other not in options:
                base[other] = None
        return run_spec(spec.model, **{**base, **options,
                                       "model_options": {**base["model_options"], **(options.get("model_options") or {})},
                                       "train_options": {**base["train_options"], **train_options}}), {}
    data_defaults = train_defaults(dataset, train_options)
    return run_spec(model, **options, train_options={**data_defaults, **train_options}), data_defaults


def _checked_data(spec: RunSpec, run_dir: Path, dataset: str | Dataset | None, data_dir: str | Path | None,
                  download: bool) -> tuple[Dataset, RunSpec]:
    """The data set of a fresh run, after the checks that need no data (device, model name, a free
    ``run_dir``), and the spec with the data's part filled in."""
    resolve_device(spec.train.device)  # --device cuda without a GPU fails before the disk is touched
    get_model_class(spec.model)
    _check_free(run_dir)  # early, before the data is read; checked again under the folder's lock
    dataset = "digits" if dataset is None else dataset
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir, download)
    folder = resolve_data_dir(data_dir)
    return data, dataclasses.replace(spec, data=DataSpec(
        # Stored resolved, so that evaluate and --resume find the data from any working directory.
        dataset.name if isinstance(dataset, Dataset) else _data_location(str(dataset)),
        str(folder.resolve()) if folder is not None else None, data_fingerprint(data), int(len(data.x_train)),
        tuple(data.image_shape) if data.image_shape else None))


@dataclass
class _FreshRun:
    """A new run, planned (split, preprocessing, run.json's content, all checked) before anything is written."""

    run_dir: Path
    info: dict[str, Any]
    split: Split
    pre: Preprocessor

    @classmethod
    def plan(cls, run_dir: Path, spec: RunSpec, data: Dataset,
             data_defaults: dict[str, Any] | None = None) -> "_FreshRun":
        split = spec.split.make(data.y_train)
        train_idx = np.concatenate([split.labelled_idx, split.unlabelled_idx])
        pre = Preprocessor.fit(data.x_train[train_idx], spec.preprocess.std_threshold)
        # Bad model options (sizes this machine cannot hold among them) fail here, before anything is
        # written; the run's own model is built from its seed by _run_loop, which checks the likelihood.
        build_run_model(spec, split, pre)
        info = {"pyro_sus_version": __version__, **spec.to_json()}
        if data_defaults:  # which training options came from the data set's defaults, not TrainConfig's
            info["data_set_defaults"] = dict(data_defaults)
        return cls(run_dir, info, split, pre)

    @contextlib.contextmanager
    def started(self) -> Iterator[None]:
        """Inside: the run folder exists, is held by this process and holds the run's first files. A
        failure before the first checkpoint removes what was written (and the folders made), so the
        corrected call can use the same folder."""
        run_dir = self.run_dir
        made = _make_run_folder(run_dir)
        try:
            with run_folder_lock(run_dir, "trained"):
                _check_free(run_dir, clear_unstarted=True)  # under the lock: no other process can start here now
                try:
                    atomic_savez(run_dir / "split.npz", **self.split.to_arrays())
                    atomic_savez(run_dir / "preprocess.npz", **self.pre.to_arrays())
                    atomic_write_json(run_dir / "run.json", self.info)  # last: a folder without it holds no run yet
                    yield
                except Exception as err:
                    if (run_dir / "last.pt").exists():  # a checkpoint exists: the run can be resumed, keep it
                        raise
                    # This process holds the lock and found the folder empty: what is there now, it wrote.
                    _remove_unstarted(run_dir)
                    if isinstance(err, TrainingDiverged):
                        kept = (f" Nothing was kept in {run_dir} (no epoch was checkpointed): the corrected command "
                                f"can use it again.")
                        raise TrainingDiverged(err.describe(saved_to=None) + kept, err.loss, err.epoch,
                                               err.step) from None
                    raise
        except BaseException:
            _remove_made(made)  # the folders this call created, where they are empty again
            raise


def _make_run_folder(run_dir: Path) -> list[Path]:
    """Create ``run_dir`` and its missing parents; the folders created, deepest first. An error names
    the folder and the reason (a read-only file system) before anything is written."""
    made = [p for p in [run_dir, *run_dir.parents] if not p.exists() and not p.is_symlink()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _remove_made(made)
        raise OSError(f"cannot create the run folder {run_dir} (--out): {err.strerror or err}; choose a folder "
                      f"you can write to") from None
    return made


def _remove_made(made: list[Path]) -> None:
    for folder in made:  # deepest first
        try:
            folder.rmdir()  # only an empty folder goes
        except OSError:
            break


def run_spec(model: str, *, hidden_classes: Sequence[int] = (), unseen_classes: Sequence[int] = (),
             labels_per_class: int | None = None, labelled_fraction: float | None = None, n_extra: int | None = None,
             validation_fraction: float = SplitSpec.validation_fraction, split_seed: int | None = None,
             std_threshold: float | None = PreprocessSpec.std_threshold, prior: str = PriorSpec.kind,
             known_mass: float = PriorSpec.known_mass, class_probs: Sequence[float] | None = None,
             model_options: dict[str, Any] | None = None, train_options: dict[str, Any] | None = None,
             data: DataSpec | None = None, given_validation_points: int = SplitSpec.given_validation_points) -> RunSpec:
    """What a run with :func:`fit`'s options does (the data aside unless given), as run.json records it;
    training options and the prior are checked here. ``given_validation_points``: see :class:`SplitSpec`."""
    return RunSpec(
        model, data or DataSpec(),
        # Handed over as given: the specs check every type, so 7.9 is no class id and "0.2" no fraction.
        SplitSpec(_sequence(hidden_classes, "hidden_classes"), _sequence(unseen_classes, "unseen_classes"),
                  labels_per_class, labelled_fraction, n_extra, validation_fraction, split_seed,
                  given_validation_points),
        PreprocessSpec(std_threshold),
        PriorSpec("given" if class_probs is not None else prior, known_mass,
                  _sequence(class_probs, "class_probs") if class_probs is not None else None),
        dict(model_options or {}), TrainConfig(**(train_options or {})))


def spec_options(spec: RunSpec) -> dict[str, Any]:
    """The keyword options of :func:`run_spec` that give ``spec`` back (its data aside)."""
    split, prior = spec.split, spec.prior
    return {"hidden_classes": split.hidden_classes, "unseen_classes": split.unseen_classes,
            "labels_per_class": split.labels_per_class, "labelled_fraction": split.labelled_fraction,
            "n_extra": split.n_extra, "validation_fraction": split.validation_fraction, "split_seed": split.seed,
            "given_validation_points": split.given_validation_points, "std_threshold": spec.preprocess.std_threshold,
            "prior": prior.kind, "known_mass": prior.known_mass, "class_probs": prior.probs,
            "model_options": dict(spec.model_options), "train_options": dataclasses.asdict(spec.train)}


def _sequence(values: Any, what: str) -> tuple:
    """``values`` (a list, tuple or array) as a tuple, unchecked; a string or a scalar is an error."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{what} must be a list, got {values!r}")
    return tuple(values.tolist() if isinstance(values, np.ndarray) else values)


def _data_location(name: str) -> str:
    """A data set's name as given, or its file's absolute path."""
    return name if name in DATASETS else str(Path(name).expanduser().resolve())


def _check_free(run_dir: Path, clear_unstarted: bool = False) -> None:
    """A fresh run needs an empty or absent folder; say what to do with any other.

    A folder that holds only what a run writes before its ``run.json`` (``split.npz``,
    ``preprocess.npz``, temp files: a run killed while it was being set up) holds no run and counts
    as empty; with ``clear_unstarted`` (under the folder's lock) those leftovers are removed."""
    if run_dir.is_symlink() and not run_dir.exists():
        raise FileExistsError(f"--out {run_dir} is a link to {os.readlink(run_dir)}, which does not exist: remove "
                              f"the link or choose another run folder")
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--out {run_dir} is a file, not a run folder: choose another path")
    if not run_dir.is_dir():
        return
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_NAME]
    if not entries:
        return
    if not (run_dir / "run.json").exists() and all(p.is_file() and p.name in UNSTARTED_LEFTOVERS or _temp_file(p.name)
                                                    for p in entries):
        if clear_unstarted:
            for path in entries:
                path.unlink(missing_ok=True)
        return
    holder = run_folder_holder(run_dir)
    if holder is not None:
        raise RunBusyError(f"{run_dir} is {holder}: wait for it to finish, or choose another run folder")
    if (run_dir / "run.json").is_file() and not (run_dir / "last.pt").is_file():
        raise FileExistsError(f"run folder {run_dir} is not empty: it holds a run stopped before its first "
                              f"checkpoint; start it over with its saved options (--resume), or choose another")
    raise FileExistsError(f"run folder {run_dir} is not empty: choose another, or resume it (--resume)")


def _temp_file(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _remove_unstarted(run_dir: Path) -> None:
    """Remove what a fresh run wrote before its first checkpoint (called under the folder's lock, on a
    folder this process found empty, so every such file is this process's)."""
    for path in run_dir.iterdir():
        if path.is_file() and written_before_first_checkpoint(path.name):
            path.unlink()


def _check_likelihood(model: torch.nn.Module, features: np.ndarray, what: str = "the training inputs") -> None:
    if model.likelihood_family == "bernoulli" and len(features) and (
            features.min() < 0 or features.max() > 1):
        fix = ("rescale the data or use the Gaussian likelihood (--likelihood gaussian)" if "training" in what
               else "scale them as the training data was (this run's Bernoulli model takes values in [0, 1])")
        raise DataError(f"the Bernoulli likelihood needs inputs in [0, 1], but {what} span "
                        f"[{features.min():.3g}, {features.max():.3g}]; {fix}")


def build_run_model(spec: RunSpec, split: Split, pre: Preprocessor, where: str = "model options") -> torch.nn.Module:
    """The run's model (:func:`pyro_sus.models.build_model`): sizes and class prior from the split,
    then the user's options; ``where`` names the options in an error."""
    cls = get_model_class(spec.model)
    options: dict[str, Any] = {"x_dim": pre.output_dim, "n_slots": split.n_slots}
    if cls.has_class_prior:
        options["class_prior"] = class_prior(split.n_known, split.n_extra, spec.prior.kind, spec.prior.known_mass,
                                             spec.prior.probs).tolist()
    elif spec.prior.kind == "given":
        raise ValueError(f"model {spec.model!r} has no class prior p(y) to set (class_probs)")
    return build_model(spec.model, where=where, **{**options, **spec.model_options})


def load_parts(run_dir: str | Path) -> tuple[dict[str, Any], RunSpec, Split, Preprocessor]:
    """run.json (as written, and as a :class:`RunSpec`), split.npz and preprocess.npz of a run folder,
    each checked, naming the file that is wrong."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"{run_dir} is a file, not a run folder")
    for name in ("run.json", "split.npz", "preprocess.npz"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} is not a pyro_sus run folder: {name} is missing")
    path = run_dir / "run.json"
    info = read_json(path, "run's options, written by `pyro-sus train`")
    try:
        spec = RunSpec.from_json(info)
        get_model_class(spec.model)
    except ValueError as err:
        raise RunFileError(f"{path} is not a run specification: {err}; restore the file or train again") from None
    arrays = {}
    for name in ("split.npz", "preprocess.npz"):
        try:
            with np.load(run_dir / name, allow_pickle=False) as loaded:
                arrays[name] = {key: loaded[key] for key in loaded.files}
        except Exception as err:  # truncated, not a zip, pickled objects
            raise RunFileError(f"{run_dir / name} is corrupt or not written by pyro_sus ({type(err).__name__}); "
                               f"restore it or train again") from None
    try:
        split = Split.from_arrays(arrays["split.npz"])
        pre = Preprocessor.from_arrays(arrays["preprocess.npz"])
    except (KeyError, TypeError, ValueError) as err:
        raise RunFileError(f"{run_dir}: split.npz or preprocess.npz lacks {err}; restore them or train again") from None
    # run.json and split.npz were written together: an edit of one alone would be read half-applied.
    saved = {"hidden_classes": split.hidden_classes, "unseen_classes": split.unseen_classes, "seed": split.seed,
             **({"n_extra": split.n_extra} if spec.split.n_extra is not None else {})}
    for name, value in saved.items():
        if tuple(np.atleast_1d(getattr(spec.split, name))) != tuple(np.atleast_1d(value)):
            raise RunFileError(f"{path} says split.{name} = {getattr(spec.split, name)!r}, but the run's split.npz "
                               f"holds {value!r}: run.json was edited; restore it (a run's split cannot change)")
    return info, spec, split, pre


def _run_data(spec: RunSpec, run_dir: Path, split: Split, dataset: str | Dataset | None = None,
              data_dir: str | Path | None = None) -> Dataset:
    """The data a run trained on: the saved location, or ``dataset`` / ``data_dir`` where it moved,
    checked against the content hash in run.json."""
    if isinstance(dataset, Dataset):
        data, where = dataset, f"the data set {dataset.name!r} given"
    else:
        name = _data_location(str(dataset)) if dataset is not None else spec.data.dataset
        folder = data_dir if data_dir is not None else spec.data.data_dir
        where = f"data set {name!r}" + (f" (data folder {folder})" if folder else "")
        saved = f"data set {spec.data.dataset!r}" + (
            f" (data folder {spec.data.data_dir})" if spec.data.data_dir else "")
        try:
            data = load_dataset(name, folder)
        except (FileNotFoundError, DataError) as err:
            if dataset is None and data_dir is None:
                hint = f"{run_dir} was trained on {saved}; if the data moved, point at it with --dataset / --data-dir"
            else:
                hint = f"given with --dataset / --data-dir; {run_dir} was trained on {saved}"
            raise type(err)(f"{err} [{hint}]") from None
    if data_fingerprint(data) != spec.data.sha256:
        raise DataError(f"{where} is not the data the run in {run_dir} was trained on: its content hash differs "
                        f"({len(data.x_train)} training points now, {spec.data.n_train} then). Scoring or "
                        f"training on it would use the wrong points. Restore the original file, or point at it "
                        f"with --dataset / --data-dir; for new data, train a new run.")
    return data


def _resume(run_dir: Path, dataset: str | Dataset | None, data_dir: str | Path | None, stop_after: int | None,
            progress: bool, evaluate_after: bool, device: str | None = None, snapshot: bool = False) -> Run | None:
    _check_set_up(run_dir)
    with run_folder_lock(_existing_folder(run_dir), "trained"):
        member = _Resumed.read(run_dir, dataset, data_dir, device, progress)
        return _train_run(run_dir, member.info, member.spec, member.split, member.pre, member.data,
                          resume=member.checkpointed, stop_after=stop_after, progress=progress,
                          evaluate_after=evaluate_after, snapshot=snapshot)


def _check_set_up(run_dir: Path) -> None:
    if run_dir.is_dir() and not (run_dir / "run.json").exists() and (run_dir / "split.npz").exists():
        raise FileNotFoundError(f"{run_dir} holds no run.json: its run was stopped while being set up, before it "
                                f"started; run the original train command again (without --resume), which starts "
                                f"it in the same folder")


@dataclass
class _Resumed:
    """What a run to continue holds (read under its folder's lock), with the device and data to continue on."""

    run_dir: Path
    info: dict[str, Any]
    spec: RunSpec
    split: Split
    pre: Preprocessor
    data: Dataset
    checkpointed: bool

    @classmethod
    def read(cls, run_dir: Path, dataset: str | Dataset | None, data_dir: str | Path | None, device: str | None,
             progress: bool, loaded: dict[str, Dataset] | None = None) -> "_Resumed":
        """``loaded`` keeps data sets already read (by content hash), for the runs of a stack."""
        info, spec, split, pre = load_parts(run_dir)
        if device is not None:  # a run may move between machines: the device is no part of what it computes
            resolve_device(device)
            spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, device=device))
            info["train"]["device"] = device
        else:
            try:
                resolve_device(spec.train.device)
            except ValueError:
                raise ValueError(f"{run_dir} was trained on device {spec.train.device!r}, which this machine does not "
                                 f"have; continue it here with `pyro-sus train --resume --out "
                                 f"{shlex.quote(str(run_dir))} --device cpu` (fit(..., resume=True, device='cpu'))"
                                 ) from None
        if loaded is not None and spec.data.sha256 in loaded and dataset is None and data_dir is None:
            data = _run_data(spec, run_dir, split, loaded[spec.data.sha256])
        else:
            data = _run_data(spec, run_dir, split, dataset, data_dir)
        if loaded is not None and spec.data.sha256:
            loaded[spec.data.sha256] = data
        if not isinstance(dataset, Dataset) and (dataset is not None or data_dir is not None):
            # The hash matched: remember where the data is now, for evaluate and the next resume.
            moved = {"dataset": _data_location(str(dataset))} if dataset is not None else {}
            if data_dir is not None:
                moved["data_dir"] = str(Path(data_dir).expanduser().resolve())
            spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, **moved))
            info.update(moved)
        checkpointed = (run_dir / "last.pt").is_file()
        if not checkpointed and progress:
            print(f"{run_dir} has no checkpoint yet (stopped in its first epochs): starting it over with its saved "
                  f"options")
        return cls(run_dir, info, spec, split, pre, data, checkpointed)


def seed_folder(root: str | Path, seed: int) -> Path:
    """The run folder of seed ``seed`` among runs trained together in ``root`` (``root/seed3``)."""
    return Path(root) / f"seed{seed}"


def seed_folders(root: str | Path) -> list[Path]:
    """The run folders of the seeds trained together in ``root`` (``root/seedN`` holding a run.json),
    in seed order."""
    root = Path(root)
    found = [p for p in root.glob("seed*") if p.name[4:].isdigit() and (p / "run.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[4:]))


def fit_seeds(
    model: str = "gmdgm",
    dataset: str | Dataset | None = None,
    run_dir: str | Path = "runs/latest",
    *,
    seeds: Sequence[int] = (0, 1, 2, 3),
    stacked: bool = True,
    folders: Sequence[str | Path] | None = None,
    data_dir: str | Path | None = None,
    download: bool = False,
    resume: bool = False,
    device: str | None = None,
    stop_after: int | None = None,
    snapshot: bool = False,
    progress: bool = True,
    evaluate_after: bool = True,
    **options: Any,
) -> list[Run | None]:
    """Train one run per seed, each in its own run folder ``run_dir/seed<N>`` (:func:`seed_folder`),
    as one stacked model where the model stacks (:mod:`pyro_sus.stacking`), else one after another.

    Every run is an ordinary run folder (``evaluate``, ``report``, ``predict`` and ``load`` take it as
    it is), with its own split (unless ``split_seed`` is given), data order, best-validation
    selection and early stopping; a stack shares the noise of its draws and its wall time
    (``run.json``: ``stacked_with_seeds``). ``options`` are :func:`fit`'s (``hidden_classes``,
    ``model_options``, ``train_options`` without ``seed``, ...). ``stacked=False`` trains the seeds
    one after another. ``stop_after`` and ``snapshot`` are :func:`fit`'s. ``folders`` puts the runs
    elsewhere (one folder per seed; ``run_dir`` is then unused). ``resume=True`` continues every run in
    ``run_dir`` (:func:`seed_folders`), or in ``folders``, together. A run whose step diverges leaves
    the stack; the others finish, and its TrainingDiverged is raised at the end.

    Examples
    --------
    >>> runs = fit_seeds("gmdgm", "digits", "runs/gmdgm", seeds=[0, 1, 2, 3],
    ...                  hidden_classes=[5, 6, 7, 8], labelled_fraction=0.2,
    ...                  model_options={"hidden_dims": [64, 64]}, train_options={"epochs": 50})
    >>> [run.run_dir.name for run in runs]
    ['seed0', 'seed1', 'seed2', 'seed3']
    """
    root = Path(run_dir)
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after must be an epoch number >= 1, got {stop_after!r}")
    if resume:
        if options:
            raise ValueError(f"resume continues the runs in {root} with the options saved in their run.json; "
                             f"{sorted(options)} cannot change them")
        return _resume_seeds(root, stacked, dataset, data_dir, stop_after, progress, evaluate_after, device,
                             None if folders is None else [Path(f) for f in folders], snapshot)
    seeds = _seed_list(seeds)
    train_options = dict(options.pop("train_options", None) or {})
    if "seed" in train_options:
        raise ValueError("give the runs' seeds as seeds=[...], not as train_options['seed']")
    if device is not None:
        train_options["device"] = device
    data_defaults = train_defaults(dataset, train_options)
    train_options = {**data_defaults, **train_options}
    specs = [run_spec(model, **options, train_options={**train_options, "seed": seed}) for seed in seeds]
    if folders is not None and len(folders) != len(seeds):
        raise ValueError(f"give one folder per seed: {len(folders)} folders for {len(seeds)} seeds")
    folders = [seed_folder(root, seed) for seed in seeds] if folders is None else [Path(f) for f in folders]
    if len(set(folders)) != len(folders):
        raise ValueError(f"the runs need folders of their own, got {[str(f) for f in folders]}")
    for folder in folders[1:]:
        _check_free(folder)
    data, first = _checked_data(specs[0], folders[0], dataset, data_dir, download)
    specs = [dataclasses.replace(spec, data=first.data) for spec in specs]
    fresh = [_FreshRun.plan(folder, spec, data, data_defaults) for folder, spec in zip(folders, specs)]
    with contextlib.ExitStack() as started:
        for run in fresh:
            started.enter_context(run.started())
        members = [_Resumed(run.run_dir, run.info, spec, run.split, run.pre, data, False)
                   for run, spec in zip(fresh, specs)]
        return _train_members(members, stacked, stop_after, progress, evaluate_after, snapshot)


def _seed_list(seeds: Sequence[int]) -> list[int]:
    values = list(seeds) if not isinstance(seeds, (str, bytes)) and hasattr(seeds, "__iter__") else None
    if not values or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in values):
        raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    values = [int(s) for s in values]
    if len(set(values)) != len(values):
        raise ValueError(f"seeds must differ (each gets its own run folder), got {values}")
    return values


def _resume_seeds(root: Path, stacked: bool, dataset: str | Dataset | None, data_dir: str | Path | None,
                  stop_after: int | None, progress: bool, evaluate_after: bool, device: str | None,
                  folders: list[Path] | None = None, snapshot: bool = False) -> list[Run | None]:
    folders = seed_folders(_existing_folder(root)) if folders is None else [_existing_folder(f) for f in folders]
    if not folders:
        raise FileNotFoundError(f"{root} holds no runs of seeds trained together (seed<N>/run.json); to continue one "
                                f"run, give its own folder")
    loaded: dict[str, Dataset] = {}
    with contextlib.ExitStack() as held:
        for folder in folders:
            held.enter_context(run_folder_lock(folder, "trained"))
        members = [_Resumed.read(folder, dataset, data_dir, device, progress, loaded) for folder in folders]
        return _train_members(members, stacked, stop_after, progress, evaluate_after, snapshot)


def _train_members(members: list[_Resumed], stacked: bool, stop_after: int | None, progress: bool,
                   evaluate_after: bool, snapshot: bool = False) -> list[Run | None]:
    """Train (or continue) the runs of several seeds, stacked where they stack, then finish each;
    raises the first TrainingDiverged once the other runs are finished."""
    from .callbacks import ProgressBar
    from .stacked_training import StackedTrainingLoop, stacking_difference

    loops = [_run_loop(m.run_dir, m.spec, m.split, m.pre, m.data, stop_after, progress and not stacked)
             for m in members]
    started = time.perf_counter()
    for member, loop in zip(members, loops):
        if member.checkpointed:
            loop.resume()
    reason = stacking_difference(loops) if stacked and len(loops) > 1 else None
    outcomes: list[list[dict[str, Any]] | TrainingDiverged]
    if stacked and reason is None:
        outcomes = StackedTrainingLoop(loops, progress=progress).run()
    else:
        if stacked and reason is not None and progress:
            print(f"the runs train one after another: {reason}")
        outcomes = []
        for loop in loops:
            for callback in loop.callbacks:
                if isinstance(callback, ProgressBar):
                    callback.enabled = progress
            try:
                outcomes.append(loop.run())
            except TrainingDiverged as err:
                outcomes.append(err)
    seeds = [m.spec.train.seed for m in members]
    together = seeds if stacked and reason is None else None
    runs: list[Run | None] = []
    failed: list[tuple[_Resumed, TrainingDiverged]] = []
    for member, loop, outcome in zip(members, loops, outcomes):
        if isinstance(outcome, TrainingDiverged):
            failed.append((member, outcome))
            runs.append(None)
            continue
        runs.append(_finish_run(member.run_dir, member.info, member.spec, member.split, member.pre, member.data,
                                loop.model, outcome, started, evaluate_after, together, snapshot))
    if failed:
        member, error = failed[0]
        others = [str(m.run_dir) for m, _ in failed[1:]]
        raise TrainingDiverged(f"{member.run_dir}: {error}" + (f" (so did {', '.join(others)})" if others else "")
                               + "; the other seeds' runs finished", error.loss, error.epoch, error.step)
    return runs


def _existing_folder(run_dir: Path) -> Path:
    """``run_dir`` when it is a folder; else the one-line error that says what it is."""
    if run_dir.is_dir():
        return run_dir
    if run_dir.exists():
        raise NotADirectoryError(f"{run_dir} is a file, not a run folder")
    raise FileNotFoundError(f"{run_dir} does not exist: no run folder there")


def _run_record(spec: RunSpec) -> dict[str, Any]:
    """What a run computes, as ``last.pt`` keeps it to compare on resume: the spec without where the data
    lies (it may move; its content hash stays) and without the device (a run may change machines)."""
    record = spec.to_json()
    for key in ("dataset", "data_dir"):
        record.pop(key, None)
    record["train"] = {k: v for k, v in record["train"].items() if k != "device"}
    return record


def _run_loop(run_dir: Path, spec: RunSpec, split: Split, pre: Preprocessor, data: Dataset, stop_after: int | None,
              progress: bool) -> TrainingLoop:
    """The run's training loop, its model initialised from the run's seed (not yet resumed)."""
    config = spec.train
    seed_everything(config.seed)  # the seed fixes the initial weights too
    try:
        model = build_run_model(spec, split, pre, where=f"{run_dir / 'run.json'} (model_options)")
    except ValueError as err:  # the options were checked when the run started: run.json was edited since
        raise RunFileError(str(err)) from None
    tensors = training_data(data, split, pre)
    _check_likelihood(model, torch.cat([tensors.x_labelled, tensors.x_unlabelled]).numpy())
    loop = TrainingLoop if model.trained_by_gradient else ClosedFormFit
    return loop(model, tensors, config, run_dir, progress=progress, stop_after=stop_after, run_record=_run_record(spec))


def _train_run(run_dir: Path, info: dict[str, Any], spec: RunSpec, split: Split, pre: Preprocessor, data: Dataset,
               resume: bool, stop_after: int | None, progress: bool, evaluate_after: bool,
               snapshot: bool = False, plot: bool = True) -> Run | None:
    """Train (or resume) the run; ``info`` is run.json as written, gaining the run's records."""
    loop = _run_loop(run_dir, spec, split, pre, data, stop_after, progress)
    started = time.perf_counter()
    if resume:
        loop.resume()
    history = loop.run()
    return _finish_run(run_dir, info, spec, split, pre, data, loop.model, history, started, evaluate_after,
                       snapshot=snapshot, plot=plot)


def _finish_run(run_dir: Path, info: dict[str, Any], spec: RunSpec, split: Split, pre: Preprocessor, data: Dataset,
                model: torch.nn.Module, history: list[dict[str, Any]], started: float, evaluate_after: bool,
                stacked_with: Sequence[int] | None = None, snapshot: bool = False, plot: bool = True) -> Run | None:
    """After training: run.json's records, the learning curves, and for a finished run its model
    (``final.pt``) and, with ``evaluate_after``, its evaluation. ``stacked_with``: the seeds of the
    runs it trained beside as one stack (its wall time is then the stack's). ``snapshot``: a run
    stopped by ``stop_after`` is handed back and scored as it stands, and says so."""
    config = spec.train
    stopped = history[-1]["epoch"] < config.epochs and not (history[-1].get("stopped_early")
                                                             or history[-1].get("fitted_in_closed_form"))
    info["train_wall_seconds"] = sum(r["seconds"] for r in history)
    info["last_session_seconds"] = time.perf_counter() - started
    info["hardware"] = hardware_info(resolve_device(config.device))
    if stacked_with is not None:
        info["stacked_with_seeds"] = list(stacked_with)
    else:
        info.pop("stacked_with_seeds", None)
    if "selected_epoch" in history[-1]:  # select="best-validation": which epoch's model the run hands back
        info["selected_epoch"] = history[-1]["selected_epoch"]
    if history[-1].get("selection_note"):
        info["selection_note"] = history[-1]["selection_note"]
    if stopped and snapshot:
        info["snapshot"] = {"epoch": int(history[-1]["epoch"]), "of": config.epochs}
    else:
        info.pop("snapshot", None)
    atomic_write_json(run_dir / "run.json", info)
    if plot:
        from .plots import plot_learning_curves

        plot_learning_curves(history, run_dir / "learning_curves.png", title=f"{spec.model} on {spec.data.dataset}")
    if stopped and not snapshot:
        return None  # stopped on purpose (stop_after): last.pt holds the state
    if stopped and config.select == "best-validation" and (run_dir / "best.pt").is_file():
        # The loop hands back the selected epoch's weights only at its end; a snapshot takes them here.
        # (Its own state, last.pt, is saved already: the model is not trained further in this session.)
        model.load_state_dict(load_checkpoint(run_dir / "best.pt", map_location=resolve_device(config.device)))
    model.save(run_dir, "final")
    run = Run(run_dir, spec, RunRecord.from_json(info), model, pre, split)
    if evaluate_after:
        run.results = evaluate(run, dataset=data, plot=plot)
    return run


#: Baselines a run can be set against on its own split (``fit_baseline``, ``train --baseline``).
BASELINES = ("kmeans",)


def baseline_folder(run_dir: str | Path, baseline: str) -> Path:
    """Where a run keeps a baseline fitted on its split: ``RUN/baselines/NAME`` (an ordinary run folder)."""
    return Path(run_dir) / "baselines" / baseline


def fit_baseline(run: Run | str | Path, baseline: str = "kmeans", *, dataset: str | Dataset | None = None,
                 data_dir: str | Path | None = None, progress: bool = False) -> Run:
    """Fit ``baseline`` (a registered model, default the k-means baseline) on the run's own split,
    preprocessing and seed, into :func:`baseline_folder` (an ordinary run folder, evaluated), so its
    scores sit beside the run's on exactly the same points. A baseline fitted before is loaded.

    Examples
    --------
    >>> run = fit("gmdgm", "digits", "runs/gm", hidden_classes=[5, 6, 7, 8], labelled_fraction=0.2)
    >>> kmeans = fit_baseline(run)
    >>> margin = run_accuracy(run) - run_accuracy(kmeans)
    """
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {baseline!r}")
    run = run if isinstance(run, Run) else load(run)
    folder = baseline_folder(run.run_dir, baseline)
    if (folder / "results.json").is_file():
        return load(folder)
    # The run's split, preprocessing and seed; its class prior p(y) is the model's, which k-means has not.
    spec = dataclasses.replace(run.spec, model=baseline, model_options={}, prior=PriorSpec())
    data = _run_data(run.spec, run.run_dir, run.split, dataset, data_dir)
    fresh = _FreshRun.plan(folder, spec, data)
    same = fresh.split.to_arrays()
    if any(not np.array_equal(value, run.split.to_arrays()[key]) for key, value in same.items()):
        raise RunFileError(f"the split made again from {run.run_dir / 'run.json'} differs from its split.npz; "
                           f"the baseline would not see the run's points")
    with fresh.started():
        return _train_run(folder, fresh.info, spec, fresh.split, fresh.pre, data, resume=False, stop_after=None,
                          progress=progress, evaluate_after=True)


def run_accuracy(run: Run | str | Path, part: str = "test") -> float | None:
    """The honest accuracy of an evaluated run on ``part`` (test, else validation), from its results.json."""
    if isinstance(run, Run) and run.results is not None:
        results = run.results
    else:
        run_dir = run.run_dir if isinstance(run, Run) else Path(run)
        results = read_json(run_dir / "results.json", "scores written by `pyro-sus evaluate`")
    scored = results.get(part) or results.get("validation") or {}
    return scored.get("accuracy")


def _read_mapping(path: Path, split: Split) -> np.ndarray:
    """mapping.json as slot -> class, checked against the run's split (it may have been edited by hand)."""
    saved = read_json(path, "slot-to-class mapping written by `pyro-sus evaluate`")
    mapping = saved.get("slot_to_class") if isinstance(saved, dict) else None
    # An extra slot maps to a class the run saw (a known or a hidden one), or to none.
    allowed = set(split.known_classes) | set(split.hidden_classes) | {UNMAPPED}
    valid = (isinstance(mapping, list) and len(mapping) == split.n_slots
             and all(isinstance(c, int) and not isinstance(c, bool) and c in allowed for c in mapping)
             and tuple(mapping[: split.n_known]) == tuple(split.known_classes))
    if not valid:
        raise RunFileError(f"{path} is not this run's mapping: 'slot_to_class' must list {split.n_slots} class ids "
                           f"of the run's classes {sorted(allowed - {UNMAPPED})} (-1: unmapped), the first "
                           f"{split.n_known} being the known classes {list(split.known_classes)}; write it again "
                           f"with `pyro-sus evaluate {shlex.quote(str(path.parent))}`")
    return np.array(mapping, dtype=np.int64)


def load(run_dir: str | Path, device: str = "cpu", *, read_mapping: bool = True) -> Run:
    """Rebuild a finished run (weights from ``final.pt``) with its validation mapping if evaluated
    (``read_mapping=False`` leaves it out: ``evaluate`` writes it anew)."""
    run_dir = Path(run_dir)
    info, spec, split, pre = load_parts(run_dir)
    if not (run_dir / "final.pt").is_file():
        holder = run_folder_holder(run_dir)
        if holder is not None:
            raise RunBusyError(f"{run_dir} has no final.pt yet: it is {holder}; wait for it to finish")
        raise CheckpointError(f"{run_dir} has no final.pt: training did not finish; continue it with "
                              f"`pyro-sus train --resume --out {shlex.quote(str(run_dir))}`")
    model = get_model_class(spec.model).load(run_dir, "final")
    model.to(resolve_device(device)).eval()
    mapping = (_read_mapping(run_dir / "mapping.json", split)
               if read_mapping and (run_dir / "mapping.json").is_file() else None)
    results = read_json(run_dir / "results.json", "scores written by `pyro-sus evaluate`") if (
        read_mapping and (run_dir / "results.json").is_file()) else None
    return Run(run_dir, spec, RunRecord.from_json(info), model, pre, split, mapping,
               results if isinstance(results, dict) else None)


def evaluate(run: Run | str | Path, dataset: str | Dataset | None = None, plot: bool = True, *,
             data_dir: str | Path | None = None) -> dict[str, Any]:
    """Score a run (:mod:`pyro_sus.metrics`' protocol); writes ``mapping.json``, ``results.json``, ``confusion.png``.

    Extra slots are mapped on the validation split only; the test set is scored once with that
    mapping ("test"), and the paper-protocol number (mapping on the test set itself) sits beside it.
    The data is the run's own (``dataset`` / ``data_dir`` point at it where it moved); data whose
    content hash differs from the one in run.json is refused.
    """
    if not isinstance(run, Run):
        run_dir = _existing_folder(Path(run))
        with run_folder_lock(run_dir, "evaluated"):
            return evaluate(load(run_dir, read_mapping=False), dataset, plot, data_dir=data_dir)
    with run_folder_lock(run.run_dir, "evaluated"):
        return _evaluate(run, dataset, plot, data_dir)


def _evaluate(run: Run, dataset: str | Dataset | None, plot: bool, data_dir: str | Path | None) -> dict[str, Any]:
    data = _run_data(run.spec, run.run_dir, run.split, dataset, data_dir)
    parts = predict_parts(run, data)
    mapping = slot_mapping(parts)
    run.mapping = mapping
    results = header(run.spec, run.split, run.record)
    sections = {"validation": validation_section(parts, mapping), "gcd": gcd_section(parts),
                "test": test_section(parts, mapping)}
    results.update({name: record for name, record in sections.items() if record is not None})
    open_set = open_set_section(parts, mapping, run.model.fit_score_kind)
    discovery = discovery_section(parts, mapping, run.model.latent_prior_sd())
    if open_set is not None:
        results["open_set"] = open_set[0]
    if discovery is not None:
        results["discovery"] = discovery[0]
    _write_evaluation(run, results, parts, mapping, open_set, discovery, plot)
    run.results = results
    return results


def _write_evaluation(run: Run, results: dict[str, Any], parts: Predictions, mapping: np.ndarray,
                      open_set: tuple[dict[str, Any], dict[str, Any]] | None,
                      discovery: tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]] | None,
                      plot: bool) -> None:
    """Every file an evaluation writes: mapping.json, open_set.json, the report, results.json and,
    with ``plot``, slot_counts.png, discovered.png and confusion.png."""
    folder, split, spec = run.run_dir, run.split, run.spec
    atomic_write_json(folder / "mapping.json", {
        "slot_to_class": mapping.tolist(), "n_known": split.n_known,
        "note": "slots < n_known are the known classes; extra slots take the majority class of the validation "
                "points they receive (-1: none received)"})
    if open_set is not None:
        atomic_write_json(folder / "open_set.json", open_set[1])
    if discovery is not None:
        record, table, recall = discovery
        write_report(folder, table, record, mapping, recall, results["open_set"])
        if plot:
            from .plots import plot_discovered_slots, plot_slot_counts

            on_test = parts.test_probs is not None
            slots, labels = (parts.test_slots, parts.test_labels) if on_test else (parts.val_slots, parts.val_labels)
            plot_slot_counts(slots, labels, table, mapping, split.known_classes, split.hidden_classes,
                             folder / "slot_counts.png",
                             title=f"{spec.model}: {'test' if on_test else 'validation'} counts by slot",
                             unseen_slots=parts.unseen_slots if on_test else None,
                             unseen_labels=parts.unseen_labels if on_test else None)
            if on_test and spec.data.image_shape:
                images = parts.test_x.reshape(len(parts.test_labels), -1)
                plot_discovered_slots(images, parts.test_probs, table, spec.data.image_shape,
                                      folder / "discovered.png")
    atomic_write_json(folder / "results.json", results)
    scored = results.get("test") or results.get("validation")
    if plot and scored is not None:
        from .plots import plot_confusion

        title = f"{spec.model} on {spec.data.dataset} ({'test' if 'test' in results else 'validation'})"
        unseen_rows = (results.get("open_set") or {}).get("predicted_as") if "test" in results else None
        plot_confusion(scored, folder / "confusion.png", title=title, unseen=unseen_rows)


def predict(run: Run | str | Path, x: np.ndarray, flag_unknown: float | None = None) -> dict[str, np.ndarray]:
    """Classify new raw inputs with a trained run (see :meth:`Run.predict`)."""
    run = run if isinstance(run, Run) else load(run)
    return run.predict(x, flag_unknown=flag_unknown)
