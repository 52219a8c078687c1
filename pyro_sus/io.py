"""Atomic file writes (temp file + rename) and checked checkpoint loading."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["atomic_write_text", "atomic_write_json", "atomic_savez", "atomic_torch_save", "load_checkpoint", "CheckpointError"]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or not one of ours."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one, never half
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash never leaves a half-written file."""
    _atomic(Path(path), lambda handle: handle.write(text.encode()))


def atomic_write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_savez(path: str | Path, **arrays: np.ndarray) -> None:
    """``np.savez`` through a temp file and a rename."""
    _atomic(Path(path), lambda handle: np.savez(handle, **arrays))


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through a temp file and a rename."""
    _atomic(Path(path), lambda handle: torch.save(obj, handle))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with a clear error for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch checkpoint ({err})") from err
