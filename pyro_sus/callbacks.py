"""What the trainer does besides stepping: each a small callback (as in scvi-tools'
``scvi/train/_callbacks.py``), called by the loop of :func:`pyro_sus.train.train` at fixed points.

- :class:`EpochMonitor`: the named loss terms on a fixed sample, validation accuracy, p(z|y)'s spread.
- :class:`BestValidation`: the epoch with the best validation accuracy (``select="best-validation"``),
  and early stopping after ``patience`` epochs without a better one.
- :class:`TensorBoardLog`: each epoch's record as TensorBoard scalars.
- :class:`ProgressBar`: a tqdm bar over epochs.
- :class:`Checkpoint`: ``metrics.jsonl`` each epoch, ``last.pt`` (the whole training state, for exact
  resume) every ``checkpoint_every`` epochs and at the end, ``last_good.pt`` when a step diverges.

A callback with state that must survive a resume names its key in ``last.pt`` (``state_key``) and
gives ``state()`` / ``load_state()``; the loop saves and restores it with the rest.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch
from tqdm.auto import tqdm

from .io import atomic_torch_save, atomic_write_text, load_checkpoint
from .metrics import honest_mapping, majority_mapping
from .models.base import Batch

if TYPE_CHECKING:  # the loop imports this module; annotations only the other way
    from .train import TrainingData, TrainingLoop

__all__ = ["Callback", "EpochMonitor", "BestValidation", "TensorBoardLog", "ProgressBar", "Checkpoint",
           "MONITOR_POINTS", "monitor_batch", "monitored_loss_terms", "monitored_member_terms", "validation_metrics",
           "latent_prior_spread"]


class Callback:
    """One piece of the trainer's behaviour; every hook does nothing unless overridden."""

    #: The key of this callback's state in ``last.pt`` (None: it keeps none).
    state_key: str | None = None

    def on_train_start(self, loop: TrainingLoop) -> None:
        """Before the first epoch of this session (after a resume has put the state back)."""

    def on_epoch_end(self, loop: TrainingLoop, record: dict[str, Any]) -> None:
        """After each epoch; ``record`` (already in ``loop.history``) may gain entries."""

    def on_diverged(self, loop: TrainingLoop, epoch: int) -> None:
        """A step's loss or gradients were not finite in 0-based ``epoch`` (the loop raises after);
        ``loop.diverged_state`` is (the model's state before that step, its 1-based step number)."""

    def on_train_end(self, loop: TrainingLoop) -> None:
        """After the last epoch of this session (not after a divergence)."""

    def state(self) -> Any:
        return None

    def load_state(self, loop: TrainingLoop, state: Any) -> None:
        """Put back what :meth:`state` returned (``state`` is None for a checkpoint without it)."""


# -- the per-epoch monitor ----------------------------------------------------------------------
#: Points of each training set the per-epoch loss terms are measured on.
MONITOR_POINTS = 1000


