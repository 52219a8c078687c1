"""A run folder's life on disk before its first checkpoint: made (with the parents it needed),
checked free for a fresh run, and cleared of what a run that failed to start wrote, so that the
corrected command can use the same folder. :func:`pyro_sus.fit` and the sweep runner use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .io import LOCK_NAME, RunBusyError, run_folder_holder

__all__ = ["WRITTEN_BEFORE_FIRST_CHECKPOINT", "UNSTARTED_LEFTOVERS", "written_before_first_checkpoint",
           "make_run_folder", "remove_made", "check_free", "remove_unstarted"]


#: What ``fit`` writes into a run folder before its first checkpoint (``last.pt``), with the
#: temp files of atomic writes: all a fresh run removes again when it fails before that point.
WRITTEN_BEFORE_FIRST_CHECKPOINT = ("run.json", "split.npz", "preprocess.npz", "metrics.jsonl", "last_good.pt",
                                   "best.pt")


#: What a fresh run writes before ``run.json``: a folder holding only these has no run in it yet.
UNSTARTED_LEFTOVERS = ("split.npz", "preprocess.npz")


def written_before_first_checkpoint(name: str) -> bool:
    """Whether a file of that name can be all a run left that stopped before its first checkpoint."""
    return name in WRITTEN_BEFORE_FIRST_CHECKPOINT or name == LOCK_NAME or _temp_file(name)


def make_run_folder(run_dir: Path) -> list[Path]:
    """Create ``run_dir`` and its missing parents; the folders created, deepest first. An error names
    the folder and the reason (a read-only file system) before anything is written."""
    made = [p for p in [run_dir, *run_dir.parents] if not p.exists() and not p.is_symlink()]
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        remove_made(made)
        raise OSError(f"cannot create the run folder {run_dir} (--out): {err.strerror or err}; choose a folder "
                      f"you can write to") from None
    return made


def remove_made(made: list[Path]) -> None:
    for folder in made:  # deepest first
        try:
            folder.rmdir()  # only an empty folder goes
        except OSError:
            break


def check_free(run_dir: Path, clear_unstarted: bool = False) -> None:
    """A fresh run needs an empty or absent folder; say what to do with any other.

    A folder that holds only what a run writes before its ``run.json`` (``split.npz``,
    ``preprocess.npz``, temp files: a run killed while it was being set up) holds no run and counts
    as empty; with ``clear_unstarted`` (under the folder's lock) those leftovers are removed."""
    if run_dir.is_symlink() and not run_dir.exists():
        raise FileExistsError(f"--out {run_dir} is a link to {os.readlink(run_dir)}, which does not exist: remove "
                              f"the link or choose another run folder")
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"--out {run_dir} is a file, not a run folder: choose another path")
    if not run_dir.is_dir():
        return
    entries = [p for p in run_dir.iterdir() if p.name != LOCK_NAME]
    if not entries:
        return
    if not (run_dir / "run.json").exists() and all(p.is_file() and p.name in UNSTARTED_LEFTOVERS or _temp_file(p.name)
                                                    for p in entries):
        if clear_unstarted:
            for path in entries:
                path.unlink(missing_ok=True)
        return
    holder = run_folder_holder(run_dir)
    if holder is not None:
        raise RunBusyError(f"{run_dir} is {holder}: wait for it to finish, or choose another run folder")
    if (run_dir / "run.json").is_file() and not (run_dir / "last.pt").is_file():
        raise FileExistsError(f"run folder {run_dir} is not empty: it holds a run stopped before its first "
                              f"checkpoint; start it over with its saved options (--resume), or choose another")
    raise FileExistsError(f"run folder {run_dir} is not empty: choose another, or resume it (--resume)")


def _temp_file(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def remove_unstarted(run_dir: Path) -> None:
    """Remove what a fresh run wrote before its first checkpoint (called under the folder's lock, on a
    folder this process found empty, so every such file is this process's)."""
    for path in run_dir.iterdir():
        if path.is_file() and written_before_first_checkpoint(path.name):
            path.unlink()
