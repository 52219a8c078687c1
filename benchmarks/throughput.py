"""Training throughput of every registered model: images per second through one full optimizer
step of the trainer (labelled + unlabelled batch, enumerated y, backward, finite check, clipping,
Adam: ``pyro_sus.train.TrainStep``), on CPU and CUDA.

    python benchmarks/throughput.py [--device cpu|cuda] [--x-dim 444] [--slots 45] [--steps 20] [--jit]
        [--precision fp32|bf16]

``--jit`` times the traced loss (``TrainConfig.jit``) of every model that can be traced; the others
are timed eager and marked so.

Defaults are the Willetts MNIST SUS setting: 444 pixels kept (std > 0.1), 5 known + 40 extra slots,
z = 5, 100 labelled + 100 unlabelled points per step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable

import pyro.distributions as dist
import torch

from pyro_sus.run import hardware_info
from pyro_sus.models import MODELS, get_model_class
from pyro_sus.nn import broadcast_cat
from pyro_sus.spec import TrainConfig
from pyro_sus.train import TrainStep
from pyro_sus.models.base import Batch
from step_shape import add_step_shape_arguments  # beside this script


def make_step(name: str, device: torch.device, x_dim: int, slots: int, hidden: list[int], batch: int,
              jit: bool = False, precision: str = "fp32", seed: int = 0,
              model_options: dict | None = None, as_before_issue_23: bool = False) -> Callable[[], torch.Tensor]:
    """One optimizer step of the trainer itself (:class:`pyro_sus.train.TrainStep`: loss, backward,
    finite watch, clipping, Adam) on a fresh model and fixed batches, as a function of no arguments.
    ``as_before_issue_23``: the model computes as it did before issue 23 (see :func:`as_before`)."""
    torch.manual_seed(seed)
    cls = get_model_class(name.split("+")[0])
    options = {"x_dim": x_dim, "n_slots": slots, "hidden_dims": hidden}
    if "z_dim" in {f.name for f in dataclasses.fields(cls.config_class)}:
        options["z_dim"] = 5
    if name.endswith("+flow"):
        options["posterior"] = "flow"
    model = cls(cls.config_class(**options, **(model_options or {}))).to(device)
    if as_before_issue_23:
        as_before(model)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    step = TrainStep(model, optimizer, TrainConfig(jit=jit, precision=precision, device=str(device)), device)
    x_u = torch.rand(batch, x_dim, device=device)
    x_l = torch.rand(batch, x_dim, device=device)
    y_l = torch.randint(0, min(slots, 5), (batch,), device=device)
    return lambda: step(0, 0, Batch(torch.bernoulli(x_u), torch.bernoulli(x_l), y_l))


def as_before(model: torch.nn.Module) -> None:
    """Make an M2-family model compute its loss as before issue 23, for a paired comparison in one
    process: x concatenated to every enumerated one-hot y before q(z|x,y) and the decoder (not the
    parts), and torch's Bernoulli log-probability (``log1p``, not :class:`BernoulliLogits`)."""
    model.posterior_context = lambda *parts: broadcast_cat(*parts)

    def likelihood(z: torch.Tensor, y: torch.Tensor) -> dist.Distribution:
        logits = model.decoder(broadcast_cat(z, model.onehot(y)) if model.decoder_sees_y else z)
        return dist.Bernoulli(logits=logits, validate_args=False).to_event(1)

    model.likelihood = likelihood


def time_once(run: Callable[[], torch.Tensor], device: torch.device) -> float:
    """Seconds for one call of ``run``, the device's queue drained before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def time_model(name: str, device: torch.device, x_dim: int, slots: int, hidden: list[int], batch: int,
               steps: int, warmup: int = 3, jit: bool = False, precision: str = "fp32") -> float:
    """Seconds per optimizer step (median over ``steps``); ``jit``: with the loss traced."""
    run = make_step(name, device, x_dim, slots, hidden, batch, jit=jit, precision=precision)
    for _ in range(warmup):
        run()
    return statistics.median(time_once(run, device) for _ in range(steps))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_step_shape_arguments(parser, steps=20)
    parser.add_argument("--models", nargs="+", default=None,
                        help="registered names, NAME+flow for a flow posterior (default: every model)")
    parser.add_argument("--jit", action="store_true", help="trace the loss of every model that can be traced")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="what the networks compute at (TrainConfig.precision)")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for name in args.models or sorted(n for n, cls in MODELS.items() if cls.trained_by_gradient):
        jit = args.jit and get_model_class(name.split("+")[0]).traceable
        seconds = time_model(name, device, args.x_dim, args.slots, args.hidden, args.batch, args.steps, jit=jit,
                             precision=args.precision)
        rows.append({"model": name, "jit": jit, "precision": args.precision, "seconds_per_step": seconds,
                     "images_per_second": 2 * args.batch / seconds})
        print(f"{name:14s} {1000 * seconds:8.1f} ms/step  {2 * args.batch / seconds:9.0f} images/s"
              + ("  (traced)" if jit else "  (eager)" if args.jit else ""))
    print(json.dumps({"settings": vars(args), "hardware": hardware_info(device), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
