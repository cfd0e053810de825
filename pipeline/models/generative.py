"""Generative families on images with pixels in [0, 1]: autoencoder, variational autoencoder, GAN.

All three share one contract, which their tasks (`pipeline.tasks.generative`) rely on:

- `forward(x)` returns a dict of tensors. It always holds the input under "x" (so a task can score a
  reconstruction from `batch_sums(out, y)` alone) and, in eval mode, "samples": as many generated images
  as there are inputs, drawn the way `sample` draws them.
- `sample(n, generator=None)` draws n images from the model's own latent distribution: the prior N(0, I)
  for the VAE and the GAN; for the plain autoencoder, which has no prior, a diagonal Gaussian fitted to its
  training codes (running mean and variance kept as buffers, like BatchNorm's).
- `encode(x)` / `decode(z)` for the autoencoders (the report's latent-space plot and reconstructions).

They share the options `latent_dim` and `hidden`, so a study can sweep `model.name` across the families.
Networks are MLPs over the flattened image: small and fast on 8x8 digits, adequate on 28x28 MNIST.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field
from torch import nn

from pipeline.datainfo import DataInfo
from pipeline.errors import ConfigError
from pipeline.models import register_model
from pipeline.registry import Options, Width


class GenerativeOptions(Options):
    latent_dim: Width = 8
    hidden: list[Width] = Field(default_factory=lambda: [128], min_length=1)  # encoder widths; decoder mirrors them


def _image_shape(info: DataInfo, family: str) -> tuple[int, int, int]:
    if len(info.input_shape) != 3:
        raise ConfigError(f"{family} needs image input (C, H, W), got shape {tuple(info.input_shape)}", key="model")
    c, h, w = info.input_shape
    return c, h, w


def _mlp(sizes: list[int], act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class _ImageModel(nn.Module):
    def __init__(self, info: DataInfo, opts: GenerativeOptions, family: str):
        super().__init__()
        self.image_shape = _image_shape(info, family)
        self.n_pixels = math.prod(self.image_shape)
        self.latent_dim = opts.latent_dim

    def _noise(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        device = next(self.parameters()).device
        # a CPU generator keeps the draw the same on every device (and leaves the global stream alone)
        return torch.randn(n, self.latent_dim, generator=generator).to(device)

    def _images(self, flat_logits: torch.Tensor) -> torch.Tensor:
        return flat_logits.view(-1, *self.image_shape)


class Autoencoder(_ImageModel):
    def __init__(self, opts: GenerativeOptions, info: DataInfo, family: str = "autoencoder"):
        super().__init__(info, opts, family)
        widths = [self.n_pixels, *opts.hidden]
        self.encoder = _mlp([*widths, self.code_size(opts)])
        self.decoder = _mlp([opts.latent_dim, *reversed(widths)])  # outputs logits; sigmoid gives pixels

    def code_size(self, opts: GenerativeOptions) -> int:
        return opts.latent_dim

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.flatten(1))

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return self._images(self.decoder(z))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z))


class AutoencoderModel(Autoencoder):
    """x -> code -> x. Sampling decodes draws from a diagonal Gaussian fitted to the training codes."""

    def __init__(self, opts: GenerativeOptions, info: DataInfo):
        super().__init__(opts, info, "autoencoder")
        self.register_buffer("code_mean", torch.zeros(opts.latent_dim))
        self.register_buffer("code_var", torch.ones(opts.latent_dim))
        self.momentum = 0.1

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.encode(x)
        if self.training and len(z) > 1:
            with torch.no_grad():
                self.code_mean.lerp_(z.mean(0), self.momentum)
                self.code_var.lerp_(z.var(0), self.momentum)
        out = {"x": x, "logits": self.decode_logits(z), "z": z}
        if not self.training:
            out["samples"] = self.sample(len(x))
        return out

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        z = self.code_mean + self.code_var.clamp_min(1e-8).sqrt() * self._noise(n, generator)
        return self.decode(z)


class VAEModel(Autoencoder):
    """Kingma & Welling (2014): the encoder gives a Gaussian q(z|x); the decoder a Bernoulli p(x|z); prior N(0, I)."""

    def __init__(self, opts: GenerativeOptions, info: DataInfo):
        super().__init__(opts, info, "vae")

    def code_size(self, opts: GenerativeOptions) -> int:
        return 2 * opts.latent_dim  # mean and log-variance

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x.flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-20, 20)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()  # reparameterization: gradients flow through mu, std
        out = {"x": x, "logits": self.decode_logits(z), "mu": mu, "logvar": logvar, "z": mu}
        if not self.training:
            out["mean_logits"] = self.decode_logits(mu)  # the deterministic reconstruction, scored like the AE's
            out["samples"] = self.sample(len(x))
        return out

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.decode(self._noise(n, generator))


class GANModel(_ImageModel):
    """Goodfellow et al. (2014): a generator from N(0, I) noise and a discriminator that scores real vs generated.

    The task trains them with two optimizers in alternating steps; `forward` only scores a batch (eval).
    """

    def __init__(self, opts: GenerativeOptions, info: DataInfo):
        super().__init__(info, opts, "gan")
        widths = [self.n_pixels, *opts.hidden]
        self.generator = nn.Sequential(_mlp([opts.latent_dim, *reversed(widths)]), nn.Sigmoid())
        # LeakyReLU keeps gradients flowing to the generator where the discriminator is confident
        self.discriminator = nn.Sequential(nn.Flatten(), _mlp([*widths, 1], act=lambda: nn.LeakyReLU(0.2)))

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self._images(self.generator(z))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        samples = self.generate(self._noise(len(x), None))
        return {
            "x": x,
            "d_real": self.discriminator(x).view(-1),
            "d_fake": self.discriminator(samples).view(-1),
            "samples": samples,
        }

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.generate(self._noise(n, generator))


# `inputs="generative"`: image in, dict out, so tests/test_models.py leaves them to tests/test_generative.py
@register_model("autoencoder", GenerativeOptions, task="autoencoder", inputs="generative")
def build_autoencoder(opts: GenerativeOptions, info: DataInfo) -> nn.Module:
    """MLP autoencoder trained on a per-pixel Bernoulli reconstruction loss."""
    return AutoencoderModel(opts, info)


@register_model("vae", GenerativeOptions, task="vae", inputs="generative")
def build_vae(opts: GenerativeOptions, info: DataInfo) -> nn.Module:
    """MLP variational autoencoder trained on the negative ELBO."""
    return VAEModel(opts, info)


@register_model("gan", GenerativeOptions, task="gan", inputs="generative")
def build_gan(opts: GenerativeOptions, info: DataInfo) -> nn.Module:
    """MLP GAN with the non-saturating generator loss."""
    return GANModel(opts, info)
