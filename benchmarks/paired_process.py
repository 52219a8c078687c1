"""The step as before issue 23 against today's fastest, each in its own processes, alternating.

    python benchmarks/paired_process.py [--precision bf16] [--allocator retained|default]
        [--models m2 gmdgm] [--hidden 200 200] [--hidden 500 500] [--rounds 6] [--steps 10] [--out FILE.json]

``paired_step.py`` alternates two steps inside one process, which cannot compare settings of the
whole process: the C allocator's (:func:`pyro_sus.allocator.retain_freed_memory`, which the
``pyro-sus`` command applies). Here each arm runs in a fresh child process: the baseline (the step
as before issue 23, fp32, the allocator as the C library leaves it) and the candidate (today's step
at ``--precision``, with the allocator set as ``--allocator`` says). Children alternate (A, B, A,
B, ...) so that a change in the machine's load reaches both; each times ``--steps`` steps after 3
warm-up steps and reports their median. The ratio is median over rounds of B over that of A.
Setting: as ``paired_step.py`` (Willetts Table II MNIST SUS). Threads: ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

ARMS = {"baseline": {"precision": "fp32", "before": True, "allocator": "default"}}


def child(spec: dict) -> None:
    """Time one arm in this process and print its median seconds per step as JSON."""
    import torch

    if spec["allocator"] == "retained":
        from pyro_sus.allocator import retain_freed_memory

        if not retain_freed_memory():
            raise SystemExit("the allocator could not be set on this platform")
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from throughput import make_step, time_once  # beside this script

    device = torch.device("cpu")
    run = make_step(spec["model"], device, x_dim=444, slots=45, hidden=spec["hidden"], batch=100,
                    precision=spec["precision"], as_before_issue_23=spec["before"])
    for _ in range(3):
        run()
    seconds = statistics.median(time_once(run, device) for _ in range(spec["steps"]))
    print(json.dumps({"seconds": seconds}))


def run_child(spec: dict) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


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
    from pyro_sus.api import hardware_info

    candidate = {"precision": args.precision, "before": False, "allocator": args.allocator}
    print("| model | hidden | before issue 23 (fp32, default allocator), s/step | candidate s/step | ratio |")
    print("|---|---|---|---|---|")
    results = []
    for hidden in args.hidden or [[200, 200], [500, 500]]:
        for model in args.models:
            times: dict[str, list[float]] = {"baseline": [], "candidate": []}
            for _ in range(args.rounds):
                for arm, setting in (("baseline", ARMS["baseline"]), ("candidate", candidate)):
                    times[arm].append(run_child({**setting, "model": model, "hidden": hidden, "steps": args.steps}))
            median = {arm: statistics.median(values) for arm, values in times.items()}
            results.append({"model": model, "hidden": hidden, "candidate": candidate, "times": times,
                            "seconds_baseline": median["baseline"], "seconds_candidate": median["candidate"],
                            "ratio": median["candidate"] / median["baseline"]})
            print(f"| {model} | {'-'.join(map(str, hidden))} | {median['baseline']:.4f} | "
                  f"{median['candidate']:.4f} | {results[-1]['ratio']:.2f} |", flush=True)
    report = {"settings": vars(args), "hardware": hardware_info(__import__("torch").device("cpu")),
              "threads": int(os.environ.get("OMP_NUM_THREADS", "1")), "results": results}
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
