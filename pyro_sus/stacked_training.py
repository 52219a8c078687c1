"""Training runs that differ only in seed together: one stacked model (:mod:`pyro_sus.stacking`), one
Adam step for all, each run still its own :class:`pyro_sus.train.TrainingLoop` with its own data,
data order, callbacks (monitor, best validation, early stopping, checkpoints) and run folder.

After every epoch each run's loop gets its member's weights and optimizer state, its record and
its callbacks, exactly as if it had trained alone: its ``last.pt`` resumes it alone or in a stack.
What a stack shares is the noise: binarisation and the guide's draws come from one stream, seeded
with the first run's seed (a stack of one run is that run trained alone). A run whose step diverges
leaves the stack (its ``last_good.pt`` is written as alone); the others train on, unaffected, since
no term of the loss mixes members.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from .callbacks import EpochMonitor, monitored_member_terms
from .models.base import Batch
from .nn import network_precision, PRECISIONS
from .tracing import TracedLoss
from .stacking import (member_entries, member_optimizer_state, member_state, stack_models, stack_optimizer_states,
                       stacking_refusal)
from .train import TrainingDiverged, TrainingLoop, _without_pyro_nan_warning, seed_everything

__all__ = ["StackedTrainingLoop", "StackedTrainStep", "train_stacked", "stacking_difference"]


def stacking_difference(loops: Sequence[TrainingLoop]) -> str | None:
    """Why these runs cannot train as one stack (options other than the seed, data sizes, label
    weights, a model that does not stack), or None when they can."""
    first = loops[0]
    reason = stacking_refusal(first.model)
    if reason:
        return reason
    plain = dataclasses.replace(first.config, seed=0, device="auto")
    for loop in loops[1:]:
        if dataclasses.replace(loop.config, seed=0, device="auto") != plain or loop.device != first.device:
            return "their training options differ in more than the seed"
        if type(loop.model) is not type(first.model) or loop.model.config != first.model.config:
            return "their models differ"
        sizes = [(len(x.data.x_unlabelled), len(x.data.x_labelled)) for x in (first, loop)]
        if sizes[0] != sizes[1]:
            return f"their training sets differ in size (unlabelled, labelled: {sizes[0]} and {sizes[1]})"
    if any(loop.data.w_labelled is not None for loop in loops):
        return "weighted labels (active labelling) are not stacked"
    return None


class _MemberWatch:
    """Per member, the first step whose loss or gradients were not finite, and the member's state
    before it; read back from the device every ``check_every`` steps and at each epoch's end."""

    def __init__(self, model: torch.nn.Module, device: torch.device, deferred: bool) -> None:
        self.model, self.deferred = model, deferred
        members = model.members
        self.seen = torch.zeros(members, dtype=torch.bool, device=device)
        self.step = torch.zeros(members, dtype=torch.long, device=device)
        self.loss = torch.zeros(members, device=device)
        self.reported: set[int] = set()
        self.live = member_entries(model)
        self.kept = {k: v.detach().clone() for k, v in self.live.items()} if deferred else None
        self.before: dict[int, dict[str, torch.Tensor]] = {}

    def record(self, member_losses: torch.Tensor, step: int) -> torch.Tensor:
        """Note step ``step`` (before its update); returns each member's "finite so far" flag."""
        # Gradients too: a NaN input can leave the loss finite while every gradient is NaN.
        sums = [member_losses.detach()] + [p.grad.flatten(1).sum(1) for p in self.model.parameters()
                                           if p.grad is not None]
        finite = torch.isfinite(torch.stack(sums)).all(0)
        first = ~self.seen & ~finite
        self.step = torch.where(first, step, self.step)
        self.loss = torch.where(first, member_losses.detach(), self.loss)
        if self.kept is not None:
            for key, value in self.live.items():
                self.kept[key].copy_(torch.where(first.view(-1, *[1] * (value.dim() - 1)), value, self.kept[key]))
        self.seen = self.seen | ~finite
        return ~self.seen

    def newly_diverged(self) -> list[int]:
        """Members found diverged since the last call (reads the flags back from the device); their
        states before the bad step are kept for :meth:`state_before`."""
        members = [m for m in self.seen.nonzero().flatten().tolist() if m not in self.reported]
        for member in members:
            self.reported.add(member)
            # Checked every step, the state now is the one before the bad step; else the copy kept then.
            kept = {k: v[member].clone() for k, v in self.kept.items()} if self.kept is not None else {}
            self.before[member] = {**member_state(self.model, member), **kept}
        return members

    def state_before(self, member: int) -> dict[str, torch.Tensor]:
        return self.before[member]


