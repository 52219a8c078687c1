"""Training runs: :func:`fit` (one run), :func:`fit_seeds` (one per seed, stacked where the model
stacks) and :func:`fit_baseline` (k-means on a run's split), each into an ordinary run folder
(:mod:`pyro_sus.run`: what a folder holds, and ``load`` / ``evaluate`` / ``predict`` on it). A fresh
run is planned and checked before anything is written; one that fails before its first checkpoint
removes what it wrote; an interrupted one resumes from ``last.pt``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .data import DataError, Dataset, load_dataset, resolve_data_dir, train_defaults
from .folders import check_free, make_run_folder, remove_made, remove_unstarted
from .io import RunFileError, atomic_savez, atomic_write_json, load_checkpoint, run_folder_lock
from .models import get_model_class
from .preprocess import Preprocessor
from .run import (Run, build_run_model, check_likelihood, data_fingerprint, data_location, evaluate, existing_folder,
                  hardware_info, load, load_parts, run_data, run_spec, seed_folder, seed_folders, spec_options,
                  training_data)
from .spec import DataSpec, PriorSpec, RunRecord, RunSpec
from .split import Split, SplitSpec
from .train import ClosedFormFit, TrainingDiverged, TrainingLoop, resolve_device, seed_everything

__all__ = ["fit", "fit_seeds", "fit_baseline", "baseline_spec", "baseline_folder", "BASELINES", "SPLIT_OPTIONS"]

#: The options of :func:`run_spec` that describe the split (what ``fit(split=...)`` replaces whole).
SPLIT_OPTIONS = ("hidden_classes", "unseen_classes", "labels_per_class", "labelled_fraction", "extra_slots",
                 "validation_fraction", "split_seed", "given_validation_points")


def fit(
    model: str = "gmdgm",
    dataset: str | Dataset | None = None,
    run_dir: str | Path = "runs/latest",
    *,
    spec: RunSpec | None = None,
    split: Split | None = None,
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
    split
        A :class:`~pyro_sus.split.Split` to train on as given, instead of one drawn from the options:
        which points are labelled, unlabelled and validation, and (``Split.labels``,
        ``Split.label_weights``) labels and weights other than the data's, e.g. an oracle's answers
        (the active loop's rounds). run.json then says ``split.given`` and split.npz holds it.
    **options
        The run's options, as :func:`run_spec` names them: the split (``hidden_classes``,
        ``unseen_classes``, ``labels_per_class`` or ``labelled_fraction``, ``extra_slots``,
        ``validation_fraction``, ``split_seed``), the preprocessing (``std_threshold``), the class
        prior (``prior``, ``known_mass``, ``class_probs``), ``model_options``, ``train_options`` and
        ``init_from`` (another run's folder or ``final.pt``, to start from instead of the seed's weights).
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
    if split is not None:
        replaced = sorted(set(options) & set(SPLIT_OPTIONS))
        if replaced:
            raise ValueError(f"split= is the whole split; the split options {replaced} cannot change it")
    spec, data_defaults = _fit_spec(model, dataset, spec, device, options)
    if split is not None:
        spec = dataclasses.replace(spec, split=SplitSpec.describing(split))
    data, spec = _checked_data(spec, run_dir, dataset, data_dir, download)
    fresh = _FreshRun.plan(run_dir, spec, data, data_defaults, split)
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
    check_free(run_dir)  # early, before the data is read; checked again under the folder's lock
    dataset = "digits" if dataset is None else dataset
    data = dataset if isinstance(dataset, Dataset) else load_dataset(dataset, data_dir, download)
    folder = resolve_data_dir(data_dir)
    return data, dataclasses.replace(spec, data=DataSpec(
        # Stored resolved, so that evaluate and --resume find the data from any working directory.
        dataset.name if isinstance(dataset, Dataset) else data_location(str(dataset)),
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
    def plan(cls, run_dir: Path, spec: RunSpec, data: Dataset, data_defaults: dict[str, Any] | None = None,
             split: Split | None = None) -> "_FreshRun":
        split = spec.split.make(data.y_train) if split is None else _checked_split(split, data, spec.model)
        train_idx = np.concatenate([split.labelled_idx, split.unlabelled_idx])
        pre = Preprocessor.fit(data.x_train[train_idx], spec.preprocess.std_threshold)
        # Bad model options (sizes this machine cannot hold among them) and start weights that do not
        # fit the model fail here, before anything is written; the run's own model is built from its
        # seed by _run_loop, which checks the likelihood.
        _start_from(build_run_model(spec, split, pre), spec)
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
        made = make_run_folder(run_dir)
        try:
            with run_folder_lock(run_dir, "trained"):
                check_free(run_dir, clear_unstarted=True)  # under the lock: no other process can start here now
                try:
                    atomic_savez(run_dir / "split.npz", **self.split.to_arrays())
                    atomic_savez(run_dir / "preprocess.npz", **self.pre.to_arrays())
                    atomic_write_json(run_dir / "run.json", self.info)  # last: a folder without it holds no run yet
                    yield
                except Exception as err:
                    if (run_dir / "last.pt").exists():  # a checkpoint exists: the run can be resumed, keep it
                        raise
                    # This process holds the lock and found the folder empty: what is there now, it wrote.
                    remove_unstarted(run_dir)
                    if isinstance(err, TrainingDiverged):
                        kept = (f" Nothing was kept in {run_dir} (no epoch was checkpointed): the corrected command "
                                f"can use it again.")
                        raise TrainingDiverged(err.describe(saved_to=None) + kept, err.loss, err.epoch,
                                               err.step) from None
                    raise
        except BaseException:
            remove_made(made)  # the folders this call created, where they are empty again
            raise


def _checked_split(split: Split, data: Dataset, model: str) -> Split:
    """A split given to ``fit``, checked against the data: its points exist and are used once, its known
    classes are the data's, its given labels fit (DataError naming what is wrong)."""
    parts = [np.asarray(split.labelled_idx), np.asarray(split.unlabelled_idx), np.asarray(split.validation_idx)]
    if not len(parts[0]) + len(parts[1]):
        raise DataError("the split has no training point")
    points = np.concatenate([part for part in parts if len(part)])
    if points.dtype.kind not in "iu" or points.min() < 0 or points.max() >= len(data.x_train):
        raise DataError(f"the split's indices must be integers in 0..{len(data.x_train) - 1}")
    if len(np.unique(points)) != len(points):
        raise DataError("the split uses a point twice (labelled, unlabelled and validation points must be disjoint)")
    unknown = np.setdiff1d(split.known_classes, data.classes)
    if len(unknown):
        raise DataError(f"the split's known classes {unknown.tolist()} are not classes of the data {data.classes.tolist()}")
    split.check_given_labels()
    if split.label_weights is not None and not get_model_class(model).takes_label_weights:
        raise DataError(f"model {model!r} takes no per-label weights: give the split without label_weights, or a "
                        f"model that takes them (betavae)")
    if split.labels is None and (data.y_train[parts[0]] < 0).any():
        raise DataError("the split labels points the data gives no label; give their labels with the split (labels=)")
    return split


