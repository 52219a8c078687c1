"""One training loop for every model: labelled + unlabelled batches in one Adam step, cosine
learning-rate decay, gradient value clipping, dynamic binarisation, exact resume. The loop is short
(:class:`TrainingLoop`); metrics, model selection, early stopping, logging and checkpoints are
callbacks (:mod:`pyro_sus.callbacks`)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
from pyro.infer import traceenum_elbo

from .errors import TrainingDiverged
from .io import CheckpointError, RunFileError, atomic_write_text, load_checkpoint
from .spec import TrainConfig
from .callbacks import (BestValidation, Callback, Checkpoint, EpochMonitor, ProgressBar, TensorBoardLog, monitor_batch,
                        validation_metrics)
from .models.base import Batch
from .nn import PRECISIONS, network_precision
from .tracing import TracedLoss

__all__ = ["TrainStep", "TrainingData", "TrainingDiverged", "TrainingLoop", "ClosedFormFit", "resolve_device", "train",
           "seed_everything"]

@dataclass
class TrainingData:
    """Tensors resident on the training device; ``y_labelled`` are slots, ``y_val`` true classes.

    ``w_labelled`` (optional) weights each label, e.g. the confidence of a propagated label in
    active labelling; a model that takes weights gets them as ``loss(..., w_labelled=...)``.
    ``known_classes`` (optional) are the classes of slots 0, 1, ...: with them each epoch's record
    splits validation accuracy into known and novel classes and counts the extra slots in use."""

    x_labelled: torch.Tensor
    y_labelled: torch.Tensor
    x_unlabelled: torch.Tensor
    x_val: torch.Tensor
    y_val: np.ndarray
    w_labelled: torch.Tensor | None = None
    known_classes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.w_labelled is not None and (self.w_labelled.shape != self.y_labelled.shape
                                            or not bool(((self.w_labelled >= 0) & (self.w_labelled <= 1)).all())):
            raise ValueError("w_labelled needs one weight in [0, 1] per label")

    def epoch_batches(self, n_steps: int, batch_size: int, generator: torch.Generator, binarize: bool = False,
                      labelled_scale: float = 1.0) -> Iterator[Batch]:
        """One epoch's ``n_steps`` batches: fresh permutations of each set drawn from ``generator``
        (the labelled one cycles alongside the unlabelled one), each batch binarised afresh when
        ``binarize`` (dynamic binarisation: a Bernoulli draw of the grey levels)."""
        order_u, order_l = self.epoch_order(n_steps, batch_size, generator)
        for step in range(n_steps):
            x_u = self.x_unlabelled[order_u[step]] if order_u is not None else None
            x_l = self.x_labelled[order_l[step]] if order_l is not None else None
            y_l = self.y_labelled[order_l[step]] if order_l is not None else None
            w_l = self.w_labelled[order_l[step]] if self.w_labelled is not None and order_l is not None else None
            if binarize:
                x_u = torch.bernoulli(x_u) if x_u is not None else None
                x_l = torch.bernoulli(x_l) if x_l is not None else None
            yield Batch(x_u, x_l, y_l, w_l, labelled_scale)

    def epoch_order(self, n_steps: int, batch_size: int, generator: torch.Generator
                    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """One epoch's (n_steps, batch) indices into the unlabelled and the labelled set (None for an
        empty set), drawn from ``generator`` in that order: fresh permutations, cycled so every step is full."""
        n_unlabelled, n_labelled = len(self.x_unlabelled), len(self.x_labelled)
        order_u = _epoch_batches(n_unlabelled, n_steps, batch_size, generator) if n_unlabelled else None
        order_l = _epoch_batches(n_labelled, n_steps, batch_size, generator) if n_labelled else None
        return order_u, order_l

    def to(self, device: torch.device) -> "TrainingData":
        move = lambda t: t.to(device) if t is not None else None  # noqa: E731
        return dataclasses.replace(self, x_labelled=move(self.x_labelled), y_labelled=move(self.y_labelled),
                                   x_unlabelled=move(self.x_unlabelled), x_val=move(self.x_val),
                                   w_labelled=move(self.w_labelled))


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; ``cuda`` without a GPU is a ValueError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device {name!r} is not supported: use auto, cpu, cuda or cuda:N")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but no CUDA device is available; use --device cpu or auto")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist")
    return device


class _DivergenceWatch:
    """Notes the first step whose loss or gradients are not finite without reading anything back
    from the device, and keeps the model's state from just before it (when checks are deferred)."""

    def __init__(self, model: torch.nn.Module, device: torch.device, deferred: bool) -> None:
        self.model, self.deferred = model, deferred
        self.seen = torch.zeros((), dtype=torch.bool, device=device)
        self.step = torch.zeros((), dtype=torch.long, device=device)
        self.loss = torch.zeros((), device=device)
        # The state tensors (parameters and buffers, updated in place by training) and, only when
        # checks are deferred, copies of them.
        self.live = model.state_dict()
        self.kept = {k: v.detach().clone() for k, v in self.live.items()} if deferred else None

    def record(self, loss: torch.Tensor, step: int) -> torch.Tensor:
        """Note step ``step`` of the epoch (before its optimizer update); returns the device flag
        "finite so far"."""
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        # Gradients too: a NaN input can leave TraceEnum_ELBO's loss finite while every gradient is NaN.
        finite = torch.isfinite(torch.stack([loss.detach()] + [g.sum() for g in grads])).all()
        first = ~self.seen & ~finite
        self.step = torch.where(first, step, self.step)
        self.loss = torch.where(first, loss.detach().to(self.loss.dtype), self.loss)
        if self.kept is not None:  # the state now is the one before the first bad step: keep it
            for key, value in self.live.items():
                self.kept[key].copy_(torch.where(first, value, self.kept[key]))
        self.seen = self.seen | ~finite
        return ~self.seen

    def diverged(self) -> bool:
        """Read the flag back from the device (the one place this waits for it)."""
        return bool(self.seen)

    def state_before(self) -> dict[str, torch.Tensor]:
        """The model's state before the first non-finite step (call only once :meth:`diverged`)."""
        return self.kept if self.kept is not None else self.model.state_dict()


