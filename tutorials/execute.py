"""Run every tutorial top to bottom and store its outputs in the notebook (as committed).

    python tutorials/execute.py                      # all, with the tutorials' own settings (CPU, minutes each)
    python tutorials/execute.py 01_semi_unsupervised_quickstart.ipynb

The kernel starts in the repository root, so the runs land in runs/tutorialNN. With CI set in the
environment the notebooks shrink their settings (as the tests run them): outputs stored that way
would show tiny runs, so this script refuses CI.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]


def execute(path: Path) -> float:
    """Execute ``path`` in place; the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    NotebookClient(notebook, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    seconds = time.perf_counter() - started
    # What the stored outputs come from (tests/test_tutorials.py checks it).
    notebook.metadata["pyro_sus"] = {"settings": "the tutorial's own (CI not set)", "seconds": round(seconds),
                                     "date": time.strftime("%Y-%m-%d"), "torch_threads": os.environ.get(
                                         "OMP_NUM_THREADS", "default")}
    nbformat.write(notebook, path)
    return seconds


def main(names: list[str]) -> int:
    if os.environ.get("CI"):
        print("CI is set: the notebooks would run their tiny test settings; unset it to store real outputs",
              file=sys.stderr)
        return 2
    paths = [ROOT / "tutorials" / name for name in names] or sorted((ROOT / "tutorials").glob("*.ipynb"))
    for path in paths:
        print(f"{path.name}: {execute(path):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
