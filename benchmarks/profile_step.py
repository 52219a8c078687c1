"""Where a training step's time goes: ``torch.profiler`` over the trainer's own step.

    python benchmarks/profile_step.py [--model m2] [--precision bf16] [--hidden 200 200] [--steps 10]
        [--allocator retained|default] [--rows 20]

Setting: Willetts Table II MNIST SUS (as ``paired_step.py``), CPU, ``OMP_NUM_THREADS`` threads.
Prints the ops by self CPU time, then the same split by input shape (which tensors cost what).
"""

from __future__ import annotations

import argparse
import os

import torch
from torch.profiler import profile

from throughput import make_step  # beside this script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="m2")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    parser.add_argument("--hidden", type=int, nargs="+", default=[200, 200])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--allocator", choices=["retained", "default"], default="retained",
                        help="retained: as the pyro-sus command runs (pyro_sus.allocator)")
    parser.add_argument("--rows", type=int, default=20)
    args = parser.parse_args()
    if args.allocator == "retained":
        from pyro_sus.allocator import retain_freed_memory

        retain_freed_memory()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    run = make_step(args.model, torch.device("cpu"), x_dim=444, slots=45, hidden=args.hidden, batch=100,
                    precision=args.precision)
    for _ in range(3):
        run()
    with profile(record_shapes=True) as prof:
        for _ in range(args.steps):
            run()
    print(f"## {args.model}, {args.precision}, {'-'.join(map(str, args.hidden))}, {args.steps} steps, "
          f"{torch.get_num_threads()} threads, allocator {args.allocator}")
    averages = prof.key_averages()
    print(averages.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
