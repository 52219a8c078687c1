"""The enumerated objective equals its hand-computed value, term by term."""

import pytest
import torch
import pyro.poutine as poutine
from torch.distributions import Categorical, Normal, Bernoulli

from pyro_sus.models import build_model

M2_FAMILY = ["m2", "gmdgm"]  # the auxiliary and latent-classifier models have their own checks in test_zoo.py


def tiny(name, alpha=1.7):
    model = build_model(name, x_dim=4, n_slots=3, z_dim=2, hidden_dims=(5,), alpha=alpha,
                        class_prior=(0.5, 0.3, 0.2))
    return model.double()


def guide_z_draws(model, x, y=None, seed=123):
    """Run the guide exactly as TraceEnum_ELBO does first (enumerating y) and return its z draw."""
    torch.manual_seed(seed)
    trace = poutine.trace(poutine.enum(model.guide, first_available_dim=-2)).get_trace(x, y)
    return trace.nodes["z"]["value"]


def hand_elbo_terms(model, x, y, z):
    """log p(x|z,y) + log p(z|y) + log p(y) - log q(z|x,y) for given y (shape (..., B)) and z."""
    onehot = torch.nn.functional.one_hot(y, 3).double()
    x_b = x.expand(*y.shape, 4)
    context = torch.cat([x_b, onehot], -1)
    q_z = model.posterior(context)
    dec_in = torch.cat([z, onehot], -1) if model.decoder_sees_y else z
    log_px = Bernoulli(logits=model.decoder(dec_in)).log_prob(x_b).sum(-1)
    if name_of(model) == "gmdgm":
        prior = model.latent_prior
        log_pz = Normal(prior.loc[y], prior.log_scale[y].exp()).log_prob(z).sum(-1)
    else:
        log_pz = Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_py = model.class_probs.log()[y]
    return log_px + log_pz + log_py - q_z.log_prob(z)


def name_of(model):
    return type(model).registry_name


@pytest.mark.parametrize("name", M2_FAMILY)
def test_unlabelled_loss_is_enumerated_sum(name):
    model = tiny(name)
    x = torch.bernoulli(torch.full((6, 4), 0.5, dtype=torch.double))
    z = guide_z_draws(model, x)                     # (K=3, B=6, z_dim=2): one draw per value of y
    assert z.shape == (3, 6, 2)
    torch.manual_seed(123)
    loss = model._elbo.differentiable_loss(model.model, model.guide, x)
    y = torch.arange(3).view(3, 1).expand(3, 6)
    q_y = Categorical(logits=model.classifier(x))
    weights = q_y.probs.T                           # (K, B)
    by_hand = (weights * hand_elbo_terms(model, x, y, z)).sum(0) + q_y.entropy()
    torch.testing.assert_close(loss, -by_hand.sum())


@pytest.mark.parametrize("name", M2_FAMILY)
@pytest.mark.parametrize("alpha", [0.0, 2.5])
def test_labelled_loss_is_elbo_plus_weighted_cross_entropy(name, alpha):
    model = tiny(name, alpha=alpha)
    x = torch.bernoulli(torch.full((5, 4), 0.5, dtype=torch.double))
    y = torch.tensor([0, 2, 1, 1, 0])
    z = guide_z_draws(model, x, y)
    assert z.shape == (5, 2)
    torch.manual_seed(123)
    loss = model._elbo_labelled.differentiable_loss(model.model, model.guide, x, y)
    cross_entropy = -Categorical(logits=model.classifier(x)).log_prob(y)
    by_hand = -hand_elbo_terms(model, x, y, z) + alpha * cross_entropy
    torch.testing.assert_close(loss, by_hand.sum())
    # The classifier term must enter as a plain differentiable term with weight alpha: its gradient
    # on the classifier equals alpha * grad CE (no score-function terms from the z costs).
    params = list(model.classifier_net.parameters())
    grad_loss = torch.autograd.grad(loss, params)
    grad_hand = torch.autograd.grad(alpha * cross_entropy.sum(), params, allow_unused=True)
    for got, want in zip(grad_loss, grad_hand):
        torch.testing.assert_close(got, torch.zeros_like(got) if want is None else want)


def test_batch_loss_is_per_point_mean_of_both_parts():
    model = tiny("gmdgm")
    x_u = torch.bernoulli(torch.full((6, 4), 0.5, dtype=torch.double))
    x_l, y_l = x_u[:2], torch.tensor([1, 2])
    torch.manual_seed(5)
    combined = model.loss(x_u, x_l, y_l)
    torch.manual_seed(5)
    unlabelled = model._elbo.differentiable_loss(model.model, model.guide, x_u) / 6
    labelled = model._elbo_labelled.differentiable_loss(model.model, model.guide, x_l, y_l) / 2
    torch.testing.assert_close(combined, unlabelled + labelled)
