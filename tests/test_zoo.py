"""The property that makes each zoo model (and each swappable part) what it is."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
import pyro.poutine as poutine
from torch.distributions import Bernoulli, Categorical, Normal

from pyro_sus.models import build_model
from pyro_sus.posteriors import FlowPosterior, build_posterior
from pyro_sus.priors import ClassGaussianPrior, ClassMixturePrior, class_prior
from pyro_sus.tracing import TracedLoss
from pyro_sus.models.base import Batch

X_DIM, N_SLOTS, Z_DIM = 4, 3, 2


def bits(n, seed=0):
    torch.manual_seed(seed)
    return torch.bernoulli(torch.full((n, X_DIM), 0.5, dtype=torch.double))


def guide_trace(model, x, y=None, seed=123):
    torch.manual_seed(seed)
    return poutine.trace(poutine.enum(model.guide, first_available_dim=-2)).get_trace(x, y)


def bernoulli_log_lik(model, decoder_input, x):
    return Bernoulli(logits=model.decoder(decoder_input)).log_prob(x).sum(-1)


# -- flow posterior ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["iaf", "maf", "nsf"])
def test_flow_posterior_samples_follow_its_density(kind):
    """The density integrates to one and the samples' mean matches the density's (1-D z, a grid)."""
    torch.manual_seed(0)
    flow = FlowPosterior(context_dim=3, z_dim=1, hidden_dims=(8,), transforms=3, kind=kind).double()
    with torch.no_grad():  # push the layers away from identity so the density is not just the base
        for param in flow.flow.transform.parameters():
            param.add_(0.3 * torch.randn_like(param))
    q = flow(torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.double))
    grid = torch.linspace(-20, 20, 40001, dtype=torch.double).view(-1, 1, 1)
    with torch.no_grad():
        density = q.dist.log_prob(grid).exp().view(-1)      # recomputed, not the cached value
        samples = q.dist.sample((40000,)).view(-1)
    step = float(grid[1] - grid[0])
    assert abs(float(density.sum()) * step - 1.0) < 1e-3
    grid_mean = float((grid.view(-1) * density).sum()) * step
    assert abs(float(samples.mean()) - grid_mean) < 0.05 * max(1.0, float(samples.std()))


def test_flow_posterior_scores_its_own_samples_with_the_cached_log_density():
    torch.manual_seed(0)
    flow = FlowPosterior(context_dim=5, z_dim=3, hidden_dims=(8,), transforms=2)
    q = flow(torch.randn(2, 4, 5))                      # an enumerated (K, B) batch
    z = q()
    assert z.shape == (2, 4, 3) and q.batch_shape == (2, 4) and q.event_shape == (3,)
    torch.testing.assert_close(q.log_prob(z), q.dist.log_prob(z), atol=1e-4, rtol=1e-4)


def test_flow_posterior_changes_the_bound_and_trains_its_layers():
    x = bits(8).float()
    normal = build_model("lcvae", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(8,))
    flow = build_model("lcvae", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(8,), posterior="flow")
    assert isinstance(flow.posterior, FlowPosterior) and not isinstance(normal.posterior, FlowPosterior)
    loss = flow.loss(Batch(x))
    loss.backward()
    layer_grads = [p.grad for p in flow.posterior.flow.transform.parameters()]
    assert layer_grads and all(g is not None and g.abs().sum() > 0 for g in layer_grads)


# -- latent priors and the class prior ------------------------------------------------------------

def test_mixture_prior_density_is_the_weighted_sum_of_its_components():
    torch.manual_seed(0)
    prior = ClassMixturePrior(n_slots=3, z_dim=2, components=4)
    with torch.no_grad():
        prior.logits.normal_()
    y, z = torch.tensor([2, 0]), torch.randn(2, 2)
    weights = torch.softmax(prior.logits[y], -1)                       # (B, M)
    comp = Normal(prior.loc[y], prior.log_scale[y].exp()).log_prob(z.unsqueeze(1)).sum(-1).exp()
    torch.testing.assert_close(prior(y).log_prob(z), (weights * comp).sum(-1).log())


def test_mixture_with_one_component_is_the_class_gaussian():
    torch.manual_seed(0)
    mixture, gaussian = ClassMixturePrior(3, 2, components=1), ClassGaussianPrior(3, 2)
    with torch.no_grad():
        gaussian.loc.copy_(mixture.loc[:, 0])
        gaussian.log_scale.copy_(mixture.log_scale[:, 0])
    y, z = torch.arange(3).view(3, 1), torch.randn(5, 2)              # enumerated y against a batch of z
    torch.testing.assert_close(mixture(y).log_prob(z), gaussian(y).log_prob(z))


def test_given_class_prior_is_normalised_and_checked():
    torch.testing.assert_close(class_prior(2, 1, "given", probs=[2, 1, 1]), torch.tensor([0.5, 0.25, 0.25]))
    with pytest.raises(ValueError, match="3 probabilities"):
        class_prior(2, 1, "given", probs=[0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative"):
        class_prior(2, 1, "given", probs=[1.0, -0.5, 0.5])


# -- auxiliary models ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["am2", "agmdgm"])
def test_auxiliary_unlabelled_loss_is_the_enumerated_sum(name):
    """-U(x) = -( E_q(y|a,x)[log p(x|z,y) + log p(z|y) + log p(y) + log p(a|..) - log q(z|a,x,y)]
    + H[q(y|a,x)] - log q(a|x) ) with the same draws of a and z."""
    model = build_model(name, x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, a_dim=2, hidden_dims=(5,),
                        class_prior=(0.5, 0.3, 0.2)).double()
    x = bits(6)
    trace = guide_trace(model, x)
    a, z = trace.nodes["a"]["value"], trace.nodes["z"]["value"]          # (B, A), (K, B, Z)
    torch.manual_seed(123)
    loss = model._elbo.differentiable_loss(model.model, model.guide, x)

    y = torch.arange(N_SLOTS).view(N_SLOTS, 1).expand(N_SLOTS, 6)
    onehot = F.one_hot(y, N_SLOTS).double()
    x_b, a_b = x.expand(N_SLOTS, 6, X_DIM), a.expand(N_SLOTS, 6, 2)
    q_y = Categorical(logits=model.classifier_net(torch.cat([x, a], -1)))
    log_q_z = model.posterior(torch.cat([x_b, a_b, onehot], -1)).log_prob(z)
    dec_in = torch.cat([z, onehot], -1) if model.decoder_sees_y else z
    log_px = bernoulli_log_lik(model, dec_in, x_b)
    log_pz = model.latent_prior(y).log_prob(z)
    aux_in = torch.cat(([x_b] if model.aux_prior_sees_x else []) + [onehot, z], -1)
    log_pa = model.aux_prior(aux_in).log_prob(a_b)
    log_py = model.class_probs.log()[y]
    per_y = log_px + log_pz + log_py + log_pa - log_q_z
    by_hand = (q_y.probs.T * per_y).sum(0) + q_y.entropy() - model.aux_posterior(x).log_prob(a)
    torch.testing.assert_close(loss, -by_hand.sum())


def test_agmdgm_aux_prior_ignores_x_and_am2_uses_it():
    am2 = build_model("am2", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, a_dim=2, hidden_dims=(5,))
    agm = build_model("agmdgm", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, a_dim=2, hidden_dims=(5,))
    first = am2.aux_prior.trunk.body[0]
    assert first.in_features == X_DIM + N_SLOTS + Z_DIM
    assert agm.aux_prior.trunk.body[0].in_features == N_SLOTS + Z_DIM


# -- latent-classifier VAE -------------------------------------------------------------------------

def lcvae(name="lcvae", **options):
    return build_model(name, x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(5,), **options).double()


def test_lcvae_unlabelled_loss_is_the_papers_bound():
    """-U(x) = -( E_p(y|z) log p(x|y,z) + log p(z) - log q(z|x) ), Proposition 2 of the thesis."""
    model, x = lcvae(), bits(6)
    z = guide_trace(model, x).nodes["z"]["value"]                          # (B, Z): z is drawn before y
    torch.manual_seed(123)
    loss = model._elbo.differentiable_loss(model.model, model.guide, x)
    p_y = Categorical(logits=model.latent_classifier(z)).probs.T           # (K, B)
    onehot = F.one_hot(torch.arange(N_SLOTS), N_SLOTS).double().view(N_SLOTS, 1, N_SLOTS).expand(N_SLOTS, 6, N_SLOTS)
    log_px = bernoulli_log_lik(model, torch.cat([z.expand(N_SLOTS, 6, Z_DIM), onehot], -1), x)
    by_hand = (p_y * log_px).sum(0) + Normal(0.0, 1.0).log_prob(z).sum(-1) - model.posterior(x).log_prob(z)
    torch.testing.assert_close(loss, -by_hand.sum())

    # The "exact" bound sums y inside the likelihood: log sum_y p(y|z) p(x|y,z) >= E_p(y|z) log p(x|y,z).
    exact = lcvae(unlabelled_bound="exact")
    exact.load_state_dict(model.state_dict())
    torch.manual_seed(123)
    exact_loss = exact._elbo.differentiable_loss(exact.model, exact.guide, x)
    exact_by_hand = (torch.logsumexp(p_y.log() + log_px, 0) + Normal(0.0, 1.0).log_prob(z).sum(-1)
                     - model.posterior(x).log_prob(z))
    torch.testing.assert_close(exact_loss, -exact_by_hand.sum())
    assert exact_loss < loss


def test_lcvae_labelled_loss_is_lambda_times_the_papers_bound():
    """-lambda * L(x,y), L = log p(x|y,z) + log p(y|z) + log p(z) - log q(z|x) (Proposition 1)."""
    model, x, y = lcvae(labelled_weight=0.3), bits(5), torch.tensor([0, 2, 1, 1, 0])
    z = guide_trace(model, x, y).nodes["z"]["value"]
    torch.manual_seed(123)
    loss = model.loss(Batch(None, x, y))
    onehot = F.one_hot(y, N_SLOTS).double()
    bound = (bernoulli_log_lik(model, torch.cat([z, onehot], -1), x)
             + Categorical(logits=model.latent_classifier(z)).log_prob(y)
             + Normal(0.0, 1.0).log_prob(z).sum(-1) - model.posterior(x).log_prob(z))
    torch.testing.assert_close(loss, -0.3 * bound.mean())


def test_unlabelled_data_trains_the_lcvae_classifier_but_not_the_simplified_one():
    x = bits(6)
    for name, expect_signal in (("lcvae", True), ("lcvae-simple", False)):
        model = lcvae(name)
        model.loss(Batch(x)).backward()
        grads = [p.grad for p in model.latent_classifier.parameters()]
        has_signal = any(g is not None and g.abs().sum() > 0 for g in grads)
        assert has_signal == expect_signal, name


def test_simplified_decoder_ignores_y():
    model = lcvae("lcvae-simple")
    z = torch.randn(4, Z_DIM, dtype=torch.double)
    first, second = model.likelihood(z, torch.tensor([0, 0, 0, 0])), model.likelihood(z, torch.tensor([1, 2, 1, 2]))
    torch.testing.assert_close(first.base_dist.logits, second.base_dist.logits)
    assert model.decoder[0].in_features == Z_DIM


def test_lcvae_classifier_averages_p_y_given_z_over_posterior_draws():
    model, x = lcvae(prediction_samples=4000), bits(3)
    torch.manual_seed(0)
    q = model.posterior(x)
    want = torch.softmax(model.latent_classifier(q.sample((4000,))), -1).mean(0)
    got = model.predict_proba(x)
    torch.testing.assert_close(got, want, atol=0.02, rtol=0)


# -- baselines -------------------------------------------------------------------------------------

def test_labelled_only_classifier_minimises_cross_entropy_and_ignores_unlabelled_data():
    model = build_model("classifier", x_dim=X_DIM, n_slots=N_SLOTS, hidden_dims=(5,)).double()
    x, y = bits(5), torch.tensor([0, 2, 1, 1, 0])
    torch.testing.assert_close(model.loss(Batch(None, x, y)), F.cross_entropy(model.classifier(x), y))
    assert float(model.loss(Batch(bits(7, seed=1)))) == 0.0


def test_m1_encoder_never_sees_a_label():
    """The classifier term reaches only the head: encoder gradients are those of the plain VAE."""
    model = build_model("m1", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(5,)).double()
    x, y = bits(5), torch.tensor([0, 2, 1, 1, 0])
    encoder = list(model.posterior.parameters()) + list(model.decoder.parameters())
    torch.manual_seed(7)
    with_labels = torch.autograd.grad(model.loss(Batch(None, x, y)), encoder)
    torch.manual_seed(7)
    without = torch.autograd.grad(model.loss(Batch(x)), encoder)
    for a, b in zip(with_labels, without):
        torch.testing.assert_close(a, b)
    head_grads = torch.autograd.grad(model.loss(Batch(None, x, y)), list(model.head.parameters()))
    assert all(g.abs().sum() > 0 for g in head_grads)


def test_posterior_families_are_built_by_name_with_options():
    flow = build_posterior("flow", 6, 3, (8,), {"transforms": 3, "kind": "maf"})
    assert isinstance(flow, FlowPosterior) and len(flow.flow.transform.transforms) == 3
    assert math.isclose(float(flow(torch.zeros(2, 6)).log_prob(torch.zeros(2, 3)).shape.numel()), 2)


def test_a_posterior_family_is_declared_a_posterior_family_and_gets_the_models_activation(monkeypatch):
    """What a model hands its posterior is declared by PosteriorFamily, never probed: the activation
    always (ReLU included), the context as parts only where ``takes_context_parts`` says so; a family
    that does not build a PosteriorFamily is refused by name."""
    from torch import nn

    from pyro_sus.posteriors import POSTERIORS, DiagonalNormalPosterior, PosteriorFamily

    seen = []

    class Recording(PosteriorFamily):
        """A plugin family taking the concatenated context (the base's declaration)."""

        def __init__(self, context_dim, z_dim, hidden_dims, activation):
            super().__init__()
            seen.append(activation)
            self.inner = DiagonalNormalPosterior(context_dim, z_dim, hidden_dims, activation)

        def forward(self, context):
            assert isinstance(context, torch.Tensor)  # not the parts
            return self.inner(context)

    monkeypatch.setitem(POSTERIORS, "test_recording", Recording)
    for activation in ("relu", "softplus"):
        model = build_model("m2", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(5,),
                            posterior="test_recording", activation=activation).double()
        assert torch.isfinite(model.loss(Batch(bits(4), bits(3), torch.tensor([0, 1, 2])))).all()
    assert list(dict.fromkeys(seen)) == ["relu", "softplus"]  # (the size check builds a model too)
    assert model.posterior_context(bits(2), torch.ones(2, N_SLOTS)).shape == (2, X_DIM + N_SLOTS)

    class Plain(nn.Module):
        def __init__(self, context_dim, z_dim, hidden_dims, activation):
            super().__init__()

    monkeypatch.setitem(POSTERIORS, "test_plain", Plain)
    with pytest.raises(TypeError, match="'test_plain' built a Plain, not a pyro_sus.posteriors.PosteriorFamily"):
        build_model("m2", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(5,), posterior="test_plain")


def test_unlabelled_bound_is_the_negative_mean_loss_and_none_without_an_unlabelled_objective():
    model = build_model("gmdgm", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(5,)).double()
    x = bits(10)
    torch.manual_seed(model.prediction_seed)
    want = -float(model._elbo.loss(model.model, model.guide, x)) / len(x)
    assert model.unlabelled_bound(x, n_samples=1) == pytest.approx(want)
    assert model.unlabelled_bound(x, n_samples=3) == model.unlabelled_bound(x, n_samples=3)  # repeatable
    classifier = build_model("classifier", x_dim=X_DIM, n_slots=N_SLOTS, hidden_dims=(5,))
    assert classifier.unlabelled_bound(x.float()) is None


def test_registries_accept_a_redefinition_but_not_a_clash():
    from torch import nn
    from pyro_sus.priors import LATENT_PRIORS, register_latent_prior

    def define():
        @register_latent_prior("test_redefined")
        class Redefined(nn.Module):
            """A prior defined twice, as a re-run notebook cell does."""
        return Redefined

    first, second = define(), define()
    assert LATENT_PRIORS["test_redefined"] is second is not first
    with pytest.raises(ValueError, match="already registered"):
        register_latent_prior("test_redefined")(nn.Identity)
    del LATENT_PRIORS["test_redefined"]


# -- categorical VAE with auxiliary tasks (Arias Figueroa & Ramírez Rivera) --------------------------

from pyro_sus.models.catvae import assignment_loss, feature_loss, nearest_labels  # noqa: E402


def test_assignment_gives_an_unlabelled_point_the_label_of_its_nearest_labelled_feature():
    labelled = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    labels = torch.tensor([4, 2, 9])
    points = torch.tensor([[0.9, 0.1], [0.1, 0.95], [0.6, 0.8], [1.0, 0.0]])
    assert nearest_labels(points, labelled, labels).tolist() == [4, 2, 9, 4]


def test_assignment_loss_is_equation_16():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    assigned = torch.tensor([0, 1])
    t = torch.tanh
    first = t(-torch.log(torch.tensor(0.7))) + t(torch.log(torch.tensor(0.2))) + t(torch.log(torch.tensor(0.1))) + 1
    second = t(-torch.log(torch.tensor(0.1))) + t(torch.log(torch.tensor(0.1))) + t(torch.log(torch.tensor(0.8))) + 1
    torch.testing.assert_close(assignment_loss(probs, assigned), (first + second) / 4)
    # the loss is lower when the assigned class gets the mass
    assert assignment_loss(probs, torch.tensor([0, 2])) < assignment_loss(probs, assigned)


def test_feature_loss_is_the_normalised_mean_distance_to_the_class_labelled_features():
    labelled = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    labels = torch.tensor([0, 1, 0])
    point = torch.tensor([[0.0, 1.0]])
    want = (torch.dist(point[0], labelled[0]) + torch.dist(point[0], labelled[2])) / (2 * math.sqrt(2))
    torch.testing.assert_close(feature_loss(point, torch.tensor([0]), labelled, labels), want.view(1))
    torch.testing.assert_close(feature_loss(point, torch.tensor([1]), labelled, labels), torch.zeros(1))


def catvae(**options):
    """The categorical VAE with the paper's objective, the one these tests check term by term."""
    return build_model("catvae-paper", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(5,),
                       **options).double()


def test_catvae_trains_the_released_code_objective_and_catvae_paper_the_printed_one():
    """The default is the objective that works on MNIST-100 (issue 38); the paper's keeps its own name."""
    from pyro_sus.models.catvae import PAPER_OPTIONS, RELEASED_CODE_OPTIONS

    released = build_model("catvae", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(5,)).config
    paper = catvae().config
    assert {key: getattr(released, key) for key in RELEASED_CODE_OPTIONS} == RELEASED_CODE_OPTIONS
    assert {key: getattr(paper, key) for key in PAPER_OPTIONS} == PAPER_OPTIONS
    assert set(RELEASED_CODE_OPTIONS) == set(PAPER_OPTIONS)
    assert all(RELEASED_CODE_OPTIONS[key] != PAPER_OPTIONS[key] for key in PAPER_OPTIONS)
    # The released objective's decoder reads z ~ q(z|f) of 150; its reconstruction is summed over pixels.
    model = build_model("catvae", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(5,))
    assert model.gaussian_head.out_features == 2 * 150
    assert model._reconstruction_scale == pytest.approx(1.0 / 1.2)


def test_catvae_conv_networks_refuse_another_activation():
    with pytest.raises(ValueError, match="MLP encoder only"):
        build_model("catvae", x_dim=784, n_slots=N_SLOTS, z_dim=Z_DIM, encoder="conv", activation="softplus")
    assert catvae(activation="softplus").config.activation == "softplus"


def test_catvae_features_are_non_negative_unit_vectors():
    f = build_model("catvae", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=16, hidden_dims=(5,)).double().feature(bits(6))
    assert (f >= 0).all()
    torch.testing.assert_close(f.norm(dim=-1), torch.ones(6, dtype=torch.double))


def test_catvae_elbo_part_is_weighted_reconstruction_minus_normalised_categorical_kl():
    """The Pyro ELBO term of Eq. 8: w_R/|x| E_q(C|f) log p(x|f,C) - w_C/log K KL(q(C|f) || uniform)."""
    model, x = catvae(w_reconstruction=2.0, w_categorical=0.5), bits(6)
    f = model.feature(x)
    got = model._elbo_weight * model._elbo.differentiable_loss(model.model, model.guide, x, None, f)
    q = torch.softmax(model.category_head(f), -1)                                   # (B, K)
    log_px = torch.stack([model.likelihood(f, torch.full((6,), k)).log_prob(x) for k in range(N_SLOTS)], -1)
    kl = (q * (q * N_SLOTS).log()).sum(-1)
    want = -(2.0 / X_DIM * (q * log_px).sum(-1) - 0.5 / math.log(N_SLOTS) * kl).sum()
    torch.testing.assert_close(got, want)


def test_catvae_gumbel_mode_samples_relaxed_categories_and_trains():
    model, x = catvae(category_inference="gumbel", temperature=0.5), bits(6)
    trace = poutine.trace(model.guide).get_trace(x)
    c = trace.nodes["y"]["value"]
    assert c.shape == (6, N_SLOTS) and torch.allclose(c.sum(-1), torch.ones(6, dtype=torch.double))
    assert ((c > 0) & (c < 1)).all()  # relaxed, not one-hot
    loss = model.loss(Batch(x, bits(3, seed=1), torch.tensor([0, 1, 2])))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())


