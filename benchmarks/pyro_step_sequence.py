"""Our M2 trained by Pyro's SS-VAE step sequence, or by our one joint step: where does the gap come from?

    python benchmarks/pyro_step_sequence.py --sequence pyro --grey --softplus --epochs 50 --out F.json
    python benchmarks/pyro_step_sequence.py --sequence joint --grey --softplus --epochs 50 --out F.json

The model is ours (``pyro_sus`` M2: z = 50, one hidden layer of 500, alpha = 46, uniform p(y)) on
MNIST 50k / 10k validation / 10k test with ``--labels`` balanced labels. Only the optimisation
differs:

- ``joint``: what ``pyro_sus.train`` does with ``labelled_scale="dataset"``: each step one
  unlabelled batch of 200 plus a labelled batch (all labels up to 200), the labelled terms scaled
  by labelled / unlabelled set sizes, one Adam step.
- ``pyro``: the order of steps in Pyro's examples/vae/ss_vae_M2.py, written here from its
  description: per epoch the unlabelled batches of 200, with a labelled batch taking the place of
  every (train size / labels)-th batch until the labels are used up; losses are sums over the
  batch. ``--aux-separate`` takes a labelled batch's ELBO and its alpha * CE as two Adam steps (Pyro
  runs two SVI objects on one optimizer); ``--momentum-step`` adds the second Adam step Pyro takes
  after each unlabelled batch, whose gradient is zero (the auxiliary objective has no term there,
  but Pyro leaves zeroed, not absent, gradients), so Adam moves again on its momentum alone.

``--grey`` trains on grey values (Pyro) instead of dynamic binarisation; ``--softplus`` swaps the
ReLU of our MLPs for Softplus (Pyro's networks); the last hidden layer of q(z|x,y) stays ReLU, as in
the recorded runs, unless ``--trunk-end softplus`` (Pyro's network there too).
Validation and test accuracy (argmax of q(y|x)) are written after every epoch to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pyro_sus.run import hardware_info, training_data
from pyro_sus.data import load_dataset
from pyro_sus.preprocess import Preprocessor
from pyro_sus.split import make_split
from pyro_sus.models import M2, DGMConfig
from pyro_sus.train import seed_everything
from pyro_sus.models.base import Batch

BATCH = 200


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sequence", choices=["joint", "pyro"], default="pyro")
    p.add_argument("--aux-separate", action="store_true", help="labelled ELBO and alpha * CE as two Adam steps")
    p.add_argument("--momentum-step", action="store_true", help="Pyro's zero-gradient Adam step after each unlabelled batch")
    p.add_argument("--grey", action="store_true", help="grey values instead of dynamic binarisation")
    p.add_argument("--softplus", action="store_true", help="Softplus instead of ReLU in the MLPs")
    p.add_argument("--trunk-end", choices=["relu", "softplus"], default="relu",
                   help="with --softplus: the last hidden layer of q(z|x,y) (the recorded runs kept ReLU there)")
    p.add_argument("--labels", type=int, default=100, help="balanced labels in all (a multiple of 10)")
    p.add_argument("--lr", type=float, default=4.2e-4)
    p.add_argument("--beta1", type=float, default=0.95)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--max-unlabelled", type=int, default=None, help="keep this many unlabelled images (smoke tests)")
    p.add_argument("--out", required=True, help="JSON file: options, hardware and one record per epoch")
    args = p.parse_args()
    if args.trunk_end == "softplus" and not args.softplus:
        p.error("--trunk-end softplus needs --softplus (without it every layer is ReLU)")
    return args


def main() -> None:
    args = parse_args()
    data = load_dataset("mnist", args.data_dir)
    split = make_split(data.y_train, labels_per_class=args.labels // 10, validation_fraction=1 / 6, seed=args.seed)
    pre = Preprocessor.fit(data.x_train[np.concatenate([split.labelled_idx, split.unlabelled_idx])], None)
    train_data = training_data(data, split, pre)
    x_test, y_test = torch.tensor(pre.transform(data.x_test)), data.y_test
    seed_everything(args.seed)
    model = M2(DGMConfig(x_dim=784, n_slots=10, z_dim=50, hidden_dims=(500,), alpha=46.0,
                        activation="softplus" if args.softplus else "relu"))
    if args.softplus and args.trunk_end == "relu":  # as in the recorded runs
        model.posterior.trunk.activation = nn.ReLU()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(args.beta1, 0.999))
    generator = torch.Generator().manual_seed(args.seed)
    x_u_all, x_l_all, y_l_all = train_data.x_unlabelled, train_data.x_labelled, train_data.y_labelled
    x_u_all = x_u_all[: args.max_unlabelled]
    n_u, n_l = len(x_u_all), len(x_l_all)
    draw = (lambda x: x) if args.grey else torch.bernoulli
    log: list[dict[str, float]] = []
    # What was trained, read off the modules (not the options), so a record shows what ran.
    networks = {"activations": sorted({type(m).__name__ for m in model.modules() if isinstance(m, (nn.ReLU, nn.Softplus))}),
                "q(z|x,y) last hidden layer": type(model.posterior.trunk.activation).__name__}

    def record(epoch: int, seconds: float) -> None:
        model.eval()
        val = float((model.predict_proba(train_data.x_val).argmax(-1).numpy() == train_data.y_val).mean())
        test = float((model.predict_proba(x_test).argmax(-1).numpy() == y_test).mean())
        model.train()
        log.append({"epoch": epoch, "val": val, "test": test, "seconds": seconds})
        print(json.dumps(log[-1]), flush=True)
        Path(args.out).write_text(json.dumps({"args": vars(args), "hardware": hardware_info("cpu"),
                                              "networks": networks, "log": log}, indent=1))

    def adam_step(loss: torch.Tensor, momentum: bool = False) -> None:
        optimizer.zero_grad(set_to_none=False)
        loss.backward()
        optimizer.step()
        if momentum and args.momentum_step:
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.zero_()
            optimizer.step()

    alpha = model.config.alpha
    interval = (n_u + n_l) // n_l  # Pyro: int(train size / labels)
    for epoch in range(args.epochs):
        started = time.time()
        if args.sequence == "joint":
            for idx in torch.randperm(n_u, generator=generator).split(BATCH):
                # All labels when they fit in one batch, else a fresh random batch of them.
                labelled = torch.randperm(n_l, generator=generator)[:BATCH] if n_l > BATCH else slice(None)
                loss = model.loss(Batch(draw(x_u_all[idx]), draw(x_l_all[labelled]), y_l_all[labelled],
                                  labelled_scale=n_l / n_u))
                adam_step(loss)
        else:
            unlabelled = list(torch.randperm(n_u, generator=generator).split(BATCH))
            labelled = (list(torch.randperm(n_l, generator=generator).split(BATCH)) if n_l > BATCH
                        else [slice(None)])
            next_u = next_l = 0
            for i in range(len(unlabelled) + len(labelled)):
                if i % interval == 1 and next_l < len(labelled):
                    idx = labelled[next_l]
                    next_l += 1
                    x, y = draw(x_l_all[idx]), y_l_all[idx]
                    if args.aux_separate:
                        model.config.alpha = 0.0  # the ELBO alone, then the auxiliary loss alone
                        elbo = model.loss(Batch(None, x, y)) * len(x)
                        model.config.alpha = alpha
                        adam_step(elbo)
                        adam_step(alpha * F.cross_entropy(model.classifier(x), y, reduction="sum"))
                    else:
                        adam_step(model.loss(Batch(None, x, y)) * len(x), momentum=True)
                else:
                    x = draw(x_u_all[unlabelled[next_u]])
                    next_u += 1
                    adam_step(model.loss(Batch(x)) * len(x), momentum=True)
        record(epoch + 1, time.time() - started)


if __name__ == "__main__":
    main()
