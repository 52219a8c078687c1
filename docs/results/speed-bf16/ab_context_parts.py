"""A/B of one change in one process: q(z|x,y)'s first layer fed the parts (x, onehot(y)) (x mapped
once) against the concatenated copies (x mapped once per slot), alternating, on the trainer's step.

    OMP_NUM_THREADS=2 PYTHONPATH=benchmarks python docs/results/speed-bf16/ab_context_parts.py
"""

import json
import statistics
import sys

import torch

from pyro_sus.posteriors import DiagonalNormalPosterior
from throughput import make_step, time_once

device = torch.device("cpu")
results = []
for precision in ("fp32", "bf16"):
    for hidden in ([200, 200], [500, 500]):
        for name in ("m2", "gmdgm"):
            run = make_step(name, device, 444, 45, hidden, 100, precision=precision)
            for _ in range(3):
                run()
            times = {True: [], False: []}
            for _ in range(12):
                for parts in (True, False):
                    DiagonalNormalPosterior.takes_context_parts = parts
                    times[parts].append(time_once(run, device))
            DiagonalNormalPosterior.takes_context_parts = True
            median = {k: statistics.median(v) for k, v in times.items()}
            results.append({"precision": precision, "hidden": hidden, "model": name, "seconds_parts": median[True],
                            "seconds_concat": median[False], "ratio": median[True] / median[False]})
            print(f"{precision} {name} {hidden}: parts {1000 * median[True]:.1f} ms, concat "
                  f"{1000 * median[False]:.1f} ms, ratio {median[True] / median[False]:.3f}", flush=True)
json.dump({"torch_threads": torch.get_num_threads(), "results": results}, sys.stdout, indent=2)
