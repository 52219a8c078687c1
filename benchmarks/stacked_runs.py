"""What stacking seeds buys (issue 37), paired in one process.

    python benchmarks/stacked_runs.py steps [--device cpu|cuda] [--members 1 4 8 32] [--shape digits|table2] [--jit]
    python benchmarks/stacked_runs.py runs  [--seeds 0 1 2 3] [--epochs 20] [--hidden 64 64] [--out DIR]

``steps`` times one trainer step of a stacked GM-DGM (:class:`pyro_sus.stacked_training.StackedTrainStep`:
loss, backward, per-member finite watch, clipping, Adam) against the number of members E, eager,
and the same model's step alone (:class:`pyro_sus.train.TrainStep`); per member-step it prints the
arithmetic done (counted by ``torch.utils.flop_counter``) as a fraction of this machine's measured
matrix-product rate. ``digits`` is the README's job (61 inputs after the std filter, 13 slots,
64-64 networks), ``table2`` Willetts' MNIST SUS (444 inputs, 45 slots, 500-500).

``runs`` trains the README's digits job once per seed, one after another (:func:`pyro_sus.api.fit`)
and stacked (:func:`pyro_sus.api.fit_seeds`), side by side in this process, and prints the wall-time
ratio and each seed's test accuracy both ways. Both write a JSON record with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from pyro_sus.api import fit, fit_seeds
from pyro_sus.run import hardware_info
from pyro_sus.models import get_model_class
from pyro_sus.models.base import Batch
from pyro_sus.stacked_training import StackedTrainStep
from pyro_sus.stacking import stack_models
from pyro_sus.spec import TrainConfig
from pyro_sus.train import TrainStep

SHAPES = {"digits": {"x_dim": 61, "slots": 13, "hidden": (64, 64)},
          "table2": {"x_dim": 444, "slots": 45, "hidden": (500, 500)}}

#: The README's digits job (docs/RESULTS.md), as fit's options.
DIGITS_JOB = dict(hidden_classes=[5, 6, 7, 8], unseen_classes=[9], labelled_fraction=0.2, extra_slots=8)


def matmul_rate(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a square float32 matrix product on ``device`` (the best of ``repeats``)."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def make_step(members: int | None, device: torch.device, x_dim: int, slots: int, hidden: tuple[int, ...],
              batch: int = 100, jit: bool = False):
    """One trainer step of E stacked GM-DGMs (``members``), or of one alone (None), on fixed batches;
    ``jit``: the loss traced (``TrainConfig.jit``)."""
    cls = get_model_class("gmdgm")
    config = cls.config_class(x_dim=x_dim, n_slots=slots, hidden_dims=hidden)
    torch.manual_seed(0)
    shape = (batch,) if members is None else (members, batch)
    x_u, x_l = torch.rand(*shape, x_dim, device=device), torch.rand(*shape, x_dim, device=device)
    y_l = torch.randint(0, min(slots, 5), shape, device=device)
    train_config = TrainConfig(device=str(device), jit=jit)
    if members is None:
        model = cls(config).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
        step = TrainStep(model, optimizer, train_config, device)
        return lambda: step(0, 0, Batch(torch.bernoulli(x_u), torch.bernoulli(x_l), y_l))
    model = stack_models([cls(config) for _ in range(members)]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    step = StackedTrainStep(model, optimizer, train_config, device)
    return lambda: step(0, 0, Batch(torch.bernoulli(x_u), torch.bernoulli(x_l), y_l))


def time_step(run, device: torch.device, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(steps):
        _sync(device)
        start = time.perf_counter()
        run()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_flops(run) -> int:
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def cmd_steps(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    shape = SHAPES[args.shape]
    rate = matmul_rate(device)
    alone = make_step(None, device, shape["x_dim"], shape["slots"], shape["hidden"], jit=args.jit)
    alone_seconds = time_step(alone, device, args.steps)
    flops = step_flops(alone)
    print(f"{args.shape} on {device}{' (loss traced)' if args.jit else ''}: matrix products at {rate / 1e9:.0f} "
          f"GFLOP/s; one step {flops / 1e6:.0f} MFLOP")
    print(f"  alone     {1e3 * alone_seconds:8.2f} ms/step  ({flops / alone_seconds / rate:.1%} of the rate)")
    rows = [{"members": None, "seconds_per_step": alone_seconds, "seconds_per_member_step": alone_seconds,
             "flops_per_member_step": flops, "fraction_of_matmul_rate": flops / alone_seconds / rate}]
    for members in args.members:
        run = make_step(members, device, shape["x_dim"], shape["slots"], shape["hidden"], jit=args.jit)
        seconds = time_step(run, device, args.steps)
        member_flops = step_flops(run) / members
        per_member = seconds / members
        rows.append({"members": members, "seconds_per_step": seconds, "seconds_per_member_step": per_member,
                     "flops_per_member_step": member_flops,
                     "fraction_of_matmul_rate": member_flops / per_member / rate,
                     "speedup_over_alone": alone_seconds / per_member})
        print(f"  E = {members:3d}  {1e3 * seconds:8.2f} ms/step  {1e3 * per_member:6.2f} ms/member-step  "
              f"{alone_seconds / per_member:4.1f}x alone  ({member_flops / per_member / rate:.1%} of the rate)")
    print("  (no CUDA graph capture yet: every step launched op by op)")
    return {"command": "steps", "shape": args.shape, "jit": args.jit, **shape, "matmul_flops_per_second": rate,
            "rows": rows}


def cmd_runs(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    options = dict(DIGITS_JOB, model_options={"hidden_dims": list(args.hidden)},
                   train_options={"epochs": args.epochs, "learning_rate": 1e-3, "device": "cpu"})
    records = {}
    for way in args.order:
        start = time.perf_counter()
        if way == "alone":
            runs = [fit("gmdgm", "digits", out / "alone" / f"seed{seed}", progress=False,
                        **{**options, "train_options": {**options["train_options"], "seed": seed}})
                    for seed in args.seeds]
        else:
            runs = fit_seeds("gmdgm", "digits", out / "stacked", seeds=args.seeds, progress=False, **options)
        seconds = time.perf_counter() - start
        accuracy = [json.loads((r.run_dir / "results.json").read_text())["test"]["accuracy"] for r in runs]
        records[way] = {"seconds": seconds, "test_accuracy": accuracy}
        spread = statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0
        print(f"  {way:8s} {seconds:7.1f} s  test accuracy {' '.join(f'{a:.3f}' for a in accuracy)}  "
              f"(mean {statistics.mean(accuracy):.3f}, sd {spread:.3f})")
    ratio = records["stacked"]["seconds"] / records["alone"]["seconds"]
    print(f"  stacked / one after another: {ratio:.2f} of the wall time")
    return {"command": "runs", "job": DIGITS_JOB, "hidden": list(args.hidden), "epochs": args.epochs,
            "seeds": list(args.seeds), "records": records, "wall_time_ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    steps = sub.add_parser("steps")
    steps.add_argument("--device", default="cpu")
    steps.add_argument("--shape", choices=sorted(SHAPES), default="digits")
    steps.add_argument("--members", type=int, nargs="+", default=[1, 4, 8, 32])
    steps.add_argument("--steps", type=int, default=20)
    steps.add_argument("--jit", action="store_true", help="the loss traced, alone and stacked")
    steps.add_argument("--record", default=None, help="write the JSON record here")
    runs = sub.add_parser("runs")
    runs.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    runs.add_argument("--epochs", type=int, default=20)
    runs.add_argument("--hidden", type=int, nargs="+", default=[64, 64])
    runs.add_argument("--order", nargs=2, default=["alone", "stacked"], help="which way trains first")
    runs.add_argument("--out", default="runs/stacked-bench", help="root of the run folders (must not exist)")
    runs.add_argument("--record", default=None, help="write the JSON record here")
    args = parser.parse_args()
    record = cmd_steps(args) if args.command == "steps" else cmd_runs(args)
    record.update(settings=vars(args), hardware=hardware_info(getattr(args, "device", "cpu")),
                  date=time.strftime("%Y-%m-%d"))
    if args.record:
        Path(args.record).parent.mkdir(parents=True, exist_ok=True)
        Path(args.record).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