def _start_from(model: torch.nn.Module, spec: RunSpec) -> torch.nn.Module:
    """Load ``spec.init_from``'s weights into ``model`` (freshly built from the run's seed), if it names any."""
    if spec.init_from is None:
        return model
    path = Path(spec.init_from)
    if not path.is_file():
        raise FileNotFoundError(f"init_from: {path} does not exist (another run's final.pt is expected)")
    try:
        model.load_state_dict(load_checkpoint(path, map_location="cpu"))
    except RuntimeError as err:  # missing, unexpected or differently shaped weights
        first = str(err).strip().splitlines()[-1].strip()
        raise ValueError(f"init_from: {path} holds weights of another model than this run's ({first})") from None
    return model


def _resume(run_dir: Path, dataset: str | Dataset | None, data_dir: str | Path | None, stop_after: int | None,
            progress: bool, evaluate_after: bool, device: str | None = None, snapshot: bool = False) -> Run | None:
    _check_set_up(run_dir)
    with run_folder_lock(existing_folder(run_dir), "trained"):
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
            data = run_data(spec, run_dir, split, loaded[spec.data.sha256])
        else:
            data = run_data(spec, run_dir, split, dataset, data_dir)
        if loaded is not None and spec.data.sha256:
            loaded[spec.data.sha256] = data
        if not isinstance(dataset, Dataset) and (dataset is not None or data_dir is not None):
            # The hash matched: remember where the data is now, for evaluate and the next resume.
            moved = {"dataset": data_location(str(dataset))} if dataset is not None else {}
            if data_dir is not None:
                moved["data_dir"] = str(Path(data_dir).expanduser().resolve())
            spec = dataclasses.replace(spec, data=dataclasses.replace(spec.data, **moved))
            info.update(moved)
        checkpointed = (run_dir / "last.pt").is_file()
        if not checkpointed and progress:
            print(f"{run_dir} has no checkpoint yet (stopped in its first epochs): starting it over with its saved "
                  f"options")
        return cls(run_dir, info, spec, split, pre, data, checkpointed)


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
    # One spec per seed, built as fit builds its one (the data set's defaults recorded in each run).
    built = [_fit_spec(model, dataset, None, device, {**options, "train_options": {**train_options, "seed": seed}})
             for seed in seeds]
    specs, data_defaults = [spec for spec, _ in built], built[0][1]
    if folders is not None and len(folders) != len(seeds):
        raise ValueError(f"give one folder per seed: {len(folders)} folders for {len(seeds)} seeds")
    folders = [seed_folder(root, seed) for seed in seeds] if folders is None else [Path(f) for f in folders]
    if len(set(folders)) != len(folders):
        raise ValueError(f"the runs need folders of their own, got {[str(f) for f in folders]}")
    for folder in folders[1:]:
        check_free(folder)
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
    folders = seed_folders(existing_folder(root)) if folders is None else [existing_folder(f) for f in folders]
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

    loops = [_run_loop(m.run_dir, m.spec, m.split, m.pre, m.data, stop_after, progress and not stacked,
                       m.checkpointed) for m in members]
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