def test_catvae_conv_networks_read_and_write_28x28_images_under_enumeration():
    model = build_model("catvae-paper", x_dim=784, n_slots=3, encoder="conv", hidden_dims=(8,))
    x = torch.bernoulli(torch.full((4, 784), 0.3))
    assert model.feature(x).shape == (4, 50)
    trace = poutine.trace(poutine.enum(model.guide, first_available_dim=-2)).get_trace(x)
    assert model.likelihood(model.feature(x), trace.nodes["y"]["value"]).batch_shape == (3, 4)
    loss = model.loss(Batch(x, x[:2], torch.tensor([0, 2])))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="28 x 28"):
        build_model("catvae", x_dim=700, n_slots=3, encoder="conv")


def test_knn_vote_takes_the_majority_label_of_the_k_nearest():
    from pyro_sus.models.catvae import nearest_labels as vote
    labelled = torch.tensor([[0.0], [0.1], [0.2], [1.0]])
    labels = torch.tensor([3, 5, 5, 3])
    assert vote(torch.tensor([[0.0]]), labelled, labels, neighbours=1).tolist() == [3]
    assert vote(torch.tensor([[0.0]]), labelled, labels, neighbours=3).tolist() == [5]


def test_lifted_structure_loss_matches_its_definition_and_vanishes_for_separated_classes():
    from pyro_sus.models.catvae import lifted_structure_loss
    f = torch.tensor([[0.0, 0.0], [0.3, 0.0], [0.0, 0.4]])
    labels = torch.tensor([0, 0, 1])
    d01, d02, d12 = 0.3, 0.4, 0.5
    j = d01 + math.log(math.exp(1.0 - d02) + math.exp(1.0 - d12))   # the one positive pair, both orders
    assert float(lifted_structure_loss(f, labels, margin=1.0)) == pytest.approx(max(j, 0.0) ** 2 / 2, rel=1e-5)
    far = torch.tensor([[0.0, 0.0], [0.01, 0.0], [3.0, 0.0], [3.01, 0.0]])
    assert float(lifted_structure_loss(far, torch.tensor([0, 0, 1, 1]), margin=1.0)) == 0.0
    # No positive pair, or nothing to push apart: no loss, and finite (zero) gradients.
    for labels in ([0, 1, 2], [1, 1, 1]):
        points = f.clone().requires_grad_()
        loss = lifted_structure_loss(points, torch.tensor(labels))
        loss.backward()
        assert float(loss.detach()) == 0.0 and torch.equal(points.grad, torch.zeros_like(f))


