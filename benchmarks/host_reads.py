"""Where one trainer step reads values back from the device (issue 37, items 3 and 4).

    python benchmarks/host_reads.py [--device cpu|cuda] [--models m2 gmdgm] [--members 4] [--out FILE] [--try-capture]

Each read (a Python number or truth value taken from a tensor, or an output whose size depends on
values) waits for the device's queue on CUDA and rules out capturing the step as one CUDA graph.
For each model, eager and traced (``--jit``), alone and as a stack of ``--members`` seeds, one step
of the trainer (``pyro_sus.train.TrainStep`` / ``StackedTrainStep``, deferred finite checks as on
CUDA) runs under :func:`pyro_sus.syncs.host_reads`; the reads are printed grouped by the code that
asked for them (the innermost frame outside torch) and the tensor's device. On the CPU every
tensor is a CPU tensor: there the list says which reads *would* wait on a GPU by where they come
from (Adam's step counts live on the CPU unless ``capturable=True``; a trace's shape arithmetic runs
on CPU scalars).
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

import torch

from pyro_sus.models import get_model_class
from pyro_sus.models.base import Batch
from pyro_sus.spec import TrainConfig
from pyro_sus.stacked_training import StackedTrainStep
from pyro_sus.stacking import stack_models
from pyro_sus.syncs import host_reads
from pyro_sus.train import TrainStep

SITE = str(Path(torch.__file__).parents[1])  # site-packages, shortened in the report


def one_step(name: str, members: int | None, device: torch.device, jit: bool, x_dim: int = 61, slots: int = 13,
             hidden: tuple[int, ...] = (64, 64), batch: int = 100):
    """A trainer step on fixed batches (traced by a first call where ``jit``), as a function of no arguments."""
    cls = get_model_class(name)
    config = cls.config_class(x_dim=x_dim, n_slots=slots, hidden_dims=hidden)
    torch.manual_seed(0)
    shape = (batch,) if members is None else (members, batch)
    data = Batch(torch.bernoulli(torch.rand(*shape, x_dim, device=device)),
                 torch.bernoulli(torch.rand(*shape, x_dim, device=device)),
                 torch.randint(0, 5, shape, device=device))
    # Deferred finite checks (every 50 steps), as the trainer runs on CUDA.
    train_config = TrainConfig(device=str(device), jit=jit, finite_check_every=50)
    if members is None:
        model = cls(config).to(device)
        step = TrainStep(model, torch.optim.Adam(model.parameters(), lr=3e-4), train_config, device)
    else:
        model = stack_models([cls(config) for _ in range(members)]).to(device)
        step = StackedTrainStep(model, torch.optim.Adam(model.parameters(), lr=3e-4), train_config, device)
    step(0, 0, data)  # the first call traces (jit); the step measured is the second
    return lambda: step(1, 1, data)


def try_capture(run) -> str:
    """Capture one step as a CUDA graph (after warm-up on a side stream, as torch's docs show):
    "captured", or the error's first line; on a machine without CUDA, "not attempted"."""
    if not torch.cuda.is_available():
        return "not attempted: no CUDA device"
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            run()
    torch.cuda.current_stream().wait_stream(side)
    try:
        with torch.cuda.graph(torch.cuda.CUDAGraph()):
            run()
        return "captured"
    except Exception as err:  # what stops the capture is the finding
        return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"


def report(reads) -> list[dict]:
    """The reads grouped by operation, device and the code that asked, most frequent first."""
    counts = collections.Counter((r.op, r.device, r.where.replace(SITE + "/", ""), r.origin.replace(SITE + "/", ""))
                                 for r in reads)
    return [{"count": n, "op": op, "device": device, "asked_by": where, "innermost": origin}
            for (op, device, where, origin), n in counts.most_common()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", nargs="+", default=["m2", "gmdgm"])
    parser.add_argument("--members", type=int, default=4, help="seeds in the stacked variant")
    parser.add_argument("--out", help="write the grouped reads as JSON here")
    parser.add_argument("--try-capture", action="store_true",
                        help="also try to capture each step as one CUDA graph and say what stops it")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    record = {}
    for name in args.models:
        for members in (None, args.members):
            for jit in (False, True):
                label = f"{name}, {'stacked x' + str(members) if members else 'alone'}, {'traced' if jit else 'eager'}"
                run = one_step(name, members, device, jit)
                rows = report(host_reads(run))
                record[label] = {"reads": rows}
                print(f"{label}: {sum(r['count'] for r in rows)} reads")
                for row in rows:
                    print(f"  {row['count']:4d}  {row['op']:28s} {row['device']:6s} {row['asked_by']}  <- {row['innermost']}")
                if args.try_capture:
                    record[label]["capture"] = try_capture(run)
                    print(f"  as one CUDA graph: {record[label]['capture']}")
    if args.out:
        Path(args.out).write_text(json.dumps({"device": str(device), "torch": torch.__version__, "steps": record},
                                             indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