def _run_record(spec: RunSpec) -> dict[str, Any]:
    """What a run computes, as ``last.pt`` keeps it to compare on resume: the spec without where the data
    lies (it may move; its content hash stays) and without the device (a run may change machines)."""
    record = spec.to_json()
    for key in ("dataset", "data_dir"):
        record.pop(key, None)
    record["train"] = {k: v for k, v in record["train"].items() if k != "device"}
    return record


def _run_loop(run_dir: Path, spec: RunSpec, split: Split, pre: Preprocessor, data: Dataset, stop_after: int | None,
              progress: bool, resuming: bool = False) -> TrainingLoop:
    """The run's training loop, its model initialised from the run's seed and, for a fresh run, from
    ``init_from`` (a resumed run takes every weight from its ``last.pt``); not yet resumed."""
    config = spec.train
    seed_everything(config.seed)  # the seed fixes the initial weights too
    try:
        model = build_run_model(spec, split, pre, where=f"{run_dir / 'run.json'} (model_options)")
        if not resuming:
            _start_from(model, spec)
    except ValueError as err:  # the options were checked when the run started: run.json was edited since
        raise RunFileError(str(err)) from None
    tensors = training_data(data, split, pre)
    check_likelihood(model, torch.cat([tensors.x_labelled, tensors.x_unlabelled]).numpy())
    loop = TrainingLoop if model.trained_by_gradient else ClosedFormFit
    return loop(model, tensors, config, run_dir, progress=progress, stop_after=stop_after, run_record=_run_record(spec))


def _train_run(run_dir: Path, info: dict[str, Any], spec: RunSpec, split: Split, pre: Preprocessor, data: Dataset,
               resume: bool, stop_after: int | None, progress: bool, evaluate_after: bool,
               snapshot: bool = False, plot: bool = True) -> Run | None:
    """Train (or resume) the run; ``info`` is run.json as written, gaining the run's records."""
    loop = _run_loop(run_dir, spec, split, pre, data, stop_after, progress, resume)
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


def baseline_spec(spec: RunSpec, baseline: str) -> RunSpec:
    """``baseline`` on ``spec``'s split, preprocessing and seed: the model's options and its class prior
    p(y) are the model's, which a baseline has not."""
    return dataclasses.replace(spec, model=baseline, model_options={}, prior=PriorSpec())


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
    spec = baseline_spec(run.spec, baseline)
    data = run_data(run.spec, run.run_dir, run.split, dataset, data_dir)
    fresh = _FreshRun.plan(folder, spec, data)
    same = fresh.split.to_arrays()
    if any(not np.array_equal(value, run.split.to_arrays()[key]) for key, value in same.items()):
        raise RunFileError(f"the split made again from {run.run_dir / 'run.json'} differs from its split.npz; "
                           f"the baseline would not see the run's points")
    with fresh.started():
        return _train_run(folder, fresh.info, spec, fresh.split, fresh.pre, data, resume=False, stop_after=None,
                          progress=progress, evaluate_after=True)