def assert_traced_gives_eager(model, traced, x_u, x_l, y_l):
    """On batches other than the traced one, from the same seeds, the trace gives the eager loss."""
    for seed in (1, 2):
        torch.manual_seed(seed)
        eager = model.loss(Batch(1 - x_u, 1 - x_l, y_l.flip(0)))
        torch.manual_seed(seed)
        torch.testing.assert_close(traced(Batch(1 - x_u, 1 - x_l, y_l.flip(0))), eager)


def test_catvae_conv_gumbel_loss_traces_to_the_eager_loss():
    """The categorical VAE's loss (1-NN assignment, lifted-structure loss, Gumbel draws) has no
    Python branch on values: traced on one batch, it gives the eager loss on another."""
    model = build_model("catvae", x_dim=784, n_slots=3, encoder="conv", hidden_dims=(8,),
                        category_inference="gumbel").double()
    x_u, x_l = torch.bernoulli(torch.full((6, 784), 0.3)).double(), torch.bernoulli(torch.full((4, 784), 0.6)).double()
    y_l = torch.tensor([0, 1, 1, 2])
    twin = copy.deepcopy(model)
    traced = TracedLoss(model)
    torch.manual_seed(0)
    traced(Batch(x_u, x_l, y_l))
    torch.manual_seed(0)
    twin.loss(Batch(x_u, x_l, y_l))
    # Tracing runs the loss once more than eager; it must not count in BatchNorm's running statistics.
    for (name, a), b in zip(model.named_buffers(), twin.buffers()):
        assert torch.equal(a, b), f"{name}: the traced call left another value than one eager call"
    assert_traced_gives_eager(model, traced, x_u, x_l, y_l)


