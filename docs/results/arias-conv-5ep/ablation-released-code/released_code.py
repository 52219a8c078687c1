"""Ablations of the categorical VAE towards the authors' released code
(github.com/jariasf/semisupervised-vae-metric-embedding, read for this comparison, not copied),
loaded with `pyro-sus --plugin`. Where that code differs from the paper (seed 002) in ways our
config cannot express:

- the assignment loss is softmax cross-entropy on the labels and the k-NN labels, not Eq. 16;
- the decoder reads a Gaussian latent z ~ q(z|f) (KL to N(0, I), weight w_gaussian) and the
  category, not the feature f itself;
- the feature is not L2-normalised (ReLU only, in its conv encoder).

Its other differences are config options: the reconstruction summed over pixels
(``w_reconstruction=784``), the categorical KL not divided by log K (``w_categorical`` times
log K), its MNIST weights, margin and k. Not the paper's model: a diagnosis. The first two came into
the package from this ablation (``assignment_loss="cross_entropy"``, ``gaussian_dim``, ``w_gaussian``);
stage 2 of ablate.sh uses those options, the models here are what stage 1 ran."""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.functional import one_hot
import pyro
import pyro.distributions as dist
from pyro import poutine

from pyro_sus.models import register_model
from pyro_sus.models.catvae import CategoricalVAE, CategoricalVAEConfig
from pyro_sus.nn import MLP, broadcast_cat


@register_model("catvae-cross-entropy")
class CrossEntropyAssignmentVAE(CategoricalVAE):
    """The categorical VAE with cross-entropy in place of Eq. 16 (labels and k-NN labels alike)."""

    def _assignment_loss(self, logits: torch.Tensor, assigned: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, assigned)


@register_model("catvae-gaussian-z")
class GaussianLatentVAE(CrossEntropyAssignmentVAE):
    """As above, and the decoder reads (z, C) with z ~ q(z|f) = N(mu(f), sigma(f)), p(z) = N(0, I)."""

    #: Size of z (the released code's MNIST setting) and the weight of its KL term.
    gaussian_dim = 150
    w_gaussian = 1.1
    #: Whether f is L2-normalised (the paper) or only ReLU'd (the released code).
    normalise_features = True

    def __init__(self, config: CategoricalVAEConfig) -> None:
        if config.category_inference != "enumerate" or config.encoder != "mlp":
            raise ValueError("this ablation enumerates C and uses the MLP encoder")
        super().__init__(config)
        self.gaussian_head = nn.Linear(config.z_dim, 2 * self.gaussian_dim)
        self.decoder = MLP(self.gaussian_dim + config.n_slots, tuple(reversed(config.hidden_dims)), config.x_dim,
                           config.activation)

    def feature(self, x: torch.Tensor) -> torch.Tensor:
        return super().feature(x) if self.normalise_features else torch.relu(self.encoder(x))

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None, f: torch.Tensor | None = None) -> None:
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("y", dist.Categorical(probs=self.class_probs), obs=y)
            # The overall ELBO factor (w_C / log K) multiplies every site; this scale leaves z's KL at w_gaussian.
            with poutine.scale(scale=self.w_gaussian / self._elbo_weight):
                z = pyro.sample("z", dist.Normal(x.new_zeros(()), 1.0).expand([x.shape[0], self.gaussian_dim])
                                .to_event(1))
            with poutine.scale(scale=self._reconstruction_scale):
                hidden = broadcast_cat(z, one_hot(c, self.config.n_slots).to(z.dtype))
                pyro.sample("x", self.observation(self.decoder(hidden)), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None, f: torch.Tensor | None = None) -> None:
        f = self.feature(x) if f is None else f
        loc, log_var = self.gaussian_head(f).chunk(2, dim=-1)
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=self.w_gaussian / self._elbo_weight):
                pyro.sample("z", dist.Normal(loc, (0.5 * log_var).exp()).to_event(1))
            if y is None:
                pyro.sample("y", dist.Categorical(logits=self.category_head(f)), infer={"enumerate": "parallel"})


@register_model("catvae-gaussian-z-raw-features")
class GaussianLatentRawFeatureVAE(GaussianLatentVAE):
    """As above, with f = ReLU(enc(x)), not normalised."""

    normalise_features = False


@register_model("catvae-gaussian-z-paper-assignment")
class GaussianLatentPaperAssignmentVAE(GaussianLatentVAE):
    """The Gaussian-z model with the paper's Eq. 16 back in place of cross-entropy."""

    def _assignment_loss(self, logits: torch.Tensor, assigned: torch.Tensor) -> torch.Tensor:
        return CategoricalVAE._assignment_loss(self, logits, assigned)