@contextlib.contextmanager
def _without_pyro_nan_warning(active: bool) -> Iterator[None]:
    """Pyro's ``differentiable_loss`` reads its loss back to warn about NaN (``pyro.util.warn_if_nan``,
    once in forward and once in backward): on CUDA two waits for the device every step. With
    deferred checks the trainer's own watch covers NaN, so the warning is left out while active."""
    if not active:
        yield
        return
    original = traceenum_elbo.warn_if_nan
    traceenum_elbo.warn_if_nan = lambda value, *args, **kwargs: value
    try:
        yield
    finally:
        traceenum_elbo.warn_if_nan = original


class _NonFinite(Exception):
    """Raised by :class:`TrainStep` when a check finds a non-finite step (the trainer reports it)."""


class TrainStep:
    """One optimizer step of the trainer, as the trainer runs it (the benchmarks time this too):
    the model's step hook, its loss (traced with ``jit``; networks at ``precision``), backward,
    the finite watch, gradient clipping and Adam."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: TrainConfig,
                 device: torch.device) -> None:
        self.model, self.optimizer, self.config = model, optimizer, config
        # Traced after the move to the device and the resumed weights: the trace shares the parameters.
        self.loss_fn = TracedLoss(model) if config.jit else model.loss
        self.check_every = config.finite_check_every or (1 if device.type == "cpu" else 50)
        self.network_dtype = PRECISIONS[config.precision]
        self.device = device
        self.watch = _DivergenceWatch(model, device, deferred=self.check_every > 1)

    def new_epoch(self) -> None:
        """Start a new epoch's watch (the trainer checks it at every epoch's end)."""
        self.watch = _DivergenceWatch(self.model, self.device, deferred=self.check_every > 1)

    def __call__(self, step: int, global_step: int, batch: Batch) -> torch.Tensor:
        """Run step ``step`` of the epoch (``global_step`` over the run) on ``batch`` (a :class:`Batch`
        or its fields); returns its loss, or zero for a non-finite step not yet checked. Raises
        _NonFinite when a check finds one."""
        watch = self.watch
        self.model.before_step(global_step)  # e.g. a temperature schedule
        try:
            with pyro.validation_enabled(self.config.validate), _without_pyro_nan_warning(self.check_every > 1), \
                    network_precision(self.network_dtype):
                loss = self.loss_fn(batch)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
        except Exception:
            # A step after an unchecked non-finite one may fail on its NaN parameters: report the cause.
            if self.check_every > 1 and watch.diverged():
                raise _NonFinite from None
            raise
        finite = watch.record(loss, step)  # the parameters are still those before this step here
        if (step + 1) % self.check_every == 0 and watch.diverged():
            raise _NonFinite
        if self.config.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.model.parameters(), self.config.clip_value)
        self.optimizer.step()
        # Only finite steps count (unchecked ones included), so an epoch's sum stays a number to report.
        return torch.where(finite, loss.detach(), 0.0)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy, torch (CPU and CUDA) and Pyro."""
    random.seed(seed)
    np.random.seed(seed)
    pyro.set_rng_seed(seed)  # seeds torch (all devices) too


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    # Only tensors and plain data, so that last.pt loads with torch.load(weights_only=True).
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "shuffle": generator.get_state()}


