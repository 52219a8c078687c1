"""A model's training loss compiled by tracing (TorchScript), to cut Pyro's per-step Python work.

Pyro's ``JitTraceEnum_ELBO`` traces the ELBO with the weights read from Pyro's global param
store. Our models keep their weights in the module (so several models can train in one process),
and tracing then refuses them as constants. Here ``model.loss`` becomes the ``forward`` of a small
module that holds the model, so ``torch.jit.trace`` sees the weights as module parameters: the
traced graph shares them with the model, and gradients and optimizer steps reach them as usual.
Random draws (z ~ q(z|x, y)) are recorded as random ops, so every call draws afresh from torch's
global generator, as the eager loss does.

A trace replays the operations of one call, so it holds only for models whose loss has no Python
branch on tensor values and no Python state that changes during training: models say so with
``traceable = True``, and the contract test checks each of them against its eager loss.
"""

from __future__ import annotations

import warnings
from typing import Any

import pyro
import torch

from .models.base import Batch

__all__ = ["TracedLoss", "check_traceable"]

_INPUTS = ("x_unlabelled", "x_labelled", "y_labelled", "w_labelled", "member_weights")


def check_traceable(model: torch.nn.Module) -> None:
    """Raise a ValueError unless ``model`` says its loss can be traced (``traceable = True``)."""
    if not model.traceable:
        raise ValueError(f"model {type(model).__name__} does not say its loss can be traced (traceable = False); "
                         f"train it without jit")


class _LossForward(torch.nn.Module):
    """``model.loss`` on the inputs named in ``present`` as a module's forward."""

    def __init__(self, model: torch.nn.Module, present: tuple[str, ...], options: dict[str, Any]) -> None:
        super().__init__()
        self.model = model
        self.present = present
        self.options = options

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        # The inputs absent from this trace (None or empty batches) stay None in the Batch.
        return self.model.loss(Batch(**dict(zip(self.present, tensors)), **self.options))


class TracedLoss:
    """``model.loss`` with the same arguments, traced once for each set of input shapes and options."""

    def __init__(self, model: torch.nn.Module) -> None:
        check_traceable(model)
        self.model = model
        self._traced: dict[tuple, torch.jit.ScriptModule] = {}

    def __call__(self, batch: Batch) -> torch.Tensor:
        """The loss of ``batch``, as ``model.loss(batch)`` gives it."""
        given = {name: getattr(batch, name) for name in _INPUTS}
        options = {"labelled_scale": batch.labelled_scale}
        # An empty batch counts as absent, as it does in the models' loss.
        present = tuple(name for name, value in given.items() if value is not None and len(value))
        tensors = tuple(given[name] for name in present)
        key = (present, tuple((t.shape, t.dtype, t.device) for t in tensors), tuple(sorted(options.items())),
               self.model.training)
        traced = self._traced.get(key)
        if traced is None:
            traced = self._traced[key] = self._trace(present, tensors, options)
        # Unoptimised execution: the optimising executor switches graphs after its first profiled
        # runs, so a resumed run (traced afresh) would round differently from an uninterrupted one.
        with torch.jit.optimized_execution(False):
            return traced(*tensors)

    def _trace(self, present: tuple[str, ...], tensors: tuple[torch.Tensor, ...],
               options: dict[str, Any]) -> torch.jit.ScriptModule:
        # Validation runs Python checks on values, which a trace would freeze; TracerWarnings flag
        # Python scalars read from tensors (shapes), which are fixed per trace by the cache key.
        # torch marks jit.trace as deprecated in favour of torch.compile, which cannot follow Pyro's
        # effect handlers (torch._dynamo.explain on M2's loss: 54 graphs, 53 breaks, torch 2.14);
        # Pyro's own JitTraceEnum_ELBO uses jit.trace too.
        # Tracing runs the loss once; its draws are put back, so a run with jit takes the random
        # path of the same run without it.
        # Its buffers are put back too: the tracing call would otherwise update BatchNorm's running
        # statistics once more than the eager run does.
        devices = sorted({t.device for t in tensors if t.device.type == "cuda"}, key=str)
        buffers = [(b, b.clone()) for b in self.model.buffers()]
        with pyro.validation_enabled(False), warnings.catch_warnings(), torch.random.fork_rng(devices=devices):
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit")
            traced = torch.jit.trace(_LossForward(self.model, present, options), tensors, check_trace=False)
        with torch.no_grad():
            for buffer, before in buffers:
                buffer.copy_(before)
        return traced
