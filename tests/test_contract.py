"""One contract every registered model keeps, with every posterior family, on CPU always and on
CUDA when present: finite loss, gradients on every parameter, enumeration shapes, a traced loss
equal to the eager one, save/load."""

import dataclasses
import math

import pytest
import torch
import pyro.poutine as poutine
from pyro.poutine.util import site_is_subsample

from torch import nn

from pyro_sus.models import MODELS, GenerativeModel, build_model, get_model_class
from pyro_sus.nn import MLP
from pyro_sus.posteriors import POSTERIORS, _Trunk
from pyro_sus.priors import LATENT_PRIORS
from pyro_sus.tracing import TracedLoss
from conftest import DEVICES

N_SLOTS, X_DIM, Z_DIM = 4, 12, 3
GENERATIVE = sorted(name for name, cls in MODELS.items() if issubclass(cls, GenerativeModel))
SWAPPABLE = [name for name in GENERATIVE if MODELS[name].swappable_parts]
# Every model, and every model with swappable parts once per posterior family.
CASES = [(name, posterior) for name in sorted(MODELS)
         for posterior in (sorted(POSTERIORS) if name in SWAPPABLE else [None])]
ENUMERATING = [case for case in CASES if get_model_class(case[0]).enumerates_unlabelled]
SMALL_PART_OPTIONS = {"flow": {"transforms": 2, "flow_hidden": (8,)}}


def fields(name):
    return {f.name for f in dataclasses.fields(get_model_class(name).config_class)}


def make(name, device="cpu", posterior=None, **options):
    config = {"x_dim": X_DIM, "n_slots": N_SLOTS, "hidden_dims": (16, 8)}
    if "z_dim" in fields(name):
        config["z_dim"] = Z_DIM
    if "a_dim" in fields(name):
        config["a_dim"] = 2
    if posterior is not None:
        config.update(posterior=posterior, posterior_options=SMALL_PART_OPTIONS.get(posterior, {}))
    config.update(options)
    return build_model(name, **config).to(device)


def batches(device):
    x_u = torch.bernoulli(torch.full((7, X_DIM), 0.4)).to(device)
    x_l = torch.bernoulli(torch.full((5, X_DIM), 0.6)).to(device)
    y_l = torch.tensor([0, 1, 2, 3, 1], device=device)
    return x_u, x_l, y_l


def assert_every_parameter_learns(model, loss):
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{pname} gets no gradient"
        assert torch.isfinite(param.grad).all(), f"{pname} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,posterior", CASES)
def test_loss_finite_and_gradients_reach_every_parameter(name, posterior, device, likelihood):
    if name not in GENERATIVE and likelihood == "gaussian":
        pytest.skip("no likelihood in a discriminative model")
    options = {"likelihood": likelihood} if name in GENERATIVE else {}
    model = make(name, device, posterior, **options)
    assert_every_parameter_learns(model, model.loss(*batches(device)))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,posterior", ENUMERATING)
def test_enumeration_shapes(name, posterior, device):
    """Unobserved y is enumerated in the dim left of the plate, and every site scores (K, B) or (B,)."""
    model = make(name, device, posterior)
    x_u, _, _ = batches(device)
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
                assert site["value"].shape == (N_SLOTS, 1)
            shape = site["log_prob"].shape
            assert shape in {(len(x_u),), (N_SLOTS, len(x_u))}, f"{site['name']} scores with shape {shape}"
    assert enumerated >= 1
    assert model.classifier(x_u).shape == (len(x_u), N_SLOTS)


def loss_and_gradients(model, loss_fn, seed, *inputs, **options):
    torch.manual_seed(seed)
    loss = loss_fn(*inputs, **options)
    model.zero_grad()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


TRACEABLE = [case for case in CASES if get_model_class(case[0]).traceable]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name,posterior", TRACEABLE)
def test_traced_loss_gives_the_eager_loss_and_gradients_on_new_data(name, posterior, device):
    """The trace replays the eager loss's operations, random draws included: from one seed both give
    the same loss and gradients, on a batch other than the one traced (frozen draws would fail at
    the second seed)."""
    model = make(name, device, posterior).double()
    x_u, x_l, y_l = batches(device)
    options = {"labelled_scale": 0.5}
    if model.takes_label_weights:
        options["w_labelled"] = torch.linspace(0.2, 1.0, len(y_l), dtype=torch.double, device=device)
    traced = TracedLoss(model)
    traced(x_u.double(), x_l.double(), y_l, **options)  # traced on this batch ...
    new_u, new_l = 1 - x_u.double(), 1 - x_l.double()  # ... and checked on others of its shapes
    new_y = (y_l + 1) % N_SLOTS
    for seed in (1, 2):
        eager_loss, eager_grads = loss_and_gradients(model, model.loss, seed, new_u, new_l, new_y, **options)
        traced_loss, traced_grads = loss_and_gradients(model, traced, seed, new_u, new_l, new_y, **options)
        torch.testing.assert_close(traced_loss, eager_loss)
        for (pname, _), a, b in zip(model.named_parameters(), traced_grads, eager_grads):
            torch.testing.assert_close(a, b, msg=f"{pname}: traced and eager gradients differ")


