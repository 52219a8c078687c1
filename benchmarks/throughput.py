"""Training throughput of every registered model: images per second through one full optimizer
step (labelled + unlabelled batch, enumerated y, backward, clipping, Adam), on CPU and CUDA.

    python benchmarks/throughput.py [--device cpu|cuda] [--x-dim 444] [--slots 45] [--steps 20] [--jit]

``--jit`` times the traced loss (``TrainConfig.jit``) of every model that can be traced; the others
are timed eager and marked so.

Defaults are the Willetts MNIST SUS setting: 444 pixels kept (std > 0.1), 5 known + 40 extra slots,
z = 5, 100 labelled + 100 unlabelled points per step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import pyro
import torch

from pyro_sus.api import hardware_info
from pyro_sus.models import MODELS, get_model_class
from pyro_sus.tracing import TracedLoss


def time_model(name: str, device: torch.device, x_dim: int, slots: int, hidden: list[int], batch: int,
               steps: int, warmup: int = 3, jit: bool = False) -> float:
    """Seconds per optimizer step (median over ``steps``); ``jit``: with the loss traced."""
    torch.manual_seed(0)
    cls = get_model_class(name.split("+")[0])
    options = {"x_dim": x_dim, "n_slots": slots, "hidden_dims": hidden}
    if "z_dim" in {f.name for f in dataclasses.fields(cls.config_class)}:
        options["z_dim"] = 5
    if name.endswith("+flow"):
        options["posterior"] = "flow"
    model = cls(cls.config_class(**options)).to(device)
    loss_fn = TracedLoss(model) if jit else model.loss
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    x_u = torch.rand(batch, x_dim, device=device)
    x_l = torch.rand(batch, x_dim, device=device)
    y_l = torch.randint(0, min(slots, 5), (batch,), device=device)
    times = []
    with pyro.validation_enabled(False):
        for i in range(warmup + steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            loss = loss_fn(torch.bernoulli(x_u), torch.bernoulli(x_l), y_l)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_value_(model.parameters(), 1.0)
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--x-dim", type=int, default=444)
    parser.add_argument("--slots", type=int, default=45)
    parser.add_argument("--hidden", type=int, nargs="+", default=[500, 500])
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--models", nargs="+", default=None,
                        help="registered names, NAME+flow for a flow posterior (default: every model)")
    parser.add_argument("--jit", action="store_true", help="trace the loss of every model that can be traced")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for name in args.models or sorted(MODELS):
        jit = args.jit and get_model_class(name.split("+")[0]).traceable
        seconds = time_model(name, device, args.x_dim, args.slots, args.hidden, args.batch, args.steps, jit=jit)
        rows.append({"model": name, "jit": jit, "seconds_per_step": seconds,
                     "images_per_second": 2 * args.batch / seconds})
        print(f"{name:14s} {1000 * seconds:8.1f} ms/step  {2 * args.batch / seconds:9.0f} images/s"
              + ("  (traced)" if jit else "  (eager)" if args.jit else ""))
    print(json.dumps({"settings": vars(args), "hardware": hardware_info(device), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