class StackedTrainStep:
    """One Adam step of a stacked model: its loss (the members' per-point means, summed), backward,
    the per-member finite watch, gradient value clipping and Adam; returns each member's loss."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, config: Any,
                 device: torch.device) -> None:
        self.model, self.optimizer, self.config, self.device = model, optimizer, config, device
        self.check_every = config.finite_check_every or (1 if device.type == "cpu" else 50)
        self.network_dtype = PRECISIONS[config.precision]
        self.watch = _MemberWatch(model, device, deferred=self.check_every > 1)
        # Traced after the stack is built and its weights set: the trace shares the parameters.
        self.loss_fn = TracedLoss(model) if config.jit else model.loss

    def __call__(self, step: int, global_step: int, batch: Batch) -> tuple[torch.Tensor, list[int]]:
        """Step ``step`` of the epoch on a stacked ``batch``: each member's loss (zero once it diverged)
        and the members found diverged at this step's check."""
        self.model.before_step(global_step)
        # The members' own watch covers NaN; Pyro's warning would read the loss back every step.
        # Ones whose gradient is each member's loss: one backward gives the members' losses too.
        weights = torch.ones(self.model.members, 1, device=self.device, requires_grad=True)
        with pyro.validation_enabled(self.config.validate), _without_pyro_nan_warning(True), \
                network_precision(self.network_dtype):
            loss = self.loss_fn(dataclasses.replace(batch, member_weights=weights))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        member_losses = weights.grad.flatten()
        finite = self.watch.record(member_losses, step)
        newly = self.watch.newly_diverged() if (step + 1) % self.check_every == 0 else []
        if self.config.clip_value is not None:
            torch.nn.utils.clip_grad_value_(self.model.parameters(), self.config.clip_value)
        self.optimizer.step()
        return torch.where(finite, member_losses, 0.0), newly


