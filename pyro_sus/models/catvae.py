"""The categorical VAE with auxiliary tasks of Arias Figueroa & Ramírez Rivera, "Learning to
Cluster with Auxiliary Tasks: A Semi-Supervised Approach" (seed 002).

An encoder maps x to a feature f (ReLU, then L2-normalised, so ||f|| = 1 and f >= 0); categories
come from f through q(C|f); the decoder reconstructs x from (f, C). The objective (Eq. 8) is

    w_R L_R + w_C L_C + w_A L_A + w_F L_F

with L_R the reconstruction term over pixels, L_C = KL(q(C|f) || p(C)) / log K (Eq. 14), L_A the
assignment loss (Eq. 16: labelled points keep their labels, each unlabelled point takes the label
of its nearest labelled feature in the batch, 1-NN) and L_F the feature loss (Eqs. 17-18: mean
normalised distance of f to the labelled features of its assigned class, weighted alpha for
labelled and 1 - alpha for unlabelled points).

L_R and L_C are the ELBO of the Pyro model/guide pair below (f is a deterministic feature, as in
the paper, so it has no KL term), weighted exactly as Eq. 8 asks by one ``poutine.scale`` on the
observation. C is summed out exactly by enumeration (our default) or, as in the paper, sampled by
Gumbel-softmax (``category_inference="gumbel"``: the guide draws a relaxed one-hot c at
temperature tau and the prior is the matching Concrete distribution, so its KL is a Monte Carlo
estimate where the paper uses the closed-form categorical KL). L_A and L_F enter the same
objective, so one optimizer step covers everything.

Deviations, stated: the likelihood is the package's Bernoulli (or Gaussian) log-density per pixel
where the paper writes a per-pixel mean squared error (the Gaussian likelihood is that MSE up to a
constant); the assignment candidates are the labelled points of the current batch (100 labelled
per batch as in the paper, i.e. every label of its MNIST-100 setting).

Two objectives, two registered names. The authors' released code
(github.com/jariasf/semisupervised-vae-metric-embedding) trains another objective than the paper
prints, and on MNIST with 100 labels it is the one that works (docs/RESULTS.md, the Arias Figueroa
section: 83.0% against 32.8% after 3 epochs of the MLP version; the paper's per-pixel
reconstruction alone takes the best model down to 20.7%). So ``"catvae"`` defaults to the
released code's objective (:data:`RELEASED_CODE_OPTIONS`), and ``"catvae-paper"`` keeps the
objective as the paper prints it (Eqs. 8-18), for the record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.functional import cross_entropy, normalize
import pyro
import pyro.distributions as dist
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from ..nn import MLP, broadcast_cat, one_hot_rows
from .base import Batch, DecoderConfig, GenerativeModel, check_class_prior
from .registry import register_model

__all__ = ["CategoricalVAEConfig", "CategoricalVAE", "PaperCategoricalVAEConfig", "PaperCategoricalVAE",
           "RELEASED_CODE_OPTIONS", "PAPER_OPTIONS", "assignment_loss", "feature_loss", "lifted_structure_loss",
           "nearest_labels"]

ENCODERS = ("mlp", "conv")
CATEGORY_INFERENCE = ("enumerate", "gumbel")
FEATURE_LOSSES = ("lifted", "paper")
ASSIGNMENT_LOSSES = ("paper", "cross_entropy")
MNIST_SIDE = 28
# The objective of the authors' released code with its MNIST weights (its run.sh): "catvae"'s defaults.
RELEASED_CODE_OPTIONS: dict[str, Any] = {
    "assignment_loss": "cross_entropy", "gaussian_dim": 150, "w_gaussian": 1.1, "normalise_losses": False,
    "w_categorical": 1.2, "w_assignment": 4.7, "w_feature": 0.85, "feature_margin": 0.5, "assignment_neighbours": 7}
# The same options as the paper prints them (Table I, Sec. V-C, Eqs. 11, 14, 16): "catvae-paper"'s defaults.
PAPER_OPTIONS: dict[str, Any] = {
    "assignment_loss": "paper", "gaussian_dim": 0, "w_gaussian": 1.0, "normalise_losses": True,
    "w_categorical": 1.0, "w_assignment": 5.0, "w_feature": 1.0, "feature_margin": 1.0, "assignment_neighbours": 1}


@dataclass
class CategoricalVAEConfig(DecoderConfig):
    """Options of the categorical VAE; the objective's defaults are the released code's
    (:data:`RELEASED_CODE_OPTIONS`), the rest the paper's Table I (f = 50, tau = 1, alpha = 0.6).
    ``z_dim`` is the feature size f.
    ``feature_loss="paper"`` is Eqs. 17-18; it only pulls features together, and we measured it
    collapsing every feature onto one point within 100 steps (then no category can be told apart),
    so the default is ``"lifted"``, the lifted-structure metric loss (Oh Song et al. 2016) of the
    authors' released code, which also pushes features of different classes ``feature_margin``
    apart. ``assignment_neighbours`` = k of the k-NN vote (1 in the paper, 7 in the released code).
    ``encoder="conv"`` is the paper's convolutional pair for 28 x 28 images (run with every pixel
    kept: ``--keep-all-dims``); ``"mlp"`` uses ``hidden_dims``.

    Three options follow the authors' released code where it departs from the paper:
    ``assignment_loss="cross_entropy"`` (softmax cross-entropy on the labels and k-NN labels, in
    place of Eq. 16); ``gaussian_dim`` > 0 (the decoder reads a Gaussian latent z ~ q(z|f) of that
    size, p(z) = N(0, I), with its KL weighted ``w_gaussian``, in place of f itself);
    ``normalise_losses=False`` (the reconstruction summed over pixels and the categorical KL in
    nats, where the paper divides them by the pixel count, Eq. 11, and by log K, Eq. 14). Those with
    the released code's MNIST weights are the defaults; :class:`PaperCategoricalVAEConfig` has the
    paper's (:data:`PAPER_OPTIONS`)."""

    z_dim: int = 50
    encoder: str = "mlp"
    category_inference: str = "enumerate"
    temperature: float = 1.0
    feature_alpha: float = 0.6
    w_reconstruction: float = 1.0
    w_categorical: float = 1.2
    w_assignment: float = 4.7
    w_feature: float = 0.85
    feature_loss: str = "lifted"
    feature_margin: float = 0.5
    assignment_neighbours: int = 7
    assignment_loss: str = "cross_entropy"
    gaussian_dim: int = 150
    w_gaussian: float = 1.1
    normalise_losses: bool = False
    class_prior: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.class_prior = check_class_prior(self.class_prior, self.n_slots)
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.encoder == "conv" and self.x_dim != MNIST_SIDE ** 2:
            raise ValueError(f"the conv encoder reads 28 x 28 images (x_dim 784), got x_dim {self.x_dim}; "
                             "train with every pixel kept (--keep-all-dims) on MNIST-shaped data")
        if self.feature_loss not in FEATURE_LOSSES:
            raise ValueError(f"feature_loss must be one of {FEATURE_LOSSES}, got {self.feature_loss!r}")
        if self.assignment_loss not in ASSIGNMENT_LOSSES:
            raise ValueError(f"assignment_loss must be one of {ASSIGNMENT_LOSSES}, got {self.assignment_loss!r}")
        if not isinstance(self.normalise_losses, bool):
            raise ValueError(f"normalise_losses must be true or false, got {self.normalise_losses!r}")
        if self.gaussian_dim < 0 or self.w_gaussian < 0:
            raise ValueError(f"gaussian_dim and w_gaussian must be >= 0, got {self.gaussian_dim}, {self.w_gaussian}")
        if self.assignment_neighbours < 1:
            raise ValueError(f"assignment_neighbours must be >= 1, got {self.assignment_neighbours}")
        if self.category_inference not in CATEGORY_INFERENCE:
            raise ValueError(f"category_inference must be one of {CATEGORY_INFERENCE}, got {self.category_inference!r}")
        if not self.temperature > 0 or not 0 <= self.feature_alpha <= 1:
            raise ValueError("temperature must be > 0 and feature_alpha in [0, 1]")
        if self.n_slots < 2:
            raise ValueError("the categorical loss is normalised by log K: need at least two categories")
        if self.encoder == "conv" and self.activation != "relu":
            raise ValueError("the conv networks are the paper's (ReLU); activation applies to the MLP encoder only")


