"""Tasks of the generative families (pipeline/models/generative.py): autoencoder, VAE and GAN.

The training loop stays the same for all of them. The GAN's task supplies what differs: two optimizers,
a `train_step` that alternates a discriminator update and a generator update, and a `distribute` that wraps
the two networks for DDP one by one, because its step calls each of them directly.

Validation metrics, all from summed quantities so they add up across DDP ranks:
- every family: `fd_pixels`, the Fréchet distance between Gaussians fitted to real and generated images in
  pixel space (the FID formula without the Inception network; the report adds a distance in the feature
  space of a trained classifier). Summing pixel vectors and their outer products makes it exact over a split.
- autoencoder and VAE: `recon_error` (mean squared error per pixel, of the reconstruction from the code or
  the posterior mean) and `recon_bce` (Bernoulli negative log-likelihood in nats per image).
- VAE: `kl` and `elbo` (a one-sample estimate, nats per image; `loss` is -elbo).
- GAN: `d_loss`, `g_loss`, the discriminator's mean probability on real (`d_real`) and generated (`d_fake`)
  images, and its accuracy telling them apart (`d_accuracy`: 0.5 is chance, what a balanced game ends near; on the
  training side, from the discriminator's step before its update); `loss` is d_loss + g_loss, used only to notice
  divergence.

Imported at the bottom of `pipeline.tasks`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.config import TrainConfig
from pipeline.tasks.base import Task, build_optimizer, clipped_grad_norm, register_task

# --------------------------------------------------------------------------- Fréchet distance


def frechet_distance(mu1: torch.Tensor, cov1: torch.Tensor, mu2: torch.Tensor, cov2: torch.Tensor) -> float:
    """||mu1 - mu2||^2 + tr(C1 + C2 - 2 (C1 C2)^1/2), with tr (C1 C2)^1/2 from the symmetric C1^1/2 C2 C1^1/2."""
    mu1, mu2, cov1, cov2 = (t.double().cpu() for t in (mu1, mu2, cov1, cov2))
    vals, vecs = torch.linalg.eigh(cov1)
    root1 = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T
    inner = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp_min(0).sqrt().sum()
    return float(((mu1 - mu2) ** 2).sum() + cov1.trace() + cov2.trace() - 2 * inner)


def moment_sums(prefix: str, x: torch.Tensor) -> dict[str, torch.Tensor]:
    f = x.flatten(1).float()
    return {f"{prefix}_sum": f.sum(0), f"{prefix}_outer": f.T @ f}


def gaussian_from_sums(s: torch.Tensor, outer: torch.Tensor, n: float) -> tuple[torch.Tensor, torch.Tensor]:
    s, outer = torch.as_tensor(s, dtype=torch.float64), torch.as_tensor(outer, dtype=torch.float64)
    mu = s / n
    return mu, (outer - n * torch.outer(mu, mu)) / max(n - 1, 1.0)


def feature_gaussian(f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = f.flatten(1).double()
    return f.mean(0), torch.cov(f.T).reshape(f.shape[1], f.shape[1])


# --------------------------------------------------------------------------- tasks


class Generative(Task):
    """Shared by the three families: the pixel-space Fréchet distance and a sample grid per epoch."""

    metric, mode = "val_fd_pixels", "min"

    def family_sums(self, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def batch_sums(self, out, y):
        x = out["x"]
        sums = {"count": torch.tensor(float(len(x)), device=x.device), **self.family_sums(out)}
        if "samples" in out:
            sums.update(moment_sums("real", x))
            sums.update(moment_sums("fake", out["samples"]))
        return sums

    def finalize(self, sums, prefix):
        n = max(float(sums["count"]), 1.0)
        moments = {k: sums.pop(k) for k in list(sums) if k.endswith(("_sum", "_outer"))}
        out = {f"{prefix}_{k}": float(v) / n for k, v in sums.items() if k != "count"}
        if moments and n > 1:
            real = gaussian_from_sums(moments["real_sum"], moments["real_outer"], n)
            fake = gaussian_from_sums(moments["fake_sum"], moments["fake_outer"], n)
            out[f"{prefix}_fd_pixels"] = frechet_distance(*real, *fake)
        return out

    @torch.no_grad()
    def epoch_artifacts(self, model: nn.Module, epoch: int, folder: Path) -> list[Path]:
        """A grid of 64 samples from fixed noise at epochs 1, 2, 5 and every 10th, so the grids compare (rank 0).

        Not every epoch: logging one artifact costs about 0.4 s, several times a short epoch of 8x8 digits."""
        from torchvision.utils import save_image

        if not sample_grid_epoch(epoch):
            return []
        was_training = model.training
        model.eval()
        try:
            images = model.sample(64, generator=torch.Generator().manual_seed(0)).float().cpu()
        finally:
            model.train(was_training)
        if images.shape[-1] < 28:  # 8x8 digits: scale up so the grid is legible
            images = F.interpolate(images, scale_factor=4, mode="nearest")
        path = Path(folder) / f"samples_epoch{epoch:03d}.png"
        save_image(images, path, nrow=8, padding=2, pad_value=0.5)
        return [path]


def sample_grid_epoch(epoch: int) -> bool:
    """Epochs (1-based) that log a sample grid: the first ones, where samples change most, then every 10th."""
    return epoch in (1, 2, 5) or epoch % 10 == 0


def _recon_sums(out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    x = out["x"]
    bce = F.binary_cross_entropy_with_logits(out["logits"], x, reduction="sum")
    recon = torch.sigmoid(out.get("mean_logits", out["logits"]))
    mse = ((recon - x) ** 2).flatten(1).mean(1).sum()
    return {"recon_bce": bce.detach(), "recon_error": mse.detach()}


@register_task("autoencoder", val=("loss", "recon_bce", "recon_error", "fd_pixels"), labels=None)
class AutoencoderTask(Generative):
    def loss(self, out, y):
        # per image: summed over pixels, averaged over the batch
        return F.binary_cross_entropy_with_logits(out["logits"], out["x"], reduction="sum") / len(out["x"])

    def family_sums(self, out):
        sums = _recon_sums(out)
        sums["loss"] = sums["recon_bce"]
        return sums


def _kl(out: dict[str, torch.Tensor]) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over the batch."""
    mu, logvar = out["mu"], out["logvar"]
    return -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum()