@pytest.mark.parametrize("name,posterior", CASES)
def test_named_loss_terms_sum_to_the_loss_at_the_same_draws(name, posterior):
    """loss_terms splits the loss by site (reconstruction, kl_z, kl_y, classifier_loss, ...): from one
    seed, the terms sum to the loss, for the unlabelled batch, the labelled one, and both."""
    model = make(name, "cpu", posterior).double()
    x_u, x_l, y_l = batches("cpu")
    x_u, x_l = x_u.double(), x_l.double()
    for inputs in ((x_u,), (None, x_l, y_l), (x_u, x_l, y_l)):
        torch.manual_seed(4)
        loss = model.loss(*inputs, labelled_scale=0.5)
        torch.manual_seed(4)
        terms = model.loss_terms(*inputs, labelled_scale=0.5)
        ignored = inputs == (x_u,) and not model.uses_unlabelled  # a labelled-only model: nothing to split
        assert bool(terms) != ignored
        assert all(value.shape == () and torch.isfinite(value) for value in terms.values())
        assert float(sum(terms.values(), 0.0)) == pytest.approx(float(loss.detach()), rel=1e-9, abs=1e-9)
    if name in ("m2", "gmdgm"):
        assert set(terms) == {"reconstruction", "kl_z", "kl_y", "nll_y", "classifier_loss"}


@pytest.mark.parametrize("name,posterior", CASES)
def test_fit_scores_are_the_per_point_bound_or_the_largest_probability(name, posterior):
    """fit_scores, one per point: with a bound, their mean is the model's unlabelled bound at the same
    draws (so each is that point's share); without one, the largest q(y|x)."""
    model = make(name, "cpu", posterior).double().eval()
    x_u, _, _ = batches("cpu")
    scores = model.fit_scores(x_u.double(), n_samples=3)
    assert scores.shape == (len(x_u),) and torch.isfinite(scores).all()
    if model.fit_score_kind == "bound" and model.uses_unlabelled:
        assert float(scores.mean()) == pytest.approx(model.unlabelled_bound(x_u.double(), n_samples=3), rel=1e-9)
        assert scores.std() > 0
    else:
        torch.testing.assert_close(scores, model.predict_proba(x_u.double()).max(-1).values)


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
    assert_every_parameter_learns(model, model.loss(x_u, x_l, y_l))
    guide = poutine.trace(model.guide).get_trace(x_u)
    assert not any(site["infer"].get("enumerate") for site in guide.nodes.values() if site["type"] == "sample")
    assert guide.nodes["y"]["value"].shape == (len(x_u), N_SLOTS)
    if model.traceable:
        model.double()
        traced = TracedLoss(model)
        traced(x_u.double(), x_l.double(), y_l)
        model.before_step(7)  # temperature 1 -> exp(-0.7): the traced graph must read the new value
        assert float(model.temperature) == pytest.approx(math.exp(-0.7))
        eager_loss, eager_grads = loss_and_gradients(model, model.loss, 3, 1 - x_u.double(), x_l.double(), y_l)
        traced_loss, traced_grads = loss_and_gradients(model, traced, 3, 1 - x_u.double(), x_l.double(), y_l)
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
    assert_every_parameter_learns(model, model.loss(*batches("cpu")))
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
    with torch.no_grad():  # move weights away from their init so a fresh model would differ
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))
    model.save(tmp_path)
    loaded = type(model).load(tmp_path, map_location=device).to(device)
    assert loaded.config == model.config
    x_u, _, _ = batches(device)
    torch.testing.assert_close(loaded.predict_proba(x_u), model.predict_proba(x_u), rtol=0, atol=0)
    fresh = make(name, device, posterior)
    assert not torch.equal(fresh.predict_proba(x_u), model.predict_proba(x_u))


@pytest.mark.parametrize("name,posterior", CASES)
def test_activation_reaches_every_hidden_layer_and_survives_save_load(name, posterior, tmp_path):
    """``activation="softplus"`` replaces ReLU in every MLP and posterior trunk, keeps gradients
    flowing, changes the outputs, and comes back from disk."""
    def activations(model):
        layers = [m for m in model.modules() if isinstance(m, (MLP, _Trunk))]
        return layers, {type(a) for layer in layers for a in layer.modules() if isinstance(a, (nn.ReLU, nn.Softplus))}

    torch.manual_seed(0)
    model = make(name, "cpu", posterior, activation="softplus")
    layers, kinds = activations(model)
    assert layers and kinds == {nn.Softplus}
    assert_every_parameter_learns(model, model.loss(*batches("cpu")))
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


@pytest.mark.parametrize("name", sorted(MODELS))
def test_two_models_in_one_process_keep_their_own_parameters(name):
    first, second = make(name), make(name)
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


@pytest.mark.parametrize("name", GENERATIVE)
def test_gaussian_likelihood_has_the_configured_fixed_scale(name):
    model = make(name, likelihood="gaussian", gaussian_scale=0.3)
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
    assert_every_parameter_learns(model, model.loss(*batches("cpu")))


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