@dataclass
class PaperCategoricalVAEConfig(CategoricalVAEConfig):
    """The categorical VAE's options with the objective as the paper prints it (:data:`PAPER_OPTIONS`)."""

    w_categorical: float = 1.0
    w_assignment: float = 5.0
    w_feature: float = 1.0
    feature_margin: float = 1.0
    assignment_neighbours: int = 1
    assignment_loss: str = "paper"
    gaussian_dim: int = 0
    w_gaussian: float = 1.0
    normalise_losses: bool = True


def _conv_encoder(feature_dim: int) -> nn.Module:
    """The paper's inference network: (16@6x6), (32@6x6), (64@4x4, stride 2, pad 1), (f@9x9) -> 1 x 1 x f."""
    def block(cin: int, cout: int, k: int, s: int = 1, p: int = 0) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, k, s, p), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(nn.Unflatten(-1, (1, MNIST_SIDE, MNIST_SIDE)), *block(1, 16, 6), *block(16, 32, 6),
                         *block(32, 64, 4, 2, 1), nn.Conv2d(64, feature_dim, 9), nn.Flatten())


class _ConvDecoder(nn.Module):
    """The paper's generative network: Linear(f + K, f), then the encoder reversed with transposed convs."""

    def __init__(self, in_dim: int, feature_dim: int) -> None:
        super().__init__()
        def block(cin: int, cout: int, k: int, s: int = 1, p: int = 0) -> list[nn.Module]:
            return [nn.ConvTranspose2d(cin, cout, k, s, p), nn.BatchNorm2d(cout), nn.ReLU()]
        self.linear = nn.Linear(in_dim, feature_dim)
        self.convs = nn.Sequential(*block(feature_dim, 64, 9), *block(64, 32, 4, 2, 1), *block(32, 16, 6),
                                   nn.ConvTranspose2d(16, 1, 6), nn.Flatten())

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        lead = h.shape[:-1]  # (B,) or (K, B) under enumeration
        out = self.convs(self.linear(h).reshape(-1, self.linear.out_features, 1, 1))
        return out.reshape(*lead, -1)


