"""Run Pyro's own SS-VAE script (a peer implementation) on the local MNIST files; record its curve.

    python benchmarks/pyro_peer_ss_vae.py --script PYRO/examples/vae/ss_vae_M2.py \\
        --data-dir ../shared/data --out docs/results/pyro-peer/seed0 --threads 1 \\
        -- -sup 100 -bs 100 -alm 46 --aux-loss -enum parallel -n 50 --seed 0

Pyro's code is not in this repository: ``--script`` is ``examples/vae/ss_vae_M2.py`` in a checkout
of https://github.com/pyro-ppl/pyro (its ``utils/`` folder beside it). Everything after ``--`` goes
to the script unchanged. Only three things around it change, none inside it:

- its data loader reads the IDX files (``train-images-idx3-ubyte.gz`` and the other three) of
  ``--data-dir`` or its ``mnist/`` folder, unpacked into a temporary folder for the run;
  downloading is switched off, so a missing file is an error, never a fetch;
- ``visdom`` (only used with ``--visualize``) is stood in for when it is not installed;
- with ``--allow-version-mismatch``, the script's ``assert pyro.__version__.startswith(V)`` is met
  by reporting V while it runs; the installed version is recorded either way.

Written to ``--out``: ``ss_vae.log`` (the script's own log), ``peer.json`` (per-epoch validation and
test accuracy parsed from that log, the final line, wall time, versions, the script's sha256).
The recorded runs and their comparison with our M2: docs/results/pyro-peer/, docs/RESULTS.md.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import os
import re
import runpy
import shutil
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

__all__ = ["IDX_FILES", "parse_log", "prepare_data_root", "run_peer"]

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# torchvision looks for the raw files under root/<dataset class name>/raw; the script's MNISTCached
# subclasses pyro's MNIST, so both names get the files.
DATASET_FOLDERS = ("MNIST", "MNISTCached")

EPOCH_LINE = re.compile(r"^(?P<epoch>\d+) epoch: avg losses (?P<losses>.*?) validation accuracy "
                        r"(?P<valid>[0-9.eE+-]+) test accuracy (?P<test>[0-9.eE+-]+)\s*$")
FINAL_LINE = re.compile(r"^best validation accuracy (?P<best_valid>[0-9.eE+-]+) corresponding testing "
                        r"accuracy (?P<best_test>[0-9.eE+-]+) last testing accuracy (?P<last_test>[0-9.eE+-]+)")
VERSION_ASSERT = re.compile(r"assert\s+pyro\.__version__\.startswith\(\s*['\"]([^'\"]+)['\"]\s*\)")


def parse_log(text: str) -> dict[str, Any]:
    """The script's log as records: one per epoch (1-based), then its closing line."""
    epochs, final = [], None
    for line in text.splitlines():
        if match := EPOCH_LINE.match(line.strip()):
            epochs.append({"epoch": int(match["epoch"]) + 1,  # the script counts from 0
                           "losses": [float(v) for v in match["losses"].split()],
                           "val_accuracy": float(match["valid"]), "test_accuracy": float(match["test"])})
        elif match := FINAL_LINE.match(line.strip()):
            final = {key: float(value) for key, value in match.groupdict().items()}
    return {"epochs": epochs, "final": final}


def prepare_data_root(data_dir: Path, root: Path) -> Path:
    """Unpack the four MNIST IDX files where torchvision's MNIST looks for them; return the root."""
    if (data_dir / "mnist").is_dir():  # the shared data folder (our CLI's --data-dir) holds mnist/
        data_dir = data_dir / "mnist"
    for name in IDX_FILES:
        packed, plain = data_dir / f"{name}.gz", data_dir / name
        source = packed if packed.exists() else plain
        if not source.exists():
            raise FileNotFoundError(f"{data_dir} has neither {packed.name} nor {plain.name}: "
                                    "point --data-dir at MNIST's IDX files (e.g. ../shared/data)")
        for folder in DATASET_FOLDERS:
            target = root / folder / "raw" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                continue
            opener = gzip.open if source.suffix == ".gz" else open
            with opener(source, "rb") as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
    return root


