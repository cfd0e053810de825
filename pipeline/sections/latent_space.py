"""Generative study: the autoencoders' test codes (the VAE's posterior means) in 2-D, coloured by class."""

from __future__ import annotations

import torch

from pipeline import plots
from pipeline.runs import by_variant, ok_runs
from pipeline.sections.base import Context, Result, register_section
from pipeline.sections.common import ranked_variants, single_thread


def _pca2(z: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Project onto the first two principal components; returns (points, fraction of variance kept)."""
    z = z.double() - z.double().mean(0)
    if z.shape[1] <= 2:
        return z.float(), 1.0
    _, s, v = torch.linalg.svd(z, full_matrices=False)
    var = s**2
    return (z @ v[:2].T).float(), float(var[:2].sum() / var.sum())


@register_section("latent_space")
@single_thread()
def latent_space(ctx: Context) -> Result:
    """The test images' codes (the VAE's posterior means) in 2-D, coloured by class, for each autoencoder."""
    runs = by_variant(ok_runs(ctx.runs))
    panels, kept = {}, {}
    for variant in [v for v in ranked_variants(ctx) if v in runs]:
        trained = ctx.loader.load(runs[variant][0])
        model, data = trained.model, trained.data
        if not hasattr(model, "encode"):
            continue
        with torch.no_grad():
            xy, frac = _pca2(model.encode(data.x_test))
        label = variant if frac == 1.0 else f"{variant} (PCA, {100 * frac:.0f}% of variance)"
        panels[label] = (xy.numpy(), data.y_test.numpy())
        kept[variant] = frac
    if not panels:
        return Result([], [], {})
    fig = plots.latent_scatter(panels, ctx.out_dir / "figures" / "latent_space.png", f"{ctx.study}: test codes")
    return Result([], [fig], {"pca_variance_kept": kept})