def nearest_labels(features: torch.Tensor, labelled_features: torch.Tensor, labels: torch.Tensor,
                   neighbours: int = 1) -> torch.Tensor:
    """k-NN vote: the most common label among the ``neighbours`` nearest labelled features (Euclidean;
    ties go to the smallest label) for every row of ``features``; k = 1 is the paper's 1-NN."""
    k = min(neighbours, len(labelled_features))
    nearest = torch.cdist(features, labelled_features).topk(k, dim=1, largest=False).indices
    return labels[nearest].mode(dim=1).values if k > 1 else labels[nearest[:, 0]]


def lifted_structure_loss(features: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Lifted structured embedding loss (Oh Song et al. 2016): for every positive pair (i, j),
    J_ij = D_ij + log(sum_{k neg i} exp(m - D_ik) + sum_{l neg j} exp(m - D_jl)); mean of max(0, J)^2 / 2.

    0 when the batch has no positive pair or nothing to push apart. No Python branch on the labels,
    so the loss can be traced (:mod:`pyro_sus.tracing`)."""
    distances = torch.cdist(features, features)
    same = labels.view(-1, 1) == labels.view(1, -1)
    positive = same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    # The most negative finite number stands for log 0: exp of it is 0 as exp(-inf) is, and a pair
    # with no negative at all gets J far below 0 (no loss) and finite gradients instead of NaN.
    negatives = torch.where(same, torch.finfo(distances.dtype).min, margin - distances)
    push = negatives.logsumexp(dim=1)
    j = distances + torch.logaddexp(push.view(-1, 1), push.view(1, -1))
    per_pair = torch.where(positive, torch.relu(j).pow(2), 0.0)
    return per_pair.sum() / (2 * positive.sum().clamp_min(1))


def assignment_loss(probs: torch.Tensor, assigned: torch.Tensor) -> torch.Tensor:
    """Eq. 16: (1 / 2N) sum_i [tanh(-log P_ik) + sum_{j != k} tanh(log P_ij) + 1], k the assigned class."""
    log_p = probs.clamp_min(1e-12).log()
    chosen = one_hot_rows(assigned, probs.shape[-1], torch.bool)
    # Selected by where, not by indexing with the mask, whose size would be read back from the device.
    per_point = (torch.where(chosen, torch.tanh(-log_p), 0.0).sum(-1)
                 + torch.where(chosen, 0.0, torch.tanh(log_p)).sum(-1) + 1.0)
    return per_point.sum() / (2 * len(probs))


def feature_loss(features: torch.Tensor, assigned: torch.Tensor, labelled_features: torch.Tensor,
                 labels: torch.Tensor) -> torch.Tensor:
    """Per point D(f, r) of Eq. 18: mean distance to the labelled features of its class over sqrt(2).

    A point whose class has no labelled feature in the batch contributes 0."""
    distances = torch.cdist(features, labelled_features)                                    # (N, L)
    same = (assigned.view(-1, 1) == labels.view(1, -1)).to(features.dtype)                 # (N, L)
    counts = same.sum(-1)
    return (distances * same).sum(-1) / (math.sqrt(2) * counts.clamp_min(1))


@register_model("catvae")
class CategoricalVAE(GenerativeModel):
    """Categorical VAE with auxiliary tasks, the released code's objective: f = enc(x), C ~ q(C|f), x ~ p(x | z, C)."""

    config_class: ClassVar[type[CategoricalVAEConfig]] = CategoricalVAEConfig
    has_class_prior = True
    swappable_parts = False
    traceable = True
    # f = ReLU(enc(x)), normalised: with 3 units, some initialisations leave it 0 on every point of a
    # tiny batch, and then nothing reaches q(z|f). 8 units do not (the paper's f has 50).
    tiny_options: ClassVar[dict[str, Any]] = {"z_dim": 8}

    def __init__(self, config: CategoricalVAEConfig) -> None:
        super().__init__(config)
        k, f_dim, hidden = config.n_slots, config.z_dim, config.hidden_dims
        prior = torch.tensor(config.class_prior) if config.class_prior else torch.full((k,), 1.0 / k)
        self.register_buffer("class_probs", prior)
        code_dim = config.gaussian_dim or f_dim  # what the decoder reads beside C: z, or f itself
        if config.gaussian_dim:
            self.gaussian_head = nn.Linear(f_dim, 2 * config.gaussian_dim)  # q(z|f): mean and log-variance
        if config.encoder == "conv":
            self.encoder = _conv_encoder(f_dim)
            self.decoder = _ConvDecoder(code_dim + k, f_dim)
        else:
            self.encoder = MLP(config.x_dim, hidden, f_dim, config.activation)
            self.decoder = MLP(code_dim + k, tuple(reversed(hidden)), config.x_dim, config.activation)
        self.category_head = nn.Sequential(nn.Linear(f_dim, 50), nn.ReLU(), nn.Linear(50, 25), nn.ReLU(),
                                           nn.Linear(25, k))
        # Eq. 8 with the paper's normalisations (L_R per pixel, L_C over log K) or the released
        # code's sums, as one overall factor on the ELBO and one scale on the observation site.
        if config.category_inference == "gumbel":  # nothing to enumerate: no warning about it
            self._elbo = TraceEnum_ELBO(max_plate_nesting=1, strict_enumeration_warning=False)
        pixels, log_k = (config.x_dim, math.log(k)) if config.normalise_losses else (1, 1.0)
        self._elbo_weight = config.w_categorical / log_k
        self._reconstruction_scale = (config.w_reconstruction / pixels) / self._elbo_weight
        self._gaussian_scale = config.w_gaussian / self._elbo_weight

    def feature(self, x: torch.Tensor) -> torch.Tensor:
        """f = L2-normalise(ReLU(enc(x))): non-negative, unit norm."""
        return normalize(torch.relu(self.encoder(x)), dim=-1, eps=1e-8)

    def likelihood(self, code: torch.Tensor, y: torch.Tensor) -> dist.Distribution:
        """p(x | code, C) for a category index (or a relaxed one-hot vector) y; the code is f, or z
        when ``gaussian_dim`` > 0."""
        c = y if y.is_floating_point() else one_hot_rows(y, self.config.n_slots, code.dtype)
        return self.observation(self.decoder(broadcast_cat(code, c)))

    def _gumbel(self, y: torch.Tensor | None) -> bool:
        return y is None and self.config.category_inference == "gumbel"

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None, f: torch.Tensor | None = None) -> None:
        """C ~ p(C) (uniform, or the SUS prior); x ~ p(x | f(x), C) with the deterministic feature f
        (the paper), or x ~ p(x | z, C) with z ~ N(0, I) (``gaussian_dim`` > 0, the released code)."""
        gaussian_dim = self.config.gaussian_dim
        with pyro.plate("data", x.shape[0]):
            if self._gumbel(y):
                prior = dist.RelaxedOneHotCategorical(torch.tensor(self.config.temperature, device=x.device),
                                                      probs=self.class_probs)
                c = pyro.sample("y", prior.expand([x.shape[0]]))
            else:
                c = pyro.sample("y", dist.Categorical(probs=self.class_probs), obs=y)
            if gaussian_dim:
                # The ELBO's overall factor (w_C / log K) multiplies every site: this leaves z's KL at w_gaussian.
                with poutine.scale(scale=self._gaussian_scale):
                    code = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0).expand([x.shape[0], gaussian_dim])
                                       .to_event(1))
            else:
                code = self.feature(x) if f is None else f
            with poutine.scale(scale=self._reconstruction_scale):
                pyro.sample("x", self.likelihood(code, c), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None, f: torch.Tensor | None = None) -> None:
        """z ~ q(z|f) when ``gaussian_dim`` > 0; C ~ q(C|f): enumerated exactly, or a Gumbel-softmax
        draw; no C when it is observed."""
        f = self.feature(x) if f is None else f
        with pyro.plate("data", x.shape[0]):
            if self.config.gaussian_dim:
                loc, log_variance = self.gaussian_head(f).chunk(2, dim=-1)
                with poutine.scale(scale=self._gaussian_scale):
                    pyro.sample("z", dist.Normal(loc, (0.5 * log_variance).exp()).to_event(1))
            if y is not None:
                return
            logits = self.category_head(f)
            if self._gumbel(y):
                pyro.sample("y", dist.RelaxedOneHotCategorical(
                    torch.tensor(self.config.temperature, device=x.device), logits=logits))
            else:
                pyro.sample("y", dist.Categorical(logits=logits), infer={"enumerate": "parallel"})

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        return self.category_head(self.feature(x))

    #: Eq. 8 adds the assignment and feature losses (and a weight on the bound) outside model/guide.
    loss_is_the_bounds = False

    #: Eq. 8 is not a bound on log p(x): points are scored by their largest q(C|x) instead.
    fit_score_kind = "max_probability"

    def unlabelled_bound(self, x: torch.Tensor, n_samples: int = 4, batch_size: int = 1024) -> None:
        """None: Eq. 8 reweights the ELBO's terms (and f has no prior), so it is not a bound on log p(x)."""
        return None

    def _category_probs(self, logits: torch.Tensor) -> torch.Tensor:
        """P(c|x) of Eq. 16: q(C|f), or the Gumbel-softmax sample (Eq. 6) when C is sampled."""
        if self.config.category_inference == "gumbel":
            return dist.RelaxedOneHotCategorical(torch.tensor(self.config.temperature, device=logits.device),
                                                 logits=logits).rsample()
        return torch.softmax(logits, -1)

    def _objective(self, named: bool, batch: Batch) -> dict[str, torch.Tensor]:
        """Eq. 8 over one batch: weighted -ELBO (L_R + L_C), plus w_A L_A (``assignment``) and w_F L_F
        (``feature``).

        ``labelled_scale`` multiplies the labelled batch's ELBO; the assignment losses, which pool
        labelled and unlabelled features, are left as they are."""
        if batch.w_labelled is not None:
            raise ValueError("model CategoricalVAE does not take per-label weights")
        c = self.config
        x_unlabelled, x_labelled, y_labelled = batch.x_unlabelled, batch.x_labelled, batch.y_labelled
        labelled_scale = batch.labelled_scale
        parts, parts_f, parts_assigned = [], [], []
        has_u, has_l = batch.has_unlabelled, batch.has_labelled
        f_l = self.feature(x_labelled) if has_l else None
        if has_u:
            f_u = self.feature(x_unlabelled)
            parts.append((self._elbo_weight, len(x_unlabelled), self._elbo, (x_unlabelled, None, f_u)))
        if has_l:
            parts.append((labelled_scale * self._elbo_weight, len(x_labelled), self._elbo_labelled,
                          (x_labelled, y_labelled, f_l)))
            parts_f.append(f_l)
            parts_assigned.append(y_labelled)
            if has_u:  # the auxiliary task: unlabelled points take their nearest labelled label
                with torch.no_grad():
                    parts_assigned.append(nearest_labels(f_u, f_l, y_labelled, c.assignment_neighbours))
                parts_f.append(f_u)
        terms = self._bound_terms(named, parts)
        if parts_f:
            features, assigned = torch.cat(parts_f), torch.cat(parts_assigned)
            extra = {"assignment": c.w_assignment * self._assignment_loss(self.category_head(features), assigned),
                     "feature": c.w_feature * self._feature_loss(features, assigned, f_l, y_labelled)}
            for name, value in extra.items():
                terms[name if named else "loss"] = terms.get(name if named else "loss", 0.0) + value
        return terms

    def _assignment_loss(self, logits: torch.Tensor, assigned: torch.Tensor) -> torch.Tensor:
        """L_A on the category logits of labelled and assigned points: Eq. 16, or cross-entropy."""
        if self.config.assignment_loss == "cross_entropy":
            return cross_entropy(logits, assigned)
        return assignment_loss(self._category_probs(logits), assigned)

    def _feature_loss(self, features: torch.Tensor, assigned: torch.Tensor, f_l: torch.Tensor,
                      y_l: torch.Tensor) -> torch.Tensor:
        """L_F: the paper's Eq. 17 (labelled rows first, weight alpha) or the lifted-structure loss."""
        if self.config.feature_loss == "lifted":
            return lifted_structure_loss(features, assigned, self.config.feature_margin)
        distances = feature_loss(features, assigned, f_l, y_l)
        n_l, alpha = len(f_l), self.config.feature_alpha
        l_f = alpha * distances[:n_l].mean()
        if len(distances) > n_l:
            l_f = l_f + (1 - alpha) * distances[n_l:].mean()
        return l_f


@register_model("catvae-paper")
class PaperCategoricalVAE(CategoricalVAE):
    """The categorical VAE with the objective as the paper prints it (Eqs. 8-18); fails on MNIST-100, see docs."""

    config_class: ClassVar[type[CategoricalVAEConfig]] = PaperCategoricalVAEConfig