def test_catvae_cross_entropy_assignment_is_softmax_cross_entropy_on_the_assigned_labels():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 0.3, 1.2]], dtype=torch.double)
    assigned = torch.tensor([0, 2])
    want = -(torch.log_softmax(logits, -1)[0, 0] + torch.log_softmax(logits, -1)[1, 2]) / 2
    torch.testing.assert_close(catvae(assignment_loss="cross_entropy")._assignment_loss(logits, assigned), want)
    torch.testing.assert_close(catvae()._assignment_loss(logits, assigned),
                               assignment_loss(torch.softmax(logits, -1), assigned))
    with pytest.raises(ValueError, match="assignment_loss"):
        catvae(assignment_loss="hinge")


@pytest.mark.parametrize("normalise_losses", [True, False])
@pytest.mark.parametrize("category_inference", ["enumerate", "gumbel"])
def test_catvae_gaussian_latent_elbo_is_weighted_reconstruction_from_z_and_both_kls(category_inference,
                                                                                    normalise_losses):
    """gaussian_dim > 0 (the released code's model): the decoder reads z ~ q(z|f), not f, and the
    ELBO part is w_R/|x| E_q log p(x|z,C) - w_C/log K KL(q(C|f) || p(C)) - w_gaussian (log q(z|f) - log p(z))
    at the guide's draw of z; without the paper's normalisations, w_R E_q log p(x|z,C) - w_C KL - ..."""
    model, x = catvae(gaussian_dim=2, w_gaussian=0.7, w_reconstruction=3.0, w_categorical=0.5,
                      category_inference=category_inference, normalise_losses=normalise_losses), bits(6)
    pixels, log_k = (X_DIM, math.log(N_SLOTS)) if normalise_losses else (1, 1.0)
    f = model.feature(x)
    torch.manual_seed(0)
    guide_trace = poutine.trace(model.guide).get_trace(x, None, f)
    z = guide_trace.nodes["z"]["value"]
    assert z.shape == (6, 2)
    loc, log_variance = model.gaussian_head(f).chunk(2, dim=-1)
    z_term = 0.7 * (Normal(loc, (0.5 * log_variance).exp()).log_prob(z) - Normal(0.0, 1.0).log_prob(z)).sum(-1)
    if category_inference == "enumerate":
        torch.manual_seed(0)
        got = model._elbo_weight * model._elbo.differentiable_loss(model.model, model.guide, x, None, f)
        q = torch.softmax(model.category_head(f), -1)
        log_px = torch.stack([model.likelihood(z, torch.full((6,), k)).log_prob(x) for k in range(N_SLOTS)], -1)
        want = -(3.0 / pixels * (q * log_px).sum(-1) - 0.5 / log_k * (q * (q * N_SLOTS).log()).sum(-1)
                 - z_term).sum()
        torch.testing.assert_close(got, want)
    # Labelled: C observed, z still drawn; the ELBO is the reconstruction from (z, y), log p(y) and z's term.
    y = torch.tensor([0, 1, 2, 2, 0, 1])
    torch.manual_seed(0)
    got = model._elbo_weight * model._elbo_labelled.differentiable_loss(model.model, model.guide, x, y, f)
    want = -(3.0 / pixels * model.likelihood(z, y).log_prob(x) + 0.5 / log_k * math.log(1 / N_SLOTS)
             - z_term).sum()
    torch.testing.assert_close(got, want)
    # Every parameter learns, the head of q(z|f) included, and the loss traces.
    x_l, y_l = bits(4, seed=1), torch.tensor([0, 1, 2, 1])
    loss = model.loss(Batch(x, x_l, y_l))
    loss.backward()
    assert torch.isfinite(loss) and all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    traced = TracedLoss(model)
    traced(Batch(x, x_l, y_l))
    assert_traced_gives_eager(model, traced, x, x_l, y_l)


