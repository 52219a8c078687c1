"""Train every zoo model on one setting with the same networks and budget, then print the table.

    python benchmarks/zoo.py digits-sus --out runs/zoo-digits-sus            # docs/RESULTS.md
    python benchmarks/zoo.py mnist-100 --epochs 10 --out runs/zoo-mnist-100 --data-dir ../shared/data

Runs go ``--jobs`` at a time (default 2), each with one torch thread; a run that fails is
reported and does not stop the others. Each run's log is ``OUT/NAME-seedS.log``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pyro_sus.models.catvae import RELEASED_CODE_OPTIONS

SETTINGS = {
    # The split of benchmarks/digits_sus.sh: 5-9 hidden, 20% labels on 0-4, 10 extra slots.
    "digits-sus": ["--dataset", "digits", "--hidden-classes", "5", "6", "7", "8", "9", "--labelled-fraction", "0.2",
                   "--extra-slots", "10", "--epochs", "200", "--lr", "1e-3", "--hidden-dims", "500", "500",
                   "--z-dim", "5"],
    # Semi-supervised MNIST with 100 labels (10 per class), Jurasiński's networks (one hidden layer of
    # 500 units, z = 50, Adam 1e-3); he trains 500 epochs, pass --epochs for a reduced budget.
    "mnist-100": ["--dataset", "mnist", "--labels-per-class", "10", "--epochs", "500", "--lr", "1e-3",
                  "--hidden-dims", "500", "--z-dim", "50"],
}

VARIANTS = {
    "m2": ["--model", "m2"],
    "gmdgm": ["--model", "gmdgm"],
    "am2": ["--model", "am2"],
    "agmdgm": ["--model", "agmdgm"],
    "m2-flow": ["--model", "m2", "--posterior", "flow", "--flow-layers", "4"],
    "gmdgm-flow": ["--model", "gmdgm", "--posterior", "flow", "--flow-layers", "4"],
    "lcvae": ["--model", "lcvae"],
    "lcvae-flow": ["--model", "lcvae", "--posterior", "flow", "--flow-layers", "4"],
    "lcvae-simple": ["--model", "lcvae-simple"],
    "m1": ["--model", "m1"],
    "classifier": ["--model", "classifier"],
    # For the categorical VAE z is the feature f: the paper's size, 50, in every setting.
    "catvae": ["--model", "catvae", "--z-dim", "50"],
    "catvae-gumbel": ["--model", "catvae", "--z-dim", "50", "--model-option", "category_inference=gumbel"],
    "catvae-paper-feature-loss": ["--model", "catvae", "--z-dim", "50", "--model-option", "feature_loss=paper"],
    # The objective of the authors' released code with their MNIST weights.
    "catvae-released": ["--model", "catvae", "--z-dim", "50"] + [
        arg for key, value in RELEASED_CODE_OPTIONS.items()
        for arg in ("--model-option", f"{key}={value if isinstance(value, str) else json.dumps(value)}")],
    # The paper's convolutional networks read whole 28 x 28 images: MNIST-shaped data only.
    "catvae-conv": ["--model", "catvae", "--z-dim", "50", "--model-option", "encoder=conv", "--keep-all-dims"],
}
IMAGE_28_ONLY = {"catvae-conv"}


def without_z_dim(args: list[str]) -> list[str]:
    """The labelled-only classifier has no latent: drop ``--z-dim N``."""
    if "--z-dim" not in args:
        return args
    at = args.index("--z-dim")
    return args[:at] + args[at + 2:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("setting", choices=sorted(SETTINGS))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=None, choices=list(VARIANTS),
                        help="default: every variant the setting's data can take")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=None, help="override the setting's epochs (a reduced run)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    setting = list(SETTINGS[args.setting])
    if args.models is None:
        args.models = [name for name in VARIANTS if args.setting.startswith("mnist") or name not in IMAGE_28_ONLY]
    if args.epochs is not None:
        setting[setting.index("--epochs") + 1] = str(args.epochs)
    extra = ["--device", args.device, "--no-progress"] + (["--data-dir", args.data_dir] if args.data_dir else [])
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def run(job: tuple[str, int]) -> tuple[str, int]:
        name, seed = job
        run_dir = args.out / f"{name}-seed{seed}"
        if (run_dir / "results.json").is_file():
            return f"{name}-seed{seed}", 0  # done before: keep it
        common = without_z_dim(setting) if name == "classifier" else setting
        resume = ["--resume", "--out", str(run_dir), "--no-progress"] if (run_dir / "last.pt").is_file() else None
        # The variant's own options come last, so they override the setting's (e.g. catvae's --z-dim).
        command = [sys.executable, "-m", "pyro_sus", "train"] + (
            resume or common + extra + VARIANTS[name] + ["--seed", str(seed), "--out", str(run_dir)])
        with open(args.out / f"{name}-seed{seed}.log", "a") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        return f"{name}-seed{seed}", code

    jobs = [(name, seed) for seed in args.seeds for name in args.models]
    with ThreadPoolExecutor(args.jobs) as pool:
        outcomes = list(pool.map(run, jobs))
    failed = [name for name, code in outcomes if code != 0]
    for name in failed:
        print(f"FAILED: {name} (see {args.out / (name + '.log')})", file=sys.stderr)
    finished = sorted(p.parent for p in args.out.glob("*/results.json"))
    if finished:
        subprocess.call([sys.executable, str(Path(__file__).with_name("summarize_runs.py"))] + [str(p) for p in finished])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