def _set_rng_state(state: dict[str, Any], generator: torch.Generator, saved_device: str | None,
                   device: torch.device, epoch: int, seed: int, path: Path) -> list[str]:
    """Put back the random streams of ``last.pt``; returns notes on what could not be (a run that moved
    between a GPU and the CPU draws its data order afresh: the two generators' states differ in kind)."""
    notes = []
    try:
        random.setstate(_python_rng_state(state["python"]))
        name, keys, position, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), position, has_gauss, cached))
        # RNG states are CPU byte tensors, whatever map_location moved the checkpoint to.
        torch.set_rng_state(state["torch"].cpu())
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise CheckpointError(f"{path} holds no valid random state ({_first_line(err)}); it is not a pyro_sus "
                              f"checkpoint of this run: restore it, or delete it to start the run over") from None
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    if saved_device is None or saved_device == device.type:
        try:
            generator.set_state(state["shuffle"].cpu())
            return notes
        except (RuntimeError, KeyError, AttributeError, TypeError):
            if saved_device is not None:
                raise CheckpointError(f"{path} holds no valid data-order state; it is not a pyro_sus checkpoint of "
                                      f"this run: restore it, or delete it to start the run over") from None
            # A checkpoint from before the device was recorded, written on another device.
    generator.manual_seed(seed + 1_000_003 * epoch)
    notes.append(f"the run moved from {saved_device or 'another device'} to {device.type}: its data order from "
                 f"epoch {epoch + 1} on is drawn afresh, so it is no longer bit for bit the run it would have been")
    return notes


def _python_rng_state(saved: Any) -> tuple:
    """Python's random state as ``random.setstate`` takes it (tuples, which a checkpoint may hold as lists)."""
    version, internal, gauss = saved
    return version, tuple(internal), gauss


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return (lines[0] if lines else type(err).__name__)[:200]


#: Keys of a ``last.pt`` training checkpoint and the types they hold.
_STATE_KEYS = {"model": dict, "optimizer": dict, "scheduler": dict, "epoch": int, "history": list, "rng": dict}


def _check_resumable(state: Any, path: Path, config: TrainConfig, run_record: dict[str, Any] | None) -> None:
    """``state`` is a training checkpoint of this run: its parts are there with their types, its epoch
    lies within the run, and it was trained with the options given now (only the device may differ)."""
    def refuse(reason: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a pyro_sus training checkpoint of this run ({reason}): restore it, or "
                               f"delete it to start the run over")

    if not isinstance(state, dict):
        raise refuse(f"it holds a {type(state).__name__}, not a table of parts")
    for key, kind in _STATE_KEYS.items():
        if key not in state:
            raise refuse(f"it lacks '{key}'")
        if not isinstance(state[key], kind) or (kind is int and isinstance(state[key], bool)):
            raise refuse(f"'{key}' is a {type(state[key]).__name__}, not a {kind.__name__}")
    epoch = state["epoch"]
    if not 0 <= epoch <= config.epochs or len(state["history"]) != epoch or \
            not all(isinstance(r, dict) and r.get("epoch") == i + 1 for i, r in enumerate(state["history"])):
        raise refuse(f"epoch {epoch} of a {config.epochs}-epoch run, with {len(state['history'])} epoch records")
    if run_record is not None and isinstance(state.get("run_record"), dict):
        _refuse_changes(state["run_record"], run_record, "", path)  # its "train" part is the config
    elif isinstance(state.get("train_config"), dict):  # a caller of train() without a run record
        now = {k: v for k, v in dataclasses.asdict(config).items() if k != "device"}
        _refuse_changes({k: v for k, v in state["train_config"].items() if k != "device"}, now, "train", path)