def test_catvae_gaussian_latent_conv_decoder_reads_z():
    model = build_model("catvae", x_dim=784, n_slots=3, encoder="conv", hidden_dims=(8,), gaussian_dim=4)
    assert model.decoder.linear.in_features == 4 + 3
    x = torch.bernoulli(torch.full((2, 784), 0.3))
    assert torch.isfinite(model.loss(Batch(x, x, torch.tensor([0, 2]))))
    with pytest.raises(ValueError, match="gaussian_dim"):
        catvae(gaussian_dim=-1)
    with pytest.raises(ValueError, match="normalise_losses"):
        catvae(normalise_losses="false")  # a string would be truthy: refuse it


def test_catvae_feature_loss_choice():
    model = catvae(feature_loss="paper")
    x, x_l, y_l = bits(6), bits(3, seed=1), torch.tensor([0, 1, 2])
    assert torch.isfinite(model.loss(Batch(x, x_l, y_l)))
    with pytest.raises(ValueError, match="feature_loss"):
        catvae(feature_loss="triplet")


# -- beta-VAE with a classifier head (Vengalil & Sinha) ---------------------------------------------

def test_betavae_labelled_loss_is_reconstruction_beta_kl_and_weighted_cross_entropy():
    model = build_model("betavae", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(5,),
                        beta=3.0, gamma=7.0).double()
    x, y, w = bits(5), torch.tensor([0, 2, 1, 1, 0]), torch.tensor([1.0, 0.5, 0.0, 0.25, 1.0], dtype=torch.double)
    torch.manual_seed(123)
    z = poutine.trace(model.guide).get_trace(x, y, w).nodes["z"]["value"]
    torch.manual_seed(123)
    loss = model.loss(Batch(None, x, y, w))
    q = model.posterior(x)
    log_px = bernoulli_log_lik(model, z, x)
    kl_sample = q.log_prob(z) - Normal(0.0, 1.0).log_prob(z).sum(-1)
    ce = -Categorical(logits=model.head(z)).log_prob(y)
    torch.testing.assert_close(loss, (-log_px + 3.0 * kl_sample + 7.0 * w * ce).mean())


