"""One contract every registered model keeps, on CPU always and on CUDA when present."""

import pytest
import torch
import pyro.poutine as poutine

from pyro_sus.models import MODELS, build_model
from conftest import DEVICES

N_SLOTS, X_DIM, Z_DIM = 4, 12, 3


def make(name, device, **options):
    return build_model(name, x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(16, 8), **options).to(device)


def batches(device):
    x_u = torch.bernoulli(torch.full((7, X_DIM), 0.4)).to(device)
    x_l = torch.bernoulli(torch.full((5, X_DIM), 0.6)).to(device)
    y_l = torch.tensor([0, 1, 2, 3, 1], device=device)
    return x_u, x_l, y_l


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_loss_finite_and_gradients_reach_every_parameter(name, device, likelihood):
    model = make(name, device, likelihood=likelihood)
    loss = model.loss(*batches(device))
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_enumeration_shapes(name, device):
    model = make(name, device)
    x_u, _, _ = batches(device)
    trace = poutine.trace(poutine.enum(model.guide, first_available_dim=-2)).get_trace(x_u)
    y, z = trace.nodes["y"]["value"], trace.nodes["z"]["value"]
    assert y.shape == (N_SLOTS, 1)                      # enumerated in the dim left of the plate
    assert z.shape == (N_SLOTS, len(x_u), Z_DIM)        # one z per value of y
    likelihood = model.likelihood(z, y)
    assert likelihood.batch_shape == (N_SLOTS, len(x_u))
    assert likelihood.event_shape == (X_DIM,)
    assert model.latent_prior(y).batch_shape[-2:] in {(N_SLOTS, 1), (N_SLOTS, len(x_u))}
    assert model.classifier(x_u).shape == (len(x_u), N_SLOTS)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(MODELS))
def test_save_load_round_trip_gives_identical_predictions(name, device, tmp_path):
    model = make(name, device)
    with torch.no_grad():  # move weights away from their init so a fresh model would differ
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    model.save(tmp_path)
    loaded = type(model).load(tmp_path, map_location=device).to(device)
    assert loaded.config == model.config
    x_u, _, _ = batches(device)
    torch.testing.assert_close(loaded.predict_proba(x_u), model.predict_proba(x_u), rtol=0, atol=0)
    fresh = make(name, device)
    assert not torch.equal(fresh.predict_proba(x_u), model.predict_proba(x_u))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_two_models_in_one_process_keep_their_own_parameters(name):
    first, second = make(name, "cpu"), make(name, "cpu")
    x_u, x_l, y_l = batches("cpu")
    before = [p.clone() for p in second.parameters()]
    first.loss(x_u, x_l, y_l).backward()
    for p in first.parameters():
        p.data.add_(1.0)
    for p, b in zip(second.parameters(), before):
        assert torch.equal(p, b)
    second.loss(x_u, x_l, y_l)  # running the second must not pull in the first's parameters
    for p, b in zip(second.parameters(), before):
        assert torch.equal(p, b)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gaussian_likelihood_has_the_configured_fixed_scale(name):
    model = make(name, "cpu", likelihood="gaussian", gaussian_scale=0.3)
    z, y = torch.randn(6, Z_DIM), torch.arange(6) % N_SLOTS
    likelihood = model.likelihood(z, y)
    x = torch.randn(6, X_DIM)
    mean = likelihood.base_dist.loc
    expected = torch.distributions.Normal(mean, 0.3).log_prob(x).sum(-1)
    torch.testing.assert_close(likelihood.log_prob(x), expected)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_class_prior_is_used_by_the_model(name):
    model = make(name, "cpu", class_prior=(0.7, 0.1, 0.1, 0.1))
    trace = poutine.trace(model.model).get_trace(torch.zeros(3, X_DIM), torch.tensor([0, 1, 3]))
    torch.testing.assert_close(trace.nodes["y"]["fn"].log_prob(torch.tensor([0, 1, 3])),
                               torch.tensor([0.7, 0.1, 0.1]).log())
    with pytest.raises(ValueError, match="class_prior"):
        make(name, "cpu", class_prior=(0.5, 0.5, 0.5, 0.5))