@register_task("vae", val=("loss", "recon_bce", "recon_error", "kl", "elbo", "fd_pixels"), labels=None)
class VAETask(Generative):
    def loss(self, out, y):
        n = len(out["x"])
        recon = F.binary_cross_entropy_with_logits(out["logits"], out["x"], reduction="sum")
        return (recon + _kl(out)) / n

    def family_sums(self, out):
        sums = _recon_sums(out)
        kl = _kl(out).detach()
        sums.update(kl=kl, loss=sums["recon_bce"] + kl, elbo=-(sums["recon_bce"] + kl))
        return sums


class GANPair(nn.Module):
    """DDP for a GAN: the generator and the discriminator wrapped one by one.

    The GAN step calls each network directly, so a DDP around the whole model would never see those calls
    and never all-reduce their gradients. `module` is the plain model, which is what evaluation uses.
    """

    def __init__(self, gan: nn.Module, device: torch.device):
        super().__init__()
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        self.module = gan
        self.generator = DDP(gan.generator, device_ids=ids)
        self.discriminator = DDP(gan.discriminator, device_ids=ids)

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z).view(-1, *self.module.image_shape)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.module(x)


def _d_correct(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's correct calls on n real and n generated images, halved: divided by the count n it is its
    accuracy over the 2n (a logit above 0 calls an image real)."""
    return ((real_logits > 0).sum() + (fake_logits <= 0).sum()).float() / 2


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


@register_task(
    "gan",
    train=("loss", "d_loss", "d_accuracy", "g_loss", "grad_norm"),
    val=("loss", "d_loss", "d_accuracy", "g_loss", "d_real", "d_fake", "fd_pixels"),
    labels=None,
)
class GANTask(Generative):
    """Alternating updates: one discriminator step on a real and a generated batch, then one generator step
    with the non-saturating loss -log D(G(z)). Optimizers: [generator, discriminator]."""

    def optimizers(self, model: nn.Module, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
        opts = [
            build_optimizer(model.generator.parameters(), cfg),
            build_optimizer(model.discriminator.parameters(), cfg),
        ]
        if cfg.optimizer in ("adam", "adamw"):
            for o in opts:  # beta1 = 0.5 (Radford et al. 2016): momentum 0.9 makes the two-player game oscillate
                for g in o.param_groups:
                    g["betas"] = (0.5, 0.999)
        return opts

    def distribute(self, model: nn.Module, device: torch.device) -> nn.Module:
        return GANPair(model, device)

    def train_step(self, model, x, y, optimizers, cfg):
        opt_g, opt_d = optimizers
        gan = getattr(model, "module", model)
        generate = model.generate  # the DDP-wrapped generator under GANPair
        n = len(x)

        # discriminator: real -> 1, generated -> 0; one forward over both halves (one DDP call per step)
        with torch.no_grad():
            fake = generate(gan._noise(n, None))
        logits = model.discriminator(torch.cat([x, fake])).view(-1)
        d_loss = _bce(logits[:n], 1.0) + _bce(logits[n:], 0.0)
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(gan.discriminator.parameters(), cfg.grad_clip)
        opt_d.step()

        # generator: make the (just updated) discriminator call its samples real
        g_logits = model.discriminator(generate(gan._noise(n, None))).view(-1)
        g_loss = _bce(g_logits, 1.0)
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        norm = clipped_grad_norm(gan.generator, cfg.grad_clip)
        opt_g.step()  # the discriminator's gradients from this pass are cleared before its next step

        w = torch.tensor(float(n), device=x.device)
        d, g = d_loss.detach(), g_loss.detach()
        return {
            "loss": (d + g) * w,
            "d_loss": d * w,
            "g_loss": g * w,
            "d_accuracy": _d_correct(logits[:n].detach(), logits[n:].detach()),
            "grad_norm": norm.detach() * w,
            "count": w,
        }

    def family_sums(self, out):
        d_real, d_fake = out["d_real"], out["d_fake"]
        n = float(len(d_real))
        d_loss = (_bce(d_real, 1.0) + _bce(d_fake, 0.0)) * n
        g_loss = _bce(d_fake, 1.0) * n
        return {
            "loss": (d_loss + g_loss).detach(),
            "d_loss": d_loss.detach(),
            "g_loss": g_loss.detach(),
            "d_real": torch.sigmoid(d_real).sum().detach(),
            "d_fake": torch.sigmoid(d_fake).sum().detach(),
            "d_accuracy": _d_correct(d_real.detach(), d_fake.detach()),
        }