def test_betavae_zero_weight_labels_do_not_train_the_head_and_other_models_refuse_weights():
    model = build_model("betavae", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(5,)).double()
    x, y = bits(4), torch.tensor([0, 1, 2, 0])
    model.loss(Batch(None, x, y, torch.zeros(4, dtype=torch.double))).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.head.parameters())
    with pytest.raises(ValueError, match="per-label weights"):
        build_model("m2", x_dim=X_DIM, n_slots=N_SLOTS).loss(Batch(None, x.float(), y, torch.ones(4)))


def test_betavae_conv_networks_are_the_papers_shape_and_train_every_layer():
    """networks="conv" (Vengalil & Sinha, Sec. 3.2): one stride-2 convolution then the dense layers
    in the encoder, the dense layers then one stride-2 transposed convolution in the decoder, on
    28 x 28 images; the loss is the same story (the labelled one equals the hand sum), gradients reach
    both convolutions, and other inputs are refused."""
    from torch import nn

    model = build_model("betavae", x_dim=784, n_slots=10, z_dim=3, hidden_dims=(16,), networks="conv",
                        conv_channels=4, beta=2.0, gamma=5.0).double()
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert [(type(m).__name__, m.stride, m.in_channels, m.out_channels) for m in convs] == [
        ("Conv2d", (2, 2), 1, 4), ("ConvTranspose2d", (2, 2), 4, 1)]
    torch.manual_seed(0)
    x, y = torch.bernoulli(torch.full((3, 784), 0.3, dtype=torch.double)), torch.tensor([0, 7, 9])
    w = torch.tensor([1.0, 0.5, 0.0], dtype=torch.double)
    assert model.embed(x).shape == (3, 3) and model.decode(torch.zeros(2, 3, dtype=torch.double)).shape == (2, 784)
    torch.manual_seed(1)
    z = poutine.trace(model.guide).get_trace(x, y, w).nodes["z"]["value"]
    torch.manual_seed(1)
    loss = model.loss(Batch(None, x, y, w))
    q = model.posterior(model.features(x))
    log_px = Bernoulli(logits=model.decoder(z)).log_prob(x).sum(-1)
    kl_sample = q.log_prob(z) - Normal(0.0, 1.0).log_prob(z).sum(-1)
    ce = -Categorical(logits=model.head(z)).log_prob(y)
    torch.testing.assert_close(loss, (-log_px + 2.0 * kl_sample + 5.0 * w * ce).mean())
    loss.backward()
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in convs)
    with pytest.raises(ValueError, match="read 28 x 28 images"):
        build_model("betavae", x_dim=700, n_slots=10, networks="conv")
    with pytest.raises(ValueError, match="networks must be one of"):
        build_model("betavae", x_dim=784, n_slots=10, networks="resnet")