def monitor_batch(data: TrainingData, binarize: bool, seed: int, labelled_scale: float) -> Batch:
    """A fixed sample of the training data (at most MONITOR_POINTS of each set, one fixed Bernoulli
    draw when training binarises), drawn from its own generator: the training's random streams are
    not touched, so every epoch's terms are measured on the same points."""
    generator = torch.Generator().manual_seed(seed)

    def sample(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randperm(len(x), generator=generator)[:MONITOR_POINTS].to(x.device)
        return x[idx], idx

    def binarized(x: torch.Tensor | None) -> torch.Tensor | None:
        if x is None or not binarize:
            return x
        return torch.bernoulli(x.cpu(), generator=generator).to(x.device)

    x_u = x_l = y_l = w_l = None
    if len(data.x_unlabelled):
        x_u, _ = sample(data.x_unlabelled)
    if len(data.x_labelled):
        x_l, idx = sample(data.x_labelled)
        y_l = data.y_labelled[idx]
        w_l = data.w_labelled[idx] if data.w_labelled is not None else None
    return Batch(binarized(x_u), binarized(x_l), y_l, w_l, labelled_scale)


def monitored_loss_terms(model: torch.nn.Module, batch: Batch) -> dict[str, float]:
    """The model's loss terms on the monitor batch (``loss_<term>`` keys), drawn from a fixed seed
    inside a forked random stream, with the model's buffers put back (BatchNorm statistics)."""
    devices = [t.device for t in (batch.x_unlabelled, batch.x_labelled) if t is not None and t.device.type == "cuda"]
    buffers = [(b, b.clone()) for b in model.buffers()]
    with torch.random.fork_rng(devices=devices[:1]), pyro.validation_enabled(False):
        torch.manual_seed(0)
        terms = model.loss_terms(batch)
    with torch.no_grad():
        for buffer, before in buffers:
            buffer.copy_(before)
    return {f"loss_{name}": float(value) for name, value in sorted(terms.items())}


def monitored_member_terms(stacked: torch.nn.Module, batch: Batch) -> list[dict[str, float]]:
    """Each member's loss terms on its monitor batch (``batch``: the members' monitor batches stacked,
    (E, ...)), in one pass of a stacked model, measured as :func:`monitored_loss_terms` measures one
    model's (the draws differ from a member's alone, except in a stack of one)."""
    devices = [t.device for t in (batch.x_unlabelled, batch.x_labelled) if t is not None and t.device.type == "cuda"]
    with torch.random.fork_rng(devices=devices[:1]), pyro.validation_enabled(False):
        torch.manual_seed(0)
        terms = stacked.loss_terms(batch)
    members = stacked.members
    values = {name: torch.as_tensor(value).expand(members).tolist() for name, value in sorted(terms.items())}
    return [{f"loss_{name}": float(v[member]) for name, v in values.items()} for member in range(members)]


def validation_metrics(model: torch.nn.Module, data: TrainingData) -> dict[str, float]:
    """Validation accuracy (honest and paper-protocol), slots in use, known and novel accuracy."""
    if len(data.x_val) == 0 or not (data.y_val >= 0).any():
        return {}
    model.eval()
    slots = model.predict_proba(data.x_val).argmax(-1).cpu().numpy()
    model.train()
    labelled = data.y_val >= 0
    slots, labels = slots[labelled], data.y_val[labelled]
    # Progress signal only: extra slots mapped on the validation set itself (paper protocol).
    mapping = majority_mapping(slots, labels, model.config.n_slots)
    correct = mapping[slots] == labels
    record = {"val_cluster_accuracy": float(correct.mean()), "val_slots_used": int(len(np.unique(slots)))}
    if data.known_classes is not None:
        # Honest: known slots keep their classes, extra slots their validation majority.
        record["val_accuracy"] = float((honest_mapping(data.known_classes, model.config.n_slots, slots, labels)[slots]
                                        == labels).mean())
        # A model that collapses onto the known classes shows it here: novel accuracy falls and
        # the extra slots empty.
        known = np.isin(labels, data.known_classes)
        record["val_extra_slots_used"] = int(len(np.unique(slots[slots >= len(data.known_classes)])))
        for name, part in (("val_known_accuracy", known), ("val_novel_accuracy", ~known)):
            if part.any():
                record[name] = float(correct[part].mean())
    return record


def latent_prior_spread(model: torch.nn.Module, data: TrainingData) -> dict[str, float]:
    """The mean sd of a learned p(z|y) over the known slots and over the extra slots. GM-DGM's
    collapse at batch 4 (docs/RESULTS.md, issue 24) shows here, the known slots widening far past the
    extra ones, in the same epochs as the extra slots empty."""
    sd = model.latent_prior_sd() if data.known_classes is not None else None
    if sd is None:
        return {}
    n_known = len(data.known_classes)
    parts = (("prior_z_sd_known", sd[:n_known]), ("prior_z_sd_extra", sd[n_known:]))
    return {name: float(part.mean()) for name, part in parts if len(part)}


class EpochMonitor(Callback):
    """Each epoch's record gains the named loss terms on a fixed sample of the training data, the
    validation numbers and the spread of a learned p(z|y).

    ``measured_terms`` are terms measured elsewhere for this epoch (a stack of runs measures all its
    members' in one pass, :func:`monitored_member_terms`); used once, in place of measuring them here."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.measured_terms: dict[str, float] | None = None

    def on_epoch_end(self, loop: TrainingLoop, record: dict[str, Any]) -> None:
        terms, self.measured_terms = self.measured_terms, None
        record.update(terms if terms is not None else monitored_loss_terms(loop.model, self.batch))
        record.update(validation_metrics(loop.model, loop.data))
        record.update(latent_prior_spread(loop.model, loop.data))


# -- model selection and early stopping --------------------------------------------------------
class BestValidation(Callback):
    """The epoch with the best validation accuracy so far and its weights (``best.pt`` in a run
    folder, else kept in memory), for ``select="best-validation"``; with ``patience``, the run stops
    after that many epochs without a better one. At the end the model gets the chosen weights."""

    state_key = "best_validation"

    def __init__(self, patience: int | None = None) -> None:
        self.patience = patience
        self.score: float | None = None
        self.epoch: int | None = None
        self.since = 0
        self._weights: dict[str, torch.Tensor] | None = None

    def state(self) -> dict[str, Any]:
        return {"score": self.score, "epoch": self.epoch, "since": self.since}

    def load_state(self, loop: TrainingLoop, state: Any) -> None:
        saved = state or {}
        self.score, self.epoch, self.since = saved.get("score"), saved.get("epoch"), saved.get("since", 0)
        if self.epoch is not None and loop.run_dir is not None and not (loop.run_dir / "best.pt").is_file():
            if not loop.finished:
                warnings.warn(f"best.pt (the weights of epoch {self.epoch}, the best on validation so far) is "
                              f"missing; the selection starts again from epoch {loop.start_epoch + 1}",
                              UserWarning, stacklevel=4)
            self.score, self.epoch, self.since = None, None, 0

    def on_train_start(self, loop: TrainingLoop) -> None:
        if self.epoch is None and loop.finished and loop.history:
            # best.pt was lost and no epoch is left to choose again: hand back the last epoch's weights, and say so.
            record = loop.history[-1]
            self._keep(loop, record, in_memory=True)
            record["selection_note"] = (f"best.pt was missing when the run finished: the weights handed back are "
                                        f"epoch {record['epoch']}'s (the last), not the best on validation")
            warnings.warn(record["selection_note"], UserWarning, stacklevel=4)

    def on_epoch_end(self, loop: TrainingLoop, record: dict[str, Any]) -> None:
        """Keep this epoch's weights if its validation accuracy beats every earlier one's."""
        score = record.get("val_accuracy", record.get("val_cluster_accuracy"))
        if self.score is None or score > self.score:
            self._keep(loop, record, in_memory=loop.run_dir is None)
        else:
            self.since += 1
            record["selected_epoch"] = self.epoch
        if self.patience is not None and self.since >= self.patience:
            record["stopped_early"] = True
            loop.should_stop = True

    def on_train_end(self, loop: TrainingLoop) -> None:
        if loop.finished:  # the run is over: hand back the selected epoch's model
            weights = self._weights if self._weights is not None else load_checkpoint(
                loop.run_dir / "best.pt", map_location=loop.device)
            loop.model.load_state_dict(weights)

    def _keep(self, loop: TrainingLoop, record: dict[str, Any], in_memory: bool) -> None:
        self.score = record.get("val_accuracy", record.get("val_cluster_accuracy"))
        self.epoch, self.since = record["epoch"], 0
        if in_memory:
            self._weights = {k: v.detach().clone() for k, v in loop.model.state_dict().items()}
        else:
            atomic_torch_save(loop.model.state_dict(), loop.run_dir / "best.pt")
        record["selected_epoch"] = self.epoch


# -- logging -------------------------------------------------------------------------------------
class TensorBoardLog(Callback):
    """Each epoch's numbers as TensorBoard scalars under ``RUN/tensorboard``."""

    def __init__(self, run_dir: Path) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("tensorboard logging needs the tensorboard package: pip install "
                             "'pyro_sus[tensorboard]'") from None
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def on_epoch_end(self, loop: TrainingLoop, record: dict[str, Any]) -> None:
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                self.writer.add_scalar(key, value, record["epoch"])
        self.writer.flush()

    def on_train_end(self, loop: TrainingLoop) -> None:
        self.writer.close()


class ProgressBar(Callback):
    """A tqdm bar over the run's epochs with the loss and validation accuracy."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar = enabled, None

    def on_train_start(self, loop: TrainingLoop) -> None:
        self.bar = tqdm(total=loop.config.epochs, initial=loop.start_epoch, desc="training", unit="epoch",
                        disable=not self.enabled)

    def on_epoch_end(self, loop: TrainingLoop, record: dict[str, Any]) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{record['loss']:.2f}", **({"val_acc": f"{record['val_cluster_accuracy']:.3f}"}
                                                               if "val_cluster_accuracy" in record else {}))

    def on_train_end(self, loop: TrainingLoop) -> None:
        self.bar.close()


# -- files -----------------------------------------------------------------------------------------
class Checkpoint(Callback):
    """``metrics.jsonl`` every epoch; ``last.pt`` every ``every`` epochs, at the session's last epoch
    and when the run stops early; ``last_good.pt`` (the state before the first non-finite step) when
    a step diverges. Runs last among the callbacks, so the files hold every other callback's work."""

    def __init__(self, run_dir: Path, every: int) -> None:
        self.run_dir, self.every = run_dir, every

    def on_epoch_end(self, loop: TrainingLoop, record: dict[str, Any]) -> None:
        atomic_write_text(self.run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in loop.history))
        epoch = record["epoch"]
        if epoch % self.every == 0 or epoch == loop.last_epoch or loop.should_stop:
            atomic_torch_save(loop.state_dict(), self.run_dir / "last.pt")

    def on_diverged(self, loop: TrainingLoop, epoch: int) -> None:
        state, step = loop.diverged_state
        atomic_torch_save({"model": state, "epoch": epoch, "step": step}, self.run_dir / "last_good.pt")