class StackedTrainingLoop:
    """Train ``loops`` (one :class:`TrainingLoop` per run, built and, to continue, resumed as usual)
    as one stacked model; :meth:`run` returns each run's history, or the TrainingDiverged it met."""

    def __init__(self, loops: Sequence[TrainingLoop], progress: bool = True) -> None:
        if not loops:
            raise ValueError("a stack needs at least one run")
        reason = stacking_difference(loops)
        if reason:
            raise ValueError(f"these runs cannot train stacked: {reason}")
        self.loops = list(loops)
        self.training = [i for i, loop in enumerate(self.loops) if not loop.finished]
        self.progress = progress
        self.errors: dict[int, TrainingDiverged] = {}
        if not self.training:
            return
        starts = {self.loops[i].start_epoch for i in self.training}
        if len(starts) > 1:
            raise ValueError(f"the runs of a stack must continue from one epoch; their checkpoints are at epochs "
                             f"{sorted(starts)}: continue them one by one")
        first = self.loops[self.training[0]]
        self.config, self.device = first.config, first.device
        self.start_epoch, self.last_epoch = first.start_epoch, first.last_epoch
        self.n_steps, self.labelled_scale, self.binarize = first.n_steps, first.labelled_scale, first.binarize
        self.model = stack_models([self.loops[i].model for i in self.training])
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.config.learning_rate,
                                          betas=(self.config.adam_beta1, 0.999))
        if self.start_epoch:  # continuing: the members' optimizer states, stacked
            self.optimizer.load_state_dict(stack_optimizer_states(
                [self.loops[i].optimizer.state_dict() for i in self.training]))
        self.scheduler = type(first.scheduler)(self.optimizer, **_scheduler_options(first))
        self.scheduler.load_state_dict(first.scheduler.state_dict())
        # The noise the members share: from the first run's seed, or where its checkpoint left it.
        if first.resumed_rng is not None:
            first.restore_rng()
        else:
            seed_everything(first.config.seed)
        members = [self.loops[i].data for i in self.training]
        self.x_unlabelled = torch.stack([d.x_unlabelled for d in members])
        self.x_labelled = torch.stack([d.x_labelled for d in members])
        self.y_labelled = torch.stack([d.y_labelled for d in members])
        self.train_step = StackedTrainStep(self.model, self.optimizer, self.config, self.device)

    def run(self) -> list[list[dict[str, Any]] | TrainingDiverged]:
        """Train every unfinished run up to the session's last epoch; each run's history (or error)."""
        for loop in self.loops:
            loop.model.train()
            for callback in loop.callbacks:
                callback.on_train_start(loop)
        active = set(self.training)
        if self.training:
            self.model.train()
            bar = tqdm(total=self.config.epochs, initial=self.start_epoch, unit="epoch", disable=not self.progress,
                       desc=f"training {len(self.training)} runs stacked")
            for epoch in range(self.start_epoch, self.last_epoch):
                records = self._epoch(epoch, active)
                self._measure_terms(active)
                optimizer_state, schedule = self.optimizer.state_dict(), self.scheduler.state_dict()
                for member, index in enumerate(self.training):
                    if index not in active:
                        continue
                    loop = self.loops[index]
                    loop.model.load_state_dict(member_state(self.model, member))
                    loop.optimizer.load_state_dict(member_optimizer_state(optimizer_state, member))
                    loop.scheduler.load_state_dict(schedule)
                    loop.history.append(records[member])
                    loop.epoch = epoch + 1
                    for callback in loop.callbacks:
                        callback.on_epoch_end(loop, loop.history[-1])
                    if loop.should_stop:
                        active.discard(index)
                bar.update(1)
                if not active:
                    break
            bar.close()
        for index, loop in enumerate(self.loops):
            if index not in self.errors:
                for callback in loop.callbacks:
                    callback.on_train_end(loop)
        return [self.errors.get(i, loop.history) for i, loop in enumerate(self.loops)]

    def _epoch(self, epoch: int, active: set[int]) -> list[dict[str, Any]]:
        """One pass over every member's data (0-based ``epoch``); each member's record."""
        started = time.perf_counter()
        members = len(self.training)
        losses = torch.zeros(members, device=self.device)
        rows = torch.arange(members, device=self.device).unsqueeze(-1)
        batch_size = self.config.batch_size
        orders_u, orders_l = [], []
        for index in self.training:  # each run's data order from its own generator, as it draws it alone
            loop = self.loops[index]
            order_u, order_l = loop.data.epoch_order(self.n_steps, batch_size, loop.generator)
            orders_u.append(order_u)
            orders_l.append(order_l)
        order_u = torch.stack(orders_u) if orders_u[0] is not None else None
        order_l = torch.stack(orders_l) if orders_l[0] is not None else None
        for step in range(self.n_steps):
            x_u = self.x_unlabelled[rows, order_u[:, step]] if order_u is not None else None
            x_l = self.x_labelled[rows, order_l[:, step]] if order_l is not None else None
            y_l = self.y_labelled[rows, order_l[:, step]] if order_l is not None else None
            if self.binarize:
                x_u = torch.bernoulli(x_u) if x_u is not None else None
                x_l = torch.bernoulli(x_l) if x_l is not None else None
            step_losses, newly = self.train_step(step, epoch * self.n_steps + step,
                                                 Batch(x_u, x_l, y_l, None, self.labelled_scale))
            losses += step_losses
            self._diverged(newly, epoch, active)
        self._diverged(self.train_step.watch.newly_diverged(), epoch, active)  # every epoch ends with a check
        self.scheduler.step()
        seconds = time.perf_counter() - started
        lr = self.optimizer.param_groups[0]["lr"]
        return [{"epoch": epoch + 1, "loss": float(loss) / self.n_steps, "lr": lr, "seconds": seconds}
                for loss in losses.tolist()]

    def _measure_terms(self, active: set[int]) -> None:
        """Every member's monitored loss terms in one pass of the stack, handed to each run's monitor."""
        monitors = [next((c for c in self.loops[i].callbacks if isinstance(c, EpochMonitor)), None)
                    for i in self.training]
        if any(m is None for m in monitors) or not any(i in active for i in self.training):
            return
        batches = [m.batch for m in monitors]
        stack = lambda name: (torch.stack([getattr(b, name) for b in batches])  # noqa: E731
                              if getattr(batches[0], name) is not None else None)
        batch = Batch(stack("x_unlabelled"), stack("x_labelled"), stack("y_labelled"), None,
                      batches[0].labelled_scale)
        for monitor, terms in zip(monitors, monitored_member_terms(self.model, batch)):
            monitor.measured_terms = terms

    def _diverged(self, members: list[int], epoch: int, active: set[int]) -> None:
        """Members whose step diverged leave the stack: each run's callbacks are told (last_good.pt), and
        its error is kept for :meth:`run` to return."""
        watch = self.train_step.watch
        for member in members:
            index = self.training[member]
            loop = self.loops[index]
            active.discard(index)
            loop.diverged_state = (watch.state_before(member), int(watch.step[member]) + 1)
            for callback in loop.callbacks:
                callback.on_diverged(loop, epoch)
            self.errors[index] = TrainingDiverged.at(float(watch.loss[member]), epoch + 1,
                                                     int(watch.step[member]) + 1,
                                                     loop.run_dir / "last_good.pt" if loop.run_dir else None)


def _scheduler_options(loop: TrainingLoop) -> dict[str, Any]:
    if isinstance(loop.scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        return {"T_max": loop.config.epochs}
    return {"lr_lambda": lambda epoch: 1.0}


def train_stacked(loops: Sequence[TrainingLoop], resume: bool = False, progress: bool = True
                  ) -> list[list[dict[str, Any]] | TrainingDiverged]:
    """Train runs that differ only in seed (one built :class:`TrainingLoop` each) as one stack;
    ``resume`` continues each from its ``last.pt`` first. Returns each run's history, or the
    TrainingDiverged that ended it (the others train on)."""
    if resume:
        for loop in loops:
            loop.resume()
    return StackedTrainingLoop(loops, progress=progress).run()
