"""One contract every registered model keeps, with every posterior family, on CPU always and on
CUDA when present: finite loss, gradients on every parameter, enumeration shapes, a traced loss
equal to the eager one, named terms that sum to the loss, fit scores, save/load. The checks
themselves are public (``pyro_sus.testing``), so a model of your own gets the same ones."""

import dataclasses
import math

import pyro
import pytest
import torch
import pyro.poutine as poutine

from torch import nn

from pyro_sus.models import MODELS, GenerativeModel, get_model_class
from pyro_sus.nn import MLP
from pyro_sus.posteriors import POSTERIORS, Trunk
from pyro_sus.priors import LATENT_PRIORS
from pyro_sus.testing import (N_SLOTS, X_DIM, check_enumeration_shapes, check_fit_scores, check_loss_and_gradients,
                              check_loss_terms, check_model, check_save_load, check_traced_loss, loss_and_gradients,
                              tiny_batches, tiny_model)
from pyro_sus.tracing import TracedLoss
from pyro_sus.models.base import Batch
from conftest import DEVICES

Z_DIM = 3
# The models the gradient loop trains (the k-means baseline is fitted in closed form: tests/test_kmeans.py).
TRAINED = {name: cls for name, cls in MODELS.items() if cls.trained_by_gradient}
GENERATIVE = sorted(name for name, cls in MODELS.items() if issubclass(cls, GenerativeModel))
SWAPPABLE = [name for name in GENERATIVE if MODELS[name].swappable_parts]
# Every model, and every model with swappable parts once per posterior family.
CASES = [(name, posterior) for name in sorted(TRAINED)
         for posterior in (sorted(POSTERIORS) if name in SWAPPABLE else [None])]
ENUMERATING = [case for case in CASES if get_model_class(case[0]).enumerates_unlabelled]
SMALL_PART_OPTIONS = {"flow": {"transforms": 2, "flow_hidden": (8,)}}


def fields(name):
    return {f.name for f in dataclasses.fields(get_model_class(name).config_class)}


def make(name, device="cpu", posterior=None, **options):
    if posterior is not None:
        options = {"posterior": posterior, "posterior_options": SMALL_PART_OPTIONS.get(posterior, {}), **options}
    return tiny_model(get_model_class(name), device, **options)


batches = tiny_batches
assert_every_parameter_learns = check_loss_and_gradients

@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,posterior", CASES)
def test_loss_finite_and_gradients_reach_every_parameter(name, posterior, device, likelihood):
    if name not in GENERATIVE and likelihood == "gaussian":
        pytest.skip("no likelihood in a discriminative model")
    options = {"likelihood": likelihood} if name in GENERATIVE else {}
    model = make(name, device, posterior, **options)
    assert_every_parameter_learns(model, model.loss(Batch(*batches(device))))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,posterior", ENUMERATING)
def test_enumeration_shapes(name, posterior, device):
    """Unobserved y is enumerated in the dim left of the plate, and every site scores (K, B) or (B,)."""
    check_enumeration_shapes(make(name, device, posterior))

TRACEABLE = [case for case in CASES if get_model_class(case[0]).traceable]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,posterior", TRACEABLE)
def test_traced_loss_gives_the_eager_loss_and_gradients_on_new_data(name, posterior, device):
    """The trace replays the eager loss's operations, random draws included (pyro_sus.testing)."""
    check_traced_loss(make(name, device, posterior))


@pytest.mark.parametrize("name,posterior", CASES)
def test_named_loss_terms_sum_to_the_loss_at_the_same_draws(name, posterior):
    """loss_terms splits the loss by site: from one seed the terms sum to the loss."""
    model = make(name, "cpu", posterior)
    check_loss_terms(model)
    if name in ("m2", "gmdgm"):
        x_u, x_l, y_l = batches("cpu")
        assert set(model.loss_terms(Batch(x_u.double(), x_l.double(), y_l))) == {
            "reconstruction", "kl_z", "kl_y", "nll_y", "classifier_loss"}


