"""A run folder read back and used: :func:`load` gives a :class:`Run` (model, preprocessing, split,
spec and record), :func:`evaluate` scores it and writes its results, :func:`predict` classifies new
data the way it was trained; :func:`run_spec` is what a run with :func:`pyro_sus.fit`'s options
does, and :func:`build_run_model` the model it builds.

A run folder holds ``run.json`` (every option, to rebuild data and model), ``split.npz``,
``preprocess.npz``, ``last.pt`` (training state, for ``--resume``), ``final.json`` + ``final.pt``
(model config and final weights), ``metrics.jsonl``, and after evaluation ``mapping.json``,
``results.json``, ``report.md`` and the figures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import DATASETS, DataError, Dataset, load_dataset
from .evaluation import (Predictions, discovery_section, gcd_section, header, open_set_section,
                         predict_parts, slot_mapping, test_section, validation_section)
from .io import CheckpointError, RunBusyError, RunFileError, atomic_write_json, read_json, run_folder_holder, \
    run_folder_lock
from .metrics import UNMAPPED
from .models import build_model, get_model_class
from .preprocess import Preprocessor, PreprocessSpec
from .priors import class_prior
from .report import write_report
from .spec import DataSpec, PriorSpec, RunRecord, RunSpec, TrainConfig
from .split import Split, SplitSpec
from .train import TrainingData, resolve_device

__all__ = ["Run", "load", "evaluate", "predict", "load_parts", "run_spec", "spec_options", "build_run_model",
           "training_data", "run_accuracy", "seed_folder", "seed_folders", "hardware_info", "data_fingerprint",
           "data_location", "existing_folder", "run_data", "check_likelihood"]


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
        check_likelihood(self.model, features, "the inputs")
        return torch.tensor(features, device=self.model.device)

    def embed(self, x: np.ndarray) -> np.ndarray:
        """Each raw input's latent representation (scvi-tools' ``get_latent_representation``): E[z | x]
        under the guide for the deep generative models (q(z|x, y) averaged over q(y|x)), the latent
        code for models with an embedding, the principal components for k-means."""
        features = self.features(x)
        self.model.eval()
        with torch.no_grad():
            return torch.cat([self.model.latent_mean(chunk) for chunk in features.split(2048)]).cpu().numpy()

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

    weights = None if split.label_weights is None else torch.tensor(split.label_weights, dtype=torch.float32)
    return TrainingData(features(split.labelled_idx), torch.tensor(split.labelled_slots(dataset.y_train)),
                        features(split.unlabelled_idx), features(split.validation_idx),
                        dataset.y_train[split.validation_idx], weights, known_classes=split.known_classes)


def run_spec(model: str, *, hidden_classes: Sequence[int] = (), unseen_classes: Sequence[int] = (),
             labels_per_class: int | None = None, labelled_fraction: float | None = None, extra_slots: int | None = None,
             validation_fraction: float = SplitSpec.validation_fraction, split_seed: int | None = None,
             std_threshold: float | None = PreprocessSpec.std_threshold, prior: str = PriorSpec.kind,
             known_mass: float = PriorSpec.known_mass, class_probs: Sequence[float] | None = None,
             model_options: dict[str, Any] | None = None, train_options: dict[str, Any] | None = None,
             data: DataSpec | None = None, given_validation_points: int = SplitSpec.given_validation_points,
             init_from: str | Path | None = None) -> RunSpec:
    """What a run with :func:`fit`'s options does (the data aside unless given), as run.json records it;
    training options and the prior are checked here. ``given_validation_points``: see :class:`SplitSpec`;
    ``init_from``: weights to start from (another run's folder, for its ``final.pt``, or a weights file),
    stored as a resolved path."""
    return RunSpec(
        model, data or DataSpec(),
        # Handed over as given: the specs check every type, so 7.9 is no class id and "0.2" no fraction.
        SplitSpec(_sequence(hidden_classes, "hidden_classes"), _sequence(unseen_classes, "unseen_classes"),
                  labels_per_class, labelled_fraction, extra_slots, validation_fraction, split_seed,
                  given_validation_points),
        PreprocessSpec(std_threshold),
        PriorSpec("given" if class_probs is not None else prior, known_mass,
                  _sequence(class_probs, "class_probs") if class_probs is not None else None),
        dict(model_options or {}), TrainConfig(**(train_options or {})),
        None if init_from is None else _weights_file(init_from))


def _weights_file(init_from: str | Path) -> str:
    """A run folder's ``final.pt``, or the file given, as a resolved path."""
    path = Path(init_from).expanduser().resolve()
    return str(path / "final.pt" if path.is_dir() else path)


def spec_options(spec: RunSpec) -> dict[str, Any]:
    """The keyword options of :func:`run_spec` that give ``spec`` back (its data aside)."""
    split, prior = spec.split, spec.prior
    return {"hidden_classes": split.hidden_classes, "unseen_classes": split.unseen_classes,
            "labels_per_class": split.labels_per_class, "labelled_fraction": split.labelled_fraction,
            "extra_slots": split.extra_slots, "validation_fraction": split.validation_fraction, "split_seed": split.seed,
            "given_validation_points": split.given_validation_points, "std_threshold": spec.preprocess.std_threshold,
            "prior": prior.kind, "known_mass": prior.known_mass, "class_probs": prior.probs,
            "model_options": dict(spec.model_options), "train_options": dataclasses.asdict(spec.train),
            "init_from": spec.init_from}


def _sequence(values: Any, what: str) -> tuple:
    """``values`` (a list, tuple or array) as a tuple, unchecked; a string or a scalar is an error."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{what} must be a list, got {values!r}")
    return tuple(values.tolist() if isinstance(values, np.ndarray) else values)


def data_location(name: str) -> str:
    """A data set's name as given, or its file's absolute path."""
    return name if name in DATASETS else str(Path(name).expanduser().resolve())


def check_likelihood(model: torch.nn.Module, features: np.ndarray, what: str = "the training inputs") -> None:
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
        options["class_prior"] = class_prior(split.n_known, split.extra_slots, spec.prior.kind, spec.prior.known_mass,
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
        split.check_given_labels()
        pre = Preprocessor.from_arrays(arrays["preprocess.npz"])
    except DataError as err:
        raise RunFileError(f"{run_dir / 'split.npz'}: {err}; restore it or train again") from None
    except (KeyError, TypeError, ValueError) as err:
        raise RunFileError(f"{run_dir}: split.npz or preprocess.npz lacks {err}; restore them or train again") from None
    # run.json and split.npz were written together: an edit of one alone would be read half-applied.
    saved = {"hidden_classes": split.hidden_classes, "unseen_classes": split.unseen_classes, "seed": split.seed,
             **({"extra_slots": split.extra_slots} if spec.split.extra_slots is not None else {})}
    for name, value in saved.items():
        if tuple(np.atleast_1d(getattr(spec.split, name))) != tuple(np.atleast_1d(value)):
            raise RunFileError(f"{path} says split.{name} = {getattr(spec.split, name)!r}, but the run's split.npz "
                               f"holds {value!r}: run.json was edited; restore it (a run's split cannot change)")
    return info, spec, split, pre


def run_data(spec: RunSpec, run_dir: Path, split: Split, dataset: str | Dataset | None = None,
              data_dir: str | Path | None = None) -> Dataset:
    """The data a run trained on: the saved location, or ``dataset`` / ``data_dir`` where it moved,
    checked against the content hash in run.json."""
    if isinstance(dataset, Dataset):
        data, where = dataset, f"the data set {dataset.name!r} given"
    else:
        name = data_location(str(dataset)) if dataset is not None else spec.data.dataset
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


def seed_folder(root: str | Path, seed: int) -> Path:
    """The run folder of seed ``seed`` among runs trained together in ``root`` (``root/seed3``)."""
    return Path(root) / f"seed{seed}"


def seed_folders(root: str | Path) -> list[Path]:
    """The run folders of the seeds trained together in ``root`` (``root/seedN`` holding a run.json),
    in seed order."""
    root = Path(root)
    found = [p for p in root.glob("seed*") if p.name[4:].isdigit() and (p / "run.json").is_file()]
    return sorted(found, key=lambda p: int(p.name[4:]))


def existing_folder(run_dir: Path) -> Path:
    """``run_dir`` when it is a folder; else the one-line error that says what it is."""
    if run_dir.is_dir():
        return run_dir
    if run_dir.exists():
        raise NotADirectoryError(f"{run_dir} is a file, not a run folder")
    raise FileNotFoundError(f"{run_dir} does not exist: no run folder there")


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
        run_dir = existing_folder(Path(run))
        with run_folder_lock(run_dir, "evaluated"):
            return evaluate(load(run_dir, read_mapping=False), dataset, plot, data_dir=data_dir)
    with run_folder_lock(run.run_dir, "evaluated"):
        return _evaluate(run, dataset, plot, data_dir)


def _evaluate(run: Run, dataset: str | Dataset | None, plot: bool, data_dir: str | Path | None) -> dict[str, Any]:
    data = run_data(run.spec, run.run_dir, run.split, dataset, data_dir)
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