def _refuse_changes(saved: Any, now: Any, where: str, path: Path) -> None:
    """Raise RunFileError at the first field whose value differs between ``saved`` (last.pt) and ``now``."""
    if isinstance(saved, dict) and isinstance(now, dict):
        for key in sorted(set(saved) | set(now)):
            _refuse_changes(saved.get(key), now.get(key), f"{where}.{key}" if where else key, path)
        return
    same = saved == now or (isinstance(saved, (list, tuple)) and isinstance(now, (list, tuple))
                            and list(saved) == list(now))
    if not same:
        raise RunFileError(f"{path.parent / 'run.json'} says {where} = {now!r}, but the run was trained with {saved!r} "
                           f"(kept in {path}); training on would half-apply the change. Restore {where} in run.json, "
                           f"or start a new run folder for other options")


def _epoch_batches(n: int, n_steps: int, batch_size: int, generator: torch.Generator) -> torch.Tensor:
    """(n_steps, batch) indices on the generator's device: fresh permutations of range(n), cycled
    so that every step is full."""
    batch_size = min(batch_size, n)
    repeats = math.ceil(n_steps * batch_size / n)
    order = torch.cat([torch.randperm(n, generator=generator, device=generator.device) for _ in range(repeats)])
    return order[: n_steps * batch_size].view(n_steps, batch_size)


