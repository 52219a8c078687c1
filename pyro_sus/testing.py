"""The contract every zoo model keeps, as functions a model of your own can be checked with.

    from pyro_sus.testing import check_model
    check_model(MyModel)                      # raises AssertionError naming the first broken promise

The repository's contract test (``tests/test_contract.py``) runs these same checks on every
registered model, with every posterior family, on the CPU and on CUDA when present.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyro
import pyro.poutine as poutine
import torch
from pyro.infer import SVI, TraceEnum_ELBO
from pyro.poutine.util import site_is_subsample

from .models.base import Batch, ZooModel
from .models.protocol import CAPABILITIES, SemiUnsupervisedModel
from .tracing import TracedLoss

__all__ = ["N_SLOTS", "X_DIM", "tiny_model", "tiny_batches", "check_interface", "check_loss_and_gradients",
           "check_enumeration_shapes", "loss_and_gradients", "check_traced_loss", "check_loss_terms", "check_fit_scores", "check_svi_step",
           "check_save_load", "check_model"]

N_SLOTS, X_DIM = 4, 12


def tiny_model(cls: type[ZooModel], device: str = "cpu", **options: Any) -> ZooModel:
    """A small instance of ``cls``: 12 inputs, 4 slots, hidden layers of 16 and 8, then the sizes the
    class declares for its smallest sound instance (``tiny_options``: z of 3, a of 2, ...);
    ``options`` override any config field."""
    config: dict[str, Any] = {"x_dim": X_DIM, "n_slots": N_SLOTS, "hidden_dims": (16, 8), **cls.tiny_options, **options}
    return cls(cls.config_class(**config)).to(device)


def tiny_batches(device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An unlabelled batch of 7 binary points, a labelled one of 5 with labels covering every slot."""
    x_u = torch.bernoulli(torch.full((7, X_DIM), 0.4)).to(device)
    x_l = torch.bernoulli(torch.full((5, X_DIM), 0.6)).to(device)
    return x_u, x_l, torch.tensor([0, 1, 2, 3, 1], device=device)


def check_interface(model: ZooModel) -> None:
    """The model offers the interface (:class:`pyro_sus.models.protocol.SemiUnsupervisedModel`) with
    every capability declared with its type."""
    assert isinstance(model, SemiUnsupervisedModel), "the model lacks part of SemiUnsupervisedModel"
    for name, kind in CAPABILITIES.items():
        assert isinstance(getattr(type(model), name), kind), f"capability {name} must be declared as a {kind.__name__}"
    assert model.fit_score_kind in ("bound", "max_probability", "negative_distance"), \
        f"fit_score_kind is {model.fit_score_kind!r}"
    assert model.likelihood_family in ("bernoulli", "gaussian", None), \
        f"likelihood_family is {model.likelihood_family!r}"
    assert model.has_class_prior == ("class_prior" in {f.name for f in dataclasses.fields(model.config)}), \
        "has_class_prior must say whether the config has a class_prior field"
    if model.has_embedding:
        assert callable(getattr(model, "embed", None)) and callable(getattr(model, "decode", None)), \
            "has_embedding is declared, but embed or decode is missing"


def check_loss_and_gradients(model: ZooModel, loss: torch.Tensor | None = None) -> None:
    """The loss of both batches is a finite scalar and every parameter gets a finite, non-zero gradient."""
    device = next(model.parameters()).device
    loss = model.loss(Batch(*tiny_batches(device))) if loss is None else loss
    assert loss.shape == () and torch.isfinite(loss), f"the loss is {loss}"
    model.zero_grad()
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} gets no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name} has an all-zero gradient"


def check_enumeration_shapes(model: ZooModel) -> None:
    """Unobserved y is enumerated in the dim left of the plate, every site scores (K, B) or (B,), and
    the classifier gives (B, n_slots) logits."""
    device = next(model.parameters()).device
    x_u, _, _ = tiny_batches(device)
    guide = poutine.trace(poutine.enum(model.guide, first_available_dim=-2)).get_trace(x_u)
    replayed = poutine.replay(model.model, trace=guide)
    generative = poutine.trace(poutine.enum(replayed, first_available_dim=-2)).get_trace(x_u)
    enumerated = 0
    for trace in (guide, generative):
        trace.compute_log_prob()
        for site in trace.nodes.values():
            if site["type"] != "sample" or site_is_subsample(site):
                continue
            if site["infer"].get("enumerate") == "parallel":
                enumerated += 1
                assert site["value"].shape == (N_SLOTS, 1), f"{site['name']} enumerates as {site['value'].shape}"
            shape = site["log_prob"].shape
            assert shape in {(len(x_u),), (N_SLOTS, len(x_u))}, f"{site['name']} scores with shape {shape}"
    assert enumerated >= 1, "nothing is enumerated, though the model says it enumerates (enumerates_unlabelled)"
    assert model.classifier(x_u).shape == (len(x_u), N_SLOTS)


