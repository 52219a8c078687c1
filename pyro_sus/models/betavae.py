"""The beta-VAE with a softmax classification head of Vengalil & Sinha, "cluster-based
semi-supervised learning with a VAE" (seed 003, Eqs. 1 and 4), the model of the active-labelling
loop (:mod:`pyro_sus.active`).

Loss per labelled point: reconstruction + beta KL + gamma w_n CE(y_n, softmax head(z)), with w_n
the confidence of a propagated label (1 for a label you were given). The head reads the sampled z,
as the authors' code does.

``networks="conv"`` is the paper's shape (Sec. 3.2): the encoder "one down-sampling convolutional
layer followed by two dense layers", the decoder "two dense layers and one up-sampling
de-convolution layer", for 28 x 28 images. The paper gives no kernel, stride or channel count: ours
are a 4 x 4 kernel at stride 2 (28 -> 14) with ``conv_channels`` channels, and the dense layers are
``hidden_dims`` plus the output layer (``hidden_dims=(500,)`` gives two dense layers each way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn
import pyro
import pyro.distributions as dist
from pyro import poutine

from ..nn import MLP, activation_module
from ..posteriors import posterior_mean
from .base import GenerativeConfig, GenerativeModel
from .registry import register_model

__all__ = ["BetaVAEClassifierConfig", "BetaVAEClassifier", "Networks", "IMAGE_SIDE"]

#: The encoder and decoder: dense layers only, or the paper's one (de)convolution beside them.
Networks = Literal["mlp", "conv"]
#: The side of the square images the conv networks read.
IMAGE_SIDE = 28


@dataclass
class BetaVAEClassifierConfig(GenerativeConfig):
    """Defaults from the authors' code: z = 10, beta = 5, classifier weight gamma = 150."""

    z_dim: int = 10
    beta: float = 5.0
    gamma: float = 150.0
    networks: Networks = "mlp"
    conv_channels: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0 or self.gamma < 0:
            raise ValueError(f"beta must be > 0 and gamma >= 0, got beta={self.beta}, gamma={self.gamma}")
        if self.networks == "conv" and self.x_dim != IMAGE_SIDE ** 2:
            raise ValueError(f"the conv networks read {IMAGE_SIDE} x {IMAGE_SIDE} images (x_dim {IMAGE_SIDE ** 2}), "
                             f"got x_dim {self.x_dim}; keep every pixel (std_threshold None) on MNIST-shaped data")
        if self.conv_channels < 1:
            raise ValueError(f"conv_channels must be >= 1, got {self.conv_channels}")


class _DownConv(nn.Module):
    """x (..., 784) -> one stride-2 convolution and the activation -> features (..., C * 14 * 14)."""

    def __init__(self, channels: int, activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 4, stride=2, padding=1)
        self.activation = activation_module(activation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        images = x.reshape(-1, 1, IMAGE_SIDE, IMAGE_SIDE)
        return self.activation(self.conv(images)).reshape(*x.shape[:-1], -1)


class _UpConvDecoder(nn.Module):
    """z -> dense layers (the last one to C * 14 * 14, then the activation) -> one stride-2
    transposed convolution -> logits or means (..., 784)."""

    def __init__(self, z_dim: int, hidden_dims: tuple[int, ...], channels: int, activation: str) -> None:
        super().__init__()
        self.channels = channels
        self.dense = MLP(z_dim, hidden_dims, channels * (IMAGE_SIDE // 2) ** 2, activation)
        self.activation = activation_module(activation)
        self.deconv = nn.ConvTranspose2d(channels, 1, 4, stride=2, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.activation(self.dense(z)).reshape(-1, self.channels, IMAGE_SIDE // 2, IMAGE_SIDE // 2)
        return self.deconv(h).reshape(*z.shape[:-1], IMAGE_SIDE ** 2)


@register_model("betavae")
class BetaVAEClassifier(GenerativeModel):
    """beta-VAE + classifier head: z ~ N(0, I) (KL weighted beta), x ~ p(x|z); gamma * w * CE(y, head(z))."""

    config_class: ClassVar[type[BetaVAEClassifierConfig]] = BetaVAEClassifierConfig
    enumerates_unlabelled = False
    takes_label_weights = True
    traceable = True
    has_embedding = True

    def __init__(self, config: BetaVAEClassifierConfig) -> None:
        super().__init__(config)
        hidden = tuple(config.hidden_dims)
        if config.networks == "conv":
            self.features: nn.Module = _DownConv(config.conv_channels, config.activation)
            self.posterior = self.build_posterior(config.conv_channels * (IMAGE_SIDE // 2) ** 2)
            self.decoder: nn.Module = _UpConvDecoder(config.z_dim, hidden[::-1], config.conv_channels,
                                                     config.activation)
        else:
            self.features = nn.Identity()
            self.posterior = self.build_posterior(config.x_dim)
            self.decoder = MLP(config.z_dim, hidden[::-1], config.x_dim, config.activation)
        self.latent_prior = self.build_latent_prior(1)
        self.head = nn.Linear(config.z_dim, config.n_slots)  # "a softmax classification layer" on z

    def likelihood(self, z: torch.Tensor, y: torch.Tensor | None = None) -> dist.Distribution:
        """p(x | z); y plays no part."""
        return self.observation(self.decoder(z))

    def model(self, x: torch.Tensor, y: torch.Tensor | None = None, w: torch.Tensor | None = None) -> None:
        """z ~ N(0, I); x ~ p(x|z). The scale on z (here and in the guide) makes the KL term beta KL."""
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=self.config.beta):
                z = pyro.sample("z", self.unconditional_latent_prior(x))
            pyro.sample("x", self.likelihood(z), obs=x)

    def guide(self, x: torch.Tensor, y: torch.Tensor | None = None, w: torch.Tensor | None = None) -> None:
        """z ~ q(z|x); with labels, gamma * w * CE of the head on the sampled z (Eq. 4)."""
        with pyro.plate("data", x.shape[0]):
            with poutine.scale(scale=self.config.beta):
                z = pyro.sample("z", self.posterior(self.features(x)))
            if y is not None:
                weights = torch.ones_like(y, dtype=z.dtype) if w is None else w.to(z.dtype)
                log_p = dist.Categorical(logits=self.head(z)).log_prob(y)
                pyro.factor("classifier_loss", -self.config.gamma * weights * log_p, has_rsample=True)

    def classifier(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the head at the posterior mean of z."""
        return self.head(self.embed(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean E[z|x]: the latent the active loop clusters."""
        return posterior_mean(self.posterior(self.features(x)))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z): what a cluster centre looks like."""
        return self.likelihood(z).mean