@pytest.mark.parametrize("name,posterior", CASES)
def test_fit_scores_are_the_per_point_bound_or_the_largest_probability(name, posterior):
    check_fit_scores(make(name, "cpu", posterior))


def test_check_model_passes_every_registered_model_and_catches_a_broken_one():
    """pyro_sus.testing.check_model is the contract as a function: a plugin model runs it in its own
    tests. It passes for every registered model and names what a broken one breaks."""
    for cls in TRAINED.values():
        check_model(cls)

    class Frozen(get_model_class("gmdgm")):  # a plugin model with a part its loss never reaches
        def __init__(self, config):
            super().__init__(config)
            self.unused = nn.Linear(2, 2)

    with pytest.raises(AssertionError, match="unused.weight gets no gradient"):
        check_model(Frozen)

    class Misnamed(get_model_class("m2")):  # a plugin whose terms do not add up to its loss
        def loss_terms(self, batch):
            terms = super().loss_terms(batch)
            return {**terms, "extra": torch.ones((), dtype=torch.double)}

    with pytest.raises(AssertionError, match="terms sum to"):
        check_loss_terms(tiny_model(Misnamed))

RELAXED_ESTIMATORS = ("gumbel-softmax", "gumbel-straight-through")
# Every model that can draw y relaxed, with every posterior family and each relaxed estimator.
RELAXED = [(name, posterior, estimator) for name, posterior in CASES if "y_estimator" in fields(name)
           for estimator in RELAXED_ESTIMATORS]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,posterior,estimator", RELAXED)
def test_relaxed_y_keeps_the_contract(name, posterior, estimator, device, tmp_path):
    """With one relaxed draw of y per point: finite loss and gradients on every parameter, no site
    enumerated, a trace that follows the temperature schedule (equal to the eager loss after the
    temperature moved), and the estimator's options back from disk."""
    model = make(name, device, posterior, y_estimator=estimator, temperature_decay=0.1, temperature_min=0.2)
    x_u, x_l, y_l = batches(device)
    model.before_step(0)
    assert_every_parameter_learns(model, model.loss(Batch(x_u, x_l, y_l)))
    guide = poutine.trace(model.guide).get_trace(x_u)
    assert not any(site["infer"].get("enumerate") for site in guide.nodes.values() if site["type"] == "sample")
    assert guide.nodes["y"]["value"].shape == (len(x_u), N_SLOTS)
    if model.traceable:
        model.double()
        traced = TracedLoss(model)
        traced(Batch(x_u.double(), x_l.double(), y_l))
        model.before_step(7)  # temperature 1 -> exp(-0.7): the traced graph must read the new value
        assert float(model.temperature) == pytest.approx(math.exp(-0.7))
        new = Batch(1 - x_u.double(), x_l.double(), y_l)
        eager_loss, eager_grads = loss_and_gradients(model, model.loss, 3, new)
        traced_loss, traced_grads = loss_and_gradients(model, traced, 3, new)
        torch.testing.assert_close(traced_loss, eager_loss)
        for a, b in zip(traced_grads, eager_grads):
            torch.testing.assert_close(a, b)
    model.save(tmp_path)
    loaded = type(model).load(tmp_path, map_location=device)
    assert loaded.config == model.config and loaded.config.y_estimator == estimator


@pytest.mark.parametrize("latent_prior", sorted(LATENT_PRIORS))
@pytest.mark.parametrize("name", [n for n in SWAPPABLE if "y_estimator" in fields(n)])
def test_every_latent_prior_takes_a_relaxed_y(name, latent_prior):
    """A relaxed y (a float vector over the slots) reaches p(z|y); a one-hot vector scores as the index does."""
    model = make(name, latent_prior=latent_prior, y_estimator="gumbel-softmax")
    assert_every_parameter_learns(model, model.loss(Batch(*batches("cpu"))))
    y = torch.tensor([0, 3, 1])
    z = torch.randn(3, Z_DIM)
    by_index = model.latent_prior(y)
    by_vector = model.latent_prior(torch.nn.functional.one_hot(y, N_SLOTS).float())
    assert by_vector.batch_shape == by_index.batch_shape == (3,)
    torch.testing.assert_close(by_vector.log_prob(z), by_index.log_prob(z))


