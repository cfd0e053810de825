"""Images for generative models: pixels kept in [0, 1] instead of standardized.

A generative model's decoder ends in a sigmoid and its reconstruction loss is a per-pixel Bernoulli
cross-entropy, both of which need intensities in [0, 1]; `prepare` would otherwise standardize image inputs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from pydantic import Field, StrictInt

from pipeline.data.base import DATASETS, LoadContext, Splits, register_dataset
from pipeline.registry import Options


class UnitImagesOptions(Options):
    source: Literal["digits", "mnist", "fashion_mnist"] = "digits"
    subset: StrictInt | None = Field(None, ge=1)  # MNIST/Fashion-MNIST: keep the first N shuffled training images


@register_dataset("unit_images", UnitImagesOptions, inputs="unit_image", task="classification")
def load_unit_images(opts: UnitImagesOptions, ctx: LoadContext) -> Splits:
    """The `source` data set's images and labels, with pixels left in [0, 1] (no standardization)."""
    source_opts = {} if opts.source == "digits" else {"subset": opts.subset}
    splits = DATASETS.build(opts.source, source_opts, ctx)
    for k in ("x_train", "x_val", "x_test"):
        x = getattr(splits, k)
        setattr(splits, k, x.clamp(0, 1).contiguous())  # digits are k/16 and MNIST k/255: already in range
    splits.info = replace(splits.info, extra={**splits.info.extra, "normalize": False})
    splits.meta = {**splits.meta, "pixel_range": [0.0, 1.0], "source_dataset": opts.source}
    return splits