def test_an_mlp_given_parts_computes_the_broadcast_concatenation_once_per_part():
    """(x, onehot(y)) under enumeration: the same output as the concatenated copies, with the first
    layer's matmul over x at x's own shape (B rows, not K * B)."""
    from torch.utils.flop_counter import FlopCounterMode
    from pyro_sus.nn import MLP, broadcast_cat

    torch.manual_seed(0)
    mlp = MLP(12 + 4, (8,), 3).double()
    x = torch.randn(6, 12, dtype=torch.double)
    onehot = torch.eye(4, dtype=torch.double).view(4, 1, 4)  # enumerated y
    torch.testing.assert_close(mlp((x, onehot)), mlp(broadcast_cat(x, onehot)))
    with FlopCounterMode(display=False) as by_parts:
        mlp((x, onehot))
    with FlopCounterMode(display=False) as by_copies:
        mlp(broadcast_cat(x, onehot))
    first_layer_copies = 2 * 4 * 6 * 16 * 8
    first_layer_parts = 2 * 6 * 12 * 8 + 2 * 4 * 1 * 4 * 8
    assert by_copies.get_total_flops() - by_parts.get_total_flops() == first_layer_copies - first_layer_parts
    with pytest.raises(ValueError, match="do not make the first layer"):
        mlp((x, x))


def test_the_latent_representation_is_declared_by_each_model_family():
    """latent_mean: E[z|x] for the M2 family, the code for a model with an embedding, and a ValueError
    for a model with neither (Run.embed calls it without probing the model)."""
    x = bits(5)
    betavae = build_model("betavae", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(5,)).double().eval()
    torch.testing.assert_close(betavae.latent_mean(x), betavae.embed(x))
    assert build_model("gmdgm", x_dim=X_DIM, n_slots=N_SLOTS, z_dim=Z_DIM, hidden_dims=(5,)).double().latent_mean(
        x).shape == (5, Z_DIM)
    with pytest.raises(ValueError, match="no latent representation"):
        build_model("classifier", x_dim=X_DIM, n_slots=N_SLOTS, hidden_dims=(5,)).double().latent_mean(x)