def loss_and_gradients(model: ZooModel, loss_fn: Callable[[Batch], torch.Tensor], seed: int,
                       batch: Batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``loss_fn(batch)`` from random seed ``seed``, and the gradient it gives every parameter."""
    torch.manual_seed(seed)
    loss = loss_fn(batch)
    model.zero_grad()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def check_traced_loss(model: ZooModel) -> None:
    """The trace replays the eager loss's operations, random draws included: from one seed both give
    the same loss and gradients, on a batch other than the one traced (frozen draws would fail at
    the second seed). Float64, so that only the order of operations could differ."""
    device = next(model.parameters()).device
    model = model.double()
    x_u, x_l, y_l = tiny_batches(device)
    options: dict[str, Any] = {"labelled_scale": 0.5}
    if model.takes_label_weights:
        options["w_labelled"] = torch.linspace(0.2, 1.0, len(y_l), dtype=torch.double, device=device)
    traced = TracedLoss(model)
    traced(Batch(x_u.double(), x_l.double(), y_l, **options))  # traced on this batch ...
    new = Batch(1 - x_u.double(), 1 - x_l.double(), (y_l + 1) % N_SLOTS, **options)  # ... checked on another
    for seed in (1, 2):
        eager_loss, eager_grads = loss_and_gradients(model, model.loss, seed, new)
        traced_loss, traced_grads = loss_and_gradients(model, traced, seed, new)
        torch.testing.assert_close(traced_loss, eager_loss)
        for (name, _), a, b in zip(model.named_parameters(), traced_grads, eager_grads):
            torch.testing.assert_close(a, b, msg=f"{name}: traced and eager gradients differ")


def check_loss_terms(model: ZooModel) -> None:
    """``loss_terms`` splits the loss by term: from one seed the terms sum to the loss, for the
    unlabelled batch, the labelled one and both (float64)."""
    device = next(model.parameters()).device
    model = model.double()
    x_u, x_l, y_l = tiny_batches(device)
    x_u, x_l = x_u.double(), x_l.double()
    for inputs in ((x_u,), (None, x_l, y_l), (x_u, x_l, y_l)):
        torch.manual_seed(4)
        loss = float(model.loss(Batch(*inputs, labelled_scale=0.5)).detach())
        torch.manual_seed(4)
        terms = model.loss_terms(Batch(*inputs, labelled_scale=0.5))
        ignored = inputs == (x_u,) and not model.uses_unlabelled  # a labelled-only model: nothing to split
        assert bool(terms) != ignored, f"loss_terms gave {sorted(terms)} for {len(inputs)} input(s)"
        assert all(value.shape == () and torch.isfinite(value) for value in terms.values())
        total = float(sum(terms.values(), 0.0))
        assert abs(total - loss) <= 1e-9 * max(1.0, abs(loss)), f"terms sum to {total}, the loss is {loss}"


def check_fit_scores(model: ZooModel) -> None:
    """One fit score per point: with a bound, their mean is the unlabelled bound at the same draws;
    without one, the largest q(y|x)."""
    device = next(model.parameters()).device
    model = model.double().eval()
    x_u = tiny_batches(device)[0].double()
    scores = model.fit_scores(x_u, n_samples=3)
    assert scores.shape == (len(x_u),) and torch.isfinite(scores).all()
    if model.fit_score_kind == "bound" and model.uses_unlabelled:
        bound = model.unlabelled_bound(x_u, n_samples=3)
        assert abs(float(scores.mean()) - bound) <= 1e-9 * max(1.0, abs(bound)), (float(scores.mean()), bound)
    else:
        torch.testing.assert_close(scores, model.predict_proba(x_u).max(-1).values)


def check_svi_step(model: ZooModel, learning_rate: float = 1e-2) -> None:
    """One step of Pyro's own ``SVI`` (``pyro.optim.Adam``, ``TraceEnum_ELBO``) on the unlabelled
    batch and one on the labelled batch change every parameter: Pyro sees them all. A model whose
    networks are hidden from Pyro (no param site records them) fails here, naming what Pyro cannot
    see. Pyro's param store is left as it was."""
    device = next(model.parameters()).device
    x_u, x_l, y_l = tiny_batches(device)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}
    elbo = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)
    svi = SVI(model.model, model.guide, pyro.optim.Adam({"lr": learning_rate}), elbo)
    with pyro.get_param_store().scope():
        if model.uses_unlabelled:
            svi.step(x_u)
        svi.step(x_l, y_l)
        seen = {id(v.unconstrained() if hasattr(v, "unconstrained") else v) for v in pyro.get_param_store().values()}
    hidden = [name for name, param in model.named_parameters() if id(param) not in seen]
    assert not hidden, (f"Pyro's SVI cannot see {hidden}: model and guide must record them as param sites "
                        f"(ZooModel's model and guide do for every parameter of the module; keep networks in it)")
    unchanged = [name for name, param in model.named_parameters() if torch.equal(param.detach(), before[name])]
    assert not unchanged, f"one SVI step on each batch left {unchanged} unchanged"


def check_save_load(model: ZooModel, directory: str | Path | None = None) -> None:
    """``save`` then ``load`` gives the same config and the same predictions, bit for bit."""
    device = next(model.parameters()).device
    with torch.no_grad():  # move weights away from their init so a fresh model would differ
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(directory) if directory is not None else Path(scratch)
        model.save(folder)
        loaded = type(model).load(folder, map_location=str(device)).to(device)
    assert loaded.config == model.config
    x_u = tiny_batches(device)[0]
    torch.testing.assert_close(loaded.predict_proba(x_u), model.predict_proba(x_u), rtol=0, atol=0)


def check_model(cls: type[ZooModel], device: str = "cpu", **options: Any) -> None:
    """Every check of the contract on fresh tiny instances of ``cls`` (``options``: config fields)."""
    check_interface(tiny_model(cls, device, **options))
    check_loss_and_gradients(tiny_model(cls, device, **options))
    if cls.enumerates_unlabelled:
        check_enumeration_shapes(tiny_model(cls, device, **options))
    if cls.traceable:
        check_traced_loss(tiny_model(cls, device, **options))
    check_loss_terms(tiny_model(cls, device, **options))
    check_fit_scores(tiny_model(cls, device, **options))
    check_svi_step(tiny_model(cls, device, **options))
    check_save_load(tiny_model(cls, device, **options))