class TrainingLoop:
    """The trainer: a short loop over epochs and steps, everything else in callbacks
    (:mod:`pyro_sus.callbacks`). Build it, optionally :meth:`resume`, then :meth:`run`."""

    def __init__(self, model: torch.nn.Module, data: TrainingData, config: TrainConfig,
                 run_dir: str | Path | None = None, progress: bool = True, stop_after: int | None = None,
                 run_record: dict[str, Any] | None = None, callbacks: Sequence[Callback] = ()) -> None:
        self.config, self.run_record = config, run_record
        self.device = resolve_device(config.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        seed_everything(config.seed)
        self.model = model.to(self.device)
        self.data = data.to(self.device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate,
                                          betas=(config.adam_beta1, 0.999))
        if config.lr_schedule == "cosine":
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs)
        else:
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda epoch: 1.0)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(config.seed)
        self.history: list[dict[str, Any]] = []
        self.start_epoch = self.epoch = 0
        self.stop_after = stop_after
        self.should_stop = False
        #: After a divergence: the model's state before the first non-finite step, and that step (1-based).
        self.diverged_state: tuple[dict[str, torch.Tensor], int] | None = None
        #: The random streams ``resume`` put back (a stack of runs puts the shared ones back once more).
        self.resumed_rng: dict[str, Any] | None = None
        n_unlabelled, n_labelled = len(self.data.x_unlabelled), len(self.data.x_labelled)
        if n_unlabelled + n_labelled == 0:
            raise ValueError("no training data: both the labelled and the unlabelled sets are empty")
        has_labelled_validation = len(self.data.x_val) > 0 and (np.asarray(self.data.y_val) >= 0).any()
        if config.select == "best-validation" and not has_labelled_validation:
            raise ValueError("select='best-validation' needs a validation split with labels (validation_fraction > 0)")
        # An epoch is one pass over the unlabelled set (Willetts); labelled batches cycle alongside.
        self.n_steps = math.ceil((n_unlabelled or n_labelled) / config.batch_size)
        self.labelled_scale = config.labelled_factor(n_labelled, n_unlabelled)
        # Inputs of a Bernoulli likelihood (or of a model without one, e.g. the labelled-only classifier,
        # which reads the same pixels as the others) are binarised afresh every step.
        self.binarize = config.binarize and model.likelihood_family in ("bernoulli", None)
        self.train_step = TrainStep(model, self.optimizer, config, self.device)
        self.callbacks = self._callbacks(progress, callbacks)

    def _callbacks(self, progress: bool, extra: Sequence[Callback]) -> list[Callback]:
        """The trainer's behaviour, in the order it runs after each epoch: the monitor, the selection,
        logging, the caller's own callbacks (``extra``), and the files last, so they hold the rest."""
        config = self.config
        callbacks: list[Callback] = [EpochMonitor(monitor_batch(self.data, self.binarize, config.seed,
                                                                self.labelled_scale))]
        if config.select == "best-validation":
            callbacks.append(BestValidation(config.patience))
        if config.tensorboard and self.run_dir is not None:
            callbacks.append(TensorBoardLog(self.run_dir))
        callbacks.append(ProgressBar(progress))
        callbacks.extend(extra)
        if self.run_dir is not None:
            callbacks.append(Checkpoint(self.run_dir, config.checkpoint_every))
        return callbacks

    @property
    def last_epoch(self) -> int:
        """The epoch this session ends at: the run's last, ``stop_after``, or now if patience ended the run."""
        if self.history and self.history[-1].get("stopped_early"):
            return self.start_epoch
        return self.config.epochs if self.stop_after is None else min(self.stop_after, self.config.epochs)

    @property
    def finished(self) -> bool:
        """Whether the run is over: all its epochs done, or stopped early."""
        return bool(self.history) and (self.history[-1]["epoch"] >= self.config.epochs
                                       or bool(self.history[-1].get("stopped_early")))

    def state_dict(self) -> dict[str, Any]:
        """Everything ``last.pt`` holds: weights, optimizer, schedule, history, random streams, the
        options trained with, and each callback's state."""
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": self.epoch, "history": self.history,
                 "rng": _rng_state(self.generator), "train_config": dataclasses.asdict(self.config),
                 "device": self.device.type}
        if self.run_record is not None:
            state["run_record"] = self.run_record
        for callback in self.callbacks:
            if callback.state_key is not None:
                state[callback.state_key] = callback.state()
        return state

    def resume(self) -> None:
        """Continue from ``RUN/last.pt`` exactly (the same parameters as an uninterrupted run), after
        checking it is this run's checkpoint, trained with the options given now."""
        if self.run_dir is None:
            raise ValueError("resume=True needs run_dir")
        path = self.run_dir / "last.pt"
        state = load_checkpoint(path, map_location=self.device)
        _check_resumable(state, path, self.config, self.run_record)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as err:
            raise CheckpointError(f"{path} does not hold this run's training state ({_first_line(err)}); it is not a "
                                  f"pyro_sus checkpoint of this run: restore it, or delete it to start the run over"
                                  ) from None
        self.history, self.start_epoch = state["history"], state["epoch"]
        self.epoch = self.start_epoch
        self.resumed_rng = state["rng"]
        for note in _set_rng_state(state["rng"], self.generator, state.get("device"), self.device, self.start_epoch,
                                   self.config.seed, path):
            warnings.warn(note, UserWarning, stacklevel=3)
        for callback in self.callbacks:
            if callback.state_key is not None:
                callback.load_state(self, state.get(callback.state_key))

    def restore_rng(self) -> None:
        """Put back the random streams :meth:`resume` read (a stack of runs, which share the global
        streams, puts back one run's after every run has resumed)."""
        if self.resumed_rng is not None:
            _set_rng_state(self.resumed_rng, self.generator, self.device.type, self.device, self.start_epoch,
                           self.config.seed, self.run_dir / "last.pt" if self.run_dir is not None else Path("last.pt"))

    def run(self) -> list[dict[str, Any]]:
        """Train up to :attr:`last_epoch`; returns the history of every epoch so far."""
        self.model.train()
        for callback in self.callbacks:
            callback.on_train_start(self)
        for epoch in range(self.start_epoch, self.last_epoch):
            self.history.append(self._epoch(epoch))
            self.epoch = epoch + 1
            for callback in self.callbacks:
                callback.on_epoch_end(self, self.history[-1])
            if self.should_stop:
                break
        for callback in self.callbacks:
            callback.on_train_end(self)
        return self.history

    def _epoch(self, epoch: int) -> dict[str, Any]:
        """One pass over the data (0-based ``epoch``): its steps, the schedule's step, its record."""
        started = time.perf_counter()
        loss_sum = torch.zeros((), device=self.device)
        self.train_step.new_epoch()
        batches = self.data.epoch_batches(self.n_steps, self.config.batch_size, self.generator, self.binarize,
                                          self.labelled_scale)
        for step, batch in enumerate(batches):
            try:
                loss_sum += self.train_step(step, epoch * self.n_steps + step, batch)
            except _NonFinite:
                raise self._diverged(epoch) from None
        if self.train_step.watch.diverged():  # every epoch ends with a check, before anything is saved
            raise self._diverged(epoch)
        self.scheduler.step()
        return {"epoch": epoch + 1, "loss": float(loss_sum) / self.n_steps,
                "lr": self.optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - started}

    def _diverged(self, epoch: int) -> TrainingDiverged:
        watch = self.train_step.watch
        self.diverged_state = (watch.state_before(), int(watch.step) + 1)
        for callback in self.callbacks:
            callback.on_diverged(self, epoch)
        return TrainingDiverged.at(float(watch.loss), epoch + 1, int(watch.step) + 1,
                                   self.run_dir / "last_good.pt" if self.run_dir is not None else None)