def test_a_model_that_is_not_traceable_refuses_a_traced_loss():
    class Untraced(get_model_class("m2")):  # e.g. a plugin model that has not said its loss traces
        traceable = False

    with pytest.raises(ValueError, match="traceable = False"):
        TracedLoss(Untraced(Untraced.config_class(x_dim=X_DIM, n_slots=N_SLOTS, hidden_dims=(4,))))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,posterior", CASES)
def test_save_load_round_trip_gives_identical_predictions(name, posterior, device, tmp_path):
    model = make(name, device, posterior)
    check_save_load(model, tmp_path)
    x_u, _, _ = batches(device)
    fresh = make(name, device, posterior)
    assert not torch.equal(fresh.predict_proba(x_u), model.predict_proba(x_u))

@pytest.mark.parametrize("name,posterior", CASES)
def test_activation_reaches_every_hidden_layer_and_survives_save_load(name, posterior, tmp_path):
    """``activation="softplus"`` replaces ReLU in every MLP and posterior trunk, keeps gradients
    flowing, changes the outputs, and comes back from disk."""
    def activations(model):
        layers = [m for m in model.modules() if isinstance(m, (MLP, Trunk))]
        return layers, {type(a) for layer in layers for a in layer.modules() if isinstance(a, (nn.ReLU, nn.Softplus))}

    torch.manual_seed(0)
    model = make(name, "cpu", posterior, activation="softplus")
    layers, kinds = activations(model)
    assert layers and kinds == {nn.Softplus}
    assert_every_parameter_learns(model, model.loss(Batch(*batches("cpu"))))
    model.save(tmp_path)
    loaded = type(model).load(tmp_path, map_location="cpu")
    assert loaded.config.activation == "softplus" and activations(loaded)[1] == {nn.Softplus}
    torch.manual_seed(0)
    relu = make(name, "cpu", posterior)
    relu.load_state_dict(model.state_dict())  # same weights, other nonlinearity
    x_u, _, _ = batches("cpu")
    assert not torch.allclose(relu.predict_proba(x_u), model.predict_proba(x_u))
    with pytest.raises(ValueError, match="activation must be one of"):
        make(name, "cpu", posterior, activation="tanh")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_predictions_are_probabilities_and_do_not_move_the_global_rng(name):
    model = make(name)
    x_u, _, _ = batches("cpu")
    torch.manual_seed(3)
    expected_next = torch.rand(1)
    torch.manual_seed(3)
    probs = model.predict_proba(x_u)
    assert torch.equal(torch.rand(1), expected_next)
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(x_u)))
    torch.testing.assert_close(model.predict_proba(x_u), probs, rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_two_models_in_one_process_keep_their_own_parameters(name):
    first, second = make(name), make(name)
    x_u, x_l, y_l = batches("cpu")
    before = [p.clone() for p in second.parameters()]
    first.loss(Batch(x_u, x_l, y_l)).backward()
    for p in first.parameters():
        p.data.add_(1.0)
    for p, b in zip(second.parameters(), before):
        assert torch.equal(p, b)
    second.loss(Batch(x_u, x_l, y_l))  # running the second must not pull in the first's parameters
    for p, b in zip(second.parameters(), before):
        assert torch.equal(p, b)


@pytest.mark.parametrize("name", GENERATIVE)
def test_gaussian_likelihood_has_the_configured_fixed_scale(name):
    code = {"gaussian_dim": Z_DIM} if "gaussian_dim" in fields(name) else {}  # the decoder reads a z of Z_DIM
    model = make(name, likelihood="gaussian", gaussian_scale=0.3, **code)
    z, y = torch.randn(6, Z_DIM), torch.arange(6) % N_SLOTS
    likelihood = model.likelihood(z, y)
    x = torch.randn(6, X_DIM)
    mean = likelihood.base_dist.loc
    expected = torch.distributions.Normal(mean, 0.3).log_prob(x).sum(-1)
    torch.testing.assert_close(likelihood.log_prob(x), expected)


@pytest.mark.parametrize("latent_prior", sorted(LATENT_PRIORS))
@pytest.mark.parametrize("name", SWAPPABLE)
def test_every_latent_prior_plugs_into_every_generative_model(name, latent_prior):
    model = make(name, latent_prior=latent_prior)
    assert type(model.latent_prior) is LATENT_PRIORS[latent_prior]
    assert_every_parameter_learns(model, model.loss(Batch(*batches("cpu"))))


@pytest.mark.parametrize("name", sorted(n for n in MODELS if "class_prior" in fields(n)))
def test_class_prior_is_used_by_the_model(name):
    model = make(name, class_prior=(0.7, 0.1, 0.1, 0.1))
    trace = poutine.trace(model.model).get_trace(torch.zeros(3, X_DIM), torch.tensor([0, 1, 3]))
    torch.testing.assert_close(trace.nodes["y"]["fn"].log_prob(torch.tensor([0, 1, 3])),
                               torch.tensor([0.7, 0.1, 0.1]).log())
    with pytest.raises(ValueError, match="class_prior"):
        make(name, class_prior=(0.5, 0.5, 0.5, 0.5))


def test_unknown_parts_and_options_fail_with_the_known_names():
    with pytest.raises(ValueError, match="known posteriors: .*flow.*normal"):
        make("m2", posterior="spline")
    with pytest.raises(ValueError, match="known: .*class_gaussian"):
        make("m2", latent_prior="vamp")
    with pytest.raises(ValueError, match="bad options for posterior 'normal'"):
        make("m2", posterior="normal", posterior_options={"transforms": 3})
    with pytest.raises(ValueError, match="flow kind"):
        make("m2", posterior="flow", posterior_options={"kind": "planar"})


@pytest.mark.parametrize("name", ["m2", "gmdgm", "am2", "agmdgm"])
def test_the_latent_mean_is_the_guides_mean_of_z_over_y(name):
    """latent_mean(x) = sum_y q(y|x) E[z | x, y]: checked against the guide's own draws of (y, z)."""
    model = make(name)
    model.eval()
    with torch.no_grad():  # an uneven q(y|x) and a q(z|x, y) that moves with y, so a wrong weighting shows
        model.classifier_net[-1].bias.copy_(torch.tensor([3.0, 0.0, -1.0, 1.5]))
        model.posterior.trunk.body[0].weight[:, -N_SLOTS:].mul_(40)  # the one-hot y's columns (the last part)
    x = torch.bernoulli(torch.full((3, X_DIM), 0.5))
    draws = 20000
    torch.manual_seed(0)
    with torch.no_grad(), pyro.plate("draws", draws, dim=-2):
        trace = poutine.trace(model.guide).get_trace(x.expand(draws, *x.shape))
    mean = model.latent_mean(x)
    assert mean.shape == (3, Z_DIM)
    torch.testing.assert_close(trace.nodes["z"]["value"].mean(0), mean, atol=0.03, rtol=0)
    # The same with every slot weighted alike is another number: the check can tell.
    slots = torch.arange(N_SLOTS).unsqueeze(-1)
    context = model.posterior_context(model.guide_inputs(x), model.onehot(slots))
    uniform = model.posterior(context).mean.mean(0)
    assert (uniform - mean).abs().max() > 0.1
