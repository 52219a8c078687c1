"""Today's fp32 training step against a faster one, timed side by side in one process.

    python benchmarks/paired_step.py [--baseline before|fp32] [--precision bf16] [--y-estimator gumbel-softmax]
        [--models m2 gmdgm] [--hidden 200 200] [--hidden 500 500] [--rounds 15] [--device cpu|cuda] [--out FILE.json]

The baseline enumerates y in fp32, eager: as the step computed before issue 23 (``--baseline
before``, the default: ``throughput.as_before``), or as it computes now (``fp32``). The candidate
is today's code at another precision, traced, or drawing y relaxed. Both are the trainer's own step (``pyro_sus.train.TrainStep``) on the Table II
MNIST SUS setting (444 pixels, 5 known + 40 extra slots, z = 5, 100 labelled + 100 unlabelled
points a step), each on its own model built from the same seed. They run alternately (A, B, A, B, ...) so that a change
in the machine's load reaches both; the ratio is median(B) / median(A). The matrix-multiply FLOPs
of one step (forward and backward, ``torch.utils.flop_counter``) over its median time give the
achieved rate (each step's own count: a relaxed y does less work), shown against the machine's own
matmul rate at that precision, measured here on a
4500 x 500 @ 500 x 500 product (the shape of the enumerated step's layers).
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from torch.utils.flop_counter import FlopCounterMode

from pyro_sus.run import hardware_info
from throughput import make_step, time_once


def matmul_rate(device: torch.device, dtype: torch.dtype, repeats: int = 10) -> float:
    """The machine's matmul rate (FLOP/s, median) on the enumerated step's layer shape."""
    a = torch.randn(4500, 500, device=device, dtype=dtype)
    b = torch.randn(500, 500, device=device, dtype=dtype)
    product = lambda: a @ b  # noqa: E731
    for _ in range(3):
        product()
    return 2 * 4500 * 500 * 500 / statistics.median(time_once(product, device) for _ in range(repeats))


def step_flops(run) -> int:
    """Matrix-multiply FLOPs of one call (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def compare(name: str, hidden: list[int], device: torch.device, candidate: dict, rounds: int,
            peaks: dict[str, float], before: bool = True) -> dict:
    """Alternate the baseline step (fp32, eager; as before issue 23 with ``before``) and the candidate's."""
    setting = dict(device=device, x_dim=444, slots=45, hidden=hidden, batch=100)
    estimator = candidate.get("y_estimator", "enumerate")
    steps = {"fp32": make_step(name, **setting, as_before_issue_23=before),
             "candidate": make_step(name, **setting, jit=candidate.get("jit", False),
                                    precision=candidate.get("precision", "fp32"),
                                    model_options={"y_estimator": estimator} if estimator != "enumerate" else None)}
    flops = {key: step_flops(run) for key, run in steps.items()}
    for run in steps.values():  # warm-up (and the trace, with jit)
        for _ in range(3):
            run()
    times: dict[str, list[float]] = {"fp32": [], "candidate": []}
    for _ in range(rounds):
        for key, run in steps.items():
            times[key].append(time_once(run, device))
    median = {key: statistics.median(values) for key, values in times.items()}
    rate = {key: flops[key] / seconds for key, seconds in median.items()}
    precision = candidate.get("precision", "fp32")
    return {"model": name, "hidden": hidden, "baseline": "before issue 23" if before else "fp32 now",
            "candidate": candidate, "rounds": rounds,
            "seconds_fp32": median["fp32"], "seconds_candidate": median["candidate"],
            "ratio": median["candidate"] / median["fp32"], "matmul_gflop_per_step_fp32": flops["fp32"] / 1e9,
            "matmul_gflop_per_step_candidate": flops["candidate"] / 1e9,
            "gflops_fp32": rate["fp32"] / 1e9, "gflops_candidate": rate["candidate"] / 1e9,
            "fraction_of_matmul_rate_fp32": rate["fp32"] / peaks["fp32"],
            "fraction_of_matmul_rate_candidate": rate["candidate"] / peaks[precision]}


def write_report(report: dict, out: str | None) -> None:
    """Print the report as JSON, and write it to ``out`` when given."""
    if out:
        with open(out, "w") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--baseline", choices=["before", "fp32"], default="before",
                        help="the step as before issue 23, or today's fp32 step")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16", help="the candidate's precision")
    parser.add_argument("--jit", action="store_true", help="the candidate traces its loss (fp32 only)")
    parser.add_argument("--y-estimator", default="enumerate",
                        help="the candidate's estimator for unobserved y (e.g. gumbel-softmax; the baseline enumerates)")
    parser.add_argument("--models", nargs="+", default=["m2", "gmdgm"])
    parser.add_argument("--hidden", type=int, nargs="+", action="append", default=None,
                        help="hidden layer sizes; repeat the flag for several (default: 200 200 and 500 500)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    peaks = {"fp32": matmul_rate(device, torch.float32), "bf16": matmul_rate(device, torch.bfloat16)}
    print(f"machine matmul rate (4500x500 @ 500x500): fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")
    candidate = {"precision": args.precision, "jit": args.jit, "y_estimator": args.y_estimator}
    print("| model | hidden | fp32 s/step | candidate s/step | ratio | GFLOP/s fp32 (fraction of matmul rate) "
          "| GFLOP/s candidate (fraction) |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for hidden in args.hidden or [[200, 200], [500, 500]]:
        for name in args.models:
            r = compare(name, hidden, device, candidate, args.rounds, peaks, before=args.baseline == "before")
            results.append(r)
            print(f"| {name} | {'-'.join(map(str, hidden))} | {r['seconds_fp32']:.4f} | {r['seconds_candidate']:.4f} "
                  f"| {r['ratio']:.2f} | {r['gflops_fp32']:.1f} ({r['fraction_of_matmul_rate_fp32']:.2f}) "
                  f"| {r['gflops_candidate']:.1f} ({r['fraction_of_matmul_rate_candidate']:.2f}) |", flush=True)
    report = {"settings": vars(args), "hardware": hardware_info(device), "torch_threads": torch.get_num_threads(),
              "matmul_gflops": {k: v / 1e9 for k, v in peaks.items()}, "results": results}
    write_report(report, args.out)


if __name__ == "__main__":
    main()