class ClosedFormFit:
    """The run of a model fitted once in closed form (``trained_by_gradient = False``: the k-means
    baseline), with the loop's surface (:meth:`run`, :meth:`resume`, ``history``, ``finished``), so a run
    folder gets the same files: ``metrics.jsonl`` with one record (the fit's numbers and the validation
    numbers every epoch's record has), no ``last.pt`` (a fit is not resumed: it is fitted again)."""

    def __init__(self, model: torch.nn.Module, data: TrainingData, config: TrainConfig,
                 run_dir: str | Path | None = None, progress: bool = True, stop_after: int | None = None,
                 run_record: dict[str, Any] | None = None, callbacks: Sequence[Callback] = ()) -> None:
        if callbacks:
            raise ValueError(f"{type(model).__name__} is fitted in closed form: it has no epochs for callbacks")
        self.config, self.device = config, resolve_device(config.device)
        self.model, self.data = model.to(self.device), data.to(self.device)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.history: list[dict[str, Any]] = []
        self.callbacks: list[Callback] = []
        self.start_epoch = 0

    @property
    def finished(self) -> bool:
        return bool(self.history)

    def resume(self) -> None:
        """Nothing to continue: a closed-form fit is fitted again."""

    def run(self) -> list[dict[str, Any]]:
        """Fit the model once; returns its one record."""
        started = time.perf_counter()
        seed_everything(self.config.seed)
        record: dict[str, Any] = {"epoch": 1, "fitted_in_closed_form": True}
        record.update(self.model.fit_data(self.data.x_labelled, self.data.y_labelled, self.data.x_unlabelled,
                                          self.config.seed))
        record["seconds"] = time.perf_counter() - started
        record.update(validation_metrics(self.model, self.data))
        self.history = [record]
        if self.run_dir is not None:
            atomic_write_text(self.run_dir / "metrics.jsonl", json.dumps(record) + "\n")
        return self.history


def train(model: torch.nn.Module, data: TrainingData, config: TrainConfig, run_dir: str | Path | None = None,
          resume: bool = False, progress: bool = True, stop_after: int | None = None,
          run_record: dict[str, Any] | None = None, callbacks: Sequence[Callback] = ()) -> list[dict[str, Any]]:
    """Fit ``model`` (a zoo model: its ``loss`` and ``before_step``) and return the per-epoch history.

    With ``run_dir``: ``last.pt`` (full training state) every ``checkpoint_every`` epochs and at the
    end, ``metrics.jsonl`` rewritten each epoch. ``resume=True`` continues from ``last.pt`` exactly:
    the same parameters as an uninterrupted run. ``stop_after=k`` stops (with a checkpoint) once k
    epochs are done, keeping the learning-rate schedule of the full ``config.epochs``. A non-finite
    loss raises TrainingDiverged after saving the parameters of the last finite step to ``last_good.pt``.
    With ``select="best-validation"`` the model ends with its best validation epoch's weights (each
    record says which epoch that is so far: ``selected_epoch``); a run that ``patience`` stopped says
    so in its last record (``stopped_early``).

    ``last.pt`` keeps the options it was trained with (``config`` and ``run_record``, what the run
    computes); a resume whose options differ is refused, naming the field, since training on would
    half-apply them. Only the device may change on resume. The loop and its callbacks:
    :class:`TrainingLoop`, :mod:`pyro_sus.callbacks`; ``callbacks`` adds your own
    (:class:`pyro_sus.callbacks.Callback`), run after the built-in ones and before the files are written.
    """
    loop = TrainingLoop(model, data, config, run_dir, progress=progress, stop_after=stop_after,
                        run_record=run_record, callbacks=callbacks)
    if resume:
        loop.resume()
    return loop.run()
