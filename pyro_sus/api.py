"""Python entry points: ``fit``, ``evaluate``, ``predict`` and ``load``, all around a run folder.

A run folder holds ``run.json`` (every option, to rebuild data and model), ``split.npz``,
``preprocess.npz``, ``last.pt`` (training state, for ``--resume``), ``final.json`` + ``final.pt``
(model config and final weights), ``metrics.jsonl``, and after evaluation ``mapping.json``,
``results.json`` and ``confusion.png``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .data import DataError, Dataset, Preprocessor, Split, load_dataset, make_split
from .io import CheckpointError, atomic_write_json
from .metrics import UNMAPPED, honest_mapping, score
from .models import get_model_class
from .priors import class_prior
from .train import TrainConfig, TrainingData, resolve_device, seed_everything, train

__all__ = ["Run", "fit", "evaluate", "predict", "load", "hardware_info"]


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
    info: dict[str, Any]
    model: torch.nn.Module
    preprocessor: Preprocessor
    split: Split
    mapping: np.ndarray | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """q(y|x) over the model's slots for raw inputs ``x`` (same layout as the training data)."""
        device = next(self.model.parameters()).device
        features = torch.tensor(self.preprocessor.transform(x), device=device)
        self.model.eval()
        return self.model.predict_proba(features).cpu().numpy()

    def unlabelled_bound(self, x: np.ndarray, n_samples: int = 4) -> float | None:
        """Mean per point of the model's unlabelled bound on raw inputs ``x`` (nats, higher is better)."""
        device = next(self.model.parameters()).device
        self.model.eval()
        return self.model.unlabelled_bound(torch.tensor(self.preprocessor.transform(x), device=device), n_samples)

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Per point: slot, predicted class (known label or the majority label of the discovered
        cluster on the validation split; -1 when that cluster got no validation point), whether the
        slot is a discovered cluster, and the slot probabilities."""
        probs = self.predict_proba(x)
        slots = probs.argmax(-1)
        mapping = self.mapping if self.mapping is not None else self._known_only_mapping()
        return {"slot": slots, "predicted_class": mapping[slots],
                "discovered": slots >= self.split.n_known, "probabilities": probs}

    def _known_only_mapping(self) -> np.ndarray:
        mapping = np.full(self.split.n_slots, UNMAPPED, dtype=np.int64)
        mapping[: self.split.n_known] = self.split.known_classes
        return mapping


def _training_data(dataset: Dataset, split: Split, pre: Preprocessor) -> TrainingData:
    def features(idx: np.ndarray) -> torch.Tensor:
        return torch.tensor(pre.transform(dataset.x_train[idx]) if len(idx) else np.zeros((0, pre.output_dim), np.float32))

    return TrainingData(features(split.labelled_idx),
                        torch.tensor(split.class_to_slot(dataset.y_train[split.labelled_idx])),
                        features(split.unlabelled_idx), features(split.validation_idx),
                        dataset.y_train[split.validation_idx])


def fit(
    model: str = "gmdgm",
    dataset: str | Dataset = "digits",
    run_dir: str | Path = "runs/latest",
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    hidden_classes: Sequence[int] = (),
    labels_per_class: int | None = None,
    labelled_fraction: float | None = None,
    n_extra: int | None = None,
    validation_fraction: float = 0.1,
    split_seed: int | None = None,
    std_threshold: float | None = 0.1,
    prior: str = "sus",
    known_mass: float = 0.5,
    class_probs: Sequence[float] | None = None,
    model_options: dict[str, Any] | None = None,
    train_options: dict[str, Any] | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    evaluate_after: bool = True,
) -> Run | None:
    """Split the data, train ``model`` and (by default) evaluate it; everything lands in ``run_dir``.

    ``resume=True`` continues an interrupted run in ``run_dir`` with the options saved there;
    ``stop_after=k`` trains only up to epoch k now (a time-limited session) and returns None: the
    state is in ``run_dir/last.pt``, to be resumed later. ``prior`` is the class prior p(y) of models
    that have one: ``"sus"`` (``known_mass`` on the known classes), ``"uniform"``, or your own
    ``class_probs`` (one per slot, known classes first, in ascending class order, then extra slots).
    """
    run_dir = Path(run_dir)
    if class_probs is not None:
        prior = "given"
    if resume:
        return _train_run(run_dir, resume=True, stop_after=stop_after, progress=progress,
                          evaluate_after=evaluate_after,
                          dataset=dataset if isinstance(dataset, Dataset) else None)
    train_config = TrainConfig(**(train_options or {}))
    if isinstance(dataset, Dataset):
        dataset_name = dataset.name
    else:
        dataset_name = str(dataset)
    info = {
        "pyro_sus_version": __version__,
        "model": model,
        "dataset": dataset_name,
        "data_dir": str(data_dir) if data_dir is not None else None,
        "split": {"hidden_classes": [int(c) for c in hidden_classes], "labels_per_class": labels_per_class,
                  "labelled_fraction": labelled_fraction, "n_extra": n_extra,
                  "validation_fraction": validation_fraction,
                  "seed": train_config.seed if split_seed is None else split_seed},
        "preprocess": {"std_threshold": std_threshold},
        "prior": {"kind": prior, "known_mass": known_mass,
                  "probs": [float(p) for p in class_probs] if class_probs is not None else None},
        "model_options": dict(model_options or {}),
        "train": dataclasses.asdict(train_config),
    }
    get_model_class(model)  # fail on an unknown name before touching the disk
    if run_dir.exists() and any(run_dir.iterdir()):
        raise FileExistsError(f"run folder {run_dir} is not empty: choose another, or resume it (--resume)")
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir, download)
    split = make_split(data.y_train, **info["split"])
    info["image_shape"] = list(data.image_shape) if data.image_shape else None
    train_idx = np.concatenate([split.labelled_idx, split.unlabelled_idx])
    pre = Preprocessor.fit(data.x_train[train_idx], std_threshold)
    _build(info, split, pre)  # bad model options fail here, before the run folder is written
    run_dir.mkdir(parents=True, exist_ok=True)
    np.savez(run_dir / "split.npz", **split.to_arrays())
    np.savez(run_dir / "preprocess.npz", keep=pre.keep, fill=pre.fill)
    atomic_write_json(run_dir / "run.json", info)
    return _train_run(run_dir, resume=False, stop_after=stop_after, progress=progress,
                      evaluate_after=evaluate_after, dataset=data)


def _model_config(info: dict[str, Any], split: Split, pre: Preprocessor):
    """The model's config dataclass: sizes and class prior from the split, then the user's options."""
    cls = get_model_class(info["model"])
    options: dict[str, Any] = {"x_dim": pre.output_dim, "n_slots": split.n_slots}
    prior = info["prior"]
    if "class_prior" in {f.name for f in dataclasses.fields(cls.config_class)}:
        options["class_prior"] = class_prior(split.n_known, split.n_extra, prior["kind"], prior["known_mass"],
                                             prior.get("probs")).tolist()
    elif prior["kind"] == "given":
        raise ValueError(f"model {info['model']!r} has no class prior p(y) to set (class_probs)")
    options.update(info["model_options"])
    try:
        return cls.config_class(**options)
    except TypeError as err:  # an option this model does not have
        raise ValueError(f"bad options for model {info['model']!r}: {err}") from None


def _build(info: dict[str, Any], split: Split, pre: Preprocessor) -> torch.nn.Module:
    return get_model_class(info["model"])(_model_config(info, split, pre))


def _load_parts(run_dir: Path) -> tuple[dict[str, Any], Split, Preprocessor]:
    for name in ("run.json", "split.npz", "preprocess.npz"):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} is not a pyro_sus run folder: {name} is missing")
    info = json.loads((run_dir / "run.json").read_text())
    with np.load(run_dir / "split.npz") as arrays:
        split = Split.from_arrays(arrays)
    with np.load(run_dir / "preprocess.npz") as arrays:
        pre = Preprocessor(arrays["keep"], arrays["fill"])
    return info, split, pre


def _train_run(run_dir: Path, resume: bool, stop_after: int | None, progress: bool, evaluate_after: bool,
               dataset: Dataset | None) -> Run | None:
    info, split, pre = _load_parts(run_dir)
    data = dataset if dataset is not None else load_dataset(info["dataset"], info["data_dir"])
    config = TrainConfig(**info["train"])
    seed_everything(config.seed)  # the seed fixes the initial weights too
    model = _build(info, split, pre)
    training_data = _training_data(data, split, pre)
    if getattr(model.config, "likelihood", None) == "bernoulli":
        for part in (training_data.x_labelled, training_data.x_unlabelled):
            if len(part) and (part.min() < 0 or part.max() > 1):
                raise DataError("the Bernoulli likelihood needs inputs in [0, 1]; rescale the data or "
                                "use the Gaussian likelihood (--likelihood gaussian)")
    started = time.perf_counter()
    history = train(model, training_data, config, run_dir, resume=resume, progress=progress,
                    stop_after=stop_after)
    info["train_wall_seconds"] = sum(r["seconds"] for r in history)
    info["last_session_seconds"] = time.perf_counter() - started
    info["hardware"] = hardware_info(resolve_device(config.device))
    atomic_write_json(run_dir / "run.json", info)
    if history[-1]["epoch"] < config.epochs:  # stopped early on purpose: last.pt holds the state
        return None
    model.save(run_dir, "final")
    run = Run(run_dir, info, model, pre, split)
    if evaluate_after:
        evaluate(run, dataset=data)
    return run


def load(run_dir: str | Path, device: str = "cpu") -> Run:
    """Rebuild a finished run (weights from ``final.pt``) with its validation mapping if evaluated."""
    run_dir = Path(run_dir)
    info, split, pre = _load_parts(run_dir)
    if not (run_dir / "final.pt").is_file():
        raise CheckpointError(f"{run_dir} has no final.pt: training did not finish; continue it with "
                              f"`pyro-sus train --resume --out {run_dir}`")
    model = get_model_class(info["model"]).load(run_dir, "final")
    model.to(resolve_device(device)).eval()
    mapping = None
    if (run_dir / "mapping.json").is_file():
        mapping = np.array(json.loads((run_dir / "mapping.json").read_text())["slot_to_class"], dtype=np.int64)
    return Run(run_dir, info, model, pre, split, mapping)


def evaluate(run: Run | str | Path, dataset: Dataset | None = None, plot: bool = True) -> dict[str, Any]:
    """Score a run (DESIGN.md protocol); writes ``mapping.json``, ``results.json``, ``confusion.png``.

    Extra slots are mapped on the validation split only; the test set is scored once with that
    mapping ("test"), and the paper-protocol number (mapping on the test set itself) sits beside it.
    """
    run = run if isinstance(run, Run) else load(run)
    data = dataset if dataset is not None else load_dataset(run.info["dataset"], run.info["data_dir"])
    split = run.split
    val_x, val_y = data.x_train[split.validation_idx], data.y_train[split.validation_idx]
    has_val = (val_y >= 0).any()
    val_slots = run.predict_proba(val_x).argmax(-1) if len(val_x) else np.zeros(0, dtype=np.int64)
    mapping = honest_mapping(split.known_classes, split.n_slots, val_slots[val_y >= 0], val_y[val_y >= 0])
    run.mapping = mapping
    atomic_write_json(run.run_dir / "mapping.json", {
        "slot_to_class": mapping.tolist(), "n_known": split.n_known,
        "note": "slots < n_known are the known classes; extra slots take the majority class of the validation "
                "points they receive (-1: none received)"})
    results: dict[str, Any] = {
        "model": run.info["model"], "model_options": run.info.get("model_options", {}),
        "dataset": run.info["dataset"], "regime": split.regime,
        "known_classes": list(split.known_classes), "hidden_classes": list(split.hidden_classes),
        "n_slots": split.n_slots, "n_labelled": int(len(split.labelled_idx)),
        "n_unlabelled": int(len(split.unlabelled_idx)), "epochs": run.info["train"]["epochs"],
        "seed": run.info["train"]["seed"], "train_wall_seconds": run.info.get("train_wall_seconds"),
        "hardware": run.info.get("hardware"),
    }
    if has_val:
        keep = val_y >= 0
        results["validation"] = score(val_slots[keep], val_y[keep], mapping, split.known_classes, split.n_slots)
    if data.x_test is not None:
        keep = data.y_test >= 0
        test_slots = run.predict_proba(data.x_test[keep]).argmax(-1)
        results["test"] = score(test_slots, data.y_test[keep], mapping, split.known_classes, split.n_slots)
        # The bound each model maximises on unlabelled data, per test point: compares guides and priors
        # of one model (e.g. a flow posterior against the diagonal Normal); across models it compares
        # bounds of different generative models, which is only loosely meaningful.
        results["test"]["unlabelled_bound"] = run.unlabelled_bound(data.x_test[keep])
    atomic_write_json(run.run_dir / "results.json", results)
    scored = results.get("test") or results.get("validation")
    if plot and scored is not None:
        from .plots import plot_confusion

        title = f"{run.info['model']} on {run.info['dataset']} ({'test' if 'test' in results else 'validation'})"
        plot_confusion(scored, run.run_dir / "confusion.png", title=title)
    return results


def predict(run: Run | str | Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """Classify new raw inputs with a trained run (see :meth:`Run.predict`)."""
    run = run if isinstance(run, Run) else load(run)
    return run.predict(x)
