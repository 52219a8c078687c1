"""Atomic file writes (temp file + rename) and checked reading of the files a run folder holds.

Loading never runs code: checkpoints are read with ``torch.load(weights_only=True)`` (tensors and
plain Python data only), arrays with ``allow_pickle=False``, and every malformed file is a one-line
error that names it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pickle
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, RunBusyError, RunFileError

__all__ = ["atomic_write_text", "atomic_write_json", "atomic_savez", "atomic_torch_save", "atomic_savefig",
           "load_checkpoint", "read_json", "run_folder_lock", "run_folder_holder", "CheckpointError",
           "UnsafeCheckpointError", "RunFileError", "RunBusyError", "DiskFullError", "LOCK_NAME"]


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds objects other than tensors and plain data: it could run code, so it is not loaded."""


class DiskFullError(OSError):
    """No space was left for a file; the file it would have replaced is untouched."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic(path: Path, write) -> None:
    """Write through a temp file in the same folder and rename it over ``path``.

    The rename replaces whatever ``path`` is, a symbolic link included, and never writes through
    it: a link planted in a run folder (``RUN/confusion.png -> ~/notes.txt``) is replaced by the
    new file, and the file it pointed at is left as it was."""
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
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno == errno.ENOSPC:
            kept = "the previous file is untouched" if path.exists() else "nothing was written"
            full = DiskFullError(f"no space left on the device while writing {path} ({kept}); free some space "
                                 f"and run the command again")
            full.errno = errno.ENOSPC
            raise full from None
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


def atomic_savefig(fig: Any, path: str | Path, **options: Any) -> None:
    """``fig.savefig`` through a temp file and a rename (the format from ``path``'s suffix, PNG by default)."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    _atomic(path, lambda handle: fig.savefig(handle, format=fmt, **options))


#: The lock file a process holds in a run folder while it writes there (ignored when a folder's
#: emptiness is judged).
LOCK_NAME = ".pyro-sus.lock"


#: Run folders this process holds the lock of (resolved path -> depth): a nested hold (``fit``
#: evaluating the run it trains) is the same writer, not a second one.
_HELD: dict[str, int] = {}


@contextlib.contextmanager
def run_folder_lock(run_dir: str | Path, what: str) -> Iterator[None]:
    """Hold the run folder's lock while writing there: one writer per run folder.

    ``what`` says what is done to the folder ("trained", "evaluated"); a second process is refused
    with :class:`RunBusyError` saying what is being done to it, and by which process. The lock is
    ``flock`` on ``RUN/.pyro-sus.lock`` (the kernel releases it if the process dies), and the file is
    removed on release. Where ``fcntl`` is missing (Windows) there is no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    key = str(Path(run_dir).resolve())
    if _HELD.get(key):
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    path = Path(run_dir) / LOCK_NAME
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "in use by another process"
            os.close(fd)
            raise RunBusyError(f"{run_dir} is {holder}: wait for it to finish (a run folder has one writer at a "
                               f"time), or use another folder") from None
        # The holder before us may have removed the file on release: then lock the new one instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    _HELD[key] = 1
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"being {what} by process {os.getpid()}".encode())
        yield
    finally:
        del _HELD[key]
        path.unlink(missing_ok=True)  # before unlocking: a process waiting on the old file retries
        os.close(fd)


def run_folder_holder(run_dir: str | Path) -> str | None:
    """What another process does holding the run folder's lock ("being trained by process 123"), or None."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    path = Path(run_dir) / LOCK_NAME
    if _HELD.get(str(Path(run_dir).resolve())) or not path.is_file() or path.is_symlink():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 200).decode(errors="replace").strip() or "in use by another process"
    finally:
        os.close(fd)  # closing drops a lock this probe took
    return None


def _unsafe_globals(path: Path) -> list[str]:
    """The globals a checkpoint's pickle would import, beyond what we allow (read, never run)."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # not a torch zip file: the load below says it is corrupt
        return []


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
            f"refused to load {path}: it is not a pyro_sus checkpoint (it would import {', '.join(unsafe[:5])}; a "
            f"pyro_sus checkpoint holds only tensors and plain data). Nothing in it was run.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch words every refusal of its restricted unpickler alike; a refused global or class
        # names itself, anything else (a broken pickle) reads as a corrupt file below.
        text = str(err)
        found = re.search(r"GLOBAL (\S+)", text)
        if found is None and "got <" not in text:
            raise CheckpointError(f"{path} is not a pyro_sus checkpoint: it is corrupt or not a torch checkpoint"
                                  ) from None
        # torch's own message goes on to advise allowing the global; for a file we did not write, that
        # advice is wrong, so only what it would import is named.
        what = f"it would import {found.group(1)}" if found else "it holds objects other than tensors and plain data"
        raise UnsafeCheckpointError(f"refused to load {path}: it is not a pyro_sus checkpoint ({what}; a pyro_sus "
                                    f"checkpoint holds only tensors and plain data). Nothing in it was run.") from None
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
