"""Atomic file writes (temp file + rename) and checked reading of the files a run folder holds.

Loading never runs code: checkpoints are read with ``torch.load(weights_only=True)`` (tensors and
plain Python data only), arrays with ``allow_pickle=False``, and every malformed file is a one-line
error that names it.
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["atomic_write_text", "atomic_write_json", "atomic_savez", "atomic_torch_save", "load_checkpoint",
           "read_json", "CheckpointError", "UnsafeCheckpointError", "RunFileError"]


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated or not one of ours."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds objects other than tensors and plain data: it could run code, so it is not loaded."""


class RunFileError(ValueError):
    """A file of a run folder (run.json, mapping.json, ...) is malformed, e.g. after a hand edit."""


# numpy's RNG state (an ndarray) in ``last.pt`` files written by pyro_sus 0.1 before its state went
# in as a tensor. Rebuilding an ndarray calls no code of the file's choosing: the array type and
# dtype are themselves globals that must pass this list.
_NUMPY_CORE = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
_NUMPY_ARRAY_GLOBALS = [_NUMPY_CORE.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


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


def _unsafe_globals(path: Path) -> list[str]:
    """The globals a checkpoint's pickle would import, beyond what we allow (read, never run)."""
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in _NUMPY_ARRAY_GLOBALS}
    allowed |= {"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"}
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a torch zip file: the load below says it is corrupt
        return []
    return [name for name in found if name not in allowed]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)``: tensors and plain data only; clear errors otherwise.

    A file that would import anything else (a function, a class) is refused with
    :class:`UnsafeCheckpointError` before any of it is unpickled, so a crafted checkpoint runs nothing.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    unsafe = _unsafe_globals(path)
    if unsafe:
        raise UnsafeCheckpointError(
            f"refused to load {path}: it would import {', '.join(unsafe[:5])}, which a checkpoint written by "
            f"pyro_sus never holds (only tensors and plain data), so it may have been crafted to run code. "
            f"Nothing in it was run. Use a run folder from a source you trust, or train the run again.")
    try:
        with torch.serialization.safe_globals(_NUMPY_ARRAY_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch words every refusal of its restricted unpickler alike; a refused global or class
        # names itself, anything else (a broken pickle) reads as a corrupt file below.
        reason = next((line.strip() for line in str(err).splitlines() if "GLOBAL" in line or "got <" in line), None)
        if reason is None:
            raise CheckpointError(f"checkpoint {path} is corrupt or not a torch checkpoint "
                                  f"({str(err).split('WeightsUnpickler error:')[-1].split('Check the doc')[0].strip()})"
                                  ) from None
        raise UnsafeCheckpointError(f"refused to load {path}: {reason[:200]}; a checkpoint written by pyro_sus "
                                    f"holds only tensors and plain data. Nothing in it was run.") from None
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a torch checkpoint ({err})") from err


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parse a JSON file of a run folder, or raise RunFileError naming the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RunFileError(f"{path} is not valid JSON ({err}); it is the {what}: restore it or write it again") from None
