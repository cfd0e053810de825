"""Generative study: the autoencoders' test codes (the VAE's posterior means) in 2-D, coloured by class, and how far
each one's distribution of codes is from the prior N(0, I).

The distance is KL(N(m, S) || N(0, I)) of the Gaussian N(m, S) fitted to the codes of the test images: for the plain
autoencoder its deterministic codes, for the VAE its aggregate posterior (the mixture of q(z|x) over the test images,
moment-matched: m = mean of the posterior means, S = their covariance plus the mean posterior variance). The VAE's
KL term pulls that toward N(0, I); nothing pulls the plain autoencoder's codes there.
"""

from __future__ import annotations

import math

import torch

from pipeline import plots
from pipeline.runs import by_variant, ok_runs
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import DESCRIBED, NON_NEGATIVE, decided_by, describe, single_thread, stat


def _pca2(z: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Project onto the first two principal components; returns (points, fraction of variance kept)."""
    z = z.double() - z.double().mean(0)
    if z.shape[1] <= 2:
        return z.float(), 1.0
    _, s, v = torch.linalg.svd(z, full_matrices=False)
    var = s**2
    return (z @ v[:2].T).float(), float(var[:2].sum() / var.sum())


def gaussian_kl_to_standard(mean: torch.Tensor, cov: torch.Tensor) -> float:
    """KL(N(mean, cov) || N(0, I)) in nats: (tr cov + |mean|^2 - d - ln det cov) / 2."""
    mean, cov = mean.double(), cov.double()
    d = mean.numel()
    logdet = torch.linalg.slogdet(cov + 1e-9 * torch.eye(d, dtype=cov.dtype))[1]
    return float(0.5 * (cov.trace() + mean @ mean - d - logdet))


@torch.no_grad()
def code_distribution(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, covariance) of the codes of `x`: the aggregate posterior's moments for a model with a `posterior`
    (a VAE), the codes' own for a plain encoder."""
    if hasattr(model, "posterior"):
        mu, logvar = model.posterior(x)
        mu = mu.double()
        return mu.mean(0), torch.cov(mu.T).reshape(mu.shape[1], -1) + torch.diag(logvar.double().exp().mean(0))
    z = model.encode(x).double()
    return z.mean(0), torch.cov(z.T).reshape(z.shape[1], -1)


@register_section("latent_space")
@single_thread()
def latent_space(ctx: Context) -> Result:
    """The test images' codes in 2-D per autoencoder (first seed), and every run's KL from its codes to N(0, I)."""
    runs = by_variant(ok_runs(ctx.runs))
    panels, kept = {}, {}
    code_kl: dict[str, list[float]] = {}
    for variant in runs:
        for i, run in enumerate(runs[variant]):
            trained = ctx.loader.load(run)
            model, data = trained.model, trained.data
            if not hasattr(model, "encode"):
                break
            kl = gaussian_kl_to_standard(*code_distribution(model, data.x_test))
            code_kl.setdefault(variant, []).append(kl if math.isfinite(kl) else float("nan"))
            if i:
                continue
            with torch.no_grad():
                xy, frac = _pca2(model.encode(data.x_test))
            label = variant if frac == 1.0 else f"{variant} (PCA, {100 * frac:.0f}% of variance)"
            panels[label] = (xy.numpy(), data.y_test.numpy())
            kept[variant] = frac
    if not panels:
        return Result([], [], {})
    fig = plots.latent_scatter(panels, ctx.out_dir / "figures" / "latent_space.png", f"{ctx.study}: test codes")
    sentence = (
        "Distance of the test codes from the prior N(0, I), KL of a Gaussian fitted to them (the VAE's aggregate "
        f"posterior) in nats ({DESCRIBED}): "
        + ", ".join(f"{v} {describe(stat(x, 'code_kl', NON_NEGATIVE), 2)}" for v, x in code_kl.items())
        + ". "
        + decided_by(ctx, "code_kl")
    )
    return Result([sentence], [fig], {"pca_variance_kept": kept, "code_kl": code_kl, "values": {"code_kl": code_kl}})
