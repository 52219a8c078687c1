"""Try the bad inputs and interruptions of docs/RELIABILITY.md and print its table (markdown).

Every case runs the real ``pyro-sus`` command in a scratch folder (digits, tiny networks) and
records its exit status, its last line on stderr and whether anything was left behind.

    python docs/results/reliability/run_cases.py > docs/results/reliability/messages.md
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from pyro_sus import load_dataset

TINY = ["--hidden-classes", "7", "8", "9", "--labelled-fraction", "0.2", "--extra-slots", "4", "--epochs", "2",
        "--hidden-dims", "16", "--z-dim", "2", "--batch-size", "64", "--device", "cpu", "--no-progress"]


class RunsCode:
    """Unpickling this touches a marker file: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def cli(*args: str, cwd: Path) -> tuple[int, str]:
    done = subprocess.run([sys.executable, "-m", "pyro_sus", *args], cwd=cwd, capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return done.returncode, (lines[-1] if lines else done.stdout.strip().splitlines()[-1])


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="pyro-sus-reliability-"))
    digits = load_dataset("digits")
    np.savez(root / "digits.npz", x=digits.x_train, y=digits.y_train, x_test=digits.x_test, y_test=digits.y_test)
    np.savez(root / "new.npz", x=digits.x_test[:5])
    assert cli("train", "--model", "m2", "--out", "base", *TINY, cwd=root)[0] == 0
    rows: list[tuple[str, str, int, str]] = []

    def case(what: str, *args: str, setup=None, check=None) -> None:
        work = root / f"case{len(rows):02d}"
        shutil.copytree(root / "base", work / "base")
        shutil.copy(root / "digits.npz", work / "digits.npz")
        shutil.copy(root / "new.npz", work / "new.npz")
        if setup:
            setup(work)
        code, line = cli(*args, cwd=work)
        note = check(work) if check else ""
        rows.append((what, " ".join(["pyro-sus", *args]).replace(" ".join(TINY), "TINY"), code, line + note))

    marker = lambda work: work / "ran"  # noqa: E731
    no_marker = lambda work: " [marker file created: CODE RAN]" if marker(work).exists() else " [nothing ran]"  # noqa: E731
    left = lambda work: " [folder left: " + ", ".join(sorted(p.name for p in (work / "run").iterdir())) + "]" \
        if (work / "run").exists() else " [no folder left]"  # noqa: E731

    def evil_final(work: Path) -> None:
        torch.save({"w": RunsCode(marker(work))}, work / "base" / "final.pt")

    def evil_last(work: Path) -> None:
        state = torch.load(work / "base" / "last.pt", weights_only=True)
        state["history"] = RunsCode(marker(work))
        torch.save(state, work / "base" / "last.pt")

    case("crafted final.pt (pickle calls os.system)", "predict", "base", "new.npz", setup=evil_final, check=no_marker)
    case("crafted final.pt, evaluate", "evaluate", "base", setup=evil_final, check=no_marker)
    case("crafted last.pt, resume", "train", "--resume", "--out", "base", setup=evil_last, check=no_marker)
    case("predict --output names the input", "predict", "base", "new.npz", "--output", "new.npz", "--overwrite")
    case("predict --output names an existing file", "predict", "base", "new.npz", "--output", "digits.npz")
    for bad in (["--lr", "nan"], ["--lr", "inf"], ["--stop-after", "0"], ["--stop-after", "-1"],
                ["--device", "cuda"], ["--model-option", 'z_dim="big"'], ["--lr", "1e12"]):
        case(f"train {' '.join(bad)}", "train", "--out", "run", *TINY, *bad, check=left)

    def wide(work: Path) -> None:
        np.savez(work / "wide.npz", x=digits.x_train * 16, y=digits.y_train)

    case("x outside [0, 1] with the Bernoulli likelihood", "train", "--dataset", "wide.npz", "--out", "run", *TINY,
         setup=wide, check=left)

    def notes(work: Path) -> None:
        (work / "notes.txt").write_text("mine\n")

    case("--out names an existing file", "train", "--out", "notes.txt", *TINY, setup=notes)

    def killed(work: Path) -> None:
        args = ["train", "--model", "m2", "--out", "run", *TINY[:8], "--epochs", "500", *TINY[10:]]
        process = subprocess.Popen([sys.executable, "-m", "pyro_sus", *args], cwd=work, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (work / "run" / "run.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()

    case("killed (SIGKILL) in epoch 1, then train again", "train", "--model", "m2", "--out", "run", *TINY,
         setup=killed)
    case("killed in epoch 1, then --resume --stop-after 1", "train", "--resume", "--out", "run", "--stop-after", "1",
         "--no-progress", setup=killed, check=lambda work: " [epoch 1 checkpointed]"
         if (work / "run" / "last.pt").is_file() else " [no checkpoint]")

    def train_on_npz(work: Path) -> None:
        assert cli("train", "--dataset", "digits.npz", "--out", "run", *TINY, cwd=work)[0] == 0

    def reorder(work: Path) -> None:
        train_on_npz(work)
        order = np.random.default_rng(0).permutation(len(digits.x_train))
        np.savez(work / "digits.npz", x=digits.x_train[order], y=digits.y_train[order])

    def shrink(work: Path) -> None:
        train_on_npz(work)
        np.savez(work / "digits.npz", x=digits.x_train[:300], y=digits.y_train[:300])

    case("evaluate after the .npz was reordered", "evaluate", "run", setup=reorder)
    case("evaluate after the .npz was shrunk", "evaluate", "run", setup=shrink)
    def moved(work: Path) -> None:
        train_on_npz(work)
        shutil.move(work / "digits.npz", work / "moved.npz")

    case("evaluate after the .npz moved", "evaluate", "run", setup=moved)
    case("evaluate --dataset where it moved", "evaluate", "run", "--dataset", "moved.npz", setup=moved)

    def edit_mapping(work: Path) -> None:
        mapping = json.loads((work / "base" / "mapping.json").read_text())
        mapping["slot_to_class"] = mapping["slot_to_class"][:3]
        (work / "base" / "mapping.json").write_text(json.dumps(mapping))

    case("hand-edited mapping.json (3 slots of 11)", "predict", "base", "new.npz", "--output", "p.csv",
         setup=edit_mapping)
    case("invalid run.json", "evaluate", "base", setup=lambda work: (work / "base" / "run.json").write_text("{oops"))
    case("run.json without its keys", "evaluate", "base",
         setup=lambda work: (work / "base" / "run.json").write_text('{"model": "m2"}'))

    def pickled(work: Path) -> None:
        (work / "pickled.npz").write_bytes(pickle.dumps({"x": [1, 2]}))

    case("a pickle named .npz as --dataset", "train", "--dataset", "pickled.npz", "--out", "run", *TINY,
         setup=pickled)
    case("a pickle as predict input", "predict", "base", "pickled.npz", "--output", "p.csv", setup=pickled)

    def label_99(work: Path) -> None:
        y = digits.y_train.copy()
        y[0] = 99
        np.savez(work / "odd.npz", x=digits.x_train, y=y)

    case("label 99 among the digits' 0-9", "train", "--dataset", "odd.npz", "--out", "run", *TINY[:8],
         "--epochs", "1", *TINY[10:], setup=label_99)
    case("one labelled class, no extra slots", "train", "--hidden-classes", *map(str, range(1, 10)),
         "--extra-slots", "0", "--out", "run", *TINY[8:], check=left)
    case("--resume --epochs 10 on a finished run", "train", "--resume", "--out", "base", "--epochs", "10")

    print("| case | command (TINY: digits, 2 epochs, 16 hidden units) | exit | last line on stderr [what was left] |")
    print("|---|---|---|---|")
    for what, command, code, line in rows:
        print(f"| {what} | `{command}` | {code} | {line.replace('|', '/').replace(str(root), 'TMP')} |")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
