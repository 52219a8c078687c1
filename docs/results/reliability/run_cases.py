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

    trial_cases(case, digits, root)

    print("| case | command (TINY: digits, 2 epochs, 16 hidden units) | exit | last line on stderr [what was left] |")
    print("|---|---|---|---|")
    for what, command, code, line in rows:
        print(f"| {what} | `{command}` | {code} | {line.replace('|', '/').replace(str(root), 'TMP')} |")
    shutil.rmtree(root)


def edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding the run folder's lock, as a trainer does, for 60 seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    code = (f"import time, pathlib; from pyro_sus.io import run_folder_lock\n"
            f"with run_folder_lock({str(folder)!r}, 'trained'):\n"
            f"    pathlib.Path({str(folder)!r} + '.ready').touch(); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code])
    while not Path(str(folder) + ".ready").exists():
        time.sleep(0.05)
    return holder


def trial_cases(case, digits, root: Path) -> None:
    """The cases of the hostile trial of 2026-12-04 (issue 35) that a command shows."""
    untouched = lambda name: lambda work: (" [victim untouched]" if (work / name).read_text() == "mine\n"  # noqa: E731
                                           else " [VICTIM OVERWRITTEN]")

    def plant(work: Path) -> None:
        (work / "victim.txt").write_text("mine\n")
        (work / "base" / "confusion.png").unlink()
        (work / "base" / "confusion.png").symlink_to(work / "victim.txt")

    case("RUN/confusion.png is a link to the user's file", "evaluate", "base", setup=plant,
         check=untouched("victim.txt"))
    holders = []

    def busy(work: Path) -> None:
        holders.append(hold_lock(work / "run"))

    def stop_holder(work: Path) -> str:
        holders.pop().kill()
        return " [the other process's folder untouched]"

    case("a second train on a folder another process is training", "train", "--model", "m2", "--out", "run", *TINY,
         setup=busy, check=stop_holder)

    def stopped(work: Path) -> None:
        assert cli("train", "--model", "m2", "--out", "run", "--stop-after", "1", *TINY, cwd=work)[0] == 0

    def stopped_and_busy(work: Path) -> None:
        stopped(work)
        holders.append(hold_lock(work / "run"))

    case("evaluate while another process trains the run", "evaluate", "run", setup=stopped_and_busy,
         check=stop_holder)
    case("predict --output names a file of the run folder", "predict", "base", "new.npz", "--output",
         "base/preprocess.npz", "--overwrite")
    case("final.json edited to hidden_dims [100000000]", "predict", "base", "new.npz",
         setup=lambda work: edit_json(work / "base" / "final.json", lambda c: c.update(hidden_dims=[100_000_000])))

    def huge(work: Path) -> None:
        stopped(work)
        edit_json(work / "run" / "run.json", lambda info: info["model_options"].update(hidden_dims=[10**12]))

    case("run.json edited to hidden_dims [10**12], then --resume", "train", "--resume", "--out", "run", setup=huge)

    def big_label(work: Path) -> None:
        y = digits.y_train.copy()
        y[0] = 10**12
        np.savez(work / "big.npz", x=digits.x_train, y=y)

    case("a label of 10**12 in the data file", "train", "--dataset", "big.npz", "--out", "run", *TINY,
         setup=big_label)

    def raw(work: Path) -> None:
        np.savez(work / "raw.npz", x=digits.x_test[:5] * 16)

    case("predict on raw 0-16 digits", "predict", "base", "raw.npz", setup=raw)
    for field, value in (("learning_rate", 0.1), ("epochs", 4)):
        def edited(work: Path, field=field, value=value) -> None:
            stopped(work)
            edit_json(work / "run" / "run.json", lambda info: info["train"].update({field: value}))

        case(f"run.json edited to {field} {value}, then --resume", "train", "--resume", "--out", "run", setup=edited)

    def one_class(work: Path) -> None:
        keep = digits.y_train == 3
        np.savez(work / "one.npz", x=digits.x_train[keep], y=digits.y_train[keep])

    case("data of one class, with extra slots", "train", "--dataset", "one.npz", "--extra-slots", "3", "--out", "run",
         "--epochs", "1", "--no-progress", setup=one_class)
    case("malformed mapping.json, then evaluate", "evaluate", "base",
         setup=lambda work: (work / "base" / "mapping.json").write_text("{oops"))

    def from_cuda(work: Path) -> None:
        stopped(work)
        edit_json(work / "run" / "run.json", lambda info: info["train"].update(device="cuda"))
        state = torch.load(work / "run" / "last.pt", weights_only=True)
        state["train_config"]["device"], state["device"] = "cuda", "cuda"
        state["rng"]["shuffle"] = torch.zeros(16, dtype=torch.uint8)  # a CUDA generator's state
        torch.save(state, work / "run" / "last.pt")

    if not torch.cuda.is_available():
        case("a run trained on CUDA, resumed without a GPU", "train", "--resume", "--out", "run", setup=from_cuda)
        case("... and with --device cpu", "train", "--resume", "--out", "run", "--device", "cpu", "--no-progress",
             setup=from_cuda)

    def half_set_up(work: Path) -> None:
        (work / "run").mkdir()
        shutil.copy(work / "base" / "split.npz", work / "run" / "split.npz")

    case("killed between split.npz and run.json, then --resume", "train", "--resume", "--out", "run",
         setup=half_set_up)
    case("... then the same train command", "train", "--model", "m2", "--out", "run", *TINY, setup=half_set_up)

    def lost_best(work: Path) -> None:
        assert cli("train", "--model", "m2", "--out", "run", "--select", "best-validation", *TINY, cwd=work)[0] == 0
        for name in ("best.pt", "final.pt", "final.json"):
            (work / "run" / name).unlink()

    case("best-validation run with best.pt lost at the end, then --resume", "train", "--resume", "--out", "run",
         "--no-progress", setup=lost_best)
    for what, damage in (("without 'model'", lambda s: s.pop("model")), ("with epoch -100", lambda s: s.update(epoch=-100))):
        def damaged(work: Path, damage=damage) -> None:
            stopped(work)
            state = torch.load(work / "run" / "last.pt", weights_only=True)
            damage(state)
            torch.save(state, work / "run" / "last.pt")

        case(f"last.pt {what}, then --resume", "train", "--resume", "--out", "run", setup=damaged)
    for seed in ("-1", str(2**40)):
        case(f"--seed {seed}", "train", "--out", "run", *TINY, "--seed", seed)
    case("--out is a dangling link", "train", "--out", "run", *TINY,
         setup=lambda work: (work / "run").symlink_to(work / "gone"))
    case("--out with spaces, --stop-after 1 (the printed command)", "train", "--model", "m2", "--out", "sp ace/run 1",
         "--stop-after", "1", *TINY)
    case("evaluate --dataset that does not exist", "evaluate", "base", "--dataset", "elsewhere.npz")
    case("a text file as data", "train", "--dataset", "notes.npz", "--out", "run", *TINY,
         setup=lambda work: (work / "notes.npz").write_text("some text\n"))

    def unsigned(work: Path) -> None:
        y = digits.y_train.astype(np.uint64)
        y[0] = np.uint64(2**64 - 1)
        np.savez(work / "u.npz", x=digits.x_train, y=y)

    case("uint64 labels with 2**64 - 1", "train", "--dataset", "u.npz", "--out", "run", *TINY, setup=unsigned)
    case("final.pt of torch's legacy format calling eval", "evaluate", "base",
         setup=lambda work: torch.save({"w": eval}, work / "base" / "final.pt", _use_new_zipfile_serialization=False))
    for flag in ("--seeds", "--epochs"):
        case(f"reproduce {flag} -1", "reproduce", "zoo-digits-sus", "--smoke", "--out", "sweep", flag, "-1",
             check=lambda work: " [no job written]" if not (work / "sweep").exists() else " [JOBS WRITTEN]")
    case("a diverging run in --out a/b/run", "train", "--model", "m2", "--out", "a/b/run", *TINY, "--lr", "1e12",
         check=lambda work: " [no folder left]" if not (work / "a").exists() else " [FOLDERS LEFT]")
    case("mapping.json edited to class 999999", "predict", "base", "new.npz",
         setup=lambda work: edit_json(work / "base" / "mapping.json",
                                      lambda m: m["slot_to_class"].__setitem__(-1, 999999)))
    case("run.json edited to extra_slots -3", "evaluate", "base",
         setup=lambda work: edit_json(work / "base" / "run.json", lambda info: info["split"].update(extra_slots=-3)))

    def active_unknown(work: Path) -> None:
        (work / "active").mkdir()
        (work / "active" / "active.json").write_text('{"config": {"colour": 1}}')

    case("active.json with an unknown key", "active", "--resume", "--out", "active", setup=active_unknown)


if __name__ == "__main__":
    main()
