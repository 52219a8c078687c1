"""Our Pyro step against the same objective written in plain PyTorch, for M2 and GM-DGM.

    python benchmarks/plain_pytorch.py [--device cpu|cuda] [--steps 30] [--out FILE.json]

The plain version reuses the Pyro model's own networks and parameters (classifier, q(z|x,y) trunk
and heads, decoder, p(z|y) table) and writes the enumerated ELBO by hand:
U(x) = sum_y q(y|x) [log p(y) + log p(z_y|y) + log p(x|z_y[,y]) - log q(z_y|x,y) - log q(y|x)],
L(x,y) the same at the observed y, plus alpha * CE. Both sides take one full optimizer step
(100 labelled + 100 unlabelled points, backward, value clipping, Adam). The Pyro step is timed
twice: eager, and with its loss traced (``TrainConfig.jit``, :mod:`pyro_sus.tracing`). Before
timing, the losses are averaged over many draws at the same parameters: they must agree within
Monte Carlo noise, or the comparison is not of the same objective. Defaults: Willetts MNIST SUS setting
(444 kept pixels, 5 + 40 slots, z = 5, 500-500 networks).
"""

from __future__ import annotations

import argparse
import json
import time

import pyro
import torch
import torch.nn.functional as F

from pyro_sus.run import hardware_info
from pyro_sus.models import get_model_class
from pyro_sus.models.base import Batch
from pyro_sus.tracing import TracedLoss
from step_shape import add_step_shape_arguments  # beside this script


def plain_loss(model, x_u: torch.Tensor, x_l: torch.Tensor, y_l: torch.Tensor) -> torch.Tensor:
    """The model's objective (per-point means, as ``model.loss``) without Pyro."""
    k = model.config.n_slots
    log_prior_y = model.class_probs.log()

    def bound(x: torch.Tensor, onehot: torch.Tensor, y_index: torch.Tensor) -> torch.Tensor:
        # x: (..., B, D), onehot: (..., B, K) -> log p(x, y, z) - log q(z|x, y) with one z draw, shape (..., B)
        hidden = model.posterior.trunk(torch.cat([x, onehot], -1))
        loc, scale = model.posterior.loc(hidden), F.softplus(model.posterior.scale(hidden)) + 1e-4
        z = loc + scale * torch.randn_like(loc)
        log_q_z = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
        prior = model.latent_prior
        if hasattr(prior, "log_scale"):  # GM-DGM: one Gaussian per slot
            log_p_z = torch.distributions.Normal(prior.loc[y_index], prior.log_scale[y_index].exp()).log_prob(z).sum(-1)
        else:
            log_p_z = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        logits = model.decoder(torch.cat([z, onehot], -1) if model.decoder_sees_y else z)
        log_p_x = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        return log_prior_y[y_index] + log_p_z + log_p_x - log_q_z

    # Unlabelled: every y at once, shape (K, B).
    batch = x_u.shape[0]
    y_all = torch.arange(k, device=x_u.device).view(k, 1).expand(k, batch)
    log_q_y = F.log_softmax(model.classifier_net(x_u), -1)
    per_y = bound(x_u.expand(k, batch, -1), F.one_hot(y_all, k).to(x_u.dtype), y_all)
    unlabelled = (log_q_y.exp().T * (per_y - log_q_y.T)).sum(0)
    # Labelled: the bound at the observed y plus alpha * cross-entropy of q(y|x).
    labelled = bound(x_l, F.one_hot(y_l, k).to(x_l.dtype), y_l)
    cross_entropy = F.cross_entropy(model.classifier_net(x_l), y_l, reduction="none")
    return -unlabelled.mean() + (-labelled + model.config.alpha * cross_entropy).mean()


def step_seconds(loss_fn, model, batches, steps: int, warmup: int, device: torch.device) -> float:
    """Median seconds of one full optimizer step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    times = []
    for i in range(warmup + steps):
        x_u, x_l, y_l = batches[i % len(batches)]
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
    add_step_shape_arguments(parser, steps=30)
    parser.add_argument("--z-dim", type=int, default=5)
    parser.add_argument("--check-draws", type=int, default=200, help="draws for the same-objective check")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    batches = [(torch.rand(args.batch, args.x_dim, generator=generator).to(device),
                torch.rand(args.batch, args.x_dim, generator=generator).to(device),
                torch.randint(0, 5, (args.batch,), generator=generator).to(device)) for _ in range(4)]
    rows = []
    for name in ("m2", "gmdgm"):
        cls = get_model_class(name)
        torch.manual_seed(0)
        model = cls(cls.config_class(x_dim=args.x_dim, n_slots=args.slots, hidden_dims=args.hidden,
                                     z_dim=args.z_dim)).to(device)
        x_u, x_l, y_l = batches[0]
        traced = TracedLoss(model)
        losses = {"pyro": lambda *b: model.loss(Batch(*b)), "pyro_jit": lambda *b: traced(Batch(*b)),
                  "plain": lambda *b: plain_loss(model, *b)}
        with pyro.validation_enabled(False):  # Pyro's differentiable loss refuses to run under no_grad
            means = {key: sum(float(loss(x_u, x_l, y_l).detach()) for _ in range(args.check_draws)) / args.check_draws
                     for key, loss in losses.items()}
        for key in ("pyro", "pyro_jit"):
            if abs(means[key] - means["plain"]) / abs(means["plain"]) > 0.01:
                raise SystemExit(f"{name}: {key} loss {means[key]:.3f} vs plain {means['plain']:.3f}: "
                                 f"not the same objective")
        seconds = {}
        with pyro.validation_enabled(False):
            for key, loss in losses.items():
                torch.manual_seed(0)
                seconds[key] = step_seconds(loss, model, batches, args.steps, 3, device)
        pyro_s, jit_s, plain_s = seconds["pyro"], seconds["pyro_jit"], seconds["plain"]
        rows.append({"model": name, "pyro_ms_per_step": 1000 * pyro_s, "pyro_jit_ms_per_step": 1000 * jit_s,
                     "plain_ms_per_step": 1000 * plain_s, "ratio": pyro_s / plain_s, "ratio_jit": jit_s / plain_s,
                     "pyro_loss_mean": means["pyro"], "pyro_jit_loss_mean": means["pyro_jit"],
                     "plain_loss_mean": means["plain"], "pyro_images_per_second": 2 * args.batch / pyro_s,
                     "pyro_jit_images_per_second": 2 * args.batch / jit_s,
                     "plain_images_per_second": 2 * args.batch / plain_s})
        print(f"{name:6s} pyro {1000 * pyro_s:7.1f} ms/step  pyro jit {1000 * jit_s:7.1f} ms/step  "
              f"plain {1000 * plain_s:7.1f} ms/step  ratio {pyro_s / plain_s:.2f}, jit {jit_s / plain_s:.2f}  "
              f"(mean loss {means['pyro']:.2f} / {means['pyro_jit']:.2f} vs {means['plain']:.2f})")
    report = {"settings": vars(args), "hardware": hardware_info(device), "results": rows}
    print(json.dumps(report, indent=2))
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