def _stand_in_visdom() -> None:
    """Let ``from visdom import Visdom`` succeed without visdom; only --visualize would use it."""
    if importlib.util.find_spec("visdom") is None:
        module = types.ModuleType("visdom")

        class Visdom:
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                raise RuntimeError("the script's --visualize needs visdom: pip install visdom")

        module.Visdom = Visdom  # type: ignore[attr-defined]
        sys.modules["visdom"] = module


def _offline_data(root: Path) -> None:
    """Send the script's data directory to ``root`` and make any download attempt fail."""
    import pyro.contrib.examples.util as pyro_util
    import torchvision.datasets as datasets

    pyro_util.get_data_directory = lambda filepath=None: str(root)
    # No mirror means download() raises instead of fetching when a file is missing.
    pyro_util.MNIST.mirrors = []
    datasets.MNIST.mirrors = []


def run_peer(script: Path, data_dir: Path, out: Path, script_args: list[str],
             allow_version_mismatch: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Run the script as ``__main__`` with ``script_args``; write and return peer.json's record."""
    import pyro
    import torch
    import torchvision

    script = script.resolve()
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: pass examples/vae/ss_vae_M2.py from a checkout of "
                                "https://github.com/pyro-ppl/pyro (git clone it where there is a network)")
    out.mkdir(parents=True, exist_ok=True)
    if threads:
        torch.set_num_threads(threads)
    source = script.read_text()
    asserted = VERSION_ASSERT.search(source)
    installed = pyro.__version__
    if asserted and not installed.startswith(asserted[1]) and not allow_version_mismatch:
        raise SystemExit(f"the script asserts pyro {asserted[1]}, this is pyro {installed}: use a checkout "
                         "whose tag matches, or pass --allow-version-mismatch")
    log = out / "ss_vae.log"
    if not any(arg in ("-log", "--logfile") for arg in script_args):
        script_args = [*script_args, "-log", str(log)]
    else:
        log = Path(script_args[script_args.index("-log" if "-log" in script_args else "--logfile") + 1])

    _stand_in_visdom()
    saved_argv, saved_path = sys.argv, list(sys.path)
    # The unpacked files (about 110 MB per dataset folder) live only as long as the run.
    with tempfile.TemporaryDirectory(prefix="pyro-peer-data-") as data_root:
        _offline_data(prepare_data_root(data_dir, Path(data_root)))
        sys.argv = [str(script), *script_args]
        sys.path.insert(0, str(script.parent))  # its `from utils.… import …`
        if asserted and allow_version_mismatch:
            pyro.__version__ = asserted[1]
        start = time.perf_counter()
        try:
            runpy.run_path(str(script), run_name="__main__")
        finally:
            wall = time.perf_counter() - start
            pyro.__version__ = installed
            sys.argv, sys.path[:] = saved_argv, saved_path
    record = {
        "script": str(script), "script_sha256": hashlib.sha256(source.encode()).hexdigest(),
        "script_args": script_args, "wall_seconds": round(wall, 1),
        "versions": {"pyro": installed, "script_asserts_pyro": asserted[1] if asserted else None,
                     "torch": torch.__version__, "torchvision": torchvision.__version__,
                     "python": sys.version.split()[0]},
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
        **parse_log(log.read_text()),
    }
    (out / "peer.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    """Command line: the harness's options, then ``--`` and the script's own."""
    argv = sys.argv[1:] if argv is None else argv
    ours, script_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--script", type=Path, required=True, help="examples/vae/ss_vae_M2.py in a Pyro checkout")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"),
                        help="MNIST's IDX files, or a folder whose mnist/ holds them")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--allow-version-mismatch", action="store_true",
                        help="run a script whose pyro version assert names another release")
    args = parser.parse_args(ours)
    record = run_peer(args.script, args.data_dir, args.out, script_args,
                      allow_version_mismatch=args.allow_version_mismatch, threads=args.threads)
    final = record["final"] or {}
    print(json.dumps({"epochs": len(record["epochs"]), **final, "wall_seconds": record["wall_seconds"]}))


if __name__ == "__main__":
    main()
