"""Embedded, offline data sets: scikit-learn's handwritten digits and seeded synthetic problems."""

from __future__ import annotations

import math

import torch
from pydantic import Field, StrictInt

from pipeline.data.base import LoadContext, Splits, register_dataset, split_indices
from pipeline.datainfo import DataInfo
from pipeline.registry import Float, Options


class DigitsOptions(Options):
    val_fraction: Float = Field(0.2, gt=0, lt=0.5)
    test_fraction: Float = Field(0.2, gt=0, lt=0.5)


def _split(x, y, info: DataInfo, fractions, seed: int, meta: dict) -> Splits:
    tr, va, te = split_indices(len(x), fractions, seed)
    return Splits(x[tr], y[tr], x[va], y[va], x[te], y[te], info, meta)


@register_dataset("digits", DigitsOptions, inputs="image", task="classification")
def load_digits(opts: DigitsOptions, ctx: LoadContext) -> Splits:
    """1,797 real 8x8 handwritten digits (UCI, shipped inside scikit-learn), as 1x8x8 images."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.long)
    info = DataInfo(input_shape=(1, 8, 8), num_classes=10)
    return _split(x, y, info, (opts.val_fraction, opts.test_fraction), ctx.seed, {"source": "sklearn.load_digits"})


class SyntheticOptions(Options):
    n_samples: StrictInt = Field(2000, ge=30)
    n_features: StrictInt = Field(20, ge=1)
    n_classes: StrictInt = Field(4, ge=2)
    n_informative: StrictInt = Field(10, ge=1)
    val_fraction: Float = Field(0.2, gt=0, lt=0.5)
    test_fraction: Float = Field(0.2, gt=0, lt=0.5)


@register_dataset("synthetic", SyntheticOptions, inputs="vector", task="classification")
def load_synthetic(opts: SyntheticOptions, ctx: LoadContext) -> Splits:
    """Seeded Gaussian-cluster classification (scikit-learn's make_classification)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=opts.n_samples,
        n_features=opts.n_features,
        n_informative=min(opts.n_informative, opts.n_features),
        n_redundant=0,
        n_classes=opts.n_classes,
        n_clusters_per_class=1,
        random_state=ctx.seed,
    )
    info = DataInfo(input_shape=(opts.n_features,), num_classes=opts.n_classes)
    return _split(
        torch.tensor(x, dtype=torch.float32),
        torch.tensor(y, dtype=torch.long),
        info,
        (opts.val_fraction, opts.test_fraction),
        ctx.seed,
        {"source": "sklearn.make_classification"},
    )


# Targets of the two problems below have shape (N, 1), the shape of a model's output with num_classes=1,
# so a loss never broadcasts (N,) against (N, 1) into an (N, N) matrix.


class PolyRegressionOptions(Options):
    n_samples: StrictInt = Field(1000, ge=30)
    true_coefficients: list[Float] = Field(default_factory=lambda: [0.5, -1.0, 0.0, 2.0], min_length=1)  # c_0..c_k
    noise: Float = Field(0.1, ge=0)  # standard deviation of the Gaussian noise added to y
    val_fraction: Float = Field(0.2, gt=0, lt=0.5)
    test_fraction: Float = Field(0.2, gt=0, lt=0.5)


@register_dataset("poly_regression", PolyRegressionOptions, inputs="vector", task="regression")
def load_poly_regression(opts: PolyRegressionOptions, ctx: LoadContext) -> Splits:
    """Seeded 1-D regression y = sum_k c_k x^k + noise, x ~ U[-1, 1]; x is shape (N, 1), y is (N, 1)."""
    g = torch.Generator().manual_seed(ctx.seed)
    x = torch.rand(opts.n_samples, 1, generator=g, dtype=torch.float64) * 2 - 1
    coef = torch.tensor(opts.true_coefficients, dtype=torch.float64)
    y = (x ** torch.arange(len(coef), dtype=torch.float64)) @ coef  # Vandermonde matrix times coefficients
    y = y.unsqueeze(1) + opts.noise * torch.randn(opts.n_samples, 1, generator=g, dtype=torch.float64)
    # No normalization: with x left in [-1, 1] the fitted coefficients compare directly with the true ones.
    info = DataInfo(input_shape=(1,), num_classes=1, task="regression", extra={"normalize": False})
    meta = {
        "source": "seeded polynomial",
        "true_coefficients": list(opts.true_coefficients),
        "degree": len(opts.true_coefficients) - 1,
        "noise_std": opts.noise,
        "x_range": [-1.0, 1.0],
    }
    return _split(x.float(), y.float(), info, (opts.val_fraction, opts.test_fraction), ctx.seed, meta)


class TwoClassOptions(Options):
    n_samples: StrictInt = Field(1000, ge=30)
    separation: Float = Field(2.0, ge=0)  # distance between the two class means
    noise: Float = Field(1.0, gt=0)  # standard deviation of each (isotropic) blob
    val_fraction: Float = Field(0.2, gt=0, lt=0.5)
    test_fraction: Float = Field(0.2, gt=0, lt=0.5)


@register_dataset("two_class", TwoClassOptions, inputs="vector", task="binary")
def load_two_class(opts: TwoClassOptions, ctx: LoadContext) -> Splits:
    """Seeded 2-D two-Gaussian-blob problem for logistic regression; y is float {0., 1.} of shape (N, 1)."""
    g = torch.Generator().manual_seed(ctx.seed)
    n1 = opts.n_samples // 2
    y = torch.cat([torch.zeros(opts.n_samples - n1), torch.ones(n1)]).unsqueeze(1)
    # Means on the diagonal, so both features matter; the Bayes boundary is the line x0 + x1 = 0.
    h = opts.separation / 2 / math.sqrt(2)  # each coordinate of the positive class mean
    mean = (y * 2 - 1) * h  # (N, 1) broadcast over both features: -h or +h on each axis
    x = mean + opts.noise * torch.randn(opts.n_samples, 2, generator=g)
    # Left unnormalized so the recorded means and Bayes boundary stay in the data's own coordinates.
    info = DataInfo(input_shape=(2,), num_classes=1, task="binary", extra={"normalize": False})
    meta = {
        "source": "seeded Gaussian blobs",
        "class_means": [[-h, -h], [h, h]],
        "bayes_boundary": "x0 + x1 = 0",
        "noise_std": opts.noise,
        "bayes_accuracy": 0.5 * (1 + math.erf(opts.separation / (2 * opts.noise) / math.sqrt(2))),
    }
    return _split(x, y, info, (opts.val_fraction, opts.test_fraction), ctx.seed, meta)
