"""Where a computation reads a value back from the device: each such read waits for the device's
queue (on CUDA it stalls the GPU) and cannot be captured in a CUDA graph.

:func:`host_reads` runs a function under a dispatch mode and records every operation that needs a
tensor's value on the host: a Python number or truth value taken from a tensor (``.item()``,
``bool(t)``, ``if t:``) and the operations whose output size depends on values (``nonzero``,
``masked_select``, indexing with a boolean mask). It works on the CPU too, where reads cost nothing,
so a test can check on any machine that a training step reads nothing back.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
# TorchDispatchMode's documented home (PyTorch's notes on extending with __torch_dispatch__); there is
# no other import path for a mode that sees every aten operation.
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostRead", "host_reads", "recording_host_reads"]

# A value read back: a Python scalar or truth value from a tensor.
_VALUE_READS = {"aten::_local_scalar_dense", "aten::is_nonzero", "aten::equal"}
# An output whose size depends on the values (found on the device, then read back to allocate).
_SIZE_READS = {"aten::nonzero", "aten::masked_select", "aten::unique_dim", "aten::_unique2", "aten::unique_consecutive"}
_TORCH = str(Path(torch.__file__).parent)
# torch's own dispatch machinery between the code that asked and this module: never the asker.
_PLUMBING = tuple(str(Path(_TORCH, name)) for name in ("_dynamo", "_ops.py", "_compile.py", "utils/_python_dispatch.py"))


@dataclass(frozen=True)
class HostRead:
    """One read: the operation, the device of the tensor read (a read of a CPU tensor waits for no
    device), the innermost frame outside torch that asked for it, and the innermost frame of all."""

    op: str
    device: str
    where: str
    origin: str

    @property
    def package(self) -> str:
        """``pyro``, ``pyro_sus``, ... : the top-level package of the file that asked."""
        parts = Path(self.where.split(":")[0]).parts
        for name in ("pyro_sus", "pyro", "opt_einsum"):
            if name in parts:
                return name
        return "other"


def _frames() -> tuple[str, str]:
    """(the innermost frame outside torch, the innermost frame of all), as ``file:line (function)``."""
    stack = [f for f in traceback.extract_stack() if f.filename != __file__ and not f.filename.startswith(_PLUMBING)]
    text = [f"{f.filename}:{f.lineno} ({f.name})" for f in stack]
    outside = [t for f, t in zip(stack, text) if not f.filename.startswith(_TORCH)]
    return (outside[-1] if outside else "torch"), (text[-1] if text else "torch")


def _reads_back(func: Any, args: tuple, kwargs: dict) -> bool:
    name = func._schema.name
    if name in _VALUE_READS or name in _SIZE_READS:
        return True
    if name == "aten::repeat_interleave":  # tensor repeats without output_size: the total is read back
        repeats = args[1] if len(args) > 1 else kwargs.get("repeats", args[0] if args else None)
        return isinstance(repeats, torch.Tensor) and kwargs.get("output_size") is None
    if name in ("aten::index", "aten::index_put", "aten::index_put_"):  # a boolean mask among the indices
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())
    return False


class _Recorder(TorchDispatchMode):
    def __init__(self, reads: list[HostRead]) -> None:
        super().__init__()
        self.reads = reads

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if _reads_back(func, args, kwargs):
            read = args[0] if args and isinstance(args[0], torch.Tensor) else None
            self.reads.append(HostRead(func._schema.name, str(read.device) if read is not None else "?", *_frames()))
        return func(*args, **kwargs)


@contextmanager
def recording_host_reads() -> Iterator[list[HostRead]]:
    """Inside: every host read is appended to the list handed out."""
    reads: list[HostRead] = []
    with _Recorder(reads):
        yield reads


def host_reads(fn: Callable[[], Any]) -> list[HostRead]:
    """The host reads of one call of ``fn``, in order."""
    with recording_host_reads() as reads:
        fn()
    return reads
