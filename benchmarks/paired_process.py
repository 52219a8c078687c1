"""The step as before issue 23 against today's fastest, each in its own processes, alternating.

    python benchmarks/paired_process.py [--precision bf16] [--allocator retained|default]
        [--models m2 gmdgm] [--hidden 200 200] [--hidden 500 500] [--rounds 6] [--steps 10] [--out FILE.json]

``paired_step.py`` alternates two steps inside one process, which cannot compare settings of the
whole process: the C allocator's (:func:`pyro_sus.allocator.retain_freed_memory`, which the
``pyro-sus`` command applies). Here each arm runs in a fresh child process: the baseline (the step
as before issue 23, fp32, the allocator as the C library leaves it) and the candidate (today's step
at ``--precision``, with the allocator set as ``--allocator`` says). Children alternate (A, B, A,
B, ...) so that a change in the machine's load reaches both; each times ``--steps`` steps after 3
warm-up steps and reports their median. The ratio is median over rounds of B over that of A. Each
arm's matmul FLOPs per step over its median time, against the machine's matmul rate at the arm's
precision (measured by this process first, as ``paired_step.py`` does), give the fraction of the
machine's matmul rate the step reaches.
Setting: as ``paired_step.py`` (Willetts Table II MNIST SUS). Threads: ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

#: The step as before issue 23, in fp32, with the C library's allocator as it comes.
BASELINE = {"precision": "fp32", "before": True, "allocator": "default"}


def child(spec: dict) -> None:
    """Time one arm in this process and print its median seconds per step as JSON."""
    import torch

    if spec["allocator"] == "retained":
        from pyro_sus.allocator import retain_freed_memory

        if not retain_freed_memory():
            raise SystemExit("the allocator could not be set on this platform")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from paired_step import step_flops  # beside this script
    from throughput import make_step, time_once

    device = torch.device("cpu")
    run = make_step(spec["model"], device, x_dim=444, slots=45, hidden=spec["hidden"], batch=100,
                    precision=spec["precision"], as_before_issue_23=spec["before"])
    for _ in range(3):
        run()
    seconds = statistics.median(time_once(run, device) for _ in range(spec["steps"]))
    print(json.dumps({"seconds": seconds, "matmul_flops": step_flops(run)}))


def run_child(spec: dict) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="bf16", help="the candidate's precision")
    parser.add_argument("--allocator", choices=["retained", "default"], default="retained",
                        help="the candidate's C allocator setting (the baseline's is always the default)")
    parser.add_argument("--models", nargs="+", default=["m2", "gmdgm"])
    parser.add_argument("--hidden", type=int, nargs="+", action="append", default=None,
                        help="hidden layer sizes; repeat the flag for several (default: 200 200 and 500 500)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--out", default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.child is not None:
        child(json.loads(args.child))
        return
    import torch

    from paired_step import matmul_rate, write_report
    from pyro_sus.run import hardware_info

    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    torch.set_num_threads(threads)
    peaks = {"fp32": matmul_rate(torch.device("cpu"), torch.float32),
             "bf16": matmul_rate(torch.device("cpu"), torch.bfloat16)}
    print(f"machine matmul rate (4500x500 @ 500x500, {threads} threads): fp32 {peaks['fp32'] / 1e9:.1f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.1f} GFLOP/s")
    candidate = {"precision": args.precision, "before": False, "allocator": args.allocator}
    print("| model | hidden | before issue 23 (fp32, default allocator), s/step | candidate s/step | ratio "
          "| fraction of matmul rate: before | candidate |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for hidden in args.hidden or [[200, 200], [500, 500]]:
        for model in args.models:
            arms = {"baseline": BASELINE, "candidate": candidate}
            times: dict[str, list[float]] = {arm: [] for arm in arms}
            flops: dict[str, int] = {}
            for _ in range(args.rounds):
                for arm, setting in arms.items():
                    out = run_child({**setting, "model": model, "hidden": hidden, "steps": args.steps})
                    times[arm].append(out["seconds"])
                    flops[arm] = out["matmul_flops"]
            median = {arm: statistics.median(values) for arm, values in times.items()}
            fraction = {arm: flops[arm] / median[arm] / peaks[arms[arm]["precision"]] for arm in arms}
            results.append({"model": model, "hidden": hidden, "candidate": candidate, "times": times,
                            "seconds_baseline": median["baseline"], "seconds_candidate": median["candidate"],
                            "ratio": median["candidate"] / median["baseline"],
                            "matmul_gflop_per_step": {arm: f / 1e9 for arm, f in flops.items()},
                            "fraction_of_matmul_rate": fraction})
            print(f"| {model} | {'-'.join(map(str, hidden))} | {median['baseline']:.4f} | "
                  f"{median['candidate']:.4f} | {results[-1]['ratio']:.2f} | {fraction['baseline']:.2f} "
                  f"| {fraction['candidate']:.2f} |", flush=True)
    report = {"settings": vars(args), "hardware": hardware_info(torch.device("cpu")), "threads": threads,
              "matmul_gflops": {k: v / 1e9 for k, v in peaks.items()}, "results": results}
    write_report(report, args.out)


if __name__ == "__main__":
    main()
