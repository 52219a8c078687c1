"""How far apart are the eager and the traced (--jit) training steps of a Table II run? A record.

Builds the M2 / GM-DGM SUS model of a Table II run folder (its split, preprocessing, seed and
options), draws a few training batches, and compares one step's loss and gradients:
eager against traced (--jit), and, as a control that changes nothing but float rounding, eager
at 1 torch thread against eager at 2 (another summation order in the matrix products).

    python docs/results/table2-jit-first-step/first_step.py RUN_DIR [RUN_DIR ...] > out.json
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import torch

from pyro_sus.run import build_run_model, hardware_info, load_parts, training_data
from pyro_sus.data import load_dataset
from pyro_sus.tracing import TracedLoss
from pyro_sus.train import seed_everything


def gradients(model: torch.nn.Module, loss_fn, batch, seed: int, threads: int) -> tuple[float, list[torch.Tensor]]:
    """One step's loss and gradients (copies), with torch's global seed and thread count set."""
    torch.set_num_threads(threads)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)
    loss = loss_fn(*batch)
    loss.backward()
    return float(loss.detach()), [p.grad.detach().clone() for p in model.parameters()]


def compare(a: tuple[float, list[torch.Tensor]], b: tuple[float, list[torch.Tensor]],
            names: list[str]) -> dict[str, object]:
    """Loss difference; the gradients' largest absolute and relative (to the largest entry)
    differences and the share of entries that differ, overall and per top-level module."""
    def summary(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
        diff = max(float((x - y).abs().max()) for x, y in pairs)
        return {"max_gradient_difference": diff,
                "max_gradient_difference_relative": diff / max(float(x.abs().max()) for x, _ in pairs),
                "gradient_entries_changed": sum(int((x != y).sum()) for x, y in pairs) / sum(x.numel() for x, _ in pairs)}
    modules: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for name, x, y in zip(names, a[1], b[1]):
        modules.setdefault(name.split(".")[0], []).append((x, y))
    return {"loss_difference": b[0] - a[0], **summary(list(zip(a[1], b[1]))),
            "by_module": {module: summary(pairs) for module, pairs in modules.items()}}


def main(run_dirs: list[str]) -> None:
    report = {"hardware": hardware_info(torch.device("cpu")), "runs": {}}
    for run_dir in map(Path, run_dirs):
        _, spec, split, pre = load_parts(run_dir)
        data = load_dataset(spec.data.dataset, spec.data.data_dir)
        seed_everything(spec.train.seed)
        model = build_run_model(spec, split, pre)  # the run's initial weights
        training = training_data(data, split, pre)
        twin = copy.deepcopy(model)
        traced = TracedLoss(model)
        generator = torch.Generator().manual_seed(0)
        names = [name for name, _ in model.named_parameters()]
        rows = []
        for draw in range(3):
            u = torch.randperm(len(training.x_unlabelled), generator=generator)[:100]
            l = torch.randperm(len(training.x_labelled), generator=generator)[:100]
            batch = (torch.bernoulli(training.x_unlabelled[u], generator=generator),
                     torch.bernoulli(training.x_labelled[l], generator=generator), training.y_labelled[l])
            eager = gradients(twin, twin.loss, batch, draw, threads=1)
            rows.append({"batch": draw,
                         "jit_vs_eager": compare(eager, gradients(model, traced, batch, draw, threads=1), names),
                         "eager_2_threads_vs_1": compare(eager, gradients(twin, twin.loss, batch, draw, threads=2), names),
                         "eager_repeat": compare(eager, gradients(twin, twin.loss, batch, draw, threads=1), names)})
        report["runs"][str(run_dir)] = {"model": spec.model, "seed": spec.train.seed, "steps": rows}
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main(sys.argv[1:])
